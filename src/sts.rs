//! AWS STS calls with `aws-sdk-sts`: AssumeRole / GetSessionToken with MFA, GetCallerIdentity,
//! endpoint and region rules, and AWS errors mapped to plain messages with the fix.
//!
//! A tokio current-thread runtime is created only here, only when an STS call is made.

use std::time::Duration;

use aws_sdk_sts::config::{BehaviorVersion, Region};
use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_http_client::tls;
use aws_smithy_runtime_api::http::Response as HttpResponse;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use secrecy::ExposeSecret;

use crate::credentials::Credentials;
use crate::error::{Error, Reason, Result};
use crate::profile::{ResolvedProfile, RoleStep};
use crate::token::EnvLookup;

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
        let nonempty = |k: &str| env.var(k).filter(|v| !v.trim().is_empty());
        let region = nonempty("AWS_REGION")
            .or_else(|| nonempty("AWS_DEFAULT_REGION"))
            .or_else(|| profile.region.clone())
            .unwrap_or_else(|| DEFAULT_REGION.to_owned());
        let endpoint_url = Self::endpoint_with_origin(profile, env).map(|(url, _)| url);
        StsTarget {
            region,
            endpoint_url,
        }
    }

    /// The endpoint override and where it came from (`AWS_ENDPOINT_URL_STS`,
    /// `AWS_ENDPOINT_URL`, or the config file's `endpoint_url`), after the ignore switches.
    fn endpoint_with_origin(
        profile: &ResolvedProfile,
        env: &dyn EnvLookup,
    ) -> Option<(String, &'static str)> {
        Self::endpoint_override(
            profile,
            env,
            "AWS_ENDPOINT_URL_STS",
            profile.endpoint_url.clone(),
        )
    }

    /// A service's endpoint override and where it came from (`service_var`, `AWS_ENDPOINT_URL`,
    /// or `configured`, the config file's), after the ignore switches.
    pub(crate) fn endpoint_override(
        profile: &ResolvedProfile,
        env: &dyn EnvLookup,
        service_var: &'static str,
        configured: Option<String>,
    ) -> Option<(String, &'static str)> {
        let nonempty = |k: &str| env.var(k).filter(|v| !v.trim().is_empty());
        let ignore = profile.ignore_configured_endpoint_urls
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
        Self::check_endpoint_url(
            &profile.name,
            Self::endpoint_with_origin(profile, env),
            "STS",
        )
    }

    /// Check an endpoint override of `service` (`found`, from
    /// [`StsTarget::endpoint_override`]) before any code is read or key touched: a URL the
    /// request could never be sent to must cost no touch and no code window. Exit 3.
    pub(crate) fn check_endpoint_url(
        profile: &str,
        found: Option<(String, &'static str)>,
        service: &str,
    ) -> Result<()> {
        let Some((url, origin)) = found else {
            return Ok(());
        };
        let shown = crate::text::sanitize_foreign(&url, 200);
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
            let at = if url.trim_end() != url && url.trim_end().chars().all(|c| !c.is_whitespace())
            {
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
                "profile \"{profile}\": {origin} = \"{shown}\" contains {what}{at}, and a URL has no space or control character; {fix}"
            ))
            .with_reason(Reason::NotSent));
        }
        match url::Url::parse(url.trim()) {
            Err(e) => bad(&e.to_string()),
            Ok(u) if !matches!(u.scheme(), "http" | "https") => {
                bad(&format!("scheme {:?}, not http or https", u.scheme()))
            }
            Ok(u) if u.host_str().is_none_or(str::is_empty) => bad("no host"),
            Ok(u) if !u.username().is_empty() || u.password().is_some() => {
                bad("user info in the URL")
            }
            Ok(u) if u.query().is_some() || u.fragment().is_some() => bad("a query or fragment"),
            Ok(_) => Ok(()),
        }
    }

    fn describe(&self) -> String {
        match &self.endpoint_url {
            Some(u) => u.clone(),
            None => format!("sts.{}.amazonaws.com", self.region),
        }
    }
}

/// Context for error messages: which profile asked, which profile's keys signed.
#[derive(Debug, Clone, Copy)]
pub struct CallContext<'a> {
    pub profile: &'a str,
    pub signer: &'a str,
}

/// An MFA device serial and a code, for one call.
#[derive(Clone, Copy)]
pub struct MfaCode<'a> {
    pub serial: &'a str,
    pub code: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CallerIdentity {
    pub account: String,
    pub arn: String,
    pub user_id: String,
}

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

pub struct Sts {
    rt: tokio::runtime::Runtime,
    http: aws_smithy_runtime_api::client::http::SharedHttpClient,
    target: StsTarget,
    timeouts: Timeouts,
}

impl Sts {
    pub fn new(target: StsTarget) -> Result<Sts> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| {
                Error::internal(format!("cannot start the async runtime for STS calls: {e}"))
            })?;
        let http = https_client();
        Ok(Sts {
            rt,
            http,
            target,
            timeouts: Timeouts::default(),
        })
    }

    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Sts {
        self.timeouts = timeouts;
        self
    }

    pub fn target(&self) -> &StsTarget {
        &self.target
    }

    /// A client for one call. `with_code`: the call carries a TokenCode, so the SDK must make
    /// exactly one attempt (a retry would re-send a code STS may have consumed; the engine
    /// decides about a retry with the next window's code). Other calls keep the SDK's
    /// standard retries.
    fn client(&self, creds: &Credentials, with_code: bool) -> aws_sdk_sts::Client {
        let retry = if with_code {
            RetryConfig::disabled()
        } else {
            RetryConfig::standard().with_max_attempts(4)
        };
        let timeout = TimeoutConfig::builder()
            .connect_timeout(self.timeouts.connect)
            .read_timeout(self.timeouts.read)
            .operation_attempt_timeout(self.timeouts.connect + self.timeouts.read)
            .build();
        let config = sdk_config(
            &self.http,
            &self.target.region,
            self.target.endpoint_url.as_deref(),
            creds,
            retry,
            timeout,
        );
        aws_sdk_sts::Client::new(&config)
    }

    pub fn get_caller_identity(
        &self,
        creds: &Credentials,
        ctx: CallContext<'_>,
    ) -> Result<CallerIdentity> {
        let out = self
            .rt
            .block_on(self.client(creds, false).get_caller_identity().send())
            .map_err(|e| self.map_error(e, ctx, None, None, None))?;
        Ok(CallerIdentity {
            account: out.account.unwrap_or_default(),
            arn: out.arn.unwrap_or_default(),
            user_id: out.user_id.unwrap_or_default(),
        })
    }

    fn map_error<E>(
        &self,
        err: SdkError<E, HttpResponse>,
        ctx: CallContext<'_>,
        role: Option<&RoleStep>,
        serial: Option<&str>,
        duration: Option<u32>,
    ) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let endpoint = self.target.describe();
        tracing::debug!(profile = ctx.profile, %endpoint, error = %aws_smithy_types::error::display::DisplayErrorContext(&err), "STS call failed");
        let profile = ctx.profile;
        match &err {
            SdkError::ServiceError(se) if se.raw().status().is_server_error() => {
                let e = se.err();
                Error::network(format!(
                    "profile \"{profile}\": STS at {endpoint} failed (HTTP {} {}); try again in a minute",
                    se.raw().status().as_u16(),
                    crate::text::sanitize_foreign(e.code().unwrap_or("no error code"), 60)
                ))
                .with_reason(Reason::NoAnswer)
            }
            SdkError::ServiceError(se) if se.err().code().is_none() => Error::network(format!(
                "profile \"{profile}\": STS at {endpoint} answered HTTP {} with something that is not an STS answer; check the endpoint override (AWS_ENDPOINT_URL_STS / endpoint_url) and any proxy",
                se.raw().status().as_u16()
            ))
            .with_reason(Reason::BadAnswer),
            SdkError::ServiceError(se) => {
                let e = se.err();
                explain(
                    e.code().unwrap_or("Unknown"),
                    e.message().unwrap_or(""),
                    &Explain {
                        ctx,
                        role,
                        serial,
                        duration,
                        endpoint: &endpoint,
                    },
                )
            }
            SdkError::TimeoutError(_) => Error::network(format!(
                "profile \"{profile}\": STS at {endpoint} did not answer within {} s; check the network, a proxy, or the endpoint override (AWS_ENDPOINT_URL_STS / endpoint_url)",
                (self.timeouts.connect + self.timeouts.read).as_secs_f64()
            ))
            .with_reason(Reason::TimedOut),
            SdkError::DispatchFailure(d) => {
                let reason = dispatch_reason(d);
                let msg = match reason {
                    Reason::NotSent => format!(
                        "profile \"{profile}\": cannot reach STS at {endpoint} (connection failed)"
                    ),
                    Reason::TimedOut => format!(
                        "profile \"{profile}\": STS at {endpoint} did not answer within {} s",
                        self.timeouts.read.as_secs_f64()
                    ),
                    _ => format!(
                        "profile \"{profile}\": the connection to STS at {endpoint} broke before an answer"
                    ),
                };
                Error::network(format!(
                    "{msg}; check the network, a proxy, or the endpoint override (AWS_ENDPOINT_URL_STS / endpoint_url)"
                ))
                .with_reason(reason)
            }
            SdkError::ResponseError(_) => Error::network(format!(
                "profile \"{profile}\": STS at {endpoint} sent a response that is not STS's; check the endpoint override (AWS_ENDPOINT_URL_STS / endpoint_url) and any proxy"
            ))
            .with_reason(Reason::BadAnswer),
            SdkError::ConstructionFailure(_) => Error::config(format!(
                "profile \"{profile}\": cannot build the STS request for {endpoint}; check region and endpoint_url"
            ))
            .with_reason(Reason::NotSent),
            _ => Error::network(format!(
                "profile \"{profile}\": STS call to {endpoint} failed"
            ))
            .with_reason(Reason::NoAnswer),
        }
    }
}

/// The two STS calls the engine makes: a trait so the engine's flow is tested without a
/// network (`engine::tests` has a strict fake).
pub trait StsApi {
    fn assume_role(
        &self,
        creds: &Credentials,
        role: &RoleStep,
        mfa: Option<MfaCode<'_>>,
        duration_seconds: Option<u32>,
        ctx: CallContext<'_>,
    ) -> Result<Credentials>;
    fn get_session_token(
        &self,
        creds: &Credentials,
        mfa: Option<MfaCode<'_>>,
        duration_seconds: Option<u32>,
        ctx: CallContext<'_>,
    ) -> Result<Credentials>;
}

impl StsApi for Sts {
    fn assume_role(
        &self,
        creds: &Credentials,
        role: &RoleStep,
        mfa: Option<MfaCode<'_>>,
        duration_seconds: Option<u32>,
        ctx: CallContext<'_>,
    ) -> Result<Credentials> {
        let session_name = role
            .role_session_name
            .clone()
            .unwrap_or_else(default_session_name);
        let mut req = self
            .client(creds, mfa.is_some())
            .assume_role()
            .role_arn(&role.role_arn)
            .role_session_name(session_name)
            .set_external_id(role.external_id.clone())
            .set_duration_seconds(duration_seconds.map(|d| d as i32));
        if let Some(m) = mfa {
            req = req.serial_number(m.serial).token_code(m.code);
        }
        tracing::info!(
            profile = ctx.profile,
            signer = ctx.signer,
            role = %role.role_arn,
            mfa_serial = mfa.map(|m| m.serial),
            duration = duration_seconds,
            endpoint = %self.target.describe(),
            "STS AssumeRole"
        );
        let out = self.rt.block_on(req.send()).map_err(|e| {
            self.map_error(e, ctx, Some(role), mfa.map(|m| m.serial), duration_seconds)
        })?;
        convert(out.credentials, &self.target, ctx.profile)
    }

    fn get_session_token(
        &self,
        creds: &Credentials,
        mfa: Option<MfaCode<'_>>,
        duration_seconds: Option<u32>,
        ctx: CallContext<'_>,
    ) -> Result<Credentials> {
        let mut req = self
            .client(creds, mfa.is_some())
            .get_session_token()
            .set_duration_seconds(duration_seconds.map(|d| d as i32));
        if let Some(m) = mfa {
            req = req.serial_number(m.serial).token_code(m.code);
        }
        tracing::info!(
            profile = ctx.profile,
            signer = ctx.signer,
            mfa_serial = mfa.map(|m| m.serial),
            duration = duration_seconds,
            endpoint = %self.target.describe(),
            "STS GetSessionToken"
        );
        let out = self
            .rt
            .block_on(req.send())
            .map_err(|e| self.map_error(e, ctx, None, mfa.map(|m| m.serial), duration_seconds))?;
        convert(out.credentials, &self.target, ctx.profile)
    }
}

struct Explain<'a> {
    ctx: CallContext<'a>,
    role: Option<&'a RoleStep>,
    serial: Option<&'a str>,
    duration: Option<u32>,
    endpoint: &'a str,
}

/// Map an STS error code + message to one plain line with the fix, and a typed [`Reason`].
fn explain(code: &str, message: &str, x: &Explain<'_>) -> Error {
    let reason = match code {
        "InvalidClientTokenId" | "ExpiredToken" => Reason::SessionRejected,
        "Throttling" | "ThrottlingException" | "RequestLimitExceeded" => Reason::Throttled,
        "AccessDenied"
            if message
                .to_ascii_lowercase()
                .contains("invalid mfa one time pass code") =>
        {
            Reason::CodeRejected
        }
        _ => Reason::Refused,
    };
    // Both are foreign text: no escape sequences, one line, capped.
    let code = crate::text::sanitize_foreign(code, 60);
    let message = crate::text::sanitize_foreign(message, crate::text::FOREIGN_TEXT_MAX);
    explain_text(&code, &message, x).with_reason(reason)
}

fn explain_text(code: &str, message: &str, x: &Explain<'_>) -> Error {
    let profile = x.ctx.profile;
    let signer = x.ctx.signer;
    let serial = x.serial.unwrap_or("(none)");
    let what = match x.role {
        Some(r) => format!("assuming {}", r.role_arn),
        None => "GetSessionToken".to_owned(),
    };
    let msg = message.to_ascii_lowercase();
    match code {
        "AccessDenied" if msg.contains("invalid mfa one time pass code") => Error::auth(format!(
            "profile \"{profile}\": STS rejected the MFA code for {serial} (wrong, or already used in this 30 s window); check the system clock and that the token holds the seed of this MFA device, then try again"
        )),
        "AccessDenied"
            if msg.contains("unable to validate mfa code")
                || msg.contains("verify your mfa serial") =>
        {
            Error::auth(format!(
                "profile \"{profile}\": mfa_serial {serial} is not an MFA device of the IAM user whose keys profile \"{signer}\" holds; fix mfa_serial (see `aws iam list-mfa-devices`)"
            ))
        }
        "AccessDenied" if msg.contains("must provide both") => Error::auth(format!(
            "profile \"{profile}\": STS needs both an MFA serial and a code; add mfa_serial to the profile"
        )),
        "AccessDenied" if msg.contains("not authorized to perform: sts:assumerole") => {
            let role = x.role.map(|r| r.role_arn.as_str()).unwrap_or("the role");
            if x.serial.is_some() {
                Error::auth(format!(
                    "profile \"{profile}\": {role} refused to be assumed by the keys of profile \"{signer}\" even with MFA; check the role's trust policy (principal, ExternalId)"
                ))
            } else {
                Error::auth(format!(
                    "profile \"{profile}\": {role} refused the keys of profile \"{signer}\": the role's trust policy likely requires MFA; add mfa_serial = arn:aws:iam::ACCOUNT:mfa/USER to profile \"{profile}\""
                ))
            }
        }
        "AccessDenied" => Error::auth(format!(
            "profile \"{profile}\": STS denied {what}: {message}"
        )),
        "ValidationError" if msg.contains("maxsessionduration") => Error::auth(format!(
            "profile \"{profile}\": duration_seconds = {} exceeds the maximum session duration of {}; lower duration_seconds or raise the role's MaxSessionDuration",
            x.duration.map(|d| d.to_string()).unwrap_or_default(),
            x.role.map(|r| r.role_arn.as_str()).unwrap_or("the role")
        )),
        "ValidationError" if msg.contains("role chaining") => Error::auth(format!(
            "profile \"{profile}\": duration_seconds = {} is above the 1 hour limit for roles assumed with temporary credentials (role chaining); use 3600 or less",
            x.duration.map(|d| d.to_string()).unwrap_or_default()
        )),
        "ValidationError" => Error::config(format!(
            "profile \"{profile}\": STS refused the request: {message}"
        )),
        "InvalidClientTokenId" => Error::auth(format!(
            "profile \"{profile}\": STS does not know the access key of profile \"{signer}\" (deleted, deactivated or mistyped, or a revoked session); update the keys in profile \"{signer}\""
        )),
        "SignatureDoesNotMatch" if msg.contains("expired") || msg.contains("time") => {
            Error::auth(format!(
                "profile \"{profile}\": STS says the request time is off: the system clock is wrong by more than 5 minutes; sync it (timedatectl set-ntp true)"
            ))
        }
        "SignatureDoesNotMatch" => Error::auth(format!(
            "profile \"{profile}\": the secret access key of profile \"{signer}\" does not match its access key id; fix aws_secret_access_key"
        )),
        "RequestExpired" => Error::auth(format!(
            "profile \"{profile}\": STS says the request expired: the system clock is off; sync it (timedatectl set-ntp true)"
        )),
        "ExpiredToken" => Error::auth(format!(
            "profile \"{profile}\": the session credentials of profile \"{signer}\" have expired; refresh them (tapcred sessions clear) and try again"
        )),
        "Throttling" | "ThrottlingException" | "RequestLimitExceeded" => Error::network(format!(
            "profile \"{profile}\": STS at {} is throttling requests (still after retries); wait a minute and try again",
            x.endpoint
        )),
        _ => Error::auth(format!(
            "profile \"{profile}\": STS error {code} while {what}: {message}"
        )),
    }
}

/// Whether a failed dispatch ever left this machine. hyper-util marks errors of the connect
/// phase (DNS, refused, connect timeout) `is_connect()`; anything later may have reached STS.
fn dispatch_reason(d: &aws_smithy_runtime_api::client::result::DispatchFailure) -> Reason {
    if d.is_user() {
        return Reason::NotSent;
    }
    let connect_phase = d
        .as_connector_error()
        .is_some_and(|e| error_chain(e).any(is_connect_error));
    if connect_phase {
        Reason::NotSent
    } else if d.is_timeout() {
        Reason::TimedOut
    } else {
        Reason::NoAnswer
    }
}

pub(crate) fn is_connect_error(e: &(dyn std::error::Error + 'static)) -> bool {
    e.downcast_ref::<hyper_util::client::legacy::Error>()
        .is_some_and(|h| h.is_connect())
}

/// `error`, then each error after it; through an `io::Error` to its payload (whose own
/// `source()` would skip it).
pub(crate) fn error_chain<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(error), |&e| match e.downcast_ref::<std::io::Error>() {
        Some(io) => io
            .get_ref()
            .map(|inner| inner as &(dyn std::error::Error + 'static)),
        None => e.source(),
    })
}

/// Credentials are printable ASCII without spaces (AWS's are base32/base64 alphabets):
/// anything else (a newline, an escape sequence) is not a credential and would corrupt the
/// shells, files and headers they go to.
pub(crate) fn is_credential_text(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic())
}

fn convert(
    c: Option<aws_sdk_sts::types::Credentials>,
    target: &StsTarget,
    profile: &str,
) -> Result<Credentials> {
    let c = c.ok_or_else(|| {
        Error::network(format!(
            "profile \"{profile}\": STS at {} answered without credentials; check the endpoint override (AWS_ENDPOINT_URL_STS / endpoint_url)",
            target.describe()
        ))
        .with_reason(Reason::BadAnswer)
    })?;
    let secs = c.expiration.secs();
    let expiration = time::OffsetDateTime::from_unix_timestamp(secs).map_err(|_| {
        Error::network(format!(
            "profile \"{profile}\": STS at {} answered credentials with an invalid Expiration; check the endpoint override (AWS_ENDPOINT_URL_STS / endpoint_url)",
            target.describe()
        ))
        .with_reason(Reason::BadAnswer)
    })?;
    if !(is_credential_text(&c.access_key_id)
        && is_credential_text(&c.secret_access_key)
        && is_credential_text(&c.session_token))
    {
        return Err(Error::network(format!(
            "profile \"{profile}\": STS at {} answered credentials with characters no AWS credentials have (control characters, spaces or non-ASCII); check the endpoint override (AWS_ENDPOINT_URL_STS / endpoint_url)",
            target.describe()
        ))
        .with_reason(Reason::BadAnswer));
    }
    // A document without an Expiration parses as the epoch (found by fault injection with a
    // truncated answer): already expired, so not credentials to hand out.
    if expiration.unix_timestamp() <= 0 {
        return Err(Error::network(format!(
            "profile \"{profile}\": STS at {} answered credentials without a valid Expiration; check the endpoint override (AWS_ENDPOINT_URL_STS / endpoint_url)",
            target.describe()
        ))
        .with_reason(Reason::BadAnswer));
    }
    tracing::debug!(expiration = %crate::credentials::format_rfc3339(expiration), "STS issued credentials");
    Ok(Credentials::new(
        c.access_key_id,
        c.secret_access_key,
        Some(c.session_token),
        Some(expiration),
    ))
}

/// The one HTTPS client: rustls with ring (no aws-lc, no legacy hyper 0.14 stack). Public so
/// SDK clients in tests use exactly what tapcred uses.
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

pub fn https_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

fn default_session_name() -> String {
    format!("tapcred-{}", crate::clock::now_unix())
}

/// Long-term base keys as `Credentials` for signing.
pub fn base_credentials(b: &crate::profile::BaseCredentials) -> Credentials {
    Credentials {
        access_key_id: b.access_key_id.clone(),
        secret_access_key: b.secret_access_key.expose_secret().to_owned().into(),
        session_token: b
            .session_token
            .as_ref()
            .map(|t| t.expose_secret().to_owned().into()),
        expiration: None,
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

    #[test]
    fn errors_name_profile_and_fix() {
        let role = RoleStep {
            profile: "mfa".into(),
            role_arn: "arn:aws:iam::111111111111:role/r".into(),
            external_id: None,
            role_session_name: None,
            duration_seconds: Some(7200),
            mfa: None,
        };
        let x = Explain {
            ctx: CallContext {
                profile: "mfa",
                signer: "toolkit-user",
            },
            role: Some(&role),
            serial: Some("arn:aws:iam::111111111111:mfa/u"),
            duration: Some(7200),
            endpoint: "http://127.0.0.1:1",
        };
        let e = explain(
            "AccessDenied",
            "MultiFactorAuthentication failed with invalid MFA one time pass code. ",
            &x,
        );
        assert_eq!(e.kind, crate::ErrorKind::Auth);
        assert!(
            e.message().contains("rejected the MFA code") && e.message().contains("clock"),
            "{e}"
        );
        let e = explain(
            "AccessDenied",
            "MultiFactorAuthentication failed, unable to validate MFA code. Please verify your MFA serial number is valid and associated with this user.",
            &x,
        );
        assert!(e.message().contains("fix mfa_serial"), "{e}");
        let e = explain(
            "ValidationError",
            "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.",
            &x,
        );
        assert!(
            e.message().contains("duration_seconds = 7200")
                && e.message().contains("MaxSessionDuration"),
            "{e}"
        );
        let e = explain(
            "ValidationError",
            "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining.",
            &x,
        );
        assert!(e.message().contains("1 hour"), "{e}");
        let nomfa = Explain { serial: None, ..x };
        let e = explain(
            "AccessDenied",
            "User: arn:aws:iam::111111111111:user/u is not authorized to perform: sts:AssumeRole on resource: arn",
            &nomfa,
        );
        assert!(
            e.message().contains("requires MFA") && e.message().contains("add mfa_serial"),
            "{e}"
        );
        let e = explain(
            "InvalidClientTokenId",
            "The security token included in the request is invalid.",
            &x,
        );
        assert!(e.message().contains("toolkit-user"), "{e}");
        let e = explain("Throttling", "Rate exceeded", &x);
        assert_eq!(e.kind, crate::ErrorKind::Network);
    }

    /// Finding 11.11: the engine decides on a typed reason; the reason follows STS's error
    /// code, never words in its message.
    #[test]
    fn errors_carry_a_typed_reason() {
        let x = Explain {
            ctx: CallContext {
                profile: "mfa",
                signer: "toolkit-user",
            },
            role: None,
            serial: Some("arn:aws:iam::111111111111:mfa/u"),
            duration: None,
            endpoint: "http://127.0.0.1:1",
        };
        let cases = [
            (
                "InvalidClientTokenId",
                "The security token included in the request is invalid.",
                Reason::SessionRejected,
            ),
            (
                "ExpiredToken",
                "The security token included in the request is expired",
                Reason::SessionRejected,
            ),
            (
                "AccessDenied",
                "MultiFactorAuthentication failed with invalid MFA one time pass code. ",
                Reason::CodeRejected,
            ),
            (
                "AccessDenied",
                "this revoked session's grants have expired",
                Reason::Refused,
            ),
            (
                "ValidationError",
                "The security token included in the request is expired",
                Reason::Refused,
            ),
            ("Throttling", "Rate exceeded", Reason::Throttled),
            (
                "SomethingNew",
                "invalid MFA one time pass code; revoked session",
                Reason::Refused,
            ),
        ];
        for (code, message, want) in cases {
            assert_eq!(
                explain(code, message, &x).reason(),
                Some(want),
                "{code}: {message}"
            );
        }
    }
}
