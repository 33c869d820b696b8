//! The same `[profile work] credential_process = tapcred credential-process --profile mfa`
//! consumed by the SDKs' own credential providers:
//!
//! - the Rust SDK: `aws-config`'s default chain (`credentials-process` feature) loading
//!   the temp profile files, `aws_sdk_sts::Client::get_caller_identity`;
//! - botocore through boto3 in `$TAPCRED_VENV/bin/python` with `AWS_CONFIG_FILE`.
//!
//! Each runs twice: with a software seed (a wrapper script in the temp HOME exports it and
//! execs tapcred; always runs) and with `tapcred_token = oath` on a virtual YubiKey
//! through the real pcscd (skips loudly without root/pcscd/vpcd unless CI=true).
//!
//! Every client runs in a child process whose environment is exactly the temp HOME's
//! (`ClientHome::env`): no real AWS variable from the outer environment can reach the
//! SDK's default chain or tapcred. The Rust SDK child is this test binary re-run on the
//! ignored test [`sdk_child_get_caller_identity`].
#![cfg(unix)] // runs Linux test stacks (or Unix-only APIs); the Windows build is checked by clippy and Wine

#[path = "common/clients.rs"]
mod clients;
mod common;

use std::time::{Duration, Instant};

use clients::{AWS_OATH_LABEL, ClientHome, Source};
use tapcred_testkit::pcsc_stack::{CardHandle, PcscStack};
use tapcred_testkit::sts_double::{StsDouble, design};

const CHILD_TEST: &str = "sdk_child_get_caller_identity";
const CHILD_ENDPOINT_VAR: &str = "TAPCRED_CLIENTS_SDK_ENDPOINT";
const RESULT_PREFIX: &str = "SDK_CALLER_ARN=";

/// pcscd with a non-touch card holding the seed under AWS's own label; `None` = skipped.
fn oath_stack(test: &str, serial: u32) -> Option<(PcscStack, CardHandle)> {
    let mut stack = PcscStack::start_or_skip(test)?;
    let card = stack
        .insert(
            0,
            clients::card(serial, AWS_OATH_LABEL, false, Duration::from_secs(5)),
        )
        .expect("insert the virtual YubiKey");
    Some((stack, card))
}

/// What every client run must show: the role's ARN (so the credentials were tapcred's
/// assumed-role session, accepted by the double's SigV4 check) and exactly one valid code.
fn check_double(d: &StsDouble, arn: &str) {
    assert!(arn.starts_with(clients::TOOLKIT_ROLE_SESSION), "{arn}");
    clients::one_valid_code(d);
    let stats = d.stats();
    assert_eq!(stats.ok("AssumeRole"), 1);
    assert_eq!(stats.calls("AssumeRole"), 1);
    assert_eq!(stats.ok("GetCallerIdentity"), 1);
}

// ---- Rust SDK (aws-config) ----

/// Run the child test in a clean environment and return the caller ARN it printed.
fn rust_sdk_caller_arn(h: &ClientHome) -> String {
    let exe = std::env::current_exe().expect("test binary path");
    let t = Instant::now();
    let out = h
        .command(&exe)
        .args([CHILD_TEST, "--exact", "--ignored", "--nocapture"])
        .args(["--test-threads", "1"])
        .env(CHILD_ENDPOINT_VAR, &h.endpoint)
        .output()
        .expect("re-run the test binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "Rust SDK child failed\nstdout: {stdout}\nstderr: {stderr}"
    );
    assert!(
        stdout.contains("1 passed"),
        "the child test did not run: {stdout}"
    );
    eprintln!(
        "Rust SDK child (config load + credential_process + call): {:?}",
        t.elapsed()
    );
    stdout
        .lines()
        .find_map(|l| l.split_once(RESULT_PREFIX).map(|(_, arn)| arn))
        .unwrap_or_else(|| panic!("no {RESULT_PREFIX} line: {stdout}"))
        .trim()
        .to_owned()
}

/// The consumer: run only as a child of the `rust_sdk_*` tests, in their clean
/// environment (HOME = the temp HOME with `[profile work]`).
#[test]
#[ignore = "the Rust SDK consumer; run by the rust_sdk_* tests in a clean environment"]
fn sdk_child_get_caller_identity() {
    use aws_config::{BehaviorVersion, Region};
    use aws_runtime::env_config::file::{EnvConfigFileKind, EnvConfigFiles};

    let endpoint = std::env::var(CHILD_ENDPOINT_VAR)
        .unwrap_or_else(|_| panic!("{CHILD_ENDPOINT_VAR} not set: run by the rust_sdk_* tests"));
    let home = std::path::PathBuf::from(std::env::var("HOME").expect("HOME"));
    for leaked in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
    ] {
        assert!(
            std::env::var_os(leaked).is_none(),
            "{leaked} leaked into the child"
        );
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let arn = rt.block_on(async {
        let http = tapcred::sts::https_client();
        let files = EnvConfigFiles::builder()
            .with_file(EnvConfigFileKind::Config, home.join(".aws/config"))
            .with_file(
                EnvConfigFileKind::Credentials,
                home.join(".aws/credentials"),
            )
            .build();
        let config = aws_config::defaults(BehaviorVersion::latest())
            .profile_files(files)
            .profile_name("work")
            .region(Region::new("us-east-1"))
            .endpoint_url(&endpoint)
            .http_client(http)
            .load()
            .await;
        let sts = aws_sdk_sts::Client::new(&config);
        let id = sts.get_caller_identity().send().await.unwrap_or_else(|e| {
            panic!(
                "GetCallerIdentity: {}",
                aws_smithy_types::error::display::DisplayErrorContext(&e)
            )
        });
        id.arn().expect("Arn").to_owned()
    });
    println!("{RESULT_PREFIX}{arn}");
}

#[test]
fn rust_sdk_credential_process_software_seed() {
    let d = StsDouble::start_design().expect("start the STS double");
    let h = ClientHome::new(&d, Source::Software);
    let arn = rust_sdk_caller_arn(&h);
    check_double(&d, &arn);
}

#[test]
fn rust_sdk_credential_process_oath_through_pcscd() {
    let Some((_stack, card)) =
        oath_stack("rust_sdk_credential_process_oath_through_pcscd", 5_150_011)
    else {
        return;
    };
    let d = StsDouble::start_design().expect("start the STS double");
    let h = ClientHome::new(&d, Source::Oath);
    card.vyk().clear_history();
    let arn = rust_sdk_caller_arn(&h);
    check_double(&d, &arn);
    assert!(
        !card.vyk().history().is_empty(),
        "the code came from the card"
    );
}

// ---- botocore / boto3 ----

const BOTO_CLIENT: &str = r#"import json, sys
import boto3, botocore
session = boto3.Session(profile_name="work")
sts = session.client("sts", region_name="us-east-1", endpoint_url=sys.argv[1])
ident = sts.get_caller_identity()
creds = session.get_credentials()
print(json.dumps({"Arn": ident["Arn"], "method": creds.method, "botocore": botocore.__version__}))
"#;

/// `None` = skipped (no venv).
fn boto_caller(test: &str, h: &ClientHome) -> Option<serde_json::Value> {
    let python = clients::venv_python();
    if !clients::require(
        test,
        &format!(
            "{} with boto3/botocore (missing or not executable by this user; set TAPCRED_VENV)",
            python.display()
        ),
        python.is_file(),
    ) {
        return None;
    }
    let script = h.file("boto_client.py");
    std::fs::write(&script, BOTO_CLIENT).unwrap();
    let t = Instant::now();
    let out = h
        .command(&python)
        .arg(&script)
        .arg(&h.endpoint)
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "boto3 client failed\nstdout: {stdout}\nstderr: {stderr}"
    );
    eprintln!(
        "boto3 client (credential_process + call): {:?}",
        t.elapsed()
    );
    let j: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("boto3 stdout is not one JSON line ({e}): {stdout:?}"));
    assert_eq!(
        j["method"], "custom-process",
        "botocore's credential_process provider supplied the credentials"
    );
    Some(j)
}

#[test]
fn botocore_credential_process_software_seed() {
    let test = "botocore_credential_process_software_seed";
    let d = StsDouble::start_design().expect("start the STS double");
    let h = ClientHome::new(&d, Source::Software);
    let Some(j) = boto_caller(test, &h) else {
        return;
    };
    check_double(&d, j["Arn"].as_str().expect("Arn"));
}

#[test]
fn botocore_credential_process_oath_through_pcscd() {
    let test = "botocore_credential_process_oath_through_pcscd";
    if !clients::require(
        test,
        "the Python venv (TAPCRED_VENV)",
        clients::venv_python().is_file(),
    ) {
        return;
    }
    let Some((_stack, card)) = oath_stack(test, 5_150_012) else {
        return;
    };
    let d = StsDouble::start_design().expect("start the STS double");
    let h = ClientHome::new(&d, Source::Oath);
    card.vyk().clear_history();
    let j = boto_caller(test, &h).expect("venv checked above");
    check_double(&d, j["Arn"].as_str().expect("Arn"));
    assert!(
        !card.vyk().history().is_empty(),
        "the code came from the card"
    );
    assert_eq!(d.token_code_events()[0].serial, design::MFA_SERIAL);
}
