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

pub mod age;
mod flow;
mod messages;
mod proof;
mod session;
mod setup;
mod store;
mod undo;

use std::io::Write;

use serde_json::json;

use crate::commands::interrupt::{Interrupt, catching_panics};
use crate::commands::{Ctx, journalled, write_line};
use crate::error::{Error, Result};
use crate::iam::AccessKeyInfo;
use crate::journal::{self, Journal};
use crate::profile::{AwsFiles, Profiles};
use crate::ui::Ui;

use flow::Job;
pub use messages::pending_fix;
pub use proof::{DEFAULT_PROOF_SECONDS, PROOF_SECONDS_ENV, proof_seconds};
pub(crate) use session::mfa_profile;
use setup::setup;
use undo::{conclude, resume};

/// The journal's kind.
pub const KIND: &str = "rotate";

/// Exit code after an interrupted rotate, once the rollback ran.
pub const EXIT_INTERRUPTED: i32 = 130;

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

pub fn run(args: &Args, ctx: &Ctx<'_>, out: &mut dyn Write) -> Result<i32> {
    let interrupt = Interrupt::install();
    run_with(args, ctx, &interrupt, out)
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
        return Err(messages::not_the_users_key(
            &signer, &old_id, &s.user, &keys,
        ));
    }
    let others: Vec<&AccessKeyInfo> = keys.iter().filter(|k| k.access_key_id != old_id).collect();
    let mut in_the_way = None;
    if let Some(other) = others.first() {
        if other.active {
            return Err(messages::two_active_keys(
                &s.user,
                &old_id,
                &signer,
                &other.access_key_id,
            ));
        }
        if !agreed_to_delete(args, &s.user, &other.access_key_id, ctx.ui)? {
            return Err(messages::inactive_in_the_way(
                &s.user,
                &other.access_key_id,
                &old_id,
                &profile,
            ));
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
