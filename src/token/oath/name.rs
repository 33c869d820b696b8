//! Credential IDs `[period/][issuer:]account` (yubikey-protocols.md A.5).

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OathType {
    Hotp,
    Totp,
}

impl OathType {
    pub fn from_byte(b: u8) -> Option<OathType> {
        match b & 0xF0 {
            0x10 => Some(OathType::Hotp),
            0x20 => Some(OathType::Totp),
            _ => None,
        }
    }
    pub fn byte(self) -> u8 {
        match self {
            OathType::Hotp => 0x10,
            OathType::Totp => 0x20,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HashAlgo {
    Sha1,
    Sha256,
    Sha512,
}

impl HashAlgo {
    pub fn from_byte(b: u8) -> Option<HashAlgo> {
        match b & 0x0F {
            0x01 => Some(HashAlgo::Sha1),
            0x02 => Some(HashAlgo::Sha256),
            0x03 => Some(HashAlgo::Sha512),
            _ => None,
        }
    }
    pub fn byte(self) -> u8 {
        match self {
            HashAlgo::Sha1 => 0x01,
            HashAlgo::Sha256 => 0x02,
            HashAlgo::Sha512 => 0x03,
        }
    }
    /// HMAC block size, for A.9 key preparation.
    pub fn block_size(self) -> usize {
        match self {
            HashAlgo::Sha512 => 128,
            _ => 64,
        }
    }
}

pub const DEFAULT_PERIOD: u32 = 30;

/// A credential ID split into its parts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CredentialId {
    /// Seconds per step for TOTP (30 when the ID has no prefix); 0 for HOTP.
    pub period: u32,
    pub issuer: Option<String>,
    pub account: String,
}

impl CredentialId {
    /// Parse an ID as ykman does: for TOTP `^((\d+)/)?(([^:]+):)?(.+)$`; for HOTP split at
    /// the first `:` unless the name starts with one.
    pub fn parse(id: &str, kind: OathType) -> CredentialId {
        match kind {
            OathType::Hotp => {
                let (issuer, account) = split_issuer(id);
                CredentialId {
                    period: 0,
                    issuer,
                    account,
                }
            }
            OathType::Totp => {
                let mut period = DEFAULT_PERIOD;
                let mut rest = id;
                if let Some(slash) = id.find('/') {
                    let (digits, after) = (&id[..slash], &id[slash + 1..]);
                    if !digits.is_empty()
                        && digits.bytes().all(|b| b.is_ascii_digit())
                        && !after.is_empty()
                    {
                        // An absurd or zero period keeps the default rather than dividing by 0.
                        if let Ok(p) = digits.parse::<u32>() {
                            if p > 0 {
                                period = p;
                            }
                            rest = after;
                        }
                    }
                }
                let (issuer, account) = split_issuer(rest);
                CredentialId {
                    period,
                    issuer,
                    account,
                }
            }
        }
    }

    /// Encode as an ID: the period prefix only for TOTP with a period other than 30.
    pub fn format(&self, kind: OathType) -> String {
        let mut s = String::new();
        if kind == OathType::Totp && self.period != DEFAULT_PERIOD {
            s.push_str(&format!("{}/", self.period));
        }
        if let Some(issuer) = self.issuer.as_deref().filter(|i| !i.is_empty()) {
            s.push_str(issuer);
            s.push(':');
        }
        s.push_str(&self.account);
        s
    }
}

/// `issuer:account` at the first `:`; no issuer when the name starts with `:` or nothing
/// would be left for the account.
fn split_issuer(s: &str) -> (Option<String>, String) {
    match s.find(':') {
        Some(i) if i > 0 && i + 1 < s.len() => (Some(s[..i].to_owned()), s[i + 1..].to_owned()),
        _ => (None, s.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totp(id: &str) -> (u32, Option<&str>, String) {
        let c = CredentialId::parse(id, OathType::Totp);
        (
            c.period,
            c.issuer.map(|s| &*Box::leak(s.into_boxed_str())),
            c.account,
        )
    }

    #[test]
    fn parses_like_ykman() {
        assert_eq!(
            totp("Amazon Web Services:alice@111111111111"),
            (30, Some("Amazon Web Services"), "alice@111111111111".into())
        );
        assert_eq!(totp("60/ACME:alice"), (60, Some("ACME"), "alice".into()));
        assert_eq!(totp("60/alice"), (60, None, "alice".into()));
        assert_eq!(totp("alice"), (30, None, "alice".into()));
        assert_eq!(totp("a:b:c"), (30, Some("a"), "b:c".into()));
        assert_eq!(totp(":alice"), (30, None, ":alice".into()));
        assert_eq!(totp("ACME:"), (30, None, "ACME:".into()));
        assert_eq!(totp("30/"), (30, None, "30/".into()));
        assert_eq!(totp("x/y"), (30, None, "x/y".into()));
        assert_eq!(
            totp("arn:aws:iam::111111111111:mfa/alice"),
            (30, Some("arn"), "aws:iam::111111111111:mfa/alice".into())
        );
        let h = CredentialId::parse("60/ACME:bob", OathType::Hotp);
        assert_eq!(h.period, 0);
        assert_eq!(h.issuer.as_deref(), Some("60/ACME"));
    }

    #[test]
    fn formats_round_trip() {
        for id in ["60/ACME:alice", "ACME:alice", "alice", "15/x"] {
            assert_eq!(
                CredentialId::parse(id, OathType::Totp).format(OathType::Totp),
                id
            );
        }
        let c = CredentialId {
            period: 30,
            issuer: Some("Example".into()),
            account: "alice".into(),
        };
        assert_eq!(c.format(OathType::Totp), "Example:alice");
    }

    #[test]
    fn type_and_algo_nibbles() {
        assert_eq!(OathType::from_byte(0x21), Some(OathType::Totp));
        assert_eq!(OathType::from_byte(0x13), Some(OathType::Hotp));
        assert_eq!(HashAlgo::from_byte(0x23), Some(HashAlgo::Sha512));
        assert_eq!(OathType::from_byte(0x31), None);
    }
}
