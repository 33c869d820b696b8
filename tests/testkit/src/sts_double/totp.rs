//! RFC 6238 TOTP (HMAC-SHA-1, 6 digits, 30 s step), as AWS virtual MFA devices use it.

use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

/// Length of a TOTP time step in seconds.
pub const STEP_SECONDS: i64 = 30;

/// The time step containing unix time `t`.
pub fn step_at(t: i64) -> u64 {
    t.div_euclid(STEP_SECONDS).max(0) as u64
}

/// The 6-digit code for `step` (RFC 4226 dynamic truncation).
pub(crate) fn code(seed: &[u8], step: u64) -> String {
    let mut mac =
        <Hmac<Sha1> as KeyInit>::new_from_slice(seed).expect("HMAC accepts any key length");
    mac.update(&step.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = (digest[digest.len() - 1] & 0x0f) as usize;
    let bin = u32::from_be_bytes([
        digest[offset] & 0x7f,
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ]);
    format!("{:06}", bin % 1_000_000)
}

/// The code a virtual MFA device with this base32 seed shows at unix time `t`: for tests that
/// play a person typing a code. (Tests of the double itself compute codes independently.)
pub fn code_at(seed_base32: &str, t: i64) -> Result<String, String> {
    use secrecy::{ExposeSecret, SecretSlice};
    let seed = SecretSlice::from(super::config::decode_base32(seed_base32)?);
    Ok(code(seed.expose_secret(), step_at(t)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6238_sha1_vectors() {
        // RFC 6238 appendix B, SHA-1 seed "12345678901234567890"; the last 6 of the 8 digits.
        let seed = b"12345678901234567890";
        assert_eq!(code(seed, step_at(59)), "287082");
        assert_eq!(code(seed, step_at(1111111109)), "081804");
        assert_eq!(code(seed, step_at(1234567890)), "005924");
        assert_eq!(code(seed, step_at(2000000000)), "279037");
    }

    #[test]
    fn code_at_reads_base32_seeds() {
        let b32 = "gezd gnbv gy3t qojq gezd gnbv gy3t qojq";
        assert_eq!(code_at(b32, 59).unwrap(), "287082");
        assert!(code_at("not base32!", 59).is_err());
    }
}
