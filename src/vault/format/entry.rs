//! Entries: what a secret is, its name, and sealing it under the entry key.

use std::fmt;

use chacha20poly1305::XNonce;
use chacha20poly1305::aead::{Aead, Payload};
use zeroize::Zeroizing;

use super::bytes::{Cursor, put16};
use super::keys::{Keys, cipher, random_nonce};
use super::{MAX_NAME_LEN, NONCE_LEN};
use crate::vault::VaultError;

/// What an entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EntryKind {
    /// A TOTP seed, named by its `mfa_serial`.
    TotpSeed,
    /// A long-term access key, named by its source profile.
    AccessKey,
}

impl EntryKind {
    pub(super) fn code(self) -> u8 {
        match self {
            EntryKind::TotpSeed => 1,
            EntryKind::AccessKey => 2,
        }
    }
    pub(super) fn from_code(c: u8) -> Option<Self> {
        match c {
            1 => Some(EntryKind::TotpSeed),
            2 => Some(EntryKind::AccessKey),
            _ => None,
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            EntryKind::TotpSeed => "seed",
            EntryKind::AccessKey => "access-key",
        }
    }
}

/// An entry's kind and name (no secret).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryName {
    pub kind: EntryKind,
    pub name: String,
}

impl EntryName {
    pub fn seed(mfa_serial: impl Into<String>) -> Self {
        EntryName {
            kind: EntryKind::TotpSeed,
            name: mfa_serial.into(),
        }
    }
    pub fn access_key(profile: impl Into<String>) -> Self {
        EntryName {
            kind: EntryKind::AccessKey,
            name: profile.into(),
        }
    }
    pub(super) fn aad(&self) -> Vec<u8> {
        let mut a = b"tapcred vault v1 entry".to_vec();
        a.push(self.kind.code());
        put16(&mut a, self.name.as_bytes());
        a
    }
    pub(super) fn check(&self) -> Result<(), VaultError> {
        if self.name.is_empty()
            || self.name.len() > MAX_NAME_LEN
            || self.name.chars().any(char::is_control)
        {
            return Err(VaultError::Invalid(format!(
                "vault entry name {:?} must be 1–{MAX_NAME_LEN} bytes without control characters",
                self.name
            )));
        }
        Ok(())
    }
}

/// A secret kept in the vault. Debug shows no secret.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// The raw TOTP seed bytes (AWS: 40 bytes).
    TotpSeed(Zeroizing<Vec<u8>>),
    AccessKey {
        access_key_id: String,
        secret_access_key: Zeroizing<String>,
    },
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::TotpSeed(s) => write!(f, "TotpSeed(<{} bytes redacted>)", s.len()),
            Secret::AccessKey { access_key_id, .. } => f
                .debug_struct("AccessKey")
                .field("access_key_id", access_key_id)
                .field("secret_access_key", &"<redacted>")
                .finish(),
        }
    }
}

impl Secret {
    pub(super) fn kind(&self) -> EntryKind {
        match self {
            Secret::TotpSeed(_) => EntryKind::TotpSeed,
            Secret::AccessKey { .. } => EntryKind::AccessKey,
        }
    }
    pub(super) fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::new());
        match self {
            Secret::TotpSeed(s) => out.extend_from_slice(s),
            Secret::AccessKey {
                access_key_id,
                secret_access_key,
            } => {
                put16(&mut out, access_key_id.as_bytes());
                put16(&mut out, secret_access_key.as_bytes());
            }
        }
        out
    }
    pub(super) fn decode(kind: EntryKind, plain: &[u8]) -> Option<Secret> {
        match kind {
            EntryKind::TotpSeed => Some(Secret::TotpSeed(Zeroizing::new(plain.to_vec()))),
            EntryKind::AccessKey => {
                let mut c = Cursor { b: plain, at: 0 };
                let id = String::from_utf8(c.take16().ok()?.to_vec()).ok()?;
                let secret = Zeroizing::new(std::str::from_utf8(c.take16().ok()?).ok()?.to_owned());
                c.done().ok()?;
                Some(Secret::AccessKey {
                    access_key_id: id,
                    secret_access_key: secret,
                })
            }
        }
    }
}

#[derive(Clone, PartialEq, Eq)]
pub(super) struct SealedEntry {
    pub(super) nonce: [u8; NONCE_LEN],
    pub(super) sealed: Vec<u8>,
}
/// `plain` sealed as entry `name` under `keys`.
pub(super) fn seal_entry(
    keys: &Keys,
    name: &EntryName,
    plain: &[u8],
) -> Result<SealedEntry, VaultError> {
    let nonce = random_nonce()?;
    let sealed = cipher(&keys.entry_key)
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: plain,
                aad: &name.aad(),
            },
        )
        .map_err(|_| VaultError::Io("sealing a vault entry failed".into()))?;
    Ok(SealedEntry { nonce, sealed })
}
