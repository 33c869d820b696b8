//! Creating private files and directories (Unix 0600/0700; Windows an owner-only ACL),
//! never through a link.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::Path;

use super::imp;
use super::read::{is_reparse_point, kind_of};

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
