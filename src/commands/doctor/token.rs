//! Code sources: for each MFA serial of the profile, whether something answers with a code.

use super::report::Doctor;
use crate::env::EnvLookup;
use crate::error::ErrorKind;
use crate::profile::ResolvedProfile;
use crate::profile::Step;
use crate::token::oath;
use crate::token::software::SoftwareSource;
use crate::token::{self, TokenKind, TokenSource};
use crate::ui::{Headless, TerminalUi, Ui};
use crate::vault::{VaultSeeds, VaultSession, VaultSource};

pub(super) fn token_checks(
    d: &mut Doctor,
    p: &ResolvedProfile,
    env: &dyn EnvLookup,
    ui: &Headless,
) {
    let mfas: Vec<_> = p
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::SessionToken { mfa, .. } => Some(mfa),
            Step::AssumeRole(r) => r.mfa.as_ref(),
        })
        .collect();
    if mfas.is_empty() {
        let has_role = p.steps.iter().any(|s| matches!(s, Step::AssumeRole(_)));
        d.note(
            "token",
            format!("profile \"{}\" has no mfa_serial: no code is needed", p.name),
            has_role.then(|| {
                format!(
                    "if the role requires MFA, run `tapcred enroll --profile {} --touch` to create the MFA device, put its seed on the YubiKey and set mfa_serial",
                    p.name
                )
            }),
        );
        return;
    }
    for mfa in mfas {
        if mfa.token.kind == TokenKind::Auto {
            auto_check(d, mfa, env, ui);
            continue;
        }
        let why = format!("tapcred_token = {}", kind_name(mfa.token.kind));
        if mfa.token.kind == TokenKind::Vault {
            // The file and its entry, without an unlock (doctor never asks for a touch).
            let session = std::rc::Rc::new(VaultSession::from_env(env));
            match VaultSource::check(&mfa.token, &mfa.serial, &session) {
                Ok(src) => d.ok(
                    "token",
                    format!(
                        "{} holds the seed for {} ({why}; one touch opens it)",
                        src.describe(),
                        mfa.serial
                    ),
                ),
                Err(e) => d.error("token", &e),
            }
            continue;
        }
        match token::select(&mfa.token, &mfa.serial, env, &VaultSeeds::from_env(env), ui) {
            Ok(src) => d.ok(
                "token",
                format!("{} answers for {} ({why})", src.describe(), mfa.serial),
            ),
            Err(e) => token_error(d, &e),
        }
    }
}

/// A token source's error: the smart-card service being down gets the how-to-start fix.
fn token_error(d: &mut Doctor, e: &crate::error::Error) {
    if e.reason() == Some(crate::error::Reason::ServiceMissing) {
        d.problem("token", e.message(), start_pcsc(), e.exit_code());
    } else {
        d.error("token", e);
    }
}

pub(super) fn start_pcsc() -> String {
    format!(
        "start the smart-card service so the YubiKey can answer: {}",
        crate::token::pcsc::no_service_hint()
    )
}

/// `tapcred_token = auto`, source by source (the commands themselves only say "none
/// answered" and point here): the software seed, then a YubiKey OATH account matching the
/// serial, then a typed code if this is a terminal.
pub(super) fn auto_check(
    d: &mut Doctor,
    mfa: &crate::profile::Mfa,
    env: &dyn EnvLookup,
    ui: &Headless,
) {
    let s = &mfa.token;
    let serial = &mfa.serial;
    let mut tried = Vec::new();
    match SoftwareSource::from_settings(s, env) {
        Ok(Some(src)) => {
            d.ok(
                "token",
                format!(
                    "{} answers for {serial} (tapcred_token = auto: a software seed is configured, and it comes first)",
                    src.describe()
                ),
            );
            return;
        }
        Ok(None) => tried.push(format!(
            "software seed: {} is not set and no tapcred_totp_secret_file",
            crate::platform::words::env_var(&s.totp_secret_env)
        )),
        Err(e) => return d.error("token", &e),
    }
    let session = std::rc::Rc::new(VaultSession::from_env(env));
    match VaultSource::lists(&session, serial) {
        Ok(true) => {
            let at = session
                .path()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            d.ok(
                "token",
                format!(
                    "vault seed ({at}) answers for {serial} (tapcred_token = auto: no software seed, and the vault holds a seed for mfa_serial; one touch opens it)"
                ),
            );
            return;
        }
        Ok(false) => tried.push("vault: no seed for this serial".to_owned()),
        Err(e) => return d.error("token", &e),
    }
    let fix;
    match oath::probe(s, serial, ui) {
        Ok(Ok(src)) => {
            d.ok(
                "token",
                format!(
                    "{} answers for {serial} (tapcred_token = auto: no software seed, and this YubiKey account matches mfa_serial)",
                    src.describe()
                ),
            );
            return;
        }
        Ok(Err(why)) => {
            fix = oath_skip_fix(&why, s);
            tried.push(format!("YubiKey OATH ({why})"));
        }
        Err(e) => return token_error(d, &e),
    }
    let msg = format!(
        "profile \"{}\": nothing answers for {serial} without a person: tried {}",
        s.profile,
        tried.join("; ")
    );
    if TerminalUi::new().interactive() {
        // From this terminal the commands would ask for a typed code: it works, untapped.
        d.note(
            "token",
            format!("{msg}; a typed code would be asked on this terminal"),
            Some(fix),
        );
    } else {
        d.problem(
            "token",
            format!("{msg}; typed code: no terminal"),
            fix,
            ErrorKind::Token.exit_code(),
        );
    }
}

/// The fix when `auto` found no usable OATH account, by why the YubiKey was skipped.
fn oath_skip_fix(why: &crate::error::Error, s: &crate::token::TokenSettings) -> String {
    use crate::error::Reason;
    if why.reason() == Some(Reason::ServiceMissing) {
        start_pcsc()
    } else if why.reason() == Some(Reason::NoAccount) {
        format!(
            "put the MFA device's seed on the YubiKey: `tapcred enroll --profile {} --touch` (a new device), or set tapcred_oath_account to the account that holds it",
            s.profile
        )
    } else {
        format!(
            "plug in the YubiKey holding the OATH account, or set {} for headless runs",
            crate::platform::words::env_var(&s.totp_secret_env)
        )
    }
}

pub(super) fn kind_name(k: TokenKind) -> &'static str {
    match k {
        TokenKind::Auto => "auto",
        TokenKind::Oath => "oath",
        TokenKind::Software => "software",
        TokenKind::Prompt => "prompt",
        TokenKind::Vault => "vault",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Doctor decides on the error's variant: a reworded message (no hint text in it)
    /// still gets the fix for its cause, and the hint text alone does not make a cause.
    #[test]
    fn token_fixes_follow_the_reason_not_the_message_text() {
        use crate::error::{Error, Reason};
        let down =
            Error::token("the smart-card service is away").with_reason(Reason::ServiceMissing);
        let mut d = Doctor { checks: Vec::new() };
        token_error(&mut d, &down);
        assert_eq!(d.checks[0].fix.as_deref(), Some(start_pcsc().as_str()));
        assert_eq!(d.checks[0].code, Some(4));
        let lookalike = Error::token(format!(
            "a message quoting {}; do this",
            crate::token::pcsc::no_service_hint()
        ));
        token_error(&mut d, &lookalike);
        assert_eq!(d.checks[1].fix.as_deref(), Some("do this"));

        let s = crate::token::TokenSettings {
            profile: "mfa".into(),
            ..Default::default()
        };
        assert_eq!(oath_skip_fix(&down, &s), start_pcsc());
        let none = Error::token("YubiKey 1 lists nothing for it").with_reason(Reason::NoAccount);
        assert!(
            oath_skip_fix(&none, &s).contains("tapcred enroll --profile mfa --touch"),
            "{}",
            oath_skip_fix(&none, &s)
        );
        let unplugged = Error::token("no OATH account here, but not as a reason");
        assert!(
            oath_skip_fix(&unplugged, &s).starts_with("plug in the YubiKey"),
            "{}",
            oath_skip_fix(&unplugged, &s)
        );
    }
}
