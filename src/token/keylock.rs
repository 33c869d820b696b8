//! One process at a time on a USB HID key. Linux's hidraw hands every input report to every
//! process that has the device open, and the OTP interface's feature reports drive one state
//! machine shared by all: two programs talking to one key at once read each other's answers
//! or cut each other's exchanges short. So each exchange with a HID key holds an exclusive,
//! cross-process lock named after the key's HID path: a lock file in `keys/` of tapcred's
//! private per-user cache folder. The kernel releases it when its holder exits or is killed,
//! so a dead process never blocks the key. Lock files are never deleted.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::env::EnvLookup;
use crate::error::{Error, Result};
use crate::platform::fs as pfs;
use crate::platform::lock_file::{self, LockFail};

/// How long a process waits for another one using the key: long enough for two others
/// each waiting out a full touch.
pub const WAIT: Duration = Duration::from_secs(90);

/// The folder for key locks (`keys/` in tapcred's cache folder); None when no base is known.
pub fn default_dir(env: &dyn EnvLookup) -> Option<PathBuf> {
    crate::platform::locations::cache_dir(env).map(|d| d.join("keys"))
}

/// Holds the key until dropped. Without a file no folder for locks could be made; the
/// exchange then runs unarbitrated (logged).
#[must_use = "the key is released when the lock is dropped"]
#[derive(Debug)]
pub struct KeyLock {
    _file: Option<File>,
}

impl KeyLock {
    pub fn is_held(&self) -> bool {
        self._file.is_some()
    }
}

/// The lock file of the HID interface at `device_path` in `dir`.
pub fn lock_path(dir: &Path, device_path: &str) -> PathBuf {
    let h = Sha256::digest(device_path.as_bytes());
    dir.join(format!(
        "hid-{}.lock",
        data_encoding::HEXLOWER.encode(&h[..12])
    ))
}

/// Take the key at `device_path` (named `who` in messages), waiting at most `wait` for
/// another process using it.
pub fn lock(dir: Option<&Path>, device_path: &str, who: &str, wait: Duration) -> Result<KeyLock> {
    let Some(dir) = dir else {
        tracing::warn!(
            key = who,
            "no folder for key locks (HOME unset); not arbitrating the key"
        );
        return Ok(KeyLock { _file: None });
    };
    if let Err(e) = pfs::create_private_dir_all(dir) {
        tracing::warn!(key = who, dir = %dir.display(), error = %e, "cannot make the folder for key locks; not arbitrating the key");
        return Ok(KeyLock { _file: None });
    }
    let path = lock_path(dir, device_path);
    match lock_file::acquire(&path, wait) {
        Ok((file, _)) => Ok(KeyLock { _file: Some(file) }),
        Err(LockFail::TimedOut) => Err(Error::token(format!(
            "{who} stayed in use by another tapcred process for {} s (lock {}); let it finish (or stop it), then run again",
            wait.as_secs(),
            path.display()
        ))),
        Err(LockFail::Open(e) | LockFail::Lock(e)) => {
            tracing::warn!(key = who, lock = %path.display(), error = %e, "cannot take the key lock; not arbitrating the key");
            Ok(KeyLock { _file: None })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn one_holder_at_a_time_across_open_files_and_a_bounded_wait() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        let a = lock(Some(&keys), "/dev/hidraw3", "YubiKey 1", WAIT).unwrap();
        assert!(a.is_held());
        // Another open of the same lock (as another process would) waits, then gives up.
        let t = std::time::Instant::now();
        let e = lock(
            Some(&keys),
            "/dev/hidraw3",
            "YubiKey 1",
            Duration::from_millis(200),
        )
        .unwrap_err();
        assert!(t.elapsed() >= Duration::from_millis(200));
        assert_eq!(e.kind, crate::error::ErrorKind::Token);
        assert!(
            e.message()
                .starts_with("YubiKey 1 stayed in use by another tapcred process"),
            "{e}"
        );
        // Another key is not held up.
        let b = lock(
            Some(&keys),
            "/dev/hidraw4",
            "YubiKey 2",
            Duration::from_millis(10),
        )
        .unwrap();
        assert!(b.is_held());
        drop(a);
        let again = lock(
            Some(&keys),
            "/dev/hidraw3",
            "YubiKey 1",
            Duration::from_millis(10),
        )
        .unwrap();
        assert!(again.is_held());
        // No place for locks: the exchange still runs.
        assert!(
            !lock(None, "/dev/hidraw3", "YubiKey 1", WAIT)
                .unwrap()
                .is_held()
        );
    }

    #[test]
    fn threads_holding_the_lock_never_overlap() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Arc::new(dir.path().join("keys"));
        let inside = Arc::new(AtomicUsize::new(0));
        let overlaps = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..6)
            .map(|_| {
                let (keys, inside, overlaps) = (keys.clone(), inside.clone(), overlaps.clone());
                std::thread::spawn(move || {
                    for _ in 0..5 {
                        let _l = lock(Some(&keys), "/dev/hidraw9", "k", WAIT).unwrap();
                        if inside.fetch_add(1, Ordering::SeqCst) != 0 {
                            overlaps.fetch_add(1, Ordering::SeqCst);
                        }
                        std::thread::sleep(Duration::from_millis(2));
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(overlaps.load(Ordering::SeqCst), 0);
    }
}
