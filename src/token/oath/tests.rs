//! Session and source tests over in-memory transports: recorded exchanges from
//! `fixtures/apdu/`, small scripted responders, and arbitrary bytes (proptest).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use proptest::prelude::*;

use super::codec::*;
use super::session::*;
use super::*;
use zeroize::Zeroizing;

use crate::token::device::{self, Backend, Connection};
use crate::token::transport::ApduTransport;
use crate::token::{CodeRequest, TokenSettings, TokenSource};
use crate::ui::{RecordingUi, UiEvent};

/// Replays a recorded exchange: every APDU sent must equal the next `>` line.
struct Replay {
    steps: Vec<(Vec<u8>, Vec<u8>)>,
    pos: usize,
}

fn hex(s: &str) -> Vec<u8> {
    data_encoding::HEXLOWER_PERMISSIVE
        .decode(s.trim().replace(' ', "").as_bytes())
        .unwrap()
}

impl Replay {
    fn fixture(text: &str) -> Replay {
        let mut steps = Vec::new();
        let mut pending = None;
        for line in text.lines() {
            if let Some(cmd) = line.strip_prefix("> ") {
                pending = Some(hex(cmd));
            } else if let Some(resp) = line.strip_prefix("< ") {
                steps.push((pending.take().expect("response without command"), hex(resp)));
            }
        }
        Replay { steps, pos: 0 }
    }
    fn done(&self) -> bool {
        self.pos == self.steps.len()
    }
}

impl ApduTransport for Replay {
    fn transmit(&mut self, apdu: &[u8]) -> crate::Result<Vec<u8>> {
        let (want, resp) = self
            .steps
            .get(self.pos)
            .unwrap_or_else(|| panic!("unexpected APDU {apdu:02x?}"));
        assert_eq!(
            data_encoding::HEXLOWER.encode(apdu),
            data_encoding::HEXLOWER.encode(want),
            "APDU #{}",
            self.pos
        );
        self.pos += 1;
        Ok(resp.clone())
    }
}

const MIXED: &str = include_str!("../../../fixtures/apdu/calculate_all_mixed.txt");
const ONE: &str = include_str!("../../../fixtures/apdu/calculate_rfc6238.txt");
const LIST: &str = include_str!("../../../fixtures/apdu/list_chained.txt");
const SEED: &[u8] = b"12345678901234567890";

/// RFC 6238 computed here from the seed, independently of the client.
fn rfc_totp(seed: &[u8], at: u64, period: u64, digits: u32) -> String {
    let h = hmac_sha1(seed, &(at / period).to_be_bytes());
    let o = (h[19] & 0x0F) as usize;
    let v = u32::from_be_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]) & 0x7FFF_FFFF;
    format!("{:0w$}", v % 10u32.pow(digits), w = digits as usize)
}

#[test]
fn rfc_vectors_hold_for_the_reference() {
    assert_eq!(rfc_totp(SEED, 59, 30, 8), "94287082");
    assert_eq!(rfc_totp(SEED, 1111111109, 30, 8), "07081804");
    assert_eq!(rfc_totp(SEED, 2000000000, 30, 8), "69279037");
}

#[test]
fn select_then_one_calculate_is_two_apdus() {
    let mut t = Replay::fixture(ONE);
    let mut s = Session::open(&mut t, None).unwrap();
    assert_eq!(s.info().version_string().as_deref(), Some("5.4.3"));
    assert!(!s.locked());
    let code = s
        .calculate(
            b"Amazon Web Services:alice@111111111111",
            &totp_challenge(59, 30),
            false,
        )
        .unwrap();
    assert_eq!(&*code.code(), "94287082");
    assert_eq!(&*code.code(), &rfc_totp(SEED, 59, 30, 8));
    assert_eq!(s.exchanged(), 2);
    drop(s);
    assert!(t.done());
}

#[test]
fn codes_recalculate_other_periods_and_skip_touch_and_hotp() {
    let mut t = Replay::fixture(MIXED);
    let mut s = Session::open(&mut t, None).unwrap();
    let codes = s.codes(59).unwrap();
    let by: HashMap<_, _> = codes.iter().map(|c| (c.name.as_str(), c)).collect();
    let aws = by["Amazon Web Services:alice@111111111111"];
    assert_eq!(
        aws.code.as_deref().map(|s| s.as_str()),
        Some(&*rfc_totp(SEED, 59, 30, 6))
    );
    let slow = by["60/ACME:slow"];
    assert_eq!(slow.period, 60);
    assert_eq!(
        slow.code.as_deref().map(|s| s.as_str()),
        Some(&*rfc_totp(SEED, 59, 60, 6))
    );
    assert_ne!(
        slow.code, aws.code,
        "the 60-s code must not be the 30-s value"
    );
    let touch = by["Touchy:bob"];
    assert_eq!((touch.touch, touch.code.is_none()), (Some(true), true));
    let hotp = by["Counter:hotp"];
    assert_eq!(
        (hotp.kind, hotp.touch, hotp.code.is_none()),
        (OathType::Hotp, None, true)
    );
    // SELECT, CALCULATE_ALL, 2 × SEND REMAINING, CALCULATE for the 60-s one: no HOTP
    // CALCULATE.
    assert_eq!(s.exchanged(), 5);
    drop(s);
    assert!(t.done());
}

#[test]
fn list_follows_61xx_chaining() {
    let mut t = Replay::fixture(LIST);
    let mut s = Session::open(&mut t, None).unwrap();
    let l = s.list().unwrap();
    let names: Vec<String> = l.iter().map(|e| e.name()).collect();
    assert_eq!(
        names,
        [
            "Amazon Web Services:alice@111111111111",
            "60/ACME:slow",
            "Touchy:bob",
            "Counter:hotp"
        ]
    );
    assert_eq!(l[1].algo, Some(HashAlgo::Sha256));
    assert_eq!(l[3].kind, OathType::Hotp);
    drop(s);
    assert!(t.done());
}

#[test]
fn pbkdf2_and_hmac_vectors() {
    let key = derive_key(b"password", &hex("4bb7a7fad7af401b"));
    assert_eq!(key[..], hex("fe65f703ff4806428901c3220becb19d")[..]);
    let mac = hmac_sha1(&key[..], &hex("0102030405060708"));
    assert_eq!(mac[..], hex("149fcea019b842168cf8ca3de87b7ded3a4c28cf")[..]);
    let info = SelectInfo {
        version: None,
        salt: hex("4bb7a7fad7af401b"),
        challenge: None,
        algorithm: None,
    };
    assert_eq!(info.device_id(), "M/cfhpywsjHw0W5SXdq9Bg");
}

#[test]
fn select_parsing_is_lenient_about_order_and_unknown_tags() {
    // Challenge first, then 7B, an unknown tag, name, version.
    let data = hex("74080102030405060708 7b0101 7f0100 71084bb7a7fad7af401b 7903050403");
    let info = parse_select(&data).unwrap();
    assert!(info.has_password());
    assert_eq!(info.algorithm, Some(1));
    assert_eq!(info.version, Some([5, 4, 3]));
    assert!(parse_select(&hex("7903050403")).is_err(), "no name");
    assert!(parse_select(&hex("790205047108")).is_err());
}

#[test]
fn calculate_all_tolerates_trussed_hotp_without_digits() {
    let e = parse_calculate_all(&hex("71016177007101627c0106")).unwrap();
    assert_eq!(e[0].result, AllResult::Hotp { digits: None });
    assert_eq!(e[1].result, AllResult::Touch { digits: 6 });
    assert!(parse_calculate_all(&hex("710161")).is_err());
    assert!(parse_calculate_all(&hex("7601067101617605060000")).is_err());
    assert!(
        parse_calculate_all(&hex("71016176050b00000001")).is_err(),
        "11 digits"
    );
}

#[test]
fn truncation_masks_and_reduces() {
    // NEO returns the raw 31-bit value; the top bit is masked.
    let t = Truncated {
        digits: 6,
        value: 0xFFFF_FFFF,
    };
    assert_eq!(&*t.code(), &format!("{:06}", 0x7FFF_FFFFu64 % 1_000_000));
    let t = Truncated {
        digits: 8,
        value: 5,
    };
    assert_eq!(&*t.code(), "00000005");
}

#[test]
fn put_encoding_matches_the_reference_example() {
    let cred = NewCredential {
        id: CredentialId {
            period: 30,
            issuer: Some("Example".into()),
            account: "alice".into(),
        },
        kind: OathType::Totp,
        algo: HashAlgo::Sha1,
        digits: 6,
        secret: decode_base32_secret("jbsw y3dp ehpk 3pxp").unwrap(),
        touch: false,
        counter: 0,
    };
    let data = encode_put(&cred).unwrap();
    assert_eq!(
        data_encoding::HEXLOWER.encode(&data),
        "710d4578616d706c653a616c6963657310210648656c6c6f21deadbeef00000000"
    );
    let touch = NewCredential {
        touch: true,
        ..cred
    };
    assert!(
        data_encoding::HEXLOWER
            .encode(&encode_put(&touch).unwrap())
            .ends_with("7802")
    );
    let long = prepare_key(HashAlgo::Sha1, &[7u8; 65]);
    assert_eq!(long.len(), 20);
    assert_eq!(prepare_key(HashAlgo::Sha512, &[7u8; 100]).len(), 100);
    let too_long = NewCredential {
        id: CredentialId {
            period: 30,
            issuer: None,
            account: "x".repeat(65),
        },
        kind: OathType::Totp,
        algo: HashAlgo::Sha1,
        digits: 6,
        secret: Zeroizing::new(vec![1; 10]),
        touch: false,
        counter: 0,
    };
    assert!(encode_put(&too_long).is_err());
}

/// A responder: a closure from APDU to response, recording what was sent.
struct Responder<F: FnMut(&[u8]) -> Vec<u8>> {
    f: F,
    sent: Vec<Vec<u8>>,
}

impl<F: FnMut(&[u8]) -> Vec<u8>> ApduTransport for Responder<F> {
    fn transmit(&mut self, apdu: &[u8]) -> crate::Result<Vec<u8>> {
        self.sent.push(apdu.to_vec());
        Ok((self.f)(apdu))
    }
}

fn locked_select() -> Vec<u8> {
    hex(
        "790305040371084bb7a7fad7af401b74080102030405060708 7b0101 9000"
            .replace(' ', "")
            .as_str(),
    )
}

/// VALIDATE handled as the applet does (A.6), for the password "password".
fn validate_reply(apdu: &[u8], good_answer: bool) -> Vec<u8> {
    let key = derive_key(b"password", &hex("4bb7a7fad7af401b"));
    let tl = tlv::parse(&apdu[5..]).unwrap();
    let resp = tl.iter().find(|t| t.tag == 0x75).unwrap().value;
    if resp != &hmac_sha1(&key[..], &hex("0102030405060708"))[..] {
        return vec![0x6A, 0x80];
    }
    let chal = tl.iter().find(|t| t.tag == 0x74).unwrap().value;
    let mut mac = hmac_sha1(&key[..], chal).to_vec();
    if !good_answer {
        mac[0] ^= 1;
    }
    let mut out = Vec::new();
    tlv::write(&mut out, 0x75, &mac);
    out.extend_from_slice(&[0x90, 0x00]);
    out
}

#[test]
fn validate_right_wrong_and_not_genuine() {
    for (pw, genuine, expect) in [
        ("password", true, Ok(())),
        ("wrong", true, Err(OathError::WrongPassword)),
        ("password", false, Err(OathError::NotGenuine)),
    ] {
        let mut t = Responder {
            f: |a: &[u8]| match a[1] {
                0xA4 => locked_select(),
                0xA3 => validate_reply(a, genuine),
                _ => vec![0x69, 0x82],
            },
            sent: vec![],
        };
        let mut s = Session::open(&mut t, None).unwrap();
        assert!(s.locked());
        let key = derive_key(pw.as_bytes(), &s.info().salt.clone());
        assert_eq!(s.validate(&key), expect, "{pw} {genuine}");
        assert_eq!(s.locked(), expect.is_err());
        drop(s);
        // The VALIDATE APDU carries 75 14 + 74 08.
        assert_eq!(&t.sent[1][..7], &[0x00, 0xA3, 0x00, 0x00, 0x20, 0x75, 0x14]);
    }
}

#[test]
fn status_words_map_to_meanings() {
    for (sw, touch, want) in [
        (0x6982u16, false, OathError::AuthRequired),
        (0x6985, false, OathError::AuthRequired),
        (0x6982, true, OathError::TouchTimeout),
        (0x6984, false, OathError::NotFound),
        (0x6A82, false, OathError::NotFound),
        (
            0x6581,
            false,
            OathError::Status {
                what: "CALCULATE",
                sw: 0x6581,
            },
        ),
    ] {
        let mut t = Responder {
            f: move |a: &[u8]| match a[1] {
                0xA4 => hex("790305040371084bb7a7fad7af401b9000"),
                _ => sw.to_be_bytes().to_vec(),
            },
            sent: vec![],
        };
        let mut s = Session::open(&mut t, None).unwrap();
        assert_eq!(s.calculate(b"x", &[0; 8], touch), Err(want));
    }
    let mut t = Responder {
        f: |_: &[u8]| vec![0x6A, 0x82],
        sent: vec![],
    };
    assert_eq!(
        Session::open(&mut t, None).err(),
        Some(OathError::NoApplet(0x6A82))
    );
}

#[test]
fn nitrokey_style_relock_is_revalidated_once() {
    // Unlock lasts for one command only: after VALIDATE, the second command answers 6985,
    // and the session re-SELECTs and re-VALIDATEs.
    let mut since_validate = 0;
    let mut t = Responder {
        f: move |a: &[u8]| match a[1] {
            0xA4 if a[2] == 0x04 => {
                since_validate = 99;
                locked_select()
            }
            0xA3 => {
                since_validate = 0;
                validate_reply(a, true)
            }
            _ => {
                since_validate += 1;
                if since_validate > 1 {
                    vec![0x69, 0x85]
                } else {
                    hex("7101617605060000002a9000")
                }
            }
        },
        sent: vec![],
    };
    let mut s = Session::open(&mut t, None).unwrap();
    s.validate(&derive_key(b"password", &hex("4bb7a7fad7af401b")))
        .unwrap();
    assert_eq!(s.calculate_all(&[0; 8]).unwrap().len(), 1);
    assert_eq!(s.calculate_all(&[0; 8]).unwrap().len(), 1);
    drop(s);
    let ins: Vec<u8> = t.sent.iter().map(|a| a[1]).collect();
    assert_eq!(ins, [0xA4, 0xA3, 0xA4, 0xA4, 0xA4, 0xA3, 0xA4]);
}

#[test]
fn extended_apdus_after_select_on_firmware_4_and_later() {
    let mut t = Responder {
        f: |a: &[u8]| match (a[1], a[2]) {
            (0xA4, 0x04) => hex("790305040371084bb7a7fad7af401b9000"),
            _ => hex("9000"),
        },
        sent: vec![],
    };
    let mut s = Session::open(&mut t, Some(3062)).unwrap();
    s.calculate_all(&totp_challenge(59, 30)).unwrap();
    drop(s);
    assert_eq!(t.sent[0][4], 7, "SELECT is short");
    assert_eq!(hex("00a4000100000a74080000000000000001"), t.sent[1]);
}

// ---- sources over an in-memory backend ----

type Script = Arc<Mutex<dyn FnMut(&[u8]) -> Vec<u8> + Send>>;

struct MemBackend {
    readers: Vec<(String, Option<Script>)>,
}

struct MemConn(Script);

impl ApduTransport for MemConn {
    fn transmit(&mut self, apdu: &[u8]) -> crate::Result<Vec<u8>> {
        Ok((self.0.lock().unwrap())(apdu))
    }
}
impl Connection for MemConn {}

impl Backend for MemBackend {
    fn readers(&self) -> crate::Result<Vec<String>> {
        Ok(self.readers.iter().map(|r| r.0.clone()).collect())
    }
    fn connect(&self, reader: &str) -> crate::Result<Option<Box<dyn Connection>>> {
        let r = self.readers.iter().find(|r| r.0 == reader).unwrap();
        Ok(r.1
            .clone()
            .map(|s| Box::new(MemConn(s)) as Box<dyn Connection>))
    }
}

fn settings() -> TokenSettings {
    TokenSettings {
        profile: "mfa".into(),
        ..TokenSettings::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn parsers_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse_select(&data);
        let _ = parse_list(&data);
        let _ = parse_calculate(&data);
        let _ = parse_calculate_all(&data);
        let _ = device::parse_device_info(&data);
    }

    /// The whole client over a key that answers arbitrary bytes: errors, never panics,
    /// and never a hang (61xx chains are bounded).
    #[test]
    fn full_session_over_arbitrary_bytes(
        replies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..80), 1..12),
        tail_ok in any::<bool>(),
    ) {
        let queue = Arc::new(Mutex::new(replies));
        let q = queue.clone();
        let script: Script = Arc::new(Mutex::new(move |_: &[u8]| {
            let mut q = q.lock().unwrap();
            if q.is_empty() {
                if tail_ok { vec![0x90, 0x00] } else { vec![] }
            } else {
                q.remove(0)
            }
        }));
        let backend = Arc::new(MemBackend {
            readers: vec![("Yubico YubiKey OTP+FIDO+CCID 00 00".into(), Some(script))],
        });
        let ui = RecordingUi::new();
        let env: HashMap<String, String> = HashMap::new();
        let arn = "arn:aws:iam::111111111111:mfa/alice";
        if let Ok(mut src) = open_with(backend.clone(), &env, &settings(), arn, &ui) {
            let _ = src.code(&CodeRequest { mfa_serial: arn, profile: "mfa", at: 59 }, &ui);
        }
        let _ = list_devices_with(&*backend, &env, &ui);
    }

    #[test]
    fn session_parsers_over_arbitrary_responses(resp in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut first = true;
        let mut t = Responder { f: move |_: &[u8]| {
            if std::mem::take(&mut first) { hex("71084bb7a7fad7af401b9000") } else { resp.clone() }
        }, sent: vec![] };
        let mut s = Session::open(&mut t, None).unwrap();
        let _ = s.list();
        let _ = s.calculate_all(&[0; 8]);
        let _ = s.calculate(b"a", &[0; 8], true);
        let _ = s.codes(59);
    }
}

#[test]
fn touch_prompt_only_for_touch_credentials() {
    // A touch credential: CALCULATE_ALL says 7C; the CALCULATE answer comes after touch_wait.
    let ui = RecordingUi::new();
    let script: Script = Arc::new(Mutex::new(|a: &[u8]| match (a[1], a[2]) {
        (0xA4, 0x04) if a[5..] == OATH_AID => hex("790305040371084bb7a7fad7af401b9000"),
        (0xA4, 0x04) => vec![0x6A, 0x82],
        (0xA4, 0x00) => {
            let mut v = Vec::new();
            tlv::write(&mut v, 0x71, b"Amazon Web Services:alice@111111111111");
            v.extend_from_slice(&hex("7c0106"));
            v.extend_from_slice(&[0x90, 0x00]);
            v
        }
        (0xA2, _) => hex("76050641397eea9000"),
        _ => vec![0x6D, 0x00],
    }));
    let backend = Arc::new(MemBackend {
        readers: vec![
            ("Laptop internal reader".into(), None),
            ("Yubico YubiKey OTP+FIDO+CCID 00 00".into(), Some(script)),
            ("Yubico YubiKey OTP+FIDO+CCID 00 01".into(), None),
        ],
    });
    let env: HashMap<String, String> = HashMap::new();
    let arn = "arn:aws:iam::111111111111:mfa/alice";
    let mut src = open_with(backend, &env, &settings(), arn, &ui).unwrap();
    assert!(src.requires_touch());
    assert!(
        ui.events().is_empty(),
        "no prompt before the code is asked for"
    );
    let code = src
        .code(
            &CodeRequest {
                mfa_serial: arn,
                profile: "mfa",
                at: 59,
            },
            &ui,
        )
        .unwrap();
    assert_eq!(&*code.digits, "287082");
    assert_eq!((code.window_start, code.window_end), (30, 60));
    assert_eq!(
        ui.events(),
        vec![
            UiEvent::TouchWait(format!(
                "Touch your YubiKey (in reader \"Yubico YubiKey OTP+FIDO+CCID 00 00\") for {arn}"
            )),
            UiEvent::TouchDone(true)
        ]
    );
    assert_eq!(src.last_apdu_count(), 2);
}

#[test]
fn yubikey_4_2_usb_gets_the_dummy_apdu_and_5_x_does_not() {
    for (version, want_dummy) in [("040205", true), ("040207", false), ("050403", false)] {
        let select = hex(&format!("7903{version}71084bb7a7fad7af401b9000"));
        let mut t = Responder {
            f: move |a: &[u8]| match (a[1], a[2]) {
                (0xA4, 0x04) => select.clone(),
                (0xA4, 0x00) => {
                    let mut v = Vec::new();
                    tlv::write(&mut v, 0x71, &[b'x'; 60]);
                    v.extend_from_slice(&hex("76050600000001 9000"));
                    v
                }
                _ => hex("7605060000002a9000"),
            },
            sent: vec![],
        };
        let mut s = Session::open(&mut t, Some(3062)).unwrap();
        s.calculate_all(&[0; 8]).unwrap();
        s.calculate(b"x", &[0; 8], false).unwrap();
        drop(s);
        let dummies = t.sent.iter().filter(|a| a[..] == [0, 0, 0, 0]).count();
        assert_eq!(dummies, want_dummy as usize, "firmware {version}");
    }
}
