//! Signing for IAM Roles Anywhere: a slot's key and certificate behind [`CertificateSigner`].

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::SecretString;
use sha2::{Digest, Sha256};
use yubikey::piv::{self as ykpiv, ManagementAlgorithmId};
use zeroize::Zeroizing;

use super::PIN_ENV;
use super::certificate::algorithm_of_spki;
use super::session::{
    Deadlines, SharedKey, card_error, lock_card, open_key, read_pin, run, verify_pin,
};
use super::slot::{PivKeyRef, PivSlot, algorithm_id, algorithm_of, pin_policy_of};
use crate::env::EnvLookup;
use crate::error::{Error, Result};
use crate::token::keylock;
use crate::token::x509::{CertificateSigner, KeyAlgorithm};
use crate::ui::Ui;

/// EMSA-PKCS1-v1_5 (RFC 8017 9.2) for a SHA-256 digest and a 2048-bit key: the block the
/// card raises to its private exponent.
pub(super) fn pkcs1_v15_sha256_block(digest: &[u8; 32]) -> Vec<u8> {
    pub(super) const DIGEST_INFO: [u8; 19] = [
        0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
        0x05, 0x00, 0x04, 0x20,
    ];
    let mut block = vec![0xFFu8; 256];
    block[0] = 0x00;
    block[1] = 0x01;
    let t = 256 - DIGEST_INFO.len() - 32;
    block[t - 1] = 0x00;
    block[t..t + DIGEST_INFO.len()].copy_from_slice(&DIGEST_INFO);
    block[t + DIGEST_INFO.len()..].copy_from_slice(digest);
    block
}

/// A PIV slot's key and certificate, signing for Roles Anywhere.
pub struct PivSigner {
    key: SharedKey,
    label: String,
    slot: PivSlot,
    certificate: Vec<u8>,
    chain: Vec<Vec<u8>>,
    algorithm: KeyAlgorithm,
    pin_policy: yubikey::PinPolicy,
    touch: bool,
    env_pin: Option<SecretString>,
    /// The PIN that passed VERIFY, for slots whose policy wants it before every signature.
    pin: Mutex<Option<SecretString>>,
    verified: Mutex<bool>,
    deadlines: Deadlines,
    lock_dir: Option<PathBuf>,
    reader: String,
}

impl fmt::Debug for PivSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PivSigner")
            .field("key", &self.label)
            .field("slot", &self.slot)
            .field("algorithm", &self.algorithm)
            .field("touch", &self.touch)
            .field("pin", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// Open the key `r` names and read its slot's certificate; `chain` (intermediate CAs, DER)
/// is sent beside it. Nothing is asked here: the PIN is asked at the first signature
/// (`TAPCRED_PIV_PIN`, else through the `ui` given to `sign_sha256`), so a cached session
/// never touches the PIN.
pub fn open_signer(
    r: &PivKeyRef,
    chain: Vec<Vec<u8>>,
    env: &dyn EnvLookup,
    _ui: &dyn Ui,
) -> Result<Box<dyn CertificateSigner>> {
    let mut signer = open_signer_with(r, env, Deadlines::default())?;
    signer.chain = chain;
    Ok(Box::new(signer))
}

/// [`open_signer`] with chosen deadlines (tests use short ones).
pub fn open_signer_with(
    r: &PivKeyRef,
    env: &dyn EnvLookup,
    deadlines: Deadlines,
) -> Result<PivSigner> {
    let (key, reader, label) = open_key(r.serial, "tapcred_piv_serial", &deadlines)?;
    let lock_dir = keylock::default_dir(env);
    let _held = lock_card(&lock_dir, &reader, &label)?;
    let key: SharedKey = Arc::new(Mutex::new(key));
    let slot = r.slot;
    let who = format!("{label} PIV slot {slot}");
    let (cert, meta) = {
        let w = who.clone();
        run(&key, deadlines.quick, &who, move |k| {
            let cert = yubikey::Certificate::read(k, slot.id()).map_err(|e| match e {
                yubikey::Error::InvalidObject | yubikey::Error::NotFound | yubikey::Error::SizeError => {
                    Error::token(format!(
                        "{w} holds no certificate; create the key with `tapcred piv init --slot {slot}` and import the CA's certificate with `tapcred piv import --slot {slot}`"
                    ))
                }
                other => card_error(&w, "reading the certificate", other),
            })?;
            let meta = match ykpiv::metadata(k, slot.id()) {
                Ok(m) => Some(m),
                Err(yubikey::Error::NotSupported) => None,
                Err(e) => {
                    tracing::debug!(error = %e, "no slot metadata");
                    None
                }
            };
            Ok((cert, meta))
        })?
    };
    let der = x509_cert::der::Encode::to_der(&cert.cert)
        .map_err(|e| Error::token(format!("{who}: the certificate does not encode: {e}")))?;
    let algorithm = algorithm_of_spki(&cert.cert.tbs_certificate.subject_public_key_info)
        .ok_or_else(|| {
            Error::token(format!(
                "{who}: the certificate's key is not ECDSA P-256, P-384 or RSA 2048; make a new key with `tapcred piv init`"
            ))
        })?;
    if let Some(m) = &meta
        && let ManagementAlgorithmId::Asymmetric(a) = m.algorithm
        && algorithm_of(a) != Some(algorithm)
    {
        return Err(Error::token(format!(
            "{who}: the certificate is for a {algorithm:?} key but the slot holds a {a:?} key; import the certificate made for this key (`tapcred piv import`)"
        )));
    }
    let touch = matches!(
        meta.as_ref().and_then(|m| m.policy).map(|p| p.1),
        Some(yubikey::TouchPolicy::Always | yubikey::TouchPolicy::Cached)
    );
    Ok(PivSigner {
        key,
        label,
        slot,
        certificate: der,
        chain: Vec::new(),
        algorithm,
        pin_policy: pin_policy_of(slot, meta.as_ref()),
        touch,
        env_pin: env
            .var(PIN_ENV)
            .filter(|p| !p.is_empty())
            .map(SecretString::from),
        pin: Mutex::new(None),
        verified: Mutex::new(false),
        deadlines,
        lock_dir,
        reader,
    })
}

impl PivSigner {
    pub(super) fn who(&self) -> String {
        format!("{} PIV slot {}", self.label, self.slot)
    }
    /// Whether the slot's touch policy asks for the button.
    pub fn requires_touch(&self) -> bool {
        self.touch
    }
}

impl CertificateSigner for PivSigner {
    fn certificate_der(&self) -> &[u8] {
        &self.certificate
    }
    fn chain_der(&self) -> &[Vec<u8>] {
        &self.chain
    }
    fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }
    fn describe(&self) -> String {
        self.who()
    }

    fn sign_sha256(&self, message: &[u8], ui: &dyn Ui) -> Result<Vec<u8>> {
        let who = self.who();
        let _held = lock_card(&self.lock_dir, &self.reader, &self.label)?;
        if self.pin_policy != yubikey::PinPolicy::Never {
            let verified = *self.verified.lock().unwrap_or_else(|p| p.into_inner());
            let always = self.pin_policy == yubikey::PinPolicy::Always;
            if !verified || always {
                let mut kept = self.pin.lock().unwrap_or_else(|p| p.into_inner());
                let pin = match kept.as_ref() {
                    Some(p) => p.clone(),
                    None => read_pin(self.env_pin.as_ref(), ui, &self.label, self.slot)?,
                };
                verify_pin(&self.key, &self.deadlines, &who, &pin)?;
                *self.verified.lock().unwrap_or_else(|p| p.into_inner()) = true;
                *kept = Some(pin);
            }
        }
        let digest: [u8; 32] = Sha256::digest(message).into();
        let input = Zeroizing::new(match self.algorithm {
            KeyAlgorithm::Rsa2048 => pkcs1_v15_sha256_block(&digest),
            KeyAlgorithm::EcdsaP256 | KeyAlgorithm::EcdsaP384 => digest.to_vec(),
        });
        let (alg, slot, touch) = (algorithm_id(self.algorithm), self.slot.id(), self.touch);
        let w = who.clone();
        let limit = if touch {
            self.deadlines.touch
        } else {
            self.deadlines.quick
        };
        if touch {
            ui.touch_wait(&format!(
                "Touch your YubiKey ({}) to sign with PIV slot {}",
                self.label, self.slot
            ));
        }
        let reader = self.reader.clone();
        let r = run(&self.key, limit, &who, move |k| {
            ykpiv::sign_data(k, &input, alg, slot)
                .map(|b| b.to_vec())
                .map_err(|e| match e {
                    yubikey::Error::AuthenticationError if touch => Error::token(format!(
                        "{w} was not touched in time; run again and touch the key when it blinks"
                    )),
                    yubikey::Error::AuthenticationError => Error::token(format!(
                        "{w} refused to sign: its PIN is no longer verified; run again"
                    )),
                    // No status word at all (vpcd and some readers report a pulled card so).
                    yubikey::Error::GenericError
                        if crate::token::pcsc::card_present(&reader, Duration::from_millis(1500))
                            == Some(false) =>
                    {
                        Error::token(format!(
                            "{w} was removed or stopped answering while signing; insert it and run again"
                        ))
                    }
                    other => card_error(&w, "signing", other),
                })
        });
        if touch {
            ui.touch_done(r.is_ok());
        }
        r
    }
}
