//! `tapcred man`: man pages from the clap definition (clap_mangen), one per command and
//! subcommand (`tapcred.1`, `tapcred-exec.1`, `tapcred-sessions-clear.1`, …), each with
//! FILES, ENVIRONMENT and EXIT STATUS sections written here.

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// (name, description) lines of the FILES section.
const FILES: &[(&str, &str)] = &[
    (
        "~/.aws/config, ~/.aws/credentials",
        "The AWS shared config and credentials files (or AWS_CONFIG_FILE and AWS_SHARED_CREDENTIALS_FILE): profiles, role_arn, source_profile, mfa_serial and the tapcred_* keys. Read only; tapcred never writes them.",
    ),
    (
        "$XDG_CACHE_HOME/tapcred (else ~/.cache/tapcred)",
        "Session cache: one 0600 JSON file per cached session in a 0700 directory, written atomically; lock files for single flight; the TOTP step ledger (the last code window used per mfa_serial). `tapcred sessions clear` empties it.",
    ),
    (
        "tapcred_totp_secret_file",
        "A profile's software seed file (base32 or otpauth://totp/ URI); refused unless mode 0600.",
    ),
];

const ENVIRONMENT: &[(&str, &str)] = &[
    (
        "AWS_PROFILE",
        "Profile when --profile is not given (else \"default\").",
    ),
    (
        "AWS_CONFIG_FILE, AWS_SHARED_CREDENTIALS_FILE",
        "Paths of the AWS files.",
    ),
    (
        "AWS_REGION, AWS_DEFAULT_REGION",
        "STS region (else the profile's region, else us-east-1).",
    ),
    (
        "AWS_ENDPOINT_URL_STS, AWS_ENDPOINT_URL, AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
        "STS endpoint override, as the AWS SDKs read them.",
    ),
    (
        "TAPCRED_TOTP_SECRET",
        "Software seed (base32 or otpauth://totp/ URI) used instead of a YubiKey; a profile may name another variable with tapcred_totp_secret_env.",
    ),
    (
        "TAPCRED_OATH_PASSWORD",
        "The YubiKey OATH applet password for headless runs.",
    ),
    (
        "TAPCRED_FIDO_PIN",
        "The FIDO2 key's PIN for a vault unlocker that needs it, for headless runs (else a no-echo prompt).",
    ),
    (
        "TAPCRED_PIV_PIN",
        "The YubiKey PIV PIN for headless runs (else a no-echo prompt); never retried.",
    ),
    (
        "TAPCRED_PIV_MANAGEMENT_KEY",
        "The PIV management key (48 hex digits) for piv init and piv import; default: the factory key.",
    ),
    (
        "TAPCRED_SESSION_DURATION",
        "MFA session length in seconds, 900-129600 (default 43200).",
    ),
    (
        "TAPCRED_PROFILE",
        "Set by exec in the child; exec refuses to run inside it (no nesting).",
    ),
    ("XDG_CACHE_HOME", "Base of the session cache directory."),
    (
        "RUST_LOG",
        "Log filter (as -v/-vv); logs go to stderr and never contain secrets.",
    ),
];

const EXIT_STATUS: &[(&str, &str)] = &[
    ("0", "Success."),
    ("1", "Internal error (a bug: please report it)."),
    ("2", "Usage: bad arguments, or exec nested inside exec."),
    (
        "3",
        "Configuration: AWS files, profile, tapcred_* keys, seed.",
    ),
    (
        "4",
        "Token or device: no YubiKey, no matching account, touch timeout, OATH password.",
    ),
    (
        "5",
        "STS refused: wrong or reused code, wrong serial, role requires MFA, invalid keys, duration.",
    ),
    (
        "6",
        "Network: STS unreachable, throttled after retries, not an STS answer.",
    ),
    (
        "7",
        "Local I/O: cache directory, locks, starting a child process.",
    ),
    (
        "other",
        "exec and serve -- CMD exit with the child's own code (128+N when killed by signal N).",
    ),
];

/// Escape text for a roff text line (backslashes; a leading `.` or `'` would be a request).
fn roff_text(s: &str) -> String {
    let s = s.replace('\\', "\\e").replace('-', "\\-");
    if s.starts_with('.') || s.starts_with('\'') {
        format!("\\&{s}")
    } else {
        s
    }
}

fn section(out: &mut Vec<u8>, title: &str, items: &[(&str, &str)]) {
    let _ = writeln!(out, ".SH \"{title}\"");
    for (name, text) in items {
        let _ = writeln!(out, ".TP\n\\fB{}\\fR\n{}", roff_text(name), roff_text(text));
    }
}

/// One page: clap_mangen's sections, then ours.
fn page(cmd: &clap::Command, all: &[String]) -> std::io::Result<Vec<u8>> {
    let man = clap_mangen::Man::new(cmd.clone());
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut out)?;
    }
    if cmd.has_subcommands() {
        man.render_subcommands_section(&mut out)?;
    }
    section(&mut out, "FILES", FILES);
    section(&mut out, "ENVIRONMENT", ENVIRONMENT);
    section(&mut out, "EXIT STATUS", EXIT_STATUS);
    let me = man.get_filename();
    let others: Vec<String> = all
        .iter()
        .filter(|f| **f != me)
        .map(|f| {
            let stem = f.trim_end_matches(".1");
            format!("\\fB{}\\fR(1)", roff_text(stem))
        })
        .collect();
    let _ = writeln!(out, ".SH \"SEE ALSO\"\n{}", others.join(", "));
    if cmd.get_version().is_some() {
        man.render_version_section(&mut out)?;
    }
    Ok(out)
}

/// Every page: (file name, roff). The first is `tapcred.1`.
pub fn pages(cmd: clap::Command) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    fn collect(cmd: &clap::Command, out: &mut Vec<clap::Command>) {
        out.push(cmd.clone());
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            collect(sub, out);
        }
    }
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let mut cmds = Vec::new();
    collect(&cmd, &mut cmds);
    let names: Vec<String> = cmds
        .iter()
        .map(|c| clap_mangen::Man::new(c.clone()).get_filename())
        .collect();
    cmds.iter()
        .zip(&names)
        .map(|(c, n)| Ok((n.clone(), page(c, &names)?)))
        .collect()
}

/// `tapcred man`: the pages of `command` (tapcred's clap definition, from the CLI layer);
/// the main page on stdout, or with `dir`, every page written there (created if missing)
/// and their paths printed.
pub fn run(command: clap::Command, dir: Option<&Path>, out: &mut dyn Write) -> Result<i32> {
    let pages = pages(command)
        .map_err(|e| Error::internal(format!("cannot render the man pages: {e}")).with_source(e))?;
    match dir {
        None => {
            out.write_all(&pages[0].1)
                .map_err(|e| Error::io(format!("cannot write the man page: {e}")).with_source(e))?;
        }
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| {
                Error::io(format!(
                    "cannot create the man page directory {}: {e}",
                    dir.display()
                ))
                .with_source(e)
            })?;
            for (name, roff) in &pages {
                let path = dir.join(name);
                std::fs::write(&path, roff).map_err(|e| {
                    Error::io(format!("cannot write the man page {}: {e}", path.display()))
                        .with_source(e)
                })?;
                let _ = writeln!(out, "{}", path.display());
            }
        }
    }
    out.flush().ok();
    Ok(0)
}
