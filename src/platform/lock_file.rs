//! An exclusive lock on a file, waited for with a deadline: the kernel's advisory lock
//! (`File::try_lock`, bound to the open file description), so a holder that exits or is
//! killed releases it. Used for session keys and serials (cache) and for devices (token).

use std::fs::{File, TryLockError};
use std::path::Path;
use std::time::Duration;

/// Why [`acquire`] holds no lock.
#[derive(Debug)]
pub enum LockFail {
    /// The lock file could not be created or opened.
    Open(std::io::Error),
    Lock(std::io::Error),
    /// Another holder kept it for the whole wait.
    TimedOut,
}

/// An exclusive lock on the file at `path` (created private if missing): the file, and
/// whether this process created it. Waits at most `timeout` for another holder.
pub fn acquire(path: &Path, timeout: Duration) -> std::result::Result<(File, bool), LockFail> {
    let open = |create_new: bool| super::fs::open_lock_file(path, create_new);
    // Create it, or open the existing one; if it vanished in between (a `discard`),
    // create it again.
    let mut attempt = 0;
    let (file, created) = loop {
        attempt += 1;
        let r = match open(true) {
            Ok(f) => Ok((f, true)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                open(false).map(|f| (f, false))
            }
            Err(e) => Err(e),
        };
        match r {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && attempt < 5 => continue,
            r => break r,
        }
    }
    .map_err(LockFail::Open)?;
    match file.try_lock() {
        Ok(()) => return Ok((file, created)),
        Err(TryLockError::WouldBlock) => {}
        Err(TryLockError::Error(e)) => return Err(LockFail::Lock(e)),
    }
    // Contended: block in the kernel on a helper thread (woken the moment the holder
    // unlocks or dies), bounded by the timeout. On a timeout the thread is left blocked;
    // the caller fails and the process exits.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = file.lock().map(|()| file);
        let _ = tx.send(r);
    });
    match rx.recv_timeout(timeout) {
        Ok(Ok(file)) => Ok((file, created)),
        Ok(Err(e)) => Err(LockFail::Lock(e)),
        Err(_) => Err(LockFail::TimedOut),
    }
}
