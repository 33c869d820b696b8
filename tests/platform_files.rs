//! Issue 11, findings 8 and 10, through the real binary: odd files where tapcred reads its
//! inputs (a FIFO, an endless device, a huge file) are refused at once with one clear line,
//! never a hang or an unbounded read; and a tapcred process has core dumps off.
#![cfg(unix)]

mod common;
use common::{Home, Run};

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

const CONFIG_OK: &str = "[profile toolkit-user]\nregion = us-east-1\n";
const CREDS_OK: &str = "[toolkit-user]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n";
const MFA_PROFILE: &str = "[profile mfa]\nsource_profile = toolkit-user\nrole_arn = arn:aws:iam::111111111111:role/toolkit-role\nmfa_serial = arn:aws:iam::111111111111:mfa/toolkit-user\n";

/// `tapcred ARGS`, killed after 10 s (today's code blocked for ever on a FIFO and read
/// `/dev/zero` until memory ran out): a timeout fails the test.
fn run_bounded(h: &Home, args: &[&str]) -> Run {
    let mut c = h.cmd(args);
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().expect("run tapcred");
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return Run::from(child.wait_with_output().unwrap());
        }
        if start.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("tapcred {args:?} did not finish within 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn mkfifo(p: &Path) {
    // 0600, so the old mode check cannot refuse it before the open.
    let st = std::process::Command::new("mkfifo")
        .args(["-m", "600"])
        .arg(p)
        .status()
        .expect("mkfifo");
    assert!(st.success());
}

fn home(config_extra: &str) -> Home {
    let h = Home::empty();
    h.write_config(&format!("{CONFIG_OK}\n{config_extra}"));
    h.write_credentials(CREDS_OK);
    h
}

#[test]
fn a_fifo_as_the_aws_config_file_is_refused_not_waited_on() {
    let mut h = home("");
    let fifo = h.path().join("config.fifo");
    mkfifo(&fifo);
    h.set("AWS_CONFIG_FILE", fifo.to_str().unwrap());
    run_bounded(&h, &["credential-process", "--profile", "toolkit-user"])
        .fails_with(3, &["config.fifo", "FIFO", "AWS_CONFIG_FILE"]);
}

#[test]
fn dev_zero_as_the_aws_config_file_is_refused_not_read_forever() {
    let mut h = home("");
    h.set("AWS_CONFIG_FILE", "/dev/zero");
    run_bounded(&h, &["credential-process", "--profile", "toolkit-user"])
        .fails_with(3, &["/dev/zero", "character device"]);
}

#[test]
fn an_oversized_aws_credentials_file_is_refused_with_its_name() {
    let h = home("");
    // Valid INI, just far too large for a credentials file (1 MiB cap).
    let mut big = String::from(CREDS_OK);
    while big.len() <= 1024 * 1024 {
        big.push_str("# padding padding padding padding padding padding padding padding\n");
    }
    h.write_credentials(&big);
    run_bounded(&h, &["credential-process", "--profile", "toolkit-user"])
        .fails_with(3, &[".aws/credentials", "larger than 1 MiB"]);
}

#[test]
fn a_fifo_as_the_seed_file_is_refused_not_waited_on() {
    let h = home(&format!("{MFA_PROFILE}tapcred_totp_secret_file = ~/seed\n"));
    mkfifo(&h.path().join("seed"));
    run_bounded(&h, &["credential-process", "--profile", "mfa"])
        .fails_with(3, &["seed", "FIFO", "\"mfa\""]);
}

#[test]
fn an_endless_seed_file_is_refused() {
    let h = home(&format!(
        "{MFA_PROFILE}tapcred_totp_secret_file = /dev/zero\n"
    ));
    run_bounded(&h, &["credential-process", "--profile", "mfa"])
        .fails_with(3, &["/dev/zero", "not a regular file", "\"mfa\""]);
    let big = h.path().join("big-seed");
    std::fs::write(&big, vec![b'A'; 200 * 1024]).unwrap();
    std::fs::set_permissions(&big, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    h.write_config(&format!(
        "{CONFIG_OK}\n{MFA_PROFILE}tapcred_totp_secret_file = {}\n",
        big.display()
    ));
    run_bounded(&h, &["credential-process", "--profile", "mfa"])
        .fails_with(3, &["big-seed", "larger than", "\"mfa\""]);
}

/// Finding 10: a tapcred process runs with the core-file limit 0 (a child of `exec`
/// inherits it; it is started from a shell whose soft limit was raised first, so today's
/// tapcred, which left the limit alone, fails this).
#[test]
fn tapcred_runs_with_core_dumps_off() {
    let h = home("");
    let mut c = std::process::Command::new("sh");
    c.arg("-c").arg(
        "ulimit -S -c unlimited 2>/dev/null || ulimit -S -c 4096 2>/dev/null; \
         echo before=$(ulimit -S -c); exec \"$@\"",
    );
    c.arg("sh").arg(common::TAPCRED);
    h.prepare(
        &mut c,
        &[
            "exec",
            "--profile",
            "toolkit-user",
            "--",
            "sh",
            "-c",
            "echo after=$(ulimit -S -c)",
        ],
    );
    let out = Run::from(c.output().unwrap());
    out.ok();
    let before = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("before="))
        .unwrap();
    if before == "0" {
        // The hard limit is 0: nothing could dump here, so the test cannot tell.
        assert!(
            !ci(),
            "the hard core limit is 0 under CI; this test cannot run"
        );
        eprintln!("SKIP tapcred_runs_with_core_dumps_off: the hard core-file limit is 0 here");
        return;
    }
    assert!(
        out.stdout.lines().any(|l| l == "after=0"),
        "tapcred (and so its exec child) must run with the core limit 0: {:?}",
        out.stdout
    );
}

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}
