//! FIDO2 authenticators as tapcred talks to them: the [`Fido2Device`] interface, its
//! errors and CTAP2 statuses, [`SharedKey`] (the per-key lock, a deadline on every exchange,
//! retries of a busy key) and the real adapter over `ctap-hid-fido2` ([`ctap_hid`]). The
//! vault's `hmac-secret` unlocker (`vault::fido2`) is built on top; the in-memory
//! authenticator of the testkit implements the same trait for the unit tests.

use std::fmt;
use std::sync::{Arc, Mutex, TryLockError, mpsc};
use std::time::Duration;

use zeroize::Zeroizing;

use crate::env::EnvLookup;
use crate::error::{Error, Result};

pub mod ctap_hid;

/// Open the one FIDO2 authenticator plugged in: `Ok(None)` when there is none; an error when
/// there are several (naming them) or on Windows (not available in this version). `env`
/// finds the folder of its lock.
pub fn open_authenticator(env: &dyn EnvLookup) -> Result<Option<Box<dyn Fido2Device>>> {
    ctap_hid::open_authenticator(env)
}

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

/// What tapcred needs from one FIDO2 authenticator (the vault's unlocker drives it).
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
