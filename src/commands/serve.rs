//! `serve [--profile P] [--port N] [-- CMD ARGS…]`: a loopback container-credentials
//! endpoint (see [`crate::serve`]).
//!
//! The profile's credentials are obtained once at start (so a touch, if needed, happens now,
//! in front of the person, not at some later request). Refreshes come from request threads
//! but are executed here on the command's thread, through the engine, which reuses the cached
//! MFA session: a tap is needed only when that session itself expires.
//!
//! Without a command: prints `export AWS_CONTAINER_CREDENTIALS_FULL_URI=…` and
//! `export AWS_CONTAINER_AUTHORIZATION_TOKEN=…` on stdout and serves until killed. With a
//! command: runs it with those two variables (and the region) set, conflicting credential
//! variables removed, and exits with its exit code.

use std::io::Write;
use std::sync::Arc;
use std::sync::mpsc;

use crate::commands::exec::NESTING_VAR;
use crate::commands::{Ctx, child};
use crate::credentials::Credentials;
use crate::engine::{self, Options};
use crate::error::{Error, Result};
use crate::platform::{self, process};
use crate::serve::{self, CredentialsProvider, ServeOptions};

/// Variables that would make an SDK in the child pick other credentials than the endpoint
/// (environment credentials come before container credentials in every default chain).
const CONFLICTING: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_CREDENTIAL_EXPIRATION",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
];

const CONFIG_FILE_ENV: &str = "AWS_CONFIG_FILE";
const CREDENTIALS_FILE_ENV: &str = "AWS_SHARED_CREDENTIALS_FILE";

/// A new private directory (0700 on Unix, in the per-user temp directory on Windows) holding
/// empty `config` and `credentials` files; removed when dropped.
fn empty_aws_files() -> Result<tempfile::TempDir> {
    let fail = |e: std::io::Error| {
        Error::io(format!(
            "cannot create empty AWS config files for the child in {}: {e}; set TMPDIR to a writable directory",
            std::env::temp_dir().display()
        ))
    };
    let dir = tempfile::Builder::new()
        .prefix("tapcred-serve-")
        .tempdir()
        .map_err(fail)?;
    // A new directory (its name random, mkdir never reuses one), made private before any
    // file is put in it: nobody else can add or swap a file the child will read.
    platform::fs::check_private_dir(dir.path()).map_err(|p| {
        fail(std::io::Error::other(format!(
            "{}: {p:?}",
            dir.path().display()
        )))
    })?;
    for name in ["config", "credentials"] {
        platform::fs::create_new_private(&dir.path().join(name)).map_err(fail)?;
    }
    Ok(dir)
}

/// What the command's thread waits for (blocking: an idle `serve` never wakes up).
enum Event {
    /// A request thread needs fresh credentials; the answer goes back on the sender.
    Refresh(mpsc::Sender<Result<Credentials>>),
    /// The child has exited: its exit code.
    ChildExited(std::io::Result<i32>),
}

pub fn run(
    profile: &str,
    port: u16,
    command: &[String],
    opts: &Options,
    ctx: &Ctx<'_>,
    out: &mut dyn Write,
) -> Result<i32> {
    let first = engine::credentials(profile, opts, ctx.env, ctx.ui)?;
    let region = first.target.region.clone();
    let resolved = first.profile;

    // Request threads ask this thread for fresh credentials through a channel, so the engine
    // runs with this command's environment and UI.
    let (tx, rx) = mpsc::channel::<Event>();
    let refresh_tx = tx.clone();
    let provider: CredentialsProvider = Arc::new(move || {
        let (rtx, rrx) = mpsc::channel();
        refresh_tx
            .send(Event::Refresh(rtx))
            .map_err(|_| Error::io("tapcred serve is shutting down"))?;
        rrx.recv()
            .map_err(|_| Error::io("tapcred serve is shutting down"))?
    });
    let handle = serve::start(
        provider,
        ServeOptions {
            port,
            initial: Some(first.credentials),
            ..Default::default()
        },
    )?;

    match command.split_first() {
        None => {
            for (k, v) in handle.env_vars() {
                writeln!(out, "export {k}={v}").map_err(|e| {
                    Error::io(format!("cannot write to stdout: {e}")).with_source(e)
                })?;
            }
            out.flush()
                .map_err(|e| Error::io(format!("cannot write to stdout: {e}")).with_source(e))?;
            ctx.ui.info(&format!(
                "serving profile \"{profile}\" on {} (Ctrl-C to stop)",
                handle.url
            ));
        }
        Some((program, args)) => {
            let mut cmd = child::command(program, args, &resolved, ctx.env);
            for k in CONFLICTING {
                cmd.env_remove(k);
            }
            for (k, v) in handle.env_vars() {
                cmd.env(k, v);
            }
            cmd.env("AWS_REGION", &region)
                .env("AWS_DEFAULT_REGION", &region)
                .env(NESTING_VAR, profile);
            // Empty AWS files for the child: every SDK's default chain reads the shared files
            // (a `[default]` with static keys, a `credential_process`, SSO) before the
            // container endpoint, and would silently take them instead.
            let files = empty_aws_files()?;
            cmd.env(CONFIG_FILE_ENV, files.path().join("config"))
                .env(CREDENTIALS_FILE_ENV, files.path().join("credentials"));
            let child = process::spawn(&mut cmd).map_err(|e| {
                Error::io(format!(
                    "cannot run {program:?}: {e}; check the command name and PATH"
                ))
                .with_source(e)
            })?;
            // One thread blocks in wait(); signals to tapcred are forwarded meanwhile and the
            // endpoint keeps answering until the child has really exited.
            let exited = tx.clone();
            std::thread::Builder::new()
                .name("tapcred-child".into())
                .spawn(move || {
                    let code = child.wait();
                    drop(files); // removed once the child is gone
                    let _ = exited.send(Event::ChildExited(code));
                })
                .map_err(|e| {
                    Error::io(format!("cannot start the child-wait thread: {e}")).with_source(e)
                })?;
        }
    }
    drop(tx);

    loop {
        match rx.recv() {
            Ok(Event::Refresh(reply)) => {
                let r = engine::credentials(profile, opts, ctx.env, ctx.ui).map(|o| o.credentials);
                if let Err(e) = &r {
                    ctx.ui.warn(&format!("refreshing credentials failed: {e}"));
                }
                let _ = reply.send(r);
            }
            Ok(Event::ChildExited(code)) => {
                handle.shutdown();
                return code.map_err(|e| {
                    Error::io(format!("cannot wait for the child: {e}")).with_source(e)
                });
            }
            Err(_) => return Err(Error::internal("serve: the server stopped unexpectedly")),
        }
    }
}
