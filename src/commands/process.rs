//! `credential-process`: the JSON AWS SDKs read from a `credential_process` command.

use std::io::Write;

use crate::Credentials;
use crate::commands::Ctx;
use crate::engine::{self, Options};
use crate::error::{Error, Result};

pub fn run(profile: &str, opts: &Options, ctx: &Ctx<'_>, out: &mut dyn Write) -> Result<i32> {
    // The warm index answers a cache hit without parsing the AWS files (engine/warm.rs).
    let credentials = match engine::warm_credentials(profile, opts, ctx.env) {
        Some(c) => c,
        None => engine::credentials(profile, opts, ctx.env, ctx.ui)?.credentials,
    };
    print(&credentials, out)
}

/// The `credential_process` JSON document, one line (also the `tapcred` launcher's answer
/// to a warm call: `cli::launcher`).
pub fn print(credentials: &Credentials, out: &mut dyn Write) -> Result<i32> {
    let doc = credentials.to_process_json();
    let text =
        zeroize::Zeroizing::new(serde_json::to_string(&doc).map_err(|e| {
            Error::internal(format!("cannot encode credentials: {e}")).with_source(e)
        })?);
    writeln!(out, "{}", text.as_str())
        .map_err(|e| Error::io(format!("cannot write to stdout: {e}")).with_source(e))?;
    Ok(0)
}
