//! Devices: the PC/SC service and the YubiKeys it sees, keys reachable over USB HID only, and
//! the udev rule.

use super::report::{Doctor, YubiKeyReport};
use crate::env::EnvLookup;
use crate::token::oath::{self, DeviceReport};
use crate::ui::Headless;

pub(super) fn device_checks(
    d: &mut Doctor,
    ui: &Headless,
    env: &dyn EnvLookup,
) -> Vec<YubiKeyReport> {
    use crate::token::device::Backend;
    let backend = crate::token::pcsc::PcscBackend::new();
    let readers = match backend.readers() {
        Ok(r) => r,
        Err(e) => {
            d.note("pcsc", e.message(), None);
            return Vec::new();
        }
    };
    if readers.is_empty() {
        d.note(
            "pcsc",
            "PC/SC service running, no reader (no YubiKey plugged in)",
            Some("plug in the YubiKey".to_owned()),
        );
        return Vec::new();
    }
    d.ok(
        "pcsc",
        format!("PC/SC service running, readers: {}", readers.join(", ")),
    );
    let devices: Vec<DeviceReport> = match oath::list_devices_with(&backend, env, ui) {
        Ok(v) => v,
        Err(e) => {
            // What the profile needs is judged by the token check; here it is information.
            d.note("yubikey", e.message(), None);
            return Vec::new();
        }
    };
    if devices.is_empty() {
        d.note(
            "yubikey",
            "no YubiKey among the readers",
            Some("plug in the YubiKey".to_owned()),
        );
    }
    let mut out = Vec::new();
    for k in devices {
        let serial = k
            .serial
            .map(|s| s.to_string())
            .unwrap_or_else(|| "(serial hidden)".into());
        let names: Vec<String> = k.accounts.iter().map(|a| a.name.clone()).collect();
        let firmware = k.firmware.clone().unwrap_or_else(|| "?".into());
        let msg = if k.locked {
            format!(
                "YubiKey {serial}, firmware {firmware}: OATH password set, accounts not listed (set TAPCRED_OATH_PASSWORD to list them)"
            )
        } else {
            format!(
                "YubiKey {serial}, firmware {firmware}: {} OATH account(s){}{}",
                names.len(),
                if names.is_empty() { "" } else { ": " },
                names.join(", ")
            )
        };
        match &k.error {
            Some(e) => d.note("yubikey", format!("{msg}; {e}"), None),
            None => d.ok("yubikey", msg),
        }
        out.push(YubiKeyReport {
            serial: k.serial,
            firmware: k.firmware,
            reader: k.reader,
            oath_accounts: names,
            locked: k.locked,
        });
    }
    out
}

/// Keys reachable only over USB HID (FIDO-only keys, keys with CCID off): information, for
/// the vault's HID unlockers.
pub(super) fn hid_check(d: &mut Doctor, over_pcsc: &[YubiKeyReport]) {
    let serials: Vec<u32> = over_pcsc.iter().filter_map(|k| k.serial).collect();
    let (keys, errors) = crate::commands::devices::real_hid_keys(&serials);
    for k in keys {
        let what = if k.interface == "otp" {
            "OTP slots"
        } else {
            "FIDO2"
        };
        match k.error {
            Some(e) => d.note("hid", format!("{} at {}: {e}", k.name, k.path), None),
            None => d.ok(
                "hid",
                format!("{} reachable over USB HID ({what}) at {}", k.name, k.path),
            ),
        }
    }
    for e in errors {
        d.note("hid", e, None);
    }
}

/// Linux: tapcred's udev rule (for the HID interfaces; the OATH path through pcscd needs none).
pub(super) fn udev_check(d: &mut Doctor) {
    if !cfg!(target_os = "linux") {
        return;
    }
    let dirs = [
        "/etc/udev/rules.d",
        "/usr/lib/udev/rules.d",
        "/lib/udev/rules.d",
    ];
    let found = dirs.iter().find_map(|dir| {
        let entries = std::fs::read_dir(dir).ok()?;
        entries.flatten().map(|e| e.path()).find(|p| {
            p.extension().is_some_and(|x| x == "rules")
                && std::fs::read_to_string(p).is_ok_and(|t| {
                    t.lines().any(|l| {
                        !l.trim_start().starts_with('#')
                            && l.contains("\"1050\"")
                            && l.contains("hidraw")
                    }) || p
                        .file_name()
                        .is_some_and(|n| n == "70-tapcred-yubikey.rules")
                })
        })
    });
    match found {
        Some(p) => d.ok("udev", format!("YubiKey udev rule present: {}", p.display())),
        None => d.note(
            "udev",
            "no YubiKey udev rule in /etc/udev/rules.d or /usr/lib/udev/rules.d (the OATH path through pcscd does not need one; the HID interfaces do)",
            None,
        ),
    }
}
