//! What can go wrong talking to the OATH applet, before it is turned into a user-facing
//! [`crate::Error`] that names the key and the fix.

use std::fmt;

use crate::error::Error;

/// Display is the variant and its data (for logs and tests); users see [`OathError::into_error`].
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
pub enum OathError {
    /// The transport failed (card removed, pcscd gone); already a full message. Its source
    /// is that error (and so, below it, the PC/SC error).
    #[error("Transport({0})")]
    Transport(#[source] Error),
    /// A response that does not follow YKOATH.
    #[error("Malformed({0})")]
    Malformed(String),
    /// A status word this client has no meaning for.
    #[error("Status({what}: {sw:04X})")]
    Status { what: &'static str, sw: u16 },
    /// SELECT failed: the key has no OATH application (or it is disabled).
    #[error("NoApplet({0:04X})")]
    NoApplet(u16),
    /// 6982 / 6985 outside a touch wait: the applet wants VALIDATE first.
    #[error("AuthRequired")]
    AuthRequired,
    /// 6984 / 6A82: no credential of that name.
    #[error("NotFound")]
    NotFound,
    /// 6A80 on VALIDATE.
    #[error("WrongPassword")]
    WrongPassword,
    /// VALIDATE succeeded but the key's answer to our challenge was wrong.
    #[error("NotGenuine")]
    NotGenuine,
    /// 6982 on a touch CALCULATE while unlocked.
    #[error("TouchTimeout")]
    TouchTimeout,
    /// 6A84 / 6F00 on PUT.
    #[error("NoSpace")]
    NoSpace,
}

impl fmt::Debug for OathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
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

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn a_transport_failure_chains_down_to_what_the_transport_said() {
        let below = Error::token("the YubiKey was removed")
            .with_source(std::io::Error::other("reader gone"));
        let e = OathError::Transport(below.clone());
        assert_eq!(e.to_string(), "Transport(the YubiKey was removed)");
        let first = e.source().expect("the transport's error");
        assert_eq!(first.downcast_ref::<Error>(), Some(&below));
        assert_eq!(
            first.source().map(|s| s.to_string()).as_deref(),
            Some("reader gone")
        );
        assert!(OathError::NoApplet(0x6A82).source().is_none());
        assert_eq!(OathError::NoApplet(0x6A82).to_string(), "NoApplet(6A82)");
        // Turned into the user's error, the transport's own error (and its chain) is kept.
        let user = e.into_error("YubiKey 1");
        assert_eq!(
            user.source().map(|s| s.to_string()).as_deref(),
            Some("reader gone")
        );
    }
}
