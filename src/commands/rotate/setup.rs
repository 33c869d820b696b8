//! What rotate knows before it changes anything: where the key lives, the MFA session that
//! signs every IAM call, and the IAM user behind the profile.

use std::rc::Rc;

use crate::cache::SessionCache;
use crate::commands::Ctx;
use crate::commands::shell_words::shell_word;
use crate::credentials::Credentials;
use crate::engine;
use crate::error::{Error, Result};
use crate::iam::{Iam, IamTarget};
use crate::profile::{AwsFiles, Profiles, ResolvedProfile};
use crate::sts::{CallContext, Sts, StsTarget};
use crate::vault::VaultSession;

use super::Args;
use super::session::{mfa_profile, mfa_session};
use super::store::Store;

/// Everything known once the MFA session is open.
pub(super) struct Setup<'a> {
    pub(super) ctx: &'a Ctx<'a>,
    pub(super) signer: String,
    pub(super) files: AwsFiles,
    pub(super) store: Store,
    /// The MFA session every IAM call is signed with.
    pub(super) mfa_creds: Credentials,
    pub(super) iam: Iam,
    pub(super) sts: Sts,
    pub(super) user: String,
    pub(super) user_arn: String,
    /// The key in use now (the store's).
    pub(super) current: Credentials,
    pub(super) cache: SessionCache,
    /// The profile of the MFA session and its STS target, to move the cached session.
    pub(super) mfa_profile: ResolvedProfile,
    pub(super) sts_target: StsTarget,
    pub(super) session_seconds: u32,
}

/// Open the MFA session and learn the user; keys in the vault cost one unlock, shared with
/// the seed when it is in the vault too.
pub(super) fn setup<'a>(
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
