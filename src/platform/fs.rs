//! Private files and directories, "who owns this", and capped reads of regular files.
//!
//! Unix (Linux, macOS): files are created 0600 and directories 0700; every open of a file
//! tapcred owns passes `O_NOFOLLOW` (a symlink planted in its place is refused, never
//! followed) and `O_CLOEXEC` (no descriptor leaks into an `exec` child); every read-only open
//! passes `O_NONBLOCK`, so a FIFO (or a device) at a path cannot make `open` hang: the type is
//! checked on the open descriptor and anything but a regular file is refused. Ownership is
//! the effective uid (`geteuid`, through `rustix`), never `/proc/self` (which belongs to root
//! once the process is made non-dumpable, see [`super::harden`]).
//!
//! Windows: tapcred's files live under the per-user profile (`%LOCALAPPDATA%\tapcred`,
//! `%USERPROFILE%\.aws`). Their inherited ACL grants the user, SYSTEM and Administrators
//! only; other standard users have no access to another user's profile. That inherited ACL
//! is what keeps the cache private (as it keeps the AWS CLI's own `credentials` file and
//! `sso\cache` private): setting an explicit ACL would need `unsafe` Win32 calls, which
//! tapcred forbids, for no gain over the profile's. Reparse points (symlinks, junctions) are
//! opened as themselves (`FILE_FLAG_OPEN_REPARSE_POINT`) and refused, never followed. A seed
//! file outside the profile cannot be checked for other readers without reading its ACL
//! (again `unsafe`); [`others_can_read`] reports "unknown" there and the README tells
//! Windows users to keep the seed under `%USERPROFILE%`.

use std::fs::{self, File, FileType, Metadata, OpenOptions};
use std::io::{self, Read};
use std::path::Path;

use zeroize::Zeroizing;

/// Why [`read_regular`] refused or failed.
#[derive(Debug)]
pub enum ReadError {
    NotFound,
    /// Not a regular file (a FIFO, a device, a directory, a symlink when not following):
    /// the words for it, e.g. "a FIFO".
    NotRegular(&'static str),
    /// Larger than the cap.
    TooLarge(u64),
    /// Not as tapcred writes its files: "owner" or "mode".
    Foreign(&'static str),
    /// A secret file other users can read: how ("mode 0644").
    Shared(String),
    Io(io::Error),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::NotFound => f.write_str("it does not exist"),
            ReadError::NotRegular(what) => write!(f, "it is {what}, not a regular file"),
            ReadError::TooLarge(cap) => write!(f, "it is larger than {} KiB", cap / 1024),
            ReadError::Foreign(why) => write!(f, "its {why} is not as tapcred writes it"),
            ReadError::Shared(how) => write!(f, "other users can read it ({how})"),
            ReadError::Io(e) => write!(f, "{e}"),
        }
    }
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
    read_checked(path, cap, follow_links, |_| Ok(()))
}

/// Read a file tapcred wrote itself (cache entries, the step ledger): a regular file, not
/// a link, owned by this user and private ([`is_private_file`]), at most `cap` bytes.
pub fn read_private_file(path: &Path, cap: u64) -> Result<Zeroizing<Vec<u8>>, ReadError> {
    read_checked(path, cap, false, |md| {
        if !is_mine(md) {
            Err(ReadError::Foreign("owner"))
        } else if !is_private_file(md) {
            Err(ReadError::Foreign("mode"))
        } else {
            Ok(())
        }
    })
}

/// Read a secret file the person made (a TOTP seed): a regular file (links followed),
/// at most `cap` bytes, that no other user can read ([`others_can_read`], checked on the
/// open file).
pub fn read_secret_file(path: &Path, cap: u64) -> Result<Zeroizing<Vec<u8>>, ReadError> {
    read_checked(path, cap, true, |md| match others_can_read(md) {
        Some(how) => Err(ReadError::Shared(how)),
        None => Ok(()),
    })
}

fn read_checked(
    path: &Path,
    cap: u64,
    follow_links: bool,
    check: impl Fn(&Metadata) -> Result<(), ReadError>,
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
    check(&md)?;
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

/// Create `path` new (never replacing, never following a link), readable and writable by
/// this user only.
pub fn create_new_private(path: &Path) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.write(true).create_new(true);
    imp::private_no_follow(&mut o);
    o.open(path)
}

/// Open (read + write) a lock file: created new and private, or the existing one, never
/// through a link, never blocking in `open`; anything but a regular file is refused.
pub fn open_lock_file(path: &Path, create_new: bool) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.read(true).write(true);
    if create_new {
        o.create_new(true);
    }
    imp::private_no_follow_nonblock(&mut o);
    let f = o.open(path)?;
    let md = f.metadata()?;
    if !md.is_file() || is_reparse_point(&md) {
        return Err(io::Error::other(format!(
            "it is {}, not a regular file",
            kind_of(&md)
        )));
    }
    Ok(f)
}

/// Create a file (truncating one that exists), private, never through a link (probe files).
pub fn create_private(path: &Path) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.write(true).create(true).truncate(true);
    imp::private_no_follow(&mut o);
    o.open(path)
}

/// Create `path` and missing parents; the directories created are private to this user.
pub fn create_private_dir_all(path: &Path) -> io::Result<()> {
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    imp::private_dir(&mut b);
    b.create(path)
}

/// Why a directory tapcred keeps private cannot be used.
#[derive(Debug)]
pub enum DirProblem {
    Missing,
    Unreadable(io::Error),
    /// A symbolic link (or junction) stands at the path: refused, never followed.
    Link,
    NotDir(&'static str),
    /// Owned by another user: who.
    Foreign(String),
    /// Open to others and could not be tightened.
    CannotTighten(io::Error),
}

/// Check that `path` is a real directory (not a link) owned by this user and private to
/// it, tightening its mode on the open directory itself (never through a link). Returns
/// whether it had to be tightened.
pub fn check_private_dir(path: &Path) -> Result<bool, DirProblem> {
    let md = fs::symlink_metadata(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => DirProblem::Missing,
        _ => DirProblem::Unreadable(e),
    })?;
    if md.file_type().is_symlink() || is_reparse_point(&md) {
        return Err(DirProblem::Link);
    }
    if !md.is_dir() {
        return Err(DirProblem::NotDir(kind_of(&md)));
    }
    if !is_mine(&md) {
        return Err(DirProblem::Foreign(owner_of(&md)));
    }
    if is_private(&md) {
        return Ok(false);
    }
    imp::tighten_dir(path).map_err(|e| {
        if is_symlink_refusal(&e) {
            DirProblem::Link
        } else {
            DirProblem::CannotTighten(e)
        }
    })?;
    Ok(true)
}

/// Whether this user owns the file (Unix: the effective uid; Windows: always, see the
/// module doc).
pub fn is_mine(md: &Metadata) -> bool {
    imp::is_mine(md)
}

/// The owner, for messages ("uid 1000").
pub fn owner_of(md: &Metadata) -> String {
    imp::owner_of(md)
}

/// No access for anyone but the owner (Unix: no group/other mode bits; Windows: the
/// inherited per-user ACL, see the module doc).
pub fn is_private(md: &Metadata) -> bool {
    imp::is_private(md)
}

/// Whether a file tapcred wrote is exactly as it writes them (Unix: mode 0600).
pub fn is_private_file(md: &Metadata) -> bool {
    imp::is_private_file(md)
}

/// For a secret file the person made (the TOTP seed): `Some(description)` when other users
/// may read it ("mode 0644"), `None` when it is private or this platform cannot tell.
pub fn others_can_read(md: &Metadata) -> Option<String> {
    imp::others_can_read(md)
}

/// The command that makes a file private, for messages.
pub fn make_private_hint(path: &Path) -> String {
    imp::make_private_hint(path)
}

/// A tag that tells this user apart in a shared temporary directory (`tapcred-<tag>`).
pub fn user_tag() -> String {
    imp::user_tag()
}

fn is_reparse_point(md: &Metadata) -> bool {
    imp::is_reparse_point(md)
}

fn special_kind(ft: &FileType) -> &'static str {
    imp::special_kind(ft)
}

/// The error an open with "do not follow" gives when the path is a symlink.
fn is_symlink_refusal(e: &io::Error) -> bool {
    imp::is_symlink_refusal(e)
}

fn open_read(path: &Path, follow_links: bool) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.read(true);
    imp::read_flags(&mut o, follow_links);
    o.open(path)
}

#[cfg(unix)]
mod imp {
    use std::fs::{self, FileType, Metadata, OpenOptions, Permissions};
    use std::io;
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt};
    use std::path::Path;

    use rustix::fs::OFlags;

    pub fn private_no_follow(o: &mut OpenOptions) {
        o.mode(0o600)
            .custom_flags((OFlags::NOFOLLOW | OFlags::CLOEXEC).bits() as i32);
    }

    pub fn private_no_follow_nonblock(o: &mut OpenOptions) {
        o.mode(0o600)
            .custom_flags((OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK).bits() as i32);
    }

    pub fn read_flags(o: &mut OpenOptions, follow_links: bool) {
        let mut f = OFlags::CLOEXEC | OFlags::NONBLOCK;
        if !follow_links {
            f |= OFlags::NOFOLLOW;
        }
        o.custom_flags(f.bits() as i32);
    }

    pub fn private_dir(b: &mut fs::DirBuilder) {
        b.mode(0o700);
    }

    pub fn tighten_dir(path: &Path) -> io::Result<()> {
        // fchmod on the directory opened without following a link: a symlink swapped in
        // after the check fails the open instead of redirecting the chmod.
        let d = OpenOptions::new()
            .read(true)
            .custom_flags((OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::DIRECTORY).bits() as i32)
            .open(path)?;
        d.set_permissions(Permissions::from_mode(0o700))
    }

    pub fn is_symlink_refusal(e: &io::Error) -> bool {
        // O_NOFOLLOW on a symlink: ELOOP (Linux, macOS); FreeBSD says EMLINK.
        e.raw_os_error().is_some_and(|c| {
            c == rustix::io::Errno::LOOP.raw_os_error()
                || c == rustix::io::Errno::MLINK.raw_os_error()
        })
    }

    pub fn euid() -> u32 {
        rustix::process::geteuid().as_raw()
    }

    pub fn is_mine(md: &Metadata) -> bool {
        md.uid() == euid()
    }

    pub fn owner_of(md: &Metadata) -> String {
        format!("uid {}", md.uid())
    }

    pub fn is_private(md: &Metadata) -> bool {
        md.mode() & 0o077 == 0
    }

    pub fn is_private_file(md: &Metadata) -> bool {
        md.mode() & 0o777 == 0o600
    }

    pub fn others_can_read(md: &Metadata) -> Option<String> {
        let mode = md.mode();
        (mode & 0o077 != 0).then(|| format!("mode {:04o}", mode & 0o7777))
    }

    pub fn make_private_hint(path: &Path) -> String {
        format!("chmod 600 {}", path.display())
    }

    pub fn user_tag() -> String {
        euid().to_string()
    }

    pub fn is_reparse_point(_md: &Metadata) -> bool {
        false
    }

    pub fn is_null_device(path: &Path) -> bool {
        path == Path::new("/dev/null")
    }

    pub fn special_kind(ft: &FileType) -> &'static str {
        if ft.is_fifo() {
            "a FIFO (named pipe)"
        } else if ft.is_socket() {
            "a socket"
        } else if ft.is_char_device() {
            "a character device"
        } else if ft.is_block_device() {
            "a block device"
        } else {
            "not a regular file"
        }
    }
}

#[cfg(windows)]
mod imp {
    use std::fs::{self, FileType, Metadata, OpenOptions};
    use std::io;
    use std::os::windows::fs::{MetadataExt, OpenOptionsExt};
    use std::path::Path;

    use windows_sys::Win32::Storage::FileSystem::{
        FILE_ATTRIBUTE_REPARSE_POINT, FILE_FLAG_BACKUP_SEMANTICS, FILE_FLAG_OPEN_REPARSE_POINT,
    };

    pub fn private_no_follow(o: &mut OpenOptions) {
        // The new file inherits the per-user directory's ACL (see the module doc).
        o.custom_flags(FILE_FLAG_OPEN_REPARSE_POINT);
    }

    pub fn private_no_follow_nonblock(o: &mut OpenOptions) {
        private_no_follow(o);
    }

    pub fn read_flags(o: &mut OpenOptions, follow_links: bool) {
        if !follow_links {
            o.custom_flags(FILE_FLAG_OPEN_REPARSE_POINT);
        }
    }

    pub fn private_dir(_b: &mut fs::DirBuilder) {}

    pub fn tighten_dir(path: &Path) -> io::Result<()> {
        // Nothing to tighten (inherited ACL); still refuse a reparse point swapped in.
        let d = OpenOptions::new()
            .read(true)
            .custom_flags(FILE_FLAG_OPEN_REPARSE_POINT | FILE_FLAG_BACKUP_SEMANTICS)
            .open(path)?;
        if is_reparse_point(&d.metadata()?) {
            return Err(io::Error::other("a reparse point"));
        }
        Ok(())
    }

    pub fn is_symlink_refusal(_e: &io::Error) -> bool {
        false
    }

    pub fn is_mine(_md: &Metadata) -> bool {
        true
    }

    pub fn owner_of(_md: &Metadata) -> String {
        "another user".to_owned()
    }

    pub fn is_private(_md: &Metadata) -> bool {
        true
    }

    pub fn is_private_file(_md: &Metadata) -> bool {
        true
    }

    pub fn others_can_read(_md: &Metadata) -> Option<String> {
        None
    }

    pub fn make_private_hint(path: &Path) -> String {
        format!(
            "move it under %USERPROFILE% or run: icacls \"{}\" /inheritance:r /grant:r \"%USERNAME%:F\"",
            path.display()
        )
    }

    pub fn user_tag() -> String {
        // %TEMP% is already per user on Windows.
        std::env::var("USERNAME").unwrap_or_else(|_| "user".to_owned())
    }

    pub fn is_reparse_point(md: &Metadata) -> bool {
        md.file_attributes() & FILE_ATTRIBUTE_REPARSE_POINT != 0
    }

    pub fn is_null_device(path: &Path) -> bool {
        let p = path.as_os_str().to_string_lossy().to_ascii_lowercase();
        p == "nul" || p == r"\\.\nul"
    }

    pub fn special_kind(_ft: &FileType) -> &'static str {
        "not a regular file"
    }
}
