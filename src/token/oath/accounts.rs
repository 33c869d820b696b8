//! Writing to the key's OATH applet: add and delete accounts (`tapcred enroll`).

use serde::Serialize;

use super::prepare::unlocked_session;
use super::{HashAlgo, NewCredential, OathError};
use crate::env::{EnvLookup, RealEnv};
use crate::error::{Error, Result};
use crate::token::TokenSettings;
use crate::token::device::Backend;
use crate::token::pcsc::PcscBackend;
use crate::ui::Ui;

/// What [`add_account`] stored.
#[derive(Debug, Clone, Serialize)]
pub struct Enrolled {
    pub serial: Option<u32>,
    pub reader: String,
    /// The credential ID as stored.
    pub name: String,
    /// An account of that name was overwritten.
    pub replaced: bool,
}

/// Store an OATH credential on the chosen key (`tapcred enroll`). Refuses to overwrite an
/// existing account unless `overwrite`, and refuses what the firmware cannot do (touch
/// before 4.2.6, SHA-512 before 4.3.1, the 4.0–4.3.4 prefix-overwrite bug).
pub fn add_account(
    settings: &TokenSettings,
    cred: &NewCredential,
    overwrite: bool,
    ui: &dyn Ui,
) -> Result<Enrolled> {
    add_account_with(&PcscBackend::new(), &RealEnv, settings, cred, overwrite, ui)
}

pub fn add_account_with(
    backend: &dyn Backend,
    env: &dyn EnvLookup,
    settings: &TokenSettings,
    cred: &NewCredential,
    overwrite: bool,
    ui: &dyn Ui,
) -> Result<Enrolled> {
    let (mut s, label, info) = unlocked_session(backend, env, settings, ui)?;
    let name = cred.id.format(cred.kind);
    let version = s.info().version.unwrap_or([0, 0, 0]);
    let vstr = s
        .info()
        .version_string()
        .unwrap_or_else(|| "unknown".into());
    if cred.touch && version < [4, 2, 6] {
        return Err(Error::token(format!(
            "{label} (OATH version {vstr}) cannot require touch for an account; touch needs firmware 4.2.6 or later"
        )));
    }
    if cred.algo == HashAlgo::Sha512 && version < [4, 3, 1] {
        return Err(Error::token(format!(
            "{label} (OATH version {vstr}) does not support SHA-512 accounts; use SHA-1 (what AWS uses)"
        )));
    }
    let existing: Vec<String> = s
        .list()
        .map_err(|e| e.into_error(&label))?
        .iter()
        .map(|e| e.name())
        .collect();
    let replaced = existing.contains(&name);
    if replaced && !overwrite {
        return Err(Error::token(format!(
            "OATH account \"{name}\" already exists on {label}; choose another name or confirm replacing it"
        )));
    }
    if version > [4, 0, 0]
        && version < [4, 3, 5]
        && let Some(longer) = existing
            .iter()
            .find(|e| e.len() > name.len() && e.starts_with(name.as_str()))
    {
        return Err(Error::token(format!(
            "{label} (firmware {vstr}) would corrupt \"{longer}\" when adding \"{name}\" (a firmware bug with names that are prefixes of others); choose another name"
        )));
    }
    s.put(cred).map_err(|e| match e {
        OathError::Malformed(m) => Error::usage(format!("cannot store the account: {m}")),
        other => other.into_error(&label),
    })?;
    tracing::debug!(account = %name, key = %label, replaced, "OATH account stored");
    Ok(Enrolled {
        serial: info.serial,
        reader: info.reader,
        name,
        replaced,
    })
}

/// Remove an OATH account from the chosen key. An unknown name is an error listing the
/// accounts present (checked with LIST first: Nitrokey-style applets delete silently).
pub fn delete_account(settings: &TokenSettings, name: &str, ui: &dyn Ui) -> Result<()> {
    delete_account_with(&PcscBackend::new(), &RealEnv, settings, name, ui)
}

pub fn delete_account_with(
    backend: &dyn Backend,
    env: &dyn EnvLookup,
    settings: &TokenSettings,
    name: &str,
    ui: &dyn Ui,
) -> Result<()> {
    let (mut s, label, _) = unlocked_session(backend, env, settings, ui)?;
    let existing: Vec<String> = s
        .list()
        .map_err(|e| e.into_error(&label))?
        .iter()
        .map(|e| e.name())
        .collect();
    if !existing.iter().any(|e| e == name) {
        return Err(Error::token(format!(
            "no OATH account \"{name}\" on {label} (accounts: {})",
            if existing.is_empty() {
                "none".to_owned()
            } else {
                existing
                    .iter()
                    .map(|e| format!("\"{e}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        )));
    }
    s.delete(name.as_bytes()).map_err(|e| e.into_error(&label))
}
