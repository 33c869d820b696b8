//! Unit tests of the virtual card against the facts in yubikey-protocols.md part A.
//! The expected values are computed independently here (HMAC over the RFC inputs) or
//! taken from the reference's worked examples, never from the card's own helpers.

use super::apdu::{parse_tlvs, put_tlv};
use super::*;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

const RFC_KEY: &[u8] = b"12345678901234567890";

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn hmac_sha1(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut m = <Hmac<Sha1> as KeyInit>::new_from_slice(key).unwrap();
    m.update(msg);
    m.finalize().into_bytes().to_vec()
}

fn sw(reply: &[u8]) -> u16 {
    u16::from_be_bytes([reply[reply.len() - 2], reply[reply.len() - 1]])
}

fn data(reply: &[u8]) -> &[u8] {
    &reply[..reply.len() - 2]
}

fn apdu(ins: u8, p1: u8, p2: u8, data: &[u8]) -> Vec<u8> {
    let mut v = vec![0x00, ins, p1, p2];
    if !data.is_empty() {
        v.push(data.len() as u8);
        v.extend_from_slice(data);
    }
    v
}

fn select(card: &mut VirtualYubiKey, aid: &[u8]) -> Vec<u8> {
    card.transmit(&apdu(0xA4, 0x04, 0x00, aid))
}

/// Send and follow 61xx with SEND REMAINING (A5), like ykman.
fn send_chained(card: &mut VirtualYubiKey, cmd: &[u8]) -> (Vec<u8>, u16, usize) {
    let mut out = Vec::new();
    let mut reply = card.transmit(cmd);
    let mut rounds = 1;
    while sw(&reply) >> 8 == 0x61 {
        out.extend_from_slice(data(&reply));
        reply = card.transmit(&[0x00, 0xA5, 0x00, 0x00, 0x00]);
        rounds += 1;
    }
    out.extend_from_slice(data(&reply));
    (out, sw(&reply), rounds)
}

fn calc(card: &mut VirtualYubiKey, name: &str, challenge: &[u8], p2: u8) -> Vec<u8> {
    let mut d = Vec::new();
    put_tlv(&mut d, 0x71, name.as_bytes());
    put_tlv(&mut d, 0x74, challenge);
    card.transmit(&apdu(0xA2, 0x00, p2, &d))
}

/// Truncated reply `76 05 <digits> <4 bytes>` → code string.
fn code_of(reply: &[u8]) -> String {
    assert_eq!(sw(reply), 0x9000, "reply {reply:02x?}");
    let t = parse_tlvs(data(reply)).unwrap();
    assert_eq!(t[0].tag, 0x76);
    let digits = t[0].value[0] as u32;
    let v = u32::from_be_bytes(t[0].value[1..5].try_into().unwrap()) & 0x7FFF_FFFF;
    format!("{:0width$}", v % 10u32.pow(digits), width = digits as usize)
}

fn step(t: u64) -> [u8; 8] {
    (t / 30).to_be_bytes()
}

fn rfc_card(digits: u8) -> VirtualYubiKey {
    VirtualYubiKey::new(VykConfig::new().account(Account::totp("rfc6238", RFC_KEY).digits(digits)))
}

#[test]
fn a6_worked_example_key_derivation_and_hmac() {
    let key = derive_access_key("password", &hex("4bb7a7fad7af401b"));
    assert_eq!(
        key.as_slice(),
        hex("fe65f703ff4806428901c3220becb19d").as_slice()
    );
    assert_eq!(
        hmac_sha1(key.as_slice(), &hex("0102030405060708")),
        hex("149fcea019b842168cf8ca3de87b7ded3a4c28cf")
    );
}

#[test]
fn a6_password_card_unlocks_with_mutual_hmac() {
    let salt: [u8; 8] = hex("4bb7a7fad7af401b").try_into().unwrap();
    let mut card = VirtualYubiKey::new(
        VykConfig::new()
            .name_salt(salt)
            .password("password")
            .account(Account::totp("a", RFC_KEY)),
    );
    let r = select(&mut card, &OATH_AID);
    assert_eq!(sw(&r), 0x9000);
    let t = parse_tlvs(data(&r)).unwrap();
    let tags: Vec<u8> = t.iter().map(|t| t.tag).collect();
    assert_eq!(tags, vec![0x79, 0x71, 0x74, 0x7B]);
    assert_eq!(t[0].value, vec![5, 4, 3]);
    assert_eq!(t[1].value, salt.to_vec());
    assert_eq!(t[3].value, vec![0x01]);
    let card_chal = t[2].value.clone();

    // Locked: LIST and CALCULATE need VALIDATE.
    assert_eq!(sw(&card.transmit(&[0, 0xA1, 0, 0, 0])), 0x6982);
    assert_eq!(sw(&calc(&mut card, "a", &step(59), 1)), 0x6982);

    // Wrong response → 6A80.
    let mut bad = Vec::new();
    put_tlv(&mut bad, 0x75, &[0u8; 20]);
    put_tlv(&mut bad, 0x74, &[1u8; 8]);
    assert_eq!(sw(&card.transmit(&apdu(0xA3, 0, 0, &bad))), 0x6A80);

    // Right response after a fresh SELECT.
    let r = select(&mut card, &OATH_AID);
    let card_chal2 = parse_tlvs(data(&r)).unwrap()[2].value.clone();
    assert_ne!(card_chal, card_chal2, "fresh challenge per SELECT");
    let key = hex("fe65f703ff4806428901c3220becb19d");
    let client_chal = hex("0102030405060708");
    let mut v = Vec::new();
    put_tlv(&mut v, 0x75, &hmac_sha1(&key, &card_chal2));
    put_tlv(&mut v, 0x74, &client_chal);
    let r = card.transmit(&apdu(0xA3, 0, 0, &v));
    assert_eq!(sw(&r), 0x9000);
    let t = parse_tlvs(data(&r)).unwrap();
    assert_eq!(t[0].tag, 0x75);
    assert_eq!(t[0].value, hex("149fcea019b842168cf8ca3de87b7ded3a4c28cf"));
    // Unlocked for the session.
    assert_eq!(code_of(&calc(&mut card, "a", &step(59), 1)), "287082");
    assert_eq!(sw(&card.transmit(&[0, 0xA1, 0, 0, 0])), 0x9000);
    // Re-SELECT locks again.
    select(&mut card, &OATH_AID);
    assert_eq!(sw(&card.transmit(&[0, 0xA1, 0, 0, 0])), 0x6982);
    // Selecting another applet ends the session too (and RESET is allowed while locked).
    assert_eq!(sw(&card.transmit(&apdu(0x04, 0xDE, 0xAD, &[]))), 0x9000);
    assert!(!card.handle().has_password());
    assert!(card.handle().credential_ids().is_empty());
}

#[test]
fn a7_rfc6238_vectors_through_calculate() {
    let mut card = rfc_card(8);
    assert_eq!(sw(&select(&mut card, &OATH_AID)), 0x9000);
    let r = calc(&mut card, "rfc6238", &step(59), 1);
    // Raw truncation c1397eea masked to 31 bits.
    assert_eq!(data(&r), hex("7605 08 41397eea").as_slice());
    assert_eq!(code_of(&r), "94287082");
    assert_eq!(
        code_of(&calc(&mut card, "rfc6238", &step(1111111109), 1)),
        "07081804"
    );
    assert_eq!(
        code_of(&calc(&mut card, "rfc6238", &step(2000000000), 1)),
        "69279037"
    );
    let mut card6 = rfc_card(6);
    select(&mut card6, &OATH_AID);
    assert_eq!(
        code_of(&calc(&mut card6, "rfc6238", &step(59), 1)),
        "287082"
    );
    // Full response (P2=00): 75 <digits> <20-byte HMAC>.
    let r = calc(&mut card6, "rfc6238", &step(59), 0);
    let t = parse_tlvs(data(&r)).unwrap();
    assert_eq!(t[0].tag, 0x75);
    assert_eq!(t[0].value[0], 6);
    assert_eq!(&t[0].value[1..], hmac_sha1(RFC_KEY, &step(59)).as_slice());
    // Unknown name.
    assert_eq!(sw(&calc(&mut card6, "nope", &step(59), 1)), 0x6984);
}

#[test]
fn sha256_and_sha512_rfc6238_vectors() {
    // RFC 6238 appendix B: seeds of 32 and 64 bytes.
    let k256 = b"12345678901234567890123456789012";
    let k512 = b"1234567890123456789012345678901234567890123456789012345678901234";
    let mut card = VirtualYubiKey::new(
        VykConfig::new()
            .account(
                Account::totp("s256", k256)
                    .algorithm(Algorithm::Sha256)
                    .digits(8),
            )
            .account(
                Account::totp("s512", k512)
                    .algorithm(Algorithm::Sha512)
                    .digits(8),
            ),
    );
    select(&mut card, &OATH_AID);
    assert_eq!(code_of(&calc(&mut card, "s256", &step(59), 1)), "46119246");
    assert_eq!(code_of(&calc(&mut card, "s512", &step(59), 1)), "90693936");
    assert_eq!(
        code_of(&calc(&mut card, "s256", &step(2000000000), 1)),
        "90698825"
    );
    assert_eq!(
        code_of(&calc(&mut card, "s512", &step(2000000000), 1)),
        "38618901"
    );
    let r = card.transmit(&[0, 0xA1, 0, 0, 0]);
    let t = parse_tlvs(data(&r)).unwrap();
    assert_eq!(t[0].value[0], 0x22);
    assert_eq!(t[1].value[0], 0x23);
}

#[test]
fn a9_put_example_bytes() {
    let mut card = VirtualYubiKey::new(VykConfig::new());
    select(&mut card, &OATH_AID);
    let put = hex(
        "00 01 00 00 21 71 0d 45 78 61 6d 70 6c 65 3a 61 6c 69 63 65 73 10 21 06 48 65 6c 6c 6f 21 de ad be ef 00 00 00 00",
    );
    assert_eq!(card.transmit(&put), vec![0x90, 0x00]);
    let r = card.transmit(&[0, 0xA1, 0, 0, 0]);
    let mut expected = Vec::new();
    let mut item = vec![0x21];
    item.extend_from_slice(b"Example:alice");
    put_tlv(&mut expected, 0x72, &item);
    assert_eq!(data(&r), expected.as_slice());
    // The code equals an independent TOTP over the Base32 secret JBSWY3DPEHPK3PXP.
    let secret = decode_base32("jbsw y3dp ehpk 3pxp").unwrap();
    assert_eq!(secret.as_slice(), b"Hello!\xde\xad\xbe\xef");
    let mac = hmac_sha1(&secret, &step(1_700_000_000));
    let off = (mac[19] & 0xF) as usize;
    let v = u32::from_be_bytes(mac[off..off + 4].try_into().unwrap()) & 0x7FFF_FFFF;
    assert_eq!(
        code_of(&calc(&mut card, "Example:alice", &step(1_700_000_000), 1)),
        format!("{:06}", v % 1_000_000)
    );
    // The same PUT with touch `78 02` appended overwrites with the touch flag.
    let mut touch_put = put.clone();
    touch_put[4] += 2;
    touch_put.extend_from_slice(&[0x78, 0x02]);
    assert_eq!(sw(&card.transmit(&touch_put)), 0x9000);
    assert_eq!(card.handle().credential_ids().len(), 1);
    assert_eq!(card.handle().requires_touch("Example:alice"), Some(true));
    // Unprepared keys are refused (strict about A.9).
    let mut short = Vec::new();
    put_tlv(&mut short, 0x71, b"short");
    put_tlv(&mut short, 0x73, &[0x21, 6, 1, 2, 3]);
    assert_eq!(sw(&card.transmit(&apdu(0x01, 0, 0, &short))), 0x6A80);
}

#[test]
fn name_limit_64_bytes() {
    let mut card = VirtualYubiKey::new(VykConfig::new());
    select(&mut card, &OATH_AID);
    let put = |name: &str| {
        let mut d = Vec::new();
        put_tlv(&mut d, 0x71, name.as_bytes());
        let mut k = vec![0x21, 6];
        k.extend_from_slice(&[7u8; 14]);
        put_tlv(&mut d, 0x73, &k);
        apdu(0x01, 0, 0, &d)
    };
    assert_eq!(sw(&card.transmit(&put(&"x".repeat(64)))), 0x9000);
    assert_eq!(sw(&card.transmit(&put(&"x".repeat(65)))), 0x6A80);
    assert_eq!(sw(&card.transmit(&put(""))), 0x6A80);
}

fn put_many(card: &mut VirtualYubiKey, n: usize) -> Vec<u16> {
    (0..n)
        .map(|i| {
            let mut d = Vec::new();
            put_tlv(
                &mut d,
                0x71,
                format!("Issuer{i:02}:user{i:02}@example.com").as_bytes(),
            );
            let mut k = vec![0x21, 6];
            k.extend_from_slice(&[i as u8; 20]);
            put_tlv(&mut d, 0x73, &k);
            sw(&card.transmit(&apdu(0x01, 0, 0, &d)))
        })
        .collect()
}

#[test]
fn capacity_32_before_5_7_and_64_from_5_7() {
    let mut card = VirtualYubiKey::new(VykConfig::new());
    select(&mut card, &OATH_AID);
    let sws = put_many(&mut card, 33);
    assert!(sws[..32].iter().all(|&s| s == 0x9000));
    assert_eq!(sws[32], 0x6A84);
    let mut card = VirtualYubiKey::new(VykConfig::new().firmware(5, 7, 0));
    select(&mut card, &OATH_AID);
    let sws = put_many(&mut card, 65);
    assert!(sws[..64].iter().all(|&s| s == 0x9000));
    assert_eq!(sws[64], 0x6A84);
    // Overwriting an existing name does not need space.
    let mut d = Vec::new();
    put_tlv(&mut d, 0x71, b"Issuer00:user00@example.com");
    let mut k = vec![0x21, 8];
    k.extend_from_slice(&[9u8; 20]);
    put_tlv(&mut d, 0x73, &k);
    assert_eq!(sw(&card.transmit(&apdu(0x01, 0, 0, &d))), 0x9000);
}

#[test]
fn response_chaining_with_send_remaining() {
    let mut card = VirtualYubiKey::new(VykConfig::new());
    select(&mut card, &OATH_AID);
    put_many(&mut card, 20);
    let (list, status, rounds) = send_chained(&mut card, &[0, 0xA1, 0, 0, 0]);
    assert_eq!(status, 0x9000);
    assert!(
        rounds >= 3,
        "LIST of 20 names must chain, got {rounds} rounds"
    );
    let items = parse_tlvs(&list).unwrap();
    assert_eq!(items.len(), 20);
    assert_eq!(&items[19].value[1..], b"Issuer19:user19@example.com");
    // First reply is exactly one chunk with 61xx.
    let first = card.transmit(&[0, 0xA1, 0, 0, 0]);
    assert_eq!(first.len(), 256 + 2);
    assert_eq!(first[256], 0x61);
    // Any other command drops the rest.
    card.transmit(&calc_all_apdu(&step(59)));
    assert_eq!(sw(&card.transmit(&[0, 0xA5, 0, 0, 0])) >> 8, 0x61);

    // A smaller configured chunk chains CALCULATE_ALL too.
    let mut small = VirtualYubiKey::new(VykConfig::new().max_chunk(16));
    select(&mut small, &OATH_AID);
    put_many(&mut small, 3);
    let (all, status, rounds) = send_chained(&mut small, &calc_all_apdu(&step(59)));
    assert_eq!(status, 0x9000);
    assert!(rounds > 3);
    assert_eq!(parse_tlvs(&all).unwrap().len(), 6);
}

fn calc_all_apdu(challenge: &[u8]) -> Vec<u8> {
    let mut d = Vec::new();
    put_tlv(&mut d, 0x74, challenge);
    apdu(0xA4, 0x00, 0x01, &d)
}

#[test]
fn command_chaining_and_extended_apdus() {
    let mut card = rfc_card(8);
    // Extended SELECT and extended CALCULATE (what ykman sends over USB to a YubiKey reader).
    let mut sel = vec![0, 0xA4, 0x04, 0x00, 0x00, 0x00, 0x07];
    sel.extend_from_slice(&OATH_AID);
    assert_eq!(sw(&card.transmit(&sel)), 0x9000);
    let mut d = Vec::new();
    put_tlv(&mut d, 0x71, b"rfc6238");
    put_tlv(&mut d, 0x74, &step(59));
    let mut ext = vec![0, 0xA2, 0x00, 0x01, 0x00, 0x00, d.len() as u8];
    ext.extend_from_slice(&d);
    ext.extend_from_slice(&[0x00, 0x00]);
    assert_eq!(code_of(&card.transmit(&ext)), "94287082");
    // Extended CALCULATE_ALL exactly as test-stack.md shows.
    let mut all = hex("00 A4 00 01 00 00 0A 74 08");
    all.extend_from_slice(&step(59));
    let r = card.transmit(&all);
    assert_eq!(sw(&r), 0x9000);
    let t = parse_tlvs(data(&r)).unwrap();
    assert_eq!(t[1].value, hex("08 41397eea"));

    // Command chaining: a PUT split into pieces with CLA|0x10.
    let mut put = Vec::new();
    put_tlv(&mut put, 0x71, "chained:".repeat(8).as_bytes());
    let mut k = vec![0x21, 6];
    k.extend_from_slice(RFC_KEY);
    put_tlv(&mut put, 0x73, &k);
    let (a, b) = put.split_at(30);
    let mut first = vec![0x10, 0x01, 0, 0, a.len() as u8];
    first.extend_from_slice(a);
    assert_eq!(card.transmit(&first), vec![0x90, 0x00]);
    assert_eq!(sw(&card.transmit(&apdu(0x01, 0, 0, b))), 0x9000);
    let name = "chained:".repeat(8);
    assert!(card.handle().credential_ids().contains(&name));
    assert_eq!(code_of(&calc(&mut card, &name, &step(59), 1)), "287082");
}

#[test]
fn calculate_all_formats_and_hotp() {
    let mut card = VirtualYubiKey::new(
        VykConfig::new()
            .account(Account::totp("plain", RFC_KEY))
            .account(Account::totp("ACME:sixty", RFC_KEY).period(60))
            .account(Account::totp("touchy", RFC_KEY).touch(true).digits(8))
            .account(Account::hotp("counter", RFC_KEY, 0)),
    );
    assert_eq!(
        card.handle().credential_ids(),
        vec!["plain", "60/ACME:sixty", "touchy", "counter"]
    );
    select(&mut card, &OATH_AID);
    let r = card.transmit(&calc_all_apdu(&step(59)));
    assert_eq!(sw(&r), 0x9000);
    let t = parse_tlvs(data(&r)).unwrap();
    let pairs: Vec<(Vec<u8>, u8, Vec<u8>)> = t
        .chunks(2)
        .map(|p| (p[0].value.clone(), p[1].tag, p[1].value.clone()))
        .collect();
    assert_eq!(pairs[0], (b"plain".to_vec(), 0x76, hex("06 41397eea")));
    // The 60-s credential is computed with the supplied (30-s) challenge.
    assert_eq!(
        pairs[1],
        (b"60/ACME:sixty".to_vec(), 0x76, hex("06 41397eea"))
    );
    assert_eq!(pairs[2], (b"touchy".to_vec(), 0x7C, vec![8]));
    assert_eq!(pairs[3], (b"counter".to_vec(), 0x77, vec![6]));
    assert_eq!(card.handle().hotp_counter("counter"), Some(0));
    // LIST types.
    let r = card.transmit(&[0, 0xA1, 0, 0, 0]);
    let types: Vec<u8> = parse_tlvs(data(&r))
        .unwrap()
        .iter()
        .map(|t| t.value[0])
        .collect();
    assert_eq!(types, vec![0x21, 0x21, 0x21, 0x11]);
    // HOTP: RFC 4226 appendix D vectors, with the card's own counter (challenge ignored).
    for expected in ["755224", "287082", "359152", "969429"] {
        assert_eq!(code_of(&calc(&mut card, "counter", &[], 1)), expected);
    }
    assert_eq!(card.handle().hotp_counter("counter"), Some(4));
    // HOTP with an initial counter via PUT 7A.
    let mut d = Vec::new();
    put_tlv(&mut d, 0x71, b"h9");
    let mut k = vec![0x11, 6];
    k.extend_from_slice(RFC_KEY);
    put_tlv(&mut d, 0x73, &k);
    put_tlv(&mut d, 0x7A, &9u32.to_be_bytes());
    assert_eq!(sw(&card.transmit(&apdu(0x01, 0, 0, &d))), 0x9000);
    assert_eq!(code_of(&calc(&mut card, "h9", &[0; 8], 1)), "520489");
}

#[test]
fn touch_press_and_timeout() {
    let mut card = VirtualYubiKey::new(
        VykConfig::new()
            .touch_timeout(Duration::from_millis(150))
            .account(Account::totp("t", RFC_KEY).touch(true)),
    );
    let button = card.button();
    select(&mut card, &OATH_AID);
    // No press: 6982 after the timeout.
    let start = Instant::now();
    assert_eq!(sw(&calc(&mut card, "t", &step(59), 1)), 0x6982);
    assert!(start.elapsed() >= Duration::from_millis(150));
    assert_eq!(button.touch_requests(), 1);
    // A press before the request is ignored, like the real key.
    assert!(!button.press());
    // Press while waiting.
    card.handle().set_touch_timeout(Duration::from_secs(10));
    let b = button.clone();
    let presser = std::thread::spawn(move || b.press_when_requested(Duration::from_secs(5)));
    let start = Instant::now();
    let r = calc(&mut card, "t", &step(59), 1);
    assert!(presser.join().unwrap());
    assert_eq!(code_of(&r), "287082");
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(!button.is_waiting());
    // Auto-press.
    card.handle()
        .set_auto_press(Some(Duration::from_millis(20)));
    assert_eq!(code_of(&calc(&mut card, "t", &step(59), 1)), "287082");
    assert_eq!(button.touch_requests(), 3);
}

#[test]
fn set_code_change_and_clear() {
    let mut card = VirtualYubiKey::new(VykConfig::new().account(Account::totp("a", RFC_KEY)));
    let r = select(&mut card, &OATH_AID);
    let salt = parse_tlvs(data(&r)).unwrap()[1].value.clone();
    let key = derive_access_key("hunter2", &salt);
    let chal = [5u8; 8];
    let set = |resp: &[u8]| {
        let mut d = Vec::new();
        let mut k = vec![0x21];
        k.extend_from_slice(key.as_slice());
        put_tlv(&mut d, 0x73, &k);
        put_tlv(&mut d, 0x74, &chal);
        put_tlv(&mut d, 0x75, resp);
        apdu(0x03, 0, 0, &d)
    };
    // Wrong HMAC → 6984.
    assert_eq!(sw(&card.transmit(&set(&[0u8; 20]))), 0x6984);
    assert!(!card.handle().has_password());
    assert_eq!(
        sw(&card.transmit(&set(&hmac_sha1(key.as_slice(), &chal)))),
        0x9000
    );
    assert!(card.handle().has_password());
    // Still unlocked in this session (YubiKey 4/5), locked after re-SELECT.
    assert_eq!(sw(&card.transmit(&[0, 0xA1, 0, 0, 0])), 0x9000);
    let r = select(&mut card, &OATH_AID);
    let t = parse_tlvs(data(&r)).unwrap();
    assert_eq!(t.len(), 4);
    assert_eq!(sw(&card.transmit(&apdu(0x03, 0, 0, &[0x73, 0x00]))), 0x6982);
    let mut v = Vec::new();
    put_tlv(&mut v, 0x75, &hmac_sha1(key.as_slice(), &t[2].value));
    put_tlv(&mut v, 0x74, &[9u8; 8]);
    assert_eq!(sw(&card.transmit(&apdu(0xA3, 0, 0, &v))), 0x9000);
    // Clear.
    assert_eq!(sw(&card.transmit(&apdu(0x03, 0, 0, &[0x73, 0x00]))), 0x9000);
    let r = select(&mut card, &OATH_AID);
    assert_eq!(parse_tlvs(data(&r)).unwrap().len(), 2);
    // VALIDATE with no key → 6984.
    assert_eq!(sw(&card.transmit(&apdu(0xA3, 0, 0, &v))), 0x6984);
}

#[test]
fn delete_rename_reset() {
    let mut card = VirtualYubiKey::new(
        VykConfig::new()
            .account(Account::totp("a", RFC_KEY))
            .account(Account::totp("b", RFC_KEY)),
    );
    let salt_before = card.handle().name_salt();
    select(&mut card, &OATH_AID);
    let mut d = Vec::new();
    put_tlv(&mut d, 0x71, b"zzz");
    assert_eq!(sw(&card.transmit(&apdu(0x02, 0, 0, &d))), 0x6984);
    let mut d = Vec::new();
    put_tlv(&mut d, 0x71, b"a");
    assert_eq!(sw(&card.transmit(&apdu(0x02, 0, 0, &d))), 0x9000);
    let mut d = Vec::new();
    put_tlv(&mut d, 0x71, b"b");
    put_tlv(&mut d, 0x71, b"Issuer:b");
    assert_eq!(sw(&card.transmit(&apdu(0x05, 0, 0, &d))), 0x9000);
    assert_eq!(card.handle().credential_ids(), vec!["Issuer:b"]);
    assert_eq!(sw(&card.transmit(&apdu(0x04, 0, 0, &[]))), 0x6B00);
    assert_eq!(sw(&card.transmit(&apdu(0x04, 0xDE, 0xAD, &[]))), 0x9000);
    assert!(card.handle().credential_ids().is_empty());
    assert_ne!(card.handle().name_salt(), salt_before);
    // RENAME not on firmware < 5.3.0.
    let mut old = VirtualYubiKey::new(
        VykConfig::new()
            .firmware(5, 2, 7)
            .account(Account::totp("b", RFC_KEY)),
    );
    select(&mut old, &OATH_AID);
    assert_eq!(sw(&old.transmit(&apdu(0x05, 0, 0, &d))), 0x6D00);
}

#[test]
fn management_otp_and_other_aids() {
    let mut card = VirtualYubiKey::new(VykConfig::new().serial(7654321));
    let r = select(&mut card, &MGMT_AID);
    assert_eq!(sw(&r), 0x9000);
    assert!(String::from_utf8_lossy(data(&r)).contains("5.4.3"));
    let r = card.transmit(&[0, 0x1D, 0, 0, 0]);
    assert_eq!(sw(&r), 0x9000);
    let d = data(&r);
    assert_eq!(d[0] as usize, d.len() - 1);
    let t = parse_tlvs(&d[1..]).unwrap();
    let get = |tag: u8| t.iter().find(|x| x.tag == tag).unwrap().value.clone();
    assert_eq!(get(0x02), 7654321u32.to_be_bytes().to_vec());
    assert_eq!(get(0x05), vec![5, 4, 3]);
    assert_eq!(get(0x04), vec![0x01]);
    assert_ne!(
        u16::from_be_bytes(get(0x01).try_into().unwrap()) & capability::OATH,
        0
    );

    let r = select(&mut card, &OTP_AID);
    assert_eq!(&data(&r)[..3], &[5, 4, 3]);
    let r = card.transmit(&[0, 0x01, 0x10, 0x00, 0x00]);
    assert_eq!(r, [&7654321u32.to_be_bytes()[..], &[0x90, 0x00]].concat());

    for aid in [
        hex("a0000006472f0001"), // FIDO
        hex("a0000005271002"),   // U2F
        hex("d27600012401"),     // OpenPGP
        hex("a000000527210701"), // HSM auth
    ] {
        assert_eq!(sw(&select(&mut card, &aid)), 0x6A82, "{aid:02x?}");
    }
    // The PIV applet is there (piv.rs).
    assert_eq!(sw(&select(&mut card, &hex("a000000308"))), 0x9000);
    let mut no_mgmt = VirtualYubiKey::new(VykConfig::new().without_management());
    assert_eq!(sw(&select(&mut no_mgmt, &MGMT_AID)), 0x6A82);
    assert_eq!(sw(&select(&mut no_mgmt, &OTP_AID)), 0x9000);
    assert_eq!(card.atr()[1] & 0xF0, 0xF0);
}

#[test]
fn fault_injection() {
    let mut card = rfc_card(6);
    let h = card.handle();
    select(&mut card, &OATH_AID);
    h.inject(Fault::Sw(0x6581));
    h.inject(Fault::Truncate(3));
    h.inject(Fault::Corrupt);
    assert_eq!(card.transmit(&calc_all_apdu(&step(59))), vec![0x65, 0x81]);
    assert_eq!(card.transmit(&calc_all_apdu(&step(59))).len(), 3);
    let good = {
        let mut c2 = rfc_card(6);
        select(&mut c2, &OATH_AID);
        c2.transmit(&calc_all_apdu(&step(59)))
    };
    let corrupted = card.transmit(&calc_all_apdu(&step(59)));
    assert_eq!(corrupted.len(), good.len());
    assert_ne!(corrupted, good);
    assert_eq!(card.transmit(&calc_all_apdu(&step(59))), good);
    h.inject(Fault::Delay(Duration::from_millis(100)));
    let start = Instant::now();
    assert_eq!(card.transmit(&calc_all_apdu(&step(59))), good);
    assert!(start.elapsed() >= Duration::from_millis(100));
    h.inject(Fault::Remove);
    assert!(card.transmit(&calc_all_apdu(&step(59))).is_empty());
    assert!(h.is_removed());
    assert!(card.transmit(&[0, 0xA1, 0, 0, 0]).is_empty());
    h.reinsert();
    // After reinsertion nothing is selected.
    assert_eq!(sw(&card.transmit(&[0, 0xA1, 0, 0, 0])), 0x6D00);
    assert_eq!(sw(&select(&mut card, &OATH_AID)), 0x9000);
    let hist = h.history();
    assert!(hist.iter().any(|r| r.ins == 0xA4 && r.sw == Some(0x6581)));
    assert!(hist.iter().any(|r| r.sw.is_none()));
}

#[test]
fn debug_output_redacts_secrets() {
    let a = Account::totp_base32("x", "JBSWY3DPEHPK3PXP").unwrap();
    let cfg = VykConfig::new().password("s3cret-pass").account(a);
    let s = format!("{cfg:?}");
    assert!(!s.contains("s3cret-pass"));
    assert!(!s.contains("72, 101") && !s.contains("Hello"));
    assert!(s.contains("redacted"));
}

// ----- OTP applet: HMAC-SHA1 challenge-response slots (part B.8) -------------------------

const OTP_KEY: [u8; 20] = *b"otp-slot-hmac-key-20";

fn otp_card(slot2: OtpSlot) -> VirtualYubiKey {
    VirtualYubiKey::new(
        VykConfig::new()
            .serial(424242)
            .otp_slot(2, slot2)
            .touch_timeout(Duration::from_millis(300)),
    )
}

#[test]
fn otp_status_shows_programmed_slots() {
    let mut k = otp_card(OtpSlot::hmac_sha1(OTP_KEY, false));
    let r = k.transmit(&apdu(0xA4, 0x04, 0x00, &OTP_AID));
    assert_eq!(sw(&r), 0x9000);
    // firmware 5.4.3, programming sequence 1, touch level 0x0002 (slot 2 valid), LE.
    assert_eq!(data(&r), &[5, 4, 3, 1, 0x02, 0x00]);
    let mut empty = VirtualYubiKey::new(VykConfig::new());
    let r = empty.transmit(&apdu(0xA4, 0x04, 0x00, &OTP_AID));
    assert_eq!(data(&r), &[5, 4, 3, 0, 0, 0]);
}

#[test]
fn otp_hmac_follows_the_lt64_rule() {
    let mut k = otp_card(OtpSlot::hmac_sha1(OTP_KEY, false));
    k.transmit(&apdu(0xA4, 0x04, 0x00, &OTP_AID));
    // ykman's padding: a challenge ending in 00 is padded with 01, else with 00; under
    // HMAC_LT64 the key hashes exactly the challenge.
    for chal in [
        &b"short challenge"[..],
        b"ends in zero\0",
        b"\0\0\0",
        &[0x01; 63],
    ] {
        let pad = if chal.last() == Some(&0) { 1 } else { 0 };
        let mut buf = chal.to_vec();
        buf.resize(64, pad);
        let r = k.transmit(&apdu(0x01, 0x38, 0x00, &buf));
        assert_eq!(sw(&r), 0x9000);
        assert_eq!(data(&r), hmac_sha1(&OTP_KEY, chal).as_slice(), "{chal:?}");
    }
    // ykchalresp-style zero padding loses a challenge's trailing zeros (part E.9).
    let mut buf = b"ends in zero\0".to_vec();
    buf.resize(64, 0);
    let r = k.transmit(&apdu(0x01, 0x38, 0x00, &buf));
    assert_eq!(data(&r), hmac_sha1(&OTP_KEY, b"ends in zero").as_slice());
    // Without HMAC_LT64 all 64 bytes are hashed.
    let mut full = otp_card(OtpSlot {
        lt64: false,
        ..OtpSlot::hmac_sha1(OTP_KEY, false)
    });
    full.transmit(&apdu(0xA4, 0x04, 0x00, &OTP_AID));
    let mut buf = b"abc".to_vec();
    buf.resize(64, 0);
    let r = full.transmit(&apdu(0x01, 0x38, 0x00, &buf));
    assert_eq!(data(&r), hmac_sha1(&OTP_KEY, &buf).as_slice());
}

#[test]
fn otp_empty_slot_bad_length_and_touch() {
    let mut k = otp_card(OtpSlot::hmac_sha1(OTP_KEY, true));
    k.transmit(&apdu(0xA4, 0x04, 0x00, &OTP_AID));
    // Slot 1 is empty.
    assert_eq!(sw(&k.transmit(&apdu(0x01, 0x30, 0x00, &[1; 64]))), 0x6985);
    // More than 64 bytes.
    let mut long = vec![0x00, 0x01, 0x38, 0x00, 65];
    long.extend_from_slice(&[1; 65]);
    assert_eq!(sw(&k.transmit(&long)), 0x6700);
    // Touch slot: no press → 6982 after the touch timeout; a press → the answer.
    assert_eq!(sw(&k.transmit(&apdu(0x01, 0x38, 0x00, &[7; 64]))), 0x6982);
    assert_eq!(k.button().touch_requests(), 1);
    let button = k.button();
    let t = std::thread::spawn(move || button.press_when_requested(Duration::from_secs(5)));
    let r = k.transmit(&apdu(0x01, 0x38, 0x00, &[7; 64]));
    assert!(t.join().unwrap());
    assert_eq!(sw(&r), 0x9000);
    // 64 equal bytes under HMAC_LT64: every byte equals the last one, so nothing is hashed.
    assert_eq!(data(&r), hmac_sha1(&OTP_KEY, b"").as_slice());
    // The OATH applet is still there beside it.
    assert_eq!(sw(&k.transmit(&apdu(0xA4, 0x04, 0x00, &OATH_AID))), 0x9000);
}

mod piv_applet {
    //! The PIV applet's guards, in memory: what a client without the management key or the
    //! PIN is refused, and the PIN counter. ykman judges the happy paths (tests/piv_pcsc.rs).
    use super::*;
    use des::TdesEde3;
    use des::cipher::{BlockDecrypt, KeyInit as _};

    fn piv_card() -> VirtualYubiKey {
        let mut card = VirtualYubiKey::new(VykConfig::new());
        assert_eq!(sw(&select(&mut card, &piv::PIV_AID)), 0x9000);
        card
    }

    fn verify(card: &mut VirtualYubiKey, pin: &[u8]) -> u16 {
        let mut padded = pin.to_vec();
        padded.resize(8, 0xFF);
        sw(&card.transmit(&apdu(0x20, 0x00, 0x80, &padded)))
    }

    /// Management-key authentication with `key`: the card's witness decrypted with it.
    fn authenticate(card: &mut VirtualYubiKey, key: &[u8; 24]) -> u16 {
        let r = card.transmit(&apdu(0x87, 0x03, 0x9B, &[0x7C, 0x02, 0x80, 0x00]));
        assert_eq!(sw(&r), 0x9000);
        let outer = parse_tlvs(data(&r)).unwrap();
        let inner = parse_tlvs(&outer[0].value).unwrap();
        let mut block = des::cipher::Block::<des::TdesEde3>::from(
            <[u8; 8]>::try_from(&inner[0].value[..]).expect("an 8-byte witness"),
        );
        TdesEde3::new_from_slice(key)
            .unwrap()
            .decrypt_block(&mut block);
        let mut body = Vec::new();
        put_tlv(&mut body, 0x80, &block);
        put_tlv(&mut body, 0x81, &[7u8; 8]);
        let mut msg = Vec::new();
        put_tlv(&mut msg, 0x7C, &body);
        sw(&card.transmit(&apdu(0x87, 0x03, 0x9B, &msg)))
    }

    const GENERATE_P256: [u8; 5] = [0xAC, 0x03, 0x80, 0x01, 0x11];

    #[test]
    fn generate_and_put_data_need_the_management_key_and_sign_needs_the_pin() {
        let mut card = piv_card();
        assert_eq!(
            sw(&card.transmit(&apdu(0x47, 0x00, 0x9A, &GENERATE_P256))),
            0x6982
        );
        let put = [0x5C, 0x03, 0x5F, 0xC1, 0x05, 0x53, 0x01, 0x00];
        assert_eq!(sw(&card.transmit(&apdu(0xDB, 0x3F, 0xFF, &put))), 0x6982);
        assert_eq!(
            authenticate(&mut card, &[9u8; 24]),
            0x6982,
            "a wrong key is refused"
        );
        assert_eq!(
            authenticate(&mut card, &piv::DEFAULT_MANAGEMENT_KEY),
            0x9000
        );
        let r = card.transmit(&apdu(0x47, 0x00, 0x9A, &GENERATE_P256));
        assert_eq!(sw(&r), 0x9000);
        assert_eq!(&data(&r)[..2], &[0x7F, 0x49]);
        // The public point only (65 bytes, uncompressed): no private key material comes out.
        assert_eq!(data(&r).len(), 2 + 1 + 2 + 65);
        let sign = [0x7C, 0x24, 0x82, 0x00, 0x81, 0x20];
        let mut sign = sign.to_vec();
        sign.extend_from_slice(&[0x55; 32]);
        assert_eq!(sw(&card.transmit(&apdu(0x87, 0x11, 0x9A, &sign))), 0x6982);
        assert_eq!(verify(&mut card, b"123456"), 0x9000);
        let r = card.transmit(&apdu(0x87, 0x11, 0x9A, &sign));
        assert_eq!(sw(&r), 0x9000);
        // A new SELECT (another program) forgets the PIN and the management key.
        select(&mut card, &piv::PIV_AID);
        assert_eq!(sw(&card.transmit(&apdu(0x87, 0x11, 0x9A, &sign))), 0x6982);
        assert_eq!(
            sw(&card.transmit(&apdu(0x47, 0x00, 0x9C, &GENERATE_P256))),
            0x6982
        );
    }

    #[test]
    fn three_wrong_pins_block_it_and_the_empty_verify_reports_without_spending() {
        let mut card = piv_card();
        assert_eq!(sw(&card.transmit(&apdu(0x20, 0x00, 0x80, &[]))), 0x63C3);
        assert_eq!(verify(&mut card, b"000000"), 0x63C2);
        assert_eq!(sw(&card.transmit(&apdu(0x20, 0x00, 0x80, &[]))), 0x63C2);
        assert_eq!(verify(&mut card, b"000000"), 0x63C1);
        assert_eq!(verify(&mut card, b"000000"), 0x6983);
        assert_eq!(
            verify(&mut card, b"123456"),
            0x6983,
            "blocked even for the right PIN"
        );
        assert_eq!(card.handle().piv_pin_retries(), 0);
    }
}
