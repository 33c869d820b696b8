//! Session engine: resolve profile → cache lookup → single-flight lock → re-check → code
//! (step ledger) → STS → cache store.
//!
//! - **Warm path**: the profile is resolved, the final step's cache key computed and the entry
//!   read. A hit returns at once: no async runtime, no SDK client, no token source.
//! - **Single flight**: on a miss the process takes the cross-process lock of the final key,
//!   re-checks the cache (another process may have just stored it), and only then reads a
//!   code and calls STS. Intermediate shared steps (the MFA session) have their own lock,
//!   always taken after the final key's, so there is one lock order and no deadlock.
//! - **Never reuse a code**: under the serial's lock the step ledger says which window was
//!   used last; the engine waits (with a countdown) for a fresh window with ≥ 3 s left,
//!   records the window *before* calling STS (a failed call may still have consumed it).
//! - **MFA-session reuse** (aws-vault's rule): a role whose first hop is signed by long-term
//!   keys, with `mfa_serial` and a duration ≤ 1 h (the default), is assumed with an MFA
//!   `GetSessionToken` session (12 h by default, `TAPCRED_SESSION_DURATION`) that is cached
//!   and shared by every role with the same source keys and serial — and by a plain
//!   `mfa_serial` profile of the same source. Duration > 1 h (the role-chaining cap) or
//!   `--no-session` sends MFA directly on `AssumeRole`.
//! - **Revoked session**: if STS says a cached session's token is invalid or expired, that
//!   entry is dropped and the chain is redone once from a fresh MFA call.

use std::rc::Rc;

use crate::cache::{self, ADVISORY_WINDOW, CacheKey, Entry, SessionCache, SessionKind};
use crate::clock;
use crate::credentials::Credentials;
use crate::env::EnvLookup;
use crate::error::{Error, Reason, Result};
use crate::profile::{AwsFiles, BaseCredentials, Mfa, Profiles, ResolvedProfile, RoleStep, Step};
use crate::sts::{self, CallContext, MfaCode, Sts, StsApi, StsTarget};
use crate::token::{self, Code, CodeRequest, TokenSource};
use crate::ui::Ui;
use crate::vault::{VaultSeeds, VaultSession};

mod roles_anywhere;
mod warm;

pub(crate) use roles_anywhere::open_signer as roles_anywhere_signer;

pub use crate::cache::plan_code_time;

/// A code with less than this many seconds left in its window is not sent.
pub const MIN_SECONDS_LEFT: u64 = cache::MIN_CODE_SECONDS_LEFT;

/// Default lifetime of the cached MFA session (`GetSessionToken`), as aws-vault/AWS.
pub const DEFAULT_SESSION_SECONDS: u32 = 43_200;

/// Env var overriding [`DEFAULT_SESSION_SECONDS`] (900–129600 seconds).
pub const SESSION_DURATION_ENV: &str = "TAPCRED_SESSION_DURATION";

/// AssumeRole with temporary credentials (role chaining) is capped at one hour.
pub const ROLE_CHAINING_LIMIT: u32 = 3600;

/// Intermediate cached steps (the MFA session) only need to outlive the next call.
const INTERMEDIATE_MIN_REMAINING: std::time::Duration = std::time::Duration::from_secs(120);

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Skip the session cache entirely (the step ledger and its lock are still used).
    pub no_cache: bool,
    /// Send MFA directly on AssumeRole instead of through a cached MFA session.
    pub no_session: bool,
}

/// Everything a command needs about a profile's credentials.
pub struct Obtained {
    pub credentials: Credentials,
    pub profile: ResolvedProfile,
    pub target: StsTarget,
    /// Whether the credentials came straight from the cache (the warm path).
    pub from_cache: bool,
}

pub fn load_profile(name: &str, env: &dyn EnvLookup) -> Result<ResolvedProfile> {
    let files = AwsFiles::from_env(env);
    let profiles = Profiles::load(&files)?;
    profiles.resolve(name, env)
}

/// The warm path of `credential-process`: credentials straight from the cache when the
/// warm index matches (no parse of the AWS files); `None` means "run [`credentials`]".
pub fn warm_credentials(name: &str, opts: &Options, env: &dyn EnvLookup) -> Option<Credentials> {
    warm::lookup(name, opts, env)
}

/// Credentials for the profile `name`.
pub fn credentials(
    name: &str,
    opts: &Options,
    env: &dyn EnvLookup,
    ui: &dyn Ui,
) -> Result<Obtained> {
    // Every variable the resolution reads is recorded: the warm index is valid only while
    // they keep their values.
    let rec = warm::RecordingEnv::new(env);
    let profiles = Profiles::load(&AwsFiles::from_env(&rec))?;
    let profile = profiles.resolve(name, &rec)?;
    if let Some(ra) = &profile.roles_anywhere {
        let (credentials, from_cache) = roles_anywhere::obtain(&profile, ra, opts, &rec, ui)?;
        let target = StsTarget::for_profile(&profile, &rec);
        return Ok(Obtained {
            credentials,
            profile,
            target,
            from_cache,
        });
    }
    // Before any cache, token or code: a URL no request could go to costs no touch.
    StsTarget::check_endpoint(&profile, &rec)?;
    let target = StsTarget::for_profile(&profile, &rec);
    let session_seconds = session_seconds(&rec)?;
    let timeouts = sts::Timeouts::from_env(&rec)?;
    let cache = SessionCache::open_default(&rec, ui);
    let sts_target = target.clone();
    // One vault session for the seed and the access key: one unlock (one touch) for both.
    // Nothing reads it unless a cache miss needs a code or a key from the vault.
    let vault = Rc::new(VaultSession::from_env(env));
    let token_vault = vault.clone();
    let stamp_vault = vault.clone();
    let mut engine = Engine::new(
        &cache,
        ui,
        Box::new(move || {
            Ok(Box::new(Sts::new(sts_target.clone())?.with_timeouts(timeouts)) as Box<dyn StsApi>)
        }),
        Box::new(move |mfa: &Mfa| {
            let seeds = VaultSeeds::new(token_vault.clone());
            token::select_with(
                &mfa.token,
                &mfa.serial,
                &token::Sources::real(env, &seeds),
                ui,
            )
        }),
    )
    .with_base_keys(Box::new(move |b: &BaseCredentials| {
        vault_base_keys(&vault, b, env, ui)
    }))
    .with_vault_stamp(Box::new(move |b: &BaseCredentials| {
        vault_stamp(&stamp_vault, b)
    }));
    let (credentials, from_cache) = engine.obtain(&profile, &target, opts, session_seconds)?;
    if let Some(key) = &engine.final_key {
        // Keys in the vault: the warm index is valid only while the vault's entry is the
        // one whose identity went into the key.
        let vault_entry = match (&profile.base.in_vault, &engine.stamp) {
            (None, _) => Some(None),
            (Some(path), Some(stamp)) => Some(Some(warm::VaultEntry {
                path: path.clone(),
                profile: profile.base.origin.clone(),
                stamp: stamp.clone(),
            })),
            (Some(_), None) => None,
        };
        if let Some(vault_entry) = vault_entry {
            warm::remember(&cache, name, opts, &profiles, &rec, key, vault_entry, ui);
        }
    }
    drop(engine);
    Ok(Obtained {
        credentials,
        profile,
        target,
        from_cache,
    })
}

/// The long-term keys of `b`: from the profile files, or (`tapcred_access_key = vault`)
/// from the vault through `vault` (opened at most once per process).
pub fn vault_base_keys(
    vault: &VaultSession,
    b: &BaseCredentials,
    env: &dyn EnvLookup,
    ui: &dyn Ui,
) -> Result<Credentials> {
    match &b.in_vault {
        None => Ok(sts::base_credentials(b)),
        Some(path) => {
            if vault.path() != Some(path.as_path()) {
                return Err(Error::internal(format!(
                    "the vault {} of profile \"{}\" is not this process's vault",
                    path.display(),
                    b.origin
                )));
            }
            vault.access_key(&b.origin, env, ui)
        }
    }
}

/// The stamp of the vault entry holding `b`'s access key ([`VaultSession::sealed_digest`]),
/// read without an unlock; `None` for keys outside the vault or an entry not found (the key
/// fetch then says why).
pub fn vault_stamp(vault: &VaultSession, b: &BaseCredentials) -> Result<Option<String>> {
    match &b.in_vault {
        Some(path) if vault.path() == Some(path.as_path()) => {
            vault.sealed_digest(&crate::vault::EntryName::access_key(&b.origin))
        }
        _ => Ok(None),
    }
}

/// `TAPCRED_SESSION_DURATION` or the default 12 h.
pub fn session_seconds(env: &dyn EnvLookup) -> Result<u32> {
    match env.var(SESSION_DURATION_ENV).filter(|v| !v.trim().is_empty()) {
        None => Ok(DEFAULT_SESSION_SECONDS),
        Some(v) => v
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|d| (900..=129_600).contains(d))
            .ok_or_else(|| {
                Error::config(format!(
                    "{SESSION_DURATION_ENV} = {v:?} is not a number of seconds between 900 and 129600 (the GetSessionToken range); fix or unset it"
                ))
            }),
    }
}

/// Pick the token source and read one code from a window never used before for this serial
/// (by any tapcred process) with enough time left, waiting with a countdown when needed.
/// The window is recorded in the step ledger.
pub fn obtain_code(mfa: &Mfa, profile: &str, env: &dyn EnvLookup, ui: &dyn Ui) -> Result<Code> {
    let cache = SessionCache::open_default(env, ui);
    let mut source = token::select(&mfa.token, &mfa.serial, env, &VaultSeeds::from_env(env), ui)?;
    read_code(&cache, source.as_mut(), &mfa.serial, profile, ui)
}

/// Read a code for `serial` under its cross-process lock, honouring and updating the step
/// ledger in `cache`.
pub fn read_code(
    cache: &SessionCache,
    source: &mut dyn TokenSource,
    serial: &str,
    profile: &str,
    ui: &dyn Ui,
) -> Result<Code> {
    read_code_keeping_previous(cache, source, serial, profile, ui).map(|(code, _)| code)
}

/// [`read_code`], also returning the ledger's previous value for [`SessionCache::unrecord`].
fn read_code_keeping_previous(
    cache: &SessionCache,
    source: &mut dyn TokenSource,
    serial: &str,
    profile: &str,
    ui: &dyn Ui,
) -> Result<(Code, Option<u64>)> {
    let _guard = cache.lock_serial(serial, ui)?;
    let last = cache.last_window_end(serial, ui);
    let now = now_f64();
    let (at, wait) = plan_code_time(now, last, source.period(), MIN_SECONDS_LEFT);
    if let Some(w) = wait {
        let why = if last.is_some_and(|l| l as f64 > now) {
            "the current code was already used; waiting for the next code window"
        } else {
            "the current code is about to expire; waiting for the next code window"
        };
        ui.wait_until(why, clock::unix_to_system(w));
    }
    let now = clock::now_unix();
    let at = if source.computes_any_time() {
        at.max(now)
    } else {
        now
    };
    let code = source.code(
        &CodeRequest {
            mfa_serial: serial,
            profile,
            at,
        },
        ui,
    )?;
    // Recorded before STS sees it (other processes must not send this window's code while
    // our request is on its way); taken back with `unrecord` if the request never left.
    cache.record(serial, code.window_end, ui);
    Ok((code, last))
}

fn now_f64() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Creates the STS client on first use (the warm path never does).
pub type StsFactory<'a> = Box<dyn FnMut() -> Result<Box<dyn StsApi>> + 'a>;
/// Picks the token source for an MFA device (only on the cold path).
pub type TokenFactory<'a> = Box<dyn FnMut(&Mfa) -> Result<Box<dyn TokenSource>> + 'a>;
/// The long-term keys at the root of a chain, asked for only when an STS call needs them
/// (keys in the vault cost an unlock; a cache hit never asks).
pub type BaseKeysFactory<'a> = Box<dyn FnMut(&BaseCredentials) -> Result<Credentials> + 'a>;
/// The stamp of the sealed vault entry holding the base keys, without an unlock
/// ([`vault_stamp`]); `None` when unknown.
pub type VaultStampFactory<'a> = Box<dyn FnMut(&BaseCredentials) -> Result<Option<String>> + 'a>;

/// One STS call of a planned chain.
#[derive(Debug, Clone, Copy)]
enum Call<'p> {
    /// `GetSessionToken` with MFA.
    SessionToken { mfa: &'p Mfa, duration: u32 },
    AssumeRole {
        role: &'p RoleStep,
        mfa: Option<&'p Mfa>,
        duration: Option<u32>,
    },
}

#[derive(Debug, Clone)]
struct Planned<'p> {
    /// The profile this call is made for (messages, `tapcred sessions`).
    profile: &'p str,
    call: Call<'p>,
    kind: SessionKind,
    key: CacheKey,
}

/// The STS calls for `p`, with the MFA-session rule applied and a cache key per call;
/// `source` is the identity of the base keys ([`cache::key_identity`]).
fn plan<'p>(
    p: &'p ResolvedProfile,
    target: &StsTarget,
    opts: &Options,
    session_seconds: u32,
    source: &str,
) -> Vec<Planned<'p>> {
    let long_term_base = p.base.session_token.is_none();
    let mut calls: Vec<(&'p str, Call<'p>)> = Vec::new();
    for (i, step) in p.steps.iter().enumerate() {
        match step {
            Step::SessionToken {
                profile,
                mfa,
                duration_seconds,
            } => calls.push((
                profile,
                Call::SessionToken {
                    mfa,
                    duration: duration_seconds.unwrap_or(DEFAULT_SESSION_SECONDS),
                },
            )),
            Step::AssumeRole(role) => {
                let via_session = i == 0
                    && long_term_base
                    && !opts.no_session
                    && role.mfa.is_some()
                    && role.duration_seconds.unwrap_or(ROLE_CHAINING_LIMIT) <= ROLE_CHAINING_LIMIT;
                match (&role.mfa, via_session) {
                    (Some(mfa), true) => {
                        calls.push((
                            &role.profile,
                            Call::SessionToken {
                                mfa,
                                duration: session_seconds,
                            },
                        ));
                        calls.push((
                            &role.profile,
                            Call::AssumeRole {
                                role,
                                mfa: None,
                                duration: role.duration_seconds,
                            },
                        ));
                    }
                    _ => calls.push((
                        &role.profile,
                        Call::AssumeRole {
                            role,
                            mfa: role.mfa.as_ref(),
                            duration: role.duration_seconds,
                        },
                    )),
                }
            }
        }
    }
    let mut prev: Option<CacheKey> = None;
    calls
        .into_iter()
        .map(|(profile, call)| {
            let kind = match call {
                Call::SessionToken { .. } => SessionKind::GetSessionToken,
                Call::AssumeRole { .. } => SessionKind::AssumeRole,
            };
            // The effective endpoint, not the region: with an endpoint override the region
            // only names the signing scope and does not change the credentials, so a
            // profile with another `region` still shares the MFA session.
            let endpoint = target.url();
            let mut b = CacheKey::builder(kind)
                .source(source)
                .endpoint(Some(&endpoint));
            if let Some(k) = &prev {
                b = b.chain(k.hex());
            }
            b = match call {
                Call::SessionToken { mfa, duration } => {
                    b.mfa_serial(Some(&mfa.serial)).duration(Some(duration))
                }
                Call::AssumeRole {
                    role,
                    mfa,
                    duration,
                } => b
                    .role_arn(&role.role_arn)
                    .mfa_serial(mfa.map(|m| m.serial.as_str()))
                    .duration(duration)
                    .external_id(role.external_id.as_deref())
                    .session_name(role.role_session_name.as_deref()),
            };
            let key = b.build();
            prev = Some(key.clone());
            Planned {
                profile,
                call,
                kind,
                key,
            }
        })
        .collect()
}

/// The cache key of the MFA session (GetSessionToken) that starts `p`'s chain when its base
/// keys have the identity `source` ([`cache::key_identity`]); None when the chain starts
/// otherwise. `tapcred rotate` moves that session to the new key's identity.
pub fn mfa_session_key(
    p: &ResolvedProfile,
    target: &StsTarget,
    session_seconds: u32,
    source: &str,
) -> Option<CacheKey> {
    plan(p, target, &Options::default(), session_seconds, source)
        .into_iter()
        .next()
        .filter(|s| s.kind == SessionKind::GetSessionToken)
        .map(|s| s.key)
}

/// STS said the signing session token is invalid or expired (revoked server-side, or the
/// cached copy is stale): decided on the typed reason `sts` gives `InvalidClientTokenId` and
/// `ExpiredToken`, never on message text.
fn is_invalid_session(e: &Error) -> bool {
    e.reason() == Some(Reason::SessionRejected)
}

/// A failed run, remembering whether the signer of the failing call came from the cache.
struct Failure {
    err: Error,
    cached_signer: Option<usize>,
}

/// The flow with its collaborators injected.
pub struct Engine<'a> {
    cache: &'a SessionCache,
    ui: &'a dyn Ui,
    sts_factory: StsFactory<'a>,
    sts: Option<Box<dyn StsApi>>,
    token_factory: TokenFactory<'a>,
    base_keys: BaseKeysFactory<'a>,
    vault_stamp: VaultStampFactory<'a>,
    /// Base keys already fetched to learn their identity (used to sign, not fetched again).
    fetched_base: Option<Credentials>,
    /// Codes obtained by this engine (0 and no STS client = nothing happened yet).
    codes_read: usize,
    /// The last [`Engine::obtain`]'s final cache key (None without STS steps)…
    pub final_key: Option<CacheKey>,
    /// …and the stamp of the vault entry its identity was taken from.
    pub stamp: Option<String>,
}

impl<'a> Engine<'a> {
    pub fn new(
        cache: &'a SessionCache,
        ui: &'a dyn Ui,
        sts_factory: StsFactory<'a>,
        token_factory: TokenFactory<'a>,
    ) -> Self {
        Engine {
            cache,
            ui,
            sts_factory,
            sts: None,
            token_factory,
            base_keys: Box::new(|b: &BaseCredentials| match &b.in_vault {
                None => Ok(sts::base_credentials(b)),
                Some(p) => Err(Error::internal(format!(
                    "profile \"{}\": keys in the vault {} but no vault access was given",
                    b.origin,
                    p.display()
                ))),
            }),
            vault_stamp: Box::new(|_: &BaseCredentials| Ok(None)),
            fetched_base: None,
            codes_read: 0,
            final_key: None,
            stamp: None,
        }
    }

    /// Where keys kept in the vault come from (default: the files' keys only).
    pub fn with_base_keys(mut self, f: BaseKeysFactory<'a>) -> Self {
        self.base_keys = f;
        self
    }

    /// How to stamp the vault entry of keys kept in the vault (default: never known, so
    /// their identity costs an unlock).
    pub fn with_vault_stamp(mut self, f: VaultStampFactory<'a>) -> Self {
        self.vault_stamp = f;
        self
    }

    /// The identity of `base`'s access key. Keys in a file: a hash of their id. Keys in the
    /// vault: the identity recorded for the entry's stamp, else the vault is opened (the
    /// keys are kept to sign with) and the identity recorded for that stamp.
    fn source_identity(&mut self, base: &BaseCredentials) -> Result<String> {
        self.stamp = None;
        if base.in_vault.is_none() {
            return Ok(cache::key_identity(&base.access_key_id));
        }
        let stamp = (self.vault_stamp)(base)?;
        if let Some(id) = stamp.as_deref().and_then(|s| self.cache.known_identity(s)) {
            self.stamp = stamp;
            return Ok(id);
        }
        let keys = (self.base_keys)(base)?;
        let id = cache::key_identity(&keys.access_key_id);
        if let Some(s) = &stamp {
            self.cache.remember_identity(s, &id, self.ui);
        }
        self.fetched_base = Some(keys);
        self.stamp = stamp;
        Ok(id)
    }

    /// The base keys: those fetched already, else from the factory.
    fn base_credentials(&mut self, base: &BaseCredentials) -> Result<Credentials> {
        match self.fetched_base.take() {
            Some(c) => Ok(c),
            None => (self.base_keys)(base),
        }
    }

    /// Credentials for `p`, and whether they came from the cache without any STS call.
    pub fn obtain(
        &mut self,
        p: &ResolvedProfile,
        target: &StsTarget,
        opts: &Options,
        session_seconds: u32,
    ) -> Result<(Credentials, bool)> {
        self.final_key = None;
        if p.steps.is_empty() {
            return Ok((self.base_credentials(&p.base)?, false));
        }
        let use_cache = !opts.no_cache && self.cache.enabled();
        // Without the cache the keys name nothing: no unlock just to learn an identity.
        let source = if use_cache {
            self.source_identity(&p.base)?
        } else {
            String::from("uncached")
        };
        let steps = plan(p, target, opts, session_seconds, &source);
        let Some(last) = steps.last() else {
            return Ok((self.base_credentials(&p.base)?, false));
        };
        if use_cache {
            self.final_key = Some(last.key.clone());
        }
        if use_cache && let Some(e) = self.cache.get(&last.key, ADVISORY_WINDOW) {
            tracing::debug!(profile = p.name, "session cache hit");
            return Ok((e.credentials, true));
        }
        let final_lock = if use_cache {
            Some(self.cache.lock(&last.key, self.ui)?)
        } else {
            None
        };
        let res = self.obtain_locked(p, &steps, use_cache);
        if res.is_err() && self.nothing_done() {
            // A config or token-selection error before any code or STS call: leave no trace.
            if let Some(g) = final_lock {
                g.discard();
            }
        }
        res
    }

    fn nothing_done(&self) -> bool {
        self.codes_read == 0 && self.sts.is_none()
    }

    fn obtain_locked(
        &mut self,
        p: &ResolvedProfile,
        steps: &[Planned<'_>],
        use_cache: bool,
    ) -> Result<(Credentials, bool)> {
        match self.run(p, steps, use_cache, None) {
            Ok(c) => Ok(c),
            Err(Failure {
                err,
                cached_signer: Some(i),
            }) if is_invalid_session(&err) => {
                tracing::debug!(step = i, "cached session rejected by STS; dropping it");
                self.cache.remove(&steps[i].key);
                self.ui.info(&format!(
                    "profile \"{}\": the cached session was rejected by STS (revoked or expired); starting a new one",
                    p.name
                ));
                self.run(p, steps, use_cache, Some(i)).map_err(|f| f.err)
            }
            Err(f) => Err(f.err),
        }
    }

    /// Run the planned calls, starting after the latest step with a fresh cache entry
    /// (ignoring entries of steps `..=distrust`).
    fn run(
        &mut self,
        p: &ResolvedProfile,
        steps: &[Planned<'_>],
        use_cache: bool,
        distrust: Option<usize>,
    ) -> std::result::Result<(Credentials, bool), Failure> {
        let last = steps.len() - 1;
        let trusted = |i: usize| distrust.is_none_or(|d| i > d);
        let min_for = |i: usize| {
            if i == last {
                ADVISORY_WINDOW
            } else {
                INTERMEDIATE_MIN_REMAINING
            }
        };
        // The base keys are fetched only if a call must be signed with them.
        let mut creds: Option<Credentials> = None;
        let mut start = 0;
        let mut cached_signer = None;
        if use_cache {
            for i in (0..=last).rev().filter(|&i| trusted(i)) {
                if let Some(e) = self.cache.get(&steps[i].key, min_for(i)) {
                    creds = Some(e.credentials);
                    start = i + 1;
                    cached_signer = Some(i);
                    break;
                }
            }
        }
        if start > last
            && let Some(c) = creds.take()
        {
            // Another process stored it while we waited for the lock.
            return Ok((c, true));
        }
        let mut signer = p.base.origin.as_str();
        if start > 0 {
            signer = steps[start - 1].profile;
        }
        for (i, step) in steps.iter().enumerate().skip(start) {
            // Shared intermediate steps get their own lock (the final key's is held already).
            let step_lock = if use_cache && i != last {
                let g = self.cache.lock(&step.key, self.ui).map_err(|err| Failure {
                    err,
                    cached_signer: None,
                })?;
                if trusted(i)
                    && let Some(e) = self.cache.get(&step.key, min_for(i))
                {
                    creds = Some(e.credentials);
                    cached_signer = Some(i);
                    signer = step.profile;
                    continue;
                }
                Some(g)
            } else {
                None
            };
            let signing = match creds.take() {
                Some(c) => c,
                None => match self.base_credentials(&p.base) {
                    Ok(c) => c,
                    Err(err) => {
                        // Keys that could not be read (no vault, no key to open it): no
                        // code or STS call happened, so leave no lock file behind.
                        if self.nothing_done()
                            && let Some(g) = step_lock
                        {
                            g.discard();
                        }
                        return Err(Failure {
                            err,
                            cached_signer: None,
                        });
                    }
                },
            };
            let fresh = match self.call(step, &signing, signer) {
                Ok(c) => c,
                Err(err) => {
                    if self.nothing_done()
                        && let Some(g) = step_lock
                    {
                        g.discard();
                    }
                    return Err(Failure { err, cached_signer });
                }
            };
            if use_cache {
                let entry = Entry {
                    kind: step.kind,
                    profile: step.profile.to_owned(),
                    mfa_serial: match step.call {
                        Call::SessionToken { mfa, .. } => Some(mfa.serial.clone()),
                        Call::AssumeRole { mfa, .. } => mfa.map(|m| m.serial.clone()),
                    },
                    created: clock::now_utc(),
                    credentials: fresh.clone(),
                };
                self.cache.put(&step.key, &entry, self.ui);
            }
            creds = Some(fresh);
            cached_signer = None;
            signer = step.profile;
        }
        let creds = creds
            .ok_or_else(|| Error::internal("a planned chain made no call"))
            .map_err(|err| Failure {
                err,
                cached_signer: None,
            })?;
        Ok((creds, false))
    }

    fn sts(&mut self) -> Result<&dyn StsApi> {
        if self.sts.is_none() {
            self.sts = Some((self.sts_factory)()?);
        }
        Ok(self.sts.as_deref().expect("just set"))
    }

    fn code(&mut self, mfa: &Mfa, profile: &str) -> Result<(Code, Option<u64>)> {
        let mut source = (self.token_factory)(mfa)?;
        let got =
            read_code_keeping_previous(self.cache, source.as_mut(), &mfa.serial, profile, self.ui)?;
        self.codes_read += 1;
        Ok(got)
    }

    /// An STS call carrying a code. The SDK makes one attempt (`sts` disables its retries for
    /// these), because STS may have consumed a code whose answer was lost. When no answer came
    /// back (a 5xx, a connection broken after sending) or STS throttled it, the call is
    /// retried once with the next window's code (the ledger makes `code` wait for it, with a countdown); a second
    /// failure, or a timeout (a hung endpoint would hang again), ends the run.
    fn mfa_call(
        &mut self,
        mfa: &Mfa,
        profile: &str,
        send: impl Fn(&dyn StsApi, MfaCode<'_>) -> Result<Credentials>,
    ) -> Result<Credentials> {
        let mut retried = false;
        loop {
            let (code, previous) = self.code(mfa, profile)?;
            let m = MfaCode {
                serial: &mfa.serial,
                code: &code.digits,
            };
            let err = match send(self.sts()?, m) {
                Ok(c) => return Ok(c),
                Err(e) => e,
            };
            self.settle_window(mfa, &code, previous, &err);
            // Throttled: STS refused the request at the door, but whether the code was looked
            // at is not known; the next code is safe either way.
            if retried || !matches!(err.reason(), Some(Reason::NoAnswer | Reason::Throttled)) {
                return Err(err);
            }
            retried = true;
            tracing::info!(profile, error = %err, "MFA call got no answer; retrying with the next code");
            self.ui.info(&format!(
                "profile \"{profile}\": {}; retrying once with the next code",
                if err.reason() == Some(Reason::Throttled) {
                    "STS throttled the MFA call"
                } else {
                    "STS gave no answer to the MFA call (its code may be used up)"
                }
            ));
        }
    }

    /// After an MFA call failed: if the request never left this machine, STS saw no code and
    /// the window is given back (the next attempt need not wait for a new one).
    fn settle_window(&self, mfa: &Mfa, code: &Code, previous: Option<u64>, err: &Error) {
        if err.reason().is_some_and(|r| !r.may_have_reached_sts()) {
            tracing::debug!(
                mfa_serial = %mfa.serial,
                "the request never reached STS; the code window stays unused"
            );
            self.cache
                .unrecord(&mfa.serial, code.window_end, previous, self.ui);
        }
    }

    fn call(
        &mut self,
        step: &Planned<'_>,
        creds: &Credentials,
        signer: &str,
    ) -> Result<Credentials> {
        let ctx = CallContext {
            profile: step.profile,
            signer,
        };
        match step.call {
            Call::SessionToken { mfa, duration } => self.mfa_call(mfa, step.profile, |sts, m| {
                sts.get_session_token(creds, Some(m), Some(duration), ctx)
            }),
            Call::AssumeRole {
                role,
                mfa: None,
                duration,
            } => self.sts()?.assume_role(creds, role, None, duration, ctx),
            Call::AssumeRole {
                role,
                mfa: Some(mfa),
                duration,
            } => self.mfa_call(mfa, step.profile, |sts, m| {
                sts.assume_role(creds, role, Some(m), duration, ctx)
            }),
        }
    }
}

#[cfg(test)]
mod tests;
