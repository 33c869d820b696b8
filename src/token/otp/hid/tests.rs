//! The OTP HID exchange against the virtual key's OTP HID interface (testkit): the same
//! slot answers the same HMAC as over CCID and as computed here; touch, timeouts, damaged
//! answers, hidden serials, and the report-level rules (busy flag, skipped chunks, reset).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use tapcred_testkit::virtual_yubikey::{OtpSlot, VirtualOtpHid, VirtualYubiKey, VykConfig};

use super::*;
use crate::token::otp::{OtpApplet, pad_challenge};
use crate::token::transport::{ApduTransport, FeatureReport};
use crate::ui::{RecordingUi, UiEvent};

const KEY: [u8; 20] = *b"hid-slot-secret-20b!";

/// The virtual interface, shared with the test for inspection.
#[derive(Clone)]
struct Hid(Arc<Mutex<VirtualOtpHid>>);

impl FeatureReportTransport for Hid {
    fn get_feature(&mut self) -> crate::Result<FeatureReport> {
        self.0
            .lock()
            .unwrap()
            .get_feature()
            .ok_or_else(|| Error::token("the key was removed"))
    }
    fn set_feature(&mut self, r: &FeatureReport) -> crate::Result<()> {
        if self.0.lock().unwrap().set_feature(r) {
            Ok(())
        } else {
            Err(Error::token("the key was removed"))
        }
    }
}

struct Ccid(VirtualYubiKey);

impl ApduTransport for Ccid {
    fn transmit(&mut self, apdu: &[u8]) -> crate::Result<Vec<u8>> {
        Ok(self.0.transmit(apdu))
    }
}

fn fast() -> Pacing {
    Pacing {
        poll: Duration::from_millis(1),
        touch_poll: Duration::from_millis(5),
        ..Pacing::default()
    }
}

fn key(cfg: VykConfig) -> (VirtualYubiKey, Hid) {
    let k = VirtualYubiKey::new(cfg);
    let h = Hid(Arc::new(Mutex::new(k.otp_hid())));
    (k, h)
}

fn expected(challenge: &[u8]) -> Vec<u8> {
    // HMAC_LT64: the key hashes exactly the challenge (ykman's padding makes it so).
    let mut m = <Hmac<Sha1> as KeyInit>::new_from_slice(&KEY).unwrap();
    m.update(challenge);
    m.finalize().into_bytes().to_vec()
}

#[test]
fn hmac_over_hid_equals_ccid_and_the_independent_hmac() {
    let (k, h) = key(VykConfig::new()
        .serial(5555)
        .otp_slot(2, OtpSlot::hmac_sha1(KEY, false)));
    let ui = RecordingUi::new();
    let mut hid = OtpHid::open(h.clone(), "YubiKey 5555", fast()).unwrap();
    assert!(hid.status().configured(Slot::Two));
    assert!(!hid.status().configured(Slot::One));
    for challenge in [[0x5A; 32], [0x00; 32], {
        let mut c = [7u8; 32];
        c[31] = 0;
        c
    }] {
        let r =
            ChallengeResponse::hmac_sha1(&mut hid, Slot::Two, &challenge, "touch", &ui).unwrap();
        assert_eq!(r.to_vec(), expected(&challenge));
    }
    // The same key over CCID gives the same bytes.
    let mut applet = OtpApplet::select(Ccid(k), "YubiKey 5555").unwrap();
    let ccid = applet.hmac_sha1(Slot::Two, &[0x5A; 32]).unwrap();
    assert_eq!(ccid.to_vec(), expected(&[0x5A; 32]));
    assert!(
        ui.events().is_empty(),
        "no touch prompt for a slot without touch"
    );
    let v = h.0.lock().unwrap();
    assert_eq!(
        v.dropped_writes(),
        0,
        "every write waited for the busy flag"
    );
}

#[test]
fn chunks_skip_zeros_and_every_read_ends_with_the_reset_report() {
    let (_k, h) = key(VykConfig::new().otp_slot(1, OtpSlot::hmac_sha1(KEY, false)));
    let mut hid = OtpHid::open(h.clone(), "k", fast()).unwrap();
    let ui = RecordingUi::new();
    // Zero padding: chunks 5–8 are all zero and not sent.
    ChallengeResponse::hmac_sha1(&mut hid, Slot::One, &[0xC3; 32], "t", &ui).unwrap();
    let writes = h.0.lock().unwrap().writes().to_vec();
    let seqs: Vec<u8> = writes.iter().map(|w| w[7]).collect();
    assert_eq!(seqs, vec![0x80, 0x81, 0x82, 0x83, 0x84, 0x89, 0x8F]);
    // The frame on the wire is the padded challenge, the slot command and the CRC.
    let padded = pad_challenge(&[0xC3; 32]).unwrap();
    assert_eq!(&writes[0][..7], &padded[..7]);
    assert_eq!(writes[5][1], 0x30, "slot 1 HMAC command");
    assert_eq!(
        u16::from_le_bytes([writes[5][2], writes[5][3]]),
        frame::crc16(&padded[..])
    );
}

#[test]
fn touch_prompt_only_while_the_key_waits_and_the_button_answers() {
    let (k, h) = key(VykConfig::new()
        .serial(77)
        .otp_slot(2, OtpSlot::hmac_sha1(KEY, true))
        .touch_timeout(Duration::from_secs(5)));
    let button = k.handle().button();
    let mut ui = RecordingUi::new();
    ui.on_touch = Some(Box::new(move || {
        // Pressed from another thread, as a person would, a moment after the prompt.
        let b = button.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            assert!(b.press());
        });
    }));
    let mut hid = OtpHid::open(h, "YubiKey 77", fast()).unwrap();
    let r = ChallengeResponse::hmac_sha1(&mut hid, Slot::Two, &[1; 32], "Touch it", &ui).unwrap();
    assert_eq!(r.to_vec(), expected(&[1; 32]));
    assert_eq!(
        ui.events(),
        vec![
            UiEvent::TouchWait("Touch it".into()),
            UiEvent::TouchDone(true)
        ]
    );
    assert_eq!(k.handle().button().touch_requests(), 1);
}

#[test]
fn touch_timeout_is_a_clear_error_and_the_prompt_closes() {
    let (_k, h) = key(VykConfig::new()
        .otp_slot(2, OtpSlot::hmac_sha1(KEY, true))
        .touch_timeout(Duration::from_millis(60)));
    let ui = RecordingUi::new();
    let mut hid = OtpHid::open(h, "YubiKey 9", fast()).unwrap();
    let e = ChallengeResponse::hmac_sha1(&mut hid, Slot::Two, &[1; 32], "Touch", &ui).unwrap_err();
    assert_eq!(e.kind, crate::ErrorKind::Token);
    assert!(e.message().contains("not touched in time"), "{e}");
    assert_eq!(
        ui.events(),
        vec![
            UiEvent::TouchWait("Touch".into()),
            UiEvent::TouchDone(false)
        ]
    );
    // The interface is idle again: the next exchange works (and times out the same way).
    assert!(ChallengeResponse::hmac_sha1(&mut hid, Slot::Two, &[1; 32], "Touch", &ui).is_err());
}

#[test]
fn empty_slot_damaged_answer_and_removed_key() {
    let (k, h) = key(VykConfig::new().otp_slot(2, OtpSlot::hmac_sha1(KEY, false)));
    let ui = RecordingUi::new();
    let mut hid = OtpHid::open(h.clone(), "YubiKey 1", fast()).unwrap();
    let e = ChallengeResponse::hmac_sha1(&mut hid, Slot::One, &[1; 32], "t", &ui).unwrap_err();
    assert!(
        e.message().contains("OTP slot 1 of YubiKey 1 is empty"),
        "{e}"
    );
    assert!(
        e.message().contains("ykman otp chalresp --generate 1"),
        "{e}"
    );

    h.0.lock().unwrap().corrupt_next_answer();
    let e = ChallengeResponse::hmac_sha1(&mut hid, Slot::Two, &[1; 32], "t", &ui).unwrap_err();
    assert!(e.message().contains("CRC mismatch"), "{e}");
    // Recovered: the next answer is right.
    let r = ChallengeResponse::hmac_sha1(&mut hid, Slot::Two, &[1; 32], "t", &ui).unwrap();
    assert_eq!(r.to_vec(), expected(&[1; 32]));

    k.handle().remove();
    let e = ChallengeResponse::hmac_sha1(&mut hid, Slot::Two, &[1; 32], "t", &ui).unwrap_err();
    assert!(e.message().contains("removed"), "{e}");
}

#[test]
fn serial_over_hid_or_none_when_hidden() {
    let (_k, h) = key(VykConfig::new().serial(0x00BC_614E));
    let mut hid = OtpHid::open(h, "k", fast()).unwrap();
    assert_eq!(hid.read_serial().unwrap(), Some(12_345_678));
    let (_k, h) = key(VykConfig {
        serial: None,
        ..VykConfig::new()
    });
    let mut hid = OtpHid::open(h, "k", fast()).unwrap();
    assert_eq!(hid.read_serial().unwrap(), None, "SERIAL_API_VISIBLE off");
}

/// Interfaces by path; an unopenable one stands for a missing udev rule.
struct Backend(Vec<(String, Option<Hid>)>);

impl OtpHidBackend for Backend {
    fn interfaces(&self) -> Result<Vec<HidInterface>> {
        Ok(self
            .0
            .iter()
            .map(|(p, _)| HidInterface {
                path: p.clone(),
                product_id: 0x0401,
            })
            .collect())
    }
    fn open(&self, path: &str) -> Result<Box<dyn FeatureReportTransport>> {
        match self.0.iter().find(|(p, _)| p == path).unwrap() {
            (_, Some(h)) => Ok(Box::new(h.clone())),
            (_, None) => Err(Error::token(format!("opening {path}: permission denied"))),
        }
    }
}

fn on_hid(serial: u32) -> Hid {
    key(VykConfig::new()
        .serial(serial)
        .otp_slot(2, OtpSlot::hmac_sha1(KEY, false)))
    .1
}

#[test]
fn which_key_on_hid_by_serial() {
    let two = || {
        Backend(vec![
            ("/dev/hidraw1".into(), Some(on_hid(1111))),
            ("/dev/hidraw2".into(), Some(on_hid(2222))),
        ])
    };
    let k = connect(&two(), Some(2222), fast()).ok().unwrap();
    assert_eq!((k.path.as_str(), k.serial), ("/dev/hidraw2", Some(2222)));
    assert_eq!(k.hid.label(), "YubiKey 2222");
    match connect(&two(), None, fast()) {
        Err(ChooseError::Ambiguous(e)) => {
            assert!(
                e.message()
                    .contains("2 YubiKeys are plugged in (1111, 2222)"),
                "{e}"
            )
        }
        _ => panic!("two keys, no serial: ambiguous"),
    }
    match connect(&two(), Some(3333), fast()) {
        Err(ChooseError::NoKey(e)) => assert!(e.message().contains("YubiKey 3333"), "{e}"),
        _ => panic!("not plugged in"),
    }
    match connect(&Backend(vec![]), None, fast()) {
        Err(ChooseError::NoKey(e)) => assert!(e.message().contains("udev"), "{e}"),
        _ => panic!("no key"),
    }
    match connect(&Backend(vec![("/dev/hidraw0".into(), None)]), None, fast()) {
        Err(ChooseError::NoKey(e)) => assert!(e.message().contains("permission denied"), "{e}"),
        _ => panic!("unopenable"),
    }
    let one = connect(
        &Backend(vec![("/dev/hidraw1".into(), Some(on_hid(1111)))]),
        None,
        fast(),
    )
    .ok()
    .unwrap();
    assert_eq!(one.serial, Some(1111), "identified even when alone");
}

/// `Hid` as one process's own open of the key: each takes the key's lock file itself.
struct LockedHid {
    hid: Hid,
    keys: Option<std::path::PathBuf>,
}

impl FeatureReportTransport for LockedHid {
    fn get_feature(&mut self) -> crate::Result<FeatureReport> {
        self.hid.get_feature()
    }
    fn set_feature(&mut self, r: &FeatureReport) -> crate::Result<()> {
        self.hid.set_feature(r)
    }
    fn exclusive(&mut self) -> crate::Result<Option<crate::token::keylock::KeyLock>> {
        match &self.keys {
            Some(dir) => crate::token::keylock::lock(
                Some(dir),
                "/dev/hidraw5",
                "YubiKey 5555",
                crate::token::keylock::WAIT,
            )
            .map(Some),
            None => Ok(None),
        }
    }
}

#[test]
fn concurrent_clients_of_one_otp_interface_all_succeed_under_its_lock() {
    let (_k, h) = key(VykConfig::new()
        .serial(5555)
        .otp_slot(2, OtpSlot::hmac_sha1(KEY, false)));
    let dir = tempfile::tempdir().unwrap();
    let run = |keys: Option<std::path::PathBuf>| {
        let threads: Vec<_> = (0..4u8)
            .map(|n| {
                let t = LockedHid {
                    hid: h.clone(),
                    keys: keys.clone(),
                };
                std::thread::spawn(move || -> crate::Result<()> {
                    let ui = RecordingUi::new();
                    let mut hid = OtpHid::open(t, "YubiKey 5555", fast())?;
                    for i in 0..5u8 {
                        let challenge = [n * 16 + i; 32];
                        let r = ChallengeResponse::hmac_sha1(
                            &mut hid,
                            Slot::Two,
                            &challenge,
                            "touch",
                            &ui,
                        )?;
                        assert_eq!(r.to_vec(), expected(&challenge), "another's answer");
                    }
                    Ok(())
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect::<Vec<_>>()
    };
    for r in run(Some(dir.path().join("keys"))) {
        r.unwrap();
    }
    // The interface does misbehave when they overlap (so the run above can fail).
    assert!(
        run(None).iter().any(|r| r.is_err()),
        "no overlap seen without the lock"
    );
}
