//! Shared by the test kit's own tests (`mod common;`): an RFC 6238 TOTP written here again so
//! the tests do not trust the double's own math, a tokio runtime, and real AWS SDK clients
//! pointed at an endpoint (the double or moto), with retries off unless asked for.
#![allow(dead_code)]

use aws_sdk_sts::config::retry::RetryConfig;
use aws_sdk_sts::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

/// RFC 6238 / RFC 4226 (SHA-1, 6 digits) of `seed` at `step`.
pub fn totp(seed: &[u8], step: u64) -> String {
    let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(seed).unwrap();
    mac.update(&step.to_be_bytes());
    let h = mac.finalize().into_bytes();
    let o = (h[19] & 0x0f) as usize;
    let n = ((h[o] as u32 & 0x7f) << 24)
        | ((h[o + 1] as u32) << 16)
        | ((h[o + 2] as u32) << 8)
        | (h[o + 3] as u32);
    format!("{:06}", n % 1_000_000)
}

/// [`totp`] of a base32 seed.
pub fn totp_b32(seed_b32: &str, step: u64) -> String {
    let seed = data_encoding::BASE32_NOPAD
        .decode(seed_b32.as_bytes())
        .expect("base32 seed");
    totp(&seed, step)
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The SDK's HTTPS client (rustls + ring; plain http to loopback endpoints works too).
pub fn https() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

fn credentials(akid: &str, secret: &str, token: Option<&str>) -> Credentials {
    Credentials::new(akid, secret, token.map(str::to_owned), None, "test")
}

/// No retries (every error surfaces as sent), or the SDK's standard ones (3 attempts).
fn retry(retries: bool) -> RetryConfig {
    if retries {
        RetryConfig::standard().with_max_attempts(3)
    } else {
        RetryConfig::disabled()
    }
}

/// A real STS client for `endpoint` (us-east-1) signing with these keys.
pub fn sts_client(
    endpoint: &str,
    akid: &str,
    secret: &str,
    token: Option<&str>,
    retries: bool,
) -> aws_sdk_sts::Client {
    let conf = aws_sdk_sts::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(credentials(akid, secret, token))
        .http_client(https())
        .retry_config(retry(retries))
        .build();
    aws_sdk_sts::Client::from_conf(conf)
}

/// A real IAM client for `endpoint` (us-east-1), no retries.
pub fn iam_client(
    endpoint: &str,
    akid: &str,
    secret: &str,
    token: Option<&str>,
) -> aws_sdk_iam::Client {
    let conf = aws_sdk_iam::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(credentials(akid, secret, token))
        .http_client(https())
        .retry_config(retry(false))
        .build();
    aws_sdk_iam::Client::from_conf(conf)
}

/// (HTTP status, error code, message) of an SDK error.
pub fn err_parts<E: ProvideErrorMetadata>(
    e: &SdkError<E, aws_smithy_runtime_api::client::orchestrator::HttpResponse>,
) -> (u16, String, String) {
    (
        e.raw_response().map(|r| r.status().as_u16()).unwrap_or(0),
        e.code().unwrap_or("").to_owned(),
        e.message().unwrap_or("").to_owned(),
    )
}
