//! The session cache: STS sessions on disk so one tap serves many calls.
//!
//! Layout under the cache directory (`$XDG_CACHE_HOME/tapcred`, else `~/.cache/tapcred`),
//! directory 0700, every file 0600:
//!
//! ```text
//! <sha256-hex>.json            one session (see `EntryDoc`); the name reveals nothing
//! locks/<sha256-hex>.lock      single-flight lock per session key (flock semantics)
//! ids/<stamp>                  whose key a sealed vault entry holds (see `identity`)
//! ```
//!
//! and under the per-user directory `$TMPDIR/tapcred-<uid>` (0700), the "never reuse a
//! code" state ([`ledger`]):
//!
//! ```text
//! locks/serial-<hex>.lock      lock around "pick a TOTP window → read code → record it"
//! steps/<hex>.json             the step ledger: last TOTP window end used per mfa_serial
//! ```
//!
//! Rules: writes are atomic (temp file in the same directory, fsync, rename, fsync of the
//! directory), so a crash or a full disk leaves the previous entry intact. Anything unexpected
//! in a file (bad JSON, another format version, another owner, a group/world mode bit, a
//! symlink, a key that does not match the file name) is a miss, never a crash, and the next
//! store replaces it. A cache directory that cannot be used (not creatable, not a directory,
//! owned by someone else, not writable) disables the cache with one warning through
//! [`Ui::warn`]; everything then works without it. The session locks then live in
//! `$TMPDIR/tapcred-<uid>` too, so that single flight still holds.

mod identity;
mod key;
mod ledger;
mod lock;

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use zeroize::{Zeroize, Zeroizing};

use crate::credentials::{Credentials, format_rfc3339, parse_rfc3339};
use crate::env::EnvLookup;
use crate::platform::fs::{self as pfs, DirProblem, ReadError};
use crate::ui::Ui;

pub use identity::key_identity;
pub use key::{CacheKey, CacheKeyBuilder, SessionKind};
pub use ledger::{MIN_CODE_SECONDS_LEFT, plan_code_time};
pub use lock::LockGuard;

/// On-disk format version of entries and ledger files. Other versions are misses.
pub const FORMAT_VERSION: u32 = 1;

/// botocore's advisory refresh window: cached credentials are handed out only while more
/// than this remains, so an SDK never receives credentials it would immediately refresh.
pub const ADVISORY_WINDOW: Duration = Duration::from_secs(15 * 60);

/// Default bound on waiting for another process's lock (a touch can take a while).
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// An entry whose `created` lies more than this in the future was written before the clock
/// went back: its remaining lifetime cannot be trusted, so it is a miss.
pub const CLOCK_BACK_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// Files larger than this are not ours.
const MAX_FILE_LEN: u64 = 64 * 1024;

/// `$XDG_CACHE_HOME/tapcred` (when set to an absolute path, as the XDG spec requires), else
/// the OS's cache directory (`~/.cache/tapcred`, `~/Library/Caches/tapcred`,
/// `%LOCALAPPDATA%\tapcred`: [`crate::platform::locations::cache_dir`]); None when no base
/// is known.
pub fn default_dir(env: &dyn EnvLookup) -> Option<PathBuf> {
    crate::platform::locations::cache_dir(env)
}

/// One cached session.
#[derive(Clone, Debug)]
pub struct Entry {
    pub kind: SessionKind,
    /// The profile that asked for it (for `tapcred sessions`; not part of the key).
    pub profile: String,
    pub mfa_serial: Option<String>,
    pub created: OffsetDateTime,
    /// Always carries an expiration (entries without one are never stored).
    pub credentials: Credentials,
}

impl Entry {
    pub fn expiration(&self) -> Option<OffsetDateTime> {
        self.credentials.expiration
    }

    /// Whether this entry may be handed out at `now`: more than `min_remaining` left (but
    /// never more than half the session's lifetime is demanded, so a 15-minute role session
    /// is still reused for 7.5 minutes instead of costing a call every time), and not
    /// written "in the future" (the clock went back since).
    pub fn fresh_at(&self, now: OffsetDateTime, min_remaining: Duration) -> bool {
        let Some(exp) = self.credentials.expiration else {
            return false;
        };
        if self.created - now > CLOCK_BACK_TOLERANCE {
            return false;
        }
        let lifetime = (exp - self.created).max(time::Duration::ZERO);
        let need = time::Duration::try_from(min_remaining)
            .unwrap_or(time::Duration::MAX)
            .min(lifetime / 2);
        exp - now > need
    }
}

/// What `tapcred sessions` shows: no secrets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntrySummary {
    pub key: CacheKey,
    pub profile: String,
    pub kind: SessionKind,
    pub mfa_serial: Option<String>,
    pub created: OffsetDateTime,
    pub expiration: OffsetDateTime,
}

/// The JSON document of one entry. Secret fields are wiped when it is dropped.
#[derive(Serialize, Deserialize)]
struct EntryDoc {
    version: u32,
    key: String,
    kind: SessionKind,
    profile: String,
    #[serde(default)]
    mfa_serial: Option<String>,
    created: String,
    expiration: String,
    access_key_id: String,
    secret_access_key: String,
    #[serde(default)]
    session_token: Option<String>,
}

impl Drop for EntryDoc {
    fn drop(&mut self) {
        self.secret_access_key.zeroize();
        if let Some(t) = self.session_token.as_mut() {
            t.zeroize();
        }
    }
}

/// Why a file was not used (for debug logs only; never shown with secrets).
#[allow(dead_code)] // the fields are read through `Debug` in the log line
#[derive(Debug)]
enum Miss {
    Absent,
    Unreadable(io::ErrorKind),
    Foreign(&'static str),
    Corrupt(String),
}

/// The session cache plus the cross-process locks and the TOTP step ledger.
pub struct SessionCache {
    dir: PathBuf,
    /// False once the directory proved unusable.
    enabled: AtomicBool,
    /// At most one warning per process.
    warned: AtomicBool,
    lock_timeout: Duration,
    /// Where locks and the ledger live (resolved on first need: the cold path only).
    state_dir: OnceLock<Option<PathBuf>>,
    fallback_dir: Option<PathBuf>,
    /// Where the step ledger and the serial locks live when not in the state directory
    /// (see [`SessionCache::with_ledger_dir`]).
    ledger_dir: Option<PathBuf>,
    /// The ledger's directory, resolved on first need.
    ledger_state: OnceLock<Option<PathBuf>>,
    /// Ledger values recorded by this process (used when nothing can be persisted).
    mem_ledger: Mutex<HashMap<String, u64>>,
    files: Box<dyn FileWriter>,
}

/// How the cache puts a file in place. [`PrivateFiles`] in the program; tests supply one
/// that fails part-way (a full disk) or lets another process act before the rename.
pub(crate) trait FileWriter: Send + Sync {
    /// Replace `path` with `data`, atomically and private to this user: on error `path` is
    /// untouched and no temp file is left.
    fn replace(&self, path: &Path, data: &[u8]) -> io::Result<()>;
}

/// Names the cache's temp files (`tapcred sessions clear` removes leftovers).
const TEMP_PREFIX: &str = ".tmp-";

/// [`pfs::replace_private`]: temp file beside the target (0600, exclusive create) → write →
/// fsync → rename → fsync of the directory.
struct PrivateFiles;

impl FileWriter for PrivateFiles {
    fn replace(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        pfs::replace_private(path, TEMP_PREFIX, data)
    }
}

/// Makes temp and probe file names unique within the process (the pid makes them unique
/// across processes), also between several `SessionCache`s on one directory.
static NAME_COUNTER: AtomicU64 = AtomicU64::new(0);

impl SessionCache {
    /// Open (creating if needed) the cache at [`default_dir`]; if no directory is known the
    /// cache is disabled with one warning. The step ledger is the user's, in
    /// `$TMPDIR/tapcred-<uid>` ([`SessionCache::with_ledger_dir`]).
    pub fn open_default(env: &dyn EnvLookup, ui: &dyn Ui) -> SessionCache {
        let c = SessionCache::open_default_dir(env, ui);
        let per_user = c.fallback_dir.clone();
        c.with_ledger_dir(per_user)
    }

    fn open_default_dir(env: &dyn EnvLookup, ui: &dyn Ui) -> SessionCache {
        match default_dir(env) {
            Some(d) => SessionCache::open(d, ui),
            None => {
                let c = SessionCache::new_disabled(PathBuf::new());
                c.disable(
                    ui,
                    "no cache directory: neither XDG_CACHE_HOME nor HOME is set; continuing without a session cache (set HOME or XDG_CACHE_HOME)",
                );
                c
            }
        }
    }

    /// Open the cache in `dir`. Never fails: an unusable directory disables the cache with
    /// one warning. Nothing is created until something is stored (a command that fails
    /// early, or only reads, leaves no trace).
    pub fn open(dir: impl Into<PathBuf>, ui: &dyn Ui) -> SessionCache {
        let c = SessionCache::new_disabled(dir.into());
        match c.prepare_dir(false) {
            Ok(()) => c.enabled.store(true, Ordering::SeqCst),
            Err(why) => c.disable(ui, &why),
        }
        c
    }

    /// Create the directory (0700) before the first write; on failure disable with one
    /// warning.
    fn ensure_dir(&self, ui: &dyn Ui) -> bool {
        if !self.enabled() {
            return false;
        }
        match self.prepare_dir(true) {
            Ok(()) => true,
            Err(why) => {
                self.disable(ui, &why);
                false
            }
        }
    }

    fn new_disabled(dir: PathBuf) -> SessionCache {
        let fallback_dir = Some(std::env::temp_dir().join(format!("tapcred-{}", pfs::user_tag())));
        SessionCache {
            dir,
            enabled: AtomicBool::new(false),
            warned: AtomicBool::new(false),
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            state_dir: OnceLock::new(),
            fallback_dir,
            ledger_dir: None,
            ledger_state: OnceLock::new(),
            mem_ledger: Mutex::new(HashMap::new()),
            files: Box::new(PrivateFiles),
        }
    }

    /// Bound on waiting for a lock held by another process (default 5 minutes).
    pub fn with_lock_timeout(mut self, t: Duration) -> Self {
        self.lock_timeout = t;
        self
    }

    /// Where locks and the ledger go when the cache directory is unusable (tests point this
    /// at a temporary directory; default `$TMPDIR/tapcred-<uid>`).
    pub fn with_fallback_dir(mut self, d: Option<PathBuf>) -> Self {
        self.fallback_dir = d;
        self
    }

    /// Keep the step ledger and the serial locks in `d` instead of beside the session locks.
    ///
    /// Why: "never reuse a code" must hold for every tapcred process of this user, but the
    /// cache folder is not the user's: it follows `HOME`/`XDG_CACHE_HOME`, and when it is
    /// unusable (another user owns it after a `sudo` run) the cache falls back to another
    /// folder. A ledger kept in whichever folder was chosen would be forgotten at that
    /// switch, and a code STS already took sent again (STS refuses it). `$TMPDIR/tapcred-<uid>`
    /// is named by the uid alone, so every process of this user finds the same ledger
    /// whichever cache folder it uses (and a `sudo` run, another uid, its own). Should that
    /// directory be unusable (another user created it first), the ledger stays beside the
    /// session locks, with a warning.
    pub fn with_ledger_dir(mut self, d: Option<PathBuf>) -> Self {
        self.ledger_dir = d;
        self
    }

    /// Write files through `files` instead of [`PrivateFiles`].
    #[cfg(all(test, unix))] // its only users, the cache tests, are Unix-only (mod tests below)
    pub(crate) fn with_files(mut self, files: Box<dyn FileWriter>) -> Self {
        self.files = files;
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::SeqCst)
    }

    fn disable(&self, ui: &dyn Ui, why: &str) {
        self.enabled.store(false, Ordering::SeqCst);
        self.warn_once(ui, why);
    }

    fn warn_once(&self, ui: &dyn Ui, msg: &str) {
        if !self.warned.swap(true, Ordering::SeqCst) {
            ui.warn(msg);
        }
    }

    /// Check the directory is one we own (tightening it to 0700); with `create`, create it
    /// first if missing. A missing directory is fine when not creating. A symbolic link at
    /// the cache path is refused, never followed (nor its target's mode changed).
    fn prepare_dir(&self, create: bool) -> Result<(), String> {
        let d = &self.dir;
        let shown = d.display();
        if !create && fs::symlink_metadata(d).is_err_and(|e| e.kind() == io::ErrorKind::NotFound) {
            return Ok(());
        }
        if create
            && fs::symlink_metadata(d).is_err()
            && let Err(e) = pfs::create_private_dir_all(d)
            && e.kind() != io::ErrorKind::AlreadyExists
        {
            return Err(format!(
                "cache directory {shown} cannot be created ({e}); continuing without a session cache (fix its parent's permissions or set XDG_CACHE_HOME)"
            ));
        }
        match pfs::check_private_dir(d) {
            Ok(_) => Ok(()),
            Err(DirProblem::Missing) => Err(format!(
                "cache directory {shown} vanished while it was prepared; continuing without a session cache"
            )),
            Err(DirProblem::Unreadable(e)) => Err(format!(
                "cache directory {shown} is unreadable ({e}); continuing without a session cache"
            )),
            Err(DirProblem::Link) => Err(format!(
                "cache path {shown} is a symbolic link; continuing without a session cache (tapcred does not follow links for its private directory: replace it with a real directory or set XDG_CACHE_HOME)"
            )),
            Err(DirProblem::NotDir(what)) => Err(format!(
                "cache path {shown} is {what}, not a directory; continuing without a session cache (remove it or set XDG_CACHE_HOME)"
            )),
            Err(DirProblem::Foreign(owner)) => Err(format!(
                "cache directory {shown} belongs to {owner}, not to you; continuing without a session cache (remove it or set XDG_CACHE_HOME)"
            )),
            Err(DirProblem::CannotTighten(e)) => Err(format!(
                "cache directory {shown} is open to others and cannot be made private ({e}); continuing without a session cache"
            )),
        }
    }

    fn entry_path(&self, key: &CacheKey) -> PathBuf {
        self.dir.join(format!("{}.json", key.hex()))
    }

    // ----- entries ---------------------------------------------------------------------

    /// The cached entry for `key` if it is ours, intact and has more than `min_remaining`
    /// left (use [`ADVISORY_WINDOW`]). Anything else is a miss.
    pub fn get(&self, key: &CacheKey, min_remaining: Duration) -> Option<Entry> {
        self.get_at(key, crate::clock::now_utc(), min_remaining)
    }

    /// [`SessionCache::get`] at a given time (tests, clock-jump handling).
    pub fn get_at(
        &self,
        key: &CacheKey,
        now: OffsetDateTime,
        min_remaining: Duration,
    ) -> Option<Entry> {
        if !self.enabled() {
            return None;
        }
        match self.read_entry(&self.entry_path(key), key) {
            Ok(e) if e.fresh_at(now, min_remaining) => Some(e),
            Ok(_) => {
                tracing::debug!(?key, "cache entry too close to expiry");
                None
            }
            Err(miss) => {
                tracing::debug!(?key, ?miss, "cache miss");
                None
            }
        }
    }

    fn read_entry(&self, path: &Path, key: &CacheKey) -> Result<Entry, Miss> {
        let buf = self.read_private(path)?;
        let doc: EntryDoc =
            serde_json::from_slice(&buf).map_err(|e| Miss::Corrupt(e.to_string()))?;
        if doc.version != FORMAT_VERSION {
            return Err(Miss::Foreign("format version"));
        }
        if doc.key != key.hex() {
            return Err(Miss::Foreign("key does not match file name"));
        }
        let created = parse_rfc3339(&doc.created).ok_or(Miss::Corrupt("created".into()))?;
        let expiration =
            parse_rfc3339(&doc.expiration).ok_or(Miss::Corrupt("expiration".into()))?;
        Ok(Entry {
            kind: doc.kind,
            profile: doc.profile.clone(),
            mfa_serial: doc.mfa_serial.clone(),
            created,
            credentials: Credentials::new(
                doc.access_key_id.clone(),
                doc.secret_access_key.clone(),
                doc.session_token.clone(),
                Some(expiration),
            ),
        })
    }

    /// Read a file only if it is a regular file (not a symlink, not a FIFO: the open never
    /// blocks), ours, private (0600), small.
    fn read_private(&self, path: &Path) -> Result<Zeroizing<Vec<u8>>, Miss> {
        pfs::read_private_file(path, MAX_FILE_LEN).map_err(|e| match e {
            ReadError::NotFound => Miss::Absent,
            ReadError::NotRegular(_) => Miss::Foreign("not a regular file"),
            ReadError::Foreign(why) => Miss::Foreign(why),
            ReadError::Shared(_) => Miss::Foreign("mode"),
            ReadError::TooLarge(_) => Miss::Foreign("size"),
            ReadError::Io(e) => Miss::Unreadable(e.kind()),
        })
    }

    /// A small file of ours under the cache directory other than an entry (the warm index,
    /// `rel` like `warm/NAME.json`), read with the entries' checks (owner, 0600, size).
    pub fn read_aux(&self, rel: &str) -> Option<Zeroizing<Vec<u8>>> {
        if !self.enabled() {
            return None;
        }
        self.read_private(&self.dir.join(rel)).ok()
    }

    /// Store a small file under `<cache dir>/<sub>/<name>` (0700 directory, 0600 file,
    /// atomic). Whether it was stored.
    pub fn write_aux(&self, sub: &str, name: &str, data: &[u8], ui: &dyn Ui) -> bool {
        if !self.ensure_dir(ui) {
            return false;
        }
        let dir = self.dir.join(sub);
        if pfs::create_private_dir_all(&dir).is_err() {
            return false;
        }
        self.write_atomic(&dir, &dir.join(name), data).is_ok()
    }

    /// Store `entry` under `key`, atomically. Returns whether it was stored. A full disk keeps
    /// the previous entry and warns once; an unwritable directory disables the cache (one
    /// warning). Entries without an expiration are refused (long-term keys are never cached).
    pub fn put(&self, key: &CacheKey, entry: &Entry, ui: &dyn Ui) -> bool {
        if !self.ensure_dir(ui) {
            return false;
        }
        let Some(exp) = entry.credentials.expiration else {
            tracing::debug!("not caching credentials without an expiration");
            return false;
        };
        let doc = EntryDoc {
            version: FORMAT_VERSION,
            key: key.hex().to_owned(),
            kind: entry.kind,
            profile: entry.profile.clone(),
            mfa_serial: entry.mfa_serial.clone(),
            created: format_rfc3339(entry.created),
            expiration: format_rfc3339(exp),
            access_key_id: entry.credentials.access_key_id.clone(),
            secret_access_key: entry
                .credentials
                .secret_access_key
                .expose_secret()
                .to_owned(),
            session_token: entry
                .credentials
                .session_token
                .as_ref()
                .map(|t| t.expose_secret().to_owned()),
        };
        let buf = match serde_json::to_vec(&doc) {
            Ok(b) => Zeroizing::new(b),
            Err(e) => {
                tracing::debug!(error = %e, "cache entry serialisation failed");
                return false;
            }
        };
        drop(doc);
        let path = self.entry_path(key);
        match self.write_atomic(&self.dir, &path, &buf) {
            Ok(()) => true,
            Err(e) => {
                self.write_failed(ui, &path, &e);
                false
            }
        }
    }

    fn write_failed(&self, ui: &dyn Ui, path: &Path, e: &io::Error) {
        let shown = path.display();
        match e.kind() {
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => self.warn_once(
                ui,
                &format!(
                    "session cache not updated: no space left writing {shown} ({e}); the previous entry is kept (free some disk space)"
                ),
            ),
            _ => self.disable(
                ui,
                &format!(
                    "cache directory {} is not writable ({e}); continuing without a session cache (fix its permissions or set XDG_CACHE_HOME)",
                    self.dir.display()
                ),
            ),
        }
    }

    /// Replace `path` (in `dir`) with `data` atomically ([`FileWriter`]): on any error `path`
    /// is untouched. When the directory or the temp file vanished meanwhile (`tapcred
    /// sessions clear` or a person removing the cache during a refresh), the directory is made
    /// again and the write retried: that is not an unwritable cache.
    fn write_atomic(&self, dir: &Path, path: &Path, data: &[u8]) -> io::Result<()> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.files.replace(path, data) {
                Err(e) if e.kind() == io::ErrorKind::NotFound && attempt < 3 => {
                    tracing::debug!(dir = %dir.display(), "cache file or directory vanished mid-write; writing again");
                    if fs::symlink_metadata(dir).is_err() {
                        pfs::create_private_dir_all(dir)?;
                    }
                }
                r => return r,
            }
        }
    }

    /// Remove the entry for `key`; whether a file was removed.
    pub fn remove(&self, key: &CacheKey) -> bool {
        self.enabled() && fs::remove_file(self.entry_path(key)).is_ok()
    }

    /// Every readable entry (expired ones included), sorted by profile then expiry.
    pub fn list(&self) -> Vec<EntrySummary> {
        let mut out = Vec::new();
        for (key, path) in self.entry_files() {
            if let Ok(e) = self.read_entry(&path, &key)
                && let Some(expiration) = e.expiration()
            {
                out.push(EntrySummary {
                    key,
                    profile: e.profile,
                    kind: e.kind,
                    mfa_serial: e.mfa_serial,
                    created: e.created,
                    expiration,
                });
            }
        }
        out.sort_by(|a, b| {
            (a.profile.as_str(), a.expiration, a.kind.as_str()).cmp(&(
                b.profile.as_str(),
                b.expiration,
                b.kind.as_str(),
            ))
        });
        out
    }

    /// Remove the entries of `profile`, or every entry file (unreadable ones and stale temp
    /// files too) when `None`. Returns how many entries were removed. The step ledger is kept:
    /// forgetting it could let a code be sent twice.
    pub fn clear(&self, profile: Option<&str>) -> usize {
        let mut n = 0;
        for (key, path) in self.entry_files() {
            let matches = match profile {
                None => true,
                Some(p) => self.read_entry(&path, &key).is_ok_and(|e| e.profile == p),
            };
            if matches && fs::remove_file(&path).is_ok() {
                n += 1;
            }
        }
        if profile.is_none()
            && let Ok(rd) = fs::read_dir(&self.dir)
        {
            for de in rd.flatten() {
                if de.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                    let _ = fs::remove_file(de.path());
                }
            }
        }
        n
    }

    fn entry_files(&self) -> Vec<(CacheKey, PathBuf)> {
        let Ok(rd) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        rd.flatten()
            .filter_map(|de| {
                let name = de.file_name();
                let stem = name.to_str()?.strip_suffix(".json")?;
                Some((CacheKey::from_hex(stem)?, de.path()))
            })
            .collect()
    }

    // ----- state directory (locks, ledger) -----------------------------------------------

    /// The directory holding `locks/` and `steps/`: the cache directory when it is writable,
    /// else the fallback; None when neither works (then locks are per process only).
    /// Resolved once, on the cold path only (it writes a probe file).
    fn state_dir(&self, ui: &dyn Ui) -> Option<&Path> {
        self.state_dir
            .get_or_init(|| {
                if self.ensure_dir(ui) {
                    match self.probe(&self.dir, self.ledger_dir.is_none()) {
                        Ok(()) => return Some(self.dir.clone()),
                        Err(e) => self.disable(
                            ui,
                            &format!(
                                "cache directory {} is not writable ({e}); continuing without a session cache (fix its permissions or set XDG_CACHE_HOME)",
                                self.dir.display()
                            ),
                        ),
                    }
                }
                let fb = self.fallback_dir.as_ref()?;
                let ok = pfs::create_private_dir_all(fb).is_ok()
                    && pfs::check_private_dir(fb).is_ok();
                if ok && self.probe(fb, self.ledger_dir.is_none()).is_ok() {
                    Some(fb.clone())
                } else {
                    self.warn_once(
                        ui,
                        &format!(
                            "no writable directory for tapcred's locks ({} nor {}); parallel calls may each ask for a code",
                            self.dir.display(),
                            fb.display()
                        ),
                    );
                    None
                }
            })
            .as_deref()
    }

    /// The directory holding the step ledger (`steps/`) and the serial locks: the ledger
    /// directory when one is set and usable, else [`SessionCache::state_dir`].
    fn ledger_home(&self, ui: &dyn Ui) -> Option<&Path> {
        let own = self
            .ledger_state
            .get_or_init(|| {
                let d = self.ledger_dir.as_ref()?;
                let created = match fs::symlink_metadata(d) {
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        pfs::create_private_dir_all(d).map_err(|e| e.to_string())
                    }
                    _ => Ok(()),
                };
                let usable = created
                    .and_then(|()| match pfs::check_private_dir(d) {
                        Ok(_) => Ok(()),
                        Err(DirProblem::Foreign(owner)) => Err(format!("it belongs to {owner}")),
                        Err(DirProblem::Link) => Err("it is a symbolic link".to_owned()),
                        Err(DirProblem::NotDir(what)) => Err(format!("it is {what}")),
                        Err(DirProblem::Missing) => Err("it vanished".to_owned()),
                        Err(DirProblem::Unreadable(e) | DirProblem::CannotTighten(e)) => {
                            Err(e.to_string())
                        }
                    })
                    .and_then(|()| self.probe(d, true).map_err(|e| e.to_string()));
                match usable {
                    Ok(()) => Some(d.clone()),
                    Err(why) => {
                        ui.warn(&format!(
                            "tapcred's record of used MFA codes cannot be kept in {} ({why}); keeping it beside the session cache instead, where another cache folder will not see it (remove {} if another user created it)",
                            d.display(),
                            d.display()
                        ));
                        None
                    }
                }
            })
            .as_deref();
        match own {
            Some(d) => Some(d),
            None => self.state_dir(ui),
        }
    }

    /// Check that `dir` takes files: create `locks/` (and `steps/` when it holds the
    /// ledger) and a probe file in it.
    fn probe(&self, dir: &Path, ledger: bool) -> io::Result<()> {
        for sub in ["locks", "steps"]
            .into_iter()
            .take(if ledger { 2 } else { 1 })
        {
            pfs::create_private_dir_all(&dir.join(sub))?;
        }
        let n = NAME_COUNTER.fetch_add(1, Ordering::Relaxed);
        let p = dir
            .join("locks")
            .join(format!(".probe-{}-{n}", std::process::id()));
        pfs::create_private(&p)?;
        fs::remove_file(&p)
    }
}

#[cfg(all(test, unix))]
mod tests;
