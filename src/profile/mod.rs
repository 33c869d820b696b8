//! AWS shared config + credentials: parse (with aws-config's public parser), merge, resolve
//! `source_profile` chains, validate. Produces a [`ResolvedProfile`]: the base credentials and
//! the ordered STS steps the engine must perform.

use std::borrow::Cow;
use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use aws_config::profile::ProfileSet;
use aws_runtime::env_config::file::{EnvConfigFileKind, EnvConfigFiles};
use aws_runtime::env_config::property::PropertiesKey;
use aws_types::os_shim_internal::{Env, Fs};
use secrecy::SecretString;

use crate::error::{Error, Result};
use crate::token::{EnvLookup, TokenKind, TokenSettings};

mod validate;

/// The two files, after `AWS_CONFIG_FILE` / `AWS_SHARED_CREDENTIALS_FILE` / `HOME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsFiles {
    pub config: PathBuf,
    pub credentials: PathBuf,
}

/// An MFA requirement on one STS step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mfa {
    /// `mfa_serial` (validated: 9–256 chars of `[\w+=/:,.@-]`).
    pub serial: String,
    /// `tapcred_*` keys of the profile that carries `mfa_serial`.
    pub token: TokenSettings,
}

/// Long-term (or externally supplied) credentials at the root of a chain.
#[derive(Clone)]
pub struct BaseCredentials {
    /// Profile that held the keys, or `"env"` for `credential_source = Environment`.
    pub origin: String,
    pub access_key_id: String,
    pub secret_access_key: SecretString,
    pub session_token: Option<SecretString>,
}

impl fmt::Debug for BaseCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BaseCredentials")
            .field("origin", &self.origin)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleStep {
    /// Profile that declared this `role_arn`.
    pub profile: String,
    pub role_arn: String,
    pub external_id: Option<String>,
    pub role_session_name: Option<String>,
    /// 900–43200, validated.
    pub duration_seconds: Option<u32>,
    pub mfa: Option<Mfa>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A profile with `mfa_serial` and no `role_arn`: `GetSessionToken` with MFA.
    SessionToken {
        profile: String,
        mfa: Mfa,
        duration_seconds: Option<u32>,
    },
    AssumeRole(RoleStep),
}

#[derive(Debug, Clone)]
pub struct ResolvedProfile {
    /// The selected profile.
    pub name: String,
    /// `region` of the selected profile (env overrides are applied by the sts layer).
    pub region: Option<String>,
    /// Endpoint from the config file for STS: `[services X]` `sts = endpoint_url = …`, else
    /// the profile's `endpoint_url`; None when `ignore_configured_endpoint_urls = true`.
    /// Env (`AWS_ENDPOINT_URL_STS`, `AWS_ENDPOINT_URL`) is applied by the sts layer.
    pub endpoint_url: Option<String>,
    /// Whether `ignore_configured_endpoint_urls = true` in the profile.
    pub ignore_configured_endpoint_urls: bool,
    pub base: BaseCredentials,
    /// STS calls to make, in order, starting from `base`. Empty for a plain static-key profile.
    pub steps: Vec<Step>,
    /// `tapcred_*` keys of the selected profile itself.
    pub token: TokenSettings,
}

/// The parsed, merged files.
pub struct Profiles {
    pub files: AwsFiles,
    /// Both files merged with the AWS CLI's rules (credentials win over config per key).
    merged: ProfileSet,
    /// Each file on its own (None when it does not exist), to say which file a key is in.
    config: Option<FileData>,
    credentials: Option<FileData>,
}

/// One file on its own, parsed only when a message needs to say which file a key or a
/// section is in (an error path): the merged parse is all a working profile needs, and a
/// second parse of each file cost a third of a warm `credential-process`.
struct FileData {
    kind: EnvConfigFileKind,
    path: PathBuf,
    /// The text (it may hold secret keys: zeroized on drop, never printed).
    text: zeroize::Zeroizing<String>,
    set: std::cell::OnceCell<Option<ProfileSet>>,
}

impl FileData {
    fn set(&self) -> Option<&ProfileSet> {
        self.set
            .get_or_init(|| {
                parse_files(&[(self.kind, self.path.as_path(), self.text.as_str())]).ok()
            })
            .as_ref()
    }

    /// Every `[...]` header line, whitespace-normalised (for the wrong-header-style hint).
    fn headers(&self) -> Vec<String> {
        headers(&self.text)
    }
}

/// Which of the two files, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Config,
    Credentials,
}

const SESSION_TOKEN_MAX_SECONDS: u32 = 129_600;
const ROLE_MAX_SECONDS: u32 = 43_200;
const MIN_SECONDS: u32 = 900;

impl AwsFiles {
    /// `AWS_CONFIG_FILE` / `AWS_SHARED_CREDENTIALS_FILE` (a leading `~` is expanded with
    /// `HOME`), else `$HOME/.aws/config` and `$HOME/.aws/credentials`. Without `HOME` the
    /// paths keep a literal `~`, as the AWS SDKs do, and will not be found.
    pub fn from_env(env: &dyn EnvLookup) -> AwsFiles {
        let home = env.var("HOME").filter(|h| !h.is_empty());
        let pick = |var: &str, default: &str| match env.var(var).filter(|v| !v.is_empty()) {
            Some(path) => expand_home(&path, home.as_deref()),
            None => expand_home(&format!("~/.aws/{default}"), home.as_deref()),
        };
        AwsFiles {
            config: pick("AWS_CONFIG_FILE", "config"),
            credentials: pick("AWS_SHARED_CREDENTIALS_FILE", "credentials"),
        }
    }
}

/// Expand a leading `~` or `~/` with `home`; anything else is returned unchanged.
fn expand_home(path: &str, home: Option<&str>) -> PathBuf {
    match (path, home) {
        ("~", Some(home)) => PathBuf::from(home),
        (p, Some(home)) if p.starts_with("~/") => Path::new(home).join(&p[2..]),
        (p, _) => PathBuf::from(p),
    }
}

/// Read a file that may be missing: `Ok(None)` when it does not exist.
fn read_optional(path: &Path, what: &str) -> Result<Option<String>> {
    match std::fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes).map(Some).map_err(|_| {
            Error::config(format!(
                "{}: the AWS {what} file is not UTF-8 text; save it as UTF-8",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::config(format!(
            "{}: cannot read the AWS {what} file: {e}; check its permissions",
            path.display()
        ))),
    }
}

/// Drive a future that never really waits (aws-config's profile loader does only
/// synchronous std::fs I/O, here against an in-memory map) without an async runtime.
fn run_ready<F: Future>(fut: F) -> Result<F::Output> {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(out) => Ok(out),
        Poll::Pending => Err(Error::internal(
            "internal error: aws-config's profile parser did not finish synchronously; please report this",
        )),
    }
}

/// Parse the given files with aws-config's public parser (exactly the AWS CLI's rules).
fn parse_files(files: &[(EnvConfigFileKind, &Path, &str)]) -> Result<ProfileSet> {
    let mut map: HashMap<OsString, Vec<u8>> = HashMap::new();
    let mut builder = EnvConfigFiles::builder();
    for (kind, path, text) in files {
        map.insert(path.as_os_str().to_owned(), text.as_bytes().to_vec());
        builder = builder.with_file(*kind, *path);
    }
    if files.is_empty() {
        builder = builder.with_contents(EnvConfigFileKind::Config, "");
    }
    let fs = Fs::from_raw_map(map);
    let env = Env::from_slice(&[]);
    let set = run_ready(aws_config::profile::load(
        &fs,
        &env,
        &builder.build(),
        Some(Cow::Borrowed("default")),
    ))?;
    set.map_err(|e| {
        // The parse error (with path and line) is the source of the load error.
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(inner) = source {
            text = format!("{text}: {inner}");
            source = inner.source();
        }
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        Error::config(format!("{text}; fix that line"))
    })
}

/// How a profile's section header is written in a file.
fn header(which: Which, profile: &str) -> String {
    match (which, profile) {
        (Which::Credentials, p) | (Which::Config, p @ "default") => format!("[{p}]"),
        (Which::Config, p) => format!("[profile {p}]"),
    }
}

fn parse_bool(value: &str) -> Option<bool> {
    if value.eq_ignore_ascii_case("true") {
        Some(true)
    } else if value.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

impl Profiles {
    /// Read both files. A file that does not exist is treated as empty; if neither exists,
    /// that is a config error naming both paths.
    pub fn load(files: &AwsFiles) -> Result<Profiles> {
        let config_text = read_optional(&files.config, "config")?;
        let credentials_text = read_optional(&files.credentials, "credentials")?;
        if config_text.is_none() && credentials_text.is_none() {
            return Err(Error::config(format!(
                "no AWS profiles: neither {} nor {} exists; create them with `aws configure` \
                 (or write a [profile NAME] section in the first and a [NAME] section with \
                 aws_access_key_id/aws_secret_access_key in the second), or point \
                 AWS_CONFIG_FILE / AWS_SHARED_CREDENTIALS_FILE at your files",
                files.config.display(),
                files.credentials.display()
            )));
        }
        let mut both = Vec::new();
        if let Some(text) = &config_text {
            both.push((
                EnvConfigFileKind::Config,
                files.config.as_path(),
                text.as_str(),
            ));
        }
        if let Some(text) = &credentials_text {
            both.push((
                EnvConfigFileKind::Credentials,
                files.credentials.as_path(),
                text.as_str(),
            ));
        }
        let merged = parse_files(&both)?;
        let one = |kind, path: &Path, text: Option<String>| {
            text.map(|text| FileData {
                kind,
                path: path.to_owned(),
                text: zeroize::Zeroizing::new(text),
                set: std::cell::OnceCell::new(),
            })
        };
        let config = one(EnvConfigFileKind::Config, &files.config, config_text);
        let credentials = one(
            EnvConfigFileKind::Credentials,
            &files.credentials,
            credentials_text,
        );
        Ok(Profiles {
            files: files.clone(),
            merged,
            config,
            credentials,
        })
    }

    /// Profile names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.merged.profiles().map(str::to_owned).collect();
        names.sort();
        names
    }

    /// Whether a profile of that name exists in either file.
    pub fn contains(&self, name: &str) -> bool {
        self.merged.get_profile(name).is_some()
    }

    /// The merged value of `key` in `profile` (credentials file wins), trimmed; an empty
    /// value counts as unset. Key names are case-insensitive, profile names are not.
    pub fn get(&self, profile: &str, key: &str) -> Option<&str> {
        self.merged
            .get_profile(profile)?
            .get(key)
            .map(str::trim)
            .filter(|v| !v.is_empty())
    }

    /// Whether each file exists (config, credentials).
    pub fn existing(&self) -> (bool, bool) {
        (self.config.is_some(), self.credentials.is_some())
    }

    fn data(&self, which: Which) -> Option<&FileData> {
        match which {
            Which::Config => self.config.as_ref(),
            Which::Credentials => self.credentials.as_ref(),
        }
    }

    fn path(&self, which: Which) -> &Path {
        match which {
            Which::Config => &self.files.config,
            Which::Credentials => &self.files.credentials,
        }
    }

    /// The file the merged value of `key` comes from (the credentials file wins, as in the
    /// merge), else the file(s) where the profile is defined.
    fn files_of(&self, profile: &str, key: Option<&str>) -> Vec<Which> {
        let in_file = |which: Which| self.data(which).and_then(|d| d.set()?.get_profile(profile));
        if let Some(key) = key {
            for which in [Which::Credentials, Which::Config] {
                if in_file(which).is_some_and(|p| p.get(key).is_some()) {
                    return vec![which];
                }
            }
        }
        let found: Vec<Which> = [Which::Config, Which::Credentials]
            .into_iter()
            .filter(|&w| in_file(w).is_some())
            .collect();
        if found.is_empty() {
            vec![Which::Config]
        } else {
            found
        }
    }

    /// `profile "NAME" ([profile NAME] in PATH)` prefix for a message: the file is the one
    /// holding `key` when it is set, else the file(s) defining the profile.
    fn at(&self, profile: &str, key: Option<&str>) -> String {
        let files: Vec<String> = self
            .files_of(profile, key)
            .into_iter()
            .map(|w| format!("{} in {}", header(w, profile), self.path(w).display()))
            .collect();
        format!("profile \"{profile}\" ({})", files.join(" and "))
    }

    fn fail(&self, profile: &str, key: &str, problem: impl fmt::Display, fix: &str) -> Error {
        Error::config(format!(
            "{}: {key} {problem}; {fix}",
            self.at(profile, Some(key))
        ))
    }

    fn not_found(&self, name: &str) -> Error {
        let names = self.names();
        let read: Vec<String> = [Which::Config, Which::Credentials]
            .into_iter()
            .map(|w| {
                let path = self.path(w).display();
                if self.data(w).is_some() {
                    format!("read {path}")
                } else {
                    format!("{path} does not exist")
                }
            })
            .collect();
        let mut msg = format!("profile \"{name}\" not found ({})", read.join("; "));
        // The most common slip: the other file's header style.
        if let Some(d) = &self.config
            && name != "default"
            && d.headers().iter().any(|h| *h == name)
        {
            msg.push_str(&format!(
                "; {} has [{name}], but the config file needs [profile {name}]",
                self.files.config.display()
            ));
        }
        if let Some(d) = &self.credentials
            && d.headers().contains(&format!("profile {name}"))
        {
            msg.push_str(&format!(
                "; {} has [profile {name}], but the credentials file needs [{name}]",
                self.files.credentials.display()
            ));
        }
        let close = validate::close_names(name, &names);
        if !close.is_empty() {
            let quoted: Vec<String> = close.iter().map(|n| format!("\"{n}\"")).collect();
            msg.push_str(&format!("; did you mean {}?", quoted.join(" or ")));
        } else if names.is_empty() {
            msg.push_str("; the files define no profiles");
        } else {
            let shown: Vec<&str> = names.iter().take(12).map(String::as_str).collect();
            let more = if names.len() > shown.len() {
                ", …"
            } else {
                ""
            };
            msg.push_str(&format!("; profiles there: {}{more}", shown.join(", ")));
        }
        let sep = if msg.ends_with('?') { " " } else { "; " };
        if msg.contains(" needs [") {
            msg.push_str(&format!("{sep}fix that section header"));
        } else {
            msg.push_str(&format!(
                "{sep}pick a profile with --profile or AWS_PROFILE, or add [profile {name}] to {}",
                self.files.config.display()
            ));
        }
        Error::config(msg)
    }

    /// Resolve `name` into base credentials + steps, validating every key on the way.
    pub fn resolve(&self, name: &str, env: &dyn EnvLookup) -> Result<ResolvedProfile> {
        if !self.contains(name) {
            return Err(self.not_found(name));
        }
        let token = self.token_settings(name, env)?;
        let region = self.get(name, "region").map(str::to_owned);
        let (endpoint_url, ignore_configured_endpoint_urls) = self.endpoint(name)?;

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
                && let Some(base) = self.static_keys(cur)?
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
                    (Some(source), _) if source == cur => match self.static_keys(cur)? {
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
                match self.static_keys(cur)? {
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
    fn static_keys(&self, profile: &str) -> Result<Option<BaseCredentials>> {
        let id = self.get(profile, "aws_access_key_id");
        let secret = self.get(profile, "aws_secret_access_key");
        let token = self
            .get(profile, "aws_session_token")
            .or_else(|| self.get(profile, "aws_security_token"));
        match (id, secret) {
            (Some(id), Some(secret)) => Ok(Some(BaseCredentials {
                origin: profile.to_owned(),
                access_key_id: id.to_owned(),
                secret_access_key: SecretString::from(secret.to_owned()),
                session_token: token.map(|t| SecretString::from(t.to_owned())),
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
        let role_session_name = match self.get(profile, "role_session_name") {
            Some(v) => {
                validate::role_session_name(v).map_err(|why| {
                    self.fail(
                        profile,
                        "role_session_name",
                        format!("{v:?} {why}"),
                        "use 2–64 characters of letters, digits and _+=,.@-",
                    )
                })?;
                Some(v.to_owned())
            }
            None => None,
        };
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

    fn duration(&self, profile: &str, max: u32, rule: &str) -> Result<Option<u32>> {
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

    fn mfa(&self, profile: &str, serial: &str, env: &dyn EnvLookup) -> Result<Mfa> {
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

    /// The `tapcred_*` keys of one profile.
    fn token_settings(&self, profile: &str, env: &dyn EnvLookup) -> Result<TokenSettings> {
        let mut s = TokenSettings {
            profile: profile.to_owned(),
            ..TokenSettings::default()
        };
        if let Some(v) = self.get(profile, "tapcred_token") {
            s.kind = TokenKind::parse(v).ok_or_else(|| {
                self.fail(
                    profile,
                    "tapcred_token",
                    format!("= {v:?} is not a token source"),
                    &format!("use one of {}", TokenKind::NAMES.join(", ")),
                )
            })?;
        }
        s.oath_account = self.get(profile, "tapcred_oath_account").map(str::to_owned);
        if let Some(v) = self.get(profile, "tapcred_yubikey_serial") {
            s.yubikey_serial = Some(v.parse::<u32>().map_err(|_| {
                self.fail(
                    profile,
                    "tapcred_yubikey_serial",
                    format!("= {v:?} is not a YubiKey serial number"),
                    "use the decimal serial printed on the key or shown by `tapcred devices` / `ykman list`",
                )
            })?);
        }
        if let Some(v) = self.get(profile, "tapcred_otp_slot") {
            s.otp_slot = Some(match v {
                "1" => 1,
                "2" => 2,
                _ => {
                    return Err(self.fail(
                        profile,
                        "tapcred_otp_slot",
                        format!("= {v:?} is not an OTP slot"),
                        "use 1 (short touch) or 2 (long touch)",
                    ));
                }
            });
        }
        if let Some(v) = self.get(profile, "tapcred_totp_secret_env") {
            validate::env_var_name(v).map_err(|why| {
                self.fail(
                    profile,
                    "tapcred_totp_secret_env",
                    why,
                    "write the NAME of the variable that holds the seed (letters, digits, _), not the seed itself",
                )
            })?;
            s.totp_secret_env = v.to_owned();
        }
        if let Some(v) = self.get(profile, "tapcred_totp_secret_file") {
            let home = env.var("HOME").filter(|h| !h.is_empty());
            if (v == "~" || v.starts_with("~/")) && home.is_none() {
                return Err(self.fail(
                    profile,
                    "tapcred_totp_secret_file",
                    "starts with ~ but HOME is not set",
                    "set HOME or write an absolute path",
                ));
            }
            s.totp_secret_file = Some(expand_home(v, home.as_deref()));
        }
        Ok(s)
    }

    /// STS endpoint from the profile: `(endpoint_url, ignore_configured_endpoint_urls)`.
    fn endpoint(&self, profile: &str) -> Result<(Option<String>, bool)> {
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
                .property_name("sts")
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

/// The contents of every section header line (`[ profile  a ]` → `profile a`).
fn headers(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let inner = line.trim().strip_prefix('[')?;
            let inner = inner.split(']').next()?;
            Some(inner.split_whitespace().collect::<Vec<_>>().join(" "))
        })
        .collect()
}

/// `--profile` > `AWS_PROFILE` > `AWS_DEFAULT_PROFILE` > `default`.
pub fn selected_name(cli: Option<&str>, env: &dyn EnvLookup) -> String {
    cli.map(str::to_owned)
        .or_else(|| env.var("AWS_PROFILE").filter(|s| !s.is_empty()))
        .or_else(|| env.var("AWS_DEFAULT_PROFILE").filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "default".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn run_ready_completes_the_parser_without_a_runtime() {
        assert_eq!(run_ready(async { 7 }).unwrap(), 7);
        let set = parse_files(&[(
            EnvConfigFileKind::Config,
            Path::new("/x/config"),
            "[profile a]\nregion = r\n",
        )])
        .unwrap();
        assert_eq!(set.get_profile("a").unwrap().get("region"), Some("r"));
    }

    #[test]
    fn run_ready_reports_a_pending_future_as_internal() {
        let err = run_ready(std::future::pending::<()>()).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Internal);
        assert!(err.message().contains("did not finish synchronously"));
    }

    #[test]
    fn parse_errors_name_the_file_and_line_on_one_line() {
        let err = parse_files(&[(
            EnvConfigFileKind::Credentials,
            Path::new("/home/u/.aws/credentials"),
            "[a]\nno equals sign here\n",
        )])
        .map(|_| ())
        .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Config);
        let msg = err.message();
        assert!(msg.contains("/home/u/.aws/credentials on line 2"), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
    }

    #[test]
    fn header_lines() {
        assert_eq!(
            headers("# c\n[ profile   a ]\nk = v\n[b] ; note\n  [c]\n"),
            vec!["profile a", "b", "c"]
        );
        assert_eq!(header(Which::Config, "a"), "[profile a]");
        assert_eq!(header(Which::Config, "default"), "[default]");
        assert_eq!(header(Which::Credentials, "a"), "[a]");
    }

    #[test]
    fn home_expansion() {
        assert_eq!(expand_home("~/x/y", Some("/h")), PathBuf::from("/h/x/y"));
        assert_eq!(expand_home("~", Some("/h")), PathBuf::from("/h"));
        assert_eq!(expand_home("~user/x", Some("/h")), PathBuf::from("~user/x"));
        assert_eq!(
            expand_home("/abs/~/x", Some("/h")),
            PathBuf::from("/abs/~/x")
        );
        assert_eq!(expand_home("~/x", None), PathBuf::from("~/x"));
    }

    #[test]
    fn booleans() {
        assert_eq!(parse_bool("TRUE"), Some(true));
        assert_eq!(parse_bool("false"), Some(false));
        assert_eq!(parse_bool("1"), None);
    }
}
