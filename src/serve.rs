//! Loopback container-credentials endpoint (in progress).
