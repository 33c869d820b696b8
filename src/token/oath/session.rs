//! The YKOATH session over an [`ApduTransport`]: SELECT, VALIDATE, LIST, CALCULATE
//! (truncated), CALCULATE_ALL, PUT, DELETE on one key, built on the [`super::codec`].

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::apdu::{ApduClient, Command, SW_OK};
use super::codec::*;
use super::fault::OathError;
use super::name::{CredentialId, DEFAULT_PERIOD, OathType};
use super::tlv;
use crate::token::transport::ApduTransport;

/// An OATH session on one key: SELECT done, maybe unlocked.
pub struct Session<T: ApduTransport> {
    client: ApduClient<T>,
    info: SelectInfo,
    /// The derived access key once VALIDATE succeeded (kept to re-validate on Nitrokey-style
    /// applets that lock again after each command).
    key: Option<Zeroizing<[u8; 16]>>,
    unlocked: bool,
    /// When set, use extended APDUs up to this size after SELECT on firmware ≥ 4.
    extended_max: Option<usize>,
}

impl<T: ApduTransport> Session<T> {
    /// SELECT the OATH applet. `extended_max` allows extended APDUs (the transport knows
    /// whether the link is USB); they are used only on firmware 4 and later.
    pub fn open(transport: T, extended_max: Option<usize>) -> Result<Session<T>, OathError> {
        let mut s = Session {
            client: ApduClient::new(transport),
            info: SelectInfo {
                version: None,
                salt: Vec::new(),
                challenge: None,
                algorithm: None,
            },
            key: None,
            unlocked: false,
            extended_max,
        };
        s.select()?;
        Ok(s)
    }

    /// (Re-)SELECT; the session is locked again when a password is set.
    pub fn select(&mut self) -> Result<&SelectInfo, OathError> {
        self.client.set_extended(None);
        let r = self
            .client
            .send(&Command::new(INS_SELECT, 0x04, 0x00, OATH_AID.to_vec()))?;
        if r.sw != SW_OK {
            return Err(OathError::NoApplet(r.sw));
        }
        self.info = parse_select(&r.data)?;
        self.unlocked = false;
        if let (Some(max), Some([major, minor, patch])) = (self.extended_max, self.info.version)
            && major >= 4
        {
            let limit = if major == 4 && minor < 3 { 2038 } else { 3062 };
            self.client.set_extended(Some(max.min(limit)));
            // YubiKey 4.2.0–4.2.6 over USB (the transport offers extended APDUs only on USB).
            self.client
                .set_yk42_quirk(major == 4 && minor == 2 && patch <= 6);
        }
        Ok(&self.info)
    }

    pub fn info(&self) -> &SelectInfo {
        &self.info
    }

    /// A password is set and VALIDATE has not succeeded in this session.
    pub fn locked(&self) -> bool {
        self.info.has_password() && !self.unlocked
    }

    /// APDUs exchanged so far on this session.
    pub fn exchanged(&self) -> usize {
        self.client.exchanged()
    }

    pub fn into_transport(self) -> T {
        self.client.into_transport()
    }

    /// VALIDATE with a key from [`derive_key`]; checks the key's answer in constant time.
    pub fn validate(&mut self, key: &Zeroizing<[u8; 16]>) -> Result<(), OathError> {
        let Some(device_challenge) = self.info.challenge.clone() else {
            self.unlocked = true;
            return Ok(());
        };
        let mut ours = [0u8; 8];
        getrandom::fill(&mut ours).map_err(|e| {
            OathError::Transport(crate::Error::internal(format!("no randomness: {e}")))
        })?;
        let response = hmac_sha1(&key[..], &device_challenge);
        let mut data = Vec::with_capacity(32);
        tlv::write(&mut data, TAG_RESPONSE, &response[..]);
        tlv::write(&mut data, TAG_CHALLENGE, &ours);
        let r = self
            .client
            .send(&Command::sensitive(INS_VALIDATE, 0, 0, data))?;
        match r.sw {
            SW_OK => {}
            0x6A80 => return Err(OathError::WrongPassword),
            sw => {
                return Err(OathError::Status {
                    what: "VALIDATE",
                    sw,
                });
            }
        }
        let expected = hmac_sha1(&key[..], &ours);
        let tlvs = tlv::parse(&r.data)?;
        let answer = tlvs
            .iter()
            .find(|t| t.tag == TAG_RESPONSE)
            .ok_or(OathError::NotGenuine)?;
        if answer.value.len() != expected.len() || !bool::from(answer.value.ct_eq(&expected[..])) {
            return Err(OathError::NotGenuine);
        }
        self.key = Some(key.clone());
        self.unlocked = true;
        Ok(())
    }

    /// Run a command; when the applet asks for auth again (Nitrokey locks after each
    /// command) and we hold the key, re-SELECT, re-VALIDATE and retry once.
    fn send_authed(
        &mut self,
        cmd: &Command,
        touch: bool,
    ) -> Result<super::apdu::Response, OathError> {
        let r = self.client.send(cmd)?;
        if is_auth_sw(r.sw) && !touch && self.unlocked && self.key.is_some() {
            let key = self.key.clone().expect("checked");
            self.select()?;
            self.validate(&key)?;
            return self.client.send(cmd);
        }
        Ok(r)
    }

    fn check(&self, r: &super::apdu::Response, what: &'static str) -> Result<(), OathError> {
        match r.sw {
            SW_OK => Ok(()),
            sw if is_auth_sw(sw) => Err(OathError::AuthRequired),
            sw if is_not_found_sw(sw) => Err(OathError::NotFound),
            sw => Err(OathError::Status { what, sw }),
        }
    }

    pub fn list(&mut self) -> Result<Vec<ListEntry>, OathError> {
        let r = self.send_authed(&Command::new(INS_LIST, 0, 0, vec![]), false)?;
        self.check(&r, "LIST")?;
        parse_list(&r.data)
    }

    /// CALCULATE (truncated) of one credential. `touch`: the credential needs a touch, so
    /// 6982 while unlocked means the touch timed out.
    pub fn calculate(
        &mut self,
        id: &[u8],
        challenge: &[u8],
        touch: bool,
    ) -> Result<Truncated, OathError> {
        let mut data = Vec::with_capacity(id.len() + challenge.len() + 6);
        tlv::write(&mut data, TAG_NAME, id);
        tlv::write(&mut data, TAG_CHALLENGE, challenge);
        let r = self.send_authed(&Command::new(INS_CALCULATE, 0, 0x01, data), touch)?;
        if touch && r.sw == 0x6982 && !self.locked() {
            return Err(OathError::TouchTimeout);
        }
        self.check(&r, "CALCULATE")?;
        parse_calculate(&r.data)
    }

    /// CALCULATE_ALL with one challenge (P2=01: truncated).
    pub fn calculate_all(&mut self, challenge: &[u8]) -> Result<Vec<AllEntry>, OathError> {
        let mut data = Vec::with_capacity(challenge.len() + 2);
        tlv::write(&mut data, TAG_CHALLENGE, challenge);
        let r = self.send_authed(&Command::new(INS_CALCULATE_ALL, 0, 0x01, data), false)?;
        self.check(&r, "CALCULATE_ALL")?;
        parse_calculate_all(&r.data)
    }

    /// Every code the key gives without a touch at `at`: CALCULATE_ALL with the 30-s step,
    /// then each TOTP with another period CALCULATEd again with its own step. Touch and
    /// HOTP entries come back without a code (HOTP is never calculated: counters stay).
    pub fn codes(&mut self, at: u64) -> Result<Vec<AccountCode>, OathError> {
        let entries = self.calculate_all(&totp_challenge(at, DEFAULT_PERIOD))?;
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            let name = e.name();
            let kind = e.kind();
            let cid = CredentialId::parse(&name, kind);
            let (digits, touch, code) = match e.result {
                AllResult::Code(_) if cid.period != DEFAULT_PERIOD => {
                    let t2 = self.calculate(&e.id, &totp_challenge(at, cid.period), false)?;
                    (Some(t2.digits), Some(false), Some(t2.code()))
                }
                AllResult::Code(t) => (Some(t.digits), Some(false), Some(t.code())),
                AllResult::Touch { digits } => (Some(digits), Some(true), None),
                AllResult::Hotp { digits } => (digits, None, None),
                AllResult::Full { digits } => (Some(digits), Some(false), None),
            };
            out.push(AccountCode {
                id: e.id,
                name,
                kind,
                period: cid.period,
                digits,
                touch,
                code,
            });
        }
        Ok(out)
    }

    pub fn put(&mut self, cred: &NewCredential) -> Result<(), OathError> {
        let data = encode_put(cred)?;
        let r = self.send_authed(&Command::sensitive(INS_PUT, 0, 0, data.to_vec()), false)?;
        match r.sw {
            0x6A84 | 0x6F00 => Err(OathError::NoSpace),
            _ => self.check(&r, "PUT"),
        }
    }

    /// DELETE one credential (Nitrokey answers 9000 for unknown names too).
    pub fn delete(&mut self, id: &[u8]) -> Result<(), OathError> {
        let mut data = Vec::with_capacity(id.len() + 2);
        tlv::write(&mut data, TAG_NAME, id);
        let r = self.send_authed(&Command::new(INS_DELETE, 0, 0, data), false)?;
        self.check(&r, "DELETE")
    }
}

/// One account with its code when the key gave one without a touch.
pub struct AccountCode {
    pub id: Vec<u8>,
    pub name: String,
    pub kind: OathType,
    pub period: u32,
    pub digits: Option<u8>,
    /// `None` when unknown (HOTP entries do not say).
    pub touch: Option<bool>,
    pub code: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for AccountCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountCode")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("period", &self.period)
            .field("digits", &self.digits)
            .field("touch", &self.touch)
            .field("code", &self.code.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}
