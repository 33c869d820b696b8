//! Test doubles for tapcred.
pub mod moto;
pub mod sts_double;
