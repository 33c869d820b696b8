//! The OTP-slot vault unlocker over the OTP HID interface: a vault made over CCID (in
//! memory, and through the real pcscd) opens over HID with the same slot — the same
//! output — and tapcred falls back to HID when the key is not reachable over PC/SC (its
//! CCID interface off). The HID side is the virtual key's feature-report interface; the
//! expected HMACs are computed here.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::otp_keys::{self, ARN, KEY_A, KEY_B, hmac_sha1, seed};
use tapcred::token::device::{Backend, Connection};
use tapcred::token::otp::Slot;
use tapcred::token::otp::hid::{HidInterface, OtpHidBackend, Pacing};
use tapcred::token::transport::{ApduTransport, FeatureReport, FeatureReportTransport};
use tapcred::ui::{RecordingUi, UiEvent};
use tapcred::vault::unlock::{Found, connect_otp, enroll, open_with};
use tapcred::vault::{EntryName, OpenVault, OtpSlotUnlocker, Unlocker, VaultFile};
use tapcred::{Error, ErrorKind};
use tapcred_testkit::virtual_yubikey::{VirtualOtpHid, VirtualYubiKey};

fn card(serial: u32, key: [u8; 20], touch: bool) -> VirtualYubiKey {
    otp_keys::card(serial, key, touch, Duration::from_secs(5))
}

/// One key's OTP HID interface.
#[derive(Clone)]
struct Hid(Arc<Mutex<VirtualOtpHid>>);

impl Hid {
    fn of(k: &VirtualYubiKey) -> Hid {
        Hid(Arc::new(Mutex::new(k.otp_hid())))
    }
}

impl FeatureReportTransport for Hid {
    fn get_feature(&mut self) -> tapcred::Result<FeatureReport> {
        self.0
            .lock()
            .unwrap()
            .get_feature()
            .ok_or_else(|| Error::token("removed"))
    }
    fn set_feature(&mut self, r: &FeatureReport) -> tapcred::Result<()> {
        match self.0.lock().unwrap().set_feature(r) {
            true => Ok(()),
            false => Err(Error::token("removed")),
        }
    }
}

/// The HID interfaces of the keys plugged in.
#[derive(Clone, Default)]
struct HidKeys(Vec<Hid>);

impl OtpHidBackend for HidKeys {
    fn interfaces(&self) -> tapcred::Result<Vec<HidInterface>> {
        Ok((0..self.0.len())
            .map(|i| HidInterface {
                path: format!("/dev/hidraw{i}"),
                product_id: 0x0401,
            })
            .collect())
    }
    fn open(&self, path: &str) -> tapcred::Result<Box<dyn FeatureReportTransport>> {
        let i: usize = path.trim_start_matches("/dev/hidraw").parse().unwrap();
        Ok(Box::new(self.0[i].clone()))
    }
}

#[derive(Clone)]
struct Ccid(Arc<Mutex<VirtualYubiKey>>);

impl ApduTransport for Ccid {
    fn transmit(&mut self, apdu: &[u8]) -> tapcred::Result<Vec<u8>> {
        Ok(self.0.lock().unwrap().transmit(apdu))
    }
}
impl Connection for Ccid {}

/// PC/SC readers (empty: every key's CCID interface is off) plus the HID interfaces.
struct Machine {
    readers: Vec<Ccid>,
    hid: HidKeys,
}

impl Backend for Machine {
    fn readers(&self) -> tapcred::Result<Vec<String>> {
        Ok((0..self.readers.len())
            .map(|i| format!("Yubico YubiKey OTP+FIDO+CCID 00 {i:02}"))
            .collect())
    }
    fn connect(&self, reader: &str) -> tapcred::Result<Option<Box<dyn Connection>>> {
        let i: usize = reader.rsplit(' ').next().unwrap().parse().unwrap();
        Ok(Some(Box::new(self.readers[i].clone())))
    }
    fn otp_hid(&self) -> Option<Box<dyn OtpHidBackend>> {
        Some(Box::new(self.hid.clone()))
    }
}

/// A vault for `u` holding the seed, as its file.
fn make_vault(u: &mut dyn Unlocker, ui: &RecordingUi) -> VaultFile {
    let (desc, out) = enroll(u, ui).expect("enroll");
    let mut v = OpenVault::create(desc, out.expose()).unwrap();
    v.put(EntryName::seed(ARN), &seed()).unwrap();
    VaultFile::parse(&v.to_bytes()).unwrap()
}

fn fast() -> Pacing {
    Pacing {
        poll: Duration::from_millis(1),
        touch_poll: Duration::from_millis(5),
        ..Pacing::default()
    }
}

#[test]
fn a_vault_made_over_ccid_opens_over_hid_with_the_same_output() {
    let ui = RecordingUi::new();
    let k = card(5555, KEY_A, false);
    let hid = Hid::of(&k);
    let ccid = Ccid(Arc::new(Mutex::new(k)));
    let mut over_ccid = OtpSlotUnlocker::new(ccid, Some(5555), Slot::Two).unwrap();
    let file = make_vault(&mut over_ccid, &ui);
    let desc = file.unlocker_descs().next().unwrap().clone();
    let via_ccid = over_ccid.respond(&desc, &ui).unwrap();

    let mut over_hid = OtpSlotUnlocker::over_hid(hid, Some(5555), Slot::Two, fast()).unwrap();
    assert_eq!(
        over_hid.id(),
        "otp:5555:2",
        "the same unlocker id on both links"
    );
    let via_hid = over_hid.respond(&desc, &ui).unwrap();
    assert_eq!(via_hid.expose(), via_ccid.expose());
    assert_eq!(
        via_hid.expose(),
        hmac_sha1(&KEY_A, &desc.challenge).as_slice()
    );
    let v = open_with(&file, &mut over_hid, &ui).unwrap();
    assert_eq!(v.get(&EntryName::seed(ARN)).unwrap(), seed());

    // Another key's slot over HID cannot open it.
    let other = card(5555, KEY_B, false);
    let mut wrong =
        OtpSlotUnlocker::over_hid(Hid::of(&other), Some(5555), Slot::Two, fast()).unwrap();
    let e = open_with(&file, &mut wrong, &ui).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Token, "{e}");
}

#[test]
fn the_unlocker_falls_back_to_hid_when_pcsc_has_no_key() {
    let ui = RecordingUi::new();
    let k = card(7777, KEY_A, false);
    let hid = Hid::of(&k);
    let ccid = Ccid(Arc::new(Mutex::new(k)));
    // Made over PC/SC (CCID on) ...
    let with_ccid = Machine {
        readers: vec![ccid],
        hid: HidKeys::default(),
    };
    let mut u = OtpSlotUnlocker::connect(&with_ccid, Some(7777), Slot::Two).unwrap();
    let file = make_vault(&mut u, &ui);
    let desc = file.unlocker_descs().next().unwrap().clone();
    drop(u);
    // ... opened with CCID off: no reader, the key on HID only. connect_unlocker's arm.
    let hid_only = Machine {
        readers: vec![],
        hid: HidKeys(vec![hid.clone()]),
    };
    let mut u = connect_otp(&desc, &hid_only)
        .unwrap()
        .expect("found over HID");
    assert_eq!(u.id(), "otp:7777:2");
    let v = open_with(&file, &mut *u, &ui).unwrap();
    assert_eq!(v.get(&EntryName::seed(ARN)).unwrap(), seed());
    // The key's serial was read over HID (slot command 0x10) to match the unlocker's id.
    let writes = hid.0.lock().unwrap().writes().to_vec();
    assert!(
        writes.iter().any(|w| w[7] == 0x89 && w[1] == 0x10),
        "serial frame sent"
    );
    assert!(
        writes.iter().any(|w| w[7] == 0x89 && w[1] == 0x38),
        "slot 2 HMAC frame sent"
    );

    // Another key on HID is "not here" for this unlocker (the vault moves on), and the
    // message names both links.
    let other = Machine {
        readers: vec![],
        hid: HidKeys(vec![Hid::of(&card(8888, KEY_A, false))]),
    };
    assert!(connect_otp(&desc, &other).unwrap().is_none());
    match OtpSlotUnlocker::find(&other, Some(7777), Slot::Two).unwrap() {
        Found::Missing(e) => {
            let m = e.message();
            assert!(m.contains("YubiKey 7777"), "{m}");
            assert!(m.contains("over USB HID: YubiKey 7777"), "{m}");
            assert!(m.contains("plugged in: 8888"), "{m}");
        }
        Found::Here(_) => panic!("8888 is not 7777"),
    }
    // Two keys on HID and no serial: the user must choose, as over PC/SC.
    let two = Machine {
        readers: vec![],
        hid: HidKeys(vec![
            Hid::of(&card(1, KEY_A, false)),
            Hid::of(&card(2, KEY_B, false)),
        ]),
    };
    let e = OtpSlotUnlocker::connect(&two, None, Slot::Two).unwrap_err();
    assert!(e.message().contains("2 YubiKeys are plugged in"), "{e}");
}

#[test]
fn a_touch_slot_over_hid_prompts_once_the_key_blinks() {
    let k = card(4242, KEY_A, true);
    let button = k.handle().button();
    let hid = Hid::of(&k);
    let ui = RecordingUi {
        on_touch: Some(Box::new(move || {
            let b = button.clone();
            std::thread::spawn(move || b.press_when_requested(Duration::from_secs(5)));
        })),
        ..RecordingUi::default()
    };
    let m = Machine {
        readers: vec![],
        hid: HidKeys(vec![hid]),
    };
    let mut u = OtpSlotUnlocker::connect(&m, None, Slot::Two).unwrap();
    let file = make_vault(&mut u, &ui);
    let v = open_with(&file, &mut u, &ui).unwrap();
    assert_eq!(v.get(&EntryName::seed(ARN)).unwrap(), seed());
    let events = ui.events();
    let prompts = events
        .iter()
        .filter(|e| matches!(e, UiEvent::TouchWait(m) if m.contains("YubiKey 4242") && m.contains("OTP slot 2")))
        .count();
    assert_eq!(prompts, 2, "{events:?}");
    assert_eq!(
        events
            .iter()
            .filter(|e| **e == UiEvent::TouchDone(true))
            .count(),
        2
    );
    assert_eq!(k.handle().button().touch_requests(), 2);
}

// ----- the real pcscd ---------------------------------------------------------------------

#[cfg(unix)]
mod pcscd {
    use super::*;
    use tapcred::token::pcsc::PcscBackend;
    use tapcred::vault::VaultStore;
    use tapcred_testkit::pcsc_stack::PcscStack;

    /// The real PC/SC backend with a virtual HID side (the real one is hidapi).
    struct RealPcscVirtualHid(HidKeys);

    impl Backend for RealPcscVirtualHid {
        fn readers(&self) -> tapcred::Result<Vec<String>> {
            PcscBackend::new().readers()
        }
        fn connect(&self, reader: &str) -> tapcred::Result<Option<Box<dyn Connection>>> {
            PcscBackend::new().connect(reader)
        }
        fn otp_hid(&self) -> Option<Box<dyn OtpHidBackend>> {
            Some(Box::new(self.0.clone()))
        }
    }

    #[test]
    fn made_through_pcscd_opened_over_hid_after_ccid_goes_away() {
        let Some(mut stack) =
            PcscStack::start_or_skip("made_through_pcscd_opened_over_hid_after_ccid_goes_away")
        else {
            return;
        };
        let key = card(31338, KEY_A, true);
        let hid = Hid::of(&key);
        let handle = stack.insert(0, key).expect("insert the virtual YubiKey");
        let button = handle.button();
        let ui = RecordingUi {
            on_touch: Some(Box::new(move || {
                let b = button.clone();
                std::thread::spawn(move || b.press_when_requested(Duration::from_secs(5)));
            })),
            ..RecordingUi::default()
        };
        let backend = RealPcscVirtualHid(HidKeys(vec![hid.clone()]));
        let dir = tempfile::tempdir().unwrap();
        let store = VaultStore::new(dir.path().join("vault"));
        let ccid_output = {
            let mut u = OtpSlotUnlocker::connect(&backend, None, Slot::Two).expect("over pcscd");
            let (desc, out) = enroll(&mut u, &ui).unwrap();
            assert_eq!(out.expose(), hmac_sha1(&KEY_A, &desc.challenge).as_slice());
            let mut v = OpenVault::create(desc, out.expose()).unwrap();
            v.put(EntryName::seed(ARN), &seed()).unwrap();
            store.lock().unwrap().write(&v).unwrap();
            out
        };
        assert!(
            hid.0.lock().unwrap().writes().is_empty(),
            "PC/SC worked: HID untouched"
        );
        // The CCID interface goes away (the reader is empty); the key stays on USB HID.
        let key = handle.remove();
        key.handle().reinsert();
        let file = store.read().unwrap().unwrap();
        let desc = file.unlocker_descs().next().unwrap().clone();
        let mut u = connect_otp(&desc, &backend)
            .unwrap()
            .expect("found over HID");
        let out = u.respond(&desc, &ui).unwrap();
        assert_eq!(
            out.expose(),
            ccid_output.expose(),
            "same output on both links"
        );
        let v = open_with(&file, &mut *u, &ui).unwrap();
        assert_eq!(v.get(&EntryName::seed(ARN)).unwrap(), seed());
        drop(stack);
    }
}
