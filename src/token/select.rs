//! Choosing the token source for one `mfa_serial` (docs/architecture.md "Token sources").
//!
//! The device backends and the environment are injected through [`Sources`], so the `auto`
//! order is tested with virtual keys and a map for an environment (tests below).

use std::sync::Arc;

use crate::env::EnvLookup;
use crate::error::{Error, Result};
use crate::token::device::Backend;
use crate::token::pcsc::PcscBackend;
use crate::token::prompt::PromptSource;
use crate::token::software::SoftwareSource;
use crate::token::{SeedStore, TokenKind, TokenSettings, TokenSource, oath};
use crate::ui::Ui;

/// Where [`select_with`] looks for a code: the environment (software seed, OATH password),
/// the device backends and the stored seeds. The CLI uses [`Sources::real`].
pub struct Sources<'a> {
    pub env: &'a dyn EnvLookup,
    /// YubiKeys over PC/SC (the OATH applet).
    pub pcsc: Arc<dyn Backend>,
    /// The stored seeds (the process's vault, one unlock serving the seed and the access
    /// key); read only when a vault source is considered.
    pub seeds: &'a dyn SeedStore,
}

impl<'a> Sources<'a> {
    /// The real devices (PC/SC), the given environment and stored seeds.
    pub fn real(env: &'a dyn EnvLookup, seeds: &'a dyn SeedStore) -> Self {
        Sources {
            env,
            pcsc: Arc::new(PcscBackend::new()),
            seeds,
        }
    }
}

/// [`select_with`] over the real devices.
pub fn select(
    settings: &TokenSettings,
    mfa_serial: &str,
    env: &dyn EnvLookup,
    seeds: &dyn SeedStore,
    ui: &dyn Ui,
) -> Result<Box<dyn TokenSource>> {
    select_with(settings, mfa_serial, &Sources::real(env, seeds), ui)
}

/// `auto`: software seed → vault (when it holds the serial's seed) → OATH on a plugged-in
/// key → typed code (a terminal) → an error listing what was tried. Any other kind: that
/// source or a clear error.
pub fn select_with(
    settings: &TokenSettings,
    mfa_serial: &str,
    sources: &Sources<'_>,
    ui: &dyn Ui,
) -> Result<Box<dyn TokenSource>> {
    let chosen = choose(settings, mfa_serial, sources, ui)?;
    tracing::info!(profile = %settings.profile, mfa_serial, source = %chosen.describe(), "token source chosen");
    Ok(chosen)
}

fn choose(
    settings: &TokenSettings,
    mfa_serial: &str,
    sources: &Sources<'_>,
    ui: &dyn Ui,
) -> Result<Box<dyn TokenSource>> {
    let profile = &settings.profile;
    let env = sources.env;
    match settings.kind {
        TokenKind::Software => match SoftwareSource::from_settings(settings, env)? {
            Some(s) => Ok(Box::new(s)),
            None => Err(Error::config(format!(
                "profile \"{profile}\" has tapcred_token = software but {} is not set and no tapcred_totp_secret_file is configured; set the seed in it or set the file",
                crate::platform::words::env_var(&settings.totp_secret_env)
            ))),
        },
        TokenKind::Oath => Ok(Box::new(oath::open_with(
            sources.pcsc.clone(),
            env,
            settings,
            mfa_serial,
            ui,
        )?)),
        TokenKind::Prompt => Ok(Box::new(PromptSource)),
        TokenKind::Vault => sources.seeds.open(settings, mfa_serial, env, ui),
        TokenKind::Auto => {
            let mut tried = Vec::new();
            // 1. A software seed (headless runs).
            if let Some(s) = SoftwareSource::from_settings(settings, env)? {
                return Ok(Box::new(s));
            }
            tried.push(format!(
                "software seed ({} not set)",
                crate::platform::words::env_var(&settings.totp_secret_env)
            ));
            // 2. The vault, when its file lists an entry for this serial (no unlock to know).
            if sources.seeds.lists(mfa_serial)? {
                return sources.seeds.open(settings, mfa_serial, env, ui);
            }
            tried.push("vault (no seed for this serial)".to_owned());
            // 3. An OATH account on a plugged-in YubiKey.
            match oath::probe_with(sources.pcsc.clone(), env, settings, mfa_serial, ui)? {
                Ok(src) => return Ok(Box::new(src)),
                Err(why) => tried.push(format!("YubiKey OATH ({why})")),
            }
            // 4. A typed code, when someone can type it.
            if ui.interactive() {
                return Ok(Box::new(PromptSource));
            }
            tried.push("typed code (no terminal)".to_owned());
            // One short line; what each source said goes to the log (-v) and `doctor`.
            for why in &tried {
                tracing::info!(profile = %profile, mfa_serial, tried = %why, "token source not available");
            }
            Err(Error::token(format!(
                "profile \"{profile}\": no token source (tried {}, a YubiKey, a typed code); see `tapcred doctor --profile {profile}` or -v",
                crate::platform::words::env_var(&settings.totp_secret_env)
            )))
        }
    }
}

#[cfg(test)]
mod tests;
