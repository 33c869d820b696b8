//! The virtual keys and secrets of the vault-over-OTP-slot tests (`vault_otp`: the CCID
//! applet and pcscd; `vault_otp_hid`: the HID interface), and the slot's HMAC computed here,
//! independently of the card.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use tapcred::vault::Secret;
use tapcred_testkit::virtual_yubikey::{OtpSlot, VirtualYubiKey, VykConfig};
use zeroize::Zeroizing;

pub const KEY_A: [u8; 20] = *b"slot-2-key-of-key-A!";
pub const KEY_B: [u8; 20] = *b"slot-2-key-of-key-B!";
pub const SEED: &[u8] = b"AWS-virtual-MFA-seed-is-forty-bytes-long";
pub const ARN: &str = "arn:aws:iam::111111111111:mfa/toolkit-user";

pub fn hmac_sha1(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut m = <Hmac<Sha1> as KeyInit>::new_from_slice(key).unwrap();
    m.update(msg);
    m.finalize().into_bytes().to_vec()
}

/// A key whose slot 2 holds `key` for HMAC-SHA1, waiting `touch_timeout` for a touch when
/// `touch` is set.
pub fn card(serial: u32, key: [u8; 20], touch: bool, touch_timeout: Duration) -> VirtualYubiKey {
    VirtualYubiKey::new(
        VykConfig::new()
            .serial(serial)
            .otp_slot(2, OtpSlot::hmac_sha1(key, touch))
            .touch_timeout(touch_timeout),
    )
}

pub fn seed() -> Secret {
    Secret::TotpSeed(Zeroizing::new(SEED.to_vec()))
}
