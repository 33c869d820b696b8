//! AWS's "IAM Roles Anywhere authentication signing process": SigV4's canonical request,
//! with the certificate in `X-Amz-X509` (and the chain in `X-Amz-X509-Chain`), a credential
//! scope keyed by the certificate's serial number, and a signature made by the certificate's
//! private key instead of an HMAC. Pure functions, so a test can compare each string with
//! one computed independently.

use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::macros::format_description;

use crate::token::x509::KeyAlgorithm;

/// The service name in the credential scope.
pub const SERVICE: &str = "rolesanywhere";
/// `CreateSession`'s path.
pub const PATH: &str = "sessions";

/// What is signed.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    /// `Host` header value: host, and `:port` when it is not the scheme's default.
    pub host: &'a str,
    /// Absolute path of the request (`/sessions`, behind any path of the endpoint URL).
    pub path: &'a str,
    pub region: &'a str,
    pub at: OffsetDateTime,
    pub algorithm: KeyAlgorithm,
    /// The leaf certificate's serial number, decimal.
    pub serial_decimal: &'a str,
    /// Base64 of the leaf certificate's DER.
    pub x509: &'a str,
    /// Comma-separated base64 DER of the intermediates; None when there are none.
    pub chain: Option<&'a str>,
    pub body: &'a [u8],
}

pub fn amz_date(at: OffsetDateTime) -> String {
    at.to_offset(time::UtcOffset::UTC)
        .format(format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .expect("a UTC date formats")
}

fn hex_sha256(data: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(&Sha256::digest(data))
}

impl Input<'_> {
    /// The headers that are signed, in canonical (sorted, lowercase) order.
    pub fn signed_headers(&self) -> Vec<(&'static str, String)> {
        let mut h = vec![
            ("content-type", "application/json".to_owned()),
            ("host", self.host.to_owned()),
            ("x-amz-date", amz_date(self.at)),
            ("x-amz-x509", self.x509.to_owned()),
        ];
        if let Some(c) = self.chain {
            h.push(("x-amz-x509-chain", c.to_owned()));
        }
        h
    }

    pub fn signed_header_names(&self) -> String {
        self.signed_headers()
            .iter()
            .map(|(k, _)| *k)
            .collect::<Vec<_>>()
            .join(";")
    }

    pub fn canonical_request(&self) -> String {
        let headers: String = self
            .signed_headers()
            .iter()
            .map(|(k, v)| format!("{k}:{}\n", v.trim()))
            .collect();
        format!(
            "POST\n{}\n\n{headers}\n{}\n{}",
            self.path,
            self.signed_header_names(),
            hex_sha256(self.body)
        )
    }

    /// `<serial>/<yyyymmdd>/<region>/rolesanywhere/aws4_request`.
    pub fn credential_scope(&self) -> String {
        let date = amz_date(self.at);
        format!(
            "{}/{}/{}/{SERVICE}/aws4_request",
            self.serial_decimal,
            &date[..8],
            self.region
        )
    }

    pub fn string_to_sign(&self) -> String {
        let date = amz_date(self.at);
        // The scope in the string to sign leaves the serial out, as SigV4 leaves the key id.
        let scope = self.credential_scope();
        let scope_without_serial = scope.split_once('/').map_or("", |(_, rest)| rest);
        format!(
            "{}\n{date}\n{scope_without_serial}\n{}",
            self.algorithm.roles_anywhere_name(),
            hex_sha256(self.canonical_request().as_bytes())
        )
    }

    /// The `Authorization` header for `signature` (the raw signature bytes).
    pub fn authorization(&self, signature: &[u8]) -> String {
        format!(
            "{} Credential={}, SignedHeaders={}, Signature={}",
            self.algorithm.roles_anywhere_name(),
            self.credential_scope(),
            self.signed_header_names(),
            data_encoding::HEXLOWER.encode(signature)
        )
    }
}
