//! `tapcred enroll`: a new virtual MFA device for the IAM user whose long-term keys the
//! profile's chain starts from, with its seed going straight from IAM into the YubiKey's OATH
//! applet (or a new 0600 seed file with `--to file`, or tapcred's vault with `--to vault`),
//! enabled with two consecutive codes read from there, written into the profile, and proven
//! with one STS call.
//!
//! Steps: GetCallerIdentity (user, account) → checks of the destination (key present and
//! unlocked, account name free; or the seed file new) → the device name free in IAM
//! (ListMFADevices, ListVirtualMFADevices) → CreateVirtualMFADevice → PUT (or the
//! seed file) → two consecutive codes (the second in the next 30 s window) → EnableMFADevice →
//! `mfa_serial` (and `tapcred_oath_account` when the automatic matching would not find the
//! account) into the profile → one engine call (GetSessionToken/AssumeRole with a fresh code:
//! the two windows sent to IAM are in the step ledger, so they are never sent to STS).
//!
//! Failure: every step is recorded in a journal (`undo.rs`) before it is taken. A failure
//! after CreateVirtualMFADevice (an error, a panic, Ctrl-C, SIGTERM, SIGHUP) runs the undo,
//! which reads IAM's real state first and never removes the seed of a device that is or may
//! be enabled; what it cannot undo stays in the journal and is printed as commands. A run
//! killed outright leaves the journal: the next `enroll` of the profile stops and says so,
//! `doctor` lists it, and `enroll --undo` undoes it the same way.
//!
//! The seed: decoded from IAM's answer into a zeroizing buffer, sent in the PUT APDU (or
//! written to the seed file, or sealed into the vault), dropped. `--to vault` unlocks the
//! vault once, before the device is created (the one touch); the unlocker's output is kept
//! in memory so the seed is stored, and on a failure taken out again, without another touch. Never printed, logged or passed in argv.

mod undo;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::cache::SessionCache;
use crate::commands::Ctx;
use crate::credentials::Credentials;
use crate::engine::{self, Engine, MIN_SECONDS_LEFT, Options, plan_code_time};
use crate::error::{Error, Result};
use crate::iam::{Iam, IamTarget};
use crate::journal::{self, BeginError, Journal};
use crate::profile::editor::{self, AwsFile, EditReceipt, ProfileEdit};
use crate::profile::{AwsFiles, Mfa, Profiles};
use crate::sts::{CallContext, Sts, StsApi, StsTarget};
use crate::token::device::Backend;
use crate::token::oath::enroll::{EnrollKey, MAX_NAME_LEN};
use crate::token::oath::{OathType, matching};
use crate::token::pcsc::PcscBackend;
use crate::token::software::SoftwareSource;
use crate::token::{self, Code, TokenSettings, TokenSource};
use crate::ui::Ui;
use crate::vault::{EntryName, Secret, VaultSession, VaultStore};

use super::vault::Unlocked;
use undo::{DeviceState, Outcome, ProfileUndo, Progress, SeedPlace, step};

/// Exit code after an interrupted enroll (128 + SIGINT), once the rollback ran.
pub const EXIT_INTERRUPTED: i32 = 130;

/// Where the seed goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Destination {
    /// The YubiKey's OATH applet.
    #[default]
    Oath,
    /// A new private seed file (headless use; `tapcred_totp_secret_file`).
    File,
    /// tapcred's vault (`tapcred vault init` first; `tapcred_token = vault`).
    Vault,
}

impl Destination {
    fn word(self) -> &'static str {
        match self {
            Destination::Oath => "oath",
            Destination::File => "file",
            Destination::Vault => "vault",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Args {
    pub profile: String,
    /// The OATH account requires a touch for every code.
    pub touch: bool,
    /// The IAM device name (default: the IAM user name).
    pub device_name: Option<String>,
    pub to: Destination,
    /// Which YubiKey when several are plugged in.
    pub yubikey_serial: Option<u32>,
    /// `--to file`: where (default: `tapcred-PROFILE.seed` beside the config file).
    pub seed_file: Option<PathBuf>,
    /// Undo what an interrupted enroll of this profile left (its journal), reading IAM's
    /// state first.
    pub undo: bool,
    /// Finish what an interrupted enroll of this profile left: enable the device (unless
    /// IAM already has), write the profile, prove it.
    pub resume: bool,
}

/// Set when the person asks to stop (Ctrl-C, SIGTERM, SIGHUP): the current step finishes,
/// then everything done so far is undone.
#[derive(Clone, Default)]
pub struct Interrupt(Arc<AtomicBool>);

impl Interrupt {
    pub fn new() -> Self {
        Self::default()
    }

    /// A flag set by the process's Ctrl-C handler (installed here, for this command).
    pub fn install() -> Self {
        let i = Interrupt::new();
        let flag = i.0.clone();
        if let Err(e) = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)) {
            tracing::warn!(error = %e, "cannot install the Ctrl-C handler");
        }
        i
    }

    pub fn raise(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    fn check(&self) -> Result<()> {
        if self.is_set() {
            Err(Error::usage("interrupted"))
        } else {
            Ok(())
        }
    }
}

pub fn run(args: &Args, ctx: &Ctx<'_>, out: &mut dyn Write) -> Result<i32> {
    let interrupt = Interrupt::install();
    run_with(args, ctx, Arc::new(PcscBackend::new()), &interrupt, out)
}

/// Where the seed is going, checked (and the key or vault opened) before the device is
/// created.
enum Dest {
    Oath {
        name: String,
        key: EnrollKey,
    },
    File {
        path: PathBuf,
    },
    /// The vault's place and the unlocker output that opened it.
    Vault {
        store: VaultStore,
        unlocked: Unlocked,
    },
}

/// The command that lists what an interrupted change left, and how to finish it (for
/// `doctor`).
pub fn pending_fix(kind: &str, subject: &str) -> String {
    match kind {
        undo::KIND => format!(
            "run `tapcred enroll --profile {p} --resume` to finish it or `tapcred enroll --profile {p} --undo` to remove the device and seed it made (both read IAM's state first)",
            p = shell_word(subject)
        ),
        "import-keys" => "run `tapcred vault import-keys` again".to_owned(),
        crate::commands::rotate::KIND => crate::commands::rotate::pending_fix(subject),
        _ => "run the same tapcred command again".to_owned(),
    }
}

/// [`run`] with the YubiKey backend and the interrupt flag given (tests pass virtual keys).
pub fn run_with(
    args: &Args,
    ctx: &Ctx<'_>,
    backend: Arc<dyn Backend>,
    interrupt: &Interrupt,
    out: &mut dyn Write,
) -> Result<i32> {
    let (env, ui) = (ctx.env, ctx.ui);
    let profile = args.profile.as_str();
    let journal_dir = journal::default_dir(env).ok_or_else(|| {
        Error::config(
            "enroll keeps a journal of its steps in tapcred's data folder, and none is known; set HOME (or XDG_DATA_HOME)",
        )
    })?;
    let pending = Journal::find(&journal_dir, undo::KIND, profile);
    if args.resume {
        return match pending {
            Some(p) => resume_pending(&p, args, ctx, backend, interrupt, out),
            None => Err(Error::usage(format!(
                "profile \"{profile}\": no interrupted enroll to resume; run `tapcred enroll --profile {}` to enroll",
                shell_word(profile)
            ))),
        };
    }
    if args.undo {
        return match pending {
            Some(p) => undo_pending(&p, args, ctx, backend, out),
            None => {
                writeln!(out, "profile \"{profile}\": no interrupted enroll to undo")
                    .map_err(|e| Error::io(format!("cannot write to stdout: {e}")))?;
                Ok(0)
            }
        };
    }
    if let Some(p) = pending {
        let last = p
            .record
            .as_ref()
            .ok()
            .and_then(|r| r.steps.last().map(|s| s.name.clone()))
            .unwrap_or_else(|| "unknown".into());
        return Err(Error::usage(format!(
            "profile \"{profile}\": an earlier enroll was interrupted (last step: {last}; journal {}); {}",
            p.path.display(),
            pending_fix(undo::KIND, profile)
        )));
    }
    let files = AwsFiles::from_env(env);
    let profiles = Profiles::load(&files)?;
    let resolved = profiles.resolve(profile, env)?;
    let signer = resolved.base.origin.clone();
    if resolved.base.session_token.is_some() {
        return Err(Error::config(format!(
            "profile \"{profile}\": the keys of \"{signer}\" are temporary (they have a session token); enroll needs the long-term access key of an IAM user"
        )));
    }
    // `--to vault` unlocks the vault first, once: the seed goes in with that unlock, and
    // the session below replays it, so keys kept in the vault (`tapcred_access_key = vault`)
    // and the proof cost no second touch. Otherwise keys in the vault cost one unlock here,
    // shared with the proof.
    let mut vault = None;
    let session = match args.to {
        Destination::Vault => {
            let store = super::vault::store(ctx)?;
            let file = store.read()?.ok_or_else(|| {
                Error::config(format!(
                    "no vault at {}; create one with `tapcred vault init --unlock otp`, then enroll again",
                    store.path().display()
                ))
            })?;
            ui.info(&format!(
                "enroll: unlocking the vault {} (the seed will be sealed in it)",
                store.path().display()
            ));
            let serial = args.yubikey_serial.or(resolved.token.yubikey_serial);
            let unlocked = super::vault::unlock_with(&file, serial, env, ui)?;
            let session = unlocked.session(env);
            vault = Some((store, unlocked));
            session
        }
        _ => VaultSession::from_env(env),
    };
    let session = Rc::new(session);
    let creds = engine::vault_base_keys(&session, &resolved.base, env, ui)?;
    let sts_target = StsTarget::for_profile(&resolved, env);
    let iam_target = IamTarget::for_profile(&profiles, profile, &sts_target, env)?;
    let call = CallContext {
        profile,
        signer: &signer,
    };
    let sts = Sts::new(sts_target.clone())?;
    let who = sts.get_caller_identity(&creds, call)?;
    let (account, user) = iam_user(&who.arn).ok_or_else(|| {
        Error::config(format!(
            "profile \"{profile}\": the keys of profile \"{signer}\" act as {}, not as an IAM user; MFA devices belong to IAM users, so enroll needs an IAM user's long-term keys",
            who.arn
        ))
    })?;
    ui.info(&format!(
        "enroll: the keys of profile \"{signer}\" belong to IAM user {user} in account {account}"
    ));
    let device_name = args.device_name.clone().unwrap_or_else(|| user.clone());
    check_device_name(&device_name)?;
    let expected_serial = format!("arn:aws:iam::{account}:mfa/{device_name}");

    let dest = match (args.to, vault) {
        (Destination::Oath, _) => {
            let settings = TokenSettings {
                yubikey_serial: args.yubikey_serial.or(resolved.token.yubikey_serial),
                profile: profile.to_owned(),
                ..TokenSettings::default()
            };
            let key = EnrollKey::open(backend, env, &settings, ui)?;
            let name = oath_name(&expected_serial, &device_name)?;
            key.check_new(&name, args.touch)?;
            ui.info(&format!(
                "enroll: {} is ready; the seed will go straight into its OATH applet as \"{name}\"{}",
                key.label(),
                if args.touch { " (touch required)" } else { "" }
            ));
            Dest::Oath { name, key }
        }
        (Destination::File, _) => {
            let path = match &args.seed_file {
                // The config file names it from anywhere: an absolute path.
                Some(p) => std::path::absolute(p).map_err(|e| {
                    Error::usage(format!(
                        "seed file {}: cannot make the path absolute ({e}); give an absolute --seed-file",
                        p.display()
                    ))
                })?,
                None => {
                    let dir = files.config.parent().unwrap_or(Path::new("."));
                    dir.join(format!("tapcred-{profile}.seed"))
                }
            };
            if std::fs::symlink_metadata(&path).is_ok() {
                return Err(Error::usage(format!(
                    "seed file {} already exists; enroll writes a new file only: choose another --seed-file or remove it",
                    path.display()
                )));
            }
            Dest::File { path }
        }
        (Destination::Vault, Some((store, unlocked))) => {
            let name = EntryName::seed(expected_serial.clone());
            if store
                .read()?
                .is_some_and(|f| f.entry_names().any(|n| *n == name))
            {
                return Err(Error::usage(format!(
                    "the vault {} already holds a seed for {expected_serial}; remove it (`tapcred vault remove --mfa-serial {expected_serial}`) or choose another --device-name",
                    store.path().display()
                )));
            }
            Dest::Vault { store, unlocked }
        }
        (Destination::Vault, None) => {
            return Err(Error::internal(
                "enroll --to vault: the vault was not opened",
            ));
        }
    };
    interrupt.check()?;

    let cache = SessionCache::open_default(env, ui);
    let iam = Iam::new(iam_target, &signer)?;
    // A device of that name made before this run is not ours to remove: refuse now, while
    // nothing has been made. After this, a device of that name is the one this run made.
    match undo::device_state(&iam, &creds, &user, &expected_serial)? {
        DeviceState::Absent => {}
        _ => {
            return Err(Error::auth(format!(
                "IAM already has a virtual MFA device {expected_serial} (perhaps your phone's): keep it and choose another name with --device-name NAME"
            )));
        }
    }
    let mut journal = match Journal::begin(&journal_dir, undo::KIND, profile) {
        Ok(j) => j,
        Err(BeginError::Io(e)) => return Err(e),
        Err(BeginError::Pending(p)) => {
            return Err(Error::usage(format!(
                "profile \"{profile}\": another enroll of this profile is running or was interrupted (journal {}); {}",
                p.path.display(),
                pending_fix(undo::KIND, profile)
            )));
        }
    };
    journal.step(
        step::CREATE,
        json!({
            "user": user,
            "signer": signer,
            "account": account,
            "serial": expected_serial,
            "device_name": device_name,
            "to": args.to.word(),
        }),
    )?;
    let mut job = Job {
        args,
        ctx,
        interrupt,
        iam: &iam,
        creds: &creds,
        user: &user,
        account: &account,
        files: &files,
        profiles: &profiles,
        cache: &cache,
        dest,
        session,
        journal,
        receipt: None,
        resumed: false,
    };
    let result = catching_panics(|| job.enroll(&device_name));
    conclude(job, result, out)
}

/// After the flow: close the journal and print the result, or undo (reading IAM's state)
/// and keep the journal when something stays.
fn conclude(job: Job<'_>, result: Result<Done>, out: &mut dyn Write) -> Result<i32> {
    let ui = job.ctx.ui;
    let profile = job.args.profile.as_str();
    match result {
        Ok(done) => {
            if let Err(e) = job.journal.close() {
                ui.warn(&format!("enroll: {e}"));
            }
            writeln!(
                out,
                "profile \"{profile}\": mfa_serial = {} ({}); proven: {}",
                done.serial, done.where_, done.arn
            )
            .map_err(|e| Error::io(format!("cannot write to stdout: {e}")))?;
            Ok(0)
        }
        Err(err) => {
            let interrupted = job.interrupt.is_set();
            if interrupted {
                ui.warn("enroll interrupted; undoing what was done");
            } else {
                ui.warn(&format!("enroll failed: {err}"));
                ui.warn("undoing what was done");
            }
            let journal = job.journal;
            let progress = Progress::from_record(journal.record())?;
            // A resumed run restores what the journal says the profile was before the
            // first run's edit; this run's own edit restores byte for byte.
            let profile_undo = match (&job.receipt, job.resumed) {
                (Some(r), false) => Some(ProfileUndo::Receipt(r.as_ref())),
                _ => progress
                    .profile_previous
                    .clone()
                    .map(|previous| ProfileUndo::Journal {
                        config: job.files.config.clone(),
                        previous,
                        backup: progress.profile_backup.clone(),
                    }),
            };
            let dest = &job.dest;
            let outcome = undo::undo(
                job.iam,
                job.creds,
                ui,
                &progress,
                profile_undo,
                &mut |place| remove_seed(dest, place),
            );
            finish_undo(journal, outcome, &progress, ui);
            if interrupted {
                Ok(EXIT_INTERRUPTED)
            } else {
                Err(err)
            }
        }
    }
}

/// Close the journal after a complete undo, or keep it and print what is left to do.
fn finish_undo(journal: Journal, outcome: Outcome, p: &Progress, ui: &dyn Ui) -> bool {
    match outcome {
        Outcome::Clean => {
            if let Err(e) = journal.close() {
                ui.warn(&format!("enroll: {e}"));
            }
            ui.info("enroll: everything was undone; nothing is left behind");
            true
        }
        Outcome::Incomplete(manual) => {
            ui.warn(&format!(
                "enroll: could not undo everything (the journal {} keeps track; `{}` tries again); clean up by hand:",
                journal.path().display(),
                p.undo_cmd()
            ));
            for m in &manual {
                ui.warn(&format!("  {m}"));
            }
            false
        }
    }
}

/// Take the seed out of the place this run put it, with the key or vault it opened.
fn remove_seed(dest: &Dest, place: &SeedPlace) -> Result<()> {
    match (dest, place) {
        (Dest::Oath { key, .. }, SeedPlace::Oath { name, .. }) => delete_oath_account(key, name),
        (Dest::Vault { store, unlocked }, SeedPlace::Vault { serial }) => {
            vault_change(store, unlocked, |v| {
                v.remove(&EntryName::seed(serial.clone()));
                Ok(())
            })
            .map(|_| ())
        }
        (_, SeedPlace::File(path)) => remove_seed_file(path),
        _ => Err(Error::internal(
            "the journal's seed place is not this run's destination",
        )),
    }
}

/// Delete the OATH account `name` if it is on the key (the PUT may not have happened).
fn delete_oath_account(key: &EnrollKey, name: &str) -> Result<()> {
    if key.accounts()?.iter().any(|n| n == name) {
        key.delete(name)?;
    }
    Ok(())
}

fn remove_seed_file(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("cannot remove {}: {e}", path.display()))),
    }
}

/// `tapcred enroll --resume`: finish what an interrupted run left, from IAM's real state and
/// the seed where the journal says it went. A failure undoes it, as in the first run.
fn resume_pending(
    pending: &journal::Pending,
    args: &Args,
    ctx: &Ctx<'_>,
    backend: Arc<dyn Backend>,
    interrupt: &Interrupt,
    out: &mut dyn Write,
) -> Result<i32> {
    let (env, ui) = (ctx.env, ctx.ui);
    let journal = Journal::resume(pending)?;
    let progress = Progress::from_record(journal.record())?;
    let files = AwsFiles::from_env(env);
    let profiles = Profiles::load(&files)?;
    let signer_profile = profiles.resolve(&progress.signer, env)?;
    let state_of = |iam: &Iam, creds: &Credentials| {
        undo::device_state(iam, creds, &progress.user, &progress.serial).map_err(Error::from)
    };
    let cannot = |why: &str| {
        Error::usage(format!(
            "profile \"{}\": the interrupted enroll cannot be finished ({why}); run `{}`, then enroll again",
            progress.profile,
            progress.undo_cmd()
        ))
    };
    let Some(place) = progress.seed.clone() else {
        return Err(cannot("the seed was never stored"));
    };
    let mut resume_args = args.clone();
    resume_args.resume = false;
    let (dest, source, where_, oath_account, session): (
        Dest,
        Box<dyn TokenSource>,
        String,
        Option<String>,
        VaultSession,
    ) = match &place {
        SeedPlace::File(path) => {
            let text = Zeroizing::new(
                std::fs::read_to_string(path)
                    .map_err(|e| Error::config(format!("seed file {}: {e}", path.display())))?,
            );
            let origin = format!("seed file {}", path.display());
            let source = SoftwareSource::from_seed(text.trim(), &origin)?;
            resume_args.to = Destination::File;
            resume_args.seed_file = Some(path.clone());
            (
                Dest::File { path: path.clone() },
                Box::new(source),
                origin,
                None,
                VaultSession::from_env(env),
            )
        }
        SeedPlace::Oath { name, key_serial } => {
            let touch = journal
                .record()
                .step(step::STORE_SEED)
                .and_then(|s| s.data.get("touch"))
                .and_then(Value::as_bool)
                .unwrap_or(false);
            resume_args.to = Destination::Oath;
            resume_args.touch = touch;
            let settings = TokenSettings {
                yubikey_serial: key_serial.or(args.yubikey_serial),
                profile: progress.profile.clone(),
                ..TokenSettings::default()
            };
            let key = EnrollKey::open(backend, env, &settings, ui)?;
            if !key.accounts()?.iter().any(|n| n == name) {
                return Err(cannot(&format!(
                    "the OATH account \"{name}\" is not on {}",
                    key.label()
                )));
            }
            let source = Box::new(key.source(name, touch));
            let where_ = format!("{}, OATH account \"{name}\"", key.label());
            (
                Dest::Oath {
                    name: name.clone(),
                    key,
                },
                source,
                where_,
                Some(name.clone()),
                VaultSession::from_env(env),
            )
        }
        SeedPlace::Vault { serial } => {
            resume_args.to = Destination::Vault;
            let store = super::vault::store(ctx)?;
            let file = store
                .read()?
                .ok_or_else(|| cannot(&format!("no vault at {}", store.path().display())))?;
            let unlocked = super::vault::unlock_with(&file, args.yubikey_serial, env, ui)?;
            let Ok(Secret::TotpSeed(seed)) = unlocked
                .reopen(&file)?
                .get(&EntryName::seed(serial.clone()))
            else {
                return Err(cannot("the vault holds no seed for the device"));
            };
            let text = Zeroizing::new(data_encoding::BASE32_NOPAD.encode(&seed));
            let origin = format!("the vault {}", store.path().display());
            let source = SoftwareSource::from_seed(&text, &origin)?;
            let session = unlocked.session(env);
            (
                Dest::Vault { store, unlocked },
                Box::new(source),
                origin,
                None,
                session,
            )
        }
    };
    let session = Rc::new(session);
    let creds = engine::vault_base_keys(&session, &signer_profile.base, env, ui)?;
    let sts_target = StsTarget::for_profile(&signer_profile, env);
    let iam_target = IamTarget::for_profile(&profiles, &progress.signer, &sts_target, env)?;
    let iam = Iam::new(iam_target, &progress.signer)?;
    let enabled = match state_of(&iam, &creds)? {
        DeviceState::Absent => return Err(cannot("IAM has no such device")),
        DeviceState::Unassigned => false,
        DeviceState::Enabled => true,
    };
    ui.info(&format!(
        "enroll --resume: device {} {}; the seed is in {}",
        progress.serial,
        if enabled {
            "is enabled in IAM"
        } else {
            "exists in IAM, not enabled yet"
        },
        place.describe()
    ));
    let cache = SessionCache::open_default(env, ui);
    let account = journal
        .record()
        .text(step::CREATE, "account")
        .unwrap_or_default()
        .to_owned();
    let mut job = Job {
        args: &resume_args,
        ctx,
        interrupt,
        iam: &iam,
        creds: &creds,
        user: &progress.user,
        account: &account,
        files: &files,
        profiles: &profiles,
        cache: &cache,
        dest,
        session,
        journal,
        receipt: None,
        resumed: true,
    };
    let serial = progress.serial.clone();
    let result = catching_panics(|| job.finish(serial, source, where_, oath_account, enabled));
    conclude(job, result, out)
}

/// `tapcred enroll --undo`: what an interrupted run left, undone after reading IAM's state.
/// Opens the YubiKey or the vault only when the journal says a seed went there.
fn undo_pending(
    pending: &journal::Pending,
    args: &Args,
    ctx: &Ctx<'_>,
    backend: Arc<dyn Backend>,
    out: &mut dyn Write,
) -> Result<i32> {
    let (env, ui) = (ctx.env, ctx.ui);
    if let Err(e) = &pending.record {
        return Err(Error::io(format!(
            "the enroll journal {} cannot be read ({e}); check IAM by hand (aws iam list-virtual-mfa-devices, aws iam list-mfa-devices --user-name USER), delete the device and seed enroll made, then remove the journal",
            pending.path.display()
        )));
    }
    let journal = Journal::resume(pending)?;
    let progress = Progress::from_record(journal.record())?;
    ui.info(&format!(
        "enroll --undo: an enroll of profile \"{}\" stopped after step \"{}\"; device {}",
        progress.profile, progress.last_step, progress.serial
    ));
    let files = AwsFiles::from_env(env);
    let profiles = Profiles::load(&files)?;
    let resolved = profiles.resolve(&progress.signer, env)?;
    let session = VaultSession::from_env(env);
    let creds = engine::vault_base_keys(&session, &resolved.base, env, ui)?;
    let sts_target = StsTarget::for_profile(&resolved, env);
    let iam_target = IamTarget::for_profile(&profiles, &progress.signer, &sts_target, env)?;
    let iam = Iam::new(iam_target, &progress.signer)?;
    let profile_undo = progress
        .profile_previous
        .clone()
        .map(|previous| ProfileUndo::Journal {
            config: files.config.clone(),
            previous,
            backup: progress.profile_backup.clone(),
        });
    let mut remove = |place: &SeedPlace| -> Result<()> {
        match place {
            SeedPlace::File(path) => remove_seed_file(path),
            SeedPlace::Oath { name, key_serial } => {
                let settings = TokenSettings {
                    yubikey_serial: key_serial.or(args.yubikey_serial),
                    profile: progress.profile.clone(),
                    ..TokenSettings::default()
                };
                let key = EnrollKey::open(backend.clone(), env, &settings, ui)?;
                delete_oath_account(&key, name)
            }
            SeedPlace::Vault { serial } => {
                let store = super::vault::store(ctx)?;
                let name = EntryName::seed(serial.clone());
                let Some(file) = store.read()? else {
                    return Ok(());
                };
                if !file.entry_names().any(|n| *n == name) {
                    return Ok(());
                }
                let unlocked = super::vault::unlock_with(&file, args.yubikey_serial, env, ui)?;
                vault_change(&store, &unlocked, |v| {
                    v.remove(&name);
                    Ok(())
                })
                .map(|_| ())
            }
        }
    };
    let outcome = undo::undo(&iam, &creds, ui, &progress, profile_undo, &mut remove);
    if finish_undo(journal, outcome, &progress, ui) {
        writeln!(
            out,
            "profile \"{}\": the interrupted enroll is undone ({} removed)",
            progress.profile, progress.serial
        )
        .map_err(|e| Error::io(format!("cannot write to stdout: {e}")))?;
        Ok(0)
    } else {
        Err(Error::network(format!(
            "profile \"{}\": the interrupted enroll is not fully undone; run `{}` again when IAM answers, or clean up by hand as printed above",
            progress.profile,
            progress.undo_cmd()
        )))
    }
}

/// Run `f`, turning a panic on this thread into an internal error (naming where it
/// happened, never its payload), so the undo still runs. tapcred's panic hook exits the
/// process; for the duration of `f` this thread's panics only record where they happened,
/// other threads' go to that hook.
fn catching_panics<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    use std::panic::{self, AssertUnwindSafe};
    type Hook = dyn Fn(&panic::PanicHookInfo<'_>) + Send + Sync;
    let me = std::thread::current().id();
    let at: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let prev: Arc<Hook> = Arc::from(panic::take_hook());
    let for_others = prev.clone();
    let slot = at.clone();
    panic::set_hook(Box::new(move |info| {
        if std::thread::current().id() != me {
            return for_others(info);
        }
        let place = info
            .location()
            .map(|l| format!(" [at {}:{}]", l.file(), l.line()));
        if let Ok(mut g) = slot.lock() {
            *g = place;
        }
    }));
    let r = panic::catch_unwind(AssertUnwindSafe(f));
    drop(panic::take_hook());
    panic::set_hook(Box::new(move |info| prev(info)));
    r.unwrap_or_else(|_| {
        let at = at.lock().ok().and_then(|g| g.clone()).unwrap_or_default();
        Err(Error::internal(format!(
            "internal error during enroll (a bug in tapcred; details withheld because they could contain secrets){at}; please report it with the command you ran"
        )))
    })
}

/// Record `name` in `journal` (durable before the step is taken); a field-level borrow, so
/// the destination can stay borrowed meanwhile.
fn record(
    journal: &mut Journal,
    env: &dyn crate::env::EnvLookup,
    name: &str,
    data: Value,
) -> Result<()> {
    journal.step(name, data)?;
    test_hook(env, name);
    Ok(())
}

/// Test seam, debug builds only: `TAPCRED_TEST_ENROLL_HOOK=stall:STEP` stops after the
/// journal recorded STEP (until killed), `panic:STEP` panics there.
#[cfg(debug_assertions)]
fn test_hook(env: &dyn crate::env::EnvLookup, step: &str) {
    let Some(hook) = env.var("TAPCRED_TEST_ENROLL_HOOK") else {
        return;
    };
    match hook.split_once(':') {
        Some(("stall", s)) if s == step => {
            eprintln!("enroll: test hook: stalled at {step}");
            loop {
                std::thread::sleep(Duration::from_secs(60));
            }
        }
        Some(("panic", s)) if s == step => panic!("enroll test hook: panic at {step}"),
        _ => {}
    }
}

#[cfg(not(debug_assertions))]
fn test_hook(_env: &dyn crate::env::EnvLookup, _step: &str) {}

/// `arn:aws:iam::ACCT:user[/path]/NAME` → (ACCT, NAME).
fn iam_user(arn: &str) -> Option<(String, String)> {
    let rest = arn.strip_prefix("arn:aws")?;
    let rest = rest.split_once(":iam::")?.1;
    let (account, resource) = rest.split_once(':')?;
    let name = resource.strip_prefix("user/")?.rsplit('/').next()?;
    (!account.is_empty() && !name.is_empty()).then(|| (account.to_owned(), name.to_owned()))
}

fn check_device_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 226
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::usage(format!(
            "device name \"{name}\": IAM allows 1 to 226 characters of letters, digits and _+=,.@-; choose another --device-name"
        )))
    }
}

/// The OATH account name: the `mfa_serial` itself (the aws-vault convention, found by
/// DESIGN.md's matching without `tapcred_oath_account`). AWS's QR label
/// (`Amazon Web Services:NAME@ACCT`) is always longer, so a serial that does not fit the key's
/// 64 bytes means a shorter device name.
fn oath_name(serial: &str, device: &str) -> Result<String> {
    if serial.len() <= MAX_NAME_LEN {
        return Ok(serial.to_owned());
    }
    Err(Error::usage(format!(
        "device name \"{device}\" is too long for a YubiKey account named by its ARN ({} bytes, at most {MAX_NAME_LEN}); choose a --device-name of at most {} characters",
        serial.len(),
        MAX_NAME_LEN + device.len() - serial.len()
    )))
}

struct Done {
    serial: String,
    where_: String,
    arn: String,
}

struct Job<'a> {
    args: &'a Args,
    ctx: &'a Ctx<'a>,
    interrupt: &'a Interrupt,
    iam: &'a Iam,
    creds: &'a Credentials,
    user: &'a str,
    account: &'a str,
    files: &'a AwsFiles,
    profiles: &'a Profiles,
    cache: &'a SessionCache,
    dest: Dest,
    /// This process's vault session (at most one unlock, shared by the signing keys and the
    /// proof).
    session: Rc<VaultSession>,
    /// Every step is recorded here before it is taken.
    journal: Journal,
    /// The profile edit, for restoring the config file byte for byte.
    receipt: Option<Box<EditReceipt>>,
    /// Finishing a run that was interrupted (`--resume`).
    resumed: bool,
}

impl Job<'_> {
    fn ui(&self) -> &dyn Ui {
        self.ctx.ui
    }

    /// Record `name` in the journal (durable before the step is taken).
    fn step(&mut self, name: &str, data: Value) -> Result<()> {
        record(&mut self.journal, self.ctx.env, name, data)
    }

    fn enroll(&mut self, device_name: &str) -> Result<Done> {
        let ui = self.ctx.ui;
        let device = self
            .iam
            .create_virtual_mfa_device(self.creds, device_name)?;
        let serial = device.serial.clone();
        self.step(step::CREATED, json!({ "serial": serial }))?;
        ui.info(&format!("enroll: created virtual MFA device {serial}"));
        self.interrupt.check()?;

        // The seed goes to its place and is dropped.
        let (source, where_, oath_account): (Box<dyn TokenSource>, String, Option<String>) =
            match &self.dest {
                Dest::Oath { name, key } => {
                    let name = if serial.len() <= MAX_NAME_LEN && name != &serial {
                        // IAM put the device somewhere else than expected (a path).
                        serial.clone()
                    } else {
                        name.clone()
                    };
                    let (label, key_serial) = (key.label().to_owned(), key.serial());
                    record(
                        &mut self.journal,
                        self.ctx.env,
                        step::STORE_SEED,
                        json!({ "to": "oath", "name": name, "key_serial": key_serial, "touch": self.args.touch }),
                    )?;
                    key.put(&name, &device.seed, self.args.touch)?;
                    ui.info(&format!(
                        "enroll: seed stored on {label} as OATH account \"{name}\"{} (never shown)",
                        if self.args.touch {
                            ", touch required"
                        } else {
                            ""
                        }
                    ));
                    (
                        Box::new(key.source(&name, self.args.touch)),
                        format!("{label}, OATH account \"{name}\""),
                        Some(name),
                    )
                }
                Dest::File { path } => {
                    let path = path.clone();
                    self.step(
                        step::STORE_SEED,
                        json!({ "to": "file", "path": path.display().to_string() }),
                    )?;
                    let text = Zeroizing::new(format!(
                        "{}\n",
                        data_encoding::BASE32_NOPAD.encode(&device.seed)
                    ));
                    write_seed_file(&path, text.as_bytes()).map_err(|e| {
                        Error::io(format!(
                            "cannot create seed file {}: {e}; choose another --seed-file",
                            path.display()
                        ))
                    })?;
                    ui.info(&format!(
                        "enroll: seed written to {} ({}, never shown)",
                        path.display(),
                        crate::platform::words::PRIVATE_FILE
                    ));
                    let origin = format!("seed file {}", path.display());
                    let text = Zeroizing::new(data_encoding::BASE32_NOPAD.encode(&device.seed));
                    (
                        Box::new(SoftwareSource::from_seed(&text, &origin)?),
                        origin,
                        None,
                    )
                }
                Dest::Vault { store, unlocked } => {
                    record(
                        &mut self.journal,
                        self.ctx.env,
                        step::STORE_SEED,
                        json!({ "to": "vault" }),
                    )?;
                    let name = EntryName::seed(serial.clone());
                    let secret = Secret::TotpSeed(Zeroizing::new(device.seed.to_vec()));
                    let path = vault_change(store, unlocked, |v| v.put(name.clone(), &secret))?;
                    // Read back and decrypt: the seed in the file is the one IAM gave.
                    let back = vault_read(store, unlocked)?.get(&name)?;
                    if back != secret {
                        return Err(Error::internal(format!(
                            "the vault {} read back does not hold the seed just stored",
                            path.display()
                        )));
                    }
                    ui.info(&format!(
                        "enroll: seed sealed in the vault {} (never shown)",
                        path.display()
                    ));
                    let text = Zeroizing::new(data_encoding::BASE32_NOPAD.encode(&device.seed));
                    let origin = format!("the vault {}", path.display());
                    (
                        Box::new(SoftwareSource::from_seed(&text, &origin)?),
                        origin,
                        None,
                    )
                }
            };
        drop(device);
        self.interrupt.check()?;
        self.finish(serial, source, where_, oath_account, false)
    }

    /// From the seed in its place: enable (unless IAM already has), the profile, the proof.
    fn finish(
        &mut self,
        serial: String,
        mut source: Box<dyn TokenSource>,
        where_: String,
        oath_account: Option<String>,
        enabled: bool,
    ) -> Result<Done> {
        let ui = self.ctx.ui;
        let profile = self.args.profile.as_str();
        // Two consecutive codes, each from its own window, recorded in the step ledger.
        let touches = match (self.touch_needed(), enabled) {
            (false, _) => 0,
            (true, false) => 3,
            (true, true) => 1,
        };
        if !enabled {
            let (code1, code2) = self.two_codes(source.as_mut(), &serial, touches)?;
            self.interrupt.check()?;
            self.step(step::ENABLE, Value::Null)?;
            self.iam.enable_mfa_device(
                self.creds,
                self.user,
                &serial,
                &code1.digits,
                &code2.digits,
            )?;
            self.step(step::ENABLED, Value::Null)?;
            ui.info(&format!(
                "enroll: MFA device enabled for IAM user {} in account {}",
                self.user, self.account
            ));
            self.interrupt.check()?;
        }

        // The profile.
        let edit = self.profile_edit(&serial, oath_account.as_deref())?;
        let previous: serde_json::Map<String, Value> = undo::PROFILE_KEYS
            .iter()
            .filter_map(|k| {
                self.profiles
                    .get(profile, k)
                    .map(|v| (k.to_string(), Value::from(v)))
            })
            .collect();
        // A resumed run keeps what the first run recorded: the values before its edit.
        if !self.journal.record().has(step::PROFILE) {
            self.step(step::PROFILE, json!({ "previous": previous }))?;
        }
        let receipt = editor::apply_edits(&self.files.config, AwsFile::Config, &[edit])?;
        let config_path = receipt.path.clone();
        let backup = receipt.backup.as_ref().map(|b| b.display().to_string());
        self.receipt = Some(Box::new(receipt));
        if !self.journal.record().has(step::PROFILE_WRITTEN) {
            self.step(step::PROFILE_WRITTEN, json!({ "backup": backup }))?;
        }
        ui.info(&format!(
            "enroll: wrote mfa_serial into profile \"{profile}\" in {}",
            config_path.display()
        ));
        self.interrupt.check()?;

        // Proof: the profile as written, through the engine (the session is cached).
        if touches > 0 {
            ui.info(&format!(
                "enroll: touch {touches} of {touches} is for a fresh code to prove profile \"{profile}\" works (codes sent to IAM are never sent again)"
            ));
        }
        self.wait_for_fresh_window(&serial, source.period())?;
        self.step(step::PROVE, Value::Null)?;
        let arn = self.prove(source)?;
        ui.info(&format!("enroll: profile \"{profile}\" works: {arn}"));
        Ok(Done {
            serial,
            where_,
            arn,
        })
    }

    fn touch_needed(&self) -> bool {
        matches!(self.dest, Dest::Oath { .. }) && self.args.touch
    }

    /// Wait (interruptibly, with a countdown) until a window after every one used for
    /// `serial` starts with enough time left.
    fn wait_for_fresh_window(&self, serial: &str, period: u64) -> Result<()> {
        let last = self.cache.last_window_end(serial, self.ui());
        let (_, wait) = plan_code_time(now_f64(), last, period, MIN_SECONDS_LEFT);
        if let Some(at) = wait {
            let why = if last.is_some_and(|l| l as f64 > now_f64()) {
                "waiting for the next 30 s code window (a code is used once)"
            } else {
                "waiting for the next 30 s code window (the current one is about to end)"
            };
            self.wait_until(why, crate::clock::unix_to_system(at))?;
        }
        self.interrupt.check()
    }

    /// A countdown that a Ctrl-C ends within a second.
    fn wait_until(&self, what: &str, deadline: SystemTime) -> Result<()> {
        let ui = self.ui();
        if !ui.interactive() {
            let left = deadline
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO);
            ui.info(&format!("{what} ({} s)", left.as_secs_f64().ceil() as u64));
        }
        loop {
            self.interrupt.check()?;
            let now = SystemTime::now();
            let Ok(left) = deadline.duration_since(now) else {
                return Ok(());
            };
            if left.is_zero() {
                return Ok(());
            }
            let step = left.min(Duration::from_secs(1));
            if ui.interactive() {
                ui.wait_until(what, now + step);
            } else {
                std::thread::sleep(left.min(Duration::from_millis(200)));
            }
        }
    }

    /// Code 1 in a window, code 2 in the next one (waiting for it with a countdown).
    fn two_codes(
        &self,
        source: &mut dyn TokenSource,
        serial: &str,
        touches: u32,
    ) -> Result<(Code, Code)> {
        let ui = self.ui();
        let profile = self.args.profile.as_str();
        let say = |n: u32, what: &str| {
            if touches > 0 {
                ui.info(&format!("enroll: touch {n} of {touches} is for {what}"));
            }
        };
        if touches == 0 {
            ui.info("enroll: reading two consecutive codes for EnableMFADevice");
        }
        say(
            1,
            "the first of the two consecutive codes IAM needs to enable the device",
        );
        self.wait_for_fresh_window(serial, source.period())?;
        let mut first = self.read_code(source, serial, profile)?;
        loop {
            self.interrupt.check()?;
            say(2, "the second code, from the next 30 s window");
            self.wait_for_fresh_window(serial, source.period())?;
            let second = self.read_code(source, serial, profile)?;
            if second.window_start == first.window_end {
                return Ok((first, second));
            }
            // The windows are not adjacent (a slow touch, a suspended machine): the newer code
            // becomes the first one.
            tracing::debug!("codes not from adjacent windows; reading another");
            first = second;
        }
    }

    fn read_code(&self, source: &mut dyn TokenSource, serial: &str, profile: &str) -> Result<Code> {
        engine::read_code(self.cache, source, serial, profile, self.ui())
    }

    fn profile_edit(&self, serial: &str, oath_account: Option<&str>) -> Result<ProfileEdit> {
        let profile = self.args.profile.as_str();
        let get = |k: &str| self.profiles.get(profile, k);
        let mut edit = ProfileEdit::new(profile).set("mfa_serial", serial);
        match &self.dest {
            Dest::Oath { key, .. } => {
                let name = oath_account.unwrap_or(serial);
                let auto_finds = {
                    let present = key.accounts()?;
                    let candidates: Vec<matching::Candidate<'_>> = present
                        .iter()
                        .map(|n| matching::Candidate {
                            name: n,
                            kind: OathType::Totp,
                        })
                        .collect();
                    matching::choose(&candidates, None, serial).ok() == Some(name)
                };
                if !auto_finds || get("tapcred_oath_account").is_some() {
                    edit = edit.set("tapcred_oath_account", name);
                }
                if get("tapcred_totp_secret_file").is_some() {
                    edit = edit.remove("tapcred_totp_secret_file");
                }
                if get("tapcred_token").is_some_and(|t| !matches!(t, "auto" | "oath")) {
                    edit = edit.remove("tapcred_token");
                }
            }
            Dest::File { path } => {
                edit = edit.set("tapcred_totp_secret_file", path.display().to_string());
                if get("tapcred_oath_account").is_some() {
                    edit = edit.remove("tapcred_oath_account");
                }
                if get("tapcred_token").is_some_and(|t| !matches!(t, "auto" | "software")) {
                    edit = edit.remove("tapcred_token");
                }
            }
            Dest::Vault { .. } => {
                edit = edit.set("tapcred_token", "vault");
                for k in ["tapcred_oath_account", "tapcred_totp_secret_file"] {
                    if get(k).is_some() {
                        edit = edit.remove(k);
                    }
                }
            }
        }
        Ok(edit)
    }

    /// One engine call for the profile as now written, with `source` for its code; then
    /// GetCallerIdentity with the result. Returns the ARN the credentials act as.
    fn prove(&self, source: Box<dyn TokenSource>) -> Result<String> {
        let (env, ui) = (self.ctx.env, self.ctx.ui);
        let profile = self.args.profile.as_str();
        let resolved = engine::load_profile(profile, env)?;
        let target = StsTarget::for_profile(&resolved, env);
        let session_seconds = engine::session_seconds(env)?;
        let sts_target = target.clone();
        let mut source = Some(source);
        let vault = self.session.clone();
        let token_vault = vault.clone();
        let stamp_vault = vault.clone();
        let mut engine = Engine::new(
            self.cache,
            ui,
            Box::new(move || Ok(Box::new(Sts::new(sts_target.clone())?) as Box<dyn StsApi>)),
            Box::new(move |mfa: &Mfa| match source.take() {
                Some(s) => Ok(s),
                None => token::select_with(
                    &mfa.token,
                    &mfa.serial,
                    &token::Sources::real(env).with_vault(token_vault.clone()),
                    ui,
                ),
            }),
        )
        .with_base_keys(Box::new(move |b| {
            engine::vault_base_keys(&vault, b, env, ui)
        }))
        .with_vault_stamp(Box::new(move |b| engine::vault_stamp(&stamp_vault, b)));
        let (creds, _) = engine.obtain(&resolved, &target, &Options::default(), session_seconds)?;
        let who = Sts::new(target)?.get_caller_identity(
            &creds,
            CallContext {
                profile,
                signer: profile,
            },
        )?;
        Ok(who.arn)
    }
}

/// Under the vault's writers' lock: re-read it, open it with the kept unlocker output (no
/// touch), change it, write it. Returns the vault's path.
fn vault_change(
    store: &VaultStore,
    unlocked: &Unlocked,
    change: impl FnOnce(
        &mut crate::vault::OpenVault,
    ) -> std::result::Result<(), crate::vault::VaultError>,
) -> Result<PathBuf> {
    let lock = store.lock()?;
    let file = lock.read()?.ok_or_else(|| {
        Error::config(format!(
            "the vault {} disappeared during enroll",
            store.path().display()
        ))
    })?;
    let mut v = unlocked.reopen(&file)?;
    change(&mut v)?;
    lock.write(&v)?;
    Ok(store.path().to_owned())
}

/// The vault as on disk now, opened with the kept unlocker output.
fn vault_read(store: &VaultStore, unlocked: &Unlocked) -> Result<crate::vault::OpenVault> {
    let file = store.read()?.ok_or_else(|| {
        Error::config(format!(
            "the vault {} disappeared during enroll",
            store.path().display()
        ))
    })?;
    unlocked.reopen(&file)
}

/// A new private file (0600 from its creation, never replacing anything, never through a
/// link) holding `data`, synced.
fn write_seed_file(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut f = crate::platform::fs::create_new_private(path)?;
    f.write_all(data)?;
    f.sync_all()
}

fn now_f64() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A word for a POSIX shell: as is when safe, else single-quoted.
fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-/:".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_from_arn() {
        assert_eq!(
            iam_user("arn:aws:iam::111111111111:user/toolkit-user"),
            Some(("111111111111".into(), "toolkit-user".into()))
        );
        assert_eq!(
            iam_user("arn:aws:iam::111111111111:user/div/alice"),
            Some(("111111111111".into(), "alice".into()))
        );
        assert_eq!(
            iam_user("arn:aws-cn:iam::111111111111:user/a"),
            Some(("111111111111".into(), "a".into()))
        );
        assert_eq!(iam_user("arn:aws:iam::111111111111:root"), None);
        assert_eq!(iam_user("arn:aws:sts::111111111111:assumed-role/r/s"), None);
    }

    #[test]
    fn oath_names_fit_the_key() {
        let serial = "arn:aws:iam::111111111111:mfa/toolkit-user";
        assert_eq!(oath_name(serial, "toolkit-user").unwrap(), serial);
        let fits = "a".repeat(34);
        let s = format!("arn:aws:iam::111111111111:mfa/{fits}");
        assert_eq!(oath_name(&s, &fits).unwrap().len(), 64);
        let long = "a".repeat(35);
        let s = format!("arn:aws:iam::111111111111:mfa/{long}");
        let e = oath_name(&s, &long).unwrap_err();
        assert!(e.message().contains("at most 34 characters"), "{e}");
        assert!(check_device_name("a b").is_err());
        assert!(check_device_name("ok_name.1@x").is_ok());
    }

    #[test]
    fn shell_words() {
        assert_eq!(shell_word("arn:aws:iam::1:mfa/a"), "arn:aws:iam::1:mfa/a");
        assert_eq!(shell_word("it's"), "'it'\\''s'");
        assert_eq!(shell_word("a b"), "'a b'");
    }
}
