//! Fault injection between tapcred and STS (issue 11, item 14): a proxy in front of the
//! strict STS double answers 500, 503 HTML, throttling, malformed XML, an answer without
//! credentials, an HTML page, slow answers, resets, truncated answers, and "answer lost"
//! (STS consumed the code, the reply never arrived). For each: the exit code, exactly one
//! `tapcred: error:` line naming the profile, nothing on stdout, no cache entry and no
//! partial file left, the AWS files untouched. Their exact answers are rows of
//! docs/bad-inputs.md (tests/bad_inputs.rs).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Home, Run};
use tapcred_testkit::fault_proxy::{FaultProxy, StsFault};
use tapcred_testkit::sts_double::{StsDouble, design};

struct World {
    _double: StsDouble,
    proxy: FaultProxy,
    home: Home,
}

fn world() -> World {
    let double = StsDouble::start_design().expect("STS double");
    let proxy = FaultProxy::start(double.port()).expect("fault proxy");
    let mut home = Home::design();
    home.set("AWS_ENDPOINT_URL_STS", &proxy.endpoint())
        .set("TAPCRED_TOTP_SECRET", design::MFA_SEED_BASE32);
    World {
        _double: double,
        proxy,
        home,
    }
}

fn files(dir: &Path) -> Vec<String> {
    common::files_under(dir)
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect()
}

/// The failure contract, and what is left on disk.
fn check_failure(w: &World, r: &Run, code: i32, needles: &[&str]) {
    let errors: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("tapcred: error:"))
        .collect();
    assert_eq!(
        r.code, code,
        "exit code; stderr: {}; stdout: {}",
        r.stderr, r.stdout
    );
    assert!(r.stdout.is_empty(), "stdout: {}", r.stdout);
    assert_eq!(errors.len(), 1, "one error line: {}", r.stderr);
    let line = errors[0];
    assert!(line.len() < 400, "short line: {line}");
    assert!(!line.contains('\u{1b}'), "no escape sequences: {line:?}");
    for n in needles {
        assert!(line.contains(n), "{line:?} should mention {n:?}");
    }
    let left = files(&w.home.cache_dir());
    assert!(
        !left
            .iter()
            .any(|f| f.ends_with(".json") && !f.contains("/steps/")),
        "no cache entry after a failure: {left:?}"
    );
    assert!(
        !left.iter().any(|f| Path::new(f)
            .file_name()
            .is_some_and(|n| n.to_string_lossy().contains(".tmp"))),
        "no partial file: {left:?}"
    );
    assert_eq!(
        std::fs::read_to_string(w.home.config_path()).unwrap(),
        common::design_fixture("config")
    );
    assert_eq!(
        std::fs::read_to_string(w.home.credentials_path()).unwrap(),
        common::design_fixture("credentials")
    );
}

fn run_with(fault: StsFault) -> (World, Run, Duration) {
    let w = world();
    w.proxy.set_default(fault);
    let t = Instant::now();
    let r = Run::from(
        w.home
            .cmd_detached(&["credential-process", "--profile", "session"])
            .output()
            .unwrap(),
    );
    let took = t.elapsed();
    (w, r, took)
}

#[test]
fn sts_500_is_a_network_error() {
    let (w, r, _) = run_with(StsFault::Status500);
    check_failure(&w, &r, 6, &["\"session\""]);
}

#[test]
fn sts_503_html_is_a_network_error() {
    let (w, r, _) = run_with(StsFault::Status503Html);
    check_failure(&w, &r, 6, &["\"session\""]);
}

#[test]
fn sts_throttling_is_a_network_error() {
    let (w, r, _) = run_with(StsFault::Throttle);
    check_failure(&w, &r, 6, &["\"session\"", "throttl"]);
}

#[test]
fn malformed_xml_is_not_an_sts_answer() {
    // Found here: a truncated GetSessionTokenResponse parsed into AccessKeyId "ASIA", an
    // empty secret and a 1970 Expiration, printed with exit 0.
    let (w, r, _) = run_with(StsFault::MalformedXml);
    check_failure(&w, &r, 6, &["\"session\"", "STS at http://127.0.0.1:"]);
}

#[test]
fn an_answer_without_credentials_is_refused() {
    let (w, r, _) = run_with(StsFault::NoCredentials);
    check_failure(
        &w,
        &r,
        6,
        &["STS at http://127.0.0.1:", "without credentials"],
    );
}

#[test]
fn an_html_page_is_not_an_sts_answer() {
    let (w, r, _) = run_with(StsFault::Html);
    check_failure(&w, &r, 6, &["\"session\""]);
}

#[test]
fn a_reset_connection_is_a_network_error() {
    let (w, r, _) = run_with(StsFault::Reset);
    check_failure(&w, &r, 6, &["\"session\""]);
}

#[test]
fn a_truncated_answer_is_a_network_error() {
    let (w, r, _) = run_with(StsFault::Truncate(100));
    check_failure(&w, &r, 6, &["\"session\""]);
}

/// STS consumed the code and the answer was lost: the same code is never sent again.
#[test]
fn a_lost_answer_never_resends_the_same_code() {
    let (w, r, _) = run_with(StsFault::AnswerLost);
    check_failure(&w, &r, 6, &["\"session\""]);
    let codes = w._double.token_code_events();
    let mut seen = std::collections::HashSet::new();
    for e in &codes {
        assert!(seen.insert(e.code.clone()), "code sent twice: {codes:?}");
    }
}

/// A slow answer (2 s, under the timeouts) is waited for and succeeds.
#[test]
fn a_slow_answer_succeeds() {
    let (w, r, took) = run_with(StsFault::Slow(Duration::from_secs(2)));
    r.ok();
    assert!(took >= Duration::from_secs(2), "{took:?}");
    assert_eq!(w.proxy.forwarded(), 1);
    assert!(
        files(&w.home.cache_dir())
            .iter()
            .any(|f| f.ends_with(".json"))
    );
}

/// One transient fault (a reset before STS saw the request) on an MFA call: it is retried
/// (with the next window's code, the same code is never sent twice) and succeeds.
#[test]
fn one_reset_before_sts_then_success() {
    let w = world();
    w.proxy.push(StsFault::Reset);
    let r = Run::from(
        w.home
            .cmd_detached(&["credential-process", "--profile", "session"])
            .output()
            .unwrap(),
    );
    r.ok();
    assert!(
        r.json()["AccessKeyId"]
            .as_str()
            .unwrap()
            .starts_with("ASIA")
    );
    assert_eq!(w.proxy.requests(), 2, "the reset request and its retry");
    assert_eq!(w.proxy.forwarded(), 1, "only the retry reached STS");
}

/// The cache directory (entries, ledger, locks) is removed while a call waits for STS: the
/// call still prints its credentials without a false "not writable" warning (that would
/// turn the cache off), and the next call recreates the directory and uses it.
#[test]
#[cfg(unix)]
fn the_cache_directory_vanishing_mid_call_is_recreated() {
    use std::os::unix::fs::PermissionsExt;
    use std::process::Stdio;
    let w = world();
    w.proxy.push(StsFault::Slow(Duration::from_secs(3)));
    let child = w
        .home
        .cmd_detached(&["credential-process", "--profile", "session"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while w.proxy.requests() == 0 {
        assert!(t.elapsed() < Duration::from_secs(20), "no request to STS");
        std::thread::sleep(Duration::from_millis(10));
    }
    let dir = w.home.cache_dir();
    assert!(dir.join("locks").is_dir(), "the call holds its locks there");
    std::fs::remove_dir_all(&dir).unwrap();
    let r = Run::from(child.wait_with_output().unwrap());
    r.ok();
    assert!(
        r.json()["AccessKeyId"]
            .as_str()
            .unwrap()
            .starts_with("ASIA"),
        "{}",
        r.stdout
    );
    assert!(
        !r.stderr.contains("warning"),
        "no warning for a directory that was only removed: {}",
        r.stderr
    );
    // The next call: the directory is back (0700), with its entry, and no code was refused.
    let again = Run::from(
        w.home
            .cmd_detached(&["credential-process", "--profile", "session"])
            .output()
            .unwrap(),
    );
    again.ok();
    assert!(!again.stderr.contains("warning"), "{}", again.stderr);
    let md = std::fs::metadata(&dir).expect("cache directory recreated");
    assert_eq!(md.permissions().mode() & 0o777, 0o700);
    assert!(
        files(&dir)
            .iter()
            .any(|f| f.ends_with(".json") && !f.contains("/steps/")),
        "a cache entry in the recreated directory: {:?}",
        files(&dir)
    );
    let codes = w._double.token_code_events();
    assert!(
        codes.iter().all(|e| e.matched_step.is_some()),
        "a code was refused (reused?): {codes:?}"
    );
}
