//! `--to file`: the seed in a new private file, and taking it out again on undo.

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// A new private file (0600 from its creation, never replacing anything, never through a
/// link) holding `data`, synced.
pub(super) fn write_seed_file(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut f = crate::platform::fs::create_new_private(path)?;
    f.write_all(data)?;
    f.sync_all()
}

pub(super) fn remove_seed_file(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("cannot remove {}: {e}", path.display())).with_source(e)),
    }
}
