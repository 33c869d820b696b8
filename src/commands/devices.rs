//! `devices`: list YubiKeys and their OATH accounts (no code is calculated, no counter moves).

use std::fmt::Write as _;
use std::io::Write;

use crate::commands::Ctx;
use crate::error::{Error, Result};
use crate::token::oath::{self, DeviceReport};

pub fn run(json: bool, ctx: &Ctx<'_>, out: &mut dyn Write) -> Result<i32> {
    let devices = oath::list_devices(ctx.ui)?;
    let text = if json {
        let mut s =
            serde_json::to_string_pretty(&devices).map_err(|e| Error::internal(e.to_string()))?;
        s.push('\n');
        s
    } else {
        render(&devices)
    };
    out.write_all(text.as_bytes())
        .map_err(|e| Error::io(format!("cannot write to stdout: {e}")))?;
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
