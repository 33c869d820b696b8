//! Where STS calls go: region and endpoint after the SDKs' precedence rules, and the
//! endpoint override checked before any code is read.

use crate::env::EnvLookup;
use crate::error::{Error, Reason, Result};
use crate::profile::ResolvedProfile;

pub const DEFAULT_REGION: &str = "us-east-1";

/// Where STS calls go, after the SDKs' precedence rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StsTarget {
    pub region: String,
    /// None = the SDK's default endpoint for the region.
    pub endpoint_url: Option<String>,
}

impl StsTarget {
    /// Region: `AWS_REGION` > `AWS_DEFAULT_REGION` > the profile's `region` > `us-east-1`.
    /// Endpoint: unless ignored (`AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true` or the profile's
    /// `ignore_configured_endpoint_urls`), `AWS_ENDPOINT_URL_STS` > `AWS_ENDPOINT_URL` > the
    /// config file (services section, then profile `endpoint_url`).
    pub fn for_profile(profile: &ResolvedProfile, env: &dyn EnvLookup) -> StsTarget {
        Self::resolve(Some(profile), env)
    }

    /// The same rules without a profile (one that does not resolve): the environment alone.
    pub fn from_env(env: &dyn EnvLookup) -> StsTarget {
        Self::resolve(None, env)
    }

    fn resolve(profile: Option<&ResolvedProfile>, env: &dyn EnvLookup) -> StsTarget {
        let nonempty = |k: &str| env.var(k).filter(|v| !v.trim().is_empty());
        let region = nonempty("AWS_REGION")
            .or_else(|| nonempty("AWS_DEFAULT_REGION"))
            .or_else(|| profile.and_then(|p| p.region.clone()))
            .unwrap_or_else(|| DEFAULT_REGION.to_owned());
        let endpoint_url = Self::endpoint_with_origin(profile, env).map(|(url, _)| url);
        StsTarget {
            region,
            endpoint_url,
        }
    }

    /// The URL the SDK sends to: the override, else the region's own STS endpoint.
    pub fn url(&self) -> String {
        match &self.endpoint_url {
            Some(u) => u.clone(),
            None => format!("https://sts.{}.amazonaws.com", self.region),
        }
    }

    /// The endpoint override and where it came from (`AWS_ENDPOINT_URL_STS`,
    /// `AWS_ENDPOINT_URL`, or the config file's `endpoint_url`), after the ignore switches.
    fn endpoint_with_origin(
        profile: Option<&ResolvedProfile>,
        env: &dyn EnvLookup,
    ) -> Option<(String, &'static str)> {
        Self::endpoint_override(
            profile,
            env,
            "AWS_ENDPOINT_URL_STS",
            profile.and_then(|p| p.endpoint_url.clone()),
        )
    }

    /// A service's endpoint override and where it came from (`service_var`, `AWS_ENDPOINT_URL`,
    /// or `configured`, the config file's), after the ignore switches.
    pub(crate) fn endpoint_override(
        profile: Option<&ResolvedProfile>,
        env: &dyn EnvLookup,
        service_var: &'static str,
        configured: Option<String>,
    ) -> Option<(String, &'static str)> {
        let nonempty = |k: &str| env.var(k).filter(|v| !v.trim().is_empty());
        let ignore = profile.is_some_and(|p| p.ignore_configured_endpoint_urls)
            || nonempty("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")
                .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        if ignore {
            return None;
        }
        nonempty(service_var)
            .map(|u| (u, service_var))
            .or_else(|| nonempty("AWS_ENDPOINT_URL").map(|u| (u, "AWS_ENDPOINT_URL")))
            .or_else(|| configured.map(|u| (u, "endpoint_url in the AWS config file")))
    }

    /// Check the endpoint override before any code is read: a URL the request could never be
    /// sent to must cost no touch and no code window. Exit 3 (configuration).
    pub fn check_endpoint(profile: &ResolvedProfile, env: &dyn EnvLookup) -> Result<()> {
        match Self::endpoint_with_origin(Some(profile), env) {
            Some((url, origin)) => check_endpoint_url(&profile.name, "STS", origin, &url),
            None => Ok(()),
        }
    }

    pub(super) fn describe(&self) -> String {
        match &self.endpoint_url {
            Some(u) => u.clone(),
            None => format!("sts.{}.amazonaws.com", self.region),
        }
    }
}

/// The endpoint override `url` of `service` (from `origin`: the variable or config key) for
/// `profile`, checked before any code is read or request made: a URL no request could go to
/// is a configuration error (exit 3). STS and IAM share this rule.
pub fn check_endpoint_url(profile: &str, service: &str, origin: &str, url: &str) -> Result<()> {
    let shown = crate::text::sanitize_foreign(&hide_userinfo(url), 200);
    let bad = |why: &str| {
        Err(Error::config(format!(
            "profile \"{profile}\": {origin} = \"{shown}\" is not a usable {service} endpoint ({why}); use http(s)://HOST[:PORT] or unset it"
        ))
        .with_reason(Reason::NotSent))
    };
    // The URL parser would drop or percent-encode these, and a request would go out to
    // a URL nobody wrote: a trailing space from cmd's `set X=url && …`, a pasted tab.
    if let Some(c) = url
        .chars()
        .find(|&c| c.is_whitespace() || crate::text::is_unsafe(c))
        .filter(|_| url::Url::parse(url.trim()).is_ok())
    {
        let what = if c == ' ' {
            "a space".to_owned()
        } else {
            format!("the character {}", crate::text::escape(&c.to_string()))
        };
        let at = if url.trim_end() != url && url.trim_end().chars().all(|c| !c.is_whitespace()) {
            " at the end"
        } else {
            ""
        };
        let fix = if origin.starts_with("AWS_") && !at.is_empty() {
            format!(
                "remove it (in cmd, quote the whole assignment so no space trails the URL: set \"{origin}=URL\")"
            )
        } else {
            "remove it".to_owned()
        };
        return Err(Error::config(format!(
            "profile \"{profile}\": {origin} = \"{shown}\" contains {what}{at}, and a URL has no space or control character; {fix}",
        ))
        .with_reason(Reason::NotSent));
    }
    match url::Url::parse(url.trim()) {
        Err(e) => bad(&e.to_string()),
        Ok(u) if !matches!(u.scheme(), "http" | "https") => {
            bad(&format!("scheme {:?}, not http or https", u.scheme()))
        }
        Ok(u) if u.host_str().is_none_or(str::is_empty) => bad("no host"),
        Ok(u) if !u.username().is_empty() || u.password().is_some() => bad("user info in the URL"),
        Ok(u) if u.query().is_some() || u.fragment().is_some() => bad("a query or fragment"),
        Ok(_) => Ok(()),
    }
}

/// `url` with the user info of its authority (`user:password@`) replaced by `…@`: a
/// password in an endpoint URL is never echoed.
fn hide_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://…{}", &rest[at..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::TokenSettings;
    use std::collections::HashMap;

    fn profile(region: Option<&str>, endpoint: Option<&str>, ignore: bool) -> ResolvedProfile {
        ResolvedProfile {
            name: "p".into(),
            region: region.map(Into::into),
            endpoint_url: endpoint.map(Into::into),
            ignore_configured_endpoint_urls: ignore,
            base: crate::profile::BaseCredentials {
                origin: "p".into(),
                access_key_id: "AKID".into(),
                secret_access_key: "s".to_owned().into(),
                session_token: None,
                in_vault: None,
            },
            steps: vec![],
            token: TokenSettings::default(),
            roles_anywhere: None,
        }
    }

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn region_precedence() {
        let p = profile(Some("eu-west-1"), None, false);
        assert_eq!(StsTarget::for_profile(&p, &env(&[])).region, "eu-west-1");
        assert_eq!(
            StsTarget::for_profile(&p, &env(&[("AWS_DEFAULT_REGION", "ap-south-1")])).region,
            "ap-south-1"
        );
        let e = env(&[
            ("AWS_DEFAULT_REGION", "ap-south-1"),
            ("AWS_REGION", "us-west-2"),
        ]);
        assert_eq!(StsTarget::for_profile(&p, &e).region, "us-west-2");
        assert_eq!(
            StsTarget::for_profile(&profile(None, None, false), &env(&[])).region,
            "us-east-1"
        );
    }

    #[test]
    fn endpoint_precedence_and_ignore() {
        let p = profile(None, Some("http://127.0.0.1:1/cfg"), false);
        assert_eq!(
            StsTarget::for_profile(&p, &env(&[]))
                .endpoint_url
                .as_deref(),
            Some("http://127.0.0.1:1/cfg")
        );
        let e = env(&[("AWS_ENDPOINT_URL", "http://127.0.0.1:2")]);
        assert_eq!(
            StsTarget::for_profile(&p, &e).endpoint_url.as_deref(),
            Some("http://127.0.0.1:2")
        );
        let e = env(&[
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:2"),
            ("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:3"),
        ]);
        assert_eq!(
            StsTarget::for_profile(&p, &e).endpoint_url.as_deref(),
            Some("http://127.0.0.1:3")
        );
        let e = env(&[
            ("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:3"),
            ("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true"),
        ]);
        assert_eq!(StsTarget::for_profile(&p, &e).endpoint_url, None);
        let ignored = profile(None, None, true);
        assert_eq!(
            StsTarget::for_profile(&ignored, &env(&[("AWS_ENDPOINT_URL", "http://x")]))
                .endpoint_url,
            None
        );
    }
}
