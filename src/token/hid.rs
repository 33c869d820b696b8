//! The real OTP HID transport: hidapi (hidraw on Linux, IOHIDManager on macOS, the HID
//! class driver on Windows). The only code that touches hidapi; everything above it is
//! tested over the virtual key's OTP HID interface.

use std::ffi::CString;
use std::path::PathBuf;

use hidapi::{HidApi, HidDevice};
use zeroize::Zeroizing;

use super::keylock::{self, KeyLock};
use super::otp::hid::{HidInterface, OtpHidBackend};
use super::transport::{FEATURE_REPORT_LEN, FeatureReport, FeatureReportTransport};
use crate::error::{Error, Result};

/// Yubico's USB vendor id.
pub const YUBICO_VID: u16 = 0x1050;
/// The OTP interface is a boot keyboard (B.1): generic desktop page, keyboard usage.
const USAGE_PAGE_DESKTOP: u16 = 0x01;
const USAGE_KEYBOARD: u16 = 0x06;

/// OTP HID interfaces through hidapi; each exchange holds the key's lock in `lock_dir`
/// ([`crate::token::keylock`]).
#[derive(Debug, Clone)]
pub struct HidapiBackend {
    lock_dir: Option<PathBuf>,
}

impl HidapiBackend {
    pub fn new(lock_dir: Option<PathBuf>) -> Self {
        HidapiBackend { lock_dir }
    }
}

impl Default for HidapiBackend {
    /// Key locks in tapcred's cache folder of the process environment.
    fn default() -> Self {
        Self::new(keylock::default_dir(&crate::env::RealEnv))
    }
}

fn hid_error(what: &str, e: hidapi::HidError) -> Error {
    Error::token(format!(
        "USB HID: {what} failed ({e}); {}",
        crate::platform::words::usb_access_hint()
    ))
}

impl OtpHidBackend for HidapiBackend {
    fn interfaces(&self) -> Result<Vec<HidInterface>> {
        let api = HidApi::new().map_err(|e| hid_error("opening the HID library", e))?;
        let mut out: Vec<HidInterface> = api
            .device_list()
            .filter(|d| d.vendor_id() == YUBICO_VID)
            // Backends that report usages: the keyboard collection; else USB interface 0.
            .filter(|d| {
                (d.usage_page(), d.usage()) == (USAGE_PAGE_DESKTOP, USAGE_KEYBOARD)
                    || (d.usage_page() == 0 && d.interface_number() == 0)
            })
            .map(|d| HidInterface {
                path: d.path().to_string_lossy().into_owned(),
                product_id: d.product_id(),
            })
            .collect();
        out.dedup_by(|a, b| a.path == b.path);
        Ok(out)
    }

    fn open(&self, path: &str) -> Result<Box<dyn FeatureReportTransport>> {
        let api = HidApi::new().map_err(|e| hid_error("opening the HID library", e))?;
        let c = CString::new(path)
            .map_err(|_| Error::token(format!("HID path \"{path}\" contains a NUL byte")))?;
        let dev = api
            .open_path(&c)
            .map_err(|e| hid_error(&format!("opening {path}"), e))?;
        Ok(Box::new(HidapiDevice {
            dev,
            path: path.to_owned(),
            lock_dir: self.lock_dir.clone(),
        }))
    }
}

/// One open OTP interface. Report ID 0 goes in front of the 8 data bytes (B.1).
struct HidapiDevice {
    dev: HidDevice,
    path: String,
    lock_dir: Option<PathBuf>,
}

impl FeatureReportTransport for HidapiDevice {
    fn get_feature(&mut self) -> Result<FeatureReport> {
        // Response chunks carry pieces of the slot's HMAC: wiped after use.
        let mut buf = Zeroizing::new([0u8; FEATURE_REPORT_LEN + 1]);
        let n = self
            .dev
            .get_feature_report(&mut buf[..])
            .map_err(|e| hid_error(&format!("reading a feature report from {}", self.path), e))?;
        if n < FEATURE_REPORT_LEN + 1 {
            return Err(Error::token(format!(
                "{} answered a {n}-byte feature report, expected {}; is it a YubiKey OTP interface?",
                self.path,
                FEATURE_REPORT_LEN + 1
            )));
        }
        let mut r = [0u8; FEATURE_REPORT_LEN];
        r.copy_from_slice(&buf[1..]);
        Ok(r)
    }

    fn set_feature(&mut self, report: &FeatureReport) -> Result<()> {
        let mut buf = [0u8; FEATURE_REPORT_LEN + 1];
        buf[1..].copy_from_slice(report);
        self.dev
            .send_feature_report(&buf)
            .map_err(|e| hid_error(&format!("writing a feature report to {}", self.path), e))
    }

    fn exclusive(&mut self) -> Result<Option<KeyLock>> {
        let who = format!("the YubiKey at {}", self.path);
        keylock::lock(self.lock_dir.as_deref(), &self.path, &who, keylock::WAIT).map(Some)
    }
}
