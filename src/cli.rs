//! Command-line interface (clap): parse, pick the command, print errors, exit codes.

use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::commands::{self, Ctx};
use crate::engine::Options;
use crate::error::Error;
use crate::profile;
use crate::token::{EnvLookup, RealEnv};
use crate::ui::TerminalUi;

const AFTER_HELP: &str = "\
Exit codes: 0 ok, 1 internal error, 2 usage, 3 configuration (AWS files, profile, seed),
4 token/device (YubiKey, touch, password), 5 STS refused (code, serial, role, keys),
6 network/endpoint, 7 local I/O (cache, locks, spawning); `exec`/`serve -- CMD` exit with
the child's code.";

#[derive(Debug, Parser)]
#[command(
    name = "tapcred",
    version,
    about = "AWS profiles with mfa_serial, served with a tap on a YubiKey",
    long_about = "tapcred reads the TOTP code for a profile's mfa_serial from a YubiKey's OATH applet \
(or a software seed for headless runs), calls AWS STS, caches the session and serves the \
credentials to AWS SDKs (credential_process), child processes (exec), shells (export) and \
long-running programs (serve).",
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// More logging on stderr (-v info, -vv debug); RUST_LOG overrides. Never logs secrets.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, Args, Clone)]
pub struct ProfileArgs {
    /// AWS profile (default: $AWS_PROFILE, else "default").
    #[arg(short, long)]
    pub profile: Option<String>,
    /// Do not read or write the session cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Send MFA directly on AssumeRole instead of reusing a cached MFA session.
    #[arg(long)]
    pub no_session: bool,
}

impl ProfileArgs {
    fn options(&self) -> Options {
        Options {
            no_cache: self.no_cache,
            no_session: self.no_session,
        }
    }
    fn name(&self, env: &dyn EnvLookup) -> String {
        profile::selected_name(self.profile.as_deref(), env)
    }
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Print credentials as the JSON AWS SDKs read (use as `credential_process`).
    #[command(name = "credential-process")]
    CredentialProcess(ProfileArgs),
    /// Run a command with the profile's credentials in its environment.
    Exec {
        #[command(flatten)]
        profile: ProfileArgs,
        /// The command and its arguments (after `--`).
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Print credentials for a shell or a file.
    Export {
        #[command(flatten)]
        profile: ProfileArgs,
        #[arg(long, short = 'f', value_enum, default_value = "env")]
        format: commands::export::Format,
    },
    /// Serve credentials on a loopback container-credentials endpoint.
    Serve {
        #[command(flatten)]
        profile: ProfileArgs,
        /// Port on 127.0.0.1 (default: an ephemeral port).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Run this command with AWS_CONTAINER_CREDENTIALS_FULL_URI set, exit with its code.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Print the current one-time code for a profile's MFA device (or a YubiKey OATH account).
    Code {
        #[command(flatten)]
        profile: ProfileArgs,
        /// An OATH account on the YubiKey instead of a profile's mfa_serial.
        #[arg(long, conflicts_with = "profile")]
        account: Option<String>,
        /// Which YubiKey, with --account, when several are plugged in.
        #[arg(long, requires = "account")]
        serial: Option<u32>,
        /// Print JSON instead of the bare code.
        #[arg(long)]
        json: bool,
    },
    /// List YubiKeys: serial, firmware, form factor, OATH accounts (touch, locked).
    Devices {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List cached sessions, or clear them.
    Sessions {
        #[command(subcommand)]
        action: Option<SessionsCmd>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Create or update the MFA profile and its source profile's keys (asks for what is
    /// missing; the access key comes from the terminal, stdin or AWS_ACCESS_KEY_ID/
    /// AWS_SECRET_ACCESS_KEY, never from arguments).
    Configure(commands::configure::ConfigureArgs),
    /// Print shell completions.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff); with --dir, write one page per command and subcommand.
    Man {
        /// Write tapcred.1, tapcred-SUBCOMMAND.1, … into this directory (created if missing).
        #[arg(long, value_name = "DIR")]
        dir: Option<std::path::PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum SessionsCmd {
    /// Remove cached sessions (all, or one profile's).
    Clear {
        #[arg(short, long)]
        profile: Option<String>,
    },
}

pub fn command() -> clap::Command {
    Cli::command()
}

/// What a panic prints instead of Rust's message, whose payload can carry user data (a seed
/// sliced in a bad place, a path, a server's answer). Followed only by the source location.
pub const PANIC_MESSAGE: &str = "tapcred: error: internal error (a bug in tapcred; details withheld because they could contain secrets); please report it with the command you ran";

/// Replace the default panic hook: print [`PANIC_MESSAGE`] and the panic's source location
/// (never its payload), then exit 1 — also when the panic is on another thread, so no
/// thread dies silently while tapcred runs on.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map(|l| format!(" [at {}:{}]", l.file(), l.line()))
            .unwrap_or_default();
        let _ = std::io::Write::write_all(
            &mut std::io::stderr().lock(),
            format!("{PANIC_MESSAGE}{at}\n").as_bytes(),
        );
        std::process::exit(Error::internal("").exit_code());
    }));
}

/// Parse, run, and return the process exit code.
pub fn main() -> i32 {
    install_panic_hook();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => 0,
                _ => Error::usage("").exit_code(),
            };
        }
    };
    init_logging(cli.verbose);
    let env = RealEnv;
    let ui = TerminalUi::new();
    let ctx = Ctx { env: &env, ui: &ui };
    match run(cli.command, &ctx) {
        Ok(code) => code,
        Err(e) => {
            tracing::debug!(kind = ?e.kind, "command failed");
            eprintln!("tapcred: error: {e}");
            e.exit_code()
        }
    }
}

pub fn run(cmd: Cmd, ctx: &Ctx<'_>) -> crate::Result<i32> {
    let mut stdout = std::io::stdout().lock();
    match cmd {
        Cmd::CredentialProcess(p) => {
            commands::process::run(&p.name(ctx.env), &p.options(), ctx, &mut stdout)
        }
        Cmd::Exec { profile, command } => {
            commands::exec::run(&profile.name(ctx.env), &command, &profile.options(), ctx)
        }
        Cmd::Export { profile, format } => commands::export::run(
            &profile.name(ctx.env),
            format,
            &profile.options(),
            ctx,
            &mut stdout,
        ),
        Cmd::Serve {
            profile,
            port,
            command,
        } => commands::serve::run(
            &profile.name(ctx.env),
            port,
            &command,
            &profile.options(),
            ctx,
            &mut stdout,
        ),
        Cmd::Code {
            account: Some(account),
            serial,
            json,
            ..
        } => commands::code::run_account(&account, serial, json, ctx, &mut stdout),
        Cmd::Code { profile, json, .. } => {
            commands::code::run(&profile.name(ctx.env), json, ctx, &mut stdout)
        }
        Cmd::Devices { json } => commands::devices::run(json, ctx, &mut stdout),
        Cmd::Sessions { action, json } => match action {
            None => commands::sessions::list(json, ctx, &mut stdout),
            Some(SessionsCmd::Clear { profile }) => {
                commands::sessions::clear(profile.as_deref(), ctx, &mut stdout)
            }
        },
        Cmd::Configure(args) => commands::configure::run(&args, ctx, &mut stdout),
        Cmd::Completions { shell } => {
            let mut cmd = command();
            clap_complete::generate(shell, &mut cmd, "tapcred", &mut stdout);
            Ok(0)
        }
        Cmd::Man { dir } => commands::man::run(dir.as_deref(), &mut stdout),
    }
}

fn init_logging(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => EnvFilter::new(v),
        // No -v and no RUST_LOG: logging is off, and with no subscriber installed every
        // `tracing` call is a no-op. Building one (EnvFilter, registry) cost ~7% of a warm
        // `credential-process` (benches/README.md).
        _ if verbose == 0 => return,
        _ => EnvFilter::new(match verbose {
            1 => "tapcred=info",
            _ => "tapcred=debug",
        }),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_definition_is_consistent() {
        command().debug_assert();
    }
}
