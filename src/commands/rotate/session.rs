//! The MFA session rotate signs its IAM calls with, and where the session cache keeps it
//! once the key changes.

use std::rc::Rc;
use std::time::Duration;

use crate::cache::{self, SessionCache};
use crate::commands::Ctx;
use crate::credentials::Credentials;
use crate::engine::{self, Engine, Options};
use crate::error::Result;
use crate::profile::{Mfa, ResolvedProfile, Step};
use crate::sts::{Sts, StsApi, StsTarget};
use crate::token;
use crate::vault::{EntryName, VaultSession};

use super::setup::Setup;
use super::store::Store;

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
pub(super) fn mfa_session(
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

/// The MFA session made with the old key, cached under its identity, moves under the new
/// key's identity with its own expiry (the next command needs no tap); nothing stays under
/// the old identity's key for it.
pub(super) fn move_mfa_session(s: &Setup<'_>, new_id: &str) {
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

/// When this process opened its session with the new key already (`--resume`): nothing to
/// move, the old identity's MFA session is dropped.
pub(super) fn drop_old_mfa_session(s: &Setup<'_>, old_id: &str) {
    if let Some(old_key) = engine::mfa_session_key(
        &s.mfa_profile,
        &s.sts_target,
        s.session_seconds,
        &cache::key_identity(old_id),
    ) {
        s.cache.remove(&old_key);
    }
}
