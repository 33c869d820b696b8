//! Following a profile's `source_profile` chain into base credentials and the STS steps.

use aws_runtime::env_config::property::PropertiesKey;
use secrecy::SecretString;

use super::load::parse_bool;
use super::{
    BaseCredentials, MIN_SECONDS, Mfa, Profiles, ROLE_MAX_SECONDS, ResolvedProfile, RoleStep,
    SESSION_TOKEN_MAX_SECONDS, Step, Which, load::header, validate,
};
use crate::env::EnvLookup;
use crate::error::{Error, Result};

/// The source profile key saying where its long-term access key is (`vault`).
pub const ACCESS_KEY_KEY: &str = "tapcred_access_key";

impl Profiles {
    /// The profile's `role_session_name`, checked (AssumeRole and CreateSession share it).
    pub(super) fn role_session_name(&self, profile: &str) -> Result<Option<String>> {
        match self.get(profile, "role_session_name") {
            Some(v) => {
                validate::role_session_name(v).map_err(|why| {
                    self.fail(
                        profile,
                        "role_session_name",
                        format!("{v:?} {why}"),
                        "use 2–64 characters of letters, digits and _+=,.@-",
                    )
                })?;
                Ok(Some(v.to_owned()))
            }
            None => Ok(None),
        }
    }

    /// Resolve `name` into base credentials + steps, validating every key on the way.
    pub fn resolve(&self, name: &str, env: &dyn EnvLookup) -> Result<ResolvedProfile> {
        if !self.contains(name) {
            return Err(self.not_found(name));
        }
        let token = self.token_settings(name, env)?;
        let region = self.get(name, "region").map(str::to_owned);
        let (endpoint_url, ignore_configured_endpoint_urls) = self.endpoint(name)?;
        if self.is_roles_anywhere(name) {
            return Ok(ResolvedProfile {
                roles_anywhere: Some(self.roles_anywhere(name, env)?),
                name: name.to_owned(),
                region,
                endpoint_url,
                ignore_configured_endpoint_urls,
                base: BaseCredentials {
                    origin: name.to_owned(),
                    access_key_id: String::new(),
                    secret_access_key: SecretString::from(String::new()),
                    session_token: None,
                    in_vault: None,
                },
                steps: Vec::new(),
                token,
            });
        }

        let mut chain: Vec<String> = Vec::new();
        let mut steps_rev: Vec<Step> = Vec::new();
        let mut current = name.to_owned();
        let base = loop {
            chain.push(current.clone());
            let cur = current.as_str();
            let source_profile = self.get(cur, "source_profile");
            let credential_source = self.get(cur, "credential_source");
            if self.get(cur, "web_identity_token_file").is_some() {
                return Err(self.fail(
                    cur,
                    "web_identity_token_file",
                    "is set: web identity (OIDC) roles are not supported by tapcred and need no MFA",
                    "use the AWS CLI/SDK directly for this profile, or remove the key",
                ));
            }
            // botocore: in a source profile, static keys take precedence over its role_arn
            // (only the selected profile's role_arn always counts).
            if chain.len() > 1
                && let Some(base) = self.static_keys(cur, env)?
            {
                break base;
            }
            if self.get(cur, "role_arn").is_some() {
                if source_profile.is_some() && credential_source.is_some() {
                    return Err(Error::config(format!(
                        "{}: sets both source_profile and credential_source; keep exactly one of them",
                        self.at(cur, Some("credential_source")),
                    )));
                }
                steps_rev.push(Step::AssumeRole(self.role_step(cur, env)?));
                match (source_profile, credential_source) {
                    (Some(source), _) if source == cur => match self.static_keys(cur, env)? {
                        Some(base) => break base,
                        None => {
                            return Err(self.fail(
                                cur,
                                "source_profile",
                                format!("names the profile itself ({cur} → {cur}), which is allowed only when it has aws_access_key_id and aws_secret_access_key"),
                                "add the keys to it or point source_profile at the profile that holds them",
                            ));
                        }
                    },
                    (Some(source), _) => {
                        if !self.contains(source) {
                            let names = self.names();
                            let close = validate::close_names(source, &names);
                            let hint = match close.first() {
                                Some(c) => format!(" (did you mean \"{c}\"?)"),
                                None => String::new(),
                            };
                            return Err(self.fail(
                                cur,
                                "source_profile",
                                format!("names profile \"{source}\", which is not defined in either file{hint}"),
                                "fix the name or add that profile with the keys to start from",
                            ));
                        }
                        if self.is_roles_anywhere(source) {
                            return Err(self.fail(
                                cur,
                                "source_profile",
                                format!("names profile \"{source}\", a Roles Anywhere profile, and tapcred does not assume a role with Roles Anywhere credentials"),
                                &format!("use profile \"{source}\" itself, with the role you need as its role_arn (its Roles Anywhere profile must list that role)"),
                            ));
                        }
                        if let Some(pos) = chain.iter().position(|p| p == source) {
                            let mut cycle: Vec<&str> =
                                chain[pos..].iter().map(String::as_str).collect();
                            cycle.push(source);
                            return Err(self.fail(
                                cur,
                                "source_profile",
                                format!("makes a cycle: {}", cycle.join(" → ")),
                                "the chain must end at a profile with static keys or credential_source; change one of these source_profile lines",
                            ));
                        }
                        current = source.to_owned();
                    }
                    (None, Some(cs)) => break self.credential_source(cur, cs, env)?,
                    (None, None) => {
                        let extra = if self.get(cur, "web_identity_token_file").is_some() {
                            " (web_identity_token_file is not supported by tapcred)"
                        } else {
                            ""
                        };
                        return Err(self.fail(
                            cur,
                            "role_arn",
                            format!("is set but neither source_profile nor credential_source says which credentials assume it{extra}"),
                            "add source_profile = PROFILE_WITH_KEYS (or credential_source = Environment)",
                        ));
                    }
                }
            } else {
                match self.static_keys(cur, env)? {
                    Some(base) => {
                        if chain.len() == 1
                            && let Some(serial) = self.get(cur, "mfa_serial")
                        {
                            steps_rev.push(Step::SessionToken {
                                profile: cur.to_owned(),
                                mfa: self.mfa(cur, serial, env)?,
                                duration_seconds: self.duration(
                                    cur,
                                    SESSION_TOKEN_MAX_SECONDS,
                                    "GetSessionToken allows 900–129600 seconds",
                                )?,
                            });
                        }
                        break base;
                    }
                    None => return Err(self.nothing_to_authenticate(cur, &chain)),
                }
            }
        };
        steps_rev.reverse();
        Ok(ResolvedProfile {
            name: name.to_owned(),
            region,
            endpoint_url,
            ignore_configured_endpoint_urls,
            base,
            steps: steps_rev,
            token,
            roles_anywhere: None,
        })
    }

    fn nothing_to_authenticate(&self, profile: &str, chain: &[String]) -> Error {
        let via = if chain.len() > 1 {
            format!(" (reached through {})", chain.join(" → "))
        } else {
            String::new()
        };
        if self.get(profile, "credential_source").is_some() {
            return self.fail(
                profile,
                "credential_source",
                format!("is set without role_arn{via}; credential_source only says what assumes a role_arn"),
                "add role_arn, or give the profile aws_access_key_id/aws_secret_access_key",
            );
        }
        let unsupported: Vec<&str> = [
            "credential_process",
            "sso_session",
            "sso_start_url",
            "web_identity_token_file",
        ]
        .into_iter()
        .filter(|k| self.get(profile, k).is_some())
        .collect();
        let extra = if unsupported.is_empty() {
            String::new()
        } else {
            format!(
                " ({} is not supported by tapcred as a source)",
                unsupported.join(", ")
            )
        };
        Error::config(format!(
            "{}: has nothing to authenticate with{via}{extra}: no aws_access_key_id/aws_secret_access_key, no role_arn, no credential_source; add the IAM user's access keys under {} or add role_arn + source_profile",
            self.at(profile, None),
            header(Which::Credentials, profile)
                + " in "
                + &self.files.credentials.display().to_string(),
        ))
    }

    /// The profile's own static keys: `Ok(None)` when it has neither.
    pub(super) fn static_keys(
        &self,
        profile: &str,
        env: &dyn EnvLookup,
    ) -> Result<Option<BaseCredentials>> {
        let id = self.get(profile, "aws_access_key_id");
        let secret = self.get(profile, "aws_secret_access_key");
        let token = self
            .get(profile, "aws_session_token")
            .or_else(|| self.get(profile, "aws_security_token"));
        if let Some(v) = self.get(profile, ACCESS_KEY_KEY) {
            if !v.trim().eq_ignore_ascii_case("vault") {
                return Err(self.fail(
                    profile,
                    ACCESS_KEY_KEY,
                    format!("= {v:?} is not a place for the access key"),
                    "write tapcred_access_key = vault (the key is in tapcred's vault), or remove the line and keep aws_access_key_id/aws_secret_access_key",
                ));
            }
            if let Some(k) = [
                "aws_access_key_id",
                "aws_secret_access_key",
                "aws_session_token",
            ]
            .into_iter()
            .find(|k| self.get(profile, k).is_some())
            {
                return Err(self.fail(
                    profile,
                    k,
                    "is set beside tapcred_access_key = vault, so it is not clear which key to use",
                    "remove the key lines (the vault holds the key: `tapcred vault import-keys` moves it), or remove tapcred_access_key",
                ));
            }
            let Some(path) = crate::vault::session::default_path(env) else {
                return Err(self.fail(
                    profile,
                    ACCESS_KEY_KEY,
                    "= vault, but there is no place for the vault (HOME is not set)",
                    "set HOME, XDG_DATA_HOME or TAPCRED_VAULT",
                ));
            };
            return Ok(Some(BaseCredentials {
                origin: profile.to_owned(),
                access_key_id: String::new(),
                secret_access_key: SecretString::from(String::new()),
                session_token: None,
                in_vault: Some(path),
            }));
        }
        match (id, secret) {
            (Some(id), Some(secret)) => Ok(Some(BaseCredentials {
                origin: profile.to_owned(),
                access_key_id: id.to_owned(),
                secret_access_key: SecretString::from(secret.to_owned()),
                session_token: token.map(|t| SecretString::from(t.to_owned())),
                in_vault: None,
            })),
            (None, None) => Ok(None),
            (Some(_), None) => Err(self.fail(
                profile,
                "aws_access_key_id",
                "is set but aws_secret_access_key is missing",
                "add the secret that belongs to this access key (or remove both)",
            )),
            (None, Some(_)) => Err(self.fail(
                profile,
                "aws_secret_access_key",
                "is set but aws_access_key_id is missing",
                "add the access key id that belongs to this secret (or remove both)",
            )),
        }
    }

    fn credential_source(
        &self,
        profile: &str,
        value: &str,
        env: &dyn EnvLookup,
    ) -> Result<BaseCredentials> {
        match value {
            "Environment" => {
                let var = |n: &str| env.var(n).filter(|v| !v.is_empty());
                let id = var("AWS_ACCESS_KEY_ID");
                let secret = var("AWS_SECRET_ACCESS_KEY");
                let token = var("AWS_SESSION_TOKEN").or_else(|| var("AWS_SECURITY_TOKEN"));
                match (id, secret) {
                    (Some(id), Some(secret)) => Ok(BaseCredentials {
                        origin: "env".to_owned(),
                        access_key_id: id,
                        secret_access_key: SecretString::from(secret),
                        session_token: token.map(SecretString::from),
                        in_vault: None,
                    }),
                    (id, secret) => {
                        let missing: Vec<&str> = [
                            ("AWS_ACCESS_KEY_ID", id.is_none()),
                            ("AWS_SECRET_ACCESS_KEY", secret.is_none()),
                        ]
                        .into_iter()
                        .filter_map(|(n, m)| m.then_some(n))
                        .collect();
                        Err(Error::config(format!(
                            "{}: credential_source = Environment but {} {} not set; export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary keys) before running tapcred",
                            self.at(profile, Some("credential_source")),
                            missing.join(" and "),
                            if missing.len() == 1 { "is" } else { "are" },
                        )))
                    }
                }
            }
            "Ec2InstanceMetadata" | "EcsContainer" => Err(self.fail(
                profile,
                "credential_source",
                format!("= {value} is not supported by tapcred"),
                "use source_profile = PROFILE_WITH_KEYS, or credential_source = Environment with AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY exported",
            )),
            other => Err(self.fail(
                profile,
                "credential_source",
                format!("= {other:?} is not a known credential source"),
                "use Environment (Ec2InstanceMetadata and EcsContainer exist in the AWS CLI but are not supported by tapcred), or use source_profile instead",
            )),
        }
    }

    fn role_step(&self, profile: &str, env: &dyn EnvLookup) -> Result<RoleStep> {
        let role_arn = self.get(profile, "role_arn").unwrap_or_default();
        validate::role_arn(role_arn).map_err(|why| {
            self.fail(
                profile,
                "role_arn",
                format!("{role_arn:?} {why}"),
                "copy the role's ARN from the IAM console, e.g. arn:aws:iam::111111111111:role/NAME",
            )
        })?;
        let external_id = match self.get(profile, "external_id") {
            Some(v) => {
                // The external id is not a secret, but it is not echoed either.
                validate::external_id(v).map_err(|why| {
                    self.fail(
                        profile,
                        "external_id",
                        why,
                        "use the external id given by the role's owner (2–1224 characters of letters, digits and _+=,.@:/-)",
                    )
                })?;
                Some(v.to_owned())
            }
            None => None,
        };
        let role_session_name = self.role_session_name(profile)?;
        let duration_seconds = self.duration(
            profile,
            ROLE_MAX_SECONDS,
            "AssumeRole allows 900–43200 seconds, up to the role's maximum session duration",
        )?;
        let mfa = match self.get(profile, "mfa_serial") {
            Some(serial) => Some(self.mfa(profile, serial, env)?),
            None => None,
        };
        Ok(RoleStep {
            profile: profile.to_owned(),
            role_arn: role_arn.to_owned(),
            external_id,
            role_session_name,
            duration_seconds,
            mfa,
        })
    }

    pub(super) fn duration(&self, profile: &str, max: u32, rule: &str) -> Result<Option<u32>> {
        match self.get(profile, "duration_seconds") {
            Some(v) => validate::duration_seconds(v, MIN_SECONDS, max)
                .map(Some)
                .map_err(|why| {
                    self.fail(
                        profile,
                        "duration_seconds",
                        why,
                        &format!("{rule}; write a whole number of seconds such as 3600"),
                    )
                }),
            None => Ok(None),
        }
    }

    pub(super) fn mfa(&self, profile: &str, serial: &str, env: &dyn EnvLookup) -> Result<Mfa> {
        validate::mfa_serial(serial).map_err(|why| {
            self.fail(
                profile,
                "mfa_serial",
                format!("{serial:?} {why}"),
                "use the MFA device's ARN (arn:aws:iam::ACCOUNT:mfa/NAME, IAM console → Security credentials) or a hardware token's serial",
            )
        })?;
        Ok(Mfa {
            serial: serial.to_owned(),
            token: self.token_settings(profile, env)?,
        })
    }

    /// STS endpoint from the profile: `(endpoint_url, ignore_configured_endpoint_urls)`.
    pub(super) fn endpoint(&self, profile: &str) -> Result<(Option<String>, bool)> {
        self.service_endpoint(profile, "sts")
    }

    /// The configured endpoint of `service` (`sts`, `iam`) for `profile`:
    /// `(endpoint_url, ignore_configured_endpoint_urls)` from `[services X]` `SERVICE =
    /// endpoint_url = …`, else the profile's `endpoint_url` (env overrides are the caller's).
    pub fn service_endpoint(&self, profile: &str, service: &str) -> Result<(Option<String>, bool)> {
        if let Some(v) = self.get(profile, "ignore_configured_endpoint_urls") {
            let ignore = parse_bool(v).ok_or_else(|| {
                self.fail(
                    profile,
                    "ignore_configured_endpoint_urls",
                    format!("= {v:?} is not a boolean"),
                    "write true or false",
                )
            })?;
            if ignore {
                return Ok((None, true));
            }
        }
        if let Some(services) = self.get(profile, "services") {
            let key = PropertiesKey::builder()
                .section_key("services")
                .section_name(services)
                .property_name(service)
                .sub_property_name("endpoint_url")
                .build()
                .map_err(Error::internal)?;
            if let Some(url) = self
                .merged
                .other_sections()
                .get(&key)
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
            {
                return Ok((Some(url.to_owned()), false));
            }
        }
        Ok((self.get(profile, "endpoint_url").map(str::to_owned), false))
    }
}
