//! Fault injection on the YubiKey (issue 11, item 14): the key is pulled out at every APDU
//! of a code read (find the key, serial, SELECT, VALIDATE with a password, CALCULATE_ALL,
//! CALCULATE), through tapcred's OATH client over an in-memory transport to the virtual
//! YubiKey. Each removal is a token error (exit 4) of one line naming the key, never a
//! panic, never a code. The same over a real pcscd runs in tests/oath_pcsc.rs; pcscd itself killed
//! mid-flow, and signals during a touch wait, in tests/fault_pcscd.rs (root + pcscd stack).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[path = "common/vyk_transport.rs"]
mod vyk_transport;

use tapcred::ErrorKind;
use tapcred::token::device::{Backend, Connection};
use tapcred::token::oath;
use tapcred::token::{CodeRequest, TokenSettings};
use tapcred::ui::RecordingUi;
use tapcred_testkit::virtual_yubikey::{Account, Fault, VirtualYubiKey, VykConfig};
use vyk_transport::VykConn;

const ARN: &str = "arn:aws:iam::111111111111:mfa/alice";
const AWS_LABEL: &str = "Amazon Web Services:alice@111111111111";
const READER: &str = "Yubico YubiKey OTP+FIDO+CCID 00 00";

struct OneKey(Arc<Mutex<VirtualYubiKey>>);

impl Backend for OneKey {
    fn readers(&self) -> tapcred::Result<Vec<String>> {
        Ok(vec![READER.to_owned()])
    }
    fn connect(&self, _reader: &str) -> tapcred::Result<Option<Box<dyn Connection>>> {
        if self.0.lock().unwrap().handle().is_removed() {
            return Ok(None);
        }
        Ok(Some(Box::new(VykConn(self.0.clone()))))
    }
}

fn key(password: bool) -> VirtualYubiKey {
    let mut cfg = VykConfig::new()
        .serial(4242)
        .account(Account::totp(AWS_LABEL, b"12345678901234567890"))
        // A 60-s account: the code read needs CALCULATE_ALL and then one CALCULATE.
        .account(Account::totp("60/other", b"12345678901234567890").period(60));
    if password {
        cfg = cfg.password("hunter2");
    }
    VirtualYubiKey::new(cfg)
}

/// The whole code read: find the key, open the account, read a code.
fn read_code(card: VirtualYubiKey) -> tapcred::Result<String> {
    let backend = Arc::new(OneKey(Arc::new(Mutex::new(card))));
    let mut env = HashMap::new();
    env.insert("TAPCRED_OATH_PASSWORD".to_owned(), "hunter2".to_owned());
    let ui = RecordingUi {
        no_sleep: true,
        ..Default::default()
    };
    let settings = TokenSettings {
        profile: "mfa".into(),
        ..TokenSettings::default()
    };
    let mut src = oath::open_with(backend, &env, &settings, ARN, &ui)?;
    let code = tapcred::token::TokenSource::code(
        &mut src,
        &CodeRequest {
            mfa_serial: ARN,
            profile: "mfa",
            at: 1_700_000_010,
        },
        &ui,
    )?;
    Ok(code.digits.to_string())
}

fn removed_at_every_apdu(password: bool) {
    // A clean read, to count the APDUs of the flow.
    let card = key(password);
    let h = card.handle();
    let code = read_code(card).expect("clean read");
    assert_eq!(code.len(), 6);
    let total = h.history().len();
    assert!(total >= 3, "a code read is several APDUs: {total}");
    for n in 1..=total {
        let card = key(password);
        let h = card.handle();
        for _ in 1..n {
            h.inject(Fault::Delay(Duration::ZERO));
        }
        h.inject(Fault::Remove);
        let err = read_code(card).expect_err(&format!("removed at APDU {n} of {total}"));
        assert_eq!(
            err.kind,
            ErrorKind::Token,
            "removed at APDU {n}/{total}: {err}"
        );
        assert_eq!(err.exit_code(), 4);
        let m = err.message();
        assert!(
            !m.is_empty() && !m.contains('\n'),
            "one line at APDU {n}: {m:?}"
        );
        assert!(
            m.contains("YubiKey") || m.contains("4242") || m.contains(READER),
            "names the key at APDU {n}: {m}"
        );
    }
}

#[test]
fn key_removed_at_every_apdu_of_a_code_read() {
    removed_at_every_apdu(false);
}

#[test]
fn key_removed_at_every_apdu_of_a_password_protected_code_read() {
    removed_at_every_apdu(true);
}
