//! `--resume` and `--undo`: finishing or undoing what an interrupted enroll left, from its
//! journal and IAM's real state.

use std::io::Write;
use std::rc::Rc;
use std::sync::Arc;

use serde_json::Value;
use zeroize::Zeroizing;

use crate::cache::SessionCache;
use crate::commands::Ctx;
use crate::credentials::Credentials;
use crate::engine;
use crate::error::{Error, Result};
use crate::iam::{Iam, IamTarget};
use crate::journal::{self, Journal};
use crate::profile::{AwsFiles, Profiles};
use crate::sts::StsTarget;
use crate::token::device::Backend;
use crate::token::oath::enroll::EnrollKey;
use crate::token::software::SoftwareSource;
use crate::token::{TokenSettings, TokenSource};
use crate::vault::{EntryName, Secret, VaultSession};

use super::flow::Job;
use super::seed_file::remove_seed_file;
use super::undo::{self, DeviceState, ProfileUndo, Progress, SeedPlace, step};
use super::{Args, Dest, Destination, conclude, delete_oath_account, finish_undo};
use crate::commands::interrupt::{Interrupt, catching_panics};

/// `tapcred enroll --resume`: finish what an interrupted run left, from IAM's real state and
/// the seed where the journal says it went. A failure undoes it, as in the first run.
pub(super) fn resume_pending(
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
            let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
                Error::config(format!("seed file {}: {e}", path.display())).with_source(e)
            })?);
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
            let store = crate::commands::vault::store(ctx)?;
            let file = store
                .read()?
                .ok_or_else(|| cannot(&format!("no vault at {}", store.path().display())))?;
            let unlocked =
                crate::commands::vault::unlock_with(&file, args.yubikey_serial, env, ui)?;
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
    let result = catching_panics("enroll", || {
        job.finish(serial, source, where_, oath_account, enabled)
    });
    conclude(job, result, out)
}

/// `tapcred enroll --undo`: what an interrupted run left, undone after reading IAM's state.
/// Opens the YubiKey or the vault only when the journal says a seed went there.
pub(super) fn undo_pending(
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
                let store = crate::commands::vault::store(ctx)?;
                let name = EntryName::seed(serial.clone());
                let Some(file) = store.read()? else {
                    return Ok(());
                };
                if !file.entry_names().any(|n| *n == name) {
                    return Ok(());
                }
                let unlocked =
                    crate::commands::vault::unlock_with(&file, args.yubikey_serial, env, ui)?;
                unlocked
                    .change(&store, |v| {
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
        .map_err(|e| Error::io(format!("cannot write to stdout: {e}")).with_source(e))?;
        Ok(0)
    } else {
        Err(Error::network(format!(
            "profile \"{}\": the interrupted enroll is not fully undone; run `{}` again when IAM answers, or clean up by hand as printed above",
            progress.profile,
            progress.undo_cmd()
        )))
    }
}
