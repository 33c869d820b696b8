//! AWS shared config + credentials: parse (with aws-config's public parser), merge, resolve
//! `source_profile` chains, validate. Produces a [`ResolvedProfile`]: the base credentials and
//! the ordered STS steps the engine must perform.
//!
//! - `load`: finding and parsing the two files, lookups and located error messages;
//! - `resolve`: following `source_profile` chains into base credentials + STS steps;
//! - `tapcred_keys`: the `tapcred_*` keys of a profile;
//! - `validate`: value syntax (ARNs, names, durations);
//! - `editor`: byte-preserving edits of the two files (`configure`, `enroll`).

use std::fmt;
use std::path::PathBuf;

use aws_config::profile::ProfileSet;
use secrecy::SecretString;

use crate::env::EnvLookup;
use crate::token::TokenSettings;

pub mod editor;
mod load;
pub use load::MAX_AWS_FILE;
mod resolve;
mod roles_anywhere;
pub use roles_anywhere::{RolesAnywhere, RolesAnywhereKey};
mod tapcred_keys;
pub(crate) mod validate;

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
    /// Empty when the keys are in the vault (`in_vault`): known only after an unlock.
    pub access_key_id: String,
    pub secret_access_key: SecretString,
    pub session_token: Option<SecretString>,
    /// `tapcred_access_key = vault`: the long-term key is the vault entry
    /// `EntryName::access_key(origin)` of this vault file, read only on a cache miss.
    pub in_vault: Option<PathBuf>,
}

impl fmt::Debug for BaseCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BaseCredentials")
            .field("origin", &self.origin)
            .field("access_key_id", &self.access_key_id)
            .field("in_vault", &self.in_vault)
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
    /// An IAM Roles Anywhere profile: credentials come from `CreateSession`, signed by a
    /// certificate's key (`base` and `steps` are then empty).
    pub roles_anywhere: Option<RolesAnywhere>,
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
    kind: aws_runtime::env_config::file::EnvConfigFileKind,
    path: PathBuf,
    /// The text (it may hold secret keys: zeroized on drop, never printed).
    text: zeroize::Zeroizing<String>,
    set: std::cell::OnceCell<Option<ProfileSet>>,
}

impl FileData {
    fn set(&self) -> Option<&ProfileSet> {
        self.set
            .get_or_init(|| {
                load::parse_files(&[(self.kind, self.path.as_path(), self.text.as_str())]).ok()
            })
            .as_ref()
    }

    /// Every `[...]` header line, whitespace-normalised (for the wrong-header-style hint).
    fn headers(&self) -> Vec<String> {
        load::headers(&self.text)
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

/// `--profile` > `AWS_PROFILE` > `AWS_DEFAULT_PROFILE` > `default`.
pub fn selected_name(cli: Option<&str>, env: &dyn EnvLookup) -> String {
    cli.map(str::to_owned)
        .or_else(|| env.var("AWS_PROFILE").filter(|s| !s.is_empty()))
        .or_else(|| env.var("AWS_DEFAULT_PROFILE").filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "default".to_owned())
}
