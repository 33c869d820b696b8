//! What every AWS client of tapcred is built from (STS here, IAM in `iam.rs`): the one
//! HTTPS client, the timeouts, the SDK configuration.

use std::time::Duration;

use aws_sdk_sts::config::{BehaviorVersion, Region};
use aws_smithy_http_client::tls;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;

use crate::credentials::Credentials;
use crate::env::EnvLookup;
use crate::error::{Error, Result};

/// Connect and read timeouts of STS calls. An MFA call is made once (never re-sent with
/// the same code), so these bound how long a hung endpoint holds the locks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timeouts {
    pub connect: Duration,
    pub read: Duration,
}

/// Env vars overriding [`Timeouts`] (seconds, 0.1–300; for tests and slow links).
pub const CONNECT_TIMEOUT_ENV: &str = "TAPCRED_STS_CONNECT_TIMEOUT";
pub const READ_TIMEOUT_ENV: &str = "TAPCRED_STS_READ_TIMEOUT";

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            read: Duration::from_secs(15),
        }
    }
}

impl Timeouts {
    /// Defaults, overridden by [`CONNECT_TIMEOUT_ENV`] / [`READ_TIMEOUT_ENV`].
    pub fn from_env(env: &dyn EnvLookup) -> Result<Timeouts> {
        let mut t = Timeouts::default();
        for (name, slot) in [
            (CONNECT_TIMEOUT_ENV, &mut t.connect),
            (READ_TIMEOUT_ENV, &mut t.read),
        ] {
            let Some(v) = env.var(name).filter(|v| !v.trim().is_empty()) else {
                continue;
            };
            let secs = v
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|s| (0.1..=300.0).contains(s))
                .ok_or_else(|| {
                    Error::config(format!(
                        "{name} = \"{}\" is not a number of seconds between 0.1 and 300; fix or unset it",
                        crate::text::sanitize_foreign(&v, 40)
                    ))
                })?;
            *slot = Duration::from_secs_f64(secs);
        }
        Ok(t)
    }
}

/// The SDK configuration every AWS client of tapcred is built from (STS here, IAM in
/// `iam.rs`): the one HTTPS client, the region, the caller's static credentials, the endpoint
/// override, and the caller's retry and timeout rules.
pub(crate) fn sdk_config(
    http: &aws_smithy_runtime_api::client::http::SharedHttpClient,
    region: &str,
    endpoint_url: Option<&str>,
    creds: &Credentials,
    retry: RetryConfig,
    timeout: TimeoutConfig,
) -> aws_types::SdkConfig {
    let provider = aws_credential_types::Credentials::new(
        creds.access_key_id.clone(),
        creds.secret().to_owned(),
        creds.token().map(str::to_owned),
        None,
        "tapcred",
    );
    let mut b = aws_types::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(provider),
        )
        .http_client(http.clone())
        .retry_config(retry)
        .timeout_config(timeout);
    if let Some(url) = endpoint_url {
        b = b.endpoint_url(url);
    }
    b.build()
}

/// The one HTTPS client: rustls with ring (no aws-lc, no legacy hyper 0.14 stack). Public so
/// SDK clients in tests use exactly what tapcred uses.
pub fn https_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls_provider())
        .build_https()
}

/// One connection outside an SDK client (doctor's unsigned request to the STS endpoint),
/// with the same TLS as [`https_client`].
pub(crate) fn https_connector() -> aws_smithy_http_client::Connector {
    aws_smithy_http_client::Connector::builder()
        .tls_provider(tls_provider())
        .build()
}

fn tls_provider() -> tls::Provider {
    tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn timeouts_default_and_env() {
        let t = Timeouts::from_env(&env(&[])).unwrap();
        assert_eq!(t, Timeouts::default());
        assert_eq!(t.connect, Duration::from_secs(5));
        assert_eq!(t.read, Duration::from_secs(15));
        let t = Timeouts::from_env(&env(&[
            (CONNECT_TIMEOUT_ENV, "0.5"),
            (READ_TIMEOUT_ENV, "2"),
        ]))
        .unwrap();
        assert_eq!(
            (t.connect, t.read),
            (Duration::from_millis(500), Duration::from_secs(2))
        );
        for bad in ["0", "-1", "soon", "301", "NaN"] {
            let e = Timeouts::from_env(&env(&[(READ_TIMEOUT_ENV, bad)])).unwrap_err();
            assert_eq!(e.exit_code(), 3);
            assert!(e.message().contains(READ_TIMEOUT_ENV), "{e}");
        }
    }
}
