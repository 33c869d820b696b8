//! Bad input through the real binary: each case exits non-zero with one clear line naming the
//! file/profile/key and the fix, prints nothing on stdout, and writes nothing.
#![cfg(unix)] // runs Linux test stacks (or Unix-only APIs); the Windows build is checked by clippy and Wine

mod common;
use common::Home;

const CONFIG_OK: &str = "[profile toolkit-user]\nregion = us-east-1\n";
const CREDS_OK: &str = "[toolkit-user]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n";

fn home(config_extra: &str) -> Home {
    let h = Home::empty();
    h.write_config(&format!("{CONFIG_OK}\n{config_extra}"));
    h.write_credentials(CREDS_OK);
    h
}

fn check(h: &Home, profile: &str, code: i32, needles: &[&str]) {
    let before = h.snapshot();
    h.run(&["credential-process", "--profile", profile])
        .fails_with(code, needles);
    assert_eq!(
        before,
        h.snapshot(),
        "a failing command must not write anything"
    );
}

#[test]
fn missing_files() {
    let h = Home::empty();
    check(&h, "mfa", 3, &[".aws/config", ".aws/credentials"]);
}

#[test]
fn unknown_profile_suggests_close_names() {
    let h = home(
        "[profile mfa]\nsource_profile = toolkit-user\nrole_arn = arn:aws:iam::111111111111:role/toolkit-role\nmfa_serial = arn:aws:iam::111111111111:mfa/toolkit-user\n",
    );
    check(&h, "mfx", 3, &["\"mfx\"", "mfa"]);
}

#[test]
fn source_profile_cycle() {
    let h = home(
        "[profile a]\nsource_profile = b\nrole_arn = arn:aws:iam::111111111111:role/a\n[profile b]\nsource_profile = a\nrole_arn = arn:aws:iam::111111111111:role/b\n",
    );
    check(&h, "a", 3, &["cycle", "a", "b"]);
}

#[test]
fn missing_source_profile() {
    let h = home(
        "[profile a]\nsource_profile = nowhere\nrole_arn = arn:aws:iam::111111111111:role/a\n",
    );
    check(&h, "a", 3, &["nowhere", "source_profile"]);
}

#[test]
fn source_profile_and_credential_source_together() {
    let h = home(
        "[profile a]\nsource_profile = toolkit-user\ncredential_source = Environment\nrole_arn = arn:aws:iam::111111111111:role/a\n",
    );
    check(
        &h,
        "a",
        3,
        &["source_profile", "credential_source", "\"a\""],
    );
}

#[test]
fn malformed_role_arn() {
    let h = home("[profile a]\nsource_profile = toolkit-user\nrole_arn = not-an-arn\n");
    check(&h, "a", 3, &["role_arn", "\"a\""]);
}

#[test]
fn malformed_mfa_serial() {
    let h = home(
        "[profile a]\nsource_profile = toolkit-user\nrole_arn = arn:aws:iam::111111111111:role/a\nmfa_serial = bad serial!\n",
    );
    check(&h, "a", 3, &["mfa_serial", "\"a\""]);
    let short = home(
        "[profile a]\nsource_profile = toolkit-user\nrole_arn = arn:aws:iam::111111111111:role/a\nmfa_serial = abc\n",
    );
    check(&short, "a", 3, &["mfa_serial"]);
}

#[test]
fn duration_out_of_range() {
    for d in ["899", "43201", "soon"] {
        let h = home(&format!(
            "[profile a]\nsource_profile = toolkit-user\nrole_arn = arn:aws:iam::111111111111:role/a\nduration_seconds = {d}\n"
        ));
        check(&h, "a", 3, &["duration_seconds", "900", "43200"]);
    }
}

const MFA_PROFILE: &str = "[profile mfa]\nsource_profile = toolkit-user\nrole_arn = arn:aws:iam::111111111111:role/toolkit-role\nmfa_serial = arn:aws:iam::111111111111:mfa/toolkit-user\n";

#[test]
fn seed_not_base32() {
    let mut h = home(MFA_PROFILE);
    h.set("TAPCRED_TOTP_SECRET", "this is not base32 !!!");
    check(&h, "mfa", 3, &["TAPCRED_TOTP_SECRET", "base32"]);
    let out = h.run(&["credential-process", "--profile", "mfa"]);
    assert!(
        !out.stderr.contains("this is not"),
        "the seed must never be echoed"
    );
}

#[test]
fn otpauth_uri_not_totp() {
    let mut h = home(MFA_PROFILE);
    h.set(
        "TAPCRED_TOTP_SECRET",
        "otpauth://hotp/AWS:me?secret=GEZDGNBVGY3TQOJQ&counter=3",
    );
    check(&h, "mfa", 3, &["TAPCRED_TOTP_SECRET", "TOTP"]);
}

#[test]
fn unreadable_or_shared_seed_file() {
    use std::os::unix::fs::PermissionsExt;
    let h = home(&format!("{MFA_PROFILE}tapcred_totp_secret_file = ~/seed\n"));
    check(&h, "mfa", 3, &["seed", "\"mfa\""]);
    let seed = h.path().join("seed");
    std::fs::write(&seed, "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ").unwrap();
    std::fs::set_permissions(&seed, std::fs::Permissions::from_mode(0o644)).unwrap();
    check(&h, "mfa", 3, &["chmod 600", "seed"]);
}

#[test]
fn usage_errors_exit_2() {
    let h = Home::design();
    let out = h.run(&["export", "--format", "yaml"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stdout.is_empty());
    let out = h.run(&["exec", "--profile", "mfa"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
}

#[test]
fn exec_refuses_to_nest() {
    let mut h = Home::design();
    h.set("TAPCRED_PROFILE", "outer");
    h.run(&["exec", "--profile", "mfa", "--", "true"])
        .fails_with(2, &["outer", "already inside"]);
}

/// Finding 11.2: seeds that used to panic (printing the seed) or be sent to STS with
/// parameters AWS never uses: exit 3, one line naming the source, the seed never echoed.
#[test]
fn seed_that_used_to_panic_or_mislead() {
    let cases: [(&str, &[&str]); 6] = [
        // 10th byte inside a multi-byte character (used to panic on `text[..10]`).
        ("ABCDEFGHIésecretpart", &["base32"]),
        (
            "otpauth://totp/AWS:me?secret=GEZDGNBVGY3TQOJQ&period=0",
            &["0 s", "30 s"],
        ),
        (
            "otpauth://totp/AWS:me?secret=GEZDGNBVGY3TQOJQ&digits=10",
            &["10 digits", "6 digits"],
        ),
        (
            "otpauth://totp/AWS:me?secret=GEZDGNBVGY3TQOJQ&digits=8",
            &["8 digits"],
        ),
        (
            "otpauth://totp/AWS:me?secret=GEZDGNBVGY3TQOJQ&period=60",
            &["60 s"],
        ),
        (
            "otpauth://totp/AWS:me?secret=GEZDGNBVGY3TQOJQ&algorithm=SHA256",
            &["SHA256", "SHA1"],
        ),
    ];
    for (seed, needles) in cases {
        let mut h = home(MFA_PROFILE);
        h.set("TAPCRED_TOTP_SECRET", seed);
        let mut all = vec!["TAPCRED_TOTP_SECRET"];
        all.extend_from_slice(needles);
        check(&h, "mfa", 3, &all);
        let out = h.run(&["credential-process", "--profile", "mfa"]);
        assert!(
            !out.stderr.contains("secretpart") && !out.stderr.contains("GEZDGNBV"),
            "the seed must never be echoed: {}",
            out.stderr
        );
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    }
}

/// Finding 11.12 (part): with no seed, no YubiKey and no terminal the answer used to be one
/// 630-character line. It is one short line naming the profile and the next step; what was
/// tried is logged at -v.
#[test]
fn no_token_source_is_one_short_line_with_details_at_v() {
    let mut h = home(MFA_PROFILE);
    // No pcscd (another test's virtual key must not be seen) and, should a code be read after
    // all, only a loopback endpoint.
    h.set("PCSCLITE_CSOCK_NAME", "/nonexistent/pcscd.comm")
        .set("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:9");
    let out = h.run(&["credential-process", "--profile", "mfa"]);
    out.fails_with(4, &["\"mfa\"", "tapcred doctor --profile mfa"]);
    let line = out.stderr.trim_end();
    assert!(
        line.chars().count() <= 160,
        "{} chars: {line}",
        line.chars().count()
    );
    let verbose = h.run(&["-v", "credential-process", "--profile", "mfa"]);
    assert_eq!(verbose.code, 4);
    assert!(verbose.stdout.is_empty());
    for tried in ["TAPCRED_TOTP_SECRET", "YubiKey", "typed code"] {
        assert!(
            verbose.stderr.contains(tried),
            "-v should say {tried:?} was tried: {}",
            verbose.stderr
        );
    }
}
