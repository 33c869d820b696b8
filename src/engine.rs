//! Session engine: resolve profile → obtain code → STS.
