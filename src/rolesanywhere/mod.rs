//! IAM Roles Anywhere `CreateSession`: a certificate's private key signs the request
//! ([`sign`]), and Roles Anywhere answers role credentials. The endpoint follows the same
//! rules as STS's (`AWS_ENDPOINT_URL_ROLESANYWHERE` > `AWS_ENDPOINT_URL` > the config file),
//! the timeouts are STS's, and AWS's errors become messages that name the profile and the fix.

use aws_smithy_runtime_api::client::http::HttpConnector;
use aws_smithy_runtime_api::http::Request as HttpRequest;
use aws_smithy_types::body::SdkBody;
use serde::Deserialize;

use crate::credentials::Credentials;
use crate::env::EnvLookup;
use crate::error::{Error, Reason, Result};
use crate::profile::{ResolvedProfile, RolesAnywhere};
use crate::sts::{self, Timeouts};
use crate::token::certificate::CertificateFacts;
use crate::token::x509::CertificateSigner;
use crate::ui::Ui;

pub mod sign;

/// The env var naming Roles Anywhere's endpoint (the SDKs' service-specific variable).
pub const ENDPOINT_ENV: &str = "AWS_ENDPOINT_URL_ROLESANYWHERE";

/// Where `CreateSession` goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// From the trust anchor's ARN: Roles Anywhere signs and answers in the anchor's region.
    pub region: String,
    /// Base URL, without a trailing slash.
    pub url: String,
}

impl Target {
    /// The endpoint after the override rules; a URL no request could go to is a
    /// configuration error (exit 3) before any key is touched.
    pub fn for_profile(
        profile: &ResolvedProfile,
        ra: &RolesAnywhere,
        env: &dyn EnvLookup,
    ) -> Result<Target> {
        let found = sts::StsTarget::endpoint_override(
            Some(profile),
            env,
            ENDPOINT_ENV,
            ra.endpoint_url.clone(),
        );
        if let Some((url, origin)) = &found {
            sts::check_endpoint_url(&profile.name, "Roles Anywhere", origin, url)?;
        }
        let region = ra.region().to_owned();
        let url = match found {
            Some((u, _)) => u.trim().trim_end_matches('/').to_owned(),
            None => format!("https://rolesanywhere.{region}.amazonaws.com"),
        };
        Ok(Target { region, url })
    }
}

/// One `CreateSession` call: signs with `signer` (which may ask for a PIN or a touch) and
/// returns the role credentials.
pub fn create_session(
    target: &Target,
    timeouts: Timeouts,
    ra: &RolesAnywhere,
    signer: &dyn CertificateSigner,
    profile: &str,
    ui: &dyn Ui,
) -> Result<Credentials> {
    let facts = CertificateFacts::from_der(signer.certificate_der()).map_err(|why| {
        Error::config(format!(
            "profile \"{profile}\": the certificate of {} is {why}",
            signer.describe()
        ))
    })?;
    let url = url::Url::parse(&format!("{}/{}", target.url, sign::PATH)).map_err(|e| {
        Error::config(format!(
            "profile \"{profile}\": Roles Anywhere endpoint {} is not a URL ({e})",
            target.url
        ))
    })?;
    let host = match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        (None, _) => {
            return Err(Error::config(format!(
                "profile \"{profile}\": Roles Anywhere endpoint {} has no host",
                target.url
            )));
        }
    };
    let body = body_json(ra);
    let b64 = data_encoding::BASE64;
    let x509 = b64.encode(signer.certificate_der());
    let chain = (!signer.chain_der().is_empty()).then(|| {
        signer
            .chain_der()
            .iter()
            .map(|c| b64.encode(c))
            .collect::<Vec<_>>()
            .join(",")
    });
    let input = sign::Input {
        host: &host,
        path: url.path(),
        region: &target.region,
        at: crate::clock::now_utc(),
        algorithm: signer.algorithm(),
        serial_decimal: &facts.serial_decimal,
        x509: &x509,
        chain: chain.as_deref(),
        body: body.as_bytes(),
    };
    let signature = signer.sign_sha256(input.string_to_sign().as_bytes(), ui)?;
    let mut req = HttpRequest::new(SdkBody::from(body.clone()));
    req.set_method("POST")
        .map_err(|e| Error::internal(format!("request method: {e}")))?;
    req.set_uri(url.as_str())
        .map_err(|e| Error::config(format!("profile \"{profile}\": endpoint {url}: {e}")))?;
    for (k, v) in input.signed_headers() {
        req.headers_mut().insert(k, v);
    }
    req.headers_mut()
        .insert("authorization", input.authorization(&signature));
    req.headers_mut()
        .insert("content-length", body.len().to_string());
    req.headers_mut().insert(
        "user-agent",
        format!("tapcred/{}", env!("CARGO_PKG_VERSION")),
    );

    let endpoint = target.url.as_str();
    let answer = send(req, timeouts, profile, endpoint)?;
    tracing::debug!(
        profile,
        endpoint,
        status = answer.status,
        "Roles Anywhere answered"
    );
    if (200..300).contains(&answer.status) {
        parse_credentials(&answer.body, profile, endpoint)
    } else {
        Err(explain(&answer, profile, endpoint, signer))
    }
}

fn body_json(ra: &RolesAnywhere) -> String {
    let mut doc = serde_json::Map::new();
    doc.insert(
        "durationSeconds".into(),
        ra.duration_seconds.unwrap_or(DEFAULT_SECONDS).into(),
    );
    doc.insert("profileArn".into(), ra.profile_arn.clone().into());
    doc.insert("roleArn".into(), ra.role_arn.clone().into());
    if let Some(n) = &ra.role_session_name {
        doc.insert("roleSessionName".into(), n.clone().into());
    }
    doc.insert("trustAnchorArn".into(), ra.trust_anchor_arn.clone().into());
    serde_json::Value::Object(doc).to_string()
}

/// Roles Anywhere's default session length.
pub const DEFAULT_SECONDS: u32 = 3600;

/// What came back.
pub struct Answer {
    pub status: u16,
    /// `x-amzn-ErrorType` (REST-JSON's error code header), when sent.
    pub error_type: Option<String>,
    pub body: Vec<u8>,
}

/// Sends the request once (a signature is cheap to redo, but a PIN or touch is not, so
/// there is no silent retry).
fn send(req: HttpRequest, timeouts: Timeouts, profile: &str, endpoint: &str) -> Result<Answer> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            Error::internal(format!(
                "cannot start the async runtime for Roles Anywhere: {e}"
            ))
        })?;
    let connector = aws_smithy_http_client::Connector::builder()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build();
    let limit = timeouts.connect + timeouts.read;
    let fix = format!(
        "check the network, a proxy, or the endpoint override ({ENDPOINT_ENV} / endpoint_url)"
    );
    rt.block_on(async {
        let call = async {
            let resp = connector.call(req).await?;
            let status = resp.status().as_u16();
            let error_type = resp.headers().get("x-amzn-errortype").map(str::to_owned);
            let body = aws_smithy_types::byte_stream::ByteStream::new(resp.into_body())
                .collect()
                .await
                .map_err(|e| aws_smithy_runtime_api::client::result::ConnectorError::io(e.into()))?;
            Ok::<_, aws_smithy_runtime_api::client::result::ConnectorError>(Answer {
                status,
                error_type,
                body: body.into_bytes().to_vec(),
            })
        };
        match tokio::time::timeout(limit, call).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => {
                let connect = sts::error_chain(&e).any(sts::is_connect_error);
                tracing::debug!(profile, endpoint, error = %aws_smithy_types::error::display::DisplayErrorContext(&e), "Roles Anywhere call failed");
                if connect {
                    Err(Error::network(format!(
                        "profile \"{profile}\": cannot reach Roles Anywhere at {endpoint} (connection failed); {fix}"
                    ))
                    .with_reason(Reason::NotSent))
                } else {
                    Err(Error::network(format!(
                        "profile \"{profile}\": the connection to Roles Anywhere at {endpoint} broke before an answer; {fix}"
                    ))
                    .with_reason(Reason::NoAnswer))
                }
            }
            Err(_) => Err(Error::network(format!(
                "profile \"{profile}\": Roles Anywhere at {endpoint} did not answer within {} s; {fix}",
                limit.as_secs_f64()
            ))
            .with_reason(Reason::TimedOut)),
        }
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SessionDoc {
    #[serde(default)]
    credential_set: Vec<CredentialSetItem>,
}

#[derive(Deserialize)]
struct CredentialSetItem {
    credentials: Option<CredentialsDoc>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CredentialsDoc {
    access_key_id: String,
    /// Taken into [`Credentials`] (a secret type); wiped here if the answer is refused.
    secret_access_key: String,
    session_token: String,
    expiration: String,
}

impl Drop for CredentialsDoc {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.secret_access_key.zeroize();
        self.session_token.zeroize();
    }
}

fn parse_credentials(bytes: &[u8], profile: &str, endpoint: &str) -> Result<Credentials> {
    let bad = |what: &str| {
        Error::network(format!(
            "profile \"{profile}\": Roles Anywhere at {endpoint} answered {what}; check the endpoint override ({ENDPOINT_ENV} / endpoint_url) and any proxy"
        ))
        .with_reason(Reason::BadAnswer)
    };
    let doc: SessionDoc = serde_json::from_slice(bytes)
        .map_err(|_| bad("something that is not a CreateSession answer"))?;
    let Some(mut c) = doc.credential_set.into_iter().find_map(|s| s.credentials) else {
        return Err(bad("without credentials"));
    };
    let Some(expiration) = crate::credentials::parse_rfc3339(&c.expiration) else {
        return Err(bad("credentials with an invalid expiration"));
    };
    if ![&c.access_key_id, &c.secret_access_key, &c.session_token]
        .iter()
        .all(|s| sts::is_credential_text(s))
    {
        return Err(bad(
            "credentials with characters no AWS credentials have (control characters, spaces or non-ASCII)",
        ));
    }
    Ok(Credentials::new(
        std::mem::take(&mut c.access_key_id),
        std::mem::take(&mut c.secret_access_key),
        Some(std::mem::take(&mut c.session_token)),
        Some(expiration),
    ))
}

#[derive(Deserialize, Default)]
struct ErrorDoc {
    #[serde(default, alias = "Message")]
    message: Option<String>,
    #[serde(default, rename = "__type")]
    kind: Option<String>,
}

/// AWS's error code and message of an answer: the `x-amzn-ErrorType` header (`Code:…`),
/// else the body's `__type` (`…#Code`), else by status.
pub fn error_code(status: u16, error_type: Option<&str>, body: &[u8]) -> (String, String) {
    let doc: ErrorDoc = serde_json::from_slice(body).unwrap_or_default();
    let message = crate::text::sanitize_foreign(doc.message.as_deref().unwrap_or(""), 300);
    let code = error_type
        .map(|t| t.split(':').next().unwrap_or_default().to_owned())
        .or(doc.kind)
        .map(|k| k.rsplit('#').next().unwrap_or_default().trim().to_owned())
        .filter(|k| !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric()))
        .unwrap_or_else(|| match status {
            403 => "AccessDeniedException".to_owned(),
            404 => "ResourceNotFoundException".to_owned(),
            429 => "ThrottlingException".to_owned(),
            400 => "ValidationException".to_owned(),
            _ => format!("HTTP {status}"),
        });
    (code, message)
}

fn explain(
    answer: &Answer,
    profile: &str,
    endpoint: &str,
    signer: &dyn CertificateSigner,
) -> Error {
    let status = answer.status;
    let (code, message) = error_code(status, answer.error_type.as_deref(), &answer.body);
    let said = if message.is_empty() {
        code.clone()
    } else {
        format!("{code}: {message}")
    };
    let at =
        format!("profile \"{profile}\": Roles Anywhere at {endpoint} refused the session ({said})");
    match code.as_str() {
        "AccessDeniedException" => Error::auth(format!(
            "{at}; check that the certificate of {} is valid and chains to the trust anchor, that the trust anchor and profile are enabled, that the role trusts rolesanywhere.amazonaws.com and is in the profile's roles, and that this machine's clock is right",
            signer.describe()
        ))
        .with_reason(Reason::Refused),
        "ValidationException" => Error::config(format!(
            "{at}; check tapcred_roles_anywhere_trust_anchor_arn, tapcred_roles_anywhere_profile_arn, role_arn and duration_seconds (900–43200, at most the profile's session duration)"
        ))
        .with_reason(Reason::Refused),
        "ResourceNotFoundException" => Error::config(format!(
            "{at}; the trust anchor or profile does not exist in this account and region: copy their ARNs from the Roles Anywhere console"
        ))
        .with_reason(Reason::Refused),
        "ThrottlingException" | "TooManyRequestsException" => {
            Error::network(format!("{at}; try again in a minute")).with_reason(Reason::Throttled)
        }
        _ if status >= 500 => Error::network(format!("{at}; try again in a minute"))
            .with_reason(Reason::Throttled),
        _ => Error::network(format!(
            "{at}; check the endpoint override ({ENDPOINT_ENV} / endpoint_url) and any proxy"
        ))
        .with_reason(Reason::BadAnswer),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_from_the_header_the_body_or_the_status() {
        let (c, m) = error_code(403, None, br#"{"message":"Untrusted signing certificate"}"#);
        assert_eq!(
            (c.as_str(), m.as_str()),
            ("AccessDeniedException", "Untrusted signing certificate")
        );
        let (c, _) = error_code(
            400,
            None,
            br#"{"__type":"com.amazonaws#ValidationException","message":"x"}"#,
        );
        assert_eq!(c, "ValidationException");
        let (c, _) = error_code(500, Some("InternalServerException:http://internal/"), b"{}");
        assert_eq!(c, "InternalServerException");
        let (c, m) = error_code(502, None, b"<html>proxy</html>");
        assert_eq!((c.as_str(), m.as_str()), ("HTTP 502", ""));
    }

    #[test]
    fn answers_become_credentials_or_a_bad_answer() {
        let ok = br#"{"credentialSet":[{"credentials":{"accessKeyId":"ASIAEXAMPLE","secretAccessKey":"s3cr3t","sessionToken":"t0ken","expiration":"2030-01-01T00:00:00Z"}}],"subjectArn":"x"}"#;
        let c = parse_credentials(ok, "p", "http://127.0.0.1:1").unwrap();
        assert_eq!(c.access_key_id, "ASIAEXAMPLE");
        assert_eq!(c.secret(), "s3cr3t");
        assert_eq!(c.token(), Some("t0ken"));
        for bad in [
            &br#"{"credentialSet":[]}"#[..],
            br#"not json"#,
            br#"{"credentialSet":[{"credentials":{"accessKeyId":"A B","secretAccessKey":"s","sessionToken":"t","expiration":"2030-01-01T00:00:00Z"}}]}"#,
            br#"{"credentialSet":[{"credentials":{"accessKeyId":"A","secretAccessKey":"s","sessionToken":"t","expiration":"soon"}}]}"#,
        ] {
            let e = parse_credentials(bad, "p", "http://127.0.0.1:1").unwrap_err();
            assert_eq!(e.exit_code(), 6, "{}", e.message());
            assert!(e.message().starts_with("profile \"p\": Roles Anywhere at"), "{}", e.message());
        }
    }
}
