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
//! Windows: every file and directory tapcred creates gets an owner-only ACL at once: a
//! protected DACL (nothing inherited) with one entry, full control for this process's user
//! SID (directories: inherited by what is created inside). It is set on the open handle
//! (`SetSecurityInfo`, through the `windows-permissions` crate's safe wrappers; tapcred has
//! no `unsafe`) before anything is written. "Private" when checking means: no allow entry
//! grants read, write, delete or ACL rights to any SID but this user, SYSTEM and the
//! Administrators group (those two can read every file anyway; OpenSSH for Windows accepts
//! the same set on private keys). "Mine" is an owner of this user or Administrators (what an
//! elevated process's files get as owner). A cache directory that is not private is
//! tightened to owner-only on its own handle, as `chmod 700` on Unix. tapcred's own files
//! are checked for their owner when read back (their ACL was set at creation; see
//! `check_private_file` for why it is not re-read). A seed file is refused when its ACL lets
//! anyone else read it (no ACL at all counts as everyone). Reparse points (symlinks,
//! junctions) are opened as themselves (`FILE_FLAG_OPEN_REPARSE_POINT`) and refused, never
//! followed.

use std::fs::{self, File, FileType, Metadata, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;

use zeroize::Zeroizing;

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

/// Create `path` new (never replacing, never following a link), readable and writable by
/// this user only.
pub fn create_new_private(path: &Path) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.write(true).create_new(true);
    imp::private_no_follow(&mut o);
    let mut f = o.open(path)?;
    imp::make_owner_only(&mut f, false)?;
    Ok(f)
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
    let mut f = o.open(path)?;
    let md = f.metadata()?;
    if !md.is_file() || is_reparse_point(&md) {
        return Err(io::Error::other(format!(
            "it is {}, not a regular file",
            kind_of(&md)
        )));
    }
    if create_new {
        imp::make_owner_only(&mut f, false)?;
    }
    Ok(f)
}

/// Whether a rename may replace a file this process still has open (Unix: yes, the open
/// handle keeps the old file; Windows: no, close it first).
pub const CAN_REPLACE_OPEN_FILE: bool = imp::CAN_REPLACE_OPEN_FILE;

/// The permissions a file replaced by [`replace_atomic`] gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Perms {
    /// Private to this user (Unix 0600; Windows an owner-only ACL): tapcred's own files, a
    /// new file, or one that receives a secret.
    Private,
    /// The replaced file's permissions when it exists (the person's `~/.aws` files keep the
    /// mode they chose), else private.
    KeepExisting,
}

/// New content for `target`, written and fsynced in a temp file in the same directory, not
/// yet in place: [`Staged::commit`] renames it over `target`; dropping it removes the temp
/// file and leaves `target` untouched.
pub struct Staged {
    tmp: tempfile::NamedTempFile,
    dir: std::path::PathBuf,
}

impl std::fmt::Debug for Staged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Staged")
            .field("tmp", &self.tmp.path())
            .finish()
    }
}

/// The directory a rename over `target` happens in.
fn dir_of(target: &Path) -> &Path {
    match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// First half of [`replace_atomic`]: `bytes` in a temp file beside `target` (created
/// owner-only, never through a link; named `prefix…` so a leftover one says whose it was),
/// with the permissions `perms` asks for, fsynced.
pub fn stage(target: &Path, prefix: &str, bytes: &[u8], perms: Perms) -> io::Result<Staged> {
    let dir = dir_of(target);
    let mut tmp = private_temp_in(dir, prefix)?;
    if perms == Perms::KeepExisting
        && let Ok(md) = fs::metadata(target)
    {
        fs::set_permissions(tmp.path(), md.permissions())?;
    }
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    Ok(Staged {
        tmp,
        dir: dir.to_owned(),
    })
}

impl Staged {
    /// Where the new content waits.
    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// Rename the temp file over `target` (the path it was staged for), then fsync the
    /// directory so the rename is durable. On Windows a rename over a file anyone has open
    /// (another program reading it, a virus scanner looking at it) is refused with Access
    /// denied, so it is retried for up to a second there; Unix renames over open files.
    pub fn commit(self, target: &Path) -> io::Result<()> {
        const RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(1);
        let start = std::time::Instant::now();
        let mut tmp = self.tmp;
        loop {
            match tmp.persist(target) {
                Ok(_) => break,
                Err(e)
                    if !CAN_REPLACE_OPEN_FILE
                        && e.error.kind() == io::ErrorKind::PermissionDenied
                        && start.elapsed() < RETRY_FOR =>
                {
                    tmp = e.file;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => return Err(e.error),
            }
        }
        // Directories cannot be opened for sync everywhere.
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

/// Replace `target` atomically with `bytes`: [`stage`] then [`Staged::commit`]. A crash
/// leaves the old file or the new one, never a mix; on any error the temp file is removed
/// and `target` is untouched. The one way tapcred replaces a file: the session cache, the
/// vault, the journal and the AWS files all write through it.
pub fn replace_atomic(target: &Path, prefix: &str, bytes: &[u8], perms: Perms) -> io::Result<()> {
    stage(target, prefix, bytes, perms)?.commit(target)
}

/// [`replace_atomic`] for a file private to this user (`.vault-`, `.journal-` name the temp
/// file).
pub fn replace_private(path: &Path, prefix: &str, bytes: &[u8]) -> io::Result<()> {
    replace_atomic(path, prefix, bytes, Perms::Private)
}

/// Create a file (truncating one that exists), private, never through a link (probe files).
pub fn create_private(path: &Path) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.write(true).create(true).truncate(true);
    imp::private_no_follow(&mut o);
    let mut f = o.open(path)?;
    imp::make_owner_only(&mut f, false)?;
    Ok(f)
}

/// Create `path` and missing parents; the directories created are private to this user
/// (Windows: `path` itself gets the owner-only ACL when this call created it; parents
/// created on the way keep what they inherit).
pub fn create_private_dir_all(path: &Path) -> io::Result<()> {
    let existed = imp::ACL_AFTER_CREATE && fs::symlink_metadata(path).is_ok();
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    imp::private_dir(&mut b);
    b.create(path)?;
    if imp::ACL_AFTER_CREATE && !existed {
        imp::make_dir_owner_only(path)?;
    }
    Ok(())
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

/// The refusal to open a directory through a link or junction (Windows reparse point),
/// recognised by its type so that [`DirProblem::Link`] never depends on message text.
#[derive(Debug)]
#[cfg_attr(not(windows), allow(dead_code))]
struct ReparsePoint;

impl std::fmt::Display for ReparsePoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a reparse point (link or junction)")
    }
}

impl std::error::Error for ReparsePoint {}

#[cfg_attr(not(windows), allow(dead_code))]
fn reparse_point_refusal() -> io::Error {
    io::Error::other(ReparsePoint)
}

#[cfg_attr(not(windows), allow(dead_code))]
fn is_reparse_point_refusal(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<ReparsePoint>())
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
    imp::check_dir_access(path, &md)
}

/// Check that the folder at `path` (links followed: the person chose it) belongs to this
/// user; its mode is left as it is (it may be any folder the person chose, e.g. HOME).
pub fn check_dir_owner(path: &Path) -> Result<(), DirProblem> {
    imp::check_dir_owner(path)
}

/// The command that gives a folder back to this user, for messages.
pub fn take_ownership_hint(path: &Path) -> String {
    imp::take_ownership_hint(path)
}

/// For a file the person made (the TOTP seed, the AWS credentials file): `Some(description)`
/// when other users may read it ("mode 0644"; Windows: "its ACL lets Everyone read it"),
/// `None` when it is private or cannot be opened.
pub fn others_can_read(path: &Path) -> Option<String> {
    let f = open_read(path, true).ok()?;
    let md = f.metadata().ok()?;
    imp::others_can_read(&f, &md)
}

/// The command that makes a file private, for messages.
pub fn make_private_hint(path: &Path) -> String {
    imp::make_private_hint(path)
}

/// A tag that tells this user apart in a shared temporary directory (`tapcred-<tag>`).
pub fn user_tag() -> String {
    imp::user_tag()
}

/// Who owns `path` (its metadata `md`) when that is not this user: words for the owner
/// ("uid 1000 (alice)"; Windows: `DOMAIN\name`). With `system_ok`, the system's own account
/// (root; Windows: SYSTEM) counts as not foreign (a shared folder such as `/tmp`). `None`
/// when it is this user's, or when the owner cannot be read (the write then fails with the
/// system's own error).
pub fn foreign_owner(path: &Path, md: &Metadata, system_ok: bool) -> Option<String> {
    imp::foreign_owner(path, md, system_ok)
}

/// Words for a file its owner made read-only ("mode 0400"; Windows: "the read-only
/// attribute is set"), `None` when its owner may write it.
pub fn read_only(md: &Metadata) -> Option<String> {
    imp::read_only(md)
}

/// The command that lets the owner write a read-only file again, for messages.
pub fn make_writable_hint(path: &Path) -> String {
    imp::make_writable_hint(path)
}

/// A temporary file in `dir` for an atomic replace (`persist` renames it over the target):
/// private to this user from the start (Unix 0600; Windows an owner-only ACL).
fn private_temp_in(dir: &Path, prefix: &str) -> io::Result<tempfile::NamedTempFile> {
    // Opened here, not by `tempfile`: on Windows its handle lacks WRITE_DAC, so the
    // owner-only ACL could not be set on it (Access denied).
    tempfile::Builder::new()
        .prefix(prefix)
        .suffix(".tmp")
        .make_in(dir, |path| {
            let mut o = OpenOptions::new();
            o.read(true).write(true).create_new(true);
            imp::private_no_follow(&mut o);
            let mut f = o.open(path)?;
            imp::make_owner_only(&mut f, false)?;
            Ok(f)
        })
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
    // Read-only opens only: never needs more than read access (Windows: plus READ_CONTROL,
    // which the owner always has, for the ACL checks).
    let mut o = OpenOptions::new();
    o.read(true);
    imp::read_flags(&mut o, follow_links);
    o.open(path)
}

#[cfg(unix)]
mod imp {
    use std::fs::{self, File, FileType, Metadata, OpenOptions, Permissions};
    use std::io;
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt};
    use std::path::Path;

    use rustix::fs::OFlags;

    use super::{DirProblem, ReadError};

    /// The mode given at creation is all there is to do.
    pub const ACL_AFTER_CREATE: bool = false;
    pub const CAN_REPLACE_OPEN_FILE: bool = true;

    pub fn make_owner_only(_f: &mut File, _dir: bool) -> io::Result<()> {
        Ok(())
    }

    pub fn make_dir_owner_only(_path: &Path) -> io::Result<()> {
        Ok(())
    }

    pub fn check_private_file(_f: &File, md: &Metadata) -> Result<(), ReadError> {
        if !is_mine(md) {
            Err(ReadError::Foreign("owner"))
        } else if !is_private_file(md) {
            Err(ReadError::Foreign("mode"))
        } else {
            Ok(())
        }
    }

    pub fn check_dir_access(path: &Path, md: &Metadata) -> Result<bool, DirProblem> {
        if !is_mine(md) {
            return Err(DirProblem::Foreign(owner_of(md)));
        }
        if is_private(md) {
            return Ok(false);
        }
        tighten_dir(path).map_err(|e| {
            if is_symlink_refusal(&e) {
                DirProblem::Link
            } else {
                DirProblem::CannotTighten(e)
            }
        })?;
        Ok(true)
    }

    pub fn check_dir_owner(path: &Path) -> Result<(), DirProblem> {
        let md = fs::metadata(path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => DirProblem::Missing,
            _ => DirProblem::Unreadable(e),
        })?;
        if !md.is_dir() {
            return Err(DirProblem::NotDir(super::kind_of(&md)));
        }
        if !is_mine(&md) {
            return Err(DirProblem::Foreign(owner_of(&md)));
        }
        Ok(())
    }

    pub fn take_ownership_hint(path: &Path) -> String {
        format!("sudo chown \"$(id -u)\" {}", path.display())
    }

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

    pub fn others_can_read(_f: &File, md: &Metadata) -> Option<String> {
        let mode = md.mode();
        (mode & 0o077 != 0).then(|| format!("mode {:04o}", mode & 0o7777))
    }

    pub fn make_private_hint(path: &Path) -> String {
        format!("chmod 600 {}", path.display())
    }

    pub fn foreign_owner(_path: &Path, md: &Metadata, system_ok: bool) -> Option<String> {
        let uid = md.uid();
        if uid == euid() || (system_ok && uid == 0) {
            return None;
        }
        Some(match user_name(uid) {
            Some(name) => format!("uid {uid} ({name})"),
            None => format!("uid {uid}"),
        })
    }

    /// The login name of `uid` from `/etc/passwd`, for messages (no NSS: a directory user
    /// is shown by number).
    fn user_name(uid: u32) -> Option<String> {
        let text = fs::read_to_string("/etc/passwd").ok()?;
        text.lines().find_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            (f.nth(1)?.parse::<u32>().ok()? == uid).then(|| name.to_owned())
        })
    }

    pub fn read_only(md: &Metadata) -> Option<String> {
        (md.mode() & 0o200 == 0).then(|| format!("mode {:04o}", md.mode() & 0o7777))
    }

    pub fn make_writable_hint(path: &Path) -> String {
        format!("chmod u+w {}", path.display())
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
    use std::fs::{self, File, FileType, Metadata, OpenOptions};
    use std::io;
    use std::os::windows::fs::{MetadataExt, OpenOptionsExt};
    use std::path::Path;
    use std::sync::OnceLock;

    use windows_permissions::constants::{AceFlags, AceType, SeObjectType, SecurityInformation};
    use windows_permissions::{LocalBox, SecurityDescriptor, Sid, utilities, wrappers};
    use windows_sys::Win32::Storage::FileSystem::{
        DELETE, FILE_ATTRIBUTE_REPARSE_POINT, FILE_FLAG_BACKUP_SEMANTICS,
        FILE_FLAG_OPEN_REPARSE_POINT, FILE_GENERIC_READ, FILE_GENERIC_WRITE, FILE_READ_ATTRIBUTES,
        FILE_READ_DATA, READ_CONTROL, WRITE_DAC,
    };

    use super::{DirProblem, ReadError};

    /// std cannot pass a security descriptor to `CreateFileW`: the owner-only ACL is set on
    /// the new handle right after the create, before anything is written.
    pub const ACL_AFTER_CREATE: bool = true;
    /// Renaming over a file any handle still has open is refused (Access denied), with
    /// FILE_SHARE_DELETE or without.
    pub const CAN_REPLACE_OPEN_FILE: bool = false;

    const GENERIC_READ: u32 = 0x8000_0000;
    const GENERIC_WRITE: u32 = 0x4000_0000;
    const GENERIC_ALL: u32 = 0x1000_0000;
    const WRITE_OWNER: u32 = 0x0008_0000;
    /// File: write data, append; directory: add file, add subdirectory, delete child.
    const FILE_WRITE_BITS: u32 = 0x2 | 0x4 | 0x40;
    /// Rights that make a file readable by a SID.
    pub const READ_RIGHTS: u32 = FILE_READ_DATA | GENERIC_READ | GENERIC_ALL;
    /// Rights that make a private file or directory not private: read, write, delete, or
    /// change its ACL or owner (reading attributes or the ACL alone does not count).
    pub const ANY_RIGHTS: u32 =
        READ_RIGHTS | FILE_WRITE_BITS | DELETE | WRITE_DAC | WRITE_OWNER | GENERIC_WRITE;

    const SYSTEM: &str = "S-1-5-18";
    const ADMINISTRATORS: &str = "S-1-5-32-544";

    /// This process's user SID (from its token), as an SDDL string.
    fn me() -> io::Result<&'static str> {
        static ME: OnceLock<Option<String>> = OnceLock::new();
        ME.get_or_init(|| utilities::current_process_sid().ok().map(|s| s.to_string()))
            .as_deref()
            .ok_or_else(|| io::Error::other("cannot read this process's user SID"))
    }

    /// The SDDL of the owner-only DACL: protected (nothing inherited), one entry, full
    /// control for `user` (a directory's entry is inherited by files and directories in it).
    pub fn owner_only_sddl(user: &str, dir: bool) -> String {
        let inherit = if dir { "OICI" } else { "" };
        format!("D:P(A;{inherit};FA;;;{user})")
    }

    fn set_owner_only(handle: &mut File, dir: bool) -> io::Result<()> {
        let sd: LocalBox<SecurityDescriptor> = owner_only_sddl(me()?, dir).parse()?;
        let dacl = sd
            .dacl()
            .ok_or_else(|| io::Error::other("the owner-only ACL did not parse"))?;
        wrappers::SetSecurityInfo(
            handle,
            SeObjectType::SE_FILE_OBJECT,
            SecurityInformation::Dacl | SecurityInformation::ProtectedDacl,
            None,
            None,
            Some(dacl),
            None,
        )
    }

    pub fn make_owner_only(f: &mut File, dir: bool) -> io::Result<()> {
        set_owner_only(f, dir)
    }

    /// Open a directory itself (never through a reparse point) with `access`.
    fn open_dir(path: &Path, access: u32) -> io::Result<File> {
        let d = OpenOptions::new()
            .access_mode(access)
            .custom_flags(FILE_FLAG_OPEN_REPARSE_POINT | FILE_FLAG_BACKUP_SEMANTICS)
            .open(path)?;
        if is_reparse_point(&d.metadata()?) {
            return Err(super::reparse_point_refusal());
        }
        Ok(d)
    }

    pub fn make_dir_owner_only(path: &Path) -> io::Result<()> {
        let mut d = open_dir(path, READ_CONTROL | WRITE_DAC | FILE_READ_ATTRIBUTES)?;
        set_owner_only(&mut d, true)
    }

    fn security_of(f: &File) -> io::Result<LocalBox<SecurityDescriptor>> {
        wrappers::GetSecurityInfo(
            f,
            SeObjectType::SE_FILE_OBJECT,
            SecurityInformation::Dacl | SecurityInformation::Owner,
        )
    }

    /// Who an ACL lets do `rights` besides `me`, SYSTEM and Administrators: the SIDs (as
    /// SDDL strings) of the allow entries that apply to the object itself. A missing DACL
    /// (a null DACL) grants everything to everyone: `Everyone`.
    pub fn others_granted(sd: &SecurityDescriptor, me: &str, rights: u32) -> Vec<String> {
        // A null DACL (present, no list) grants everything to everyone. windows-permissions
        // 0.2.4 panics on one in `dacl()`, so it is recognised by its SDDL first (an SDDL
        // that cannot be made counts as everyone: refuse rather than guess).
        let null_dacl = wrappers::ConvertSecurityDescriptorToStringSecurityDescriptor(
            sd,
            SecurityInformation::Dacl,
        )
        .map_or(true, |s| s.to_string_lossy().contains("NO_ACCESS_CONTROL"));
        let Some(acl) = sd.dacl().filter(|_| !null_dacl) else {
            return vec!["S-1-1-0".to_owned()];
        };
        let mut who = Vec::new();
        for i in 0..acl.len() {
            let Some(ace) = acl.get_ace(i) else { break };
            let allow = matches!(
                ace.ace_type(),
                AceType::ACCESS_ALLOWED_ACE_TYPE
                    | AceType::ACCESS_ALLOWED_OBJECT_ACE_TYPE
                    | AceType::ACCESS_ALLOWED_CALLBACK_ACE_TYPE
                    | AceType::ACCESS_ALLOWED_CALLBACK_OBJECT_ACE_TYPE
            );
            if !allow
                || ace.flags().contains(AceFlags::InheritOnly)
                || ace.mask().bits() & rights == 0
            {
                continue;
            }
            let Some(sid) = ace.sid().map(|s| s.to_string()) else {
                continue;
            };
            if sid != me && sid != SYSTEM && sid != ADMINISTRATORS && !who.contains(&sid) {
                who.push(sid);
            }
        }
        who
    }

    /// Whether the owner is this user (or Administrators: the owner of what an elevated
    /// process creates).
    pub fn owner_is(sd: &SecurityDescriptor, me: &str) -> bool {
        sd.owner()
            .map(|o| o.to_string())
            .is_some_and(|o| o == me || o == ADMINISTRATORS)
    }

    /// A SID for messages: `DOMAIN\name` when it resolves, else the SID string.
    fn name_of(sid: &str) -> String {
        let Ok(s) = sid.parse::<LocalBox<Sid>>() else {
            return sid.to_owned();
        };
        match wrappers::LookupAccountSid(&s) {
            Ok((name, domain)) if !domain.is_empty() => {
                format!("{}\\{}", domain.to_string_lossy(), name.to_string_lossy())
            }
            Ok((name, _)) if !name.is_empty() => name.to_string_lossy().into_owned(),
            _ => sid.to_owned(),
        }
    }

    fn names(sids: &[String]) -> String {
        sids.iter()
            .map(|s| name_of(s))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// tapcred's own file: owned by this user (or Administrators). Its ACL was made
    /// owner-only on the handle that created it, and its directory's ACL is checked (and
    /// tightened) by [`check_dir_access`] before use; the file's ACL is not read back here,
    /// so that a runtime which maps ACLs lossily (Wine turns any DACL into Unix mode bits and
    /// reports Everyone:read back) does not turn every cache entry into a miss.
    pub fn check_private_file(f: &File, _md: &Metadata) -> Result<(), ReadError> {
        let me = me().map_err(ReadError::Io)?;
        let sd = security_of(f).map_err(ReadError::Io)?;
        if owner_is(&sd, me) {
            Ok(())
        } else {
            Err(ReadError::Foreign("owner"))
        }
    }

    pub fn check_dir_access(path: &Path, _md: &Metadata) -> Result<bool, DirProblem> {
        let link_or = |e: io::Error, other: fn(io::Error) -> DirProblem| {
            if super::is_reparse_point_refusal(&e) {
                DirProblem::Link
            } else {
                other(e)
            }
        };
        let d = open_dir(path, READ_CONTROL | FILE_READ_ATTRIBUTES)
            .map_err(|e| link_or(e, DirProblem::Unreadable))?;
        let me = me().map_err(DirProblem::Unreadable)?;
        let sd = security_of(&d).map_err(DirProblem::Unreadable)?;
        if !owner_is(&sd, me) {
            let owner = sd.owner().map(|o| o.to_string()).unwrap_or_default();
            return Err(DirProblem::Foreign(name_of(&owner)));
        }
        if others_granted(&sd, me, ANY_RIGHTS).is_empty() {
            return Ok(false);
        }
        drop(d);
        make_dir_owner_only(path).map_err(|e| link_or(e, DirProblem::CannotTighten))?;
        Ok(true)
    }

    pub fn check_dir_owner(path: &Path) -> Result<(), DirProblem> {
        // Links followed (no FILE_FLAG_OPEN_REPARSE_POINT): the folder the person chose.
        let d = OpenOptions::new()
            .access_mode(READ_CONTROL | FILE_READ_ATTRIBUTES)
            .custom_flags(FILE_FLAG_BACKUP_SEMANTICS)
            .open(path)
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => DirProblem::Missing,
                _ => DirProblem::Unreadable(e),
            })?;
        let md = d.metadata().map_err(DirProblem::Unreadable)?;
        if !md.is_dir() {
            return Err(DirProblem::NotDir(super::kind_of(&md)));
        }
        let me = me().map_err(DirProblem::Unreadable)?;
        let sd = security_of(&d).map_err(DirProblem::Unreadable)?;
        if !owner_is(&sd, me) {
            let owner = sd.owner().map(|o| o.to_string()).unwrap_or_default();
            return Err(DirProblem::Foreign(name_of(&owner)));
        }
        Ok(())
    }

    pub fn take_ownership_hint(path: &Path) -> String {
        format!("takeown /f \"{}\" from an elevated prompt", path.display())
    }

    pub fn others_can_read(f: &File, _md: &Metadata) -> Option<String> {
        let me = me().ok()?;
        let sd = security_of(f).ok()?;
        let who = others_granted(&sd, me, READ_RIGHTS);
        (!who.is_empty()).then(|| format!("its ACL lets {} read it", names(&who)))
    }

    pub fn private_no_follow(o: &mut OpenOptions) {
        // WRITE_DAC (and READ_CONTROL) on top of read/write: the owner-only ACL is set on
        // this handle (the owner always has both rights).
        o.access_mode(FILE_GENERIC_READ | FILE_GENERIC_WRITE | WRITE_DAC | READ_CONTROL)
            .custom_flags(FILE_FLAG_OPEN_REPARSE_POINT);
    }

    pub fn private_no_follow_nonblock(o: &mut OpenOptions) {
        private_no_follow(o);
    }

    pub fn read_flags(o: &mut OpenOptions, follow_links: bool) {
        o.access_mode(FILE_GENERIC_READ | READ_CONTROL);
        if !follow_links {
            o.custom_flags(FILE_FLAG_OPEN_REPARSE_POINT);
        }
    }

    pub fn private_dir(_b: &mut fs::DirBuilder) {}

    pub fn is_symlink_refusal(_e: &io::Error) -> bool {
        false
    }

    pub fn make_private_hint(path: &Path) -> String {
        format!(
            "icacls \"{}\" /inheritance:r /grant:r \"%USERNAME%:F\"",
            path.display()
        )
    }

    pub fn foreign_owner(path: &Path, _md: &Metadata, system_ok: bool) -> Option<String> {
        // READ_CONTROL is enough to read the owner; backup semantics opens a directory too.
        let f = OpenOptions::new()
            .access_mode(READ_CONTROL)
            .custom_flags(FILE_FLAG_BACKUP_SEMANTICS)
            .open(path)
            .ok()?;
        let me = me().ok()?;
        let sd = security_of(&f).ok()?;
        if owner_is(&sd, me) {
            return None;
        }
        let owner = sd.owner().map(|o| o.to_string())?;
        if system_ok && owner == SYSTEM {
            return None;
        }
        Some(name_of(&owner))
    }

    pub fn read_only(md: &Metadata) -> Option<String> {
        md.permissions()
            .readonly()
            .then(|| "the read-only attribute is set".to_owned())
    }

    pub fn make_writable_hint(path: &Path) -> String {
        format!("attrib -r \"{}\"", path.display())
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

    #[cfg(test)]
    mod tests {
        use super::*;

        const ME: &str = "S-1-5-21-1-2-3-1001";

        fn sd(sddl: &str) -> LocalBox<SecurityDescriptor> {
            sddl.parse().unwrap()
        }

        #[test]
        fn owner_only_acl_names_only_this_user() {
            let file = sd(&format!("O:{ME}{}", owner_only_sddl(ME, false)));
            assert!(others_granted(&file, ME, ANY_RIGHTS).is_empty());
            assert!(owner_is(&file, ME));
            let dir = sd(&owner_only_sddl(ME, true));
            assert!(others_granted(&dir, ME, ANY_RIGHTS).is_empty());
            // Protected: nothing inherited from the parent.
            assert!(owner_only_sddl(ME, true).starts_with("D:P("));
        }

        #[test]
        fn a_profile_acl_is_private_and_others_are_named() {
            // What %USERPROFILE% gives its files: the user, SYSTEM, Administrators.
            let profile = sd(&format!("D:(A;ID;FA;;;{ME})(A;ID;FA;;;SY)(A;ID;FA;;;BA)"));
            assert!(others_granted(&profile, ME, ANY_RIGHTS).is_empty());
            assert!(others_granted(&profile, ME, READ_RIGHTS).is_empty());
            // Users may read: not private, and Users is who is named.
            let shared = sd(&format!("D:(A;;FA;;;{ME})(A;;FR;;;BU)(A;;0x1200a9;;;WD)"));
            assert_eq!(
                others_granted(&shared, ME, READ_RIGHTS),
                vec!["S-1-5-32-545".to_owned(), "S-1-1-0".to_owned()]
            );
            // Another user with write only: not readable by them, but not private either.
            let writer = sd(&format!("D:(A;;FA;;;{ME})(A;;FW;;;S-1-5-21-1-2-3-1002)"));
            assert!(others_granted(&writer, ME, READ_RIGHTS).is_empty());
            assert_eq!(others_granted(&writer, ME, ANY_RIGHTS).len(), 1);
        }

        #[test]
        fn null_dacl_is_everyone_and_inherit_only_entries_do_not_apply() {
            // Windows parses NO_ACCESS_CONTROL into a null DACL (everyone); Wine into an
            // empty one (no one): each must be judged as what it is.
            let null = sd("D:NO_ACCESS_CONTROL");
            let is_null = wrappers::ConvertSecurityDescriptorToStringSecurityDescriptor(
                &null,
                SecurityInformation::Dacl,
            )
            .unwrap()
            .to_string_lossy()
            .contains("NO_ACCESS_CONTROL");
            let want: Vec<String> = if is_null {
                vec!["S-1-1-0".to_owned()]
            } else {
                Vec::new()
            };
            assert_eq!(others_granted(&null, ME, READ_RIGHTS), want);
            assert!(others_granted(&sd("D:"), ME, ANY_RIGHTS).is_empty());
            let inherit_only = sd(&format!(
                "D:(A;;FA;;;{ME})(A;OICIIO;GA;;;CO)(A;OICIIO;GR;;;BU)"
            ));
            assert!(others_granted(&inherit_only, ME, ANY_RIGHTS).is_empty());
            // A deny entry is no grant.
            let deny = sd(&format!("D:(D;;FR;;;WD)(A;;FA;;;{ME})"));
            assert!(others_granted(&deny, ME, READ_RIGHTS).is_empty());
        }

        #[test]
        fn created_files_and_directories_take_the_acl_and_read_back_as_mine() {
            // SetSecurityInfo on each new handle must succeed, and the owner read back
            // must be this process's user (what the grants read back as depends on the
            // file system: Wine reports its Unix mode, see docs/platforms.md).
            let base = std::env::temp_dir().join(format!("tapcred-acl-{}", std::process::id()));
            let dir = base.join("cache");
            super::super::create_private_dir_all(&dir).unwrap();
            let path = dir.join("entry.json");
            let mut f = super::super::create_new_private(&path).unwrap();
            std::io::Write::write_all(&mut f, b"{}").unwrap();
            drop(f);
            let back = super::super::read_private_file(&path, 1024).unwrap();
            assert_eq!(&back[..], b"{}");
            let sd = security_of(&File::open(&path).unwrap()).unwrap();
            assert!(owner_is(&sd, me().unwrap()));
            std::fs::remove_dir_all(&base).unwrap();
        }

        #[test]
        fn owner_must_be_this_user_or_administrators() {
            assert!(owner_is(&sd("O:BAD:"), ME));
            assert!(!owner_is(&sd("O:S-1-5-21-1-2-3-1002D:"), ME));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A link at a private folder's path is told apart by the error's type: the words
    /// alone (another layer's error that happens to say "reparse point") are not a link.
    #[test]
    fn a_reparse_point_refusal_is_recognised_by_type_not_text() {
        assert!(is_reparse_point_refusal(&reparse_point_refusal()));
        let lookalike = io::Error::other("a reparse point (link or junction)");
        assert!(!is_reparse_point_refusal(&lookalike));
        assert!(!is_reparse_point_refusal(&io::Error::from(
            io::ErrorKind::PermissionDenied
        )));
    }

    /// The temp file is opened by tapcred (not by `tempfile`'s own open, whose Windows
    /// handle lacks WRITE_DAC): the owner-only ACL can be set on it, so the first write and
    /// a replacement both land, in a folder made private first.
    #[test]
    fn replace_private_creates_then_replaces_in_a_private_folder() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("a").join("b");
        create_private_dir_all(&dir).unwrap();
        let path = dir.join("file");
        replace_private(&path, ".file-", b"first").unwrap();
        replace_private(&path, ".file-", b"second").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        let left: Vec<_> = fs::read_dir(&dir).unwrap().flatten().collect();
        assert_eq!(left.len(), 1, "temp files left: {left:?}");
    }

    /// The person's file keeps its mode through a replace; tapcred's own, or a new file,
    /// is private. A staged write that is dropped leaves the target and no temp file.
    #[cfg(unix)]
    #[test]
    fn replace_atomic_keeps_or_sets_the_mode_and_a_dropped_stage_changes_nothing() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let theirs = t.path().join("config");
        fs::write(&theirs, b"old").unwrap();
        fs::set_permissions(&theirs, fs::Permissions::from_mode(0o640)).unwrap();
        replace_atomic(&theirs, ".t-", b"new", Perms::KeepExisting).unwrap();
        assert_eq!(
            (fs::read(&theirs).unwrap(), mode(&theirs)),
            (b"new".to_vec(), 0o640)
        );
        replace_atomic(&theirs, ".t-", b"secret", Perms::Private).unwrap();
        assert_eq!(mode(&theirs), 0o600);
        let fresh = t.path().join("credentials");
        replace_atomic(&fresh, ".t-", b"x", Perms::KeepExisting).unwrap();
        assert_eq!(mode(&fresh), 0o600);

        let staged = stage(&theirs, ".t-", b"never", Perms::Private).unwrap();
        assert!(staged.path().exists());
        drop(staged);
        assert_eq!(fs::read(&theirs).unwrap(), b"secret");
        assert_eq!(
            fs::read_dir(t.path()).unwrap().count(),
            2,
            "no temp file left"
        );
    }

    /// Another program reading the file at the moment of the rename (Windows refuses to
    /// replace an open file) delays the replace; it does not fail it.
    #[test]
    fn replace_private_waits_out_a_reader_holding_the_file() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("file");
        fs::write(&path, b"old").unwrap();
        let reader = File::open(&path).unwrap();
        let closes = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(200));
            drop(reader);
        });
        replace_private(&path, ".file-", b"new").unwrap();
        closes.join().unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
    }
}
