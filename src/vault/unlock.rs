//! Unlockers: something that answers the vault's challenge with a secret only it can
//! produce (an OTP slot's HMAC-SHA1: 20 bytes; FIDO2 hmac-secret: 32 bytes).

use std::fmt;

use zeroize::Zeroizing;

use super::format::{OpenVault, UnlockerDesc, UnlockerKind, VaultFile};
use crate::error::Result;
use crate::ui::Ui;

/// An unlocker's secret output. Debug shows no secret.
#[derive(Clone, PartialEq, Eq)]
pub struct UnlockOutput(Zeroizing<Vec<u8>>);

impl UnlockOutput {
    pub fn new(bytes: Vec<u8>) -> Self {
        UnlockOutput(Zeroizing::new(bytes))
    }
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for UnlockOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UnlockOutput(<{} bytes redacted>)", self.0.len())
    }
}

/// A device (or test double) that turns a vault unlocker's challenge into its output.
pub trait Unlocker {
    fn kind(&self) -> UnlockerKind;
    /// The id this unlocker has in a vault header, e.g. `otp:12345678:2`.
    fn id(&self) -> String;
    /// Answer `desc.challenge` (the device may ask for a touch through `ui`).
    fn respond(&mut self, desc: &UnlockerDesc, ui: &dyn Ui) -> Result<UnlockOutput>;
}

/// Open `file` with `unlocker`: finds its entry in the header by id, asks the device, unwraps.
pub fn open_with(file: &VaultFile, unlocker: &mut dyn Unlocker, ui: &dyn Ui) -> Result<OpenVault> {
    let id = unlocker.id();
    let desc = file
        .unlocker_descs()
        .find(|d| d.id == id && d.kind == unlocker.kind())
        .cloned()
        .ok_or_else(|| {
            crate::Error::token(format!(
                "the vault has no unlocker for {id} (it has {}); use one of those keys, or add this one with `tapcred vault add-unlock` from an unlocked key",
                file.unlocker_descs()
                    .map(|d| d.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
    let out = unlocker.respond(&desc, ui)?;
    Ok(file.open(&id, out.expose())?)
}

/// A new descriptor for `unlocker` (fresh salt and challenge), and its output for it.
pub fn enroll(unlocker: &mut dyn Unlocker, ui: &dyn Ui) -> Result<(UnlockerDesc, UnlockOutput)> {
    let desc = UnlockerDesc::new_random(unlocker.kind(), unlocker.id())?;
    let out = unlocker.respond(&desc, ui)?;
    Ok((desc, out))
}
