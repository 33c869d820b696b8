//! The environment `exec` and `serve` give their child: tapcred's own secrets never reach it.
//!
//! A child (and everything it starts) inherits tapcred's environment, which may hold the
//! second factor itself: the TOTP seed (`TAPCRED_TOTP_SECRET`, or whatever variable a
//! profile names in `tapcred_totp_secret_env`) and the OATH applet password
//! (`TAPCRED_OATH_PASSWORD`). Removed from the child's environment:
//! - every variable whose name starts with `TAPCRED_` (ASCII case-insensitively, as Windows
//!   compares names), so a secret variable added later (a FIDO PIN, say) is covered without
//!   a list to keep up to date; tapcred then sets `TAPCRED_PROFILE` (the nesting guard);
//! - the variable named by `tapcred_totp_secret_env` in the selected profile, in every
//!   profile of its chain, and in every other profile of the AWS files (a child may be
//!   another tool that would read any of them).

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::process::Command;

use crate::env::EnvLookup;
use crate::profile::{AwsFiles, Profiles, ResolvedProfile, Step};

/// The prefix of tapcred's own variables.
const OWN_PREFIX: &str = "TAPCRED_";

/// The profile key naming the variable that holds a seed.
const SECRET_ENV_KEY: &str = "tapcred_totp_secret_env";

/// `program args…` with tapcred's secrets removed from its environment.
pub fn command(
    program: &str,
    args: &[String],
    profile: &ResolvedProfile,
    env: &dyn EnvLookup,
) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args);
    let inherited: Vec<std::ffi::OsString> = std::env::vars_os().map(|(k, _)| k).collect();
    for name in secret_variables(profile, env, inherited.iter().map(|k| k.as_os_str())) {
        cmd.env_remove(name);
    }
    cmd
}

/// The names to remove from a child's environment, given the names it would inherit.
pub fn secret_variables<'a>(
    profile: &ResolvedProfile,
    env: &dyn EnvLookup,
    inherited: impl Iterator<Item = &'a OsStr>,
) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for name in inherited {
        // A name that is not UTF-8 cannot start with TAPCRED_ in any form tapcred reads.
        if let Some(name) = name.to_str()
            && name
                .get(..OWN_PREFIX.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(OWN_PREFIX))
        {
            out.insert(name.to_owned());
        }
    }
    out.insert(profile.token.totp_secret_env.clone());
    for step in &profile.steps {
        let mfa = match step {
            Step::SessionToken { mfa, .. } => Some(mfa),
            Step::AssumeRole(r) => r.mfa.as_ref(),
        };
        if let Some(m) = mfa {
            out.insert(m.token.totp_secret_env.clone());
        }
    }
    // Every other profile's seed variable. The files were just read to resolve `profile`;
    // should they have changed since and no longer parse, the chain's names above remain.
    if let Ok(all) = Profiles::load(&AwsFiles::from_env(env)) {
        for name in all.names() {
            if let Some(v) = all.get(&name, SECRET_ENV_KEY) {
                out.insert(v.to_owned());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn own_prefix_is_matched_case_insensitively_and_only_as_a_prefix() {
        let env: HashMap<String, String> = HashMap::new();
        let profile = ResolvedProfile {
            name: "p".into(),
            region: None,
            endpoint_url: None,
            ignore_configured_endpoint_urls: false,
            base: crate::profile::BaseCredentials {
                origin: "p".into(),
                access_key_id: "AKIAEXAMPLE".into(),
                secret_access_key: "x".to_owned().into(),
                session_token: None,
                in_vault: None,
            },
            steps: Vec::new(),
            token: Default::default(),
            roles_anywhere: None,
        };
        let names = [
            "TAPCRED_X",
            "tapcred_fido_pin",
            "MY_TAPCRED_X",
            "TAPCRED",
            "PATH",
        ];
        let got = secret_variables(&profile, &env, names.iter().map(OsStr::new));
        assert!(got.contains("TAPCRED_X") && got.contains("tapcred_fido_pin"));
        assert!(!got.contains("MY_TAPCRED_X") && !got.contains("TAPCRED"));
        assert!(!got.contains("PATH"));
        assert!(got.contains(crate::token::DEFAULT_SECRET_ENV));
    }
}
