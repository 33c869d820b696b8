//! Test doubles for tapcred.
pub mod pcsc_stack;
pub mod virtual_yubikey;
