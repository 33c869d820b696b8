//! When a rotate does not finish: the undo in the running process (the old key put back, the
//! keys it made deleted after reading IAM's list) and `rotate --resume` after a run that was
//! killed (finish when the new key is in place, undo when it is not).

use std::io::Write;

use serde_json::Value;

use crate::commands::interrupt::Interrupt;
use crate::commands::{Ctx, journalled, write_line};
use crate::credentials::Credentials;
use crate::error::{Error, Result};
use crate::iam::Iam;
use crate::journal::{self, Journal, Record};
use crate::profile::{AwsFiles, Profiles};
use crate::ui::Ui;

use super::flow::{Done, Job, delete_key, finish_old_key};
use super::messages::pending_fix;
use super::proof::prove;
use super::session::drop_old_mfa_session;
use super::setup::setup;
use super::store::restore_key;
use super::{Args, EXIT_INTERRUPTED, step};

/// After the flow: close the journal and print the result, or undo what can be undone.
pub(super) fn conclude(job: Job<'_>, result: Result<Done>, out: &mut dyn Write) -> Result<i32> {
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

/// Delete every key of `user` that is not in `before` (a key rotate made and lost, or the
/// new key of a rotate being undone).
pub(super) fn remove_strangers(
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

/// `rotate --resume`: the new key in place → finish retiring the old one; not in place →
/// delete the keys this rotate made. Opens a new MFA session (one tap).
pub(super) fn resume(
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
