//! `tapcred enroll --to file` when an IAM write commits and its answer is lost, when IAM's
//! state cannot be read, when the process is SIGKILLed at each step, and when it panics.
//! One fault harness for every case: the double does the work, then loses the answer
//! (`StsDouble::lose_answer`, for every action in `IAM_WRITES`), or fails a read
//! (`StsDouble::fault_calls`). The real binary against the strict double; the state checked
//! is the double's IAM state, the AWS files byte for byte, the seed file and the journal.

#![cfg(unix)] // runs Linux test stacks (setsid, kill); the Windows build is checked by clippy and Wine

mod common;

use std::path::{Path, PathBuf};

use common::{Home, Run};
use tapcred_testkit::sts_double::{Fault, IAM_WRITES, SDK_ATTEMPTS, StsDouble, design};

const SERIAL: &str = "arn:aws:iam::111111111111:mfa/toolkit-user";

const CONFIG: &str = "# my settings\n[profile mfa]\nsource_profile = toolkit-user\nrole_arn = arn:aws:iam::111111111111:role/toolkit-role\n; keep this comment\n";

fn home(d: &StsDouble) -> Home {
    common::enroll::home(d, CONFIG)
}

/// A HOME whose proof fails after everything else worked (a role the double does not
/// have): the undo then has an enabled device to deactivate.
fn home_failing_proof(d: &StsDouble) -> Home {
    common::enroll::home(d, &CONFIG.replace("role/toolkit-role", "role/missing-role"))
}

fn seed_path(h: &Home) -> PathBuf {
    h.path().join(".aws/tapcred-mfa.seed")
}

fn journal_path(h: &Home) -> PathBuf {
    h.path()
        .join(".local/share/tapcred/journal/enroll-mfa.json")
}

fn enroll(h: &Home, extra: &[&str]) -> Run {
    let mut args = vec!["enroll", "--profile", "mfa", "--to", "file"];
    args.extend_from_slice(extra);
    Run::from(h.cmd_detached(&args).output().expect("run tapcred"))
}

fn doctor(h: &Home) -> Run {
    Run::from(
        h.cmd_detached(&["doctor", "--profile", "mfa", "--offline"])
            .output()
            .expect("run tapcred"),
    )
}

/// Nothing of the enroll is left: no device in IAM, the AWS files byte-identical, no seed
/// file, no journal, and `doctor` lists no interrupted change.
fn nothing_left(d: &StsDouble, h: &Home, before: &[(PathBuf, Vec<u8>)]) {
    let state = d.iam_state();
    assert!(state.virtual_devices.is_empty(), "{state:?}");
    assert!(
        state.user_devices.values().all(|v| v.is_empty()),
        "{state:?}"
    );
    assert_eq!(common::enroll::aws_files(h), before, "the AWS files");
    assert!(!seed_path(h).exists(), "the seed file is removed");
    assert!(!journal_path(h).exists(), "the journal is closed");
    let doc = doctor(h);
    assert!(!doc.stdout.contains("interrupted change"), "{}", doc.stdout);
}

fn enabled_for_user(d: &StsDouble) -> bool {
    d.iam_state().user_devices[design::USER_NAME]
        .iter()
        .any(|s| s == SERIAL)
}

fn has_line(out: &Run, needle: &str) -> bool {
    out.stderr.contains(needle)
}

#[test]
fn the_harness_names_every_iam_write() {
    assert_eq!(
        IAM_WRITES,
        [
            "CreateVirtualMFADevice",
            "EnableMFADevice",
            "DeactivateMFADevice",
            "DeleteVirtualMFADevice",
            "CreateAccessKey",
            "UpdateAccessKey",
            "DeleteAccessKey"
        ]
    );
}

#[test]
fn create_answer_lost_the_orphan_is_found_and_deleted() {
    for fault in [Fault::ServerError, Fault::BrokenAnswer] {
        let d = common::enroll::new_user_double();
        let h = home(&d);
        let before = common::enroll::aws_files(&h);
        d.lose_answer("CreateVirtualMFADevice", 1, fault.clone());
        let out = enroll(&h, &[]);
        assert_eq!(out.code, 6, "{fault:?}: {}", out.stderr);
        assert!(
            has_line(&out, &format!("undo: deleted virtual MFA device {SERIAL}")),
            "{fault:?}: {}",
            out.stderr
        );
        assert!(!out.stderr.contains("perhaps your phone"), "{}", out.stderr);
        nothing_left(&d, &h, &before);
    }
}

#[test]
fn enable_answer_lost_and_deactivate_unreachable_keeps_the_seed_then_undo_finishes() {
    let d = common::enroll::new_user_double();
    let h = home(&d);
    let before = common::enroll::aws_files(&h);
    d.lose_answer("EnableMFADevice", 1, Fault::BrokenAnswer);
    // Every attempt of the undo's DeactivateMFADevice fails before IAM acts on it.
    d.iam_fail_next("DeactivateMFADevice", SDK_ATTEMPTS as u32, "ServiceFailure");
    let out = enroll(&h, &[]);
    assert_eq!(out.code, 6, "{}", out.stderr);
    assert!(enabled_for_user(&d), "IAM enabled the device");
    assert!(
        seed_path(&h).exists(),
        "the seed of an enabled device is kept: {}",
        out.stderr
    );
    assert!(
        has_line(
            &out,
            &format!(
                "aws iam deactivate-mfa-device --user-name toolkit-user --serial-number {SERIAL} --profile toolkit-user"
            )
        ),
        "{}",
        out.stderr
    );
    assert!(
        has_line(&out, "tapcred enroll --profile mfa --undo"),
        "{}",
        out.stderr
    );
    assert!(journal_path(&h).exists());
    let doc = doctor(&h);
    assert_ne!(doc.code, 0, "{}", doc.stdout);
    assert!(
        doc.stdout.contains("interrupted change: enroll of \"mfa\""),
        "{}",
        doc.stdout
    );
    // IAM answers again: --undo reads its state, deactivates, then removes the rest.
    let out = enroll(&h, &["--undo"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        has_line(&out, &format!("undo: deactivated {SERIAL}")),
        "{}",
        out.stderr
    );
    nothing_left(&d, &h, &before);
}

#[test]
fn state_that_cannot_be_read_keeps_everything_and_says_what_to_run() {
    let d = common::enroll::new_user_double();
    let h = home(&d);
    let before = common::enroll::aws_files(&h);
    d.lose_answer("EnableMFADevice", 1, Fault::ServerError);
    // The first ListMFADevices is enroll's check before it creates anything; every attempt
    // of the undo's read fails.
    d.fault_calls("ListMFADevices", 2, SDK_ATTEMPTS, Fault::ServerError);
    let out = enroll(&h, &[]);
    assert_eq!(out.code, 6, "{}", out.stderr);
    assert!(has_line(&out, "cannot read IAM's state"), "{}", out.stderr);
    assert!(has_line(&out, "nothing was removed"), "{}", out.stderr);
    assert!(
        has_line(
            &out,
            "aws iam list-mfa-devices --user-name toolkit-user --profile toolkit-user"
        ),
        "{}",
        out.stderr
    );
    assert!(enabled_for_user(&d));
    assert!(seed_path(&h).exists(), "the seed is kept");
    assert_eq!(d.calls("DeactivateMFADevice"), 0);
    assert_eq!(d.calls("DeleteVirtualMFADevice"), 0);
    assert!(journal_path(&h).exists());
    let out = enroll(&h, &["--undo"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    nothing_left(&d, &h, &before);
}

#[test]
fn deactivate_answer_lost_during_the_undo_is_read_back_and_the_undo_completes() {
    let d = common::enroll::new_user_double();
    let h = home_failing_proof(&d);
    let before = common::enroll::aws_files(&h);
    d.lose_answer("DeactivateMFADevice", 1, Fault::BrokenAnswer);
    let out = enroll(&h, &[]);
    assert_eq!(out.code, 5, "{}", out.stderr);
    assert!(has_line(&out, "everything was undone"), "{}", out.stderr);
    nothing_left(&d, &h, &before);
}

#[test]
fn delete_answer_lost_during_the_undo_is_read_back_and_the_undo_completes() {
    let d = common::enroll::new_user_double();
    let h = home(&d);
    let before = common::enroll::aws_files(&h);
    d.iam_fail_next("EnableMFADevice", 1, "InvalidAuthenticationCode");
    d.lose_answer("DeleteVirtualMFADevice", 1, Fault::ServerError);
    let out = enroll(&h, &[]);
    assert_eq!(out.code, 5, "{}", out.stderr);
    assert!(has_line(&out, "everything was undone"), "{}", out.stderr);
    assert!(!has_line(&out, "clean up by hand"), "{}", out.stderr);
    nothing_left(&d, &h, &before);
}

/// Run enroll with the test hook stalling it right after the journal recorded `step`,
/// SIGKILL it there, and return what it printed.
fn kill_at(h: &Home, step: &str) -> String {
    common::kill_at_hook(
        h.cmd(&["enroll", "--profile", "mfa", "--to", "file"]),
        &format!("enroll:{step}"),
    )
}

fn killed_at_then_doctor_and_undo(step: &str, proof_fails: bool) {
    let d = common::enroll::new_user_double();
    let h = if proof_fails {
        home_failing_proof(&d)
    } else {
        home(&d)
    };
    let before = common::enroll::aws_files(&h);
    let printed = kill_at(&h, step);
    assert!(journal_path(&h).exists(), "{step}: {printed}");
    // doctor lists it as a problem, with the command that undoes it.
    let doc = doctor(&h);
    assert_ne!(doc.code, 0, "{step}: {}", doc.stdout);
    for needle in [
        "interrupted change: enroll of \"mfa\"",
        &format!("last step \"{step}\""),
        "tapcred enroll --profile mfa --undo",
    ] {
        assert!(
            doc.stdout.contains(needle),
            "{step}: {needle}: {}",
            doc.stdout
        );
    }
    // A plain rerun says what happened and what to run; it creates nothing.
    let creates = d.calls("CreateVirtualMFADevice");
    let out = enroll(&h, &[]);
    assert_eq!(out.code, 2, "{step}: {}", out.stderr);
    assert!(
        out.stderr.contains("an earlier enroll was interrupted") && out.stderr.contains("--undo"),
        "{step}: {}",
        out.stderr
    );
    assert!(!out.stderr.contains("perhaps your phone"), "{}", out.stderr);
    assert_eq!(d.calls("CreateVirtualMFADevice"), creates);
    // --undo reads IAM's state and removes the orphan device and its seed.
    let out = enroll(&h, &["--undo"]);
    assert_eq!(out.code, 0, "{step}: {}", out.stderr);
    assert!(
        out.stdout.contains("the interrupted enroll is undone"),
        "{step}: {}",
        out.stdout
    );
    nothing_left(&d, &h, &before);
    // Then enroll works from scratch.
    if !proof_fails {
        enroll(&h, &[]).ok();
    }
}

#[test]
fn sigkill_after_create_is_found_and_undone() {
    killed_at_then_doctor_and_undo("created", false);
}

#[test]
fn sigkill_after_the_seed_is_stored_is_found_and_undone() {
    killed_at_then_doctor_and_undo("enable", true);
}

#[test]
fn sigkill_after_enable_is_found_and_undone() {
    killed_at_then_doctor_and_undo("enabled", true);
}

#[test]
fn sigkill_after_the_profile_edit_is_found_and_undone() {
    killed_at_then_doctor_and_undo("profile-written", true);
}

#[test]
fn a_panic_after_create_still_runs_the_undo() {
    let d = common::enroll::new_user_double();
    let mut h = home(&d);
    let before = common::enroll::aws_files(&h);
    h.set("TAPCRED_TEST_HOOK", "panic:enroll:created");
    let out = enroll(&h, &[]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(has_line(&out, "internal error"), "{}", out.stderr);
    assert!(
        !has_line(&out, "test hook"),
        "no panic payload: {}",
        out.stderr
    );
    assert!(
        has_line(&out, &format!("undo: deleted virtual MFA device {SERIAL}")),
        "{}",
        out.stderr
    );
    nothing_left(&d, &h, &before);
}

#[test]
fn a_relative_seed_file_is_written_into_the_config_as_an_absolute_path() {
    let d = common::enroll::new_user_double();
    let h = home(&d);
    let dir = h.path().join("seeds");
    std::fs::create_dir(&dir).unwrap();
    let out = Run::from(
        h.cmd_detached(&[
            "enroll",
            "--profile",
            "mfa",
            "--to",
            "file",
            "--seed-file",
            "myseed.txt",
        ])
        .current_dir(&dir)
        .output()
        .unwrap(),
    );
    out.ok();
    let config = std::fs::read_to_string(h.config_path()).unwrap();
    let want = format!(
        "tapcred_totp_secret_file = {}",
        dir.join("myseed.txt").display()
    );
    assert!(config.lines().any(|l| l == want), "{config}");
    assert!(Path::new(&dir.join("myseed.txt")).exists());
    // From another folder, the profile still finds its seed (a fresh session: no cache).
    let out = Run::from(
        h.cmd_detached(&["code", "--profile", "mfa"])
            .current_dir(h.path())
            .output()
            .unwrap(),
    );
    out.ok();
}

/// Killed at `step`, then `enroll --resume` finishes from IAM's real state: the profile is
/// written and proven, the journal closed, and the next call uses the cached session.
fn killed_at_then_resume(step: &str) {
    let d = common::enroll::new_user_double();
    let h = home(&d);
    kill_at(&h, step);
    let out = enroll(&h, &["--resume"]);
    assert_eq!(out.code, 0, "{step}: {}", out.stderr);
    assert!(
        out.stdout.contains(SERIAL) && out.stdout.contains("assumed-role/toolkit-role"),
        "{step}: {}",
        out.stdout
    );
    assert!(enabled_for_user(&d));
    assert!(!journal_path(&h).exists());
    let config = std::fs::read_to_string(h.config_path()).unwrap();
    assert!(
        config.contains(&format!("mfa_serial = {SERIAL}")),
        "{config}"
    );
    let doc = doctor(&h);
    assert!(!doc.stdout.contains("interrupted change"), "{}", doc.stdout);
    h.run(&["credential-process", "--profile", "mfa"]).ok();
    assert_eq!(d.stats().ok("AssumeRole"), 1, "served from the cache");
}

#[test]
fn sigkill_after_the_seed_is_stored_then_resume_enables_and_finishes() {
    killed_at_then_resume("enable");
}

#[test]
fn sigkill_after_enable_then_resume_finishes() {
    killed_at_then_resume("enabled");
}

#[test]
fn resume_with_nothing_to_resume_is_a_usage_error() {
    let d = common::enroll::new_user_double();
    let h = home(&d);
    let out = enroll(&h, &["--resume"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("no interrupted enroll"),
        "{}",
        out.stderr
    );
    assert_eq!(d.calls("CreateVirtualMFADevice"), 0);
}
