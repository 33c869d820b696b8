//! Cross-process locks: one `flock`-style exclusive lock per session key (single flight) and
//! per MFA serial (the step ledger). `std::fs::File::try_lock` is advisory and bound to the
//! open file description, so the kernel releases it when the holder exits or is killed; a
//! dead holder can never block anyone. Lock files are never deleted (deleting a lock file
//! while another process waits on it would split the lock in two).

use std::fs::File;
use std::path::{Path, PathBuf};

use super::{CacheKey, SessionCache, key::serial_hash};
use crate::error::{Error, Result};
use crate::platform::lock_file::{LockFail, acquire};
use crate::ui::Ui;

/// Holds a lock until dropped. A guard without a file means no lock directory was usable
/// (the cache warned once); it then serialises nothing across processes.
#[must_use = "the lock is released when the guard is dropped"]
pub struct LockGuard {
    file: Option<File>,
    path: Option<PathBuf>,
    /// This process created the lock file (it did not exist before).
    created: bool,
}

impl LockGuard {
    /// Whether a cross-process lock is actually held.
    pub fn is_held(&self) -> bool {
        self.file.is_some()
    }
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Release the lock and, if this process created the lock file, remove it: for a command
    /// that fails before doing anything (a config error), so it leaves no trace. Another
    /// process already waiting on the removed file may then run alongside a later one; that
    /// costs at most one extra code read (the serial lock and the step ledger still prevent
    /// reuse), and only happens when the first failed without reading a code.
    pub fn discard(mut self) {
        if self.created
            && let Some(p) = &self.path
        {
            let _ = std::fs::remove_file(p);
        }
        if let Some(f) = self.file.take() {
            let _ = f.unlock();
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Some(f) = self.file.take() {
            let _ = f.unlock();
        }
    }
}

impl std::fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockGuard")
            .field("path", &self.path)
            .finish()
    }
}

impl SessionCache {
    /// Exclusive cross-process lock for one session key (single flight: lock → re-check the
    /// cache → read code → STS → store → drop the guard). Waits at most the lock timeout
    /// (default 5 minutes), then fails with an Io error naming the lock file.
    pub fn lock(&self, key: &CacheKey, ui: &dyn Ui) -> Result<LockGuard> {
        self.lock_named(self.state_dir(ui), &format!("{}.lock", key.hex()))
    }

    /// Exclusive cross-process lock for one MFA serial, held around "plan the TOTP window →
    /// read the code → record the window" so no two processes pick the same window.
    pub fn lock_serial(&self, serial: &str, ui: &dyn Ui) -> Result<LockGuard> {
        // Beside the ledger it guards.
        self.lock_named(
            self.ledger_home(ui),
            &format!("serial-{}.lock", serial_hash(serial)),
        )
    }

    fn lock_named(&self, dir: Option<&Path>, name: &str) -> Result<LockGuard> {
        let Some(state) = dir else {
            return Ok(LockGuard {
                file: None,
                path: None,
                created: false,
            });
        };
        let path = state.join("locks").join(name);
        match acquire(&path, self.lock_timeout) {
            Ok((file, created)) => Ok(LockGuard {
                file: Some(file),
                path: Some(path),
                created,
            }),
            Err(LockFail::Open(e)) => Err(Error::io(format!(
                "cannot open lock file {} ({e}); check the permissions of {}",
                path.display(),
                state.display()
            ))),
            Err(LockFail::Lock(e)) => {
                Err(Error::io(format!("cannot lock {} ({e})", path.display())))
            }
            Err(LockFail::TimedOut) => Err(Error::io(format!(
                "gave up after {} s waiting for another tapcred process holding {}; if none is running (check `pgrep -a tapcred`), retry",
                self.lock_timeout.as_secs(),
                path.display()
            ))),
        }
    }
}
