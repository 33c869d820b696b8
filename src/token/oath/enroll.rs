//! The key side of `tapcred enroll`: one chosen YubiKey, unlocked once, kept by identity
//! (reader + the applet's NAME salt) with its derived password key, so the checks before
//! anything is created, the PUT, the codes and a rollback DELETE ask for the password once.

use std::sync::Arc;

use zeroize::Zeroizing;

use super::prepare::{choose_key, missing_password, password_key};
use super::{HashAlgo, KeySession, NewCredential, OathError, OathSource, Session, name};
use crate::env::EnvLookup;
use crate::error::{Error, Result};
use crate::token::TokenSettings;
use crate::token::device::Backend;
use crate::ui::Ui;

/// Longest credential name the OATH applet stores.
pub const MAX_NAME_LEN: usize = 64;

pub struct EnrollKey {
    backend: Arc<dyn Backend>,
    reader: String,
    serial: Option<u32>,
    salt: Vec<u8>,
    key: Option<Zeroizing<[u8; 16]>>,
    version: [u8; 3],
    version_text: String,
    label: String,
}

impl std::fmt::Debug for EnrollKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrollKey")
            .field("label", &self.label)
            .field("password", &self.key.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

impl EnrollKey {
    /// Choose the key (`settings.yubikey_serial` when several), SELECT OATH, unlock it
    /// (`$TAPCRED_OATH_PASSWORD` or a prompt).
    pub fn open(
        backend: Arc<dyn Backend>,
        env: &dyn EnvLookup,
        settings: &TokenSettings,
        ui: &dyn Ui,
    ) -> Result<EnrollKey> {
        let mut found = choose_key(&*backend, settings).map_err(|f| f.into_error())?;
        // The serial names the key in messages and in the ykman command of a failed undo.
        if let Err(e) = found.identify() {
            tracing::debug!(error = %e, "key not identified");
        }
        let label = found.label();
        let reader = found.reader.clone();
        let serial = found.info.serial;
        let ext = found.conn.extended_max();
        let mut s = Session::open(found.conn, ext).map_err(|e| e.into_error(&label))?;
        let mut key = None;
        if s.locked() {
            let k = password_key(&s.info().salt, &label, env, ui)?
                .ok_or_else(|| missing_password(&label))?;
            s.validate(&k).map_err(|e| e.into_error(&label))?;
            key = Some(k);
        }
        Ok(EnrollKey {
            backend,
            reader,
            serial,
            salt: s.info().salt.clone(),
            key,
            version: s.info().version.unwrap_or([0, 0, 0]),
            version_text: s
                .info()
                .version_string()
                .unwrap_or_else(|| "unknown".into()),
            label,
        })
    }

    pub fn label(&self) -> &str {
        &self.label
    }
    pub fn serial(&self) -> Option<u32> {
        self.serial
    }

    /// A new session on the same key, unlocked.
    fn session(&self) -> Result<KeySession> {
        let conn = self.backend.connect(&self.reader)?.ok_or_else(|| {
            Error::token(format!(
                "{} is no longer in reader \"{}\"; insert it and run again",
                self.label, self.reader
            ))
        })?;
        let ext = conn.extended_max();
        let mut s = Session::open(conn, ext).map_err(|e| e.into_error(&self.label))?;
        if s.info().salt != self.salt {
            return Err(Error::token(format!(
                "the key in reader \"{}\" is no longer {} (or its OATH applet was reset)",
                self.reader, self.label
            )));
        }
        if s.locked() {
            let k = self
                .key
                .as_ref()
                .ok_or_else(|| missing_password(&self.label))?;
            s.validate(k).map_err(|e| e.into_error(&self.label))?;
        }
        Ok(s)
    }

    /// The names of the OATH accounts on the key.
    pub fn accounts(&self) -> Result<Vec<String>> {
        let mut s = self.session()?;
        Ok(s.list()
            .map_err(|e| e.into_error(&self.label))?
            .iter()
            .map(|e| e.name())
            .collect())
    }

    /// Whether `name` can be stored as a new account (with touch when `touch`): the name is
    /// free and fits, and the firmware can do it.
    pub fn check_new(&self, name: &str, touch: bool) -> Result<()> {
        if name.is_empty() || name.len() > MAX_NAME_LEN {
            return Err(Error::usage(format!(
                "OATH account name \"{name}\" is {} bytes; the YubiKey stores at most {MAX_NAME_LEN}: choose a shorter --device-name",
                name.len()
            )));
        }
        if touch && self.version < [4, 2, 6] {
            return Err(Error::token(format!(
                "{} (OATH version {}) cannot require touch for an account; touch needs firmware 4.2.6 or later (run without --touch)",
                self.label, self.version_text
            )));
        }
        let existing = self.accounts()?;
        if existing.iter().any(|e| e == name) {
            return Err(Error::token(format!(
                "an OATH account named \"{name}\" is already on {} (from an earlier device?); delete it (ykman oath accounts delete \"{name}\") or choose another --device-name",
                self.label
            )));
        }
        if self.version > [4, 0, 0]
            && self.version < [4, 3, 5]
            && let Some(longer) = existing
                .iter()
                .find(|e| e.len() > name.len() && e.starts_with(name))
        {
            return Err(Error::token(format!(
                "{} (firmware {}) would corrupt \"{longer}\" when adding \"{name}\" (a firmware bug with names that are prefixes of others); choose another --device-name",
                self.label, self.version_text
            )));
        }
        Ok(())
    }

    /// Store a TOTP/SHA-1/6-digit/30 s account named exactly `name` with `seed`.
    pub fn put(&self, name: &str, seed: &[u8], touch: bool) -> Result<()> {
        let cred = NewCredential {
            id: super::CredentialId {
                period: name::DEFAULT_PERIOD,
                issuer: None,
                account: name.to_owned(),
            },
            kind: super::OathType::Totp,
            algo: HashAlgo::Sha1,
            digits: 6,
            secret: Zeroizing::new(seed.to_vec()),
            touch,
            counter: 0,
        };
        let mut s = self.session()?;
        s.put(&cred).map_err(|e| match e {
            OathError::Malformed(m) => Error::usage(format!("cannot store the account: {m}")),
            other => other.into_error(&self.label),
        })?;
        tracing::debug!(account = name, key = %self.label, "OATH account stored");
        Ok(())
    }

    /// DELETE the account `name`.
    pub fn delete(&self, name: &str) -> Result<()> {
        let mut s = self.session()?;
        s.delete(name.as_bytes())
            .map_err(|e| e.into_error(&self.label))
    }

    /// A token source for the account `name` just stored (TOTP, 30 s).
    pub fn source(&self, name: &str, touch: bool) -> OathSource {
        OathSource {
            backend: self.backend.clone(),
            reader: self.reader.clone(),
            serial: self.serial,
            salt: self.salt.clone(),
            account: name.to_owned(),
            id: name.as_bytes().to_vec(),
            touch,
            period: name::DEFAULT_PERIOD,
            key: self.key.clone(),
            last_apdus: 0,
            matched_code: None,
        }
    }
}
