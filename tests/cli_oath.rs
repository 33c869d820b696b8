//! The whole chain through real parts: the `tapcred` binary → its PC/SC transport → a real
//! pcscd → vpcd → the virtual YubiKey; the code goes to the strict STS double, which verifies
//! it. Skips loudly without root/pcscd/vpcd unless CI=true (then it must run).
#![cfg(unix)] // runs Linux test stacks (or Unix-only APIs); the Windows build is checked by clippy and Wine

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use common::{Home, totp_sha1};
use tapcred_testkit::pcsc_stack::PcscStack;
use tapcred_testkit::sts_double::{StsDouble, design};
use tapcred_testkit::virtual_yubikey::{Account, VirtualYubiKey, VykConfig};

const SERIAL: u32 = 7_654_321;
const AWS_LABEL: &str = "Amazon Web Services:toolkit-user@111111111111";

fn seed() -> Vec<u8> {
    data_encoding::BASE32_NOPAD
        .decode(design::MFA_SEED_BASE32.as_bytes())
        .unwrap()
}

fn card(touch: bool) -> VirtualYubiKey {
    VirtualYubiKey::new(
        VykConfig::new()
            .serial(SERIAL)
            .touch_timeout(Duration::from_secs(3))
            .account(Account::totp(AWS_LABEL, &seed()).touch(touch))
            .account(Account::totp("GitHub:someone", b"another-seed-0123456789")),
    )
}

/// design profiles (fixtures/aws/design) with `tapcred_token` set on the `mfa` profile; no software seed.
fn home(d: &StsDouble, token: &str) -> Home {
    let mut h = Home::empty();
    h.write_config(&common::design_fixture("config").replacen(
        "mfa_serial = arn:aws:iam::111111111111:mfa/toolkit-user\n",
        &format!(
            "mfa_serial = arn:aws:iam::111111111111:mfa/toolkit-user\ntapcred_token = {token}\n"
        ),
        1,
    ));
    h.write_credentials(&common::design_fixture("credentials"));
    h.set("AWS_ENDPOINT_URL_STS", &d.endpoint());
    h
}

fn one_valid_code(d: &StsDouble) {
    let events = d.token_code_events();
    assert_eq!(events.len(), 1, "{events:?}");
    let step = events[0]
        .matched_step
        .expect("the double accepted the code");
    assert_eq!(events[0].code, totp_sha1(&seed(), step * 30));
}

#[test]
fn credential_process_with_oath_and_auto_through_pcscd() {
    let Some(mut stack) =
        PcscStack::start_or_skip("cli_oath::credential_process_with_oath_and_auto_through_pcscd")
    else {
        return;
    };
    let _card = stack
        .insert(0, card(false))
        .expect("insert the virtual YubiKey");
    for token in ["oath", "auto"] {
        let d = StsDouble::start_design().unwrap();
        let h = home(&d, token);
        let out = h.run(&["credential-process", "--profile", "mfa"]);
        out.ok();
        assert!(
            out.json()["AccessKeyId"]
                .as_str()
                .unwrap()
                .starts_with("ASIA"),
            "{token}"
        );
        assert!(
            !out.stderr.contains("Touch"),
            "no touch prompt for a non-touch account: {}",
            out.stderr
        );
        one_valid_code(&d);
    }

    // devices and code through the same stack.
    let h = Home::design();
    let out = h.run(&["devices", "--json"]);
    out.ok();
    let devices = out.json();
    assert_eq!(devices[0]["serial"], SERIAL);
    let names: Vec<&str> = devices[0]["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&AWS_LABEL) && names.contains(&"GitHub:someone"),
        "{names:?}"
    );
    let human = h.run(&["devices"]);
    human.ok();
    assert!(
        human.stdout.contains(&SERIAL.to_string()) && human.stdout.contains(AWS_LABEL),
        "{}",
        human.stdout
    );

    let before = tapcred::clock::now_unix();
    let out = h.run(&["code", "--account", AWS_LABEL, "--json"]);
    let after = tapcred::clock::now_unix();
    out.ok();
    let code = out.json()["code"].as_str().unwrap().to_owned();
    let expected: Vec<String> = (before / 30..=after / 30 + 1)
        .map(|s| totp_sha1(&seed(), s * 30))
        .collect();
    assert!(expected.contains(&code), "{code} not in {expected:?}");
}

#[test]
fn touch_prompt_then_press_then_credentials() {
    let Some(mut stack) =
        PcscStack::start_or_skip("cli_oath::touch_prompt_then_press_then_credentials")
    else {
        return;
    };
    let card = stack
        .insert(0, card(true))
        .expect("insert the virtual YubiKey");
    let d = StsDouble::start_design().unwrap();
    let h = home(&d, "oath");
    // No controlling terminal here, so the prompt goes to stderr; press only once it shows.
    let mut child = h
        .cmd(&["credential-process", "--profile", "mfa"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let button = card.button();
    let watcher = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("Touch your YubiKey") {
                // The prompt is written right before the blocking CALCULATE; the card must
                // then be waiting for the touch.
                assert!(
                    button.wait_for_touch_request(Duration::from_secs(2)),
                    "prompt without a waiting key"
                );
                assert!(
                    line.contains(&SERIAL.to_string()) && line.contains(design::MFA_SERIAL),
                    "{line}"
                );
                assert!(button.press(), "the key was waiting for a touch");
            }
            seen.push(line);
        }
        seen
    });
    let out = child.wait_with_output().unwrap();
    let lines = watcher.join().unwrap();
    assert!(out.status.success(), "{lines:?}");
    assert!(
        lines.iter().any(|l| l.contains("Touch your YubiKey")),
        "{lines:?}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("stdout is only the JSON");
    assert!(json["AccessKeyId"].as_str().unwrap().starts_with("ASIA"));
    one_valid_code(&d);
}

#[test]
fn touch_timeout_is_a_clear_error() {
    let Some(mut stack) = PcscStack::start_or_skip("cli_oath::touch_timeout_is_a_clear_error")
    else {
        return;
    };
    let _card = stack
        .insert(0, card(true))
        .expect("insert the virtual YubiKey");
    let d = StsDouble::start_design().unwrap();
    let h = home(&d, "oath");
    let out = h.run(&["credential-process", "--profile", "mfa"]);
    assert!(out.stderr.contains("Touch your YubiKey"), "{}", out.stderr);
    let last = out.stderr.lines().last().unwrap_or_default().to_owned();
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(
        last.starts_with("tapcred: error: ") && last.contains("touch"),
        "{last}"
    );
    assert!(out.stdout.is_empty());
    assert_eq!(
        d.stats().requests,
        0,
        "nothing is sent to STS without a code"
    );
}

/// ykman (Yubico's own client) and tapcred read the same virtual key through the same pcscd
/// and must print the same code, with and without an applet password.
#[test]
fn tapcred_and_ykman_agree_on_the_code() {
    let ykman = std::path::PathBuf::from(
        std::env::var("TAPCRED_VENV").unwrap_or_else(|_| "/opt/tapcred-venv".into()),
    )
    .join("bin/ykman");
    if !ykman.exists() {
        tapcred_testkit::ci::skip(
            "cli_oath::tapcred_and_ykman_agree_on_the_code",
            &format!("ykman is missing at {} (set TAPCRED_VENV)", ykman.display()),
        );
        return;
    }
    let Some(mut stack) = PcscStack::start_or_skip("cli_oath::tapcred_and_ykman_agree_on_the_code")
    else {
        return;
    };
    for password in [None, Some("open sesame 42")] {
        let mut cfg = VykConfig::new()
            .serial(SERIAL)
            .account(Account::totp(AWS_LABEL, &seed()));
        if let Some(p) = password {
            cfg = cfg.password(p);
        }
        let card = stack.insert(0, VirtualYubiKey::new(cfg)).expect("insert");
        let mut h = Home::design();
        if let Some(p) = password {
            h.set("TAPCRED_OATH_PASSWORD", p);
        }
        let ykman_home = tempfile::tempdir().unwrap();
        // Both reads must fall in one 30 s window; retry once across a boundary.
        let mut agreed = false;
        for _ in 0..2 {
            // tapcred never reads a code with under 3 s left (it waits for the next window,
            // and records that one as used); start early enough in a window that it does not.
            let left = 30 - tapcred::clock::now_unix() % 30;
            if left < 6 {
                std::thread::sleep(std::time::Duration::from_secs(left + 1));
            }
            let start = tapcred::clock::now_unix();
            let ours = h.run(&["code", "--account", AWS_LABEL]);
            ours.ok();
            let mut args = vec![
                "--reader".to_owned(),
                card.reader_name(),
                "oath".into(),
                "accounts".into(),
                "code".into(),
            ];
            if let Some(p) = password {
                args.extend(["-p".to_owned(), p.to_owned()]);
            }
            args.extend(["--single".to_owned(), AWS_LABEL.to_owned()]);
            let theirs = std::process::Command::new(&ykman)
                .args(&args)
                .env("HOME", ykman_home.path())
                .output()
                .unwrap();
            let end = tapcred::clock::now_unix();
            assert!(
                theirs.status.success(),
                "ykman: {}",
                String::from_utf8_lossy(&theirs.stderr)
            );
            if start / 30 != end / 30 {
                continue;
            }
            let theirs = String::from_utf8_lossy(&theirs.stdout).trim().to_owned();
            assert_eq!(
                ours.stdout.trim(),
                theirs,
                "tapcred and ykman disagree (password: {})",
                password.is_some()
            );
            assert_eq!(
                theirs,
                totp_sha1(&seed(), start),
                "both must equal RFC 6238"
            );
            agreed = true;
            break;
        }
        assert!(agreed, "two reads straddled a window boundary twice");
        drop(card);
    }
}
