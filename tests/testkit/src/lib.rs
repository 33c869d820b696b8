//! Test doubles for tapcred.
pub mod sts_double;
