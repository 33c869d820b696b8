//! Configuration of the STS double: IAM users (long-term keys, MFA devices) and roles (trust
//! rules). Built in Rust with [`UserSpec`] / [`RoleSpec`], or read from a JSON file (see
//! `fixtures/sts-double/design.json`).

use secrecy::{ExposeSecret, SecretSlice, SecretString};
use serde::Deserialize;
use std::fmt;
use std::path::Path;
use zeroize::Zeroize;

/// Default `MaxSessionDuration` of an IAM role (1 hour), as in AWS.
pub const DEFAULT_MAX_SESSION_DURATION: u64 = 3600;

/// An MFA device registered on a user: its serial (ARN or hardware serial) and TOTP seed.
#[derive(Clone)]
pub struct MfaDevice {
    pub serial: String,
    pub(crate) seed: SecretSlice<u8>,
}

impl fmt::Debug for MfaDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MfaDevice")
            .field("serial", &self.serial)
            .field("seed", &"[redacted]")
            .finish()
    }
}

/// An IAM user with one long-term access key and any number of MFA devices.
#[derive(Clone)]
pub struct UserSpec {
    pub name: String,
    pub account: String,
    pub arn: String,
    /// `AIDA…` unique id reported by GetCallerIdentity.
    pub user_id: String,
    pub access_key_id: String,
    pub(crate) secret_access_key: SecretString,
    pub mfa_devices: Vec<MfaDevice>,
}

impl fmt::Debug for UserSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserSpec")
            .field("arn", &self.arn)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"[redacted]")
            .field("mfa_devices", &self.mfa_devices)
            .finish()
    }
}

impl UserSpec {
    /// A user `arn:aws:iam::ACCOUNT:user/NAME` with the given long-term key.
    pub fn new(name: &str, account: &str, access_key_id: &str, secret_access_key: &str) -> Self {
        UserSpec {
            name: name.to_owned(),
            account: account.to_owned(),
            arn: format!("arn:aws:iam::{account}:user/{name}"),
            user_id: derived_id("AIDA", &format!("{account}/{name}")),
            access_key_id: access_key_id.to_owned(),
            secret_access_key: SecretString::from(secret_access_key.to_owned()),
            mfa_devices: Vec::new(),
        }
    }

    /// Register an MFA device: `seed_base32` is the TOTP seed as AWS shows it (base32,
    /// padding and spaces optional). Panics on an invalid seed (test configuration error).
    pub fn mfa_device(mut self, serial: &str, seed_base32: &str) -> Self {
        let seed = decode_base32(seed_base32)
            .unwrap_or_else(|e| panic!("MFA device {serial}: invalid base32 seed: {e}"));
        self.mfa_devices.push(MfaDevice {
            serial: serial.to_owned(),
            seed: SecretSlice::from(seed),
        });
        self
    }

    /// Register an MFA device from raw seed bytes.
    pub fn mfa_device_raw(mut self, serial: &str, seed: &[u8]) -> Self {
        self.mfa_devices.push(MfaDevice {
            serial: serial.to_owned(),
            seed: SecretSlice::from(seed.to_vec()),
        });
        self
    }

    pub(crate) fn secret(&self) -> &str {
        self.secret_access_key.expose_secret()
    }
}

/// An IAM role and the parts of its trust policy the double enforces.
#[derive(Clone, Debug)]
pub struct RoleSpec {
    pub arn: String,
    pub name: String,
    pub account: String,
    /// `AROA…` unique id (the first half of an assumed-role UserId).
    pub role_id: String,
    /// Trust condition `aws:MultiFactorAuthPresent = true`.
    pub require_mfa: bool,
    /// Trust condition `sts:ExternalId = …`.
    pub external_id: Option<String>,
    /// The role's MaxSessionDuration (3600–43200).
    pub max_session_duration: u64,
    /// Principals (user ARNs, role ARNs) allowed to assume the role; empty = any
    /// authenticated caller.
    pub trusted_principals: Vec<String>,
}

impl RoleSpec {
    /// A role from its ARN `arn:aws:iam::ACCOUNT:role/[PATH/]NAME`, no MFA requirement,
    /// MaxSessionDuration 1 h. Panics on a malformed ARN.
    pub fn new(arn: &str) -> Self {
        let (account, name) = parse_role_arn(arn)
            .unwrap_or_else(|| panic!("not a role ARN: {arn} (want arn:aws:iam::ACCT:role/NAME)"));
        RoleSpec {
            arn: arn.to_owned(),
            role_id: derived_id("AROA", arn),
            name,
            account,
            require_mfa: false,
            external_id: None,
            max_session_duration: DEFAULT_MAX_SESSION_DURATION,
            trusted_principals: Vec::new(),
        }
    }

    pub fn require_mfa(mut self, yes: bool) -> Self {
        self.require_mfa = yes;
        self
    }

    pub fn external_id(mut self, id: &str) -> Self {
        self.external_id = Some(id.to_owned());
        self
    }

    pub fn max_session_duration(mut self, secs: u64) -> Self {
        self.max_session_duration = secs;
        self
    }

    pub fn trust_principal(mut self, arn: &str) -> Self {
        self.trusted_principals.push(arn.to_owned());
        self
    }
}

/// Everything the double knows about the AWS account(s) it pretends to be.
#[derive(Clone, Debug, Default)]
pub struct Config {
    pub users: Vec<UserSpec>,
    pub roles: Vec<RoleSpec>,
}

impl Config {
    /// Parse the JSON configuration format (see `fixtures/sts-double/design.json`).
    pub fn from_json(text: &str) -> Result<Config, String> {
        let raw: RawConfig =
            serde_json::from_str(text).map_err(|e| format!("STS double config: {e}"))?;
        raw.into_config()
    }

    /// Read and parse a JSON configuration file.
    pub fn from_file(path: &Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read STS double config {}: {e}", path.display()))?;
        Config::from_json(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The the design starting point (`fixtures/sts-double/design.json`), see [`design`].
    pub fn design() -> Config {
        Config::from_json(design::JSON).expect("fixtures/sts-double/design.json is valid")
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        let mut keys = std::collections::HashSet::new();
        let mut serials = std::collections::HashSet::new();
        for u in &self.users {
            if !keys.insert(u.access_key_id.clone()) {
                return Err(format!("duplicate access key id {}", u.access_key_id));
            }
            for d in &u.mfa_devices {
                if !serials.insert(d.serial.clone()) {
                    return Err(format!("MFA serial {} registered twice", d.serial));
                }
                if d.seed.expose_secret().is_empty() {
                    return Err(format!("MFA device {}: empty seed", d.serial));
                }
            }
        }
        for r in &self.roles {
            if !(3600..=43200).contains(&r.max_session_duration) {
                return Err(format!(
                    "role {}: MaxSessionDuration {} outside 3600..=43200",
                    r.arn, r.max_session_duration
                ));
            }
        }
        Ok(())
    }
}

/// Names and values of the design starting point, for tests that want them as constants.
pub mod design {
    /// The JSON text of `fixtures/sts-double/design.json`.
    pub const JSON: &str = include_str!("../../../../fixtures/sts-double/design.json");
    pub const ACCOUNT: &str = "111111111111";
    pub const USER_NAME: &str = "toolkit-user";
    pub const USER_ARN: &str = "arn:aws:iam::111111111111:user/toolkit-user";
    pub const ACCESS_KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
    /// AWS's documentation example secret (not a real credential).
    pub const SECRET_ACCESS_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    pub const MFA_SERIAL: &str = "arn:aws:iam::111111111111:mfa/toolkit-user";
    /// Demo TOTP seed (base32 of the 20 bytes `tapcred-demo-seed-01`). Not a secret.
    pub const MFA_SEED_BASE32: &str = "ORQXAY3SMVSC2ZDFNVXS243FMVSC2MBR";
    pub const ROLE_ARN: &str = "arn:aws:iam::111111111111:role/toolkit-role";
    pub const ROLE_B_ARN: &str = "arn:aws:iam::111111111111:role/toolkit-role-b";
    pub const CHAINED_ROLE_ARN: &str = "arn:aws:iam::111111111111:role/chained-role";
    pub const EXTERNAL_ROLE_ARN: &str = "arn:aws:iam::111111111111:role/external-role";
    pub const EXTERNAL_ID: &str = "tapcred-external";
    pub const LONG_ROLE_ARN: &str = "arn:aws:iam::111111111111:role/long-role";
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    users: Vec<RawUser>,
    #[serde(default)]
    roles: Vec<RawRole>,
    /// Free text for people reading the file.
    #[serde(default, rename = "_comment")]
    _comment: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    name: String,
    account: String,
    #[serde(default)]
    arn: Option<String>,
    access_key_id: String,
    secret_access_key: String,
    #[serde(default)]
    mfa_devices: Vec<RawDevice>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevice {
    serial: String,
    seed_base32: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRole {
    arn: String,
    #[serde(default)]
    require_mfa: bool,
    #[serde(default)]
    external_id: Option<String>,
    #[serde(default)]
    max_session_duration: Option<u64>,
    #[serde(default)]
    trusted_principals: Vec<String>,
}

impl RawConfig {
    fn into_config(self) -> Result<Config, String> {
        let mut users = Vec::new();
        for mut u in self.users {
            let mut spec =
                UserSpec::new(&u.name, &u.account, &u.access_key_id, &u.secret_access_key);
            u.secret_access_key.zeroize();
            if let Some(arn) = u.arn {
                spec.arn = arn;
            }
            for mut d in u.mfa_devices {
                let seed = decode_base32(&d.seed_base32)
                    .map_err(|e| format!("MFA device {}: invalid base32 seed: {e}", d.serial))?;
                d.seed_base32.zeroize();
                spec.mfa_devices.push(MfaDevice {
                    serial: d.serial,
                    seed: SecretSlice::from(seed),
                });
            }
            users.push(spec);
        }
        let mut roles = Vec::new();
        for r in self.roles {
            if parse_role_arn(&r.arn).is_none() {
                return Err(format!("not a role ARN: {}", r.arn));
            }
            let mut spec = RoleSpec::new(&r.arn).require_mfa(r.require_mfa);
            spec.external_id = r.external_id;
            if let Some(m) = r.max_session_duration {
                spec.max_session_duration = m;
            }
            spec.trusted_principals = r.trusted_principals;
            roles.push(spec);
        }
        let config = Config { users, roles };
        config.validate()?;
        Ok(config)
    }
}

/// `arn:aws:iam::ACCT:role/[path/]NAME` → (ACCT, NAME).
pub(crate) fn parse_role_arn(arn: &str) -> Option<(String, String)> {
    let rest = arn.strip_prefix("arn:aws:iam::")?;
    let (account, resource) = rest.split_once(':')?;
    let path = resource.strip_prefix("role/")?;
    let name = path.rsplit('/').next()?;
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) || name.is_empty() {
        return None;
    }
    Some((account.to_owned(), name.to_owned()))
}

/// Decode a base32 TOTP seed the way authenticator apps do: case-insensitive, spaces and
/// `=` padding ignored.
pub(crate) fn decode_base32(text: &str) -> Result<Vec<u8>, String> {
    let mut clean: String = text
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '=')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let out = data_encoding::BASE32_NOPAD
        .decode(clean.as_bytes())
        .map_err(|e| e.to_string());
    clean.zeroize();
    out
}

/// A stable AWS-looking unique id (`AIDA…`, `AROA…`) derived from a name.
fn derived_id(prefix: &str, name: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(name.as_bytes());
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let tail: String = digest
        .iter()
        .take(17)
        .map(|b| alphabet[(*b as usize) % alphabet.len()] as char)
        .collect();
    format!("{prefix}{tail}")
}
