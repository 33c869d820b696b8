//! The YubiKey OTP applet over CCID (PC/SC): its status and the HMAC-SHA1
//! challenge-response of slot 1 or 2 (yubikey-protocols.md A.12 and B.8). Used as a vault
//! unlocker, never as a TOTP source (an OTP slot's 20-byte key cannot hold a 40-byte AWS
//! seed).
//!
//! - SELECT `A0 00 00 05 27 20 01` answers the status: firmware (3 bytes), programming
//!   sequence, touch level (2 bytes, little-endian; 0x01 / 0x02 = slot 1 / 2 configured).
//! - `00 01 30|38 00 40 <64-byte challenge>` answers 20 bytes of HMAC-SHA1 (slot 1 = 0x30,
//!   slot 2 = 0x38). A slot with `CHAL_BTN_TRIG` waits for a touch first; whether it does
//!   cannot be read (part E.10).
//!
//! **Challenge padding (HMAC_LT64).** tapcred always sends a full 64-byte buffer holding a
//! 32-byte challenge padded the way ykman pads: with `01` bytes when the challenge ends in
//! `00`, else with `00` bytes. A slot programmed with `HMAC_LT64` (ykman's default) drops the
//! trailing bytes equal to the buffer's last byte and so hashes exactly the 32 bytes; a slot
//! without it hashes all 64. Either way the answer is stable for a slot, and equal to what
//! `ykman otp calculate SLOT <32-byte hex>` prints.

use std::fmt;

use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::token::transport::ApduTransport;

/// OTP applet AID (over CCID).
pub const OTP_AID: [u8; 7] = [0xA0, 0x00, 0x00, 0x05, 0x27, 0x20, 0x01];
/// INS of every slot command ("config").
const INS_CONFIG: u8 = 0x01;
/// The challenge buffer the key hashes from.
pub const HMAC_CHALLENGE_SIZE: usize = 64;
/// The challenge length tapcred uses (then padded to 64 bytes).
pub const CHALLENGE_LEN: usize = 32;
pub const HMAC_RESPONSE_SIZE: usize = 20;

const SW_OK: u16 = 0x9000;
const SW_SECURITY: u16 = 0x6982;
const SW_CONDITIONS: u16 = 0x6985;

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
    /// The slot command for HMAC-SHA1 challenge-response (B.7).
    fn hmac_p1(self) -> u8 {
        match self {
            Slot::One => 0x30,
            Slot::Two => 0x38,
        }
    }
}

/// What SELECT of the OTP applet says.
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

/// A selected OTP applet on one key. `label` names the key in messages.
pub struct OtpApplet<T: ApduTransport> {
    transport: T,
    status: OtpStatus,
    label: String,
}

impl<T: ApduTransport> fmt::Debug for OtpApplet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtpApplet")
            .field("status", &self.status)
            .field("label", &self.label)
            .finish()
    }
}

fn program_hint(n: u8) -> String {
    format!(
        "program it with `ykman otp chalresp --generate {n}` (add `--touch` to require a touch)"
    )
}

fn split_sw(raw: &[u8]) -> Option<(&[u8], u16)> {
    let n = raw.len().checked_sub(2)?;
    Some((&raw[..n], u16::from_be_bytes([raw[n], raw[n + 1]])))
}

impl<T: ApduTransport> OtpApplet<T> {
    /// SELECT the OTP applet.
    pub fn select(mut transport: T, label: &str) -> Result<Self> {
        let mut apdu = vec![0x00, 0xA4, 0x04, 0x00, OTP_AID.len() as u8];
        apdu.extend_from_slice(&OTP_AID);
        let raw = transport.transmit(&apdu)?;
        let (data, sw) = split_sw(&raw)
            .ok_or_else(|| Error::token(format!("{label} sent an empty answer to SELECT")))?;
        if sw != SW_OK {
            return Err(Error::token(format!(
                "{label} has no OTP application over CCID (SELECT answered {sw:04X}); enable it with `ykman config usb --enable OTP`"
            )));
        }
        let status = OtpStatus::parse(data).ok_or_else(|| {
            Error::token(format!(
                "{label}: the OTP application's status is {} bytes, expected 6",
                data.len()
            ))
        })?;
        Ok(OtpApplet {
            transport,
            status,
            label: label.to_owned(),
        })
    }

    pub fn status(&self) -> OtpStatus {
        self.status
    }

    /// An error naming the fix when `slot` holds no configuration at all.
    pub fn check_configured(&self, slot: Slot) -> Result<()> {
        if self.status.configured(slot) {
            return Ok(());
        }
        let n = slot.number();
        Err(Error::token(format!(
            "OTP slot {n} of {} is empty; {}",
            self.label,
            program_hint(n)
        )))
    }

    /// HMAC-SHA1 challenge-response with `slot`; `challenge` is 1–63 bytes, padded with
    /// [`pad_challenge`]. Blocks while a touch-triggered slot waits for its touch.
    pub fn hmac_sha1(
        &mut self,
        slot: Slot,
        challenge: &[u8],
    ) -> Result<Zeroizing<[u8; HMAC_RESPONSE_SIZE]>> {
        self.check_configured(slot)?;
        let n = slot.number();
        let label = &self.label;
        let program = program_hint(n);
        let padded = pad_challenge(challenge)?;
        let mut apdu = Zeroizing::new(vec![
            0x00,
            INS_CONFIG,
            slot.hmac_p1(),
            0x00,
            HMAC_CHALLENGE_SIZE as u8,
        ]);
        apdu.extend_from_slice(&padded[..]);
        let raw = Zeroizing::new(self.transport.transmit(&apdu)?);
        let (data, sw) = split_sw(&raw).ok_or_else(|| {
            Error::token(format!("{label} sent an empty answer to the challenge"))
        })?;
        match sw {
            SW_OK if data.len() == HMAC_RESPONSE_SIZE => {
                let mut out = Zeroizing::new([0u8; HMAC_RESPONSE_SIZE]);
                out.copy_from_slice(data);
                Ok(out)
            }
            SW_OK => Err(Error::token(format!(
                "{label}: OTP slot {n} answered {} bytes, expected {HMAC_RESPONSE_SIZE}",
                data.len()
            ))),
            SW_SECURITY => Err(Error::token(format!(
                "{label}: OTP slot {n} was not touched in time; run again and touch the key when it blinks"
            ))),
            SW_CONDITIONS => Err(Error::token(format!(
                "{label}: OTP slot {n} refused the challenge (SW {sw:04X}): it is not an HMAC-SHA1 challenge-response slot; {program}"
            ))),
            other => Err(Error::token(format!(
                "{label}: OTP slot {n} refused the challenge (SW {other:04X})"
            ))),
        }
    }

    pub fn into_transport(self) -> T {
        self.transport
    }
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
