//! `vault init`: a new vault, unlocked by the first unlocker.

use std::io::Write;

use super::add_unlock::fido2_to_enroll;
use super::unlock_spec::{UnlockSpec, parse_unlock};
use super::{store, write_line};
use crate::commands::Ctx;
use crate::error::{Error, Result};
use crate::token::pcsc::PcscBackend;
use crate::vault::unlock::enroll;
use crate::vault::{OpenVault, OtpSlotUnlocker, Unlocker};

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
    let mut u: Box<dyn Unlocker> = match spec {
        UnlockSpec::Otp(slot) => {
            Box::new(OtpSlotUnlocker::connect(&PcscBackend::new(), serial, slot)?)
        }
        UnlockSpec::Fido2(mode) => Box::new(fido2_to_enroll(mode, serial, ctx)?),
    };
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
