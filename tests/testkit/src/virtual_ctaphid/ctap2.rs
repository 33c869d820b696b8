//! CTAP2 commands over CBOR (CTAP 2.1 §6) around the in-memory authenticator model
//! ([`VirtualAuthenticator`]): getInfo, clientPIN (protocols 1 and 2, PIN tokens with
//! permissions), makeCredential (ES256, packed self-attestation, `hmac-secret`) and
//! getAssertion (`up=false` probes, `hmac-secret` with the salt and output encrypted under
//! the key-agreement secret). The model owns credentials, CredRandom, the PIN and its
//! retries, and touches; this layer owns the encodings, the key agreement, the PIN token and
//! the signatures.

use ciborium::Value;
use p256::ecdsa::SigningKey;
use p256::ecdsa::signature::Signer;
use p256::{NonZeroScalar, PublicKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::pin_protocol::{self, KeyAgreement, PIN_AUTH_INVALID, Protocol};
use crate::virtual_fido2::{VirtualAuthenticator, status};

/// CTAP2 command bytes.
pub mod command {
    pub const MAKE_CREDENTIAL: u8 = 0x01;
    pub const GET_ASSERTION: u8 = 0x02;
    pub const GET_INFO: u8 = 0x04;
    pub const CLIENT_PIN: u8 = 0x06;
}

/// CTAP2 status codes this layer adds to the model's.
pub mod more_status {
    pub const OK: u8 = 0x00;
    pub const INVALID_COMMAND: u8 = 0x01;
    pub const INVALID_LENGTH: u8 = 0x03;
    pub const INVALID_CBOR: u8 = 0x12;
    pub const MISSING_PARAMETER: u8 = 0x14;
    pub const CREDENTIAL_EXCLUDED: u8 = 0x19;
    pub const UNSUPPORTED_ALGORITHM: u8 = 0x26;
    pub const KEEPALIVE_CANCEL: u8 = 0x2D;
    pub const UNSUPPORTED_OPTION: u8 = 0x2B;
    pub const INVALID_OPTION: u8 = 0x2C;
    pub const PIN_POLICY_VIOLATION: u8 = 0x37;
    pub const INVALID_SUBCOMMAND: u8 = 0x3E;
    pub const UNAUTHORIZED_PERMISSION: u8 = 0x40;
}
use more_status::*;

/// The largest CTAP2 message getInfo announces.
pub const MAX_MSG_SIZE: u32 = 1200;

const PERMISSION_MC: u8 = 0x01;
const PERMISSION_GA: u8 = 0x02;

const FLAG_UP: u8 = 0x01;
const FLAG_UV: u8 = 0x04;
const FLAG_AT: u8 = 0x40;
const FLAG_ED: u8 = 0x80;

const ES256: i128 = -7;
const ECDH_ES_HKDF_256: i128 = -25;

/// What one CTAP2 request comes to.
pub enum Reply {
    /// Status byte, then the CBOR response when the status is OK.
    Done(Vec<u8>),
    /// Everything checked; the request needs a touch. Ask again (same request) later.
    NeedsTouch,
}

struct PinToken {
    bytes: Zeroizing<[u8; 32]>,
    protocol: Protocol,
    permissions: u8,
    rp_id: Option<String>,
}

/// The CTAP2 side of one virtual key, for as long as it stays plugged in.
pub struct Ctap2 {
    pub model: VirtualAuthenticator,
    key_agreement: KeyAgreement,
    token: Option<PinToken>,
    sign_count: u32,
}

type Map = Vec<(Value, Value)>;

/// The `options` map of makeCredential / getAssertion; None: not given.
#[derive(Default)]
struct RequestOptions {
    rk: Option<bool>,
    up: Option<bool>,
    uv: Option<bool>,
}

fn int(n: i128) -> Value {
    Value::Integer(n.try_into().expect("small integer"))
}

fn get(map: &Map, key: i128) -> Option<&Value> {
    map.iter().find_map(|(k, v)| match k {
        Value::Integer(i) if i128::from(*i) == key => Some(v),
        _ => None,
    })
}

fn get_text<'a>(map: &'a Map, key: &str) -> Option<&'a Value> {
    map.iter().find_map(|(k, v)| match k {
        Value::Text(t) if t == key => Some(v),
        _ => None,
    })
}

fn as_map(v: &Value) -> Result<&Map, u8> {
    v.as_map().ok_or(INVALID_CBOR)
}

fn as_bytes(v: &Value) -> Result<&[u8], u8> {
    v.as_bytes().map(Vec::as_slice).ok_or(INVALID_CBOR)
}

fn as_text(v: &Value) -> Result<&str, u8> {
    v.as_text().ok_or(INVALID_CBOR)
}

fn as_int(v: &Value) -> Result<i128, u8> {
    v.as_integer().map(i128::from).ok_or(INVALID_CBOR)
}

fn as_bool(v: &Value) -> Result<bool, u8> {
    v.as_bool().ok_or(INVALID_CBOR)
}

fn required(map: &Map, key: i128) -> Result<&Value, u8> {
    get(map, key).ok_or(MISSING_PARAMETER)
}

/// A map with integer keys, in CTAP2 canonical order.
fn int_map(mut entries: Vec<(i128, Value)>) -> Value {
    entries.sort_by_key(|(k, _)| if *k >= 0 { (0, *k) } else { (1, -*k) });
    Value::Map(entries.into_iter().map(|(k, v)| (int(k), v)).collect())
}

/// A map with text keys, in CTAP2 canonical order (shorter first, then bytewise).
fn text_map(mut entries: Vec<(&str, Value)>) -> Value {
    entries.sort_by(|(a, _), (b, _)| (a.len(), a.as_bytes()).cmp(&(b.len(), b.as_bytes())));
    Value::Map(
        entries
            .into_iter()
            .map(|(k, v)| (Value::Text(k.to_owned()), v))
            .collect(),
    )
}

fn encode(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(v, &mut out).expect("CBOR to a Vec");
    out
}

fn cose_key(alg: i128, x: &[u8; 32], y: &[u8; 32]) -> Value {
    int_map(vec![
        (1, int(2)),
        (3, int(alg)),
        (-1, int(1)),
        (-2, Value::Bytes(x.to_vec())),
        (-3, Value::Bytes(y.to_vec())),
    ])
}

/// The platform's COSE key from a request: its x and y.
fn platform_key(v: &Value) -> Result<(Vec<u8>, Vec<u8>), u8> {
    let m = as_map(v)?;
    if as_int(required(m, 1)?)? != 2 || as_int(required(m, -1)?)? != 1 {
        return Err(status::INVALID_PARAMETER);
    }
    Ok((
        as_bytes(required(m, -2)?)?.to_vec(),
        as_bytes(required(m, -3)?)?.to_vec(),
    ))
}

/// A credential's signing key, from the private-key material the model keeps for it.
fn signing_scalar(seed: &[u8; 32]) -> NonZeroScalar {
    let mut candidate = Zeroizing::new(*seed);
    loop {
        if let Some(s) = pin_protocol::scalar_from_bytes(&candidate) {
            return s;
        }
        *candidate = Sha256::digest(candidate.as_slice()).into();
    }
}

fn sign(scalar: &NonZeroScalar, parts: &[&[u8]]) -> Vec<u8> {
    let key = SigningKey::from(*scalar);
    let message = parts.concat();
    let signature: p256::ecdsa::Signature = key.sign(&message);
    signature.to_der().as_bytes().to_vec()
}

impl Ctap2 {
    /// A freshly powered key: new key-agreement key, no PIN token.
    pub fn power_up(model: VirtualAuthenticator) -> Self {
        Ctap2 {
            model,
            key_agreement: KeyAgreement::generate(),
            token: None,
            sign_count: 0,
        }
    }

    /// Derive PIN protocol 2's two keys the wrong way round (a deliberate fault).
    pub fn set_protocol2_kdf_fault(&mut self, on: bool) {
        self.key_agreement.swap_protocol2_kdf = on;
    }

    /// One CTAP2 request (command byte, then CBOR).
    pub fn handle(&mut self, request: &[u8]) -> Reply {
        let Some((&cmd, body)) = request.split_first() else {
            return Reply::Done(vec![INVALID_LENGTH]);
        };
        let params = if body.is_empty() {
            Ok(Vec::new())
        } else {
            match ciborium::from_reader::<Value, _>(body) {
                Ok(Value::Map(m)) => Ok(m),
                _ => Err(INVALID_CBOR),
            }
        };
        let result = params.and_then(|p| match cmd {
            command::GET_INFO => Ok(self.get_info()),
            command::CLIENT_PIN => self.client_pin(&p),
            command::MAKE_CREDENTIAL => self.make_credential(&p),
            command::GET_ASSERTION => self.get_assertion(&p),
            _ => Err(INVALID_COMMAND),
        });
        match result {
            Ok(v) => {
                let mut out = vec![OK];
                out.extend(encode(&v));
                Reply::Done(out)
            }
            Err(status::USER_ACTION_TIMEOUT) => Reply::NeedsTouch,
            Err(code) => Reply::Done(vec![code]),
        }
    }

    fn get_info(&self) -> Value {
        let info = self.model.info();
        let mut options = vec![
            ("rk", Value::Bool(false)),
            ("up", Value::Bool(true)),
            ("plat", Value::Bool(false)),
            ("clientPin", Value::Bool(self.model.has_pin())),
            ("pinUvAuthToken", Value::Bool(true)),
            ("makeCredUvNotRqd", Value::Bool(info.make_cred_uv_not_rqd)),
        ];
        if info.always_uv {
            options.push(("alwaysUv", Value::Bool(true)));
        }
        int_map(vec![
            (
                1,
                Value::Array(vec![
                    Value::Text("FIDO_2_0".into()),
                    Value::Text("FIDO_2_1".into()),
                ]),
            ),
            (
                2,
                Value::Array(info.extensions.into_iter().map(Value::Text).collect()),
            ),
            (3, Value::Bytes(info.aaguid.to_vec())),
            (4, text_map(options)),
            (5, int(MAX_MSG_SIZE.into())),
            (
                6,
                Value::Array(
                    pin_protocol::SUPPORTED
                        .iter()
                        .map(|p| int((*p).into()))
                        .collect(),
                ),
            ),
            (
                10,
                Value::Array(vec![text_map(vec![
                    ("alg", int(ES256)),
                    ("type", Value::Text("public-key".into())),
                ])]),
            ),
        ])
    }

    fn client_pin(&mut self, p: &Map) -> Result<Value, u8> {
        let protocol = Protocol::from_number(as_int(required(p, 1)?)?)?;
        let sub = as_int(required(p, 2)?)?;
        match sub {
            // getPINRetries; CTAP 2.1 keys also report powerCycleState.
            0x01 => Ok(int_map(vec![
                (3, int(self.model.pin_retries().into())),
                (4, Value::Bool(false)),
            ])),
            // getKeyAgreement
            0x02 => {
                let (x, y) = self.key_agreement.public_xy();
                Ok(int_map(vec![(1, cose_key(ECDH_ES_HKDF_256, &x, &y))]))
            }
            0x03 => self.set_pin(protocol, p),
            0x04 => self.change_pin(protocol, p),
            // getPinToken (legacy): permissions mc and ga, no rpId.
            0x05 => self.pin_token(protocol, p, PERMISSION_MC | PERMISSION_GA, None),
            // getPinUvAuthTokenUsingPinWithPermissions
            0x09 => {
                let permissions = as_int(required(p, 9)?)?;
                if permissions == 0 {
                    return Err(status::INVALID_PARAMETER);
                }
                if permissions & !i128::from(PERMISSION_MC | PERMISSION_GA) != 0 {
                    return Err(UNAUTHORIZED_PERMISSION);
                }
                let rp_id = get(p, 10).map(as_text).transpose()?.map(str::to_owned);
                self.pin_token(protocol, p, permissions as u8, rp_id)
            }
            _ => Err(INVALID_SUBCOMMAND),
        }
    }

    fn shared_secret(&self, protocol: Protocol, p: &Map) -> Result<pin_protocol::SharedSecret, u8> {
        let (x, y) = platform_key(required(p, 3)?)?;
        self.key_agreement.shared_secret(protocol, &x, &y)
    }

    /// newPinEnc decrypted: 64 bytes, the PIN then zeros; at least 4 characters.
    fn new_pin(secret: &pin_protocol::SharedSecret, new_pin_enc: &[u8]) -> Result<String, u8> {
        let padded = secret.decrypt(new_pin_enc)?;
        if padded.len() != 64 {
            return Err(status::INVALID_PARAMETER);
        }
        let end = padded.iter().position(|b| *b == 0).unwrap_or(64);
        let pin = std::str::from_utf8(&padded[..end]).map_err(|_| PIN_POLICY_VIOLATION)?;
        if pin.chars().count() < 4 || end > 63 {
            return Err(PIN_POLICY_VIOLATION);
        }
        Ok(pin.to_owned())
    }

    fn set_pin(&mut self, protocol: Protocol, p: &Map) -> Result<Value, u8> {
        let new_pin_enc = as_bytes(required(p, 5)?)?;
        let param = as_bytes(required(p, 4)?)?;
        let secret = self.shared_secret(protocol, p)?;
        if self.model.has_pin() {
            return Err(PIN_AUTH_INVALID);
        }
        if !secret.verify(new_pin_enc, param) {
            return Err(PIN_AUTH_INVALID);
        }
        let pin = Self::new_pin(&secret, new_pin_enc)?;
        self.model.set_pin(&pin);
        self.token = None;
        Ok(Value::Map(Vec::new()))
    }

    /// pinHashEnc decrypted and checked against the PIN; a wrong one costs a retry and the
    /// key-agreement key.
    fn check_pin_hash(
        &mut self,
        secret: &pin_protocol::SharedSecret,
        pin_hash_enc: &[u8],
    ) -> Result<(), u8> {
        if !self.model.has_pin() {
            return Err(status::PIN_NOT_SET);
        }
        let pin_hash = secret.decrypt(pin_hash_enc)?;
        if pin_hash.len() != 16 {
            return Err(status::INVALID_PARAMETER);
        }
        self.model.verify_pin_hash(&pin_hash).inspect_err(|_| {
            self.key_agreement.regenerate();
        })
    }

    fn change_pin(&mut self, protocol: Protocol, p: &Map) -> Result<Value, u8> {
        let new_pin_enc = as_bytes(required(p, 5)?)?;
        let pin_hash_enc = as_bytes(required(p, 6)?)?;
        let param = as_bytes(required(p, 4)?)?;
        let secret = self.shared_secret(protocol, p)?;
        if !self.model.has_pin() {
            return Err(status::PIN_NOT_SET);
        }
        if !secret.verify(&[new_pin_enc, pin_hash_enc].concat(), param) {
            return Err(PIN_AUTH_INVALID);
        }
        self.check_pin_hash(&secret, pin_hash_enc)?;
        let pin = Self::new_pin(&secret, new_pin_enc)?;
        self.model.set_pin(&pin);
        self.token = None;
        Ok(Value::Map(Vec::new()))
    }

    fn pin_token(
        &mut self,
        protocol: Protocol,
        p: &Map,
        permissions: u8,
        rp_id: Option<String>,
    ) -> Result<Value, u8> {
        let pin_hash_enc = as_bytes(required(p, 6)?)?;
        let secret = self.shared_secret(protocol, p)?;
        self.check_pin_hash(&secret, pin_hash_enc)?;
        let mut bytes = Zeroizing::new([0u8; 32]);
        getrandom::fill(bytes.as_mut()).expect("system random");
        let encrypted = secret.encrypt(bytes.as_slice());
        self.token = Some(PinToken {
            bytes,
            protocol,
            permissions,
            rp_id,
        });
        Ok(int_map(vec![(2, Value::Bytes(encrypted))]))
    }

    /// pinUvAuthParam over clientDataHash with the current token, its permission and rpId.
    /// An empty pinUvAuthParam is a platform asking for a touch to pick this key: after the
    /// touch it learns whether a PIN is set.
    fn user_verified(
        &mut self,
        p: &Map,
        param_key: i128,
        client_data_hash: &[u8],
        permission: u8,
        rp_id: &str,
    ) -> Result<bool, u8> {
        let Some(param) = get(p, param_key) else {
            return Ok(false);
        };
        let param = as_bytes(param)?;
        if param.is_empty() {
            self.model.user_presence()?;
            return Err(if self.model.has_pin() {
                status::PIN_INVALID
            } else {
                status::PIN_NOT_SET
            });
        }
        let protocol = Protocol::from_number(as_int(required(p, param_key + 1)?)?)?;
        let Some(token) = &self.token else {
            return Err(PIN_AUTH_INVALID);
        };
        if token.protocol != protocol
            || !protocol.verify_with_token(token.bytes.as_slice(), client_data_hash, param)
            || token.permissions & permission == 0
            || token.rp_id.as_deref().is_some_and(|bound| bound != rp_id)
        {
            return Err(PIN_AUTH_INVALID);
        }
        Ok(true)
    }

    /// After a successful operation with a token: a token without an rpId is bound to this one.
    fn bind_token(&mut self, uv: bool, rp_id: &str) {
        if let Some(token) = self.token.as_mut().filter(|_| uv) {
            token.rp_id.get_or_insert_with(|| rp_id.to_owned());
        }
    }

    fn options(p: &Map, key: i128) -> Result<RequestOptions, u8> {
        let Some(options) = get(p, key) else {
            return Ok(RequestOptions::default());
        };
        let options = as_map(options)?;
        let flag = |name| get_text(options, name).map(as_bool).transpose();
        Ok(RequestOptions {
            rk: flag("rk")?,
            up: flag("up")?,
            uv: flag("uv")?,
        })
    }

    fn make_credential(&mut self, p: &Map) -> Result<Value, u8> {
        let client_data_hash = as_bytes(required(p, 1)?)?;
        let rp = as_map(required(p, 2)?)?;
        let rp_id = as_text(get_text(rp, "id").ok_or(MISSING_PARAMETER)?)?.to_owned();
        as_map(required(p, 3)?)?;
        let algorithms = required(p, 4)?.as_array().ok_or(INVALID_CBOR)?;
        let es256 = algorithms.iter().any(|a| {
            a.as_map().is_some_and(|a| {
                get_text(a, "alg").and_then(Value::as_integer) == Some((-7).into())
                    && get_text(a, "type").and_then(Value::as_text) == Some("public-key")
            })
        });
        if !es256 {
            return Err(UNSUPPORTED_ALGORITHM);
        }
        let options = Self::options(p, 7)?;
        if options.rk == Some(true) {
            return Err(UNSUPPORTED_OPTION);
        }
        if options.up == Some(false) || options.uv == Some(true) {
            return Err(INVALID_OPTION);
        }
        let uv = self.user_verified(p, 8, client_data_hash, PERMISSION_MC, &rp_id)?;
        if let Some(excluded) = get(p, 5) {
            let excluded = excluded.as_array().ok_or(INVALID_CBOR)?;
            for descriptor in excluded {
                let id = as_bytes(get_text(as_map(descriptor)?, "id").ok_or(MISSING_PARAMETER)?)?;
                if self.model.holds(&rp_id, id) {
                    self.model.user_presence()?;
                    return Err(CREDENTIAL_EXCLUDED);
                }
            }
        }
        let hmac_secret = match get(p, 6) {
            Some(ext) => get_text(as_map(ext)?, "hmac-secret")
                .map(as_bool)
                .transpose()?
                .unwrap_or(false),
            None => false,
        };
        let id = self.model.make_credential_verified(&rp_id, uv)?;
        self.bind_token(uv, &rp_id);
        let seed = self
            .model
            .credential_key_seed(&id)
            .expect("the credential just made");
        let scalar = signing_scalar(&seed);
        let (x, y) = pin_protocol::point_xy(&PublicKey::from_secret_scalar(&scalar));

        let mut flags = FLAG_UP | FLAG_AT;
        if uv {
            flags |= FLAG_UV;
        }
        if hmac_secret {
            flags |= FLAG_ED;
        }
        self.sign_count += 1;
        let mut auth_data = Sha256::digest(rp_id.as_bytes()).to_vec();
        auth_data.push(flags);
        auth_data.extend(self.sign_count.to_be_bytes());
        auth_data.extend(self.model.aaguid);
        auth_data.extend(u16::try_from(id.len()).expect("short id").to_be_bytes());
        auth_data.extend(&id);
        auth_data.extend(encode(&cose_key(ES256, &x, &y)));
        if hmac_secret {
            auth_data.extend(encode(&text_map(vec![("hmac-secret", Value::Bool(true))])));
        }
        let sig = sign(&scalar, &[&auth_data, client_data_hash]);
        Ok(int_map(vec![
            (1, Value::Text("packed".into())),
            (2, Value::Bytes(auth_data)),
            (
                3,
                text_map(vec![("alg", int(ES256)), ("sig", Value::Bytes(sig))]),
            ),
        ]))
    }

    fn get_assertion(&mut self, p: &Map) -> Result<Value, u8> {
        let rp_id = as_text(required(p, 1)?)?.to_owned();
        let client_data_hash = as_bytes(required(p, 2)?)?;
        let options = Self::options(p, 5)?;
        if options.rk.is_some() {
            return Err(UNSUPPORTED_OPTION);
        }
        if options.uv == Some(true) {
            return Err(INVALID_OPTION);
        }
        let up = options.up.unwrap_or(true);
        let uv = self.user_verified(p, 6, client_data_hash, PERMISSION_GA, &rp_id)?;
        let mut credential = None;
        if let Some(allow) = get(p, 3) {
            for descriptor in allow.as_array().ok_or(INVALID_CBOR)? {
                let id = as_bytes(get_text(as_map(descriptor)?, "id").ok_or(MISSING_PARAMETER)?)?;
                if self.model.holds(&rp_id, id) {
                    credential = Some(id.to_vec());
                    break;
                }
            }
        }
        let Some(id) = credential else {
            return Err(status::NO_CREDENTIALS);
        };
        let hmac_input = match get(p, 4) {
            Some(ext) => get_text(as_map(ext)?, "hmac-secret")
                .map(as_map)
                .transpose()?,
            None => None,
        };
        let hmac = match hmac_input {
            Some(input) => {
                let protocol = match get(input, 4) {
                    Some(n) => Protocol::from_number(as_int(n)?)?,
                    None => Protocol::One,
                };
                let (x, y) = platform_key(required(input, 1)?)?;
                let secret = self.key_agreement.shared_secret(protocol, &x, &y)?;
                let salt_enc = as_bytes(required(input, 2)?)?;
                if !secret.verify(salt_enc, as_bytes(required(input, 3)?)?) {
                    return Err(PIN_AUTH_INVALID);
                }
                let salts = secret.decrypt(salt_enc)?;
                if salts.len() != 32 && salts.len() != 64 {
                    return Err(INVALID_LENGTH);
                }
                Some((secret, salts))
            }
            None => None,
        };
        let outcome = self.model.get_assertion_verified(
            &rp_id,
            &id,
            uv,
            up,
            hmac.as_ref().map(|(_, salts)| salts.as_slice()),
        )?;
        self.bind_token(uv, &rp_id);

        let mut flags = 0;
        if outcome.user_present {
            flags |= FLAG_UP;
        }
        if uv {
            flags |= FLAG_UV;
        }
        let extensions = match (&hmac, outcome.hmac_secret) {
            (Some((secret, _)), Some(output)) => {
                flags |= FLAG_ED;
                let output = Zeroizing::new(output);
                Some(text_map(vec![(
                    "hmac-secret",
                    Value::Bytes(secret.encrypt(&output)),
                )]))
            }
            _ => None,
        };
        self.sign_count += 1;
        let mut auth_data = Sha256::digest(rp_id.as_bytes()).to_vec();
        auth_data.push(flags);
        auth_data.extend(self.sign_count.to_be_bytes());
        if let Some(ext) = &extensions {
            auth_data.extend(encode(ext));
        }
        let seed = self
            .model
            .credential_key_seed(&id)
            .expect("a credential the model holds");
        let sig = sign(&signing_scalar(&seed), &[&auth_data, client_data_hash]);
        Ok(int_map(vec![
            (
                1,
                text_map(vec![
                    ("id", Value::Bytes(id)),
                    ("type", Value::Text("public-key".into())),
                ]),
            ),
            (2, Value::Bytes(auth_data)),
            (3, Value::Bytes(sig)),
        ]))
    }
}

#[cfg(test)]
mod tests {
    //! CTAP2 rules python-fido2's happy paths do not reach: token permissions and rpId
    //! binding, excludeList, the empty-pinUvAuthParam touch probe, alwaysUv, refused options.
    use super::*;

    const RP: &str = "rp.example";
    const PIN: &str = "1234";

    fn call(key: &mut Ctap2, command: u8, params: Vec<(i128, Value)>) -> Result<Map, u8> {
        let request = [vec![command], encode(&int_map(params))].concat();
        match key.handle(&request) {
            Reply::Done(r) if r[0] == OK => match ciborium::from_reader(&r[1..]) {
                Ok(Value::Map(m)) => Ok(m),
                other => panic!("not a map: {other:?}"),
            },
            Reply::Done(r) => Err(r[0]),
            Reply::NeedsTouch => Err(status::USER_ACTION_TIMEOUT),
        }
    }

    /// A PIN token obtained the way a platform does (protocol 2).
    fn token(key: &mut Ctap2, permissions: u8, rp_id: Option<&str>) -> Result<Vec<u8>, u8> {
        let resp = call(key, command::CLIENT_PIN, vec![(1, int(2)), (2, int(2))])?;
        let cose = as_map(get(&resp, 1).unwrap()).unwrap();
        let (dx, dy) = (
            as_bytes(get(cose, -2).unwrap()).unwrap(),
            as_bytes(get(cose, -3).unwrap()).unwrap(),
        );
        let platform = KeyAgreement::generate();
        let secret = platform.shared_secret(Protocol::Two, dx, dy).unwrap();
        let (px, py) = platform.public_xy();
        let pin_hash = &Sha256::digest(PIN.as_bytes())[..16];
        let mut params = vec![
            (1, int(2)),
            (2, int(9)),
            (3, cose_key(ECDH_ES_HKDF_256, &px, &py)),
            (6, Value::Bytes(secret.encrypt(pin_hash))),
            (9, int(permissions.into())),
        ];
        if let Some(rp) = rp_id {
            params.push((10, Value::Text(rp.into())));
        }
        let resp = call(key, command::CLIENT_PIN, params)?;
        Ok(secret
            .decrypt(as_bytes(get(&resp, 2).unwrap()).unwrap())
            .unwrap()
            .to_vec())
    }

    fn descriptor(id: &[u8]) -> Value {
        Value::Array(vec![text_map(vec![
            ("id", Value::Bytes(id.to_vec())),
            ("type", Value::Text("public-key".into())),
        ])])
    }

    fn make_credential_params(extra: Vec<(i128, Value)>) -> Vec<(i128, Value)> {
        let mut p = vec![
            (1, Value::Bytes(vec![1; 32])),
            (2, text_map(vec![("id", Value::Text(RP.into()))])),
            (3, text_map(vec![("id", Value::Bytes(b"u".to_vec()))])),
            (
                4,
                Value::Array(vec![text_map(vec![
                    ("alg", int(ES256)),
                    ("type", Value::Text("public-key".into())),
                ])]),
            ),
        ];
        p.extend(extra);
        p
    }

    fn assertion_params(id: &[u8], token: Option<&[u8]>) -> Vec<(i128, Value)> {
        let cdh = vec![2; 32];
        let mut p = vec![
            (1, Value::Text(RP.into())),
            (2, Value::Bytes(cdh.clone())),
            (3, descriptor(id)),
            (5, text_map(vec![("up", Value::Bool(false))])),
        ];
        if let Some(t) = token {
            p.push((
                6,
                Value::Bytes(Protocol::Two.authenticate_with_token(t, &cdh)),
            ));
            p.push((7, int(2)));
        }
        p
    }

    fn with_credential(model: VirtualAuthenticator) -> (Ctap2, Vec<u8>) {
        model.touch();
        let id = model.make_credential(RP, None).unwrap();
        (Ctap2::power_up(model), id)
    }

    #[test]
    fn a_token_works_only_for_its_permissions_and_its_rp_id() {
        let (mut key, id) = with_credential(VirtualAuthenticator::new().with_pin(PIN));
        let t = token(&mut key, PERMISSION_GA, Some(RP)).unwrap();
        let ok = call(
            &mut key,
            command::GET_ASSERTION,
            assertion_params(&id, Some(&t)),
        )
        .unwrap();
        let flags = as_bytes(get(&ok, 2).unwrap()).unwrap()[32];
        assert_eq!(flags & (FLAG_UP | FLAG_UV), FLAG_UV, "UV without UP");

        let t = token(&mut key, PERMISSION_GA, Some("other.example")).unwrap();
        let bound_elsewhere = call(
            &mut key,
            command::GET_ASSERTION,
            assertion_params(&id, Some(&t)),
        );
        assert_eq!(bound_elsewhere.unwrap_err(), PIN_AUTH_INVALID);

        let t = token(&mut key, PERMISSION_MC, None).unwrap();
        let wrong_permission = call(
            &mut key,
            command::GET_ASSERTION,
            assertion_params(&id, Some(&t)),
        );
        assert_eq!(wrong_permission.unwrap_err(), PIN_AUTH_INVALID);

        assert_eq!(
            token(&mut key, 0x04, None).unwrap_err(),
            UNAUTHORIZED_PERMISSION
        );
        // A token from an earlier getPinToken is replaced by the newest one.
        let old = token(&mut key, PERMISSION_GA, None).unwrap();
        let _new = token(&mut key, PERMISSION_GA, None).unwrap();
        let stale = call(
            &mut key,
            command::GET_ASSERTION,
            assertion_params(&id, Some(&old)),
        );
        assert_eq!(stale.unwrap_err(), PIN_AUTH_INVALID);
    }

    #[test]
    fn an_excluded_credential_takes_a_touch_then_credential_excluded() {
        let (mut key, id) = with_credential(VirtualAuthenticator::new());
        let params = make_credential_params(vec![(5, descriptor(&id))]);
        assert_eq!(
            call(&mut key, command::MAKE_CREDENTIAL, params.clone()).unwrap_err(),
            status::USER_ACTION_TIMEOUT,
            "waits for a touch"
        );
        key.model.touch();
        assert_eq!(
            call(&mut key, command::MAKE_CREDENTIAL, params).unwrap_err(),
            CREDENTIAL_EXCLUDED
        );
        assert_eq!(key.model.credential_count(), 1);
    }

    #[test]
    fn an_empty_pin_uv_auth_param_takes_a_touch_then_says_whether_a_pin_is_set() {
        for (model, expected) in [
            (VirtualAuthenticator::new(), status::PIN_NOT_SET),
            (
                VirtualAuthenticator::new().with_pin(PIN),
                status::PIN_INVALID,
            ),
        ] {
            let mut key = Ctap2::power_up(model);
            let params = make_credential_params(vec![(8, Value::Bytes(Vec::new())), (9, int(1))]);
            key.model.touch();
            assert_eq!(
                call(&mut key, command::MAKE_CREDENTIAL, params).unwrap_err(),
                expected
            );
            assert!(!key.model.touch_pending(), "the touch was taken");
        }
    }

    #[test]
    fn always_uv_is_announced_and_the_silent_probe_needs_a_pin() {
        let mut model = VirtualAuthenticator::new().with_pin(PIN);
        model.touch();
        let id = model.make_credential(RP, Some(PIN)).unwrap();
        model.always_uv = true;
        let mut key = Ctap2::power_up(model);
        let info = call(&mut key, command::GET_INFO, Vec::new()).unwrap();
        let options = as_map(get(&info, 4).unwrap()).unwrap();
        assert_eq!(get_text(options, "alwaysUv"), Some(&Value::Bool(true)));
        let probe = call(
            &mut key,
            command::GET_ASSERTION,
            assertion_params(&id, None),
        );
        assert_eq!(probe.unwrap_err(), status::PIN_REQUIRED);
        let t = token(&mut key, PERMISSION_GA, None).unwrap();
        call(
            &mut key,
            command::GET_ASSERTION,
            assertion_params(&id, Some(&t)),
        )
        .unwrap();
    }

    #[test]
    fn refused_options_algorithms_and_the_retries_answer() {
        let mut key = Ctap2::power_up(VirtualAuthenticator::new());
        let rk = make_credential_params(vec![(7, text_map(vec![("rk", Value::Bool(true))]))]);
        assert_eq!(
            call(&mut key, command::MAKE_CREDENTIAL, rk).unwrap_err(),
            UNSUPPORTED_OPTION
        );
        let mut rs256 = make_credential_params(Vec::new());
        rs256[3].1 = Value::Array(vec![text_map(vec![
            ("alg", int(-257)),
            ("type", Value::Text("public-key".into())),
        ])]);
        assert_eq!(
            call(&mut key, command::MAKE_CREDENTIAL, rs256).unwrap_err(),
            UNSUPPORTED_ALGORITHM
        );
        let retries = call(
            &mut key,
            command::CLIENT_PIN,
            vec![(1, int(1)), (2, int(1))],
        )
        .unwrap();
        assert_eq!(get(&retries, 3), Some(&int(8)));
        assert_eq!(
            get(&retries, 4),
            Some(&Value::Bool(false)),
            "powerCycleState"
        );
        assert_eq!(
            call(
                &mut key,
                command::CLIENT_PIN,
                vec![(1, int(3)), (2, int(1))]
            )
            .unwrap_err(),
            status::INVALID_PARAMETER
        );
        assert_eq!(key.handle(&[0x42]).done(), vec![INVALID_COMMAND]);
        assert_eq!(
            key.handle(&[command::GET_INFO, 0xFF]).done(),
            vec![INVALID_CBOR]
        );
    }

    impl Reply {
        fn done(self) -> Vec<u8> {
            match self {
                Reply::Done(r) => r,
                Reply::NeedsTouch => panic!("waits for a touch"),
            }
        }
    }
}
