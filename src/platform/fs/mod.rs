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

mod atomic;
mod create;
mod owner;
mod read;

#[cfg(unix)]
mod unix;
#[cfg(unix)]
use unix as imp;
#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows as imp;

pub use atomic::{CAN_REPLACE_OPEN_FILE, Perms, Staged, replace_atomic, replace_private, stage};
pub use create::{create_new_private, create_private, create_private_dir_all, open_lock_file};
pub use owner::{
    DirProblem, check_dir_owner, check_private_dir, foreign_owner, make_private_hint,
    make_writable_hint, others_can_read, read_only, take_ownership_hint, user_tag,
};
pub use read::{
    ReadError, is_null_device, kind_of, read_private_file, read_regular, read_secret_file,
};
