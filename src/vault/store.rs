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
//!   runs at once both land. Readers take no lock: a rename is atomic. A lock that ends with
//!   no vault written (a failed `vault init`) removes the lock file and the folders it made.
//! - The vault's folder must belong to this user: another user who owns it could swap in an
//!   old copy of the vault or hold its lock.
//! - Rollback: every write gives the file a generation one above the highest seen, and
//!   tapcred remembers the highest generation it has seen (written, or read from a file whose
//!   MAC checked) for each vault, in a small private record outside the vault's folder
//!   ([`SEEN_DIR`] in tapcred's cache directory). A file older than that record is refused
//!   ([`VaultError::RolledBack`]) until the user accepts it (`tapcred vault accept-rollback`).
//!
//! OS-specific parts live in `platform::fs`; nothing here has a `cfg`.

use std::cell::Cell;
use std::fs::{self, File, TryLockError};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::VaultError;
use super::format::{MAX_FILE_LEN, OpenVault, VaultFile};
use crate::env::EnvLookup;
use crate::platform::fs::{self as pfs, DirProblem, ReadError};

/// The env var naming the vault file (tests, several vaults).
pub const VAULT_ENV: &str = "TAPCRED_VAULT";

/// How long a writer waits for another writer (which may be waiting for a touch).
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// The folder, in tapcred's cache directory, of the records of the highest generation seen
/// per vault. Not the data directory: that is the default vault's own folder, and whoever
/// can put an old vault there could put an old record beside it. The cache directory is
/// this user's, private and checked (`platform::fs::check_private_dir`), separate from the
/// data directory on every OS, and local to the machine (a roaming vault is judged against
/// what this machine saw). Losing it (a cleared cache) only forgets: the next open remembers
/// again, and a good vault is never refused for it.
pub const SEEN_DIR: &str = "vault-generations";

/// The largest generation record read back (a few dozen bytes).
const MAX_SEEN_LEN: u64 = 4096;

#[derive(Debug, Clone)]
pub struct VaultStore {
    path: PathBuf,
    lock_timeout: Duration,
    /// The folder of the generation records; None: rollback is not checked (tests reading
    /// a vault as judges, with no user's state).
    seen_dir: Option<PathBuf>,
}

impl VaultStore {
    /// The vault at `path`, with no rollback check ([`VaultStore::from_env`] has one).
    pub fn new(path: impl Into<PathBuf>) -> VaultStore {
        VaultStore {
            path: path.into(),
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            seen_dir: None,
        }
    }

    /// The vault at [`VaultStore::default_path`], its generations remembered in
    /// [`SEEN_DIR`] in tapcred's cache directory; None when no vault path is known.
    pub fn from_env(env: &dyn EnvLookup) -> Option<VaultStore> {
        let path = Self::default_path(env)?;
        let seen = crate::platform::locations::cache_dir(env).map(|d| d.join(SEEN_DIR));
        Some(VaultStore::new(path).with_seen_dir(seen))
    }

    /// Remember generations in `dir` (None: no rollback check).
    pub fn with_seen_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.seen_dir = dir;
        self
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
    /// tapcred writes it: a regular file (not a link), owned by this user, private, in a
    /// folder this user owns, and not older than the newest generation seen.
    pub fn read(&self) -> Result<Option<VaultFile>, VaultError> {
        let Some(file) = self.read_accepting_rollback()? else {
            return Ok(None);
        };
        if let Some(seen) = self.seen_generation()
            && file.generation() < seen
        {
            return Err(VaultError::RolledBack {
                vault: self.path.display().to_string(),
                file: file.generation(),
                seen,
            });
        }
        Ok(Some(file))
    }

    /// [`VaultStore::read`] without the rollback check (`vault accept-rollback`).
    pub fn read_accepting_rollback(&self) -> Result<Option<VaultFile>, VaultError> {
        self.check_dir()?;
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
                    "the vault {shown}: {e}; it must be owned by you and private to you ({})",
                    crate::platform::fs::make_private_hint(&self.path)
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
        // The folders this call creates (deepest first), removed again when the lock ends
        // with no vault written.
        let mut created_dirs = Vec::new();
        let mut d = Some(dir);
        while let Some(p) = d.filter(|p| !p.as_os_str().is_empty()) {
            if fs::symlink_metadata(p).is_ok() {
                break;
            }
            created_dirs.push(p.to_path_buf());
            d = p.parent();
        }
        pfs::create_private_dir_all(dir).map_err(|e| {
            VaultError::Io(format!(
                "cannot create the vault directory {} ({e})",
                dir.display()
            ))
        })?;
        self.check_dir()?;
        let lp = self.lock_path();
        let (file, created_lock) = match pfs::open_lock_file(&lp, true) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                pfs::open_lock_file(&lp, false).map(|f| (f, false))
            }
            r => r.map(|f| (f, true)),
        }
        .map_err(|e| {
            VaultError::Io(format!("cannot open the vault lock {} ({e})", lp.display()))
        })?;
        let start = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => {
                    return Ok(WriteLock {
                        store: self,
                        file,
                        created_lock,
                        created_dirs,
                        written: Cell::new(None),
                    });
                }
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

    /// The vault's folder belongs to this user (a missing one is fine: there is no vault).
    fn check_dir(&self) -> Result<(), VaultError> {
        let dir = self.dir();
        let shown = dir.display();
        match pfs::check_dir_owner(dir) {
            Ok(()) | Err(DirProblem::Missing) => Ok(()),
            Err(DirProblem::Foreign(owner)) => Err(VaultError::Io(format!(
                "the vault's folder {shown} belongs to {owner}, not to you: that user could swap in an old copy of the vault or hold its lock; keep the vault in a folder you own (set {VAULT_ENV}, or give the folder back: {})",
                pfs::take_ownership_hint(dir)
            ))),
            Err(DirProblem::NotDir(what)) => Err(VaultError::Io(format!(
                "the vault's folder {shown} is {what}, not a folder; set {VAULT_ENV} to a path in a folder you own"
            ))),
            Err(p) => Err(VaultError::Io(format!(
                "cannot check the vault's folder {shown} ({p:?}); set {VAULT_ENV} to a path in a folder you own"
            ))),
        }
    }

    /// The record of the highest generation seen for this vault: a file named by the
    /// SHA-256 of the vault's absolute path (its folder resolved, so two spellings of one
    /// vault share a record).
    fn seen_path(&self) -> Option<PathBuf> {
        let dir = self.seen_dir.as_ref()?;
        let folder = fs::canonicalize(self.dir())
            .or_else(|_| std::path::absolute(self.dir()))
            .ok()?;
        let full = folder.join(self.path.file_name()?);
        let digest = Sha256::digest(full.as_os_str().as_encoded_bytes());
        Some(dir.join(data_encoding::HEXLOWER.encode(&digest)))
    }

    /// The highest generation remembered for this vault (None: none, or no record kept).
    pub fn seen_generation(&self) -> Option<u64> {
        let p = self.seen_path()?;
        match pfs::read_private_file(&p, MAX_SEEN_LEN) {
            Ok(bytes) => {
                let v: Option<u64> = serde_json::from_slice::<serde_json::Value>(&bytes)
                    .ok()
                    .and_then(|j| j.get("generation")?.as_u64());
                if v.is_none() {
                    tracing::warn!(record = %p.display(), "the vault's generation record is not one tapcred wrote; ignored");
                }
                v
            }
            Err(ReadError::NotFound) => None,
            Err(e) => {
                tracing::warn!(record = %p.display(), error = %e, "the vault's generation record cannot be read; rollback is not checked");
                None
            }
        }
    }

    /// Remember that this vault has reached `vault`'s generation (an opened vault: its MAC
    /// was checked, so a forged header cannot raise the record).
    pub fn remember_opened(&self, vault: &OpenVault) {
        self.remember(vault.generation());
    }

    fn remember(&self, generation: u64) {
        if self.seen_generation().is_some_and(|s| s >= generation) {
            return;
        }
        self.set_seen(generation);
    }

    /// Set the record to `generation` (also lower: `vault accept-rollback`). Failing to
    /// keep it is logged, not fatal: it only weakens the rollback check.
    pub fn set_seen(&self, generation: u64) {
        let (Some(dir), Some(p)) = (self.seen_dir.as_ref(), self.seen_path()) else {
            return;
        };
        let r = pfs::create_private_dir_all(dir)
            .and_then(|()| {
                pfs::check_private_dir(dir)
                    .map(|_| ())
                    .map_err(|e| io::Error::other(format!("{e:?}")))
            })
            .and_then(|()| {
                let doc = serde_json::json!({
                    "vault": self.path.display().to_string(),
                    "generation": generation,
                });
                pfs::replace_private(&p, ".seen-", doc.to_string().as_bytes())
            });
        if let Err(e) = r {
            tracing::warn!(record = %p.display(), error = %e, "cannot remember the vault's generation; rollback is not checked");
        }
    }
}

/// The writers' lock, held until dropped. Read the vault under it, change it, write it.
pub struct WriteLock<'a> {
    store: &'a VaultStore,
    file: File,
    /// This lock made the lock file (and `created_dirs`): both go when it ends with no vault.
    created_lock: bool,
    created_dirs: Vec<PathBuf>,
    /// The generation this lock last wrote.
    written: Cell<Option<u64>>,
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
        // Nothing was written (a failed `vault init`, a command that found no vault): leave
        // nothing behind. Removed while still held; a writer already waiting on this file
        // then locks a file nobody else can find, so two first writers of a vault that does
        // not exist yet may overlap (each re-reads under its lock; `init` refuses an existing
        // vault, the later rename wins).
        let no_vault = fs::symlink_metadata(&self.store.path)
            .is_err_and(|e| e.kind() == io::ErrorKind::NotFound);
        if self.created_lock && no_vault {
            let _ = fs::remove_file(self.store.lock_path());
            let _ = self.file.unlock();
            for d in &self.created_dirs {
                if fs::remove_dir(d).is_err() {
                    break;
                }
            }
            return;
        }
        let _ = self.file.unlock();
    }
}

impl WriteLock<'_> {
    /// The vault as it is now (under the lock).
    pub fn read(&self) -> Result<Option<VaultFile>, VaultError> {
        self.store.read()
    }

    /// Replace the vault atomically with `vault`'s bytes, at a generation above every one
    /// seen (the file it was read from, the record, this lock's last write).
    pub fn write(&self, vault: &OpenVault) -> Result<(), VaultError> {
        let generation = vault
            .generation()
            .max(self.store.seen_generation().unwrap_or(0))
            .max(self.written.get().unwrap_or(0))
            + 1;
        let bytes = vault.to_bytes_at(generation);
        let path = &self.store.path;
        let fail = |e: io::Error| {
            VaultError::Io(format!(
                "cannot write the vault {} ({e}); the previous vault is unchanged",
                path.display()
            ))
        };
        pfs::replace_private(path, ".vault-", &bytes).map_err(fail)?;
        self.written.set(Some(generation));
        self.store.remember(generation);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::format::{UnlockerDesc, UnlockerKind};

    /// `vault init` on a machine with no vault yet: the folders, the lock and the first
    /// vault file are all new; then a second write replaces it under the same lock.
    #[test]
    fn first_vault_written_into_new_folders_then_replaced() {
        let home = tempfile::tempdir().unwrap();
        let store = VaultStore::new(home.path().join("data").join("tapcred").join("vault"));
        let desc = UnlockerDesc::new_random(UnlockerKind::OtpHmacSha1, "otp:1:2").unwrap();
        let vault = OpenVault::create(desc, &[7u8; 20]).unwrap();
        let lock = store.lock().unwrap();
        lock.write(&vault).unwrap();
        lock.write(&vault).unwrap();
        drop(lock);
        assert!(store.read().unwrap().is_some());
    }
}
