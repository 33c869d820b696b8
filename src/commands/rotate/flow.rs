//! `tapcred rotate`: a new long-term access key for the IAM user behind a profile, with one
//! MFA session (one tap) for every IAM call, and nothing lost on failure.
//!
//! Steps: the MFA session (GetSessionToken through the engine: a cached one is reused, else
//! one code, recorded in the step ledger) → who the user is (GetCallerIdentity) → its keys
//! (ListAccessKeys: room for a second key?) → CreateAccessKey → the new key proven with
//! GetCallerIdentity signed by it (no MFA, retried through IAM's propagation delay, bounded)
//! → the new key written where the old one lives (the credentials file through the
//! byte-preserving editor, or the vault entry), read back and proven again → the old key
//! deactivated → deleted (`--keep-old` stops after deactivation). No code is read after the
//! session: IAM and the proof never see a TOTP code, so no window is sent twice.
//!
//! The new key is proven before it replaces the old one, so the store never gets a key that
//! did not work; the old key stays active in IAM until the new one is stored and proven.
//!
//! Failure: every step is recorded in a journal before it is taken. In the running process a
//! failure before the new key is in place deletes the new key (after reading IAM's list: a
//! CreateAccessKey whose answer was lost leaves a key only the list shows) and puts the old
//! key back where it was; once the new key is in place and proven, a failure deactivating or
//! deleting the old key keeps the new key and leaves the journal. A run killed outright leaves
//! the journal: the next `rotate` of the profile stops and says so, `doctor` lists it, and
//! `rotate --resume` finishes it (new key in place) or undoes it (not in place), reading IAM's
//! list first.
//!
//! Cached sessions: the session cache is keyed by the identity of the source key, so after a
//! rotation nothing cached under the old key is found any more. The MFA session rotate used
//! (made with the old key, still valid at AWS until its own expiry) is moved under the new
//! key's identity with its own expiry, so the next command needs no tap; sessions of roles
//! are assumed again from it.

use std::io::Write;
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::cache::{self, SessionCache};
use crate::commands::interrupt::{Interrupt, catching_panics};
use crate::commands::{Ctx, journalled, write_line};
use crate::credentials::Credentials;
use crate::engine::{self, Engine, Options};
use crate::error::{Error, Reason, Result};
use crate::iam::{AccessKeyInfo, Iam, IamError, IamTarget, NewAccessKey};
use crate::journal::{self, Journal, Record};
use crate::profile::editor::{self, AwsFile, EditReceipt, ProfileEdit};
use crate::profile::{AwsFiles, Mfa, Profiles, ResolvedProfile, Step};
use crate::sts::{CallContext, Sts, StsApi, StsTarget};
use crate::token;
use crate::ui::Ui;
use crate::vault::{EntryName, Secret, VaultSession, VaultStore};

use crate::commands::shell_words::shell_word;
use crate::commands::vault::Unlocked;

/// The journal's kind.
pub const KIND: &str = "rotate";

/// Exit code after an interrupted rotate, once the rollback ran.
pub const EXIT_INTERRUPTED: i32 = 130;

/// How long the new key may take to work (IAM's propagation delay), by default.
pub const DEFAULT_PROOF_SECONDS: u64 = 60;

/// Env var overriding [`DEFAULT_PROOF_SECONDS`] (1–600).
pub const PROOF_SECONDS_ENV: &str = "TAPCRED_ROTATE_PROOF_SECONDS";

/// Step names, each recorded before the step is taken.
pub mod step {
    /// The plan: user, signer, old key id, where the key lives, the keys before.
    pub const BEGIN: &str = "begin";
    /// Before deleting an inactive key the user agreed to delete.
    pub const DELETE_INACTIVE: &str = "delete-inactive";
    /// Before CreateAccessKey.
    pub const CREATE: &str = "create";
    /// After it: the new key's id.
    pub const CREATED: &str = "created";
    /// Before the new key replaces the old one where it lives.
    pub const STORE: &str = "store";
    /// After it was written, read back and proven.
    pub const STORED: &str = "stored";
    /// Before UpdateAccessKey (old key → Inactive).
    pub const DEACTIVATE: &str = "deactivate";
    /// Before DeleteAccessKey of the old key.
    pub const DELETE: &str = "delete";
}

#[derive(Debug, Clone, Default, clap::Args)]
pub struct Args {
    /// The profile whose long-term access key is replaced (or a profile whose chain starts
    /// from it); its chain needs an mfa_serial.
    #[arg(short, long)]
    pub profile: Option<String>,
    /// Keep the old key, deactivated, instead of deleting it.
    #[arg(long)]
    pub keep_old: bool,
    /// Delete the user's other, inactive access key when it is in the way (IAM allows two
    /// keys); without it rotate asks (or, non-interactive, stops).
    #[arg(long)]
    pub delete_inactive: bool,
    /// Which YubiKey unlocks the vault, when the key lives there and several are plugged in.
    #[arg(long, value_name = "N")]
    pub serial: Option<u32>,
    /// Finish (the new key is in place) or undo (it is not) what an interrupted rotate of
    /// this profile left, reading IAM's list of keys first.
    #[arg(long)]
    pub resume: bool,
}

/// The command that finishes what an interrupted rotate left (for `doctor`).
pub fn pending_fix(subject: &str) -> String {
    format!(
        "run `tapcred rotate --profile {} --resume` to finish or undo it (IAM's list of keys is read first)",
        shell_word(subject)
    )
}

/// Where the key lives.
enum Store {
    File {
        path: std::path::PathBuf,
    },
    Vault {
        store: VaultStore,
        unlocked: Box<Unlocked>,
    },
}

impl Store {
    fn word(&self) -> &'static str {
        match self {
            Store::File { .. } => "file",
            Store::Vault { .. } => "vault",
        }
    }

    fn describe(&self) -> String {
        match self {
            Store::File { path } => path.display().to_string(),
            Store::Vault { store, .. } => format!("the vault {}", store.path().display()),
        }
    }
}

/// The key as it was before an edit, to put back.
enum Previous {
    File(Box<EditReceipt>),
    Vault(Secret),
}

pub fn run(args: &Args, ctx: &Ctx<'_>, out: &mut dyn Write) -> Result<i32> {
    let interrupt = Interrupt::install();
    run_with(args, ctx, &interrupt, out)
}

/// Everything known once the MFA session is open.
struct Setup<'a> {
    ctx: &'a Ctx<'a>,
    signer: String,
    files: AwsFiles,
    store: Store,
    /// The MFA session every IAM call is signed with.
    mfa_creds: Credentials,
    iam: Iam,
    sts: Sts,
    user: String,
    user_arn: String,
    /// The key in use now (the store's).
    current: Credentials,
    cache: SessionCache,
    /// The profile of the MFA session and its STS target, to move the cached session.
    mfa_profile: ResolvedProfile,
    sts_target: StsTarget,
    session_seconds: u32,
}

pub fn run_with(
    args: &Args,
    ctx: &Ctx<'_>,
    interrupt: &Interrupt,
    out: &mut dyn Write,
) -> Result<i32> {
    let env = ctx.env;
    let profile = crate::profile::selected_name(args.profile.as_deref(), env);
    // A bad bound is refused before anything is done.
    proof_seconds(env)?;
    let journal_dir = journal::default_dir(env).ok_or_else(|| {
        Error::config(
            "rotate keeps a journal of its steps in tapcred's data folder, and none is known; set HOME (or XDG_DATA_HOME)",
        )
    })?;
    let files = AwsFiles::from_env(env);
    let profiles = Profiles::load(&files)?;
    let resolved = profiles.resolve(&profile, env)?;
    let signer = resolved.base.origin.clone();
    let pending = Journal::find(&journal_dir, KIND, &signer);
    if args.resume {
        let Some(p) = pending else {
            write_line(
                out,
                &format!("profile \"{signer}\": no interrupted rotate to finish"),
            )?;
            return Ok(0);
        };
        return resume(&p, args, &profile, ctx, out);
    }
    if let Some(p) = pending {
        return Err(journalled::earlier_interrupted(
            KIND,
            &signer,
            &p,
            &pending_fix(&signer),
        ));
    }
    let s = setup(args, &profile, &resolved, files, &profiles, ctx)?;
    interrupt.check()?;
    let keys = s.iam.list_access_keys(&s.mfa_creds, &s.user)?;
    let old_id = s.current.access_key_id.clone();
    if !keys.iter().any(|k| k.access_key_id == old_id) {
        return Err(Error::config(format!(
            "profile \"{signer}\": its access key {old_id} is not one of IAM user {}'s keys ({}); check the profile's keys",
            s.user,
            ids(&keys)
        )));
    }
    let others: Vec<&AccessKeyInfo> = keys.iter().filter(|k| k.access_key_id != old_id).collect();
    let mut in_the_way = None;
    if let Some(other) = others.first() {
        if other.active {
            return Err(Error::auth(format!(
                "IAM user {u} already has two active access keys ({old_id}, the one of profile \"{signer}\", and {o}); AWS allows two, so there is no room for a new one: if {o} is not in use anywhere, delete it (aws iam delete-access-key --user-name {u} --access-key-id {o}) and run tapcred rotate again",
                u = s.user,
                o = other.access_key_id
            )));
        }
        if !agreed_to_delete(args, &s.user, &other.access_key_id, ctx.ui)? {
            return Err(Error::usage(format!(
                "IAM user {u} has an inactive access key {o} besides {old_id}, and AWS allows two; rotate deletes it only when asked: run `tapcred rotate --profile {p} --delete-inactive`, or delete it yourself (aws iam delete-access-key --user-name {u} --access-key-id {o})",
                u = s.user,
                o = other.access_key_id,
                p = shell_word(&profile)
            )));
        }
        in_the_way = Some(other.access_key_id.clone());
    }
    let mut journal = journalled::begin(&journal_dir, KIND, &signer, &pending_fix(&signer))?;
    journalled::step(
        &mut journal,
        env,
        step::BEGIN,
        json!({
            "user": s.user,
            "profile": profile,
            "old_key_id": old_id,
            "store": s.store.word(),
            "keep_old": args.keep_old,
            "keys_before": keys.iter().map(|k| k.access_key_id.clone()).collect::<Vec<_>>(),
        }),
    )?;
    let mut job = Job {
        s: &s,
        args,
        interrupt,
        journal,
        previous: None,
    };
    // A panic (a bug) becomes an error here, so the undo below still runs and no new key is
    // left behind.
    let result = catching_panics("rotate", || job.rotate(in_the_way.as_deref(), &keys));
    conclude(job, result, out)
}

/// Ask (interactive) or read the flag: delete the inactive key `id`?
fn agreed_to_delete(args: &Args, user: &str, id: &str, ui: &dyn Ui) -> Result<bool> {
    if args.delete_inactive {
        return Ok(true);
    }
    if !ui.interactive() {
        return Ok(false);
    }
    let answer = ui.ask_line(&format!(
        "IAM user {user} has an inactive access key {id}; AWS allows two keys, so rotate needs its place. Delete {id}? [y/N] "
    ))?;
    Ok(answer.is_some_and(|a| matches!(a.trim(), "y" | "Y" | "yes" | "YES" | "Yes")))
}

/// Open the MFA session and learn the user; keys in the vault cost one unlock, shared with
/// the seed when it is in the vault too.
fn setup<'a>(
    args: &Args,
    profile: &str,
    resolved: &ResolvedProfile,
    files: AwsFiles,
    profiles: &Profiles,
    ctx: &'a Ctx<'a>,
) -> Result<Setup<'a>> {
    let (env, ui) = (ctx.env, ctx.ui);
    let base = &resolved.base;
    let signer = base.origin.clone();
    if base.session_token.is_some() || signer == "env" {
        return Err(Error::config(format!(
            "profile \"{profile}\": its keys are not a profile's long-term access key (temporary keys, or keys from the environment); rotate replaces the access key stored in a profile"
        )));
    }
    let session_seconds = engine::session_seconds(env)?;
    let mfa_profile = mfa_profile(resolved, session_seconds).ok_or_else(|| {
        Error::config(format!(
            "profile \"{profile}\" has no mfa_serial in its chain; rotate makes its IAM calls with an MFA session (the self-management policy requires aws:MultiFactorAuthPresent): add mfa_serial, or enroll a device first (tapcred enroll --profile {})",
            shell_word(profile)
        ))
    })?;
    let (store, session) = match &base.in_vault {
        None => (
            Store::File {
                path: files.credentials.clone(),
            },
            VaultSession::from_env(env),
        ),
        Some(_) => {
            let store = crate::commands::vault::store(ctx)?;
            let file = store.read()?.ok_or_else(|| {
                Error::config(format!(
                    "profile \"{signer}\" keeps its access key in the vault, and there is no vault at {}",
                    store.path().display()
                ))
            })?;
            ui.info(&format!(
                "rotate: unlocking the vault {} (the new key will be sealed in it)",
                store.path().display()
            ));
            let unlocked = crate::commands::vault::unlock_with(&file, args.serial, env, ui)?;
            let session = unlocked.session(env);
            (
                Store::Vault {
                    store,
                    unlocked: Box::new(unlocked),
                },
                session,
            )
        }
    };
    let session = Rc::new(session);
    let current = engine::vault_base_keys(&session, base, env, ui)?;
    let sts_target = StsTarget::for_profile(resolved, env);
    let cache = SessionCache::open_default(env, ui);
    ui.info(&format!(
        "rotate: opening one MFA session for profile \"{signer}\"; every IAM call uses it"
    ));
    let mfa_creds = mfa_session(
        &mfa_profile,
        &sts_target,
        session_seconds,
        &session,
        &cache,
        ctx,
    )?;
    let sts = Sts::new(sts_target.clone())?;
    let who = sts.get_caller_identity(
        &mfa_creds,
        CallContext {
            profile,
            signer: &signer,
        },
    )?;
    let user = crate::iam::user_of_arn(&who.arn)
        .map(|(_, user)| user)
        .ok_or_else(|| {
        Error::config(format!(
            "profile \"{profile}\": the keys of profile \"{signer}\" act as {}, not as an IAM user; only an IAM user has long-term access keys to rotate",
            who.arn
        ))
    })?;
    let iam_target = IamTarget::for_profile(profiles, profile, &sts_target, env)?;
    let iam = Iam::new(iam_target, &signer)?;
    Ok(Setup {
        ctx,
        signer,
        files,
        store,
        mfa_creds,
        iam,
        sts,
        user,
        user_arn: who.arn,
        current,
        cache,
        mfa_profile,
        sts_target,
        session_seconds,
    })
}

/// `p` reduced to the MFA session (GetSessionToken with the MFA device of its chain's first
/// MFA call) that roles of the same source share; None without an mfa_serial.
pub(crate) fn mfa_profile(p: &ResolvedProfile, session_seconds: u32) -> Option<ResolvedProfile> {
    let mfa = p.steps.iter().find_map(|s| match s {
        Step::SessionToken { mfa, .. } => Some(mfa.clone()),
        Step::AssumeRole(r) => r.mfa.clone(),
    })?;
    Some(ResolvedProfile {
        steps: vec![Step::SessionToken {
            profile: p.base.origin.clone(),
            mfa,
            duration_seconds: Some(session_seconds),
        }],
        ..p.clone()
    })
}

/// GetSessionToken with MFA through the engine (cached and shared like any MFA session).
fn mfa_session(
    p: &ResolvedProfile,
    target: &StsTarget,
    session_seconds: u32,
    vault: &Rc<VaultSession>,
    cache: &SessionCache,
    ctx: &Ctx<'_>,
) -> Result<Credentials> {
    let (env, ui) = (ctx.env, ctx.ui);
    let sts_target = target.clone();
    let (keys_vault, token_vault, stamp_vault) = (vault.clone(), vault.clone(), vault.clone());
    let mut engine = Engine::new(
        cache,
        ui,
        Box::new(move || Ok(Box::new(Sts::new(sts_target.clone())?) as Box<dyn StsApi>)),
        Box::new(move |mfa: &Mfa| {
            token::select_with(
                &mfa.token,
                &mfa.serial,
                &token::Sources::real(env, &crate::vault::VaultSeeds::new(token_vault.clone())),
                ui,
            )
        }),
    )
    .with_base_keys(Box::new(move |b| {
        engine::vault_base_keys(&keys_vault, b, env, ui)
    }))
    .with_vault_stamp(Box::new(move |b| engine::vault_stamp(&stamp_vault, b)));
    let (creds, _) = engine.obtain(p, target, &Options::default(), session_seconds)?;
    Ok(creds)
}

struct Job<'a> {
    s: &'a Setup<'a>,
    args: &'a Args,
    interrupt: &'a Interrupt,
    journal: Journal,
    /// The old key where it lived, while the new one is being put in its place.
    previous: Option<Previous>,
}

struct Done {
    old_id: String,
    new_id: String,
    deleted: bool,
}

impl Job<'_> {
    fn step(&mut self, name: &str, data: Value) -> Result<()> {
        journalled::step(&mut self.journal, self.s.ctx.env, name, data)
    }

    fn ui(&self) -> &dyn Ui {
        self.s.ctx.ui
    }

    fn rotate(&mut self, in_the_way: Option<&str>, keys: &[AccessKeyInfo]) -> Result<Done> {
        let s = self.s;
        if let Some(id) = in_the_way {
            self.step(step::DELETE_INACTIVE, json!({ "key_id": id }))?;
            delete_key(&s.iam, &s.mfa_creds, &s.user, id)?;
            self.ui().info(&format!(
                "rotate: deleted the inactive access key {id} of IAM user {}",
                s.user
            ));
        }
        self.interrupt.check()?;
        let before: Vec<String> = keys.iter().map(|k| k.access_key_id.clone()).collect();
        let new_key = self.create(&before)?;
        let new_id = new_key.access_key_id.clone();
        let new_creds = Credentials::new(
            new_key.access_key_id.clone(),
            new_key.secret_access_key.to_string(),
            None,
            None,
        );
        drop(new_key);
        self.interrupt.check()?;
        prove(s, &new_creds, self.interrupt)?;
        self.interrupt.check()?;
        self.step(step::STORE, json!({ "new_key_id": new_id }))?;
        self.previous = Some(put_key(s, &new_creds)?);
        let stored = read_stored(s)?;
        if stored.access_key_id != new_id {
            return Err(Error::internal(format!(
                "{} read back does not hold the new key {new_id}",
                s.store.describe()
            )));
        }
        prove(s, &stored, self.interrupt)?;
        self.step(step::STORED, Value::Null)?;
        self.ui().info(&format!(
            "rotate: the new key {new_id} is in {} and works",
            s.store.describe()
        ));
        move_mfa_session(s, &new_id);
        self.interrupt.check()?;
        let old_id = s.current.access_key_id.clone();
        finish_old_key(s, &mut self.journal, &old_id, self.args.keep_old, &new_id)?;
        Ok(Done {
            old_id,
            new_id,
            deleted: !self.args.keep_old,
        })
    }

    /// CreateAccessKey. Its answer may be lost after IAM made the key: then the keys that
    /// were not there before are deleted (nobody has their secret) and the call is made once
    /// more.
    fn create(&mut self, before: &[String]) -> Result<NewAccessKey> {
        let s = self.s;
        for attempt in 0..2 {
            self.step(step::CREATE, json!({ "attempt": attempt }))?;
            match s.iam.create_access_key(&s.mfa_creds, &s.user) {
                Ok(k) => {
                    self.step(step::CREATED, json!({ "new_key_id": k.access_key_id }))?;
                    self.ui().info(&format!(
                        "rotate: created access key {} for IAM user {}",
                        k.access_key_id, s.user
                    ));
                    return Ok(k);
                }
                Err(e) if e.outcome_unknown() && attempt == 0 => {
                    self.ui().warn(&format!(
                        "rotate: no answer to CreateAccessKey ({e}); reading IAM's list of keys"
                    ));
                    remove_strangers(&s.iam, &s.mfa_creds, &s.user, before, s.ctx.ui)?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::internal("CreateAccessKey loop ended"))
    }
}

/// After the flow: close the journal and print the result, or undo what can be undone.
fn conclude(job: Job<'_>, result: Result<Done>, out: &mut dyn Write) -> Result<i32> {
    let s = job.s;
    let ui = s.ctx.ui;
    match result {
        Ok(done) => {
            if let Err(e) = job.journal.close() {
                ui.warn(&format!("rotate: {e}"));
            }
            write_line(
                out,
                &format!(
                    "profile \"{}\": access key {} replaced by {} in {}; the old key is {}",
                    s.signer,
                    done.old_id,
                    done.new_id,
                    s.store.describe(),
                    if done.deleted {
                        "deleted"
                    } else {
                        "deactivated (kept: --keep-old)"
                    }
                ),
            )?;
            Ok(0)
        }
        Err(err) => {
            let interrupted = job.interrupt.is_set();
            if job.journal.record().has(step::STORED) {
                // The new key is in place and works: never undone.
                ui.warn(&format!(
                    "rotate: the new key is in place and works, but the old key is not retired yet ({err}); {}",
                    pending_fix(&s.signer)
                ));
                return if interrupted {
                    Ok(EXIT_INTERRUPTED)
                } else {
                    Err(err)
                };
            }
            if interrupted {
                ui.warn("rotate interrupted; undoing what was done");
            } else {
                ui.warn(&format!("rotate failed: {err}"));
                ui.warn("rotate: undoing what was done");
            }
            let mut clean = true;
            if let Some(prev) = &job.previous {
                match restore_key(s, prev) {
                    Ok(()) => ui.info(&format!(
                        "undo: the old key {} is back in {}",
                        s.current.access_key_id,
                        s.store.describe()
                    )),
                    Err(e) => {
                        clean = false;
                        ui.warn(&format!("undo: cannot put the old key back: {e}"));
                    }
                }
            }
            let before = keys_before(job.journal.record());
            if job.journal.record().has(step::CREATE) {
                match remove_strangers(&s.iam, &s.mfa_creds, &s.user, &before, ui) {
                    Ok(()) => {}
                    Err(e) => {
                        clean = false;
                        ui.warn(&format!(
                            "undo: cannot delete the new key ({e}); delete it by hand: aws iam list-access-keys --user-name {u}, then aws iam delete-access-key --user-name {u} --access-key-id ID for a key other than {}",
                            s.current.access_key_id,
                            u = s.user
                        ));
                    }
                }
            }
            if clean {
                if let Err(e) = job.journal.close() {
                    ui.warn(&format!("rotate: {e}"));
                }
                ui.info(&format!(
                    "rotate: undone; the old key {} is in place and unchanged",
                    s.current.access_key_id
                ));
            } else {
                ui.warn(&format!(
                    "rotate: not everything was undone; the journal {} keeps track; {}",
                    job.journal.path().display(),
                    pending_fix(&s.signer)
                ));
            }
            if interrupted {
                Ok(EXIT_INTERRUPTED)
            } else {
                Err(err)
            }
        }
    }
}

/// The old key: deactivated, then (unless `keep_old`) deleted; a lost answer is settled by
/// reading IAM's list.
fn finish_old_key(
    s: &Setup<'_>,
    journal: &mut Journal,
    old_id: &str,
    keep_old: bool,
    new_id: &str,
) -> Result<()> {
    let ui = s.ctx.ui;
    // The MFA session signs; it was made with the old key, and AWS keeps such a session
    // valid after the key is deactivated or deleted.
    let state = |s: &Setup<'_>| -> Result<Option<AccessKeyInfo>> {
        Ok(s.iam
            .list_access_keys(&s.mfa_creds, &s.user)?
            .into_iter()
            .find(|k| k.access_key_id == old_id))
    };
    journalled::step(
        journal,
        s.ctx.env,
        step::DEACTIVATE,
        json!({ "new_key_id": new_id }),
    )?;
    match s
        .iam
        .update_access_key(&s.mfa_creds, &s.user, old_id, false)
    {
        Ok(()) => {}
        Err(e) if e.outcome_unknown() || e.is(crate::iam::IamCode::NoSuchEntity) => {
            match state(s)? {
                Some(k) if k.active => return Err(e.into()),
                _ => {}
            }
        }
        Err(e) => return Err(e.into()),
    }
    ui.info(&format!("rotate: deactivated the old key {old_id}"));
    if keep_old {
        return Ok(());
    }
    journalled::step(journal, s.ctx.env, step::DELETE, Value::Null)?;
    match delete_key(&s.iam, &s.mfa_creds, &s.user, old_id) {
        Ok(()) => {}
        Err(e) if e.outcome_unknown() => {
            if state(s)?.is_some() {
                return Err(e.into());
            }
        }
        Err(e) => return Err(e.into()),
    }
    ui.info(&format!("rotate: deleted the old key {old_id}"));
    Ok(())
}

/// DeleteAccessKey; a key already gone is what was asked for.
fn delete_key(iam: &Iam, creds: &Credentials, user: &str, id: &str) -> Result<(), IamError> {
    match iam.delete_access_key(creds, user, id) {
        Err(e) if e.is(crate::iam::IamCode::NoSuchEntity) => Ok(()),
        r => r,
    }
}

/// Delete every key of `user` that is not in `before` (a key rotate made and lost, or the
/// new key of a rotate being undone).
fn remove_strangers(
    iam: &Iam,
    creds: &Credentials,
    user: &str,
    before: &[String],
    ui: &dyn Ui,
) -> Result<()> {
    for k in iam.list_access_keys(creds, user)? {
        if !before.contains(&k.access_key_id) {
            delete_key(iam, creds, user, &k.access_key_id)?;
            ui.info(&format!(
                "undo: deleted access key {} that this rotate made",
                k.access_key_id
            ));
        }
    }
    Ok(())
}

fn keys_before(r: &Record) -> Vec<String> {
    r.step(step::BEGIN)
        .and_then(|s| s.data.get("keys_before"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// GetCallerIdentity signed by `key` (no MFA) until it answers as the user: a new key
/// takes a while to reach STS (InvalidClientTokenId meanwhile), bounded by
/// `TAPCRED_ROTATE_PROOF_SECONDS`.
fn prove(s: &Setup<'_>, key: &Credentials, interrupt: &Interrupt) -> Result<()> {
    let bound = Duration::from_secs(proof_seconds(s.ctx.env)?);
    let start = Instant::now();
    let mut pause = Duration::from_millis(250);
    let mut told = false;
    let call = CallContext {
        profile: &s.signer,
        signer: &s.signer,
    };
    loop {
        match s.sts.get_caller_identity(key, call) {
            Ok(who) if who.arn == s.user_arn => return Ok(()),
            Ok(who) => {
                return Err(Error::auth(format!(
                    "the new access key {} acts as {}, not as {}; IAM at the endpoint is not the one the profile's keys belong to",
                    key.access_key_id, who.arn, s.user_arn
                )));
            }
            Err(e)
                if e.reason() == Some(Reason::SessionRejected)
                    && start.elapsed() + pause < bound =>
            {
                if !told {
                    s.ctx.ui.info(
                        "rotate: waiting for IAM to make the new key known to STS (it takes a few seconds)",
                    );
                    told = true;
                }
                interrupt.check()?;
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(4));
            }
            Err(e) if e.reason() == Some(Reason::SessionRejected) => {
                return Err(Error::auth(format!(
                    "the new access key {} did not work within {} s (STS still refuses it); the old key stays in place",
                    key.access_key_id,
                    bound.as_secs()
                )));
            }
            Err(e) => return Err(e),
        }
    }
}

/// `TAPCRED_ROTATE_PROOF_SECONDS` or the default.
pub fn proof_seconds(env: &dyn crate::env::EnvLookup) -> Result<u64> {
    match env.var(PROOF_SECONDS_ENV).filter(|v| !v.trim().is_empty()) {
        None => Ok(DEFAULT_PROOF_SECONDS),
        Some(v) => v
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|n| (1..=600).contains(n))
            .ok_or_else(|| {
                Error::config(format!(
                    "{PROOF_SECONDS_ENV} = {v:?} is not a number of seconds between 1 and 600 (how long rotate waits for a new key to work); fix or unset it"
                ))
            }),
    }
}

/// Put `key` where the profile's key lives; returns how to put the old one back.
fn put_key(s: &Setup<'_>, key: &Credentials) -> Result<Previous> {
    match &s.store {
        Store::File { path } => {
            let edit = ProfileEdit::new(s.signer.clone())
                .set("aws_access_key_id", key.access_key_id.clone())
                .set_secret(
                    "aws_secret_access_key",
                    secrecy::SecretString::from(key.secret().to_owned()),
                )
                .without_backup();
            let receipt = editor::apply_edits(path, AwsFile::Credentials, &[edit])?;
            Ok(Previous::File(Box::new(receipt)))
        }
        Store::Vault { store, unlocked } => {
            let name = EntryName::access_key(s.signer.clone());
            let old = Secret::AccessKey {
                access_key_id: s.current.access_key_id.clone(),
                secret_access_key: Zeroizing::new(s.current.secret().to_owned()),
            };
            let new = Secret::AccessKey {
                access_key_id: key.access_key_id.clone(),
                secret_access_key: Zeroizing::new(key.secret().to_owned()),
            };
            unlocked.change(store, |v| v.put(name, &new))?;
            Ok(Previous::Vault(old))
        }
    }
}

fn restore_key(s: &Setup<'_>, prev: &Previous) -> Result<()> {
    match (prev, &s.store) {
        (Previous::File(receipt), _) => receipt.restore(),
        (Previous::Vault(old), Store::Vault { store, unlocked }) => {
            let name = EntryName::access_key(s.signer.clone());
            unlocked.change(store, |v| v.put(name, old)).map(|_| ())
        }
        _ => Err(Error::internal("the old key's place is not this run's")),
    }
}

/// The key as stored now, read back from the file or the vault.
fn read_stored(s: &Setup<'_>) -> Result<Credentials> {
    match &s.store {
        Store::File { .. } => {
            let profiles = Profiles::load(&s.files)?;
            let r = profiles.resolve(&s.signer, s.ctx.env)?;
            Ok(crate::sts::base_credentials(&r.base))
        }
        Store::Vault { store, unlocked } => {
            match unlocked
                .read(store)?
                .get(&EntryName::access_key(s.signer.clone()))?
            {
                Secret::AccessKey {
                    access_key_id,
                    secret_access_key,
                } => Ok(Credentials::new(
                    access_key_id,
                    secret_access_key.to_string(),
                    None,
                    None,
                )),
                Secret::TotpSeed(_) => Err(Error::internal("the vault entry is not an access key")),
            }
        }
    }
}

/// The MFA session made with the old key, cached under its identity, moves under the new
/// key's identity with its own expiry (the next command needs no tap); nothing stays under
/// the old identity's key for it.
fn move_mfa_session(s: &Setup<'_>, new_id: &str) {
    let old_identity = cache::key_identity(&s.current.access_key_id);
    let new_identity = cache::key_identity(new_id);
    let key_for = |identity: &str| {
        engine::mfa_session_key(&s.mfa_profile, &s.sts_target, s.session_seconds, identity)
    };
    let (Some(old_key), Some(new_key)) = (key_for(&old_identity), key_for(&new_identity)) else {
        return;
    };
    if let Some(entry) = s.cache.get(&old_key, Duration::ZERO) {
        s.cache.put(&new_key, &entry, s.ctx.ui);
        s.cache.remove(&old_key);
    }
    if let Store::Vault { .. } = s.store {
        // Keys in the vault are known by the sealed entry's stamp: record the new one's
        // identity so the next command finds the moved session without an unlock.
        let fresh = VaultSession::from_env(s.ctx.env);
        if let Ok(Some(stamp)) = fresh.sealed_digest(&EntryName::access_key(s.signer.clone())) {
            s.cache.remember_identity(&stamp, &new_identity, s.ctx.ui);
        }
    }
}

/// `rotate --resume`: the new key in place → finish retiring the old one; not in place →
/// delete the keys this rotate made. Opens a new MFA session (one tap).
fn resume(
    pending: &journal::Pending,
    args: &Args,
    profile: &str,
    ctx: &Ctx<'_>,
    out: &mut dyn Write,
) -> Result<i32> {
    let ui = ctx.ui;
    let mut journal = Journal::resume(pending)?;
    let record = journal.record().clone();
    let text = |f: &str| record.text(step::BEGIN, f).map(str::to_owned);
    let (Some(old_id), Some(user)) = (text("old_key_id"), text("user")) else {
        // Nothing was done before BEGIN was complete.
        journal.close()?;
        write_line(
            out,
            &format!(
                "profile \"{}\": the interrupted rotate had not begun; nothing to do",
                record.subject
            ),
        )?;
        return Ok(0);
    };
    let keep_old = record
        .step(step::BEGIN)
        .and_then(|s| s.data.get("keep_old"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let new_id = record.text(step::CREATED, "new_key_id").map(str::to_owned);
    let files = AwsFiles::from_env(ctx.env);
    let profiles = Profiles::load(&files)?;
    let resolved = profiles.resolve(profile, ctx.env)?;
    let s = setup(args, profile, &resolved, files, &profiles, ctx)?;
    if s.user != user {
        return Err(Error::config(format!(
            "profile \"{}\": the interrupted rotate was for IAM user {user}, and the profile's keys now belong to {}; check the profile, then remove the journal {}",
            s.signer,
            s.user,
            journal.path().display()
        )));
    }
    let in_place = new_id.as_deref() == Some(s.current.access_key_id.as_str());
    ui.info(&format!(
        "rotate --resume: the journal's last step is \"{}\"; {} holds key {}",
        record
            .steps
            .last()
            .map(|x| x.name.as_str())
            .unwrap_or("none"),
        s.store.describe(),
        s.current.access_key_id
    ));
    if in_place {
        let new_id = s.current.access_key_id.clone();
        let interrupt = Interrupt::new();
        prove(&s, &s.current, &interrupt)?;
        drop_old_mfa_session(&s, &old_id);
        if !record.has(step::STORED) {
            journalled::step(&mut journal, ctx.env, step::STORED, Value::Null)?;
        }
        finish_old_key(&s, &mut journal, &old_id, keep_old, &new_id)?;
        journal.close()?;
        write_line(
            out,
            &format!(
                "profile \"{}\": the interrupted rotate is finished: {new_id} in {}; the old key {old_id} is {}",
                s.signer,
                s.store.describe(),
                if keep_old { "deactivated" } else { "deleted" }
            ),
        )?;
        return Ok(0);
    }
    if s.current.access_key_id != old_id {
        return Err(Error::config(format!(
            "profile \"{}\": it holds neither the old key {old_id} nor the new one of the interrupted rotate; check the profile, then remove the journal {}",
            s.signer,
            journal.path().display()
        )));
    }
    remove_strangers(&s.iam, &s.mfa_creds, &s.user, &keys_before(&record), ui)?;
    journal.close()?;
    write_line(
        out,
        &format!(
            "profile \"{}\": the interrupted rotate is undone; the old key {old_id} is in place and unchanged",
            s.signer
        ),
    )?;
    Ok(0)
}

/// When this process opened its session with the new key already (`--resume`): nothing to
/// move, the old identity's MFA session is dropped.
fn drop_old_mfa_session(s: &Setup<'_>, old_id: &str) {
    if let Some(old_key) = engine::mfa_session_key(
        &s.mfa_profile,
        &s.sts_target,
        s.session_seconds,
        &cache::key_identity(old_id),
    ) {
        s.cache.remove(&old_key);
    }
}

fn ids(keys: &[AccessKeyInfo]) -> String {
    if keys.is_empty() {
        return "it has none".to_owned();
    }
    let v: Vec<&str> = keys.iter().map(|k| k.access_key_id.as_str()).collect();
    format!("it has {}", v.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proof_bound_is_checked() {
        use std::collections::HashMap;
        let env = |v: &str| HashMap::from([(PROOF_SECONDS_ENV.to_owned(), v.to_owned())]);
        assert_eq!(
            proof_seconds(&HashMap::<String, String>::new()).unwrap(),
            60
        );
        assert_eq!(proof_seconds(&env("5")).unwrap(), 5);
        for bad in ["0", "601", "soon"] {
            let e = proof_seconds(&env(bad)).unwrap_err();
            assert!(e.message().contains(PROOF_SECONDS_ENV), "{e}");
        }
    }
}
