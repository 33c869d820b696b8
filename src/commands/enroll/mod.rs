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

mod flow;
mod names;
mod pending;
mod seed_file;
mod undo;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use serde_json::json;

use crate::cache::SessionCache;
use crate::commands::{Ctx, journalled};
use crate::engine;
use crate::error::{Error, Result};
use crate::iam::{Iam, IamTarget};
use crate::journal::{self, Journal};
use crate::profile::{AwsFiles, Profiles};
use crate::sts::{CallContext, Sts, StsTarget};
use crate::token::TokenSettings;
use crate::token::device::Backend;
use crate::token::oath::enroll::EnrollKey;
use crate::token::pcsc::PcscBackend;
use crate::ui::Ui;
use crate::vault::{EntryName, VaultSession, VaultStore};

use super::interrupt::{Interrupt, catching_panics};
use super::shell_words::shell_word;
use super::vault::Unlocked;
use flow::{Done, Job};
use names::{check_device_name, oath_name};
use pending::{resume_pending, undo_pending};
use seed_file::remove_seed_file;
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
                writeln!(out, "profile \"{profile}\": no interrupted enroll to undo").map_err(
                    |e| Error::io(format!("cannot write to stdout: {e}")).with_source(e),
                )?;
                Ok(0)
            }
        };
    }
    if let Some(p) = pending {
        return Err(journalled::earlier_interrupted(
            undo::KIND,
            profile,
            &p,
            &pending_fix(undo::KIND, profile),
        ));
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
    let (account, user) = crate::iam::user_of_arn(&who.arn).ok_or_else(|| {
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
                    .with_source(e)
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
    let mut journal = journalled::begin(
        &journal_dir,
        undo::KIND,
        profile,
        &pending_fix(undo::KIND, profile),
    )?;
    journalled::step(
        &mut journal,
        env,
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
    let result = catching_panics("enroll", || job.enroll(&device_name));
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
            .map_err(|e| Error::io(format!("cannot write to stdout: {e}")).with_source(e))?;
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
        (Dest::Vault { store, unlocked }, SeedPlace::Vault { serial }) => unlocked
            .change(store, |v| {
                v.remove(&EntryName::seed(serial.clone()));
                Ok(())
            })
            .map(|_| ()),
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
