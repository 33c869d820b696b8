//! `tapcred doctor` through the real binary: a healthy setup, JSON, clock skew against the
//! STS double's Date header, an unreachable STS, the cache, the configure → enroll hand-off,
//! every bad setup of tests/cli_bad_input.rs, and no secret in the output.

mod common;

use common::{Home, Run};
use tapcred_testkit::sts_double::{StsDouble, design};

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";

fn setup() -> (StsDouble, Home) {
    let d = StsDouble::start_design().expect("start the STS double");
    let mut h = Home::design();
    h.set("AWS_ENDPOINT_URL_STS", &d.endpoint())
        .set("TAPCRED_TOTP_SECRET", design::MFA_SEED_BASE32);
    no_pcscd(&mut h);
    private(&h);
    (d, h)
}

/// PC/SC pointed at a socket nothing serves: the answers do not depend on a pcscd (and the
/// virtual keys other tests plug into it) elsewhere on the machine.
fn no_pcscd(h: &mut Home) {
    let sock = h.path().join("no-pcscd.comm");
    h.set("PCSCLITE_CSOCK_NAME", sock.to_str().unwrap());
}

/// The credentials file as `aws configure` leaves it (0600).
fn private(h: &Home) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(h.credentials_path(), std::fs::Permissions::from_mode(0o600))
            .unwrap();
    }
    #[cfg(not(unix))]
    let _ = h;
}

fn doctor(h: &Home, args: &[&str]) -> Run {
    let mut all = vec!["doctor"];
    all.extend_from_slice(args);
    Run::from(h.cmd_detached(&all).output().expect("run tapcred"))
}

fn no_secrets(out: &Run) {
    for text in [&out.stdout, &out.stderr] {
        assert!(!text.contains(SECRET), "secret key in output: {text}");
        assert!(!text.contains(KEY_ID), "whole key id in output: {text}");
        assert!(
            !text.contains(design::MFA_SEED_BASE32),
            "seed in output: {text}"
        );
        assert!(
            !text.contains(&design::MFA_SEED_BASE32[..12]),
            "seed in output: {text}"
        );
    }
}

#[test]
fn healthy_profile_explains_itself_and_exits_0() {
    let (_d, mut h) = setup();
    // Secrets in the environment too: none may reach the output.
    h.set("AWS_SECRET_ACCESS_KEY", SECRET)
        .set("AWS_SESSION_TOKEN", "FwoGZXIvYXdzEXAMPLETOKEN");
    let out = doctor(&h, &["--profile", "mfa"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    for needle in [
        "mfa → toolkit-user",
        "…MPLE",
        "[toolkit-user] in",
        "AssumeRole arn:aws:iam::111111111111:role/toolkit-role",
        "with MFA arn:aws:iam::111111111111:mfa/toolkit-user",
        "software TOTP (seed in $TAPCRED_TOTP_SECRET) answers",
        "a software seed is configured, and it comes first",
        "clock within",
        "no cached session for \"mfa\"",
        "no problems found",
    ] {
        assert!(
            out.stdout.contains(needle),
            "{needle:?} missing:\n{}",
            out.stdout
        );
    }
    no_secrets(&out);
    assert!(!out.stdout.contains("FwoGZXIvYXdzEXAMPLETOKEN"));
}

#[test]
fn json_is_stable_and_machine_readable() {
    let (_d, h) = setup();
    let out = doctor(&h, &["--profile", "mfa", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let j = out.json();
    assert_eq!(j["profile"], "mfa");
    assert_eq!(j["chain"], serde_json::json!(["mfa", "toolkit-user"]));
    assert_eq!(j["exit_code"], 0);
    assert!(j["next_step"].is_null());
    assert!(j["clock_skew_seconds"].as_i64().unwrap().abs() < 5);
    let checks = j["checks"].as_array().unwrap();
    for c in checks {
        assert!(
            ["ok", "note", "problem"].contains(&c["status"].as_str().unwrap()),
            "{c}"
        );
        assert!(c["area"].is_string() && c["message"].is_string());
    }
    let areas: Vec<&str> = checks.iter().map(|c| c["area"].as_str().unwrap()).collect();
    for a in ["files", "profile", "token", "pcsc", "clock", "cache"] {
        assert!(areas.contains(&a), "{a} missing in {areas:?}");
    }
    assert!(j["yubikeys"].is_array());
    no_secrets(&out);
}

#[test]
fn clock_skew_against_the_sts_date_header_is_a_problem() {
    let (d, h) = setup();
    d.set_clock_offset(-120);
    let out = doctor(&h, &["--profile", "mfa", "--json"]);
    assert_eq!(out.code, 5, "{}", out.stdout);
    let j = out.json();
    let skew = j["clock_skew_seconds"].as_i64().unwrap();
    assert!((118..=122).contains(&skew), "{skew}");
    assert!(j["next_step"].as_str().unwrap().contains("timedatectl"));
    let text = doctor(&h, &["--profile", "mfa"]);
    assert!(text.stdout.contains("ahead of STS"), "{}", text.stdout);
}

#[test]
fn unreachable_sts_is_a_network_problem() {
    let (_d, mut h) = setup();
    // A loopback port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    h.set("AWS_ENDPOINT_URL_STS", &format!("http://127.0.0.1:{port}"));
    let out = doctor(&h, &["--profile", "mfa"]);
    assert_eq!(out.code, 6, "{}", out.stdout);
    assert!(out.stdout.contains("cannot reach STS"), "{}", out.stdout);
    assert!(
        out.stdout.contains("next step: check the network"),
        "{}",
        out.stdout
    );
    // --offline skips the request.
    assert_eq!(doctor(&h, &["--profile", "mfa", "--offline"]).code, 0);
}

#[cfg(unix)]
#[test]
fn a_shared_credentials_file_gets_a_chmod_note() {
    use std::os::unix::fs::PermissionsExt;
    let (_d, h) = setup();
    std::fs::set_permissions(h.credentials_path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = doctor(&h, &["--profile", "mfa"]);
    assert_eq!(out.code, 0, "a note, not a problem: {}", out.stdout);
    assert!(
        out.stdout.contains("readable by other users"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("next: chmod 600"), "{}", out.stdout);
}

#[test]
fn the_cache_state_is_reported() {
    let (_d, h) = setup();
    h.run(&["credential-process", "--profile", "mfa"]).ok();
    let out = doctor(&h, &["--profile", "mfa"]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert!(
        out.stdout.contains("valid session(s) for \"mfa\""),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains(", the longest for "), "{}", out.stdout);
    // Expired or not, the count is of this profile's entries only.
    let other = doctor(&h, &["--profile", "toolkit-user", "--offline"]);
    assert!(
        other
            .stdout
            .contains("no cached session for \"toolkit-user\""),
        "{}",
        other.stdout
    );
}

#[test]
fn after_configure_without_a_device_the_next_step_is_enroll() {
    let d = StsDouble::start_design().expect("start the STS double");
    let mut h = Home::empty();
    no_pcscd(&mut h);
    h.set("AWS_ENDPOINT_URL_STS", &d.endpoint())
        .set("AWS_ACCESS_KEY_ID", KEY_ID)
        .set("AWS_SECRET_ACCESS_KEY", SECRET);
    h.run(&[
        "configure",
        "--role-arn",
        "arn:aws:iam::111111111111:role/toolkit-role",
    ])
    .ok();
    let out = doctor(&h, &["--profile", "mfa"]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert!(out.stdout.contains("has no mfa_serial"), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("next: if the role requires MFA, run `tapcred enroll --profile mfa --touch`"),
        "{}",
        out.stdout
    );
}

#[test]
fn a_profile_with_no_token_source_names_what_was_tried() {
    let (_d, mut h) = setup();
    h.set("TAPCRED_TOTP_SECRET", "");
    let cp = h.run(&["credential-process", "--profile", "mfa"]);
    // The command's short line points at doctor…
    assert!(
        cp.stderr.contains("tapcred doctor --profile mfa"),
        "{}",
        cp.stderr
    );
    let out = doctor(&h, &["--profile", "mfa"]);
    assert_eq!(out.code, cp.code, "{}", out.stdout);
    assert_eq!(out.code, 4);
    // …which says what each source answered.
    for needle in [
        "PROBLEM token",
        "$TAPCRED_TOTP_SECRET is not set",
        "YubiKey OATH (",
        "typed code: no terminal",
    ] {
        assert!(out.stdout.contains(needle), "{needle:?}:\n{}", out.stdout);
    }
    // The one next step: the smart-card service when it is down (nothing can answer before
    // it runs), else the YubiKey or the seed.
    let want = if out.stdout.contains(tapcred::token::pcsc::no_service_hint()) {
        "next step: start the smart-card service so the YubiKey can answer: "
    } else {
        "next step: plug in the YubiKey holding the OATH account, or set $TAPCRED_TOTP_SECRET"
    };
    assert!(out.stdout.contains(want), "{want}\n{}", out.stdout);
}

// ----- every bad setup of tests/cli_bad_input.rs -------------------------------------------

const CONFIG_OK: &str = "[profile toolkit-user]\nregion = us-east-1\n";
const CREDS_OK: &str = "[toolkit-user]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n";
const MFA_PROFILE: &str = "[profile mfa]\nsource_profile = toolkit-user\nrole_arn = arn:aws:iam::111111111111:role/toolkit-role\nmfa_serial = arn:aws:iam::111111111111:mfa/toolkit-user\n";

fn home(config_extra: &str) -> Home {
    let mut h = Home::empty();
    no_pcscd(&mut h);
    h.write_config(&format!("{CONFIG_OK}\n{config_extra}"));
    h.write_credentials(CREDS_OK);
    h
}

fn home_without_files() -> Home {
    let mut h = Home::empty();
    no_pcscd(&mut h);
    h
}

fn seeded(seed: &str) -> Home {
    let mut h = home(MFA_PROFILE);
    h.set("TAPCRED_TOTP_SECRET", seed);
    h
}

/// (name, HOME, profile) for each bad setup.
fn bad_setups() -> Vec<(&'static str, Home, &'static str)> {
    let role = "source_profile = toolkit-user\nrole_arn = arn:aws:iam::111111111111:role/a\n";
    let mut v = vec![
        ("missing files", home_without_files(), "mfa"),
        ("unknown profile", home(MFA_PROFILE), "mfx"),
        (
            "source_profile cycle",
            home(
                "[profile a]\nsource_profile = b\nrole_arn = arn:aws:iam::111111111111:role/a\n[profile b]\nsource_profile = a\nrole_arn = arn:aws:iam::111111111111:role/b\n",
            ),
            "a",
        ),
        (
            "missing source profile",
            home(
                "[profile a]\nsource_profile = nowhere\nrole_arn = arn:aws:iam::111111111111:role/a\n",
            ),
            "a",
        ),
        (
            "source_profile and credential_source",
            home(&format!(
                "[profile a]\n{role}credential_source = Environment\n"
            )),
            "a",
        ),
        (
            "malformed role_arn",
            home("[profile a]\nsource_profile = toolkit-user\nrole_arn = not-an-arn\n"),
            "a",
        ),
        (
            "malformed mfa_serial",
            home(&format!("[profile a]\n{role}mfa_serial = bad serial!\n")),
            "a",
        ),
        (
            "short mfa_serial",
            home(&format!("[profile a]\n{role}mfa_serial = abc\n")),
            "a",
        ),
        ("seed not base32", seeded("this is not base32 !!!"), "mfa"),
        (
            "otpauth URI not TOTP",
            seeded("otpauth://hotp/AWS:me?secret=GEZDGNBVGY3TQOJQ&counter=3"),
            "mfa",
        ),
        (
            "seed with multi-byte text",
            seeded("ABCDEFGHIésecretpart"),
            "mfa",
        ),
        (
            "otpauth period 0",
            seeded("otpauth://totp/AWS:me?secret=GEZDGNBVGY3TQOJQ&period=0"),
            "mfa",
        ),
        (
            "otpauth 10 digits",
            seeded("otpauth://totp/AWS:me?secret=GEZDGNBVGY3TQOJQ&digits=10"),
            "mfa",
        ),
        (
            "otpauth 8 digits",
            seeded("otpauth://totp/AWS:me?secret=GEZDGNBVGY3TQOJQ&digits=8"),
            "mfa",
        ),
        (
            "otpauth period 60",
            seeded("otpauth://totp/AWS:me?secret=GEZDGNBVGY3TQOJQ&period=60"),
            "mfa",
        ),
        (
            "otpauth SHA256",
            seeded("otpauth://totp/AWS:me?secret=GEZDGNBVGY3TQOJQ&algorithm=SHA256"),
            "mfa",
        ),
    ];
    for d in ["899", "43201", "soon"] {
        v.push((
            "duration out of range",
            home(&format!("[profile a]\n{role}duration_seconds = {d}\n")),
            "a",
        ));
    }
    let missing_seed_file = home(&format!("{MFA_PROFILE}tapcred_totp_secret_file = ~/seed\n"));
    v.push(("seed file missing", missing_seed_file, "mfa"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let shared = home(&format!("{MFA_PROFILE}tapcred_totp_secret_file = ~/seed\n"));
        let seed = shared.path().join("seed");
        std::fs::write(&seed, "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ").unwrap();
        std::fs::set_permissions(&seed, std::fs::Permissions::from_mode(0o644)).unwrap();
        v.push(("seed file readable by others", shared, "mfa"));
    }
    v
}

#[test]
fn every_bad_setup_has_a_doctor_answer_naming_it() {
    let setups = bad_setups();
    assert!(setups.len() >= 20);
    for (what, h, profile) in setups {
        // What the failing command says…
        let cp = h.run(&["credential-process", "--profile", profile]);
        assert_ne!(cp.code, 0, "{what}: the setup must be bad");
        let line = cp.stderr.trim();
        let msg = line
            .strip_prefix("tapcred: error: ")
            .unwrap_or_else(|| panic!("{what}: {line}"));
        let fix = msg.rsplit_once("; ").map(|(_, f)| f).unwrap_or(msg);
        // …doctor names too, with the fix as the next step and the same exit code.
        let before = h.snapshot();
        let out = doctor(&h, &["--profile", profile, "--offline"]);
        assert_eq!(out.code, cp.code, "{what}: exit code\n{}", out.stdout);
        assert!(
            out.stdout.contains("PROBLEM") && out.stdout.contains(msg),
            "{what}: doctor does not name the problem {msg:?}:\n{}",
            out.stdout
        );
        assert!(
            out.stdout.contains(&format!("next step: {fix}")),
            "{what}: next step should be {fix:?}:\n{}",
            out.stdout
        );
        assert!(
            !out.stdout.contains("secretpart") && !out.stdout.contains("GEZDGNBV"),
            "{what}: seed echoed"
        );
        no_secrets(&out);
        assert_eq!(
            before,
            h.snapshot(),
            "{what}: doctor must write nothing under HOME"
        );
        // And as JSON: the same problem, machine-readable.
        let j = doctor(&h, &["--profile", profile, "--offline", "--json"]).json();
        assert_eq!(j["exit_code"], cp.code, "{what}");
        assert_eq!(j["next_step"], fix, "{what}");
        assert!(
            j["checks"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["status"] == "problem" && c["message"] == msg),
            "{what}: {j}"
        );
    }
}

/// Through a real pcscd and the virtual YubiKey: the key is listed with serial, firmware and
/// account names, and the OATH account is the token source that answers — without a touch
/// and without any code being sent.
#[cfg(unix)]
#[test]
fn a_yubikey_through_pcscd_is_listed_and_answers() {
    use tapcred_testkit::pcsc_stack::PcscStack;
    use tapcred_testkit::virtual_yubikey::{Account, VirtualYubiKey, VykConfig};
    const LABEL: &str = "Amazon Web Services:toolkit-user@111111111111";
    let Some(mut stack) = PcscStack::start_or_skip("cli_doctor::a_yubikey_through_pcscd") else {
        return;
    };
    let seed = data_encoding::BASE32_NOPAD
        .decode(design::MFA_SEED_BASE32.as_bytes())
        .unwrap();
    let card = stack
        .insert(
            0,
            VirtualYubiKey::new(
                VykConfig::new()
                    .serial(7_654_322)
                    .account(Account::totp(LABEL, &seed).touch(true))
                    .account(Account::totp("GitHub:someone", b"another-seed-0123456789")),
            ),
        )
        .expect("insert the virtual YubiKey");
    let d = StsDouble::start_design().expect("start the STS double");
    let mut h = Home::design();
    h.set("AWS_ENDPOINT_URL_STS", &d.endpoint());
    private(&h);
    let out = doctor(&h, &["--profile", "mfa", "--json"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let j = out.json();
    let key = &j["yubikeys"][0];
    assert_eq!(key["serial"], 7_654_322, "{j}");
    assert!(
        !key["firmware"].as_str().unwrap_or_default().is_empty(),
        "{j}"
    );
    assert_eq!(key["reader"], card.reader_name());
    assert_eq!(
        key["oath_accounts"],
        serde_json::json!([LABEL, "GitHub:someone"]),
        "{j}"
    );
    let token = j["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["area"] == "token")
        .unwrap()["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        token.contains(&format!("OATH \"{LABEL}\"")) && token.contains("no software seed"),
        "{token}"
    );
    assert!(d.token_code_events().is_empty(), "doctor sends no code");
    let text = doctor(&h, &["--profile", "mfa"]);
    assert!(
        text.stdout.contains("YubiKey 7654322, firmware "),
        "{}",
        text.stdout
    );
}

/// Issue 17 item 14: a profile that works from a cached session but has no code source
/// left is not a PROBLEM: doctor says until when it works and what the next refresh needs.
#[test]
fn a_cached_session_without_a_code_source_is_a_warning() {
    let (_d, mut h) = setup();
    h.run(&["credential-process", "--profile", "mfa"]).ok();
    h.set("TAPCRED_TOTP_SECRET", "");
    let out = doctor(&h, &["--profile", "mfa", "--offline"]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert!(!out.stdout.contains("PROBLEM"), "{}", out.stdout);
    for needle in [
        "works until ",
        "from the cached session; the next refresh needs ",
        "$TAPCRED_TOTP_SECRET",
    ] {
        assert!(out.stdout.contains(needle), "{needle:?}:\n{}", out.stdout);
    }
}

/// The cache layer's warning (here: a file where the cache folder belongs) reaches doctor's
/// report as a cache note, once, with the fix; doctor itself asks and waits for nothing.
#[test]
fn an_unusable_cache_folder_is_reported_with_the_cache_layers_words() {
    let (_d, h) = setup();
    let dir = h.cache_dir();
    std::fs::create_dir_all(dir.parent().unwrap()).unwrap();
    std::fs::write(&dir, b"not a folder").unwrap();
    let out = doctor(&h, &["--profile", "mfa", "--json"]);
    let j = out.json();
    let notes: Vec<&str> = j["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["area"] == "cache")
        .map(|c| {
            assert_eq!(c["status"], "note", "{c}");
            c["message"].as_str().unwrap()
        })
        .collect();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].contains("is a regular file, not a directory")
            && notes[0].contains("set XDG_CACHE_HOME"),
        "{notes:?}"
    );
}

/// The lock and backup files older versions wrote beside the AWS files are listed (a note
/// each, the credentials backup with its plaintext warning), and the next edit removes the
/// unused lock.
#[test]
fn old_versions_lock_and_backup_files_are_listed() {
    let (_d, h) = setup();
    let aws = h.credentials_path().parent().unwrap().to_path_buf();
    std::fs::write(aws.join("config.tapcred.lock"), "").unwrap();
    std::fs::write(aws.join("credentials.tapcred.bak"), "[x]\n").unwrap();
    let out = doctor(&h, &["--profile", "mfa"]);
    assert_eq!(out.code, 0, "notes, not problems: {}", out.stdout);
    for want in [
        "config.tapcred.lock left by an older tapcred: an old lock file, not in use: tapcred's next edit of the file removes it",
        "credentials.tapcred.bak left by an older tapcred: an old backup: a plaintext copy of the credentials file",
        "rm ",
    ] {
        assert!(out.stdout.contains(want), "{want}: {}", out.stdout);
    }
    let r = h.run(&["configure", "--profile", "mfa", "--region", "eu-west-1"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!aws.join("config.tapcred.lock").exists());
    let out = doctor(&h, &["--profile", "mfa"]);
    assert!(
        !out.stdout.contains("config.tapcred.lock"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("credentials.tapcred.bak"),
        "{}",
        out.stdout
    );
}
