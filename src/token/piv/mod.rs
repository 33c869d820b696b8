//! A YubiKey's PIV key, through the `yubikey` crate: the key is chosen like the OATH path
//! chooses one (`tapcred_yubikey_serial`, else the only key), every exchange runs under a
//! deadline on a worker thread (a key that stops answering fails the command instead of
//! hanging it), the PIN is asked once and never retried on its own, and the touch prompt
//! shows when the slot's touch policy asks for one. The private key never leaves the card:
//! tapcred sends it a SHA-256 digest (ECDSA) or a PKCS#1 v1.5 block (RSA) and gets the
//! signature back.
//!
//! [`open_signer`] is what IAM Roles Anywhere signs through; [`generate`], [`import`] and
//! [`status`] are `tapcred piv init/import/status`.

mod admin;
mod certificate;
mod session;
mod signer;
mod slot;

pub use admin::{ManagementKey, PivAdmin, SlotInfo, open_admin};
pub use certificate::{certificate_algorithm, certificate_public_key};
pub use session::Deadlines;
pub use signer::{PivSigner, open_signer, open_signer_with};
pub use slot::{PivKeyRef, PivSlot, SlotPolicy};

/// The environment variable holding the PIV PIN for unattended runs.
pub const PIN_ENV: &str = "TAPCRED_PIV_PIN";
/// The environment variable holding the management key (hex) for `piv init` / `piv import`.
pub const MANAGEMENT_KEY_ENV: &str = "TAPCRED_PIV_MANAGEMENT_KEY";
