//! Unlockers: something that answers the vault's challenge with a secret only it can
//! produce (an OTP slot's HMAC-SHA1: 20 bytes; FIDO2 hmac-secret: 32 bytes).

use std::fmt;

use zeroize::Zeroizing;

use super::format::{OpenVault, UnlockerDesc, UnlockerKind, VaultFile};
use crate::env::EnvLookup;
use crate::error::Result;
use crate::token::device::{self, Backend, ChooseError};
use crate::token::otp::hid::{self as otp_hid, OtpHid, OtpHidBackend, Pacing};
use crate::token::otp::{ChallengeResponse, HMAC_CHALLENGE_SIZE, OtpApplet, Slot};
use crate::token::pcsc::PcscBackend;
use crate::token::transport::{ApduTransport, FeatureReportTransport};
use crate::ui::Ui;

/// An unlocker's secret output. Debug shows no secret.
#[derive(Clone, PartialEq, Eq)]
pub struct UnlockOutput(Zeroizing<Vec<u8>>);

impl UnlockOutput {
    pub fn new(bytes: Vec<u8>) -> Self {
        UnlockOutput(Zeroizing::new(bytes))
    }
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for UnlockOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UnlockOutput(<{} bytes redacted>)", self.0.len())
    }
}

/// A device (or test double) that turns a vault unlocker's challenge into its output.
pub trait Unlocker {
    fn kind(&self) -> UnlockerKind;
    /// The id this unlocker has in a vault header, e.g. `otp:12345678:2`.
    fn id(&self) -> String;
    /// A new header entry for this unlocker (enrolment). The default is a fresh random salt
    /// and challenge under [`Unlocker::id`]; a FIDO2 unlocker first makes its credential.
    fn new_desc(&mut self, _ui: &dyn Ui) -> Result<UnlockerDesc> {
        Ok(UnlockerDesc::new_random(self.kind(), self.id())?)
    }
    /// Answer `desc.challenge` (the device may ask for a touch through `ui`).
    fn respond(&mut self, desc: &UnlockerDesc, ui: &dyn Ui) -> Result<UnlockOutput>;
}

/// Open `file` with `unlocker`: finds its entry in the header by id, asks the device, unwraps.
pub fn open_with(file: &VaultFile, unlocker: &mut dyn Unlocker, ui: &dyn Ui) -> Result<OpenVault> {
    let id = unlocker.id();
    let desc = file
        .unlocker_descs()
        .find(|d| d.id == id && d.kind == unlocker.kind())
        .cloned()
        .ok_or_else(|| {
            crate::Error::token(format!(
                "the vault has no unlocker for {id} (it has {}); use one of those keys, or add this one with `tapcred vault add-unlock` from an unlocked key",
                file.unlocker_descs()
                    .map(|d| d.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
    let out = unlocker.respond(&desc, ui)?;
    Ok(file.open(&id, out.expose())?)
}

/// The device for one unlocker of a vault header, connected and ready to answer its
/// challenge; `Ok(None)` when that device is not here (not plugged in, or its transport
/// cannot be reached), so the caller moves on to the vault's next unlocker. Each unlocker
/// kind (and transport) plugs in here with one arm.
pub fn connect_unlocker(
    desc: &UnlockerDesc,
    env: &dyn EnvLookup,
    ui: &dyn Ui,
) -> Result<Option<Box<dyn Unlocker>>> {
    let _ = ui;
    match desc.kind {
        UnlockerKind::OtpHmacSha1 => connect_otp(desc, &PcscBackend::new()),
        UnlockerKind::Fido2HmacSecret => super::fido2::connect_unlocker(desc, env),
    }
}

/// `otp:SERIAL:SLOT` (or `otp:unknown:SLOT`): the key's serial (None when unknown) and slot.
pub fn parse_otp_id(id: &str) -> Option<(Option<u32>, Slot)> {
    let mut parts = id.split(':');
    if parts.next()? != "otp" {
        return None;
    }
    let serial = match parts.next()? {
        "unknown" => None,
        s => Some(s.parse::<u32>().ok()?),
    };
    let slot = Slot::parse(parts.next()?)?;
    parts.next().is_none().then_some((serial, slot))
}

/// The OTP-slot arm: the YubiKey named by the unlocker's id, over PC/SC through `backend`,
/// else over USB HID (`backend.otp_hid()`) for a key whose CCID interface is off.
pub fn connect_otp(
    desc: &UnlockerDesc,
    backend: &dyn Backend,
) -> Result<Option<Box<dyn Unlocker>>> {
    let Some((serial, slot)) = parse_otp_id(&desc.id) else {
        return Err(crate::Error::config(format!(
            "vault unlocker id {:?} is not an OTP slot id (otp:SERIAL:SLOT); the vault may be damaged",
            desc.id
        )));
    };
    match OtpSlotUnlocker::find(backend, serial, slot)? {
        Found::Here(u) => Ok(Some(Box::new(u))),
        Found::Missing(e) => {
            tracing::info!(unlocker = %desc.id, error = %e, "this unlocker's YubiKey is not here");
            Ok(None)
        }
    }
}

/// A new descriptor for `unlocker` (fresh salt and challenge), and its output for it.
pub fn enroll(unlocker: &mut dyn Unlocker, ui: &dyn Ui) -> Result<(UnlockerDesc, UnlockOutput)> {
    let desc = unlocker.new_desc(ui)?;
    let out = unlocker.respond(&desc, ui)?;
    Ok((desc, out))
}

/// A YubiKey OTP slot's HMAC-SHA1 challenge-response, over CCID (any APDU transport: PC/SC
/// for real keys) or the OTP HID interface (any feature-report transport: hidapi for real
/// keys); both give the same output for the same slot. Its id is `otp:SERIAL:SLOT`
/// (`otp:unknown:SLOT` when the key hides its serial). The challenge sent is the header's
/// 32-byte challenge, padded as in [`crate::token::otp::pad_challenge`]; the output is the
/// 20-byte HMAC-SHA1.
pub struct OtpSlotUnlocker {
    dev: Box<dyn ChallengeResponse>,
    serial: Option<u32>,
    slot: Slot,
    /// Which link: "CCID" or "HID", for logs.
    link: &'static str,
}

impl fmt::Debug for OtpSlotUnlocker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtpSlotUnlocker")
            .field("serial", &self.serial)
            .field("slot", &self.slot)
            .field("link", &self.link)
            .finish()
    }
}

/// Whether a key was found for an OTP unlocker.
pub enum Found {
    Here(OtpSlotUnlocker),
    /// Not plugged in on this link (or the link cannot be reached): why, for messages.
    Missing(crate::Error),
}

impl OtpSlotUnlocker {
    /// SELECT the OTP applet on an open CCID connection to the key with this serial.
    pub fn new<T: ApduTransport + 'static>(
        transport: T,
        serial: Option<u32>,
        slot: Slot,
    ) -> Result<Self> {
        let label = crate::token::device::label(serial, "?");
        let applet = OtpApplet::select(transport, &label)?;
        Ok(OtpSlotUnlocker {
            dev: Box::new(applet),
            serial,
            slot,
            link: "CCID",
        })
    }

    /// Read the status on an open OTP HID interface of the key with this serial.
    pub fn over_hid<T: FeatureReportTransport + 'static>(
        transport: T,
        serial: Option<u32>,
        slot: Slot,
        pacing: Pacing,
    ) -> Result<Self> {
        let label = crate::token::device::label(serial, "?");
        let hid = OtpHid::open(transport, &label, pacing)?;
        Ok(OtpSlotUnlocker {
            dev: Box::new(hid),
            serial,
            slot,
            link: "HID",
        })
    }

    /// The id for a key and slot.
    pub fn id_for(serial: Option<u32>, slot: Slot) -> String {
        match serial {
            Some(s) => format!("otp:{s}:{}", slot.number()),
            None => format!("otp:unknown:{}", slot.number()),
        }
    }

    /// The YubiKey with `serial` (or the only one plugged in): over PC/SC through
    /// `backend`, else over USB HID through `backend.otp_hid()`.
    pub fn connect(backend: &dyn Backend, serial: Option<u32>, slot: Slot) -> Result<Self> {
        match Self::find(backend, serial, slot)? {
            Found::Here(u) => Ok(u),
            Found::Missing(e) => Err(e),
        }
    }

    /// [`Self::connect`], telling "not here" (`Found::Missing`) from errors to stop at
    /// (several keys and no serial, a key that fails while identified).
    pub fn find(backend: &dyn Backend, serial: Option<u32>, slot: Slot) -> Result<Found> {
        let pcsc_missing = match Self::find_pcsc(backend, serial, slot)? {
            Found::Here(u) => return Ok(Found::Here(u)),
            Found::Missing(e) => e,
        };
        let Some(hid) = backend.otp_hid() else {
            return Ok(Found::Missing(pcsc_missing));
        };
        match Self::find_hid(&*hid, serial, slot, Pacing::default())? {
            Found::Here(u) => {
                tracing::info!(id = %u.id(), "YubiKey found on its OTP HID interface (not over PC/SC)");
                Ok(Found::Here(u))
            }
            Found::Missing(h) => Ok(Found::Missing(crate::Error::new(
                pcsc_missing.kind,
                format!("{}; over USB HID: {}", pcsc_missing.message(), h.message()),
            ))),
        }
    }

    /// The key over PC/SC only, its OTP applet selected.
    pub fn find_pcsc(backend: &dyn Backend, serial: Option<u32>, slot: Slot) -> Result<Found> {
        let readers = match backend.readers() {
            Ok(r) => r,
            Err(e) => return Ok(Found::Missing(e)),
        };
        let keys = match device::connect_keys(backend, readers) {
            Ok(k) => k,
            Err(e) => return Ok(Found::Missing(e)),
        };
        let mut key = match device::choose_key(keys, serial, "") {
            Ok(k) => k,
            Err(ChooseError::NoKey(e)) => return Ok(Found::Missing(e)),
            Err(ChooseError::Ambiguous(e) | ChooseError::Fatal(e)) => return Err(e),
        };
        key.identify()?;
        let label = key.label();
        let applet = OtpApplet::select(key.conn, &label)?;
        Ok(Found::Here(OtpSlotUnlocker {
            dev: Box::new(applet),
            serial: key.info.serial,
            slot,
            link: "CCID",
        }))
    }

    /// The key over its OTP HID interface only, identified by the serial it reports there.
    pub fn find_hid(
        hid: &dyn OtpHidBackend,
        serial: Option<u32>,
        slot: Slot,
        pacing: Pacing,
    ) -> Result<Found> {
        match otp_hid::connect(hid, serial, pacing) {
            Ok(k) => Ok(Found::Here(OtpSlotUnlocker {
                dev: Box::new(k.hid),
                serial: k.serial,
                slot,
                link: "HID",
            })),
            Err(ChooseError::NoKey(e)) => Ok(Found::Missing(e)),
            Err(ChooseError::Ambiguous(e) | ChooseError::Fatal(e)) => Err(e),
        }
    }
}

impl Unlocker for OtpSlotUnlocker {
    fn kind(&self) -> UnlockerKind {
        UnlockerKind::OtpHmacSha1
    }

    fn id(&self) -> String {
        Self::id_for(self.serial, self.slot)
    }

    fn respond(&mut self, desc: &UnlockerDesc, ui: &dyn Ui) -> Result<UnlockOutput> {
        if desc.kind != UnlockerKind::OtpHmacSha1
            || desc.challenge.is_empty()
            || desc.challenge.len() >= HMAC_CHALLENGE_SIZE
        {
            return Err(crate::Error::config(format!(
                "vault unlocker {:?} is not a usable OTP challenge-response entry; the vault may be damaged",
                desc.id
            )));
        }
        let who = crate::token::device::label(self.serial, "?");
        let touch = format!(
            "Touch your {who} (OTP slot {}) to unlock the tapcred vault, if it blinks",
            self.slot.number()
        );
        let r = self.dev.hmac_sha1(self.slot, &desc.challenge, &touch, ui)?;
        Ok(UnlockOutput::new(r.to_vec()))
    }
}
