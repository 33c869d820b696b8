//! `tapcred enroll` to a YubiKey end to end: the real binary → its PC/SC transport → a real
//! pcscd → vpcd → the virtual YubiKey, with IAM and STS at the strict double. The walk of
//! issue 9 (`configure` → `enroll --touch` → `credential-process` with a touch; Yubico's ykman
//! lists the new account), and the OATH failure points: a full applet and an unanswered touch
//! are rolled back (card, double and files as before); no key and a wrong password are found
//! before anything is created. Skips loudly without root/pcscd/vpcd unless CI=true.

#![cfg(unix)] // runs Linux test stacks (setsid, kill, pcscd); the Windows build is checked by clippy and Wine

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Home, Run};
use tapcred_testkit::pcsc_stack::{self, PcscStack};
use tapcred_testkit::sts_double::{Fault, SDK_ATTEMPTS, StsDouble, design};
use tapcred_testkit::virtual_yubikey::{Account, VirtualYubiKey, VykConfig};

const KEY_SERIAL: u32 = 5_150_977;
const SERIAL: &str = "arn:aws:iam::111111111111:mfa/toolkit-user";
const OTHER: &str = "GitHub:someone";

fn card_config() -> VykConfig {
    VykConfig::new()
        .serial(KEY_SERIAL)
        .touch_timeout(Duration::from_secs(15))
        .account(Account::totp(OTHER, b"another-seed-0123456789"))
}

const CONFIG: &str = "[profile mfa]\nsource_profile = toolkit-user\nrole_arn = arn:aws:iam::111111111111:role/toolkit-role\n";

fn home(d: &StsDouble) -> Home {
    common::enroll::home(d, CONFIG)
}

/// Run `tapcred ARGS` (no terminal: prompts go to stderr), pressing the virtual button each
/// time a touch prompt shows. Returns the run, every stderr line, and the touches.
fn run_pressing(
    h: &Home,
    args: &[&str],
    card: &pcsc_stack::CardHandle,
    stdin: Option<String>,
) -> (Run, Vec<String>, usize) {
    let mut child = h
        .cmd_detached(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    let stderr = child.stderr.take().unwrap();
    let button = card.button();
    let watcher = std::thread::spawn(move || {
        let (mut lines, mut touches) = (Vec::new(), 0);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("Touch your YubiKey") {
                assert!(
                    button.wait_for_touch_request(Duration::from_secs(5)),
                    "a touch prompt while the key waits for a touch: {line}"
                );
                assert!(button.press());
                touches += 1;
            }
            lines.push(line);
        }
        (lines, touches)
    });
    let out = child.wait_with_output().unwrap();
    let (lines, touches) = watcher.join().unwrap();
    let mut run = Run::from(out);
    run.stderr = lines.join("\n");
    (run, lines, touches)
}

/// credential-process JSON with the secret and the token elided, for the transcript.
fn redact(stdout: &str) -> String {
    let json: serde_json::Value = serde_json::from_str(stdout).unwrap();
    format!(
        "{{\"Version\":1,\"AccessKeyId\":\"{}\",\"SecretAccessKey\":\"…\",\"SessionToken\":\"…\",\"Expiration\":\"{}\"}}",
        json["AccessKeyId"].as_str().unwrap(),
        json["Expiration"].as_str().unwrap()
    )
}

fn ykman() -> PathBuf {
    let venv = std::env::var("TAPCRED_VENV").unwrap_or_else(|_| "/opt/tapcred-venv".into());
    Path::new(&venv).join("bin/ykman")
}

#[test]
fn configure_then_enroll_touch_then_credential_process_through_pcscd() {
    let test = "cli_enroll_oath::configure_then_enroll_touch_then_credential_process_through_pcscd";
    let Some(mut stack) = PcscStack::start_or_skip(test) else {
        return;
    };
    let card = stack
        .insert(0, VirtualYubiKey::new(card_config()))
        .expect("insert the virtual YubiKey");
    let d = common::enroll::new_user_double();
    let mut h = Home::empty();
    h.set("AWS_ENDPOINT_URL", &d.endpoint());
    let mut transcript = Vec::new();

    // 1. configure: keys from stdin.
    let args = [
        "configure",
        "--profile",
        "mfa",
        "--source-profile",
        "toolkit-user",
        "--role-arn",
        design::ROLE_ARN,
        "--keys-from-stdin",
    ];
    let keys = format!("{}\n{}\n", design::ACCESS_KEY_ID, design::SECRET_ACCESS_KEY);
    let (out, lines, _) = run_pressing(&h, &args, &card, Some(keys));
    out.ok();
    transcript.push((
        format!("tapcred {}", args.join(" ")),
        lines,
        out.stdout.clone(),
    ));

    // 2. enroll --touch: three touches (two codes for IAM, one for STS), each announced.
    let args = ["enroll", "--profile", "mfa", "--touch"];
    let (out, lines, touches) = run_pressing(&h, &args, &card, None);
    out.ok();
    assert_eq!(touches, 3, "{lines:#?}");
    for n in 1..=3 {
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&format!("touch {n} of 3 is for"))),
            "touch {n} is announced with its reason: {lines:#?}"
        );
    }
    assert!(
        out.stdout.contains(SERIAL) && out.stdout.contains(&KEY_SERIAL.to_string()),
        "{}",
        out.stdout
    );
    transcript.push((
        format!("tapcred {}", args.join(" ")),
        lines,
        out.stdout.clone(),
    ));
    let ids = card.vyk().credential_ids();
    assert_eq!(
        ids,
        [OTHER, SERIAL],
        "the seed went onto the key, named by its ARN"
    );
    assert_eq!(card.vyk().requires_touch(SERIAL), Some(true));
    let config = std::fs::read_to_string(h.config_path()).unwrap();
    assert!(
        config.contains(&format!("mfa_serial = {SERIAL}")),
        "{config}"
    );
    assert!(
        !config.contains("tapcred_oath_account"),
        "the ARN name is found without it: {config}"
    );
    assert_eq!(d.iam_state().user_devices[design::USER_NAME], [SERIAL]);

    // 3. credential-process: cached by enroll's proof (no touch), then a fresh MFA call with
    //    a touch.
    let args = ["credential-process", "--profile", "mfa"];
    let (out, lines, touches) = run_pressing(&h, &args, &card, None);
    out.ok();
    assert_eq!(touches, 0);
    transcript.push((
        format!("tapcred {}", args.join(" ")),
        lines,
        redact(&out.stdout),
    ));
    let args = ["credential-process", "--profile", "mfa", "--no-cache"];
    let (out, lines, touches) = run_pressing(&h, &args, &card, None);
    out.ok();
    assert_eq!(touches, 1, "{lines:#?}");
    let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(json["AccessKeyId"].as_str().unwrap().starts_with("ASIA"));
    let redacted = redact(&out.stdout);
    transcript.push((format!("tapcred {}", args.join(" ")), lines, redacted));

    // Every code the double saw came from the card's new account, none twice.
    let events = d.token_code_events();
    assert_eq!(
        events.len(),
        4,
        "2 for EnableMFADevice, 2 for STS: {events:#?}"
    );
    let steps: Vec<u64> = events.iter().map(|e| e.matched_step.unwrap()).collect();
    let mut sorted = steps.clone();
    sorted.dedup();
    assert_eq!(sorted.len(), 4, "four different windows: {steps:?}");

    // Yubico's ykman sees the account on the key.
    if tapcred_testkit::ci::require(
        test,
        &format!("ykman at {} (set TAPCRED_VENV)", ykman().display()),
        ykman().is_file(),
    ) {
        let reader = pcsc_stack::reader_name(0);
        let out = Command::new(ykman())
            .args(["--reader", &reader, "oath", "accounts", "list"])
            .env("HOME", h.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let list = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{list} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(list.lines().any(|l| l.trim() == SERIAL), "{list}");
        transcript.push((
            format!("ykman --reader '{reader}' oath accounts list"),
            Vec::new(),
            list.into_owned(),
        ));
    }

    // The walk as a person sees it (stderr is the terminal here).
    eprintln!("---- transcript ----");
    for (cmd, lines, stdout) in transcript {
        eprintln!("$ {cmd}");
        for l in lines {
            eprintln!("{l}");
        }
        for l in stdout.lines() {
            eprintln!("{l}");
        }
    }
}

#[test]
fn oath_failures_roll_back_or_create_nothing() {
    let test = "cli_enroll_oath::oath_failures_roll_back_or_create_nothing";
    let Some(mut stack) = PcscStack::start_or_skip(test) else {
        return;
    };

    // No key in the reader: nothing is created.
    {
        let d = common::enroll::new_user_double();
        let h = home(&d);
        let before = common::enroll::aws_files(&h);
        let out = Run::from(
            h.cmd_detached(&["enroll", "--profile", "mfa"])
                .output()
                .unwrap(),
        );
        assert_eq!(out.code, 4, "{}", out.stderr);
        assert!(!out.stderr.contains("undo"), "{}", out.stderr);
        assert_eq!(d.calls("CreateVirtualMFADevice"), 0);
        assert_eq!(common::enroll::aws_files(&h), before);
    }

    // A wrong OATH password: found before anything is created.
    {
        let card = stack
            .insert(0, VirtualYubiKey::new(card_config().password("right")))
            .expect("insert");
        let d = common::enroll::new_user_double();
        let mut h = home(&d);
        h.set("TAPCRED_OATH_PASSWORD", "wrong");
        let before = common::enroll::aws_files(&h);
        let out = Run::from(
            h.cmd_detached(&["enroll", "--profile", "mfa"])
                .output()
                .unwrap(),
        );
        assert_eq!(out.code, 4, "{}", out.stderr);
        assert!(
            out.stderr.to_lowercase().contains("password"),
            "{}",
            out.stderr
        );
        assert_eq!(d.calls("CreateVirtualMFADevice"), 0);
        assert_eq!(common::enroll::aws_files(&h), before);
        assert_eq!(card.vyk().credential_ids(), [OTHER]);
        card.remove();
    }

    // A full applet: the PUT fails after the device was created → rolled back.
    {
        let mut cfg = card_config();
        cfg.capacity = Some(1);
        let card = stack.insert(0, VirtualYubiKey::new(cfg)).expect("insert");
        let d = common::enroll::new_user_double();
        let h = home(&d);
        let before = common::enroll::aws_files(&h);
        let out = Run::from(
            h.cmd_detached(&["enroll", "--profile", "mfa"])
                .output()
                .unwrap(),
        );
        assert_eq!(out.code, 4, "{}", out.stderr);
        for needle in [
            "created virtual MFA device",
            "undo: deleted virtual MFA device",
            "everything was undone",
        ] {
            assert!(out.stderr.contains(needle), "{needle}: {}", out.stderr);
        }
        assert!(d.iam_state().virtual_devices.is_empty());
        assert_eq!(card.vyk().credential_ids(), [OTHER]);
        assert_eq!(common::enroll::aws_files(&h), before);
        card.remove();
    }

    // No touch within the key's timeout: the OATH account and the device are removed.
    {
        let card = stack
            .insert(
                0,
                VirtualYubiKey::new(card_config().touch_timeout(Duration::from_secs(2))),
            )
            .expect("insert");
        let d = common::enroll::new_user_double();
        let h = home(&d);
        let before = common::enroll::aws_files(&h);
        let out = Run::from(
            h.cmd_detached(&["enroll", "--profile", "mfa", "--touch"])
                .output()
                .unwrap(),
        );
        assert_eq!(out.code, 4, "{}", out.stderr);
        for needle in [
            "Touch your YubiKey",
            &format!("undo: deleted OATH account \"{SERIAL}\""),
            "undo: deleted virtual MFA device",
            "everything was undone",
        ] {
            assert!(out.stderr.contains(needle), "{needle}: {}", out.stderr);
        }
        assert_eq!(
            card.vyk().credential_ids(),
            [OTHER],
            "the card is as before"
        );
        assert!(d.iam_state().virtual_devices.is_empty());
        assert_eq!(d.calls("EnableMFADevice"), 0);
        assert_eq!(common::enroll::aws_files(&h), before);
        card.remove();
    }
}

/// EnableMFADevice commits and its answer is lost; DeactivateMFADevice is then unreachable:
/// the OATH account holding the seed of the enabled device stays on the key (and the
/// journal); `enroll --undo`, once IAM answers, deactivates and deletes both.
#[test]
fn enable_answer_lost_keeps_the_oath_account_until_undo() {
    let test = "cli_enroll_oath::enable_answer_lost_keeps_the_oath_account_until_undo";
    let Some(mut stack) = PcscStack::start_or_skip(test) else {
        return;
    };
    let card = stack
        .insert(0, VirtualYubiKey::new(card_config()))
        .expect("insert");
    let d = common::enroll::new_user_double();
    let h = home(&d);
    let before = common::enroll::aws_files(&h);
    d.lose_answer("EnableMFADevice", 1, Fault::BrokenAnswer);
    d.iam_fail_next("DeactivateMFADevice", SDK_ATTEMPTS as u32, "ServiceFailure");
    let out = Run::from(
        h.cmd_detached(&["enroll", "--profile", "mfa"])
            .output()
            .unwrap(),
    );
    assert_eq!(out.code, 6, "{}", out.stderr);
    assert!(
        d.iam_state().user_devices[design::USER_NAME].contains(&SERIAL.to_owned()),
        "IAM enabled it"
    );
    assert_eq!(
        card.vyk().credential_ids(),
        [OTHER, SERIAL],
        "the seed of the enabled device stays: {}",
        out.stderr
    );
    assert!(
        out.stderr.contains("aws iam deactivate-mfa-device"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("tapcred enroll --profile mfa --undo"),
        "{}",
        out.stderr
    );
    let out = Run::from(
        h.cmd_detached(&["enroll", "--profile", "mfa", "--undo"])
            .output()
            .unwrap(),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains(&format!("undo: deleted OATH account \"{SERIAL}\"")),
        "{}",
        out.stderr
    );
    assert_eq!(card.vyk().credential_ids(), [OTHER]);
    assert!(d.iam_state().virtual_devices.is_empty());
    assert_eq!(common::enroll::aws_files(&h), before);
    card.remove();
}
