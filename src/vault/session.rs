//! One unlock per process: the vault read lazily, opened at most once, and kept open for
//! every secret this process needs.
//!
//! `credential-process` for a profile whose seed and long-term access key are both in the
//! vault asks the vault twice (the access key to sign, the seed for the code); both come
//! from one [`VaultSession`], so the YubiKey is asked once (one touch). The header is read
//! without any unlock (listing entries decides `tapcred_token = auto`); the first secret
//! request opens the vault with the first unlocker in its header whose device is present
//! ([`connect_unlocker`]). Nothing here runs on the warm path: a cached session never
//! creates the session's file read, let alone an unlock.

use std::cell::{Cell, OnceCell, RefCell};
use std::fmt;
use std::path::{Path, PathBuf};

use super::format::{EntryName, OpenVault, Secret, UnlockerDesc, VaultFile};
use super::store::VaultStore;
use super::unlock::{Unlocker, connect_unlocker};
use super::{EntryKind, VaultError};
use crate::env::EnvLookup;
use crate::error::{Error, Result};
use crate::ui::Ui;

/// How a session finds the device of one unlocker (tests pass in-memory unlockers).
pub type Connector<'c> = dyn FnMut(&UnlockerDesc) -> Result<Option<Box<dyn Unlocker>>> + 'c;

/// The vault of this process: read on first use, opened on the first secret request, then
/// kept open (its data key zeroized when the session is dropped). Debug shows no secret.
pub struct VaultSession {
    store: Option<VaultStore>,
    file: OnceCell<std::result::Result<Option<VaultFile>, VaultError>>,
    open: OnceCell<OpenVault>,
    unlocks: Cell<usize>,
    /// Devices injected by tests (in-memory unlockers); None: [`connect_unlocker`].
    devices: RefCell<Option<Box<Connector<'static>>>>,
}

impl fmt::Debug for VaultSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultSession")
            .field("path", &self.path())
            .field("opened", &self.open.get().is_some())
            .finish()
    }
}

impl VaultSession {
    /// The vault at `store`'s path (nothing is read yet).
    pub fn new(store: VaultStore) -> VaultSession {
        VaultSession {
            store: Some(store),
            file: OnceCell::new(),
            open: OnceCell::new(),
            unlocks: Cell::new(0),
            devices: RefCell::new(None),
        }
    }

    /// The vault at [`VaultStore::default_path`] (`$TAPCRED_VAULT`, XDG data dir, HOME).
    pub fn from_env(env: &dyn EnvLookup) -> VaultSession {
        match VaultStore::from_env(env) {
            Some(store) => VaultSession::new(store),
            None => VaultSession {
                store: None,
                file: OnceCell::new(),
                open: OnceCell::new(),
                unlocks: Cell::new(0),
                devices: RefCell::new(None),
            },
        }
    }

    /// The same session finding its unlockers' devices through `devices` instead of the
    /// real ones (tests: in-memory unlockers).
    pub fn with_devices(self, devices: Box<Connector<'static>>) -> Self {
        *self.devices.borrow_mut() = Some(devices);
        self
    }

    /// The vault file's path, when one is known.
    pub fn path(&self) -> Option<&Path> {
        self.store.as_ref().map(|s| s.path())
    }

    fn shown(&self) -> String {
        self.path()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "(no vault path: HOME is not set)".to_owned())
    }

    /// The parsed file (read once); `Ok(None)` when there is no vault (or no place for one).
    pub fn file(&self) -> Result<Option<&VaultFile>> {
        let r = self.file.get_or_init(|| match &self.store {
            Some(s) => s.read(),
            None => Ok(None),
        });
        match r {
            Ok(f) => Ok(f.as_ref()),
            Err(e) => Err(e.clone().into()),
        }
    }

    /// Whether the vault exists and lists `name` (no unlock).
    pub fn lists(&self, name: &EntryName) -> Result<bool> {
        Ok(self
            .file()?
            .is_some_and(|f| f.entry_names().any(|n| n == name)))
    }

    /// [`VaultFile::sealed_digest`] of `name` in hex, from the file this session reads (no
    /// unlock); `Ok(None)` when there is no vault or no such entry.
    pub fn sealed_digest(&self, name: &EntryName) -> Result<Option<String>> {
        Ok(self
            .file()?
            .and_then(|f| f.sealed_digest(name))
            .map(|d| data_encoding::HEXLOWER.encode(&d)))
    }

    /// How many times this session opened the vault (0 or 1).
    pub fn unlocks(&self) -> usize {
        self.unlocks.get()
    }

    /// Whether the vault is open already (a secret costs no touch).
    pub fn is_open(&self) -> bool {
        self.open.get().is_some()
    }

    /// Open the vault (once) with the real devices: the first unlocker of the header whose
    /// device [`connect_unlocker`] finds.
    pub fn open(&self, env: &dyn EnvLookup, ui: &dyn Ui) -> Result<()> {
        if self.open.get().is_some() {
            return Ok(());
        }
        let injected = self.devices.borrow_mut().take();
        match injected {
            Some(mut devices) => {
                let r = self.open_with(devices.as_mut(), ui);
                *self.devices.borrow_mut() = Some(devices);
                r
            }
            None => self.open_with(&mut |d| connect_unlocker(d, env, ui), ui),
        }
    }

    /// [`VaultSession::open`] with the devices found by `connect`.
    pub fn open_with(&self, connect: &mut Connector<'_>, ui: &dyn Ui) -> Result<()> {
        if self.open.get().is_some() {
            return Ok(());
        }
        let Some(file) = self.file()? else {
            return Err(self.no_vault());
        };
        let mut wrong_device = None;
        for desc in file.unlocker_descs() {
            let mut unlocker = match connect(desc) {
                Ok(Some(u)) => u,
                Ok(None) => continue,
                Err(e) if e.reason() == Some(crate::error::Reason::WrongDevice) => {
                    wrong_device.get_or_insert(e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            tracing::info!(vault = %self.shown(), unlocker = %desc.id, "opening the vault");
            let out = unlocker.respond(desc, ui)?;
            drop(unlocker);
            let vault = file.open(&desc.id, out.expose())?;
            if let Some(store) = &self.store {
                store.remember_opened(&vault);
            }
            self.unlocks.set(self.unlocks.get() + 1);
            let _ = self.open.set(vault);
            return Ok(());
        }
        if let Some(e) = wrong_device {
            return Err(e);
        }
        let listed: Vec<String> = file
            .unlocker_descs()
            .map(|d| format!("{} ({})", d.id, d.kind.label()))
            .collect();
        Err(Error::token(format!(
            "cannot open the vault {}: none of its unlockers is plugged in (it lists {}); plug in one of those keys (see -v for what was looked at)",
            self.shown(),
            listed.join(", ")
        )))
    }

    fn no_vault(&self) -> Error {
        match self.path() {
            Some(p) => Error::config(format!(
                "no vault at {}; create one with `tapcred vault init --unlock otp`",
                p.display()
            )),
            None => Error::config(
                "no place for the vault: HOME is not set; set HOME, XDG_DATA_HOME or TAPCRED_VAULT",
            ),
        }
    }

    /// One secret from the open vault (no unlock: [`VaultSession::open`] first).
    pub fn get_opened(&self, name: &EntryName) -> Result<Secret> {
        let vault = self.open.get().ok_or_else(|| {
            Error::internal(format!(
                "the vault {} was read before it was opened",
                self.shown()
            ))
        })?;
        Ok(vault.get(name)?)
    }

    /// One secret, opening the vault first if this process has not yet.
    pub fn secret(&self, name: &EntryName, env: &dyn EnvLookup, ui: &dyn Ui) -> Result<Secret> {
        self.open(env, ui)?;
        self.get_opened(name)
    }

    /// The long-term access key of `profile` (`tapcred_access_key = vault`), as
    /// credentials; the vault opens on the first request of this process.
    pub fn access_key(
        &self,
        profile: &str,
        env: &dyn EnvLookup,
        ui: &dyn Ui,
    ) -> Result<crate::credentials::Credentials> {
        self.check_access_key(profile)?;
        self.open(env, ui)?;
        self.opened_access_key(profile)
    }

    /// [`VaultSession::access_key`] with the devices found by `connect`.
    pub fn access_key_with(
        &self,
        profile: &str,
        connect: &mut Connector<'_>,
        ui: &dyn Ui,
    ) -> Result<crate::credentials::Credentials> {
        self.check_access_key(profile)?;
        self.open_with(connect, ui)?;
        self.opened_access_key(profile)
    }

    /// The vault exists and lists an access key for `profile` (no unlock).
    fn check_access_key(&self, profile: &str) -> Result<()> {
        if !self.lists(&EntryName::access_key(profile))? {
            return Err(match self.file()? {
                None => self.no_vault_for_key(profile),
                Some(_) => Error::config(format!(
                    "profile \"{profile}\" has tapcred_access_key = vault, but the vault {} holds no access key for it; move the key in with `tapcred vault import-keys --profile {profile}`",
                    self.shown()
                )),
            });
        }
        Ok(())
    }

    fn opened_access_key(&self, profile: &str) -> Result<crate::credentials::Credentials> {
        match self.get_opened(&EntryName::access_key(profile))? {
            Secret::AccessKey {
                access_key_id,
                secret_access_key,
            } => Ok(crate::credentials::Credentials {
                access_key_id,
                secret_access_key: secrecy::SecretString::from(secret_access_key.as_str()),
                session_token: None,
                expiration: None,
            }),
            Secret::TotpSeed(_) => Err(VaultError::Damaged(format!(
                "entry {:?} is not an {}",
                profile,
                EntryKind::AccessKey.label()
            ))
            .into()),
        }
    }

    fn no_vault_for_key(&self, profile: &str) -> Error {
        match self.path() {
            Some(p) => Error::config(format!(
                "profile \"{profile}\" has tapcred_access_key = vault, but there is no vault at {}; create it with `tapcred vault init --unlock otp` and `tapcred vault import-keys --profile {profile}`",
                p.display()
            )),
            None => self.no_vault(),
        }
    }
}

/// The vault path a profile's `tapcred_access_key = vault` refers to (for cache keys and
/// messages); None when HOME, XDG_DATA_HOME and TAPCRED_VAULT are all unset.
pub fn default_path(env: &dyn EnvLookup) -> Option<PathBuf> {
    VaultStore::default_path(env)
}

#[cfg(test)]
mod tests;
