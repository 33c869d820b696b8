//! The clock against STS: one unsigned request to the endpoint the calls would use, its
//! `Date` header against this computer's clock.

use std::time::Duration;

use super::report::Doctor;
use crate::clock;
use crate::env::EnvLookup;
use crate::error::ErrorKind;
use crate::profile::ResolvedProfile;
use crate::sts::StsTarget;

/// The STS endpoint the calls would use: the profile's target, or (when the profile does
/// not resolve) the environment's.
pub(super) fn sts_url(p: Option<&ResolvedProfile>, env: &dyn EnvLookup) -> String {
    match p {
        Some(p) => StsTarget::for_profile(p, env),
        None => StsTarget::from_env(env),
    }
    .url()
}

pub(super) fn clock_check(
    d: &mut Doctor,
    p: Option<&ResolvedProfile>,
    env: &dyn EnvLookup,
) -> Option<i64> {
    let url = sts_url(p, env);
    match server_date(&url) {
        Ok(server) => {
            let skew = clock::now_unix() as i64 - server;
            let abs = skew.unsigned_abs();
            let how = if skew >= 0 { "ahead of" } else { "behind" };
            if abs >= 30 {
                d.problem(
                    "clock",
                    format!("this computer's clock is {abs} s {how} STS at {url} (its Date header): MFA codes from another 30 s window are refused"),
                    "set the clock right: `sudo timedatectl set-ntp true` (or your OS's time sync)",
                    ErrorKind::Auth.exit_code(),
                );
            } else if abs >= 10 {
                d.note(
                    "clock",
                    format!("this computer's clock is {abs} s {how} STS at {url}: codes near the end of a window may be refused"),
                    Some("turn on time sync: `sudo timedatectl set-ntp true`".to_owned()),
                );
            } else {
                d.ok("clock", format!("clock within {abs} s of STS at {url}"));
            }
            Some(skew)
        }
        Err(why) => {
            d.problem(
                "clock",
                format!("cannot reach STS at {url} ({why})"),
                "check the network, a proxy, or the endpoint override (AWS_ENDPOINT_URL_STS / endpoint_url)",
                ErrorKind::Network.exit_code(),
            );
            None
        }
    }
}

/// One unsigned GET to `url` over the STS calls' HTTPS connection; the answer's `Date` in
/// Unix seconds.
pub(super) fn server_date(url: &str) -> std::result::Result<i64, String> {
    use aws_smithy_runtime_api::client::http::HttpConnector;
    use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
    let connector = crate::sts::https_connector();
    let request = HttpRequest::get(url).map_err(|e| format!("not a usable URL: {e}"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the I/O runtime: {e}"))?;
    let response = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(5), connector.call(request)).await
    });
    let response = match response {
        Err(_) => return Err("no answer within 5 s".to_owned()),
        Ok(Err(e)) => {
            // The innermost cause reads best ("Connection refused (os error 111)").
            let mut cause: &dyn std::error::Error = &e;
            while let Some(inner) = cause.source() {
                cause = inner;
            }
            return Err(cause.to_string());
        }
        Ok(Ok(r)) => r,
    };
    let date = response
        .headers()
        .get("date")
        .ok_or_else(|| format!("HTTP {} without a Date header", response.status().as_u16()))?;
    parse_http_date(date).ok_or_else(|| "an unreadable Date header".to_owned())
}

/// RFC 9110 IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) → Unix seconds.
pub(super) fn parse_http_date(s: &str) -> Option<i64> {
    let fmt = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    time::PrimitiveDateTime::parse(s.trim(), &fmt)
        .ok()
        .map(|t| t.assume_utc().unix_timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784111777)
        );
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), None);
    }

    /// With the "ignore configured endpoints" switch the SDK calls the region's own endpoint,
    /// whether or not the profile resolves; the clock check must ask that same endpoint.
    #[test]
    fn the_clock_is_checked_against_the_endpoint_the_calls_use() {
        let env = |pairs: &[(&str, &str)]| -> std::collections::HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let overridden = env(&[("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:9/sts")]);
        assert_eq!(sts_url(None, &overridden), "http://127.0.0.1:9/sts");
        let ignored = env(&[
            ("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:9/sts"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9/all"),
            ("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true"),
            ("AWS_REGION", "eu-west-1"),
        ]);
        assert_eq!(
            sts_url(None, &ignored),
            "https://sts.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            sts_url(None, &env(&[])),
            "https://sts.us-east-1.amazonaws.com"
        );
    }
}
