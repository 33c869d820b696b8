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
//! The device side is the [`Fido2Device`] trait: the real adapter over `ctap-hid-fido2`
//! lives in `platform::fido2` (not on Windows: raw FIDO HID needs administrator rights
//! there), the in-memory authenticator of the testkit serves the unit tests.

use std::fmt;
use std::sync::{Arc, Mutex, TryLockError, mpsc};
use std::time::Duration;

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::format::{UnlockerDesc, UnlockerKind};
use super::unlock::{UnlockOutput, Unlocker};
use crate::error::{Error, Result};
use crate::token::EnvLookup;
use crate::ui::Ui;

/// The relying party id of every credential tapcred makes.
pub const RP_ID: &str = "tapcred:vault";
/// Headless PIN source.
pub const PIN_ENV: &str = "TAPCRED_FIDO_PIN";
const SALT_LEN: usize = 32;

/// A FIDO2 PIN. Zeroized on drop; Debug shows nothing.
#[derive(Clone)]
pub struct Fido2Pin(Zeroizing<String>);

impl Fido2Pin {
    /// CTAP2: at least 4 Unicode characters, at most 63 bytes.
    pub fn new(pin: &str, origin: &str) -> Result<Self> {
        let pin = pin.trim_end_matches(['\r', '\n']);
        if pin.chars().count() < 4 || pin.len() > 63 {
            return Err(Error::usage(format!(
                "the FIDO2 PIN from {origin} must be 4 to 63 bytes long (nothing was sent to the authenticator)"
            )));
        }
        Ok(Fido2Pin(Zeroizing::new(pin.to_owned())))
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Fido2Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Fido2Pin(<redacted>)")
    }
}

/// What authenticatorGetInfo tells the unlocker.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fido2Info {
    pub aaguid: Vec<u8>,
    /// The `hmac-secret` extension is supported.
    pub hmac_secret: bool,
    /// `clientPin` option: `None` = no PIN support, `Some(false)` = none set, `Some(true)` = set.
    pub client_pin: Option<bool>,
    /// `alwaysUv`: every assertion needs user verification.
    pub always_uv: bool,
    /// `makeCredUvNotRqd`: a non-discoverable credential can be made without the PIN.
    pub make_cred_uv_not_rqd: bool,
}

/// A CTAP2 status (the authenticator said no) or a transport failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Fido2Error {
    /// A CTAP2 status code (`CTAP2_ERR_*`), e.g. 0x31 PIN invalid.
    #[error("CTAP2 status 0x{0:02X}")]
    Ctap(u8),
    /// HID, framing, CBOR or crypto failure; the text names what failed in tapcred's words
    /// (never a secret).
    #[error("{0}")]
    Transport(String),
    /// No answer within the exchange's deadline (the key took the request and went silent).
    #[error("no answer within {} s", .0.as_secs())]
    NoAnswer(Duration),
    /// A failure already said in full (another process kept the key too long).
    #[error(transparent)]
    Said(Error),
}

/// Whether a silent probe says the authenticator holds the credential: a success is yes,
/// "no credentials" is no, anything else (busy, a garbled answer, a refusal) is an error.
/// The one exception is "user verification required": a key with `alwaysUv` refuses every
/// assertion without a PIN, silent ones included, so it may hold the credential and the
/// real unlock (with the PIN) decides.
pub fn holds_credential(
    probe: std::result::Result<(), Fido2Error>,
) -> std::result::Result<bool, Fido2Error> {
    match probe {
        Ok(()) => Ok(true),
        Err(Fido2Error::Ctap(status::NO_CREDENTIALS | status::INVALID_CREDENTIAL)) => Ok(false),
        Err(Fido2Error::Ctap(status::PIN_REQUIRED)) => Ok(true),
        Err(e) => Err(e),
    }
}

pub mod status {
    /// CTAP1_ERR_CHANNEL_BUSY: another program is in the middle of an exchange with the key.
    pub const CHANNEL_BUSY: u8 = 0x06;
    pub const NO_CREDENTIALS: u8 = 0x2E;
    pub const USER_ACTION_TIMEOUT: u8 = 0x2F;
    pub const OPERATION_DENIED: u8 = 0x27;
    pub const ACTION_TIMEOUT: u8 = 0x3A;
    pub const KEEPALIVE_CANCEL: u8 = 0x2D;
    pub const UNSUPPORTED_EXTENSION: u8 = 0x16;
    pub const INVALID_CREDENTIAL: u8 = 0x22;
    pub const PIN_INVALID: u8 = 0x31;
    pub const PIN_BLOCKED: u8 = 0x32;
    pub const PIN_AUTH_INVALID: u8 = 0x33;
    pub const PIN_AUTH_BLOCKED: u8 = 0x34;
    pub const PIN_NOT_SET: u8 = 0x35;
    pub const PIN_REQUIRED: u8 = 0x36;
    pub const PIN_POLICY_VIOLATION: u8 = 0x37;
    pub const UV_BLOCKED: u8 = 0x3C;

    /// A status tapcred has no sentence for, in words where the CTAP spec has a name.
    pub fn describe(code: u8) -> String {
        let name = match code {
            0x01 => "an invalid command",
            0x02 => "an invalid parameter",
            0x03 => "an invalid length",
            0x05 => "a timeout in the middle of a message",
            0x0B => "an invalid channel",
            0x11 => "a malformed request",
            0x12 => "a missing parameter",
            0x14 => "an unsupported option",
            0x28 => "a full credential store",
            0x7F => "another error",
            _ => "an unknown status",
        };
        format!("{name} (CTAP status 0x{code:02X})")
    }
}

/// What the vault needs from one FIDO2 authenticator.
pub trait Fido2Device {
    /// A name for messages ("YubiKey OTP+FIDO+CCID").
    fn label(&self) -> String;
    fn info(&mut self) -> std::result::Result<Fido2Info, Fido2Error>;
    /// ClientPIN getPINRetries.
    fn pin_retries(&mut self) -> std::result::Result<u32, Fido2Error>;
    /// A non-discoverable credential for `rp_id` with `hmac-secret` enabled (one touch).
    /// Returns the credential id.
    fn make_credential(
        &mut self,
        rp_id: &str,
        pin: Option<&Fido2Pin>,
    ) -> std::result::Result<Vec<u8>, Fido2Error>;
    /// Check `pin` with no touch (a silent GetAssertion with the PIN): `Ok(())` when the
    /// key accepts it, the PIN's CTAP2 status (wrong, blocked, ...) when not. Run before any
    /// exchange that needs a touch, so that a wrong PIN never asks for one.
    fn check_pin(&mut self, rp_id: &str, pin: &Fido2Pin) -> std::result::Result<(), Fido2Error>;
    /// A silent GetAssertion for `credential_id` (`up = false`, no UV, no extension: no
    /// touch, no PIN): `Ok(())` when the authenticator holds it, `Err(Ctap(NO_CREDENTIALS))`
    /// when not. Read through [`holds_credential`].
    fn probe_credential(
        &mut self,
        rp_id: &str,
        credential_id: &[u8],
    ) -> std::result::Result<(), Fido2Error>;
    /// GetAssertion for `credential_id` with one hmac-secret salt, user presence (one
    /// touch), and user verification exactly when `pin` is given. Returns output1.
    fn hmac_secret(
        &mut self,
        rp_id: &str,
        credential_id: &[u8],
        salt: &[u8; 32],
        pin: Option<&Fido2Pin>,
    ) -> std::result::Result<Zeroizing<[u8; 32]>, Fido2Error>;
}

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

/// How long one exchange with a FIDO2 key may take, and how a busy key is retried.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// An exchange without a touch: info, PIN retries, the silent probe, the PIN check.
    pub quick: Duration,
    /// An exchange that waits for a touch: the key's own touch timeout plus a margin.
    pub touch: Duration,
    /// First pause before retrying a busy key (doubled each time), and how many retries.
    pub busy_pause: Duration,
    pub busy_retries: u32,
}

/// How long a YubiKey waits for its button before it gives up on a request.
pub const KEY_TOUCH_TIMEOUT: Duration = Duration::from_secs(30);

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines {
            quick: Duration::from_secs(10),
            touch: KEY_TOUCH_TIMEOUT + Duration::from_secs(5),
            busy_pause: Duration::from_millis(100),
            busy_retries: 5,
        }
    }
}

type DevResult<T> = std::result::Result<T, Fido2Error>;

/// Run one exchange on a worker thread and give up after `limit` ([`Fido2Error::NoAnswer`]).
/// A key that takes a request and never answers leaves its reader blocked for good: that
/// thread is abandoned (the caller fails and the process exits).
pub fn with_deadline<T: Send + 'static>(
    limit: Duration,
    exchange: impl FnOnce() -> DevResult<T> + Send + 'static,
) -> DevResult<T> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("fido2-exchange".to_owned())
        .spawn(move || {
            let _ = tx.send(exchange());
        })
        .map_err(|e| {
            Fido2Error::Transport(format!("cannot start a thread for the exchange ({e})"))
        })?;
    match rx.recv_timeout(limit) {
        Ok(r) => r,
        Err(mpsc::RecvTimeoutError::Timeout) => Err(Fido2Error::NoAnswer(limit)),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(Fido2Error::Transport(
            "the exchange ended without an answer".to_owned(),
        )),
    }
}

/// Takes the key for one exchange (the per-key cross-process lock, [`crate::token::keylock`]).
pub type KeyLocker = Box<dyn Fn() -> Result<crate::token::keylock::KeyLock> + Send + Sync>;

/// A FIDO2 key that other processes may be talking to, or that may stop answering: each
/// exchange of the inner device holds the key's lock (taken before the deadline starts, so
/// waiting for another process does not count against it), runs under a deadline, and is
/// retried with a growing pause while the key answers "channel busy".
pub struct SharedKey<D> {
    inner: Arc<Mutex<D>>,
    label: String,
    lock: Option<KeyLocker>,
    deadlines: Deadlines,
}

impl<D: Fido2Device + Send + 'static> SharedKey<D> {
    pub fn new(inner: D, lock: Option<KeyLocker>, deadlines: Deadlines) -> Self {
        let label = inner.label();
        SharedKey {
            inner: Arc::new(Mutex::new(inner)),
            label,
            lock,
            deadlines,
        }
    }

    fn run<T: Send + 'static>(
        &self,
        limit: Duration,
        exchange: impl Fn(&mut D) -> DevResult<T> + Send + Sync + 'static,
    ) -> DevResult<T> {
        let exchange = Arc::new(exchange);
        let mut pause = self.deadlines.busy_pause;
        let mut retries = 0;
        loop {
            let held = match &self.lock {
                Some(lock) => Some(lock().map_err(Fido2Error::Said)?),
                None => None,
            };
            let (inner, exchange) = (self.inner.clone(), exchange.clone());
            let r = with_deadline(limit, move || {
                let _held = held;
                let mut dev = match inner.try_lock() {
                    Ok(d) => d,
                    Err(TryLockError::WouldBlock) => {
                        return Err(Fido2Error::Transport(
                            "it is still in an earlier exchange that never answered".to_owned(),
                        ));
                    }
                    Err(TryLockError::Poisoned(p)) => p.into_inner(),
                };
                exchange(&mut dev)
            });
            match r {
                Err(Fido2Error::Ctap(status::CHANNEL_BUSY))
                    if retries < self.deadlines.busy_retries =>
                {
                    tracing::debug!(key = %self.label, ?pause, "FIDO2 key busy; retrying");
                    std::thread::sleep(pause);
                    pause *= 2;
                    retries += 1;
                }
                r => return r,
            }
        }
    }
}

impl<D: Fido2Device + Send + 'static> Fido2Device for SharedKey<D> {
    fn label(&self) -> String {
        self.label.clone()
    }
    fn info(&mut self) -> DevResult<Fido2Info> {
        self.run(self.deadlines.quick, |d| d.info())
    }
    fn pin_retries(&mut self) -> DevResult<u32> {
        self.run(self.deadlines.quick, |d| d.pin_retries())
    }
    fn check_pin(&mut self, rp_id: &str, pin: &Fido2Pin) -> DevResult<()> {
        let (rp, pin) = (rp_id.to_owned(), pin.clone());
        self.run(self.deadlines.quick, move |d| d.check_pin(&rp, &pin))
    }
    fn make_credential(&mut self, rp_id: &str, pin: Option<&Fido2Pin>) -> DevResult<Vec<u8>> {
        let (rp, pin) = (rp_id.to_owned(), pin.cloned());
        self.run(self.deadlines.touch, move |d| {
            d.make_credential(&rp, pin.as_ref())
        })
    }
    fn probe_credential(&mut self, rp_id: &str, credential_id: &[u8]) -> DevResult<()> {
        let (rp, cred) = (rp_id.to_owned(), credential_id.to_vec());
        self.run(self.deadlines.quick, move |d| {
            d.probe_credential(&rp, &cred)
        })
    }
    fn hmac_secret(
        &mut self,
        rp_id: &str,
        credential_id: &[u8],
        salt: &[u8; 32],
        pin: Option<&Fido2Pin>,
    ) -> DevResult<Zeroizing<[u8; 32]>> {
        let (rp, cred, salt, pin) = (
            rp_id.to_owned(),
            credential_id.to_vec(),
            Zeroizing::new(*salt),
            pin.cloned(),
        );
        self.run(self.deadlines.touch, move |d| {
            d.hmac_secret(&rp, &cred, &salt, pin.as_ref())
        })
    }
}

/// One FIDO HID interface (usage page 0xF1D0) plugged in, as listed (nothing is sent to it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fido2Interface {
    pub path: String,
    pub product: String,
    pub vid: u16,
    pub pid: u16,
}

/// Open the one FIDO2 authenticator plugged in: `Ok(None)` when there is none; an error when
/// there are several (naming them) or on Windows (not available in this version).
pub fn open_authenticator() -> Result<Option<Box<dyn Fido2Device>>> {
    open_authenticator_with(&crate::env::RealEnv)
}

/// [`open_authenticator`], the key's lock folder found through `env`.
pub fn open_authenticator_with(env: &dyn EnvLookup) -> Result<Option<Box<dyn Fido2Device>>> {
    crate::platform::fido2::open_authenticator(env)
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

/// Choose among the authenticators found: none → `None`, one → it, several → an error
/// naming them (the PIN or touch could go to the wrong one).
pub fn choose_one<T>(mut found: Vec<T>, names: &[String]) -> Result<Option<T>> {
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        n => Err(Error::token(format!(
            "{n} FIDO2 authenticators are plugged in ({}); unplug all but the one that unlocks the vault",
            names.join(", ")
        ))),
    }
}
