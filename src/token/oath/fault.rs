//! What can go wrong talking to the OATH applet, before it is turned into a user-facing
//! [`crate::Error`] that names the key and the fix.

use std::fmt;

use crate::error::Error;

#[derive(Clone, PartialEq, Eq)]
pub enum OathError {
    /// The transport failed (card removed, pcscd gone); already a full message.
    Transport(Error),
    /// A response that does not follow YKOATH.
    Malformed(String),
    /// A status word this client has no meaning for.
    Status { what: &'static str, sw: u16 },
    /// SELECT failed: the key has no OATH application (or it is disabled).
    NoApplet(u16),
    /// 6982 / 6985 outside a touch wait: the applet wants VALIDATE first.
    AuthRequired,
    /// 6984 / 6A82: no credential of that name.
    NotFound,
    /// 6A80 on VALIDATE.
    WrongPassword,
    /// VALIDATE succeeded but the key's answer to our challenge was wrong.
    NotGenuine,
    /// 6982 on a touch CALCULATE while unlocked.
    TouchTimeout,
    /// 6A84 / 6F00 on PUT.
    NoSpace,
}

impl fmt::Debug for OathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OathError::Transport(e) => write!(f, "Transport({e})"),
            OathError::Malformed(m) => write!(f, "Malformed({m})"),
            OathError::Status { what, sw } => write!(f, "Status({what}: {sw:04X})"),
            OathError::NoApplet(sw) => write!(f, "NoApplet({sw:04X})"),
            other => f.write_str(match other {
                OathError::AuthRequired => "AuthRequired",
                OathError::NotFound => "NotFound",
                OathError::WrongPassword => "WrongPassword",
                OathError::NotGenuine => "NotGenuine",
                OathError::TouchTimeout => "TouchTimeout",
                _ => "NoSpace",
            }),
        }
    }
}

impl fmt::Display for OathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl From<super::tlv::TlvError> for OathError {
    fn from(e: super::tlv::TlvError) -> Self {
        OathError::Malformed(e.0)
    }
}

impl OathError {
    /// The user-facing error, naming the key (`device`, e.g. "YubiKey 12345678").
    pub fn into_error(self, device: &str) -> Error {
        match self {
            OathError::Transport(e) => e,
            OathError::Malformed(m) => Error::token(format!(
                "{device} sent an OATH response tapcred cannot read ({m}); unplug and re-insert the key and try again"
            )),
            OathError::Status { what, sw } => Error::token(format!(
                "{device} refused {what} with status {sw:04X}; unplug and re-insert the key and try again"
            )),
            OathError::NoApplet(sw) => Error::token(format!(
                "{device} has no OATH application (SELECT answered {sw:04X}); enable OATH with `ykman config usb --enable OATH` or use another token source"
            )),
            OathError::AuthRequired => Error::token(format!(
                "{device}: the OATH applet is password-protected and refused the command; set TAPCRED_OATH_PASSWORD or run from a terminal to be asked"
            )),
            OathError::NotFound => Error::token(format!(
                "{device}: the OATH account is no longer on the key; run `tapcred devices` to list its accounts"
            )),
            OathError::WrongPassword => Error::token(format!(
                "wrong OATH password for {device}; check TAPCRED_OATH_PASSWORD or the password you typed"
            )),
            OathError::NotGenuine => Error::token(format!(
                "{device} accepted the OATH password but answered our challenge wrongly; the device may not be genuine"
            )),
            OathError::TouchTimeout => Error::token(format!(
                "timed out waiting for a touch on {device}; run again and touch the key when it blinks"
            )),
            OathError::NoSpace => Error::token(format!(
                "{device} has no room for another OATH account; delete one with `ykman oath accounts delete`"
            )),
        }
    }
}
