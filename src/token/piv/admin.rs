//! `tapcred piv init/import/status`: the management key, key generation and the CSR,
//! certificate import, what a slot holds.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use secrecy::SecretString;
use yubikey::piv::{self as ykpiv, ManagementAlgorithmId};
use zeroize::Zeroizing;

use super::MANAGEMENT_KEY_ENV;
use super::certificate::spki_der;
use super::session::{Deadlines, SharedKey, card_error, lock_card, open_key, run, verify_pin};
use super::slot::{PivSlot, SlotPolicy, algorithm_id, algorithm_of};
use crate::env::EnvLookup;
use crate::error::{Error, Result};
use crate::token::keylock;
use crate::token::x509::KeyAlgorithm;
use crate::ui::Ui;

/// The management key that authorizes key generation and certificate import: 3DES, 24
/// bytes (`TAPCRED_PIV_MANAGEMENT_KEY` as 48 hex digits, else the factory default).
pub struct ManagementKey(Zeroizing<[u8; 24]>);

impl fmt::Debug for ManagementKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ManagementKey(<redacted>)")
    }
}

impl ManagementKey {
    /// `TAPCRED_PIV_MANAGEMENT_KEY`, else the factory default key.
    pub fn from_env(env: &dyn EnvLookup) -> Result<ManagementKey> {
        let Some(text) = env.var(MANAGEMENT_KEY_ENV).map(Zeroizing::new) else {
            let mut k = Zeroizing::new([0u8; 24]);
            k.copy_from_slice(&yubikey::MgmKey::default().as_ref()[..]);
            return Ok(ManagementKey(k));
        };
        let bad = || {
            Error::usage(format!(
                "{MANAGEMENT_KEY_ENV} must be the PIV management key as 48 hex digits (a 3DES key); fix the variable or unset it to use the factory key"
            ))
        };
        let bytes = Zeroizing::new(
            data_encoding::HEXLOWER_PERMISSIVE
                .decode(text.trim().as_bytes())
                .map_err(|_| bad())?,
        );
        let mut k = Zeroizing::new([0u8; 24]);
        if bytes.len() != 24 {
            return Err(bad());
        }
        k.copy_from_slice(&bytes);
        Ok(ManagementKey(k))
    }
}

/// What a slot holds.
#[derive(Debug, Clone)]
pub struct SlotInfo {
    pub slot: PivSlot,
    /// The key's type (from the card's metadata), when a key is there.
    pub algorithm: Option<KeyAlgorithm>,
    pub policy: Option<SlotPolicy>,
    /// The key's public half (SubjectPublicKeyInfo, DER), when the card says it.
    pub public_key: Option<Vec<u8>>,
    /// The certificate stored for the slot, DER.
    pub certificate: Option<Vec<u8>>,
}

/// A key opened for `tapcred piv init/import/status`.
pub struct PivAdmin {
    key: SharedKey,
    label: String,
    reader: String,
    deadlines: Deadlines,
    _lock: keylock::KeyLock,
}

impl fmt::Debug for PivAdmin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PivAdmin")
            .field("key", &self.label)
            .finish_non_exhaustive()
    }
}

/// Open the YubiKey `serial` (or the only one) for setting up PIV keys; it is held (the
/// cross-process key lock) until the returned value is dropped.
pub fn open_admin(
    serial: Option<u32>,
    env: &dyn EnvLookup,
    deadlines: Deadlines,
) -> Result<PivAdmin> {
    let (key, reader, label) = open_key(serial, "--serial", &deadlines)?;
    let lock = lock_card(&keylock::default_dir(env), &reader, &label)?;
    Ok(PivAdmin {
        key: Arc::new(Mutex::new(key)),
        label,
        reader,
        deadlines,
        _lock: lock,
    })
}

impl PivAdmin {
    pub fn label(&self) -> &str {
        &self.label
    }
    pub fn reader(&self) -> &str {
        &self.reader
    }
    pub fn serial(&self) -> Option<u32> {
        self.key
            .try_lock()
            .ok()
            .map(|k| k.serial().0)
            .filter(|s| *s != 0)
    }

    /// What `slot` holds: key type, policies and public key (firmware 5.3+ metadata), and
    /// the certificate.
    pub fn slot_info(&self, slot: PivSlot) -> Result<SlotInfo> {
        let who = format!("{} PIV slot {slot}", self.label);
        let w = who.clone();
        run(&self.key, self.deadlines.quick, &who, move |k| {
            let certificate = match yubikey::Certificate::read(k, slot.id()) {
                Ok(c) => Some(
                    x509_cert::der::Encode::to_der(&c.cert)
                        .map_err(|e| Error::token(format!("{w}: bad certificate: {e}")))?,
                ),
                Err(
                    yubikey::Error::InvalidObject
                    | yubikey::Error::NotFound
                    | yubikey::Error::SizeError,
                ) => None,
                Err(e) => return Err(card_error(&w, "reading the certificate", e)),
            };
            let (algorithm, policy, public_key) = match ykpiv::metadata(k, slot.id()) {
                Ok(m) => {
                    let algorithm = match m.algorithm {
                        ManagementAlgorithmId::Asymmetric(a) => algorithm_of(a),
                        _ => None,
                    };
                    let policy = m.policy.map(|(pin, touch)| SlotPolicy { pin, touch });
                    let public = m.public.as_ref().map(spki_der).transpose()?;
                    (algorithm, policy, public)
                }
                // No key in the slot (6A88), or firmware before 5.3 (no metadata).
                Err(_) => (None, None, None),
            };
            Ok(SlotInfo {
                slot,
                algorithm,
                policy,
                public_key,
                certificate,
            })
        })
    }

    /// Mutual authentication with the management key (3DES).
    pub fn authenticate(&self, mgmt: &ManagementKey) -> Result<()> {
        let key = yubikey::MgmKey::new(*mgmt.0).map_err(|_| {
            Error::usage(format!(
                "{MANAGEMENT_KEY_ENV} is a weak 3DES key; use another"
            ))
        })?;
        let w = self.label.clone();
        run(&self.key, self.deadlines.quick, &self.label, move |k| {
            // Firmware 5.7 and later ship an AES-192 management key; the `yubikey` crate
            // authenticates with 3DES only.
            let v = k.version();
            let aes = (v.major, v.minor) >= (5, 7);
            k.authenticate(key).map_err(|e| match e {
                yubikey::Error::AuthenticationError if aes => Error::token(format!(
                    "{w} refused the PIV management key: either it is not the key's management key (set {MANAGEMENT_KEY_ENV} to it, 48 hex digits), or the key is AES (firmware {v} ships an AES-192 one), which tapcred cannot use yet: switch it to 3DES with `ykman piv access change-management-key -a TDES`, then run again"
                )),
                yubikey::Error::AuthenticationError => Error::token(format!(
                    "{w} refused the PIV management key: it is not the factory default; set {MANAGEMENT_KEY_ENV} to the key's management key (48 hex digits) and run again"
                )),
                other => card_error(&w, "authenticating with the management key", other),
            })
        })
    }

    /// VERIFY the PIN once (never retried).
    pub fn verify_pin(&self, pin: &SecretString) -> Result<()> {
        verify_pin(&self.key, &self.deadlines, &self.label, pin)
    }

    /// Generate a key in `slot` on the card; returns its public key (SPKI, DER).
    pub fn generate(
        &self,
        slot: PivSlot,
        algorithm: KeyAlgorithm,
        pin: yubikey::PinPolicy,
        touch: yubikey::TouchPolicy,
    ) -> Result<Vec<u8>> {
        let who = format!("{} PIV slot {slot}", self.label);
        let w = who.clone();
        run(&self.key, self.deadlines.generate, &who, move |k| {
            let spki = ykpiv::generate(k, slot.id(), algorithm_id(algorithm), pin, touch)
                .map_err(|e| card_error(&w, "generating the key", e))?;
            spki_der(&spki)
        })
    }

    /// A certificate request (PEM) for the key in `slot`, signed by the card (the PIN must be
    /// verified; a touch when the slot's policy asks).
    pub fn certificate_request(
        &self,
        slot: PivSlot,
        algorithm: KeyAlgorithm,
        public_key: &[u8],
        subject: &str,
        ui: &dyn Ui,
        touch: bool,
    ) -> Result<String> {
        use x509_cert::der::{Decode, EncodePem};
        use yubikey::certificate::yubikey_signer::{Rsa2048, Signer, YubiRsa};
        let who = format!("{} PIV slot {slot}", self.label);
        let name = x509_cert::name::Name::from_str(subject).map_err(|e| {
            Error::usage(format!(
                "--subject \"{subject}\" is not a distinguished name like \"CN=alice,O=Example\" ({e})"
            ))
        })?;
        let spki = x509_cert::spki::SubjectPublicKeyInfoOwned::from_der(public_key)
            .map_err(|e| Error::internal(format!("public key does not parse: {e}")))?;
        let w = who.clone();
        if touch {
            ui.touch_wait(&format!(
                "Touch your YubiKey ({}) to sign the certificate request",
                self.label
            ));
        }
        let limit = if touch {
            self.deadlines.touch
        } else {
            self.deadlines.quick
        };
        let r = run(&self.key, limit, &who, move |k| {
            fn build<S, Sig>(
                signer: &S,
                name: x509_cert::name::Name,
            ) -> std::result::Result<x509_cert::request::CertReq, String>
            where
                S: p256::ecdsa::signature::Keypair
                    + x509_cert::spki::DynSignatureAlgorithmIdentifier
                    + p256::ecdsa::signature::Signer<Sig>,
                S::VerifyingKey: x509_cert::spki::EncodePublicKey,
                Sig: x509_cert::spki::SignatureBitStringEncoding,
            {
                use x509_cert::builder::Builder;
                x509_cert::builder::RequestBuilder::new(name, signer)
                    .map_err(|e| e.to_string())?
                    .build::<Sig>()
                    .map_err(|e| e.to_string())
            }
            let spki_ref = x509_cert::der::referenced::OwnedToRef::owned_to_ref(&spki);
            let sig_err = |e: yubikey::Error| card_error(&w, "signing the certificate request", e);
            let req = match algorithm {
                KeyAlgorithm::EcdsaP256 => {
                    let s =
                        Signer::<p256::NistP256>::new(k, slot.id(), spki_ref).map_err(sig_err)?;
                    build::<_, p256::ecdsa::DerSignature>(&s, name)
                }
                KeyAlgorithm::EcdsaP384 => {
                    let s =
                        Signer::<p384::NistP384>::new(k, slot.id(), spki_ref).map_err(sig_err)?;
                    build::<_, p384::ecdsa::DerSignature>(&s, name)
                }
                KeyAlgorithm::Rsa2048 => {
                    let s =
                        Signer::<YubiRsa<Rsa2048>>::new(k, slot.id(), spki_ref).map_err(sig_err)?;
                    build::<_, rsa::pkcs1v15::Signature>(&s, name)
                }
            }
            .map_err(|e| {
                Error::token(format!("{w} could not sign the certificate request: {e}"))
            })?;
            req.to_pem(x509_cert::der::pem::LineEnding::LF)
                .map_err(|e| Error::internal(format!("certificate request does not encode: {e}")))
        });
        if touch {
            ui.touch_done(r.is_ok());
        }
        r
    }

    /// Store `certificate` (DER) for `slot` (the management key must be authenticated).
    pub fn import(&self, slot: PivSlot, certificate: &[u8]) -> Result<()> {
        use x509_cert::der::Decode;
        let cert = x509_cert::Certificate::from_der(certificate)
            .map_err(|e| Error::usage(format!("the certificate does not parse: {e}")))?;
        let who = format!("{} PIV slot {slot}", self.label);
        let w = who.clone();
        run(&self.key, self.deadlines.quick, &who, move |k| {
            yubikey::Certificate { cert }
                .write(k, slot.id(), yubikey::certificate::CertInfo::Uncompressed)
                .map_err(|e| match e {
                    yubikey::Error::AuthenticationError => Error::token(format!(
                        "{w} refused the certificate: the management key is not authenticated"
                    )),
                    other => card_error(&w, "storing the certificate", other),
                })
        })
    }
}
