//! AWS credentials as tapcred hands them out. Secrets are `SecretString`s: zeroized on drop,
//! redacted in `Debug`, exposed only where a command exists to print them.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

#[derive(Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: SecretString,
    pub session_token: Option<SecretString>,
    /// None only for long-term keys.
    pub expiration: Option<OffsetDateTime>,
}

impl Credentials {
    pub fn new(
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
        session_token: Option<String>,
        expiration: Option<OffsetDateTime>,
    ) -> Self {
        Credentials {
            access_key_id: access_key_id.into(),
            secret_access_key: SecretString::from(secret_access_key.into()),
            session_token: session_token.map(SecretString::from),
            expiration,
        }
    }

    pub fn secret(&self) -> &str {
        self.secret_access_key.expose_secret()
    }

    pub fn token(&self) -> Option<&str> {
        self.session_token.as_ref().map(|t| t.expose_secret())
    }

    /// `Expiration` as RFC 3339 in UTC with a `Z` suffix, as the SDKs read it.
    pub fn expiration_rfc3339(&self) -> Option<String> {
        self.expiration.map(format_rfc3339)
    }

    /// Seconds until expiry (negative once expired); None for long-term keys.
    pub fn seconds_left(&self, now: OffsetDateTime) -> Option<i64> {
        self.expiration.map(|e| (e - now).whole_seconds())
    }

    /// The `credential_process` document (Version 1).
    pub fn to_process_json(&self) -> ProcessJson {
        ProcessJson {
            version: 1,
            access_key_id: self.access_key_id.clone(),
            secret_access_key: self.secret().to_owned(),
            session_token: self.token().map(str::to_owned),
            expiration: self.expiration_rfc3339(),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .field("expiration", &self.expiration_rfc3339())
            .finish()
    }
}

pub fn format_rfc3339(t: OffsetDateTime) -> String {
    let t = t
        .to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(t);
    t.format(&Rfc3339).unwrap_or_default()
}

pub fn parse_rfc3339(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

/// What AWS SDKs read from a `credential_process` command's stdout.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProcessJson {
    pub version: u8,
    pub access_key_id: String,
    pub secret_access_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiration: Option<String>,
}

impl Drop for ProcessJson {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.secret_access_key.zeroize();
        if let Some(t) = self.session_token.as_mut() {
            t.zeroize();
        }
    }
}

impl fmt::Debug for ProcessJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessJson")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}
