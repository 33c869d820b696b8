//! Replacing an AWS file atomically without losing what another program writes meanwhile:
//! the file is read again before and after the rename (and so is the replaced file), and
//! what was lost is merged back by lines before the edit is redone.

use std::fs::File;
use std::io;
use std::path::Path;

use zeroize::Zeroizing;

use super::AwsFile;
use super::file_io::{Bytes, io_error, read_bytes, read_error};
use super::line_merge::merge_lines;
use crate::error::{Error, Result};
use crate::platform;
use crate::platform::fs::{Perms, Staged};
use crate::profile::load::parse_files;

/// How often an edit is redone when another program changes the file while tapcred edits
/// it, before giving up.
pub(super) const MAX_ATTEMPTS: u32 = 50;

/// An existing empty file that was just written is read again this often, this far apart,
/// before it is edited (up to 2 s: another program's write may be stalled halfway).
pub(super) const EMPTY_LOOKS: u32 = 100;
pub(super) const EMPTY_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

/// What one attempt of [`write_carefully`] does with the file.
pub(super) enum Step {
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
pub(super) fn write_carefully(
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
pub(super) struct Lost {
    pub(super) versions: Vec<(Option<Bytes>, Bytes)>,
    /// What the rename wrote, when it was made from the file on disk itself (nothing carried
    /// into it).
    pub(super) ours: Option<Bytes>,
}

impl Lost {
    /// The text the next attempt starts from, given what the file holds now: while the file
    /// holds `ours` and the only loss is another program's write into the replaced file, that
    /// program's text (the edit is then redone on it); otherwise each lost version's change
    /// merged into what the file holds. `None`: nothing to carry, or it cannot be carried (the
    /// file is gone, or too large to compare): the file is taken as it is.
    pub(super) fn carried_onto(&self, current: Option<&Bytes>) -> Option<Bytes> {
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

pub(super) fn parses(target: &Path, file: AwsFile, bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes).is_ok_and(|text| parse_files(&[(file.kind(), target, text)]).is_ok())
}

/// The file, open (kept to see what a writer that has it open writes after the rename), and
/// its bytes; `(None, None)` when it does not exist. An empty file is what another
/// program's in-place write (truncate, then write) looks like halfway, so it is read again
/// a few times before it is taken as empty.
pub(super) fn open_current(path: &Path, file: AwsFile) -> Result<(Option<File>, Option<Bytes>)> {
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
pub(super) fn just_written(f: &File) -> bool {
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
pub(super) fn settled(f: &mut File) -> Option<Zeroizing<Vec<u8>>> {
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

pub(super) fn reread(f: &mut File) -> io::Result<Zeroizing<Vec<u8>>> {
    use std::io::{Read, Seek};
    f.rewind()?;
    let mut buf = Zeroizing::new(Vec::new());
    f.read_to_end(&mut buf)?;
    Ok(buf)
}

/// Names the temp file beside an AWS file while it is written, so a leftover one says whose
/// it was.
pub(super) const TEMP_PREFIX: &str = ".tapcred-";

/// The new text in a temporary file in the target's directory, fsynced, ready to be
/// renamed over it.
pub(super) fn write_temp(
    target: &Path,
    file: AwsFile,
    data: &[u8],
    perms: Perms,
) -> Result<Staged> {
    platform::fs::stage(target, TEMP_PREFIX, data, perms)
        .map_err(|e| io_error(target, file, "cannot write", e))
}
