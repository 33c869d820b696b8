//! YubiKey OATH applet (YKOATH) over an APDU transport: PC/SC for real keys, in-memory for
//! tests. See the YKOATH specification (Yubico's "YKOATH protocol").
//!
//! Layers: [`apdu`] (encoding, chaining, status words) → [`tlv`] → [`codec`] (tags,
//! response parsers, PUT encoding, client-side crypto) → [`session`] (SELECT, VALIDATE,
//! LIST, CALCULATE, CALCULATE_ALL, PUT, DELETE on one key) → [`prepare`] (the key chosen by
//! [`crate::token::device`], the password, the account matched to an `mfa_serial`) →
//! [`source`] (codes and touch prompts); beside them [`accounts`] (enrolment writes),
//! [`enroll`] (one unlocked key for `tapcred enroll`) and [`report`] (`tapcred devices`).
//!
//! APDU budget: [`open`] SELECTs OATH and sends one CALCULATE_ALL (names, types and touch
//! flags in one APDU: LIST would not tell which credentials need a touch); that answer
//! already holds the code of a non-touch 30 s account, so a code for now costs exactly
//! these 2 APDUs (plus VALIDATE when a password is set). The key is identified (management
//! SELECT + READ_CONFIG, for its serial) only when the serial decides something: several
//! keys plugged in, `tapcred_yubikey_serial` set, or a touch account (whose prompt names the
//! key). A code for another window (the engine waited) reconnects for SELECT + CALCULATE.

pub mod accounts;
pub mod apdu;
pub mod codec;
pub mod enroll;
pub mod fault;
pub mod matching;
pub mod name;
pub mod prepare;
pub mod report;
pub mod session;
pub mod source;
pub mod tlv;

pub use accounts::{Enrolled, add_account, add_account_with, delete_account, delete_account_with};
pub use codec::NewCredential;
pub use fault::OathError;
pub use name::{CredentialId, HashAlgo, OathType};
pub use prepare::{KeySession, code_for, code_for_with, open, open_with, probe, probe_with};
pub use report::{AccountReport, DeviceReport, list_devices, list_devices_with};
pub use session::Session;
pub use source::OathSource;

/// Env var holding the OATH applet password for headless runs.
pub const PASSWORD_ENV: &str = "TAPCRED_OATH_PASSWORD";

#[cfg(test)]
mod tests;
