//! Finding YubiKeys: readers, serial/firmware/form factor (yubikey-protocols.md A.12), and
//! choosing one by `tapcred_yubikey_serial`.

use serde::Serialize;

use crate::error::{Error, Result};
use crate::token::oath::apdu::{ApduClient, Command, SW_OK};
use crate::token::oath::fault::OathError;
use crate::token::oath::tlv;
use crate::token::transport::ApduTransport;

pub const MGMT_AID: [u8; 8] = [0xA0, 0x00, 0x00, 0x05, 0x27, 0x47, 0x11, 0x17];
pub const OTP_AID: [u8; 7] = [0xA0, 0x00, 0x00, 0x05, 0x27, 0x20, 0x01];

/// Readers whose lower-cased name contains this are YubiKeys (as ykman decides).
pub const READER_MATCH: &str = "yubico yubikey";

/// One open connection to a card.
pub trait Connection: ApduTransport + Send {
    /// Largest extended APDU the link takes (`None`: short APDUs only, e.g. NFC).
    fn extended_max(&self) -> Option<usize> {
        None
    }
}

/// Where YubiKeys are found: PC/SC for real keys ([`super::pcsc::PcscBackend`]), virtual keys in
/// tests.
pub trait Backend: Send + Sync {
    /// Every reader name (not only YubiKeys). An error means the service is unusable
    /// (pcscd not running); no readers is `Ok(vec![])`.
    fn readers(&self) -> Result<Vec<String>>;
    /// Connect to a reader. `Ok(None)` when the reader holds no card.
    fn connect(&self, reader: &str) -> Result<Option<Box<dyn Connection>>>;
    /// The same machine's YubiKey OTP HID interfaces, for keys whose CCID interface is off
    /// (the OTP unlocker falls back to them). Real PC/SC: hidapi; test backends: none,
    /// unless a test gives them virtual ones.
    fn otp_hid(&self) -> Option<Box<dyn crate::token::otp::OtpHidBackend>> {
        None
    }
}

/// What the management (or OTP) applet says about a key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DeviceInfo {
    pub serial: Option<u32>,
    pub firmware: Option<String>,
    pub form_factor: Option<String>,
}

pub fn form_factor_name(b: u8) -> Option<String> {
    let base = match b & 0x0F {
        1 => "USB-A keychain",
        2 => "USB-A nano",
        3 => "USB-C keychain",
        4 => "USB-C nano",
        5 => "USB-C/Lightning keychain",
        6 => "USB-A Bio",
        7 => "USB-C Bio",
        _ => return None,
    };
    let mut s = base.to_owned();
    if b & 0x80 != 0 {
        s.push_str(", FIPS");
    }
    if b & 0x40 != 0 {
        s.push_str(", Security Key");
    }
    Some(s)
}

/// Parse a READ_CONFIG response: one length byte, then that many bytes of TLVs.
pub fn parse_device_info(data: &[u8]) -> Option<DeviceInfo> {
    let (&len, rest) = data.split_first()?;
    let body = rest.get(..len as usize)?;
    let tlvs = tlv::parse(body).ok()?;
    let mut info = DeviceInfo::default();
    for t in tlvs {
        match (t.tag, t.value) {
            (0x02, v) if v.len() == 4 => {
                let s = u32::from_be_bytes([v[0], v[1], v[2], v[3]]);
                info.serial = (s != 0).then_some(s);
            }
            (0x04, [b]) => info.form_factor = form_factor_name(*b),
            (0x05, [a, b, c]) => info.firmware = Some(format!("{a}.{b}.{c}")),
            _ => {}
        }
    }
    Some(info)
}

/// First `major.minor.patch` in an ASCII string (the management SELECT answer).
fn find_version(s: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(s);
    for word in text.split(|c: char| !(c.is_ascii_digit() || c == '.')) {
        let parts: Vec<&str> = word.split('.').collect();
        if parts.len() == 3 && parts.iter().all(|p| !p.is_empty() && p.len() <= 3) {
            return Some(word.to_owned());
        }
    }
    None
}

/// Serial, firmware and form factor: management READ_CONFIG, else the OTP applet's serial.
/// Unknown fields stay `None`; only transport failures are errors.
pub fn read_device_info<T: ApduTransport>(t: T) -> Result<DeviceInfo> {
    let mut c = ApduClient::new(t);
    let mut info = DeviceInfo::default();
    let sel = c
        .send(&Command::new(0xA4, 0x04, 0x00, MGMT_AID.to_vec()))
        .map_err(transport_only)?;
    if sel.sw == SW_OK {
        info.firmware = find_version(&sel.data);
        let cfg = c
            .send(&Command::new(0x1D, 0x00, 0x00, vec![]))
            .map_err(transport_only)?;
        if cfg.sw == SW_OK
            && let Some(d) = parse_device_info(&cfg.data)
        {
            info.serial = d.serial;
            info.form_factor = d.form_factor;
            if d.firmware.is_some() {
                info.firmware = d.firmware;
            }
        }
    }
    if info.serial.is_none() {
        let sel = c
            .send(&Command::new(0xA4, 0x04, 0x00, OTP_AID.to_vec()))
            .map_err(transport_only)?;
        if sel.sw == SW_OK {
            if info.firmware.is_none() && sel.data.len() >= 3 {
                info.firmware = Some(format!("{}.{}.{}", sel.data[0], sel.data[1], sel.data[2]));
            }
            let r = c
                .send(&Command::new(0x01, 0x10, 0x00, vec![]))
                .map_err(transport_only)?;
            if r.sw == SW_OK && r.data.len() == 4 {
                let s = u32::from_be_bytes([r.data[0], r.data[1], r.data[2], r.data[3]]);
                info.serial = (s != 0).then_some(s);
            }
        }
    }
    Ok(info)
}

/// Malformed answers from the identification applets only mean "unknown"; a dead transport
/// is a real error.
fn transport_only(e: OathError) -> Error {
    match e {
        OathError::Transport(e) => e,
        other => Error::token(format!("YubiKey identification failed: {other}")),
    }
}

/// Where a chosen key is, once its connection has moved into a session.
#[derive(Debug, Clone)]
pub struct FoundKeyInfo {
    pub reader: String,
    pub serial: Option<u32>,
}

/// A key found in a reader, connected.
pub struct FoundKey {
    pub reader: String,
    /// Empty until [`FoundKey::identify`] ran (see [`connect_keys`]).
    pub info: DeviceInfo,
    /// Whether the management/OTP applets were asked for serial and firmware.
    pub identified: bool,
    pub conn: Box<dyn Connection>,
}

impl FoundKey {
    pub fn label(&self) -> String {
        label(self.info.serial, &self.reader)
    }

    /// Read serial, firmware and form factor (management SELECT + READ_CONFIG, else the OTP
    /// applet), once. Leaves the management (or OTP) applet selected.
    pub fn identify(&mut self) -> Result<()> {
        if !self.identified {
            self.info = read_device_info(&mut self.conn)?;
            self.identified = true;
        }
        Ok(())
    }
}

pub fn label(serial: Option<u32>, reader: &str) -> String {
    match serial {
        Some(s) => format!("YubiKey {s}"),
        None => format!("the YubiKey in reader \"{reader}\""),
    }
}

/// Every YubiKey reader holding a card, connected and identified. Readers with no card are
/// skipped (an empty laptop reader is not a second key).
pub fn find_keys(backend: &dyn Backend, readers: Vec<String>) -> Result<Vec<FoundKey>> {
    let mut keys = connect_keys(backend, readers)?;
    for k in &mut keys {
        k.identify()?;
    }
    Ok(keys)
}

/// Every YubiKey reader holding a card, connected but not identified: no APDU is sent. A
/// code needs the serial only when it decides something (several keys, or
/// `tapcred_yubikey_serial` set), see [`choose_key`].
pub fn connect_keys(backend: &dyn Backend, readers: Vec<String>) -> Result<Vec<FoundKey>> {
    let mut keys = Vec::new();
    for reader in readers {
        if !reader.to_lowercase().contains(READER_MATCH) {
            continue;
        }
        let Some(conn) = backend.connect(&reader)? else {
            tracing::debug!(%reader, "no card in reader");
            continue;
        };
        keys.push(FoundKey {
            reader,
            info: DeviceInfo::default(),
            identified: false,
            conn,
        });
    }
    Ok(keys)
}

/// Why no key could be chosen.
pub enum ChooseError {
    /// Nothing to use here (auto moves on).
    NoKey(Error),
    /// The user must decide (several keys, no serial configured).
    Ambiguous(Error),
    /// A key stopped answering while it was identified.
    Fatal(Error),
}

/// A key found on one link (a PC/SC reader, an OTP HID interface), maybe not identified
/// yet. [`choose`] decides between them the same way for every link.
pub trait Candidate {
    /// The serial, once identified (`None`: unknown or hidden).
    fn serial(&self) -> Option<u32>;
    /// Where the key is, for messages when its serial is unknown (a reader name, a path).
    fn place(&self) -> &str;
    /// Read the serial (once; later calls do nothing).
    fn identify(&mut self) -> Result<()>;
}

impl Candidate for FoundKey {
    fn serial(&self) -> Option<u32> {
        self.info.serial
    }
    fn place(&self) -> &str {
        &self.reader
    }
    fn identify(&mut self) -> Result<()> {
        FoundKey::identify(self)
    }
}

/// What [`choose_key`] says when no PC/SC reader holds a YubiKey.
pub const NO_PCSC_KEY: &str = "no YubiKey found: no PC/SC reader named \"Yubico YubiKey …\" holds a key; plug in the key (with its CCID interface enabled: `ykman config mode`)";

/// Choose the key for `serial` (or the only key) among PC/SC readers, see [`choose`].
pub fn choose_key(
    keys: Vec<FoundKey>,
    serial: Option<u32>,
    profile: &str,
) -> std::result::Result<FoundKey, ChooseError> {
    choose(keys, serial, profile, NO_PCSC_KEY)
}

/// Choose the key for `serial` (or the only key). Keys are identified here only when the
/// serial decides something: a serial is configured, or several keys are plugged in. One
/// key and no serial: no identification at all. `none_found` is the whole message when
/// there is no key and no serial was asked for.
pub fn choose<K: Candidate>(
    keys: Vec<K>,
    serial: Option<u32>,
    profile: &str,
    none_found: &str,
) -> std::result::Result<K, ChooseError> {
    choose_by(keys, serial, "tapcred_yubikey_serial", profile, none_found)
}

/// [`choose`] where the serial comes from `serial_setting` (named in the fix): a key of
/// ~/.aws/config, or a command-line option (`--serial`).
pub fn choose_by<K: Candidate>(
    mut keys: Vec<K>,
    serial: Option<u32>,
    serial_setting: &str,
    profile: &str,
    none_found: &str,
) -> std::result::Result<K, ChooseError> {
    if serial.is_some() || keys.len() > 1 {
        for k in &mut keys {
            k.identify().map_err(ChooseError::Fatal)?;
        }
    }
    let serials = |keys: &[K]| {
        keys.iter()
            .map(|k| match k.serial() {
                Some(s) => s.to_string(),
                None => format!("unknown serial in \"{}\"", k.place()),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let in_profile = if profile.is_empty() {
        String::new()
    } else {
        format!(" in profile \"{profile}\"")
    };
    if let Some(want) = serial {
        if let Some(i) = keys.iter().position(|k| k.serial() == Some(want)) {
            return Ok(keys.swap_remove(i));
        }
        let present = if keys.is_empty() {
            "no YubiKey is plugged in".to_owned()
        } else {
            format!("plugged in: {}", serials(&keys))
        };
        return Err(ChooseError::NoKey(Error::token(format!(
            "YubiKey {want} ({serial_setting}{in_profile}) is not plugged in ({present}); insert it or change {serial_setting}"
        ))));
    }
    match keys.len() {
        0 => Err(ChooseError::NoKey(Error::token(none_found))),
        1 => Ok(keys.pop().expect("one key")),
        n => {
            let how = if serial_setting.starts_with("--") {
                format!("{serial_setting} SERIAL")
            } else {
                format!("{serial_setting} = SERIAL{in_profile} in ~/.aws/config")
            };
            Err(ChooseError::Ambiguous(Error::token(format!(
                "{n} YubiKeys are plugged in ({}); choose one with {how}, or unplug the others",
                serials(&keys)
            ))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_info_tags() {
        let data = [
            14, 0x02, 0x04, 0x00, 0xBC, 0x61, 0x4E, 0x04, 0x01, 0x03, 0x05, 0x03, 0x05, 0x07, 0x01,
        ];
        let info = parse_device_info(&data).unwrap();
        assert_eq!(info.serial, Some(12345678));
        assert_eq!(info.form_factor.as_deref(), Some("USB-C keychain"));
        assert_eq!(info.firmware.as_deref(), Some("5.7.1"));
        assert!(parse_device_info(&[5, 0x02]).is_none());
        assert!(parse_device_info(&[]).is_none());
    }

    #[test]
    fn version_in_management_select() {
        assert_eq!(
            find_version(b"Virtual mgr - FW version 5.4.3"),
            Some("5.4.3".into())
        );
        assert_eq!(find_version(b"no version"), None);
    }
}
