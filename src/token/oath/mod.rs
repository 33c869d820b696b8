//! YubiKey OATH applet (YKOATH) over an APDU transport: PC/SC for real keys, in-memory for
//! tests. See `shared/reference/yubikey-protocols.md` part A.
//!
//! Layers: [`apdu`] (encoding, chaining, status words) → [`tlv`] → [`session`] (SELECT,
//! VALIDATE, LIST, CALCULATE, CALCULATE_ALL, PUT, DELETE) → this module (finding the key,
//! the password, matching the account to an `mfa_serial`, touch prompts).
//!
//! APDU budget: [`open`] SELECTs OATH and sends one CALCULATE_ALL (names, types and touch
//! flags in one APDU: LIST would not tell which credentials need a touch); that answer
//! already holds the code of a non-touch 30 s account, so a code for now costs exactly
//! these 2 APDUs (plus VALIDATE when a password is set). The key is identified (management
//! SELECT + READ_CONFIG, for its serial) only when the serial decides something: several
//! keys plugged in, `tapcred_yubikey_serial` set, or a touch account (whose prompt names the
//! key). A code for another window (the engine waited) reconnects for SELECT + CALCULATE.

use std::sync::Arc;

use secrecy::ExposeSecret;
use serde::Serialize;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::token::{Code, CodeRequest, EnvLookup, RealEnv, TokenSettings, TokenSource, window_of};
use crate::ui::Ui;

pub mod apdu;
pub mod device;
pub mod enroll;
pub mod fault;
pub mod matching;
pub mod name;
pub mod pcsc;
pub mod session;
pub mod tlv;

pub use apdu::ApduTransport;
pub use device::{Backend, Connection, DeviceInfo};
pub use fault::OathError;
pub use name::{CredentialId, HashAlgo, OathType};
pub use pcsc::PcscBackend;
pub use session::{NewCredential, Session};

/// Env var holding the OATH applet password for headless runs.
pub const PASSWORD_ENV: &str = "TAPCRED_OATH_PASSWORD";

/// A YubiKey's OATH credential chosen for one `mfa_serial`.
pub struct OathSource {
    backend: Arc<dyn Backend>,
    reader: String,
    serial: Option<u32>,
    /// The applet NAME seen when the account was chosen: a later SELECT must show the same
    /// one, or another key (or a reset applet) is in the reader now.
    salt: Vec<u8>,
    account: String,
    id: Vec<u8>,
    touch: bool,
    period: u32,
    key: Option<Zeroizing<[u8; 16]>>,
    last_apdus: usize,
    /// The code CALCULATE_ALL already returned while matching (non-touch, 30 s accounts):
    /// (time step, code, APDUs that session took). Used once, for a request in that step, so
    /// a cold code costs SELECT + CALCULATE_ALL instead of a second connection.
    matched_code: Option<(u64, Zeroizing<String>, usize)>,
}

impl std::fmt::Debug for OathSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OathSource")
            .field("reader", &self.reader)
            .field("serial", &self.serial)
            .field("account", &self.account)
            .field("touch", &self.touch)
            .field("period", &self.period)
            .field("password", &self.key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl OathSource {
    /// The credential ID on the key.
    pub fn account(&self) -> &str {
        &self.account
    }
    pub fn serial(&self) -> Option<u32> {
        self.serial
    }
    pub fn reader(&self) -> &str {
        &self.reader
    }
    pub fn requires_touch(&self) -> bool {
        self.touch
    }
    /// APDUs the last [`TokenSource::code`] call cost after connecting: a code for the window
    /// matching ran in is the matching session's SELECT + CALCULATE_ALL (+ VALIDATE when
    /// locked); any other window reconnects for SELECT + CALCULATE.
    pub fn last_apdu_count(&self) -> usize {
        self.last_apdus
    }
    fn label(&self) -> String {
        device::label(self.serial, &self.reader)
    }
    fn touch_message(&self, mfa_serial: &str) -> String {
        match self.serial {
            Some(s) => format!("Touch your YubiKey (serial {s}) for {mfa_serial}"),
            None => format!(
                "Touch your YubiKey (in reader \"{}\") for {mfa_serial}",
                self.reader
            ),
        }
    }
}

impl TokenSource for OathSource {
    fn describe(&self) -> String {
        format!("{} OATH \"{}\"", self.label(), self.account)
    }
    fn period(&self) -> u64 {
        self.period as u64
    }
    fn code(&mut self, req: &CodeRequest<'_>, ui: &dyn Ui) -> Result<Code> {
        if let Some((step, digits, apdus)) = self.matched_code.take()
            && req.at / name::DEFAULT_PERIOD as u64 == step
        {
            self.last_apdus = apdus;
            let (window_start, window_end) = window_of(req.at, self.period as u64);
            return Ok(Code {
                digits,
                window_start,
                window_end,
            });
        }
        let label = self.label();
        self.last_apdus = 0;
        let conn = self.backend.connect(&self.reader)?.ok_or_else(|| {
            Error::token(format!(
                "{label} is no longer in reader \"{}\"; insert it and run again",
                self.reader
            ))
        })?;
        let ext = conn.extended_max();
        let mut s = Session::open(conn, ext).map_err(|e| e.into_error(&label))?;
        if s.info().salt != self.salt {
            self.last_apdus = s.exchanged();
            return Err(Error::token(format!(
                "the key in reader \"{}\" is no longer {label} (or its OATH applet was reset); run again",
                self.reader
            )));
        }
        if s.locked() {
            let key = self.key.as_ref().ok_or_else(|| {
                Error::token(format!(
                    "{label}'s OATH applet now has a password; run again to be asked for it"
                ))
            })?;
            s.validate(key).map_err(|e| e.into_error(&label))?;
        }
        let challenge = session::totp_challenge(req.at, self.period);
        let result = if self.touch {
            ui.touch_wait(&self.touch_message(req.mfa_serial));
            let r = s.calculate(&self.id, &challenge, true);
            ui.touch_done(r.is_ok());
            r
        } else {
            s.calculate(&self.id, &challenge, false)
        };
        self.last_apdus = s.exchanged();
        let t = result.map_err(|e| e.into_error(&label))?;
        let (window_start, window_end) = window_of(req.at, self.period as u64);
        Ok(Code {
            digits: t.code(),
            window_start,
            window_end,
        })
    }
}

/// Why an OATH source could not be prepared.
enum Fail {
    /// Nothing usable here: `auto` moves on (no pcscd, no key, no matching account).
    Skip(Error),
    /// The user must fix this now (ambiguity, wrong password, busy key, broken replies).
    Fatal(Error),
}

impl Fail {
    fn into_error(self) -> Error {
        match self {
            Fail::Skip(e) | Fail::Fatal(e) => e,
        }
    }
}

/// What to look for on the key.
enum Want<'a> {
    /// A profile's `mfa_serial`, matched by DESIGN.md's rules.
    MfaSerial(&'a str),
    /// `tapcred code SELECTOR`: an exact account name, else an `mfa_serial`.
    Selector(&'a str),
}

fn choose_key(backend: &dyn Backend, settings: &TokenSettings) -> Result<device::FoundKey, Fail> {
    let readers = backend.readers().map_err(Fail::Skip)?;
    let keys = device::connect_keys(backend, readers).map_err(Fail::Fatal)?;
    device::choose_key(keys, settings.yubikey_serial, &settings.profile).map_err(|e| match e {
        device::ChooseError::NoKey(e) => Fail::Skip(e),
        device::ChooseError::Ambiguous(e) | device::ChooseError::Fatal(e) => Fail::Fatal(e),
    })
}

/// The access key for a locked applet: `$TAPCRED_OATH_PASSWORD`, else asked on the
/// terminal. `Ok(None)` when neither is available. A touch while the prompt is open makes
/// the key type an OTP (32–64 modhex characters): that is caught and asked again.
fn password_key(
    salt: &[u8],
    label: &str,
    env: &dyn EnvLookup,
    ui: &dyn Ui,
) -> Result<Option<Zeroizing<[u8; 16]>>> {
    if let Some(pw) = env.var(PASSWORD_ENV).filter(|p| !p.is_empty()) {
        let pw = Zeroizing::new(pw);
        return Ok(Some(session::derive_key(pw.as_bytes(), salt)));
    }
    let prompt = format!("Password for the OATH applet of {label}: ");
    for _ in 0..3 {
        let Some(pw) = ui.ask_secret(&prompt)? else {
            return Ok(None);
        };
        if looks_like_otp(pw.expose_secret()) {
            ui.warn(&format!(
                "that looked like a YubiKey OTP (the key was touched during the prompt); type the OATH password of {label}"
            ));
            continue;
        }
        return Ok(Some(session::derive_key(
            pw.expose_secret().as_bytes(),
            salt,
        )));
    }
    Ok(None)
}

/// A Yubico OTP as typed by the key: 32 to 64 modhex characters.
fn looks_like_otp(s: &str) -> bool {
    (32..=64).contains(&s.len()) && s.bytes().all(|b| b"cbdefghijklnrtuv".contains(&b))
}

fn missing_password(label: &str) -> Error {
    Error::token(format!(
        "{label}'s OATH applet is password-protected and no password is available: set {PASSWORD_ENV} for headless runs, or run tapcred from a terminal to be asked for it"
    ))
}

fn prepare(
    backend: Arc<dyn Backend>,
    env: &dyn EnvLookup,
    settings: &TokenSettings,
    want: Want<'_>,
    ui: &dyn Ui,
) -> Result<OathSource, Fail> {
    let found = choose_key(&*backend, settings)?;
    let label = found.label();
    let reader = found.reader.clone();
    let mut serial = found.info.serial;
    let identified = found.identified;
    let ext = found.conn.extended_max();
    let mut s = Session::open(found.conn, ext).map_err(|e| match e {
        OathError::NoApplet(_) => Fail::Skip(e.into_error(&label)),
        other => Fail::Fatal(other.into_error(&label)),
    })?;
    let mut key = None;
    if s.locked() {
        let k = password_key(&s.info().salt, &label, env, ui)
            .map_err(Fail::Fatal)?
            .ok_or_else(|| Fail::Fatal(missing_password(&label)))?;
        s.validate(&k)
            .map_err(|e| Fail::Fatal(e.into_error(&label)))?;
        key = Some(k);
    }
    let matched_at = crate::clock::now_unix();
    let challenge = session::totp_challenge(matched_at, name::DEFAULT_PERIOD);
    let entries = s
        .calculate_all(&challenge)
        .map_err(|e| Fail::Fatal(e.into_error(&label)))?;
    let names: Vec<String> = entries.iter().map(|e| e.name()).collect();
    let candidates: Vec<matching::Candidate<'_>> = entries
        .iter()
        .zip(&names)
        .map(|(e, n)| matching::Candidate {
            name: n,
            kind: e.kind(),
        })
        .collect();
    let (mfa_serial, exact) = match want {
        Want::MfaSerial(m) => (m, None),
        Want::Selector(sel) => (sel, names.iter().position(|n| n == sel)),
    };
    let chosen: &str = match exact {
        Some(i) => &names[i],
        None => matching::choose(&candidates, settings.oath_account.as_deref(), mfa_serial)
            .map_err(|e| match_failure(e, &label, mfa_serial, &settings.profile))?,
    };
    let i = names
        .iter()
        .position(|n| n == chosen)
        .expect("chosen from names");
    let entry = &entries[i];
    if entry.kind() == OathType::Hotp {
        return Err(Fail::Fatal(Error::token(format!(
            "OATH account \"{chosen}\" on {label} is HOTP; AWS MFA codes are TOTP, pick a TOTP account"
        ))));
    }
    let period = CredentialId::parse(chosen, OathType::Totp).period;
    tracing::debug!(account = chosen, key = %label, "OATH account chosen");
    let matched_code = match &entry.result {
        session::AllResult::Code(t) if period == name::DEFAULT_PERIOD => Some((
            matched_at / name::DEFAULT_PERIOD as u64,
            t.code(),
            s.exchanged(),
        )),
        _ => None,
    };
    let touch = matches!(entry.result, session::AllResult::Touch { .. });
    let salt = s.info().salt.clone();
    if touch && !identified {
        // The touch prompt names the key by its serial. The code itself needs a new
        // connection anyway (after the prompt), and next to a touch two APDUs cost nothing;
        // a non-touch code never pays for them. Unknown stays unknown (the prompt then
        // names the reader).
        let mut conn = s.into_transport();
        serial = device::read_device_info(&mut conn)
            .ok()
            .and_then(|i| i.serial);
    }
    Ok(OathSource {
        backend,
        reader,
        serial,
        salt,
        account: chosen.to_owned(),
        id: entry.id.clone(),
        touch,
        period,
        key,
        last_apdus: 0,
        matched_code,
    })
}

fn match_failure(e: matching::MatchError, label: &str, mfa_serial: &str, profile: &str) -> Fail {
    let list = |v: &[String]| {
        if v.is_empty() {
            "none".to_owned()
        } else {
            v.iter()
                .map(|s| format!("\"{s}\""))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let in_profile = if profile.is_empty() {
        "the profile".to_owned()
    } else {
        format!("profile \"{profile}\"")
    };
    match e {
        matching::MatchError::ConfiguredMissing {
            configured,
            present,
        } => Fail::Fatal(Error::token(format!(
            "tapcred_oath_account \"{configured}\" in {in_profile} is not on {label} (accounts: {}); correct tapcred_oath_account",
            list(&present)
        ))),
        matching::MatchError::ConfiguredHotp { configured } => Fail::Fatal(Error::token(format!(
            "tapcred_oath_account \"{configured}\" in {in_profile} is an HOTP account on {label}; AWS MFA codes are TOTP, pick a TOTP account"
        ))),
        matching::MatchError::Ambiguous { candidates } => Fail::Fatal(Error::token(format!(
            "several OATH accounts on {label} match {mfa_serial}: {}; set tapcred_oath_account to one of them in {in_profile}",
            list(&candidates)
        ))),
        matching::MatchError::NoMatch { present } => Fail::Skip(Error::token(format!(
            "no OATH account on {label} matches {mfa_serial} (accounts: {}); add it with `tapcred enroll` or set tapcred_oath_account in {in_profile}",
            list(&present)
        ))),
    }
}

/// For `tapcred_token = oath`: find the key and the account, or explain why not.
pub fn open(settings: &TokenSettings, mfa_serial: &str, ui: &dyn Ui) -> Result<OathSource> {
    open_with(
        Arc::new(PcscBackend::new()),
        &RealEnv,
        settings,
        mfa_serial,
        ui,
    )
}

/// [`open`] over any backend and environment (tests pass virtual keys).
pub fn open_with(
    backend: Arc<dyn Backend>,
    env: &dyn EnvLookup,
    settings: &TokenSettings,
    mfa_serial: &str,
    ui: &dyn Ui,
) -> Result<OathSource> {
    prepare(backend, env, settings, Want::MfaSerial(mfa_serial), ui).map_err(Fail::into_error)
}

/// For `auto`: `Ok(None)` when no YubiKey/pcscd/matching account is there (with the reason,
/// for the final "what was tried" message); `Err` only for problems the user must fix now
/// (ambiguous accounts, several keys without `tapcred_yubikey_serial`, wrong password).
pub fn probe(
    settings: &TokenSettings,
    mfa_serial: &str,
    ui: &dyn Ui,
) -> Result<Result<OathSource, String>> {
    probe_with(
        Arc::new(PcscBackend::new()),
        &RealEnv,
        settings,
        mfa_serial,
        ui,
    )
}

pub fn probe_with(
    backend: Arc<dyn Backend>,
    env: &dyn EnvLookup,
    settings: &TokenSettings,
    mfa_serial: &str,
    ui: &dyn Ui,
) -> Result<Result<OathSource, String>> {
    match prepare(backend, env, settings, Want::MfaSerial(mfa_serial), ui) {
        Ok(s) => Ok(Ok(s)),
        Err(Fail::Skip(e)) => Ok(Err(format!("YubiKey OATH ({})", e.message()))),
        Err(Fail::Fatal(e)) => Err(e),
    }
}

/// `tapcred code SELECTOR`: the code for an explicit account name on the key, or for a
/// profile's `mfa_serial` (matched as for `open`), now.
pub fn code_for(selector: &str, settings: &TokenSettings, ui: &dyn Ui) -> Result<(String, Code)> {
    code_for_with(
        Arc::new(PcscBackend::new()),
        &RealEnv,
        selector,
        settings,
        ui,
    )
}

pub fn code_for_with(
    backend: Arc<dyn Backend>,
    env: &dyn EnvLookup,
    selector: &str,
    settings: &TokenSettings,
    ui: &dyn Ui,
) -> Result<(String, Code)> {
    let mut src =
        prepare(backend, env, settings, Want::Selector(selector), ui).map_err(Fail::into_error)?;
    let req = CodeRequest {
        mfa_serial: selector,
        profile: &settings.profile,
        at: crate::clock::now_unix(),
    };
    let code = src.code(&req, ui)?;
    Ok((src.account.clone(), code))
}

/// An OATH session on a key found through a [`Backend`].
pub type KeySession = Session<Box<dyn Connection>>;

/// The chosen key's OATH session, unlocked when a password is set (for enrollment).
fn unlocked_session(
    backend: &dyn Backend,
    env: &dyn EnvLookup,
    settings: &TokenSettings,
    ui: &dyn Ui,
) -> Result<(KeySession, String, device::FoundKeyInfo)> {
    let mut found = choose_key(backend, settings).map_err(Fail::into_error)?;
    // Enrollment reports which key it wrote to.
    found.identify()?;
    let label = found.label();
    let info = device::FoundKeyInfo {
        reader: found.reader.clone(),
        serial: found.info.serial,
    };
    let ext = found.conn.extended_max();
    let mut s = Session::open(found.conn, ext).map_err(|e| e.into_error(&label))?;
    if s.locked() {
        let k = password_key(&s.info().salt, &label, env, ui)?
            .ok_or_else(|| missing_password(&label))?;
        s.validate(&k).map_err(|e| e.into_error(&label))?;
    }
    Ok((s, label, info))
}

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
        .calculate_all(&session::totp_challenge(
            crate::clock::now_unix(),
            name::DEFAULT_PERIOD,
        ))
        .map_err(|e| e.into_error(label))?;
    for entry in list {
        let name = entry.name();
        let cid = CredentialId::parse(&name, entry.kind);
        let (digits, touch) = match all.iter().find(|a| a.id == entry.id).map(|a| a.result) {
            Some(session::AllResult::Code(t)) => (Some(t.digits), Some(false)),
            Some(session::AllResult::Touch { digits }) => (Some(digits), Some(true)),
            Some(session::AllResult::Hotp { digits }) => (digits, None),
            Some(session::AllResult::Full { digits }) => (Some(digits), Some(false)),
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

#[cfg(test)]
mod tests;
