//! The edits of a profile and applying them to an AWS file: [`ProfileEdit`], [`apply_edits`]
//! (under the lock, with the backup rule), the [`EditReceipt`] that undoes one, and reading
//! a profile's keys.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use secrecy::SecretString;
use zeroize::Zeroizing;

use super::AwsFile;
use super::careful_write::{Step, write_carefully};
use super::file_io::{io_error, read_bytes, utf8};
use super::leftovers::clean_leftovers;
use super::lines::{Kind, classify, property_key, sections_of, split_lines};
use super::private_folder::{lock, private_dir, state_paths, write_new_private};
use super::target::{check_intent, create_dir, resolve_target};
use super::text_edit::{edit_text, inverse_edits};
use crate::env::{EnvLookup, RealEnv};
use crate::error::Result;
use crate::platform;
use crate::platform::fs::Perms;
use crate::profile::load::parse_files;

/// The edits of one profile: keys to set (values held as secrets), keys to remove.
#[derive(Clone, Default)]
pub struct ProfileEdit {
    pub profile: String,
    pub set: Vec<(String, SecretString)>,
    pub remove: Vec<String>,
    /// New keys take the place of the first removed line of the profile's last section
    /// (instead of going at its end): `vault import-keys` turns the two key lines into one
    /// line where they were.
    pub in_place_of_removed: bool,
    /// Make no backup of the file for this edit: it removes a secret that must not stay in
    /// a plain-text copy (`vault import-keys`).
    pub no_backup: bool,
}

impl fmt::Debug for ProfileEdit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<&str> = self.set.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("ProfileEdit")
            .field("profile", &self.profile)
            .field("set", &keys)
            .field("remove", &self.remove)
            .field("in_place_of_removed", &self.in_place_of_removed)
            .field("no_backup", &self.no_backup)
            .finish()
    }
}

impl ProfileEdit {
    pub fn new(profile: impl Into<String>) -> ProfileEdit {
        ProfileEdit {
            profile: profile.into(),
            ..ProfileEdit::default()
        }
    }

    /// Set a plain value (an ARN, a region, a number).
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> ProfileEdit {
        self.set
            .push((key.into(), SecretString::from(value.into())));
        self
    }

    /// Set a secret value (the secret access key).
    pub fn set_secret(mut self, key: impl Into<String>, value: SecretString) -> ProfileEdit {
        self.set.push((key.into(), value));
        self
    }

    /// Remove every occurrence of `key` in the profile.
    pub fn remove(mut self, key: impl Into<String>) -> ProfileEdit {
        self.remove.push(key.into());
        self
    }

    /// New keys go where the first removed line of the section was (see
    /// [`ProfileEdit::in_place_of_removed`]).
    pub fn new_keys_in_place_of_removed(mut self) -> ProfileEdit {
        self.in_place_of_removed = true;
        self
    }

    /// No backup of the file for this edit (see [`ProfileEdit::no_backup`]).
    pub fn without_backup(mut self) -> ProfileEdit {
        self.no_backup = true;
        self
    }
}

/// Where the editor keeps what is its own, and whether the config file gets a backup.
#[derive(Debug, Clone)]
pub struct EditOptions {
    /// tapcred's private folder for the editor's lock files and backups (see
    /// [`private_dir`]); `None` when no home is known (edits are then refused).
    pub private_dir: Option<PathBuf>,
    /// Keep the config file as it was before tapcred's first edit (once, in the private
    /// folder). The credentials file never gets a backup: it would be a second plaintext
    /// copy of every access key, outliving a key replaced or moved into the vault.
    pub backup: bool,
}

impl EditOptions {
    /// The private folder of this environment ([`private_dir`]), with the config backup.
    pub fn from_env(env: &dyn EnvLookup) -> EditOptions {
        EditOptions {
            private_dir: private_dir(env),
            backup: true,
        }
    }

    /// No backup, whatever the file.
    pub fn without_backup(mut self) -> EditOptions {
        self.backup = false;
        self
    }
}

/// The keys whose values are secrets: a file receiving one is made private.
pub(super) const SECRET_KEYS: [&str; 3] = [
    "aws_secret_access_key",
    "aws_session_token",
    "aws_security_token",
];

/// What [`apply_edits`] did; [`EditReceipt::restore`] undoes it.
pub struct EditReceipt {
    /// The file written (a symbolic link's target).
    pub path: PathBuf,
    pub file: AwsFile,
    /// Whether the file's bytes changed (false: the edits were already in place).
    pub changed: bool,
    /// The backup written by this edit (the first tapcred edit of a config file), if any.
    pub backup: Option<PathBuf>,
    /// The file was readable by others and received a secret, so it was made private: how
    /// it was open ("mode 0644"), for the caller's warning.
    pub tightened: Option<String>,
    /// The lock that serialises tapcred's writers of this file.
    lock_path: PathBuf,
    /// The file before (None: it did not exist).
    previous: Option<Zeroizing<Vec<u8>>>,
    /// The file as written.
    written: Zeroizing<Vec<u8>>,
    /// The inverse edits, for restoring when someone else changed the file in between.
    inverse: Vec<ProfileEdit>,
}

impl fmt::Debug for EditReceipt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EditReceipt")
            .field("path", &self.path)
            .field("file", &self.file)
            .field("changed", &self.changed)
            .field("backup", &self.backup)
            .field("tightened", &self.tightened)
            .field("existed", &self.previous.is_some())
            .finish_non_exhaustive()
    }
}

impl EditReceipt {
    /// Put the file back as it was before the edit. If the file is still exactly as this edit
    /// wrote it, the previous bytes are restored (or the file removed if it did not exist);
    /// if another writer changed it since, only this edit's keys are put back (their previous
    /// values, or removed), keeping the other writer's changes.
    pub fn restore(&self) -> Result<()> {
        if !self.changed {
            return Ok(());
        }
        let target = &self.path;
        let _lock = lock(&self.lock_path, self.file)?;
        if self.previous.is_none() {
            let current = read_bytes(target, self.file)?;
            if current.as_deref().map(|c| c.as_slice()) == Some(self.written.as_slice()) {
                return fs::remove_file(target).map_err(|e| {
                    io_error(
                        target,
                        self.file,
                        "cannot remove the file created by this edit",
                        e,
                    )
                });
            }
        }
        write_carefully(target, self.file, |base, on_disk| {
            let Some(base) = base else {
                return Ok(Step::Nothing);
            };
            let out = match &self.previous {
                Some(prev) if base.as_slice() == self.written.as_slice() => prev.clone(),
                _ => {
                    let text = utf8(target, self.file, base.clone())?;
                    let out = edit_text(&text, self.file, &self.inverse)?;
                    Zeroizing::new(out.as_bytes().to_vec())
                }
            };
            Ok(if on_disk == Some(&out) {
                Step::Nothing
            } else {
                Step::Write(out, Perms::KeepExisting)
            })
        })?;
        Ok(())
    }
}

/// Apply `edits` to the file at `path` (created if missing), under the lock, atomically,
/// with the private folder and backup rule of the process environment
/// ([`EditOptions::from_env`]).
pub fn apply_edits(path: &Path, file: AwsFile, edits: &[ProfileEdit]) -> Result<EditReceipt> {
    apply_edits_with(path, file, edits, &EditOptions::from_env(&RealEnv))
}

/// Apply `edits` to the file at `path` (created if missing).
///
/// - A symbolic link is followed to its target, which is what gets written (the link stays);
///   a link to nothing is refused.
/// - The person's intent is kept: a file (or, for a new file, a folder) owned by another
///   user is refused (as under `sudo`), and so is a read-only file; a file others can read
///   that receives a secret is made private ([`EditReceipt::tightened`]); otherwise the
///   file's permissions are kept (new files are private).
/// - tapcred's writers of one file are serialised by a lock in the private folder; another
///   program's change made while tapcred edits is not overwritten: the file is read again
///   just before the rename, and again through the replaced file after it (a writer that
///   writes in place, as `aws configure set` does), and the edit is redone on what was found.
pub fn apply_edits_with(
    path: &Path,
    file: AwsFile,
    edits: &[ProfileEdit],
    opts: &EditOptions,
) -> Result<EditReceipt> {
    let target = resolve_target(path, file)?;
    check_intent(&target, file)?;
    if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_dir(dir, file)?;
    }
    let state = state_paths(opts, &target, file)?;
    let _lock = lock(&state.lock, file)?;
    clean_leftovers(&target, file, &state);
    let tightened = edits
        .iter()
        .flat_map(|e| &e.set)
        .any(|(k, _)| SECRET_KEYS.contains(&k.to_ascii_lowercase().as_str()))
        .then(|| platform::fs::others_can_read(&target))
        .flatten();
    let mut backup = None;
    let mut last = None;
    let changed = write_carefully(&target, file, |base, on_disk| {
        let text = match base {
            Some(bytes) => utf8(&target, file, bytes.clone())?,
            None => Zeroizing::new(String::new()),
        };
        if base.is_some()
            && let Err(e) = parse_files(&[(file.kind(), &target, &text)])
        {
            // Half of another program's write is not the person's mistake: look again.
            if read_bytes(&target, file)?.as_ref() != on_disk {
                return Ok(Step::Retry);
            }
            return Err(e);
        }
        let inverse = inverse_edits(&text, file, edits);
        let out = Zeroizing::new(edit_text(&text, file, edits)?.as_bytes().to_vec());
        last = Some((base.cloned(), out.clone(), inverse));
        if on_disk == Some(&out) {
            return Ok(Step::Nothing);
        }
        if opts.backup
            && !edits.iter().any(|e| e.no_backup)
            && file == AwsFile::Config
            && backup.is_none()
            && let Some(prev) = base
            && fs::symlink_metadata(&state.backup).is_err()
        {
            write_new_private(&state.backup, prev)
                .map_err(|e| io_error(&state.backup, file, "cannot write the backup", e))?;
            backup = Some(state.backup.clone());
        }
        let perms = match (&tightened, on_disk) {
            (Some(_), _) | (None, None) => Perms::Private,
            (None, Some(_)) => Perms::KeepExisting,
        };
        Ok(Step::Write(out, perms))
    })?;
    let (previous, written, inverse) = last.expect("write_carefully plans at least once");
    Ok(EditReceipt {
        path: target.clone(),
        file,
        changed,
        backup: backup.filter(|_| changed),
        tightened: tightened.filter(|_| changed),
        lock_path: state.lock.clone(),
        previous,
        written,
        inverse,
    })
}

/// Remove `keys` from `profile` (every occurrence), like [`apply_edits`].
pub fn remove_keys(
    path: &Path,
    file: AwsFile,
    profile: &str,
    keys: &[&str],
) -> Result<EditReceipt> {
    let mut edit = ProfileEdit::new(profile);
    for k in keys {
        edit = edit.remove(*k);
    }
    apply_edits(path, file, &[edit])
}

/// The (lower-cased) keys `profile` has in the file at `path` (empty when the file or the
/// section is missing).
pub fn keys_in(path: &Path, file: AwsFile, profile: &str) -> Result<Vec<String>> {
    let real = resolve_target(path, file).unwrap_or_else(|_| path.to_owned());
    let Some(bytes) = read_bytes(&real, file)? else {
        return Ok(Vec::new());
    };
    let text = utf8(path, file, bytes)?;
    let lines = split_lines(&text);
    let sections = sections_of(&lines, file, profile);
    let mut keys: Vec<String> = sections
        .iter()
        .flat_map(|s| s.header + 1..s.end)
        .filter(|&i| classify(lines[i].text) == Kind::Property)
        .filter_map(|i| property_key(lines[i].text))
        .collect();
    keys.sort();
    keys.dedup();
    Ok(keys)
}
