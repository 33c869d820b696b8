//! `exec -- CMD …`: run a child with the profile's credentials in its environment.

use crate::commands::export::variables;
use crate::commands::{Ctx, child};
use crate::engine::{self, Options};
use crate::error::{Error, Result};
use crate::platform::process;

/// Set in the child's environment; its presence makes a nested `tapcred exec` refuse to run.
pub const NESTING_VAR: &str = "TAPCRED_PROFILE";

/// Variables that would make SDKs in the child pick other credentials or profiles.
const CONFLICTING: &[&str] = &[
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SECURITY_TOKEN",
    "AWS_SESSION_TOKEN",
    "AWS_CREDENTIAL_EXPIRATION",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
];

pub fn run(profile: &str, command: &[String], opts: &Options, ctx: &Ctx<'_>) -> Result<i32> {
    if let Some(outer) = ctx.env.var(NESTING_VAR) {
        return Err(Error::usage(format!(
            "already inside `tapcred exec` for profile \"{outer}\" ({NESTING_VAR} is set); exit that shell first, or unset {NESTING_VAR} if it is stale"
        )));
    }
    let (program, args) = command.split_first().ok_or_else(|| {
        Error::usage("exec needs a command: tapcred exec --profile P -- CMD ARGS…")
    })?;
    let got = engine::credentials(profile, opts, ctx.env, ctx.ui)?;
    let mut cmd = child::command(program, args, &got.profile, ctx.env);
    for k in CONFLICTING {
        cmd.env_remove(k);
    }
    for (k, v) in variables(&got.credentials, Some(&got.target.region)) {
        cmd.env(k, v.as_str());
    }
    cmd.env(NESTING_VAR, profile);
    let child = process::spawn(&mut cmd).map_err(|e| {
        Error::io(format!(
            "cannot run {program:?}: {e}; check the command name and PATH"
        ))
        .with_source(e)
    })?;
    child
        .wait()
        .map_err(|e| Error::io(format!("cannot wait for {program:?}: {e}")).with_source(e))
}
