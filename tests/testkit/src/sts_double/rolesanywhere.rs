//! IAM Roles Anywhere's `CreateSession` (`POST /sessions`, JSON), served on the STS double's
//! port so the credentials it issues are sessions STS knows (a client can call
//! `GetCallerIdentity` with them and sees the assumed role).
//!
//! What it checks, each failure answered in AWS's JSON error shape:
//! - the `Authorization` header: algorithm `AWS4-X509-ECDSA-SHA256` / `AWS4-X509-RSA-SHA256`
//!   matching the certificate's key, credential scope
//!   `<serial decimal>/<date>/<region>/rolesanywhere/aws4_request` with the certificate's
//!   serial and the trust anchor's region, the signed headers (content-type, host,
//!   x-amz-date, x-amz-x509 and, when sent, x-amz-x509-chain);
//! - the signature: recomputed from the request as received (SigV4 canonical request, the
//!   scope without the serial in the string to sign) and verified with the `X-Amz-X509`
//!   certificate's public key (ECDSA P-256/P-384 over SHA-256, RSA PKCS#1 v1.5 SHA-256);
//! - `X-Amz-Date` within 5 minutes of the double's clock;
//! - the chain: the leaf, then `X-Amz-X509-Chain`, up to the trust anchor's CA certificate,
//!   each link's issuer name and signature, and every certificate's validity dates;
//! - the body: a known, enabled trust anchor and profile, a role the profile lists and the
//!   STS double knows, `durationSeconds` 900 up to the profile's limit.
//!
//! **Choices** (not verified against AWS): every authentication failure is a 403
//! `AccessDeniedException`; a malformed body or ARN a 400 `ValidationException`; an unknown
//! trust anchor or profile a 403 too (AWS does not say which exist).

use std::collections::BTreeMap;

use der::{Decode, Encode};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use x509_cert::Certificate;

use super::engine::Engine;

/// A trust anchor: its ARN and CA certificate (DER).
#[derive(Clone, Debug)]
pub struct TrustAnchorSpec {
    pub arn: String,
    pub ca_der: Vec<u8>,
    pub enabled: bool,
}

/// A Roles Anywhere profile: the roles it may hand out.
#[derive(Clone, Debug)]
pub struct ProfileSpec {
    pub arn: String,
    pub role_arns: Vec<String>,
    /// The longest session it grants (AWS's default: 3600).
    pub duration_seconds: u64,
    pub enabled: bool,
}

#[derive(Clone, Debug, Default)]
pub struct RolesAnywhereSpec {
    pub trust_anchors: Vec<TrustAnchorSpec>,
    pub profiles: Vec<ProfileSpec>,
}

/// What the double saw (no secrets).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RolesAnywhereStats {
    pub calls: u64,
    pub ok: u64,
    /// `(error code, message)` of each refused call, in order.
    pub refused: Vec<(String, String)>,
    /// Serial numbers (decimal) of the certificates that got a session.
    pub sessions_for: Vec<String>,
}

pub(crate) struct JsonReply {
    pub status: u16,
    pub body: String,
    /// `x-amzn-ErrorType` of an error answer.
    pub error_type: Option<String>,
}

struct Refusal {
    status: u16,
    code: &'static str,
    message: String,
}

fn denied(message: impl Into<String>) -> Refusal {
    Refusal {
        status: 403,
        code: "AccessDeniedException",
        message: message.into(),
    }
}

fn invalid(message: impl Into<String>) -> Refusal {
    Refusal {
        status: 400,
        code: "ValidationException",
        message: message.into(),
    }
}

/// The longest time between `X-Amz-Date` and the double's clock.
pub const MAX_SKEW_SECS: i64 = 300;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Body {
    trust_anchor_arn: String,
    profile_arn: String,
    role_arn: String,
    #[serde(default)]
    duration_seconds: Option<u64>,
    #[serde(default)]
    role_session_name: Option<String>,
}

pub(crate) fn handle(
    engine: &mut Engine,
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> JsonReply {
    engine.rolesanywhere_stats.calls += 1;
    match create_session(engine, method, url, headers, body) {
        Ok((serial, json)) => {
            engine.rolesanywhere_stats.ok += 1;
            engine.rolesanywhere_stats.sessions_for.push(serial);
            JsonReply {
                status: 201,
                body: json,
                error_type: None,
            }
        }
        Err(r) => {
            engine
                .rolesanywhere_stats
                .refused
                .push((r.code.to_owned(), r.message.clone()));
            JsonReply {
                status: r.status,
                body: serde_json::json!({ "message": r.message }).to_string(),
                error_type: Some(format!("{}:", r.code)),
            }
        }
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn create_session(
    engine: &mut Engine,
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<(String, String), Refusal> {
    let now = engine.now();
    let b64 = data_encoding::BASE64;
    let auth =
        header(headers, "authorization").ok_or_else(|| denied("Missing Authorization header"))?;
    let (algorithm, rest) = auth
        .split_once(' ')
        .ok_or_else(|| denied("Malformed Authorization header"))?;
    let mut fields = BTreeMap::new();
    for part in rest.split(',') {
        let (k, v) = part
            .trim()
            .split_once('=')
            .ok_or_else(|| denied("Malformed Authorization header"))?;
        fields.insert(k, v);
    }
    let (Some(credential), Some(signed_headers), Some(signature_hex)) = (
        fields.get("Credential"),
        fields.get("SignedHeaders"),
        fields.get("Signature"),
    ) else {
        return Err(denied("Malformed Authorization header"));
    };
    let leaf_der = header(headers, "x-amz-x509")
        .and_then(|v| b64.decode(v.trim().as_bytes()).ok())
        .ok_or_else(|| denied("Missing or malformed X-Amz-X509 header"))?;
    let leaf =
        Certificate::from_der(&leaf_der).map_err(|_| denied("X-Amz-X509 is not a certificate"))?;
    let chain: Vec<Certificate> = match header(headers, "x-amz-x509-chain") {
        None => Vec::new(),
        Some(v) => v
            .split(',')
            .map(|c| {
                b64.decode(c.trim().as_bytes())
                    .ok()
                    .and_then(|d| Certificate::from_der(&d).ok())
                    .ok_or_else(|| {
                        denied("X-Amz-X509-Chain holds something that is not a certificate")
                    })
            })
            .collect::<Result<_, _>>()?,
    };
    let body_doc: Body = serde_json::from_slice(body)
        .map_err(|e| invalid(format!("Request body is not a CreateSession request: {e}")))?;
    let region = body_doc
        .trust_anchor_arn
        .split(':')
        .nth(3)
        .filter(|r| !r.is_empty())
        .ok_or_else(|| invalid("trustAnchorArn is not a valid ARN"))?
        .to_owned();

    // The scope: serial/date/region/rolesanywhere/aws4_request.
    let serial = decimal(leaf.tbs_certificate.serial_number.as_bytes());
    let scope: Vec<&str> = credential.split('/').collect();
    let amz_date =
        header(headers, "x-amz-date").ok_or_else(|| denied("Missing X-Amz-Date header"))?;
    if scope.len() != 5 || scope[3] != "rolesanywhere" || scope[4] != "aws4_request" {
        return Err(denied(format!(
            "Credential scope {credential} is not SERIAL/DATE/REGION/rolesanywhere/aws4_request"
        )));
    }
    if scope[0] != serial {
        return Err(denied(format!(
            "Credential serial {} is not the certificate's serial number {serial}",
            scope[0]
        )));
    }
    if amz_date.len() != 16 || scope[1] != &amz_date[..8] {
        return Err(denied("Credential date does not match X-Amz-Date"));
    }
    if scope[2] != region {
        return Err(denied(format!(
            "Credential should be scoped to a valid region, not '{}'",
            scope[2]
        )));
    }
    let signed_at = parse_amz_date(amz_date).ok_or_else(|| denied("X-Amz-Date is not a date"))?;
    if (signed_at - now).abs() > MAX_SKEW_SECS {
        return Err(denied(format!(
            "Signature expired or not yet valid: request time {amz_date} is more than 5 minutes from the server's time"
        )));
    }

    // The signature over the request as received.
    let names: Vec<&str> = signed_headers.split(';').collect();
    for required in ["content-type", "host", "x-amz-date", "x-amz-x509"] {
        if !names.contains(&required) {
            return Err(denied(format!("SignedHeaders must include {required}")));
        }
    }
    if !chain.is_empty() && !names.contains(&"x-amz-x509-chain") {
        return Err(denied("SignedHeaders must include x-amz-x509-chain"));
    }
    let mut canonical_headers = String::new();
    for n in &names {
        let v =
            header(headers, n).ok_or_else(|| denied(format!("Signed header {n} is missing")))?;
        canonical_headers.push_str(&format!("{n}:{}\n", v.trim()));
    }
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let canonical = format!(
        "{method}\n{path}\n{query}\n{canonical_headers}\n{signed_headers}\n{}",
        data_encoding::HEXLOWER.encode(&Sha256::digest(body))
    );
    let string_to_sign = format!(
        "{algorithm}\n{amz_date}\n{}\n{}",
        scope[1..].join("/"),
        data_encoding::HEXLOWER.encode(&Sha256::digest(canonical.as_bytes()))
    );
    let signature = data_encoding::HEXLOWER_PERMISSIVE
        .decode(signature_hex.as_bytes())
        .map_err(|_| denied("Signature is not hex"))?;
    let key = PublicKey::of(&leaf).ok_or_else(|| denied("Unsupported certificate key type"))?;
    if key.algorithm_name() != algorithm {
        return Err(denied(format!(
            "Algorithm {algorithm} does not match the certificate's key"
        )));
    }
    if !key.verify_sha256(string_to_sign.as_bytes(), &signature) {
        return Err(denied(
            "Signature does not match the certificate's public key",
        ));
    }

    // The chain up to the trust anchor.
    let anchor = engine
        .rolesanywhere
        .trust_anchors
        .iter()
        .find(|a| a.arn == body_doc.trust_anchor_arn && a.enabled)
        .cloned()
        .ok_or_else(|| denied("Untrusted signing certificate: unknown or disabled trust anchor"))?;
    let ca = Certificate::from_der(&anchor.ca_der)
        .map_err(|_| denied("trust anchor holds no certificate"))?;
    let mut path_certs = vec![leaf.clone()];
    path_certs.extend(chain);
    path_certs.push(ca);
    for c in &path_certs {
        let v = &c.tbs_certificate.validity;
        let nb = v.not_before.to_unix_duration().as_secs() as i64;
        let na = v.not_after.to_unix_duration().as_secs() as i64;
        if now < nb || now > na {
            return Err(denied(format!(
                "Untrusted signing certificate: {} is outside its validity period",
                c.tbs_certificate.subject
            )));
        }
    }
    for pair in path_certs.windows(2) {
        let (child, parent) = (&pair[0], &pair[1]);
        if child.tbs_certificate.issuer != parent.tbs_certificate.subject
            || !signed_by(child, parent)
        {
            return Err(denied(format!(
                "Untrusted signing certificate: {} is not signed by {}",
                child.tbs_certificate.subject, parent.tbs_certificate.subject
            )));
        }
    }

    // The profile and role.
    let profile = engine
        .rolesanywhere
        .profiles
        .iter()
        .find(|p| p.arn == body_doc.profile_arn && p.enabled)
        .cloned()
        .ok_or_else(|| denied("Unknown or disabled profile"))?;
    if !profile.role_arns.contains(&body_doc.role_arn) {
        return Err(denied("Role is not in the profile's roles"));
    }
    let duration = body_doc.duration_seconds.unwrap_or(3600);
    if !(900..=profile.duration_seconds).contains(&duration) {
        return Err(invalid(format!(
            "durationSeconds must be between 900 and {}",
            profile.duration_seconds
        )));
    }
    let session_name = body_doc
        .role_session_name
        .clone()
        .unwrap_or_else(|| serial.clone());
    let issued = engine
        .issue_role_session(
            &body_doc.role_arn,
            &session_name,
            duration,
            &format!("CN={}", leaf.tbs_certificate.subject),
        )
        .ok_or_else(|| {
            denied("Role is not known to the STS double (add it with StsDouble::builder().role)")
        })?;
    let doc = serde_json::json!({
        "credentialSet": [{
            "assumedRoleUser": { "arn": issued.assumed_role_arn, "assumedRoleId": issued.assumed_role_id },
            "credentials": {
                "accessKeyId": issued.access_key_id,
                "secretAccessKey": issued.secret_access_key,
                "sessionToken": issued.session_token,
                "expiration": issued.expiration,
            },
            "packedPolicySize": 0,
            "roleArn": body_doc.role_arn,
            "sourceIdentity": format!("CN={}", leaf.tbs_certificate.subject),
        }],
        "subjectArn": format!("{}:subject/{serial}", profile.arn.rsplit_once(':').map_or("", |(a, _)| a)),
    });
    Ok((serial, doc.to_string()))
}

/// Credentials issued for a Roles Anywhere session (handed out once, in the answer).
pub(crate) struct IssuedRoleSession {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    pub expiration: String,
    pub assumed_role_arn: String,
    pub assumed_role_id: String,
}

fn parse_amz_date(s: &str) -> Option<i64> {
    let fmt = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    time::PrimitiveDateTime::parse(s, &fmt)
        .ok()
        .map(|d| d.assume_utc().unix_timestamp())
}

enum PublicKey {
    P256(p256_13::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
    Rsa(rsa::RsaPublicKey),
}

impl PublicKey {
    fn of(cert: &Certificate) -> Option<PublicKey> {
        use p256_13::pkcs8::DecodePublicKey;
        let spki = cert.tbs_certificate.subject_public_key_info.to_der().ok()?;
        if let Ok(k) = p256_13::ecdsa::VerifyingKey::from_public_key_der(&spki) {
            return Some(PublicKey::P256(k));
        }
        if let Ok(k) = p384::ecdsa::VerifyingKey::from_public_key_der(&spki) {
            return Some(PublicKey::P384(k));
        }
        rsa::RsaPublicKey::from_public_key_der(&spki)
            .ok()
            .map(PublicKey::Rsa)
    }

    fn algorithm_name(&self) -> &'static str {
        match self {
            PublicKey::P256(_) | PublicKey::P384(_) => "AWS4-X509-ECDSA-SHA256",
            PublicKey::Rsa(_) => "AWS4-X509-RSA-SHA256",
        }
    }

    fn verify_sha256(&self, message: &[u8], signature: &[u8]) -> bool {
        self.verify_digest(&Sha256::digest(message), Hash::Sha256, signature)
    }

    fn verify_digest(&self, digest: &[u8], hash: Hash, signature: &[u8]) -> bool {
        use p256_13::ecdsa::signature::hazmat::PrehashVerifier;
        match self {
            PublicKey::P256(k) => p256_13::ecdsa::Signature::from_der(signature)
                .is_ok_and(|s| k.verify_prehash(digest, &s).is_ok()),
            PublicKey::P384(k) => p384::ecdsa::Signature::from_der(signature)
                .is_ok_and(|s| k.verify_prehash(digest, &s).is_ok()),
            PublicKey::Rsa(k) => {
                let scheme = match hash {
                    Hash::Sha256 => rsa::Pkcs1v15Sign::new::<rsa::sha2::Sha256>(),
                    Hash::Sha384 => rsa::Pkcs1v15Sign::new::<rsa::sha2::Sha384>(),
                };
                k.verify(scheme, digest, signature).is_ok()
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Hash {
    Sha256,
    Sha384,
}

/// Whether `parent`'s key made `child`'s signature (ecdsa-with-SHA256/384,
/// sha256/384WithRSAEncryption).
fn signed_by(child: &Certificate, parent: &Certificate) -> bool {
    use rsa::sha2::Digest as _;
    let Some(key) = PublicKey::of(parent) else {
        return false;
    };
    let Ok(tbs) = child.tbs_certificate.to_der() else {
        return false;
    };
    let Some(sig) = child.signature.as_bytes() else {
        return false;
    };
    let oid = child.signature_algorithm.oid.to_string();
    let (digest, hash) = match oid.as_str() {
        "1.2.840.10045.4.3.2" | "1.2.840.113549.1.1.11" => {
            (rsa::sha2::Sha256::digest(&tbs).to_vec(), Hash::Sha256)
        }
        "1.2.840.10045.4.3.3" | "1.2.840.113549.1.1.12" => {
            (rsa::sha2::Sha384::digest(&tbs).to_vec(), Hash::Sha384)
        }
        _ => return false,
    };
    key.verify_digest(&digest, hash, sig)
}

/// A big-endian unsigned integer in decimal.
fn decimal(be: &[u8]) -> String {
    let mut n: Vec<u8> = be.iter().copied().skip_while(|&b| b == 0).collect();
    let mut digits = Vec::new();
    while !n.is_empty() {
        let mut rem = 0u32;
        for b in n.iter_mut() {
            let cur = (rem << 8) | u32::from(*b);
            *b = (cur / 10) as u8;
            rem = cur % 10;
        }
        digits.push(b'0' + rem as u8);
        let lead = n.iter().take_while(|&&b| b == 0).count();
        n.drain(..lead);
    }
    if digits.is_empty() {
        digits.push(b'0');
    }
    digits.reverse();
    String::from_utf8(digits).expect("digits")
}
