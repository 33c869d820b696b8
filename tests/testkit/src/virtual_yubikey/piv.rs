//! The PIV applet of the virtual YubiKey (NIST SP 800-73-4 with Yubico's extensions), as
//! ykman and the `yubikey` crate drive it: SELECT, GET VERSION, GET SERIAL, VERIFY (PIN
//! with retries), CHANGE REFERENCE and RESET RETRY, management-key mutual authentication
//! (3DES, the default key 010203…08 three times), GENERATE ASYMMETRIC (P-256, P-384,
//! RSA 2048), PUT DATA / GET DATA, GENERAL AUTHENTICATE (sign), GET METADATA, PIN and touch
//! policies. Private keys never leave the card: no command returns them, and the only way
//! in or out of a key is a signature or a public key.
//!
//! Firmware 5.4.3 behaviour: the management key is 3DES (AES defaults came with 5.7), so
//! ykman and the `yubikey` crate (3DES only) both authenticate the same way.

use std::collections::BTreeMap;
use std::fmt;

use des::TdesEde3;
use des::cipher::{BlockEncrypt, KeyInit};
use p256_13::ecdsa::signature::hazmat::PrehashSigner;
use rsa::traits::PublicKeyParts;
use zeroize::Zeroizing;

use super::apdu::*;

/// PIV applet AID prefix (the full AID adds a version; clients send the first five bytes).
pub const PIV_AID: [u8; 5] = [0xA0, 0x00, 0x00, 0x03, 0x08];
/// The factory management key.
pub const DEFAULT_MANAGEMENT_KEY: [u8; 24] = [
    1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8,
];
pub const DEFAULT_PIN: &str = "123456";
pub const DEFAULT_PUK: &str = "12345678";

const SW_AUTH_BLOCKED: u16 = 0x6983;
const SW_REFERENCE_NOT_FOUND: u16 = 0x6A88;
const SW_INCORRECT_PARAMS: u16 = 0x6A80;

const PIN_REF: u8 = 0x80;
const PUK_REF: u8 = 0x81;
const MGMT_SLOT: u8 = 0x9B;
const ALG_3DES: u8 = 0x03;

/// Key algorithms (the PIV algorithm byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PivAlgorithm {
    Rsa2048,
    EccP256,
    EccP384,
}

impl PivAlgorithm {
    pub fn code(self) -> u8 {
        match self {
            PivAlgorithm::Rsa2048 => 0x07,
            PivAlgorithm::EccP256 => 0x11,
            PivAlgorithm::EccP384 => 0x14,
        }
    }
    fn from_code(c: u8) -> Option<Self> {
        match c {
            0x07 => Some(PivAlgorithm::Rsa2048),
            0x11 => Some(PivAlgorithm::EccP256),
            0x14 => Some(PivAlgorithm::EccP384),
            _ => None,
        }
    }
}

/// PIN policy byte: 1 never, 2 once per session, 3 before every use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinPolicy {
    Never,
    Once,
    Always,
}

/// Touch policy byte: 1 never, 2 always, 3 cached (one touch serves 15 s).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TouchPolicy {
    Never,
    Always,
    Cached,
}

enum PrivateKey {
    P256(p256_13::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
    Rsa(Box<rsa::RsaPrivateKey>),
}

struct SlotKey {
    key: PrivateKey,
    pin_policy: PinPolicy,
    touch_policy: TouchPolicy,
}

impl SlotKey {
    fn algorithm(&self) -> PivAlgorithm {
        match self.key {
            PrivateKey::P256(_) => PivAlgorithm::EccP256,
            PrivateKey::P384(_) => PivAlgorithm::EccP384,
            PrivateKey::Rsa(_) => PivAlgorithm::Rsa2048,
        }
    }

    /// The public key as GENERATE and GET METADATA carry it (inside 7F49 for GENERATE).
    fn public_tlvs(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match &self.key {
            PrivateKey::P256(k) => put_tlv(
                &mut out,
                0x86,
                k.verifying_key().to_encoded_point(false).as_bytes(),
            ),
            PrivateKey::P384(k) => put_tlv(
                &mut out,
                0x86,
                k.verifying_key().to_encoded_point(false).as_bytes(),
            ),
            PrivateKey::Rsa(k) => {
                put_tlv(&mut out, 0x81, &k.n().to_bytes_be());
                put_tlv(&mut out, 0x82, &k.e().to_bytes_be());
            }
        }
        out
    }
}

/// What a GENERAL AUTHENTICATE needs after the button (touch policy always/cached).
pub(crate) struct PendingSign {
    pub slot: u8,
    pub input: Zeroizing<Vec<u8>>,
}

pub(crate) enum PivOutcome {
    Reply(Vec<u8>, u16),
    NeedsTouch(PendingSign),
}

fn sw(sw: u16) -> PivOutcome {
    PivOutcome::Reply(Vec::new(), sw)
}

/// One PIN or PUK: value and retry counter.
struct Reference {
    value: Zeroizing<Vec<u8>>,
    default: bool,
    retries: u8,
    max: u8,
}

impl Reference {
    fn new(value: &str) -> Self {
        Reference {
            value: Zeroizing::new(value.as_bytes().to_vec()),
            default: true,
            retries: 3,
            max: 3,
        }
    }
    /// Compare an 8-byte 0xFF-padded candidate; counts down on a miss.
    fn check(&mut self, padded: &[u8]) -> Result<(), u16> {
        if self.retries == 0 {
            return Err(SW_AUTH_BLOCKED);
        }
        if padded.len() != 8 {
            return Err(SW_INCORRECT_PARAMS);
        }
        let given: Vec<u8> = padded.iter().copied().take_while(|b| *b != 0xFF).collect();
        if given.as_slice() == self.value.as_slice() {
            self.retries = self.max;
            Ok(())
        } else {
            self.retries -= 1;
            Err(if self.retries == 0 {
                SW_AUTH_BLOCKED
            } else {
                0x63C0 | self.retries as u16
            })
        }
    }
    fn metadata(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_tlv(&mut out, 0x01, &[0xFF]);
        put_tlv(&mut out, 0x05, &[u8::from(self.default)]);
        put_tlv(&mut out, 0x06, &[self.max, self.retries]);
        out
    }
}

/// The PIV applet's persistent state and its session state (reset on power-off / SELECT).
pub(crate) struct PivState {
    pin: Reference,
    puk: Reference,
    management_key: Zeroizing<[u8; 24]>,
    management_default: bool,
    keys: BTreeMap<u8, SlotKey>,
    objects: BTreeMap<u32, Vec<u8>>,
    // Session:
    pin_verified: bool,
    authenticated: bool,
    /// The card's witness during management-key authentication (plain).
    witness: Option<Zeroizing<[u8; 8]>>,
    /// When the last touch happened, for cached touch (seconds of the card's clock).
    last_touch: Option<std::time::Instant>,
    /// Signatures made (for tests).
    pub signatures: u64,
}

impl fmt::Debug for PivState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PivState")
            .field("slots", &self.keys.keys().collect::<Vec<_>>())
            .field("pin_retries", &self.pin.retries)
            .finish_non_exhaustive()
    }
}

impl Default for PivState {
    fn default() -> Self {
        PivState {
            pin: Reference::new(DEFAULT_PIN),
            puk: Reference::new(DEFAULT_PUK),
            management_key: Zeroizing::new(DEFAULT_MANAGEMENT_KEY),
            management_default: true,
            keys: BTreeMap::new(),
            objects: BTreeMap::new(),
            pin_verified: false,
            authenticated: false,
            witness: None,
            last_touch: None,
            signatures: 0,
        }
    }
}

fn valid_slot(slot: u8) -> bool {
    matches!(slot, 0x9A | 0x9C | 0x9D | 0x9E | 0x82..=0x95 | 0xF9)
}

/// The data object holding a slot's certificate.
pub fn certificate_object(slot: u8) -> Option<u32> {
    Some(match slot {
        0x9A => 0x5FC105,
        0x9C => 0x5FC10A,
        0x9D => 0x5FC10B,
        0x9E => 0x5FC101,
        0x82..=0x95 => 0x5FC10D + (slot - 0x82) as u32,
        _ => return None,
    })
}

fn random_scalar<const N: usize>() -> Zeroizing<[u8; N]> {
    let mut b = Zeroizing::new([0u8; N]);
    getrandom::fill(&mut b[..]).expect("randomness");
    b
}

fn generate(alg: PivAlgorithm) -> PrivateKey {
    match alg {
        PivAlgorithm::EccP256 => loop {
            if let Ok(k) = p256_13::ecdsa::SigningKey::from_slice(&random_scalar::<32>()[..]) {
                break PrivateKey::P256(k);
            }
        },
        PivAlgorithm::EccP384 => loop {
            if let Ok(k) = p384::ecdsa::SigningKey::from_slice(&random_scalar::<48>()[..]) {
                break PrivateKey::P384(k);
            }
        },
        PivAlgorithm::Rsa2048 => PrivateKey::Rsa(Box::new(
            rsa::RsaPrivateKey::new(&mut rand_core_06::OsRng, 2048).expect("RSA key generation"),
        )),
    }
}

impl PivState {
    pub(crate) fn reset_session(&mut self) {
        self.pin_verified = false;
        self.authenticated = false;
        self.witness = None;
    }

    pub(crate) fn pin_retries(&self) -> u8 {
        self.pin.retries
    }

    pub(crate) fn slot_algorithm(&self, slot: u8) -> Option<PivAlgorithm> {
        self.keys.get(&slot).map(SlotKey::algorithm)
    }

    pub(crate) fn object(&self, id: u32) -> Option<Vec<u8>> {
        self.objects.get(&id).cloned()
    }

    /// Whether `reply` carries a 16-byte run of any private key on the card (an EC
    /// scalar, RSA's private exponent or primes): the judge that keys never leave it.
    pub(crate) fn reveals_private_key(&self, reply: &[u8]) -> bool {
        use rsa::traits::PrivateKeyParts;
        const RUN: usize = 16;
        if reply.len() < RUN {
            return false;
        }
        self.keys.values().any(|k| {
            let parts: Vec<Zeroizing<Vec<u8>>> = match &k.key {
                PrivateKey::P256(s) => vec![Zeroizing::new(s.to_bytes().to_vec())],
                PrivateKey::P384(s) => vec![Zeroizing::new(s.to_bytes().to_vec())],
                PrivateKey::Rsa(r) => std::iter::once(r.d())
                    .chain(r.primes())
                    .map(|n| Zeroizing::new(n.to_bytes_be()))
                    .collect(),
            };
            parts.iter().any(|part| {
                part.windows(RUN)
                    .any(|run| reply.windows(RUN).any(|r| r == run))
            })
        })
    }

    pub(crate) fn set_pin(&mut self, pin: &str) {
        self.pin = Reference::new(pin);
        self.pin.default = false;
    }

    pub(crate) fn select_reply() -> Vec<u8> {
        // Application property template: AID, then the coexistent tag allocation authority.
        let mut inner = Vec::new();
        put_tlv(&mut inner, 0x4F, &[0x00, 0x00, 0x10, 0x00, 0x01, 0x00]);
        let mut auth = Vec::new();
        put_tlv(&mut auth, 0x4F, &PIV_AID);
        put_tlv(&mut inner, 0x79, &auth);
        let mut out = Vec::new();
        put_tlv(&mut out, 0x61, &inner);
        out
    }

    pub(crate) fn command(
        &mut self,
        cmd: &Command,
        firmware: (u8, u8, u8),
        serial: Option<u32>,
    ) -> PivOutcome {
        match cmd.ins {
            0xFD => PivOutcome::Reply(vec![firmware.0, firmware.1, firmware.2], SW_OK),
            0xF8 => match serial {
                Some(s) => PivOutcome::Reply(s.to_be_bytes().to_vec(), SW_OK),
                None => sw(SW_CONDITIONS),
            },
            0x20 => self.verify(cmd),
            0x24 => self.change_reference(cmd),
            0x2C => self.reset_retry(cmd),
            0x87 => self.general_authenticate(cmd),
            0x47 => self.generate(cmd),
            0xCB => self.get_data(cmd),
            0xDB => self.put_data(cmd),
            0xF7 => self.metadata(cmd),
            _ => sw(SW_INS_NOT_SUPPORTED),
        }
    }

    fn verify(&mut self, cmd: &Command) -> PivOutcome {
        if cmd.p2 != PIN_REF {
            return sw(SW_REFERENCE_NOT_FOUND);
        }
        if cmd.data.is_empty() {
            // Status query: verified, or the retries left (no attempt used).
            return sw(if self.pin_verified {
                SW_OK
            } else if self.pin.retries == 0 {
                SW_AUTH_BLOCKED
            } else {
                0x63C0 | self.pin.retries as u16
            });
        }
        match self.pin.check(&cmd.data) {
            Ok(()) => {
                self.pin_verified = true;
                sw(SW_OK)
            }
            Err(e) => {
                self.pin_verified = false;
                sw(e)
            }
        }
    }

    fn change_reference(&mut self, cmd: &Command) -> PivOutcome {
        if cmd.data.len() != 16 {
            return sw(SW_INCORRECT_PARAMS);
        }
        let r = match cmd.p2 {
            PIN_REF => &mut self.pin,
            PUK_REF => &mut self.puk,
            _ => return sw(SW_REFERENCE_NOT_FOUND),
        };
        if let Err(e) = r.check(&cmd.data[..8]) {
            return sw(e);
        }
        let new: Vec<u8> = cmd.data[8..]
            .iter()
            .copied()
            .take_while(|b| *b != 0xFF)
            .collect();
        if new.len() < 6 {
            return sw(SW_INCORRECT_PARAMS);
        }
        r.value = Zeroizing::new(new);
        r.default = false;
        sw(SW_OK)
    }

    fn reset_retry(&mut self, cmd: &Command) -> PivOutcome {
        if cmd.p2 != PIN_REF || cmd.data.len() != 16 {
            return sw(SW_INCORRECT_PARAMS);
        }
        if let Err(e) = self.puk.check(&cmd.data[..8]) {
            return sw(e);
        }
        let new: Vec<u8> = cmd.data[8..]
            .iter()
            .copied()
            .take_while(|b| *b != 0xFF)
            .collect();
        self.pin.value = Zeroizing::new(new);
        self.pin.retries = self.pin.max;
        sw(SW_OK)
    }

    fn tdes(&self) -> TdesEde3 {
        TdesEde3::new_from_slice(&self.management_key[..]).expect("24-byte key")
    }

    fn general_authenticate(&mut self, cmd: &Command) -> PivOutcome {
        let Ok(outer) = parse_tlvs(&cmd.data) else {
            return sw(SW_WRONG_DATA);
        };
        let Some(dyn_auth) = outer.iter().find(|t| t.tag == 0x7C) else {
            return sw(SW_WRONG_DATA);
        };
        let Ok(inner) = parse_tlvs(&dyn_auth.value) else {
            return sw(SW_WRONG_DATA);
        };
        let get = |tag: u8| {
            inner
                .iter()
                .find(|t| t.tag == tag)
                .map(|t| t.value.as_slice())
        };
        if cmd.p2 == MGMT_SLOT {
            return self.mutual_auth(cmd.p1, get(0x80), get(0x81));
        }
        // Signing: 82 (empty: "give me the response") and 81 (the challenge to sign).
        let (Some(input), Some(_)) = (get(0x81), get(0x82)) else {
            return sw(SW_INCORRECT_PARAMS);
        };
        let Some(key) = self.keys.get(&cmd.p2) else {
            return sw(SW_INCORRECT_PARAMS);
        };
        if key.algorithm().code() != cmd.p1 {
            return sw(SW_INCORRECT_PARAMS);
        }
        let expected = match key.algorithm() {
            PivAlgorithm::Rsa2048 => 256..=256,
            PivAlgorithm::EccP256 => 1..=32,
            PivAlgorithm::EccP384 => 1..=48,
        };
        if !expected.contains(&input.len()) {
            return sw(SW_INCORRECT_PARAMS);
        }
        if key.pin_policy != PinPolicy::Never && !self.pin_verified {
            return sw(SW_SECURITY);
        }
        let pending = PendingSign {
            slot: cmd.p2,
            input: Zeroizing::new(input.to_vec()),
        };
        let touch = match key.touch_policy {
            TouchPolicy::Never => false,
            TouchPolicy::Always => true,
            TouchPolicy::Cached => self
                .last_touch
                .is_none_or(|t| t.elapsed() > std::time::Duration::from_secs(15)),
        };
        if touch {
            PivOutcome::NeedsTouch(pending)
        } else {
            self.sign_now(&pending, false)
        }
    }

    /// Sign after the policies were met (`touched`: the button was pressed for it).
    pub(crate) fn sign_now(&mut self, p: &PendingSign, touched: bool) -> PivOutcome {
        if touched {
            self.last_touch = Some(std::time::Instant::now());
        }
        let Some(key) = self.keys.get(&p.slot) else {
            return sw(SW_INCORRECT_PARAMS);
        };
        let sig = match &key.key {
            PrivateKey::P256(k) => {
                let mut h = [0u8; 32];
                h[32 - p.input.len()..].copy_from_slice(&p.input);
                let s: p256_13::ecdsa::Signature = match k.sign_prehash(&h) {
                    Ok(s) => s,
                    Err(_) => return sw(SW_INCORRECT_PARAMS),
                };
                s.to_der().as_bytes().to_vec()
            }
            PrivateKey::P384(k) => {
                let mut h = [0u8; 48];
                h[48 - p.input.len()..].copy_from_slice(&p.input);
                let s: p384::ecdsa::Signature = match k.sign_prehash(&h) {
                    Ok(s) => s,
                    Err(_) => return sw(SW_INCORRECT_PARAMS),
                };
                s.to_der().as_bytes().to_vec()
            }
            PrivateKey::Rsa(k) => {
                let m = rsa::BigUint::from_bytes_be(&p.input);
                if &m >= k.n() {
                    return sw(SW_INCORRECT_PARAMS);
                }
                let Ok(s) = rsa::hazmat::rsa_decrypt_and_check(
                    k.as_ref(),
                    Some(&mut rand_core_06::OsRng),
                    &m,
                ) else {
                    return sw(SW_INCORRECT_PARAMS);
                };
                let bytes = s.to_bytes_be();
                let mut out = vec![0u8; 256 - bytes.len()];
                out.extend_from_slice(&bytes);
                out
            }
        };
        if key.pin_policy == PinPolicy::Always {
            self.pin_verified = false;
        }
        self.signatures += 1;
        let mut inner = Vec::new();
        put_tlv(&mut inner, 0x82, &sig);
        let mut out = Vec::new();
        put_tlv(&mut out, 0x7C, &inner);
        PivOutcome::Reply(out, SW_OK)
    }

    fn mutual_auth(
        &mut self,
        alg: u8,
        witness: Option<&[u8]>,
        challenge: Option<&[u8]>,
    ) -> PivOutcome {
        if alg != ALG_3DES {
            return sw(SW_INCORRECT_PARAMS);
        }
        match (witness, challenge) {
            // Step 1: the client asks for a witness.
            (Some([]), None) => {
                self.authenticated = false;
                let plain = Zeroizing::new(*random_scalar::<8>());
                let mut block = des::cipher::Block::<des::TdesEde3>::from(*plain);
                self.tdes().encrypt_block(&mut block);
                self.witness = Some(plain);
                let mut inner = Vec::new();
                put_tlv(&mut inner, 0x80, &block);
                let mut out = Vec::new();
                put_tlv(&mut out, 0x7C, &inner);
                PivOutcome::Reply(out, SW_OK)
            }
            // Step 2: the decrypted witness and the client's challenge.
            (Some(decrypted), Some(chal)) if decrypted.len() == 8 && chal.len() == 8 => {
                let Some(expected) = self.witness.take() else {
                    return sw(SW_CONDITIONS);
                };
                if !bool::from(subtle::ConstantTimeEq::ct_eq(decrypted, &expected[..])) {
                    return sw(SW_SECURITY);
                }
                self.authenticated = true;
                let mut block = des::cipher::Block::<des::TdesEde3>::from(
                    <[u8; 8]>::try_from(chal).expect("8 bytes, checked above"),
                );
                self.tdes().encrypt_block(&mut block);
                let mut inner = Vec::new();
                put_tlv(&mut inner, 0x82, &block);
                let mut out = Vec::new();
                put_tlv(&mut out, 0x7C, &inner);
                PivOutcome::Reply(out, SW_OK)
            }
            _ => sw(SW_INCORRECT_PARAMS),
        }
    }

    fn generate(&mut self, cmd: &Command) -> PivOutcome {
        if !valid_slot(cmd.p2) || cmd.p2 == 0xF9 {
            return sw(SW_INCORRECT_PARAMS);
        }
        if !self.authenticated {
            return sw(SW_SECURITY);
        }
        let Ok(outer) = parse_tlvs(&cmd.data) else {
            return sw(SW_WRONG_DATA);
        };
        let Some(template) = outer.iter().find(|t| t.tag == 0xAC) else {
            return sw(SW_WRONG_DATA);
        };
        let Ok(inner) = parse_tlvs(&template.value) else {
            return sw(SW_WRONG_DATA);
        };
        let get = |tag: u8| {
            inner
                .iter()
                .find(|t| t.tag == tag)
                .and_then(|t| t.value.first().copied())
        };
        let Some(alg) = get(0x80).and_then(PivAlgorithm::from_code) else {
            return sw(SW_INCORRECT_PARAMS);
        };
        let pin_policy = match get(0xAA).unwrap_or(0) {
            0 if cmd.p2 == 0x9C => PinPolicy::Always,
            0 if cmd.p2 == 0x9E => PinPolicy::Never,
            0 | 2 => PinPolicy::Once,
            1 => PinPolicy::Never,
            3 => PinPolicy::Always,
            _ => return sw(SW_INCORRECT_PARAMS),
        };
        let touch_policy = match get(0xAB).unwrap_or(0) {
            0 | 1 => TouchPolicy::Never,
            2 => TouchPolicy::Always,
            3 => TouchPolicy::Cached,
            _ => return sw(SW_INCORRECT_PARAMS),
        };
        let key = SlotKey {
            key: generate(alg),
            pin_policy,
            touch_policy,
        };
        let mut out = Vec::new();
        put_tlv2(&mut out, 0x7F49, &key.public_tlvs());
        self.keys.insert(cmd.p2, key);
        PivOutcome::Reply(out, SW_OK)
    }

    fn object_id(data: &[u8]) -> Option<(u32, usize)> {
        // 5C len id…
        if data.len() < 2 || data[0] != 0x5C {
            return None;
        }
        let len = data[1] as usize;
        let id = data.get(2..2 + len)?;
        if id.is_empty() || id.len() > 3 {
            return None;
        }
        Some((id.iter().fold(0u32, |a, b| (a << 8) | *b as u32), 2 + len))
    }

    fn get_data(&mut self, cmd: &Command) -> PivOutcome {
        if (cmd.p1, cmd.p2) != (0x3F, 0xFF) {
            return sw(SW_WRONG_P1P2);
        }
        let Some((id, _)) = Self::object_id(&cmd.data) else {
            return sw(SW_WRONG_DATA);
        };
        // The printed-information and key-history objects need the PIN; nothing tapcred or
        // ykman reads here does, so every stored object is readable.
        match self.objects.get(&id) {
            Some(v) => {
                let mut out = Vec::new();
                put_tlv(&mut out, 0x53, v);
                PivOutcome::Reply(out, SW_OK)
            }
            None => sw(SW_FILE_NOT_FOUND),
        }
    }

    fn put_data(&mut self, cmd: &Command) -> PivOutcome {
        if (cmd.p1, cmd.p2) != (0x3F, 0xFF) {
            return sw(SW_WRONG_P1P2);
        }
        if !self.authenticated {
            return sw(SW_SECURITY);
        }
        let Some((id, used)) = Self::object_id(&cmd.data) else {
            return sw(SW_WRONG_DATA);
        };
        let Ok(rest) = parse_tlvs(&cmd.data[used..]) else {
            return sw(SW_WRONG_DATA);
        };
        match rest.iter().find(|t| t.tag == 0x53) {
            Some(t) if t.value.is_empty() => {
                self.objects.remove(&id);
            }
            Some(t) => {
                self.objects.insert(id, t.value.clone());
            }
            None => return sw(SW_WRONG_DATA),
        }
        sw(SW_OK)
    }

    fn metadata(&mut self, cmd: &Command) -> PivOutcome {
        let mut out = Vec::new();
        match cmd.p2 {
            PIN_REF => out = self.pin.metadata(),
            PUK_REF => out = self.puk.metadata(),
            MGMT_SLOT => {
                put_tlv(&mut out, 0x01, &[ALG_3DES]);
                put_tlv(&mut out, 0x02, &[0x00, 0x01]);
                put_tlv(&mut out, 0x05, &[u8::from(self.management_default)]);
            }
            slot => {
                let Some(k) = self.keys.get(&slot) else {
                    return sw(SW_REFERENCE_NOT_FOUND);
                };
                let pin = match k.pin_policy {
                    PinPolicy::Never => 1,
                    PinPolicy::Once => 2,
                    PinPolicy::Always => 3,
                };
                let touch = match k.touch_policy {
                    TouchPolicy::Never => 1,
                    TouchPolicy::Always => 2,
                    TouchPolicy::Cached => 3,
                };
                put_tlv(&mut out, 0x01, &[k.algorithm().code()]);
                put_tlv(&mut out, 0x02, &[pin, touch]);
                put_tlv(&mut out, 0x03, &[0x01]);
                put_tlv(&mut out, 0x04, &k.public_tlvs());
            }
        }
        PivOutcome::Reply(out, SW_OK)
    }
}

/// A TLV with a two-byte tag (7F49).
fn put_tlv2(out: &mut Vec<u8>, tag: u16, value: &[u8]) {
    let mut tmp = Vec::new();
    put_tlv(&mut tmp, 0, value);
    out.extend_from_slice(&tag.to_be_bytes());
    out.extend_from_slice(&tmp[1..]);
}

#[cfg(test)]
mod judge {
    use super::*;

    /// The leak judge can fail: a reply holding part of a slot's private key is caught
    /// (EC scalar, RSA prime), one holding only the public key is not.
    #[test]
    fn a_reply_with_private_key_bytes_is_caught() {
        use rsa::traits::PrivateKeyParts;
        let mut state = PivState::default();
        for (slot, alg) in [(0x9A, PivAlgorithm::EccP256), (0x9C, PivAlgorithm::Rsa2048)] {
            state.keys.insert(
                slot,
                SlotKey {
                    key: generate(alg),
                    pin_policy: PinPolicy::Once,
                    touch_policy: TouchPolicy::Never,
                },
            );
        }
        let public: Vec<u8> = state.keys.values().flat_map(SlotKey::public_tlvs).collect();
        assert!(!state.reveals_private_key(&public));
        let PrivateKey::P256(ec) = &state.keys[&0x9A].key else {
            unreachable!()
        };
        let mut reply = vec![0x53, 0x40];
        reply.extend_from_slice(&ec.to_bytes()[8..24]);
        assert!(state.reveals_private_key(&reply));
        let PrivateKey::Rsa(r) = &state.keys[&0x9C].key else {
            unreachable!()
        };
        let prime = r.primes()[1].to_bytes_be();
        assert!(state.reveals_private_key(&prime[60..90]));
    }
}
