//! The YubiKey OTP application: its status and the HMAC-SHA1 challenge-response of slot 1
//! or 2 (yubikey-protocols.md A.12 and part B), over either link a key offers:
//!
//! - [`apdu`]: the OTP applet over CCID (PC/SC), `00 01 30|38 00 40 <challenge>`;
//! - [`hid`]: the OTP HID (keyboard) interface's 8-byte feature reports, for keys whose CCID
//!   interface is off, with the frame codec in [`frame`] kept apart from the transport.
//!
//! Used as a vault unlocker, never as a TOTP source (an OTP slot's 20-byte key cannot hold
//! a 40-byte AWS seed).
//!
//! **Challenge padding (HMAC_LT64).** tapcred always sends a full 64-byte buffer holding a
//! 32-byte challenge padded the way ykman pads: with `01` bytes when the challenge ends in
//! `00`, else with `00` bytes. A slot programmed with `HMAC_LT64` (ykman's default) drops the
//! trailing bytes equal to the buffer's last byte and so hashes exactly the 32 bytes; a slot
//! without it hashes all 64. Either way the answer is stable for a slot, the same over CCID
//! and HID, and equal to what `ykman otp calculate SLOT <32-byte hex>` prints.

use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::ui::Ui;

pub mod apdu;
pub mod frame;
pub mod hid;

pub use apdu::OtpApplet;
pub use hid::{OtpHid, OtpHidBackend};

/// OTP applet AID (over CCID).
pub const OTP_AID: [u8; 7] = [0xA0, 0x00, 0x00, 0x05, 0x27, 0x20, 0x01];
/// The challenge buffer the key hashes from.
pub const HMAC_CHALLENGE_SIZE: usize = 64;
/// The challenge length tapcred uses (then padded to 64 bytes).
pub const CHALLENGE_LEN: usize = 32;
pub const HMAC_RESPONSE_SIZE: usize = 20;

/// OTP slot 1 ("short touch") or 2 ("long touch").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    One,
    Two,
}

impl Slot {
    pub fn parse(s: &str) -> Option<Slot> {
        match s.trim() {
            "1" => Some(Slot::One),
            "2" => Some(Slot::Two),
            _ => None,
        }
    }
    pub fn number(self) -> u8 {
        match self {
            Slot::One => 1,
            Slot::Two => 2,
        }
    }
    /// The slot command for HMAC-SHA1 challenge-response (B.7): P1 over CCID, the frame's
    /// slot byte over HID.
    pub fn hmac_command(self) -> u8 {
        match self {
            Slot::One => 0x30,
            Slot::Two => 0x38,
        }
    }
}

/// The OTP status: SELECT's answer over CCID, bytes 1–6 of a status report over HID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OtpStatus {
    pub firmware: (u8, u8, u8),
    pub pgm_seq: u8,
    pub touch_level: u16,
}

impl OtpStatus {
    pub fn parse(data: &[u8]) -> Option<OtpStatus> {
        let d = data.get(..6)?;
        Some(OtpStatus {
            firmware: (d[0], d[1], d[2]),
            pgm_seq: d[3],
            touch_level: u16::from_le_bytes([d[4], d[5]]),
        })
    }
    /// Whether the slot holds a configuration (of any kind).
    pub fn configured(&self, slot: Slot) -> bool {
        let bit = match slot {
            Slot::One => 0x01,
            Slot::Two => 0x02,
        };
        self.touch_level & bit != 0
    }
}

/// ykman's padding (B.8): pad to 64 bytes with a byte that differs from the challenge's
/// last byte (`01` after a trailing `00`, else `00`), so `HMAC_LT64` recovers it exactly.
pub fn pad_challenge(challenge: &[u8]) -> Result<Zeroizing<[u8; HMAC_CHALLENGE_SIZE]>> {
    if challenge.is_empty() || challenge.len() >= HMAC_CHALLENGE_SIZE {
        return Err(Error::internal(format!(
            "an OTP challenge must be 1–63 bytes, not {}",
            challenge.len()
        )));
    }
    let pad = if challenge.last() == Some(&0) { 1 } else { 0 };
    let mut buf = Zeroizing::new([pad; HMAC_CHALLENGE_SIZE]);
    buf[..challenge.len()].copy_from_slice(challenge);
    Ok(buf)
}

pub(crate) fn program_hint(n: u8) -> String {
    format!(
        "program it with `ykman otp chalresp --generate {n}` (add `--touch` to require a touch)"
    )
}

/// The slot waited for a touch that did not come (CCID or HID).
pub(crate) fn not_touched(label: &str, slot: Slot) -> Error {
    Error::token(format!(
        "{label}: OTP slot {} was not touched in time; run again and touch the key when it blinks",
        slot.number()
    ))
}

/// The slot holds a configuration, but not HMAC-SHA1 challenge-response; `detail` is what
/// the link said (e.g. the status word), if anything.
pub(crate) fn not_hmac_slot(label: &str, slot: Slot, detail: &str) -> Error {
    let n = slot.number();
    Error::token(format!(
        "{label}: OTP slot {n} refused the challenge{detail}: it is not an HMAC-SHA1 challenge-response slot; {}",
        program_hint(n)
    ))
}

/// An error naming the fix when `slot` holds no configuration at all.
pub(crate) fn check_configured(status: &OtpStatus, slot: Slot, label: &str) -> Result<()> {
    if status.configured(slot) {
        return Ok(());
    }
    let n = slot.number();
    Err(Error::token(format!(
        "OTP slot {n} of {label} is empty; {}",
        program_hint(n)
    )))
}

/// An OTP slot's HMAC-SHA1 challenge-response over one link to one key (CCID or HID).
pub trait ChallengeResponse {
    /// The key in messages, e.g. `YubiKey 12345678`.
    fn label(&self) -> &str;
    /// The status read when the link was opened.
    fn status(&self) -> OtpStatus;
    /// HMAC-SHA1 of `challenge` (1–63 bytes, padded with [`pad_challenge`]) by `slot`.
    /// `touch` is the prompt shown through `ui` while the key waits for its button: over
    /// CCID whether it will wait cannot be known, so the prompt is shown for the whole call;
    /// over HID only once the key says it is waiting.
    fn hmac_sha1(
        &mut self,
        slot: Slot,
        challenge: &[u8],
        touch: &str,
        ui: &dyn Ui,
    ) -> Result<Zeroizing<[u8; HMAC_RESPONSE_SIZE]>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_follows_ykman() {
        let p = pad_challenge(&[1, 2, 3]).unwrap();
        assert_eq!(&p[..3], &[1, 2, 3]);
        assert!(p[3..].iter().all(|&b| b == 0));
        let p = pad_challenge(&[1, 2, 0]).unwrap();
        assert_eq!(&p[..3], &[1, 2, 0]);
        assert!(p[3..].iter().all(|&b| b == 1));
        assert!(pad_challenge(&[]).is_err());
        assert!(pad_challenge(&[0; 64]).is_err());
    }

    #[test]
    fn status_bits() {
        let s = OtpStatus::parse(&[5, 4, 3, 1, 0x02, 0x00]).unwrap();
        assert_eq!(s.firmware, (5, 4, 3));
        assert!(!s.configured(Slot::One));
        assert!(s.configured(Slot::Two));
        assert!(OtpStatus::parse(&[5, 4, 3]).is_none());
    }
}
