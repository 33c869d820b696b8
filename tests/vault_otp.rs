//! The vault opened by a YubiKey OTP slot's HMAC-SHA1 challenge-response: tapcred's OTP
//! applet client against the virtual YubiKey in memory, then end to end through the real
//! pcscd, with ykman as the judge of the slot's answer. Expected HMACs are computed here,
//! independently of the card.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::otp_keys::{self, ARN, KEY_A, KEY_B, hmac_sha1, seed};
use tapcred::ErrorKind;
use tapcred::token::device::{Backend, Connection};
use tapcred::token::otp::Slot;
use tapcred::token::transport::ApduTransport;
use tapcred::ui::{RecordingUi, UiEvent};
use tapcred::vault::unlock::{enroll, open_with};
use tapcred::vault::{
    EntryName, OpenVault, OtpSlotUnlocker, Unlocker, UnlockerDesc, UnlockerKind, VaultError,
    VaultFile,
};
use tapcred_testkit::virtual_yubikey::VirtualYubiKey;

fn card(serial: u32, key: [u8; 20], touch: bool) -> VirtualYubiKey {
    otp_keys::card(serial, key, touch, Duration::from_millis(400))
}

#[derive(Clone)]
struct VykConn(Arc<Mutex<VirtualYubiKey>>);

impl ApduTransport for VykConn {
    fn transmit(&mut self, apdu: &[u8]) -> tapcred::Result<Vec<u8>> {
        Ok(self.0.lock().unwrap().transmit(apdu))
    }
}

impl Connection for VykConn {}

struct VykBackend(Vec<(String, VykConn)>);

impl Backend for VykBackend {
    fn readers(&self) -> tapcred::Result<Vec<String>> {
        Ok(self.0.iter().map(|r| r.0.clone()).collect())
    }
    fn connect(&self, reader: &str) -> tapcred::Result<Option<Box<dyn Connection>>> {
        Ok(self
            .0
            .iter()
            .find(|r| r.0 == reader)
            .map(|r| Box::new(r.1.clone()) as Box<dyn Connection>))
    }
}

fn conn(k: VirtualYubiKey) -> VykConn {
    VykConn(Arc::new(Mutex::new(k)))
}

/// A vault made with `u`, holding the seed, as bytes.
fn make_vault(u: &mut dyn Unlocker, ui: &RecordingUi) -> (UnlockerDesc, Vec<u8>) {
    let (desc, out) = enroll(u, ui).expect("enroll");
    let mut v = OpenVault::create(desc.clone(), out.expose()).unwrap();
    v.put(EntryName::seed(ARN), &seed()).unwrap();
    (desc, v.to_bytes())
}

#[test]
fn otp_slot_unlocker_opens_the_vault_in_memory() {
    let ui = RecordingUi::new();
    let c = conn(card(5555, KEY_A, false));
    let mut u = OtpSlotUnlocker::new(c.clone(), Some(5555), Slot::Two).unwrap();
    assert_eq!(u.id(), "otp:5555:2");
    assert_eq!(u.kind(), UnlockerKind::OtpHmacSha1);
    let (desc, bytes) = make_vault(&mut u, &ui);
    assert_eq!(desc.challenge.len(), 32);
    // The output is HMAC-SHA1 over exactly the 32-byte challenge (HMAC_LT64 + ykman's
    // padding), computed here independently.
    let out = u.respond(&desc, &ui).unwrap();
    assert_eq!(out.expose(), hmac_sha1(&KEY_A, &desc.challenge).as_slice());
    // A new session (a later run) opens it again.
    let mut again = OtpSlotUnlocker::new(c, Some(5555), Slot::Two).unwrap();
    let f = VaultFile::parse(&bytes).unwrap();
    let v = open_with(&f, &mut again, &ui).unwrap();
    assert_eq!(v.get(&EntryName::seed(ARN)).unwrap(), seed());
    // The prompt names the key and the slot.
    let prompts: Vec<String> = ui
        .events()
        .into_iter()
        .filter_map(|e| match e {
            UiEvent::TouchWait(m) => Some(m),
            _ => None,
        })
        .collect();
    assert!(
        prompts
            .iter()
            .all(|p| p.contains("YubiKey 5555") && p.contains("OTP slot 2")),
        "{prompts:?}"
    );
}

#[test]
fn challenges_ending_in_zero_are_padded_right() {
    // ykchalresp's zero padding would lose a trailing 00 under HMAC_LT64 (part E.9).
    let ui = RecordingUi::new();
    let mut u =
        OtpSlotUnlocker::new(conn(card(5555, KEY_A, false)), Some(5555), Slot::Two).unwrap();
    let mut desc = UnlockerDesc::new_random(UnlockerKind::OtpHmacSha1, "otp:5555:2").unwrap();
    for last in [0x00u8, 0x01, 0xFF] {
        *desc.challenge.last_mut().unwrap() = last;
        desc.challenge[30] = 0;
        let out = u.respond(&desc, &ui).unwrap();
        assert_eq!(out.expose(), hmac_sha1(&KEY_A, &desc.challenge).as_slice());
    }
}

#[test]
fn a_reprogrammed_slot_or_another_key_cannot_open() {
    let ui = RecordingUi::new();
    let mut a =
        OtpSlotUnlocker::new(conn(card(5555, KEY_A, false)), Some(5555), Slot::Two).unwrap();
    let (_, bytes) = make_vault(&mut a, &ui);
    let f = VaultFile::parse(&bytes).unwrap();
    // Same serial and slot, another HMAC key (the slot was reprogrammed).
    let mut reprogrammed =
        OtpSlotUnlocker::new(conn(card(5555, KEY_B, false)), Some(5555), Slot::Two).unwrap();
    let e = open_with(&f, &mut reprogrammed, &ui).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Token, "{e:?}");
    assert!(e.message().contains("cannot open this vault"), "{e}");
    // Another key, not listed in the header: named, with what the vault has.
    let mut other =
        OtpSlotUnlocker::new(conn(card(6666, KEY_A, false)), Some(6666), Slot::Two).unwrap();
    let e = open_with(&f, &mut other, &ui).unwrap_err();
    assert!(e.message().contains("no unlocker for otp:6666:2"), "{e}");
    assert!(e.message().contains("otp:5555:2"), "{e}");
}

#[test]
fn a_backup_key_opens_the_same_vault() {
    let ui = RecordingUi::new();
    let mut a =
        OtpSlotUnlocker::new(conn(card(5555, KEY_A, false)), Some(5555), Slot::Two).unwrap();
    // Key B needs a touch: the test presses it when it blinks.
    let card_b = card(7777, KEY_B, true);
    let touch_ui = pressing_ui(&card_b.button());
    let mut b = OtpSlotUnlocker::new(conn(card_b), Some(7777), Slot::Two).unwrap();
    let (_, bytes) = make_vault(&mut a, &ui);
    let mut v = open_with(&VaultFile::parse(&bytes).unwrap(), &mut a, &ui).unwrap();
    let (desc_b, out_b) = enroll(&mut b, &touch_ui).unwrap();
    v.add_unlocker(desc_b, out_b.expose()).unwrap();
    let bytes = v.to_bytes();
    // Key A is gone; B alone opens it.
    drop(a);
    let v = open_with(&VaultFile::parse(&bytes).unwrap(), &mut b, &touch_ui).unwrap();
    assert_eq!(v.get(&EntryName::seed(ARN)).unwrap(), seed());
}

fn pressing_ui(button: &tapcred_testkit::virtual_yubikey::Button) -> RecordingUi {
    let button = button.clone();
    RecordingUi {
        on_touch: Some(Box::new(move || {
            let b = button.clone();
            std::thread::spawn(move || b.press_when_requested(Duration::from_secs(5)));
        })),
        ..RecordingUi::default()
    }
}

#[test]
fn touch_slot_times_out_with_a_clear_error_and_empty_slot_is_explained() {
    let ui = RecordingUi::new();
    let k = card(5555, KEY_A, true);
    let c = conn(k);
    let mut u = OtpSlotUnlocker::new(c.clone(), Some(5555), Slot::Two).unwrap();
    let desc = UnlockerDesc::new_random(UnlockerKind::OtpHmacSha1, "otp:5555:2").unwrap();
    let e = u.respond(&desc, &ui).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Token);
    assert!(e.message().contains("not touched in time"), "{e}");
    assert!(
        ui.events().contains(&UiEvent::TouchDone(false)),
        "{:?}",
        ui.events()
    );
    let mut slot1 = OtpSlotUnlocker::new(c, Some(5555), Slot::One).unwrap();
    let e = slot1.respond(&desc, &ui).unwrap_err();
    assert!(
        e.message().contains("OTP slot 1 of YubiKey 5555 is empty"),
        "{e}"
    );
    assert!(
        e.message().contains("ykman otp chalresp --generate 1"),
        "{e}"
    );
}

#[test]
fn connect_chooses_the_key_by_serial() {
    let backend = VykBackend(vec![
        (
            "Yubico YubiKey OTP+FIDO+CCID 00 00".into(),
            conn(card(1111, KEY_A, false)),
        ),
        (
            "Yubico YubiKey OTP+FIDO+CCID 01 00".into(),
            conn(card(2222, KEY_B, false)),
        ),
    ]);
    let ui = RecordingUi::new();
    let desc = UnlockerDesc::new_random(UnlockerKind::OtpHmacSha1, "x").unwrap();
    let mut u = OtpSlotUnlocker::connect(&backend, Some(2222), Slot::Two).unwrap();
    assert_eq!(u.id(), "otp:2222:2");
    assert_eq!(
        u.respond(&desc, &ui).unwrap().expose(),
        hmac_sha1(&KEY_B, &desc.challenge).as_slice()
    );
    // Two keys and no serial: ambiguous, named.
    let e = OtpSlotUnlocker::connect(&backend, None, Slot::Two).unwrap_err();
    assert!(
        e.message().contains("1111") && e.message().contains("2222"),
        "{e}"
    );
}

#[test]
fn vault_errors_keep_their_exit_codes() {
    let e: tapcred::Error = VaultError::Damaged("x".into()).into();
    assert_eq!(e.exit_code(), 3);
    let e: tapcred::Error = VaultError::WrongKey("x".into()).into();
    assert_eq!(e.exit_code(), 4);
}

// ----- the real pcscd ---------------------------------------------------------------------

#[cfg(unix)]
mod pcscd {
    use super::*;
    use std::path::Path;
    use std::process::Command;
    use tapcred::token::pcsc::PcscBackend;
    use tapcred::vault::VaultStore;
    use tapcred_testkit::pcsc_stack::{PcscStack, reader_name};
    use tapcred_testkit::virtual_yubikey::{OtpSlot, VykConfig};

    #[test]
    fn otp_unlocker_through_the_real_pcscd() {
        let Some(mut stack) = PcscStack::start_or_skip("otp_unlocker_through_the_real_pcscd")
        else {
            return;
        };
        let handle = stack
            .insert(0, card(31337, KEY_A, true))
            .expect("insert the virtual YubiKey");
        let ui = pressing_ui(&handle.button());
        let dir = tempfile::tempdir().unwrap();
        let store = VaultStore::new(dir.path().join("vault"));
        {
            let mut u =
                OtpSlotUnlocker::connect(&PcscBackend::new(), None, Slot::Two).expect("connect");
            assert_eq!(u.id(), "otp:31337:2");
            let (desc, out) = enroll(&mut u, &ui).unwrap();
            assert_eq!(out.expose(), hmac_sha1(&KEY_A, &desc.challenge).as_slice());
            let mut v = OpenVault::create(desc, out.expose()).unwrap();
            v.put(EntryName::seed(ARN), &seed()).unwrap();
            store.lock().unwrap().write(&v).unwrap();
        }
        // A later run: a new PC/SC connection, the key chosen by serial, one touch.
        let mut u = OtpSlotUnlocker::connect(&PcscBackend::new(), Some(31337), Slot::Two)
            .expect("connect by serial");
        let f = store.read().unwrap().unwrap();
        let v = open_with(&f, &mut u, &ui).unwrap();
        assert_eq!(v.get(&EntryName::seed(ARN)).unwrap(), seed());
        assert_eq!(handle.button().touch_requests(), 2);
        // The challenge went out as one short APDU: 00 01 38 00 40 + 64 bytes.
        let h = handle.vyk().history();
        let chal: Vec<_> = h.iter().filter(|r| r.ins == 0x01 && r.p1 == 0x38).collect();
        assert_eq!(chal.len(), 2, "{h:?}");
        assert!(chal.iter().all(|r| r.len == 5 + 64 && r.sw == Some(0x9000)));
        let _ = reader_name(0);
    }

    /// ykman's own library computes the same slot answer over CCID, through the real pcscd.
    ///
    /// The `ykman otp calculate` COMMAND cannot be the judge here: ykman decides a PC/SC
    /// device's transport from the reader name, a reader named "Yubico YubiKey …" is USB,
    /// and over USB `otp calculate` insists on the OTP HID interface ("The connection type
    /// required for this command is not supported/enabled on the YubiKey"); it uses the
    /// CCID OTP applet only for NFC readers, which tapcred does not look at. So the judge is
    /// the code that command calls, `yubikit.yubiotp.YubiOtpSession.calculate_hmac_sha1`
    /// (ykman's padding included), over ykman's PC/SC `SmartCardConnection`.
    #[test]
    fn ykman_judges_the_otp_slot_over_ccid() {
        let venv = std::env::var("TAPCRED_VENV").unwrap_or_else(|_| "/opt/tapcred-venv".into());
        let python = Path::new(&venv).join("bin/python");
        if !Path::new(&venv).join("bin/ykman").is_file() {
            tapcred_testkit::ci::skip(
                "ykman_judges_the_otp_slot_over_ccid",
                &format!("ykman is missing in {venv} (set TAPCRED_VENV)"),
            );
            return;
        }
        let Some(mut stack) = PcscStack::start_or_skip("ykman_judges_the_otp_slot_over_ccid")
        else {
            return;
        };
        let config = VykConfig::new()
            .serial(4711)
            .otp_slot(2, OtpSlot::hmac_sha1(KEY_B, false));
        let _handle = stack
            .insert(0, VirtualYubiKey::new(config))
            .expect("insert the virtual YubiKey");
        let home = tempfile::tempdir().unwrap();
        let ui = RecordingUi::new();
        let mut desc = UnlockerDesc::new_random(UnlockerKind::OtpHmacSha1, "otp:4711:2").unwrap();
        for last in [0x00u8, 0x5A] {
            *desc.challenge.last_mut().unwrap() = last;
            // tapcred's answer; its exclusive PC/SC connection is closed before ykman runs.
            let ours = OtpSlotUnlocker::connect(&PcscBackend::new(), Some(4711), Slot::Two)
                .expect("connect")
                .respond(&desc, &ui)
                .unwrap();
            let hex = data_encoding::HEXLOWER.encode(&desc.challenge);
            let out = Command::new(&python)
                .args(["-c", YKMAN_OTP_CALCULATE, &reader_name(0), "2", &hex])
                .env("HOME", home.path())
                .stdin(std::process::Stdio::null())
                .output()
                .expect("run ykman's python");
            assert!(
                out.status.success(),
                "ykman's calculate_hmac_sha1 failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let theirs = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            assert_eq!(theirs, data_encoding::HEXLOWER.encode(ours.expose()));
            assert_eq!(ours.expose(), hmac_sha1(&KEY_B, &desc.challenge).as_slice());
        }
    }

    /// argv: reader name, slot (1|2), challenge hex. Prints the response hex.
    const YKMAN_OTP_CALCULATE: &str = r#"
import sys
from ykman.pcsc import list_devices
from yubikit.core.smartcard import SmartCardConnection
from yubikit.yubiotp import SLOT, YubiOtpSession

reader, slot, challenge = sys.argv[1], int(sys.argv[2]), bytes.fromhex(sys.argv[3])
devices = [d for d in list_devices() if d.reader.name == reader]
if len(devices) != 1:
    sys.exit(f"reader {reader!r} not found")
with devices[0].open_connection(SmartCardConnection) as conn:
    session = YubiOtpSession(conn)
    print(session.calculate_hmac_sha1(SLOT(slot), challenge).hex())
"#;
}
