//! `doctor`: how a profile resolves, what is installed and running, the clock against STS,
//! the cache — then the one next step when something is wrong. Never prints a secret: key
//! ids are shown by their last 4 characters, seeds and secret keys not at all.
//!
//! Exit codes: 0 when nothing is wrong (notes may remain), else the exit-code table's code (docs/configuration.md) of
//! the first problem found (3 configuration, 4 token/device, 5 STS would refuse — the clock,
//! 6 network, 7 local I/O).

use std::fmt::Write as _;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::cache::SessionCache;
use crate::clock;
use crate::commands::Ctx;
use crate::commands::configure::key_hint;
use crate::error::{Error, ErrorKind, Result};
use crate::profile::{AwsFiles, Profiles, ResolvedProfile, Step};
use crate::sts::StsTarget;
use crate::token::oath::{self, DeviceReport};
use crate::token::software::SoftwareSource;
use crate::token::vault::VaultSource;
use crate::token::{self, EnvLookup, TokenKind, TokenSource};
use crate::ui::{RecordingUi, TerminalUi, Ui, UiEvent};
use crate::vault::VaultSession;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Note,
    Problem,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// files, profile, token, pcsc, yubikey, hid, udev, clock, cache
    pub area: &'static str,
    pub status: Status,
    pub message: String,
    /// What to do about it (problems and notes).
    pub fix: Option<String>,
    /// The exit code this problem maps to (docs/configuration.md "Exit codes").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub profile: String,
    pub config_file: PathBuf,
    pub credentials_file: PathBuf,
    /// Profiles from the selected one to the one holding the keys.
    pub chain: Vec<String>,
    pub checks: Vec<Check>,
    pub yubikeys: Vec<YubiKeyReport>,
    pub clock_skew_seconds: Option<i64>,
    pub next_step: Option<String>,
    pub exit_code: i32,
}

#[derive(Debug, Serialize)]
pub struct YubiKeyReport {
    pub serial: Option<u32>,
    pub firmware: Option<String>,
    pub reader: String,
    pub oath_accounts: Vec<String>,
    pub locked: bool,
}

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

struct Doctor {
    checks: Vec<Check>,
}

impl Doctor {
    fn ok(&mut self, area: &'static str, message: impl Into<String>) {
        self.push(area, Status::Ok, message.into(), None, None);
    }
    fn note(&mut self, area: &'static str, message: impl Into<String>, fix: Option<String>) {
        self.push(area, Status::Note, message.into(), fix, None);
    }
    fn problem(
        &mut self,
        area: &'static str,
        message: impl Into<String>,
        fix: impl Into<String>,
        code: i32,
    ) {
        self.push(
            area,
            Status::Problem,
            message.into(),
            Some(fix.into()),
            Some(code),
        );
    }
    /// An error from another layer: its text names the problem and (after the last "; ")
    /// the fix.
    fn error(&mut self, area: &'static str, e: &Error) {
        let msg = e.message();
        let fix = match msg.rsplit_once("; ") {
            Some((_, fix)) => fix.to_owned(),
            None => format!("see: {msg}"),
        };
        self.problem(area, msg, fix, e.exit_code());
    }
    fn push(
        &mut self,
        area: &'static str,
        status: Status,
        message: String,
        fix: Option<String>,
        code: Option<i32>,
    ) {
        self.checks.push(Check {
            area,
            status,
            message,
            fix,
            code,
        });
    }
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
    let ui = RecordingUi {
        no_sleep: true,
        ..RecordingUi::default()
    };
    let files = AwsFiles::from_env(env);

    interrupted_changes(&mut d, env);

    // Files.
    files_check(&mut d, &files, env);

    // Profile resolution.
    let mut chain = Vec::new();
    let mut resolved: Option<ResolvedProfile> = None;
    match Profiles::load(&files) {
        Err(e) => d.error("profile", &e),
        Ok(profiles) => match profiles.resolve(name, env) {
            Err(e) => d.error("profile", &e),
            Ok(p) => {
                chain = chain_of(&profiles, &p);
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
                    d.ok("profile", describe_step(step));
                }
                resolved = Some(p);
            }
        },
    }

    // Token sources, one per MFA serial.
    if let Some(p) = &resolved {
        token_checks(&mut d, p, env, &ui);
    }

    // What is installed and running.
    let yubikeys = device_checks(&mut d, &ui, env);
    hid_check(&mut d, &yubikeys);
    udev_check(&mut d);
    programs_check(&mut d);

    // Clock against STS.
    let clock_skew_seconds = if offline {
        d.note("clock", "not checked (--offline)", None);
        None
    } else {
        clock_check(&mut d, resolved.as_ref(), env)
    };

    // The access key's age (IAM's CreateDate; not asked --offline).
    if let Some(p) = &resolved
        && let Some(age) = super::rotate::age::check(p, offline, env, &ui)
    {
        match (age.too_old(), age.days) {
            (true, _) => d.note("keys", age.message(), Some(age.fix())),
            (false, Some(_)) => d.ok("keys", age.message()),
            (false, None) => d.note("keys", age.message(), None),
        }
    }

    // Cache.
    if let Some(until) = cache_check(&mut d, name, env, &ui) {
        works_from_the_cache(&mut d, until);
    }

    for e in ui.events() {
        if let UiEvent::Warn(w) = e
            && !d.checks.iter().any(|c| c.message == w)
        {
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

fn files_check(d: &mut Doctor, files: &AwsFiles, env: &dyn EnvLookup) {
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
fn chain_of(profiles: &Profiles, p: &ResolvedProfile) -> Vec<String> {
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

fn describe_step(step: &Step) -> String {
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

fn token_checks(d: &mut Doctor, p: &ResolvedProfile, env: &dyn EnvLookup, ui: &RecordingUi) {
    let mfas: Vec<_> = p
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::SessionToken { mfa, .. } => Some(mfa),
            Step::AssumeRole(r) => r.mfa.as_ref(),
        })
        .collect();
    if mfas.is_empty() {
        let has_role = p.steps.iter().any(|s| matches!(s, Step::AssumeRole(_)));
        d.note(
            "token",
            format!("profile \"{}\" has no mfa_serial: no code is needed", p.name),
            has_role.then(|| {
                format!(
                    "if the role requires MFA, run `tapcred enroll --profile {} --touch` to create the MFA device, put its seed on the YubiKey and set mfa_serial",
                    p.name
                )
            }),
        );
        return;
    }
    for mfa in mfas {
        if mfa.token.kind == TokenKind::Auto {
            auto_check(d, mfa, env, ui);
            continue;
        }
        let why = format!("tapcred_token = {}", kind_name(mfa.token.kind));
        if mfa.token.kind == TokenKind::Vault {
            // The file and its entry, without an unlock (doctor never asks for a touch).
            let session = std::rc::Rc::new(VaultSession::from_env(env));
            match VaultSource::check(&mfa.token, &mfa.serial, &session) {
                Ok(src) => d.ok(
                    "token",
                    format!(
                        "{} holds the seed for {} ({why}; one touch opens it)",
                        src.describe(),
                        mfa.serial
                    ),
                ),
                Err(e) => d.error("token", &e),
            }
            continue;
        }
        match token::select(&mfa.token, &mfa.serial, env, ui) {
            Ok(src) => d.ok(
                "token",
                format!("{} answers for {} ({why})", src.describe(), mfa.serial),
            ),
            Err(e) if e.message().contains(crate::token::pcsc::no_service_hint()) => {
                d.problem("token", e.message(), start_pcsc(), e.exit_code());
            }
            Err(e) => d.error("token", &e),
        }
    }
}

fn start_pcsc() -> String {
    format!(
        "start the smart-card service so the YubiKey can answer: {}",
        crate::token::pcsc::no_service_hint()
    )
}

/// `tapcred_token = auto`, source by source (the commands themselves only say "none
/// answered" and point here): the software seed, then a YubiKey OATH account matching the
/// serial, then a typed code if this is a terminal.
fn auto_check(d: &mut Doctor, mfa: &crate::profile::Mfa, env: &dyn EnvLookup, ui: &RecordingUi) {
    let s = &mfa.token;
    let serial = &mfa.serial;
    let mut tried = Vec::new();
    match SoftwareSource::from_settings(s, env) {
        Ok(Some(src)) => {
            d.ok(
                "token",
                format!(
                    "{} answers for {serial} (tapcred_token = auto: a software seed is configured, and it comes first)",
                    src.describe()
                ),
            );
            return;
        }
        Ok(None) => tried.push(format!(
            "software seed: {} is not set and no tapcred_totp_secret_file",
            crate::platform::words::env_var(&s.totp_secret_env)
        )),
        Err(e) => return d.error("token", &e),
    }
    let session = std::rc::Rc::new(VaultSession::from_env(env));
    match VaultSource::lists(&session, serial) {
        Ok(true) => {
            let at = session
                .path()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            d.ok(
                "token",
                format!(
                    "vault seed ({at}) answers for {serial} (tapcred_token = auto: no software seed, and the vault holds a seed for mfa_serial; one touch opens it)"
                ),
            );
            return;
        }
        Ok(false) => tried.push("vault: no seed for this serial".to_owned()),
        Err(e) => return d.error("token", &e),
    }
    let (pcsc_down, no_account);
    match oath::probe(s, serial, ui) {
        Ok(Ok(src)) => {
            d.ok(
                "token",
                format!(
                    "{} answers for {serial} (tapcred_token = auto: no software seed, and this YubiKey account matches mfa_serial)",
                    src.describe()
                ),
            );
            return;
        }
        Ok(Err(why)) => {
            pcsc_down = why.contains(crate::token::pcsc::no_service_hint());
            no_account = why.contains("no OATH account");
            tried.push(why);
        }
        Err(e) if e.message().contains(crate::token::pcsc::no_service_hint()) => {
            return d.problem("token", e.message(), start_pcsc(), e.exit_code());
        }
        Err(e) => return d.error("token", &e),
    }
    let fix = if pcsc_down {
        start_pcsc()
    } else if no_account {
        format!(
            "put the MFA device's seed on the YubiKey: `tapcred enroll --profile {} --touch` (a new device), or set tapcred_oath_account to the account that holds it",
            s.profile
        )
    } else {
        format!(
            "plug in the YubiKey holding the OATH account, or set {} for headless runs",
            crate::platform::words::env_var(&s.totp_secret_env)
        )
    };
    let msg = format!(
        "profile \"{}\": nothing answers for {serial} without a person: tried {}",
        s.profile,
        tried.join("; ")
    );
    if TerminalUi::new().interactive() {
        // From this terminal the commands would ask for a typed code: it works, untapped.
        d.note(
            "token",
            format!("{msg}; a typed code would be asked on this terminal"),
            Some(fix),
        );
    } else {
        d.problem(
            "token",
            format!("{msg}; typed code: no terminal"),
            fix,
            ErrorKind::Token.exit_code(),
        );
    }
}

fn kind_name(k: TokenKind) -> &'static str {
    match k {
        TokenKind::Auto => "auto",
        TokenKind::Oath => "oath",
        TokenKind::Software => "software",
        TokenKind::Prompt => "prompt",
        TokenKind::Vault => "vault",
    }
}

fn device_checks(d: &mut Doctor, ui: &RecordingUi, env: &dyn EnvLookup) -> Vec<YubiKeyReport> {
    use crate::token::device::Backend;
    let backend = crate::token::pcsc::PcscBackend::new();
    let readers = match backend.readers() {
        Ok(r) => r,
        Err(e) => {
            d.note("pcsc", e.message(), None);
            return Vec::new();
        }
    };
    if readers.is_empty() {
        d.note(
            "pcsc",
            "PC/SC service running, no reader (no YubiKey plugged in)",
            Some("plug in the YubiKey".to_owned()),
        );
        return Vec::new();
    }
    d.ok(
        "pcsc",
        format!("PC/SC service running, readers: {}", readers.join(", ")),
    );
    let devices: Vec<DeviceReport> = match oath::list_devices_with(&backend, env, ui) {
        Ok(v) => v,
        Err(e) => {
            // What the profile needs is judged by the token check; here it is information.
            d.note("yubikey", e.message(), None);
            return Vec::new();
        }
    };
    if devices.is_empty() {
        d.note(
            "yubikey",
            "no YubiKey among the readers",
            Some("plug in the YubiKey".to_owned()),
        );
    }
    let mut out = Vec::new();
    for k in devices {
        let serial = k
            .serial
            .map(|s| s.to_string())
            .unwrap_or_else(|| "(serial hidden)".into());
        let names: Vec<String> = k.accounts.iter().map(|a| a.name.clone()).collect();
        let firmware = k.firmware.clone().unwrap_or_else(|| "?".into());
        let msg = if k.locked {
            format!(
                "YubiKey {serial}, firmware {firmware}: OATH password set, accounts not listed (set TAPCRED_OATH_PASSWORD to list them)"
            )
        } else {
            format!(
                "YubiKey {serial}, firmware {firmware}: {} OATH account(s){}{}",
                names.len(),
                if names.is_empty() { "" } else { ": " },
                names.join(", ")
            )
        };
        match &k.error {
            Some(e) => d.note("yubikey", format!("{msg}; {e}"), None),
            None => d.ok("yubikey", msg),
        }
        out.push(YubiKeyReport {
            serial: k.serial,
            firmware: k.firmware,
            reader: k.reader,
            oath_accounts: names,
            locked: k.locked,
        });
    }
    out
}

/// Keys reachable only over USB HID (FIDO-only keys, keys with CCID off): information, for
/// the vault's HID unlockers.
fn hid_check(d: &mut Doctor, over_pcsc: &[YubiKeyReport]) {
    let serials: Vec<u32> = over_pcsc.iter().filter_map(|k| k.serial).collect();
    let (keys, errors) = crate::commands::devices::real_hid_keys(&serials);
    for k in keys {
        let what = if k.interface == "otp" {
            "OTP slots"
        } else {
            "FIDO2"
        };
        match k.error {
            Some(e) => d.note("hid", format!("{} at {}: {e}", k.name, k.path), None),
            None => d.ok(
                "hid",
                format!("{} reachable over USB HID ({what}) at {}", k.name, k.path),
            ),
        }
    }
    for e in errors {
        d.note("hid", e, None);
    }
}

/// Linux: tapcred's udev rule (for the HID interfaces; the OATH path through pcscd needs none).
/// Both programs from one build (`crate::build_id`).
fn programs_check(d: &mut Doctor) {
    use crate::build_id::{self, BUILD_ID};
    let full =
        crate::platform::locations::program_file_name(crate::platform::locations::FULL_PROGRAM);
    let launcher = build_id::launcher_path();
    match launcher.as_ref().map(|p| (p, build_id::id_in_file(p))) {
        Ok((p, Ok(Some(id)))) if id == BUILD_ID => d.ok(
            "program",
            format!("{} and {full} beside it: one build ({BUILD_ID})", p.display()),
        ),
        Ok((p, Ok(Some(id)))) => d.problem(
            "program",
            format!(
                "{} is build {id} but {full} is build {BUILD_ID}: every call through it fails",
                p.display()
            ),
            "reinstall both together (`cargo install --locked --path .` in tapcred's source folder, or the package)",
            7,
        ),
        Ok((p, Ok(None))) => d.note(
            "program",
            format!("{} has no build id (not this tapcred's launcher)", p.display()),
            Some("reinstall both programs together".to_owned()),
        ),
        Ok((p, Err(e))) => d.note(
            "program",
            format!("no launcher beside {full} ({}: {e}); {full} still works alone", p.display()),
            None,
        ),
        Err(e) => d.note("program", format!("cannot find tapcred's own folder: {e}"), None),
    }
}

fn udev_check(d: &mut Doctor) {
    if !cfg!(target_os = "linux") {
        return;
    }
    let dirs = [
        "/etc/udev/rules.d",
        "/usr/lib/udev/rules.d",
        "/lib/udev/rules.d",
    ];
    let found = dirs.iter().find_map(|dir| {
        let entries = std::fs::read_dir(dir).ok()?;
        entries.flatten().map(|e| e.path()).find(|p| {
            p.extension().is_some_and(|x| x == "rules")
                && std::fs::read_to_string(p).is_ok_and(|t| {
                    t.lines().any(|l| {
                        !l.trim_start().starts_with('#')
                            && l.contains("\"1050\"")
                            && l.contains("hidraw")
                    }) || p
                        .file_name()
                        .is_some_and(|n| n == "70-tapcred-yubikey.rules")
                })
        })
    });
    match found {
        Some(p) => d.ok("udev", format!("YubiKey udev rule present: {}", p.display())),
        None => d.note(
            "udev",
            "no YubiKey udev rule in /etc/udev/rules.d or /usr/lib/udev/rules.d (the OATH path through pcscd does not need one; the HID interfaces do)",
            None,
        ),
    }
}

/// The effective STS endpoint: the profile's target, or (when the profile does not resolve)
/// the environment's override or the default region's endpoint.
fn sts_url(p: Option<&ResolvedProfile>, env: &dyn EnvLookup) -> String {
    let target = match p {
        Some(p) => StsTarget::for_profile(p, env),
        None => {
            let nonempty = |k: &str| env.var(k).filter(|v| !v.trim().is_empty());
            StsTarget {
                region: nonempty("AWS_REGION")
                    .or_else(|| nonempty("AWS_DEFAULT_REGION"))
                    .unwrap_or_else(|| crate::sts::DEFAULT_REGION.to_owned()),
                endpoint_url: nonempty("AWS_ENDPOINT_URL_STS")
                    .or_else(|| nonempty("AWS_ENDPOINT_URL")),
            }
        }
    };
    match target.endpoint_url {
        Some(u) => u,
        None => format!("https://sts.{}.amazonaws.com/", target.region),
    }
}

fn clock_check(d: &mut Doctor, p: Option<&ResolvedProfile>, env: &dyn EnvLookup) -> Option<i64> {
    let url = sts_url(p, env);
    match server_date(&url) {
        Ok(server) => {
            let skew = clock::now_unix() as i64 - server;
            let abs = skew.unsigned_abs();
            let how = if skew >= 0 { "ahead of" } else { "behind" };
            if abs >= 30 {
                d.problem(
                    "clock",
                    format!("this computer's clock is {abs} s {how} STS at {url} (its Date header): MFA codes from another 30 s window are refused"),
                    "set the clock right: `sudo timedatectl set-ntp true` (or your OS's time sync)",
                    ErrorKind::Auth.exit_code(),
                );
            } else if abs >= 10 {
                d.note(
                    "clock",
                    format!("this computer's clock is {abs} s {how} STS at {url}: codes near the end of a window may be refused"),
                    Some("turn on time sync: `sudo timedatectl set-ntp true`".to_owned()),
                );
            } else {
                d.ok("clock", format!("clock within {abs} s of STS at {url}"));
            }
            Some(skew)
        }
        Err(why) => {
            d.problem(
                "clock",
                format!("cannot reach STS at {url} ({why})"),
                "check the network, a proxy, or the endpoint override (AWS_ENDPOINT_URL_STS / endpoint_url)",
                ErrorKind::Network.exit_code(),
            );
            None
        }
    }
}

/// One unsigned GET to `url` with tapcred's HTTPS client; the answer's `Date` in Unix seconds.
fn server_date(url: &str) -> std::result::Result<i64, String> {
    use aws_smithy_runtime_api::client::http::HttpConnector;
    use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
    let connector = aws_smithy_http_client::Connector::builder()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build();
    let request = HttpRequest::get(url).map_err(|e| format!("not a usable URL: {e}"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the I/O runtime: {e}"))?;
    let response = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(5), connector.call(request)).await
    });
    let response = match response {
        Err(_) => return Err("no answer within 5 s".to_owned()),
        Ok(Err(e)) => {
            // The innermost cause reads best ("Connection refused (os error 111)").
            let mut cause: &dyn std::error::Error = &e;
            while let Some(inner) = cause.source() {
                cause = inner;
            }
            return Err(cause.to_string());
        }
        Ok(Ok(r)) => r,
    };
    let date = response
        .headers()
        .get("date")
        .ok_or_else(|| format!("HTTP {} without a Date header", response.status().as_u16()))?;
    parse_http_date(date).ok_or_else(|| "an unreadable Date header".to_owned())
}

/// RFC 9110 IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) → Unix seconds.
fn parse_http_date(s: &str) -> Option<i64> {
    let fmt = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    time::PrimitiveDateTime::parse(s.trim(), &fmt)
        .ok()
        .map(|t| t.assume_utc().unix_timestamp())
}

/// Interrupted changes: every journal a killed multi-step change left (enroll, vault
/// import-keys, …) is a problem until it is finished or undone.
fn interrupted_changes(d: &mut Doctor, env: &dyn EnvLookup) {
    let Some(dir) = crate::journal::default_dir(env) else {
        return;
    };
    for p in crate::journal::pending(&dir) {
        match &p.record {
            Ok(r) => {
                let when = time::OffsetDateTime::from_unix_timestamp(r.started as i64)
                    .map(crate::credentials::format_rfc3339)
                    .unwrap_or_else(|_| r.started.to_string());
                let last = r.steps.last().map(|s| s.name.as_str()).unwrap_or("none");
                d.problem(
                    "changes",
                    format!(
                        "interrupted change: {} of \"{}\" started {when}, last step \"{last}\" (journal {})",
                        r.kind,
                        r.subject,
                        p.path.display()
                    ),
                    super::enroll::pending_fix(&r.kind, &r.subject),
                    ErrorKind::Io.exit_code(),
                );
            }
            Err(e) => d.problem(
                "changes",
                format!("unreadable journal {}: {e}", p.path.display()),
                format!("check what it was doing, then remove {}", p.path.display()),
                ErrorKind::Io.exit_code(),
            ),
        }
    }
}

/// The cache's state for `name`; the end of its longest valid session, if any.
fn cache_check(
    d: &mut Doctor,
    name: &str,
    env: &dyn EnvLookup,
    ui: &RecordingUi,
) -> Option<time::OffsetDateTime> {
    let cache = SessionCache::open_default(env, ui);
    if !cache.enabled() {
        // The cache layer's own warning (collected from the Ui) says why and how to fix it.
        return None;
    }
    let now = clock::now_utc();
    let mine: Vec<_> = cache
        .list()
        .into_iter()
        .filter(|e| e.profile == name)
        .collect();
    let valid = mine.iter().filter(|e| e.expiration > now).count();
    let dir = cache.dir().display();
    match (mine.len(), valid) {
        (0, _) => d.ok(
            "cache",
            format!("no cached session for \"{name}\" in {dir} (the next call asks for a code)"),
        ),
        (_, 0) => d.ok(
            "cache",
            format!(
                "{} expired session(s) for \"{name}\" in {dir} (the next call asks for a code)",
                mine.len()
            ),
        ),
        (_, n) => {
            let left = mine
                .iter()
                .map(|e| (e.expiration - now).whole_minutes())
                .max()
                .unwrap_or(0);
            d.ok(
                "cache",
                format!(
                    "{n} valid session(s) for \"{name}\" in {dir}, the longest for {}h{:02}m",
                    left / 60,
                    left % 60
                ),
            );
            return mine.iter().map(|e| e.expiration).max();
        }
    }
    None
}

/// A profile whose code source does not answer still works while a cached session lasts:
/// the token problems become warnings saying until when, and what the next refresh needs.
fn works_from_the_cache(d: &mut Doctor, until: time::OffsetDateTime) {
    let until = until
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    for c in &mut d.checks {
        if c.area == "token" && c.code == Some(ErrorKind::Token.exit_code()) {
            c.status = Status::Note;
            c.code = None;
            c.message = format!(
                "works until {until} from the cached session; the next refresh needs a code source: {}",
                c.message
            );
        }
    }
}

pub fn render(r: &Report) -> String {
    let mut s = format!("tapcred doctor: profile \"{}\"\n", r.profile);
    for c in &r.checks {
        let tag = match c.status {
            Status::Ok => "ok     ",
            Status::Note => "note   ",
            Status::Problem => "PROBLEM",
        };
        let _ = writeln!(s, "  {tag} {:8} {}", c.area, c.message);
    }
    match (&r.next_step, r.exit_code) {
        (Some(step), 0) => {
            let _ = writeln!(s, "no problems found; next: {step}");
        }
        (Some(step), _) => {
            let _ = writeln!(s, "next step: {step}");
        }
        (None, _) => {
            let _ = writeln!(
                s,
                "no problems found; try: tapcred exec --profile {} -- aws sts get-caller-identity",
                r.profile
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pending_journal_is_a_problem_with_its_command() {
        let dir = tempfile::tempdir().unwrap();
        let env: std::collections::HashMap<String, String> = [(
            "XDG_DATA_HOME".to_string(),
            dir.path().display().to_string(),
        )]
        .into();
        let mut d = Doctor { checks: Vec::new() };
        interrupted_changes(&mut d, &env);
        assert!(d.checks.is_empty(), "no journal, no check");
        let jdir = crate::journal::default_dir(&env).unwrap();
        let mut j = crate::journal::Journal::begin(&jdir, "import-keys", "toolkit-user").unwrap();
        j.step("renamed", serde_json::Value::Null).unwrap();
        crate::journal::Journal::begin(&jdir, "enroll", "mfa").unwrap();
        interrupted_changes(&mut d, &env);
        assert_eq!(d.checks.len(), 2, "{:?}", d.checks);
        assert!(
            d.checks
                .iter()
                .all(|c| c.status == Status::Problem && c.code == Some(7))
        );
        let enroll = &d.checks[0];
        assert!(enroll.message.contains("enroll of \"mfa\""), "{enroll:?}");
        assert!(enroll.message.contains("last step \"none\""), "{enroll:?}");
        assert!(
            enroll
                .fix
                .as_deref()
                .unwrap()
                .contains("tapcred enroll --profile mfa --undo"),
            "{enroll:?}"
        );
        let import = &d.checks[1];
        assert!(
            import.message.contains("last step \"renamed\""),
            "{import:?}"
        );
        assert_eq!(
            import.fix.as_deref(),
            Some("run `tapcred vault import-keys` again")
        );
    }

    #[test]
    fn http_dates() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784111777)
        );
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), None);
    }

    #[test]
    fn the_fix_is_the_last_clause_of_an_error() {
        let mut d = Doctor { checks: Vec::new() };
        d.error(
            "profile",
            &Error::config("profile \"a\": role_arn is bad; copy the ARN"),
        );
        assert_eq!(d.checks[0].fix.as_deref(), Some("copy the ARN"));
        assert_eq!(d.checks[0].code, Some(3));
    }
}
