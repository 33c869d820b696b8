//! Opening the vault for a change: the first unlocker whose device is here answers once, and
//! its output is kept so the same process can open what it wrote without a second touch.

use std::path::PathBuf;

use crate::commands::Ctx;
use crate::env::EnvLookup;
use crate::error::{Error, Result};
use crate::ui::Ui;
use crate::vault::unlock::{connect_unlocker, parse_otp_id};
use crate::vault::{
    OpenVault, UnlockOutput, Unlocker, UnlockerDesc, UnlockerKind, VaultError, VaultFile,
    VaultSession, VaultStore,
};

/// An opened vault, with the unlocker that opened it and that unlocker's output, kept (in
/// a zeroizing buffer) so the file just written can be opened again to test-decrypt an
/// entry, or re-opened after a re-read, without a second touch. Debug shows no secret.
pub(crate) struct Unlocked {
    pub vault: OpenVault,
    pub id: String,
    output: UnlockOutput,
}

impl std::fmt::Debug for Unlocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unlocked")
            .field("vault", &self.vault)
            .field("id", &self.id)
            .field("output", &self.output)
            .finish()
    }
}

impl Unlocked {
    /// Open `file` (a later read of the same vault) with the same unlocker output: no touch.
    pub fn reopen(&self, file: &VaultFile) -> Result<OpenVault> {
        Ok(file.open(&self.id, self.output.expose())?)
    }

    /// The vault as on disk now, opened with the kept unlocker output.
    pub fn read(&self, store: &VaultStore) -> Result<OpenVault> {
        let file = store.read()?.ok_or_else(|| disappeared(store))?;
        self.reopen(&file)
    }

    /// Under the vault's writers' lock: re-read it, open it with the kept unlocker output (no
    /// touch), change it, write it. Returns the vault's path.
    pub fn change(
        &self,
        store: &VaultStore,
        change: impl FnOnce(&mut OpenVault) -> std::result::Result<(), VaultError>,
    ) -> Result<PathBuf> {
        let lock = store.lock()?;
        let file = lock.read()?.ok_or_else(|| disappeared(store))?;
        let mut v = self.reopen(&file)?;
        change(&mut v)?;
        lock.write(&v)?;
        Ok(store.path().to_owned())
    }

    /// A vault session for this process (the default vault path) whose one unlock replays
    /// this unlocker's output: no device, no second touch.
    pub fn session(&self, env: &dyn EnvLookup) -> VaultSession {
        let (id, output) = (self.id.clone(), self.output.clone());
        VaultSession::from_env(env).with_devices(Box::new(move |d: &UnlockerDesc| {
            Ok((d.id == id).then(|| {
                Box::new(Replay {
                    kind: d.kind,
                    id: id.clone(),
                    output: output.clone(),
                }) as Box<dyn Unlocker>
            }))
        }))
    }
}

/// An unlocker answering with an output this process already got from the device.
struct Replay {
    kind: UnlockerKind,
    id: String,
    output: UnlockOutput,
}

impl Unlocker for Replay {
    fn kind(&self) -> UnlockerKind {
        self.kind
    }
    fn id(&self) -> String {
        self.id.clone()
    }
    fn respond(&mut self, _desc: &UnlockerDesc, _ui: &dyn Ui) -> Result<UnlockOutput> {
        Ok(self.output.clone())
    }
}

/// Open the vault with the first unlocker in its header whose device is here
/// (`vault::unlock::connect_unlocker`: one arm per unlocker kind and transport); `serial`:
/// only that YubiKey's OTP-slot unlockers.
pub(crate) fn unlock_with(
    file: &VaultFile,
    serial: Option<u32>,
    env: &dyn EnvLookup,
    ui: &dyn Ui,
) -> Result<Unlocked> {
    let mut tried = Vec::new();
    for d in file.unlocker_descs() {
        if serial.is_some() && parse_otp_id(&d.id).map(|(s, _)| s) != Some(serial) {
            continue;
        }
        match connect_unlocker(d, env, ui) {
            Ok(Some(mut u)) => {
                let id = u.id();
                if id != d.id {
                    tried.push(format!("{}: the key found is {id}", d.id));
                    continue;
                }
                let output = u.respond(d, ui)?;
                let vault = file.open(&id, output.expose())?;
                return Ok(Unlocked { vault, id, output });
            }
            Ok(None) => tried.push(format!("{}: not plugged in", d.id)),
            Err(e) => tried.push(format!("{}: {e}", d.id)),
        }
    }
    let only = serial
        .map(|s| format!(" of YubiKey {s}"))
        .unwrap_or_default();
    Err(Error::token(format!(
        "no YubiKey that unlocks the vault is plugged in (tried {}{only}); plug in one of its keys (`tapcred vault list` shows them)",
        if tried.is_empty() {
            "none".to_owned()
        } else {
            tried.join("; ")
        }
    )))
}

pub(super) fn unlock(file: &VaultFile, serial: Option<u32>, ctx: &Ctx<'_>) -> Result<OpenVault> {
    Ok(unlock_with(file, serial, ctx.env, ctx.ui)?.vault)
}

/// The vault file (under the lock), or the error saying to create one.
pub(super) fn existing(
    lock: &crate::vault::store::WriteLock<'_>,
    store: &VaultStore,
) -> Result<VaultFile> {
    lock.read()?.ok_or_else(|| no_vault(store))
}

/// The vault this process opened is gone from its place.
fn disappeared(store: &VaultStore) -> Error {
    Error::config(format!(
        "the vault {} disappeared while tapcred was changing it",
        store.path().display()
    ))
}

pub(super) fn no_vault(store: &VaultStore) -> Error {
    Error::config(format!(
        "no vault at {}; create one with `tapcred vault init --unlock otp`",
        store.path().display()
    ))
}
