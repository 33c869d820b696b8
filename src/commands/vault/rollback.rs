//! `vault accept-rollback`: an older vault put back on purpose becomes the newest again.

use std::io::Write;

use super::open::{existing, no_vault, unlock};
use super::{store, write_line};
use crate::commands::Ctx;
use crate::error::Result;

/// `vault accept-rollback`: the vault on disk is older than the newest generation tapcred
/// has seen (an old copy put back, on purpose). One unlock proves it is a vault this
/// user's key opens (its MAC checks); it is then written again above every generation seen,
/// so it becomes the newest.
pub fn accept_rollback(serial: Option<u32>, ctx: &Ctx<'_>, out: &mut dyn Write) -> Result<i32> {
    let store = store(ctx)?;
    let lock = store.lock()?;
    let file = store
        .read_accepting_rollback()?
        .ok_or_else(|| no_vault(&store))?;
    let seen = store.seen_generation();
    if seen.is_none_or(|s| file.generation() >= s) {
        write_line(
            out,
            &format!(
                "the vault {} is the newest tapcred has seen (generation {}); nothing to accept",
                store.path().display(),
                file.generation()
            ),
        )?;
        return Ok(0);
    }
    let vault = unlock(&file, serial, ctx)?;
    lock.write(&vault)?;
    let now = existing(&lock, &store)?;
    write_line(
        out,
        &format!(
            "accepted the vault {} (generation {}, older than generation {} seen before); it is now generation {}",
            store.path().display(),
            file.generation(),
            seen.unwrap_or_default(),
            now.generation()
        ),
    )?;
    Ok(0)
}
