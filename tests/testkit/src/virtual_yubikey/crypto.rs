//! HMAC, PBKDF2 and RFC 4226 truncation used by the virtual card.

use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::{Sha256, Sha512};
use zeroize::Zeroizing;

use super::Algorithm;

/// HMAC of `msg` under `key` with the given hash.
pub(crate) fn hmac(algorithm: Algorithm, key: &[u8], msg: &[u8]) -> Vec<u8> {
    fn run<M: Mac + KeyInit>(key: &[u8], msg: &[u8]) -> Vec<u8> {
        let mut mac = <M as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
        mac.update(msg);
        mac.finalize().into_bytes().to_vec()
    }
    match algorithm {
        Algorithm::Sha1 => run::<Hmac<Sha1>>(key, msg),
        Algorithm::Sha256 => run::<Hmac<Sha256>>(key, msg),
        Algorithm::Sha512 => run::<Hmac<Sha512>>(key, msg),
    }
}

/// Plain hash, used to shorten keys longer than the block size (A.9).
pub(crate) fn hash(algorithm: Algorithm, data: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    match algorithm {
        Algorithm::Sha1 => Sha1::digest(data).to_vec(),
        Algorithm::Sha256 => Sha256::digest(data).to_vec(),
        Algorithm::Sha512 => Sha512::digest(data).to_vec(),
    }
}

/// RFC 4226 dynamic truncation, masked to 31 bits (not reduced modulo 10^digits: the
/// client does that, as on a real YubiKey).
pub(crate) fn truncate(mac: &[u8]) -> u32 {
    let offset = (mac[mac.len() - 1] & 0x0F) as usize;
    u32::from_be_bytes([
        mac[offset],
        mac[offset + 1],
        mac[offset + 2],
        mac[offset + 3],
    ]) & 0x7FFF_FFFF
}

/// The OATH access key for a password: PBKDF2-HMAC-SHA1(password, NAME salt, 1000, 16).
pub fn derive_access_key(password: &str, salt: &[u8]) -> Zeroizing<[u8; 16]> {
    let mut out = Zeroizing::new([0u8; 16]);
    pbkdf2::pbkdf2_hmac::<Sha1>(password.as_bytes(), salt, 1000, out.as_mut());
    out
}

/// Constant-time comparison (the card side has no timing requirement, but it costs nothing).
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("OS random source");
    b
}
