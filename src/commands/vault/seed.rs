//! `vault add-seed`: a profile's TOTP seed into the vault, read from an environment variable,
//! stdin or a no-echo prompt (never argv).

use std::io::{IsTerminal, Read, Write};

use zeroize::Zeroizing;

use super::open::unlock;
use super::{store, write_line};
use crate::commands::Ctx;
use crate::engine;
use crate::error::{Error, Result};
use crate::profile::Step;
use crate::profile::{AwsFiles, Profiles};
use crate::token::software::parse_seed;
use crate::vault::{EntryName, Secret};

/// Largest seed input read from stdin.
const MAX_SEED_INPUT: u64 = 4096;

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
                    "--seed-env {name}: {} is not set or empty; set the seed in it",
                    crate::platform::words::env_var(name)
                ))
            })?;
        return Ok((Zeroizing::new(v), crate::platform::words::env_var(name)));
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
    let mfa_serial = mfa_serial_of(profile, ctx)?;
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

/// The `mfa_serial` of a profile's chain (the first step that has one).
pub(super) fn mfa_serial_of(profile: &str, ctx: &Ctx<'_>) -> Result<String> {
    // The profile's own mfa_serial needs no resolution of its chain (whose keys may be in
    // the vault); else the first one along the chain.
    let profiles = Profiles::load(&AwsFiles::from_env(ctx.env))?;
    if let Some(serial) = profiles.get(profile, "mfa_serial") {
        return Ok(serial.to_owned());
    }
    let resolved = engine::load_profile(profile, ctx.env)?;
    resolved
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
        })
}
