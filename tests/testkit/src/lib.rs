//! Test doubles for tapcred.
pub mod virtual_yubikey;
