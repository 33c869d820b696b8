//! `vault init`, `vault add-seed`, `vault list`: the first vault commands (issue 10). The
//! vault is unlocked by a YubiKey OTP slot's HMAC-SHA1 challenge-response over PC/SC; see
//! `src/vault/` for the file format.

use std::io::{IsTerminal, Read, Write};

use zeroize::Zeroizing;

use crate::commands::Ctx;
use crate::engine;
use crate::error::{Error, Result};
use crate::profile::Step;
use crate::token::oath::PcscBackend;
use crate::token::otp::Slot;
use crate::token::software::parse_seed;
use crate::vault::fido2::{self, UvMode};
use crate::vault::unlock::{Unlocker, enroll, open_with};
use crate::vault::{EntryName, OpenVault, OtpSlotUnlocker, Secret, UnlockerKind, VaultStore};

/// Largest seed input read from stdin.
const MAX_SEED_INPUT: u64 = 4096;

fn store(ctx: &Ctx<'_>) -> Result<VaultStore> {
    VaultStore::default_path(ctx.env)
        .map(VaultStore::new)
        .ok_or_else(|| {
            Error::config(
                "no place for the vault: HOME is not set; set HOME, XDG_DATA_HOME or TAPCRED_VAULT",
            )
        })
}

fn write_line(out: &mut dyn Write, line: &str) -> Result<()> {
    writeln!(out, "{line}").map_err(|e| Error::io(format!("cannot write to stdout: {e}")))
}

/// What `--unlock SPEC` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnlockSpec {
    /// `otp`, `otp:1`, `otp:2` (default slot 2).
    Otp(Slot),
    /// `fido2` (touch only) or `fido2:pin` (PIN and touch on every unlock).
    Fido2(UvMode),
}

/// `--unlock otp`, `otp:1`, `otp:2` (default slot 2), `fido2`, `fido2:pin`.
pub fn parse_unlock(s: &str) -> Result<UnlockSpec> {
    let s = s.trim();
    let (kind, rest) = match s.split_once(':') {
        Some((k, r)) => (k, Some(r)),
        None => (s, None),
    };
    match kind.to_ascii_lowercase().as_str() {
        "otp" => Slot::parse(rest.unwrap_or("2")).map(UnlockSpec::Otp).ok_or_else(|| {
            Error::usage(format!(
                "--unlock {s}: the OTP slot is 1 or 2 (otp:1, otp:2; default otp = slot 2)"
            ))
        }),
        "fido2" => fido2::parse_mode(rest).map(UnlockSpec::Fido2).ok_or_else(|| {
            Error::usage(format!(
                "--unlock {s}: use fido2 (touch only) or fido2:pin (PIN and touch on every unlock)"
            ))
        }),
        _ => Err(Error::usage(format!(
            "--unlock {s}: unknown unlocker; use otp, otp:SLOT (slot 1 or 2), fido2 or fido2:pin"
        ))),
    }
}

/// The device for a new unlocker: the OTP slot of the YubiKey with `serial` (or the only
/// one), or the one FIDO2 authenticator plugged in.
pub fn new_unlocker(
    spec: UnlockSpec,
    serial: Option<u32>,
    ctx: &Ctx<'_>,
) -> Result<Box<dyn Unlocker>> {
    match spec {
        UnlockSpec::Otp(slot) => Ok(Box::new(OtpSlotUnlocker::connect(
            &PcscBackend::new(),
            serial,
            slot,
        )?)),
        UnlockSpec::Fido2(mode) => {
            if serial.is_some() {
                return Err(Error::usage(
                    "--serial chooses among YubiKeys for an OTP unlocker; with --unlock fido2 plug in only the FIDO2 key to use",
                ));
            }
            Ok(Box::new(fido2::connect_for_enroll(mode, ctx.env)?))
        }
    }
}

/// `vault init --unlock otp[:SLOT] [--serial N]`.
pub fn init(unlock: &str, serial: Option<u32>, ctx: &Ctx<'_>, out: &mut dyn Write) -> Result<i32> {
    let spec = parse_unlock(unlock)?;
    let store = store(ctx)?;
    let lock = store.lock()?;
    if lock.read()?.is_some() {
        return Err(Error::usage(format!(
            "a vault already exists at {}; add entries with `tapcred vault add-seed`, or move it away to start over",
            store.path().display()
        )));
    }
    let mut u = new_unlocker(spec, serial, ctx)?;
    let (desc, output) = enroll(u.as_mut(), ctx.ui)?;
    let id = desc.id.clone();
    let kind = desc.kind;
    let vault = OpenVault::create(desc, output.expose())?;
    lock.write(&vault)?;
    write_line(
        out,
        &format!(
            "vault created at {}, unlocked by {id} ({})",
            store.path().display(),
            kind.label()
        ),
    )?;
    Ok(0)
}

/// Where the seed comes from: `--seed-env NAME`, else stdin when it is not a terminal, else a
/// no-echo prompt. Never argv.
fn read_seed(
    seed_env: Option<&str>,
    serial: &str,
    ctx: &Ctx<'_>,
) -> Result<(Zeroizing<String>, String)> {
    if let Some(name) = seed_env {
        let v = ctx
            .env
            .var(name)
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| {
                Error::config(format!(
                    "--seed-env {name}: ${name} is not set or empty; export the seed in it"
                ))
            })?;
        return Ok((Zeroizing::new(v), format!("${name}")));
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut text = Zeroizing::new(String::new());
        stdin
            .lock()
            .take(MAX_SEED_INPUT)
            .read_to_string(&mut text)
            .map_err(|e| Error::io(format!("cannot read the seed from stdin ({e})")))?;
        if text.trim().is_empty() {
            return Err(Error::config(
                "no seed on stdin; pipe the base32 seed (or otpauth://totp/ URI) in, or use --seed-env NAME",
            ));
        }
        return Ok((text, "stdin".to_owned()));
    }
    match ctx.ui.ask_secret(&format!(
        "Seed for {serial} (base32 or otpauth://totp/ URI): "
    ))? {
        Some(s) => {
            use secrecy::ExposeSecret;
            Ok((
                Zeroizing::new(s.expose_secret().to_owned()),
                "the terminal".to_owned(),
            ))
        }
        None => Err(Error::config(
            "no terminal to ask for the seed; pipe it on stdin or use --seed-env NAME",
        )),
    }
}

/// `vault add-seed --profile P [--seed-env NAME] [--serial N]`: the seed of P's `mfa_serial`
/// into the vault (added or replaced), after one unlock.
pub fn add_seed(
    profile: &str,
    seed_env: Option<&str>,
    serial: Option<u32>,
    ctx: &Ctx<'_>,
    out: &mut dyn Write,
) -> Result<i32> {
    let resolved = engine::load_profile(profile, ctx.env)?;
    let mfa_serial = resolved
        .steps
        .iter()
        .find_map(|s| match s {
            Step::SessionToken { mfa, .. } => Some(mfa.serial.clone()),
            Step::AssumeRole(r) => r.mfa.as_ref().map(|m| m.serial.clone()),
        })
        .ok_or_else(|| {
            Error::config(format!(
                "profile \"{profile}\" has no mfa_serial anywhere in its chain, so there is no seed to keep; add mfa_serial to the profile"
            ))
        })?;
    let store = store(ctx)?;
    if store.read()?.is_none() {
        return Err(Error::config(format!(
            "no vault at {}; create one with `tapcred vault init --unlock otp`",
            store.path().display()
        )));
    }
    let (text, origin) = read_seed(seed_env, &mfa_serial, ctx)?;
    let totp = parse_seed(&text, &format!("the seed from {origin}"))?;
    let secret = Secret::TotpSeed(Zeroizing::new(totp.secret().as_bytes().to_vec()));
    drop(totp);
    let lock = store.lock()?;
    let file = lock.read()?.ok_or_else(|| {
        Error::config(format!(
            "the vault at {} disappeared",
            store.path().display()
        ))
    })?;
    let mut vault = unlock(&file, serial, ctx)?;
    vault.put(EntryName::seed(mfa_serial.clone()), &secret)?;
    lock.write(&vault)?;
    write_line(
        out,
        &format!(
            "seed for {mfa_serial} (profile \"{profile}\") stored in the vault {}",
            store.path().display()
        ),
    )?;
    Ok(0)
}

/// Open the vault with the first OTP unlocker in its header whose YubiKey is plugged in.
fn unlock(file: &crate::vault::VaultFile, serial: Option<u32>, ctx: &Ctx<'_>) -> Result<OpenVault> {
    let mut tried = Vec::new();
    for d in file
        .unlocker_descs()
        .filter(|d| d.kind == UnlockerKind::Fido2HmacSecret)
    {
        match fido2::connect_unlocker(d, ctx.env) {
            Ok(Some(mut u)) => match open_with(file, u.as_mut(), ctx.ui) {
                Ok(v) => return Ok(v),
                Err(e) => tried.push(format!("{}: {e}", d.id)),
            },
            Ok(None) => tried.push(format!("{}: no FIDO2 authenticator plugged in", d.id)),
            Err(e) => tried.push(format!("{}: {e}", d.id)),
        }
    }
    for d in file
        .unlocker_descs()
        .filter(|d| d.kind == UnlockerKind::OtpHmacSha1)
    {
        // Ids are otp:SERIAL:SLOT (otp:unknown:SLOT for a key hiding its serial).
        let mut parts = d.id.split(':').skip(1);
        let key_serial = parts.next().and_then(|s| s.parse::<u32>().ok());
        let Some(slot) = parts.next().and_then(Slot::parse) else {
            continue;
        };
        if serial.is_some() && key_serial != serial {
            continue;
        }
        match OtpSlotUnlocker::connect(&PcscBackend::new(), key_serial, slot) {
            Ok(mut u) => return open_with(file, &mut u, ctx.ui),
            Err(e) => tried.push(format!("{}: {e}", d.id)),
        }
    }
    Err(Error::token(format!(
        "no YubiKey that unlocks the vault is plugged in (tried {}); plug in one of its keys",
        if tried.is_empty() {
            "none".to_owned()
        } else {
            tried.join("; ")
        }
    )))
}

/// `vault list`: unlockers and entry names; no secret, no touch.
pub fn list(json: bool, ctx: &Ctx<'_>, out: &mut dyn Write) -> Result<i32> {
    let store = store(ctx)?;
    let Some(file) = store.read()? else {
        return Err(Error::config(format!(
            "no vault at {}; create one with `tapcred vault init --unlock otp`",
            store.path().display()
        )));
    };
    if json {
        let doc = serde_json::json!({
            "path": store.path(),
            "unlockers": file.unlocker_descs().map(|d| serde_json::json!({
                "id": d.id, "kind": d.kind.label()
            })).collect::<Vec<_>>(),
            "entries": file.entry_names().map(|e| serde_json::json!({
                "kind": e.kind.label(), "name": e.name
            })).collect::<Vec<_>>(),
        });
        write_line(out, &doc.to_string())?;
        return Ok(0);
    }
    write_line(out, &format!("vault {}", store.path().display()))?;
    for d in file.unlocker_descs() {
        write_line(out, &format!("unlocker  {}  {}", d.id, d.kind.label()))?;
    }
    for e in file.entry_names() {
        write_line(out, &format!("{:<10}{}", e.kind.label(), e.name))?;
    }
    Ok(0)
}
