//! `devices`: list YubiKeys and their OATH accounts (no code is calculated, no counter moves),
//! and the keys reachable only over USB HID: FIDO-only keys and keys with CCID turned off
//! (their OTP keyboard interface and their FIDO interface; the vault's HID unlockers).

use std::fmt::Write as _;
use std::io::Write;

use serde::Serialize;

use crate::commands::Ctx;
use crate::error::{Error, Result};
use crate::token::fido2::Fido2Interface;
use crate::token::oath::{self, DeviceReport};
use crate::token::otp::hid::{self as otp_hid, OtpHid, OtpHidBackend, Pacing};

/// One USB HID interface of a key (in `devices --json` next to the CCID keys, told apart by
/// `"transport": "hid"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HidKeyReport {
    pub transport: &'static str,
    /// `otp` (the keyboard interface: the OTP slots) or `fido` (FIDO2).
    pub interface: &'static str,
    pub path: String,
    pub name: String,
    pub serial: Option<u32>,
    pub error: Option<String>,
}

/// The HID interfaces of the keys plugged in: every YubiKey OTP interface (its serial read
/// over it) except those of keys already found over PC/SC (`ccid_serials`), and every FIDO
/// interface (listed only; FIDO HID carries no serial to match).
pub fn list_hid_keys(
    otp: &dyn OtpHidBackend,
    fido: Result<Vec<Fido2Interface>>,
    ccid_serials: &[u32],
) -> (Vec<HidKeyReport>, Vec<String>) {
    let mut keys = Vec::new();
    let mut errors = Vec::new();
    match otp.interfaces() {
        Ok(found) => {
            for i in found {
                let serial = otp.open(&i.path).and_then(|t| {
                    OtpHid::open(t, &otp_hid::label(None, &i.path), Pacing::default())?
                        .read_serial()
                });
                let (serial, error) = match serial {
                    Ok(s) => (s, None),
                    Err(e) => (None, Some(e.message().to_owned())),
                };
                if serial.is_some_and(|s| ccid_serials.contains(&s)) {
                    continue;
                }
                keys.push(HidKeyReport {
                    transport: "hid",
                    interface: "otp",
                    name: otp_hid::label(serial, &i.path),
                    path: i.path,
                    serial,
                    error,
                });
            }
        }
        Err(e) => errors.push(format!("OTP over USB HID: {}", e.message())),
    }
    match fido {
        Ok(found) => keys.extend(found.into_iter().map(|f| HidKeyReport {
            transport: "hid",
            interface: "fido",
            name: if f.product.is_empty() {
                format!("FIDO2 key {:04x}:{:04x}", f.vid, f.pid)
            } else {
                format!("FIDO2 key \"{}\" ({:04x}:{:04x})", f.product, f.vid, f.pid)
            },
            path: f.path,
            serial: None,
            error: None,
        })),
        Err(e) => errors.push(format!("FIDO over USB HID: {}", e.message())),
    }
    (keys, errors)
}

/// [`list_hid_keys`] on the real HID backends.
pub fn real_hid_keys(ccid_serials: &[u32]) -> (Vec<HidKeyReport>, Vec<String>) {
    list_hid_keys(
        &crate::token::hid::HidapiBackend::default(),
        crate::token::fido2::ctap_hid::list_interfaces(),
        ccid_serials,
    )
}

pub fn run(json: bool, ctx: &Ctx<'_>, out: &mut dyn Write) -> Result<i32> {
    let ccid = oath::list_devices(ctx.ui);
    let serials: Vec<u32> = ccid
        .as_ref()
        .map(|d| d.iter().filter_map(|k| k.serial).collect())
        .unwrap_or_default();
    let (hid, _) = real_hid_keys(&serials);
    let devices = match ccid {
        Ok(d) => d,
        Err(e) if hid.is_empty() => return Err(e),
        Err(e) => {
            ctx.ui.warn(e.message());
            Vec::new()
        }
    };
    let text = if json {
        let mut all: Vec<serde_json::Value> = Vec::new();
        for d in &devices {
            all.push(
                serde_json::to_value(d)
                    .map_err(|e| Error::internal(e.to_string()).with_source(e))?,
            );
        }
        for h in &hid {
            all.push(
                serde_json::to_value(h)
                    .map_err(|e| Error::internal(e.to_string()).with_source(e))?,
            );
        }
        let mut s = serde_json::to_string_pretty(&all)
            .map_err(|e| Error::internal(e.to_string()).with_source(e))?;
        s.push('\n');
        s
    } else {
        let mut s = if devices.is_empty() && !hid.is_empty() {
            String::new()
        } else {
            render(&devices)
        };
        s.push_str(&render_hid(&hid));
        s
    };
    out.write_all(text.as_bytes())
        .map_err(|e| Error::io(format!("cannot write to stdout: {e}")).with_source(e))?;
    Ok(0)
}

pub fn render(devices: &[DeviceReport]) -> String {
    let mut s = String::new();
    if devices.is_empty() {
        s.push_str(&format!(
            "no YubiKey found (plugged in? {} running?)\n",
            crate::platform::pcsc::service_name()
        ));
    }
    for d in devices {
        let serial = d
            .serial
            .map(|n| n.to_string())
            .unwrap_or_else(|| "(serial hidden)".into());
        let _ = write!(s, "YubiKey {serial}");
        if let Some(f) = &d.firmware {
            let _ = write!(s, "  firmware {f}");
        }
        if let Some(f) = &d.form_factor {
            let _ = write!(s, "  {f}");
        }
        let _ = writeln!(s, "  reader \"{}\"", d.reader);
        let state = match (d.password_set, d.locked) {
            (false, _) => "no password",
            (true, false) => "password set, unlocked",
            (true, true) => {
                "password set, LOCKED (set TAPCRED_OATH_PASSWORD or run from a terminal)"
            }
        };
        let _ = writeln!(s, "  OATH: {} account(s), {state}", d.accounts.len());
        for a in &d.accounts {
            let kind = serde_json::to_value(a.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_uppercase))
                .unwrap_or_default();
            let algo = a
                .algorithm
                .and_then(|x| serde_json::to_value(x).ok())
                .and_then(|v| v.as_str().map(str::to_uppercase))
                .unwrap_or_default();
            let mut line = format!("    {}  {kind} {algo}", a.name);
            if let Some(d) = a.digits {
                let _ = write!(line, " {d} digits");
            }
            if let Some(p) = a.period {
                let _ = write!(line, " {p} s");
            }
            if a.touch == Some(true) {
                line.push_str("  touch");
            }
            let _ = writeln!(s, "{line}");
        }
        if let Some(e) = &d.error {
            let _ = writeln!(s, "  error: {e}");
        }
    }
    s
}

/// The HID-only lines of `devices`.
pub fn render_hid(keys: &[HidKeyReport]) -> String {
    let mut s = String::new();
    for k in keys {
        let what = match k.interface {
            "otp" => "OTP slots over USB HID (keyboard interface)",
            _ => "FIDO2 over USB HID",
        };
        let _ = writeln!(s, "{}  {what}  {}", k.name, k.path);
        if let Some(e) = &k.error {
            let _ = writeln!(s, "  error: {e}");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tapcred_testkit::virtual_yubikey::{VirtualOtpHid, VirtualYubiKey, VykConfig};

    use super::*;
    use crate::token::otp::hid::HidInterface;
    use crate::token::transport::{FeatureReport, FeatureReportTransport};

    #[derive(Clone)]
    struct Hid(Arc<Mutex<VirtualOtpHid>>);

    impl FeatureReportTransport for Hid {
        fn get_feature(&mut self) -> Result<FeatureReport> {
            self.0
                .lock()
                .unwrap()
                .get_feature()
                .ok_or_else(|| Error::token("removed"))
        }
        fn set_feature(&mut self, r: &FeatureReport) -> Result<()> {
            self.0.lock().unwrap().set_feature(r);
            Ok(())
        }
    }

    struct Keys(Vec<(String, Hid)>);

    impl OtpHidBackend for Keys {
        fn interfaces(&self) -> Result<Vec<HidInterface>> {
            Ok(self
                .0
                .iter()
                .map(|(p, _)| HidInterface {
                    path: p.clone(),
                    product_id: 0x0407,
                })
                .collect())
        }
        fn open(&self, path: &str) -> Result<Box<dyn FeatureReportTransport>> {
            let (_, h) = self.0.iter().find(|(p, _)| p == path).unwrap();
            Ok(Box::new(h.clone()))
        }
    }

    fn otp_key(serial: u32) -> Hid {
        let k = VirtualYubiKey::new(VykConfig::new().serial(serial));
        Hid(Arc::new(Mutex::new(k.otp_hid())))
    }

    #[test]
    fn keys_reachable_only_over_hid_are_listed() {
        let otp = Keys(vec![
            ("/dev/hidraw1".into(), otp_key(1111)),
            ("/dev/hidraw2".into(), otp_key(2222)),
        ]);
        let fido = vec![Fido2Interface {
            path: "/dev/hidraw3".into(),
            product: "Security Key NFC by Yubico".into(),
            vid: 0x1050,
            pid: 0x0120,
        }];
        // 2222 is also on PC/SC (listed there): only 1111's OTP interface and the FIDO key.
        let (keys, errors) = list_hid_keys(&otp, Ok(fido), &[2222]);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(keys.len(), 2, "{keys:?}");
        assert_eq!(keys[0].name, "YubiKey 1111");
        assert_eq!((keys[0].interface, keys[0].serial), ("otp", Some(1111)));
        assert_eq!(keys[1].interface, "fido");
        assert!(
            keys[1].name.contains("Security Key NFC by Yubico"),
            "{}",
            keys[1].name
        );
        let text = render_hid(&keys);
        assert!(
            text.contains(
                "YubiKey 1111  OTP slots over USB HID (keyboard interface)  /dev/hidraw1"
            ),
            "{text}"
        );
        assert!(text.contains("FIDO2 over USB HID  /dev/hidraw3"), "{text}");
        let json = serde_json::to_value(&keys[1]).unwrap();
        assert_eq!(json["transport"], "hid");
        // HID that cannot be used is reported, not fatal.
        let (keys, errors) = list_hid_keys(&Keys(vec![]), Err(Error::token("no hidapi")), &[]);
        assert!(keys.is_empty());
        assert_eq!(errors, vec!["FIDO over USB HID: no hidapi".to_owned()]);
    }
}
