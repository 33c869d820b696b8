//! AWS IAM calls for `tapcred enroll` with `aws-sdk-iam`: the virtual MFA device's life
//! (create, enable, deactivate, delete, list), through the same HTTPS client as STS
//! ([`crate::sts::https_client`]) and the same region and endpoint rules, with IAM's own
//! override: `AWS_ENDPOINT_URL_IAM` > `AWS_ENDPOINT_URL` > the config file (`[services X]`
//! `iam = endpoint_url = …`, then the profile's `endpoint_url`), all skipped when
//! `ignore_configured_endpoint_urls` / `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS` is true.
//!
//! The seed AWS returns (`Base32StringSeed`: a blob whose bytes are the base32 text) is
//! decoded at once into a zeroizing buffer; it is never logged or formatted.

use std::time::Duration;

use aws_sdk_iam::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::http::Response as HttpResponse;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use zeroize::Zeroizing;

use crate::credentials::Credentials;
use crate::env::EnvLookup;
use crate::error::{Error, Result};
use crate::profile::Profiles;
use crate::sts::StsTarget;

/// Where IAM calls go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IamTarget {
    /// The signing region (IAM is global; the SDK maps any aws-partition region to
    /// iam.amazonaws.com).
    pub region: String,
    /// None = the SDK's default endpoint.
    pub endpoint_url: Option<String>,
}

impl IamTarget {
    /// The region STS uses for the profile; the endpoint after IAM's precedence rules,
    /// refused (exit 3) when no request could go to it, as STS's is.
    pub fn for_profile(
        profiles: &Profiles,
        profile: &str,
        sts: &StsTarget,
        env: &dyn EnvLookup,
    ) -> Result<IamTarget> {
        let nonempty = |k: &str| env.var(k).filter(|v| !v.trim().is_empty());
        let (configured, ignored) = profiles.service_endpoint(profile, "iam")?;
        let ignore = ignored
            || nonempty("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")
                .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let endpoint = if ignore {
            None
        } else {
            nonempty("AWS_ENDPOINT_URL_IAM")
                .map(|u| (u, "AWS_ENDPOINT_URL_IAM"))
                .or_else(|| nonempty("AWS_ENDPOINT_URL").map(|u| (u, "AWS_ENDPOINT_URL")))
                .or_else(|| configured.map(|u| (u, "endpoint_url in the AWS config file")))
        };
        if let Some((url, origin)) = &endpoint {
            crate::sts::check_endpoint_url(profile, "IAM", origin, url)?;
        }
        let endpoint_url = endpoint.map(|(url, _)| url);
        Ok(IamTarget {
            region: sts.region.clone(),
            endpoint_url,
        })
    }

    pub fn describe(&self) -> String {
        match &self.endpoint_url {
            Some(u) => u.clone(),
            None => "iam.amazonaws.com".to_owned(),
        }
    }
}

/// A virtual MFA device just created: its serial and seed (raw bytes, zeroized on drop).
pub struct NewDevice {
    pub serial: String,
    pub seed: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for NewDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewDevice")
            .field("serial", &self.serial)
            .field("seed", &"<redacted>")
            .finish()
    }
}

/// A new long-term access key: its id and secret (zeroized on drop, never in Debug).
pub struct NewAccessKey {
    pub access_key_id: String,
    pub secret_access_key: Zeroizing<String>,
}

impl std::fmt::Debug for NewAccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewAccessKey")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

/// One access key of a user as `ListAccessKeys` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessKeyInfo {
    pub access_key_id: String,
    pub active: bool,
    /// Unix seconds, when IAM says.
    pub created: Option<i64>,
}

/// IAM's error codes that `enroll` decides on (never on message text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IamCode {
    NoSuchEntity,
    EntityAlreadyExists,
    LimitExceeded,
    DeleteConflict,
    /// Any other code IAM sent.
    Other,
}

impl IamCode {
    fn from_aws(code: &str) -> IamCode {
        match code {
            "NoSuchEntity" => IamCode::NoSuchEntity,
            "EntityAlreadyExists" => IamCode::EntityAlreadyExists,
            "LimitExceeded" => IamCode::LimitExceeded,
            "DeleteConflict" => IamCode::DeleteConflict,
            _ => IamCode::Other,
        }
    }
}

/// A failed IAM call: the user's message, and IAM's own answer when it gave one.
#[derive(Debug, Clone)]
pub struct IamError {
    /// IAM's error code; None when no IAM answer came back (network, 5xx, unusable answer):
    /// then a write may have been done without tapcred learning it.
    pub code: Option<IamCode>,
    pub error: Error,
}

impl IamError {
    /// IAM answered with `code`.
    pub fn is(&self, code: IamCode) -> bool {
        self.code == Some(code)
    }

    /// No answer from IAM: a write may or may not have happened.
    pub fn outcome_unknown(&self) -> bool {
        self.code.is_none()
    }
}

impl From<IamError> for Error {
    fn from(e: IamError) -> Error {
        e.error
    }
}

impl std::fmt::Display for IamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

/// One virtual MFA device of the account and the user it is enabled for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualDevice {
    pub serial: String,
    pub user: Option<String>,
}

pub struct Iam {
    rt: tokio::runtime::Runtime,
    http: aws_smithy_runtime_api::client::http::SharedHttpClient,
    target: IamTarget,
    /// The profile whose keys sign, for messages.
    signer: String,
}

impl Iam {
    pub fn new(target: IamTarget, signer: &str) -> Result<Iam> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| {
                Error::internal(format!("cannot start the async runtime for IAM calls: {e}"))
                    .with_source(e)
            })?;
        Ok(Iam {
            rt,
            http: crate::sts::https_client(),
            target,
            signer: signer.to_owned(),
        })
    }

    pub fn target(&self) -> &IamTarget {
        &self.target
    }

    fn client(&self, creds: &Credentials) -> aws_sdk_iam::Client {
        self.client_with_attempts(creds, 3)
    }

    /// A client making at most `attempts` attempts per call: 1 for a write that is not
    /// idempotent (a retried CreateAccessKey whose first answer was lost makes a second key).
    fn client_with_attempts(&self, creds: &Credentials, attempts: u32) -> aws_sdk_iam::Client {
        let config = crate::sts::sdk_config(
            &self.http,
            &self.target.region,
            self.target.endpoint_url.as_deref(),
            creds,
            RetryConfig::standard().with_max_attempts(attempts),
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(Duration::from_secs(20))
                .build(),
        );
        aws_sdk_iam::Client::new(&config)
    }

    /// `CreateVirtualMFADevice`: the new serial and its seed.
    pub fn create_virtual_mfa_device(
        &self,
        creds: &Credentials,
        name: &str,
    ) -> Result<NewDevice, IamError> {
        tracing::info!(signer = %self.signer, device = name, endpoint = %self.target.describe(), "IAM CreateVirtualMFADevice");
        let out = self
            .rt
            .block_on(
                self.client(creds)
                    .create_virtual_mfa_device()
                    .virtual_mfa_device_name(name)
                    .send(),
            )
            .map_err(|e| self.map_error(e, "CreateVirtualMFADevice", name))?;
        let device = out
            .virtual_mfa_device
            .ok_or_else(|| self.bad_answer("CreateVirtualMFADevice", "no VirtualMFADevice"))?;
        let serial = device.serial_number;
        let text = Zeroizing::new(
            device
                .base32_string_seed
                .map(|b| b.into_inner())
                .ok_or_else(|| self.bad_answer("CreateVirtualMFADevice", "no Base32StringSeed"))?,
        );
        let text = std::str::from_utf8(&text)
            .ok()
            .and_then(crate::token::oath::codec::decode_base32_secret)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                self.bad_answer(
                    "CreateVirtualMFADevice",
                    "a Base32StringSeed that is not base32 text",
                )
            })?;
        Ok(NewDevice { serial, seed: text })
    }

    /// `EnableMFADevice` with two consecutive codes.
    pub fn enable_mfa_device(
        &self,
        creds: &Credentials,
        user: &str,
        serial: &str,
        code1: &str,
        code2: &str,
    ) -> Result<(), IamError> {
        tracing::info!(signer = %self.signer, user, serial, "IAM EnableMFADevice");
        self.rt
            .block_on(
                self.client(creds)
                    .enable_mfa_device()
                    .user_name(user)
                    .serial_number(serial)
                    .authentication_code1(code1)
                    .authentication_code2(code2)
                    .send(),
            )
            .map(|_| ())
            .map_err(|e| self.map_error(e, "EnableMFADevice", serial))
    }

    pub fn deactivate_mfa_device(
        &self,
        creds: &Credentials,
        user: &str,
        serial: &str,
    ) -> Result<(), IamError> {
        tracing::info!(signer = %self.signer, user, serial, "IAM DeactivateMFADevice");
        self.rt
            .block_on(
                self.client(creds)
                    .deactivate_mfa_device()
                    .user_name(user)
                    .serial_number(serial)
                    .send(),
            )
            .map(|_| ())
            .map_err(|e| self.map_error(e, "DeactivateMFADevice", serial))
    }

    pub fn delete_virtual_mfa_device(
        &self,
        creds: &Credentials,
        serial: &str,
    ) -> Result<(), IamError> {
        tracing::info!(signer = %self.signer, serial, "IAM DeleteVirtualMFADevice");
        self.rt
            .block_on(
                self.client(creds)
                    .delete_virtual_mfa_device()
                    .serial_number(serial)
                    .send(),
            )
            .map(|_| ())
            .map_err(|e| self.map_error(e, "DeleteVirtualMFADevice", serial))
    }

    /// Serials of the MFA devices assigned to `user`.
    pub fn list_mfa_devices(
        &self,
        creds: &Credentials,
        user: &str,
    ) -> Result<Vec<String>, IamError> {
        tracing::info!(signer = %self.signer, user, "IAM ListMFADevices");
        let out = self
            .rt
            .block_on(self.client(creds).list_mfa_devices().user_name(user).send())
            .map_err(|e| self.map_error(e, "ListMFADevices", user))?;
        Ok(out
            .mfa_devices
            .into_iter()
            .map(|d| d.serial_number)
            .collect())
    }

    /// The account's virtual MFA devices (every page) and whom each is enabled for.
    pub fn list_virtual_mfa_devices(
        &self,
        creds: &Credentials,
    ) -> Result<Vec<VirtualDevice>, IamError> {
        tracing::info!(signer = %self.signer, "IAM ListVirtualMFADevices");
        let client = self.client(creds);
        let mut devices = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let out = self
                .rt
                .block_on(
                    client
                        .list_virtual_mfa_devices()
                        .set_marker(marker.take())
                        .send(),
                )
                .map_err(|e| self.map_error(e, "ListVirtualMFADevices", "the account"))?;
            devices.extend(out.virtual_mfa_devices.into_iter().map(|d| VirtualDevice {
                serial: d.serial_number,
                user: d.user.map(|u| u.user_name),
            }));
            match out.marker {
                Some(m) if out.is_truncated => marker = Some(m),
                _ => return Ok(devices),
            }
        }
    }

    /// `CreateAccessKey` for `user`, one attempt (no SDK retry: a lost answer must be read
    /// back with [`Iam::list_access_keys`], never answered with a second key).
    pub fn create_access_key(
        &self,
        creds: &Credentials,
        user: &str,
    ) -> Result<NewAccessKey, IamError> {
        tracing::info!(signer = %self.signer, user, endpoint = %self.target.describe(), "IAM CreateAccessKey");
        let out = self
            .rt
            .block_on(
                self.client_with_attempts(creds, 1)
                    .create_access_key()
                    .user_name(user)
                    .send(),
            )
            .map_err(|e| self.map_error(e, "CreateAccessKey", user))?;
        let key = out
            .access_key
            .ok_or_else(|| self.bad_answer("CreateAccessKey", "no AccessKey"))?;
        if key.access_key_id.is_empty() || key.secret_access_key.is_empty() {
            return Err(self.bad_answer("CreateAccessKey", "an empty access key"));
        }
        Ok(NewAccessKey {
            access_key_id: key.access_key_id,
            secret_access_key: Zeroizing::new(key.secret_access_key),
        })
    }

    /// `UpdateAccessKey`: make `key_id` of `user` Active or Inactive (idempotent).
    pub fn update_access_key(
        &self,
        creds: &Credentials,
        user: &str,
        key_id: &str,
        active: bool,
    ) -> Result<(), IamError> {
        let status = if active {
            aws_sdk_iam::types::StatusType::Active
        } else {
            aws_sdk_iam::types::StatusType::Inactive
        };
        tracing::info!(signer = %self.signer, user, key_id, ?status, "IAM UpdateAccessKey");
        self.rt
            .block_on(
                self.client(creds)
                    .update_access_key()
                    .user_name(user)
                    .access_key_id(key_id)
                    .status(status)
                    .send(),
            )
            .map(|_| ())
            .map_err(|e| self.map_error(e, "UpdateAccessKey", key_id))
    }

    /// `DeleteAccessKey` of `key_id` of `user`.
    pub fn delete_access_key(
        &self,
        creds: &Credentials,
        user: &str,
        key_id: &str,
    ) -> Result<(), IamError> {
        tracing::info!(signer = %self.signer, user, key_id, "IAM DeleteAccessKey");
        self.rt
            .block_on(
                self.client(creds)
                    .delete_access_key()
                    .user_name(user)
                    .access_key_id(key_id)
                    .send(),
            )
            .map(|_| ())
            .map_err(|e| self.map_error(e, "DeleteAccessKey", key_id))
    }

    /// `ListAccessKeys` of `user` (every page).
    pub fn list_access_keys(
        &self,
        creds: &Credentials,
        user: &str,
    ) -> Result<Vec<AccessKeyInfo>, IamError> {
        self.list_access_keys_of(creds, Some(user))
    }

    /// `ListAccessKeys` of `user`, or of the signing user when None (every page).
    pub fn list_access_keys_of(
        &self,
        creds: &Credentials,
        user: Option<&str>,
    ) -> Result<Vec<AccessKeyInfo>, IamError> {
        tracing::info!(signer = %self.signer, user, "IAM ListAccessKeys");
        let client = self.client(creds);
        let mut keys = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let out = self
                .rt
                .block_on(
                    client
                        .list_access_keys()
                        .set_user_name(user.map(str::to_owned))
                        .set_marker(marker.take())
                        .send(),
                )
                .map_err(|e| self.map_error(e, "ListAccessKeys", user.unwrap_or("the caller")))?;
            keys.extend(out.access_key_metadata.into_iter().filter_map(|k| {
                Some(AccessKeyInfo {
                    access_key_id: k.access_key_id?,
                    active: k.status == Some(aws_sdk_iam::types::StatusType::Active),
                    created: k.create_date.map(|d| d.secs()),
                })
            }));
            match out.marker {
                Some(m) if out.is_truncated => marker = Some(m),
                _ => return Ok(keys),
            }
        }
    }

    fn bad_answer(&self, action: &str, what: &str) -> IamError {
        IamError {
            code: None,
            error: Error::network(format!(
                "IAM at {} answered {action} with {what}; check the endpoint override (AWS_ENDPOINT_URL_IAM / endpoint_url)",
                self.target.describe()
            )),
        }
    }

    fn map_error<E>(&self, err: SdkError<E, HttpResponse>, action: &str, subject: &str) -> IamError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let endpoint = self.target.describe();
        tracing::debug!(action, %endpoint, error = %aws_smithy_types::error::display::DisplayErrorContext(&err), "IAM call failed");
        let code = match &err {
            SdkError::ServiceError(se) if !se.raw().status().is_server_error() => {
                Some(IamCode::from_aws(se.err().code().unwrap_or("")))
            }
            _ => None,
        };
        let error = match &err {
            SdkError::ServiceError(se) if se.raw().status().is_server_error() => {
                Error::network(format!(
                    "IAM {action} at {endpoint} failed (HTTP {} {}); try again in a minute",
                    se.raw().status().as_u16(),
                    se.err().code().unwrap_or("no error code")
                ))
            }
            SdkError::ServiceError(se) => explain(
                se.err().code().unwrap_or("Unknown"),
                se.err().message().unwrap_or(""),
                action,
                subject,
                &self.signer,
                &endpoint,
            ),
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => Error::network(format!(
                "IAM {action}: cannot reach IAM at {endpoint}; check the network, a proxy, or the endpoint override (AWS_ENDPOINT_URL_IAM / AWS_ENDPOINT_URL / endpoint_url)"
            )),
            SdkError::ResponseError(_) => Error::network(format!(
                "IAM {action}: {endpoint} sent a response that is not IAM's; check the endpoint override (AWS_ENDPOINT_URL_IAM)"
            )),
            _ => Error::network(format!("IAM {action} at {endpoint} failed")),
        };
        IamError {
            code,
            error: error.with_source(err),
        }
    }
}

/// The IAM user an ARN names: `arn:aws:iam::ACCT:user[/path]/NAME` → (ACCT, NAME); None for
/// anything else (a role's session, the root user).
pub fn user_of_arn(arn: &str) -> Option<(String, String)> {
    let rest = arn.strip_prefix("arn:aws")?;
    let rest = rest.split_once(":iam::")?.1;
    let (account, resource) = rest.split_once(':')?;
    let name = resource.strip_prefix("user/")?.rsplit('/').next()?;
    (!account.is_empty() && !name.is_empty()).then(|| (account.to_owned(), name.to_owned()))
}

/// One plain line with the fix for an IAM error.
fn explain(
    code: &str,
    message: &str,
    action: &str,
    subject: &str,
    signer: &str,
    endpoint: &str,
) -> Error {
    let msg = message.to_ascii_lowercase();
    match (code, action) {
        ("EntityAlreadyExists", "CreateVirtualMFADevice") => Error::auth(format!(
            "IAM already has a virtual MFA device named \"{subject}\" in this account (perhaps your phone's): keep it and choose another name with --device-name NAME"
        )),
        ("EntityAlreadyExists", _) => Error::auth(format!(
            "IAM {action}: MFA device {subject} is already in use"
        )),
        ("InvalidAuthenticationCode", _) => Error::auth(format!(
            "IAM refused the two codes for {subject}: the clock is off (timedatectl set-ntp true) or the stored seed is not this device's"
        )),
        ("LimitExceeded", "CreateAccessKey") => Error::auth(format!(
            "IAM CreateAccessKey: user {subject} already has two access keys (AWS's limit); delete the one not in use (aws iam list-access-keys --user-name {subject}; aws iam delete-access-key --user-name {subject} --access-key-id ID) and run tapcred rotate again"
        )),
        ("LimitExceeded", _) => Error::auth(format!(
            "IAM {action}: the user already has the most MFA devices AWS allows (8); remove one first (aws iam list-mfa-devices, aws iam deactivate-mfa-device)"
        )),
        (
            "AccessDenied",
            "CreateAccessKey" | "UpdateAccessKey" | "DeleteAccessKey" | "ListAccessKeys",
        ) => Error::auth(format!(
            "IAM {action}: the IAM user of profile \"{signer}\" may not manage its own access keys with an MFA session ({message}); its policy needs iam:CreateAccessKey, iam:UpdateAccessKey, iam:DeleteAccessKey and iam:ListAccessKeys on arn:aws:iam::ACCOUNT:user/${{aws:username}} with the condition aws:MultiFactorAuthPresent = true (see docs/usage.md, \"Rotating the access key\")"
        )),
        ("AccessDenied", _) => Error::auth(format!(
            "IAM {action}: the keys of profile \"{signer}\" may not do this ({message}); the IAM user needs iam:CreateVirtualMFADevice, iam:EnableMFADevice, iam:DeactivateMFADevice, iam:DeleteVirtualMFADevice and iam:ListMFADevices on its own user and arn:aws:iam::ACCOUNT:mfa/*, and iam:ListVirtualMFADevices"
        )),
        ("NoSuchEntity", _) => Error::auth(format!("IAM {action}: {message}")),
        ("DeleteConflict", _) => Error::auth(format!(
            "IAM {action}: {subject} is still enabled for a user; deactivate it first"
        )),
        ("InvalidClientTokenId", _) => Error::auth(format!(
            "IAM does not know the access key of profile \"{signer}\" (deleted, deactivated or mistyped); update the keys in profile \"{signer}\""
        )),
        ("SignatureDoesNotMatch", _) if msg.contains("expired") || msg.contains("time") => {
            Error::auth(
                "IAM says the request time is off: the system clock is wrong by more than 5 minutes; sync it (timedatectl set-ntp true)",
            )
        }
        ("SignatureDoesNotMatch", _) => Error::auth(format!(
            "the secret access key of profile \"{signer}\" does not match its access key id; fix aws_secret_access_key"
        )),
        ("Throttling", _) | ("ThrottlingException", _) => Error::network(format!(
            "IAM at {endpoint} is throttling requests (still after retries); wait a minute and try again"
        )),
        _ => Error::auth(format!("IAM error {code} in {action}: {message}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn user_from_arn() {
        assert_eq!(
            user_of_arn("arn:aws:iam::111111111111:user/toolkit-user"),
            Some(("111111111111".into(), "toolkit-user".into()))
        );
        assert_eq!(
            user_of_arn("arn:aws:iam::111111111111:user/div/alice"),
            Some(("111111111111".into(), "alice".into()))
        );
        assert_eq!(
            user_of_arn("arn:aws-cn:iam::111111111111:user/a"),
            Some(("111111111111".into(), "a".into()))
        );
        assert_eq!(user_of_arn("arn:aws:iam::111111111111:root"), None);
        assert_eq!(
            user_of_arn("arn:aws:sts::111111111111:assumed-role/r/s"),
            None
        );
        assert_eq!(user_of_arn("arn:aws:sts::1:assumed-role/r/s"), None);
    }

    fn target(config: &str, env: &[(&str, &str)]) -> IamTarget {
        try_target(config, env).unwrap()
    }

    fn try_target(config: &str, env: &[(&str, &str)]) -> Result<IamTarget> {
        let dir = tempfile::tempdir().unwrap();
        let files = crate::profile::AwsFiles {
            config: dir.path().join("config"),
            credentials: dir.path().join("credentials"),
        };
        std::fs::write(&files.config, config).unwrap();
        std::fs::write(
            &files.credentials,
            "[u]\naws_access_key_id = AKID\naws_secret_access_key = s\n",
        )
        .unwrap();
        let profiles = Profiles::load(&files).unwrap();
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let sts = StsTarget {
            region: "eu-west-1".into(),
            endpoint_url: None,
        };
        IamTarget::for_profile(&profiles, "p", &sts, &env)
    }

    /// The IAM endpoint override passes the same URL check as STS's, naming where it came
    /// from, before any request.
    #[test]
    fn unusable_iam_endpoints_are_refused_like_sts_ones() {
        let plain = "[profile p]\nsource_profile = u\n";
        for (var, url, why) in [
            (
                "AWS_ENDPOINT_URL_IAM",
                "ftp://127.0.0.1:1",
                "scheme \"ftp\"",
            ),
            (
                "AWS_ENDPOINT_URL_IAM",
                "http://u:pw@127.0.0.1:1",
                "user info",
            ),
            (
                "AWS_ENDPOINT_URL",
                "http://127.0.0.1:1/?x=1",
                "a query or fragment",
            ),
            (
                "AWS_ENDPOINT_URL_IAM",
                "http://127.0.0.1:1 ",
                "a space at the end",
            ),
            ("AWS_ENDPOINT_URL_IAM", "not a url", "relative URL"),
        ] {
            let e = try_target(plain, &[(var, url)]).unwrap_err();
            assert_eq!(e.exit_code(), 3, "{url}: {e}");
            let m = e.message();
            assert!(m.contains(var) && m.contains(why), "{url}: {m}");
            assert!(!m.contains("pw"), "the URL's password is not echoed: {m}");
            assert!(!m.contains("STS"), "the message names IAM: {m}");
        }
        let e = try_target(
            &format!("{plain}endpoint_url = http://127.0.0.1:1#f\n"),
            &[],
        )
        .unwrap_err();
        assert!(
            e.message()
                .contains("endpoint_url in the AWS config file = \"http://127.0.0.1:1#f\" is not a usable IAM endpoint"),
            "{e}"
        );
        let ok = [("AWS_ENDPOINT_URL_IAM", "https://iam.example.com:8443/base")];
        assert!(try_target(plain, &ok).is_ok());
    }

    #[test]
    fn endpoint_precedence_like_sts_with_iam_names() {
        let services = "[profile p]\nsource_profile = u\nservices = s\nendpoint_url = http://127.0.0.1:1\n[services s]\niam =\n  endpoint_url = http://127.0.0.1:2\nsts =\n  endpoint_url = http://127.0.0.1:9\n";
        let plain = "[profile p]\nsource_profile = u\nendpoint_url = http://127.0.0.1:1\n";
        let url = |c: &str, e: &[(&str, &str)]| target(c, e).endpoint_url;
        assert_eq!(url(plain, &[]).as_deref(), Some("http://127.0.0.1:1"));
        assert_eq!(url(services, &[]).as_deref(), Some("http://127.0.0.1:2"));
        let e = [("AWS_ENDPOINT_URL", "http://127.0.0.1:3")];
        assert_eq!(url(services, &e).as_deref(), Some("http://127.0.0.1:3"));
        let e = [
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:3"),
            ("AWS_ENDPOINT_URL_IAM", "http://127.0.0.1:4"),
            ("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:5"),
        ];
        assert_eq!(url(services, &e).as_deref(), Some("http://127.0.0.1:4"));
        let e = [
            ("AWS_ENDPOINT_URL_IAM", "http://127.0.0.1:4"),
            ("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true"),
        ];
        assert_eq!(url(services, &e), None);
        let ignored = "[profile p]\nsource_profile = u\nignore_configured_endpoint_urls = true\nendpoint_url = http://127.0.0.1:1\n";
        assert_eq!(url(ignored, &[("AWS_ENDPOINT_URL", "http://x")]), None);
        let t = target(plain, &[]);
        assert_eq!(t.region, "eu-west-1", "the region STS uses");
        assert_eq!(
            target("[profile p]\nsource_profile = u\n", &[]).describe(),
            "iam.amazonaws.com"
        );
    }

    #[test]
    fn iam_codes_are_typed() {
        assert_eq!(IamCode::from_aws("NoSuchEntity"), IamCode::NoSuchEntity);
        assert_eq!(
            IamCode::from_aws("EntityAlreadyExists"),
            IamCode::EntityAlreadyExists
        );
        assert_eq!(IamCode::from_aws("LimitExceeded"), IamCode::LimitExceeded);
        assert_eq!(IamCode::from_aws("DeleteConflict"), IamCode::DeleteConflict);
        assert_eq!(IamCode::from_aws("Throttling"), IamCode::Other);
        let lost = IamError {
            code: None,
            error: Error::network("x"),
        };
        assert!(lost.outcome_unknown() && !lost.is(IamCode::NoSuchEntity));
        let gone = IamError {
            code: Some(IamCode::NoSuchEntity),
            error: Error::auth("x"),
        };
        assert!(gone.is(IamCode::NoSuchEntity) && !gone.outcome_unknown());
    }

    #[test]
    fn errors_say_what_to_do() {
        let e = explain(
            "EntityAlreadyExists",
            "MFADevice entity at the same path and name already exists.",
            "CreateVirtualMFADevice",
            "alice",
            "toolkit-user",
            "x",
        );
        assert!(e.message().contains("--device-name"), "{e}");
        let e = explain(
            "InvalidAuthenticationCode",
            "Authentication code for device is not valid.",
            "EnableMFADevice",
            "arn:aws:iam::1:mfa/a",
            "u",
            "x",
        );
        assert!(e.message().contains("clock"), "{e}");
        let e = explain(
            "AccessDenied",
            "no",
            "EnableMFADevice",
            "s",
            "toolkit-user",
            "x",
        );
        assert!(e.message().contains("iam:EnableMFADevice"), "{e}");
        assert_eq!(e.kind, crate::ErrorKind::Auth);
    }
}
