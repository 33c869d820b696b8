//! The warm path really is "a file read and a JSON print": under strace, a cache hit of
//! `tapcred credential-process` opens no socket, creates no epoll instance (tokio's I/O
//! driver), starts no thread and runs no other program (the `tapcred` launcher answers it
//! without `tapcred-full`); the cold call does all of these (a sanity check of the probe).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{Home, Run, TAPCRED, TAPCRED_FULL};
use tapcred_testkit::sts_double::{Config, StsDouble, design};

fn strace_calls(home: &Home, args: &[&str]) -> (Run, String) {
    let trace = home.path().join(format!("trace-{}", args.join("-")));
    let mut c = Command::new("strace");
    c.args([
        "-f",
        "-qq",
        "-e",
        "trace=socket,connect,epoll_create1,clone,clone3,execve",
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
    let home = Home::design_against(&double.endpoint());

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
    let programs = |trace: &str| -> Vec<String> {
        trace
            .lines()
            .filter(|l| l.contains("execve(") && !l.contains("= -1"))
            .map(|l| l.split('"').nth(1).unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(
        programs(&cold_trace),
        [TAPCRED, TAPCRED_FULL],
        "a miss: the launcher, then the whole program in its place"
    );

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
        programs(&warm_trace),
        [TAPCRED],
        "a hit is answered by the launcher alone"
    );
    assert_eq!(
        double.stats().requests,
        2,
        "GetSessionToken + AssumeRole, once"
    );
}

/// The warm index (src/engine/warm.rs) answers a hit without parsing the AWS files, and
/// only while the files' bytes and every environment variable the resolution read are
/// unchanged: an edit of the same length made at once, or a changed variable, sends the
/// call down the full path (which refreshes the index).
#[test]
fn the_warm_index_is_used_only_while_files_and_environment_are_unchanged() {
    let double = StsDouble::start(Config::design()).unwrap();
    let mut home = Home::design_against(&double.endpoint());
    home.set("RUST_LOG", "tapcred=debug");
    let call = |home: &Home| {
        let r = home.run(&["credential-process", "--profile", "mfa"]);
        r.ok();
        let hit = r.stderr.contains("warm index hit");
        (r.json()["AccessKeyId"].as_str().unwrap().to_owned(), hit)
    };

    let (cold, hit) = call(&home);
    assert!(!hit, "nothing to hit yet");
    assert_eq!(double.stats().requests, 2);
    let (warm, hit) = call(&home);
    assert_eq!((warm.as_str(), hit), (cold.as_str(), true));
    assert_eq!(double.stats().requests, 2, "a hit calls nothing");

    // The index holds no secret: a cache key, variable names and digests.
    let dir = home.cache_dir().join("warm");
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
    assert_eq!(files.len(), 1, "{dir:?}");
    let text = std::fs::read_to_string(files[0].path()).unwrap();
    for secret in [
        design::MFA_SEED_BASE32,
        cold.as_str(),
        "aws_secret_access_key",
    ] {
        assert!(!text.contains(secret), "{text}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = files[0].metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    // A comment added: same profile, new bytes → full path once (still a cache hit, no
    // STS call), then the refreshed index answers again.
    let config = design_config();
    home.write_config(&format!("{config}# edited\n"));
    let (after, hit) = call(&home);
    assert_eq!((after.as_str(), hit), (cold.as_str(), false));
    let (_, hit) = call(&home);
    assert!(hit, "the index was refreshed");
    assert_eq!(double.stats().requests, 2);

    // The same profile now names another role, in an edit of the same length made right
    // away (same size, and likely the same mtime): the index must not answer with the old
    // role's credentials.
    let edited =
        format!("{config}# edited\n").replacen("role/toolkit-role\n", "role/long-role   \n", 1);
    assert_eq!(edited.len(), config.len() + "# edited\n".len());
    home.write_config(&edited);
    let (other, hit) = call(&home);
    assert!(!hit);
    assert_ne!(other, cold, "credentials of the newly named role");
    assert_eq!(double.calls("AssumeRole"), 2, "a second role was assumed");

    // A variable the resolution reads (here the region) changes: not from the index.
    let (_, hit) = call(&home);
    assert!(hit);
    home.set("AWS_REGION", "eu-west-1");
    let (_, hit) = call(&home);
    assert!(!hit, "AWS_REGION changed");
}

fn design_config() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/aws/design/config"),
    )
    .unwrap()
}
