//! `tapcred devices`: every key with its OATH accounts, read without calculating a code
//! anyone could use and without moving an HOTP counter.

use serde::Serialize;

use super::prepare::password_key;
use super::{CredentialId, HashAlgo, OathType, PASSWORD_ENV, Session, codec, name};
use crate::env::{EnvLookup, RealEnv};
use crate::error::Result;
use crate::token::device::{self, Backend};
use crate::token::pcsc::PcscBackend;
use crate::ui::Ui;

/// One key for `tapcred devices [--json]`.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceReport {
    pub reader: String,
    pub serial: Option<u32>,
    pub firmware: Option<String>,
    pub form_factor: Option<String>,
    /// OATH applet version from SELECT.
    pub oath_version: Option<String>,
    /// ykman's device ID (from the applet NAME).
    pub device_id: Option<String>,
    pub password_set: bool,
    /// Password set and not unlocked (no password available): `accounts` is empty.
    pub locked: bool,
    pub accounts: Vec<AccountReport>,
    /// Why this key could not be read completely.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AccountReport {
    pub name: String,
    pub issuer: Option<String>,
    pub account: String,
    #[serde(rename = "type")]
    pub kind: OathType,
    pub algorithm: Option<HashAlgo>,
    /// Seconds per code (TOTP only).
    pub period: Option<u32>,
    pub digits: Option<u8>,
    /// `None` when the key does not say (HOTP).
    pub touch: Option<bool>,
}

/// Every YubiKey with its OATH accounts (no code is calculated, no HOTP counter moves).
pub fn list_devices(ui: &dyn Ui) -> Result<Vec<DeviceReport>> {
    list_devices_with(&PcscBackend::new(), &RealEnv, ui)
}

pub fn list_devices_with(
    backend: &dyn Backend,
    env: &dyn EnvLookup,
    ui: &dyn Ui,
) -> Result<Vec<DeviceReport>> {
    let readers = backend.readers()?;
    let keys = device::find_keys(backend, readers)?;
    let mut out = Vec::with_capacity(keys.len());
    for k in keys {
        let label = k.label();
        let mut report = DeviceReport {
            reader: k.reader.clone(),
            serial: k.info.serial,
            firmware: k.info.firmware.clone(),
            form_factor: k.info.form_factor.clone(),
            oath_version: None,
            device_id: None,
            password_set: false,
            locked: false,
            accounts: Vec::new(),
            error: None,
        };
        if let Err(e) = fill_accounts(k, &label, env, ui, &mut report) {
            report.error = Some(e.message().to_owned());
        }
        out.push(report);
    }
    Ok(out)
}

fn fill_accounts(
    k: device::FoundKey,
    label: &str,
    env: &dyn EnvLookup,
    ui: &dyn Ui,
    report: &mut DeviceReport,
) -> Result<()> {
    let ext = k.conn.extended_max();
    let mut s = Session::open(k.conn, ext).map_err(|e| e.into_error(label))?;
    report.oath_version = s.info().version_string();
    report.device_id = Some(s.info().device_id());
    report.password_set = s.info().has_password();
    if s.locked() {
        let key = if env.var(PASSWORD_ENV).is_some() || ui.interactive() {
            password_key(&s.info().salt, label, env, ui)?
        } else {
            None
        };
        match key {
            Some(k) => s.validate(&k).map_err(|e| e.into_error(label))?,
            None => {
                report.locked = true;
                return Ok(());
            }
        }
    }
    let list = s.list().map_err(|e| e.into_error(label))?;
    let all = s
        .calculate_all(&codec::totp_challenge(
            crate::clock::now_unix(),
            name::DEFAULT_PERIOD,
        ))
        .map_err(|e| e.into_error(label))?;
    for entry in list {
        let name = entry.name();
        let cid = CredentialId::parse(&name, entry.kind);
        let (digits, touch) = match all.iter().find(|a| a.id == entry.id).map(|a| a.result) {
            Some(codec::AllResult::Code(t)) => (Some(t.digits), Some(false)),
            Some(codec::AllResult::Touch { digits }) => (Some(digits), Some(true)),
            Some(codec::AllResult::Hotp { digits }) => (digits, None),
            Some(codec::AllResult::Full { digits }) => (Some(digits), Some(false)),
            None => (None, None),
        };
        report.accounts.push(AccountReport {
            name,
            issuer: cid.issuer,
            account: cid.account,
            kind: entry.kind,
            algorithm: entry.algo,
            period: (entry.kind == OathType::Totp).then_some(cid.period),
            digits,
            touch,
        });
    }
    Ok(())
}
