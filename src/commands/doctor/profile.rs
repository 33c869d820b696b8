//! Profiles and files: the AWS files read, and how the selected profile resolves.

use std::fmt::Write as _;

use super::report::Doctor;
use crate::env::EnvLookup;
use crate::profile::editor::AwsFile;
use crate::profile::{AwsFiles, Profiles, ResolvedProfile, Step};

pub(super) fn files_check(d: &mut Doctor, files: &AwsFiles, env: &dyn EnvLookup) {
    for (path, what, var) in [
        (&files.config, "config", "AWS_CONFIG_FILE"),
        (
            &files.credentials,
            "credentials",
            "AWS_SHARED_CREDENTIALS_FILE",
        ),
    ] {
        let via = if env.var(var).is_some_and(|v| !v.is_empty()) {
            format!(" (from {})", crate::platform::words::env_var(var))
        } else {
            String::new()
        };
        let kind = if what == "config" {
            AwsFile::Config
        } else {
            AwsFile::Credentials
        };
        for (old, why, fix) in crate::profile::editor::leftovers_beside(path, kind) {
            d.note("files", format!("{} {why}", old.display()), fix);
        }
        if !path.exists() {
            d.note(
                "files",
                format!("{what} file {} does not exist{via}", path.display()),
                None,
            );
            continue;
        }
        let shared = crate::platform::fs::others_can_read(path);
        match shared {
            Some(how) if what == "credentials" => d.note(
                "files",
                format!(
                    "credentials file {}{via} is readable by other users ({how})",
                    path.display()
                ),
                Some(crate::platform::fs::make_private_hint(path)),
            ),
            _ => d.ok("files", format!("read {what} file {}{via}", path.display())),
        }
    }
}

/// Selected profile → … → the profile holding the keys.
pub(super) fn chain_of(profiles: &Profiles, p: &ResolvedProfile) -> Vec<String> {
    let mut chain = vec![p.name.clone()];
    let mut cur = p.name.clone();
    while cur != p.base.origin && chain.len() < 32 {
        match profiles.get(&cur, "source_profile") {
            Some(next) if next != cur => {
                chain.push(next.to_owned());
                cur = next.to_owned();
            }
            _ => break,
        }
    }
    if p.base.origin == "env" {
        chain.push("environment".to_owned());
    }
    chain
}

pub(super) fn describe_step(step: &Step) -> String {
    match step {
        Step::SessionToken {
            profile,
            mfa,
            duration_seconds,
        } => format!(
            "GetSessionToken for profile \"{profile}\" with MFA {}{}",
            mfa.serial,
            duration_seconds
                .map(|s| format!(", {s} s"))
                .unwrap_or_default()
        ),
        Step::AssumeRole(r) => {
            let mut s = format!("AssumeRole {} (profile \"{}\")", r.role_arn, r.profile);
            match &r.mfa {
                Some(m) => {
                    let _ = write!(s, " with MFA {}", m.serial);
                }
                None => s.push_str(" without MFA"),
            }
            if let Some(d) = r.duration_seconds {
                let _ = write!(s, ", {d} s");
            }
            s
        }
    }
}
