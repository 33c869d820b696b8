//! Benchmark (not a timed test; ignored by default). Run with
//! `cargo test --release --test cache_bench -- --ignored --nocapture`.
//!
//! Prints, in one run against the local STS double:
//! - medians of `credential-process` with a warm cache vs the same call with `--no-cache`
//!   (profile `plain`: a role without MFA, so `--no-cache` needs no new TOTP window and the
//!   difference is exactly what the cache saves: runtime + SDK + HTTPS client + STS round trip);
//! - the warm median for the MFA profile `mfa` (the MFA session + role path);
//! - 32 parallel calls on a cold cache (profile `session`): STS calls, codes sent, wall time,
//!   next to one cold call on its own.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Home, Run, TAPCRED, design_fixture};
use tapcred_testkit::sts_double::{Config, StsDouble};

fn world() -> (Home, StsDouble) {
    let double = StsDouble::start(Config::design()).unwrap();
    let mut home = Home::design();
    home.write_config(&format!(
        "{}\n[profile plain]\nsource_profile = toolkit-user\nrole_arn = arn:aws:iam::111111111111:role/chained-role\n",
        design_fixture("config")
    ));
    let seed = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/sts-double/design.seed"),
    )
    .unwrap();
    home.set("AWS_ENDPOINT_URL_STS", &double.endpoint());
    home.set("TAPCRED_TOTP_SECRET", seed.trim());
    (home, double)
}

fn cmd(home: &Home, args: &[&str]) -> Command {
    let mut c = Command::new(TAPCRED);
    c.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("XDG_CACHE_HOME", home.path().join(".cache"))
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .stdout(Stdio::piped());
    for (k, v) in &home.env {
        c.env(k, v);
    }
    c
}

fn timed(home: &Home, args: &[&str]) -> Duration {
    let t = Instant::now();
    let r = Run::from(cmd(home, args).output().unwrap());
    let d = t.elapsed();
    r.ok();
    d
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[test]
#[ignore = "benchmark: cargo test --release --test cache_bench -- --ignored --nocapture"]
fn bench_sessions() {
    let (home, double) = world();
    timed(&home, &["credential-process", "--profile", "plain"]);
    let warm: Vec<_> = (0..51)
        .map(|_| timed(&home, &["credential-process", "--profile", "plain"]))
        .collect();
    let before = double.calls("AssumeRole");
    let nocache: Vec<_> = (0..21)
        .map(|_| {
            timed(
                &home,
                &["credential-process", "--profile", "plain", "--no-cache"],
            )
        })
        .collect();
    assert_eq!(double.calls("AssumeRole") - before, 21);
    timed(&home, &["credential-process", "--profile", "mfa"]);
    let warm_mfa: Vec<_> = (0..51)
        .map(|_| timed(&home, &["credential-process", "--profile", "mfa"]))
        .collect();
    println!("credential-process, median of runs:");
    println!("  warm cache (plain)         {:>10.2?}", median(warm));
    println!("  --no-cache (plain, 1 STS)  {:>10.2?}", median(nocache));
    println!("  warm cache (mfa)           {:>10.2?}", median(warm_mfa));

    // One cold call alone.
    let (home1, double1) = world();
    let one = timed(&home1, &["credential-process", "--profile", "session"]);
    // 32 parallel on a cold cache.
    let (home32, double32) = world();
    let t = Instant::now();
    let kids: Vec<_> = (0..32)
        .map(|_| {
            cmd(&home32, &["credential-process", "--profile", "session"])
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<Run> = kids
        .into_iter()
        .map(|k| Run::from(k.wait_with_output().unwrap()))
        .collect();
    let wall = t.elapsed();
    for o in &outs {
        o.ok();
        assert_eq!(o.stdout, outs[0].stdout);
    }
    println!("cold cache, profile `session` (GetSessionToken with MFA):");
    println!(
        "  1 call:        wall {:>10.2?}  STS calls {}  codes {}",
        one,
        double1.stats().requests,
        double1.token_code_events().len()
    );
    println!(
        "  32 parallel:   wall {:>10.2?}  STS calls {}  codes {}",
        wall,
        double32.stats().requests,
        double32.token_code_events().len()
    );
    println!(
        "  (a cold call waits for a fresh TOTP window when < 3 s are left in the current one)"
    );
}
