//! The `tapcred_*` keys of a profile (token source, OATH account, YubiKey serial, seed).

use super::Profiles;
use super::load::expand_home;
use super::validate;
use crate::error::Result;
use crate::token::{EnvLookup, TokenKind, TokenSettings};

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
        if let Some(v) = self.get(profile, "tapcred_otp_slot") {
            s.otp_slot = Some(match v {
                "1" => 1,
                "2" => 2,
                _ => {
                    return Err(self.fail(
                        profile,
                        "tapcred_otp_slot",
                        format!("= {v:?} is not an OTP slot"),
                        "use 1 (short touch) or 2 (long touch)",
                    ));
                }
            });
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
            let home = env.var("HOME").filter(|h| !h.is_empty());
            if (v == "~" || v.starts_with("~/")) && home.is_none() {
                return Err(self.fail(
                    profile,
                    "tapcred_totp_secret_file",
                    "starts with ~ but HOME is not set",
                    "set HOME or write an absolute path",
                ));
            }
            s.totp_secret_file = Some(expand_home(v, home.as_deref()));
        }
        Ok(s)
    }
}
