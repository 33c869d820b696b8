//! tapcred's YKOATH client against the project's virtual YubiKey (in memory, no pcscd):
//! codes equal RFC 6238, touch, passwords, HOTP counters, periods, account matching,
//! several keys, faults, and the APDU count for one code.

mod common;
use common::rfc_totp;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[path = "common/vyk_transport.rs"]
mod vyk_transport;

use tapcred::token::device::{Backend, Connection};
use tapcred::token::oath::{self, CredentialId, HashAlgo, NewCredential, OathType, Session};
use tapcred::token::transport::ApduTransport;
use tapcred::token::{CodeRequest, TokenSettings, TokenSource};
use tapcred::ui::{RecordingUi, UiEvent};
use tapcred::{ErrorKind, Reason};
use tapcred_testkit::virtual_yubikey::{Account, Fault, VirtualYubiKey, VykConfig, VykHandle};
use vyk_transport::VykConn;

const RFC_KEY: &[u8] = b"12345678901234567890";
const ARN: &str = "arn:aws:iam::111111111111:mfa/alice";
const AWS_LABEL: &str = "Amazon Web Services:alice@111111111111";
const READER0: &str = "Yubico YubiKey OTP+FIDO+CCID 00 00";
const READER1: &str = "Yubico YubiKey OTP+FIDO+CCID 00 01";

/// Virtual keys in named readers; a reader without a key is an empty slot.
struct VykBackend {
    readers: Vec<(String, Option<Arc<Mutex<VirtualYubiKey>>>)>,
}

impl Backend for VykBackend {
    fn readers(&self) -> tapcred::Result<Vec<String>> {
        Ok(self.readers.iter().map(|r| r.0.clone()).collect())
    }
    fn connect(&self, reader: &str) -> tapcred::Result<Option<Box<dyn Connection>>> {
        let slot = self.readers.iter().find(|r| r.0 == reader).expect("reader");
        Ok(slot.1.as_ref().and_then(|k| {
            // An exclusive PC/SC connection with LeaveCard does not reset the card, so the
            // virtual card is not power-cycled here; a removed card is an empty reader.
            if k.lock().unwrap().handle().is_removed() {
                return None;
            }
            Some(Box::new(VykConn(k.clone())) as Box<dyn Connection>)
        }))
    }
}

fn backend(keys: Vec<(&str, Option<VirtualYubiKey>)>) -> (Arc<VykBackend>, Vec<VykHandle>) {
    let mut handles = Vec::new();
    let readers = keys
        .into_iter()
        .map(|(name, k)| {
            let k = k.map(|k| {
                handles.push(k.handle());
                Arc::new(Mutex::new(k))
            });
            (name.to_owned(), k)
        })
        .collect();
    (Arc::new(VykBackend { readers }), handles)
}

fn one_key(cfg: VykConfig) -> (Arc<VykBackend>, VykHandle) {
    let (b, mut h) = backend(vec![
        ("Laptop Smart Card Reader 00 00", None),
        (READER0, Some(VirtualYubiKey::new(cfg))),
        (READER1, None),
    ]);
    (b, h.remove(0))
}

fn settings() -> TokenSettings {
    TokenSettings {
        profile: "mfa".into(),
        ..TokenSettings::default()
    }
}

fn no_env() -> HashMap<String, String> {
    HashMap::new()
}

fn req(at: u64) -> CodeRequest<'static> {
    CodeRequest {
        mfa_serial: ARN,
        profile: "mfa",
        at,
    }
}

fn code_at(src: &mut oath::OathSource, at: u64, ui: &RecordingUi) -> tapcred::Result<String> {
    src.code(&req(at), ui).map(|c| c.digits.to_string())
}

#[test]
fn a_cold_code_for_now_is_select_plus_calculate_all() {
    // Keep matching and the code in one 30 s window, as the engine does when it need not wait.
    let left = 30 - tapcred::clock::now_unix() % 30;
    if left < 4 {
        std::thread::sleep(std::time::Duration::from_secs(left));
    }
    let (b, h) = one_key(
        VykConfig::new()
            .account(Account::totp(AWS_LABEL, RFC_KEY))
            .account(Account::totp("GitHub:alice", b"another seed 123")),
    );
    let ui = RecordingUi::new();
    h.clear_history();
    let mut src = oath::open_with(b, &no_env(), &settings(), ARN, &ui).unwrap();
    let now = tapcred::clock::now_unix();
    let c = src.code(&req(now), &ui).unwrap();
    assert_eq!(&*c.digits, &rfc_totp(RFC_KEY, now, 30, 6));
    assert_eq!(src.last_apdu_count(), 2, "SELECT + CALCULATE_ALL");
    // What the card saw, in all: OATH SELECT and CALCULATE_ALL. One key and no serial
    // configured: no identification (management SELECT + READ_CONFIG), and no second
    // connection with a CALCULATE.
    let seen: Vec<(u8, u8)> = h.history().iter().map(|r| (r.ins, r.p1)).collect();
    assert_eq!(seen, vec![(0xA4, 0x04), (0xA4, 0x00)], "{seen:02X?}");
    assert_eq!(src.serial(), None, "the serial was not read");

    // Another window (the engine waited): a fresh connection, SELECT + CALCULATE.
    h.clear_history();
    let later = now + 30;
    let c = src.code(&req(later), &ui).unwrap();
    assert_eq!(&*c.digits, &rfc_totp(RFC_KEY, later, 30, 6));
    assert_eq!(src.last_apdu_count(), 2);
    let ins: Vec<u8> = h.history().iter().map(|r| r.ins).collect();
    assert_eq!(ins, vec![0xA4, 0xA2]);
}

#[test]
fn codes_equal_rfc6238_and_cost_two_apdus() {
    let (b, h) = one_key(
        VykConfig::new()
            .account(Account::totp(AWS_LABEL, RFC_KEY).digits(8))
            .account(Account::totp("GitHub:alice", b"another seed 123")),
    );
    let ui = RecordingUi::new();
    let mut src = oath::open_with(b, &no_env(), &settings(), ARN, &ui).unwrap();
    assert_eq!(src.account(), AWS_LABEL);
    // One key, no serial configured: the serial is not read; the key is named by its reader.
    assert_eq!(src.serial(), None);
    assert_eq!(src.period(), 30);
    assert!(src.describe().contains(READER0), "{}", src.describe());
    for (at, want) in [
        (59, "94287082"),
        (1111111109, "07081804"),
        (2000000000, "69279037"),
    ] {
        h.clear_history();
        let c = src.code(&req(at), &ui).unwrap();
        assert_eq!(&*c.digits, want, "t={at}");
        assert_eq!(&*c.digits, &rfc_totp(RFC_KEY, at, 30, 8));
        assert_eq!(
            (c.window_start, c.window_end),
            (at - at % 30, at - at % 30 + 30)
        );
        // One code after connecting: SELECT + CALCULATE, as counted by the client and as
        // seen by the card.
        assert_eq!(src.last_apdu_count(), 2);
        let seen: Vec<u8> = h.history().iter().map(|r| r.ins).collect();
        assert_eq!(seen, vec![0xA4, 0xA2], "SELECT then CALCULATE");
        assert_eq!(h.history()[1].p2, 0x01, "truncated CALCULATE");
    }
    assert!(
        ui.events().is_empty(),
        "no touch prompt for a non-touch account"
    );
}

#[test]
fn open_reads_the_serial_only_when_it_decides_something() {
    // One key, no tapcred_yubikey_serial: OATH SELECT + CALCULATE_ALL, nothing else.
    let (b, h) = one_key(VykConfig::new().account(Account::totp(AWS_LABEL, RFC_KEY)));
    let ui = RecordingUi::new();
    let src = oath::open_with(b, &no_env(), &settings(), ARN, &ui).unwrap();
    let ins: Vec<(u8, u8)> = h.history().iter().map(|r| (r.ins, r.p1)).collect();
    assert_eq!(ins, vec![(0xA4, 0x04), (0xA4, 0x00)]);
    assert_eq!(src.serial(), None);

    // A configured serial must be checked: management SELECT + READ_CONFIG first.
    let (b, h) = one_key(VykConfig::new().account(Account::totp(AWS_LABEL, RFC_KEY)));
    let s = TokenSettings {
        yubikey_serial: Some(12345678),
        ..settings()
    };
    let src = oath::open_with(b, &no_env(), &s, ARN, &ui).unwrap();
    let ins: Vec<(u8, u8)> = h.history().iter().map(|r| (r.ins, r.p1)).collect();
    assert_eq!(
        ins,
        vec![(0xA4, 0x04), (0x1D, 0x00), (0xA4, 0x04), (0xA4, 0x00)]
    );
    assert_eq!(src.serial(), Some(12345678));

    // Several keys: each is identified (to choose, or to list them in the error).
    let (b, hs) = two_keys();
    assert!(oath::open_with(b, &no_env(), &settings(), ARN, &ui).is_err());
    for h in hs {
        let ins: Vec<u8> = h.history().iter().map(|r| r.ins).collect();
        assert_eq!(ins, vec![0xA4, 0x1D], "{ins:02X?}");
    }
}

#[test]
fn touch_prompts_and_the_virtual_button() {
    let (b, h) = one_key(
        VykConfig::new()
            .touch_timeout(Duration::from_secs(5))
            .account(Account::totp(AWS_LABEL, RFC_KEY).touch(true)),
    );
    let button = h.button();
    let ui = RecordingUi {
        on_touch: Some(Box::new(move || {
            let b = button.clone();
            std::thread::spawn(move || b.press_when_requested(Duration::from_secs(5)));
        })),
        ..RecordingUi::default()
    };
    let mut src = oath::open_with(b, &no_env(), &settings(), ARN, &ui).unwrap();
    assert!(src.requires_touch());
    assert!(ui.events().is_empty(), "CALCULATE_ALL needs no touch");
    let code = code_at(&mut src, 59, &ui).unwrap();
    assert_eq!(code, rfc_totp(RFC_KEY, 59, 30, 6));
    assert_eq!(
        ui.events(),
        vec![
            UiEvent::TouchWait(format!("Touch your YubiKey (serial 12345678) for {ARN}")),
            UiEvent::TouchDone(true),
        ]
    );
    assert_eq!(h.button().touch_requests(), 1);
}

#[test]
fn touch_timeout_is_a_token_error() {
    let (b, _h) = one_key(
        VykConfig::new()
            .touch_timeout(Duration::from_millis(200))
            .account(Account::totp(AWS_LABEL, RFC_KEY).touch(true)),
    );
    let ui = RecordingUi::new();
    let mut src = oath::open_with(b, &no_env(), &settings(), ARN, &ui).unwrap();
    let err = code_at(&mut src, 59, &ui).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Token);
    assert_eq!(
        err.message(),
        "timed out waiting for a touch on YubiKey 12345678; run again and touch the key when it blinks"
    );
    assert_eq!(ui.events().last(), Some(&UiEvent::TouchDone(false)));
}

#[test]
fn password_from_env_from_prompt_wrong_and_missing() {
    let cfg = || {
        VykConfig::new()
            .password("hunter2")
            .account(Account::totp(AWS_LABEL, RFC_KEY))
    };
    // From the environment (headless).
    let (b, _) = one_key(cfg());
    let env: HashMap<String, String> =
        [("TAPCRED_OATH_PASSWORD".to_owned(), "hunter2".to_owned())].into();
    let ui = RecordingUi::new();
    let mut src = oath::open_with(b, &env, &settings(), ARN, &ui).unwrap();
    assert_eq!(
        code_at(&mut src, 59, &ui).unwrap(),
        rfc_totp(RFC_KEY, 59, 30, 6)
    );
    assert!(ui.events().is_empty(), "no prompt when the env var is set");
    // The unlocked code costs SELECT + VALIDATE + CALCULATE.
    assert_eq!(src.last_apdu_count(), 3);
    assert!(!format!("{src:?}").contains("hunter2"));

    // From the prompt.
    let (b, _) = one_key(cfg());
    let ui = RecordingUi::new();
    ui.secrets.lock().unwrap().push("hunter2".into());
    let mut src = oath::open_with(b, &no_env(), &settings(), ARN, &ui).unwrap();
    assert_eq!(
        ui.events(),
        vec![UiEvent::AskSecret(format!(
            "Password for the OATH applet of the YubiKey in reader \"{READER0}\": "
        ))]
    );
    assert_eq!(
        code_at(&mut src, 59, &ui).unwrap(),
        rfc_totp(RFC_KEY, 59, 30, 6)
    );

    // A touch during the prompt types an OTP: caught and asked again.
    let (b, _) = one_key(cfg());
    let ui = RecordingUi::new();
    ui.secrets.lock().unwrap().extend([
        "ccccccjlkgjdhtbhnlirvjgvgnhbtkvkbdkcjjulfngl".into(),
        "hunter2".into(),
    ]);
    let mut src = oath::open_with(b, &no_env(), &settings(), ARN, &ui).unwrap();
    assert!(
        ui.events()
            .iter()
            .any(|e| matches!(e, UiEvent::Warn(w) if w.contains("looked like a YubiKey OTP"))),
        "{:?}",
        ui.events()
    );
    assert_eq!(
        code_at(&mut src, 59, &ui).unwrap(),
        rfc_totp(RFC_KEY, 59, 30, 6)
    );

    // Wrong.
    let (b, _) = one_key(cfg());
    let env: HashMap<String, String> =
        [("TAPCRED_OATH_PASSWORD".to_owned(), "hunter3".to_owned())].into();
    let err = oath::open_with(b.clone(), &env, &settings(), ARN, &RecordingUi::new()).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Token);
    assert!(
        err.message().starts_with(&format!(
            "wrong OATH password for the YubiKey in reader \"{READER0}\""
        )),
        "{err}"
    );
    assert!(!err.message().contains("hunter"));
    // A wrong password is something to fix now, not a reason for auto to move on.
    assert!(oath::probe_with(b, &env, &settings(), ARN, &RecordingUi::new()).is_err());

    // Missing: both options explained.
    let (b, _) = one_key(cfg());
    let err = oath::open_with(b, &no_env(), &settings(), ARN, &RecordingUi::new()).unwrap_err();
    assert!(err.message().contains("TAPCRED_OATH_PASSWORD"), "{err}");
    assert!(err.message().contains("terminal"), "{err}");
}

#[test]
fn hotp_counters_never_move() {
    let (b, h) = one_key(
        VykConfig::new()
            .account(Account::hotp("Counter:alice@111111111111", RFC_KEY, 7))
            .account(Account::hotp("Other:hotp", RFC_KEY, 0).touch(true))
            .account(Account::totp(AWS_LABEL, RFC_KEY)),
    );
    let ui = RecordingUi::new();
    let mut src = oath::open_with(b.clone(), &no_env(), &settings(), ARN, &ui).unwrap();
    assert_eq!(src.account(), AWS_LABEL, "HOTP is never a candidate");
    code_at(&mut src, 59, &ui).unwrap();
    let report = oath::list_devices_with(&*b, &no_env(), &ui).unwrap();
    assert_eq!(report[0].accounts.len(), 3);
    let (_, code) = oath::code_for_with(b.clone(), &no_env(), AWS_LABEL, &settings(), &ui).unwrap();
    assert_eq!(code.digits.len(), 6);
    // A configured HOTP account is refused rather than calculated.
    let s = TokenSettings {
        oath_account: Some("Other:hotp".into()),
        ..settings()
    };
    let err = oath::open_with(b, &no_env(), &s, ARN, &ui).unwrap_err();
    assert!(err.message().contains("HOTP"), "{err}");
    assert_eq!(h.hotp_counter("Counter:alice@111111111111"), Some(7));
    assert_eq!(h.hotp_counter("Other:hotp"), Some(0));
}

#[test]
fn sixty_second_period_is_calculated_with_its_own_step() {
    let (b, h) =
        one_key(VykConfig::new().account(Account::totp("alice@111111111111", RFC_KEY).period(60)));
    let ui = RecordingUi::new();
    let mut src = oath::open_with(b.clone(), &no_env(), &settings(), ARN, &ui).unwrap();
    assert_eq!(src.account(), "60/alice@111111111111");
    assert_eq!(src.period(), 60);
    for at in [59u64, 89, 1111111109] {
        let c = src.code(&req(at), &ui).unwrap();
        assert_eq!(&*c.digits, &rfc_totp(RFC_KEY, at, 60, 6), "t={at}");
        assert_eq!(c.window_end - c.window_start, 60);
    }
    assert_ne!(rfc_totp(RFC_KEY, 89, 60, 6), rfc_totp(RFC_KEY, 89, 30, 6));
    // The session's all-codes path also recalculates it (CALCULATE_ALL used the 30-s step).
    let conn = b.connect(READER0).unwrap().unwrap();
    let mut s = Session::open(conn, None).unwrap();
    h.clear_history();
    let codes = s.codes(89).unwrap();
    assert_eq!(
        codes[0].code.as_deref().map(|c| c.as_str()),
        Some(rfc_totp(RFC_KEY, 89, 60, 6).as_str())
    );
    let ins: Vec<u8> = h.history().iter().map(|r| r.ins).collect();
    assert_eq!(ins, vec![0xA4, 0xA2], "CALCULATE_ALL then one CALCULATE");
    let devices = oath::list_devices_with(&*b, &no_env(), &ui).unwrap();
    assert_eq!(devices[0].accounts[0].period, Some(60));
}

#[test]
fn account_matching_rules() {
    let ui = RecordingUi::new();
    let open = |accounts: Vec<Account>, s: TokenSettings| {
        let mut cfg = VykConfig::new();
        for a in accounts {
            cfg = cfg.account(a);
        }
        let (b, _) = one_key(cfg);
        oath::open_with(b, &no_env(), &s, ARN, &RecordingUi::new()).map(|s| s.account().to_owned())
    };
    // Exact mfa_serial name (aws-vault convention) beats the AWS label.
    assert_eq!(
        open(
            vec![
                Account::totp(AWS_LABEL, RFC_KEY),
                Account::totp(ARN, RFC_KEY)
            ],
            settings()
        )
        .unwrap(),
        ARN
    );
    // The configured account beats everything.
    let s = TokenSettings {
        oath_account: Some("Work:x".into()),
        ..settings()
    };
    assert_eq!(
        open(
            vec![
                Account::totp(ARN, RFC_KEY),
                Account::totp("Work:x", RFC_KEY)
            ],
            s.clone()
        )
        .unwrap(),
        "Work:x"
    );
    let err = open(vec![Account::totp(ARN, RFC_KEY)], s).unwrap_err();
    assert!(
        err.message().contains("tapcred_oath_account \"Work:x\""),
        "{err}"
    );
    // NAME@ prefix under any issuer.
    assert_eq!(
        open(
            vec![Account::totp("Corp SSO:alice@corp", RFC_KEY)],
            settings()
        )
        .unwrap(),
        "Corp SSO:alice@corp"
    );
    // Ambiguity lists the candidates and names the key to set.
    let err = open(
        vec![
            Account::totp(AWS_LABEL, RFC_KEY),
            Account::totp("Corp SSO:alice@corp", RFC_KEY),
        ],
        settings(),
    )
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Token);
    assert!(err.message().contains(AWS_LABEL), "{err}");
    assert!(err.message().contains("Corp SSO:alice@corp"), "{err}");
    assert!(err.message().contains("tapcred_oath_account"), "{err}");
    // None: the accounts present are listed.
    let err = open(vec![Account::totp("GitHub:alice", RFC_KEY)], settings()).unwrap_err();
    assert!(err.message().contains("\"GitHub:alice\""), "{err}");
    // probe: no match lets auto move on; ambiguity does not.
    let (b, _) = one_key(VykConfig::new().account(Account::totp("GitHub:alice", RFC_KEY)));
    let why = oath::probe_with(b, &no_env(), &settings(), ARN, &ui)
        .unwrap()
        .unwrap_err();
    assert!(why.message().contains("GitHub:alice"), "{why}");
    assert_eq!(why.reason(), Some(Reason::NoAccount), "{why:?}");
    let (b, _) = one_key(
        VykConfig::new()
            .account(Account::totp(AWS_LABEL, RFC_KEY))
            .account(Account::totp("x:alice@corp", RFC_KEY)),
    );
    assert!(oath::probe_with(b, &no_env(), &settings(), ARN, &ui).is_err());
}

fn two_keys() -> (Arc<VykBackend>, Vec<VykHandle>) {
    backend(vec![
        (
            READER0,
            Some(VirtualYubiKey::new(
                VykConfig::new()
                    .serial(1111)
                    .account(Account::totp(AWS_LABEL, RFC_KEY)),
            )),
        ),
        (
            READER1,
            Some(VirtualYubiKey::new(
                VykConfig::new()
                    .serial(2222)
                    .account(Account::totp(AWS_LABEL, b"a different seed!!")),
            )),
        ),
    ])
}

#[test]
fn several_keys_need_a_serial() {
    let ui = RecordingUi::new();
    let (b, _) = two_keys();
    let err = oath::open_with(b.clone(), &no_env(), &settings(), ARN, &ui).unwrap_err();
    assert!(
        err.message().contains("1111") && err.message().contains("2222"),
        "{err}"
    );
    assert!(err.message().contains("tapcred_yubikey_serial"), "{err}");
    assert!(oath::probe_with(b.clone(), &no_env(), &settings(), ARN, &ui).is_err());
    for (serial, seed) in [(2222u32, &b"a different seed!!"[..]), (1111, RFC_KEY)] {
        let s = TokenSettings {
            yubikey_serial: Some(serial),
            ..settings()
        };
        let mut src = oath::open_with(b.clone(), &no_env(), &s, ARN, &ui).unwrap();
        assert_eq!(src.serial(), Some(serial));
        assert_eq!(
            code_at(&mut src, 59, &ui).unwrap(),
            rfc_totp(seed, 59, 30, 6)
        );
    }
    let s = TokenSettings {
        yubikey_serial: Some(3333),
        ..settings()
    };
    let err = oath::open_with(b.clone(), &no_env(), &s, ARN, &ui).unwrap_err();
    assert!(
        err.message().contains("3333") && err.message().contains("1111"),
        "{err}"
    );
    let devices = oath::list_devices_with(&*b, &no_env(), &ui).unwrap();
    let serials: Vec<_> = devices.iter().map(|d| d.serial).collect();
    assert_eq!(serials, vec![Some(1111), Some(2222)]);
}

#[test]
fn serial_from_the_otp_applet_when_management_is_absent() {
    let (b, _) = one_key(
        VykConfig::new()
            .serial(7654321)
            .without_management()
            .account(Account::totp(AWS_LABEL, RFC_KEY)),
    );
    let s = TokenSettings {
        yubikey_serial: Some(7654321),
        ..settings()
    };
    let src = oath::open_with(b, &no_env(), &s, ARN, &RecordingUi::new()).unwrap();
    assert_eq!(src.serial(), Some(7654321));
}

#[test]
fn faults_are_errors_not_panics() {
    let ui = RecordingUi::new();
    let fresh = || one_key(VykConfig::new().account(Account::totp(AWS_LABEL, RFC_KEY)));

    // Faults apply one per APDU in order; `Truncate(usize::MAX)` lets one through intact.
    // Card pulled during CALCULATE.
    let (b, h) = fresh();
    let mut src = oath::open_with(b, &no_env(), &settings(), ARN, &ui).unwrap();
    h.inject(Fault::Truncate(usize::MAX)); // SELECT untouched
    h.inject(Fault::Remove);
    let err = code_at(&mut src, 59, &ui).unwrap_err();
    assert!(err.message().contains("removed"), "{err}");
    // Removed before connecting: the reader is empty now.
    let err = code_at(&mut src, 59, &ui).unwrap_err();
    assert!(err.message().contains("no longer in reader"), "{err}");
    h.reinsert();
    assert_eq!(
        code_at(&mut src, 59, &ui).unwrap(),
        rfc_totp(RFC_KEY, 59, 30, 6)
    );

    // Truncated responses at every length of the CALCULATE answer.
    for n in 0..9 {
        let (b, h) = fresh();
        let mut src = oath::open_with(b, &no_env(), &settings(), ARN, &ui).unwrap();
        h.inject(Fault::Truncate(usize::MAX));
        h.inject(Fault::Truncate(n));
        let r = code_at(&mut src, 59, &ui);
        assert!(r.is_err(), "truncated to {n} bytes: {r:?}");
    }
    // Truncated CALCULATE_ALL during open.
    for n in [0usize, 1, 2, 5, 20] {
        let (b, h) = fresh();
        // OATH SELECT passes (one key, no serial: no identification APDUs before it).
        h.inject(Fault::Truncate(usize::MAX));
        h.inject(Fault::Truncate(n));
        assert!(
            oath::open_with(b, &no_env(), &settings(), ARN, &ui).is_err(),
            "{n}"
        );
    }
    // Odd status words on CALCULATE: Nitrokey's 6985 (auth) and 6A82 (not found).
    let (b, h) = fresh();
    let mut src = oath::open_with(b, &no_env(), &settings(), ARN, &ui).unwrap();
    h.inject(Fault::Truncate(usize::MAX));
    h.inject(Fault::Sw(0x6985));
    let err = code_at(&mut src, 59, &ui).unwrap_err();
    assert!(err.message().contains("password"), "{err}");
    h.inject(Fault::Truncate(usize::MAX));
    h.inject(Fault::Sw(0x6A82));
    let err = code_at(&mut src, 59, &ui).unwrap_err();
    assert!(err.message().contains("no longer on the key"), "{err}");
    h.inject(Fault::Truncate(usize::MAX));
    h.inject(Fault::Corrupt);
    let _ = code_at(&mut src, 59, &ui); // a flipped byte: any outcome but a panic
    // A key without the OATH applet: auto moves on (its OATH SELECT is the first APDU).
    let (b, h) = fresh();
    h.inject(Fault::Sw(0x6A82));
    let why = oath::probe_with(b, &no_env(), &settings(), ARN, &ui)
        .unwrap()
        .unwrap_err();
    assert!(why.message().contains("no OATH application"), "{why}");
    assert_eq!(why.reason(), None, "{why:?}");
}

#[test]
fn list_devices_reports_accounts_and_locked_keys() {
    let (b, _) = backend(vec![
        (
            READER0,
            Some(VirtualYubiKey::new(
                VykConfig::new()
                    .serial(1111)
                    .account(Account::totp(AWS_LABEL, RFC_KEY).digits(8))
                    .account(Account::totp("Touchy:bob", RFC_KEY).touch(true))
                    .account(Account::hotp("Counter:c", RFC_KEY, 3))
                    .account(Account::totp("ACME:slow", RFC_KEY).period(60)),
            )),
        ),
        (
            READER1,
            Some(VirtualYubiKey::new(
                VykConfig::new()
                    .serial(2222)
                    .password("pw")
                    .account(Account::totp("Secret:x", RFC_KEY)),
            )),
        ),
    ]);
    let ui = RecordingUi::new();
    let d = oath::list_devices_with(&*b, &no_env(), &ui).unwrap();
    assert_eq!(d.len(), 2);
    assert_eq!(d[0].firmware.as_deref(), Some("5.4.3"));
    assert_eq!(d[0].form_factor.as_deref(), Some("USB-A keychain"));
    assert_eq!(d[0].reader, READER0);
    let acc: HashMap<&str, &oath::AccountReport> =
        d[0].accounts.iter().map(|a| (a.name.as_str(), a)).collect();
    assert_eq!(acc[AWS_LABEL].digits, Some(8));
    assert_eq!(acc[AWS_LABEL].touch, Some(false));
    assert_eq!(
        acc[AWS_LABEL].issuer.as_deref(),
        Some("Amazon Web Services")
    );
    assert_eq!(acc["Touchy:bob"].touch, Some(true));
    assert_eq!(acc["Counter:c"].kind, OathType::Hotp);
    assert_eq!(acc["Counter:c"].period, None);
    assert_eq!(acc["60/ACME:slow"].period, Some(60));
    assert_eq!(acc["60/ACME:slow"].algorithm, Some(HashAlgo::Sha1));
    assert!(d[1].password_set && d[1].locked && d[1].accounts.is_empty());
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(json[0]["serial"], 1111);
    assert_eq!(json[0]["accounts"][0]["type"], "totp");
    // With the password available the locked key is listed too.
    let env: HashMap<String, String> =
        [("TAPCRED_OATH_PASSWORD".to_owned(), "pw".to_owned())].into();
    let d = oath::list_devices_with(&*b, &env, &ui).unwrap();
    assert!(!d[1].locked);
    assert_eq!(d[1].accounts[0].name, "Secret:x");
}

#[test]
fn code_for_by_account_name_or_mfa_serial() {
    let (b, _) = one_key(
        VykConfig::new()
            .account(Account::totp(AWS_LABEL, RFC_KEY))
            .account(Account::totp("GitHub:alice", b"github seed 1234")),
    );
    let ui = RecordingUi::new();
    let now = tapcred::clock::now_unix();
    let (name, code) =
        oath::code_for_with(b.clone(), &no_env(), "GitHub:alice", &settings(), &ui).unwrap();
    assert_eq!(name, "GitHub:alice");
    assert!(code.window_start <= now + 1 && now < code.window_end + 1);
    assert_eq!(
        &*code.digits,
        &rfc_totp(b"github seed 1234", code.window_start, 30, 6)
    );
    let (name, code) = oath::code_for_with(b, &no_env(), ARN, &settings(), &ui).unwrap();
    assert_eq!(name, AWS_LABEL);
    assert_eq!(&*code.digits, &rfc_totp(RFC_KEY, code.window_start, 30, 6));
}

#[test]
fn put_and_delete_for_enrollment() {
    let (b, h) = one_key(VykConfig::new().password("pw"));
    let conn = b.connect(READER0).unwrap().unwrap();
    let ext = conn.extended_max();
    let mut s = Session::open(conn, ext).unwrap();
    let key = oath::codec::derive_key(b"pw", &s.info().salt.clone());
    s.validate(&key).unwrap();
    let cred = NewCredential {
        id: CredentialId {
            period: 30,
            issuer: Some("Amazon Web Services".into()),
            account: "alice@111111111111".into(),
        },
        kind: OathType::Totp,
        algo: HashAlgo::Sha1,
        digits: 6,
        secret: oath::codec::decode_base32_secret("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ").unwrap(),
        touch: true,
        counter: 0,
    };
    assert!(!format!("{cred:?}").contains("GEZD"));
    s.put(&cred).unwrap();
    assert_eq!(h.credential_ids(), vec![AWS_LABEL.to_owned()]);
    assert_eq!(h.requires_touch(AWS_LABEL), Some(true));
    s.delete(AWS_LABEL.as_bytes()).unwrap();
    assert!(h.credential_ids().is_empty());
    assert_eq!(s.delete(b"nope").unwrap_err(), oath::OathError::NotFound);
}

/// Records every exchange (for the transcripts in `fixtures/apdu/`).
struct Recorder<'a> {
    card: &'a mut VirtualYubiKey,
    lines: Vec<String>,
}

impl ApduTransport for Recorder<'_> {
    fn transmit(&mut self, apdu: &[u8]) -> tapcred::Result<Vec<u8>> {
        let reply = self.card.transmit(apdu);
        self.lines
            .push(format!("> {}", data_encoding::HEXLOWER.encode(apdu)));
        self.lines
            .push(format!("< {}", data_encoding::HEXLOWER.encode(&reply)));
        Ok(reply)
    }
}

/// The transcripts in `fixtures/apdu/` (replayed by the unit tests, which check every
/// APDU the client sends against them) are the client's real conversation with the
/// virtual YubiKey, byte for byte. `TAPCRED_RECORD_FIXTURES=1` rewrites them.
#[test]
fn fixtures_are_recorded_from_the_virtual_yubikey() {
    use tapcred_testkit::virtual_yubikey::Algorithm;
    type Scenario = fn(&mut Session<&mut Recorder<'_>>);
    let salt = [0x4b, 0xb7, 0xa7, 0xfa, 0xd7, 0xaf, 0x40, 0x1b];
    let cases: Vec<(&str, &str, VykConfig, Scenario)> = vec![
        (
            "calculate_rfc6238.txt",
            "SELECT + CALCULATE (truncated) at t=59 for an 8-digit RFC 6238 credential: 94287082",
            VykConfig::new()
                .name_salt(salt)
                .account(Account::totp(AWS_LABEL, RFC_KEY).digits(8)),
            |s| {
                s.calculate(
                    AWS_LABEL.as_bytes(),
                    &oath::codec::totp_challenge(59, 30),
                    false,
                )
                .unwrap();
            },
        ),
        (
            "calculate_all_mixed.txt",
            "t=59: CALCULATE_ALL (40-byte chunks, 61xx + SEND REMAINING), then the 60-s credential again with its own step; touch and HOTP not calculated",
            VykConfig::new()
                .name_salt(salt)
                .max_chunk(40)
                .account(Account::totp(AWS_LABEL, RFC_KEY))
                .account(Account::totp("ACME:slow", RFC_KEY).period(60))
                .account(Account::totp("Touchy:bob", RFC_KEY).touch(true))
                .account(Account::hotp("Counter:hotp", RFC_KEY, 0)),
            |s| {
                s.codes(59).unwrap();
            },
        ),
        (
            "list_chained.txt",
            "LIST answered in 10-byte chunks (61xx + SEND REMAINING)",
            VykConfig::new()
                .name_salt(salt)
                .max_chunk(10)
                .account(Account::totp(AWS_LABEL, RFC_KEY))
                .account(
                    Account::totp("ACME:slow", RFC_KEY)
                        .period(60)
                        .algorithm(Algorithm::Sha256),
                )
                .account(
                    Account::totp("Touchy:bob", RFC_KEY)
                        .touch(true)
                        .algorithm(Algorithm::Sha512),
                )
                .account(Account::hotp("Counter:hotp", RFC_KEY, 0)),
            |s| {
                s.list().unwrap();
            },
        ),
    ];
    let record = std::env::var_os("TAPCRED_RECORD_FIXTURES").is_some();
    for (file, comment, cfg, scenario) in cases {
        let path = format!("{}/fixtures/apdu/{file}", env!("CARGO_MANIFEST_DIR"));
        let mut card = VirtualYubiKey::new(cfg);
        let mut rec = Recorder {
            card: &mut card,
            lines: vec![format!("# {comment}")],
        };
        {
            let mut s = Session::open(&mut rec, None).unwrap();
            scenario(&mut s);
        }
        let text = rec.lines.join("\n") + "\n";
        if record {
            std::fs::write(&path, &text).unwrap();
        }
        let stored = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            stored, text,
            "{file} differs from the recorded conversation"
        );
    }
}

fn aws_cred(touch: bool) -> NewCredential {
    NewCredential {
        id: CredentialId {
            period: 30,
            issuer: Some("Amazon Web Services".into()),
            account: "alice@111111111111".into(),
        },
        kind: OathType::Totp,
        algo: HashAlgo::Sha1,
        digits: 6,
        // Base32 of RFC_KEY.
        secret: oath::codec::decode_base32_secret("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ").unwrap(),
        touch,
        counter: 0,
    }
}

#[test]
fn add_and_delete_accounts_for_enroll() {
    let (b, h) = one_key(
        VykConfig::new()
            .password("pw")
            .account(Account::totp("GitHub:alice", RFC_KEY)),
    );
    let env: HashMap<String, String> =
        [("TAPCRED_OATH_PASSWORD".to_owned(), "pw".to_owned())].into();
    let ui = RecordingUi::new();
    let added =
        oath::add_account_with(&*b, &env, &settings(), &aws_cred(false), false, &ui).unwrap();
    assert_eq!(added.name, AWS_LABEL);
    assert_eq!(added.serial, Some(12345678));
    assert!(!added.replaced);
    // The stored seed gives RFC 6238 codes through the token source.
    let mut src = oath::open_with(b.clone(), &env, &settings(), ARN, &ui).unwrap();
    assert_eq!(
        code_at(&mut src, 59, &ui).unwrap(),
        rfc_totp(RFC_KEY, 59, 30, 6)
    );
    // No silent overwrite; an explicit one is reported.
    let err =
        oath::add_account_with(&*b, &env, &settings(), &aws_cred(true), false, &ui).unwrap_err();
    assert!(err.message().contains("already exists"), "{err}");
    let again = oath::add_account_with(&*b, &env, &settings(), &aws_cred(true), true, &ui).unwrap();
    assert!(again.replaced);
    assert_eq!(h.requires_touch(AWS_LABEL), Some(true));
    // Delete: unknown names are an error listing what is there.
    let err = oath::delete_account_with(&*b, &env, &settings(), "nope", &ui).unwrap_err();
    assert!(err.message().contains("\"GitHub:alice\""), "{err}");
    oath::delete_account_with(&*b, &env, &settings(), AWS_LABEL, &ui).unwrap();
    assert_eq!(h.credential_ids(), vec!["GitHub:alice".to_owned()]);
    // Without the password nothing is changed.
    let err =
        oath::delete_account_with(&*b, &no_env(), &settings(), "GitHub:alice", &ui).unwrap_err();
    assert!(err.message().contains("TAPCRED_OATH_PASSWORD"), "{err}");
    assert_eq!(h.credential_ids().len(), 1);
}

#[test]
fn enroll_respects_firmware_limits() {
    let ui = RecordingUi::new();
    // Touch needs 4.2.6.
    let (b, h) = one_key(VykConfig::new().firmware(4, 2, 5));
    let err = oath::add_account_with(&*b, &no_env(), &settings(), &aws_cred(true), false, &ui)
        .unwrap_err();
    assert!(err.message().contains("4.2.6"), "{err}");
    assert!(h.credential_ids().is_empty());
    // 4.0 < fw < 4.3.5: a new name that is a prefix of an existing one is refused.
    let (b, h) = one_key(VykConfig::new().firmware(4, 3, 4).account(Account::totp(
        "Amazon Web Services:alice@1111111111112",
        RFC_KEY,
    )));
    let err = oath::add_account_with(&*b, &no_env(), &settings(), &aws_cred(false), false, &ui)
        .unwrap_err();
    assert!(err.message().contains("firmware bug"), "{err}");
    assert_eq!(h.credential_ids().len(), 1);
    // A name too long for the key is a usage error, nothing sent.
    let (b, h) = one_key(VykConfig::new());
    let mut long = aws_cred(false);
    long.id.account = "x".repeat(70);
    let err = oath::add_account_with(&*b, &no_env(), &settings(), &long, false, &ui).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Usage, "{err}");
    assert!(h.credential_ids().is_empty());
}
