//! PLACEHOLDER: the YubiKey PIV signer is built on its own branch and replaces this file at
//! merge. Only the names the Roles Anywhere side calls are here.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::token::EnvLookup;
use crate::token::x509::CertificateSigner;
use crate::ui::Ui;

/// A PIV key slot: 9a, 9c, 9d, 9e or a retired slot 82–95.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PivSlot(u8);

impl FromStr for PivSlot {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        let v = u8::from_str_radix(s.trim(), 16).map_err(|_| format!("{s:?} is not a PIV slot"))?;
        if matches!(v, 0x9a | 0x9c | 0x9d | 0x9e | 0x82..=0x95) {
            Ok(PivSlot(v))
        } else {
            Err(format!("{s:?} is not a PIV slot"))
        }
    }
}

impl fmt::Display for PivSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}", self.0)
    }
}

/// Which key on which card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PivKeyRef {
    pub serial: Option<u32>,
    pub slot: PivSlot,
}

pub fn open_signer(
    _key: &PivKeyRef,
    _env: &dyn EnvLookup,
    _ui: &dyn Ui,
) -> Result<Box<dyn CertificateSigner>> {
    Err(Error::token("PIV support is not built in"))
}
