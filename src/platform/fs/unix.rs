//! The Unix side of [`super`]: modes, `O_NOFOLLOW`/`O_NONBLOCK`, the effective uid.

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
        c == rustix::io::Errno::LOOP.raw_os_error() || c == rustix::io::Errno::MLINK.raw_os_error()
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
