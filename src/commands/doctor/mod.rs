//! `doctor`: how a profile resolves, what is installed and running, the clock against STS,
//! the cache — then the one next step when something is wrong. Never prints a secret: key
//! ids are shown by their last 4 characters, seeds and secret keys not at all.
//!
//! Exit codes: 0 when nothing is wrong (notes may remain), else the exit-code table's code (docs/configuration.md) of
//! the first problem found (3 configuration, 4 token/device, 5 STS would refuse — the clock,
//! 6 network, 7 local I/O).

mod cache;
mod changes;
mod clock;
mod devices;
mod profile;
mod programs;
mod report;
mod token;

use std::io::Write;

use crate::commands::Ctx;
use crate::commands::configure::key_hint;
use crate::env::EnvLookup;
use crate::error::{Error, Result};
use crate::profile::{AwsFiles, Profiles, ResolvedProfile};
use crate::ui::Headless;

use report::Doctor;
pub use report::{Check, Report, Status, YubiKeyReport, render};

#[derive(Debug, Clone, Default, clap::Args)]
pub struct DoctorArgs {
    /// AWS profile (default: $AWS_PROFILE, else "default").
    #[arg(short, long)]
    pub profile: Option<String>,
    /// Print JSON (stable keys: profile, chain, checks[], yubikeys[], clock_skew_seconds,
    /// next_step, exit_code).
    #[arg(long)]
    pub json: bool,
    /// Skip the clock check (the one unsigned request to the STS endpoint).
    #[arg(long)]
    pub offline: bool,
}

pub fn run(args: &DoctorArgs, ctx: &Ctx<'_>, out: &mut dyn Write) -> Result<i32> {
    let name = crate::profile::selected_name(args.profile.as_deref(), ctx.env);
    let report = diagnose(&name, args.offline, ctx.env);
    let text = if args.json {
        let mut s =
            serde_json::to_string_pretty(&report).map_err(|e| Error::internal(e.to_string()))?;
        s.push('\n');
        s
    } else {
        render(&report)
    };
    out.write_all(text.as_bytes())
        .map_err(|e| Error::io(format!("cannot write to stdout: {e}")))?;
    Ok(report.exit_code)
}

/// Everything `doctor` finds for profile `name`.
pub fn diagnose(name: &str, offline: bool, env: &dyn EnvLookup) -> Report {
    let mut d = Doctor { checks: Vec::new() };
    // Device and cache code talk to a person only through a Ui: collect, never prompt.
    let ui = Headless::new();
    let files = AwsFiles::from_env(env);

    changes::interrupted_changes(&mut d, env);

    // Files.
    profile::files_check(&mut d, &files, env);

    // Profile resolution.
    let mut chain = Vec::new();
    let mut resolved: Option<ResolvedProfile> = None;
    match Profiles::load(&files) {
        Err(e) => d.error("profile", &e),
        Ok(profiles) => match profiles.resolve(name, env) {
            Err(e) => d.error("profile", &e),
            Ok(p) if p.roles_anywhere.is_some() => {
                chain = vec![p.name.clone()];
                d.checks
                    .extend(crate::commands::roles_anywhere_setup::doctor_checks(
                        &p, env, &ui,
                    ));
                resolved = Some(p);
            }
            Ok(p) => {
                chain = profile::chain_of(&profiles, &p);
                let base = &p.base;
                let from = if let Some(v) = &base.in_vault {
                    format!(
                        "the vault {} (tapcred_access_key = vault in {})",
                        v.display(),
                        profiles.location(&base.origin, Some("tapcred_access_key"))
                    )
                } else if base.origin == "env" {
                    "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (credential_source = Environment)"
                        .to_owned()
                } else {
                    profiles.location(&base.origin, Some("aws_access_key_id"))
                };
                d.ok(
                    "profile",
                    format!(
                        "{}: keys {} from {from}{}",
                        chain.join(" → "),
                        if base.in_vault.is_some() {
                            "(access key: vault)".to_owned()
                        } else {
                            key_hint(&base.access_key_id)
                        },
                        if base.session_token.is_some() {
                            " (with a session token)"
                        } else {
                            ""
                        }
                    ),
                );
                for step in &p.steps {
                    d.ok("profile", profile::describe_step(step));
                }
                resolved = Some(p);
            }
        },
    }

    // Token sources, one per MFA serial.
    if let Some(p) = &resolved {
        token::token_checks(&mut d, p, env, &ui);
    }

    // What is installed and running.
    let yubikeys = devices::device_checks(&mut d, &ui, env);
    devices::hid_check(&mut d, &yubikeys);
    devices::udev_check(&mut d);
    programs::programs_check(&mut d);

    // Clock against STS.
    let clock_skew_seconds = if offline {
        d.note("clock", "not checked (--offline)", None);
        None
    } else {
        clock::clock_check(&mut d, resolved.as_ref(), env)
    };

    // The access key's age (IAM's CreateDate; not asked --offline).
    if let Some(p) = &resolved
        && let Some(age) = crate::commands::rotate::age::check(p, offline, env, &ui)
    {
        match (age.too_old(), age.days) {
            (true, _) => d.note("keys", age.message(), Some(age.fix())),
            (false, Some(_)) => d.ok("keys", age.message()),
            (false, None) => d.note("keys", age.message(), None),
        }
    }

    // Cache.
    if let Some(until) = cache::cache_check(&mut d, name, env, &ui) {
        cache::works_from_the_cache(&mut d, until);
    }

    for w in ui.warnings() {
        if !d.checks.iter().any(|c| c.message == w) {
            d.note("cache", w, None);
        }
    }

    let first_problem = d.checks.iter().find(|c| c.status == Status::Problem);
    let exit_code = first_problem.and_then(|c| c.code).unwrap_or(0);
    let next_step = match first_problem {
        Some(c) => c.fix.clone(),
        None => d
            .checks
            .iter()
            .find(|c| c.status == Status::Note && c.fix.is_some())
            .and_then(|c| c.fix.clone()),
    };
    Report {
        profile: name.to_owned(),
        config_file: files.config,
        credentials_file: files.credentials,
        chain,
        checks: d.checks,
        yubikeys,
        clock_skew_seconds,
        next_step,
        exit_code,
    }
}
