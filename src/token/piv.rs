//! A YubiKey's PIV key, through the `yubikey` crate: the key is chosen like the OATH path
//! chooses one (`tapcred_yubikey_serial`, else the only key), every exchange runs under a
//! deadline on a worker thread (a key that stops answering fails the command instead of
//! hanging it), the PIN is asked once and never retried on its own, and the touch prompt
//! shows when the slot's touch policy asks for one. The private key never leaves the card:
//! tapcred sends it a SHA-256 digest (ECDSA) or a PKCS#1 v1.5 block (RSA) and gets the
//! signature back.
//!
//! [`open_signer`] is what IAM Roles Anywhere signs through; [`generate`], [`import`] and
//! [`status`] are `tapcred piv init/import/status`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex, TryLockError, mpsc};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use yubikey::YubiKey;
use yubikey::piv::{self as ykpiv, AlgorithmId, ManagementAlgorithmId, SlotId};
use zeroize::Zeroizing;

use crate::env::EnvLookup;
use crate::error::{Error, Result};
use crate::token::device::{self, Candidate, ChooseError};
use crate::token::keylock;
use crate::token::x509::{CertificateSigner, KeyAlgorithm};
use crate::ui::Ui;

/// The environment variable holding the PIV PIN for unattended runs.
pub const PIN_ENV: &str = "TAPCRED_PIV_PIN";
/// The environment variable holding the management key (hex) for `piv init` / `piv import`.
pub const MANAGEMENT_KEY_ENV: &str = "TAPCRED_PIV_MANAGEMENT_KEY";

/// A PIV key slot tapcred signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PivSlot {
    /// 9a, PIV Authentication (PIN once per session by default).
    #[default]
    Authentication,
    /// 9c, Digital Signature (PIN before every signature by default).
    Signature,
    /// 9d, Key Management.
    KeyManagement,
    /// 9e, Card Authentication (no PIN by default).
    CardAuthentication,
}

impl PivSlot {
    pub const NAMES: &'static [&'static str] = &["9a", "9c", "9d", "9e"];

    fn id(self) -> SlotId {
        match self {
            PivSlot::Authentication => SlotId::Authentication,
            PivSlot::Signature => SlotId::Signature,
            PivSlot::KeyManagement => SlotId::KeyManagement,
            PivSlot::CardAuthentication => SlotId::CardAuthentication,
        }
    }
}

impl FromStr for PivSlot {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "9a" => PivSlot::Authentication,
            "9c" => PivSlot::Signature,
            "9d" => PivSlot::KeyManagement,
            "9e" => PivSlot::CardAuthentication,
            other => {
                return Err(format!(
                    "\"{other}\" is not a PIV slot tapcred signs with; use one of 9a, 9c, 9d, 9e"
                ));
            }
        })
    }
}

impl fmt::Display for PivSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PivSlot::Authentication => "9a",
            PivSlot::Signature => "9c",
            PivSlot::KeyManagement => "9d",
            PivSlot::CardAuthentication => "9e",
        })
    }
}

/// Which key: the YubiKey (by serial, or the only one plugged in) and the slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PivKeyRef {
    pub serial: Option<u32>,
    pub slot: PivSlot,
}

/// How long each kind of exchange may take before the key counts as gone silent.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// Finding the key, reading a certificate, the PIN check, metadata.
    pub quick: Duration,
    /// A signature that waits for the button: the key's own touch timeout plus a margin.
    pub touch: Duration,
    /// Key generation on the card (RSA 2048 takes seconds on a real key).
    pub generate: Duration,
}

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines {
            quick: Duration::from_secs(10),
            touch: Duration::from_secs(35),
            generate: Duration::from_secs(120),
        }
    }
}

/// One key as the chooser sees it: opened (the `yubikey` crate reads the serial on open).
struct OpenedKey {
    reader: String,
    key: YubiKey,
}

impl Candidate for OpenedKey {
    fn serial(&self) -> Option<u32> {
        Some(self.key.serial().0).filter(|s| *s != 0)
    }
    fn place(&self) -> &str {
        &self.reader
    }
    fn identify(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Run one exchange on a worker thread; give up after `limit`. A key that takes a request
/// and never answers keeps its thread blocked: that thread is abandoned (the command
/// fails and the process exits).
fn with_deadline<T: Send + 'static>(
    limit: Duration,
    who: &str,
    exchange: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("piv-exchange".to_owned())
        .spawn(move || {
            let _ = tx.send(exchange());
        })
        .map_err(|e| Error::internal(format!("cannot start a thread for the exchange ({e})")))?;
    match rx.recv_timeout(limit) {
        Ok(r) => r,
        Err(mpsc::RecvTimeoutError::Timeout) => Err(Error::token(format!(
            "{who} did not answer within {} s; unplug and re-insert the YubiKey, then run again",
            limit.as_secs()
        ))),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(Error::internal(format!(
            "the exchange with {who} ended without an answer"
        ))),
    }
}

/// A `yubikey` crate error as tapcred says it (exit 4, naming the key).
fn card_error(who: &str, what: &str, e: yubikey::Error) -> Error {
    match e {
        yubikey::Error::PcscError {
            inner:
                Some(
                    pcsc::Error::RemovedCard
                    | pcsc::Error::ResetCard
                    | pcsc::Error::NoSmartcard
                    | pcsc::Error::UnknownReader
                    | pcsc::Error::ReaderUnavailable
                    | pcsc::Error::CommError,
                ),
        } => Error::token(format!(
            "{who} was removed or stopped answering while {what}; insert it and run again"
        )),
        yubikey::Error::PcscError {
            inner: Some(pcsc::Error::NoService | pcsc::Error::ServiceStopped),
        } => Error::token(format!(
            "cannot reach a YubiKey: {}",
            crate::token::pcsc::no_service_hint()
        )),
        yubikey::Error::WrongPin { tries: 0 } | yubikey::Error::PinLocked => Error::token(format!(
            "the PIV PIN of {who} is blocked; unblock it with its PUK (`ykman piv access unblock-pin`), then run again"
        )),
        yubikey::Error::WrongPin { tries } => Error::token(format!(
            "wrong PIV PIN for {who}: {tries} attempt{} left before the PIN is blocked; tapcred does not retry it; run again with the right PIN",
            if tries == 1 { "" } else { "s" }
        )),
        other => Error::token(format!("{who}: PIV error while {what}: {other}")),
    }
}

/// Choose and open the key for `serial` (or the only YubiKey), like the OATH path.
/// `serial_setting` is where the serial came from, for the message when that key is absent.
fn open_key(
    serial: Option<u32>,
    serial_setting: &'static str,
    deadlines: &Deadlines,
) -> Result<(YubiKey, String, String)> {
    let (key, reader) = with_deadline(deadlines.quick, "the YubiKey", move || {
        let mut ctx = yubikey::reader::Context::open()
            .map_err(|e| card_error("the YubiKey", "listing readers", e))?;
        let mut found = Vec::new();
        let readers = ctx
            .iter()
            .map_err(|e| card_error("the YubiKey", "listing readers", e))?;
        for reader in readers {
            let name = reader.name().into_owned();
            if !name.to_lowercase().contains(device::READER_MATCH) {
                continue;
            }
            match reader.open() {
                Ok(key) => found.push(OpenedKey { reader: name, key }),
                Err(e) => tracing::debug!(reader = %name, error = %e, "no PIV applet here"),
            }
        }
        match device::choose_by(found, serial, serial_setting, "", device::NO_PCSC_KEY) {
            Ok(k) => Ok((k.key, k.reader)),
            Err(ChooseError::NoKey(e) | ChooseError::Ambiguous(e) | ChooseError::Fatal(e)) => {
                Err(e)
            }
        }
    })?;
    let label = device::label(Some(key.serial().0).filter(|s| *s != 0), &reader);
    Ok((key, reader, label))
}

/// The shared card a signer and its worker threads use.
type SharedKey = Arc<Mutex<YubiKey>>;

fn run<T: Send + 'static>(
    key: &SharedKey,
    limit: Duration,
    who: &str,
    exchange: impl FnOnce(&mut YubiKey) -> Result<T> + Send + 'static,
) -> Result<T> {
    let key = key.clone();
    let who2 = who.to_owned();
    with_deadline(limit, who, move || {
        let mut k = match key.try_lock() {
            Ok(k) => k,
            Err(TryLockError::WouldBlock) => {
                return Err(Error::token(format!(
                    "{who2} is still in an earlier exchange that never answered; unplug and re-insert it, then run again"
                )));
            }
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
        };
        exchange(&mut k)
    })
}

/// The slot's key as the card describes it (GET METADATA, firmware 5.3 and later).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotPolicy {
    pub pin: yubikey::PinPolicy,
    pub touch: yubikey::TouchPolicy,
}

fn algorithm_of(id: AlgorithmId) -> Option<KeyAlgorithm> {
    match id {
        AlgorithmId::EccP256 => Some(KeyAlgorithm::EcdsaP256),
        AlgorithmId::EccP384 => Some(KeyAlgorithm::EcdsaP384),
        AlgorithmId::Rsa2048 => Some(KeyAlgorithm::Rsa2048),
        AlgorithmId::Rsa1024 => None,
    }
}

fn algorithm_id(a: KeyAlgorithm) -> AlgorithmId {
    match a {
        KeyAlgorithm::EcdsaP256 => AlgorithmId::EccP256,
        KeyAlgorithm::EcdsaP384 => AlgorithmId::EccP384,
        KeyAlgorithm::Rsa2048 => AlgorithmId::Rsa2048,
    }
}

/// The key type of a certificate's public key (the SPKI's algorithm and size).
fn algorithm_of_spki(spki: &x509_cert::spki::SubjectPublicKeyInfoOwned) -> Option<KeyAlgorithm> {
    const EC: &str = "1.2.840.10045.2.1";
    const RSA: &str = "1.2.840.113549.1.1.1";
    let key = spki.subject_public_key.raw_bytes();
    match spki.algorithm.oid.to_string().as_str() {
        EC if key.len() == 65 => Some(KeyAlgorithm::EcdsaP256),
        EC if key.len() == 97 => Some(KeyAlgorithm::EcdsaP384),
        // SEQUENCE { modulus 257 bytes (leading 0), exponent }: about 270 bytes for 2048.
        RSA if (266..=300).contains(&key.len()) => Some(KeyAlgorithm::Rsa2048),
        _ => None,
    }
}

fn pin_policy_of(slot: PivSlot, meta: Option<&ykpiv::SlotMetadata>) -> yubikey::PinPolicy {
    match meta.and_then(|m| m.policy) {
        Some((p, _)) if p != yubikey::PinPolicy::Default => p,
        _ => match slot {
            PivSlot::CardAuthentication => yubikey::PinPolicy::Never,
            PivSlot::Signature => yubikey::PinPolicy::Always,
            _ => yubikey::PinPolicy::Once,
        },
    }
}

/// EMSA-PKCS1-v1_5 (RFC 8017 9.2) for a SHA-256 digest and a 2048-bit key: the block the
/// card raises to its private exponent.
fn pkcs1_v15_sha256_block(digest: &[u8; 32]) -> Vec<u8> {
    const DIGEST_INFO: [u8; 19] = [
        0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
        0x05, 0x00, 0x04, 0x20,
    ];
    let mut block = vec![0xFFu8; 256];
    block[0] = 0x00;
    block[1] = 0x01;
    let t = 256 - DIGEST_INFO.len() - 32;
    block[t - 1] = 0x00;
    block[t..t + DIGEST_INFO.len()].copy_from_slice(&DIGEST_INFO);
    block[t + DIGEST_INFO.len()..].copy_from_slice(digest);
    block
}

/// The PIN: `TAPCRED_PIV_PIN`, else asked once.
fn read_pin(
    env_pin: Option<&SecretString>,
    ui: &dyn Ui,
    who: &str,
    slot: PivSlot,
) -> Result<SecretString> {
    if let Some(p) = env_pin {
        return Ok(p.clone());
    }
    match ui.ask_secret(&format!("PIV PIN of {who} (slot {slot}): "))? {
        Some(p) if !p.expose_secret().is_empty() => Ok(p),
        _ => Err(Error::token(format!(
            "the PIV key in slot {slot} of {who} needs its PIN and none was given; type it at the prompt or set {PIN_ENV}"
        ))),
    }
}

fn check_pin_shape(pin: &SecretString, who: &str) -> Result<()> {
    let n = pin.expose_secret().len();
    if !(6..=8).contains(&n) {
        return Err(Error::usage(format!(
            "a PIV PIN is 6 to 8 characters, the one given for {who} has {n}; nothing was sent to the key"
        )));
    }
    Ok(())
}

/// Verify the PIN once (a wrong PIN ends the command, with the retries left).
fn verify_pin(key: &SharedKey, d: &Deadlines, who: &str, pin: &SecretString) -> Result<()> {
    check_pin_shape(pin, who)?;
    let pin = Zeroizing::new(pin.expose_secret().as_bytes().to_vec());
    let w = who.to_owned();
    run(key, d.quick, who, move |k| {
        k.verify_pin(&pin)
            .map_err(|e| card_error(&w, "checking the PIN", e))
    })
}

/// A PIV slot's key and certificate, signing for Roles Anywhere.
pub struct PivSigner {
    key: SharedKey,
    label: String,
    slot: PivSlot,
    certificate: Vec<u8>,
    chain: Vec<Vec<u8>>,
    algorithm: KeyAlgorithm,
    pin_policy: yubikey::PinPolicy,
    touch: bool,
    env_pin: Option<SecretString>,
    /// The PIN that passed VERIFY, for slots whose policy wants it before every signature.
    pin: Mutex<Option<SecretString>>,
    verified: Mutex<bool>,
    deadlines: Deadlines,
    lock_dir: Option<PathBuf>,
    reader: String,
}

impl fmt::Debug for PivSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PivSigner")
            .field("key", &self.label)
            .field("slot", &self.slot)
            .field("algorithm", &self.algorithm)
            .field("touch", &self.touch)
            .field("pin", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// Open the key `r` names and read its slot's certificate; `chain` (intermediate CAs, DER)
/// is sent beside it. Nothing is asked here: the PIN is asked at the first signature
/// (`TAPCRED_PIV_PIN`, else through the `ui` given to `sign_sha256`), so a cached session
/// never touches the PIN.
pub fn open_signer(
    r: &PivKeyRef,
    chain: Vec<Vec<u8>>,
    env: &dyn EnvLookup,
    _ui: &dyn Ui,
) -> Result<Box<dyn CertificateSigner>> {
    let mut signer = open_signer_with(r, env, Deadlines::default())?;
    signer.chain = chain;
    Ok(Box::new(signer))
}

/// [`open_signer`] with chosen deadlines (tests use short ones).
pub fn open_signer_with(
    r: &PivKeyRef,
    env: &dyn EnvLookup,
    deadlines: Deadlines,
) -> Result<PivSigner> {
    let (key, reader, label) = open_key(r.serial, "tapcred_piv_serial", &deadlines)?;
    let lock_dir = keylock::default_dir(env);
    let _held = lock_card(&lock_dir, &reader, &label)?;
    let key: SharedKey = Arc::new(Mutex::new(key));
    let slot = r.slot;
    let who = format!("{label} PIV slot {slot}");
    let (cert, meta) = {
        let w = who.clone();
        run(&key, deadlines.quick, &who, move |k| {
            let cert = yubikey::Certificate::read(k, slot.id()).map_err(|e| match e {
                yubikey::Error::InvalidObject | yubikey::Error::NotFound | yubikey::Error::SizeError => {
                    Error::token(format!(
                        "{w} holds no certificate; create the key with `tapcred piv init --slot {slot}` and import the CA's certificate with `tapcred piv import --slot {slot}`"
                    ))
                }
                other => card_error(&w, "reading the certificate", other),
            })?;
            let meta = match ykpiv::metadata(k, slot.id()) {
                Ok(m) => Some(m),
                Err(yubikey::Error::NotSupported) => None,
                Err(e) => {
                    tracing::debug!(error = %e, "no slot metadata");
                    None
                }
            };
            Ok((cert, meta))
        })?
    };
    let der = x509_cert::der::Encode::to_der(&cert.cert)
        .map_err(|e| Error::token(format!("{who}: the certificate does not encode: {e}")))?;
    let algorithm = algorithm_of_spki(&cert.cert.tbs_certificate.subject_public_key_info)
        .ok_or_else(|| {
            Error::token(format!(
                "{who}: the certificate's key is not ECDSA P-256, P-384 or RSA 2048; make a new key with `tapcred piv init`"
            ))
        })?;
    if let Some(m) = &meta
        && let ManagementAlgorithmId::Asymmetric(a) = m.algorithm
        && algorithm_of(a) != Some(algorithm)
    {
        return Err(Error::token(format!(
            "{who}: the certificate is for a {algorithm:?} key but the slot holds a {a:?} key; import the certificate made for this key (`tapcred piv import`)"
        )));
    }
    let touch = matches!(
        meta.as_ref().and_then(|m| m.policy).map(|p| p.1),
        Some(yubikey::TouchPolicy::Always | yubikey::TouchPolicy::Cached)
    );
    Ok(PivSigner {
        key,
        label,
        slot,
        certificate: der,
        chain: Vec::new(),
        algorithm,
        pin_policy: pin_policy_of(slot, meta.as_ref()),
        touch,
        env_pin: env
            .var(PIN_ENV)
            .filter(|p| !p.is_empty())
            .map(SecretString::from),
        pin: Mutex::new(None),
        verified: Mutex::new(false),
        deadlines,
        lock_dir,
        reader,
    })
}

fn lock_card(dir: &Option<PathBuf>, reader: &str, label: &str) -> Result<keylock::KeyLock> {
    keylock::lock(
        dir.as_deref(),
        &format!("pcsc:{reader}"),
        label,
        keylock::WAIT,
    )
}

impl PivSigner {
    fn who(&self) -> String {
        format!("{} PIV slot {}", self.label, self.slot)
    }
    /// Whether the slot's touch policy asks for the button.
    pub fn requires_touch(&self) -> bool {
        self.touch
    }
}

impl CertificateSigner for PivSigner {
    fn certificate_der(&self) -> &[u8] {
        &self.certificate
    }
    fn chain_der(&self) -> &[Vec<u8>] {
        &self.chain
    }
    fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }
    fn describe(&self) -> String {
        self.who()
    }

    fn sign_sha256(&self, message: &[u8], ui: &dyn Ui) -> Result<Vec<u8>> {
        let who = self.who();
        let _held = lock_card(&self.lock_dir, &self.reader, &self.label)?;
        if self.pin_policy != yubikey::PinPolicy::Never {
            let verified = *self.verified.lock().unwrap_or_else(|p| p.into_inner());
            let always = self.pin_policy == yubikey::PinPolicy::Always;
            if !verified || always {
                let mut kept = self.pin.lock().unwrap_or_else(|p| p.into_inner());
                let pin = match kept.as_ref() {
                    Some(p) => p.clone(),
                    None => read_pin(self.env_pin.as_ref(), ui, &self.label, self.slot)?,
                };
                verify_pin(&self.key, &self.deadlines, &who, &pin)?;
                *self.verified.lock().unwrap_or_else(|p| p.into_inner()) = true;
                *kept = Some(pin);
            }
        }
        let digest: [u8; 32] = Sha256::digest(message).into();
        let input = Zeroizing::new(match self.algorithm {
            KeyAlgorithm::Rsa2048 => pkcs1_v15_sha256_block(&digest),
            KeyAlgorithm::EcdsaP256 | KeyAlgorithm::EcdsaP384 => digest.to_vec(),
        });
        let (alg, slot, touch) = (algorithm_id(self.algorithm), self.slot.id(), self.touch);
        let w = who.clone();
        let limit = if touch {
            self.deadlines.touch
        } else {
            self.deadlines.quick
        };
        if touch {
            ui.touch_wait(&format!(
                "Touch your YubiKey ({}) to sign with PIV slot {}",
                self.label, self.slot
            ));
        }
        let reader = self.reader.clone();
        let r = run(&self.key, limit, &who, move |k| {
            ykpiv::sign_data(k, &input, alg, slot)
                .map(|b| b.to_vec())
                .map_err(|e| match e {
                    yubikey::Error::AuthenticationError if touch => Error::token(format!(
                        "{w} was not touched in time; run again and touch the key when it blinks"
                    )),
                    yubikey::Error::AuthenticationError => Error::token(format!(
                        "{w} refused to sign: its PIN is no longer verified; run again"
                    )),
                    // No status word at all (vpcd and some readers report a pulled card so).
                    yubikey::Error::GenericError
                        if crate::token::pcsc::card_present(&reader, Duration::from_millis(1500))
                            == Some(false) =>
                    {
                        Error::token(format!(
                            "{w} was removed or stopped answering while signing; insert it and run again"
                        ))
                    }
                    other => card_error(&w, "signing", other),
                })
        });
        if touch {
            ui.touch_done(r.is_ok());
        }
        r
    }
}

/// The management key that authorizes key generation and certificate import: 3DES, 24
/// bytes (`TAPCRED_PIV_MANAGEMENT_KEY` as 48 hex digits, else the factory default).
pub struct ManagementKey(Zeroizing<[u8; 24]>);

impl fmt::Debug for ManagementKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ManagementKey(<redacted>)")
    }
}

impl ManagementKey {
    /// `TAPCRED_PIV_MANAGEMENT_KEY`, else the factory default key.
    pub fn from_env(env: &dyn EnvLookup) -> Result<ManagementKey> {
        let Some(text) = env.var(MANAGEMENT_KEY_ENV).map(Zeroizing::new) else {
            let mut k = Zeroizing::new([0u8; 24]);
            k.copy_from_slice(&yubikey::MgmKey::default().as_ref()[..]);
            return Ok(ManagementKey(k));
        };
        let bad = || {
            Error::usage(format!(
                "{MANAGEMENT_KEY_ENV} must be the PIV management key as 48 hex digits (a 3DES key); fix the variable or unset it to use the factory key"
            ))
        };
        let bytes = Zeroizing::new(
            data_encoding::HEXLOWER_PERMISSIVE
                .decode(text.trim().as_bytes())
                .map_err(|_| bad())?,
        );
        let mut k = Zeroizing::new([0u8; 24]);
        if bytes.len() != 24 {
            return Err(bad());
        }
        k.copy_from_slice(&bytes);
        Ok(ManagementKey(k))
    }
}

/// What a slot holds.
#[derive(Debug, Clone)]
pub struct SlotInfo {
    pub slot: PivSlot,
    /// The key's type (from the card's metadata), when a key is there.
    pub algorithm: Option<KeyAlgorithm>,
    pub policy: Option<SlotPolicy>,
    /// The key's public half (SubjectPublicKeyInfo, DER), when the card says it.
    pub public_key: Option<Vec<u8>>,
    /// The certificate stored for the slot, DER.
    pub certificate: Option<Vec<u8>>,
}

/// A key opened for `tapcred piv init/import/status`.
pub struct PivAdmin {
    key: SharedKey,
    label: String,
    reader: String,
    deadlines: Deadlines,
    _lock: keylock::KeyLock,
}

impl fmt::Debug for PivAdmin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PivAdmin")
            .field("key", &self.label)
            .finish_non_exhaustive()
    }
}

/// Open the YubiKey `serial` (or the only one) for setting up PIV keys; it is held (the
/// cross-process key lock) until the returned value is dropped.
pub fn open_admin(
    serial: Option<u32>,
    env: &dyn EnvLookup,
    deadlines: Deadlines,
) -> Result<PivAdmin> {
    let (key, reader, label) = open_key(serial, "--serial", &deadlines)?;
    let lock = lock_card(&keylock::default_dir(env), &reader, &label)?;
    Ok(PivAdmin {
        key: Arc::new(Mutex::new(key)),
        label,
        reader,
        deadlines,
        _lock: lock,
    })
}

fn spki_der(spki: &x509_cert::spki::SubjectPublicKeyInfoOwned) -> Result<Vec<u8>> {
    x509_cert::der::Encode::to_der(spki)
        .map_err(|e| Error::internal(format!("public key does not encode: {e}")))
}

impl PivAdmin {
    pub fn label(&self) -> &str {
        &self.label
    }
    pub fn reader(&self) -> &str {
        &self.reader
    }
    pub fn serial(&self) -> Option<u32> {
        self.key
            .try_lock()
            .ok()
            .map(|k| k.serial().0)
            .filter(|s| *s != 0)
    }

    /// What `slot` holds: key type, policies and public key (firmware 5.3+ metadata), and
    /// the certificate.
    pub fn slot_info(&self, slot: PivSlot) -> Result<SlotInfo> {
        let who = format!("{} PIV slot {slot}", self.label);
        let w = who.clone();
        run(&self.key, self.deadlines.quick, &who, move |k| {
            let certificate = match yubikey::Certificate::read(k, slot.id()) {
                Ok(c) => Some(
                    x509_cert::der::Encode::to_der(&c.cert)
                        .map_err(|e| Error::token(format!("{w}: bad certificate: {e}")))?,
                ),
                Err(
                    yubikey::Error::InvalidObject
                    | yubikey::Error::NotFound
                    | yubikey::Error::SizeError,
                ) => None,
                Err(e) => return Err(card_error(&w, "reading the certificate", e)),
            };
            let (algorithm, policy, public_key) = match ykpiv::metadata(k, slot.id()) {
                Ok(m) => {
                    let algorithm = match m.algorithm {
                        ManagementAlgorithmId::Asymmetric(a) => algorithm_of(a),
                        _ => None,
                    };
                    let policy = m.policy.map(|(pin, touch)| SlotPolicy { pin, touch });
                    let public = m.public.as_ref().map(spki_der).transpose()?;
                    (algorithm, policy, public)
                }
                // No key in the slot (6A88), or firmware before 5.3 (no metadata).
                Err(_) => (None, None, None),
            };
            Ok(SlotInfo {
                slot,
                algorithm,
                policy,
                public_key,
                certificate,
            })
        })
    }

    /// Mutual authentication with the management key (3DES).
    pub fn authenticate(&self, mgmt: &ManagementKey) -> Result<()> {
        let key = yubikey::MgmKey::new(*mgmt.0).map_err(|_| {
            Error::usage(format!(
                "{MANAGEMENT_KEY_ENV} is a weak 3DES key; use another"
            ))
        })?;
        let w = self.label.clone();
        run(&self.key, self.deadlines.quick, &self.label, move |k| {
            // Firmware 5.7 and later ship an AES-192 management key; the `yubikey` crate
            // authenticates with 3DES only.
            let v = k.version();
            let aes = (v.major, v.minor) >= (5, 7);
            k.authenticate(key).map_err(|e| match e {
                yubikey::Error::AuthenticationError if aes => Error::token(format!(
                    "{w} refused the PIV management key: either it is not the key's management key (set {MANAGEMENT_KEY_ENV} to it, 48 hex digits), or the key is AES (firmware {v} ships an AES-192 one), which tapcred cannot use yet: switch it to 3DES with `ykman piv access change-management-key -a TDES`, then run again"
                )),
                yubikey::Error::AuthenticationError => Error::token(format!(
                    "{w} refused the PIV management key: it is not the factory default; set {MANAGEMENT_KEY_ENV} to the key's management key (48 hex digits) and run again"
                )),
                other => card_error(&w, "authenticating with the management key", other),
            })
        })
    }

    /// VERIFY the PIN once (never retried).
    pub fn verify_pin(&self, pin: &SecretString) -> Result<()> {
        verify_pin(&self.key, &self.deadlines, &self.label, pin)
    }

    /// Generate a key in `slot` on the card; returns its public key (SPKI, DER).
    pub fn generate(
        &self,
        slot: PivSlot,
        algorithm: KeyAlgorithm,
        pin: yubikey::PinPolicy,
        touch: yubikey::TouchPolicy,
    ) -> Result<Vec<u8>> {
        let who = format!("{} PIV slot {slot}", self.label);
        let w = who.clone();
        run(&self.key, self.deadlines.generate, &who, move |k| {
            let spki = ykpiv::generate(k, slot.id(), algorithm_id(algorithm), pin, touch)
                .map_err(|e| card_error(&w, "generating the key", e))?;
            spki_der(&spki)
        })
    }

    /// A certificate request (PEM) for the key in `slot`, signed by the card (the PIN must be
    /// verified; a touch when the slot's policy asks).
    pub fn certificate_request(
        &self,
        slot: PivSlot,
        algorithm: KeyAlgorithm,
        public_key: &[u8],
        subject: &str,
        ui: &dyn Ui,
        touch: bool,
    ) -> Result<String> {
        use x509_cert::der::{Decode, EncodePem};
        use yubikey::certificate::yubikey_signer::{Rsa2048, Signer, YubiRsa};
        let who = format!("{} PIV slot {slot}", self.label);
        let name = x509_cert::name::Name::from_str(subject).map_err(|e| {
            Error::usage(format!(
                "--subject \"{subject}\" is not a distinguished name like \"CN=alice,O=Example\" ({e})"
            ))
        })?;
        let spki = x509_cert::spki::SubjectPublicKeyInfoOwned::from_der(public_key)
            .map_err(|e| Error::internal(format!("public key does not parse: {e}")))?;
        let w = who.clone();
        if touch {
            ui.touch_wait(&format!(
                "Touch your YubiKey ({}) to sign the certificate request",
                self.label
            ));
        }
        let limit = if touch {
            self.deadlines.touch
        } else {
            self.deadlines.quick
        };
        let r = run(&self.key, limit, &who, move |k| {
            fn build<S, Sig>(
                signer: &S,
                name: x509_cert::name::Name,
            ) -> std::result::Result<x509_cert::request::CertReq, String>
            where
                S: p256::ecdsa::signature::Keypair
                    + x509_cert::spki::DynSignatureAlgorithmIdentifier
                    + p256::ecdsa::signature::Signer<Sig>,
                S::VerifyingKey: x509_cert::spki::EncodePublicKey,
                Sig: x509_cert::spki::SignatureBitStringEncoding,
            {
                use x509_cert::builder::Builder;
                x509_cert::builder::RequestBuilder::new(name, signer)
                    .map_err(|e| e.to_string())?
                    .build::<Sig>()
                    .map_err(|e| e.to_string())
            }
            let spki_ref = x509_cert::der::referenced::OwnedToRef::owned_to_ref(&spki);
            let sig_err = |e: yubikey::Error| card_error(&w, "signing the certificate request", e);
            let req = match algorithm {
                KeyAlgorithm::EcdsaP256 => {
                    let s =
                        Signer::<p256::NistP256>::new(k, slot.id(), spki_ref).map_err(sig_err)?;
                    build::<_, p256::ecdsa::DerSignature>(&s, name)
                }
                KeyAlgorithm::EcdsaP384 => {
                    let s =
                        Signer::<p384::NistP384>::new(k, slot.id(), spki_ref).map_err(sig_err)?;
                    build::<_, p384::ecdsa::DerSignature>(&s, name)
                }
                KeyAlgorithm::Rsa2048 => {
                    let s =
                        Signer::<YubiRsa<Rsa2048>>::new(k, slot.id(), spki_ref).map_err(sig_err)?;
                    build::<_, rsa::pkcs1v15::Signature>(&s, name)
                }
            }
            .map_err(|e| {
                Error::token(format!("{w} could not sign the certificate request: {e}"))
            })?;
            req.to_pem(x509_cert::der::pem::LineEnding::LF)
                .map_err(|e| Error::internal(format!("certificate request does not encode: {e}")))
        });
        if touch {
            ui.touch_done(r.is_ok());
        }
        r
    }

    /// Store `certificate` (DER) for `slot` (the management key must be authenticated).
    pub fn import(&self, slot: PivSlot, certificate: &[u8]) -> Result<()> {
        use x509_cert::der::Decode;
        let cert = x509_cert::Certificate::from_der(certificate)
            .map_err(|e| Error::usage(format!("the certificate does not parse: {e}")))?;
        let who = format!("{} PIV slot {slot}", self.label);
        let w = who.clone();
        run(&self.key, self.deadlines.quick, &who, move |k| {
            yubikey::Certificate { cert }
                .write(k, slot.id(), yubikey::certificate::CertInfo::Uncompressed)
                .map_err(|e| match e {
                    yubikey::Error::AuthenticationError => Error::token(format!(
                        "{w} refused the certificate: the management key is not authenticated"
                    )),
                    other => card_error(&w, "storing the certificate", other),
                })
        })
    }
}

/// The key type of a certificate (DER), for `piv import` and messages.
pub fn certificate_algorithm(der: &[u8]) -> Option<KeyAlgorithm> {
    use x509_cert::der::Decode;
    let cert = x509_cert::Certificate::from_der(der).ok()?;
    algorithm_of_spki(&cert.tbs_certificate.subject_public_key_info)
}

/// The SubjectPublicKeyInfo (DER) of a certificate (DER).
pub fn certificate_public_key(der: &[u8]) -> Option<Vec<u8>> {
    use x509_cert::der::Decode;
    let cert = x509_cert::Certificate::from_der(der).ok()?;
    spki_der(&cert.tbs_certificate.subject_public_key_info).ok()
}
