//! The `--unlock SPEC` parser: which kind of unlocker a command adds.

use crate::error::{Error, Result};
use crate::token::otp::Slot;
use crate::vault::fido2::{self, UvMode};

/// What `--unlock SPEC` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnlockSpec {
    /// `otp`, `otp:1`, `otp:2` (default slot 2).
    Otp(Slot),
    /// `fido2` (touch only) or `fido2:pin` (PIN and touch on every unlock).
    Fido2(UvMode),
}

/// `--unlock otp`, `otp:1`, `otp:2` (default slot 2), `fido2`, `fido2:pin`.
pub fn parse_unlock(s: &str) -> Result<UnlockSpec> {
    let s = s.trim();
    let (kind, rest) = match s.split_once(':') {
        Some((k, r)) => (k, Some(r)),
        None => (s, None),
    };
    match kind.to_ascii_lowercase().as_str() {
        "otp" => Slot::parse(rest.unwrap_or("2"))
            .map(UnlockSpec::Otp)
            .ok_or_else(|| {
                Error::usage(format!(
                    "--unlock {s}: the OTP slot is 1 or 2 (otp:1, otp:2; default otp = slot 2)"
                ))
            }),
        "fido2" => fido2::parse_mode(rest)
            .map(UnlockSpec::Fido2)
            .ok_or_else(|| {
                Error::usage(format!(
                    "--unlock {s}: use fido2 (touch only) or fido2:pin (PIN and touch on every unlock)"
                ))
            }),
        _ => Err(Error::usage(format!(
            "--unlock {s}: unknown unlocker; use otp, otp:SLOT (slot 1 or 2), fido2 or fido2:pin"
        ))),
    }
}
