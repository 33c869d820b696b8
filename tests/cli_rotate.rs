//! `tapcred rotate`: the real binary against the strict double, whose IAM lets the user manage
//! its own access keys only from an MFA session (the self-management policy). Checked: the
//! double's IAM keys, its log of TOTP windows, the credentials file byte for byte (but the two
//! key lines), the journal, and that the new key works and the old one is refused.
//! Fault cases (lost answers, SIGKILL at each step) are in `cli_rotate_faults.rs`.

#![cfg(unix)] // runs Linux test stacks (setsid); the Windows build is checked by clippy and Wine

mod common;

use common::rotate::{self as rt, CREDENTIALS};
use tapcred_testkit::sts_double::design;

#[test]
fn rotates_the_credentials_file_key_with_one_code() {
    let d = rt::double();
    let h = rt::home(&d);
    let out = rt::rotate(&h, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let keys = rt::keys(&d);
    assert_eq!(keys.len(), 1, "{keys:?}");
    let new = &keys[0];
    assert_ne!(new.access_key_id, design::ACCESS_KEY_ID);
    assert!(new.active);
    assert!(
        out.stdout.contains(&format!(
            "access key {} replaced by {}",
            design::ACCESS_KEY_ID,
            new.access_key_id
        )),
        "{}",
        out.stdout
    );
    // Only the two key values changed; every other byte kept.
    let text = std::fs::read_to_string(h.credentials_path()).unwrap();
    let secret = rt::stored_secret(&h);
    assert_ne!(secret, design::SECRET_ACCESS_KEY);
    assert_eq!(
        text.replace(&new.access_key_id, design::ACCESS_KEY_ID)
            .replace(&secret, design::SECRET_ACCESS_KEY),
        CREDENTIALS
    );
    // One MFA call, one code; no window ever sent twice.
    let stats = d.stats();
    assert_eq!(stats.calls("GetSessionToken"), 1);
    rt::each_window_once(&d);
    assert!(!rt::journal_path(&h).exists());
    // No copy of the old secret anywhere under HOME (no backup of the credentials file).
    for (p, bytes) in h.snapshot() {
        assert!(
            !bytes
                .windows(design::SECRET_ACCESS_KEY.len())
                .any(|w| w == design::SECRET_ACCESS_KEY.as_bytes()),
            "{} holds the old secret",
            p.display()
        );
    }
    // The new key's secret never went to stderr or stdout.
    assert!(!out.stderr.contains(&secret) && !out.stdout.contains(&secret));
}

#[test]
fn after_rotation_the_session_moves_and_the_new_key_gets_new_sessions() {
    let d = rt::double();
    let h = rt::home(&d);
    rt::rotate(&h, &[]).ok();
    // One cached session: the MFA session, moved under the new key with its own expiry.
    let sessions = h.run(&["sessions", "--json"]).json();
    let sessions = sessions.as_array().unwrap();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0]["kind"], "GetSessionToken", "{sessions:?}");
    let issued = &d.stats().issued[0];
    assert_eq!(
        sessions[0]["expiration"]
            .as_str()
            .unwrap()
            .trim_end_matches("Z"),
        issued
            .expiration
            .trim_end_matches("Z")
            .trim_end_matches(".000"),
        "the session keeps its own expiry"
    );
    // The MFA session rotate used is served under the new key: no code for the role.
    let run = h.run(&["credential-process", "--profile", "mfa"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(d.stats().calls("GetSessionToken"), 1, "no second MFA call");
    // The new key makes its own MFA session (a fresh window), and the old key is refused.
    let run = h.run(&[
        "credential-process",
        "--profile",
        "toolkit-user",
        "--no-cache",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(d.stats().ok("GetSessionToken"), 2);
    rt::each_window_once(&d);
    h.write_credentials(CREDENTIALS);
    let run = h.run(&[
        "credential-process",
        "--profile",
        "toolkit-user",
        "--no-cache",
    ]);
    assert_eq!(run.code, 5, "the deleted key is refused: {}", run.stderr);
    assert!(
        run.stderr.contains("does not know the access key"),
        "{}",
        run.stderr
    );
}

#[test]
fn keep_old_stops_after_deactivation() {
    let d = rt::double();
    let h = rt::home(&d);
    let out = rt::rotate(&h, &["--keep-old"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let keys = rt::keys(&d);
    assert_eq!(keys.len(), 2, "{keys:?}");
    let old = keys
        .iter()
        .find(|k| k.access_key_id == design::ACCESS_KEY_ID)
        .expect("old key kept");
    assert!(!old.active, "deactivated");
    assert!(
        out.stdout.contains("deactivated (kept: --keep-old)"),
        "{}",
        out.stdout
    );
}

#[test]
fn two_active_keys_stop_with_the_fix_and_change_nothing() {
    let d = rt::double();
    let h = rt::home(&d);
    let other = rt::extra_key(&d, true);
    let before = h.snapshot();
    let out = rt::rotate(&h, &[]);
    rt::fails(
        &out,
        5,
        &[
            "two active access keys",
            &other,
            &format!("aws iam delete-access-key --user-name toolkit-user --access-key-id {other}"),
        ],
    );
    assert_eq!(rt::keys(&d).len(), 2);
    assert_eq!(rt::aws_files(&h), rt::aws_files_of(&before, &h));
    assert!(!rt::journal_path(&h).exists());
}

#[test]
fn an_inactive_key_is_deleted_only_when_asked() {
    let d = rt::double();
    let h = rt::home(&d);
    let other = rt::extra_key(&d, false);
    let out = rt::rotate(&h, &[]);
    rt::fails(
        &out,
        2,
        &["inactive access key", &other, "--delete-inactive"],
    );
    assert!(
        rt::keys(&d).iter().any(|k| k.access_key_id == other),
        "never deleted silently"
    );
    let out = rt::rotate(&h, &["--delete-inactive"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let keys = rt::keys(&d);
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(keys[0].access_key_id != other && keys[0].access_key_id != design::ACCESS_KEY_ID);
}

#[test]
fn waits_through_the_propagation_delay() {
    let d = rt::double();
    d.set_key_propagation(3, 0);
    let h = rt::home(&d);
    let out = rt::rotate(&h, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("waiting for IAM"), "{}", out.stderr);
    assert!(d.stats().errors_with_code("InvalidClientTokenId") >= 3);
    assert_eq!(rt::keys(&d).len(), 1);
}

#[test]
fn a_new_key_that_never_works_is_deleted_and_the_old_one_kept() {
    let d = rt::double();
    d.set_key_propagation(1000, 0);
    let mut h = rt::home(&d);
    h.set("TAPCRED_ROTATE_PROOF_SECONDS", "2");
    let before = rt::aws_files(&h);
    let out = rt::rotate(&h, &[]);
    assert_eq!(out.code, 5, "{}", out.stderr);
    assert!(
        out.stderr.contains("did not work within 2 s"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("undo: deleted access key"),
        "{}",
        out.stderr
    );
    let keys = rt::keys(&d);
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(keys[0].access_key_id, design::ACCESS_KEY_ID);
    assert!(keys[0].active);
    assert_eq!(rt::aws_files(&h), before, "the credentials file untouched");
    assert!(!rt::journal_path(&h).exists());
}

#[test]
fn without_mfa_serial_it_stops_before_any_call() {
    let d = rt::double();
    let h = rt::home(&d);
    h.write_config("[profile toolkit-user]\nregion = us-east-1\n");
    let out = h.run(&["rotate", "--profile", "toolkit-user"]);
    out.fails_with(3, &["no mfa_serial", "aws:MultiFactorAuthPresent"]);
    assert_eq!(d.stats().requests, 0);
}

#[test]
fn doctor_shows_the_key_age_and_warns_past_90_days() {
    let d = rt::double();
    let h = rt::home(&d);
    let age_check = |h: &common::Home| {
        let run = h.run(&["doctor", "--profile", "toolkit-user", "--json"]);
        let checks = run.json()["checks"].as_array().unwrap().clone();
        checks
            .iter()
            .find(|c| c["area"] == "keys")
            .unwrap_or_else(|| panic!("{checks:?}"))
            .clone()
    };
    // The policy allows ListAccessKeys only with MFA, and doctor never asks for a code.
    let age = age_check(&h);
    assert_eq!(age["status"], "note", "{age}");
    assert!(
        age["message"].as_str().unwrap().contains("is not known"),
        "{age}"
    );
    assert_eq!(d.stats().calls("GetSessionToken"), 0);
    // With a cached MFA session, doctor asks IAM with it.
    h.run(&["credential-process", "--profile", "toolkit-user"])
        .ok();
    let age = age_check(&h);
    assert_eq!(age["status"], "ok", "{age}");
    assert!(
        age["message"].as_str().unwrap().contains("is 0 days old"),
        "{age}"
    );
    assert!(d.set_key_created(design::ACCESS_KEY_ID, d.now() - 100 * 86_400));
    let age = age_check(&h);
    assert_eq!(age["status"], "note", "{age}");
    assert!(
        age["message"].as_str().unwrap().contains("100 days old"),
        "{age}"
    );
    assert!(
        age["fix"]
            .as_str()
            .unwrap()
            .contains("tapcred rotate --profile toolkit-user"),
        "{age}"
    );
}

/// botocore parses the double's access-key answers (its own models of IAM's shapes): the
/// fields rotate reads, the 2-key limit's error code, and the double's refusal of a deleted
/// key.
#[test]
fn botocore_reads_the_doubles_access_key_actions() {
    const TEST: &str = "cli_rotate::botocore_reads_the_doubles_access_key_actions";
    let python = tapcred_testkit::moto::venv().join("bin/python");
    if !tapcred_testkit::ci::require(TEST, "the venv's python with boto3", python.is_file()) {
        return;
    }
    let d = tapcred_testkit::sts_double::StsDouble::start(
        tapcred_testkit::sts_double::Config::design(),
    )
    .unwrap();
    const SCRIPT: &str = r#"
import json, os, boto3, botocore
def client(service, key, secret):
    return boto3.client(service, endpoint_url=os.environ["ENDPOINT"], region_name="us-east-1",
        aws_access_key_id=key, aws_secret_access_key=secret)
iam = client("iam", os.environ["KEY"], os.environ["SECRET"])
out = {}
out["before"] = iam.list_access_keys()["AccessKeyMetadata"]
new = iam.create_access_key(UserName="toolkit-user")["AccessKey"]
out["created"] = {k: new[k] for k in ("UserName", "AccessKeyId", "Status", "CreateDate")}
out["secret_len"] = len(new["SecretAccessKey"])
try:
    iam.create_access_key()
    out["third"] = "created"
except botocore.exceptions.ClientError as e:
    out["third"] = e.response["Error"]["Code"]
iam.update_access_key(AccessKeyId=new["AccessKeyId"], Status="Inactive", UserName="toolkit-user")
out["after_update"] = iam.list_access_keys(UserName="toolkit-user")["AccessKeyMetadata"]
try:
    client("sts", new["AccessKeyId"], new["SecretAccessKey"]).get_caller_identity()
    out["inactive_signs"] = True
except botocore.exceptions.ClientError as e:
    out["inactive_signs"] = e.response["Error"]["Code"]
iam.update_access_key(AccessKeyId=new["AccessKeyId"], Status="Active")
out["active_arn"] = client("sts", new["AccessKeyId"], new["SecretAccessKey"]).get_caller_identity()["Arn"]
iam.delete_access_key(AccessKeyId=new["AccessKeyId"])
try:
    iam.delete_access_key(AccessKeyId=new["AccessKeyId"])
    out["deleted_again"] = "ok"
except botocore.exceptions.ClientError as e:
    out["deleted_again"] = e.response["Error"]["Code"]
out["after_delete"] = iam.list_access_keys()["AccessKeyMetadata"]
print(json.dumps(out, default=str))
"#;
    let output = std::process::Command::new(&python)
        .args(["-c", SCRIPT])
        .env_clear()
        .env("ENDPOINT", d.endpoint())
        .env("KEY", design::ACCESS_KEY_ID)
        .env("SECRET", design::SECRET_ACCESS_KEY)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["before"][0]["AccessKeyId"], design::ACCESS_KEY_ID, "{v}");
    assert_eq!(v["before"][0]["Status"], "Active", "{v}");
    assert_eq!(v["created"]["UserName"], "toolkit-user", "{v}");
    assert_eq!(v["created"]["Status"], "Active", "{v}");
    assert!(
        v["created"]["CreateDate"]
            .as_str()
            .unwrap()
            .starts_with("20"),
        "{v}"
    );
    assert_eq!(v["secret_len"], 40, "{v}");
    assert_eq!(v["third"], "LimitExceeded", "{v}");
    let new_id = v["created"]["AccessKeyId"].as_str().unwrap();
    let updated = v["after_update"].as_array().unwrap();
    assert!(
        updated
            .iter()
            .any(|k| k["AccessKeyId"] == new_id && k["Status"] == "Inactive"),
        "{v}"
    );
    assert_eq!(v["inactive_signs"], "InvalidClientTokenId", "{v}");
    assert_eq!(v["active_arn"], design::USER_ARN, "{v}");
    assert_eq!(v["deleted_again"], "NoSuchEntity", "{v}");
    assert_eq!(v["after_delete"].as_array().unwrap().len(), 1, "{v}");
}

/// At the most verbose level (the AWS SDK's own tracing included) neither the old nor the new
/// secret key, nor the code, reaches the logs.
#[test]
fn trace_logs_of_a_rotation_hold_no_secret() {
    let d = rt::double();
    let mut h = rt::home(&d);
    h.set("RUST_LOG", "trace");
    let out = rt::rotate(&h, &["-vv"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("CreateAccessKey"),
        "trace logs were written"
    );
    let new_secret = rt::stored_secret(&h);
    for (what, secret) in [
        ("the old secret", design::SECRET_ACCESS_KEY.to_owned()),
        ("the new secret", new_secret),
    ] {
        assert!(!out.stderr.contains(&secret), "{what} in the logs");
        assert!(!out.stdout.contains(&secret), "{what} on stdout");
    }
    // The code as a word of its own (timestamps' microseconds are digits too).
    let words: Vec<&str> = out.stderr.split(|c: char| !c.is_ascii_digit()).collect();
    for e in d.token_code_events() {
        assert!(!words.contains(&e.code.as_str()), "the code in the logs");
    }
}
