//! A private key that signs for an X.509 certificate, wherever it lives: a YubiKey's PIV
//! slot (`token::piv`) or a certificate and key file for headless runs. IAM Roles Anywhere
//! (`CreateSession`) is signed through this trait, so the layers above never learn where the
//! key is, and the key never leaves its home.

use crate::error::Result;
use crate::ui::Ui;

/// The key's type, which fixes the signature format and Roles Anywhere's algorithm name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    EcdsaP256,
    EcdsaP384,
    Rsa2048,
}

impl KeyAlgorithm {
    /// The signing algorithm name of AWS's X.509 signing process.
    pub fn roles_anywhere_name(self) -> &'static str {
        match self {
            KeyAlgorithm::EcdsaP256 | KeyAlgorithm::EcdsaP384 => "AWS4-X509-ECDSA-SHA256",
            KeyAlgorithm::Rsa2048 => "AWS4-X509-RSA-SHA256",
        }
    }
}

/// A certificate with a private key that can sign for it.
pub trait CertificateSigner: Send + Sync {
    /// The leaf certificate, DER.
    fn certificate_der(&self) -> &[u8];
    /// Intermediate certificates, DER, the leaf's issuer first (often empty).
    fn chain_der(&self) -> &[Vec<u8>];
    fn algorithm(&self) -> KeyAlgorithm;
    /// Signs SHA-256(`message`): ECDSA keys return the DER `ECDSA-Sig-Value`, RSA keys a
    /// PKCS#1 v1.5 signature. May ask for a PIN or a touch through `ui`.
    fn sign_sha256(&self, message: &[u8], ui: &dyn Ui) -> Result<Vec<u8>>;
    /// Names the key for messages: "YubiKey 12345678, PIV slot 9a", "key file /path/key.pem".
    fn describe(&self) -> String;
}
