//! `code`: print the current one-time code for a profile's MFA device (from whichever token
//! source the profile uses), for typing into the AWS console or checking a setup.

use std::io::Write;

use crate::commands::Ctx;
use crate::engine;
use crate::error::{Error, Result};
use crate::profile::{Mfa, Step};
use crate::token::{TokenSettings, oath};

/// `--account NAME`: straight from the YubiKey's OATH applet, no profile needed.
pub fn run_account(
    account: &str,
    serial: Option<u32>,
    json: bool,
    ctx: &Ctx<'_>,
    out: &mut dyn Write,
) -> Result<i32> {
    let settings = TokenSettings {
        yubikey_serial: serial,
        profile: "(none)".into(),
        ..Default::default()
    };
    let (name, code) = oath::code_for(account, &settings, ctx.ui)?;
    let left = code.window_end.saturating_sub(crate::clock::now_unix());
    let text = if json {
        serde_json::json!({ "account": name, "code": code.digits.as_str(), "valid_for_seconds": left }).to_string()
    } else {
        code.digits.to_string()
    };
    writeln!(out, "{text}")
        .map_err(|e| Error::io(format!("cannot write to stdout: {e}")).with_source(e))?;
    Ok(0)
}

pub fn run(profile: &str, json: bool, ctx: &Ctx<'_>, out: &mut dyn Write) -> Result<i32> {
    let resolved = engine::load_profile(profile, ctx.env)?;
    let mfa = first_mfa(&resolved.steps).ok_or_else(|| {
        Error::config(format!(
            "profile \"{profile}\" has no mfa_serial anywhere in its chain, so there is no code to show; add mfa_serial to the profile"
        ))
    })?;
    let code = engine::obtain_code(mfa, profile, ctx.env, ctx.ui)?;
    let left = code.window_end.saturating_sub(crate::clock::now_unix());
    let text = if json {
        serde_json::json!({
            "profile": profile,
            "mfa_serial": mfa.serial,
            "code": code.digits.as_str(),
            "valid_for_seconds": left,
        })
        .to_string()
    } else {
        code.digits.to_string()
    };
    writeln!(out, "{text}")
        .map_err(|e| Error::io(format!("cannot write to stdout: {e}")).with_source(e))?;
    Ok(0)
}

fn first_mfa(steps: &[Step]) -> Option<&Mfa> {
    steps.iter().find_map(|s| match s {
        Step::SessionToken { mfa, .. } => Some(mfa),
        Step::AssumeRole(r) => r.mfa.as_ref(),
    })
}
