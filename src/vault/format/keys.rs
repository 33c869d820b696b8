//! The data key, the keys derived from it (entries, file MAC), the cipher and randomness.

use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::KeyInit;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::{KEY_LEN, MAC_LEN, NONCE_LEN};
use crate::vault::VaultError;

/// The data key and what is derived from it.
pub(super) struct Keys {
    pub(super) data_key: Zeroizing<[u8; KEY_LEN]>,
    pub(super) entry_key: Zeroizing<[u8; KEY_LEN]>,
    pub(super) mac_key: Zeroizing<[u8; KEY_LEN]>,
}

impl Keys {
    pub(super) fn from_data_key(data_key: Zeroizing<[u8; KEY_LEN]>) -> Keys {
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
    pub(super) fn mac(&self, bytes: &[u8]) -> [u8; MAC_LEN] {
        let mut m = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(self.mac_key.as_slice())
            .expect("HMAC takes any key length");
        m.update(bytes);
        m.finalize().into_bytes().into()
    }
    pub(super) fn verify_mac(&self, bytes: &[u8], mac: &[u8; MAC_LEN]) -> bool {
        let mut m = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(self.mac_key.as_slice())
            .expect("HMAC takes any key length");
        m.update(bytes);
        m.verify_slice(mac).is_ok()
    }
}
pub(super) fn cipher(key: &[u8; KEY_LEN]) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new_from_slice(key).expect("XChaCha20-Poly1305 takes a 32-byte key")
}

pub(super) fn fill_random(buf: &mut [u8]) -> Result<(), VaultError> {
    getrandom::fill(buf)
        .map_err(|e| VaultError::Io(format!("the system random number generator failed ({e})")))
}

pub(super) fn random_vec(n: usize) -> Result<Vec<u8>, VaultError> {
    let mut v = vec![0u8; n];
    fill_random(&mut v)?;
    Ok(v)
}

pub(super) fn random_nonce() -> Result<[u8; NONCE_LEN], VaultError> {
    let mut n = [0u8; NONCE_LEN];
    fill_random(&mut n)?;
    Ok(n)
}
