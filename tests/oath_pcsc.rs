//! The OATH token source through the REAL pcscd (vpcd in a private network namespace) with
//! the project's virtual YubiKey, using tapcred's own PC/SC transport. Skips loudly
//! without root/pcscd/vpcd unless CI=true (then it must run).
#![cfg(unix)] // runs Linux test stacks (or Unix-only APIs); the Windows build is checked by clippy and Wine

mod common;
use common::rfc_totp;
use std::ffi::CString;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tapcred::ErrorKind;
use tapcred::token::device::Backend;
use tapcred::token::oath;
use tapcred::token::pcsc::PcscBackend;
use tapcred::token::{CodeRequest, TokenSettings, TokenSource};
use tapcred::ui::{RecordingUi, UiEvent};
use tapcred_testkit::pcsc_stack::{CardHandle, PcscStack, reader_name, wait_card_present};
use tapcred_testkit::virtual_yubikey::{Account, VirtualYubiKey, VykConfig};

const RFC_KEY: &[u8] = b"12345678901234567890";
const ARN: &str = "arn:aws:iam::111111111111:mfa/alice";
const AWS_LABEL: &str = "Amazon Web Services:alice@111111111111";

fn settings(serial: Option<u32>) -> TokenSettings {
    TokenSettings {
        profile: "mfa".into(),
        yubikey_serial: serial,
        ..TokenSettings::default()
    }
}

fn req(at: u64) -> CodeRequest<'static> {
    CodeRequest {
        mfa_serial: ARN,
        profile: "mfa",
        at,
    }
}

fn key(serial: u32, seed: &[u8]) -> VirtualYubiKey {
    VirtualYubiKey::new(
        VykConfig::new()
            .serial(serial)
            .touch_timeout(Duration::from_secs(5))
            .account(Account::totp(AWS_LABEL, seed))
            .account(Account::totp("Touchy:alice", seed).touch(true)),
    )
}

#[test]
fn oath_source_reads_the_right_code_through_pcscd() {
    let Some(mut stack) =
        PcscStack::start_or_skip("oath_source_reads_the_right_code_through_pcscd")
    else {
        return;
    };
    let card = stack.insert(0, key(4242, RFC_KEY)).expect("insert card");
    let ui = RecordingUi::new();
    // The public entry point, i.e. the real PC/SC backend.
    card.vyk().clear_history();
    let t = Instant::now();
    let mut src = oath::open(&settings(None), ARN, &ui).expect("open");
    eprintln!(
        "open (find key, SELECT, CALCULATE_ALL) through pcscd: {:?}",
        t.elapsed()
    );
    // One key, no serial configured: the card saw OATH SELECT + CALCULATE_ALL and nothing
    // else (no management SELECT + READ_CONFIG for a serial that decides nothing).
    let seen: Vec<(u8, u8)> = card.vyk().history().iter().map(|r| (r.ins, r.p1)).collect();
    assert_eq!(seen, vec![(0xA4, 0x04), (0xA4, 0x00)], "{seen:02X?}");
    assert_eq!(src.serial(), None);
    // With tapcred_yubikey_serial the key is identified first (the serial decides).
    card.vyk().clear_history();
    let by_serial = oath::open(&settings(Some(4242)), ARN, &ui).expect("open by serial");
    assert_eq!(by_serial.serial(), Some(4242));
    let ins: Vec<u8> = card.vyk().history().iter().map(|r| r.ins).collect();
    assert_eq!(ins, vec![0xA4, 0x1D, 0xA4, 0xA4], "{ins:02X?}");
    drop(by_serial);
    assert_eq!(src.account(), AWS_LABEL);
    assert_eq!(src.reader(), reader_name(0));
    for at in [59u64, 1111111109, 2000000000] {
        card.vyk().clear_history();
        let t = Instant::now();
        let code = src.code(&req(at), &ui).expect("code");
        eprintln!("one code through pcscd: {:?}", t.elapsed());
        assert_eq!(&*code.digits, &rfc_totp(RFC_KEY, at, 30, 6), "t={at}");
        assert_eq!(src.last_apdu_count(), 2);
        let ins: Vec<u8> = card.vyk().history().iter().map(|r| r.ins).collect();
        assert_eq!(ins, vec![0xA4, 0xA2]);
    }
    // The USB-style ATR + firmware 5 makes the client use extended APDUs: the CALCULATE
    // went out as `00 A2 00 01 00 Lc_hi Lc_lo …`.
    let calc = card.vyk().history()[1].clone();
    let data_len = 2 + AWS_LABEL.len() + 2 + 8;
    assert_eq!(calc.len, 7 + data_len, "extended CALCULATE");
    assert!(ui.events().is_empty());

    // Touch through pcscd: the CALCULATE blocks inside pcscd until the button is pressed.
    let button = card.button();
    let ui = RecordingUi {
        on_touch: Some(Box::new(move || {
            let b = button.clone();
            std::thread::spawn(move || b.press_when_requested(Duration::from_secs(5)));
        })),
        ..RecordingUi::default()
    };
    let s = TokenSettings {
        oath_account: Some("Touchy:alice".into()),
        ..settings(None)
    };
    let mut src = oath::open(&s, ARN, &ui).expect("open touch account");
    let code = src.code(&req(59), &ui).expect("touch code");
    assert_eq!(&*code.digits, &rfc_totp(RFC_KEY, 59, 30, 6));
    assert_eq!(
        ui.events(),
        vec![
            UiEvent::TouchWait(format!("Touch your YubiKey (serial 4242) for {ARN}")),
            UiEvent::TouchDone(true)
        ]
    );
    // `auto` (no software seed, no terminal) picks the key's account.
    let env: std::collections::HashMap<String, String> = Default::default();
    let seeds = tapcred::vault::VaultSeeds::from_env(&env);
    let mut auto = tapcred::token::select(&settings(None), ARN, &env, &seeds, &RecordingUi::new())
        .expect("auto finds the OATH account");
    assert!(
        auto.describe().contains(&reader_name(0)),
        "{}",
        auto.describe()
    );
    assert_eq!(
        &*auto.code(&req(59), &RecordingUi::new()).unwrap().digits,
        &rfc_totp(RFC_KEY, 59, 30, 6)
    );
    let devices = oath::list_devices(&RecordingUi::new()).expect("devices");
    assert_eq!(devices.len(), 1, "the empty second vpcd slot is skipped");
    assert_eq!(devices[0].serial, Some(4242));
    assert_eq!(devices[0].accounts.len(), 2);
}

#[test]
fn several_keys_through_pcscd() {
    let Some(mut stack) = PcscStack::start_or_skip("several_keys_through_pcscd") else {
        return;
    };
    let _a = stack.insert(0, key(1111, RFC_KEY)).expect("insert 0");
    let _b = stack
        .insert(1, key(2222, b"a different seed!!"))
        .expect("insert 1");
    let ui = RecordingUi::new();
    let err = oath::open(&settings(None), ARN, &ui).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Token);
    assert!(
        err.message().contains("1111") && err.message().contains("2222"),
        "{err}"
    );
    assert!(err.message().contains("tapcred_yubikey_serial"), "{err}");
    assert!(oath::probe(&settings(None), ARN, &ui).is_err());
    for (serial, seed) in [(2222u32, &b"a different seed!!"[..]), (1111, RFC_KEY)] {
        let mut src = oath::open(&settings(Some(serial)), ARN, &ui).expect("open by serial");
        assert_eq!(src.serial(), Some(serial));
        let code = src.code(&req(59), &ui).unwrap();
        assert_eq!(&*code.digits, &rfc_totp(seed, 59, 30, 6));
    }
}

#[test]
fn busy_key_and_removed_key_through_pcscd() {
    let Some(mut stack) = PcscStack::start_or_skip("busy_key_and_removed_key_through_pcscd") else {
        return;
    };
    let card = stack.insert(0, key(4242, RFC_KEY)).expect("insert card");
    let ui = RecordingUi::new();
    let mut src = oath::open(&settings(None), ARN, &ui).expect("open");

    // Another program holds the key exclusively: bounded retries, then the holder's name.
    let ctx = pcsc::Context::establish(pcsc::Scope::User).unwrap();
    let name = CString::new(reader_name(0)).unwrap();
    let holder = ctx
        .connect(&name, pcsc::ShareMode::Exclusive, pcsc::Protocols::ANY)
        .unwrap();
    let t = Instant::now();
    let err = src.code(&req(59), &ui).unwrap_err();
    let waited = t.elapsed();
    assert!(err.message().contains("scdaemon"), "{err}");
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    assert!(holder.disconnect(pcsc::Disposition::LeaveCard).is_ok());
    assert_eq!(
        &*src.code(&req(59), &ui).unwrap().digits,
        &rfc_totp(RFC_KEY, 59, 30, 6)
    );

    // The key is pulled out while the touch CALCULATE waits inside pcscd.
    let slot: Arc<Mutex<Option<CardHandle>>> = Arc::new(Mutex::new(Some(card)));
    let button = slot.lock().unwrap().as_ref().unwrap().button();
    let s2 = slot.clone();
    let ui = RecordingUi {
        on_touch: Some(Box::new(move || {
            let b = button.clone();
            let s = s2.clone();
            std::thread::spawn(move || {
                if b.wait_for_touch_request(Duration::from_secs(5))
                    && let Some(card) = s.lock().unwrap().take()
                {
                    card.remove();
                }
            });
        })),
        ..RecordingUi::default()
    };
    let s = TokenSettings {
        oath_account: Some("Touchy:alice".into()),
        ..settings(None)
    };
    let mut src = oath::open(&s, ARN, &ui).expect("open touch account");
    let err = src.code(&req(59), &ui).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Token);
    assert!(
        err.message().contains("removed") || err.message().contains("no longer"),
        "{err}"
    );
    assert_eq!(ui.events().last(), Some(&UiEvent::TouchDone(false)));
    // Now the reader is empty: auto moves on with a reason.
    wait_card_present(&reader_name(0), false, Duration::from_secs(5)).unwrap();
    let why = oath::probe(&settings(None), ARN, &RecordingUi::new())
        .unwrap()
        .unwrap_err();
    assert!(why.message().contains("no YubiKey found"), "{why}");
}

/// pcscd not running: the error carries the install/start hint. Runs in a child process
/// whose libpcsclite points at a socket that does not exist (the library reads
/// `PCSCLITE_CSOCK_NAME` once per process), so it needs neither root nor pcscd.
#[test]
fn pcscd_not_running_gives_the_install_hint() {
    if std::env::var_os("TAPCRED_TEST_NO_PCSCD_CHILD").is_some() {
        let err = PcscBackend::new().readers().unwrap_err();
        assert_eq!(err.kind, ErrorKind::Token);
        assert_eq!(
            err.reason(),
            Some(tapcred::error::Reason::ServiceMissing),
            "{err:?}"
        );
        assert!(err.message().contains("pcscd"), "{err}");
        assert!(
            err.message()
                .contains("sudo apt install pcscd && sudo systemctl start pcscd.socket"),
            "{err}"
        );
        let err = oath::open(&settings(None), ARN, &RecordingUi::new()).unwrap_err();
        assert!(err.message().contains("pcscd"), "{err}");
        // auto: no pcscd is a reason to move on, not a failure.
        let why = oath::probe(&settings(None), ARN, &RecordingUi::new())
            .unwrap()
            .unwrap_err();
        assert!(why.message().contains("pcscd"), "{why}");
        assert_eq!(
            why.reason(),
            Some(tapcred::error::Reason::ServiceMissing),
            "{why:?}"
        );
        println!("CHILD-OK");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "pcscd_not_running_gives_the_install_hint",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("TAPCRED_TEST_NO_PCSCD_CHILD", "1")
        .env("PCSCLITE_CSOCK_NAME", dir.path().join("no-pcscd.comm"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("CHILD-OK"),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
