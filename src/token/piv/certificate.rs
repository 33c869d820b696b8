//! Certificate objects: the key type and public key a certificate carries.

use crate::error::{Error, Result};
use crate::token::x509::KeyAlgorithm;

/// The key type of a certificate's public key (the SPKI's algorithm and size).
pub(super) fn algorithm_of_spki(
    spki: &x509_cert::spki::SubjectPublicKeyInfoOwned,
) -> Option<KeyAlgorithm> {
    pub(super) const EC: &str = "1.2.840.10045.2.1";
    pub(super) const RSA: &str = "1.2.840.113549.1.1.1";
    let key = spki.subject_public_key.raw_bytes();
    match spki.algorithm.oid.to_string().as_str() {
        EC if key.len() == 65 => Some(KeyAlgorithm::EcdsaP256),
        EC if key.len() == 97 => Some(KeyAlgorithm::EcdsaP384),
        // SEQUENCE { modulus 257 bytes (leading 0), exponent }: about 270 bytes for 2048.
        RSA if (266..=300).contains(&key.len()) => Some(KeyAlgorithm::Rsa2048),
        _ => None,
    }
}

pub(super) fn spki_der(spki: &x509_cert::spki::SubjectPublicKeyInfoOwned) -> Result<Vec<u8>> {
    x509_cert::der::Encode::to_der(spki)
        .map_err(|e| Error::internal(format!("public key does not encode: {e}")))
}

/// The key type of a certificate (DER), for `piv import` and messages.
pub fn certificate_algorithm(der: &[u8]) -> Option<KeyAlgorithm> {
    use x509_cert::der::Decode;
    let cert = x509_cert::Certificate::from_der(der).ok()?;
    algorithm_of_spki(&cert.tbs_certificate.subject_public_key_info)
}

/// The SubjectPublicKeyInfo (DER) of a certificate (DER).
pub fn certificate_public_key(der: &[u8]) -> Option<Vec<u8>> {
    use x509_cert::der::Decode;
    let cert = x509_cert::Certificate::from_der(der).ok()?;
    spki_der(&cert.tbs_certificate.subject_public_key_info).ok()
}
