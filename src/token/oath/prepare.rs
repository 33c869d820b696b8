//! Key preparation: choose the key, unlock its applet (password from the env or the
//! terminal), match an account to an `mfa_serial` (docs/architecture.md's rules) with one
//! CALCULATE_ALL, and turn what happened into `auto`'s "skip" or a fatal error.

use std::sync::Arc;

use secrecy::ExposeSecret;
use zeroize::Zeroizing;

use super::{
    CredentialId, OathError, OathSource, OathType, PASSWORD_ENV, Session, codec, matching, name,
};
use crate::env::{EnvLookup, RealEnv};
use crate::error::{Error, Result};
use crate::token::device::{self, Backend, Connection};
use crate::token::pcsc::PcscBackend;
use crate::token::{Code, CodeRequest, TokenSettings, TokenSource};
use crate::ui::Ui;

/// Why an OATH source could not be prepared.
pub(super) enum Fail {
    /// Nothing usable here: `auto` moves on (no pcscd, no key, no matching account).
    Skip(Error),
    /// The user must fix this now (ambiguity, wrong password, busy key, broken replies).
    Fatal(Error),
}

impl Fail {
    pub(super) fn into_error(self) -> Error {
        match self {
            Fail::Skip(e) | Fail::Fatal(e) => e,
        }
    }
}

/// What to look for on the key.
enum Want<'a> {
    /// A profile's `mfa_serial`, matched by docs/architecture.md's rules.
    MfaSerial(&'a str),
    /// `tapcred code SELECTOR`: an exact account name, else an `mfa_serial`.
    Selector(&'a str),
}

pub(super) fn choose_key(
    backend: &dyn Backend,
    settings: &TokenSettings,
) -> Result<device::FoundKey, Fail> {
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
pub(super) fn password_key(
    salt: &[u8],
    label: &str,
    env: &dyn EnvLookup,
    ui: &dyn Ui,
) -> Result<Option<Zeroizing<[u8; 16]>>> {
    if let Some(pw) = env.var(PASSWORD_ENV).filter(|p| !p.is_empty()) {
        let pw = Zeroizing::new(pw);
        return Ok(Some(codec::derive_key(pw.as_bytes(), salt)));
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
        return Ok(Some(codec::derive_key(pw.expose_secret().as_bytes(), salt)));
    }
    Ok(None)
}

/// A Yubico OTP as typed by the key: 32 to 64 modhex characters.
fn looks_like_otp(s: &str) -> bool {
    (32..=64).contains(&s.len()) && s.bytes().all(|b| b"cbdefghijklnrtuv".contains(&b))
}

pub(super) fn missing_password(label: &str) -> Error {
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
    let challenge = codec::totp_challenge(matched_at, name::DEFAULT_PERIOD);
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
        codec::AllResult::Code(t) if period == name::DEFAULT_PERIOD => Some((
            matched_at / name::DEFAULT_PERIOD as u64,
            t.code(),
            s.exchanged(),
        )),
        _ => None,
    };
    let touch = matches!(entry.result, codec::AllResult::Touch { .. });
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
        matching::MatchError::NoMatch { present } => Fail::Skip(
            Error::token(format!(
                "no OATH account on {label} matches {mfa_serial} (accounts: {}); add it with `tapcred enroll` or set tapcred_oath_account in {in_profile}",
                list(&present)
            ))
            .with_reason(crate::error::Reason::NoAccount),
        ),
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

/// For `auto`: `Ok(Err(why))` when no YubiKey/pcscd/matching account is there (`why` is
/// the error `oath` would have given, with its [`crate::error::Reason`] where a caller
/// decides on it: [`ServiceMissing`](crate::error::Reason::ServiceMissing),
/// [`NoAccount`](crate::error::Reason::NoAccount)); `Err` only for problems the user must
/// fix now (ambiguous accounts, several keys without `tapcred_yubikey_serial`, wrong
/// password).
pub fn probe(
    settings: &TokenSettings,
    mfa_serial: &str,
    ui: &dyn Ui,
) -> Result<Result<OathSource, Error>> {
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
) -> Result<Result<OathSource, Error>> {
    match prepare(backend, env, settings, Want::MfaSerial(mfa_serial), ui) {
        Ok(s) => Ok(Ok(s)),
        Err(Fail::Skip(e)) => Ok(Err(e)),
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
    Ok((src.account().to_owned(), code))
}

/// An OATH session on a key found through a [`Backend`].
pub type KeySession = Session<Box<dyn Connection>>;

/// The chosen key's OATH session, unlocked when a password is set (for enrollment).
pub(super) fn unlocked_session(
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
