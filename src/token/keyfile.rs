//! The key-file signer for headless Roles Anywhere runs: a certificate (PEM or DER, with an
//! optional chain file) and its private key in a PEM file (PKCS#8 `PRIVATE KEY`, SEC1
//! `EC PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`). ECDSA P-256/P-384 and RSA 2048. The key
//! file must be private, as `ssh` wants its keys; key material is wiped when dropped.

use std::path::{Path, PathBuf};

use p256::pkcs8::{DecodePrivateKey, EncodePublicKey};
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::signature::{SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::token::certificate::{CertificateFacts, pem_blocks, read_certificates};
use crate::token::x509::{CertificateSigner, KeyAlgorithm};
use crate::ui::Ui;

/// A certificate or key file larger than this is not one.
pub const MAX_FILE: u64 = 256 * 1024;

enum Key {
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
    Rsa(Box<rsa::pkcs1v15::SigningKey<rsa::sha2::Sha256>>),
}

pub struct KeyFileSigner {
    certificate: Vec<u8>,
    chain: Vec<Vec<u8>>,
    key: Key,
    algorithm: KeyAlgorithm,
    key_path: PathBuf,
}

impl std::fmt::Debug for KeyFileSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyFileSigner")
            .field("key_path", &self.key_path)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// Where a profile's certificate, key and chain files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFiles {
    pub certificate: PathBuf,
    pub private_key: PathBuf,
    pub chain: Option<PathBuf>,
}

impl KeyFileSigner {
    /// Reads and checks the files of `profile`: the certificate, the chain, and a private
    /// key that is private and belongs to the certificate.
    pub fn open(files: &KeyFiles, profile: &str) -> Result<KeyFileSigner> {
        let certs = read_cert_file(
            &files.certificate,
            profile,
            "tapcred_roles_anywhere_certificate",
        )?;
        let mut certs = certs.into_iter();
        let certificate = certs.next().expect("read_cert_file returns at least one");
        // Certificates after the leaf in the same file are its chain (as `fullchain.pem`).
        let mut chain: Vec<Vec<u8>> = certs.collect();
        if let Some(p) = &files.chain {
            chain.extend(read_chain_file(p, profile)?);
        }
        let facts = CertificateFacts::from_der(&certificate).map_err(|why| {
            Error::config(format!(
                "profile \"{profile}\": certificate {} is {why}; point tapcred_roles_anywhere_certificate at the PEM certificate your CA issued",
                files.certificate.display()
            ))
        })?;
        let (key, algorithm, public) = read_key(&files.private_key, profile)?;
        if public != facts.public_key_der {
            return Err(Error::config(format!(
                "profile \"{profile}\": private key {} does not belong to certificate {} (their public keys differ); point tapcred_roles_anywhere_private_key at the key the certificate was issued for",
                files.private_key.display(),
                files.certificate.display()
            )));
        }
        Ok(KeyFileSigner {
            certificate,
            chain,
            key,
            algorithm,
            key_path: files.private_key.clone(),
        })
    }
}

impl CertificateSigner for KeyFileSigner {
    fn certificate_der(&self) -> &[u8] {
        &self.certificate
    }
    fn chain_der(&self) -> &[Vec<u8>] {
        &self.chain
    }
    fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }
    fn sign_sha256(&self, message: &[u8], _ui: &dyn Ui) -> Result<Vec<u8>> {
        use p256::ecdsa::signature::hazmat::PrehashSigner;
        let digest = Sha256::digest(message);
        let failed = |e: p256::ecdsa::Error| {
            Error::internal(format!("signing with {} failed: {e}", self.describe()))
        };
        Ok(match &self.key {
            Key::P256(k) => {
                let s: p256::ecdsa::Signature = k.sign_prehash(&digest).map_err(failed)?;
                s.to_der().as_bytes().to_vec()
            }
            Key::P384(k) => {
                // The digest is SHA-256 whatever the curve (Roles Anywhere's rule).
                let s: p384::ecdsa::Signature = k.sign_prehash(&digest).map_err(failed)?;
                s.to_der().as_bytes().to_vec()
            }
            Key::Rsa(k) => k.sign(message).to_vec(),
        })
    }
    fn describe(&self) -> String {
        format!("key file {}", self.key_path.display())
    }
}

/// The intermediate CAs of `tapcred_roles_anywhere_chain` (DER, in file order).
pub fn read_chain_file(path: &Path, profile: &str) -> Result<Vec<Vec<u8>>> {
    read_cert_file(path, profile, "tapcred_roles_anywhere_chain")
}

fn read_cert_file(path: &Path, profile: &str, key: &str) -> Result<Vec<Vec<u8>>> {
    use crate::platform::fs::read_regular;
    let bytes = read_regular(path, MAX_FILE, true).map_err(|e| {
        Error::config(format!(
            "profile \"{profile}\": cannot read certificate file {} ({key}): {e}; fix the path",
            path.display()
        ))
    })?;
    read_certificates(&bytes).map_err(|why| {
        Error::config(format!(
            "profile \"{profile}\": {key} = {} holds {why}; it must be a PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        ))
    })
}

/// The key, its algorithm and its public half as a SubjectPublicKeyInfo (DER).
fn read_key(path: &Path, profile: &str) -> Result<(Key, KeyAlgorithm, Vec<u8>)> {
    use crate::platform::fs::{ReadError, make_private_hint, read_secret_file};
    let shown = path.display();
    let bytes = read_secret_file(path, MAX_FILE).map_err(|e| {
        Error::config(match e {
            ReadError::Shared(how) => format!(
                "profile \"{profile}\": private key {shown} is readable by other users ({how}); run: {}",
                make_private_hint(path)
            ),
            other => format!(
                "profile \"{profile}\": cannot read private key {shown} (tapcred_roles_anywhere_private_key): {other}; fix the path or the file's permissions"
            ),
        })
    })?;
    let bad =
        |why: &str| Error::config(format!("profile \"{profile}\": private key {shown} {why}"));
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        bad("is not a PEM file; write the key as PEM (-----BEGIN PRIVATE KEY-----)")
    })?;
    let Some(block) = pem_blocks(text).into_iter().find(|b| {
        b.starts_with("-----BEGIN ")
            && b[11..]
                .split("-----")
                .next()
                .is_some_and(|l| l.ends_with("PRIVATE KEY"))
    }) else {
        return Err(bad(
            "holds no -----BEGIN PRIVATE KEY----- block; write the key as PEM (PKCS#8, SEC1 or PKCS#1)",
        ));
    };
    let (label, der) = x509_cert::der::pem::decode_vec(block.as_bytes())
        .map_err(|e| bad(&format!("has a broken PEM block ({e})")))?;
    let der = Zeroizing::new(der);
    let unsupported = "is not an ECDSA P-256/P-384 or RSA 2048 key; Roles Anywhere keys in files must be one of these";
    let spki = |r: std::result::Result<p256::pkcs8::Document, p256::pkcs8::spki::Error>| {
        r.map(|d| d.as_bytes().to_vec())
            .map_err(|e| Error::internal(format!("cannot encode a public key: {e}")))
    };
    let ec256 = |k: p256::SecretKey| -> Result<_> {
        let public = spki(k.public_key().to_public_key_der())?;
        Ok((Key::P256(k.into()), KeyAlgorithm::EcdsaP256, public))
    };
    let ec384 = |k: p384::SecretKey| -> Result<_> {
        let public = spki(k.public_key().to_public_key_der())?;
        Ok((Key::P384(k.into()), KeyAlgorithm::EcdsaP384, public))
    };
    let rsa2048 = |k: rsa::RsaPrivateKey| -> Result<_> {
        if k.size() * 8 != 2048 {
            return Err(bad(&format!(
                "is a {}-bit RSA key; tapcred signs with RSA 2048 (or ECDSA P-256/P-384) keys",
                k.size() * 8
            )));
        }
        let public = spki(rsa::RsaPublicKey::from(&k).to_public_key_der())?;
        Ok((
            Key::Rsa(Box::new(rsa::pkcs1v15::SigningKey::new(k))),
            KeyAlgorithm::Rsa2048,
            public,
        ))
    };
    match label {
        "PRIVATE KEY" => {
            if let Ok(k) = p256::SecretKey::from_pkcs8_der(&der) {
                ec256(k)
            } else if let Ok(k) = p384::SecretKey::from_pkcs8_der(&der) {
                ec384(k)
            } else if let Ok(k) = rsa::RsaPrivateKey::from_pkcs8_der(&der) {
                rsa2048(k)
            } else {
                Err(bad(unsupported))
            }
        }
        "EC PRIVATE KEY" => {
            if let Ok(k) = p256::SecretKey::from_sec1_der(&der) {
                ec256(k)
            } else if let Ok(k) = p384::SecretKey::from_sec1_der(&der) {
                ec384(k)
            } else {
                Err(bad(unsupported))
            }
        }
        "RSA PRIVATE KEY" => match rsa::RsaPrivateKey::from_pkcs1_der(&der) {
            Ok(k) => rsa2048(k),
            Err(_) => Err(bad(unsupported)),
        },
        "ENCRYPTED PRIVATE KEY" => Err(bad(
            "is encrypted with a passphrase, which a headless run cannot type; keep the key on a YubiKey (tapcred_piv_slot) or store it unencrypted in a private file (openssl pkcs8 -in KEY -out KEY.new -nocrypt)",
        )),
        other => Err(bad(&format!(
            "holds a {other} block, not a private key; write the key as PEM (PKCS#8, SEC1 or PKCS#1)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::RecordingUi;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/rolesanywhere/static")
            .join(name)
    }

    /// The fixture key copied to a private file (git keeps no modes), optionally with an
    /// `EC PARAMETERS` block first, as `openssl ecparam -genkey` writes it.
    fn private_copy(dir: &Path, with_params: bool) -> PathBuf {
        let mut text = std::fs::read_to_string(fixture("leaf.key")).unwrap();
        if with_params {
            text = format!(
                "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n{text}"
            );
        }
        let p = dir.join("leaf.key");
        let mut f = crate::platform::fs::create_private(&p).unwrap();
        std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
        p
    }

    #[test]
    fn signs_what_the_certificate_verifies() {
        use p256::ecdsa::signature::Verifier;
        use p256::pkcs8::DecodePublicKey;
        for with_params in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let files = KeyFiles {
                certificate: fixture("leaf.pem"),
                private_key: private_copy(dir.path(), with_params),
                chain: Some(fixture("ca.pem")),
            };
            let s = KeyFileSigner::open(&files, "p").unwrap();
            assert_eq!(s.algorithm(), KeyAlgorithm::EcdsaP256);
            assert_eq!(s.chain_der().len(), 1);
            let facts = CertificateFacts::from_der(s.certificate_der()).unwrap();
            assert_eq!(facts.serial_decimal, "4242");
            let msg = b"AWS4-X509-ECDSA-SHA256\n20260101T000000Z\nscope\nhash";
            let sig = s.sign_sha256(msg, &RecordingUi::default()).unwrap();
            let key =
                p256::ecdsa::VerifyingKey::from_public_key_der(&facts.public_key_der).unwrap();
            let sig = p256::ecdsa::Signature::from_der(&sig).unwrap();
            key.verify(msg, &sig)
                .expect("a valid ECDSA P-256 SHA-256 signature");
            assert!(key.verify(b"something else", &sig).is_err());
            // Nothing of the key in Debug.
            assert!(!format!("{s:?}").contains("BEGIN"));
        }
    }
}
