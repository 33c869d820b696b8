//! Capped reads of regular files: any file, tapcred's own private files, the person's
//! secret files; never blocking in `open`, never following a link unless asked.

use std::fs::{File, FileType, Metadata, OpenOptions};
use std::io::{self, Read};
use std::path::Path;

use zeroize::Zeroizing;

use super::imp;

/// Why [`read_regular`] refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("it does not exist")]
    NotFound,
    /// Not a regular file (a FIFO, a device, a directory, a symlink when not following):
    /// the words for it, e.g. "a FIFO".
    #[error("it is {0}, not a regular file")]
    NotRegular(&'static str),
    /// Larger than the cap.
    #[error("it is larger than {} KiB", .0 / 1024)]
    TooLarge(u64),
    /// Not as tapcred writes its files: "owner" or "mode".
    #[error("its {0} is not as tapcred writes it")]
    Foreign(&'static str),
    /// A secret file other users can read: how ("mode 0644").
    #[error("other users can read it ({0})")]
    Shared(String),
    #[error("{0}")]
    Io(#[source] io::Error),
}

/// Read a whole regular file of at most `cap` bytes into a wiped-on-drop buffer. Never
/// blocks in `open` (FIFOs, devices are refused after a non-blocking open) and never reads
/// more than `cap + 1` bytes (`/dev/zero`, an endless pipe). With `follow_links` false a
/// final symlink (reparse point) is refused.
pub fn read_regular(
    path: &Path,
    cap: u64,
    follow_links: bool,
) -> Result<Zeroizing<Vec<u8>>, ReadError> {
    if is_null_device(path) {
        // `AWS_CONFIG_FILE=/dev/null` (`NUL` on Windows) is the usual way to say "none".
        return Ok(Zeroizing::new(Vec::new()));
    }
    read_checked(path, cap, follow_links, |_, _| Ok(()))
}

/// Read a file tapcred wrote itself (cache entries, the step ledger, the vault): a regular
/// file, not a link, owned by this user and private (Unix: mode 0600; Windows: no one
/// else in its ACL), at most `cap` bytes. Checked on the open file.
pub fn read_private_file(path: &Path, cap: u64) -> Result<Zeroizing<Vec<u8>>, ReadError> {
    read_checked(path, cap, false, imp::check_private_file)
}

/// Read a secret file the person made (a TOTP seed): a regular file (links followed),
/// at most `cap` bytes, that no other user can read (checked on the open file).
pub fn read_secret_file(path: &Path, cap: u64) -> Result<Zeroizing<Vec<u8>>, ReadError> {
    read_checked(path, cap, true, |f, md| match imp::others_can_read(f, md) {
        Some(how) => Err(ReadError::Shared(how)),
        None => Ok(()),
    })
}

fn read_checked(
    path: &Path,
    cap: u64,
    follow_links: bool,
    check: impl Fn(&File, &Metadata) -> Result<(), ReadError>,
) -> Result<Zeroizing<Vec<u8>>, ReadError> {
    let f = open_read(path, follow_links).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => ReadError::NotFound,
        _ if is_symlink_refusal(&e) => ReadError::NotRegular("a symbolic link"),
        _ => ReadError::Io(e),
    })?;
    let md = f.metadata().map_err(ReadError::Io)?;
    if !md.is_file() || is_reparse_point(&md) {
        return Err(ReadError::NotRegular(kind_of(&md)));
    }
    check(&f, &md)?;
    if md.len() > cap {
        return Err(ReadError::TooLarge(cap));
    }
    let mut buf = Zeroizing::new(Vec::with_capacity(md.len() as usize + 1));
    f.take(cap + 1)
        .read_to_end(&mut buf)
        .map_err(ReadError::Io)?;
    if buf.len() as u64 > cap {
        return Err(ReadError::TooLarge(cap));
    }
    Ok(buf)
}

/// The null device (`/dev/null`; `NUL` on Windows): reads as empty.
pub fn is_null_device(path: &Path) -> bool {
    imp::is_null_device(path)
}

/// Words for what a path is ("a FIFO", "a directory", ...), for messages.
pub fn kind_of(md: &Metadata) -> &'static str {
    let ft = md.file_type();
    if is_reparse_point(md) || ft.is_symlink() {
        "a symbolic link"
    } else if ft.is_dir() {
        "a directory"
    } else if ft.is_file() {
        "a regular file"
    } else {
        special_kind(&ft)
    }
}

pub(super) fn is_reparse_point(md: &Metadata) -> bool {
    imp::is_reparse_point(md)
}

fn special_kind(ft: &FileType) -> &'static str {
    imp::special_kind(ft)
}

/// The error an open with "do not follow" gives when the path is a symlink.
fn is_symlink_refusal(e: &io::Error) -> bool {
    imp::is_symlink_refusal(e)
}

pub(super) fn open_read(path: &Path, follow_links: bool) -> io::Result<File> {
    // Read-only opens only: never needs more than read access (Windows: plus READ_CONTROL,
    // which the owner always has, for the ACL checks).
    let mut o = OpenOptions::new();
    o.read(true);
    imp::read_flags(&mut o, follow_links);
    o.open(path)
}
