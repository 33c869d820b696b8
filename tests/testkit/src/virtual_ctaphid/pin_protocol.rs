//! The authenticator's side of CTAP 2.1 PIN/UV auth protocols 1 and 2 (§6.5): the P-256
//! key-agreement key, the shared secret derived from ECDH, and the encrypt / decrypt /
//! authenticate / verify operations both protocols define.

use aes::Aes256;
use aes::cipher::block_padding::NoPadding;
use aes::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use p256::{NonZeroScalar, PublicKey};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

use crate::virtual_fido2::status;

/// CTAP2 status: the pinUvAuthParam (or saltAuth) does not verify.
pub const PIN_AUTH_INVALID: u8 = 0x33;

/// The two protocol numbers, in the order this authenticator prefers them.
pub const SUPPORTED: [u8; 2] = [2, 1];

/// A PIN/UV auth protocol (1 or 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    One,
    Two,
}

impl Protocol {
    /// The protocol a request names; `INVALID_PARAMETER` for any other number.
    pub fn from_number(n: i128) -> Result<Protocol, u8> {
        match n {
            1 => Ok(Protocol::One),
            2 => Ok(Protocol::Two),
            _ => Err(status::INVALID_PARAMETER),
        }
    }

    /// Protocol 1: SHA-256(Z), one key for HMAC and AES. Protocol 2: HKDF-SHA-256 with a
    /// zero salt, 32 bytes for HMAC ("CTAP2 HMAC key") then 32 for AES ("CTAP2 AES key").
    /// `swap_infos` derives the two protocol-2 halves the wrong way round (a fault for
    /// proving that a client notices).
    fn kdf(self, z: &[u8], swap_infos: bool) -> SharedSecret {
        match self {
            Protocol::One => SharedSecret {
                protocol: self,
                bytes: Zeroizing::new(Sha256::digest(z).to_vec()),
            },
            Protocol::Two => {
                let hk = Hkdf::<Sha256>::new(Some(&[0u8; 32]), z);
                let mut out = Zeroizing::new(vec![0u8; 64]);
                let (hmac_info, aes_info): (&[u8], &[u8]) = if swap_infos {
                    (b"CTAP2 AES key", b"CTAP2 HMAC key")
                } else {
                    (b"CTAP2 HMAC key", b"CTAP2 AES key")
                };
                hk.expand(hmac_info, &mut out[..32]).expect("32 bytes");
                hk.expand(aes_info, &mut out[32..]).expect("32 bytes");
                SharedSecret {
                    protocol: self,
                    bytes: out,
                }
            }
        }
    }

    /// authenticate(key, message) with a PIN token as the key.
    pub fn authenticate_with_token(self, token: &[u8], message: &[u8]) -> Vec<u8> {
        let full = hmac_sha256(token, message);
        match self {
            Protocol::One => full[..16].to_vec(),
            Protocol::Two => full.to_vec(),
        }
    }

    /// verify(token, message, signature): true when `signature` is what authenticate gives.
    pub fn verify_with_token(self, token: &[u8], message: &[u8], signature: &[u8]) -> bool {
        let expected = self.authenticate_with_token(token, message);
        expected.len() == signature.len() && bool::from(expected.ct_eq(signature))
    }
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("any key length");
    m.update(message);
    m.finalize().into_bytes().into()
}

/// The secret both sides derive from one key agreement.
pub struct SharedSecret {
    protocol: Protocol,
    bytes: Zeroizing<Vec<u8>>,
}

impl SharedSecret {
    fn hmac_key(&self) -> &[u8] {
        &self.bytes[..32]
    }

    fn aes_key(&self) -> &[u8] {
        match self.protocol {
            Protocol::One => &self.bytes[..32],
            Protocol::Two => &self.bytes[32..],
        }
    }

    /// AES-256-CBC without padding: zero IV (protocol 1) or a random IV sent before the
    /// ciphertext (protocol 2).
    pub fn encrypt(&self, plaintext: &[u8]) -> Vec<u8> {
        let mut iv = [0u8; 16];
        if self.protocol == Protocol::Two {
            getrandom::fill(&mut iv).expect("system random");
        }
        let ct = cbc::Encryptor::<Aes256>::new_from_slices(self.aes_key(), &iv)
            .expect("32-byte key, 16-byte iv")
            .encrypt_padded_vec::<NoPadding>(plaintext);
        match self.protocol {
            Protocol::One => ct,
            Protocol::Two => [iv.as_slice(), &ct].concat(),
        }
    }

    /// The inverse of [`Self::encrypt`]; `INVALID_PARAMETER` when the length is not whole
    /// blocks (plus the IV for protocol 2).
    pub fn decrypt(&self, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, u8> {
        let (iv, ct) = match self.protocol {
            Protocol::One => ([0u8; 16], ciphertext),
            Protocol::Two => {
                if ciphertext.len() < 16 {
                    return Err(status::INVALID_PARAMETER);
                }
                let (iv, ct) = ciphertext.split_at(16);
                (iv.try_into().expect("16 bytes"), ct)
            }
        };
        if ct.is_empty() || ct.len() % 16 != 0 {
            return Err(status::INVALID_PARAMETER);
        }
        cbc::Decryptor::<Aes256>::new_from_slices(self.aes_key(), &iv)
            .expect("32-byte key, 16-byte iv")
            .decrypt_padded_vec::<NoPadding>(ct)
            .map(Zeroizing::new)
            .map_err(|_| status::INVALID_PARAMETER)
    }

    /// verify(sharedSecret, message, signature): HMAC-SHA-256 with the HMAC key, the first
    /// 16 bytes (protocol 1) or all 32 (protocol 2).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let full = hmac_sha256(self.hmac_key(), message);
        let expected = match self.protocol {
            Protocol::One => &full[..16],
            Protocol::Two => &full[..],
        };
        expected.len() == signature.len() && bool::from(expected.ct_eq(signature))
    }
}

/// The authenticator's P-256 key-agreement key; a new one at power-up and after a wrong PIN.
pub struct KeyAgreement {
    secret: NonZeroScalar,
    pub swap_protocol2_kdf: bool,
}

impl KeyAgreement {
    pub fn generate() -> Self {
        KeyAgreement {
            secret: random_scalar(),
            swap_protocol2_kdf: false,
        }
    }

    pub fn regenerate(&mut self) {
        self.secret = random_scalar();
    }

    /// The public key's x and y coordinates.
    pub fn public_xy(&self) -> ([u8; 32], [u8; 32]) {
        point_xy(&PublicKey::from_secret_scalar(&self.secret))
    }

    /// ECDH with the platform's key (x, y), then the protocol's KDF. `INVALID_PARAMETER` for a
    /// point not on the curve.
    pub fn shared_secret(
        &self,
        protocol: Protocol,
        x: &[u8],
        y: &[u8],
    ) -> Result<SharedSecret, u8> {
        if x.len() != 32 || y.len() != 32 {
            return Err(status::INVALID_PARAMETER);
        }
        let sec1 = [&[0x04u8][..], x, y].concat();
        let peer = PublicKey::from_sec1_bytes(&sec1).map_err(|_| status::INVALID_PARAMETER)?;
        let shared = p256::ecdh::diffie_hellman(self.secret, peer.as_affine());
        let mut z = shared.raw_secret_bytes().to_vec();
        let secret = protocol.kdf(&z, self.swap_protocol2_kdf);
        z.zeroize();
        Ok(secret)
    }
}

/// A uniformly random non-zero P-256 scalar.
pub fn random_scalar() -> NonZeroScalar {
    loop {
        let mut b = Zeroizing::new([0u8; 32]);
        getrandom::fill(b.as_mut()).expect("system random");
        if let Some(s) = scalar_from_bytes(&b) {
            return s;
        }
    }
}

/// The scalar these bytes encode, if it is in range and not zero.
pub fn scalar_from_bytes(b: &[u8; 32]) -> Option<NonZeroScalar> {
    NonZeroScalar::try_from(&b[..]).ok()
}

/// A public key's affine coordinates.
pub fn point_xy(public: &PublicKey) -> ([u8; 32], [u8; 32]) {
    let sec1 = public.to_sec1_bytes();
    assert_eq!(sec1.len(), 65, "uncompressed SEC1 point");
    (
        sec1[1..33].try_into().expect("32 bytes"),
        sec1[33..].try_into().expect("32 bytes"),
    )
}
