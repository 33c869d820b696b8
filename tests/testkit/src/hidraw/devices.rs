//! The two HID interfaces of a virtual YubiKey 5 as [`HidInterface`]s: the OTP (keyboard)
//! interface over the virtual key's feature-report logic, and a minimal CTAPHID device
//! (INIT and PING only) that stands in for the FIDO interface until a full CTAP2 device is
//! plugged in its place.

use std::collections::VecDeque;

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

/// The FIDO interface's report descriptor: usage page 0xF1D0, usage 1 (CTAPHID), 64-byte
/// input and output reports without report ids.
pub const FIDO_REPORT_DESCRIPTOR: &[u8] = &[
    0x06, 0xD0, 0xF1, // usage page: FIDO alliance
    0x09, 0x01, // usage: CTAPHID
    0xA1, 0x01, // collection: application
    0x09, 0x20, 0x15, 0x00, 0x26, 0xFF, 0x00, 0x75, 0x08, 0x95, 0x40, 0x81, 0x02, // input
    0x09, 0x21, 0x15, 0x00, 0x26, 0xFF, 0x00, 0x75, 0x08, 0x95, 0x40, 0x91, 0x02, // output
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

/// A CTAPHID device that answers INIT (allocating channel ids) and PING (echo), and
/// `ERR_INVALID_CMD` to everything else: enough for clients to find and open the FIDO
/// interface. Messages of up to one initialization packet plus continuation packets.
#[derive(Default)]
pub struct CtaphidEcho {
    next_cid: u32,
    out: VecDeque<Vec<u8>>,
    /// A message being received: (cid, cmd, total length, bytes so far, next sequence).
    partial: Option<(u32, u8, usize, Vec<u8>, u8)>,
}

const CTAPHID_PING: u8 = 0x81;
const CTAPHID_INIT: u8 = 0x86;
const CTAPHID_ERROR: u8 = 0xBF;
const BROADCAST: u32 = 0xFFFF_FFFF;

impl CtaphidEcho {
    fn send(&mut self, cid: u32, cmd: u8, data: &[u8]) {
        let mut first = vec![0u8; 64];
        first[..4].copy_from_slice(&cid.to_be_bytes());
        first[4] = cmd;
        first[5..7].copy_from_slice(&(data.len() as u16).to_be_bytes());
        let n = data.len().min(57);
        first[7..7 + n].copy_from_slice(&data[..n]);
        self.out.push_back(first);
        for (seq, chunk) in data[n..].chunks(59).enumerate() {
            let mut p = vec![0u8; 64];
            p[..4].copy_from_slice(&cid.to_be_bytes());
            p[4] = seq as u8;
            p[5..5 + chunk.len()].copy_from_slice(chunk);
            self.out.push_back(p);
        }
    }

    fn message(&mut self, cid: u32, cmd: u8, data: &[u8]) {
        match cmd {
            CTAPHID_INIT => {
                self.next_cid += 1;
                let mut resp = data[..8.min(data.len())].to_vec();
                resp.resize(8, 0);
                resp.extend_from_slice(&self.next_cid.to_be_bytes());
                // protocol 2, device version 5.4.3, capabilities: none beyond CTAPHID.
                resp.extend_from_slice(&[2, 5, 4, 3, 0]);
                self.send(cid, CTAPHID_INIT, &resp);
            }
            CTAPHID_PING => self.send(cid, CTAPHID_PING, data),
            _ => self.send(cid, CTAPHID_ERROR, &[0x01]),
        }
    }
}

impl HidInterface for CtaphidEcho {
    fn report_descriptor(&self) -> Vec<u8> {
        FIDO_REPORT_DESCRIPTOR.to_vec()
    }
    fn name(&self) -> String {
        YUBIKEY_NAME.into()
    }
    fn write_output(&mut self, report: &[u8]) {
        if report.len() < 5 {
            return;
        }
        let cid = u32::from_be_bytes([report[0], report[1], report[2], report[3]]);
        if report[4] & 0x80 != 0 {
            let cmd = report[4];
            let len = usize::from(u16::from_be_bytes([
                report.get(5).copied().unwrap_or(0),
                report.get(6).copied().unwrap_or(0),
            ]));
            let body = report.get(7..).unwrap_or(&[]);
            let have = body[..len.min(body.len())].to_vec();
            if cmd != CTAPHID_INIT && cid == BROADCAST {
                self.send(cid, CTAPHID_ERROR, &[0x0B]); // invalid channel
            } else if have.len() == len {
                self.partial = None;
                self.message(cid, cmd, &have);
            } else {
                self.partial = Some((cid, cmd, len, have, 0));
            }
        } else if let Some((pcid, cmd, len, mut have, seq)) = self.partial.take() {
            if pcid != cid || report[4] != seq {
                self.send(cid, CTAPHID_ERROR, &[0x04]); // invalid sequence
                return;
            }
            let body = &report[5..];
            let take = (len - have.len()).min(body.len());
            have.extend_from_slice(&body[..take]);
            if have.len() == len {
                self.message(cid, cmd, &have);
            } else {
                self.partial = Some((pcid, cmd, len, have, seq + 1));
            }
        }
    }
    fn read_input(&mut self) -> Option<Vec<u8>> {
        self.out.pop_front()
    }
    fn poll_after(&self) -> Option<std::time::Duration> {
        None
    }
}
