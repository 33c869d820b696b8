//! The vault: secrets at rest that only a YubiKey can open (issue 10).
//!
//! One file per user holds TOTP seeds (per `mfa_serial`) and long-term access keys (per
//! source profile), sealed under a random 256-bit **data key**. The data key itself is
//! stored once per **unlocker** (an OTP slot's HMAC-SHA1 challenge-response today, FIDO2
//! `hmac-secret` later), wrapped under a key derived with HKDF-SHA256 from that unlocker's
//! output, so any one unlocker (a second YubiKey as a backup) opens the same entries.
//!
//! - [`format`]: the versioned file format and its crypto (no hardware, no I/O);
//! - [`store`]: the file on disk (private, atomic writes, one writer at a time);
//! - [`unlock`]: the [`Unlocker`] trait, the OTP-slot unlocker (the OTP applet over
//!   PC/SC, `token::otp`) and `connect_unlocker` (one arm per unlocker kind);
//! - [`session`]: one unlock per process, serving the seed and the access key;
//! - [`seed_source`]: a seed in the vault as a token source, and the vault as the token
//!   layer's seed store.
//!
//! Secrets are held in zeroizing buffers and never appear in `Debug`, errors or logs.

pub mod fido2;
pub mod format;
pub mod seed_source;
pub mod session;
pub mod store;
pub mod unlock;

#[cfg(test)]
mod fido2_tests;
#[cfg(test)]
mod tests;

use std::fmt;

pub use fido2::Fido2Unlocker;
pub use format::{EntryKind, EntryName, OpenVault, Secret, UnlockerDesc, UnlockerKind, VaultFile};
pub use seed_source::{VaultSeeds, VaultSource};
pub use session::VaultSession;
pub use store::VaultStore;
pub use unlock::{OtpSlotUnlocker, UnlockOutput, Unlocker};

/// Why the vault could not be read or opened. Turned into [`crate::Error`] (with its exit
/// code) at the command boundary; tests match on the variant.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
pub enum VaultError {
    /// The file is not a vault, or it was changed or cut short since tapcred wrote it.
    #[error(
        "vault damaged: {0}; restore it from a backup, or remove it and run `tapcred vault init` again"
    )]
    Damaged(String),
    /// A vault format this build does not read.
    #[error(
        "vault format version {0} is not supported by this tapcred (it reads versions 1 to {max}); update tapcred",
        max = format::VERSION
    )]
    UnsupportedVersion(u16),
    /// The unlocker's output does not unwrap the data key: another YubiKey, or a slot that
    /// was reprogrammed.
    #[error(
        "{0} cannot open this vault (another YubiKey, or the slot was reprogrammed); use the key the vault was made with or a backup unlocker"
    )]
    WrongKey(String),
    /// No entry, or no unlocker, by that name.
    #[error("{0}")]
    NotFound(String),
    /// The request itself is invalid (a name too long, a duplicate unlocker, ...).
    #[error("{0}")]
    Invalid(String),
    /// Reading, writing or locking the file failed.
    #[error("{0}")]
    Io(String),
    /// The file is older than the newest generation tapcred has seen for this vault: an old
    /// copy was put back (it may bring back removed unlockers and keys).
    #[error(
        "the vault {vault} is an older copy (generation {file}; tapcred has already seen generation {seen} of it): it may bring back removed unlockers or keys, so it is refused; put the newest vault back, or accept this copy with `tapcred vault accept-rollback`"
    )]
    RolledBack { vault: String, file: u64, seen: u64 },
}

impl VaultError {
    pub fn message(&self) -> String {
        self.to_string()
    }
}

impl fmt::Debug for VaultError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = match self {
            VaultError::Damaged(_) => "Damaged",
            VaultError::UnsupportedVersion(_) => "UnsupportedVersion",
            VaultError::WrongKey(_) => "WrongKey",
            VaultError::NotFound(_) => "NotFound",
            VaultError::Invalid(_) => "Invalid",
            VaultError::Io(_) => "Io",
            VaultError::RolledBack { .. } => "RolledBack",
        };
        write!(f, "VaultError::{v}({})", self.message())
    }
}

impl From<VaultError> for crate::Error {
    fn from(e: VaultError) -> Self {
        let msg = e.message();
        match e {
            VaultError::Damaged(_)
            | VaultError::UnsupportedVersion(_)
            | VaultError::RolledBack { .. } => crate::Error::config(msg),
            VaultError::WrongKey(_) => crate::Error::token(msg),
            VaultError::NotFound(_) | VaultError::Invalid(_) => crate::Error::usage(msg),
            VaultError::Io(_) => crate::Error::io(msg),
        }
    }
}
