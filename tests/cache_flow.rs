//! Sessions end to end: the real `tapcred` binary against the strict STS double (which
//! rejects a reused TOTP code, checks SigV4 and MFA trust rules, counts every call and code).
//!
//! Every `tapcred` runs under `setsid -w` (no controlling terminal), so the person-facing
//! lines (warnings, "waiting for the next code window") land on stderr where the test sees
//! them. Tests that need a fresh TOTP window take up to ~33 s.
#![cfg(unix)] // runs Linux test stacks (or Unix-only APIs); the Windows build is checked by clippy and Wine

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Home, Run};
use tapcred_testkit::sts_double::{Config, StsDouble, TokenOutcome};

const SEED_FILE: &str = "fixtures/sts-double/design.seed";

struct World {
    home: Home,
    double: StsDouble,
}

fn seed() -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(SEED_FILE);
    std::fs::read_to_string(p).unwrap().trim().to_owned()
}

impl World {
    fn new() -> World {
        let double = StsDouble::start(Config::design()).expect("STS double");
        let mut home = Home::design();
        home.set("AWS_ENDPOINT_URL_STS", &double.endpoint());
        home.set("TAPCRED_TOTP_SECRET", &seed());
        World { home, double }
    }

    /// `tapcred ARGS` without a controlling terminal, with the test HOME's environment.
    fn cmd(&self, args: &[&str]) -> Command {
        self.home.cmd_detached(args)
    }

    fn run(&self, args: &[&str]) -> Run {
        Run::from(self.cmd(args).output().expect("run tapcred"))
    }

    fn process(&self, profile: &str, extra: &[&str]) -> Run {
        let mut a = vec!["credential-process", "--profile", profile];
        a.extend_from_slice(extra);
        self.run(&a)
    }

    fn codes(&self) -> Vec<TokenOutcome> {
        self.double
            .token_code_events()
            .iter()
            .map(|e| e.outcome)
            .collect()
    }

    fn cache_dir(&self) -> PathBuf {
        self.home.cache_dir()
    }
}

fn key_of(r: &Run) -> String {
    r.json()["AccessKeyId"].as_str().unwrap().to_owned()
}

#[test]
fn warm_cache_answers_without_sts_and_no_cache_bypasses_it() {
    let w = World::new();
    let a = w.process("session", &[]);
    a.ok();
    assert_eq!(w.double.calls("GetSessionToken"), 1);
    let v = a.json();
    assert_eq!(v["Version"], 1);
    assert!(v["Expiration"].as_str().unwrap().ends_with('Z'));
    for _ in 0..3 {
        let b = w.process("session", &[]);
        b.ok();
        assert_eq!(b.stdout, a.stdout, "same credentials from the cache");
    }
    assert_eq!(w.double.stats().requests, 1);
    // Cache files are private and named by hash only.
    let dir = w.cache_dir();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let p = e.path();
        if p.is_file() {
            assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
            let n = e.file_name().to_string_lossy().into_owned();
            assert!(!n.contains("111111111111") && !n.contains("toolkit"), "{n}");
        }
    }
    // --no-cache: a new MFA call (in a new window), nothing read from the cache.
    let c = w.process("session", &["--no-cache"]);
    c.ok();
    assert_ne!(key_of(&c), key_of(&a));
    assert_eq!(w.double.calls("GetSessionToken"), 2);
    assert_eq!(w.codes(), vec![TokenOutcome::Accepted; 2]);
}

#[test]
fn thirty_two_parallel_calls_cost_one_code_and_one_sts_call() {
    let w = World::new();
    let start = Instant::now();
    let children: Vec<_> = (0..32)
        .map(|_| {
            w.cmd(&["credential-process", "--profile", "session"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<Run> = children
        .into_iter()
        .map(|c| Run::from(c.wait_with_output().unwrap()))
        .collect();
    let wall = start.elapsed();
    for o in &outs {
        o.ok();
        assert_eq!(
            o.stdout, outs[0].stdout,
            "every process got the same credentials"
        );
    }
    assert_eq!(w.double.calls("GetSessionToken"), 1, "one STS call");
    assert_eq!(w.codes(), vec![TokenOutcome::Accepted], "one code");
    eprintln!("32 parallel cold calls: {wall:?}");
}

#[test]
fn three_roles_in_a_row_cost_one_code() {
    let w = World::new();
    let mut keys = Vec::new();
    for p in ["mfa", "mfa-b", "external"] {
        let r = w.process(p, &[]);
        r.ok();
        keys.push(key_of(&r));
    }
    keys.dedup();
    assert_eq!(keys.len(), 3);
    assert_eq!(w.codes(), vec![TokenOutcome::Accepted], "one code read");
    assert_eq!(w.double.calls("GetSessionToken"), 1);
    assert_eq!(w.double.calls("AssumeRole"), 3);
    // role -> role chain on top: still no code.
    w.process("role-chain", &[]).ok();
    assert_eq!(w.codes().len(), 1);
    // `sessions` lists them (no secrets) and `sessions clear --profile` removes one.
    let l = w.run(&["sessions", "--json"]);
    l.ok();
    let v = l.json();
    let profiles: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["profile"].as_str().unwrap())
        .collect();
    assert!(profiles.contains(&"mfa-b") && profiles.contains(&"external"));
    assert!(!l.stdout.contains("SecretAccessKey") && !l.stdout.contains("ASIA"));
    let c = w.run(&["sessions", "clear", "--profile", "mfa-b"]);
    c.ok();
    assert!(c.stdout.starts_with("removed "), "{}", c.stdout);
    let after = w.run(&["sessions", "--json"]).json();
    assert!(
        after
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["profile"] != "mfa-b")
    );
}

#[test]
fn two_mfa_calls_back_to_back_both_succeed() {
    let w = World::new();
    let a = w.process("mfa", &["--no-session"]);
    a.ok();
    let t = Instant::now();
    let b = w.process("mfa-b", &["--no-session"]);
    b.ok();
    let codes = w.double.token_code_events();
    assert_eq!(codes.len(), 2);
    assert!(codes.iter().all(|e| e.outcome == TokenOutcome::Accepted));
    assert_ne!(codes[0].matched_step, codes[1].matched_step);
    assert_eq!(
        w.double.calls("GetSessionToken"),
        0,
        "MFA directly on AssumeRole"
    );
    assert!(
        b.stderr.contains("waiting for the next code window"),
        "the second call told the person it waits: {}",
        b.stderr
    );
    assert!(t.elapsed() <= Duration::from_secs(35));
}

#[test]
fn long_duration_sends_mfa_on_assume_role() {
    let w = World::new();
    let r = w.process("long", &[]);
    r.ok();
    assert_eq!(w.double.calls("GetSessionToken"), 0);
    assert_eq!(w.double.calls("AssumeRole"), 1);
    let issued = w.double.stats().issued;
    assert_eq!(issued.len(), 1);
    assert_eq!(issued[0].requested_duration, 43200);
    assert!(issued[0].mfa);
}

#[test]
fn a_revoked_session_is_replaced_by_one_fresh_mfa_call() {
    let w = World::new();
    w.process("mfa", &[]).ok();
    w.double.revoke_all_sessions();
    // mfa-b: the cached MFA session is rejected (InvalidClientTokenId) → dropped → one fresh
    // MFA GetSessionToken (in a new window) → AssumeRole.
    let r = w.process("mfa-b", &[]);
    r.ok();
    assert!(r.stderr.contains("rejected by STS"), "{}", r.stderr);
    assert_eq!(w.codes(), vec![TokenOutcome::Accepted; 2]);
    assert_eq!(w.double.calls("GetSessionToken"), 2);
    assert_eq!(w.double.stats().errors_with_code("InvalidClientTokenId"), 1);
    // The role credentials of "mfa" were revoked too, but are still cached: tapcred cannot
    // know. After a clear they are renewed without a new code (the new MFA session is good).
    w.run(&["sessions", "clear", "--profile", "mfa"]).ok();
    w.process("mfa", &[]).ok();
    assert_eq!(w.codes().len(), 2);
}

/// Throttling: an MFA call is retried once by tapcred with the next window's code (never by
/// the SDK with the same code, issue 11 finding 3); a call without a code keeps the SDK's
/// retries; throttled to the end, exit 6 with one clear line.
#[test]
fn throttling_is_retried_then_reported_clearly() {
    let w = World::new();
    w.double.throttle_next(1);
    let r = w.process("session", &[]);
    r.ok();
    assert_eq!(
        w.double.calls("GetSessionToken"),
        2,
        "one throttled, one retry with the next code"
    );
    // The AssumeRole of "mfa" is signed by the cached MFA session: no code, SDK retries.
    w.double.throttle_next(100);
    let r = w.process("mfa", &[]);
    assert_eq!(r.code, 6, "{}", r.stderr);
    assert!(r.stdout.is_empty());
    let errors: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("tapcred: error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{}", r.stderr);
    assert!(errors[0].contains("throttling") && errors[0].contains("\"mfa\""));
    assert!(w.double.calls("AssumeRole") >= 2, "the SDK retried");
    assert_eq!(w.double.calls("GetSessionToken"), 2, "no new MFA call");
}

#[test]
fn an_unusable_cache_directory_warns_once_and_everything_works() {
    let mut w = World::new();
    // XDG_CACHE_HOME/tapcred is a regular file.
    let x = w.home.path().join("xdg");
    std::fs::create_dir_all(&x).unwrap();
    std::fs::write(x.join("tapcred"), b"not a directory").unwrap();
    w.home.set("XDG_CACHE_HOME", &x.to_string_lossy());
    let r = w.process("session", &[]);
    r.ok();
    let warnings: Vec<&str> = r.stderr.lines().filter(|l| l.contains("warning")).collect();
    assert_eq!(warnings.len(), 1, "{}", r.stderr);
    assert!(warnings[0].contains("not a directory"));
    // No cache: the next call needs a new code (next window), and still succeeds.
    let r = w.process("session", &[]);
    r.ok();
    assert_eq!(w.codes(), vec![TokenOutcome::Accepted; 2]);
    assert_eq!(
        std::fs::read(x.join("tapcred")).unwrap(),
        b"not a directory"
    );
}

/// A small tmpfs (root only) as XDG_CACHE_HOME; unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        ok.then(|| Tmpfs(at.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_keeps_the_old_entries_and_still_answers() {
    let mut w = World::new();
    let mnt = w.home.path().join("small");
    let Some(fs) = Tmpfs::mount(&mnt, "256k") else {
        tapcred_testkit::ci::skip(
            "a_full_disk_keeps_the_old_entries_and_still_answers",
            "mounting a tmpfs needs root (tests run as root in CI)",
        );
        return;
    };
    w.home.set("XDG_CACHE_HOME", &mnt.to_string_lossy());
    let a = w.process("mfa", &[]);
    a.ok();
    // Fill the filesystem.
    let filler = mnt.join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=4k", "count=1000"])
        .arg(format!("of={}", filler.display()))
        .stderr(Stdio::null())
        .status();
    // A new role: STS works, storing fails → one warning, credentials still printed.
    let b = w.process("mfa-b", &[]);
    b.ok();
    assert!(b.stderr.contains("no space left"), "{}", b.stderr);
    assert_eq!(b.stderr.matches("warning").count(), 1, "{}", b.stderr);
    // The old entry is intact: served from the cache, no STS call.
    let before = w.double.calls("AssumeRole");
    let again = w.process("mfa", &[]);
    again.ok();
    assert_eq!(again.stdout, a.stdout);
    assert_eq!(w.double.calls("AssumeRole"), before);
    // No temp files left behind.
    let tmp: Vec<_> = std::fs::read_dir(mnt.join("tapcred"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp"))
        .collect();
    assert!(tmp.is_empty());
    drop(fs);
}

#[test]
fn a_clock_jump_back_does_not_block_or_reuse() {
    let w = World::new();
    w.process("session", &[]).ok();
    // Pretend the clock went back a day after the last code: the ledger now lies in the
    // "future" and the cached session claims to be created tomorrow.
    let dir = w.cache_dir();
    let future = time::OffsetDateTime::now_utc() + time::Duration::days(1);
    for e in std::fs::read_dir(w.home.ledger_dir()).unwrap().flatten() {
        std::fs::write(
            e.path(),
            format!(
                r#"{{"version":1,"window_end":{}}}"#,
                future.unix_timestamp()
            ),
        )
        .unwrap();
    }
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        if e.path().extension().is_some_and(|x| x == "json") {
            let text = std::fs::read_to_string(e.path()).unwrap();
            let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
            v["created"] = tapcred::credentials::format_rfc3339(future).into();
            std::fs::write(e.path(), v.to_string()).unwrap();
        }
    }
    let t = Instant::now();
    let r = w.process("session", &[]);
    r.ok();
    assert!(
        t.elapsed() < Duration::from_secs(40),
        "waited {:?}",
        t.elapsed()
    );
    // The future-dated entry was not trusted (a new call), and the code was fresh.
    assert_eq!(w.double.calls("GetSessionToken"), 2);
    assert_eq!(w.codes(), vec![TokenOutcome::Accepted; 2]);
}
