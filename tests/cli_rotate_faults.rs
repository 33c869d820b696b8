//! `tapcred rotate` when an IAM write commits and its answer is lost, when IAM fails (5xx)
//! or throttles, and when the process is SIGKILLed at each journalled step. The real binary
//! against the strict double; what is checked is the end state: exactly one working key for
//! the user, the same key in the credentials file, no orphan key in IAM, no journal left.

#![cfg(unix)] // runs Linux test stacks (setsid, kill); the Windows build is checked by clippy and Wine

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use common::Home;
use common::rotate::{self as rt, CREDENTIALS};
use tapcred_testkit::sts_double::{Fault, StsDouble, design};

/// The IAM writes rotate makes, each of which the fault cases cut after it commits.
const ROTATE_WRITES: &[&str] = &["CreateAccessKey", "UpdateAccessKey", "DeleteAccessKey"];

/// One key for the user, active (the double signs with it: `cli_rotate` proves a rotated key
/// end to end), and the credentials file holds it (byte for byte the file
/// as it was, but the two key values); no journal; doctor lists no interrupted change.
fn one_working_key(d: &StsDouble, h: &Home) -> String {
    let keys = rt::keys(d);
    assert_eq!(keys.len(), 1, "no orphan, no leftover: {keys:?}");
    assert!(keys[0].active, "{keys:?}");
    let id = keys[0].access_key_id.clone();
    let text = std::fs::read_to_string(h.credentials_path()).unwrap();
    let secret = rt::stored_secret(h);
    assert_eq!(
        text.replace(&id, design::ACCESS_KEY_ID)
            .replace(&secret, design::SECRET_ACCESS_KEY),
        CREDENTIALS,
        "the file holds the one key"
    );
    assert!(!rt::journal_path(h).exists(), "the journal is closed");
    let doc = h.run(&["doctor", "--profile", "mfa", "--offline"]);
    assert!(!doc.stdout.contains("interrupted change"), "{}", doc.stdout);
    id
}

#[test]
fn the_fault_cases_cover_every_write_rotate_makes() {
    for w in ROTATE_WRITES {
        assert!(
            tapcred_testkit::sts_double::IAM_WRITES.contains(w),
            "{w} is in the double's list of IAM writes"
        );
    }
}

#[test]
fn create_answer_lost_once_the_orphan_is_deleted_and_the_rotation_finishes() {
    let d = rt::double();
    let h = rt::home(&d);
    d.fault_calls("CreateAccessKey", 1, 1, Fault::BrokenAnswer);
    let out = rt::rotate(&h, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("undo: deleted access key"),
        "{}",
        out.stderr
    );
    let id = one_working_key(&d, &h);
    assert_ne!(id, design::ACCESS_KEY_ID);
    assert_eq!(d.stats().calls("CreateAccessKey"), 2);
}

#[test]
fn create_answer_lost_every_time_leaves_the_old_key_and_no_orphan() {
    for fault in [Fault::ServerError, Fault::BrokenAnswer] {
        let d = rt::double();
        let h = rt::home(&d);
        d.lose_answer("CreateAccessKey", 1, fault.clone());
        let out = rt::rotate(&h, &[]);
        assert_eq!(out.code, 6, "{fault:?}: {}", out.stderr);
        let id = one_working_key(&d, &h);
        assert_eq!(id, design::ACCESS_KEY_ID, "{fault:?}");
    }
}

#[test]
fn update_and_delete_answers_lost_are_settled_by_reading_iam() {
    for action in ["UpdateAccessKey", "DeleteAccessKey"] {
        let d = rt::double();
        let h = rt::home(&d);
        d.lose_answer(action, 1, Fault::BrokenAnswer);
        let out = rt::rotate(&h, &[]);
        assert_eq!(out.code, 0, "{action}: {}", out.stderr);
        let id = one_working_key(&d, &h);
        assert_ne!(id, design::ACCESS_KEY_ID, "{action}");
    }
}

#[test]
fn iam_5xx_and_throttling_before_the_work() {
    // CreateAccessKey is made once per call (never retried blindly): a 5xx is a lost
    // answer, settled by the list.
    let d = rt::double();
    let h = rt::home(&d);
    d.iam_fail_next("CreateAccessKey", 1, "ServiceFailure");
    d.iam_fail_next("UpdateAccessKey", 1, "Throttling");
    d.iam_fail_next("DeleteAccessKey", 2, "ServiceFailure");
    let out = rt::rotate(&h, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let id = one_working_key(&d, &h);
    assert_ne!(id, design::ACCESS_KEY_ID);
}

#[test]
fn a_panic_after_create_still_deletes_the_new_key() {
    let d = rt::double();
    let mut h = rt::home(&d);
    h.set("TAPCRED_TEST_HOOK", "panic:rotate:created");
    let out = rt::rotate(&h, &[]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("internal error"), "{}", out.stderr);
    assert!(
        !out.stderr.contains("test hook"),
        "no panic payload: {}",
        out.stderr
    );
    assert!(
        out.stderr.contains("undo: deleted access key"),
        "{}",
        out.stderr
    );
    let id = one_working_key(&d, &h);
    assert_eq!(id, design::ACCESS_KEY_ID);
    assert_eq!(d.stats().calls("CreateAccessKey"), 1);
}

#[test]
fn deactivation_refused_keeps_the_new_key_and_resume_finishes() {
    let d = rt::double();
    let h = rt::home(&d);
    d.iam_fail_next("UpdateAccessKey", 1, "AccessDenied");
    let out = rt::rotate(&h, &[]);
    assert_eq!(out.code, 5, "{}", out.stderr);
    assert!(
        out.stderr.contains("the new key is in place and works"),
        "{}",
        out.stderr
    );
    assert!(rt::journal_path(&h).exists());
    let doc = h.run(&["doctor", "--profile", "mfa", "--offline"]);
    assert!(
        doc.stdout.contains("interrupted change: rotate"),
        "{}",
        doc.stdout
    );
    assert!(
        doc.stdout
            .contains("tapcred rotate --profile toolkit-user --resume"),
        "{}",
        doc.stdout
    );
    let out = rt::rotate(&h, &["--resume"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let id = one_working_key(&d, &h);
    assert_ne!(id, design::ACCESS_KEY_ID);
    rt::each_window_once(&d);
}

/// Run rotate with the test hook stalling it right after the journal recorded `step`,
/// SIGKILL it there, and return what it printed.
fn kill_at(h: &Home, step: &str) -> String {
    common::kill_at_hook(
        h.cmd(&["rotate", "--profile", "mfa", "--delete-inactive"]),
        &format!("rotate:{step}"),
    )
}

/// Killed at `step`: the next rotate stops and names `--resume`, doctor lists it, and
/// `--resume` ends with one working key: the new one (`finished`) or the old one (undone).
fn killed_at_then_resume(step: &str, finished: bool) {
    let d = rt::double();
    let h = rt::home(&d);
    kill_at(&h, step);
    assert!(rt::journal_path(&h).exists(), "{step}: the journal stays");
    let again = rt::rotate(&h, &[]);
    rt::fails(
        &again,
        2,
        &["was interrupted", &format!("last step: {step}"), "--resume"],
    );
    let doc = h.run(&["doctor", "--profile", "mfa", "--offline"]);
    assert!(
        doc.stdout.contains("interrupted change: rotate"),
        "{step}: {}",
        doc.stdout
    );
    let out = rt::rotate(&h, &["--resume"]);
    assert_eq!(out.code, 0, "{step}: {}", out.stderr);
    let id = one_working_key(&d, &h);
    if finished {
        assert_ne!(id, design::ACCESS_KEY_ID, "{step}: finished");
        assert!(out.stdout.contains("is finished"), "{step}: {}", out.stdout);
    } else {
        assert_eq!(id, design::ACCESS_KEY_ID, "{step}: undone");
        assert!(out.stdout.contains("is undone"), "{step}: {}", out.stdout);
    }
    rt::each_window_once(&d);
}

#[test]
fn sigkill_while_deleting_the_inactive_key_then_resume_undoes() {
    let d = rt::double();
    let h = rt::home(&d);
    let inactive = rt::extra_key(&d, false);
    let before = rt::aws_files(&h);
    kill_at(&h, "delete-inactive");
    let out = rt::rotate(&h, &["--resume"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("is undone"), "{}", out.stdout);
    // Nothing was made: the old key in place and active, no new key; the inactive key the
    // user agreed to delete is gone only if IAM deleted it before the kill.
    let keys = rt::keys(&d);
    assert!(
        keys.iter()
            .all(|k| k.access_key_id == design::ACCESS_KEY_ID && k.active
                || k.access_key_id == inactive && !k.active),
        "{keys:?}"
    );
    assert!(
        keys.iter()
            .any(|k| k.access_key_id == design::ACCESS_KEY_ID)
    );
    assert_eq!(rt::aws_files(&h), before);
    assert!(!rt::journal_path(&h).exists());
}

#[test]
fn sigkill_before_create_then_resume_undoes() {
    killed_at_then_resume("create", false);
}

#[test]
fn sigkill_after_create_then_resume_deletes_the_orphan() {
    killed_at_then_resume("created", false);
}

#[test]
fn sigkill_before_the_store_then_resume_deletes_the_new_key() {
    killed_at_then_resume("store", false);
}

#[test]
fn sigkill_after_the_store_then_resume_finishes() {
    killed_at_then_resume("stored", true);
}

#[test]
fn sigkill_before_deactivation_then_resume_finishes() {
    killed_at_then_resume("deactivate", true);
}

#[test]
fn sigkill_before_deletion_then_resume_finishes() {
    killed_at_then_resume("delete", true);
}

/// Ctrl-C while rotate waits for the new key to work: the new key is deleted, the old one
/// stays in place, exit 130.
#[test]
fn ctrl_c_while_waiting_for_the_new_key_undoes_and_exits_130() {
    let d = rt::double();
    d.set_key_propagation(1000, 0);
    let h = rt::home(&d);
    let before = rt::aws_files(&h);
    let mut child = h
        .cmd(&["rotate", "--profile", "mfa"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line.clone());
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    loop {
        match rx.recv_timeout(Duration::from_secs(150)) {
            Ok(line) if line.contains("waiting for IAM") => break,
            Ok(_) => {}
            Err(e) => {
                let _ = child.kill();
                panic!("rotate never waited ({e}): {}", reader.join().unwrap());
            }
        }
    }
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let code = child.wait().unwrap().code();
    let stderr = reader.join().unwrap();
    assert_eq!(code, Some(130), "{stderr}");
    assert!(stderr.contains("rotate interrupted; undoing"), "{stderr}");
    let keys = rt::keys(&d);
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(keys[0].access_key_id, design::ACCESS_KEY_ID);
    assert_eq!(rt::aws_files(&h), before);
    assert!(!rt::journal_path(&h).exists());
}
