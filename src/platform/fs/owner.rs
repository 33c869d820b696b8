//! Who owns a path and who else may use it: private-directory checks ([`DirProblem`]),
//! owner and mode/ACL checks on the person's files, and the hints that fix them.

use std::fs::{self, Metadata};
use std::io;
use std::path::Path;

use super::imp;
use super::read::{is_reparse_point, kind_of, open_read};

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
pub(super) fn reparse_point_refusal() -> io::Error {
    io::Error::other(ReparsePoint)
}

#[cfg_attr(not(windows), allow(dead_code))]
pub(super) fn is_reparse_point_refusal(e: &io::Error) -> bool {
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
}
