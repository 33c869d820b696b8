//! IAM's virtual-MFA actions on the same server as STS (dispatched on `Action`; requests are
//! signed for the service `iam`, API `Version=2010-05-08`, answers in IAM's XML namespace).
//!
//! - `CreateVirtualMFADevice`: a fresh random 40-byte seed; `Base32StringSeed` is the base32
//!   *text* (64 characters), base64-encoded in the XML as every blob is, as AWS sends it.
//!   Serial `arn:aws:iam::ACCT:mfa[PATH]NAME`; a name already used at that path (also by a
//!   configured device) is `EntityAlreadyExists`. No `QRCodePNG` is sent (the double draws no
//!   pictures; the SDK's field is optional).
//! - `EnableMFADevice`: `AuthenticationCode1`/`2` must be the codes of two consecutive steps
//!   `s`, `s+1` with `s+1` the current step or the one before (codes read one window after
//!   the other, in real time; a pair that ends in the future is refused — the double does not
//!   assume AWS accepts codes from a window that has not begun). Otherwise AWS's
//!   `InvalidAuthenticationCode`. Both steps are then spent for the serial: STS refuses them
//!   afterwards, as a reused code. At most 8 MFA devices per user (`LimitExceeded`).
//!   Afterwards STS accepts codes of the new serial for that user.
//! - `DeactivateMFADevice` (the device becomes unassigned), `DeleteVirtualMFADevice`
//!   (`DeleteConflict` while assigned), `ListMFADevices`, `ListVirtualMFADevices`.
//! - Access keys: every configured user starts with its configured key (Active).
//!   `CreateAccessKey` (at most 2 keys per user, else `LimitExceeded`; `AKIA…` id, a 40-char
//!   secret, `Status` Active, `CreateDate`), `UpdateAccessKey` (`Active`/`Inactive`),
//!   `DeleteAccessKey`, `ListAccessKeys`. A deleted or inactive key signs nothing
//!   (`InvalidClientTokenId`); sessions already issued with it keep working until they expire.
//!   A new key can be made to fail authentication for its first N requests or S seconds
//!   ([`super::StsDouble::set_key_propagation`]: IAM's eventual consistency), and the access
//!   key actions can require an MFA session ([`super::StsDouble::require_mfa_for_access_keys`]:
//!   the self-management policy with `aws:MultiFactorAuthPresent`).
//! - Callers: IAM users (long-term keys, or a GetSessionToken session made with MFA); role
//!   sessions are denied. Users act within their own account.

use super::config::MfaDevice;
use super::engine::{Caller, Engine, StsError, TokenCodeEvent, TokenOutcome};
use super::totp;
use super::xml;
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

pub(crate) const IAM_VERSION: &str = "2010-05-08";

/// AWS's quota of MFA devices assigned to one IAM user.
pub const MAX_MFA_DEVICES_PER_USER: usize = 8;

/// Length of the seed of a new virtual MFA device (64 base32 characters).
pub const VIRTUAL_SEED_BYTES: usize = 40;

pub(crate) const MSG_ENTITY_EXISTS: &str =
    "MFADevice entity at the same path and name already exists.";
pub(crate) const MSG_BAD_AUTH_CODE: &str = "Authentication code for device is not valid.";
pub(crate) const MSG_IN_USE: &str = "MFA Device is already in use.";
pub(crate) const MSG_DELETE_CONFLICT: &str = "MFA Device is still in use";

/// The IAM actions that change state. Each can be cut after it commits
/// ([`super::StsDouble::lose_answer`]); a new write action joins here.
pub const IAM_WRITES: &[&str] = &[
    "CreateVirtualMFADevice",
    "EnableMFADevice",
    "DeactivateMFADevice",
    "DeleteVirtualMFADevice",
    "CreateAccessKey",
    "UpdateAccessKey",
    "DeleteAccessKey",
];

/// AWS's quota of access keys per IAM user.
pub const MAX_ACCESS_KEYS_PER_USER: usize = 2;

const ACCESS_KEY_ACTIONS: &[&str] = &[
    "CreateAccessKey",
    "UpdateAccessKey",
    "DeleteAccessKey",
    "ListAccessKeys",
];

const ACTIONS: &[&str] = &[
    "CreateVirtualMFADevice",
    "EnableMFADevice",
    "DeactivateMFADevice",
    "DeleteVirtualMFADevice",
    "ListMFADevices",
    "ListVirtualMFADevices",
    "CreateAccessKey",
    "UpdateAccessKey",
    "DeleteAccessKey",
    "ListAccessKeys",
];

pub(crate) fn is_iam_action(action: &str) -> bool {
    ACTIONS.contains(&action)
}

/// Whether AWS answers `action` with a `<…Result>` element.
pub(crate) fn has_result(action: &str) -> bool {
    matches!(
        action,
        "CreateVirtualMFADevice"
            | "ListMFADevices"
            | "ListVirtualMFADevices"
            | "CreateAccessKey"
            | "ListAccessKeys"
    )
}

pub(crate) struct VirtualDevice {
    account: String,
    name: String,
    seed: SecretSlice<u8>,
    created: i64,
    /// Index of the user it is assigned to, and when.
    assigned: Option<(usize, i64)>,
}

/// A failure to answer instead of the real work, for the next `remaining` calls of an action.
struct Fault {
    remaining: u32,
    code: String,
}

/// A long-term access key of a user.
pub(crate) struct AccessKey {
    pub(crate) user: usize,
    pub(crate) secret: SecretString,
    pub(crate) active: bool,
    pub(crate) created: i64,
    /// Requests it still fails (not yet propagated), and the time before which it fails.
    pub(crate) unknown_for_calls: u32,
    pub(crate) unknown_until: i64,
}

pub(crate) struct IamState {
    devices: BTreeMap<String, VirtualDevice>,
    /// Every user's access keys, by id (the configured ones included).
    pub(crate) keys: BTreeMap<String, AccessKey>,
    /// For a new key: how many requests, and how many seconds, it fails authentication.
    propagation: (u32, u64),
    access_keys_need_mfa: bool,
    /// When configured (non-virtual) devices count as enabled: the double's start.
    started: i64,
    faults: HashMap<String, Fault>,
}

impl IamState {
    pub(crate) fn new(now: i64) -> Self {
        IamState {
            devices: BTreeMap::new(),
            keys: BTreeMap::new(),
            propagation: (0, 0),
            access_keys_need_mfa: false,
            started: now,
            faults: HashMap::new(),
        }
    }
}

/// What the double's IAM holds now (no seeds): served at `GET /_double/iam`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct IamSnapshot {
    /// Virtual MFA devices that exist (assigned or not).
    pub virtual_devices: Vec<VirtualDeviceInfo>,
    /// Every user's assigned MFA serials (configured ones included), by user name.
    pub user_devices: BTreeMap<String, Vec<String>>,
    /// Every user's access keys (no secrets), by user name.
    #[serde(default)]
    pub access_keys: BTreeMap<String, Vec<AccessKeyInfo>>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessKeyInfo {
    pub access_key_id: String,
    pub active: bool,
    /// Unix seconds.
    pub created: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct VirtualDeviceInfo {
    pub serial: String,
    pub name: String,
    /// The user it is enabled for.
    pub user: Option<String>,
}

impl Engine {
    pub(crate) fn iam_snapshot(&self) -> IamSnapshot {
        IamSnapshot {
            virtual_devices: self
                .iam
                .devices
                .iter()
                .map(|(serial, d)| VirtualDeviceInfo {
                    serial: serial.clone(),
                    name: d.name.clone(),
                    user: d.assigned.map(|(u, _)| self.config.users[u].name.clone()),
                })
                .collect(),
            user_devices: self
                .config
                .users
                .iter()
                .map(|u| {
                    (
                        u.name.clone(),
                        u.mfa_devices.iter().map(|d| d.serial.clone()).collect(),
                    )
                })
                .collect(),
            access_keys: self
                .config
                .users
                .iter()
                .enumerate()
                .map(|(i, u)| (u.name.clone(), self.access_keys_of(i)))
                .collect(),
        }
    }

    fn access_keys_of(&self, user: usize) -> Vec<AccessKeyInfo> {
        self.iam
            .keys
            .iter()
            .filter(|(_, k)| k.user == user)
            .map(|(id, k)| AccessKeyInfo {
                access_key_id: id.clone(),
                active: k.active,
                created: k.created,
            })
            .collect()
    }

    /// The configured users' keys become IAM access keys, created now.
    pub(crate) fn seed_access_keys(&mut self) {
        let now = self.now();
        for (i, u) in self.config.users.iter().enumerate() {
            self.iam.keys.insert(
                u.access_key_id.clone(),
                AccessKey {
                    user: i,
                    secret: SecretString::from(u.secret().to_owned()),
                    active: true,
                    created: now,
                    unknown_for_calls: 0,
                    unknown_until: 0,
                },
            );
        }
    }

    /// The user and secret of an access key that signs now (active, propagated).
    pub(crate) fn usable_key(&self, akid: &str) -> Option<(usize, &str)> {
        let k = self.iam.keys.get(akid)?;
        (k.active && k.unknown_for_calls == 0 && self.now() >= k.unknown_until)
            .then(|| (k.user, k.secret.expose_secret()))
    }

    /// Counts a request signed with `akid` against its propagation delay.
    pub(crate) fn note_key_use(&mut self, akid: &str) {
        if let Some(k) = self.iam.keys.get_mut(akid)
            && k.unknown_for_calls > 0
        {
            k.unknown_for_calls -= 1;
        }
    }

    pub(crate) fn is_known_key(&self, akid: &str) -> bool {
        self.iam.keys.contains_key(akid)
    }

    pub(crate) fn set_key_propagation(&mut self, calls: u32, secs: u64) {
        self.iam.propagation = (calls, secs);
    }

    pub(crate) fn require_mfa_for_access_keys(&mut self, yes: bool) {
        self.iam.access_keys_need_mfa = yes;
    }

    pub(crate) fn add_access_key(&mut self, user_name: &str, active: bool) -> String {
        let user = self
            .config
            .users
            .iter()
            .position(|u| u.name == user_name)
            .unwrap_or_else(|| panic!("no user {user_name} in the double"));
        let id = format!("AKIA{}", super::engine::random_base32(16));
        let now = self.now();
        self.iam.keys.insert(
            id.clone(),
            AccessKey {
                user,
                secret: SecretString::from(super::engine::random_base64(30)),
                active,
                created: now,
                unknown_for_calls: 0,
                unknown_until: 0,
            },
        );
        id
    }

    pub(crate) fn set_key_created(&mut self, akid: &str, at: i64) -> bool {
        match self.iam.keys.get_mut(akid) {
            Some(k) => {
                k.created = at;
                true
            }
            None => false,
        }
    }

    /// Answer the next `n` calls of IAM `action` with the error `code` (e.g.
    /// `InvalidAuthenticationCode`, `ServiceFailure`, `NoSuchEntity`).
    pub(crate) fn iam_fail_next(&mut self, action: &str, n: u32, code: &str) {
        self.iam.faults.insert(
            action.to_owned(),
            Fault {
                remaining: n,
                code: code.to_owned(),
            },
        );
    }

    pub(crate) fn iam_dispatch(
        &mut self,
        caller: &Caller,
        params: &HashMap<String, String>,
        action: &str,
    ) -> Result<String, StsError> {
        match params.get("Version").map(String::as_str) {
            Some(IAM_VERSION) => {}
            Some(other) => {
                return Err(StsError::new(
                    400,
                    "InvalidAction",
                    format!("Could not find operation {action} for version {other}"),
                ));
            }
            None => {
                return Err(StsError::new(
                    400,
                    "MissingParameter",
                    "The request must contain the parameter Version",
                ));
            }
        }
        let Some(user) = self.iam_user_of(caller) else {
            let (arn, _, _) = self.identity(caller);
            return Err(StsError::access_denied(format!(
                "User: {arn} is not authorized to perform: iam:{action} because no identity-based policy allows the iam:{action} action"
            )));
        };
        if self.iam.access_keys_need_mfa
            && ACCESS_KEY_ACTIONS.contains(&action)
            && matches!(caller, Caller::User(_))
        {
            let (arn, _, _) = self.identity(caller);
            return Err(StsError::access_denied(format!(
                "User: {arn} is not authorized to perform: iam:{action} with an explicit deny in an identity-based policy (aws:MultiFactorAuthPresent)"
            )));
        }
        if let Some(f) = self.iam.faults.get_mut(action)
            && f.remaining > 0
        {
            f.remaining -= 1;
            let code = f.code.clone();
            return Err(injected(&code));
        }
        match action {
            "CreateVirtualMFADevice" => self.create_virtual_mfa_device(user, params),
            "EnableMFADevice" => self.enable_mfa_device(user, params),
            "DeactivateMFADevice" => self.deactivate_mfa_device(user, params),
            "DeleteVirtualMFADevice" => self.delete_virtual_mfa_device(user, params),
            "ListMFADevices" => self.list_mfa_devices(user, params),
            "ListVirtualMFADevices" => Ok(self.list_virtual_mfa_devices(user, params)),
            "CreateAccessKey" => self.create_access_key(user, params),
            "UpdateAccessKey" => self.update_access_key(user, params),
            "DeleteAccessKey" => self.delete_access_key(user, params),
            "ListAccessKeys" => self.list_access_keys(user, params),
            other => Err(StsError::new(
                400,
                "InvalidAction",
                format!("Could not find operation {other} for version {IAM_VERSION}"),
            )),
        }
    }

    /// The user named `name` in the caller's account.
    fn iam_user_named(&self, caller: usize, name: &str) -> Result<usize, StsError> {
        let account = &self.config.users[caller].account;
        self.config
            .users
            .iter()
            .position(|u| u.name == name && &u.account == account)
            .ok_or_else(|| {
                StsError::new(
                    404,
                    "NoSuchEntity",
                    format!("The user with name {name} cannot be found."),
                )
            })
    }

    fn serial_in_use(&self, serial: &str) -> bool {
        self.iam.devices.contains_key(serial)
            || self
                .config
                .users
                .iter()
                .any(|u| u.mfa_devices.iter().any(|d| d.serial == serial))
    }

    fn create_virtual_mfa_device(
        &mut self,
        user: usize,
        params: &HashMap<String, String>,
    ) -> Result<String, StsError> {
        let name = required(params, "VirtualMFADeviceName", "virtualMFADeviceName")?;
        check(
            "virtualMFADeviceName",
            &name,
            1,
            226,
            |c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c),
            "[\\w+=,.@-]+",
        )?;
        let path = params.get("Path").cloned().unwrap_or_else(|| "/".into());
        if !(path.starts_with('/') && path.ends_with('/')) || path.len() > 512 {
            return Err(StsError::validation(format!(
                "1 validation error detected: Value '{path}' at 'path' failed to satisfy constraint: Member must satisfy regular expression pattern: (\\u002F)|(\\u002F[\\u0021-\\u007F]+\\u002F)"
            )));
        }
        let account = self.config.users[user].account.clone();
        let serial = format!("arn:aws:iam::{account}:mfa{path}{name}");
        if self.serial_in_use(&serial) {
            return Err(StsError::new(409, "EntityAlreadyExists", MSG_ENTITY_EXISTS));
        }
        let mut seed = Zeroizing::new(vec![0u8; VIRTUAL_SEED_BYTES]);
        getrandom::fill(&mut seed).expect("OS randomness");
        let text = Zeroizing::new(data_encoding::BASE32_NOPAD.encode(&seed));
        let blob = Zeroizing::new(data_encoding::BASE64.encode(text.as_bytes()));
        self.iam.devices.insert(
            serial.clone(),
            VirtualDevice {
                account,
                name,
                seed: SecretSlice::from(seed.to_vec()),
                created: self.now(),
                assigned: None,
            },
        );
        Ok(format!(
            "<VirtualMFADevice><SerialNumber>{}</SerialNumber><Base32StringSeed>{}</Base32StringSeed></VirtualMFADevice>",
            xml::escape(&serial),
            blob.as_str()
        ))
    }

    fn enable_mfa_device(
        &mut self,
        caller: usize,
        params: &HashMap<String, String>,
    ) -> Result<String, StsError> {
        let user_name = required(params, "UserName", "userName")?;
        let serial = required(params, "SerialNumber", "serialNumber")?;
        let code1 = required(params, "AuthenticationCode1", "authenticationCode1")?;
        let code2 = required(params, "AuthenticationCode2", "authenticationCode2")?;
        for (member, code) in [
            ("authenticationCode1", &code1),
            ("authenticationCode2", &code2),
        ] {
            check(member, code, 6, 6, |c| c.is_ascii_digit(), "[\\d]+")?;
        }
        let user = self.iam_user_named(caller, &user_name)?;
        let Some(device) = self.iam.devices.get(&serial) else {
            if self.serial_in_use(&serial) {
                return Err(StsError::new(409, "EntityAlreadyExists", MSG_IN_USE));
            }
            return Err(StsError::new(
                404,
                "NoSuchEntity",
                format!("VirtualMFADevice with serial number {serial} doesn't exist."),
            ));
        };
        if device.account != self.config.users[user].account {
            return Err(StsError::new(
                404,
                "NoSuchEntity",
                format!("VirtualMFADevice with serial number {serial} doesn't exist."),
            ));
        }
        if device.assigned.is_some() {
            return Err(StsError::new(409, "EntityAlreadyExists", MSG_IN_USE));
        }
        if self.config.users[user].mfa_devices.len() >= MAX_MFA_DEVICES_PER_USER {
            return Err(StsError::new(
                409,
                "LimitExceeded",
                format!("Cannot exceed quota for MFADevicesPerUser: {MAX_MFA_DEVICES_PER_USER}"),
            ));
        }
        let current = totp::step_at(self.now());
        let seed = device.seed.clone();
        let matches = |step: u64, code: &str| -> bool {
            let expected = totp::code(seed.expose_secret(), step);
            bool::from(expected.as_bytes().ct_eq(code.as_bytes()))
        };
        let pair = [current.saturating_sub(2), current.saturating_sub(1)]
            .into_iter()
            .find(|&s| matches(s, &code1) && matches(s + 1, &code2));
        for (i, code) in [&code1, &code2].into_iter().enumerate() {
            self.stats.token_codes.push(TokenCodeEvent {
                action: "EnableMFADevice".into(),
                serial: serial.clone(),
                code: code.clone(),
                current_step: current,
                matched_step: pair.map(|s| s + i as u64),
                outcome: if pair.is_some() {
                    TokenOutcome::Accepted
                } else {
                    TokenOutcome::WrongCode
                },
            });
        }
        let Some(step) = pair else {
            return Err(StsError::new(
                403,
                "InvalidAuthenticationCode",
                MSG_BAD_AUTH_CODE,
            ));
        };
        // Both codes are spent: STS will not take them again.
        self.used_steps.insert((serial.clone(), step));
        self.used_steps.insert((serial.clone(), step + 1));
        let now = self.now();
        if let Some(d) = self.iam.devices.get_mut(&serial) {
            d.assigned = Some((user, now));
        }
        self.config.users[user]
            .mfa_devices
            .push(MfaDevice { serial, seed });
        Ok(String::new())
    }

    fn deactivate_mfa_device(
        &mut self,
        caller: usize,
        params: &HashMap<String, String>,
    ) -> Result<String, StsError> {
        let user_name = required(params, "UserName", "userName")?;
        let serial = required(params, "SerialNumber", "serialNumber")?;
        let user = self.iam_user_named(caller, &user_name)?;
        let devices = &mut self.config.users[user].mfa_devices;
        let Some(i) = devices.iter().position(|d| d.serial == serial) else {
            return Err(StsError::new(
                404,
                "NoSuchEntity",
                format!("MFA Device with serial number {serial} does not exist."),
            ));
        };
        devices.remove(i);
        if let Some(d) = self.iam.devices.get_mut(&serial) {
            d.assigned = None;
        }
        Ok(String::new())
    }

    fn delete_virtual_mfa_device(
        &mut self,
        caller: usize,
        params: &HashMap<String, String>,
    ) -> Result<String, StsError> {
        let serial = required(params, "SerialNumber", "serialNumber")?;
        let account = &self.config.users[caller].account;
        match self.iam.devices.get(&serial) {
            Some(d) if &d.account == account => {
                if d.assigned.is_some() {
                    return Err(StsError::new(409, "DeleteConflict", MSG_DELETE_CONFLICT));
                }
            }
            _ => {
                return Err(StsError::new(
                    404,
                    "NoSuchEntity",
                    format!("VirtualMFADevice with serial number {serial} doesn't exist."),
                ));
            }
        }
        self.iam.devices.remove(&serial);
        Ok(String::new())
    }

    fn enable_date(&self, serial: &str) -> String {
        let at = self
            .iam
            .devices
            .get(serial)
            .and_then(|d| d.assigned.map(|(_, t)| t))
            .unwrap_or(self.iam.started);
        xml::iso8601(at)
    }

    fn list_mfa_devices(
        &self,
        caller: usize,
        params: &HashMap<String, String>,
    ) -> Result<String, StsError> {
        let user = match params.get("UserName") {
            Some(name) => self.iam_user_named(caller, name)?,
            None => caller,
        };
        let u = &self.config.users[user];
        let members: String = u
            .mfa_devices
            .iter()
            .map(|d| {
                format!(
                    "<member><UserName>{}</UserName><SerialNumber>{}</SerialNumber><EnableDate>{}</EnableDate></member>",
                    xml::escape(&u.name),
                    xml::escape(&d.serial),
                    self.enable_date(&d.serial)
                )
            })
            .collect();
        Ok(format!(
            "<IsTruncated>false</IsTruncated><MFADevices>{members}</MFADevices>"
        ))
    }

    fn key_user(&self, caller: usize, params: &HashMap<String, String>) -> Result<usize, StsError> {
        match params.get("UserName") {
            Some(name) => self.iam_user_named(caller, name),
            None => Ok(caller),
        }
    }

    /// The key `AccessKeyId` of `user`, or AWS's NoSuchEntity.
    fn users_key(&self, user: usize, params: &HashMap<String, String>) -> Result<String, StsError> {
        let id = required(params, "AccessKeyId", "accessKeyId")?;
        match self.iam.keys.get(&id) {
            Some(k) if k.user == user => Ok(id),
            _ => Err(StsError::new(
                404,
                "NoSuchEntity",
                format!("The Access Key with id {id} cannot be found."),
            )),
        }
    }

    fn create_access_key(
        &mut self,
        caller: usize,
        params: &HashMap<String, String>,
    ) -> Result<String, StsError> {
        let user = self.key_user(caller, params)?;
        if self.iam.keys.values().filter(|k| k.user == user).count() >= MAX_ACCESS_KEYS_PER_USER {
            return Err(StsError::new(
                409,
                "LimitExceeded",
                format!("Cannot exceed quota for AccessKeysPerUser: {MAX_ACCESS_KEYS_PER_USER}"),
            ));
        }
        let mut id;
        loop {
            id = format!("AKIA{}", super::engine::random_base32(16));
            if !self.iam.keys.contains_key(&id) {
                break;
            }
        }
        let secret = Zeroizing::new(super::engine::random_base64(30));
        let now = self.now();
        let (calls, secs) = self.iam.propagation;
        self.iam.keys.insert(
            id.clone(),
            AccessKey {
                user,
                secret: SecretString::from(secret.to_string()),
                active: true,
                created: now,
                unknown_for_calls: calls,
                unknown_until: now + secs as i64,
            },
        );
        Ok(format!(
            "<AccessKey><UserName>{}</UserName><AccessKeyId>{id}</AccessKeyId><Status>Active</Status><SecretAccessKey>{}</SecretAccessKey><CreateDate>{}</CreateDate></AccessKey>",
            xml::escape(&self.config.users[user].name),
            xml::escape(&secret),
            xml::iso8601(now)
        ))
    }

    fn update_access_key(
        &mut self,
        caller: usize,
        params: &HashMap<String, String>,
    ) -> Result<String, StsError> {
        let user = self.key_user(caller, params)?;
        let status = required(params, "Status", "status")?;
        let active = match status.as_str() {
            "Active" => true,
            "Inactive" => false,
            other => {
                return Err(StsError::validation(format!(
                    "1 validation error detected: Value '{other}' at 'status' failed to satisfy constraint: Member must satisfy enum value set: [Active, Inactive]"
                )));
            }
        };
        let id = self.users_key(user, params)?;
        if let Some(k) = self.iam.keys.get_mut(&id) {
            k.active = active;
        }
        Ok(String::new())
    }

    fn delete_access_key(
        &mut self,
        caller: usize,
        params: &HashMap<String, String>,
    ) -> Result<String, StsError> {
        let user = self.key_user(caller, params)?;
        let id = self.users_key(user, params)?;
        self.iam.keys.remove(&id);
        Ok(String::new())
    }

    fn list_access_keys(
        &self,
        caller: usize,
        params: &HashMap<String, String>,
    ) -> Result<String, StsError> {
        let user = self.key_user(caller, params)?;
        let name = &self.config.users[user].name;
        let members: String = self
            .access_keys_of(user)
            .iter()
            .map(|k| {
                format!(
                    "<member><UserName>{}</UserName><AccessKeyId>{}</AccessKeyId><Status>{}</Status><CreateDate>{}</CreateDate></member>",
                    xml::escape(name),
                    k.access_key_id,
                    if k.active { "Active" } else { "Inactive" },
                    xml::iso8601(k.created)
                )
            })
            .collect();
        Ok(format!(
            "<UserName>{}</UserName><AccessKeyMetadata>{members}</AccessKeyMetadata><IsTruncated>false</IsTruncated>",
            xml::escape(name)
        ))
    }

    fn list_virtual_mfa_devices(&self, caller: usize, params: &HashMap<String, String>) -> String {
        let status = params
            .get("AssignmentStatus")
            .map(String::as_str)
            .unwrap_or("Any");
        let account = &self.config.users[caller].account;
        let members: String = self
            .iam
            .devices
            .iter()
            .filter(|(_, d)| &d.account == account)
            .filter(|(_, d)| match status {
                "Assigned" => d.assigned.is_some(),
                "Unassigned" => d.assigned.is_none(),
                _ => true,
            })
            .map(|(serial, d)| {
                let user = d
                    .assigned
                    .map(|(u, at)| {
                        let u = &self.config.users[u];
                        format!(
                            "<User><Path>/</Path><UserName>{}</UserName><UserId>{}</UserId><Arn>{}</Arn><CreateDate>{}</CreateDate></User><EnableDate>{}</EnableDate>",
                            xml::escape(&u.name),
                            xml::escape(&u.user_id),
                            xml::escape(&u.arn),
                            xml::iso8601(self.iam.started),
                            xml::iso8601(at)
                        )
                    })
                    .unwrap_or_default();
                let _ = d.created;
                format!(
                    "<member><SerialNumber>{}</SerialNumber>{user}</member>",
                    xml::escape(serial)
                )
            })
            .collect();
        format!("<IsTruncated>false</IsTruncated><VirtualMFADevices>{members}</VirtualMFADevices>")
    }
}

fn injected(code: &str) -> StsError {
    let (status, code, message): (u16, &'static str, String) = match code {
        "InvalidAuthenticationCode" => (403, "InvalidAuthenticationCode", MSG_BAD_AUTH_CODE.into()),
        "NoSuchEntity" => (
            404,
            "NoSuchEntity",
            "The entity cannot be found (injected).".into(),
        ),
        "LimitExceeded" => (
            409,
            "LimitExceeded",
            format!("Cannot exceed quota for MFADevicesPerUser: {MAX_MFA_DEVICES_PER_USER}"),
        ),
        "AccessDenied" => (403, "AccessDenied", "Access denied (injected).".into()),
        "Throttling" => (400, "Throttling", "Rate exceeded".into()),
        _ => (
            500,
            "ServiceFailure",
            "The request processing has failed because of an unknown error, exception or failure."
                .into(),
        ),
    };
    StsError::new(status, code, message)
}

fn required(
    params: &HashMap<String, String>,
    name: &str,
    member: &str,
) -> Result<String, StsError> {
    params.get(name).cloned().ok_or_else(|| {
        StsError::validation(format!(
            "1 validation error detected: Value null at '{member}' failed to satisfy constraint: Member must not be null"
        ))
    })
}

fn check(
    member: &str,
    value: &str,
    min: usize,
    max: usize,
    allowed: impl Fn(char) -> bool,
    pattern: &str,
) -> Result<(), StsError> {
    let n = value.chars().count();
    if n < min {
        return Err(StsError::validation(format!(
            "1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: Member must have length greater than or equal to {min}"
        )));
    }
    if n > max {
        return Err(StsError::validation(format!(
            "1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: Member must have length less than or equal to {max}"
        )));
    }
    if !value.chars().all(allowed) {
        return Err(StsError::validation(format!(
            "1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: Member must satisfy regular expression pattern: {pattern}"
        )));
    }
    Ok(())
}
