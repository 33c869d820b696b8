//! Test doubles for tapcred.
