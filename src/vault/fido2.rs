//! The FIDO2 `hmac-secret` vault unlocker (issue 10).
//!
//! A non-discoverable credential is made for tapcred's relying party [`RP_ID`] with the
//! `hmac-secret` extension; its credential id goes into the vault header
//! ([`UnlockerDesc::credential_id`]) and the header's 32-byte random challenge is the
//! hmac-secret salt. The authenticator answers HMAC-SHA-256(CredRandom, salt): 32 bytes that
//! only this authenticator can produce for this credential, turned into the wrapping key by
//! the format's HKDF like any unlocker output.
//!
//! **One UV mode per unlocker.** CTAP 2.1 authenticators keep two CredRandom values per
//! credential, one used with user verification (a PIN) and one without, so the same salt
//! gives two different outputs. The mode is fixed when the unlocker is made and recorded in
//! its id: `fido2:TAG:HASH` is touch only, `fido2:TAG:HASH:pin` asks for the PIN every time
//! (chosen with `--unlock fido2:pin`, or forced by an authenticator with `alwaysUv`). TAG is
//! the start of the authenticator model's AAGUID, HASH the start of SHA-256(credential id).
//!
//! The PIN comes from `TAPCRED_FIDO_PIN` (headless use) or a no-echo prompt on the terminal,
//! never from argv; it is held in a zeroizing [`Fido2Pin`] whose Debug shows nothing.
//!
//! The device side is the token layer's [`Fido2Device`] trait: the real adapter over
//! `ctap-hid-fido2` lives in [`crate::token::fido2::ctap_hid`] (not on Windows: raw FIDO HID
//! needs administrator rights there), the in-memory authenticator of the testkit serves the
//! unit tests.

use std::fmt;

use sha2::{Digest, Sha256};

use super::format::{UnlockerDesc, UnlockerKind};
use super::unlock::{UnlockOutput, Unlocker};
use crate::env::EnvLookup;
use crate::error::{Error, Result};
use crate::token::fido2::{Fido2Device, Fido2Error, Fido2Pin, holds_credential, status};
use crate::ui::Ui;

/// The relying party id of every credential tapcred makes.
pub const RP_ID: &str = "tapcred:vault";
/// Headless PIN source.
pub const PIN_ENV: &str = "TAPCRED_FIDO_PIN";
const SALT_LEN: usize = 32;

/// Whether the unlocker verifies the user (PIN) on every unlock, or only asks for a touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UvMode {
    Touch,
    Pin,
}

/// `fido2` → touch only, `fido2:pin` → PIN and touch (the `--unlock` spec after "fido2").
pub fn parse_mode(rest: Option<&str>) -> Option<UvMode> {
    match rest.map(str::to_ascii_lowercase).as_deref() {
        None | Some("") | Some("touch") => Some(UvMode::Touch),
        Some("pin") | Some("uv") => Some(UvMode::Pin),
        _ => None,
    }
}

/// The mode an unlocker id records.
pub fn mode_of_id(id: &str) -> UvMode {
    if id.ends_with(":pin") {
        UvMode::Pin
    } else {
        UvMode::Touch
    }
}

/// `fido2:TAG:HASH[:pin]`.
pub fn id_for(aaguid: &[u8], credential_id: &[u8], mode: UvMode) -> String {
    let tag = if aaguid.len() >= 4 && aaguid.iter().any(|b| *b != 0) {
        data_encoding::HEXLOWER.encode(&aaguid[..4])
    } else {
        "any".to_owned()
    };
    let hash = data_encoding::HEXLOWER.encode(&Sha256::digest(credential_id)[..4]);
    match mode {
        UvMode::Touch => format!("fido2:{tag}:{hash}"),
        UvMode::Pin => format!("fido2:{tag}:{hash}:pin"),
    }
}

/// A FIDO2 authenticator as a vault unlocker.
pub struct Fido2Unlocker {
    device: Box<dyn Fido2Device>,
    /// The id in the header: known when opening; set by `new_desc` when enrolling.
    id: Option<String>,
    /// The mode asked for when enrolling (opening reads it from the id).
    enroll_mode: UvMode,
    env_pin: Option<String>,
    /// The PIN asked once in this process (enrolling needs it twice).
    pin: Option<Fido2Pin>,
}

impl fmt::Debug for Fido2Unlocker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fido2Unlocker")
            .field("device", &self.device.label())
            .field("id", &self.id)
            .field("pin", &self.pin.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Fido2Unlocker {
    /// For opening a vault with the unlocker `desc`.
    pub fn for_desc(
        device: Box<dyn Fido2Device>,
        desc: &UnlockerDesc,
        env: &dyn EnvLookup,
    ) -> Self {
        Fido2Unlocker {
            device,
            id: Some(desc.id.clone()),
            enroll_mode: mode_of_id(&desc.id),
            env_pin: env.var(PIN_ENV),
            pin: None,
        }
    }

    /// For making a new unlocker (`vault init` / `vault add-unlock`).
    pub fn for_enroll(device: Box<dyn Fido2Device>, mode: UvMode, env: &dyn EnvLookup) -> Self {
        Fido2Unlocker {
            device,
            id: None,
            enroll_mode: mode,
            env_pin: env.var(PIN_ENV),
            pin: None,
        }
    }

    fn who(&self) -> String {
        format!("the FIDO2 authenticator \"{}\"", self.device.label())
    }

    /// The PIN: `TAPCRED_FIDO_PIN`, else a no-echo prompt.
    fn get_pin(&mut self, ui: &dyn Ui) -> Result<Fido2Pin> {
        if let Some(p) = &self.pin {
            return Ok(p.clone());
        }
        let pin = match self.env_pin.as_deref().filter(|p| !p.is_empty()) {
            Some(p) => Fido2Pin::new(p, &crate::platform::words::env_var(PIN_ENV))?,
            None => {
                let who = self.who();
                match ui.ask_secret(&format!("FIDO2 PIN of {who}: "))? {
                    Some(s) => {
                        use secrecy::ExposeSecret;
                        Fido2Pin::new(s.expose_secret(), "the terminal")?
                    }
                    None => {
                        return Err(Error::token(format!(
                            "{who} needs its PIN and there is no terminal to ask on; set {PIN_ENV} for headless use"
                        )));
                    }
                }
            }
        };
        self.pin = Some(pin.clone());
        Ok(pin)
    }

    /// The PIN ([`Self::get_pin`]), checked by the key before any touch is asked for.
    fn checked_pin(&mut self, ui: &dyn Ui) -> Result<Fido2Pin> {
        let pin = self.get_pin(ui)?;
        match self.device.check_pin(RP_ID, &pin) {
            Ok(()) => Ok(pin),
            Err(e) => Err(self.error(e, "checking the PIN")),
        }
    }

    /// Turn a device error into one clear line.
    fn error(&mut self, e: Fido2Error, what: &str) -> Error {
        let who = self.who();
        let id = self.id.clone().unwrap_or_else(|| "fido2".to_owned());
        let from_env = self.env_pin.as_deref().is_some_and(|p| !p.is_empty());
        let pin_origin = if from_env {
            format!("${PIN_ENV}")
        } else {
            "the PIN typed".to_owned()
        };
        let code = match e {
            Fido2Error::Transport(t) => {
                return Error::token(format!(
                    "{what} on {who} failed: {t}; check that it is plugged in and run again"
                ));
            }
            Fido2Error::NoAnswer(t) => {
                return Error::token(format!(
                    "{who} did not answer within {} s ({what}); unplug and re-insert it, then run again",
                    t.as_secs()
                ));
            }
            Fido2Error::Said(e) => return e,
            Fido2Error::Ctap(c) => c,
        };
        match code {
            status::CHANNEL_BUSY => Error::token(format!(
                "{what}: {who} stayed busy with another program (a browser or another FIDO client); run again when that program is done"
            )),
            status::PIN_INVALID | status::PIN_AUTH_INVALID => {
                self.pin = None;
                let left = match self.device.pin_retries() {
                    Ok(n) => format!("{n} tries left before the PIN is blocked"),
                    Err(_) => "the number of tries left is unknown".to_owned(),
                };
                Error::token(format!("wrong FIDO2 PIN for {who} ({pin_origin}); {left}"))
            }
            status::PIN_AUTH_BLOCKED => Error::token(format!(
                "{who} refuses PIN entry after 3 wrong PINs in a row; unplug and re-insert it, then try again with the right PIN"
            )),
            status::PIN_BLOCKED | status::UV_BLOCKED => Error::token(format!(
                "the FIDO2 PIN of {who} is blocked (no tries left); only a reset of its FIDO application helps (`ykman fido reset`), which destroys its credentials: open the vault with a backup unlocker"
            )),
            status::PIN_NOT_SET => Error::token(format!(
                "{who} has no PIN set, but {id} needs user verification; set a PIN (`ykman fido access change-pin`) — if the authenticator was reset, its credential is gone: use a backup unlocker"
            )),
            status::PIN_REQUIRED | status::OPERATION_DENIED if self.pin.is_none() => {
                Error::token(format!(
                    "{who} requires user verification (a PIN) for this, but {id} was made for touch only; with a PIN it would give another secret. Turn alwaysUv off (`ykman fido config toggle-always-uv`), or use a backup unlocker"
                ))
            }
            status::NO_CREDENTIALS | status::INVALID_CREDENTIAL => {
                Error::from(super::VaultError::WrongKey(format!(
                    "{who} (it does not hold the credential of {id}: another authenticator, or it was reset)"
                )))
            }
            status::USER_ACTION_TIMEOUT | status::ACTION_TIMEOUT | status::KEEPALIVE_CANCEL => {
                Error::token(format!(
                    "{what}: {who} was not touched in time; run the command again and touch it when it blinks"
                ))
            }
            status::UNSUPPORTED_EXTENSION => Error::token(format!(
                "{who} does not support the hmac-secret extension, which the FIDO2 vault unlocker needs; use --unlock otp with a YubiKey"
            )),
            status::PIN_POLICY_VIOLATION => Error::usage(format!(
                "{who} rejected the PIN's form (too short or too long)"
            )),
            c => Error::token(format!(
                "{what} on {who} failed: it refused with {}; run again, and if it keeps refusing check it with `ykman fido info`",
                status::describe(c)
            )),
        }
    }
}

impl Unlocker for Fido2Unlocker {
    fn kind(&self) -> UnlockerKind {
        UnlockerKind::Fido2HmacSecret
    }

    fn id(&self) -> String {
        self.id.clone().unwrap_or_else(|| "fido2:new".to_owned())
    }

    /// Make the credential (one touch), then a descriptor holding its id and a fresh salt.
    fn new_desc(&mut self, ui: &dyn Ui) -> Result<UnlockerDesc> {
        let info = self
            .device
            .info()
            .map_err(|e| self.error(e, "reading the authenticator's info"))?;
        let who = self.who();
        if !info.hmac_secret {
            return Err(self.error(
                Fido2Error::Ctap(status::UNSUPPORTED_EXTENSION),
                "making the credential",
            ));
        }
        let mode = if info.always_uv {
            UvMode::Pin
        } else {
            self.enroll_mode
        };
        let pin_set = info.client_pin == Some(true);
        if mode == UvMode::Pin && !pin_set {
            return Err(Error::token(format!(
                "{who} has no PIN set, but {} user verification; set a PIN first (`ykman fido access change-pin`)",
                if info.always_uv {
                    "it requires (alwaysUv)"
                } else {
                    "--unlock fido2:pin asks for"
                }
            )));
        }
        let need_pin = mode == UvMode::Pin || (pin_set && !info.make_cred_uv_not_rqd);
        let pin = if need_pin {
            Some(self.checked_pin(ui)?)
        } else {
            None
        };
        ui.touch_wait(&format!(
            "Touch {who} to make tapcred's vault credential (then once more to test it)"
        ));
        let r = self.device.make_credential(RP_ID, pin.as_ref());
        ui.touch_done(r.is_ok());
        let cred = r.map_err(|e| self.error(e, "making the credential"))?;
        if cred.is_empty() {
            return Err(Error::token(format!(
                "{who} returned an empty credential id"
            )));
        }
        let id = id_for(&info.aaguid, &cred, mode);
        let mut desc = UnlockerDesc::new_random(UnlockerKind::Fido2HmacSecret, id.clone())?;
        desc.challenge.truncate(SALT_LEN);
        desc.credential_id = cred;
        self.id = Some(id);
        Ok(desc)
    }

    fn respond(&mut self, desc: &UnlockerDesc, ui: &dyn Ui) -> Result<UnlockOutput> {
        let salt: [u8; SALT_LEN] = match desc.challenge.as_slice().try_into() {
            Ok(s)
                if desc.kind == UnlockerKind::Fido2HmacSecret && !desc.credential_id.is_empty() =>
            {
                s
            }
            _ => {
                return Err(Error::config(format!(
                    "vault unlocker {:?} is not a usable FIDO2 hmac-secret entry; the vault may be damaged",
                    desc.id
                )));
            }
        };
        self.id = Some(desc.id.clone());
        let pin = match mode_of_id(&desc.id) {
            UvMode::Pin => Some(self.checked_pin(ui)?),
            UvMode::Touch => None,
        };
        let who = self.who();
        ui.touch_wait(&format!(
            "Touch {who} to unlock the tapcred vault ({})",
            desc.id
        ));
        let r = self
            .device
            .hmac_secret(RP_ID, &desc.credential_id, &salt, pin.as_ref());
        ui.touch_done(r.is_ok());
        let out = r.map_err(|e| self.error(e, "unlocking the vault"))?;
        Ok(UnlockOutput::new(out.to_vec()))
    }
}

/// Open the one FIDO2 authenticator plugged in: `Ok(None)` when there is none; an error when
/// there are several (naming them) or on Windows (not available in this version).
pub fn open_authenticator() -> Result<Option<Box<dyn Fido2Device>>> {
    open_authenticator_with(&crate::env::RealEnv)
}

/// [`open_authenticator`], the key's lock folder found through `env`.
pub fn open_authenticator_with(env: &dyn EnvLookup) -> Result<Option<Box<dyn Fido2Device>>> {
    crate::token::fido2::open_authenticator(env)
}

/// The unlocker for header entry `desc`, if the FIDO2 authenticator plugged in holds its
/// credential (checked silently: no touch, no PIN). Another key is "not here", so the
/// vault's next unlocker (a backup FIDO2 key, an OTP slot) gets its turn.
pub fn connect(desc: &UnlockerDesc, env: &dyn EnvLookup) -> Result<Option<Fido2Unlocker>> {
    match open_authenticator_with(env)? {
        Some(dev) => connect_device(dev, desc, env),
        None => Ok(None),
    }
}

/// [`connect`] for a given device. A key that does not hold the unlocker's credential is a
/// [`crate::error::Reason::WrongDevice`] error ("cannot open this vault"): the caller tries
/// the vault's next unlocker and reports it only when none is here.
pub fn connect_device(
    device: Box<dyn Fido2Device>,
    desc: &UnlockerDesc,
    env: &dyn EnvLookup,
) -> Result<Option<Fido2Unlocker>> {
    let mut u = Fido2Unlocker::for_desc(device, desc, env);
    let probe = u.device.probe_credential(RP_ID, &desc.credential_id);
    match holds_credential(probe) {
        Ok(true) => Ok(Some(u)),
        Ok(false) => {
            tracing::info!(unlocker = %desc.id, device = %u.device.label(), "this FIDO2 key does not hold the unlocker's credential");
            Err(u
                .error(
                    Fido2Error::Ctap(status::NO_CREDENTIALS),
                    "checking for the vault's credential",
                )
                .with_reason(crate::error::Reason::WrongDevice))
        }
        Err(e) => Err(u.error(e, "checking for the vault's credential")),
    }
}

/// [`connect`] as the vault's generic unlocker (the FIDO2 arm of `connect_unlocker`).
pub fn connect_unlocker(
    desc: &UnlockerDesc,
    env: &dyn EnvLookup,
) -> Result<Option<Box<dyn Unlocker>>> {
    Ok(connect(desc, env)?.map(|u| Box::new(u) as Box<dyn Unlocker>))
}

/// A new unlocker to enroll: the one authenticator plugged in, or a clear error.
pub fn connect_for_enroll(mode: UvMode, env: &dyn EnvLookup) -> Result<Fido2Unlocker> {
    let dev = open_authenticator_with(env)?.ok_or_else(|| {
        Error::token(format!(
            "no FIDO2 authenticator found; plug in a YubiKey (or another FIDO2 key with hmac-secret); {}",
            crate::platform::words::usb_access_hint()
        ))
    })?;
    Ok(Fido2Unlocker::for_enroll(dev, mode, env))
}

/// Wait until the FIDO2 key that opened the vault is unplugged and another one is plugged
/// in (`present`: whether a FIDO2 key is plugged in now; an error counts as "yes"), polling
/// four times a second for at most `timeout`.
pub fn wait_for_swap(
    present: &mut dyn FnMut() -> Result<bool>,
    ui: &dyn Ui,
    timeout: std::time::Duration,
) -> Result<()> {
    let deadline = std::time::Instant::now() + timeout;
    ui.info(&format!(
        "Unplug the FIDO2 key that opened the vault and plug in the new one (waiting up to {} s)",
        timeout.as_secs()
    ));
    let mut gone = false;
    loop {
        let here = present().unwrap_or(true);
        if !here {
            gone = true;
        } else if gone {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            return Err(Error::token(format!(
                "no new FIDO2 key was plugged in within {} s (the one that opened the vault must be unplugged first); run `tapcred vault add-unlock --unlock fido2` again",
                timeout.as_secs()
            )));
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}
