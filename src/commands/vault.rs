//! `vault init`, `vault add-seed`, `vault list`: the first vault commands (issue 10). The
//! vault is unlocked by a YubiKey OTP slot's HMAC-SHA1 challenge-response over PC/SC; see
//! `src/vault/` for the file format.

use std::io::{IsTerminal, Read, Write};

use zeroize::Zeroizing;

use crate::commands::Ctx;
use crate::engine;
use crate::error::{Error, Result};
use crate::profile::Step;
use crate::token::otp::Slot;
use crate::token::pcsc::PcscBackend;
use crate::token::software::parse_seed;
use crate::vault::unlock::{enroll, open_with};
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

/// `--unlock otp`, `otp:1`, `otp:2` (default slot 2).
pub fn parse_unlock(s: &str) -> Result<Slot> {
    let s = s.trim();
    let (kind, slot) = s.split_once(':').unwrap_or((s, "2"));
    match kind.to_ascii_lowercase().as_str() {
        "otp" => Slot::parse(slot).ok_or_else(|| {
            Error::usage(format!(
                "--unlock {s}: the OTP slot is 1 or 2 (otp:1, otp:2; default otp = slot 2)"
            ))
        }),
        "fido2" => Err(Error::usage(
            "--unlock fido2: FIDO2 hmac-secret unlock is not available in this version of tapcred; use --unlock otp[:SLOT]",
        )),
        _ => Err(Error::usage(format!(
            "--unlock {s}: unknown unlocker; use otp or otp:SLOT (slot 1 or 2)"
        ))),
    }
}

/// `vault init --unlock otp[:SLOT] [--serial N]`.
pub fn init(unlock: &str, serial: Option<u32>, ctx: &Ctx<'_>, out: &mut dyn Write) -> Result<i32> {
    let slot = parse_unlock(unlock)?;
    let store = store(ctx)?;
    let lock = store.lock()?;
    if lock.read()?.is_some() {
        return Err(Error::usage(format!(
            "a vault already exists at {}; add entries with `tapcred vault add-seed`, or move it away to start over",
            store.path().display()
        )));
    }
    let mut u = OtpSlotUnlocker::connect(&PcscBackend::new(), serial, slot)?;
    let (desc, output) = enroll(&mut u, ctx.ui)?;
    let id = desc.id.clone();
    let vault = OpenVault::create(desc, output.expose())?;
    lock.write(&vault)?;
    write_line(
        out,
        &format!(
            "vault created at {}, unlocked by {id} ({})",
            store.path().display(),
            UnlockerKind::OtpHmacSha1.label()
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
