//! tapcred benchmarks for issues 3 (YubiKey OATH over PC/SC) and 4 (session cache).
//!
//! Run with `bash benches/run.sh` (builds the release binaries, then
//! `cargo bench --bench tapcred`). Every row is measured in this one run, with the compared
//! commands interleaved sample by sample, and reported as a median with min/max and a ratio.
//! See `benches/README.md` for what each row means.
//!
//! Section A needs root, pcscd, vsmartcard-vpcd (a real pcscd in a private network namespace
//! serving the virtual YubiKey) and `$TAPCRED_VENV/bin/ykman`; section B needs only loopback
//! (the strict STS double runs in this process). The warm-path check uses `strace` when it
//! is installed. Anything missing is skipped LOUDLY (a line on stderr and in the table).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tapcred_testkit::pcsc_stack::{self, PcscStack};
use tapcred_testkit::sts_double::totp;
use tapcred_testkit::sts_double::{Config, StsDouble, TokenOutcome};
use tapcred_testkit::virtual_yubikey::{Account, ApduRecord, VirtualYubiKey, VykConfig};

/// Demo MFA seed registered in the STS double (fixtures/sts-double/design.seed).
const DEMO_SEED: &str = "ORQXAY3SMVSC2ZDFNVXS243FMVSC2MBR";
/// RFC 4648 test seed for the section-A account.
const A_SEED: &str = "JBSWY3DPEHPK3PXP";
const A_ACCOUNT: &str = "Bench:alice";
const CARD_SERIAL: u32 = 7_654_321;
const ACCT: &str = "111111111111";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn release_bin(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    target.join("release").join(name)
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Spawn `cmd`, wait for it (killed after `timeout`), return wall time from spawn to exit.
fn run_timed(cmd: &mut Command, timeout: Duration) -> Result<(Duration, Output), String> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let t0 = Instant::now();
    let child = cmd.spawn().map_err(|e| format!("spawn {cmd:?}: {e}"))?;
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let out = child.wait_with_output();
        let _ = tx.send((t0.elapsed(), out));
    });
    match rx.recv_timeout(timeout) {
        Ok((elapsed, Ok(out))) => Ok((elapsed, out)),
        Ok((_, Err(e))) => Err(format!("wait: {e}")),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            Err(format!("timed out after {timeout:?}"))
        }
    }
}

fn ok_stdout(
    res: Result<(Duration, Output), String>,
    what: &str,
) -> Result<(Duration, String), String> {
    let (d, out) = res.map_err(|e| format!("{what}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what}: exit {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok((d, String::from_utf8_lossy(&out.stdout).into_owned()))
}

#[derive(Default, Clone)]
struct Samples(Vec<Duration>);

impl Samples {
    fn push(&mut self, d: Duration) {
        self.0.push(d);
    }
    fn median(&self) -> Option<Duration> {
        if self.0.is_empty() {
            return None;
        }
        let mut v = self.0.clone();
        v.sort();
        let n = v.len();
        Some(if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2
        })
    }
    fn min(&self) -> Option<Duration> {
        self.0.iter().min().copied()
    }
    fn max(&self) -> Option<Duration> {
        self.0.iter().max().copied()
    }
}

fn ms(d: Option<Duration>) -> String {
    d.map_or("–".into(), |d| format!("{:.2}", d.as_secs_f64() * 1e3))
}

fn ratio(a: Option<Duration>, b: Option<Duration>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if !b.is_zero() => format!("{:.2}×", a.as_secs_f64() / b.as_secs_f64()),
        _ => "–".into(),
    }
}

/// The output: one markdown table of timings, then counts and notes.
#[derive(Default)]
struct Report {
    rows: Vec<String>,
    facts: Vec<String>,
    notes: Vec<String>,
}

impl Report {
    fn row(&mut self, id: &str, what: &str, s: &Samples, vs: &str) {
        self.rows.push(format!(
            "| {id} | {what} | {} | {} | {} | {} | {vs} |",
            ms(s.median()),
            ms(s.min()),
            ms(s.max()),
            s.0.len()
        ));
    }
    fn skip(&mut self, id: &str, what: &str, why: &str) {
        eprintln!("SKIPPED {id} ({what}): {why}");
        self.rows.push(format!(
            "| {id} | {what} | – | – | – | 0 | SKIPPED: {why} |"
        ));
    }
    fn fact(&mut self, id: &str, text: String) {
        self.facts.push(format!("| {id} | {text} |"));
    }
    fn print(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "| id | benchmark | median ms | min ms | max ms | n | ratio / note |\n|---|---|---:|---:|---:|---:|---|"
        );
        for r in &self.rows {
            let _ = writeln!(s, "{r}");
        }
        if !self.facts.is_empty() {
            let _ = writeln!(s, "\n| id | counted |\n|---|---|");
            for f in &self.facts {
                let _ = writeln!(s, "{f}");
            }
        }
        if !self.notes.is_empty() {
            let _ = writeln!(s);
            for n in &self.notes {
                let _ = writeln!(s, "- {n}");
            }
        }
        s
    }
}

/// Name an APDU the way the YubiKey applets define them (SELECT and CALCULATE_ALL share
/// INS A4; SELECT has P1=04).
fn apdu_name(r: &ApduRecord) -> String {
    let name = match (r.ins, r.p1) {
        (0xA4, 0x04) => "SELECT",
        (0xA4, _) => "CALCULATE_ALL",
        (0xA2, _) => "CALCULATE",
        (0xA1, _) => "LIST",
        (0xA5, _) => "SEND_REMAINING",
        (0xA3, _) => "VALIDATE",
        (0x1D, _) => "READ_CONFIG",
        (0x01, _) => "PUT/OTP-STATUS",
        (0x02, _) => "DELETE",
        (0xC0, _) => "GET_RESPONSE",
        _ => "?",
    };
    format!("{name}({:02X})", r.ins)
}

fn apdu_summary(h: &[ApduRecord]) -> String {
    let names: Vec<String> = h.iter().map(apdu_name).collect();
    format!("{} APDUs: {}", h.len(), names.join(" → "))
}

// ---------------------------------------------------------------- section A

fn ykman_path() -> PathBuf {
    let venv = std::env::var("TAPCRED_VENV").unwrap_or_else(|_| "/opt/tapcred-venv".into());
    Path::new(&venv).join("bin/ykman")
}

struct StackA {
    // Field order: the card goes before pcscd.
    card: Option<pcsc_stack::CardHandle>,
    stack: PcscStack,
}

fn bench_a(rep: &mut Report, work: &Path) -> Option<StackA> {
    if let Err(missing) = pcsc_stack::prerequisites() {
        rep.skip(
            "A",
            "tapcred code vs ykman through pcscd",
            &format!("needs {missing}"),
        );
        return None;
    }
    let mut stack = match PcscStack::start() {
        Ok(s) => s,
        Err(e) => {
            rep.skip(
                "A",
                "tapcred code vs ykman through pcscd",
                &format!("pcscd stack: {e}"),
            );
            return None;
        }
    };
    let accounts = [
        (A_ACCOUNT, A_SEED),
        ("GitHub:alice", "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"),
        (
            "Google:alice@example.com",
            "MFRGGZDFMZTWQ2LKNNWG23TPOBYXE43U",
        ),
    ];
    let mut cfg = VykConfig::new().serial(CARD_SERIAL);
    for (n, s) in accounts {
        cfg = cfg.account(Account::totp_base32(n, s).expect("valid seed"));
    }
    let card = match stack.insert(0, VirtualYubiKey::new(cfg)) {
        Ok(c) => c,
        Err(e) => {
            rep.skip(
                "A",
                "tapcred code vs ykman through pcscd",
                &format!("insert card: {e}"),
            );
            return None;
        }
    };
    let reader = card.reader_name();
    let tapcred = release_bin("tapcred");
    let serial = CARD_SERIAL.to_string();
    let home = work.join("home-a");
    let _ = std::fs::create_dir_all(home.join(".config"));
    let tap_cmd = || {
        let mut c = Command::new(&tapcred);
        c.args(["code", "--account", A_ACCOUNT, "--serial", &serial])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &home);
        c
    };
    let ykman = ykman_path();
    let have_ykman = ykman.is_file();
    let yk_cmd = || {
        let mut c = Command::new(&ykman);
        c.args(["--reader", &reader, "oath", "accounts", "code", A_ACCOUNT])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_DATA_HOME", home.join(".local/share"));
        c
    };
    let expect = |t0: i64, t1: i64| -> Vec<String> {
        [t0, t1]
            .iter()
            .filter_map(|t| totp::code_at(A_SEED, *t).ok())
            .collect()
    };
    let timeout = Duration::from_secs(30);

    // APDUs for one non-touch code, counted by the card itself.
    let vyk = card.vyk().clone();
    vyk.clear_history();
    match ok_stdout(run_timed(&mut tap_cmd(), timeout), "tapcred code") {
        Ok(_) => {
            let h = vyk.history();
            // "After connecting": after the key has been identified (serial read over the
            // management applet, READ_CONFIG), i.e. the OATH applet's part.
            let oath_part = match h.iter().rposition(|r| r.ins == 0x1D) {
                Some(i) => &h[i + 1..],
                None => &h[..],
            };
            rep.fact(
                "A1",
                format!(
                    "`tapcred code --account {A_ACCOUNT} --serial N`, one non-touch code: {}; OATH part after the serial read: {} APDUs (goal: SELECT + CALCULATE = 2)",
                    apdu_summary(&h),
                    oath_part.len()
                ),
            );
        }
        Err(e) => rep.fact("A1", format!("tapcred code failed: {e}")),
    }
    vyk.clear_history();
    let mut no_serial = Command::new(&tapcred);
    no_serial
        .args(["code", "--account", A_ACCOUNT])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &home);
    if ok_stdout(
        run_timed(&mut no_serial, timeout),
        "tapcred code (no serial)",
    )
    .is_ok()
    {
        rep.fact(
            "A1b",
            format!(
                "`tapcred code --account {A_ACCOUNT}` (no --serial, one key): {}",
                apdu_summary(&vyk.history())
            ),
        );
    }
    if have_ykman {
        vyk.clear_history();
        if ok_stdout(run_timed(&mut yk_cmd(), timeout), "ykman").is_ok() {
            rep.fact(
                "A1c",
                format!(
                    "`ykman --reader … oath accounts code {A_ACCOUNT}` ({} accounts on the key): {}",
                    accounts.len(),
                    apdu_summary(&vyk.history())
                ),
            );
        }
    }
    vyk.clear_history();

    // Timing, interleaved (order alternates each round), after one warm-up each.
    let n = env_usize("TAPCRED_BENCH_A_N", 21);
    let mut tap = Samples::default();
    let mut yk = Samples::default();
    let mut yk_start = Samples::default();
    let mut errors = Vec::new();
    let _ = run_timed(&mut tap_cmd(), timeout);
    if have_ykman {
        let _ = run_timed(&mut yk_cmd(), timeout);
    }
    for i in 0..n {
        let order: &[bool] = if i % 2 == 0 {
            &[true, false]
        } else {
            &[false, true]
        };
        for &is_tap in order {
            if !is_tap && !have_ykman {
                continue;
            }
            let t0 = now_unix();
            let res = if is_tap {
                ok_stdout(run_timed(&mut tap_cmd(), timeout), "tapcred code")
            } else {
                ok_stdout(run_timed(&mut yk_cmd(), timeout), "ykman")
            };
            let t1 = now_unix();
            match res {
                Ok((d, out)) => {
                    let good = expect(t0, t1);
                    // tapcred prints the code; ykman prints "NAME  CODE".
                    let code = out.split_whitespace().last().unwrap_or("").to_string();
                    if good.contains(&code) {
                        if is_tap { tap.push(d) } else { yk.push(d) }
                    } else {
                        errors.push(format!(
                            "{} printed a wrong code",
                            if is_tap { "tapcred" } else { "ykman" }
                        ));
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        // ykman's start-up alone (Python interpreter and imports, no PC/SC), same round.
        if have_ykman {
            let c = yk_cmd();
            let mut v = Command::new(c.get_program());
            v.arg("--version").env_clear();
            for (k, val) in c.get_envs() {
                if let Some(val) = val {
                    v.env(k, val);
                }
            }
            if let Ok((d, _)) = ok_stdout(run_timed(&mut v, timeout), "ykman --version") {
                yk_start.push(d);
            }
        }
    }
    rep.row(
        "A2",
        "`tapcred code --account NAME --serial N` (pcscd, virtual key)",
        &tap,
        "1.00× (baseline)",
    );
    if have_ykman {
        rep.row(
            "A3",
            "`ykman --reader \"…\" oath accounts code NAME` (same key, same pcscd)",
            &yk,
            &format!("{} of tapcred", ratio(yk.median(), tap.median())),
        );
        rep.row(
            "A4",
            "`ykman --version` (ykman start-up only: no PC/SC, no key)",
            &yk_start,
            &format!("{} of A3", ratio(yk_start.median(), yk.median())),
        );
    } else {
        rep.skip(
            "A3",
            "ykman oath accounts code",
            &format!("no ykman at {}", ykman.display()),
        );
    }
    for e in errors.iter().take(3) {
        rep.notes.push(format!("A: sample dropped: {e}"));
    }
    rep.notes.push(format!(
        "A: one real pcscd (network namespace) serving the virtual YubiKey (serial {CARD_SERIAL}, firmware default, {} TOTP accounts, no touch, no password) on reader \"{reader}\"; every code checked against RFC 6238.",
        accounts.len()
    ));
    Some(StackA {
        card: Some(card),
        stack,
    })
}

// ---------------------------------------------------------------- section B

const M_NOCACHE: usize = 15;
const M_COLD: usize = 5;
const M_PAR: usize = 5;
const M_OATH: usize = 5;

fn serial_arn(tag: &str) -> String {
    format!("arn:aws:iam::{ACCT}:mfa/{tag}")
}

fn write_aws_config(path: &Path) -> std::io::Result<()> {
    let role = format!("arn:aws:iam::{ACCT}:role/toolkit-role");
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# generated by benches/tapcred.rs\n[profile mfa]\nsource_profile = toolkit-user\nrole_arn = {role}\nmfa_serial = {}\n",
        serial_arn("toolkit-user")
    );
    let _ = writeln!(
        s,
        "[profile nomfa]\nsource_profile = toolkit-user\nrole_arn = arn:aws:iam::{ACCT}:role/chained-role\n"
    );
    let mut tags: Vec<String> = Vec::new();
    tags.extend((0..M_NOCACHE).map(|i| format!("nocache-{i:02}")));
    tags.extend((0..M_COLD).map(|i| format!("cold-{i:02}")));
    tags.extend((0..M_PAR).map(|i| format!("par-{i:02}")));
    tags.extend(["trace-00".to_string(), "trace-01".to_string()]);
    for t in &tags {
        let _ = writeln!(
            s,
            "[profile {t}]\nsource_profile = toolkit-user\nrole_arn = {role}\nmfa_serial = {}\n",
            serial_arn(t)
        );
    }
    for i in 0..(M_OATH * 2) {
        let t = format!("oath-{i:02}");
        let _ = writeln!(
            s,
            "[profile {t}]\nsource_profile = toolkit-user\nrole_arn = {role}\nmfa_serial = {}\ntapcred_token = oath\ntapcred_yubikey_serial = {CARD_SERIAL}\n",
            serial_arn(&t)
        );
    }
    std::fs::write(path, s)
}

fn double_config() -> Config {
    let mut cfg = Config::design();
    let mut user = cfg.users[0].clone();
    let mut tags: Vec<String> = Vec::new();
    tags.extend((0..M_NOCACHE).map(|i| format!("nocache-{i:02}")));
    tags.extend((0..M_COLD).map(|i| format!("cold-{i:02}")));
    tags.extend((0..M_PAR).map(|i| format!("par-{i:02}")));
    tags.extend((0..M_OATH * 2).map(|i| format!("oath-{i:02}")));
    tags.extend(["trace-00".to_string(), "trace-01".to_string()]);
    for t in tags {
        user = user.mfa_device(&serial_arn(&t), DEMO_SEED);
    }
    cfg.users[0] = user;
    cfg
}

struct Env {
    tapcred: PathBuf,
    home: PathBuf,
    config: PathBuf,
    endpoint: String,
}

impl Env {
    fn cmd(&self, cache: &Path, args: &[&str], software_seed: bool) -> Command {
        let mut c = Command::new(&self.tapcred);
        c.args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .env("AWS_CONFIG_FILE", &self.config)
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                root().join("fixtures/aws/design/credentials"),
            )
            .env("AWS_ENDPOINT_URL_STS", &self.endpoint)
            .env("XDG_CACHE_HOME", cache);
        if software_seed {
            c.env("TAPCRED_TOTP_SECRET", DEMO_SEED);
        }
        c
    }
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Wait so that a code read now has more than `margin` seconds left in its 30 s window
/// (tapcred waits for the next window below ~3 s; this keeps that wait out of samples).
fn avoid_window_end(margin: i64) {
    let left = 30 - now_unix().rem_euclid(30);
    if left <= margin {
        std::thread::sleep(Duration::from_millis((left as u64) * 1000 + 200));
    }
}

fn access_key(json: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(json)
        .ok()?
        .get("AccessKeyId")?
        .as_str()
        .map(str::to_owned)
}

struct Parallel {
    wall: Duration,
    ok: usize,
    failed: usize,
    /// Failures by the first 70 characters of their message.
    errors: BTreeMap<String, usize>,
    distinct_keys: usize,
}

impl Parallel {
    fn errors_text(&self) -> String {
        if self.errors.is_empty() {
            return String::new();
        }
        let parts: Vec<String> = self
            .errors
            .iter()
            .map(|(e, n)| format!("{n}× \"{e}…\""))
            .collect();
        format!("; failures: {}", parts.join(", "))
    }
}

fn run_parallel(env: &Env, cache: &Path, profile: &str, n: usize, software: bool) -> Parallel {
    let t0 = Instant::now();
    let mut rxs = Vec::new();
    for _ in 0..n {
        let mut c = env.cmd(
            cache,
            &["credential-process", "--profile", profile],
            software,
        );
        c.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let (tx, rx) = mpsc::channel();
        match c.spawn() {
            Ok(child) => {
                std::thread::spawn(move || {
                    let out = child.wait_with_output();
                    let _ = tx.send((t0.elapsed(), out));
                });
            }
            Err(e) => {
                let _ = tx.send((t0.elapsed(), Err(e)));
            }
        }
        rxs.push(rx);
    }
    let mut wall = Duration::ZERO;
    let (mut ok, mut failed) = (0, 0);
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    let mut note = |e: String| {
        let line = e.lines().next().unwrap_or("").to_string();
        *errors.entry(line.chars().take(110).collect()).or_default() += 1;
    };
    let mut keys = BTreeSet::new();
    for rx in rxs {
        match rx.recv_timeout(Duration::from_secs(180)) {
            Ok((d, Ok(out))) => {
                wall = wall.max(d);
                if out.status.success() {
                    ok += 1;
                    if let Some(k) = access_key(&String::from_utf8_lossy(&out.stdout)) {
                        keys.insert(k);
                    }
                } else {
                    failed += 1;
                    note(String::from_utf8_lossy(&out.stderr).trim().to_string());
                }
            }
            Ok((_, Err(e))) => {
                failed += 1;
                note(e.to_string());
            }
            Err(_) => {
                failed += 1;
                note("timed out after 180 s".into());
            }
        }
    }
    Parallel {
        wall,
        ok,
        failed,
        errors,
        distinct_keys: keys.len(),
    }
}

/// `cmd` wrapped in `strace STRACE_ARGS -o OUT`, with the same environment.
fn under_strace(cmd: &Command, strace_args: &[&str], out_file: &Path) -> Command {
    let mut s = Command::new("strace");
    s.args(strace_args)
        .arg("-o")
        .arg(out_file)
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            s.env(k, v);
        }
    }
    s
}

/// Syscall totals of one run under `strace -f -c` (name → (calls, seconds spent)).
fn strace_counts(cmd: &Command, out_file: &Path) -> Result<BTreeMap<String, (u64, f64)>, String> {
    let mut s = under_strace(cmd, &["-f", "-qq", "-c", "-w"], out_file);
    ok_stdout(run_timed(&mut s, Duration::from_secs(60)), "strace")?;
    let text = std::fs::read_to_string(out_file).map_err(|e| e.to_string())?;
    let mut m = BTreeMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() >= 5
            && let Ok(calls) = f[3].parse::<u64>()
        {
            let secs = f[1].parse::<f64>().unwrap_or(0.0);
            m.insert(f[f.len() - 1].to_string(), (calls, secs));
        }
    }
    Ok(m)
}

/// Threads/processes created, sockets opened and files opened by one run.
fn strace_trace(cmd: &Command, out_file: &Path) -> Result<(usize, usize, Vec<String>), String> {
    let mut s = under_strace(
        cmd,
        &[
            "-f",
            "-qq",
            "-e",
            "trace=clone,clone3,fork,vfork,socket,openat",
        ],
        out_file,
    );
    ok_stdout(run_timed(&mut s, Duration::from_secs(60)), "strace")?;
    let text = std::fs::read_to_string(out_file).map_err(|e| e.to_string())?;
    let (mut threads, mut sockets, mut files) = (0, 0, Vec::new());
    for line in text.lines() {
        let body = line.split_once(' ').map_or(line, |(_, b)| b).trim_start();
        let failed = body.contains("= -1");
        if (body.starts_with("clone") || body.starts_with("fork") || body.starts_with("vfork"))
            && !failed
            && !body.contains("resumed")
        {
            threads += 1;
        } else if body.starts_with("socket(") && !failed {
            sockets += 1;
        } else if body.starts_with("openat(")
            && !failed
            && let Some(p) = body.split('"').nth(1)
            && !p.starts_with("/lib")
            && !p.starts_with("/usr/lib")
            && !p.starts_with("/etc/ld.so")
            && !p.starts_with("/proc")
            && !p.starts_with("/sys")
        {
            files.push(p.to_string());
        }
    }
    let certs = files
        .iter()
        .filter(|p| p.starts_with("/etc/ssl/certs/"))
        .count();
    files.retain(|p| !p.starts_with("/etc/ssl/certs/"));
    if certs > 0 {
        files.push(format!("/etc/ssl/certs/* ({certs} files)"));
    }
    Ok((threads, sockets, files))
}

fn bench_b(rep: &mut Report, work: &Path, stack_a: Option<&StackA>) {
    let double = match StsDouble::start(double_config()) {
        Ok(d) => d,
        Err(e) => {
            rep.skip("B", "credential-process vs STS double", &e);
            return;
        }
    };
    let config = work.join("aws-config");
    if let Err(e) = write_aws_config(&config) {
        rep.skip("B", "credential-process", &format!("write config: {e}"));
        return;
    }
    let home = work.join("home-b");
    let _ = std::fs::create_dir_all(&home);
    let env = Env {
        tapcred: release_bin("tapcred"),
        home,
        config,
        endpoint: double.endpoint(),
    };
    let timeout = Duration::from_secs(90);

    // Prime the cache for the warm row, and find out whether this build caches at all.
    let warm_cache = work.join("cache-warm");
    avoid_window_end(5);
    let primed = ok_stdout(
        run_timed(
            &mut env.cmd(
                &warm_cache,
                &["credential-process", "--profile", "mfa"],
                true,
            ),
            timeout,
        ),
        "credential-process --profile mfa (prime)",
    );
    let cache_files = files_under(&warm_cache.join("tapcred"));
    let caches = primed.is_ok() && !cache_files.is_empty();
    if let Err(e) = &primed {
        rep.notes
            .push(format!("B: first credential-process failed: {e}"));
    }
    // The entry that answered: the file holding the AccessKeyId the call printed.
    let primed_key = primed
        .as_ref()
        .ok()
        .and_then(|(_, out)| access_key(out))
        .unwrap_or_default();
    let cache_file = cache_files
        .iter()
        .find(|p| {
            !primed_key.is_empty()
                && std::fs::read_to_string(p)
                    .map(|t| t.contains(&primed_key))
                    .unwrap_or(false)
        })
        .or(cache_files.first())
        .cloned();

    // B1–B4, interleaved: warm, cat of the cache file, no-cache with MFA (a fresh serial per
    // sample, so no sample waits for a new TOTP window), no-cache without MFA.
    let n = M_NOCACHE;
    let (mut warm, mut cat, mut nc_mfa, mut nc_plain) = (
        Samples::default(),
        Samples::default(),
        Samples::default(),
        Samples::default(),
    );
    let mut errors: Vec<String> = Vec::new();
    let nocache_cache = work.join("cache-nocache");
    let _ = run_timed(
        &mut env.cmd(
            &nocache_cache,
            &["credential-process", "--profile", "nomfa", "--no-cache"],
            true,
        ),
        timeout,
    );
    for i in 0..n {
        avoid_window_end(5);
        let profile = format!("nocache-{i:02}");
        let mut jobs: Vec<(u8, Command)> = vec![
            (
                1,
                env.cmd(
                    &warm_cache,
                    &["credential-process", "--profile", "mfa"],
                    true,
                ),
            ),
            (
                3,
                env.cmd(
                    &nocache_cache,
                    &["credential-process", "--profile", &profile, "--no-cache"],
                    true,
                ),
            ),
            (
                4,
                env.cmd(
                    &nocache_cache,
                    &["credential-process", "--profile", "nomfa", "--no-cache"],
                    true,
                ),
            ),
        ];
        if let Some(f) = &cache_file {
            let mut c = Command::new("cat");
            c.arg(f);
            jobs.push((2, c));
        }
        if caches {
            // The cheap rows get three samples a round (still interleaved).
            jobs.push((
                1,
                env.cmd(
                    &warm_cache,
                    &["credential-process", "--profile", "mfa"],
                    true,
                ),
            ));
            jobs.push((
                1,
                env.cmd(
                    &warm_cache,
                    &["credential-process", "--profile", "mfa"],
                    true,
                ),
            ));
            if let Some(f) = &cache_file {
                for _ in 0..2 {
                    let mut c = Command::new("cat");
                    c.arg(f);
                    jobs.push((2, c));
                }
            }
            jobs.sort_by_key(|(k, _)| *k);
            // interleave: 1 2 3 4 1 2 1 2 …
            let mut firsts = Vec::new();
            let mut rest = Vec::new();
            let mut seen = BTreeSet::new();
            for j in jobs.drain(..) {
                if seen.insert(j.0) {
                    firsts.push(j)
                } else {
                    rest.push(j)
                }
            }
            jobs = firsts;
            jobs.extend(rest);
        } else {
            jobs.retain(|(k, _)| *k != 1 && *k != 2);
        }
        if i % 2 == 1 {
            jobs.reverse();
        }
        for (k, mut c) in jobs {
            match ok_stdout(run_timed(&mut c, timeout), &format!("row B{k}")) {
                Ok((d, out)) => {
                    if k != 2 && access_key(&out).is_none() {
                        errors.push(format!("B{k}: no AccessKeyId in output"));
                        continue;
                    }
                    match k {
                        1 => warm.push(d),
                        2 => cat.push(d),
                        3 => nc_mfa.push(d),
                        _ => nc_plain.push(d),
                    }
                }
                Err(e) => errors.push(e),
            }
        }
    }
    if caches {
        rep.row(
            "B1",
            "`credential-process --profile mfa`, warm cache",
            &warm,
            "1.00× (baseline)",
        );
        rep.row(
            "B2",
            "`cat` of the cache file (floor: process start + file read)",
            &cat,
            &format!("B1 is {} of this", ratio(warm.median(), cat.median())),
        );
    } else {
        rep.skip(
            "B1",
            "credential-process, warm cache",
            "this build wrote nothing under $XDG_CACHE_HOME/tapcred (no session cache yet)",
        );
    }
    let base = if caches { warm.median() } else { None };
    rep.row(
        "B3",
        "`credential-process --profile nocache-NN --no-cache` (code + GetSessionToken with MFA + AssumeRole; fresh serial per sample)",
        &nc_mfa,
        &if caches {
            format!("{} of warm", ratio(nc_mfa.median(), base))
        } else {
            "–".into()
        },
    );
    rep.row(
        "B4",
        "`credential-process --profile nomfa --no-cache` (AssumeRole, static keys, no MFA)",
        &nc_plain,
        &if caches {
            format!("{} of warm", ratio(nc_plain.median(), base))
        } else {
            "–".into()
        },
    );
    for e in errors.iter().take(3) {
        rep.notes.push(format!("B: sample dropped: {e}"));
    }

    // B5: a single cold call (empty cache, fresh serial) — the reference for B6.
    let mut cold = Samples::default();
    for i in 0..M_COLD {
        avoid_window_end(5);
        let cache = work.join(format!("cache-cold-{i}"));
        let profile = format!("cold-{i:02}");
        match ok_stdout(
            run_timed(
                &mut env.cmd(&cache, &["credential-process", "--profile", &profile], true),
                timeout,
            ),
            "cold call",
        ) {
            Ok((d, _)) => cold.push(d),
            Err(e) => rep.notes.push(format!("B5: {e}")),
        }
    }
    rep.row(
        "B5",
        "one `credential-process` on an empty cache (software seed)",
        &cold,
        "1.00× (reference for B6)",
    );

    // B6: 32 parallel calls on an empty cache, a fresh serial per batch.
    let par_n = env_usize("TAPCRED_BENCH_PAR", 32);
    let mut par = Samples::default();
    let mut failed_batches = 0;
    let mut counts = Vec::new();
    for i in 0..M_PAR {
        avoid_window_end(8);
        double.reset_stats();
        let cache = work.join(format!("cache-par-{i}"));
        let p = run_parallel(&env, &cache, &format!("par-{i:02}"), par_n, true);
        let st = double.stats();
        let accepted = st
            .token_codes
            .iter()
            .filter(|t| t.outcome == TokenOutcome::Accepted)
            .count();
        counts.push(format!(
            "batch {i}: {} ok / {} failed, {} distinct AccessKeyIds, STS requests {} ({}), TokenCodes received {} (accepted {accepted}){}",
            p.ok,
            p.failed,
            p.distinct_keys,
            st.requests,
            st.actions
                .iter()
                .map(|(a, s)| format!("{a}={}", s.calls))
                .collect::<Vec<_>>()
                .join(" "),
            st.token_codes.len(),
            p.errors_text()
        ));
        par.push(p.wall);
        failed_batches += usize::from(p.failed > 0);
    }
    rep.row(
        "B6",
        &format!("{par_n} parallel `credential-process` on an empty cache (software seed), wall until the last exits"),
        &par,
        &format!(
            "{} of one cold call (B5){}",
            ratio(par.median(), cold.median()),
            failed_note(failed_batches)
        ),
    );
    for c in counts {
        rep.fact("B6", c);
    }
    // B6w: the same 32 processes on a warm cache: what process start-up alone costs.
    if caches {
        let mut warm_par = Samples::default();
        for _ in 0..M_PAR {
            let p = run_parallel(&env, &warm_cache, "mfa", par_n, true);
            if p.failed == 0 {
                warm_par.push(p.wall);
            }
        }
        rep.row(
            "B6w",
            &format!("{par_n} parallel `credential-process` on a warm cache (spawn cost of B6)"),
            &warm_par,
            &format!("B6 is {} of this", ratio(par.median(), warm_par.median())),
        );
    }

    // B7 (OATH through pcscd) runs in bench_b_oath when the section-A stack is up.
    if stack_a.is_none() {
        rep.skip(
            "B7",
            "parallel calls with the OATH token",
            "needs the pcscd stack of section A",
        );
    }
    if caches && let Some(f) = &cache_file {
        warm_path_check(rep, &env, &warm_cache, f, work);
    } else {
        rep.skip(
            "B8",
            "warm path: threads, sockets, files",
            "needs a cache entry (B1)",
        );
    }
    drop(double);
}

fn warm_path_check(rep: &mut Report, env: &Env, warm_cache: &Path, cache_file: &Path, work: &Path) {
    if Command::new("strace")
        .arg("-V")
        .stdout(Stdio::null())
        .status()
        .map(|s| !s.success())
        .unwrap_or(true)
    {
        rep.skip(
            "B8",
            "warm path: threads, sockets, files",
            "strace is not installed (apt install strace)",
        );
        return;
    }
    let warm = || {
        env.cmd(
            warm_cache,
            &["credential-process", "--profile", "mfa"],
            true,
        )
    };
    let plain = || {
        env.cmd(
            &work.join("cache-nocache"),
            &["credential-process", "--profile", "nomfa", "--no-cache"],
            true,
        )
    };
    // Each MFA run needs its own serial (a code is accepted once per serial and window).
    let mfa = |tag: &str| {
        env.cmd(
            &work.join("cache-nocache"),
            &["credential-process", "--profile", tag, "--no-cache"],
            true,
        )
    };
    let cat = || {
        let mut c = Command::new("cat");
        c.arg(cache_file);
        c
    };
    let total = |m: &BTreeMap<String, (u64, f64)>| m.get("total").map_or(0, |t| t.0);
    let rows: Vec<(&str, Command, Command)> = vec![
        ("warm (B1)", warm(), warm()),
        ("cat (B2)", cat(), cat()),
        ("no-cache, MFA (B3)", mfa("trace-00"), mfa("trace-01")),
        ("no-cache, no MFA (B4)", plain(), plain()),
    ];
    for (i, (name, c1, c2)) in rows.iter().enumerate() {
        avoid_window_end(5);
        let counts = strace_counts(c1, &work.join(format!("strace-c-{i}")));
        let traced = strace_trace(c2, &work.join(format!("strace-t-{i}")));
        match (counts, traced) {
            (Ok(m), Ok((threads, sockets, files))) => {
                let some: Vec<String> = [
                    "connect",
                    "futex",
                    "epoll_wait",
                    "fsync",
                    "fdatasync",
                    "flock",
                    "clock_nanosleep",
                    "rename",
                ]
                .iter()
                .filter_map(|k| {
                    m.get(*k).map(|(n, secs)| {
                        if secs * 1e3 >= 1.0 {
                            format!("{k} {n} taking {:.1} ms", secs * 1e3)
                        } else {
                            format!("{k} {n}")
                        }
                    })
                })
                .collect();
                rep.fact(
                    "B8",
                    format!(
                        "{name}: {} syscalls ({}), {threads} threads/processes created (clone/clone3/fork), {sockets} sockets, files opened: {}",
                        total(&m),
                        if some.is_empty() { "none of connect/futex/epoll/fsync/flock/sleep".into() } else { some.join(", ") },
                        if files.is_empty() {
                            "–".into()
                        } else {
                            files.join(", ")
                        }
                    ),
                )
            }
            (Err(e), _) | (_, Err(e)) => rep.fact("B8", format!("{name}: strace failed: {e}")),
        }
    }
}

/// B7: 32 parallel OATH calls against a fresh virtual key through pcscd.
fn bench_b_oath(rep: &mut Report, work: &Path, stack: &mut StackA) {
    // Swap the section-A card for one whose accounts are named by mfa_serial.
    if let Some(card) = stack.card.take() {
        let _ = card.remove();
    }
    let mut cfg = VykConfig::new().serial(CARD_SERIAL);
    for i in 0..(M_OATH * 2) {
        let t = format!("oath-{i:02}");
        cfg = cfg.account(Account::totp_base32(&serial_arn(&t), DEMO_SEED).expect("seed"));
    }
    let card = match stack.stack.insert(0, VirtualYubiKey::new(cfg)) {
        Ok(c) => c,
        Err(e) => {
            rep.skip(
                "B7",
                "parallel calls with the OATH token",
                &format!("insert card: {e}"),
            );
            return;
        }
    };
    let double = match StsDouble::start(double_config()) {
        Ok(d) => d,
        Err(e) => {
            rep.skip("B7", "parallel calls with the OATH token", &e);
            return;
        }
    };
    let env = Env {
        tapcred: release_bin("tapcred"),
        home: work.join("home-b"),
        config: work.join("aws-config"),
        endpoint: double.endpoint(),
    };
    let vyk = card.vyk().clone();
    let reads = |h: &[ApduRecord]| h.iter().filter(|r| r.ins == 0xA2).count();
    let lists = |h: &[ApduRecord]| h.iter().filter(|r| r.ins == 0xA4 && r.p1 != 0x04).count();
    let mut one = Samples::default();
    for i in 0..M_OATH {
        avoid_window_end(5);
        vyk.clear_history();
        let cache = work.join(format!("cache-oath-one-{i}"));
        match ok_stdout(
            run_timed(
                &mut env.cmd(
                    &cache,
                    &["credential-process", "--profile", &format!("oath-{i:02}")],
                    false,
                ),
                Duration::from_secs(90),
            ),
            "oath cold call",
        ) {
            Ok((d, _)) => {
                one.push(d);
                if i == 0 {
                    rep.fact(
                        "B7",
                        format!(
                            "one cold OATH `credential-process`: {} code read(s) (CALCULATE) and {} CALCULATE_ALL on the card; {}",
                            reads(&vyk.history()),
                            lists(&vyk.history()),
                            apdu_summary(&vyk.history())
                        ),
                    );
                }
            }
            Err(e) => rep.notes.push(format!("B7: {e}")),
        }
    }
    rep.row(
        "B7a",
        "one `credential-process` on an empty cache, code from the virtual YubiKey via pcscd",
        &one,
        "1.00× (reference for B7b)",
    );
    let par_n = env_usize("TAPCRED_BENCH_PAR", 32);
    let mut par = Samples::default();
    let mut failed_batches = 0;
    for i in 0..M_OATH {
        avoid_window_end(8);
        vyk.clear_history();
        double.reset_stats();
        let cache = work.join(format!("cache-oath-par-{i}"));
        let p = run_parallel(
            &env,
            &cache,
            &format!("oath-{:02}", M_OATH + i),
            par_n,
            false,
        );
        let st = double.stats();
        let h = vyk.history();
        rep.fact(
            "B7b",
            format!(
                "batch {i}: {} ok / {} failed, {} distinct AccessKeyIds, code reads on the card {} (CALCULATE) + {} CALCULATE_ALL, APDUs {}, STS requests {}, TokenCodes {}{}",
                p.ok,
                p.failed,
                p.distinct_keys,
                reads(&h),
                lists(&h),
                h.len(),
                st.requests,
                st.token_codes.len(),
                p.errors_text()
            ),
        );
        par.push(p.wall);
        failed_batches += usize::from(p.failed > 0);
    }
    rep.row(
        "B7b",
        &format!("{par_n} parallel `credential-process` on an empty cache, OATH via pcscd"),
        &par,
        &format!(
            "{} of one call (B7a){}",
            ratio(par.median(), one.median()),
            failed_note(failed_batches)
        ),
    );
    drop(card);
}

fn tapcred_version(bin: &Path) -> String {
    Command::new(bin)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn failed_note(batches: usize) -> String {
    if batches == 0 {
        String::new()
    } else {
        format!("; {batches} batch(es) had failed processes, see counts")
    }
}

fn main() {
    // `cargo bench` passes `--bench`. Without it (e.g. `cargo test --all-targets`, which
    // builds benches in the test profile) do nothing: benchmarks are not tests.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("benches/tapcred.rs: not run without --bench; use `bash benches/run.sh`");
        return;
    }
    let tapcred = release_bin("tapcred");
    if !tapcred.is_file() {
        eprintln!(
            "benches: {} is missing; run `bash benches/run.sh` (it builds the release binaries first)",
            tapcred.display()
        );
        std::process::exit(1);
    }
    let work = std::env::temp_dir().join(format!("tapcred-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work).expect("temp dir");
    let mut rep = Report::default();
    let only = std::env::var("TAPCRED_BENCH_ONLY").unwrap_or_default();
    let mut stack = if only.is_empty() || only.contains('A') {
        bench_a(&mut rep, &work)
    } else {
        None
    };
    if only.is_empty() || only.contains('B') {
        bench_b(&mut rep, &work, stack.as_ref());
        if let Some(s) = stack.as_mut() {
            bench_b_oath(&mut rep, &work, s);
        }
    }
    drop(stack);
    let _ = std::fs::remove_dir_all(&work);
    rep.notes.push(format!(
        "network: {}; tapcred: {} ({}, tree {})",
        std::env::var("TAPCRED_BENCH_NETNS").unwrap_or_else(|_| "not set by benches/run.sh".into()),
        tapcred.display(),
        tapcred_version(&tapcred),
        std::env::var("TAPCRED_BENCH_REV").unwrap_or_else(|_| "?".into())
    ));
    let text = rep.print();
    println!("\n{text}");
    let out = std::env::var_os("TAPCRED_BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/bench-results.md"));
    let _ = std::fs::write(&out, &text);
    eprintln!("benches: table also written to {}", out.display());
}
