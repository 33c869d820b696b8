//! `tapcred enroll --to file` through the real binary against the strict STS/IAM double (no
//! YubiKey): the whole setup (`configure` then `enroll` then `credential-process`), and the
//! rollback at each failure point with nothing left behind (the double's IAM state, the AWS
//! files byte for byte, the seed file). The OATH destination through pcscd is in
//! `cli_enroll_oath.rs`.

#![cfg(unix)] // runs Linux test stacks (setsid, kill, pcscd); the Windows build is checked by clippy and Wine

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{Home, Run, totp_sha1};
use tapcred_testkit::sts_double::{StsDouble, TokenOutcome, design};

const SERIAL: &str = "arn:aws:iam::111111111111:mfa/toolkit-user";

const CONFIG: &str = "# my settings\n[default]\nregion = eu-west-1\n\n[profile mfa]\nsource_profile = toolkit-user\nrole_arn = arn:aws:iam::111111111111:role/toolkit-role\n; keep this comment\n\n[profile other]\nregion = us-east-2\n";

/// HOME with the profiles `configure` writes (mfa → toolkit-user), IAM and STS at the double.
fn home(d: &StsDouble) -> Home {
    common::enroll::home(d, CONFIG)
}

fn seed_path(h: &Home) -> PathBuf {
    h.path().join(".aws/tapcred-mfa.seed")
}

fn enroll(h: &Home, extra: &[&str]) -> Run {
    let mut args = vec!["enroll", "--profile", "mfa", "--to", "file"];
    args.extend_from_slice(extra);
    Run::from(h.cmd_detached(&args).output().expect("run tapcred"))
}

fn nothing_left(d: &StsDouble, h: &Home, before: &[(PathBuf, Vec<u8>)]) {
    let state = d.iam_state();
    assert!(state.virtual_devices.is_empty(), "{state:?}");
    assert!(
        state.user_devices.values().all(|v| v.is_empty()),
        "{state:?}"
    );
    assert_eq!(
        common::enroll::aws_files(h),
        before,
        "the AWS files are byte-identical"
    );
    assert!(!seed_path(h).exists(), "the seed file is removed");
}

/// Exit `code`, nothing on stdout, no undo (nothing was created), and the last line is the
/// one error line naming the problem (progress lines may come before it).
fn last_line_fails(out: &Run, code: i32, needles: &[&str]) {
    assert_eq!(out.code, code, "{}", out.stderr);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    assert!(!out.stderr.contains("undo"), "{}", out.stderr);
    let last = out.stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("tapcred: error: "), "{last}");
    for n in needles {
        assert!(last.contains(n), "{last:?} should mention {n:?}");
    }
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn configure_then_enroll_to_file_then_credential_process() {
    let d = common::enroll::new_user_double();
    let mut h = Home::empty();
    h.set("AWS_ENDPOINT_URL", &d.endpoint());
    // 1. configure: the keys from stdin, never argv.
    let mut c = h.cmd_detached(&[
        "configure",
        "--profile",
        "mfa",
        "--source-profile",
        "toolkit-user",
        "--role-arn",
        design::ROLE_ARN,
        "--keys-from-stdin",
    ]);
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    write!(
        child.stdin.take().unwrap(),
        "{}\n{}\n",
        design::ACCESS_KEY_ID,
        design::SECRET_ACCESS_KEY
    )
    .unwrap();
    let out = Run::from(child.wait_with_output().unwrap());
    out.ok();
    let config_before = std::fs::read_to_string(h.config_path()).unwrap();
    assert!(!config_before.contains("mfa_serial"), "{config_before}");

    // 2. enroll, with every log on.
    h.set("RUST_LOG", "trace");
    let out = enroll(&h, &[]);
    out.ok();
    assert!(
        out.stdout.contains(SERIAL) && out.stdout.contains("assumed-role/toolkit-role"),
        "{}",
        out.stdout
    );
    let seed_text = std::fs::read_to_string(seed_path(&h)).unwrap();
    let seed_text = seed_text.trim();
    assert_eq!(seed_text.len(), 64, "40 bytes of seed, base32");
    #[cfg(unix)]
    assert_eq!(mode(&seed_path(&h)), 0o600);
    for (what, text) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        assert!(!text.contains(seed_text), "the seed is in {what}");
        assert!(
            !text.contains(design::SECRET_ACCESS_KEY),
            "the secret key is in {what}"
        );
    }
    // Only the intended lines changed in the config file.
    let config_after = std::fs::read_to_string(h.config_path()).unwrap();
    let added: Vec<&str> = config_after
        .lines()
        .filter(|l| !config_before.lines().any(|b| b == *l))
        .collect();
    assert_eq!(
        added,
        [
            format!("mfa_serial = {SERIAL}"),
            format!("tapcred_totp_secret_file = {}", seed_path(&h).display())
        ]
    );
    assert!(config_before.lines().all(|l| config_after.contains(l)));

    // The double: the device is the user's, enabled with two consecutive codes of the seed,
    // and STS got a third, later one.
    let seed = data_encoding::BASE32_NOPAD
        .decode(seed_text.as_bytes())
        .unwrap();
    let state = d.iam_state();
    assert_eq!(state.user_devices[design::USER_NAME], [SERIAL]);
    let events = d.token_code_events();
    let enable: Vec<_> = events
        .iter()
        .filter(|e| e.action == "EnableMFADevice")
        .collect();
    assert_eq!(enable.len(), 2, "{events:?}");
    let s1 = enable[0].matched_step.expect("accepted");
    assert_eq!(enable[1].matched_step, Some(s1 + 1), "consecutive");
    assert_eq!(enable[0].code, totp_sha1(&seed, s1 * 30));
    let sts: Vec<_> = events
        .iter()
        .filter(|e| e.action != "EnableMFADevice")
        .collect();
    assert_eq!(sts.len(), 1, "one MFA call to STS: {events:?}");
    assert_eq!(sts[0].outcome, TokenOutcome::Accepted);
    assert!(
        sts[0].matched_step.unwrap() > s1 + 1,
        "the windows sent to IAM are never sent to STS"
    );
    assert_eq!(d.stats().ok("AssumeRole"), 1);

    // 3. credential-process: the session enroll proved is cached.
    h.set("RUST_LOG", "");
    let out = h.run(&["credential-process", "--profile", "mfa"]);
    out.ok();
    assert!(
        out.json()["AccessKeyId"]
            .as_str()
            .unwrap()
            .starts_with("ASIA")
    );
    assert_eq!(d.stats().ok("AssumeRole"), 1, "served from the cache");
}

#[test]
fn enable_refused_rolls_everything_back() {
    let d = common::enroll::new_user_double();
    let h = home(&d);
    let before = common::enroll::aws_files(&h);
    d.iam_fail_next("EnableMFADevice", 1, "InvalidAuthenticationCode");
    let out = enroll(&h, &[]);
    assert_eq!(out.code, 5, "{}", out.stderr);
    assert!(out.stdout.is_empty());
    for needle in [
        "IAM refused the two codes",
        "undo: removed",
        &format!("undo: deleted virtual MFA device {SERIAL}"),
        "everything was undone",
    ] {
        assert!(out.stderr.contains(needle), "{needle}: {}", out.stderr);
    }
    assert!(
        out.stderr
            .lines()
            .last()
            .unwrap()
            .starts_with("tapcred: error: "),
        "{}",
        out.stderr
    );
    nothing_left(&d, &h, &before);
    assert_eq!(d.stats().ok("DeleteVirtualMFADevice"), 1);
}

#[test]
fn a_failing_proof_rolls_back_the_profile_and_the_enabled_device() {
    let d = common::enroll::new_user_double();
    let h = home(&d);
    // A role the double does not have: AssumeRole is refused after everything else worked.
    let config = CONFIG.replace("role/toolkit-role", "role/missing-role");
    h.write_config(&config);
    let before = common::enroll::aws_files(&h);
    let out = enroll(&h, &[]);
    assert_eq!(out.code, 5, "{}", out.stderr);
    for needle in [
        "MFA device enabled",
        "wrote mfa_serial",
        "undo: restored",
        &format!("undo: deactivated {SERIAL}"),
        "undo: removed",
        "undo: deleted virtual MFA device",
        "everything was undone",
    ] {
        assert!(out.stderr.contains(needle), "{needle}: {}", out.stderr);
    }
    nothing_left(&d, &h, &before);
    assert_eq!(d.stats().ok("DeactivateMFADevice"), 1);
    assert!(
        !h.path().join(".aws/config.tapcred.bak").exists(),
        "the backup made by the rolled-back edit is gone"
    );
}

#[test]
fn an_undo_that_fails_prints_the_command_to_run() {
    let d = common::enroll::new_user_double();
    let h = home(&d);
    let before = common::enroll::aws_files(&h);
    d.iam_fail_next("EnableMFADevice", 1, "InvalidAuthenticationCode");
    d.iam_fail_next("DeleteVirtualMFADevice", 10, "AccessDenied");
    let out = enroll(&h, &[]);
    assert_eq!(out.code, 5, "{}", out.stderr);
    assert!(
        out.stderr.contains("could not undo everything")
            && out.stderr.contains("clean up by hand:"),
        "{}",
        out.stderr
    );
    let cmd = format!(
        "aws iam delete-virtual-mfa-device --serial-number {SERIAL} --profile toolkit-user"
    );
    assert!(
        out.stderr
            .lines()
            .any(|l| l.trim_start_matches("tapcred: warning:").trim() == cmd),
        "{}",
        out.stderr
    );
    // What could be undone was: the seed file and the files; the device is still there.
    assert_eq!(common::enroll::aws_files(&h), before);
    assert!(!seed_path(&h).exists());
    assert_eq!(d.iam_state().virtual_devices.len(), 1);
}

#[test]
fn ctrl_c_while_waiting_for_the_second_code_rolls_back() {
    stopped_while_waiting_for_the_second_code_rolls_back("-INT");
}

/// A service manager's or a closing terminal's "stop" is Ctrl-C's: the rollback runs.
#[test]
fn sigterm_or_sighup_while_waiting_for_the_second_code_rolls_back() {
    stopped_while_waiting_for_the_second_code_rolls_back("-TERM");
    stopped_while_waiting_for_the_second_code_rolls_back("-HUP");
}

/// `kill SIGNAL` to a running enroll once the device exists: everything is undone and the
/// exit code is 130.
fn stopped_while_waiting_for_the_second_code_rolls_back(signal: &str) {
    let d = common::enroll::new_user_double();
    let h = home(&d);
    let before = common::enroll::aws_files(&h);
    let mut child = h
        .cmd_detached(&["enroll", "--profile", "mfa", "--to", "file"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line.clone());
            lines.push(line);
        }
        lines
    });
    // Wait until the device exists, the seed is stored and the first code was read: the next
    // countdown is the wait for the second window.
    let mut seen_seed = false;
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("enroll reaches the wait for the second code");
        seen_seed |= line.contains("seed written to");
        if seen_seed && line.contains("(a code is used once)") {
            break;
        }
    }
    assert!(d.iam_state().virtual_devices.len() == 1);
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let lines = reader.join().unwrap().join("\n");
    assert_eq!(out.status.code(), Some(130), "{lines}");
    assert!(lines.contains("enroll interrupted; undoing"), "{lines}");
    assert!(lines.contains("everything was undone"), "{lines}");
    nothing_left(&d, &h, &before);
    assert_eq!(d.calls("EnableMFADevice"), 0);
}

#[test]
fn a_name_already_taken_creates_nothing() {
    // The design double: the user already has a device named like the user (a phone's).
    let d = StsDouble::start_design().unwrap();
    let h = home(&d);
    let before = common::enroll::aws_files(&h);
    let out = enroll(&h, &[]);
    last_line_fails(&out, 5, &["toolkit-user", "--device-name"]);
    assert_eq!(common::enroll::aws_files(&h), before);
    assert!(!seed_path(&h).exists());
    assert!(d.iam_state().virtual_devices.is_empty());
    // An existing seed file is never overwritten, and nothing is created for it.
    std::fs::write(seed_path(&h), "keep me\n").unwrap();
    let out = enroll(&h, &["--device-name", "yubikey"]);
    last_line_fails(&out, 2, &["already exists", "--seed-file"]);
    assert_eq!(std::fs::read_to_string(seed_path(&h)).unwrap(), "keep me\n");
    // The name was found taken by reading IAM before anything was created.
    assert_eq!(d.calls("CreateVirtualMFADevice"), 0);
}

#[test]
fn keys_that_are_not_an_iam_users_are_refused_before_anything() {
    let d = common::enroll::new_user_double();
    let h = home(&d);
    h.write_credentials(
        "[toolkit-user]\naws_access_key_id = AKIAUNKNOWNEXAMPLE00\naws_secret_access_key = nope\n",
    );
    let out = enroll(&h, &[]);
    last_line_fails(&out, 5, &["toolkit-user"]);
    assert_eq!(d.calls("CreateVirtualMFADevice"), 0);
}
