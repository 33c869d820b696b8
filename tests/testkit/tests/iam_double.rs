//! IAM's virtual-MFA actions in the strict double, driven by the real `aws-sdk-iam` client
//! (SigV4 for `iam`, the query protocol, IAM's XML) and by botocore: what they accept, what
//! they refuse with AWS's codes, and that STS accepts a newly enabled device.
//! TOTP codes are computed here again (not with the double's code).

mod common;

use aws_sdk_iam::error::ProvideErrorMetadata;
use tapcred_testkit::sts_double::{
    Config, MAX_MFA_DEVICES_PER_USER, StsDouble, TokenOutcome, UserSpec, design,
};

use common::{rt, totp};

fn iam_client(
    double: &StsDouble,
    akid: &str,
    secret: &str,
    token: Option<&str>,
) -> aws_sdk_iam::Client {
    common::iam_client(&double.endpoint(), akid, secret, token)
}

fn sts_client(double: &StsDouble, akid: &str, secret: &str) -> aws_sdk_sts::Client {
    common::sts_client(&double.endpoint(), akid, secret, None, false)
}

fn user_iam(double: &StsDouble) -> aws_sdk_iam::Client {
    iam_client(
        double,
        design::ACCESS_KEY_ID,
        design::SECRET_ACCESS_KEY,
        None,
    )
}

/// The double's clock moved to the middle of a TOTP step, so a test's codes do not straddle
/// a step boundary (the shift is far inside the 5 minute signature tolerance).
fn mid_step(double: &StsDouble) -> u64 {
    let now = double.now();
    double.set_clock_offset(15 - now.rem_euclid(30));
    double.current_step()
}

use common::err_parts as err_code;

/// CreateVirtualMFADevice → (serial, seed bytes decoded from the base32 text).
fn create(
    rt: &tokio::runtime::Runtime,
    iam: &aws_sdk_iam::Client,
    name: &str,
) -> (String, Vec<u8>) {
    let out = rt
        .block_on(
            iam.create_virtual_mfa_device()
                .virtual_mfa_device_name(name)
                .send(),
        )
        .expect("CreateVirtualMFADevice");
    let dev = out.virtual_mfa_device().expect("VirtualMFADevice");
    let text = dev.base32_string_seed().expect("Base32StringSeed").as_ref();
    assert_eq!(text.len(), 64, "40 bytes of seed are 64 base32 characters");
    assert!(
        text.iter()
            .all(|b| b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567".contains(b)),
        "the blob's bytes are the base32 text"
    );
    let seed = data_encoding::BASE32_NOPAD.decode(text).unwrap();
    (dev.serial_number().to_owned(), seed)
}

fn enable(
    rt: &tokio::runtime::Runtime,
    iam: &aws_sdk_iam::Client,
    user: &str,
    serial: &str,
    c1: &str,
    c2: &str,
) -> Result<(), (u16, String, String)> {
    rt.block_on(
        iam.enable_mfa_device()
            .user_name(user)
            .serial_number(serial)
            .authentication_code1(c1)
            .authentication_code2(c2)
            .send(),
    )
    .map(|_| ())
    .map_err(|e| err_code(&e))
}

fn listed(
    rt: &tokio::runtime::Runtime,
    iam: &aws_sdk_iam::Client,
    user: Option<&str>,
) -> Vec<String> {
    rt.block_on(
        iam.list_mfa_devices()
            .set_user_name(user.map(str::to_owned))
            .send(),
    )
    .expect("ListMFADevices")
    .mfa_devices()
    .iter()
    .map(|d| d.serial_number().to_owned())
    .collect()
}

#[test]
fn create_gives_a_fresh_40_byte_seed_and_an_arn_serial() {
    let double = StsDouble::start_design().unwrap();
    let rt = rt();
    let iam = user_iam(&double);
    let (serial, seed) = create(&rt, &iam, "yubikey-1");
    assert_eq!(serial, "arn:aws:iam::111111111111:mfa/yubikey-1");
    assert_eq!(seed.len(), 40);
    let (serial2, seed2) = create(&rt, &iam, "yubikey-2");
    assert_eq!(serial2, "arn:aws:iam::111111111111:mfa/yubikey-2");
    assert_ne!(seed, seed2, "every device gets its own random seed");
    let unassigned = rt
        .block_on(
            iam.list_virtual_mfa_devices()
                .assignment_status(aws_sdk_iam::types::AssignmentStatusType::Unassigned)
                .send(),
        )
        .unwrap();
    let serials: Vec<&str> = unassigned
        .virtual_mfa_devices()
        .iter()
        .map(|d| d.serial_number())
        .collect();
    assert_eq!(serials, [serial.as_str(), serial2.as_str()]);
    // Created, not enabled: the user still has only the configured device.
    assert_eq!(listed(&rt, &iam, None), [design::MFA_SERIAL]);
    let state = double.iam_state();
    assert_eq!(state.virtual_devices.len(), 2);
    assert!(state.virtual_devices.iter().all(|d| d.user.is_none()));
}

#[test]
fn a_name_already_used_is_entity_already_exists() {
    let double = StsDouble::start_design().unwrap();
    let rt = rt();
    let iam = user_iam(&double);
    // The configured device of the design user is named like the user.
    let e = rt
        .block_on(
            iam.create_virtual_mfa_device()
                .virtual_mfa_device_name(design::USER_NAME)
                .send(),
        )
        .unwrap_err();
    assert_eq!(
        err_code(&e),
        (
            409,
            "EntityAlreadyExists".into(),
            "MFADevice entity at the same path and name already exists.".into()
        )
    );
    create(&rt, &iam, "key");
    let e = rt
        .block_on(
            iam.create_virtual_mfa_device()
                .virtual_mfa_device_name("key")
                .send(),
        )
        .unwrap_err();
    assert_eq!(err_code(&e).1, "EntityAlreadyExists");
    let e = rt
        .block_on(
            iam.create_virtual_mfa_device()
                .virtual_mfa_device_name("bad name!")
                .send(),
        )
        .unwrap_err();
    assert_eq!(err_code(&e).1, "ValidationError");
    assert_eq!(double.iam_state().virtual_devices.len(), 1);
}

#[test]
fn enable_takes_only_two_consecutive_codes_then_sts_accepts_the_serial() {
    let double = StsDouble::start_design().unwrap();
    let rt = rt();
    let iam = user_iam(&double);
    let (serial, seed) = create(&rt, &iam, "yk");
    let s = mid_step(&double);
    let user = design::USER_NAME;
    let bad = |c1: String, c2: String| {
        let e = enable(&rt, &iam, user, &serial, &c1, &c2).unwrap_err();
        assert_eq!(
            e,
            (
                403,
                "InvalidAuthenticationCode".into(),
                "Authentication code for device is not valid.".into()
            ),
            "codes of steps refused"
        );
    };
    bad(totp(&seed, s), totp(&seed, s)); // the same code twice
    bad(totp(&seed, s - 2), totp(&seed, s)); // not consecutive
    bad(totp(&seed, s), totp(&seed, s - 1)); // swapped
    bad(totp(&seed, s), totp(&seed, s + 1)); // a pair ending in the future
    bad(totp(&seed, s - 4), totp(&seed, s - 3)); // too old
    bad("000000".into(), totp(&seed, s));
    assert!(listed(&rt, &iam, None).len() == 1, "nothing enabled yet");
    // A 5-digit code does not pass validation.
    let e = enable(&rt, &iam, user, &serial, "12345", "123456").unwrap_err();
    assert_eq!(e.1, "ValidationError");

    enable(
        &rt,
        &iam,
        user,
        &serial,
        &totp(&seed, s - 1),
        &totp(&seed, s),
    )
    .expect("consecutive codes");
    assert_eq!(
        listed(&rt, &iam, Some(user)),
        [design::MFA_SERIAL, serial.as_str()]
    );
    let e = enable(
        &rt,
        &iam,
        user,
        &serial,
        &totp(&seed, s - 1),
        &totp(&seed, s),
    )
    .unwrap_err();
    assert_eq!(e.0, 409);
    assert_eq!(e.1, "EntityAlreadyExists");

    // STS: the codes EnableMFADevice took are spent; the next one works.
    let sts = sts_client(&double, design::ACCESS_KEY_ID, design::SECRET_ACCESS_KEY);
    let e = rt
        .block_on(
            sts.get_session_token()
                .serial_number(&serial)
                .token_code(totp(&seed, s))
                .send(),
        )
        .unwrap_err();
    assert_eq!(e.code(), Some("AccessDenied"));
    let out = rt
        .block_on(
            sts.get_session_token()
                .serial_number(&serial)
                .token_code(totp(&seed, s + 1))
                .send(),
        )
        .expect("a fresh code of the new device");
    assert!(out.credentials().is_some());
    let outcomes: Vec<(String, TokenOutcome)> = double
        .token_code_events()
        .into_iter()
        .filter(|e| e.action == "GetSessionToken")
        .map(|e| (e.serial, e.outcome))
        .collect();
    assert_eq!(
        outcomes,
        [
            (serial.clone(), TokenOutcome::Reused),
            (serial.clone(), TokenOutcome::Accepted)
        ]
    );
    let enable_events = double
        .token_code_events()
        .into_iter()
        .filter(|e| e.action == "EnableMFADevice" && e.outcome == TokenOutcome::Accepted)
        .count();
    assert_eq!(
        enable_events, 2,
        "two accepted codes for the one successful enable (the second was refused before its codes were checked)"
    );
}

#[test]
fn deactivate_and_delete_undo_an_enrollment() {
    let double = StsDouble::start_design().unwrap();
    let rt = rt();
    let iam = user_iam(&double);
    let (serial, seed) = create(&rt, &iam, "yk");
    let s = mid_step(&double);
    enable(
        &rt,
        &iam,
        design::USER_NAME,
        &serial,
        &totp(&seed, s - 1),
        &totp(&seed, s),
    )
    .unwrap();
    let e = rt
        .block_on(
            iam.delete_virtual_mfa_device()
                .serial_number(&serial)
                .send(),
        )
        .unwrap_err();
    assert_eq!(
        err_code(&e),
        (
            409,
            "DeleteConflict".into(),
            "MFA Device is still in use".into()
        )
    );
    rt.block_on(
        iam.deactivate_mfa_device()
            .user_name(design::USER_NAME)
            .serial_number(&serial)
            .send(),
    )
    .expect("DeactivateMFADevice");
    assert_eq!(listed(&rt, &iam, None), [design::MFA_SERIAL]);
    // STS no longer knows the serial for this user.
    let sts = sts_client(&double, design::ACCESS_KEY_ID, design::SECRET_ACCESS_KEY);
    let e = rt
        .block_on(
            sts.get_session_token()
                .serial_number(&serial)
                .token_code(totp(&seed, s + 1))
                .send(),
        )
        .unwrap_err();
    assert!(e.message().unwrap_or("").contains("serial number"), "{e:?}");
    let e = rt
        .block_on(
            iam.deactivate_mfa_device()
                .user_name(design::USER_NAME)
                .serial_number(&serial)
                .send(),
        )
        .unwrap_err();
    assert_eq!(err_code(&e).1, "NoSuchEntity");
    rt.block_on(
        iam.delete_virtual_mfa_device()
            .serial_number(&serial)
            .send(),
    )
    .expect("DeleteVirtualMFADevice");
    assert!(double.iam_state().virtual_devices.is_empty());
    let e = rt
        .block_on(
            iam.delete_virtual_mfa_device()
                .serial_number(&serial)
                .send(),
        )
        .unwrap_err();
    assert_eq!(err_code(&e).0, 404);
    assert_eq!(err_code(&e).1, "NoSuchEntity");
    // The name is free again.
    create(&rt, &iam, "yk");
}

#[test]
fn at_most_eight_devices_per_user() {
    let double = StsDouble::builder()
        .user(UserSpec::new(
            "solo",
            "222222222222",
            "AKIASOLOEXAMPLE00001",
            "solo-secret",
        ))
        .start()
        .unwrap();
    let rt = rt();
    let iam = iam_client(&double, "AKIASOLOEXAMPLE00001", "solo-secret", None);
    let s = mid_step(&double);
    for i in 0..MAX_MFA_DEVICES_PER_USER {
        let (serial, seed) = create(&rt, &iam, &format!("d{i}"));
        enable(
            &rt,
            &iam,
            "solo",
            &serial,
            &totp(&seed, s - 1),
            &totp(&seed, s),
        )
        .unwrap();
    }
    let (serial, seed) = create(&rt, &iam, "d8");
    let e = enable(
        &rt,
        &iam,
        "solo",
        &serial,
        &totp(&seed, s - 1),
        &totp(&seed, s),
    )
    .unwrap_err();
    assert_eq!(e.0, 409);
    assert_eq!(e.1, "LimitExceeded");
    assert_eq!(listed(&rt, &iam, None).len(), 8);
    assert_eq!(double.iam_state().user_devices["solo"].len(), 8);
}

#[test]
fn unknown_user_device_role_sessions_and_injected_faults() {
    let double = StsDouble::start_design().unwrap();
    let rt = rt();
    let iam = user_iam(&double);
    let (serial, seed) = create(&rt, &iam, "yk");
    let s = mid_step(&double);
    let e = enable(
        &rt,
        &iam,
        "nobody",
        &serial,
        &totp(&seed, s - 1),
        &totp(&seed, s),
    )
    .unwrap_err();
    assert_eq!(
        e,
        (
            404,
            "NoSuchEntity".into(),
            "The user with name nobody cannot be found.".into()
        )
    );
    let other = "arn:aws:iam::111111111111:mfa/none";
    let e = enable(&rt, &iam, design::USER_NAME, other, "123456", "654321").unwrap_err();
    assert_eq!(e.1, "NoSuchEntity");

    double.iam_fail_next("EnableMFADevice", 1, "InvalidAuthenticationCode");
    let e = enable(
        &rt,
        &iam,
        design::USER_NAME,
        &serial,
        &totp(&seed, s - 1),
        &totp(&seed, s),
    )
    .unwrap_err();
    assert_eq!(e.1, "InvalidAuthenticationCode", "injected");
    double.iam_fail_next("DeleteVirtualMFADevice", 1, "ServiceFailure");
    let e = rt
        .block_on(
            iam.delete_virtual_mfa_device()
                .serial_number(&serial)
                .send(),
        )
        .unwrap_err();
    assert_eq!(err_code(&e).0, 500);
    assert_eq!(
        double.iam_state().virtual_devices.len(),
        1,
        "a failed delete deletes nothing"
    );

    // A role session may not manage MFA devices here.
    let sts = sts_client(&double, design::ACCESS_KEY_ID, design::SECRET_ACCESS_KEY);
    let c = rt
        .block_on(
            sts.assume_role()
                .role_arn(design::ROLE_B_ARN)
                .role_session_name("t")
                .send(),
        )
        .ok()
        .and_then(|o| o.credentials().cloned());
    if let Some(c) = c {
        let role_iam = iam_client(
            &double,
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token()),
        );
        let e = rt.block_on(role_iam.list_mfa_devices().send()).unwrap_err();
        assert_eq!(err_code(&e).1, "AccessDenied");
    }
    let json = double_admin(&double, "GET", "/_double/iam");
    let snap: tapcred_testkit::sts_double::IamSnapshot = serde_json::from_str(&json).unwrap();
    assert_eq!(snap, double.iam_state());
    assert!(!json.to_ascii_lowercase().contains("seed"));
}

fn double_admin(double: &StsDouble, method: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", double.port())).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_owned()
}

#[test]
fn admin_iam_fail_injects_over_http() {
    let double = StsDouble::builder()
        .config(Config::design())
        .start()
        .unwrap();
    double_admin(
        &double,
        "POST",
        "/_double/iam-fail?action=CreateVirtualMFADevice&n=1&code=LimitExceeded",
    );
    let rt = rt();
    let e = rt
        .block_on(
            user_iam(&double)
                .create_virtual_mfa_device()
                .virtual_mfa_device_name("x")
                .send(),
        )
        .unwrap_err();
    assert_eq!(err_code(&e).1, "LimitExceeded");
    create(&rt, &user_iam(&double), "x");
}

// ---- botocore: a second SigV4 and query-protocol implementation --------------------------

const BOTO_IAM: &str = r#"import base64, hmac, hashlib, json, struct, sys, time
import boto3
endpoint, step = sys.argv[1], int(sys.argv[2])
iam = boto3.client("iam", region_name="us-east-1", endpoint_url=endpoint,
                   aws_access_key_id="AKIAIOSFODNN7EXAMPLE",
                   aws_secret_access_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
dev = iam.create_virtual_mfa_device(VirtualMFADeviceName="boto")["VirtualMFADevice"]
text = dev["Base32StringSeed"]
seed = base64.b32decode(text)
def code(s):
    h = hmac.new(seed, struct.pack(">Q", s), hashlib.sha1).digest()
    o = h[-1] & 15
    return "%06d" % ((struct.unpack(">I", h[o:o+4])[0] & 0x7fffffff) % 1000000)
try:
    iam.enable_mfa_device(UserName="toolkit-user", SerialNumber=dev["SerialNumber"],
                          AuthenticationCode1=code(step), AuthenticationCode2=code(step + 1))
    bad = "accepted"
except iam.exceptions.InvalidAuthenticationCodeException as e:
    bad = e.response["Error"]["Code"]
iam.enable_mfa_device(UserName="toolkit-user", SerialNumber=dev["SerialNumber"],
                      AuthenticationCode1=code(step - 1), AuthenticationCode2=code(step))
listed = [d["SerialNumber"] for d in iam.list_mfa_devices(UserName="toolkit-user")["MFADevices"]]
iam.deactivate_mfa_device(UserName="toolkit-user", SerialNumber=dev["SerialNumber"])
iam.delete_virtual_mfa_device(SerialNumber=dev["SerialNumber"])
print(json.dumps({"serial": dev["SerialNumber"], "seed_len": len(seed), "text_len": len(text),
                  "future_pair": bad, "listed": listed}))
"#;

#[test]
fn botocore_creates_enables_lists_and_deletes() {
    let venv = std::env::var("TAPCRED_VENV").unwrap_or_else(|_| "/opt/tapcred-venv".into());
    let python = std::path::Path::new(&venv).join("bin/python");
    if !tapcred_testkit::ci::require(
        "botocore_creates_enables_lists_and_deletes",
        &format!("{} with boto3 (set TAPCRED_VENV)", python.display()),
        python.is_file(),
    ) {
        return;
    }
    let double = StsDouble::start_design().unwrap();
    let step = mid_step(&double);
    let dir = tempfile_dir();
    let script = dir.join("boto_iam.py");
    std::fs::write(&script, BOTO_IAM).unwrap();
    let out = std::process::Command::new(&python)
        .arg(&script)
        .arg(double.endpoint())
        .arg(step.to_string())
        .env("HOME", &dir)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(j["serial"], "arn:aws:iam::111111111111:mfa/boto");
    assert_eq!(j["seed_len"], 40);
    assert_eq!(j["text_len"], 64);
    assert_eq!(j["future_pair"], "InvalidAuthenticationCode");
    assert_eq!(
        j["listed"],
        serde_json::json!([design::MFA_SERIAL, "arn:aws:iam::111111111111:mfa/boto"])
    );
    assert!(double.iam_state().virtual_devices.is_empty());
    assert_eq!(double.stats().ok("DeleteVirtualMFADevice"), 1);
    let _ = std::fs::remove_dir_all(dir);
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("tapcred-iam-double-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn a_write_cut_after_commit_is_done_and_its_answer_lost_on_the_chosen_call_only() {
    use tapcred_testkit::sts_double::{Fault, IAM_WRITES};
    assert!(IAM_WRITES.contains(&"CreateVirtualMFADevice"));
    let double = StsDouble::start_design().unwrap();
    let rt = rt();
    let iam = user_iam(&double);
    // The first create answers normally; the second commits, then loses its answer (a retry
    // of it would meet EntityAlreadyExists); later calls are normal again.
    double.fault_calls("CreateVirtualMFADevice", 2, 1, Fault::ServerError);
    create(&rt, &iam, "first");
    let lost = rt.block_on(
        iam.create_virtual_mfa_device()
            .virtual_mfa_device_name("second")
            .send(),
    );
    assert!(lost.is_err(), "the answer is lost");
    let names: Vec<String> = double
        .iam_state()
        .virtual_devices
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert_eq!(names, ["first", "second"], "the lost call committed");
    create(&rt, &iam, "third");
    // A delete cut after commit: the device is gone although the client saw an error.
    double.fault_calls("DeleteVirtualMFADevice", 1, 10, Fault::BrokenAnswer);
    let serial = "arn:aws:iam::111111111111:mfa/second";
    let lost = rt.block_on(iam.delete_virtual_mfa_device().serial_number(serial).send());
    assert!(lost.is_err());
    assert!(
        !double
            .iam_state()
            .virtual_devices
            .iter()
            .any(|d| d.serial == serial)
    );
}
