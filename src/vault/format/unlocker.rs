//! The unlockers in the header and how each wraps the data key: direct (HKDF of the
//! unlocker's output) or sealed (X25519 to the unlocker's public key).

use chacha20poly1305::XNonce;
use chacha20poly1305::aead::{Aead, Payload};
use hkdf::Hkdf;
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use super::bytes::put16;
use super::keys::{cipher, fill_random, random_nonce, random_vec};
use super::{
    AEAD_XCHACHA20POLY1305, DIRECT_WRAP_VERSION, KEY_LEN, MAGIC, MAX_FIELD_LEN, MAX_NAME_LEN,
    NONCE_LEN, WRAP_DIRECT, WRAP_SEALED,
};
use crate::vault::VaultError;

/// How an unlocker produces its secret output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum UnlockerKind {
    /// YubiKey OTP slot, HMAC-SHA1 challenge-response (20-byte output).
    OtpHmacSha1,
    /// FIDO2 `hmac-secret` (32-byte output). Not implemented yet; the format has room.
    Fido2HmacSecret,
}

impl UnlockerKind {
    pub(super) fn code(self) -> u8 {
        match self {
            UnlockerKind::OtpHmacSha1 => 1,
            UnlockerKind::Fido2HmacSecret => 2,
        }
    }
    pub(super) fn from_code(c: u8) -> Option<Self> {
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

    pub(super) fn write_fields(&self, out: &mut Vec<u8>) {
        out.push(self.kind.code());
        put16(out, self.id.as_bytes());
        put16(out, &self.salt);
        put16(out, &self.challenge);
        put16(out, &self.credential_id);
    }

    /// AAD binding a direct wrap to this descriptor (as version 1 made it).
    pub(super) fn direct_aad(&self) -> Vec<u8> {
        let mut a = Vec::with_capacity(64);
        a.extend_from_slice(&MAGIC);
        a.extend_from_slice(&DIRECT_WRAP_VERSION.to_be_bytes());
        a.push(AEAD_XCHACHA20POLY1305);
        self.write_fields(&mut a);
        a
    }

    /// AAD binding a sealed wrap to this descriptor and both public keys.
    pub(super) fn sealed_aad(&self, public: &[u8; KEY_LEN], ephemeral: &[u8; KEY_LEN]) -> Vec<u8> {
        let mut a = Vec::with_capacity(128);
        a.extend_from_slice(&MAGIC);
        a.push(WRAP_SEALED);
        self.write_fields(&mut a);
        a.extend_from_slice(public);
        a.extend_from_slice(ephemeral);
        a
    }

    pub(super) fn check(&self) -> Result<(), VaultError> {
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
pub(super) struct WrappedUnlocker {
    pub(super) desc: UnlockerDesc,
    pub(super) wrap: Wrap,
    pub(super) nonce: [u8; NONCE_LEN],
    pub(super) wrapped: Vec<u8>,
}

/// How the data key is wrapped for one unlocker (see the module doc).
#[derive(Clone, PartialEq, Eq)]
pub(super) enum Wrap {
    Direct,
    Sealed {
        public: [u8; KEY_LEN],
        ephemeral: [u8; KEY_LEN],
    },
}

impl WrappedUnlocker {
    /// The data key sealed to the public key of the unlocker `desc` (no device needed).
    pub(super) fn seal(
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
    pub(super) fn unwrap(&self, output: &[u8]) -> Result<Zeroizing<[u8; KEY_LEN]>, VaultError> {
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

    pub(super) fn is_sealed(&self) -> bool {
        matches!(self.wrap, Wrap::Sealed { .. })
    }

    pub(super) fn write(&self, out: &mut Vec<u8>) {
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
/// The X25519 secret key of an unlocker: HKDF-SHA256(ikm = output, salt, info = "tapcred
/// vault v2 unlocker x25519" ‖ kind).
pub(super) fn unlocker_secret(desc: &UnlockerDesc, output: &[u8]) -> StaticSecret {
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
pub(super) fn sealed_kek(
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
pub(super) fn derive_kek(desc: &UnlockerDesc, output: &[u8]) -> Zeroizing<[u8; KEY_LEN]> {
    let hk = Hkdf::<Sha256>::new(Some(&desc.salt), output);
    let mut info = b"tapcred vault v1 wrap".to_vec();
    info.push(desc.kind.code());
    let mut kek = Zeroizing::new([0u8; KEY_LEN]);
    hk.expand(&info, kek.as_mut_slice())
        .expect("32 bytes is a valid HKDF-SHA256 length");
    kek
}
