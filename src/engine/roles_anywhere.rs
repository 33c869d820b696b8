//! A Roles Anywhere profile's credentials: the session cache (keyed by the certificate's
//! SHA-256, the trust anchor, profile and role), single flight under the key's lock, then
//! one `CreateSession` signed where the key lives.

use super::Options;
use crate::cache::{ADVISORY_WINDOW, CacheKey, Entry, SessionCache, SessionKind};
use crate::clock;
use crate::credentials::Credentials;
use crate::error::{Error, Result};
use crate::profile::{ResolvedProfile, RolesAnywhere, RolesAnywhereKey};
use crate::rolesanywhere::{self, Target};
use crate::sts::Timeouts;
use crate::token::EnvLookup;
use crate::token::certificate::CertificateFacts;
use crate::token::keyfile::KeyFileSigner;
use crate::token::x509::CertificateSigner;
use crate::ui::Ui;

/// Credentials for `p`, and whether they came from the cache.
pub(super) fn obtain(
    p: &ResolvedProfile,
    ra: &RolesAnywhere,
    opts: &Options,
    env: &dyn EnvLookup,
    ui: &dyn Ui,
) -> Result<(Credentials, bool)> {
    // Before any key is touched: a URL no request could go to, bad timeouts.
    let target = Target::for_profile(p, ra, env)?;
    let timeouts = Timeouts::from_env(env)?;
    let signer = open_signer(ra, &p.name, env, ui)?;
    let facts = CertificateFacts::from_der(signer.certificate_der()).map_err(|why| {
        Error::config(format!(
            "profile \"{}\": the certificate of {} is {why}",
            p.name,
            signer.describe()
        ))
    })?;
    check_validity(&facts, &p.name, signer.as_ref())?;
    let cache = SessionCache::open_default(env, ui);
    let use_cache = !opts.no_cache && cache.enabled();
    let key = cache_key(ra, &target, &facts);
    if use_cache && let Some(e) = cache.get(&key, ADVISORY_WINDOW) {
        tracing::debug!(profile = p.name, "session cache hit");
        return Ok((e.credentials, true));
    }
    let lock = if use_cache {
        Some(cache.lock(&key, ui)?)
    } else {
        None
    };
    // Another process may have stored it while this one waited for the lock.
    if use_cache && let Some(e) = cache.get(&key, ADVISORY_WINDOW) {
        return Ok((e.credentials, true));
    }
    let fresh = rolesanywhere::create_session(&target, timeouts, ra, signer.as_ref(), &p.name, ui)?;
    if use_cache {
        let entry = Entry {
            kind: SessionKind::CreateSession,
            profile: p.name.clone(),
            mfa_serial: None,
            created: clock::now_utc(),
            credentials: fresh.clone(),
        };
        cache.put(&key, &entry, ui);
    }
    drop(lock);
    Ok((fresh, false))
}

/// Two profiles share a session exactly when the same certificate asks the same trust
/// anchor and profile for the same role, with the same duration and session name, at the
/// same endpoint.
pub fn cache_key(ra: &RolesAnywhere, target: &Target, facts: &CertificateFacts) -> CacheKey {
    CacheKey::builder(SessionKind::CreateSession)
        .source(&facts.sha256_hex)
        .part("trust_anchor", ra.trust_anchor_arn.as_str())
        .part("rolesanywhere_profile", ra.profile_arn.as_str())
        .role_arn(&ra.role_arn)
        .duration(ra.duration_seconds)
        .session_name(ra.role_session_name.as_deref())
        .endpoint(Some(&target.url))
        .build()
}

pub(crate) fn open_signer(
    ra: &RolesAnywhere,
    profile: &str,
    env: &dyn EnvLookup,
    ui: &dyn Ui,
) -> Result<Box<dyn CertificateSigner>> {
    match &ra.key {
        RolesAnywhereKey::Files(files) => Ok(Box::new(KeyFileSigner::open(files, profile)?)),
        RolesAnywhereKey::Piv(key) => crate::token::piv::open_signer(key, env, ui),
    }
}

/// A certificate outside its validity cannot get a session: say so before signing.
fn check_validity(
    facts: &CertificateFacts,
    profile: &str,
    signer: &dyn CertificateSigner,
) -> Result<()> {
    let now = clock::now_utc();
    let when = |t| crate::credentials::format_rfc3339(t);
    if now > facts.not_after {
        return Err(Error::auth(format!(
            "profile \"{profile}\": the certificate of {} expired on {}; have your CA issue a new one for the same key and replace the certificate",
            signer.describe(),
            when(facts.not_after)
        )));
    }
    if now < facts.not_before {
        return Err(Error::auth(format!(
            "profile \"{profile}\": the certificate of {} is valid only from {}; check this machine's clock, or wait",
            signer.describe(),
            when(facts.not_before)
        )));
    }
    Ok(())
}
