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
