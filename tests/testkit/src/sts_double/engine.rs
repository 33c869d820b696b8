//! The STS rules: authentication (SigV4 + issued-credential lookup), MFA, trust, durations,
//! issuing credentials, and the observation / fault-injection state.

use super::config::{Config, MfaDevice, RoleSpec, UserSpec};
use super::iam::{self, IamState};
use super::sigv4::{self, SignedRequest};
use super::totp;
use super::xml;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use subtle::ConstantTimeEq;

pub(crate) const API_VERSION: &str = "2011-06-15";
/// Allowed distance between a request's X-Amz-Date and the double's clock.
pub(crate) const MAX_SKEW_SECS: i64 = 300;
/// The role-chaining cap.
pub const ROLE_CHAINING_MAX_SECS: u64 = 3600;

pub(crate) const MSG_INVALID_TOKEN: &str = "The security token included in the request is invalid.";
pub(crate) const MSG_EXPIRED_TOKEN: &str = "The security token included in the request is expired";
pub(crate) const MSG_BAD_SIGNATURE: &str = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.";
pub(crate) const MSG_MFA_BAD_SERIAL: &str = "MultiFactorAuthentication failed, unable to validate MFA code. Please verify your MFA serial number is valid and associated with this user.";
pub(crate) const MSG_MFA_BAD_CODE: &str =
    "MultiFactorAuthentication failed with invalid MFA one time pass code. ";
pub(crate) const MSG_MFA_MISSING: &str =
    "MultiFactorAuthentication failed, must provide both MFA serial number and one time pass code.";
pub(crate) const MSG_MAX_SESSION: &str =
    "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.";
pub(crate) const MSG_CHAINING: &str = "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining.";
pub(crate) const MSG_GST_FROM_SESSION: &str =
    "Cannot call GetSessionToken with session credentials";

/// An STS error as it goes on the wire.
#[derive(Debug, Clone)]
pub(crate) struct StsError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl StsError {
    pub(crate) fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        StsError {
            status,
            code,
            message: message.into(),
        }
    }
    pub(crate) fn access_denied(message: impl Into<String>) -> Self {
        Self::new(403, "AccessDenied", message)
    }
    pub(crate) fn validation(message: impl Into<String>) -> Self {
        Self::new(400, "ValidationError", message)
    }
    fn invalid_token() -> Self {
        Self::new(403, "InvalidClientTokenId", MSG_INVALID_TOKEN)
    }
}

/// What happened to one `TokenCode` the double received.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TokenOutcome {
    /// Valid for the serial's seed in step current±1 and not used before.
    Accepted,
    /// Not the code of current±1 for this seed.
    WrongCode,
    /// The code's step was already accepted once for this serial.
    Reused,
    /// The serial is not an MFA device of the calling user.
    UnknownSerial,
}

/// One `TokenCode` seen by the double.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TokenCodeEvent {
    pub action: String,
    pub serial: String,
    pub code: String,
    /// The double's TOTP step when the code arrived.
    pub current_step: u64,
    /// The step the code belongs to, when it matched one of current±1.
    pub matched_step: Option<u64>,
    pub outcome: TokenOutcome,
}

/// Per-action request counters.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ActionStats {
    /// Requests received for this action (including throttled and rejected ones).
    pub calls: u64,
    /// Requests answered with a 200.
    pub ok: u64,
    /// Requests answered with an error.
    pub errors: u64,
}

/// A credential set the double issued (no secrets).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IssuedInfo {
    pub access_key_id: String,
    /// `GetSessionToken` or `AssumeRole`.
    pub action: String,
    /// The identity the credentials act as (user ARN or assumed-role ARN).
    pub arn: String,
    /// The caller that obtained them.
    pub source_arn: String,
    /// Whether the session counts as MFA-authenticated.
    pub mfa: bool,
    /// Seconds asked for (or the default).
    pub requested_duration: u64,
    /// Seconds actually granted (shorter under `set_issued_lifetime`).
    pub lifetime: u64,
    pub expiration: String,
    pub revoked: bool,
}

/// A snapshot of everything observable (also served as JSON at `GET /_double/stats`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Stats {
    /// STS requests received (admin requests excluded).
    pub requests: u64,
    pub actions: BTreeMap<String, ActionStats>,
    /// Error responses by error code.
    pub errors: BTreeMap<String, u64>,
    pub token_codes: Vec<TokenCodeEvent>,
    pub issued: Vec<IssuedInfo>,
}

impl Stats {
    pub fn calls(&self, action: &str) -> u64 {
        self.actions.get(action).map_or(0, |a| a.calls)
    }
    pub fn ok(&self, action: &str) -> u64 {
        self.actions.get(action).map_or(0, |a| a.ok)
    }
    pub fn errors_with_code(&self, code: &str) -> u64 {
        self.errors.get(code).copied().unwrap_or(0)
    }
    pub fn accepted_codes(&self) -> Vec<&TokenCodeEvent> {
        self.token_codes
            .iter()
            .filter(|e| e.outcome == TokenOutcome::Accepted)
            .collect()
    }
}

enum SessionKind {
    SessionToken,
    AssumedRole { role: usize, session_name: String },
}

struct Session {
    secret: SecretString,
    token: SecretString,
    expires_at: i64,
    mfa: bool,
    /// Index of the IAM user at the root of the chain.
    user: usize,
    kind: SessionKind,
    revoked: bool,
    info_index: usize,
}

#[derive(Clone)]
pub(crate) enum Caller {
    User(usize),
    Session(String),
}

/// A request as the HTTP layer hands it over.
pub(crate) struct Incoming {
    pub method: String,
    /// Path and query as received.
    pub url: String,
    /// Lower-case header names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Incoming {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

pub(crate) struct Reply {
    pub status: u16,
    pub body: String,
    pub request_id: String,
}

pub(crate) struct Engine {
    pub(super) config: Config,
    sessions: HashMap<String, Session>,
    pub(super) used_steps: HashSet<(String, u64)>,
    pub(super) stats: Stats,
    /// IAM: virtual MFA devices, enable dates, injected failures.
    pub(super) iam: IamState,
    throttle_remaining: u32,
    faults: Vec<(String, super::Fault)>,
    /// Faults on chosen requests of an action, by number: (action, first, last, fault).
    call_faults: Vec<(String, u64, u64, super::Fault)>,
    /// Requests seen per action since the start (never reset: call numbers stay stable).
    call_counts: HashMap<String, u64>,
    issued_lifetime: Option<u64>,
    clock_offset: i64,
    port: u16,
    /// IAM Roles Anywhere's trust anchors and profiles, and what it saw.
    pub(super) rolesanywhere: super::rolesanywhere::RolesAnywhereSpec,
    pub(super) rolesanywhere_stats: super::rolesanywhere::RolesAnywhereStats,
}

impl Engine {
    pub(crate) fn new(config: Config, port: u16) -> Self {
        let mut engine = Engine {
            config,
            sessions: HashMap::new(),
            used_steps: HashSet::new(),
            stats: Stats::default(),
            iam: IamState::new(sigv4::system_now()),
            throttle_remaining: 0,
            faults: Vec::new(),
            call_faults: Vec::new(),
            call_counts: HashMap::new(),
            issued_lifetime: None,
            clock_offset: 0,
            port,
            rolesanywhere: Default::default(),
            rolesanywhere_stats: Default::default(),
        };
        engine.seed_access_keys();
        engine
    }

    pub(crate) fn now(&self) -> i64 {
        sigv4::system_now() + self.clock_offset
    }

    pub(crate) fn stats(&self) -> Stats {
        self.stats.clone()
    }
    pub(crate) fn reset_stats(&mut self) {
        self.stats = Stats::default();
    }
    pub(crate) fn throttle_next(&mut self, n: u32) {
        self.throttle_remaining = n;
    }
    pub(crate) fn inject_fault(&mut self, action: &str, fault: super::Fault) {
        self.faults.push((action.to_owned(), fault));
    }
    pub(crate) fn fault_calls(
        &mut self,
        action: &str,
        first: u64,
        count: u64,
        fault: super::Fault,
    ) {
        if count > 0 {
            self.call_faults
                .push((action.to_owned(), first, first + count - 1, fault));
        }
    }
    /// Counts this request, then: the first queued fault for its action (removed from the
    /// queue), else a fault set for this request's number.
    pub(crate) fn take_fault(&mut self, req: &Incoming) -> Option<super::Fault> {
        let action = parse_params(req).get("Action").cloned().unwrap_or_default();
        let n = self.call_counts.entry(action.clone()).or_default();
        *n += 1;
        let n = *n;
        if let Some(i) = self.faults.iter().position(|(a, _)| *a == action) {
            return Some(self.faults.remove(i).1);
        }
        self.call_faults
            .iter()
            .find(|(a, first, last, _)| *a == action && (*first..=*last).contains(&n))
            .map(|(.., f)| f.clone())
    }
    pub(crate) fn revoke_all_sessions(&mut self) {
        for s in self.sessions.values_mut() {
            s.revoked = true;
            self.stats.issued[s.info_index].revoked = true;
        }
    }
    pub(crate) fn set_issued_lifetime(&mut self, secs: Option<u64>) {
        self.issued_lifetime = secs;
    }
    pub(crate) fn set_clock_offset(&mut self, secs: i64) {
        self.clock_offset = secs;
    }
    pub(crate) fn clock_offset(&self) -> i64 {
        self.clock_offset
    }

    /// Handle one STS request (not an admin one).
    pub(crate) fn handle(&mut self, req: &Incoming) -> Reply {
        let request_id = xml::request_id();
        let params = parse_params(req);
        let action = params.get("Action").cloned().unwrap_or_default();
        let action_key = if action.is_empty() {
            "(none)".to_owned()
        } else {
            action.clone()
        };
        self.stats.requests += 1;
        self.stats
            .actions
            .entry(action_key.clone())
            .or_default()
            .calls += 1;

        let result = self.dispatch(req, &params, &action);
        let entry = self.stats.actions.entry(action_key).or_default();
        let (ns, has_result) = if iam::is_iam_action(&action) {
            (xml::IAM_NS, iam::has_result(&action))
        } else {
            (xml::NS, true)
        };
        match result {
            Ok(body) => {
                entry.ok += 1;
                Reply {
                    status: 200,
                    body: xml::success(ns, &action, has_result.then_some(&*body), &request_id),
                    request_id,
                }
            }
            Err(e) => {
                entry.errors += 1;
                *self.stats.errors.entry(e.code.to_owned()).or_default() += 1;
                Reply {
                    status: e.status,
                    body: xml::error(ns, e.code, &e.message, &request_id),
                    request_id,
                }
            }
        }
    }

    fn dispatch(
        &mut self,
        req: &Incoming,
        params: &HashMap<String, String>,
        action: &str,
    ) -> Result<String, StsError> {
        if self.throttle_remaining > 0 {
            self.throttle_remaining -= 1;
            return Err(StsError::new(400, "Throttling", "Rate exceeded"));
        }
        let service = if iam::is_iam_action(action) {
            "iam"
        } else {
            "sts"
        };
        let signing_key = req
            .header("authorization")
            .and_then(|a| sigv4::parse_authorization(a).ok())
            .map(|a| a.access_key_id);
        let caller = self.authenticate(req, service);
        if let Some(k) = signing_key {
            self.note_key_use(&k);
        }
        let caller = caller?;
        if action.is_empty() {
            return Err(StsError::new(400, "MissingAction", "Missing Action"));
        }
        if service == "iam" {
            return self.iam_dispatch(&caller, params, action);
        }
        match params.get("Version").map(String::as_str) {
            Some(API_VERSION) => {}
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
        match action {
            "AssumeRole" => self.assume_role(&caller, params),
            "GetSessionToken" => self.get_session_token(&caller, params),
            "GetCallerIdentity" => Ok(self.get_caller_identity(&caller)),
            other => Err(StsError::new(
                400,
                "InvalidAction",
                format!("Could not find operation {other} for version {API_VERSION}"),
            )),
        }
    }

    // ---- authentication -------------------------------------------------------------

    fn authenticate(&self, req: &Incoming, service: &str) -> Result<Caller, StsError> {
        let Some(authz) = req.header("authorization") else {
            return Err(StsError::new(
                403,
                "MissingAuthenticationToken",
                "Request is missing Authentication Token",
            ));
        };
        let auth = sigv4::parse_authorization(authz)
            .map_err(|m| StsError::new(400, "IncompleteSignature", m))?;
        let Some(amz_date) = req.header("x-amz-date") else {
            return Err(StsError::new(
                400,
                "IncompleteSignature",
                "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
            ));
        };
        let Some(signed_at) = sigv4::parse_amz_date(amz_date) else {
            return Err(StsError::new(
                400,
                "IncompleteSignature",
                format!("Date must be in ISO-8601 'basic format'. Got '{amz_date}'."),
            ));
        };
        if auth.service != service {
            return Err(StsError::new(
                403,
                "SignatureDoesNotMatch",
                format!("Credential should be scoped to correct service: '{service}'. "),
            ));
        }
        let token_header = req.header("x-amz-security-token");

        // Who is it?
        let (caller, secret, token): (Caller, &str, Option<&str>) =
            if let Some((i, secret)) = self.usable_key(&auth.access_key_id) {
                if token_header.is_some() {
                    return Err(StsError::invalid_token());
                }
                (Caller::User(i), secret, None)
            } else if self.is_known_key(&auth.access_key_id) {
                // Inactive, deleted or not yet propagated.
                return Err(StsError::invalid_token());
            } else if let Some(s) = self.sessions.get(&auth.access_key_id) {
                if s.revoked {
                    return Err(StsError::invalid_token());
                }
                let Some(sent) = token_header else {
                    return Err(StsError::invalid_token());
                };
                let good: bool = sent
                    .as_bytes()
                    .ct_eq(s.token.expose_secret().as_bytes())
                    .into();
                if !good {
                    return Err(StsError::invalid_token());
                }
                if self.now() >= s.expires_at {
                    return Err(StsError::new(403, "ExpiredToken", MSG_EXPIRED_TOKEN));
                }
                (
                    Caller::Session(auth.access_key_id.clone()),
                    s.secret.expose_secret(),
                    Some(s.token.expose_secret()),
                )
            } else {
                return Err(StsError::invalid_token());
            };

        // When?
        let now = self.now();
        if now - signed_at > MAX_SKEW_SECS {
            return Err(StsError::new(
                403,
                "SignatureDoesNotMatch",
                format!(
                    "Signature expired: {amz_date} is now earlier than {} ({} - 5 min.)",
                    sigv4::format_amz_date(now - MAX_SKEW_SECS),
                    sigv4::format_amz_date(now)
                ),
            ));
        }
        if signed_at - now > MAX_SKEW_SECS {
            return Err(StsError::new(
                403,
                "SignatureDoesNotMatch",
                format!(
                    "Signature not yet current: {amz_date} is still later than {} ({} + 5 min.)",
                    sigv4::format_amz_date(now + MAX_SKEW_SECS),
                    sigv4::format_amz_date(now)
                ),
            ));
        }
        if auth.scope_date != amz_date[..8.min(amz_date.len())] {
            return Err(StsError::new(
                403,
                "SignatureDoesNotMatch",
                format!(
                    "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{}', from 'X-Amz-Date'.",
                    auth.scope_date,
                    &amz_date[..8.min(amz_date.len())]
                ),
            ));
        }

        // Is the signature right?
        let host = req
            .header("host")
            .map(str::to_owned)
            .unwrap_or_else(|| format!("127.0.0.1:{}", self.port));
        let signed = SignedRequest {
            method: &req.method,
            uri: format!("http://{host}{}", req.url),
            headers: &req.headers,
            body: &req.body,
        };
        let ok = sigv4::signature_matches(&signed, &auth, secret, token, signed_at)
            .map_err(|m| StsError::new(400, "IncompleteSignature", m))?;
        if !ok {
            return Err(StsError::new(
                403,
                "SignatureDoesNotMatch",
                MSG_BAD_SIGNATURE,
            ));
        }
        Ok(caller)
    }

    fn user_by_key(&self, akid: &str) -> Option<usize> {
        self.iam.keys.get(akid).map(|k| k.user)
    }

    pub(super) fn caller_user(&self, caller: &Caller) -> &UserSpec {
        match caller {
            Caller::User(i) => &self.config.users[*i],
            Caller::Session(k) => &self.config.users[self.sessions[k].user],
        }
    }

    /// Whether the caller acts as an IAM user (long-term keys, or a GetSessionToken session
    /// made with MFA), and which; role sessions and non-MFA sessions get None.
    pub(super) fn iam_user_of(&self, caller: &Caller) -> Option<usize> {
        match caller {
            Caller::User(i) => Some(*i),
            Caller::Session(k) => {
                let s = &self.sessions[k];
                match s.kind {
                    SessionKind::SessionToken if s.mfa => Some(s.user),
                    _ => None,
                }
            }
        }
    }

    /// (Arn, UserId, Account) as GetCallerIdentity reports them.
    pub(super) fn identity(&self, caller: &Caller) -> (String, String, String) {
        match caller {
            Caller::User(i) => {
                let u = &self.config.users[*i];
                (u.arn.clone(), u.user_id.clone(), u.account.clone())
            }
            Caller::Session(k) => {
                let s = &self.sessions[k];
                match &s.kind {
                    SessionKind::SessionToken => {
                        let u = &self.config.users[s.user];
                        (u.arn.clone(), u.user_id.clone(), u.account.clone())
                    }
                    SessionKind::AssumedRole { role, session_name } => {
                        let r = &self.config.roles[*role];
                        (
                            assumed_role_arn(r, session_name),
                            format!("{}:{session_name}", r.role_id),
                            r.account.clone(),
                        )
                    }
                }
            }
        }
    }

    /// The principal a trust policy sees: the user ARN, or the role ARN for a role session.
    fn principal_arn(&self, caller: &Caller) -> String {
        match caller {
            Caller::Session(k) => match &self.sessions[k].kind {
                SessionKind::AssumedRole { role, .. } => self.config.roles[*role].arn.clone(),
                SessionKind::SessionToken => self.caller_user(caller).arn.clone(),
            },
            Caller::User(_) => self.caller_user(caller).arn.clone(),
        }
    }

    // ---- MFA --------------------------------------------------------------------------

    /// Ok(true) when a valid, unused code was sent; Ok(false) when no MFA was sent.
    fn check_mfa(
        &mut self,
        action: &str,
        caller: &Caller,
        params: &HashMap<String, String>,
    ) -> Result<bool, StsError> {
        let serial = params.get("SerialNumber").filter(|s| !s.is_empty());
        let code = params.get("TokenCode").filter(|s| !s.is_empty());
        let (serial, code) = match (serial, code) {
            (None, None) => return Ok(false),
            (Some(s), Some(c)) => (s.clone(), c.clone()),
            _ => return Err(StsError::access_denied(MSG_MFA_MISSING)),
        };
        if code.len() != 6 {
            return Err(StsError::validation(format!(
                "1 validation error detected: Value '{code}' at 'tokenCode' failed to satisfy constraint: Member must have length {} than or equal to 6",
                if code.len() < 6 { "greater" } else { "less" }
            )));
        }
        if !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(StsError::validation(format!(
                "1 validation error detected: Value '{code}' at 'tokenCode' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\d]*"
            )));
        }
        if !(9..=256).contains(&serial.len()) {
            return Err(StsError::validation(format!(
                "1 validation error detected: Value '{serial}' at 'serialNumber' failed to satisfy constraint: Member must have length {} than or equal to {}",
                if serial.len() < 9 { "greater" } else { "less" },
                if serial.len() < 9 { 9 } else { 256 }
            )));
        }
        let current_step = totp::step_at(self.now());
        let device: Option<MfaDevice> = self
            .caller_user(caller)
            .mfa_devices
            .iter()
            .find(|d| d.serial == serial)
            .cloned();
        let mut event = TokenCodeEvent {
            action: action.to_owned(),
            serial: serial.clone(),
            code: code.clone(),
            current_step,
            matched_step: None,
            outcome: TokenOutcome::UnknownSerial,
        };
        let Some(device) = device else {
            self.stats.token_codes.push(event);
            return Err(StsError::access_denied(MSG_MFA_BAD_SERIAL));
        };
        let seed = device.seed.expose_secret();
        let mut matched = Vec::new();
        for step in [
            current_step.saturating_sub(1),
            current_step,
            current_step + 1,
        ] {
            let expected = totp::code(seed, step);
            if bool::from(expected.as_bytes().ct_eq(code.as_bytes())) && !matched.contains(&step) {
                matched.push(step);
            }
        }
        let unused = matched
            .iter()
            .copied()
            .find(|s| !self.used_steps.contains(&(serial.clone(), *s)));
        match (matched.first(), unused) {
            (None, _) => {
                event.outcome = TokenOutcome::WrongCode;
                self.stats.token_codes.push(event);
                Err(StsError::access_denied(MSG_MFA_BAD_CODE))
            }
            (Some(step), None) => {
                event.outcome = TokenOutcome::Reused;
                event.matched_step = Some(*step);
                self.stats.token_codes.push(event);
                Err(StsError::access_denied(MSG_MFA_BAD_CODE))
            }
            (Some(_), Some(step)) => {
                self.used_steps.insert((serial, step));
                event.outcome = TokenOutcome::Accepted;
                event.matched_step = Some(step);
                self.stats.token_codes.push(event);
                Ok(true)
            }
        }
    }

    // ---- actions ----------------------------------------------------------------------

    fn assume_role(
        &mut self,
        caller: &Caller,
        params: &HashMap<String, String>,
    ) -> Result<String, StsError> {
        let role_arn = required(params, "RoleArn", "roleArn")?;
        let session_name = required(params, "RoleSessionName", "roleSessionName")?;
        check_len_pattern(
            "roleSessionName",
            &session_name,
            2,
            64,
            is_session_name_char,
        )?;
        let duration = duration_param(params, 900, 43200, 3600)?;
        let external_id = params.get("ExternalId").cloned();
        if let Some(x) = &external_id {
            check_len_pattern("externalId", x, 2, 1224, |c| {
                c.is_ascii_alphanumeric() || "_+=,.@:/-".contains(c)
            })?;
        }

        let mfa_now = self.check_mfa("AssumeRole", caller, params)?;
        let caller_mfa = match caller {
            Caller::Session(k) => self.sessions[k].mfa,
            Caller::User(_) => false,
        };
        let (caller_arn, _, _) = self.identity(caller);
        let denied = || {
            StsError::access_denied(format!(
                "User: {caller_arn} is not authorized to perform: sts:AssumeRole on resource: {role_arn}"
            ))
        };
        let Some(role_index) = self.config.roles.iter().position(|r| r.arn == role_arn) else {
            return Err(denied());
        };
        let role = &self.config.roles[role_index];
        if !role.trusted_principals.is_empty()
            && !role
                .trusted_principals
                .contains(&self.principal_arn(caller))
        {
            return Err(denied());
        }
        let mfa = mfa_now || caller_mfa;
        if role.require_mfa && !mfa {
            return Err(denied());
        }
        if let Some(want) = &role.external_id {
            let ok = external_id
                .as_deref()
                .is_some_and(|got| bool::from(got.as_bytes().ct_eq(want.as_bytes())));
            if !ok {
                return Err(denied());
            }
        }
        if matches!(caller, Caller::Session(_)) && duration > ROLE_CHAINING_MAX_SECS {
            return Err(StsError::validation(MSG_CHAINING));
        }
        if duration > role.max_session_duration {
            return Err(StsError::validation(MSG_MAX_SESSION));
        }

        let user = match caller {
            Caller::User(i) => *i,
            Caller::Session(k) => self.sessions[k].user,
        };
        let arn = assumed_role_arn(role, &session_name);
        let assumed_id = format!("{}:{session_name}", role.role_id);
        let creds = self.issue(
            "AssumeRole",
            duration,
            mfa,
            user,
            SessionKind::AssumedRole {
                role: role_index,
                session_name,
            },
            arn.clone(),
            caller_arn,
        );
        Ok(format!(
            "<AssumedRoleUser><AssumedRoleId>{}</AssumedRoleId><Arn>{}</Arn></AssumedRoleUser>{creds}",
            xml::escape(&assumed_id),
            xml::escape(&arn)
        ))
    }

    fn get_session_token(
        &mut self,
        caller: &Caller,
        params: &HashMap<String, String>,
    ) -> Result<String, StsError> {
        let user = match caller {
            Caller::User(i) => *i,
            Caller::Session(_) => return Err(StsError::access_denied(MSG_GST_FROM_SESSION)),
        };
        let duration = duration_param(params, 900, 129600, 43200)?;
        let mfa = self.check_mfa("GetSessionToken", caller, params)?;
        let arn = self.config.users[user].arn.clone();
        Ok(self.issue(
            "GetSessionToken",
            duration,
            mfa,
            user,
            SessionKind::SessionToken,
            arn.clone(),
            arn,
        ))
    }

    fn get_caller_identity(&self, caller: &Caller) -> String {
        let (arn, user_id, account) = self.identity(caller);
        format!(
            "<Arn>{}</Arn><UserId>{}</UserId><Account>{}</Account>",
            xml::escape(&arn),
            xml::escape(&user_id),
            xml::escape(&account)
        )
    }

    /// A role session for Roles Anywhere's `CreateSession`: None when the role is unknown
    /// (or the double has no user to root the session at).
    pub(super) fn issue_role_session(
        &mut self,
        role_arn: &str,
        session_name: &str,
        duration: u64,
        source: &str,
    ) -> Option<super::rolesanywhere::IssuedRoleSession> {
        let role = self.config.roles.iter().position(|r| r.arn == role_arn)?;
        if self.config.users.is_empty() {
            return None;
        }
        let r = &self.config.roles[role];
        let assumed_role_arn = assumed_role_arn(r, session_name);
        let assumed_role_id = format!("{}:{session_name}", r.role_id);
        let xml = self.issue(
            "CreateSession",
            duration,
            false,
            0,
            SessionKind::AssumedRole {
                role,
                session_name: session_name.to_owned(),
            },
            assumed_role_arn.clone(),
            source.to_owned(),
        );
        let field = |tag: &str| {
            let open = format!("<{tag}>");
            let from = xml.find(&open)? + open.len();
            let to = xml[from..].find(&format!("</{tag}>"))? + from;
            Some(xml[from..to].to_owned())
        };
        Some(super::rolesanywhere::IssuedRoleSession {
            access_key_id: field("AccessKeyId")?,
            secret_access_key: field("SecretAccessKey")?,
            session_token: field("SessionToken")?,
            expiration: field("Expiration")?,
            assumed_role_arn,
            assumed_role_id,
        })
    }

    /// Mint and remember a credential set; returns its `<Credentials>` XML.
    #[allow(clippy::too_many_arguments)]
    fn issue(
        &mut self,
        action: &str,
        duration: u64,
        mfa: bool,
        user: usize,
        kind: SessionKind,
        arn: String,
        source_arn: String,
    ) -> String {
        let lifetime = match self.issued_lifetime {
            Some(l) => l.min(duration),
            None => duration,
        };
        let expires_at = self.now() + lifetime as i64;
        let expiration = xml::iso8601(expires_at);
        let mut akid;
        loop {
            akid = format!("ASIA{}", random_base32(16));
            if !self.sessions.contains_key(&akid) && self.user_by_key(&akid).is_none() {
                break;
            }
        }
        let secret = SecretString::from(random_base64(30));
        let token = SecretString::from(format!("IQoJb3JpZ2luX2VjE{}", random_base64(180)));
        let out = format!(
            "<Credentials><AccessKeyId>{akid}</AccessKeyId><SecretAccessKey>{}</SecretAccessKey><SessionToken>{}</SessionToken><Expiration>{expiration}</Expiration></Credentials>",
            xml::escape(secret.expose_secret()),
            xml::escape(token.expose_secret()),
        );
        self.stats.issued.push(IssuedInfo {
            access_key_id: akid.clone(),
            action: action.to_owned(),
            arn,
            source_arn,
            mfa,
            requested_duration: duration,
            lifetime,
            expiration,
            revoked: false,
        });
        self.sessions.insert(
            akid,
            Session {
                secret,
                token,
                expires_at,
                mfa,
                user,
                kind,
                revoked: false,
                info_index: self.stats.issued.len() - 1,
            },
        );
        out
    }
}

fn assumed_role_arn(role: &RoleSpec, session_name: &str) -> String {
    format!(
        "arn:aws:sts::{}:assumed-role/{}/{session_name}",
        role.account, role.name
    )
}

/// Form body (POST) merged with the query string (GET, or POST with query parameters).
fn parse_params(req: &Incoming) -> HashMap<String, String> {
    let mut out = HashMap::new();
    if let Some((_, query)) = req.url.split_once('?') {
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            out.insert(k.into_owned(), v.into_owned());
        }
    }
    if req.method == "POST" {
        for (k, v) in form_urlencoded::parse(&req.body) {
            out.insert(k.into_owned(), v.into_owned());
        }
    }
    out
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

fn is_session_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_+=,.@-".contains(c)
}

fn check_len_pattern(
    member: &str,
    value: &str,
    min: usize,
    max: usize,
    allowed: impl Fn(char) -> bool,
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
            "1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]*"
        )));
    }
    Ok(())
}

fn duration_param(
    params: &HashMap<String, String>,
    min: u64,
    max: u64,
    default: u64,
) -> Result<u64, StsError> {
    let Some(text) = params.get("DurationSeconds") else {
        return Ok(default);
    };
    let value: i64 = text.parse().map_err(|_| {
        StsError::new(
            400,
            "MalformedInput",
            format!("Invalid value for DurationSeconds: {text}"),
        )
    })?;
    if value < min as i64 {
        return Err(StsError::validation(format!(
            "1 validation error detected: Value '{value}' at 'durationSeconds' failed to satisfy constraint: Member must have value greater than or equal to {min}"
        )));
    }
    if value > max as i64 {
        return Err(StsError::validation(format!(
            "1 validation error detected: Value '{value}' at 'durationSeconds' failed to satisfy constraint: Member must have value less than or equal to {max}"
        )));
    }
    Ok(value as u64)
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf).expect("OS randomness");
    buf
}

pub(super) fn random_base32(n: usize) -> String {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    random_bytes(n)
        .into_iter()
        .map(|b| alphabet[(b & 31) as usize] as char)
        .collect()
}

pub(super) fn random_base64(n: usize) -> String {
    data_encoding::BASE64.encode(&random_bytes(n))
}
