//! The warm path really is "a file read and a JSON print": under strace, a cache hit of
//! `tapcred credential-process` opens no socket, creates no epoll instance (tokio's I/O
//! driver) and starts no thread; the cold call does all three (a sanity check of the probe).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{Home, Run, TAPCRED};
use tapcred_testkit::sts_double::{Config, StsDouble};

fn strace_calls(home: &Home, args: &[&str]) -> (Run, String) {
    let trace = home.path().join(format!("trace-{}", args.join("-")));
    let mut c = Command::new("strace");
    c.args([
        "-f",
        "-qq",
        "-e",
        "trace=socket,connect,epoll_create1,clone,clone3",
        "-o",
    ])
    .arg(&trace)
    .arg(TAPCRED)
    .args(args)
    .env_clear()
    .env("PATH", std::env::var("PATH").unwrap_or_default())
    .env("HOME", home.path())
    .env("XDG_CACHE_HOME", home.path().join(".cache"))
    .stdin(Stdio::null());
    for (k, v) in &home.env {
        c.env(k, v);
    }
    let run = Run::from(c.output().expect("strace"));
    (run, std::fs::read_to_string(&trace).unwrap_or_default())
}

#[test]
fn a_cache_hit_makes_no_network_runtime_or_thread() {
    if Command::new("strace").arg("-V").output().is_err() {
        tapcred_testkit::ci::skip(
            "a_cache_hit_makes_no_network_runtime_or_thread",
            "strace is missing",
        );
        return;
    }
    let double = StsDouble::start(Config::design()).unwrap();
    let mut home = Home::design();
    let seed = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/sts-double/design.seed"),
    )
    .unwrap();
    home.set("AWS_ENDPOINT_URL_STS", &double.endpoint());
    home.set("TAPCRED_TOTP_SECRET", seed.trim());

    let (cold, cold_trace) = strace_calls(&home, &["credential-process", "--profile", "mfa"]);
    cold.ok();
    if cold_trace.trim().is_empty() {
        tapcred_testkit::ci::skip(
            "a_cache_hit_makes_no_network_runtime_or_thread",
            "strace produced no trace (ptrace not permitted?)",
        );
        return;
    }
    assert!(
        cold_trace.contains("connect("),
        "the probe sees the cold call's STS connection:\n{cold_trace}"
    );
    assert!(cold_trace.contains("epoll_create1("), "{cold_trace}");

    let (warm, warm_trace) = strace_calls(&home, &["credential-process", "--profile", "mfa"]);
    warm.ok();
    assert_eq!(warm.stdout, cold.stdout);
    for call in ["socket(", "connect(", "epoll_create1(", "clone(", "clone3("] {
        assert!(
            !warm_trace.contains(call),
            "warm path made {call}:\n{warm_trace}"
        );
    }
    assert_eq!(
        double.stats().requests,
        2,
        "GetSessionToken + AssumeRole, once"
    );
}
