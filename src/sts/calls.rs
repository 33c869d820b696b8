//! The STS calls: AssumeRole and GetSessionToken (with or without an MFA code) and
//! GetCallerIdentity, each on a client built for the one call, and the credentials they answer.
//!
//! A tokio current-thread runtime is created only here, only when an STS call is made.

use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use secrecy::ExposeSecret;

use super::config::{Timeouts, https_client, sdk_config};
use super::endpoints::StsTarget;
use crate::credentials::Credentials;
use crate::error::{Error, Reason, Result};
use crate::profile::RoleStep;

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

pub struct Sts {
    pub(super) rt: tokio::runtime::Runtime,
    pub(super) http: aws_smithy_runtime_api::client::http::SharedHttpClient,
    pub(super) target: StsTarget,
    pub(super) timeouts: Timeouts,
}

impl Sts {
    pub fn new(target: StsTarget) -> Result<Sts> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| {
                Error::internal(format!("cannot start the async runtime for STS calls: {e}"))
                    .with_source(e)
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
