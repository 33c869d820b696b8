//! The OTP applet over CCID (PC/SC): SELECT `A0 00 00 05 27 20 01` answers the status
//! (firmware, programming sequence, touch level); `00 01 30|38 00 40 <64-byte challenge>`
//! answers 20 bytes of HMAC-SHA1 (slot 1 = 0x30, slot 2 = 0x38). A slot with
//! `CHAL_BTN_TRIG` waits for a touch first; whether it does cannot be read (part E.10).

use std::fmt;

use zeroize::Zeroizing;

use super::{
    ChallengeResponse, HMAC_CHALLENGE_SIZE, HMAC_RESPONSE_SIZE, OTP_AID, OtpStatus, Slot,
    check_configured, not_hmac_slot, not_touched, pad_challenge,
};
use crate::error::{Error, Result};
use crate::token::transport::ApduTransport;
use crate::ui::Ui;

/// INS of every slot command ("config").
const INS_CONFIG: u8 = 0x01;

const SW_OK: u16 = 0x9000;
const SW_SECURITY: u16 = 0x6982;
const SW_CONDITIONS: u16 = 0x6985;

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
        check_configured(&self.status, slot, &self.label)
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
        let padded = pad_challenge(challenge)?;
        let mut apdu = Zeroizing::new(vec![
            0x00,
            INS_CONFIG,
            slot.hmac_command(),
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
            SW_SECURITY => Err(not_touched(label, slot)),
            SW_CONDITIONS => Err(not_hmac_slot(label, slot, &format!(" (SW {sw:04X})"))),
            other => Err(Error::token(format!(
                "{label}: OTP slot {n} refused the challenge (SW {other:04X})"
            ))),
        }
    }

    pub fn into_transport(self) -> T {
        self.transport
    }
}

impl<T: ApduTransport> ChallengeResponse for OtpApplet<T> {
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
        self.check_configured(slot)?;
        ui.touch_wait(touch);
        let r = OtpApplet::hmac_sha1(self, slot, challenge);
        ui.touch_done(r.is_ok());
        r
    }
}
