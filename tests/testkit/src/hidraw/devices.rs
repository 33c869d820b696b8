//! The OTP (keyboard) interface of a virtual YubiKey 5 as a [`HidInterface`], over the
//! virtual key's feature-report logic, and the identity both its HID interfaces report (the
//! FIDO interface is [`crate::virtual_ctaphid::FidoInterface`]).

use crate::hid_report::HidInterface;
use crate::virtual_yubikey::{VirtualOtpHid, VykHandle};

/// The product name a YubiKey 5 with OTP, FIDO and CCID on reports (`HID_NAME`).
pub const YUBIKEY_NAME: &str = "Yubico YubiKey OTP+FIDO+CCID";
pub const YUBICO_VID: u16 = 0x1050;
/// YubiKey 4/5 with OTP, FIDO and CCID enabled.
pub const PID_OTP_FIDO_CCID: u16 = 0x0407;

/// The OTP interface's report descriptor: a boot keyboard (usage page 1, usage 6) with an
/// 8-byte feature report, as the key's interface 0 has.
pub const OTP_REPORT_DESCRIPTOR: &[u8] = &[
    0x05, 0x01, // usage page: generic desktop
    0x09, 0x06, // usage: keyboard
    0xA1, 0x01, // collection: application
    0x05, 0x07, //   usage page: keyboard/keypad
    0x19, 0xE0, 0x29, 0xE7, // usage min/max: modifier keys
    0x15, 0x00, 0x25, 0x01, // logical 0..1
    0x75, 0x01, 0x95, 0x08, 0x81, 0x02, // 8 x 1 bit input (modifiers)
    0x95, 0x01, 0x75, 0x08, 0x81, 0x01, // 1 byte input constant (reserved)
    0x95, 0x05, 0x75, 0x01, // 5 x 1 bit
    0x05, 0x08, 0x19, 0x01, 0x29, 0x05, 0x91, 0x02, // LED output
    0x95, 0x01, 0x75, 0x03, 0x91, 0x01, // LED padding
    0x95, 0x06, 0x75, 0x08, 0x15, 0x00, 0x25, 0x65, // 6 key codes 0..0x65
    0x05, 0x07, 0x19, 0x00, 0x29, 0x65, 0x81, 0x00, // key array input
    0x09, 0x03, 0x75, 0x08, 0x95, 0x08, 0xB1, 0x02, // 8-byte feature report
    0xC0, // end collection
];

/// The virtual key's OTP interface behind hidraw: feature reports only.
pub struct OtpInterface {
    otp: VirtualOtpHid,
    key: VykHandle,
}

impl OtpInterface {
    pub fn new(otp: VirtualOtpHid, key: VykHandle) -> Self {
        OtpInterface { otp, key }
    }
}

impl HidInterface for OtpInterface {
    fn report_descriptor(&self) -> Vec<u8> {
        OTP_REPORT_DESCRIPTOR.to_vec()
    }
    fn name(&self) -> String {
        YUBIKEY_NAME.into()
    }
    fn write_output(&mut self, _report: &[u8]) {
        // LED state from the host: a key ignores it.
    }
    fn read_input(&mut self) -> Option<Vec<u8>> {
        None
    }
    fn poll_after(&self) -> Option<std::time::Duration> {
        None
    }
    fn set_feature(&mut self, report: &[u8]) -> bool {
        // A short report is padded as the USB layer pads a short SET_REPORT.
        let mut r = [0u8; 8];
        let n = report.len().min(8);
        r[..n].copy_from_slice(&report[..n]);
        self.otp.set_feature(&r)
    }
    fn get_feature(&mut self) -> Option<Vec<u8>> {
        self.otp.get_feature().map(|r| r.to_vec())
    }
    fn present(&self) -> bool {
        !self.key.is_removed()
    }
}
