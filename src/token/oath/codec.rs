//! The YKOATH codec (yubikey-protocols.md A.2–A.10, A.13): instruction and tag numbers,
//! response parsers (plain functions of bytes, fuzzed on their own), PUT encoding, and the
//! client-side crypto (time-step challenge, password derivation, key preparation).

use hmac::{KeyInit, Mac};
use sha1::Sha1;
use sha2::Digest;
use zeroize::Zeroizing;

use super::fault::OathError;
use super::name::{CredentialId, HashAlgo, OathType};
use super::tlv;

pub const OATH_AID: [u8; 7] = [0xA0, 0x00, 0x00, 0x05, 0x27, 0x21, 0x01];

pub const INS_PUT: u8 = 0x01;
pub const INS_DELETE: u8 = 0x02;
pub const INS_SELECT: u8 = 0xA4;
pub const INS_LIST: u8 = 0xA1;
pub const INS_CALCULATE: u8 = 0xA2;
pub const INS_VALIDATE: u8 = 0xA3;
pub const INS_CALCULATE_ALL: u8 = 0xA4;

pub const TAG_NAME: u8 = 0x71;
pub const TAG_NAME_LIST: u8 = 0x72;
pub const TAG_KEY: u8 = 0x73;
pub const TAG_CHALLENGE: u8 = 0x74;
pub const TAG_RESPONSE: u8 = 0x75;
pub const TAG_TRUNCATED: u8 = 0x76;
pub const TAG_HOTP: u8 = 0x77;
pub const TAG_PROPERTY: u8 = 0x78;
pub const TAG_VERSION: u8 = 0x79;
pub const TAG_IMF: u8 = 0x7A;
pub const TAG_ALGORITHM: u8 = 0x7B;
pub const TAG_TOUCH: u8 = 0x7C;

pub const PROP_REQUIRE_TOUCH: u8 = 0x02;
/// Longest credential ID the applet stores (A.5).
pub const MAX_ID_LEN: usize = 64;
/// Digits the applet may report; more would overflow the modulo and means a broken reply.
const MAX_DIGITS: u8 = 10;

/// What SELECT told us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectInfo {
    pub version: Option<[u8; 3]>,
    /// The applet's random NAME: PBKDF2 salt and device ID.
    pub salt: Vec<u8>,
    /// Present only when a password is set.
    pub challenge: Option<Vec<u8>>,
    pub algorithm: Option<u8>,
}

impl SelectInfo {
    pub fn has_password(&self) -> bool {
        self.challenge.is_some()
    }
    pub fn version_string(&self) -> Option<String> {
        self.version.map(|v| format!("{}.{}.{}", v[0], v[1], v[2]))
    }
    /// ykman's device ID: Base64 (standard, unpadded) of the first 16 bytes of SHA-256(NAME).
    pub fn device_id(&self) -> String {
        let digest = sha2::Sha256::digest(&self.salt);
        data_encoding::BASE64_NOPAD.encode(&digest[..16])
    }
}

/// Parse a SELECT response: tags in any order, unknown tags ignored, `7B` tolerated.
pub fn parse_select(data: &[u8]) -> Result<SelectInfo, OathError> {
    let mut info = SelectInfo {
        version: None,
        salt: Vec::new(),
        challenge: None,
        algorithm: None,
    };
    let mut have_name = false;
    for t in tlv::parse(data)? {
        match t.tag {
            TAG_VERSION => {
                let v: [u8; 3] = t.value.try_into().map_err(|_| {
                    OathError::Malformed(format!("version of {} bytes", t.value.len()))
                })?;
                info.version = Some(v);
            }
            TAG_NAME => {
                if t.value.is_empty() {
                    return Err(OathError::Malformed("empty applet name".into()));
                }
                info.salt = t.value.to_vec();
                have_name = true;
            }
            TAG_CHALLENGE => {
                if t.value.is_empty() {
                    return Err(OathError::Malformed("empty challenge".into()));
                }
                info.challenge = Some(t.value.to_vec());
            }
            TAG_ALGORITHM => info.algorithm = t.value.first().copied(),
            _ => {}
        }
    }
    if !have_name {
        return Err(OathError::Malformed(
            "SELECT without the applet name".into(),
        ));
    }
    Ok(info)
}

/// One LIST entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    /// The credential ID as stored (normally UTF-8).
    pub id: Vec<u8>,
    pub kind: OathType,
    pub algo: Option<HashAlgo>,
}

impl ListEntry {
    pub fn name(&self) -> String {
        String::from_utf8_lossy(&self.id).into_owned()
    }
}

pub fn parse_list(data: &[u8]) -> Result<Vec<ListEntry>, OathError> {
    let mut out = Vec::new();
    for t in tlv::parse(data)? {
        if t.tag != TAG_NAME_LIST {
            continue;
        }
        let (&ta, id) = t
            .value
            .split_first()
            .ok_or_else(|| OathError::Malformed("empty LIST entry".into()))?;
        let kind = OathType::from_byte(ta).ok_or_else(|| {
            OathError::Malformed(format!("LIST entry with unknown type {ta:02X}"))
        })?;
        out.push(ListEntry {
            id: id.to_vec(),
            kind,
            algo: HashAlgo::from_byte(ta),
        });
    }
    Ok(out)
}

/// A dynamic-truncation value as the applet returns it (tag 76).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Truncated {
    pub digits: u8,
    pub value: u32,
}

impl std::fmt::Debug for Truncated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Truncated({} digits, <redacted>)", self.digits)
    }
}

impl Truncated {
    /// `(value & 0x7FFFFFFF) mod 10^digits`, zero-padded (NEO returns the unreduced value).
    pub fn code(&self) -> Zeroizing<String> {
        let v = (self.value & 0x7FFF_FFFF) as u64;
        let m = 10u64.pow(self.digits as u32);
        Zeroizing::new(format!("{:0width$}", v % m, width = self.digits as usize))
    }
}

fn parse_digits(b: u8) -> Result<u8, OathError> {
    if (1..=MAX_DIGITS).contains(&b) {
        Ok(b)
    } else {
        Err(OathError::Malformed(format!("{b} digits")))
    }
}

pub fn parse_truncated_value(value: &[u8]) -> Result<Truncated, OathError> {
    if value.len() != 5 {
        return Err(OathError::Malformed(format!(
            "truncated response of {} bytes",
            value.len()
        )));
    }
    Ok(Truncated {
        digits: parse_digits(value[0])?,
        value: u32::from_be_bytes([value[1], value[2], value[3], value[4]]),
    })
}

/// CALCULATE with P2=01: exactly one `76` TLV is expected.
pub fn parse_calculate(data: &[u8]) -> Result<Truncated, OathError> {
    let tlvs = tlv::parse(data)?;
    let t = tlvs
        .iter()
        .find(|t| t.tag == TAG_TRUNCATED)
        .ok_or_else(|| OathError::Malformed("CALCULATE without a truncated response".into()))?;
    parse_truncated_value(t.value)
}

/// What CALCULATE_ALL said about one credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllResult {
    /// TOTP without touch, computed with the 30-s challenge sent.
    Code(Truncated),
    /// TOTP that needs a touch: not computed.
    Touch { digits: u8 },
    /// HOTP (with or without touch): not computed, counter untouched. Trussed sends no
    /// digits byte.
    Hotp { digits: Option<u8> },
    /// A full HMAC (P2=00 only; this client never asks for it).
    Full { digits: u8 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllEntry {
    pub id: Vec<u8>,
    pub result: AllResult,
}

impl AllEntry {
    pub fn name(&self) -> String {
        String::from_utf8_lossy(&self.id).into_owned()
    }
    pub fn kind(&self) -> OathType {
        match self.result {
            AllResult::Hotp { .. } => OathType::Hotp,
            _ => OathType::Totp,
        }
    }
}

pub fn parse_calculate_all(data: &[u8]) -> Result<Vec<AllEntry>, OathError> {
    let tlvs = tlv::parse(data)?;
    let mut out = Vec::new();
    let mut it = tlvs.into_iter();
    while let Some(name) = it.next() {
        if name.tag != TAG_NAME {
            return Err(OathError::Malformed(format!(
                "CALCULATE_ALL: tag {:02X} where a name was expected",
                name.tag
            )));
        }
        let resp = it
            .next()
            .ok_or_else(|| OathError::Malformed("CALCULATE_ALL: name without a result".into()))?;
        let result =
            match resp.tag {
                TAG_TRUNCATED => AllResult::Code(parse_truncated_value(resp.value)?),
                TAG_TOUCH => AllResult::Touch {
                    digits: parse_digits(*resp.value.first().ok_or_else(|| {
                        OathError::Malformed("touch entry without digits".into())
                    })?)?,
                },
                TAG_HOTP => AllResult::Hotp {
                    digits: match resp.value.first() {
                        Some(&d) => Some(parse_digits(d)?),
                        None => None,
                    },
                },
                TAG_RESPONSE => AllResult::Full {
                    digits: parse_digits(*resp.value.first().ok_or_else(|| {
                        OathError::Malformed("full response without digits".into())
                    })?)?,
                },
                other => {
                    return Err(OathError::Malformed(format!(
                        "CALCULATE_ALL: unknown result tag {other:02X}"
                    )));
                }
            };
        out.push(AllEntry {
            id: name.value.to_vec(),
            result,
        });
    }
    Ok(out)
}

/// The 8-byte big-endian time step for `at` (Unix seconds) and `period`.
pub fn totp_challenge(at: u64, period: u32) -> [u8; 8] {
    (at / period.max(1) as u64).to_be_bytes()
}

/// PBKDF2-HMAC-SHA1(password, salt = applet NAME, 1000 iterations, 16 bytes) (A.6).
pub fn derive_key(password: &[u8], salt: &[u8]) -> Zeroizing<[u8; 16]> {
    let mut key = Zeroizing::new([0u8; 16]);
    pbkdf2::pbkdf2_hmac::<Sha1>(password, salt, 1000, &mut key[..]);
    key
}

pub fn hmac_sha1(key: &[u8], msg: &[u8]) -> Zeroizing<[u8; 20]> {
    let mut mac = <hmac::Hmac<Sha1> as KeyInit>::new_from_slice(key).expect("any key length");
    mac.update(msg);
    let mut out = Zeroizing::new([0u8; 20]);
    out.copy_from_slice(&mac.finalize().into_bytes());
    out
}

/// A credential to store with PUT.
pub struct NewCredential {
    pub id: CredentialId,
    pub kind: OathType,
    pub algo: HashAlgo,
    pub digits: u8,
    pub secret: Zeroizing<Vec<u8>>,
    pub touch: bool,
    /// HOTP initial counter (sent only when > 0).
    pub counter: u32,
}

impl std::fmt::Debug for NewCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewCredential")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("algo", &self.algo)
            .field("digits", &self.digits)
            .field("secret", &"<redacted>")
            .field("touch", &self.touch)
            .field("counter", &self.counter)
            .finish()
    }
}

/// A.9: hash keys longer than the block size, then zero-pad to at least 14 bytes.
pub fn prepare_key(algo: HashAlgo, secret: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut key = Zeroizing::new(if secret.len() > algo.block_size() {
        match algo {
            HashAlgo::Sha1 => Sha1::digest(secret).to_vec(),
            HashAlgo::Sha256 => sha2::Sha256::digest(secret).to_vec(),
            HashAlgo::Sha512 => sha2::Sha512::digest(secret).to_vec(),
        }
    } else {
        secret.to_vec()
    });
    if key.len() < 14 {
        key.resize(14, 0);
    }
    key
}

/// Decode a Base32 secret: any case, spaces ignored, padding optional.
pub fn decode_base32_secret(s: &str) -> Option<Zeroizing<Vec<u8>>> {
    let cleaned: Zeroizing<String> = Zeroizing::new(
        s.chars()
            .filter(|c| !c.is_whitespace() && *c != '=' && *c != '-')
            .map(|c| c.to_ascii_uppercase())
            .collect(),
    );
    data_encoding::BASE32_NOPAD
        .decode(cleaned.as_bytes())
        .ok()
        .map(Zeroizing::new)
}

pub fn encode_put(cred: &NewCredential) -> Result<Zeroizing<Vec<u8>>, OathError> {
    let id = cred.id.format(cred.kind);
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(OathError::Malformed(format!(
            "credential ID of {} bytes (the key stores 1 to {MAX_ID_LEN})",
            id.len()
        )));
    }
    if !(6..=8).contains(&cred.digits) {
        return Err(OathError::Malformed(format!(
            "{} digits (6 to 8 supported)",
            cred.digits
        )));
    }
    let key = prepare_key(cred.algo, &cred.secret);
    let mut data = Zeroizing::new(Vec::with_capacity(id.len() + key.len() + 16));
    tlv::write(&mut data, TAG_NAME, id.as_bytes());
    let mut keyval = Zeroizing::new(Vec::with_capacity(key.len() + 2));
    keyval.push(cred.kind.byte() | cred.algo.byte());
    keyval.push(cred.digits);
    keyval.extend_from_slice(&key);
    tlv::write(&mut data, TAG_KEY, &keyval);
    if cred.touch {
        data.extend_from_slice(&[TAG_PROPERTY, PROP_REQUIRE_TOUCH]);
    }
    if cred.kind == OathType::Hotp && cred.counter > 0 {
        tlv::write(&mut data, TAG_IMF, &cred.counter.to_be_bytes());
    }
    Ok(data)
}

pub(super) fn is_auth_sw(sw: u16) -> bool {
    sw == 0x6982 || sw == 0x6985
}

pub(super) fn is_not_found_sw(sw: u16) -> bool {
    sw == 0x6984 || sw == 0x6A82
}
