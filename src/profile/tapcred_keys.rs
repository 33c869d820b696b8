//! The `tapcred_*` keys of a profile (token source, OATH account, YubiKey serial, seed).

use super::Profiles;
use super::load::expand_home;
use super::validate;
use crate::env::EnvLookup;
use crate::error::Result;
use crate::token::{TokenKind, TokenSettings};

/// What to use instead of the retired OTP-slot token source (docs/architecture.md "Token
/// sources": an AWS seed does not fit in an OTP slot).
const OTP_INSTEAD: &str = "put the seed in the YubiKey's OATH applet (`ykman oath accounts add`, tapcred_token = oath), or in tapcred's vault, which the OTP slot's challenge-response unlocks (tapcred_token = vault)";

impl Profiles {
    /// The `tapcred_*` keys of one profile.
    pub(super) fn token_settings(
        &self,
        profile: &str,
        env: &dyn EnvLookup,
    ) -> Result<TokenSettings> {
        let mut s = TokenSettings {
            profile: profile.to_owned(),
            ..TokenSettings::default()
        };
        if let Some(v) = self.get(profile, "tapcred_token") {
            if v.trim().eq_ignore_ascii_case("otp") {
                return Err(self.fail(profile, "tapcred_token", "= \"otp\" is not a token source: an AWS virtual MFA seed is 40 bytes and a YubiKey OTP slot holds a 20-byte HMAC-SHA1 key, so the seed cannot live in a slot", OTP_INSTEAD));
            }
            s.kind = TokenKind::parse(v).ok_or_else(|| {
                self.fail(
                    profile,
                    "tapcred_token",
                    format!("= {v:?} is not a token source"),
                    &format!("use one of {}", TokenKind::NAMES.join(", ")),
                )
            })?;
        }
        s.oath_account = self.get(profile, "tapcred_oath_account").map(str::to_owned);
        if let Some(v) = self.get(profile, "tapcred_yubikey_serial") {
            s.yubikey_serial = Some(v.parse::<u32>().map_err(|_| {
                self.fail(
                    profile,
                    "tapcred_yubikey_serial",
                    format!("= {v:?} is not a YubiKey serial number"),
                    "use the decimal serial printed on the key or shown by `tapcred devices` / `ykman list`",
                )
            })?);
        }
        if self.get(profile, "tapcred_otp_slot").is_some() {
            return Err(self.fail(
                profile,
                "tapcred_otp_slot",
                "is no longer a profile key: an OTP slot cannot hold an AWS seed (40 bytes; a slot holds a 20-byte HMAC-SHA1 key)",
                &format!("remove it; {OTP_INSTEAD}"),
            ));
        }
        if let Some(v) = self.get(profile, "tapcred_totp_secret_env") {
            validate::env_var_name(v).map_err(|why| {
                self.fail(
                    profile,
                    "tapcred_totp_secret_env",
                    why,
                    "write the NAME of the variable that holds the seed (letters, digits, _), not the seed itself",
                )
            })?;
            s.totp_secret_env = v.to_owned();
        }
        if let Some(v) = self.get(profile, "tapcred_totp_secret_file") {
            let home = crate::platform::locations::home(env);
            if crate::platform::locations::starts_with_home(v) && home.is_none() {
                let var = crate::platform::locations::HOME_VAR;
                return Err(self.fail(
                    profile,
                    "tapcred_totp_secret_file",
                    format!("starts with ~ but {var} is not set"),
                    &format!("set {var} or write an absolute path"),
                ));
            }
            s.totp_secret_file = Some(expand_home(v, home.as_deref()));
        }
        Ok(s)
    }
}
