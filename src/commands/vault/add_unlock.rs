//! `vault add-unlock`: another OTP slot or FIDO2 key opens the vault too (a backup key).

use std::io::Write;

use super::open::{Unlocked, existing, unlock_with};
use super::unlock_spec::{UnlockSpec, parse_unlock};
use super::{store, write_line};
use crate::commands::Ctx;
use crate::error::{Error, Result};
use crate::token::pcsc::PcscBackend;
use crate::vault::fido2::{self, UvMode};
use crate::vault::unlock::{enroll, parse_otp_id};
use crate::vault::{OtpSlotUnlocker, Unlocker, VaultStore};

/// The one FIDO2 key plugged in, to enroll (`--serial` chooses among YubiKeys for OTP only).
pub(super) fn fido2_to_enroll(
    mode: UvMode,
    serial: Option<u32>,
    ctx: &Ctx<'_>,
) -> Result<fido2::Fido2Unlocker> {
    if serial.is_some() {
        return Err(Error::usage(
            "--serial chooses among YubiKeys for an OTP unlocker; with --unlock fido2 plug in only the FIDO2 key to use",
        ));
    }
    fido2::connect_for_enroll(mode, ctx.env)
}

/// `vault add-unlock --unlock otp[:SLOT] [--serial N]`: another YubiKey (or another slot)
/// opens the vault too — a backup key. The vault is opened with an unlocker already in it
/// (any of its keys that is plugged in), the new one answers a fresh challenge, the data key
/// is wrapped for it, the vault written atomically and re-opened with the new unlocker.
pub fn add_unlock(
    unlock_spec: &str,
    serial: Option<u32>,
    ctx: &Ctx<'_>,
    out: &mut dyn Write,
) -> Result<i32> {
    let slot = match parse_unlock(unlock_spec)? {
        UnlockSpec::Otp(slot) => slot,
        UnlockSpec::Fido2(mode) => return add_unlock_fido2(mode, serial, ctx, out),
    };
    let store = store(ctx)?;
    let lock = store.lock()?;
    let file = existing(&lock, &store)?;
    let backend = PcscBackend::new();
    // Which key is the new one (its connection is let go at once: opening the vault needs
    // the readers, and a held connection makes the other key's reader busy).
    let (new_id, new_serial) = {
        let u = OtpSlotUnlocker::connect(&backend, serial, slot).map_err(|e| match serial {
            None => Error::new(
                e.kind,
                format!(
                    "{}; with several YubiKeys plugged in, name the new one with --serial N",
                    e.message()
                ),
            ),
            Some(_) => e,
        })?;
        let id = u.id();
        let key_serial = parse_otp_id(&id).and_then(|(s, _)| s);
        (id, key_serial)
    };
    if file.unlocker_descs().any(|d| d.id == new_id) {
        return Err(Error::usage(format!(
            "{new_id} already unlocks the vault {}; plug in the backup YubiKey as well and name it with --serial N (or use the other slot, --unlock otp:1)",
            store.path().display()
        )));
    }
    let mut u = unlock_with(&file, None, ctx.env, ctx.ui)?;
    let mut new = OtpSlotUnlocker::connect(&backend, new_serial.or(serial), slot)?;
    if new.id() != new_id {
        return Err(Error::token(format!(
            "the YubiKey changed while adding it ({new_id} became {}); run again with one backup key plugged in, or with --serial N",
            new.id()
        )));
    }
    let (desc, output) = enroll(&mut new, ctx.ui)?;
    add_and_confirm(&mut u, desc, &output, &lock, &store, out)
}

/// Add the enrolled unlocker to the opened vault, write it, and check that the new
/// unlocker alone opens what was written.
fn add_and_confirm(
    u: &mut Unlocked,
    desc: crate::vault::UnlockerDesc,
    output: &crate::vault::UnlockOutput,
    lock: &crate::vault::store::WriteLock<'_>,
    store: &VaultStore,
    out: &mut dyn Write,
) -> Result<i32> {
    let new_id = desc.id.clone();
    let kind = desc.kind;
    u.vault.add_unlocker(desc, output.expose())?;
    lock.write(&u.vault)?;
    let back = existing(lock, store)?;
    back.open(&new_id, output.expose())?;
    write_line(
        out,
        &format!(
            "{new_id} ({}) now unlocks the vault {} too; it has {} unlockers",
            kind.label(),
            store.path().display(),
            back.unlocker_descs().count()
        ),
    )?;
    Ok(0)
}

/// `vault add-unlock --unlock fido2[:pin]`: open the vault with an unlocker it has (an OTP
/// slot, or a FIDO2 key), then make a credential on the FIDO2 key plugged in. When a FIDO2
/// key opened the vault, the new key must be another one: tapcred waits for the swap
/// (unplug, plug in the new key) before making the credential.
fn add_unlock_fido2(
    mode: UvMode,
    serial: Option<u32>,
    ctx: &Ctx<'_>,
    out: &mut dyn Write,
) -> Result<i32> {
    if serial.is_some() {
        return Err(Error::usage(
            "--serial chooses among YubiKeys for an OTP unlocker; with --unlock fido2 plug in only the FIDO2 key to use",
        ));
    }
    let store = store(ctx)?;
    let lock = store.lock()?;
    let file = existing(&lock, &store)?;
    // No FIDO2 key here: say so before asking an existing unlocker for a touch.
    drop(fido2_to_enroll(mode, None, ctx)?);
    let mut u = unlock_with(&file, None, ctx.env, ctx.ui)?;
    if u.id.starts_with("fido2:") {
        fido2::wait_for_swap(
            &mut || Ok(fido2::open_authenticator()?.is_some()),
            ctx.ui,
            std::time::Duration::from_secs(120),
        )?;
    }
    let mut new = fido2_to_enroll(mode, None, ctx)?;
    let (desc, output) = enroll(&mut new, ctx.ui)?;
    add_and_confirm(&mut u, desc, &output, &lock, &store, out)
}
