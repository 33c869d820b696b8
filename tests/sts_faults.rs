//! STS faults through the real binary (issue 11 findings 3, 4 and 9): a call that never
//! reached STS keeps its code window; a bad endpoint URL fails before any code is read; an
//! MFA call is never re-sent with the same code; foreign text is sanitised.

mod common;
use common::Home;
use tapcred_testkit::sts_double::design;

/// Files in the step ledger (`~/.cache/tapcred/steps`): one per serial whose code was sent.
fn ledger_files(h: &Home) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(h.cache_dir().join("steps"))
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// `Run::fails_with`, tolerating the "about to expire" wait line a run may print when it
/// happens to start in the last 3 s of a window (timing, not the behaviour under test).
fn fails_with(out: &common::Run, code: i32, needles: &[&str]) {
    let kept: String = out
        .stderr
        .lines()
        .filter(|l| !l.contains("the current code is about to expire"))
        .map(|l| format!("{l}\n"))
        .collect();
    common::Run {
        code: out.code,
        stdout: out.stdout.clone(),
        stderr: kept,
    }
    .fails_with(code, needles);
}

fn refused_port() -> u16 {
    // Bound and dropped: nothing listens there afterwards.
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Finding 11.4: STS unreachable (connection refused) used to record the code window anyway,
/// so the next attempt waited up to 30 s for a fresh window STS never saw used.
#[test]
fn a_refused_connection_does_not_burn_the_code_window() {
    let mut h = Home::design();
    h.set(
        "AWS_ENDPOINT_URL_STS",
        &format!("http://127.0.0.1:{}", refused_port()),
    )
    .set("TAPCRED_TOTP_SECRET", design::MFA_SEED_BASE32);
    for attempt in 0..2 {
        let out = h.run(&["credential-process", "--profile", "session"]);
        fails_with(&out, 6, &["cannot reach STS", "127.0.0.1"]);
        assert!(
            !out.stderr.contains("already used"),
            "attempt {attempt} waited for a window STS never saw: {}",
            out.stderr
        );
        assert!(
            ledger_files(&h).is_empty(),
            "attempt {attempt}: the code window was recorded: {:?}",
            ledger_files(&h)
        );
    }
}

/// Finding 11.4: a DNS failure is also "never sent".
#[test]
fn a_dns_failure_does_not_burn_the_code_window() {
    let mut h = Home::design();
    // `.invalid` never resolves (RFC 6761).
    h.set("AWS_ENDPOINT_URL_STS", "http://sts.tapcred-test.invalid")
        .set("TAPCRED_TOTP_SECRET", design::MFA_SEED_BASE32);
    let out = h.run(&["credential-process", "--profile", "session"]);
    fails_with(&out, 6, &["cannot reach STS", "tapcred-test.invalid"]);
    assert!(ledger_files(&h).is_empty(), "{:?}", ledger_files(&h));
}

/// Finding 11.4: a malformed endpoint URL is configuration (exit 3), reported before any
/// token source is opened or code read: with no seed and no YubiKey the answer is still
/// about the URL (it used to be "no token source", or a burnt window with a seed).
#[test]
fn a_bad_endpoint_url_fails_before_any_code_is_read() {
    for url in [
        "not a url",
        "ftp://127.0.0.1:1",
        "http://",
        "http://127.0.0.1:99999",
        "127.0.0.1:4566",
    ] {
        for with_seed in [false, true] {
            let mut h = Home::design();
            h.set("AWS_ENDPOINT_URL_STS", url);
            if with_seed {
                h.set("TAPCRED_TOTP_SECRET", design::MFA_SEED_BASE32);
            }
            let out = h.run(&["credential-process", "--profile", "session"]);
            out.fails_with(3, &["AWS_ENDPOINT_URL_STS", "\"session\""]);
            assert!(ledger_files(&h).is_empty(), "{url}: a code was read");
        }
    }
    // The same from the config file's endpoint_url.
    let mut h = Home::design();
    let config = std::fs::read_to_string(h.config_path()).unwrap();
    h.write_config(&config.replace(
        "[profile session]\n",
        "[profile session]\nendpoint_url = ftp://example.com\n",
    ));
    h.set("TAPCRED_TOTP_SECRET", design::MFA_SEED_BASE32);
    let out = h.run(&["credential-process", "--profile", "session"]);
    out.fails_with(3, &["endpoint_url", "ftp://example.com"]);
    assert!(ledger_files(&h).is_empty());
}

use tapcred_testkit::sts_double::{Fault, StsDouble, TokenOutcome};

fn with_double() -> (StsDouble, Home) {
    let d = StsDouble::start_design().expect("start the STS double");
    let mut h = Home::design();
    h.set("AWS_ENDPOINT_URL_STS", &d.endpoint())
        .set("TAPCRED_TOTP_SECRET", design::MFA_SEED_BASE32);
    (d, h)
}

/// Every code the double saw: never the same one twice, never refused as reused.
fn codes_never_repeat(d: &StsDouble) -> Vec<String> {
    let events = d.token_code_events();
    let codes: Vec<String> = events.iter().map(|e| e.code.clone()).collect();
    let distinct: std::collections::HashSet<_> = codes.iter().collect();
    assert_eq!(
        distinct.len(),
        codes.len(),
        "a code was sent twice: {events:?}"
    );
    assert!(
        events.iter().all(|e| e.outcome != TokenOutcome::Reused),
        "{events:?}"
    );
    codes
}

/// Finding 11.3: STS consumed the code and its answer was lost (HTTP 500). The SDK used to
/// re-send the same code, which STS refused as reused, and the person was told to check the
/// clock. Now the MFA call is retried once, with the next window's code.
#[test]
fn a_lost_answer_is_retried_once_with_the_next_code() {
    let (d, h) = with_double();
    d.inject_fault("GetSessionToken", Fault::ServerError);
    let out = h.run(&["credential-process", "--profile", "session"]);
    out.ok();
    assert_eq!(d.calls("GetSessionToken"), 2);
    assert_eq!(codes_never_repeat(&d).len(), 2);
    assert!(
        out.stderr.contains("retrying once with the next code"),
        "{}",
        out.stderr
    );
}

/// Finding 11.3: a broken connection after the request went out is the same case; a second
/// failure ends the run with exit 6 and no third attempt.
#[test]
fn two_lost_answers_end_in_exit_6_without_reusing_a_code() {
    let (d, h) = with_double();
    d.inject_fault("GetSessionToken", Fault::BrokenAnswer);
    d.inject_fault("GetSessionToken", Fault::ServerError);
    let out = h.run(&["credential-process", "--profile", "session"]);
    assert_eq!(out.code, 6, "{}", out.stderr);
    assert!(out.stdout.is_empty());
    let last = out.stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("tapcred: error: ") && last.contains("\"session\""),
        "{last}"
    );
    assert!(last.contains("HTTP 500"), "{last}");
    assert_eq!(d.calls("GetSessionToken"), 2);
    assert_eq!(codes_never_repeat(&d).len(), 2);
}

/// Finding 11.3: a hung endpoint used to hold the locks for 4 × 20 s, re-sending the code
/// each time. Now one attempt, bounded by the read timeout (here 2 s), exit 6.
#[test]
fn a_hung_endpoint_fails_within_the_read_timeout_with_one_attempt() {
    let (d, mut h) = with_double();
    h.set("TAPCRED_STS_READ_TIMEOUT", "2");
    d.inject_fault("GetSessionToken", Fault::Hang(120));
    let started = std::time::Instant::now();
    let out = h.run(&["credential-process", "--profile", "session"]);
    let took = started.elapsed();
    fails_with(&out, 6, &["\"session\"", "did not answer"]);
    assert_eq!(d.calls("GetSessionToken"), 1, "an MFA call is sent once");
    assert_eq!(codes_never_repeat(&d).len(), 1);
    // A bound, not a speed: the answer never comes (the double holds it 120 s).
    assert!(took < std::time::Duration::from_secs(60), "{took:?}");
}

/// Finding 11.3: calls without a code keep the SDK's standard retries (a 500 on the
/// AssumeRole signed by the MFA session is retried by the SDK and succeeds, one code used).
#[test]
fn a_call_without_a_code_keeps_the_sdk_retries() {
    let (d, h) = with_double();
    d.inject_fault("AssumeRole", Fault::ServerError);
    let out = h.run(&["credential-process", "--profile", "mfa"]);
    out.ok();
    assert_eq!(d.calls("GetSessionToken"), 1);
    assert_eq!(
        d.calls("AssumeRole"),
        2,
        "the SDK retried the code-less call"
    );
    assert_eq!(codes_never_repeat(&d).len(), 1);
}
