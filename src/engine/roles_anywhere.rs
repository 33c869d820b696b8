//! A Roles Anywhere profile's credentials: the session cache (keyed by the certificate's
//! SHA-256, the trust anchor, profile and role), single flight under the key's lock, then
//! one `CreateSession` signed where the key lives.

use super::Options;
use crate::cache::{ADVISORY_WINDOW, CacheKey, Entry, SessionCache, SessionKind};
use crate::clock;
use crate::credentials::Credentials;
use crate::env::EnvLookup;
use crate::error::{Error, Result};
use crate::profile::{ResolvedProfile, RolesAnywhere, RolesAnywhereKey};
use crate::rolesanywhere::{self, Target};
use crate::sts::Timeouts;
use crate::token::certificate::CertificateFacts;
use crate::token::keyfile::KeyFileSigner;
use crate::token::piv::PivKeyRef;
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
    let cache = SessionCache::open_default(env, ui);
    let use_cache = !opts.no_cache && cache.enabled();
    // A key on a YubiKey: the certificate seen last time in that slot names the session,
    // so a cached session is served without the card (as a cached MFA session is without
    // a tap).
    let piv_stamp = match &ra.key {
        RolesAnywhereKey::Piv { key, .. } => Some(piv_stamp(key)),
        RolesAnywhereKey::Files(_) => None,
    };
    if use_cache
        && let Some(stamp) = &piv_stamp
        && let Some(cert_sha256) = cache.known_identity(stamp)
        && let Some(e) = cache.get(&cache_key(ra, &target, &cert_sha256), ADVISORY_WINDOW)
    {
        tracing::debug!(
            profile = p.name,
            "session cache hit (PIV certificate remembered)"
        );
        return Ok((e.credentials, true));
    }
    let signer = open_signer(ra, &p.name, env, ui)?;
    let facts = CertificateFacts::from_der(signer.certificate_der()).map_err(|why| {
        Error::config(format!(
            "profile \"{}\": the certificate of {} is {why}",
            p.name,
            signer.describe()
        ))
    })?;
    check_validity(&facts, &p.name, signer.as_ref())?;
    if use_cache && let Some(stamp) = &piv_stamp {
        cache.remember_identity(stamp, &facts.sha256_hex, ui);
    }
    let key = cache_key(ra, &target, &facts.sha256_hex);
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
pub fn cache_key(ra: &RolesAnywhere, target: &Target, cert_sha256: &str) -> CacheKey {
    CacheKey::builder(SessionKind::CreateSession)
        .source(cert_sha256)
        .part("trust_anchor", ra.trust_anchor_arn.as_str())
        .part("rolesanywhere_profile", ra.profile_arn.as_str())
        .role_arn(&ra.role_arn)
        .duration(ra.duration_seconds)
        .session_name(ra.role_session_name.as_deref())
        .endpoint(Some(&target.url))
        .build()
}

/// The name under which a PIV slot's certificate identity is remembered.
fn piv_stamp(k: &PivKeyRef) -> String {
    use sha2::{Digest, Sha256};
    let serial = k.serial.map(|n| n.to_string()).unwrap_or_default();
    let text = format!("tapcred piv certificate v1\0{serial}\0{}", k.slot);
    data_encoding::HEXLOWER.encode(&Sha256::digest(text.as_bytes()))
}

pub(crate) fn open_signer(
    ra: &RolesAnywhere,
    profile: &str,
    env: &dyn EnvLookup,
    ui: &dyn Ui,
) -> Result<Box<dyn CertificateSigner>> {
    match &ra.key {
        RolesAnywhereKey::Files(files) => Ok(Box::new(KeyFileSigner::open(files, profile)?)),
        RolesAnywhereKey::Piv { key, chain } => {
            let chain = match chain {
                Some(path) => crate::token::keyfile::read_chain_file(path, profile)?,
                None => Vec::new(),
            };
            crate::token::piv::open_signer(key, chain, env, ui)
        }
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
