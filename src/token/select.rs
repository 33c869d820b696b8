//! Choosing the token source for one `mfa_serial` (DESIGN.md "Token sources").

use crate::error::{Error, Result};
use crate::token::prompt::PromptSource;
use crate::token::software::SoftwareSource;
use crate::token::{EnvLookup, TokenKind, TokenSettings, TokenSource, oath};
use crate::ui::Ui;

/// `auto`: software seed → OATH on a plugged-in key → vault → typed code → error
/// listing what was tried.
pub fn select(
    settings: &TokenSettings,
    mfa_serial: &str,
    env: &dyn EnvLookup,
    ui: &dyn Ui,
) -> Result<Box<dyn TokenSource>> {
    let chosen = choose(settings, mfa_serial, env, ui)?;
    tracing::info!(profile = %settings.profile, mfa_serial, source = %chosen.describe(), "token source chosen");
    Ok(chosen)
}

fn choose(
    settings: &TokenSettings,
    mfa_serial: &str,
    env: &dyn EnvLookup,
    ui: &dyn Ui,
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
        TokenKind::Vault => Err(not_in_build(
            profile,
            "vault",
            "the FIDO2-unlocked seed vault",
        )),
        TokenKind::Auto => {
            let mut tried = Vec::new();
            if let Some(s) = SoftwareSource::from_settings(settings, env)? {
                return Ok(Box::new(s));
            }
            tried.push(format!(
                "software seed (${} not set)",
                settings.totp_secret_env
            ));
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

fn not_in_build(profile: &str, key: &str, what: &str) -> Error {
    Error::config(format!(
        "profile \"{profile}\": tapcred_token = {key} ({what}) is not available in this version of tapcred; use oath, software or prompt"
    ))
}
