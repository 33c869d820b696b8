//! The OTP application over the OTP HID (keyboard) interface: the frame codec of
//! [`super::frame`] driven over any [`FeatureReportTransport`] (hidapi for real keys,
//! the virtual key's interface in tests), and finding the key by its serial.
//!
//! One exchange (B.4, B.6): read the status; write the frame's chunks, each after the
//! key has cleared its busy flag; then poll: response chunks are joined in sequence order,
//! the touch-pending flag shows tapcred's touch prompt (once), and a plain status with no
//! data means the key rejected the command (or the touch timed out); the answer's CRC is
//! checked and the reset report ends the read.

use std::fmt;
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use super::frame::{self, ReportState, ResponseReader, Step};
use super::{
    ChallengeResponse, HMAC_RESPONSE_SIZE, OtpStatus, Slot, check_configured, not_hmac_slot,
    not_touched, pad_challenge,
};
use crate::error::{Error, Result};
use crate::token::device::{self, Candidate, ChooseError};
use crate::token::transport::FeatureReportTransport;
use crate::ui::Ui;

/// Slot command: read the serial (B.9).
const CMD_DEVICE_SERIAL: u8 = 0x10;

/// How long and how often the exchange polls. The defaults follow ykman/ykpers (B.4, B.6).
#[derive(Debug, Clone, Copy)]
pub struct Pacing {
    /// Between reads while the key is busy.
    pub poll: Duration,
    /// Between reads while the key waits for a touch.
    pub touch_poll: Duration,
    /// Longest wait for the busy flag to clear before a write (ykpers: 1150 ms).
    pub write_ready: Duration,
    /// Longest wait for an answer while the key is not waiting for a touch.
    pub answer: Duration,
}

impl Default for Pacing {
    fn default() -> Self {
        Pacing {
            poll: Duration::from_millis(20),
            touch_poll: Duration::from_millis(100),
            write_ready: Duration::from_millis(1150),
            answer: Duration::from_secs(3),
        }
    }
}

/// Why a read gave no answer.
enum ReadFail {
    /// Plain status with no data: rejected, or (after the touch flag) not touched in time.
    Rejected {
        touch_seen: bool,
    },
    /// The answer's CRC did not check out.
    Crc,
    Other(Error),
}

impl From<Error> for ReadFail {
    fn from(e: Error) -> Self {
        ReadFail::Other(e)
    }
}

/// The OTP HID interface of one key, its status read.
pub struct OtpHid<T: FeatureReportTransport> {
    transport: T,
    status: OtpStatus,
    label: String,
    pacing: Pacing,
}

impl<T: FeatureReportTransport> fmt::Debug for OtpHid<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtpHid")
            .field("status", &self.status)
            .field("label", &self.label)
            .finish()
    }
}

impl<T: FeatureReportTransport> OtpHid<T> {
    /// Read the status (after ending any read a previous program left half done). Each
    /// exchange (this one, the serial, a challenge) holds the key's cross-process lock
    /// ([`FeatureReportTransport::exclusive`]): a reset sent here, or a frame written while
    /// another process waits for its answer, would cut that exchange short.
    pub fn open(mut transport: T, label: &str, pacing: Pacing) -> Result<Self> {
        let _key = transport.exclusive()?;
        let mut h = OtpHid {
            transport,
            status: OtpStatus {
                firmware: (0, 0, 0),
                pgm_seq: 0,
                touch_level: 0,
            },
            label: label.to_owned(),
            pacing,
        };
        let mut r = h.transport.get_feature()?;
        if frame::report_state(&r) != ReportState::Idle {
            h.transport.set_feature(&frame::reset_report())?;
            h.wait_writable()?;
            r = h.transport.get_feature()?;
        }
        h.status = OtpStatus::parse(&r[1..7]).ok_or_else(|| Error::internal("status report"))?;
        Ok(h)
    }

    pub fn status(&self) -> OtpStatus {
        self.status
    }

    pub fn set_label(&mut self, label: &str) {
        label.clone_into(&mut self.label);
    }

    /// Poll until the key is not busy with the last chunk written.
    fn wait_writable(&mut self) -> Result<()> {
        let deadline = Instant::now() + self.pacing.write_ready;
        loop {
            let r = self.transport.get_feature()?;
            if r[frame::CHUNK_DATA] & frame::SLOT_WRITE_FLAG == 0 {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::token(format!(
                    "{} stayed busy on its OTP HID interface (another program, such as ykman, may be using it); run again when it is done, and if it stays busy unplug and re-insert it",
                    self.label
                )));
            }
            std::thread::sleep(self.pacing.poll);
        }
    }

    fn send_frame(&mut self, slot_cmd: u8, payload: &[u8]) -> Result<()> {
        let f = frame::command_frame(slot_cmd, payload)
            .ok_or_else(|| Error::internal("OTP HID payload over 64 bytes"))?;
        for r in frame::frame_reports(&f) {
            self.wait_writable()?;
            self.transport.set_feature(&r)?;
        }
        Ok(())
    }

    /// Read an answer of `len` bytes; the `touch` prompt is shown through its `Ui` if the
    /// key starts waiting for its button (and `touch_done` follows, either way).
    fn read_answer(
        &mut self,
        len: usize,
        touch: Option<(&str, &dyn Ui)>,
    ) -> std::result::Result<Zeroizing<Vec<u8>>, ReadFail> {
        let mut prompted = false;
        let r = self.poll_answer(len, touch, &mut prompted);
        // End the read either way, so the next program finds the interface idle.
        let reset = self.transport.set_feature(&frame::reset_report());
        if let Some((_, ui)) = touch
            && prompted
        {
            ui.touch_done(r.is_ok());
        }
        let data = r?;
        reset?;
        Ok(data)
    }

    fn poll_answer(
        &mut self,
        len: usize,
        touch: Option<(&str, &dyn Ui)>,
        prompted: &mut bool,
    ) -> std::result::Result<Zeroizing<Vec<u8>>, ReadFail> {
        let mut reader = ResponseReader::new();
        let mut deadline = Instant::now() + self.pacing.answer;
        loop {
            let r = Zeroizing::new(self.transport.get_feature()?);
            match frame::report_state(&r) {
                ReportState::Response { seq } => {
                    if reader.push(&r, seq) == Step::Done {
                        return reader.finish(len).ok_or(ReadFail::Crc);
                    }
                    deadline = Instant::now() + self.pacing.answer;
                    continue;
                }
                ReportState::TouchWait { seconds } => {
                    if !*prompted {
                        if let Some((msg, ui)) = touch {
                            ui.touch_wait(msg);
                        }
                        *prompted = true;
                    }
                    // The key counts its own timeout down; wait a little past it.
                    deadline = Instant::now() + Duration::from_secs(u64::from(seconds) + 2);
                    std::thread::sleep(self.pacing.touch_poll);
                }
                ReportState::Idle if reader.received() == 0 => {
                    return Err(ReadFail::Rejected {
                        touch_seen: *prompted,
                    });
                }
                ReportState::Idle => {
                    return Err(ReadFail::Other(Error::token(format!(
                        "{} stopped answering halfway over its OTP HID interface (another program may have used it meanwhile); run again",
                        self.label
                    ))));
                }
                ReportState::Writing | ReportState::Other(_) => {
                    std::thread::sleep(self.pacing.poll)
                }
            }
            if Instant::now() >= deadline {
                return Err(ReadFail::Other(Error::token(format!(
                    "{} did not answer over its OTP HID interface in time; unplug and re-insert it and run again",
                    self.label
                ))));
            }
        }
    }

    /// The serial (B.9); `None` when the key does not show it (`SERIAL_API_VISIBLE` off).
    pub fn read_serial(&mut self) -> Result<Option<u32>> {
        let _key = self.transport.exclusive()?;
        self.send_frame(CMD_DEVICE_SERIAL, &[])?;
        match self.read_answer(4, None) {
            Ok(d) => {
                let s = u32::from_be_bytes([d[0], d[1], d[2], d[3]]);
                Ok((s != 0).then_some(s))
            }
            Err(ReadFail::Rejected { .. }) => Ok(None),
            Err(ReadFail::Crc) => Err(self.crc_error()),
            Err(ReadFail::Other(e)) => Err(e),
        }
    }

    fn crc_error(&self) -> Error {
        Error::token(format!(
            "{} sent a damaged answer over its OTP HID interface (CRC mismatch); run again",
            self.label
        ))
    }

    pub fn into_transport(self) -> T {
        self.transport
    }
}

impl<T: FeatureReportTransport> ChallengeResponse for OtpHid<T> {
    fn label(&self) -> &str {
        &self.label
    }
    fn status(&self) -> OtpStatus {
        self.status
    }
    fn hmac_sha1(
        &mut self,
        slot: Slot,
        challenge: &[u8],
        touch: &str,
        ui: &dyn Ui,
    ) -> Result<Zeroizing<[u8; HMAC_RESPONSE_SIZE]>> {
        check_configured(&self.status, slot, &self.label)?;
        let padded = pad_challenge(challenge)?;
        let _key = self.transport.exclusive()?;
        self.send_frame(slot.hmac_command(), &padded[..])?;
        match self.read_answer(HMAC_RESPONSE_SIZE, Some((touch, ui))) {
            Ok(d) => {
                let mut out = Zeroizing::new([0u8; HMAC_RESPONSE_SIZE]);
                out.copy_from_slice(&d);
                Ok(out)
            }
            Err(ReadFail::Rejected { touch_seen: true }) => Err(not_touched(&self.label, slot)),
            Err(ReadFail::Rejected { touch_seen: false }) => {
                Err(not_hmac_slot(&self.label, slot, ""))
            }
            Err(ReadFail::Crc) => Err(self.crc_error()),
            Err(ReadFail::Other(e)) => Err(e),
        }
    }
}

/// One OTP HID interface of a plugged-in YubiKey.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HidInterface {
    /// The OS path to open it with (e.g. `/dev/hidraw3`).
    pub path: String,
    pub product_id: u16,
}

/// Where OTP HID interfaces are found: hidapi for real keys ([`crate::token::hid`]),
/// virtual keys in tests.
pub trait OtpHidBackend {
    /// Every YubiKey OTP HID interface. An error means HID is unusable here.
    fn interfaces(&self) -> Result<Vec<HidInterface>>;
    /// Open one for feature reports.
    fn open(&self, path: &str) -> Result<Box<dyn FeatureReportTransport>>;
}

/// The name of a key found over HID, for messages.
pub fn label(serial: Option<u32>, path: &str) -> String {
    match serial {
        Some(s) => format!("YubiKey {s}"),
        None => format!("the YubiKey at {path}"),
    }
}

/// A key found on its OTP HID interface, status read.
pub struct FoundHid {
    pub path: String,
    pub serial: Option<u32>,
    identified: bool,
    pub hid: OtpHid<Box<dyn FeatureReportTransport>>,
}

impl Candidate for FoundHid {
    fn serial(&self) -> Option<u32> {
        self.serial
    }
    fn place(&self) -> &str {
        &self.path
    }
    fn identify(&mut self) -> Result<()> {
        if !self.identified {
            self.serial = self.hid.read_serial()?;
            self.identified = true;
            self.hid.set_label(&label(self.serial, &self.path));
        }
        Ok(())
    }
}

fn no_hid_key() -> String {
    format!(
        "no YubiKey found on USB HID: plug in the key (with its OTP interface enabled: `ykman config usb --enable OTP`); {}",
        crate::platform::words::usb_access_hint()
    )
}

/// The key with `serial` (or the only one) on its OTP HID interface, identified (its
/// serial names the vault's unlocker). `NoKey`: HID cannot be used here, no interface, or
/// one that cannot be opened (no udev rule): the message says which.
pub fn connect(
    backend: &dyn OtpHidBackend,
    serial: Option<u32>,
    pacing: Pacing,
) -> std::result::Result<FoundHid, ChooseError> {
    let mut keys = Vec::new();
    for i in backend.interfaces().map_err(ChooseError::NoKey)? {
        let t = backend.open(&i.path).map_err(ChooseError::NoKey)?;
        let hid = OtpHid::open(t, &label(None, &i.path), pacing).map_err(ChooseError::Fatal)?;
        keys.push(FoundHid {
            path: i.path,
            serial: None,
            identified: false,
            hid,
        });
    }
    let mut key = device::choose(keys, serial, "", &no_hid_key())?;
    key.identify().map_err(ChooseError::Fatal)?;
    Ok(key)
}

#[cfg(test)]
mod tests;
