//! The AWS CLI v2 from Debian (`/usr/bin/aws`) as a real `credential_process` client of
//! tapcred, driven inside a tmux pane (a real terminal), with the OATH source on a virtual
//! YubiKey behind the real pcscd and an account that REQUIRES TOUCH:
//!
//! - the touch prompt shows on the terminal (read back with `tmux capture-pane`), and only
//!   then is the button pressed; the CLI's stdout stays clean JSON and its stderr never
//!   sees the prompt; the double accepted exactly one code, the seed's TOTP;
//! - without a press, the card's touch timeout ends with tapcred's one-line message in the
//!   CLI's error output, and the prompt is cleared from the terminal.
//!
//! AWS CLI 2.9.19 has no `AWS_ENDPOINT_URL*` support: `--endpoint-url` sends the CLI's own
//! `GetCallerIdentity` to the double, and tapcred gets `AWS_ENDPOINT_URL_STS` through the
//! environment the CLI passes to `credential_process`. Skips loudly without root / pcscd /
//! vpcd / `/usr/bin/aws` / tmux, unless CI=true.
#![cfg(unix)] // runs Linux test stacks (or Unix-only APIs); the Windows build is checked by clippy and Wine

#[path = "common/clients.rs"]
mod clients;
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use clients::{AWS_CLI, ClientHome, Source, Tmux, sh_quote, wait_file};
use tapcred_testkit::pcsc_stack::{CardHandle, PcscStack};
use tapcred_testkit::sts_double::{StsDouble, design};

const PANE_COLS: u16 = 200;
const PANE_ROWS: u16 = 40;

fn prerequisites(test: &str) -> bool {
    clients::require(
        test,
        "the AWS CLI v2 at /usr/bin/aws (apt-get install awscli)",
        Path::new(AWS_CLI).is_file(),
    ) && clients::require(
        test,
        "tmux (apt-get install tmux)",
        clients::tmux_path().is_some(),
    )
}

/// Everything one run needs: the double, pcscd with the touch-only card, the HOME.
struct Setup {
    double: StsDouble,
    card: CardHandle,
    home: ClientHome,
    serial: u32,
    _stack: PcscStack,
}

fn setup(test: &str, serial: u32, touch_timeout: Duration) -> Option<Setup> {
    if !prerequisites(test) {
        return None;
    }
    let mut stack = PcscStack::start_or_skip(test)?;
    let double = StsDouble::start_design().expect("start the STS double");
    // The account is named exactly the mfa_serial and requires touch.
    let card = stack
        .insert(
            0,
            clients::card(serial, design::MFA_SERIAL, true, touch_timeout),
        )
        .expect("insert the virtual YubiKey");
    let home = ClientHome::new(&double, Source::Oath);
    Some(Setup {
        double,
        card,
        home,
        serial,
        _stack: stack,
    })
}

/// The pane's command: the client environment as exports (not argv), then the CLI with
/// stdout and stderr captured to files, then the exit code, written last.
fn pane_script(s: &Setup) -> std::path::PathBuf {
    let h = &s.home;
    let mut text = String::from("#!/bin/sh\n");
    for (k, v) in h.env() {
        text.push_str(&format!("export {k}={}\n", sh_quote(&v)));
    }
    let f = |n: &str| sh_quote(&h.file(n).display().to_string());
    text.push_str(&format!("cd {}\n", f("")));
    text.push_str(&format!(
        "{AWS_CLI} --profile work sts get-caller-identity --endpoint-url {} --region us-east-1 --output json >{} 2>{}\n",
        sh_quote(&h.endpoint),
        f("cli.stdout"),
        f("cli.stderr"),
    ));
    text.push_str(&format!(
        "echo $? >{tmp}\nmv {tmp} {rc}\nexec sleep 600\n",
        tmp = f("cli.rc.tmp"),
        rc = f("cli.rc")
    ));
    let path = h.file("run-aws.sh");
    std::fs::write(&path, text).unwrap();
    path
}

fn read(h: &ClientHome, name: &str) -> String {
    std::fs::read_to_string(h.file(name)).unwrap_or_default()
}

fn prompt(s: &Setup) -> String {
    format!(
        "tapcred: Touch your YubiKey (serial {}) for {}",
        s.serial,
        design::MFA_SERIAL
    )
}

#[test]
fn aws_cli_touch_prompt_on_the_terminal_and_clean_json_on_stdout() {
    let test = "aws_cli_touch_prompt_on_the_terminal_and_clean_json_on_stdout";
    let Some(s) = setup(test, 5_150_001, Duration::from_secs(25)) else {
        return;
    };
    let button = s.card.button();
    let started = Instant::now();
    let tmux = Tmux::start(&pane_script(&s), PANE_COLS, PANE_ROWS);

    // Nothing is pressed until the prompt is on the terminal.
    let pane = wait_for_touch_prompt(&tmux, &s);
    let prompt_after = started.elapsed();
    assert!(pane.contains(&prompt(&s)), "prompt text: {pane:?}");
    assert!(
        button.wait_for_touch_request(Duration::from_secs(5)),
        "the prompt shows while the key is really waiting"
    );
    assert_eq!(button.touch_requests(), 1, "the card is asked once");
    assert!(
        s.double.token_code_events().is_empty(),
        "no code can reach STS before the touch"
    );
    assert!(button.press(), "the press satisfies the waiting CALCULATE");
    let pressed_at = Instant::now();

    let rc = wait_file(&s.home.file("cli.rc"), Duration::from_secs(60)).unwrap_or_else(|| {
        panic!(
            "the CLI did not finish\npane:\n{}\nstderr: {}",
            tmux.capture(),
            read(&s.home, "cli.stderr")
        )
    });
    let after_press = pressed_at.elapsed();
    let stdout = read(&s.home, "cli.stdout");
    let stderr = read(&s.home, "cli.stderr");
    assert_eq!(
        rc.trim(),
        "0",
        "aws exit code\nstdout: {stdout}\nstderr: {stderr}"
    );

    // stdout: clean JSON, the assumed role's identity, nothing from tapcred.
    let j: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("CLI stdout is not clean JSON ({e}): {stdout:?}"));
    let arn = j["Arn"].as_str().expect("Arn");
    assert!(arn.starts_with(clients::TOOLKIT_ROLE_SESSION), "{arn}");
    assert_eq!(j["Account"], design::ACCOUNT);
    assert!(
        !stdout.contains("tapcred:") && !stdout.contains("Touch"),
        "{stdout:?}"
    );
    // The prompt went to the terminal, not to the CLI's stderr either.
    assert!(
        !stderr.contains("Touch") && !stderr.contains("tapcred:"),
        "prompt leaked to stderr: {stderr:?}"
    );
    // The terminal: the prompt was replaced by a confirmation; no JSON on it.
    let pane = tmux.capture();
    assert!(pane.contains("tapcred: touch received"), "pane: {pane:?}");
    assert!(
        !pane.contains("\"Arn\""),
        "stdout must not reach the pane: {pane:?}"
    );

    // STS: one AssumeRole with the seed's TOTP, then the CLI's own GetCallerIdentity.
    clients::one_valid_code(&s.double);
    let stats = s.double.stats();
    assert_eq!(stats.ok("AssumeRole"), 1);
    assert_eq!(stats.calls("AssumeRole"), 1);
    assert_eq!(stats.ok("GetCallerIdentity"), 1);
    assert_eq!(button.touch_requests(), 1, "one touch for one call");
    eprintln!(
        "aws CLI via tapcred credential_process: prompt on the pane after {prompt_after:?}, CLI done {after_press:?} after the press"
    );
}

#[test]
fn aws_cli_touch_timeout_reports_tapcreds_message() {
    let test = "aws_cli_touch_timeout_reports_tapcreds_message";
    let timeout = Duration::from_secs(3);
    let Some(s) = setup(test, 5_150_002, timeout) else {
        return;
    };
    let button = s.card.button();
    let tmux = Tmux::start(&pane_script(&s), PANE_COLS, PANE_ROWS);
    let pane = wait_for_touch_prompt(&tmux, &s);
    let prompt_seen = Instant::now();
    assert!(pane.contains(&prompt(&s)), "prompt text: {pane:?}");
    // Never press.
    let rc = wait_file(&s.home.file("cli.rc"), Duration::from_secs(60)).unwrap_or_else(|| {
        panic!(
            "the CLI did not finish after the touch timeout\npane:\n{}",
            tmux.capture()
        )
    });
    let waited = prompt_seen.elapsed();
    let stdout = read(&s.home, "cli.stdout");
    let stderr = read(&s.home, "cli.stderr");
    assert_ne!(rc.trim(), "0", "the CLI must fail\nstderr: {stderr}");
    assert!(stdout.trim().is_empty(), "nothing on stdout: {stdout:?}");
    // The CLI relays tapcred's own line: what happened, on which key, what to do.
    let device = format!("YubiKey {}", s.serial);
    let line = stderr
        .lines()
        .find(|l| l.contains("tapcred: error: timed out waiting for a touch on"))
        .unwrap_or_else(|| panic!("tapcred's message missing from the CLI's stderr: {stderr:?}"));
    assert!(line.contains(&device), "names the key: {line:?}");
    assert!(
        line.contains("touch the key when it blinks"),
        "says what to do: {line:?}"
    );
    assert!(
        // (polling the pane lags the prompt a little, so allow 1 s)
        waited + Duration::from_secs(1) >= timeout,
        "failed after {waited:?}, before the card's {timeout:?} touch timeout"
    );
    // The prompt was cleared from the terminal (it is no longer true).
    let pane = tmux.capture();
    assert!(
        !pane.contains("Touch your YubiKey"),
        "stale prompt left on the terminal: {pane:?}"
    );
    // No code was sent: nothing reached STS's MFA check, no role was assumed.
    assert!(s.double.token_code_events().is_empty());
    assert_eq!(s.double.stats().calls("AssumeRole"), 0);
    assert_eq!(s.double.stats().calls("GetCallerIdentity"), 0);
    assert!(button.touch_requests() >= 1);
    eprintln!(
        "aws CLI touch timeout: failed {waited:?} after the prompt (card timeout {timeout:?}), {} touch request(s)",
        button.touch_requests()
    );
}

/// The headless recipe (no pcscd, no terminal needed): the same `[profile work]` with
/// `tapcred_token = software` behind a wrapper that exports the seed. Runs wherever
/// `/usr/bin/aws` exists, so the CLI path is covered even without root.
#[test]
fn aws_cli_credential_process_software_seed() {
    let test = "aws_cli_credential_process_software_seed";
    if !clients::require(
        test,
        "the AWS CLI v2 at /usr/bin/aws (apt-get install awscli)",
        Path::new(AWS_CLI).is_file(),
    ) {
        return;
    }
    let d = StsDouble::start_design().expect("start the STS double");
    let h = ClientHome::new(&d, Source::Software);
    let t = Instant::now();
    let out = h
        .command(AWS_CLI)
        .args(["--profile", "work", "sts", "get-caller-identity"])
        .args(["--endpoint-url", &h.endpoint, "--region", "us-east-1"])
        .args(["--output", "json"])
        .output()
        .expect("run the AWS CLI");
    let elapsed = t.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "aws failed\nstdout: {stdout}\nstderr: {stderr}"
    );
    let j: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("CLI stdout is not clean JSON ({e}): {stdout:?}"));
    let arn = j["Arn"].as_str().expect("Arn");
    assert!(arn.starts_with(clients::TOOLKIT_ROLE_SESSION), "{arn}");
    assert!(!stderr.contains("tapcred:"), "{stderr:?}");
    clients::one_valid_code(&d);
    assert_eq!(d.stats().ok("AssumeRole"), 1);
    assert_eq!(d.stats().ok("GetCallerIdentity"), 1);
    eprintln!("aws CLI via tapcred credential_process (software seed): {elapsed:?}");
}

/// The pane once tapcred's touch prompt is on it (fails after 60 s with what was seen).
fn wait_for_touch_prompt(tmux: &Tmux, s: &Setup) -> String {
    tmux.wait_for(Duration::from_secs(60), |p| {
        p.contains("Touch your YubiKey")
    })
    .unwrap_or_else(|| {
        panic!(
            "no touch prompt on the terminal after 60 s\npane:\n{}\ncli stderr: {}",
            tmux.capture(),
            read(&s.home, "cli.stderr")
        )
    })
}
