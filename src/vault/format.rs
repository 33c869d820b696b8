//! The vault file format, version 1, and its crypto. Pure functions over bytes: no I/O, no
//! hardware (an unlocker's output comes in as bytes).
//!
//! ```text
//! magic      8   "TCVAULT\0"
//! version    2   1 (big-endian, as every integer here)
//! aead       1   1 = XChaCha20-Poly1305 (24-byte random nonces, 16-byte tags)
//! unlockers  1   count n, 1..=16, then n times:
//!   kind           1   1 = YubiKey OTP slot HMAC-SHA1, 2 = FIDO2 hmac-secret
//!   id             2+  UTF-8 label, unique in the file ("otp:12345678:2")
//!   salt           2+  HKDF salt (32 random bytes)
//!   challenge      2+  what the device is asked (OTP: 32 random bytes; FIDO2: the salt)
//!   credential id  2+  FIDO2 credential id (empty for OTP)
//!   nonce         24
//!   wrapped key    2+  AEAD(KEK, nonce, data key, AAD = magic‖version‖aead‖this unlocker's
//!                      fields above); KEK = HKDF-SHA256(ikm = unlocker output, salt,
//!                      info = "tapcred vault v1 wrap" ‖ kind)
//! entries    4   count m, then m times:
//!   kind           1   1 = TOTP seed (name = mfa_serial), 2 = access key (name = source profile)
//!   name           2+  UTF-8, unique per kind
//!   nonce         24
//!   sealed         4+  AEAD(entry key, nonce, secret, AAD = "tapcred vault v1 entry" ‖ kind ‖ name)
//! mac       32   HMAC-SHA256(mac key, every byte before it)
//! checksum  32   SHA-256(every byte before it)
//! ```
//!
//! `2+`/`4+` = a 2- or 4-byte length, then that many bytes. The entry key and the mac key are
//! HKDF-SHA256 expansions of the data key (info "tapcred vault v1 entries" / "… file mac").
//! The checksum tells a damaged file (any changed or missing byte) from a wrong key before
//! any key is tried; the keyed MAC catches a deliberate edit that recomputed the checksum
//! (an entry removed or swapped, another unlocker's fields changed). Names are in the clear
//! so `vault list` needs no touch; secrets are not.

use std::collections::BTreeMap;
use std::fmt;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::VaultError;

pub const MAGIC: [u8; 8] = *b"TCVAULT\0";
pub const VERSION: u16 = 1;
const AEAD_XCHACHA20POLY1305: u8 = 1;
/// A vault file larger than this is not one tapcred wrote.
pub const MAX_FILE_LEN: usize = 1 << 20;
pub const MAX_UNLOCKERS: usize = 16;
pub const MAX_NAME_LEN: usize = 512;
const MAX_FIELD_LEN: usize = 1024;
const MAX_SECRET_LEN: usize = 8 * 1024;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const KEY_LEN: usize = 32;
const MAC_LEN: usize = 32;
const SUM_LEN: usize = 32;

/// How an unlocker produces its secret output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum UnlockerKind {
    /// YubiKey OTP slot, HMAC-SHA1 challenge-response (20-byte output).
    OtpHmacSha1,
    /// FIDO2 `hmac-secret` (32-byte output). Not implemented yet; the format has room.
    Fido2HmacSecret,
}

impl UnlockerKind {
    fn code(self) -> u8 {
        match self {
            UnlockerKind::OtpHmacSha1 => 1,
            UnlockerKind::Fido2HmacSecret => 2,
        }
    }
    fn from_code(c: u8) -> Option<Self> {
        match c {
            1 => Some(UnlockerKind::OtpHmacSha1),
            2 => Some(UnlockerKind::Fido2HmacSecret),
            _ => None,
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            UnlockerKind::OtpHmacSha1 => "YubiKey OTP slot (HMAC-SHA1)",
            UnlockerKind::Fido2HmacSecret => "FIDO2 hmac-secret",
        }
    }
}

/// The public half of an unlocker, as listed in the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnlockerDesc {
    pub kind: UnlockerKind,
    /// Unique label in the file, e.g. `otp:12345678:2` (serial, slot).
    pub id: String,
    /// HKDF salt (random, 32 bytes when tapcred makes it).
    pub salt: Vec<u8>,
    /// What the device is asked (OTP: the challenge; FIDO2: the hmac-secret salt).
    pub challenge: Vec<u8>,
    /// FIDO2 credential id; empty for OTP.
    pub credential_id: Vec<u8>,
}

impl UnlockerDesc {
    /// A new descriptor with a fresh random salt and a fresh random 32-byte challenge.
    pub fn new_random(kind: UnlockerKind, id: impl Into<String>) -> Result<Self, VaultError> {
        Ok(UnlockerDesc {
            kind,
            id: id.into(),
            salt: random_vec(32)?,
            challenge: random_vec(32)?,
            credential_id: Vec::new(),
        })
    }

    fn write_fields(&self, out: &mut Vec<u8>) {
        out.push(self.kind.code());
        put16(out, self.id.as_bytes());
        put16(out, &self.salt);
        put16(out, &self.challenge);
        put16(out, &self.credential_id);
    }

    /// AAD binding a wrapped key to this descriptor and this format.
    fn aad(&self) -> Vec<u8> {
        let mut a = Vec::with_capacity(64);
        a.extend_from_slice(&MAGIC);
        a.extend_from_slice(&VERSION.to_be_bytes());
        a.push(AEAD_XCHACHA20POLY1305);
        self.write_fields(&mut a);
        a
    }

    fn check(&self) -> Result<(), VaultError> {
        if self.id.is_empty()
            || self.id.len() > MAX_NAME_LEN
            || self.id.chars().any(char::is_control)
        {
            return Err(VaultError::Invalid(format!(
                "unlocker id {:?} must be 1–{MAX_NAME_LEN} bytes without control characters",
                self.id
            )));
        }
        for (what, f) in [
            ("salt", &self.salt),
            ("challenge", &self.challenge),
            ("credential id", &self.credential_id),
        ] {
            if f.len() > MAX_FIELD_LEN {
                return Err(VaultError::Invalid(format!(
                    "unlocker {}: {what} longer than {MAX_FIELD_LEN} bytes",
                    self.id
                )));
            }
        }
        Ok(())
    }
}

#[derive(Clone, PartialEq, Eq)]
struct WrappedUnlocker {
    desc: UnlockerDesc,
    nonce: [u8; NONCE_LEN],
    wrapped: Vec<u8>,
}

/// What an entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EntryKind {
    /// A TOTP seed, named by its `mfa_serial`.
    TotpSeed,
    /// A long-term access key, named by its source profile.
    AccessKey,
}

impl EntryKind {
    fn code(self) -> u8 {
        match self {
            EntryKind::TotpSeed => 1,
            EntryKind::AccessKey => 2,
        }
    }
    fn from_code(c: u8) -> Option<Self> {
        match c {
            1 => Some(EntryKind::TotpSeed),
            2 => Some(EntryKind::AccessKey),
            _ => None,
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            EntryKind::TotpSeed => "seed",
            EntryKind::AccessKey => "access-key",
        }
    }
}

/// An entry's kind and name (no secret).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryName {
    pub kind: EntryKind,
    pub name: String,
}

impl EntryName {
    pub fn seed(mfa_serial: impl Into<String>) -> Self {
        EntryName {
            kind: EntryKind::TotpSeed,
            name: mfa_serial.into(),
        }
    }
    pub fn access_key(profile: impl Into<String>) -> Self {
        EntryName {
            kind: EntryKind::AccessKey,
            name: profile.into(),
        }
    }
    fn aad(&self) -> Vec<u8> {
        let mut a = b"tapcred vault v1 entry".to_vec();
        a.push(self.kind.code());
        put16(&mut a, self.name.as_bytes());
        a
    }
    fn check(&self) -> Result<(), VaultError> {
        if self.name.is_empty()
            || self.name.len() > MAX_NAME_LEN
            || self.name.chars().any(char::is_control)
        {
            return Err(VaultError::Invalid(format!(
                "vault entry name {:?} must be 1–{MAX_NAME_LEN} bytes without control characters",
                self.name
            )));
        }
        Ok(())
    }
}

/// A secret kept in the vault. Debug shows no secret.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// The raw TOTP seed bytes (AWS: 40 bytes).
    TotpSeed(Zeroizing<Vec<u8>>),
    AccessKey {
        access_key_id: String,
        secret_access_key: Zeroizing<String>,
    },
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::TotpSeed(s) => write!(f, "TotpSeed(<{} bytes redacted>)", s.len()),
            Secret::AccessKey { access_key_id, .. } => f
                .debug_struct("AccessKey")
                .field("access_key_id", access_key_id)
                .field("secret_access_key", &"<redacted>")
                .finish(),
        }
    }
}

impl Secret {
    fn kind(&self) -> EntryKind {
        match self {
            Secret::TotpSeed(_) => EntryKind::TotpSeed,
            Secret::AccessKey { .. } => EntryKind::AccessKey,
        }
    }
    fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::new());
        match self {
            Secret::TotpSeed(s) => out.extend_from_slice(s),
            Secret::AccessKey {
                access_key_id,
                secret_access_key,
            } => {
                put16(&mut out, access_key_id.as_bytes());
                put16(&mut out, secret_access_key.as_bytes());
            }
        }
        out
    }
    fn decode(kind: EntryKind, plain: &[u8]) -> Option<Secret> {
        match kind {
            EntryKind::TotpSeed => Some(Secret::TotpSeed(Zeroizing::new(plain.to_vec()))),
            EntryKind::AccessKey => {
                let mut c = Cursor { b: plain, at: 0 };
                let id = String::from_utf8(c.take16().ok()?.to_vec()).ok()?;
                let secret = Zeroizing::new(std::str::from_utf8(c.take16().ok()?).ok()?.to_owned());
                c.done().ok()?;
                Some(Secret::AccessKey {
                    access_key_id: id,
                    secret_access_key: secret,
                })
            }
        }
    }
}

#[derive(Clone, PartialEq, Eq)]
struct SealedEntry {
    nonce: [u8; NONCE_LEN],
    sealed: Vec<u8>,
}

/// A parsed vault file: the header can be read (unlockers, entry names) without any key.
#[derive(Clone)]
pub struct VaultFile {
    unlockers: Vec<WrappedUnlocker>,
    entries: BTreeMap<EntryName, SealedEntry>,
    /// The bytes the keyed MAC covers, and the MAC.
    macced: Vec<u8>,
    mac: [u8; MAC_LEN],
}

impl fmt::Debug for VaultFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultFile")
            .field("unlockers", &self.unlocker_descs().collect::<Vec<_>>())
            .field("entries", &self.entry_names().collect::<Vec<_>>())
            .finish()
    }
}

impl VaultFile {
    /// Parse and check a vault file's bytes. Any structural problem, trailing or missing
    /// byte, or checksum mismatch is [`VaultError::Damaged`]; it never panics.
    pub fn parse(bytes: &[u8]) -> Result<VaultFile, VaultError> {
        let damaged = |why: &str| VaultError::Damaged(why.to_owned());
        if bytes.len() > MAX_FILE_LEN {
            return Err(damaged("it is larger than any vault tapcred writes"));
        }
        if bytes.len() < MAGIC.len() || bytes[..MAGIC.len()] != MAGIC {
            return Err(damaged("it does not start like a tapcred vault"));
        }
        let mut c = Cursor {
            b: bytes,
            at: MAGIC.len(),
        };
        let version = c.u16().map_err(|_| damaged("it is cut short"))?;
        if version != VERSION {
            return Err(VaultError::UnsupportedVersion(version));
        }
        if bytes.len() < MAGIC.len() + 2 + MAC_LEN + SUM_LEN {
            return Err(damaged("it is cut short"));
        }
        let (body, sum) = bytes.split_at(bytes.len() - SUM_LEN);
        if Sha256::digest(body).as_slice() != sum {
            return Err(damaged(
                "its checksum does not match (a byte was changed, or the file was cut short)",
            ));
        }
        let (macced, mac) = body.split_at(body.len() - MAC_LEN);
        let mut c = Cursor {
            b: macced,
            at: c.at,
        };
        let parsed = (|| -> Result<_, &'static str> {
            if c.u8()? != AEAD_XCHACHA20POLY1305 {
                return Err("it names an unknown cipher");
            }
            let n = c.u8()? as usize;
            if n == 0 || n > MAX_UNLOCKERS {
                return Err("its unlocker count is out of range");
            }
            let mut unlockers: Vec<WrappedUnlocker> = Vec::with_capacity(n);
            for _ in 0..n {
                let kind = UnlockerKind::from_code(c.u8()?).ok_or("an unlocker kind is unknown")?;
                let id = std::str::from_utf8(c.take16()?)
                    .map_err(|_| "an unlocker id is not UTF-8")?
                    .to_owned();
                let desc = UnlockerDesc {
                    kind,
                    id,
                    salt: c.take16()?.to_vec(),
                    challenge: c.take16()?.to_vec(),
                    credential_id: c.take16()?.to_vec(),
                };
                desc.check()
                    .map_err(|_| "an unlocker field is out of range")?;
                if unlockers.iter().any(|u| u.desc.id == desc.id) {
                    return Err("two unlockers have the same id");
                }
                let nonce = c.array::<NONCE_LEN>()?;
                let wrapped = c.take16()?.to_vec();
                if wrapped.len() != KEY_LEN + TAG_LEN {
                    return Err("a wrapped key has the wrong length");
                }
                unlockers.push(WrappedUnlocker {
                    desc,
                    nonce,
                    wrapped,
                });
            }
            let m = c.u32()? as usize;
            let mut entries = BTreeMap::new();
            for _ in 0..m {
                let kind = EntryKind::from_code(c.u8()?).ok_or("an entry kind is unknown")?;
                let name = std::str::from_utf8(c.take16()?)
                    .map_err(|_| "an entry name is not UTF-8")?
                    .to_owned();
                let name = EntryName { kind, name };
                name.check().map_err(|_| "an entry name is out of range")?;
                let nonce = c.array::<NONCE_LEN>()?;
                let sealed = c.take32()?.to_vec();
                if sealed.len() < TAG_LEN || sealed.len() > MAX_SECRET_LEN + TAG_LEN {
                    return Err("an entry has the wrong length");
                }
                if entries
                    .insert(name, SealedEntry { nonce, sealed })
                    .is_some()
                {
                    return Err("two entries have the same name");
                }
            }
            c.done()?;
            Ok((unlockers, entries))
        })();
        let (unlockers, entries) = parsed.map_err(damaged)?;
        let mut m = [0u8; MAC_LEN];
        m.copy_from_slice(mac);
        Ok(VaultFile {
            unlockers,
            entries,
            macced: macced.to_vec(),
            mac: m,
        })
    }

    pub fn unlocker_descs(&self) -> impl Iterator<Item = &UnlockerDesc> {
        self.unlockers.iter().map(|u| &u.desc)
    }

    pub fn entry_names(&self) -> impl Iterator<Item = &EntryName> {
        self.entries.keys()
    }

    /// A digest of one sealed entry as stored (name, nonce, ciphertext), known without any
    /// key; `None` when the entry is absent. Every write of the entry draws a new nonce, so
    /// the digest changes whenever the entry is written again (the session cache tells
    /// which key an entry holds by it without an unlock).
    pub fn sealed_digest(&self, name: &EntryName) -> Option<[u8; 32]> {
        let e = self.entries.get(name)?;
        let mut h = Sha256::new();
        h.update(name.aad());
        h.update(e.nonce);
        h.update((e.sealed.len() as u64).to_be_bytes());
        h.update(&e.sealed);
        Some(h.finalize().into())
    }

    /// Unwrap the data key with unlocker `id`'s output and check the whole file's MAC.
    pub fn open(&self, id: &str, output: &[u8]) -> Result<OpenVault, VaultError> {
        let u = self
            .unlockers
            .iter()
            .find(|u| u.desc.id == id)
            .ok_or_else(|| {
                VaultError::NotFound(format!(
                    "the vault has no unlocker {id:?} (it has {})",
                    self.unlockers
                        .iter()
                        .map(|u| u.desc.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
        let kek = derive_kek(&u.desc, output);
        let plain = cipher(&kek)
            .decrypt(
                &XNonce::from(u.nonce),
                Payload {
                    msg: &u.wrapped,
                    aad: &u.desc.aad(),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| {
                VaultError::WrongKey(format!("{} {:?}", u.desc.kind.label(), u.desc.id))
            })?;
        let mut data_key = Zeroizing::new([0u8; KEY_LEN]);
        if plain.len() != KEY_LEN {
            return Err(VaultError::Damaged(
                "a wrapped key has the wrong length".into(),
            ));
        }
        data_key.copy_from_slice(&plain);
        let keys = Keys::from_data_key(data_key);
        if !keys.verify_mac(&self.macced, &self.mac) {
            return Err(VaultError::Damaged(
                "its seal does not match its contents (it was edited outside tapcred)".into(),
            ));
        }
        Ok(OpenVault {
            unlockers: self.unlockers.clone(),
            entries: self.entries.clone(),
            keys,
        })
    }
}

/// The data key and what is derived from it.
struct Keys {
    data_key: Zeroizing<[u8; KEY_LEN]>,
    entry_key: Zeroizing<[u8; KEY_LEN]>,
    mac_key: Zeroizing<[u8; KEY_LEN]>,
}

impl Keys {
    fn from_data_key(data_key: Zeroizing<[u8; KEY_LEN]>) -> Keys {
        let hk = Hkdf::<Sha256>::new(None, data_key.as_slice());
        let mut entry_key = Zeroizing::new([0u8; KEY_LEN]);
        let mut mac_key = Zeroizing::new([0u8; KEY_LEN]);
        hk.expand(b"tapcred vault v1 entries", entry_key.as_mut_slice())
            .expect("32 bytes is a valid HKDF-SHA256 length");
        hk.expand(b"tapcred vault v1 file mac", mac_key.as_mut_slice())
            .expect("32 bytes is a valid HKDF-SHA256 length");
        Keys {
            data_key,
            entry_key,
            mac_key,
        }
    }
    fn mac(&self, bytes: &[u8]) -> [u8; MAC_LEN] {
        let mut m = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(self.mac_key.as_slice())
            .expect("HMAC takes any key length");
        m.update(bytes);
        m.finalize().into_bytes().into()
    }
    fn verify_mac(&self, bytes: &[u8], mac: &[u8; MAC_LEN]) -> bool {
        let mut m = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(self.mac_key.as_slice())
            .expect("HMAC takes any key length");
        m.update(bytes);
        m.verify_slice(mac).is_ok()
    }
}

/// HKDF-SHA256(ikm = output, salt, info = "tapcred vault v1 wrap" ‖ kind).
fn derive_kek(desc: &UnlockerDesc, output: &[u8]) -> Zeroizing<[u8; KEY_LEN]> {
    let hk = Hkdf::<Sha256>::new(Some(&desc.salt), output);
    let mut info = b"tapcred vault v1 wrap".to_vec();
    info.push(desc.kind.code());
    let mut kek = Zeroizing::new([0u8; KEY_LEN]);
    hk.expand(&info, kek.as_mut_slice())
        .expect("32 bytes is a valid HKDF-SHA256 length");
    kek
}

/// A vault whose data key is known: entries can be read, added and removed, unlockers
/// added, and the result serialised. Debug shows no secret.
pub struct OpenVault {
    unlockers: Vec<WrappedUnlocker>,
    entries: BTreeMap<EntryName, SealedEntry>,
    keys: Keys,
}

impl fmt::Debug for OpenVault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenVault")
            .field(
                "unlockers",
                &self
                    .unlockers
                    .iter()
                    .map(|u| &u.desc.id)
                    .collect::<Vec<_>>(),
            )
            .field("entries", &self.entries.keys().collect::<Vec<_>>())
            .field("keys", &"<redacted>")
            .finish()
    }
}

impl OpenVault {
    /// A new, empty vault with a fresh random data key, wrapped for its first unlocker.
    pub fn create(first: UnlockerDesc, output: &[u8]) -> Result<OpenVault, VaultError> {
        let mut data_key = Zeroizing::new([0u8; KEY_LEN]);
        fill_random(data_key.as_mut_slice())?;
        let mut v = OpenVault {
            unlockers: Vec::new(),
            entries: BTreeMap::new(),
            keys: Keys::from_data_key(data_key),
        };
        v.add_unlocker(first, output)?;
        Ok(v)
    }

    /// Wrap the data key for another unlocker (a backup key).
    pub fn add_unlocker(&mut self, desc: UnlockerDesc, output: &[u8]) -> Result<(), VaultError> {
        desc.check()?;
        if self.unlockers.iter().any(|u| u.desc.id == desc.id) {
            return Err(VaultError::Invalid(format!(
                "the vault already has an unlocker {:?}",
                desc.id
            )));
        }
        if self.unlockers.len() >= MAX_UNLOCKERS {
            return Err(VaultError::Invalid(format!(
                "a vault holds at most {MAX_UNLOCKERS} unlockers"
            )));
        }
        let kek = derive_kek(&desc, output);
        let nonce = random_nonce()?;
        let wrapped = cipher(&kek)
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: self.keys.data_key.as_slice(),
                    aad: &desc.aad(),
                },
            )
            .map_err(|_| VaultError::Io("sealing the vault key failed".into()))?;
        self.unlockers.push(WrappedUnlocker {
            desc,
            nonce,
            wrapped,
        });
        Ok(())
    }

    /// Remove an unlocker; the last one cannot be removed (nothing could open the vault).
    pub fn remove_unlocker(&mut self, id: &str) -> Result<(), VaultError> {
        let Some(i) = self.unlockers.iter().position(|u| u.desc.id == id) else {
            return Err(VaultError::NotFound(format!(
                "the vault has no unlocker {id:?}"
            )));
        };
        if self.unlockers.len() == 1 {
            return Err(VaultError::Invalid(format!(
                "{id:?} is the vault's only unlocker; add another before removing it"
            )));
        }
        self.unlockers.remove(i);
        Ok(())
    }

    pub fn unlocker_descs(&self) -> impl Iterator<Item = &UnlockerDesc> {
        self.unlockers.iter().map(|u| &u.desc)
    }

    pub fn entry_names(&self) -> impl Iterator<Item = &EntryName> {
        self.entries.keys()
    }

    /// Add or replace an entry. The secret's kind must match the name's kind.
    pub fn put(&mut self, name: EntryName, secret: &Secret) -> Result<(), VaultError> {
        name.check()?;
        if secret.kind() != name.kind {
            return Err(VaultError::Invalid(format!(
                "a {} cannot be stored as a {} entry",
                secret.kind().label(),
                name.kind.label()
            )));
        }
        let plain = secret.encode();
        if plain.len() > MAX_SECRET_LEN {
            return Err(VaultError::Invalid(format!(
                "secret for {:?} is longer than {MAX_SECRET_LEN} bytes",
                name.name
            )));
        }
        let nonce = random_nonce()?;
        let sealed = cipher(&self.keys.entry_key)
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &plain,
                    aad: &name.aad(),
                },
            )
            .map_err(|_| VaultError::Io("sealing a vault entry failed".into()))?;
        self.entries.insert(name, SealedEntry { nonce, sealed });
        Ok(())
    }

    /// Decrypt one entry.
    pub fn get(&self, name: &EntryName) -> Result<Secret, VaultError> {
        let e = self.entries.get(name).ok_or_else(|| {
            VaultError::NotFound(format!(
                "the vault has no {} entry {:?}",
                name.kind.label(),
                name.name
            ))
        })?;
        let plain = cipher(&self.keys.entry_key)
            .decrypt(
                &XNonce::from(e.nonce),
                Payload {
                    msg: &e.sealed,
                    aad: &name.aad(),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| VaultError::Damaged(format!("entry {:?} does not decrypt", name.name)))?;
        Secret::decode(name.kind, &plain)
            .ok_or_else(|| VaultError::Damaged(format!("entry {:?} is malformed", name.name)))
    }

    /// Remove an entry; whether it existed.
    pub fn remove(&mut self, name: &EntryName) -> bool {
        self.entries.remove(name).is_some()
    }

    /// The file's bytes: header, entries, keyed MAC, checksum.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + 128 * self.entries.len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_be_bytes());
        out.push(AEAD_XCHACHA20POLY1305);
        out.push(self.unlockers.len() as u8);
        for u in &self.unlockers {
            u.desc.write_fields(&mut out);
            out.extend_from_slice(&u.nonce);
            put16(&mut out, &u.wrapped);
        }
        out.extend_from_slice(&(self.entries.len() as u32).to_be_bytes());
        for (name, e) in &self.entries {
            out.push(name.kind.code());
            put16(&mut out, name.name.as_bytes());
            out.extend_from_slice(&e.nonce);
            out.extend_from_slice(&(e.sealed.len() as u32).to_be_bytes());
            out.extend_from_slice(&e.sealed);
        }
        let mac = self.keys.mac(&out);
        out.extend_from_slice(&mac);
        let sum = Sha256::digest(&out);
        out.extend_from_slice(&sum);
        out
    }
}

// ----- byte helpers -------------------------------------------------------------------

fn put16(out: &mut Vec<u8>, b: &[u8]) {
    // Every field written here was checked to be at most MAX_FIELD_LEN / MAX_NAME_LEN /
    // MAX_SECRET_LEN bytes, all below u16::MAX.
    out.extend_from_slice(&(b.len() as u16).to_be_bytes());
    out.extend_from_slice(b);
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

const SHORT: &str = "it is cut short";

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        let end = self.at.checked_add(n).ok_or(SHORT)?;
        let s = self.b.get(self.at..end).ok_or(SHORT)?;
        self.at = end;
        Ok(s)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], &'static str> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, &'static str> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, &'static str> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, &'static str> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    fn take16(&mut self) -> Result<&'a [u8], &'static str> {
        let n = self.u16()? as usize;
        self.take(n)
    }
    fn take32(&mut self) -> Result<&'a [u8], &'static str> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn done(&self) -> Result<(), &'static str> {
        if self.at == self.b.len() {
            Ok(())
        } else {
            Err("it has bytes after its last entry")
        }
    }
}

fn cipher(key: &[u8; KEY_LEN]) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new_from_slice(key).expect("XChaCha20-Poly1305 takes a 32-byte key")
}

fn fill_random(buf: &mut [u8]) -> Result<(), VaultError> {
    getrandom::fill(buf)
        .map_err(|e| VaultError::Io(format!("the system random number generator failed ({e})")))
}

fn random_vec(n: usize) -> Result<Vec<u8>, VaultError> {
    let mut v = vec![0u8; n];
    fill_random(&mut v)?;
    Ok(v)
}

fn random_nonce() -> Result<[u8; NONCE_LEN], VaultError> {
    let mut n = [0u8; NONCE_LEN];
    fill_random(&mut n)?;
    Ok(n)
}

#[cfg(test)]
impl OpenVault {
    /// The data key and the keys derived from it (for the "never in the file" test).
    pub(super) fn test_keys(&self) -> ([u8; KEY_LEN], [u8; KEY_LEN], [u8; KEY_LEN]) {
        (
            *self.keys.data_key,
            *self.keys.entry_key,
            *self.keys.mac_key,
        )
    }
}

/// The wrapping key an unlocker's output gives (for the "never in the file" test).
#[cfg(test)]
pub(super) fn test_kek(desc: &UnlockerDesc, output: &[u8]) -> [u8; KEY_LEN] {
    *derive_kek(desc, output)
}
