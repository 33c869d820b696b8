//! The atomic replace: new content staged in a private temp file beside the target, then
//! renamed over it ([`stage`], [`Staged`], [`replace_atomic`], [`replace_private`]).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use super::imp;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::fs::create_private_dir_all;

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
