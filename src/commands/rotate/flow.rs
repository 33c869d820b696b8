//! The steps of a rotate once the plan is journalled: CreateAccessKey (a lost answer settled
//! by IAM's list), the proof, the new key stored, read back and proven, then the old key
//! deactivated and deleted — each recorded in the journal before it is taken.

use serde_json::{Value, json};

use crate::commands::interrupt::Interrupt;
use crate::commands::journalled;
use crate::credentials::Credentials;
use crate::error::{Error, Result};
use crate::iam::{AccessKeyInfo, Iam, IamError, NewAccessKey};
use crate::journal::Journal;
use crate::ui::Ui;

use super::proof::prove;
use super::session::move_mfa_session;
use super::setup::Setup;
use super::store::{Previous, put_key, read_stored};
use super::undo::remove_strangers;
use super::{Args, step};

pub(super) struct Job<'a> {
    pub(super) s: &'a Setup<'a>,
    pub(super) args: &'a Args,
    pub(super) interrupt: &'a Interrupt,
    pub(super) journal: Journal,
    /// The old key where it lived, while the new one is being put in its place.
    pub(super) previous: Option<Previous>,
}

pub(super) struct Done {
    pub(super) old_id: String,
    pub(super) new_id: String,
    pub(super) deleted: bool,
}

impl Job<'_> {
    fn step(&mut self, name: &str, data: Value) -> Result<()> {
        journalled::step(&mut self.journal, self.s.ctx.env, name, data)
    }

    fn ui(&self) -> &dyn Ui {
        self.s.ctx.ui
    }

    pub(super) fn rotate(
        &mut self,
        in_the_way: Option<&str>,
        keys: &[AccessKeyInfo],
    ) -> Result<Done> {
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

/// The old key: deactivated, then (unless `keep_old`) deleted; a lost answer is settled by
/// reading IAM's list.
pub(super) fn finish_old_key(
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
pub(super) fn delete_key(
    iam: &Iam,
    creds: &Credentials,
    user: &str,
    id: &str,
) -> Result<(), IamError> {
    match iam.delete_access_key(creds, user, id) {
        Err(e) if e.is(crate::iam::IamCode::NoSuchEntity) => Ok(()),
        r => r,
    }
}
