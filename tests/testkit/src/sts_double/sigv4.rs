//! SigV4 verification: parse the `Authorization` header, then recompute the signature with
//! the `aws-sigv4` crate over the same method, URI, signed headers and body at the request's
//! `X-Amz-Date`, and compare in constant time.

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    SessionTokenMode, SignableBody, SignableRequest, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use time::macros::format_description;

/// The parsed `Authorization: AWS4-HMAC-SHA256 …` header.
#[derive(Debug, Clone)]
pub(crate) struct AuthHeader {
    pub access_key_id: String,
    pub scope_date: String,
    pub region: String,
    pub service: String,
    pub signed_headers: Vec<String>,
    pub signature: String,
}

/// Why a header could not be parsed (→ 400 IncompleteSignature).
pub(crate) fn parse_authorization(value: &str) -> Result<AuthHeader, String> {
    let rest = value.strip_prefix("AWS4-HMAC-SHA256 ").ok_or_else(|| {
        format!(
            "Unsupported authorization type in header: {}",
            first_word(value)
        )
    })?;
    let mut credential = None;
    let mut signed = None;
    let mut signature = None;
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        }
    }
    let (credential, signed, signature) = match (credential, signed, signature) {
        (Some(c), Some(s), Some(g)) => (c, s, g),
        _ => {
            return Err(
                "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters."
                    .to_owned(),
            );
        }
    };
    let fields: Vec<&str> = credential.split('/').collect();
    if fields.len() != 5 || fields[4] != "aws4_request" {
        return Err(format!(
            "Credential should be scoped to a valid region, not '{}'. ",
            fields.get(2).copied().unwrap_or("")
        ));
    }
    Ok(AuthHeader {
        access_key_id: fields[0].to_owned(),
        scope_date: fields[1].to_owned(),
        region: fields[2].to_owned(),
        service: fields[3].to_owned(),
        signed_headers: signed.split(';').map(|h| h.to_ascii_lowercase()).collect(),
        signature: signature.to_ascii_lowercase(),
    })
}

fn first_word(s: &str) -> &str {
    s.split_whitespace().next().unwrap_or("")
}

/// Parse `X-Amz-Date` (`20261128T061000Z`) into unix seconds.
pub(crate) fn parse_amz_date(value: &str) -> Option<i64> {
    let fmt = format_description!("[year][month][day]T[hour][minute][second]Z");
    let dt = time::PrimitiveDateTime::parse(value, &fmt).ok()?;
    Some(dt.assume_utc().unix_timestamp())
}

pub(crate) fn format_amz_date(unix: i64) -> String {
    let fmt = format_description!("[year][month][day]T[hour][minute][second]Z");
    OffsetDateTime::from_unix_timestamp(unix)
        .map(|d| d.format(&fmt).unwrap_or_default())
        .unwrap_or_default()
}

/// Everything needed to recompute a signature.
pub(crate) struct SignedRequest<'a> {
    pub method: &'a str,
    /// Absolute URI `http://host/path?query` as received.
    pub uri: String,
    /// All request headers (lower-case names), in arrival order.
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

/// Recompute the signature for `req` with the given secret (and session token) at
/// `signing_time`; true if it equals the signature in `auth` (constant-time compare).
pub(crate) fn signature_matches(
    req: &SignedRequest<'_>,
    auth: &AuthHeader,
    secret: &str,
    session_token: Option<&str>,
    signing_time: i64,
) -> Result<bool, String> {
    // Only the headers the client said it signed; x-amz-date and x-amz-security-token are
    // inserted by the signer itself from the time and the credentials.
    let headers: Vec<(&str, &str)> = req
        .headers
        .iter()
        .filter(|(name, _)| {
            auth.signed_headers.iter().any(|s| s == name)
                && name != "x-amz-date"
                && name != "x-amz-security-token"
        })
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let signed_token = auth
        .signed_headers
        .iter()
        .any(|h| h == "x-amz-security-token");

    let mut settings = SigningSettings::default();
    // Sign exactly the listed headers: nothing is excluded beyond what we already filtered.
    settings.excluded_headers = Some(Vec::new());
    settings.session_token_mode = if signed_token {
        SessionTokenMode::Include
    } else {
        SessionTokenMode::Exclude
    };

    let identity: Identity = Credentials::new(
        auth.access_key_id.clone(),
        secret.to_owned(),
        session_token.map(str::to_owned),
        None,
        "tapcred-sts-double",
    )
    .into();
    let time = UNIX_EPOCH + Duration::from_secs(signing_time.max(0) as u64);
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&auth.region)
        .name(&auth.service)
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| e.to_string())?
        .into();
    let signable = SignableRequest::new(
        req.method,
        req.uri.as_str(),
        headers.into_iter(),
        SignableBody::Bytes(req.body),
    )
    .map_err(|e| e.to_string())?;
    let out = sign(signable, &params).map_err(|e| e.to_string())?;
    let expected = out.signature();
    Ok(expected.as_bytes().ct_eq(auth.signature.as_bytes()).into())
}

/// Current wall-clock unix time.
pub(crate) fn system_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
