//! An in-memory FIDO2 authenticator at the CTAP2 command level, for tapcred's `hmac-secret`
//! vault unlocker (issue 10).
//!
//! What it models (CTAP 2.1, authenticatorMakeCredential / GetAssertion / ClientPIN):
//! - **Per-credential random state.** Each credential gets a random 32-byte credential id and
//!   two random `CredRandom` values, one used with user verification (PIN) and one without,
//!   as CTAP 2.1 requires. `hmac-secret` output = HMAC-SHA-256(CredRandom, salt): the same
//!   credential + salt + UV mode gives the same output, anything else another one.
//! - **Credentials belong to one authenticator.** An id made by another authenticator (or
//!   before a reset) is `CTAP2_ERR_NO_CREDENTIALS`, as for real non-resident credentials.
//! - **PIN.** Set or not; 8 retries counting down on every wrong PIN, reset by a right one;
//!   three wrong PINs in a row block PIN auth until the next power cycle
//!   (`CTAP2_ERR_PIN_AUTH_BLOCKED`); no retries left is `CTAP2_ERR_PIN_BLOCKED`.
//! - **UV options.** `alwaysUv` (every assertion needs the PIN) and `makeCredUvNotRqd`
//!   (a non-discoverable credential can be made without the PIN when one is set).
//! - **User presence.** Every MakeCredential and GetAssertion consumes one touch; without a
//!   pending touch it fails with `CTAP2_ERR_USER_ACTION_TIMEOUT`. Tests press the button
//!   with [`VirtualAuthenticator::touch`] (a shared handle works from a UI callback).
//!
//! Not modelled here: the CTAPHID framing, the ECDH/AES key agreement that protects the salt
//! and the output in transit, signatures and attestation — [`crate::virtual_ctaphid`] wraps
//! this model with those, so real clients can talk to it. Not modelled at all: discoverable
//! credentials. Status codes are CTAP2's numbers so the client maps them like a real device's.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// CTAP2 status codes used here.
pub mod status {
    pub const INVALID_PARAMETER: u8 = 0x02;
    pub const UNSUPPORTED_EXTENSION: u8 = 0x16;
    pub const NO_CREDENTIALS: u8 = 0x2E;
    pub const USER_ACTION_TIMEOUT: u8 = 0x2F;
    pub const PIN_INVALID: u8 = 0x31;
    pub const PIN_BLOCKED: u8 = 0x32;
    pub const PIN_AUTH_BLOCKED: u8 = 0x34;
    pub const PIN_NOT_SET: u8 = 0x35;
    pub const PIN_REQUIRED: u8 = 0x36;
}

const MAX_PIN_RETRIES: u32 = 8;
const WRONG_PINS_PER_POWER_CYCLE: u32 = 3;

struct Credential {
    rp_id_hash: [u8; 32],
    cred_random_uv: [u8; 32],
    cred_random_no_uv: [u8; 32],
    /// Private-key material the credential's signing key is derived from.
    key_seed: [u8; 32],
}

/// The two `CredRandom` values of one credential (for tests that compute the expected
/// `hmac-secret` output on their own).
#[derive(Clone, Copy)]
pub struct CredRandoms {
    pub with_uv: [u8; 32],
    pub without_uv: [u8; 32],
}

impl std::fmt::Debug for CredRandoms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CredRandoms(<redacted>)")
    }
}

/// What a verified GetAssertion gives back.
pub struct AssertionOutcome {
    /// Whether a touch was consumed (`up = true`).
    pub user_present: bool,
    /// HMAC-SHA-256(CredRandom, salt) for each salt given, concatenated.
    pub hmac_secret: Option<Vec<u8>>,
}

struct State {
    pin: Option<String>,
    retries: u32,
    wrong_in_a_row: u32,
    credentials: HashMap<Vec<u8>, Credential>,
}

/// One in-memory authenticator. Cloning gives another handle to the same device.
#[derive(Clone)]
pub struct VirtualAuthenticator {
    state: Arc<Mutex<State>>,
    touches: Arc<AtomicU32>,
    pub aaguid: [u8; 16],
    pub product: String,
    pub hmac_secret: bool,
    pub always_uv: bool,
    pub make_cred_uv_not_rqd: bool,
}

/// What GetInfo reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualInfo {
    pub aaguid: [u8; 16],
    pub product: String,
    pub extensions: Vec<String>,
    /// `clientPin` option: `Some(true)` = a PIN is set.
    pub client_pin: Option<bool>,
    pub always_uv: bool,
    pub make_cred_uv_not_rqd: bool,
}

fn random32() -> [u8; 32] {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).expect("system random");
    b
}

impl VirtualAuthenticator {
    /// A YubiKey-5-like authenticator: hmac-secret, no PIN, makeCredUvNotRqd, not alwaysUv.
    pub fn new() -> Self {
        let mut aaguid = [0u8; 16];
        getrandom::fill(&mut aaguid).expect("system random");
        VirtualAuthenticator {
            state: Arc::new(Mutex::new(State {
                pin: None,
                retries: MAX_PIN_RETRIES,
                wrong_in_a_row: 0,
                credentials: HashMap::new(),
            })),
            touches: Arc::new(AtomicU32::new(0)),
            aaguid,
            product: "Virtual FIDO2".to_owned(),
            hmac_secret: true,
            always_uv: false,
            make_cred_uv_not_rqd: true,
        }
    }

    /// Set a PIN (ClientPIN setPIN on a device without one; tests may also change it).
    pub fn with_pin(self, pin: &str) -> Self {
        self.set_pin(pin);
        self
    }

    pub fn set_pin(&self, pin: &str) {
        let mut s = self.state.lock().unwrap();
        s.pin = Some(pin.to_owned());
        s.retries = MAX_PIN_RETRIES;
        s.wrong_in_a_row = 0;
    }

    /// Start with only `retries` PIN tries left (a key close to a blocked PIN).
    pub fn with_pin_retries(self, retries: u32) -> Self {
        self.state.lock().unwrap().retries = retries.min(MAX_PIN_RETRIES);
        self
    }

    /// A pending touch: the next operation needing user presence consumes it.
    pub fn touch(&self) {
        self.touches.fetch_add(1, Ordering::SeqCst);
    }

    /// A closure pressing the button, for a UI's touch callback.
    pub fn toucher(&self) -> impl Fn() + Send + Sync + 'static {
        let t = self.touches.clone();
        move || {
            t.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Unplug and plug in again: PIN auth blocked by three wrong PINs works again.
    pub fn power_cycle(&self) {
        self.state.lock().unwrap().wrong_in_a_row = 0;
    }

    /// authenticatorReset: every credential gone, no PIN.
    pub fn reset(&self) {
        let mut s = self.state.lock().unwrap();
        s.credentials.clear();
        s.pin = None;
        s.retries = MAX_PIN_RETRIES;
        s.wrong_in_a_row = 0;
    }

    pub fn info(&self) -> VirtualInfo {
        let s = self.state.lock().unwrap();
        VirtualInfo {
            aaguid: self.aaguid,
            product: self.product.clone(),
            extensions: if self.hmac_secret {
                vec!["hmac-secret".to_owned()]
            } else {
                Vec::new()
            },
            client_pin: Some(s.pin.is_some()),
            always_uv: self.always_uv,
            make_cred_uv_not_rqd: self.make_cred_uv_not_rqd,
        }
    }

    /// ClientPIN getPINRetries.
    pub fn pin_retries(&self) -> u32 {
        self.state.lock().unwrap().retries
    }

    /// How many credentials this authenticator has made (and still knows).
    pub fn credential_count(&self) -> usize {
        self.state.lock().unwrap().credentials.len()
    }

    /// ClientPIN getPinToken: `Ok(true)` = UV done, `Ok(false)` = no PIN given.
    fn verify_pin(&self, s: &mut State, pin: Option<&str>) -> Result<bool, u8> {
        let Some(pin) = pin else { return Ok(false) };
        Self::check_pin_with(s, |right| pin == right).map(|()| true)
    }

    /// The PIN check with its retry counters; `matches` compares the right PIN with what
    /// the client sent.
    fn check_pin_with(s: &mut State, matches: impl FnOnce(&str) -> bool) -> Result<(), u8> {
        let Some(right) = s.pin.clone() else {
            return Err(status::PIN_NOT_SET);
        };
        if s.retries == 0 {
            return Err(status::PIN_BLOCKED);
        }
        if s.wrong_in_a_row >= WRONG_PINS_PER_POWER_CYCLE {
            return Err(status::PIN_AUTH_BLOCKED);
        }
        if matches(&right) {
            s.retries = MAX_PIN_RETRIES;
            s.wrong_in_a_row = 0;
            return Ok(());
        }
        s.retries -= 1;
        s.wrong_in_a_row += 1;
        Err(if s.retries == 0 {
            status::PIN_BLOCKED
        } else if s.wrong_in_a_row >= WRONG_PINS_PER_POWER_CYCLE {
            status::PIN_AUTH_BLOCKED
        } else {
            status::PIN_INVALID
        })
    }

    /// ClientPIN getPinToken on its own (no touch): what a client runs to check a PIN
    /// before asking for a touch. Counts wrong PINs like any PIN use.
    pub fn check_pin(&self, pin: &str) -> Result<(), u8> {
        let mut s = self.state.lock().unwrap();
        self.verify_pin(&mut s, Some(pin)).map(drop)
    }

    /// ClientPIN's check of `pinHashEnc` once decrypted: LEFT(SHA-256(PIN), 16), with the
    /// same retry counters as [`Self::make_credential`]'s PIN.
    pub fn verify_pin_hash(&self, pin_hash: &[u8]) -> Result<(), u8> {
        let mut s = self.state.lock().unwrap();
        Self::check_pin_with(&mut s, |right| {
            let digest = Sha256::digest(right.as_bytes());
            subtle::ConstantTimeEq::ct_eq(&digest[..16], pin_hash).into()
        })
    }

    /// Whether a PIN is set (GetInfo's `clientPin` option).
    pub fn has_pin(&self) -> bool {
        self.state.lock().unwrap().pin.is_some()
    }

    /// Whether a touch is waiting to be consumed.
    pub fn touch_pending(&self) -> bool {
        self.touches.load(Ordering::SeqCst) > 0
    }

    /// The ids of every credential this authenticator holds.
    pub fn credential_ids(&self) -> Vec<Vec<u8>> {
        let s = self.state.lock().unwrap();
        s.credentials.keys().cloned().collect()
    }

    /// A credential's two `CredRandom` values; None for an id this authenticator did not make.
    pub fn cred_randoms(&self, credential_id: &[u8]) -> Option<CredRandoms> {
        let s = self.state.lock().unwrap();
        s.credentials.get(credential_id).map(|c| CredRandoms {
            with_uv: c.cred_random_uv,
            without_uv: c.cred_random_no_uv,
        })
    }

    /// The private-key material of a credential's signing key.
    pub fn credential_key_seed(&self, credential_id: &[u8]) -> Option<[u8; 32]> {
        let s = self.state.lock().unwrap();
        s.credentials.get(credential_id).map(|c| c.key_seed)
    }

    /// Whether this authenticator made `credential_id` for `rp_id` (and still knows it).
    pub fn holds(&self, rp_id: &str, credential_id: &[u8]) -> bool {
        let rp_hash: [u8; 32] = Sha256::digest(rp_id.as_bytes()).into();
        let s = self.state.lock().unwrap();
        matches!(s.credentials.get(credential_id), Some(c) if c.rp_id_hash == rp_hash)
    }

    /// Consume a pending touch; `USER_ACTION_TIMEOUT` when there is none.
    pub fn user_presence(&self) -> Result<(), u8> {
        self.touches
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .map(|_| ())
            .map_err(|_| status::USER_ACTION_TIMEOUT)
    }

    /// authenticatorMakeCredential, non-discoverable, with `{"hmac-secret": true}`.
    /// Returns the credential id.
    pub fn make_credential(&self, rp_id: &str, pin: Option<&str>) -> Result<Vec<u8>, u8> {
        let uv = {
            let mut s = self.state.lock().unwrap();
            if rp_id.is_empty() {
                return Err(status::INVALID_PARAMETER);
            }
            if !self.hmac_secret {
                return Err(status::UNSUPPORTED_EXTENSION);
            }
            self.verify_pin(&mut s, pin)?
        };
        self.make_credential_verified(rp_id, uv)
    }

    /// authenticatorMakeCredential once the caller has verified the user (`uv`, e.g. with a
    /// PIN token) or not. Fails with `USER_ACTION_TIMEOUT`, changing nothing, when no touch
    /// is pending; every other check comes first.
    pub fn make_credential_verified(&self, rp_id: &str, uv: bool) -> Result<Vec<u8>, u8> {
        if rp_id.is_empty() {
            return Err(status::INVALID_PARAMETER);
        }
        if !self.hmac_secret {
            return Err(status::UNSUPPORTED_EXTENSION);
        }
        let mut s = self.state.lock().unwrap();
        if !uv && (self.always_uv || (s.pin.is_some() && !self.make_cred_uv_not_rqd)) {
            return Err(status::PIN_REQUIRED);
        }
        self.user_presence()?;
        let id = random32().to_vec();
        s.credentials.insert(
            id.clone(),
            Credential {
                rp_id_hash: Sha256::digest(rp_id.as_bytes()).into(),
                cred_random_uv: random32(),
                cred_random_no_uv: random32(),
                key_seed: random32(),
            },
        );
        Ok(id)
    }

    /// authenticatorGetAssertion with `allowList = [credential_id]`, `up = false`, no UV, no
    /// extension: the silent "is this credential here" check. No touch consumed.
    pub fn get_assertion_silent(&self, rp_id: &str, credential_id: &[u8]) -> Result<(), u8> {
        self.get_assertion_verified(rp_id, credential_id, false, false, None)
            .map(|_| ())
    }

    /// authenticatorGetAssertion with `allowList = [credential_id]`, `up = true` and one
    /// `hmac-secret` salt; UV when `pin` is given. Returns output1 (decrypted).
    pub fn get_assertion_hmac_secret(
        &self,
        rp_id: &str,
        credential_id: &[u8],
        salt: &[u8; 32],
        pin: Option<&str>,
    ) -> Result<[u8; 32], u8> {
        let uv = {
            let mut s = self.state.lock().unwrap();
            self.verify_pin(&mut s, pin)?
        };
        let out = self.get_assertion_verified(rp_id, credential_id, uv, true, Some(salt))?;
        let out = out.hmac_secret.expect("a salt was given");
        Ok(out[..32].try_into().expect("32 bytes per salt"))
    }

    /// authenticatorGetAssertion for one credential once the caller has verified the user
    /// (`uv`) or not; `up`: consume a touch; `salts`: 32 or 64 bytes of `hmac-secret` salt.
    /// Fails with `USER_ACTION_TIMEOUT`, changing nothing, when a touch is needed and none is
    /// pending; every other check comes first.
    pub fn get_assertion_verified(
        &self,
        rp_id: &str,
        credential_id: &[u8],
        uv: bool,
        up: bool,
        salts: Option<&[u8]>,
    ) -> Result<AssertionOutcome, u8> {
        let s = self.state.lock().unwrap();
        let rp_hash: [u8; 32] = Sha256::digest(rp_id.as_bytes()).into();
        let (random_uv, random_no_uv) = match s.credentials.get(credential_id) {
            Some(c) if c.rp_id_hash == rp_hash => (c.cred_random_uv, c.cred_random_no_uv),
            _ => return Err(status::NO_CREDENTIALS),
        };
        if !uv && self.always_uv {
            return Err(status::PIN_REQUIRED);
        }
        if let Some(salts) = salts
            && salts.len() != 32
            && salts.len() != 64
        {
            return Err(status::INVALID_PARAMETER);
        }
        if up {
            self.user_presence()?;
        }
        let key = if uv { random_uv } else { random_no_uv };
        let hmac_secret = salts.map(|salts| {
            salts
                .chunks(32)
                .flat_map(|salt| {
                    let mut m =
                        <Hmac<Sha256> as KeyInit>::new_from_slice(&key).expect("any key length");
                    m.update(salt);
                    <[u8; 32]>::from(m.finalize().into_bytes())
                })
                .collect()
        });
        Ok(AssertionOutcome {
            user_present: up,
            hmac_secret,
        })
    }
}

impl Default for VirtualAuthenticator {
    fn default() -> Self {
        Self::new()
    }
}
