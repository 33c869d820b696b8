//! Choosing the token source for one `mfa_serial` (DESIGN.md "Token sources").

use std::rc::Rc;

use crate::error::{Error, Result};
use crate::token::prompt::PromptSource;
use crate::token::software::SoftwareSource;
use crate::token::vault::VaultSource;
use crate::token::{EnvLookup, TokenKind, TokenSettings, TokenSource, oath};
use crate::ui::Ui;
use crate::vault::VaultSession;

/// `auto`: software seed → the vault (when it lists a seed for the serial) → OATH on a
/// plugged-in key → typed code → error listing what was tried.
pub fn select(
    settings: &TokenSettings,
    mfa_serial: &str,
    env: &dyn EnvLookup,
    ui: &dyn Ui,
) -> Result<Box<dyn TokenSource>> {
    select_with_vault(
        settings,
        mfa_serial,
        env,
        ui,
        &Rc::new(VaultSession::from_env(env)),
    )
}

/// [`select`] with the process's vault session (one unlock serves the seed and the access
/// key; nothing is read from the vault unless a vault source is considered).
pub fn select_with_vault(
    settings: &TokenSettings,
    mfa_serial: &str,
    env: &dyn EnvLookup,
    ui: &dyn Ui,
    vault: &Rc<VaultSession>,
) -> Result<Box<dyn TokenSource>> {
    let chosen = choose(settings, mfa_serial, env, ui, vault)?;
    tracing::info!(profile = %settings.profile, mfa_serial, source = %chosen.describe(), "token source chosen");
    Ok(chosen)
}

fn choose(
    settings: &TokenSettings,
    mfa_serial: &str,
    env: &dyn EnvLookup,
    ui: &dyn Ui,
    vault: &Rc<VaultSession>,
) -> Result<Box<dyn TokenSource>> {
    let profile = &settings.profile;
    match settings.kind {
        TokenKind::Software => match SoftwareSource::from_settings(settings, env)? {
            Some(s) => Ok(Box::new(s)),
            None => Err(Error::config(format!(
                "profile \"{profile}\" has tapcred_token = software but ${} is not set and no tapcred_totp_secret_file is configured; export the seed or set the file",
                settings.totp_secret_env
            ))),
        },
        TokenKind::Oath => Ok(Box::new(oath::open(settings, mfa_serial, ui)?)),
        TokenKind::Prompt => Ok(Box::new(PromptSource)),
        TokenKind::Vault => Ok(Box::new(VaultSource::open(
            settings, mfa_serial, vault, env, ui,
        )?)),
        TokenKind::Auto => {
            let mut tried = Vec::new();
            if let Some(s) = SoftwareSource::from_settings(settings, env)? {
                return Ok(Box::new(s));
            }
            tried.push(format!(
                "software seed (${} not set)",
                settings.totp_secret_env
            ));
            if VaultSource::lists(vault, mfa_serial)? {
                return Ok(Box::new(VaultSource::open(
                    settings, mfa_serial, vault, env, ui,
                )?));
            }
            tried.push("vault (no seed for this serial)".to_owned());
            match oath::probe(settings, mfa_serial, ui)? {
                Ok(src) => return Ok(Box::new(src)),
                Err(why) => tried.push(why),
            }
            if ui.interactive() {
                return Ok(Box::new(PromptSource));
            }
            tried.push("typed code (no terminal)".to_owned());
            // One short line; what each source said goes to the log (-v) and `doctor`.
            for why in &tried {
                tracing::info!(profile = %profile, mfa_serial, tried = %why, "token source not available");
            }
            Err(Error::token(format!(
                "profile \"{profile}\": no token source (tried ${}, a YubiKey, a typed code); see `tapcred doctor --profile {profile}` or -v",
                settings.totp_secret_env
            )))
        }
    }
}
