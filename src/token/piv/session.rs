//! The card session: choosing and opening the key, every exchange under a deadline on a
//! worker thread, the cross-process key lock, and the PIN (read once, verified once).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, TryLockError, mpsc};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use yubikey::YubiKey;
use zeroize::Zeroizing;

use super::PIN_ENV;
use super::slot::PivSlot;
use crate::error::{Error, Result};
use crate::token::device::{self, Candidate, ChooseError};
use crate::token::keylock;
use crate::ui::Ui;

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
pub(super) struct OpenedKey {
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
pub(super) fn with_deadline<T: Send + 'static>(
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
pub(super) fn card_error(who: &str, what: &str, e: yubikey::Error) -> Error {
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
pub(super) fn open_key(
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
pub(super) type SharedKey = Arc<Mutex<YubiKey>>;

pub(super) fn run<T: Send + 'static>(
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

/// The PIN: `TAPCRED_PIV_PIN`, else asked once.
pub(super) fn read_pin(
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

pub(super) fn check_pin_shape(pin: &SecretString, who: &str) -> Result<()> {
    let n = pin.expose_secret().len();
    if !(6..=8).contains(&n) {
        return Err(Error::usage(format!(
            "a PIV PIN is 6 to 8 characters, the one given for {who} has {n}; nothing was sent to the key"
        )));
    }
    Ok(())
}

/// Verify the PIN once (a wrong PIN ends the command, with the retries left).
pub(super) fn verify_pin(
    key: &SharedKey,
    d: &Deadlines,
    who: &str,
    pin: &SecretString,
) -> Result<()> {
    check_pin_shape(pin, who)?;
    let pin = Zeroizing::new(pin.expose_secret().as_bytes().to_vec());
    let w = who.to_owned();
    run(key, d.quick, who, move |k| {
        k.verify_pin(&pin)
            .map_err(|e| card_error(&w, "checking the PIN", e))
    })
}

pub(super) fn lock_card(
    dir: &Option<PathBuf>,
    reader: &str,
    label: &str,
) -> Result<keylock::KeyLock> {
    keylock::lock(
        dir.as_deref(),
        &format!("pcsc:{reader}"),
        label,
        keylock::WAIT,
    )
}
