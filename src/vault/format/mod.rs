//! The vault file format, version 2 (version 1 is still read), and its crypto. Pure
//! functions over bytes: no I/O, no hardware (an unlocker's output comes in as bytes).
//!
//! ```text
//! magic      8   "TCVAULT\0"
//! version    2   2 (big-endian, as every integer here); 1 = the format before generations
//! aead       1   1 = XChaCha20-Poly1305 (24-byte random nonces, 16-byte tags)
//! generation 8   (version 2 only) one more than the generation of the file it replaced
//! unlockers  1   count n, 1..=16, then n times:
//!   kind           1   1 = YubiKey OTP slot HMAC-SHA1, 2 = FIDO2 hmac-secret
//!   id             2+  UTF-8 label, unique in the file ("otp:12345678:2")
//!   salt           2+  HKDF salt (32 random bytes)
//!   challenge      2+  what the device is asked (OTP: 32 random bytes; FIDO2: the salt)
//!   credential id  2+  FIDO2 credential id (empty for OTP)
//!   wrap           1   (version 2 only) 1 = direct, 2 = sealed; version 1: always direct
//!   public key    32   (sealed only) the unlocker's X25519 public key
//!   ephemeral     32   (sealed only) the X25519 public key of this wrap
//!   nonce         24
//!   wrapped key    2+  AEAD(KEK, nonce, data key, AAD)
//! entries    4   count m, then m times:
//!   kind           1   1 = TOTP seed (name = mfa_serial), 2 = access key (name = source profile)
//!   name           2+  UTF-8, unique per kind
//!   nonce         24
//!   sealed         4+  AEAD(entry key, nonce, secret, AAD = "tapcred vault v1 entry" ‖ kind ‖ name)
//! mac       32   HMAC-SHA256(mac key, every byte before it)
//! checksum  32   SHA-256(every byte before it)
//! ```
//!
//! Wraps. *Direct* (every unlocker of a version-1 file): KEK = HKDF-SHA256(ikm = unlocker
//! output, salt, info = "tapcred vault v1 wrap" ‖ kind), AAD = magic ‖ 0x0001 ‖ aead ‖ the
//! unlocker's fields. *Sealed*: the unlocker's X25519 secret key is HKDF-SHA256(ikm = output,
//! salt, info = "tapcred vault v2 unlocker x25519" ‖ kind); the data key is sealed to its public
//! key with a fresh ephemeral key: KEK = HKDF-SHA256(ikm = X25519(ephemeral, public), salt =
//! ephemeral ‖ public, info = "tapcred vault v2 wrap"), AAD = magic ‖ 0x02 ‖ the unlocker's
//! fields ‖ public ‖ ephemeral. Sealing needs only the public key, so removing an unlocker (or
//! a secret) re-keys the vault — a new data key, every entry re-sealed under it, the new key
//! sealed to each remaining unlocker — with one touch: a removed unlocker's output, or an old
//! data key, opens nothing written after. A direct wrap becomes a sealed one when its unlocker
//! opens the vault (its output gives the key pair); re-keying needs every unlocker sealed.
//!
//! The generation is under the MAC: tapcred remembers the highest one it has seen for each
//! vault (`super::store`), so an older copy of the file put back in place is refused.
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
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use super::VaultError;

pub const MAGIC: [u8; 8] = *b"TCVAULT\0";
pub const VERSION: u16 = 2;
/// The version named in a direct wrap's AAD (direct wraps were made by version 1).
const DIRECT_WRAP_VERSION: u16 = 1;
const WRAP_DIRECT: u8 = 1;
const WRAP_SEALED: u8 = 2;
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

    /// AAD binding a direct wrap to this descriptor (as version 1 made it).
    fn direct_aad(&self) -> Vec<u8> {
        let mut a = Vec::with_capacity(64);
        a.extend_from_slice(&MAGIC);
        a.extend_from_slice(&DIRECT_WRAP_VERSION.to_be_bytes());
        a.push(AEAD_XCHACHA20POLY1305);
        self.write_fields(&mut a);
        a
    }

    /// AAD binding a sealed wrap to this descriptor and both public keys.
    fn sealed_aad(&self, public: &[u8; KEY_LEN], ephemeral: &[u8; KEY_LEN]) -> Vec<u8> {
        let mut a = Vec::with_capacity(128);
        a.extend_from_slice(&MAGIC);
        a.push(WRAP_SEALED);
        self.write_fields(&mut a);
        a.extend_from_slice(public);
        a.extend_from_slice(ephemeral);
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
    wrap: Wrap,
    nonce: [u8; NONCE_LEN],
    wrapped: Vec<u8>,
}

/// How the data key is wrapped for one unlocker (see the module doc).
#[derive(Clone, PartialEq, Eq)]
enum Wrap {
    Direct,
    Sealed {
        public: [u8; KEY_LEN],
        ephemeral: [u8; KEY_LEN],
    },
}

impl WrappedUnlocker {
    /// The data key sealed to the public key of the unlocker `desc` (no device needed).
    fn seal(
        desc: UnlockerDesc,
        public: [u8; KEY_LEN],
        data_key: &[u8; KEY_LEN],
    ) -> Result<WrappedUnlocker, VaultError> {
        let mut eph_bytes = Zeroizing::new([0u8; KEY_LEN]);
        fill_random(eph_bytes.as_mut_slice())?;
        let eph = StaticSecret::from(*eph_bytes);
        let ephemeral = PublicKey::from(&eph).to_bytes();
        let shared = eph.diffie_hellman(&PublicKey::from(public));
        if !shared.was_contributory() {
            return Err(VaultError::Damaged(format!(
                "unlocker {:?} has an invalid public key",
                desc.id
            )));
        }
        let kek = sealed_kek(shared.as_bytes(), &public, &ephemeral);
        let nonce = random_nonce()?;
        let wrapped = cipher(&kek)
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: data_key.as_slice(),
                    aad: &desc.sealed_aad(&public, &ephemeral),
                },
            )
            .map_err(|_| VaultError::Io("sealing the vault key failed".into()))?;
        Ok(WrappedUnlocker {
            desc,
            wrap: Wrap::Sealed { public, ephemeral },
            nonce,
            wrapped,
        })
    }

    /// The data key, from this unlocker's output.
    fn unwrap(&self, output: &[u8]) -> Result<Zeroizing<[u8; KEY_LEN]>, VaultError> {
        let wrong =
            || VaultError::WrongKey(format!("{} {:?}", self.desc.kind.label(), self.desc.id));
        let (kek, aad) = match &self.wrap {
            Wrap::Direct => (derive_kek(&self.desc, output), self.desc.direct_aad()),
            Wrap::Sealed { public, ephemeral } => {
                let secret = unlocker_secret(&self.desc, output);
                if PublicKey::from(&secret).as_bytes() != public {
                    return Err(wrong());
                }
                let shared = secret.diffie_hellman(&PublicKey::from(*ephemeral));
                if !shared.was_contributory() {
                    return Err(VaultError::Damaged(
                        "a sealed key has an invalid ephemeral key".into(),
                    ));
                }
                (
                    sealed_kek(shared.as_bytes(), public, ephemeral),
                    self.desc.sealed_aad(public, ephemeral),
                )
            }
        };
        let plain = cipher(&kek)
            .decrypt(
                &XNonce::from(self.nonce),
                Payload {
                    msg: &self.wrapped,
                    aad: &aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| wrong())?;
        if plain.len() != KEY_LEN {
            return Err(VaultError::Damaged(
                "a wrapped key has the wrong length".into(),
            ));
        }
        let mut data_key = Zeroizing::new([0u8; KEY_LEN]);
        data_key.copy_from_slice(&plain);
        Ok(data_key)
    }

    fn is_sealed(&self) -> bool {
        matches!(self.wrap, Wrap::Sealed { .. })
    }

    fn write(&self, out: &mut Vec<u8>) {
        self.desc.write_fields(out);
        match &self.wrap {
            Wrap::Direct => out.push(WRAP_DIRECT),
            Wrap::Sealed { public, ephemeral } => {
                out.push(WRAP_SEALED);
                out.extend_from_slice(public);
                out.extend_from_slice(ephemeral);
            }
        }
        out.extend_from_slice(&self.nonce);
        put16(out, &self.wrapped);
    }
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
    version: u16,
    generation: u64,
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
        if version != 1 && version != VERSION {
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
            let generation = match version {
                1 => 0,
                _ => u64::from_be_bytes(c.array()?),
            };
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
                let wrap = match version {
                    1 => Wrap::Direct,
                    _ => match c.u8()? {
                        WRAP_DIRECT => Wrap::Direct,
                        WRAP_SEALED => Wrap::Sealed {
                            public: c.array()?,
                            ephemeral: c.array()?,
                        },
                        _ => return Err("an unlocker's wrap is unknown"),
                    },
                };
                let nonce = c.array::<NONCE_LEN>()?;
                let wrapped = c.take16()?.to_vec();
                if wrapped.len() != KEY_LEN + TAG_LEN {
                    return Err("a wrapped key has the wrong length");
                }
                unlockers.push(WrappedUnlocker {
                    desc,
                    wrap,
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
            Ok((generation, unlockers, entries))
        })();
        let (generation, unlockers, entries) = parsed.map_err(damaged)?;
        let mut m = [0u8; MAC_LEN];
        m.copy_from_slice(mac);
        Ok(VaultFile {
            version,
            generation,
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

    /// The format version the file was written in (1 or 2).
    pub fn version(&self) -> u16 {
        self.version
    }

    /// The file's generation (0 for a version-1 file). Only a MAC-checked file
    /// ([`OpenVault::generation`]) proves it; the header alone can be forged.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Unwrap the data key with unlocker `id`'s output and check the whole file's MAC. A
    /// direct wrap of the opener becomes a sealed one in the opened vault (written on the
    /// next write).
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
        let keys = Keys::from_data_key(u.unwrap(output)?);
        if !keys.verify_mac(&self.macced, &self.mac) {
            return Err(VaultError::Damaged(
                "its seal does not match its contents (it was edited outside tapcred)".into(),
            ));
        }
        let mut vault = OpenVault {
            generation: self.generation,
            unlockers: self.unlockers.clone(),
            entries: self.entries.clone(),
            keys,
        };
        vault.seal_direct(id, output)?;
        Ok(vault)
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

/// The X25519 secret key of an unlocker: HKDF-SHA256(ikm = output, salt, info = "tapcred
/// vault v2 unlocker x25519" ‖ kind).
fn unlocker_secret(desc: &UnlockerDesc, output: &[u8]) -> StaticSecret {
    let hk = Hkdf::<Sha256>::new(Some(&desc.salt), output);
    let mut info = b"tapcred vault v2 unlocker x25519".to_vec();
    info.push(desc.kind.code());
    let mut k = Zeroizing::new([0u8; KEY_LEN]);
    hk.expand(&info, k.as_mut_slice())
        .expect("32 bytes is a valid HKDF-SHA256 length");
    StaticSecret::from(*k)
}

/// The key wrapping a sealed data key: HKDF-SHA256(ikm = shared secret, salt = ephemeral ‖
/// public, info = "tapcred vault v2 wrap").
fn sealed_kek(
    shared: &[u8; KEY_LEN],
    public: &[u8; KEY_LEN],
    ephemeral: &[u8; KEY_LEN],
) -> Zeroizing<[u8; KEY_LEN]> {
    let mut salt = [0u8; 2 * KEY_LEN];
    salt[..KEY_LEN].copy_from_slice(ephemeral);
    salt[KEY_LEN..].copy_from_slice(public);
    let hk = Hkdf::<Sha256>::new(Some(&salt), shared);
    let mut kek = Zeroizing::new([0u8; KEY_LEN]);
    hk.expand(b"tapcred vault v2 wrap", kek.as_mut_slice())
        .expect("32 bytes is a valid HKDF-SHA256 length");
    kek
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
    /// The generation of the file it was read from (0: a new vault).
    generation: u64,
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
            generation: 0,
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
        let public = PublicKey::from(&unlocker_secret(&desc, output)).to_bytes();
        let sealed = WrappedUnlocker::seal(desc, public, &self.keys.data_key)?;
        self.unlockers.push(sealed);
        Ok(())
    }

    /// Turn unlocker `id`'s direct wrap into a sealed one, given its output (which must
    /// unwrap this vault's data key). Nothing to do when it is sealed already.
    pub fn seal_direct(&mut self, id: &str, output: &[u8]) -> Result<(), VaultError> {
        let Some(i) = self.unlockers.iter().position(|u| u.desc.id == id) else {
            return Err(VaultError::NotFound(format!(
                "the vault has no unlocker {id:?}"
            )));
        };
        if self.unlockers[i].is_sealed() {
            return Ok(());
        }
        let data_key = self.unlockers[i].unwrap(output)?;
        if data_key.as_slice() != self.keys.data_key.as_slice() {
            return Err(VaultError::Damaged(format!(
                "unlocker {id:?} holds another vault's key"
            )));
        }
        let desc = self.unlockers[i].desc.clone();
        let public = PublicKey::from(&unlocker_secret(&desc, output)).to_bytes();
        self.unlockers[i] = WrappedUnlocker::seal(desc, public, &self.keys.data_key)?;
        Ok(())
    }

    /// The unlockers still wrapped directly (made by a tapcred before version 2): the vault
    /// cannot be re-keyed until each has opened it once ([`OpenVault::seal_direct`]).
    pub fn direct_unlockers(&self) -> impl Iterator<Item = &UnlockerDesc> {
        self.unlockers
            .iter()
            .filter(|u| !u.is_sealed())
            .map(|u| &u.desc)
    }

    /// A new data key: every entry re-sealed under it, and it sealed to every unlocker's
    /// public key. The old data key (and the output of an unlocker removed before) opens
    /// nothing of what is written after. Every unlocker must be sealed already.
    pub fn rekey(&mut self) -> Result<(), VaultError> {
        let direct: Vec<&str> = self.direct_unlockers().map(|d| d.id.as_str()).collect();
        if !direct.is_empty() {
            return Err(VaultError::Invalid(format!(
                "the vault cannot be re-keyed while {} still use the key wrap of a tapcred before 0.2: plug in those keys too (each is asked once, to move it to the new wrap) and run the command again",
                direct.join(", ")
            )));
        }
        let mut data_key = Zeroizing::new([0u8; KEY_LEN]);
        fill_random(data_key.as_mut_slice())?;
        let new_keys = Keys::from_data_key(data_key);
        let mut entries = BTreeMap::new();
        for name in self.entries.keys() {
            let secret = self.get(name)?;
            let sealed = seal_entry(&new_keys, name, &secret.encode())?;
            entries.insert(name.clone(), sealed);
        }
        let mut unlockers = Vec::with_capacity(self.unlockers.len());
        for u in &self.unlockers {
            let Wrap::Sealed { public, .. } = u.wrap else {
                unreachable!("checked above: every unlocker is sealed")
            };
            unlockers.push(WrappedUnlocker::seal(
                u.desc.clone(),
                public,
                &new_keys.data_key,
            )?);
        }
        self.entries = entries;
        self.unlockers = unlockers;
        self.keys = new_keys;
        Ok(())
    }

    /// The generation of the file this vault was read from (0 for a new vault, or a
    /// version-1 file). Known only after the MAC was checked.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Remove an unlocker and re-key the vault ([`OpenVault::rekey`]), so that unlocker's
    /// output opens nothing written after. The last one cannot be removed (nothing could
    /// open the vault).
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
        let removed = self.unlockers.remove(i);
        if let Err(e) = self.rekey() {
            self.unlockers.insert(i, removed);
            return Err(e);
        }
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
        let sealed = seal_entry(&self.keys, &name, &plain)?;
        self.entries.insert(name, sealed);
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

    /// Remove an entry; whether it existed. No re-key: for taking back an entry this
    /// process just added ([`OpenVault::remove_entry`] removes a secret for good).
    pub fn remove(&mut self, name: &EntryName) -> bool {
        self.entries.remove(name).is_some()
    }

    /// Remove an entry and re-key the vault ([`OpenVault::rekey`]): a data key taken before
    /// (from memory, or from an old copy and a removed unlocker) opens nothing written after.
    /// Whether it existed (nothing changes when it did not).
    pub fn remove_entry(&mut self, name: &EntryName) -> Result<bool, VaultError> {
        if !self.entries.contains_key(name) {
            return Ok(false);
        }
        self.rekey()?;
        self.entries.remove(name);
        Ok(true)
    }

    /// The file's bytes (always the current version) with the generation it was read with.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_bytes_at(self.generation)
    }

    /// The file's bytes: header (with `generation`), entries, keyed MAC, checksum.
    pub fn to_bytes_at(&self, generation: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + 128 * self.entries.len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_be_bytes());
        out.push(AEAD_XCHACHA20POLY1305);
        out.extend_from_slice(&generation.to_be_bytes());
        out.push(self.unlockers.len() as u8);
        for u in &self.unlockers {
            u.write(&mut out);
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

/// `plain` sealed as entry `name` under `keys`.
fn seal_entry(keys: &Keys, name: &EntryName, plain: &[u8]) -> Result<SealedEntry, VaultError> {
    let nonce = random_nonce()?;
    let sealed = cipher(&keys.entry_key)
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: plain,
                aad: &name.aad(),
            },
        )
        .map_err(|_| VaultError::Io("sealing a vault entry failed".into()))?;
    Ok(SealedEntry { nonce, sealed })
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

#[cfg(test)]
impl VaultFile {
    /// Each entry's name, nonce and sealed bytes, as in the file (for decrypting them with
    /// keys from elsewhere in tests).
    pub(super) fn test_sealed(&self) -> Vec<(EntryName, [u8; NONCE_LEN], Vec<u8>)> {
        self.entries
            .iter()
            .map(|(n, e)| (n.clone(), e.nonce, e.sealed.clone()))
            .collect()
    }

    /// Whether each unlocker's wrap is sealed (else direct), in header order.
    pub(super) fn test_sealed_wraps(&self) -> Vec<bool> {
        self.unlockers.iter().map(|u| u.is_sealed()).collect()
    }
}

/// A version-1 file (as tapcred before generations wrote it: no generation, direct wraps)
/// with `unlockers` and `entries`, for the upgrade tests.
#[cfg(test)]
pub(super) fn test_v1_bytes(
    unlockers: &[(&UnlockerDesc, &[u8])],
    entries: &[(EntryName, Secret)],
) -> Vec<u8> {
    let mut data_key = Zeroizing::new([0u8; KEY_LEN]);
    fill_random(data_key.as_mut_slice()).unwrap();
    let keys = Keys::from_data_key(data_key);
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&1u16.to_be_bytes());
    out.push(AEAD_XCHACHA20POLY1305);
    out.push(unlockers.len() as u8);
    for (desc, output) in unlockers {
        let nonce = random_nonce().unwrap();
        let wrapped = cipher(&derive_kek(desc, output))
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: keys.data_key.as_slice(),
                    aad: &desc.direct_aad(),
                },
            )
            .unwrap();
        desc.write_fields(&mut out);
        out.extend_from_slice(&nonce);
        put16(&mut out, &wrapped);
    }
    out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    for (name, secret) in entries {
        let e = seal_entry(&keys, name, &secret.encode()).unwrap();
        out.push(name.kind.code());
        put16(&mut out, name.name.as_bytes());
        out.extend_from_slice(&e.nonce);
        out.extend_from_slice(&(e.sealed.len() as u32).to_be_bytes());
        out.extend_from_slice(&e.sealed);
    }
    let mac = keys.mac(&out);
    out.extend_from_slice(&mac);
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    out
}

/// The wrapping key an unlocker's output gives (for the "never in the file" test).
#[cfg(test)]
pub(super) fn test_kek(desc: &UnlockerDesc, output: &[u8]) -> [u8; KEY_LEN] {
    *derive_kek(desc, output)
}
