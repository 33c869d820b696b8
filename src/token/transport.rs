//! The two ways tapcred talks to a YubiKey, as small traits so that every protocol above them
//! is tested without hardware (docs/architecture.md "Token sources"):
//!
//! - [`ApduTransport`]: ISO 7816 APDUs over CCID (PC/SC for real keys): the OATH applet, the
//!   OTP applet, the management applet.
//! - [`FeatureReportTransport`]: 8-byte HID feature reports on the OTP (keyboard) interface
//!   (yubikey-protocols.md B.1), for keys whose CCID interface is off.

/// One exchange with a card: send a whole command APDU, get `response data || SW1 SW2`.
/// PC/SC implements it for real keys; tests implement it in memory.
pub trait ApduTransport {
    fn transmit(&mut self, apdu: &[u8]) -> crate::Result<Vec<u8>>;
}

impl<T: ApduTransport + ?Sized> ApduTransport for &mut T {
    fn transmit(&mut self, apdu: &[u8]) -> crate::Result<Vec<u8>> {
        (**self).transmit(apdu)
    }
}

impl<T: ApduTransport + ?Sized> ApduTransport for Box<T> {
    fn transmit(&mut self, apdu: &[u8]) -> crate::Result<Vec<u8>> {
        (**self).transmit(apdu)
    }
}

/// Size of one OTP HID feature report without its report ID (always 0).
pub const FEATURE_REPORT_LEN: usize = 8;

/// One feature report: 8 data bytes (report ID 0 is the transport's business).
pub type FeatureReport = [u8; FEATURE_REPORT_LEN];

/// The OTP HID interface of one key: read and write 8-byte feature reports (report ID 0).
/// hidapi implements it for real keys; tests implement it in memory.
pub trait FeatureReportTransport {
    /// GET_REPORT (feature, ID 0): the key's current status or response chunk.
    fn get_feature(&mut self) -> crate::Result<FeatureReport>;
    /// SET_REPORT (feature, ID 0).
    fn set_feature(&mut self, report: &FeatureReport) -> crate::Result<()>;
    /// Take the key for one exchange, against other processes using it
    /// ([`crate::token::keylock`]); held until the returned lock is dropped. In-memory
    /// interfaces have no other users: `None`.
    fn exclusive(&mut self) -> crate::Result<Option<crate::token::keylock::KeyLock>> {
        Ok(None)
    }
}

impl<T: FeatureReportTransport + ?Sized> FeatureReportTransport for &mut T {
    fn get_feature(&mut self) -> crate::Result<FeatureReport> {
        (**self).get_feature()
    }
    fn set_feature(&mut self, report: &FeatureReport) -> crate::Result<()> {
        (**self).set_feature(report)
    }
    fn exclusive(&mut self) -> crate::Result<Option<crate::token::keylock::KeyLock>> {
        (**self).exclusive()
    }
}

impl<T: FeatureReportTransport + ?Sized> FeatureReportTransport for Box<T> {
    fn get_feature(&mut self) -> crate::Result<FeatureReport> {
        (**self).get_feature()
    }
    fn set_feature(&mut self, report: &FeatureReport) -> crate::Result<()> {
        (**self).set_feature(report)
    }
    fn exclusive(&mut self) -> crate::Result<Option<crate::token::keylock::KeyLock>> {
        (**self).exclusive()
    }
}
