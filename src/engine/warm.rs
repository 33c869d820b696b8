//! The warm index: a `credential-process` cache hit without parsing the AWS files.
//!
//! Resolving a profile (parse both files, follow `source_profile`, validate, compute the
//! cache keys) was most of a warm call's own work. Its result — the final step's cache key —
//! depends only on the bytes of the two files, the environment variables the resolution
//! read, and this build. After a successful full resolution [`remember`] stores, under
//! `<cache dir>/warm/<name>.json` (private, like the entries), the key and a digest of those
//! variables; the file name is a SHA-256 of the profile name, the exact bytes that were
//! parsed, and this executable's path, size and mtime. [`lookup`] reads both files (as the
//! full path does), hashes them, and uses the index only if every recorded variable still
//! has the same value. Anything else — a byte changed in either file, a variable set,
//! changed or unset, another or rebuilt tapcred binary, an unreadable file — is a miss, and
//! the full path runs (and refreshes the index).
//! The entry itself is checked exactly as on the full path ([`SessionCache::get`]).
//!
//! Keys kept in the vault are not in those files: the cache key holds the identity of the
//! key the vault's entry held (`cache::identity`). So for such a profile the index also
//! records the vault file and the stamp of that entry, and [`lookup`] reads the vault's
//! header (no unlock) and uses the index only while the entry is the same: another key
//! imported (another IAM user) is a miss, and the full path finds whose key it is.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::cache::{self, ADVISORY_WINDOW, CacheKey, SessionCache};
use crate::credentials::Credentials;
use crate::env::EnvLookup;
use crate::platform::locations;
use crate::profile::{AwsFiles, Profiles};
use crate::ui::{Headless, Ui};
use crate::vault::{EntryName, VaultStore};

use super::Options;

/// Bump when anything that decides the final cache key changes meaning.
const DOMAIN: &str = "tapcred warm index v3";
const DIR: &str = "warm";
/// Every edit of the AWS files leaves an index file behind; past this many they are all
/// dropped (each costs one parse to rebuild).
const MAX_FILES: usize = 64;

/// An [`EnvLookup`] that remembers every variable read through it, and its value.
pub struct RecordingEnv<'a> {
    inner: &'a dyn EnvLookup,
    seen: RefCell<BTreeMap<String, Option<Zeroizing<String>>>>,
}

impl<'a> RecordingEnv<'a> {
    pub fn new(inner: &'a dyn EnvLookup) -> Self {
        RecordingEnv {
            inner,
            seen: RefCell::new(BTreeMap::new()),
        }
    }
}

impl EnvLookup for RecordingEnv<'_> {
    fn var(&self, name: &str) -> Option<String> {
        let v = self.inner.var(name);
        self.seen
            .borrow_mut()
            .insert(name.to_owned(), v.clone().map(Zeroizing::new));
        v
    }
}

#[derive(Serialize, Deserialize)]
struct Index {
    /// Names of the variables the resolution read (values only as `env_digest`).
    names: Vec<String>,
    env_digest: String,
    key: String,
    /// For keys kept in the vault: the entry whose key's identity is in `key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    vault: Option<VaultEntry>,
}

/// The vault entry holding a profile's access key, as it was when its identity was taken.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct VaultEntry {
    pub path: std::path::PathBuf,
    /// The profile the key belongs to (the entry's name).
    pub profile: String,
    /// [`crate::vault::VaultFile::sealed_digest`] of the entry, hex.
    pub stamp: String,
}

impl VaultEntry {
    /// Whether the vault still holds this very entry (read without an unlock).
    fn unchanged(&self) -> bool {
        let Ok(Some(file)) = VaultStore::new(&self.path).read() else {
            return false;
        };
        file.sealed_digest(&EntryName::access_key(self.profile.as_str()))
            .is_some_and(|d| hex(d) == self.stamp)
    }
}

fn hex(d: impl AsRef<[u8]>) -> String {
    data_encoding::HEXLOWER.encode(d.as_ref())
}

/// Digest of the variables `names` as `env` has them now.
fn env_digest<'a>(names: impl Iterator<Item = (&'a str, Option<&'a str>)>) -> String {
    let mut h = Sha256::new();
    h.update(DOMAIN);
    for (name, value) in names {
        h.update((name.len() as u64).to_be_bytes());
        h.update(name);
        match value {
            None => h.update([0u8]),
            Some(v) => {
                h.update([1u8]);
                h.update((v.len() as u64).to_be_bytes());
                h.update(v);
            }
        }
    }
    hex(h.finalize())
}

/// This installation: the path, size and modification time of both programs, the `tapcred`
/// launcher (which reads the index) and `tapcred-full` (which writes it; `cli::launcher`),
/// found beside the running one. A rebuilt or upgraded tapcred (whose resolution or cache
/// keys may differ) never reads an older build's index; without both files, no index.
fn build_identity() -> Option<Vec<u8>> {
    let dir = locations::programs_dir().ok()?;
    let mut id = Vec::new();
    for name in [locations::LAUNCHER, locations::FULL_PROGRAM] {
        let path = dir.join(locations::program_file_name(name));
        let md = std::fs::metadata(&path).ok()?;
        let mtime = md
            .modified()
            .ok()?
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_nanos();
        let p = path.as_os_str().as_encoded_bytes();
        id.extend_from_slice(&(p.len() as u64).to_be_bytes());
        id.extend_from_slice(p);
        id.extend_from_slice(&md.len().to_be_bytes());
        id.extend_from_slice(&mtime.to_be_bytes());
    }
    Some(id)
}

/// Index file name: this build, the profile name and the exact bytes of both files.
fn index_name(
    build: &[u8],
    profile: &str,
    files: &AwsFiles,
    config: Option<&[u8]>,
    creds: Option<&[u8]>,
) -> String {
    let mut h = Sha256::new();
    h.update(DOMAIN);
    h.update(crate::build_id::BUILD_ID);
    h.update((build.len() as u64).to_be_bytes());
    h.update(build);
    h.update((profile.len() as u64).to_be_bytes());
    h.update(profile);
    for (path, text) in [(&files.config, config), (&files.credentials, creds)] {
        let p = path.as_os_str().as_encoded_bytes();
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
        match text {
            None => h.update([0u8]),
            Some(t) => {
                h.update([1u8]);
                h.update((t.len() as u64).to_be_bytes());
                h.update(t);
            }
        }
    }
    format!("{}.json", hex(h.finalize()))
}

/// A file as the full path reads it: `Some(None)` when it does not exist, `None` when it
/// cannot be read (the full path reports that).
/// Same rules as the full path (regular files only, never blocking on a FIFO, at most
/// `MAX_AWS_FILE`; the null device is empty).
fn read(path: &Path) -> Option<Option<Zeroizing<Vec<u8>>>> {
    use crate::platform::fs::{ReadError, read_regular};
    match read_regular(path, crate::profile::MAX_AWS_FILE, true) {
        Ok(b) => Some(Some(b)),
        Err(ReadError::NotFound) => Some(None),
        Err(_) => None,
    }
}

/// The cached credentials for `profile` if the index says which entry answers and that
/// entry is fresh; `None` sends the caller down the full path.
pub fn lookup(profile: &str, opts: &Options, env: &dyn EnvLookup) -> Option<Credentials> {
    if opts.no_cache || opts.no_session {
        return None;
    }
    let files = AwsFiles::from_env(env);
    let config = read(&files.config)?;
    let creds = read(&files.credentials)?;
    if config.is_none() && creds.is_none() {
        return None;
    }
    let build = build_identity()?;
    let name = index_name(
        &build,
        profile,
        &files,
        config.as_deref().map(|v| &v[..]),
        creds.as_deref().map(|v| &v[..]),
    );
    // Warnings about an unusable cache are the full path's to give (once).
    let cache = SessionCache::open(cache::default_dir(env)?, &Headless::new());
    let raw = cache.read_aux(&format!("{DIR}/{name}"))?;
    let index: Index = serde_json::from_slice(&raw).ok()?;
    let values: Vec<(String, Option<Zeroizing<String>>)> = index
        .names
        .iter()
        .map(|n| (n.clone(), env.var(n).map(Zeroizing::new)))
        .collect();
    let now = env_digest(
        values
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_deref().map(String::as_str))),
    );
    if now != index.env_digest {
        tracing::debug!("warm index: the environment changed");
        return None;
    }
    if index.vault.as_ref().is_some_and(|v| !v.unchanged()) {
        tracing::debug!("warm index: the vault's access key entry changed");
        return None;
    }
    let key = CacheKey::from_hex(&index.key)?;
    let entry = cache.get(&key, ADVISORY_WINDOW)?;
    tracing::debug!(profile, "warm index hit");
    Some(entry.credentials)
}

/// After a full resolution that ended at `key`: store the index for [`lookup`]. Best effort
/// (a failure only costs the next call a parse). `vault`: the entry the base keys' identity
/// came from, for keys kept in the vault.
#[allow(clippy::too_many_arguments)]
pub fn remember(
    cache: &SessionCache,
    profile: &str,
    opts: &Options,
    profiles: &Profiles,
    env: &RecordingEnv<'_>,
    key: &CacheKey,
    vault: Option<VaultEntry>,
    ui: &dyn Ui,
) {
    if opts.no_cache || opts.no_session || !cache.enabled() {
        return;
    }
    let Some(build) = build_identity() else {
        return;
    };
    let (config, creds) = profiles.texts();
    let name = index_name(
        &build,
        profile,
        &profiles.files,
        config.map(str::as_bytes),
        creds.map(str::as_bytes),
    );
    let seen = env.seen.borrow();
    let index = Index {
        names: seen.keys().cloned().collect(),
        env_digest: env_digest(
            seen.iter()
                .map(|(n, v)| (n.as_str(), v.as_deref().map(String::as_str))),
        ),
        key: key.hex().to_owned(),
        vault,
    };
    let Ok(json) = serde_json::to_vec(&index) else {
        return;
    };
    if cache
        .read_aux(&format!("{DIR}/{name}"))
        .as_deref()
        .map(|v| &v[..])
        == Some(&json[..])
    {
        return;
    }
    prune(&cache.dir().join(DIR));
    if !cache.write_aux(DIR, &name, &json, ui) {
        tracing::debug!("warm index not written");
    }
}

/// Drop every index file when there are [`MAX_FILES`] or more.
fn prune(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let files: Vec<_> = rd.flatten().map(|e| e.path()).collect();
    if files.len() >= MAX_FILES {
        for f in files {
            let _ = std::fs::remove_file(f);
        }
    }
}
