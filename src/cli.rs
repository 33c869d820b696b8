//! Command-line interface (clap): parse, pick the command, print errors, exit codes.

use clap::{Args, CommandFactory, Parser, Subcommand};

pub mod launcher;

use crate::build_id;
use crate::commands::{self, Ctx};
use crate::engine::Options;
use crate::env::{EnvLookup, RealEnv};
use crate::error::Error;
use crate::profile;
use crate::ui::TerminalUi;

const AFTER_HELP: &str = "\
Exit codes: 0 ok, 1 internal error, 2 usage, 3 configuration (AWS files, profile, seed),
4 token/device (YubiKey, touch, password), 5 STS refused (code, serial, role, keys),
6 network/endpoint, 7 local I/O (cache, locks, spawning); `exec`/`serve -- CMD` exit with
the child's code.";

#[derive(Debug, Parser)]
#[command(
    name = "tapcred",
    // Not the file run (`tapcred-full.exe`, a link's name): what the person types.
    bin_name = "tapcred",
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
    /// AWS profile (default: the AWS_PROFILE variable, else "default").
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
        #[arg(long, short = 'f', value_enum, default_value = crate::platform::words::DEFAULT_EXPORT_FORMAT)]
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
    /// Create a virtual MFA device for the profile's IAM user, put its seed straight into the
    /// YubiKey (or a private seed file, or tapcred's vault), enable it and write mfa_serial into
    /// the profile.
    Enroll {
        /// The profile to enroll (its chain must start from an IAM user's long-term keys).
        #[arg(short, long)]
        profile: Option<String>,
        /// Require a touch on the YubiKey for every code of this account.
        #[arg(long)]
        touch: bool,
        /// Name of the IAM virtual MFA device (default: the IAM user name).
        #[arg(long, value_name = "NAME")]
        device_name: Option<String>,
        /// Where the seed goes: the YubiKey's OATH applet, a new private seed file, or the vault.
        #[arg(long, value_enum, default_value = "oath")]
        to: commands::enroll::Destination,
        /// Which YubiKey (serial number) when several are plugged in (with --to vault: the
        /// one that unlocks the vault).
        #[arg(long, value_name = "N")]
        serial: Option<u32>,
        /// With --to file: the seed file to create (default: tapcred-PROFILE.seed beside the
        /// AWS config file).
        #[arg(long, value_name = "PATH")]
        seed_file: Option<std::path::PathBuf>,
        /// Undo what an interrupted enroll of this profile left (read from its journal):
        /// IAM's state is read first; the device and seed it made are removed.
        #[arg(long, conflicts_with = "resume")]
        undo: bool,
        /// Finish what an interrupted enroll of this profile left (read from its journal):
        /// enable the device unless IAM already has, write the profile, prove it.
        #[arg(long)]
        resume: bool,
    },
    /// Replace the long-term access key of the profile's IAM user: one MFA session (one tap),
    /// CreateAccessKey, the new key proven and written where the old one lives, the old key
    /// deactivated and deleted.
    Rotate(commands::rotate::Args),
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
    /// Explain how a profile resolves, what is installed and running, the clock against STS
    /// and the cache, then the one next step when something is wrong (exit 0 when healthy,
    /// else the code of the first problem).
    Doctor(commands::doctor::DoctorArgs),
    /// The vault: TOTP seeds and access keys kept encrypted, opened by a YubiKey OTP slot's
    /// challenge-response or a FIDO2 key's hmac-secret; a profile reads its seed from it
    /// with `tapcred_token = vault` (or `auto`), its key with `tapcred_access_key = vault`.
    Vault {
        #[command(subcommand)]
        action: VaultCmd,
    },
    /// Print shell completions.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// YubiKey PIV keys for IAM Roles Anywhere: generate one on the card with a certificate
    /// request for your CA, import the CA's certificate, show the slots.
    Piv {
        #[command(subcommand)]
        action: commands::piv::PivCmd,
    },
    /// Print the man page (roff); with --dir, write one page per command and subcommand.
    Man {
        /// Write tapcred.1, tapcred-SUBCOMMAND.1, … into this directory (created if missing).
        #[arg(long, value_name = "DIR")]
        dir: Option<std::path::PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum VaultCmd {
    /// Create the vault (the TAPCRED_VAULT variable, else ~/.local/share/tapcred/vault; macOS
    /// ~/Library/Application Support/tapcred/vault; Windows %APPDATA%\tapcred\vault), unlocked by a
    /// YubiKey OTP slot programmed for HMAC-SHA1 challenge-response
    /// (`ykman otp chalresp --generate 2`) or by a FIDO2 key's hmac-secret (not on Windows).
    Init {
        /// otp (slot 2), otp:SLOT (1 or 2), fido2 (touch; PIN from TAPCRED_FIDO_PIN or the
        /// terminal only if the key demands it) or fido2:pin (PIN and touch every time).
        #[arg(long, value_name = "otp[:SLOT]|fido2[:pin]")]
        unlock: String,
        /// Which YubiKey (serial number) when several are plugged in.
        #[arg(long, value_name = "N")]
        serial: Option<u32>,
    },
    /// Store the TOTP seed of a profile's mfa_serial in the vault (one unlock). The seed
    /// (base32 or otpauth://totp/ URI) comes from --seed-env, stdin, or a no-echo prompt;
    /// never from arguments.
    AddSeed {
        #[arg(short, long)]
        profile: Option<String>,
        /// Name of an environment variable holding the seed.
        #[arg(long, value_name = "NAME")]
        seed_env: Option<String>,
        /// Which YubiKey (serial number) unlocks, when several are plugged in.
        #[arg(long, value_name = "N")]
        serial: Option<u32>,
    },
    /// Move a source profile's long-term access key from the credentials file into the vault
    /// (one unlock). The vault is written and test-decrypted first; then the profile's
    /// aws_access_key_id/aws_secret_access_key lines become `tapcred_access_key = vault`
    /// (every other byte of the file kept).
    ImportKeys {
        /// The source profile holding the keys in the credentials file.
        #[arg(short, long)]
        profile: String,
        /// Which YubiKey (serial number) unlocks, when several are plugged in.
        #[arg(long, value_name = "N")]
        serial: Option<u32>,
    },
    /// Let another YubiKey (or another OTP slot) open the vault too: a backup key. The vault
    /// is opened with a key it already has; both keys may need a touch.
    AddUnlock {
        /// otp (slot 2) or otp:SLOT (1 or 2) of the new key.
        #[arg(long, value_name = "otp[:SLOT]")]
        unlock: String,
        /// The new YubiKey's serial number (needed when several are plugged in).
        #[arg(long, value_name = "N")]
        serial: Option<u32>,
    },
    /// Remove a seed, an access key or an unlocker from the vault (one unlock; the last
    /// unlocker cannot be removed). The vault is re-keyed: what is removed opens nothing
    /// written after.
    #[command(group(clap::ArgGroup::new("what").required(true).args(["profile", "mfa_serial", "access_key", "unlock"])))]
    Remove {
        /// The seed of this profile's mfa_serial.
        #[arg(short, long)]
        profile: Option<String>,
        /// The seed of this mfa_serial (when no profile names it any more).
        #[arg(long, value_name = "ARN")]
        mfa_serial: Option<String>,
        /// The access key of this source profile.
        #[arg(long, value_name = "SOURCE")]
        access_key: Option<String>,
        /// An unlocker, by the id `tapcred vault list` shows (otp:SERIAL:SLOT).
        #[arg(long, value_name = "ID")]
        unlock: Option<String>,
        /// Which YubiKey (serial number) unlocks, when several are plugged in.
        #[arg(long, value_name = "N")]
        serial: Option<u32>,
    },
    /// Accept the vault on disk although it is older than one tapcred has already seen
    /// (an old copy put back on purpose). One unlock; it then becomes the newest.
    AcceptRollback {
        /// Which YubiKey (serial number) unlocks, when several are plugged in.
        #[arg(long, value_name = "N")]
        serial: Option<u32>,
    },
    /// List the vault's unlockers and entries (names only; no unlock needed).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
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

/// The command line AWS SDKs run on every credential refresh, `credential-process` with
/// nothing or only `--profile NAME` / `-p NAME` / `--profile=NAME`, recognised without
/// building clap's command tree (a tenth of a warm call). Anything else — other flags, a
/// name starting with `-`, non-UTF-8 — is `None` and goes through clap, which gives these
/// forms the same [`Cli`] (tested).
pub fn fast_credential_process(mut args: impl Iterator<Item = std::ffi::OsString>) -> Option<Cli> {
    if args.next()? != "credential-process" {
        return None;
    }
    let rest: Vec<String> = args.map(|a| a.into_string().ok()).collect::<Option<_>>()?;
    let profile = match rest.as_slice() {
        [] => None,
        [flag, name] if flag == "--profile" || flag == "-p" => Some(name.clone()),
        [one] => Some(one.strip_prefix("--profile=")?.to_owned()),
        _ => return None,
    };
    if profile
        .as_deref()
        .is_some_and(|n| n.is_empty() || n.starts_with('-'))
    {
        return None;
    }
    Some(Cli {
        verbose: 0,
        command: Cmd::CredentialProcess(ProfileArgs {
            profile,
            no_cache: false,
            no_session: false,
        }),
    })
}

/// The whole command line through clap; `--version` shows both programs' builds
/// ([`build_id::version_text`], read only when asked for).
fn parse_full() -> Result<Cli, clap::Error> {
    let asks_version = std::env::args_os()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--version" || a == "-V");
    let mut cmd = Cli::command();
    if asks_version {
        // Once per process, so leaking it is harmless; clap keeps a &'static str.
        let text: &'static str = Box::leak(build_id::version_text().into_boxed_str());
        cmd = cmd.version(text);
    }
    cmd.try_get_matches()
        .and_then(|m| <Cli as clap::FromArgMatches>::from_arg_matches(&m))
}

/// Parse, run, and return the process exit code.
pub fn main() -> i32 {
    install_panic_hook();
    let handed = std::env::var(build_id::LAUNCHER_BUILD_ENV).ok();
    if let Err(e) = build_id::check_launcher(handed.as_deref()) {
        eprintln!("tapcred: error: {e}");
        return e.exit_code();
    }
    let fast = fast_credential_process(std::env::args_os().skip(1));
    let cli = match fast.map_or_else(parse_full, Ok) {
        Ok(c) => c,
        Err(e) => {
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    let _ = e.print();
                    0
                }
                _ => {
                    match secret_in_arguments(std::env::args_os().skip(1)) {
                        Some(usage) => print_error(&usage),
                        // clap quotes the arguments it refuses: foreign text, shown escaped.
                        None => eprint!(
                            "{}",
                            crate::text::escape_keeping_lines(&e.render().to_string())
                        ),
                    }
                    Error::usage("").exit_code()
                }
            };
        }
    };
    init_logging(cli.verbose);
    // Before any seed, password or session key is read (issue 11, finding 10).
    crate::platform::harden::disable_core_dumps();
    let env = RealEnv;
    let ui = TerminalUi::new();
    let ctx = Ctx { env: &env, ui: &ui };
    match run(cli.command, &ctx) {
        Ok(code) => code,
        Err(e) => {
            tracing::debug!(kind = ?e.kind, "command failed");
            print_error(&e);
            e.exit_code()
        }
    }
}

/// The one way an error reaches the person: one line on stderr, its text escaped
/// ([`crate::text::escape`]) since it quotes profile names, paths and AWS answers.
pub fn print_error(e: &Error) {
    eprintln!("tapcred: error: {}", crate::text::escape(e.message()));
}

/// The options of `aws configure set` and other tools that put a secret on the command line,
/// which tapcred never accepts (argv is visible to every user in `ps`, and kept in shell
/// history): a usage error that says where the key goes instead, for an argv clap refused.
fn secret_in_arguments(args: impl Iterator<Item = std::ffi::OsString>) -> Option<Error> {
    const SECRET_OPTIONS: &[&str] = &[
        "--aws-access-key-id",
        "--aws-secret-access-key",
        "--aws-session-token",
        "--access-key-id",
        "--secret-access-key",
        "--secret",
    ];
    let args: Vec<_> = args.collect();
    if !args.iter().any(|a| a == "configure") {
        return None;
    }
    let option = args.iter().find_map(|a| {
        let a = a.to_str()?;
        let name = a.split_once('=').map_or(a, |(n, _)| n);
        SECRET_OPTIONS.contains(&name).then_some(name)
    })?;
    Some(Error::usage(format!(
        "configure: {option} is not accepted: keys are never taken from arguments (other users see them in `ps`, and shell history keeps them); answer the prompt in a terminal, pipe the key id and the secret as two lines on stdin (`tapcred configure --keys-from-stdin`), or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    )))
}

pub fn run(cmd: Cmd, ctx: &Ctx<'_>) -> crate::Result<i32> {
    // Credentials (and the scripts and pages generated from tapcred's own text) go out as
    // they are; reports and listings, which quote names and answers from outside, escaped.
    // Unlocked handles: a FIDO2 exchange runs on a worker thread that takes the stdout
    // lock to keep its library's prints off fd 1; held here for the whole command, that
    // lock would stall every exchange until its deadline.
    let mut raw = std::io::stdout();
    let mut stdout = crate::text::SafeWriter::new(std::io::stdout());
    match cmd {
        Cmd::CredentialProcess(p) => {
            commands::process::run(&p.name(ctx.env), &p.options(), ctx, &mut raw)
        }
        Cmd::Exec { profile, command } => {
            commands::exec::run(&profile.name(ctx.env), &command, &profile.options(), ctx)
        }
        Cmd::Export { profile, format } => commands::export::run(
            &profile.name(ctx.env),
            format,
            &profile.options(),
            ctx,
            &mut raw,
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
            &mut raw,
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
        Cmd::Piv { action } => commands::piv::run(action, ctx, &mut stdout),
        Cmd::Enroll {
            profile: p,
            touch,
            device_name,
            to,
            serial,
            seed_file,
            undo,
            resume,
        } => {
            let args = commands::enroll::Args {
                profile: profile::selected_name(p.as_deref(), ctx.env),
                touch,
                device_name,
                to,
                yubikey_serial: serial,
                seed_file,
                undo,
                resume,
            };
            commands::enroll::run(&args, ctx, &mut stdout).map_err(|e| {
                let no_pcscd = e.reason() == Some(crate::error::Reason::ServiceMissing);
                if no_pcscd && to == commands::enroll::Destination::Oath {
                    let msg = format!(
                        "{e}; or, without a YubiKey here, enroll into a private seed file: `tapcred enroll --profile {} --to file`",
                        args.profile
                    );
                    e.with_message(msg)
                } else {
                    e
                }
            })
        }
        Cmd::Rotate(args) => commands::rotate::run(&args, ctx, &mut stdout),
        Cmd::Sessions { action, json } => match action {
            None => commands::sessions::list(json, ctx, &mut stdout),
            Some(SessionsCmd::Clear { profile }) => {
                commands::sessions::clear(profile.as_deref(), ctx, &mut stdout)
            }
        },
        Cmd::Vault { action } => match action {
            VaultCmd::Init { unlock, serial } => {
                commands::vault::init(&unlock, serial, ctx, &mut stdout)
            }
            VaultCmd::AddSeed {
                profile: p,
                seed_env,
                serial,
            } => commands::vault::add_seed(
                &profile::selected_name(p.as_deref(), ctx.env),
                seed_env.as_deref(),
                serial,
                ctx,
                &mut stdout,
            ),
            VaultCmd::ImportKeys { profile: p, serial } => {
                commands::vault::import_keys(&p, serial, ctx, &mut stdout)
            }
            VaultCmd::AddUnlock { unlock, serial } => {
                commands::vault::add_unlock(&unlock, serial, ctx, &mut stdout)
            }
            VaultCmd::Remove {
                profile: p,
                mfa_serial,
                access_key,
                unlock,
                serial,
            } => {
                use commands::vault::RemoveWhat;
                let what = match (p, mfa_serial, access_key, unlock) {
                    (Some(p), ..) => RemoveWhat::Profile(p),
                    (_, Some(s), ..) => RemoveWhat::MfaSerial(s),
                    (_, _, Some(a), _) => RemoveWhat::AccessKey(a),
                    (.., Some(u)) => RemoveWhat::Unlock(u),
                    (None, None, None, None) => {
                        return Err(Error::usage(
                            "vault remove: say what to remove: --profile, --mfa-serial, --access-key or --unlock",
                        ));
                    }
                };
                commands::vault::remove(&what, serial, ctx, &mut stdout)
            }
            VaultCmd::AcceptRollback { serial } => {
                commands::vault::accept_rollback(serial, ctx, &mut stdout)
            }
            VaultCmd::List { json } => commands::vault::list(json, ctx, &mut stdout),
        },
        Cmd::Configure(args) => commands::configure::run(&args, ctx, &mut stdout),
        Cmd::Doctor(args) => commands::doctor::run(&args, ctx, &mut stdout),
        Cmd::Completions { shell } => {
            // Generated whole first: clap_complete panics when its writer fails.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command(), "tapcred", &mut script);
            std::io::Write::write_all(&mut raw, &script)
                .and_then(|()| std::io::Write::flush(&mut raw))
                .map_err(|e| {
                    Error::io(format!("cannot write the completions to stdout: {e}")).with_source(e)
                })?;
            Ok(0)
        }
        Cmd::Man { dir } => commands::man::run(command(), dir.as_deref(), &mut raw),
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
    // Log fields quote foreign text too: every line goes through the sanitizer, so no
    // colours (they would be escaped as well).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| crate::text::SafeWriter::new(std::io::stderr()))
        .with_ansi(false)
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

    #[test]
    fn the_credential_process_fast_path_parses_as_clap_does() {
        let argv = |a: &[&str]| a.iter().map(std::ffi::OsString::from).collect::<Vec<_>>();
        for a in [
            &["credential-process"][..],
            &["credential-process", "--profile", "mfa"],
            &["credential-process", "-p", "mfa"],
            &["credential-process", "--profile=mfa"],
            &["credential-process", "--profile", "a b=c"],
            &["credential-process", "--profile=x=y"],
        ] {
            let fast = fast_credential_process(argv(a).into_iter())
                .unwrap_or_else(|| panic!("{a:?} takes the fast path"));
            let clap =
                Cli::try_parse_from(std::iter::once("tapcred").chain(a.iter().copied())).unwrap();
            assert_eq!(format!("{fast:?}"), format!("{clap:?}"), "{a:?}");
        }
        // Everything else is left to clap (errors, help, other flags and commands).
        for a in [
            &[][..],
            &["credential-process", "--no-cache"],
            &["credential-process", "-v"],
            &["credential-process", "--profile"],
            &["credential-process", "--profile", ""],
            &["credential-process", "--profile", "-v"],
            &["credential-process", "--profile", "a", "--profile", "b"],
            &["credential-process", "--help"],
            &["credential-process", "mfa"],
            &["export", "--profile", "mfa"],
            &["-v", "credential-process"],
        ] {
            assert!(
                fast_credential_process(argv(a).into_iter()).is_none(),
                "{a:?}"
            );
        }
    }
}
