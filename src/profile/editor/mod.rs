//! Byte-preserving edits of `~/.aws/config` and `~/.aws/credentials` (for `configure` and
//! `enroll`).
//!
//! Only the lines an edit needs are touched: a key that exists is rewritten in place (its
//! spelling, the spacing around `=` and a trailing `# comment` are kept), a new key goes at the
//! end of its section (before the section's trailing blank lines and comments), a missing
//! section is appended at the end of the file with the header style of that file
//! (`[profile x]` in config except `[default]`, `[x]` in credentials). Every other byte stays:
//! comments, order, blank lines, unknown keys, other profiles, CRLF line endings (new lines use
//! the file's style), a missing final newline, indentation.
//!
//! Writing (see [`apply_edits_with`]): a symbolic link is followed to its target; a file or
//! folder of another user and a read-only file are refused; tapcred's writers are serialised
//! by a lock file in tapcred's private folder ([`private_dir`]), never beside the AWS file;
//! the new text goes to a temporary file in the same directory (fsync, rename), and a change
//! another program made meanwhile is seen (the file is read again before and after the
//! rename, and so is the replaced file) and the edit redone on it; what such a program wrote
//! into the replaced file, or over this edit's text, is merged back by lines. The file's permissions are kept (new files are private;
//! a file others can read is made private when it receives a secret). The config file is
//! kept once, as before tapcred's first edit, in the private folder; the credentials file
//! never gets a backup (it would be a plaintext copy of the access keys). What older versions
//! left beside the file (`NAME.tapcred.lock`, `NAME.tapcred.bak`) is cleaned up where
//! nothing is lost ([`leftovers_beside`] lists it for `doctor`). Values are held as
//! secrets and zeroized; errors never contain them.
//!
//! The line rules are those of aws-config's parser (`aws_runtime::env_config::parse`): a line
//! starting with `[` is a section header, `#`/`;` at column 0 a comment, a non-blank line
//! starting with a space or tab continues the previous property, anything else is
//! `key = value` (an inline comment needs whitespace before `#`/`;`).

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use aws_runtime::env_config::file::EnvConfigFileKind;
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use super::load::parse_files;
use crate::env::{EnvLookup, RealEnv};
use crate::error::{Error, Result};
use crate::platform;
use crate::platform::fs::{Perms, Staged};

/// Which AWS file is edited (decides the header style and the parse rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AwsFile {
    Config,
    Credentials,
}

impl AwsFile {
    fn kind(self) -> EnvConfigFileKind {
        match self {
            AwsFile::Config => EnvConfigFileKind::Config,
            AwsFile::Credentials => EnvConfigFileKind::Credentials,
        }
    }

    fn what(self) -> &'static str {
        match self {
            AwsFile::Config => "config",
            AwsFile::Credentials => "credentials",
        }
    }

    /// The header line for `profile` in this file.
    pub fn header(self, profile: &str) -> String {
        match (self, profile) {
            (AwsFile::Credentials, p) | (AwsFile::Config, p @ "default") => format!("[{p}]"),
            (AwsFile::Config, p) => format!("[profile {p}]"),
        }
    }
}

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

/// The editor's private folder: `aws-files` in tapcred's data directory (owner-only, never
/// a link). It holds one lock file per edited file, named after the file and keyed by its
/// real path (`config-<hash>.lock`), and the config backup (`config-<hash>.bak`); nothing
/// is put beside the AWS files themselves.
pub fn private_dir(env: &dyn EnvLookup) -> Option<PathBuf> {
    platform::locations::data_dir(env).map(|d| d.join("aws-files"))
}

/// The keys whose values are secrets: a file receiving one is made private.
const SECRET_KEYS: [&str; 3] = [
    "aws_secret_access_key",
    "aws_session_token",
    "aws_security_token",
];

/// How often an edit is redone when another program changes the file while tapcred edits
/// it, before giving up.
const MAX_ATTEMPTS: u32 = 50;

/// An existing empty file that was just written is read again this often, this far apart,
/// before it is edited (up to 2 s: another program's write may be stalled halfway).
const EMPTY_LOOKS: u32 = 100;
const EMPTY_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

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

/// What one attempt of [`write_carefully`] does with the file.
enum Step {
    /// Replace it with these bytes.
    Write(Bytes, Perms),
    /// Leave it: it already holds what it should.
    Nothing,
    /// It changed while it was read: read it again.
    Retry,
}

/// Replace `target` atomically with what `plan` makes of its text, without overwriting what
/// another program writes meanwhile: the file is read again just before the rename, and
/// again through the replaced file after it (a writer that writes in place, as
/// `aws configure set` does, writes into the file it had open), and the plan is redone on
/// what was found. `plan` gets the text to start from (`None`: no file) and the bytes on disk.
/// Whether the file was written. The caller holds the lock.
fn write_carefully(
    target: &Path,
    file: AwsFile,
    mut plan: impl FnMut(Option<&Bytes>, Option<&Bytes>) -> Result<Step>,
) -> Result<bool> {
    let mut wrote = false;
    // Versions of the file that a write of this edit or of another program replaced before
    // anyone read them again: carried onto the file every later attempt starts from, until
    // one is written and nothing is replaced after it.
    let mut lost = Lost::default();
    let mut attempts = 0;
    // Holding the only copy of a lost version, the edit keeps trying longer.
    while attempts < MAX_ATTEMPTS || (!lost.versions.is_empty() && attempts < MAX_ATTEMPTS * 10) {
        attempts += 1;
        let (mut held, on_disk) = open_current(target, file)?;
        let carried = lost
            .carried_onto(on_disk.as_ref())
            .filter(|b| parses(target, file, b));
        let from_disk = carried.is_none();
        let base = carried.or_else(|| on_disk.clone());
        let (out, perms) = match plan(base.as_ref(), on_disk.as_ref())? {
            Step::Write(out, perms) => (out, perms),
            Step::Nothing => return Ok(wrote),
            Step::Retry => continue,
        };
        let tmp = write_temp(target, file, &out, perms)?;
        // Just before the rename: is the file still what this attempt was based on?
        if read_bytes(target, file)? != on_disk {
            continue;
        }
        if !platform::fs::CAN_REPLACE_OPEN_FILE {
            // Windows refuses the rename while it is open; a writer that has it open there
            // makes the rename fail instead of writing into a replaced file.
            held = None;
        }
        tmp.commit(target)
            .map_err(|e| io_error(target, file, "cannot write", e))?;
        wrote = true;
        let mut now_lost = Vec::new();
        // A writer that had the file open writes into the one just replaced: look at it
        // (empty: halfway through such a write, or nothing to keep).
        if let Some(f) = held.as_mut()
            && let Some(after) = settled(f)
            && Some(&after) != on_disk.as_ref()
        {
            now_lost.push((on_disk.clone(), after));
        }
        // A writer that read the file before the rename and writes it back in place after
        // it replaces this write's text with its own.
        let current = read_bytes(target, file)?;
        if current.as_ref() != Some(&out) {
            now_lost.push((on_disk.clone(), out.clone()));
        }
        if now_lost.is_empty() {
            return Ok(wrote);
        }
        lost = Lost {
            versions: now_lost,
            ours: Some(out).filter(|_| from_disk),
        };
    }
    Err(Error::config(format!(
        "{}: the AWS {} file kept changing while tapcred edited it ({MAX_ATTEMPTS} tries): another program is writing it; run again when it is done",
        target.display(),
        file.what()
    )))
}

/// Versions of a file that were replaced before anyone read them again, each with the
/// version it was made from: another program's in-place write into the file a rename
/// replaced, or a write of this edit that another program then wrote over in place.
#[derive(Default)]
struct Lost {
    versions: Vec<(Option<Bytes>, Bytes)>,
    /// What the rename wrote, when it was made from the file on disk itself (nothing carried
    /// into it).
    ours: Option<Bytes>,
}

impl Lost {
    /// The text the next attempt starts from, given what the file holds now: while the file
    /// holds `ours` and the only loss is another program's write into the replaced file, that
    /// program's text (the edit is then redone on it); otherwise each lost version's change
    /// merged into what the file holds. `None`: nothing to carry, or it cannot be carried (the
    /// file is gone, or too large to compare): the file is taken as it is.
    fn carried_onto(&self, current: Option<&Bytes>) -> Option<Bytes> {
        let current = current?;
        if let ([(_, after)], Some(ours)) = (self.versions.as_slice(), &self.ours)
            && current == ours
            && after != ours
        {
            return Some(after.clone());
        }
        if self.versions.is_empty() {
            return None;
        }
        let mut merged = current.clone();
        for (before, after) in &self.versions {
            let before = before.as_deref().map_or(&[][..], |b| b.as_slice());
            merged = Zeroizing::new(merge_lines(before, after, &merged)?);
        }
        Some(merged)
    }
}

fn parses(target: &Path, file: AwsFile, bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes).is_ok_and(|text| parse_files(&[(file.kind(), target, text)]).is_ok())
}

/// A three-way merge by lines: the changes from `base` to `theirs` made on `ours`. Where
/// both inserted lines at one place, `ours`' come first, then `theirs`' (only one of them
/// when it already holds the other's); where both changed the same lines, `ours` is kept
/// (the later write wins). `None` when the files are too large to compare.
fn merge_lines(base: &[u8], theirs: &[u8], ours: &[u8]) -> Option<Vec<u8>> {
    fn lines(b: &[u8]) -> Vec<&[u8]> {
        b.split_inclusive(|&c| c == b'\n').collect()
    }
    let (b, t, o) = (lines(base), lines(theirs), lines(ours));
    let in_theirs = matching_lines(&b, &t)?;
    let in_ours = matching_lines(&b, &o)?;
    let mut out = Vec::with_capacity(ours.len() + theirs.len());
    let (mut bi, mut ti, mut oi) = (0, 0, 0);
    let stable = (0..b.len())
        .filter_map(|i| Some((i, in_theirs[i]?, in_ours[i]?)))
        .chain([(b.len(), t.len(), o.len())]);
    for (bj, tj, oj) in stable {
        let (rb, rt, ro) = (&b[bi..bj], &t[ti..tj], &o[oi..oj]);
        let taken: &[&[&[u8]]] = if rt == rb || rt == ro {
            &[ro]
        } else if ro == rb {
            &[rt]
        } else if rb.is_empty() && !contains(ro, rt) && !contains(rt, ro) {
            &[ro, rt]
        } else if rb.is_empty() && contains(rt, ro) {
            &[rt]
        } else {
            &[ro]
        };
        for line in taken.iter().flat_map(|r| r.iter()) {
            out.extend_from_slice(line);
        }
        if let Some(line) = o.get(oj) {
            out.extend_from_slice(line);
        }
        (bi, ti, oi) = (bj + 1, tj + 1, oj + 1);
    }
    Some(out)
}

/// Whether `part` is a run of consecutive lines of `whole`.
fn contains(whole: &[&[u8]], part: &[&[u8]]) -> bool {
    part.is_empty() || whole.windows(part.len()).any(|w| w == part)
}

/// For each line of `a`, the line of `b` it is paired with in a longest common subsequence
/// (common first and last lines are paired directly; the rest by a table, `None` when that
/// would exceed a few million cells).
fn matching_lines(a: &[&[u8]], b: &[&[u8]]) -> Option<Vec<Option<usize>>> {
    const MAX_CELLS: usize = 4_000_000;
    let mut pair = vec![None; a.len()];
    let head = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let tail = a[head..]
        .iter()
        .rev()
        .zip(b[head..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    for (i, p) in pair.iter_mut().enumerate().take(head) {
        *p = Some(i);
    }
    for k in 1..=tail {
        pair[a.len() - k] = Some(b.len() - k);
    }
    let (ma, mb) = (&a[head..a.len() - tail], &b[head..b.len() - tail]);
    if ma.is_empty() || mb.is_empty() {
        return Some(pair);
    }
    if (ma.len() + 1).saturating_mul(mb.len() + 1) > MAX_CELLS {
        return None;
    }
    let w = mb.len() + 1;
    let mut len = vec![0u32; (ma.len() + 1) * w];
    for i in (0..ma.len()).rev() {
        for j in (0..mb.len()).rev() {
            len[i * w + j] = if ma[i] == mb[j] {
                len[(i + 1) * w + j + 1] + 1
            } else {
                len[(i + 1) * w + j].max(len[i * w + j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    while i < ma.len() && j < mb.len() {
        if ma[i] == mb[j] {
            pair[head + i] = Some(head + j);
            (i, j) = (i + 1, j + 1);
        } else if len[(i + 1) * w + j] >= len[i * w + j + 1] {
            i += 1;
        } else {
            j += 1;
        }
    }
    Some(pair)
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

// ---------------------------------------------------------------- the text edit itself

/// One physical line: its text without the terminator, and the terminator ("\n", "\r\n" or
/// "" for a last line without one).
struct Line<'a> {
    text: &'a str,
    eol: &'a str,
}

fn split_lines(text: &str) -> Vec<Line<'_>> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        match rest.find('\n') {
            Some(i) => {
                let (line, eol) = if i > 0 && rest.as_bytes()[i - 1] == b'\r' {
                    (&rest[..i - 1], &rest[i - 1..=i])
                } else {
                    (&rest[..i], &rest[i..=i])
                };
                out.push(Line { text: line, eol });
                rest = &rest[i + 1..];
            }
            None => {
                out.push(Line {
                    text: rest,
                    eol: "",
                });
                rest = "";
            }
        }
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Blank,
    Comment,
    Header,
    Continuation,
    Property,
}

fn classify(line: &str) -> Kind {
    if line.trim_matches([' ', '\t']).is_empty() {
        Kind::Blank
    } else if line.starts_with(['#', ';']) {
        Kind::Comment
    } else if line.starts_with('[') {
        Kind::Header
    } else if line.starts_with([' ', '\t']) {
        Kind::Continuation
    } else {
        Kind::Property
    }
}

/// Index where an inline comment starts (aws-config's rule: `#`/`;` after whitespace for
/// properties, anywhere for headers).
fn comment_start(line: &str, need_whitespace: bool) -> Option<usize> {
    let mut prev_ws = false;
    for (i, c) in line.char_indices() {
        if (c == '#' || c == ';') && (prev_ws || !need_whitespace) {
            return Some(i);
        }
        prev_ws = c.is_whitespace();
    }
    None
}

/// `(prefix, name)` of a header line, as aws-config normalises it.
fn header_parts(line: &str) -> Option<(Option<&str>, &str)> {
    let line = line.trim_matches([' ', '\t']);
    let line = match comment_start(line, false) {
        Some(i) => &line[..i],
        None => line,
    };
    let inner = line
        .trim_matches([' ', '\t'])
        .strip_prefix('[')?
        .strip_suffix(']')?
        .trim_matches([' ', '\t']);
    Some(match inner.split_once([' ', '\t']) {
        Some((prefix, name)) => (Some(prefix.trim()), name.trim()),
        None => (None, inner.trim()),
    })
}

/// The lower-cased key of a property line.
fn property_key(line: &str) -> Option<String> {
    let (k, _) = line.split_once('=')?;
    Some(k.trim_matches([' ', '\t']).to_ascii_lowercase())
}

/// Whether the header line belongs to `profile` in `file`.
fn header_matches(line: &str, file: AwsFile, profile: &str, prefixed_default: bool) -> bool {
    let Some((prefix, name)) = header_parts(line) else {
        return false;
    };
    match file {
        AwsFile::Credentials => prefix.is_none() && name == profile,
        AwsFile::Config => match (prefix, profile) {
            (Some("profile"), p) => name == p,
            (None, "default") => name == "default" && !prefixed_default,
            _ => false,
        },
    }
}

/// A section of the file: the header line index and the end (exclusive).
struct Section {
    header: usize,
    end: usize,
}

fn sections_of(lines: &[Line<'_>], file: AwsFile, profile: &str) -> Vec<Section> {
    let prefixed_default = file == AwsFile::Config
        && lines.iter().any(|l| {
            classify(l.text) == Kind::Header
                && header_parts(l.text) == Some((Some("profile"), "default"))
        });
    let headers: Vec<usize> = (0..lines.len())
        .filter(|&i| classify(lines[i].text) == Kind::Header)
        .collect();
    headers
        .iter()
        .enumerate()
        .filter(|(_, h)| header_matches(lines[**h].text, file, profile, prefixed_default))
        .map(|(n, &h)| Section {
            header: h,
            end: headers.get(n + 1).copied().unwrap_or(lines.len()),
        })
        .collect()
}

/// Property lines of `key` in the sections, each with its continuation lines.
fn occurrences(lines: &[Line<'_>], sections: &[Section], key: &str) -> Vec<(usize, Vec<usize>)> {
    let mut out = Vec::new();
    for s in sections {
        let mut i = s.header + 1;
        while i < s.end {
            if classify(lines[i].text) == Kind::Property
                && property_key(lines[i].text).as_deref() == Some(key)
            {
                let mut conts = Vec::new();
                let mut j = i + 1;
                while j < s.end {
                    match classify(lines[j].text) {
                        Kind::Blank | Kind::Comment => {}
                        Kind::Continuation => conts.push(j),
                        _ => break,
                    }
                    j += 1;
                }
                out.push((i, conts));
                i = j;
            } else {
                i += 1;
            }
        }
    }
    out
}

/// The value's byte range in a property line (after `=` and its spaces, before an inline
/// comment and trailing spaces).
fn value_range(line: &str) -> (usize, usize) {
    let eq = line.find('=').unwrap_or(line.len());
    let end_limit = comment_start(line, true)
        .filter(|&c| c > eq)
        .unwrap_or(line.len());
    let start = eq + 1 + line[eq + 1..end_limit].len()
        - line[eq + 1..end_limit]
            .trim_start_matches([' ', '\t'])
            .len();
    let end = start + line[start..end_limit].trim_end_matches([' ', '\t']).len();
    (start, end.max(start))
}

fn check_key(key: &str) -> Result<()> {
    let ok = !key.is_empty()
        && key.chars().all(|c| {
            c.is_ascii_alphanumeric() || ['_', '-', '/', '.', '%', '@', ':', '+'].contains(&c)
        });
    if ok {
        Ok(())
    } else {
        Err(Error::internal(format!(
            "internal error: {key:?} is not a valid AWS config key; please report this"
        )))
    }
}

fn check_value(key: &str, value: &str) -> Result<()> {
    let bad = value.is_empty()
        || value.contains(['\n', '\r'])
        || value.starts_with([' ', '\t'])
        || value.ends_with([' ', '\t'])
        || comment_start(value, true).is_some_and(|i| i > 0);
    if bad {
        return Err(Error::usage(format!(
            "the value for {key} is empty, spans lines, has leading/trailing spaces or a ' #'/' ;' (which AWS reads as a comment); give a single-line value without those"
        )));
    }
    Ok(())
}

fn check_profile(profile: &str) -> Result<()> {
    let ok = !profile.is_empty()
        && profile.chars().all(|c| {
            c.is_ascii_alphanumeric() || ['_', '-', '/', '.', '%', '@', ':', '+'].contains(&c)
        });
    if ok {
        Ok(())
    } else {
        Err(Error::usage(format!(
            "profile name {profile:?} is not valid in AWS files; use letters, digits and _-/.%@:+"
        )))
    }
}

/// Apply the edits to `text`. Pure; the basis of [`apply_edits`] (and of its property tests).
pub fn edit_text(text: &str, file: AwsFile, edits: &[ProfileEdit]) -> Result<Zeroizing<String>> {
    let mut cur = Zeroizing::new(text.to_owned());
    for edit in edits {
        check_profile(&edit.profile)?;
        for (k, v) in &edit.set {
            check_key(k)?;
            check_value(k, v.expose_secret())?;
        }
        for k in &edit.remove {
            check_key(k)?;
        }
        cur = edit_one(&cur, file, edit);
    }
    Ok(cur)
}

/// The line ending new lines get: the file's first one, else "\n".
fn eol_style(lines: &[Line<'_>]) -> &'static str {
    match lines.iter().find(|l| !l.eol.is_empty()) {
        Some(l) if l.eol == "\r\n" => "\r\n",
        _ => "\n",
    }
}

/// `key=value` or `key = value`, as the profile's (else the file's) first property does.
fn spaced(lines: &[Line<'_>], sections: &[Section]) -> bool {
    let first_in = |range: std::ops::Range<usize>| {
        range
            .filter(|&i| classify(lines[i].text) == Kind::Property)
            .find_map(|i| {
                let t = lines[i].text;
                let eq = t.find('=')?;
                Some(t[..eq].ends_with([' ', '\t']))
            })
    };
    sections
        .iter()
        .find_map(|s| first_in(s.header + 1..s.end))
        .or_else(|| first_in(0..lines.len()))
        .unwrap_or(true)
}

fn edit_one(text: &str, file: AwsFile, edit: &ProfileEdit) -> Zeroizing<String> {
    let lines = split_lines(text);
    let eol = eol_style(&lines);
    let sections = sections_of(&lines, file, &edit.profile);
    let sep = if spaced(&lines, &sections) {
        " = "
    } else {
        "="
    };

    // Per original line: None = keep, Some(text) = replace (empty vec = delete).
    let mut replace: Vec<Option<Vec<Zeroizing<String>>>> = vec![None; lines.len()];
    let mut new_keys: Vec<Zeroizing<String>> = Vec::new();

    // The last assignment of a key within one edit wins.
    let mut sets: Vec<(String, &SecretString)> = Vec::new();
    for (k, v) in &edit.set {
        let k = k.to_ascii_lowercase();
        sets.retain(|(x, _)| *x != k);
        sets.push((k, v));
    }
    let removes: Vec<String> = edit
        .remove
        .iter()
        .map(|k| k.to_ascii_lowercase())
        .filter(|k| !sets.iter().any(|(s, _)| s == k))
        .collect();

    for key in &removes {
        for (line, conts) in occurrences(&lines, &sections, key) {
            replace[line] = Some(Vec::new());
            for c in conts {
                replace[c] = Some(Vec::new());
            }
        }
    }
    for (key, value) in &sets {
        let value = value.expose_secret();
        let occ = occurrences(&lines, &sections, key);
        // Every occurrence gets the value: aws-config merges duplicate sections whose
        // headers are spelled differently (`[profile a]`, `[ profile  a ]`) in hash order,
        // so "the last one" is not reliably the one read.
        match occ.is_empty() {
            false => {
                for (line, conts) in &occ {
                    let t = lines[*line].text;
                    let (start, end) = value_range(t);
                    let mut new = Zeroizing::new(String::with_capacity(t.len() + value.len()));
                    new.push_str(&t[..start]);
                    if start == end && !t[..start].ends_with([' ', '\t']) && sep == " = " {
                        new.push(' ');
                    }
                    new.push_str(value);
                    if start == end && end < t.len() && !t[end..].starts_with([' ', '\t']) {
                        new.push(' ');
                    }
                    new.push_str(&t[end..]);
                    if *new != *t {
                        replace[*line] = Some(vec![new]);
                    }
                    for c in conts {
                        replace[*c] = Some(Vec::new());
                    }
                }
            }
            true => {
                let mut new = Zeroizing::new(String::new());
                new.push_str(key);
                new.push_str(sep);
                new.push_str(value);
                new_keys.push(new);
            }
        }
    }

    // Where new keys go: after the last property (or continuation) line of the last section,
    // else right after its header; a missing section goes at the end of the file. With
    // `in_place_of_removed`, where the section's first removed property line was.
    let mut insert_after: Option<usize> = None;
    let mut insert_at: Option<usize> = None;
    let mut append_section = false;
    if !new_keys.is_empty() {
        let removed_at = sections
            .last()
            .filter(|_| edit.in_place_of_removed)
            .and_then(|s| {
                (s.header + 1..s.end).find(|&i| {
                    classify(lines[i].text) == Kind::Property
                        && matches!(&replace[i], Some(v) if v.is_empty())
                })
            });
        match sections.last() {
            Some(_) if removed_at.is_some() => insert_at = removed_at,
            Some(s) => {
                let last = (s.header + 1..s.end)
                    .rev()
                    .find(|&i| {
                        matches!(classify(lines[i].text), Kind::Property | Kind::Continuation)
                            && !matches!(&replace[i], Some(v) if v.is_empty())
                    })
                    .unwrap_or(s.header);
                insert_after = Some(last);
            }
            None => append_section = true,
        }
    }

    // Output lines (body, terminator): original lines keep theirs, new lines get the file's.
    let mut outl: Vec<(&str, &str)> = Vec::with_capacity(lines.len() + new_keys.len() + 2);
    for (i, line) in lines.iter().enumerate() {
        if insert_at == Some(i) {
            let eol_here = if line.eol.is_empty() { eol } else { line.eol };
            outl.extend(new_keys.iter().map(|k| (k.as_str(), eol_here)));
        }
        match &replace[i] {
            None => outl.push((line.text, line.eol)),
            Some(v) => outl.extend(v.iter().map(|b| (b.as_str(), line.eol))),
        }
        if insert_after == Some(i) {
            outl.extend(new_keys.iter().map(|k| (k.as_str(), eol)));
        }
    }
    let header = file.header(&edit.profile);
    if append_section {
        if lines
            .last()
            .is_some_and(|l| classify(l.text) != Kind::Blank)
        {
            outl.push(("", eol));
        }
        outl.push((&header, eol));
        outl.extend(new_keys.iter().map(|k| (k.as_str(), eol)));
    }
    // Every line but the last is terminated; the file ends without a newline only if it did.
    // (When the unterminated last line itself is removed, the line before it keeps its own
    // terminator: only that line's bytes go.)
    let last = lines.len().wrapping_sub(1);
    let last_removed = !lines.is_empty()
        && matches!(&replace[last], Some(v) if v.is_empty())
        && insert_after != Some(last)
        && insert_at != Some(last)
        && !append_section;
    let ended_without_eol = lines.last().is_some_and(|l| l.eol.is_empty()) && !last_removed;
    let n = outl.len();
    let mut out = Zeroizing::new(String::with_capacity(text.len() + 256));
    for (i, (body, line_eol)) in outl.into_iter().enumerate() {
        out.push_str(body);
        if i + 1 < n || !ended_without_eol {
            out.push_str(if line_eol.is_empty() { eol } else { line_eol });
        }
    }
    out
}

/// The edits that undo `edits` on `text` (previous values back, new keys removed).
fn inverse_edits(text: &str, file: AwsFile, edits: &[ProfileEdit]) -> Vec<ProfileEdit> {
    let lines = split_lines(text);
    let mut out: Vec<ProfileEdit> = Vec::new();
    for edit in edits.iter().rev() {
        let sections = sections_of(&lines, file, &edit.profile);
        let mut inv = ProfileEdit::new(edit.profile.clone());
        let keys = edit
            .set
            .iter()
            .map(|(k, _)| k.to_ascii_lowercase())
            .chain(edit.remove.iter().map(|k| k.to_ascii_lowercase()));
        for key in keys {
            match occurrences(&lines, &sections, &key).last() {
                Some((line, _)) => {
                    let t = lines[*line].text;
                    let (s, e) = value_range(t);
                    if s < e {
                        inv = inv.set_secret(key, SecretString::from(t[s..e].to_owned()));
                    } else {
                        inv = inv.remove(key);
                    }
                }
                None => inv = inv.remove(key),
            }
        }
        out.push(inv);
    }
    out
}

// ---------------------------------------------------------------- files, lock, atomic write

/// The file an edit writes: `path`, or the file a symbolic link at `path` leads to (so the
/// rename replaces that file and the link stays). A link that leads nowhere is refused
/// rather than replaced by a regular file (which would silently cut the link, say into a
/// dotfiles repository) or followed into creating its target (a folder tapcred did not
/// choose).
fn resolve_target(path: &Path, file: AwsFile) -> Result<PathBuf> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => fs::canonicalize(path).map_err(|e| {
            let dest = fs::read_link(path)
                .map(|d| d.display().to_string())
                .unwrap_or_else(|_| "?".to_owned());
            let why = match e.kind() {
                io::ErrorKind::NotFound => "does not exist".to_owned(),
                _ => format!("cannot be followed ({e})"),
            };
            Error::config(format!(
                "{}: the AWS {} file is a symbolic link to {dest}, which {why}; create the file it leads to, or remove the link, then run again",
                path.display(),
                file.what()
            ))
            .with_source(e)
        }),
        _ => Ok(path.to_owned()),
    }
}

/// What the person's files say about being written: another user's file (or, for a new
/// file, another user's folder: the file would be ours in their folder, as after `sudo -E`)
/// and a read-only file are refused with the fix.
fn check_intent(target: &Path, file: AwsFile) -> Result<()> {
    let (at, md, system_ok) = match fs::metadata(target) {
        Ok(md) => (target.to_owned(), md, false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // The folder the new file goes in, or the nearest one that exists.
            let Some((dir, md)) = target
                .ancestors()
                .skip(1)
                .filter(|d| !d.as_os_str().is_empty())
                .find_map(|d| fs::metadata(d).ok().map(|md| (d.to_owned(), md)))
            else {
                return Ok(());
            };
            (dir, md, true)
        }
        // Reported by the read that follows, with its own words.
        Err(_) => return Ok(()),
    };
    if let Some(owner) = platform::fs::foreign_owner(&at, &md, system_ok) {
        let what = if system_ok {
            format!("the folder for the AWS {} file", file.what())
        } else {
            format!("the AWS {} file", file.what())
        };
        return Err(Error::config(format!(
            "{}: {what} belongs to {owner}, not to you; tapcred does not write another user's files: run it as that user (without sudo), or set AWS_CONFIG_FILE / AWS_SHARED_CREDENTIALS_FILE to files of yours",
            at.display()
        )));
    }
    if !system_ok && let Some(how) = platform::fs::read_only(&md) {
        return Err(Error::config(format!(
            "{}: the AWS {} file is read-only ({how}), so tapcred leaves it alone; run `{}` to let tapcred edit it, or make the change by hand",
            at.display(),
            file.what(),
            platform::fs::make_writable_hint(&at)
        )));
    }
    Ok(())
}

/// The editor's own files for `target`, in the private folder.
struct StatePaths {
    lock: PathBuf,
    backup: PathBuf,
}

/// `NAME-<hash>` for `target`: its file name (for people) and a hash of its real path (two
/// names, links or spellings of one file share a lock).
fn state_paths(opts: &EditOptions, target: &Path, file: AwsFile) -> Result<StatePaths> {
    let Some(dir) = &opts.private_dir else {
        return Err(Error::config(format!(
            "{}: cannot edit the AWS {} file: no home folder is known for tapcred's private folder; set {}",
            target.display(),
            file.what(),
            platform::locations::HOME_VAR
        )));
    };
    prepare_private_dir(dir)?;
    let name = target.file_name().unwrap_or_default().to_string_lossy();
    let stem = format!("{name}-{}", path_hash(target));
    Ok(StatePaths {
        lock: dir.join(format!("{stem}.lock")),
        backup: dir.join(format!("{stem}.bak")),
    })
}

/// The lock file the editor uses for the file at `path` (tests, `doctor`).
pub fn lock_path(opts: &EditOptions, path: &Path, file: AwsFile) -> Result<PathBuf> {
    Ok(state_paths(opts, &resolve_target(path, file)?, file)?.lock)
}

/// A short hash of the real path of `target` (its folder resolved; the file may not exist).
fn path_hash(target: &Path) -> String {
    use sha2::{Digest, Sha256};
    let real = match (target.parent(), target.file_name()) {
        (Some(dir), Some(name)) => fs::canonicalize(if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        })
        .map(|d| d.join(name))
        .unwrap_or_else(|_| target.to_owned()),
        _ => target.to_owned(),
    };
    let digest = Sha256::digest(real.as_os_str().as_encoded_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

fn prepare_private_dir(dir: &Path) -> Result<()> {
    use platform::fs::DirProblem;
    let fix = "remove it or set XDG_DATA_HOME";
    let shown = dir.display();
    if fs::symlink_metadata(dir).is_err()
        && let Err(e) = platform::fs::create_private_dir_all(dir)
        && e.kind() != io::ErrorKind::AlreadyExists
    {
        return Err(Error::io(format!(
            "{shown}: cannot create tapcred's private folder for AWS file locks ({e}); check its parent's permissions or set XDG_DATA_HOME"
        )));
    }
    let why = match platform::fs::check_private_dir(dir) {
        Ok(_) => return Ok(()),
        Err(DirProblem::Missing) => "vanished while it was prepared".to_owned(),
        Err(DirProblem::Unreadable(e)) => format!("is unreadable ({e})"),
        Err(DirProblem::Link) => format!(
            "is a symbolic link, which tapcred does not follow for its private folder; {fix}"
        ),
        Err(DirProblem::NotDir(what)) => format!("is {what}, not a folder; {fix}"),
        Err(DirProblem::Foreign(owner)) => format!("belongs to {owner}, not to you; {fix}"),
        Err(DirProblem::CannotTighten(e)) => {
            format!("is open to others and cannot be made private ({e})")
        }
    };
    Err(Error::io(format!(
        "{shown}: tapcred's private folder for AWS file locks {why}"
    )))
}

fn io_error(path: &Path, file: AwsFile, what: &str, e: io::Error) -> Error {
    Error::io(format!(
        "{}: {what} (AWS {} file): {e}; check the directory's permissions and free space",
        path.display(),
        file.what()
    ))
    .with_source(e)
}

fn create_dir(dir: &Path, file: AwsFile) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    platform::fs::create_private_dir_all(dir)
        .map_err(|e| io_error(dir, file, "cannot create the directory", e))
}

/// Hold an exclusive lock on the lock file at `path` until dropped. The file stays (removing
/// a lock file another process has open would let a third one lock a new file of the same
/// name); it is in the private folder, not beside the AWS file.
fn lock(path: &Path, file: AwsFile) -> Result<File> {
    let f = match platform::fs::open_lock_file(path, true) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            platform::fs::open_lock_file(path, false)
        }
        r => r,
    }
    .map_err(|e| io_error(path, file, "cannot open the lock file", e))?;
    f.lock()
        .map_err(|e| io_error(path, file, "cannot lock", e))?;
    Ok(f)
}

fn read_error(path: &Path, file: AwsFile, e: &io::Error) -> Error {
    Error::config(format!(
        "{}: cannot read the AWS {} file: {e}; check its permissions",
        path.display(),
        file.what()
    ))
}

fn read_bytes(path: &Path, file: AwsFile) -> Result<Option<Zeroizing<Vec<u8>>>> {
    match fs::read(path) {
        Ok(b) => Ok(Some(Zeroizing::new(b))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(read_error(path, file, &e)),
    }
}

/// A file's bytes, wiped on drop.
type Bytes = Zeroizing<Vec<u8>>;

/// The file, open (kept to see what a writer that has it open writes after the rename), and
/// its bytes; `(None, None)` when it does not exist. An empty file is what another
/// program's in-place write (truncate, then write) looks like halfway, so it is read again
/// a few times before it is taken as empty.
fn open_current(path: &Path, file: AwsFile) -> Result<(Option<File>, Option<Bytes>)> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((None, None)),
        Err(e) => return Err(read_error(path, file, &e)),
    };
    let mut bytes = reread(&mut f).map_err(|e| read_error(path, file, &e))?;
    let mut looks = 0;
    while bytes.is_empty() && looks < EMPTY_LOOKS && just_written(&f) {
        looks += 1;
        std::thread::sleep(EMPTY_PAUSE);
        bytes = reread(&mut f).map_err(|e| read_error(path, file, &e))?;
    }
    Ok((Some(f), Some(bytes)))
}

/// Whether the open file was modified in the last two seconds (an empty file that old is
/// taken as empty at once).
fn just_written(f: &File) -> bool {
    f.metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_none_or(|age| age < std::time::Duration::from_secs(2))
}

/// The bytes of the open file once they are not empty and read the same twice
/// [`EMPTY_PAUSE`] apart (a read during another program's write can see only its first
/// part), looking up to [`EMPTY_LOOKS`] times; then the last bytes that were not empty.
/// `None` when it stays empty or cannot be read.
fn settled(f: &mut File) -> Option<Zeroizing<Vec<u8>>> {
    let mut seen = reread(f).ok()?;
    for _ in 0..EMPTY_LOOKS {
        std::thread::sleep(EMPTY_PAUSE);
        let bytes = reread(f).ok()?;
        if !bytes.is_empty() && bytes == seen {
            return Some(bytes);
        }
        if !bytes.is_empty() || seen.is_empty() {
            seen = bytes;
        }
    }
    Some(seen).filter(|b| !b.is_empty())
}

fn reread(f: &mut File) -> io::Result<Zeroizing<Vec<u8>>> {
    use std::io::{Read, Seek};
    f.rewind()?;
    let mut buf = Zeroizing::new(Vec::new());
    f.read_to_end(&mut buf)?;
    Ok(buf)
}

fn utf8(path: &Path, file: AwsFile, bytes: Zeroizing<Vec<u8>>) -> Result<Zeroizing<String>> {
    match std::str::from_utf8(&bytes) {
        Ok(s) => Ok(Zeroizing::new(s.to_owned())),
        Err(_) => Err(Error::config(format!(
            "{}: the AWS {} file is not UTF-8 text; save it as UTF-8",
            path.display(),
            file.what()
        ))),
    }
}

/// Names the temp file beside an AWS file while it is written, so a leftover one says whose
/// it was.
const TEMP_PREFIX: &str = ".tapcred-";

/// The new text in a temporary file in the target's directory, fsynced, ready to be
/// renamed over it.
fn write_temp(target: &Path, file: AwsFile, data: &[u8], perms: Perms) -> Result<Staged> {
    platform::fs::stage(target, TEMP_PREFIX, data, perms)
        .map_err(|e| io_error(target, file, "cannot write", e))
}

/// A new file, private, never replacing an existing one or following a link.
/// The lock file and the backup older tapcred versions wrote beside the AWS file at `path`
/// (exactly these names; the editor's own now live in the private folder), those that exist.
fn leftover_paths(path: &Path) -> Vec<(PathBuf, Leftover)> {
    let Some(name) = path.file_name() else {
        return Vec::new();
    };
    [
        (".tapcred.lock", Leftover::Lock),
        (".tapcred.bak", Leftover::Backup),
    ]
    .into_iter()
    .map(|(suffix, kind)| {
        let mut n = name.to_os_string();
        n.push(suffix);
        (path.with_file_name(n), kind)
    })
    .filter(|(p, _)| fs::symlink_metadata(p).is_ok())
    .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leftover {
    Lock,
    Backup,
}

/// Whether the leftover at `p` is a regular file of this user (never a link, never a file
/// someone else made).
fn leftover_is_mine(p: &Path) -> bool {
    fs::symlink_metadata(p)
        .is_ok_and(|md| md.is_file() && platform::fs::foreign_owner(p, &md, false).is_none())
}

/// The old lock file at `p`, locked, when no process (an older tapcred still running)
/// holds it.
fn lock_if_free(p: &Path) -> Option<File> {
    let f = platform::fs::open_lock_file(p, false).ok()?;
    match f.try_lock() {
        Ok(()) => Some(f),
        Err(_) => None,
    }
}

/// What an older version left beside `path` (an AWS file of kind `file`), for `doctor`: each
/// leftover with what it is and what happens to it.
pub fn leftovers_beside(path: &Path, file: AwsFile) -> Vec<(PathBuf, String, Option<String>)> {
    leftover_paths(path)
        .into_iter()
        .map(|(p, kind)| {
            let rm = format!("delete it when you no longer need it: rm {}", p.display());
            let (what, fix) = match kind {
                Leftover::Lock if !leftover_is_mine(&p) => {
                    ("an old lock file that is not yours".to_owned(), Some(rm))
                }
                Leftover::Lock => match lock_if_free(&p) {
                    Some(_) => (
                        "an old lock file, not in use: tapcred's next edit of the file removes it"
                            .to_owned(),
                        None,
                    ),
                    None => (
                        "an old lock file held by a running older tapcred".to_owned(),
                        None,
                    ),
                },
                Leftover::Backup if file == AwsFile::Credentials => (
                    "an old backup: a plaintext copy of the credentials file (access keys) from before tapcred's first edit".to_owned(),
                    Some(rm),
                ),
                Leftover::Backup => (
                    "an old backup of the config file from before tapcred's first edit; tapcred's next edit moves it into its private folder when that holds none".to_owned(),
                    None,
                ),
            };
            (p, format!("left by an older tapcred: {what}"), fix)
        })
        .collect()
}

/// Remove what an older version left beside `target`, where nothing is lost: its lock file
/// when it is this user's and no process holds it; the config backup moved into the private
/// folder when that holds none (or the same bytes). The credentials backup stays (plaintext
/// keys, perhaps the only copy: the person deletes it; `doctor` lists it), and so does
/// anything else. Best effort: an edit never fails because of it.
fn clean_leftovers(target: &Path, file: AwsFile, state: &StatePaths) {
    for (p, kind) in leftover_paths(target) {
        if !leftover_is_mine(&p) {
            continue;
        }
        match kind {
            Leftover::Lock => {
                // Removed while locked, so no older tapcred takes it meanwhile.
                if let Some(_held) = lock_if_free(&p) {
                    let _ = fs::remove_file(&p);
                }
            }
            Leftover::Backup => {
                let Ok(old) = read_bytes(&p, file) else {
                    continue;
                };
                let Some(old) = old else { continue };
                let same_as = |q: &Path| read_bytes(q, file).ok().flatten().as_ref() == Some(&old);
                let moved = file == AwsFile::Config
                    && (same_as(&state.backup)
                        || (fs::symlink_metadata(&state.backup).is_err()
                            && write_new_private(&state.backup, &old).is_ok()));
                if moved {
                    let _ = fs::remove_file(&p);
                }
            }
        }
    }
}

fn write_new_private(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut f = platform::fs::create_new_private(path)?;
    f.write_all(data)?;
    f.sync_all()
}

#[cfg(test)]
mod tests;
