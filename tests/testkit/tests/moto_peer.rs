//! The moto peer harness: start moto_server from the venv, make an MFA AssumeRole with the
//! real SDK, and read back from moto's recorder exactly what was sent.
//! Skips loudly without the venv unless CI=true.

mod common;

use aws_sdk_sts::Client;
use tapcred_testkit::moto::MotoServer;

use common::rt;

fn client(endpoint: &str, akid: &str, secret: &str, token: Option<&str>) -> Client {
    common::sts_client(endpoint, akid, secret, token, false)
}

const ROLE: &str = "arn:aws:iam::123456789012:role/toolkit-role";
const SERIAL: &str = "arn:aws:iam::123456789012:mfa/toolkit-user";

#[test]
fn moto_records_the_mfa_fields_the_sdk_sent() {
    let Some(moto) = MotoServer::start_or_skip("moto_records_the_mfa_fields_the_sdk_sent") else {
        return;
    };
    let rt = rt();
    let c = client(
        &moto.endpoint(),
        "AKIAIOSFODNN7EXAMPLE",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        None,
    );
    let out = rt
        .block_on(
            c.assume_role()
                .role_arn(ROLE)
                .role_session_name("moto-peer")
                .serial_number(SERIAL)
                .token_code("047091")
                .duration_seconds(1800)
                .send(),
        )
        .expect("moto answers AssumeRole (it validates no MFA)");
    let creds = out.credentials().unwrap();
    assert!(creds.access_key_id().starts_with("ASIA"));

    // moto-issued role credentials identify as the assumed role.
    let rc = client(
        &moto.endpoint(),
        creds.access_key_id(),
        creds.secret_access_key(),
        Some(creds.session_token()),
    );
    let me = rt.block_on(rc.get_caller_identity().send()).unwrap();
    assert_eq!(
        me.arn(),
        Some("arn:aws:sts::123456789012:assumed-role/toolkit-role/moto-peer")
    );

    let calls = moto.recorded_sts_calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    let a = &calls[0];
    assert_eq!(a["Action"], "AssumeRole");
    assert_eq!(a["TokenCode"], "047091");
    assert_eq!(a["SerialNumber"], SERIAL);
    assert_eq!(a["RoleArn"], ROLE);
    assert_eq!(a["RoleSessionName"], "moto-peer");
    assert_eq!(a["DurationSeconds"], "1800");
    assert_eq!(calls[1]["Action"], "GetCallerIdentity");
    assert!(!calls[1].contains_key("TokenCode"));

    // The raw recording carries the signed headers too.
    let raw = moto.recorded_requests().unwrap();
    let auth = raw[0]
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        .map(|(_, v)| v.clone())
        .unwrap();
    assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/"));

    // reset-recording empties it.
    moto.reset_recording().unwrap();
    assert!(moto.recorded_sts_calls().is_empty());
}

#[test]
fn moto_accepts_what_the_strict_double_rejects() {
    // Why the strict double exists: moto takes any code, even one sent twice.
    let Some(moto) = MotoServer::start_or_skip("moto_accepts_what_the_strict_double_rejects")
    else {
        return;
    };
    let rt = rt();
    let c = client(
        &moto.endpoint(),
        "AKIAIOSFODNN7EXAMPLE",
        "wrong-secret",
        None,
    );
    for _ in 0..2 {
        rt.block_on(
            c.get_session_token()
                .serial_number(SERIAL)
                .token_code("000000")
                .send(),
        )
        .expect("moto ignores MFA and signatures");
    }
    let calls = moto.recorded_sts_calls();
    assert_eq!(calls.len(), 2);
    assert!(calls.iter().all(|c| c["TokenCode"] == "000000"));
}
