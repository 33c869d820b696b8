//! STS errors as one plain line naming the profile and the fix, with a typed [`Reason`] the
//! engine decides on.

use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::http::Response as HttpResponse;

use super::calls::{CallContext, Sts};
use crate::error::{Error, Reason};
use crate::profile::RoleStep;

impl Sts {
    pub(super) fn map_error<E>(
        &self,
        err: SdkError<E, HttpResponse>,
        ctx: CallContext<'_>,
        role: Option<&RoleStep>,
        serial: Option<&str>,
        duration: Option<u32>,
    ) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let endpoint = self.target.describe();
        tracing::debug!(profile = ctx.profile, %endpoint, error = %aws_smithy_types::error::display::DisplayErrorContext(&err), "STS call failed");
        let profile = ctx.profile;
        let mapped = match &err {
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
        };
        mapped.with_source(err)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A failed call keeps what the SDK said under tapcred's line: the SdkError first, and
    /// down its chain the refused connection.
    #[test]
    fn a_failed_call_keeps_the_sdk_error_as_its_source() {
        use crate::credentials::Credentials;
        use crate::sts::StsApi;
        use aws_sdk_sts::operation::get_session_token::GetSessionTokenError;
        use std::error::Error as _;
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let sts = Sts::new(super::super::StsTarget {
            region: "us-east-1".into(),
            endpoint_url: Some(format!("http://127.0.0.1:{port}")),
        })
        .unwrap();
        let creds = Credentials::new("AKIDEXAMPLE", "secret", None, None);
        let ctx = CallContext {
            profile: "p",
            signer: "p",
        };
        let e = sts.get_session_token(&creds, None, None, ctx).unwrap_err();
        assert_eq!(
            (e.exit_code(), e.reason()),
            (6, Some(Reason::NotSent)),
            "{e:?}"
        );
        assert!(
            e.message().starts_with("profile \"p\": cannot reach STS"),
            "{e}"
        );
        let chain: Vec<&(dyn std::error::Error + 'static)> =
            std::iter::successors(e.source(), |&s| s.source()).collect();
        let said: Vec<String> = chain.iter().map(|s| format!("{s:?}")).collect();
        assert!(
            chain
                .first()
                .is_some_and(|s| s.is::<SdkError<GetSessionTokenError, HttpResponse>>()),
            "{said:#?}"
        );
        assert!(
            chain.iter().any(|s| s
                .downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)),
            "{said:#?}"
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
