//! The vault file on disk: `$TAPCRED_VAULT`, else `$XDG_DATA_HOME/tapcred/vault`, else
//! `~/.local/share/tapcred/vault`.
//!
//! - Reads refuse anything but a private regular file owned by this user (a symlink planted
//!   at the path is not followed) and anything larger than [`MAX_FILE_LEN`]
//!   (`platform::fs::read_private_file`); the directory is created private.
//! - Writes are atomic: a temp file in the same directory (created readable and writable by
//!   this user only — `tempfile` creates it 0600 on Unix), written, fsynced, renamed over the
//!   vault, then the directory is fsynced. A crash leaves the old vault or the new one.
//! - Writers take an exclusive lock on `vault.lock` beside the file (advisory, released by
//!   the kernel when the holder exits) and re-read the vault under it, so two `vault add-seed`
//!   runs at once both land. Readers take no lock: a rename is atomic.
//!
//! OS-specific parts live in `platform::fs`; nothing here has a `cfg`.

use std::fs::{File, TryLockError};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::VaultError;
use super::format::{MAX_FILE_LEN, OpenVault, VaultFile};
use crate::platform::fs::{self as pfs, ReadError};
use crate::token::EnvLookup;

/// The env var naming the vault file (tests, several vaults).
pub const VAULT_ENV: &str = "TAPCRED_VAULT";

/// How long a writer waits for another writer (which may be waiting for a touch).
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(5 * 60);

#[derive(Debug, Clone)]
pub struct VaultStore {
    path: PathBuf,
    lock_timeout: Duration,
}

impl VaultStore {
    pub fn new(path: impl Into<PathBuf>) -> VaultStore {
        VaultStore {
            path: path.into(),
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
        }
    }

    pub fn with_lock_timeout(mut self, t: Duration) -> Self {
        self.lock_timeout = t;
        self
    }

    /// `$TAPCRED_VAULT`, else `vault` in tapcred's data directory
    /// ([`crate::platform::locations::data_dir`]: `$XDG_DATA_HOME/tapcred` when absolute,
    /// else `~/.local/share/tapcred`, macOS `~/Library/Application Support/tapcred`, Windows
    /// `%APPDATA%\tapcred`); None when none is known.
    pub fn default_path(env: &dyn EnvLookup) -> Option<PathBuf> {
        if let Some(p) = env.var(VAULT_ENV).filter(|p| !p.is_empty()) {
            return Some(PathBuf::from(p));
        }
        crate::platform::locations::data_dir(env).map(|d| d.join("vault"))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock_path(&self) -> PathBuf {
        let mut name = self
            .path
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_else(|| "vault".into());
        name.push(".lock");
        self.path.with_file_name(name)
    }

    /// Read and parse the vault; `Ok(None)` when there is none yet. The file must be as
    /// tapcred writes it: a regular file (not a link), owned by this user, private.
    pub fn read(&self) -> Result<Option<VaultFile>, VaultError> {
        let shown = self.path.display();
        let buf = match pfs::read_private_file(&self.path, MAX_FILE_LEN as u64) {
            Ok(b) => b,
            Err(ReadError::NotFound) => return Ok(None),
            Err(ReadError::TooLarge(_)) => {
                return Err(VaultError::Damaged(format!(
                    "{shown}: it is larger than any vault tapcred writes"
                )));
            }
            Err(e @ ReadError::NotRegular(_)) => {
                return Err(VaultError::Io(format!(
                    "the vault {shown}: {e}; move it away and restore the vault file"
                )));
            }
            Err(e @ (ReadError::Foreign(_) | ReadError::Shared(_))) => {
                return Err(VaultError::Io(format!(
                    "the vault {shown}: {e}; it must be owned by you and private to you (chmod 600)"
                )));
            }
            Err(ReadError::Io(e)) => {
                return Err(VaultError::Io(format!(
                    "cannot read the vault {shown} ({e})"
                )));
            }
        };
        VaultFile::parse(&buf).map(Some).map_err(|e| match e {
            VaultError::Damaged(why) => VaultError::Damaged(format!("{shown}: {why}")),
            other => other,
        })
    }

    /// Take the writers' lock (waiting at most the lock timeout).
    pub fn lock(&self) -> Result<WriteLock<'_>, VaultError> {
        let dir = self.dir();
        pfs::create_private_dir_all(dir).map_err(|e| {
            VaultError::Io(format!(
                "cannot create the vault directory {} ({e})",
                dir.display()
            ))
        })?;
        let lp = self.lock_path();
        let file = match pfs::open_lock_file(&lp, true) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => pfs::open_lock_file(&lp, false),
            r => r,
        }
        .map_err(|e| {
            VaultError::Io(format!("cannot open the vault lock {} ({e})", lp.display()))
        })?;
        let start = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(WriteLock { store: self, file }),
                Err(TryLockError::WouldBlock) if start.elapsed() < self.lock_timeout => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(TryLockError::WouldBlock) => {
                    return Err(VaultError::Io(format!(
                        "gave up after {} s waiting for another tapcred process writing the vault (lock {}); retry when it is done",
                        self.lock_timeout.as_secs(),
                        lp.display()
                    )));
                }
                Err(TryLockError::Error(e)) => {
                    return Err(VaultError::Io(format!(
                        "cannot lock {} ({e})",
                        lp.display()
                    )));
                }
            }
        }
    }

    fn dir(&self) -> &Path {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        }
    }
}

/// The writers' lock, held until dropped. Read the vault under it, change it, write it.
pub struct WriteLock<'a> {
    store: &'a VaultStore,
    file: File,
}

impl std::fmt::Debug for WriteLock<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteLock")
            .field("vault", &self.store.path)
            .finish()
    }
}

impl Drop for WriteLock<'_> {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

impl WriteLock<'_> {
    /// The vault as it is now (under the lock).
    pub fn read(&self) -> Result<Option<VaultFile>, VaultError> {
        self.store.read()
    }

    /// Replace the vault atomically with `vault`'s bytes.
    pub fn write(&self, vault: &OpenVault) -> Result<(), VaultError> {
        let bytes = vault.to_bytes();
        let path = &self.store.path;
        let fail = |e: io::Error| {
            VaultError::Io(format!(
                "cannot write the vault {} ({e}); the previous vault is unchanged",
                path.display()
            ))
        };
        pfs::replace_private(path, ".vault-", &bytes).map_err(fail)?;
        Ok(())
    }
}
