//! The real binary against the strict STS double, with the design profiles (fixtures/aws/design) in a temporary
//! HOME and a software seed: every STS path, `exec`, every `export` format, profile selection.

mod common;
use common::{Home, totp_sha1};
use tapcred::sts::{CallContext, Sts, StsTarget};
use tapcred_testkit::sts_double::{StsDouble, design};

fn setup() -> (StsDouble, Home) {
    let d = StsDouble::start_design().expect("start the STS double");
    let mut h = Home::design();
    h.set("AWS_ENDPOINT_URL_STS", &d.endpoint())
        .set("TAPCRED_TOTP_SECRET", design::MFA_SEED_BASE32);
    (d, h)
}

/// Ask the double who these credentials belong to (proves they are real, signed, unexpired).
fn caller_arn(d: &StsDouble, json: &serde_json::Value) -> String {
    let creds = tapcred::Credentials::new(
        json["AccessKeyId"].as_str().unwrap(),
        json["SecretAccessKey"].as_str().unwrap(),
        json["SessionToken"].as_str().map(str::to_owned),
        None,
    );
    let sts = Sts::new(StsTarget {
        region: "us-east-1".into(),
        endpoint_url: Some(d.endpoint()),
    })
    .unwrap();
    sts.get_caller_identity(
        &creds,
        CallContext {
            profile: "test",
            signer: "test",
        },
    )
    .unwrap()
    .arn
}

fn seed() -> Vec<u8> {
    data_encoding::BASE32_NOPAD
        .decode(design::MFA_SEED_BASE32.as_bytes())
        .unwrap()
}

/// Exactly one code was accepted, and it is the seed's TOTP for the step the double matched.
fn one_valid_code(d: &StsDouble) {
    let events = d.token_code_events();
    let accepted: Vec<_> = events.iter().filter(|e| e.matched_step.is_some()).collect();
    assert_eq!(accepted.len(), 1, "{events:?}");
    let e = accepted[0];
    assert_eq!(e.serial, design::MFA_SERIAL);
    assert_eq!(e.code, totp_sha1(&seed(), e.matched_step.unwrap() * 30));
    assert_eq!(events.len(), 1, "no rejected codes expected: {events:?}");
}

#[test]
fn role_via_static_keys_and_mfa() {
    let (d, h) = setup();
    let out = h.run(&["credential-process", "--profile", "mfa"]);
    out.ok();
    let j = out.json();
    assert_eq!(j["Version"], 1);
    assert!(j["AccessKeyId"].as_str().unwrap().starts_with("ASIA"));
    let exp =
        tapcred::credentials::parse_rfc3339(j["Expiration"].as_str().unwrap()).expect("RFC 3339");
    let left = (exp - time::OffsetDateTime::now_utc()).whole_seconds();
    assert!(
        (3000..=3700).contains(&left),
        "role session of about 1 h, got {left} s"
    );
    assert!(
        out.stdout.lines().count() == 1,
        "stdout carries the JSON only"
    );
    assert!(caller_arn(&d, &j).starts_with("arn:aws:sts::111111111111:assumed-role/toolkit-role/"));
    one_valid_code(&d);
    assert!(d.stats().ok("AssumeRole") >= 1);
}

#[test]
fn get_session_token_profile() {
    let (d, h) = setup();
    let out = h.run(&["credential-process", "--profile", "session"]);
    out.ok();
    let j = out.json();
    assert_eq!(caller_arn(&d, &j), design::USER_ARN);
    assert_eq!(d.stats().ok("GetSessionToken"), 1);
    assert_eq!(d.stats().ok("AssumeRole"), 0);
    one_valid_code(&d);
}

#[test]
fn role_to_role_chain() {
    let (d, h) = setup();
    let out = h.run(&["credential-process", "--profile", "role-chain"]);
    out.ok();
    let arn = caller_arn(&d, &out.json());
    assert!(
        arn.starts_with("arn:aws:sts::111111111111:assumed-role/chained-role/"),
        "{arn}"
    );
    one_valid_code(&d);
}

#[test]
fn external_id_and_session_name() {
    let (d, h) = setup();
    let out = h.run(&["credential-process", "--profile", "external"]);
    out.ok();
    assert_eq!(
        caller_arn(&d, &out.json()),
        "arn:aws:sts::111111111111:assumed-role/external-role/tapcred-demo"
    );
}

#[test]
fn exec_sets_the_environment_and_returns_the_child_code() {
    let (d, mut h) = setup();
    h.set("AWS_PROFILE", "someone-else")
        .set("AWS_SECURITY_TOKEN", "stale");
    let out = h.run(&[
        "exec",
        "--profile",
        "role-chain",
        "--",
        "sh",
        "-c",
        "env; exit 3",
    ]);
    assert_eq!(out.code, 3, "child's exit code: {}", out.stderr);
    let env: std::collections::HashMap<&str, &str> = out
        .stdout
        .lines()
        .filter_map(|l| l.split_once('='))
        .collect();
    assert!(env["AWS_ACCESS_KEY_ID"].starts_with("ASIA"));
    assert!(!env["AWS_SECRET_ACCESS_KEY"].is_empty());
    assert!(!env["AWS_SESSION_TOKEN"].is_empty());
    assert!(tapcred::credentials::parse_rfc3339(env["AWS_CREDENTIAL_EXPIRATION"]).is_some());
    assert_eq!(env["AWS_REGION"], "eu-west-1");
    assert_eq!(env["AWS_DEFAULT_REGION"], "eu-west-1");
    assert_eq!(env["TAPCRED_PROFILE"], "role-chain");
    assert!(
        !env.contains_key("AWS_PROFILE"),
        "conflicting AWS_PROFILE must be cleared"
    );
    assert!(!env.contains_key("AWS_SECURITY_TOKEN"));
    let json = serde_json::json!({
        "AccessKeyId": env["AWS_ACCESS_KEY_ID"],
        "SecretAccessKey": env["AWS_SECRET_ACCESS_KEY"],
        "SessionToken": env["AWS_SESSION_TOKEN"],
    });
    assert!(caller_arn(&d, &json).contains("assumed-role/chained-role/"));
}

#[test]
fn exec_reports_a_missing_command() {
    let h = Home::design();
    h.run(&[
        "exec",
        "--profile",
        "toolkit-user",
        "--",
        "no-such-command-tapcred",
    ])
    .fails_with(7, &["no-such-command-tapcred", "PATH"]);
}

#[test]
fn export_every_format() {
    let (d, h) = setup();
    let json = h.run(&["export", "--profile", "mfa", "--format", "json"]);
    json.ok();
    let j = json.json();
    assert!(caller_arn(&d, &j).contains("assumed-role/toolkit-role/"));
    // The shapes, on the static profile (no STS call needed).
    let id = design::ACCESS_KEY_ID;
    let cases: &[(&str, &str)] = &[
        ("env", "export AWS_ACCESS_KEY_ID='AKIAIOSFODNN7EXAMPLE'\n"),
        (
            "env-no-export",
            "AWS_ACCESS_KEY_ID='AKIAIOSFODNN7EXAMPLE'\n",
        ),
        (
            "powershell",
            "$Env:AWS_ACCESS_KEY_ID='AKIAIOSFODNN7EXAMPLE'\n",
        ),
        (
            "windows-cmd",
            "set \"AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\"\r\n",
        ),
        ("fish", "set -gx AWS_ACCESS_KEY_ID 'AKIAIOSFODNN7EXAMPLE'\n"),
        (
            "ini",
            "[toolkit-user]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\n",
        ),
    ];
    for (format, start) in cases {
        let out = h.run(&["export", "--profile", "toolkit-user", "--format", format]);
        out.ok();
        assert!(out.stdout.starts_with(start), "{format}: {:?}", out.stdout);
        assert!(out.stdout.contains(id));
        assert!(out.stdout.contains(design::SECRET_ACCESS_KEY), "{format}");
    }
    // A session in a POSIX shell: sourcing the env output gives working variables.
    let (d, h) = setup();
    let env = h.run(&["export", "--profile", "session", "--format", "env"]);
    env.ok();
    let sourced = std::process::Command::new("sh")
        .args(["-c", &format!("{}\nprintf '%s\\n%s\\n%s' \"$AWS_ACCESS_KEY_ID\" \"$AWS_SECRET_ACCESS_KEY\" \"$AWS_SESSION_TOKEN\"", env.stdout)])
        .output()
        .unwrap();
    let v: Vec<String> = String::from_utf8(sourced.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let j = serde_json::json!({"AccessKeyId": v[0], "SecretAccessKey": v[1], "SessionToken": v[2]});
    assert_eq!(caller_arn(&d, &j), design::USER_ARN);
}

#[test]
fn aws_profile_and_flag_precedence() {
    let (d, mut h) = setup();
    h.set("AWS_PROFILE", "session");
    // --profile wins over AWS_PROFILE: static keys, no STS call.
    let out = h.run(&["credential-process", "--profile", "toolkit-user"]);
    out.ok();
    assert_eq!(out.json()["AccessKeyId"], design::ACCESS_KEY_ID);
    assert!(
        out.json().get("Expiration").is_none(),
        "long-term keys carry no Expiration"
    );
    assert_eq!(d.stats().requests, 0);
    // Without --profile, AWS_PROFILE picks the GetSessionToken profile.
    let out = h.run(&["credential-process"]);
    out.ok();
    assert_eq!(caller_arn(&d, &out.json()), design::USER_ARN);
    assert_eq!(d.stats().ok("GetSessionToken"), 1);
}

#[test]
fn sts_errors_are_plain_and_exit_5() {
    let (_d, mut h) = setup();
    // A seed that is valid base32 but not the device's: the double rejects the code.
    h.set("TAPCRED_TOTP_SECRET", "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
    h.run(&["credential-process", "--profile", "mfa"])
        .fails_with(5, &["\"mfa\"", "rejected the MFA code", "clock"]);
}

#[test]
fn unreachable_endpoint_exits_6() {
    let mut h = Home::design();
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    h.set("AWS_ENDPOINT_URL_STS", &format!("http://127.0.0.1:{port}"))
        .set("TAPCRED_TOTP_SECRET", design::MFA_SEED_BASE32);
    h.run(&["credential-process", "--profile", "session"])
        .fails_with(6, &["cannot reach STS", "127.0.0.1"]);
}

/// Issue 17 item 15: `export` sets the region as `exec` does, when the profile sets one.
#[test]
fn export_sets_the_profiles_region_as_exec_does() {
    let (_d, h) = setup();
    let out = h.run(&["export", "--profile", "role-chain"]);
    out.ok();
    assert!(
        out.stdout.contains("export AWS_REGION='eu-west-1'\n")
            && out
                .stdout
                .contains("export AWS_DEFAULT_REGION='eu-west-1'\n"),
        "{}",
        out.stdout
    );
    let fish = h.run(&["export", "--profile", "role-chain", "--format", "fish"]);
    assert!(
        fish.stdout.contains("set -gx AWS_REGION 'eu-west-1'\n"),
        "{}",
        fish.stdout
    );
}
