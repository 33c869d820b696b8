//! tapcred's private folder for the editor's own files: the lock that serialises tapcred's
//! writers of one AWS file and the config backup, named after the file and keyed by its real
//! path.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::file_io::io_error;
use super::target::resolve_target;
use super::{AwsFile, EditOptions};
use crate::env::EnvLookup;
use crate::error::{Error, Result};
use crate::platform;

/// The editor's private folder: `aws-files` in tapcred's data directory (owner-only, never
/// a link). It holds one lock file per edited file, named after the file and keyed by its
/// real path (`config-<hash>.lock`), and the config backup (`config-<hash>.bak`); nothing
/// is put beside the AWS files themselves.
pub fn private_dir(env: &dyn EnvLookup) -> Option<PathBuf> {
    platform::locations::data_dir(env).map(|d| d.join("aws-files"))
}

/// The editor's own files for `target`, in the private folder.
pub(super) struct StatePaths {
    pub(super) lock: PathBuf,
    pub(super) backup: PathBuf,
}

/// `NAME-<hash>` for `target`: its file name (for people) and a hash of its real path (two
/// names, links or spellings of one file share a lock).
pub(super) fn state_paths(opts: &EditOptions, target: &Path, file: AwsFile) -> Result<StatePaths> {
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
pub(super) fn path_hash(target: &Path) -> String {
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

pub(super) fn prepare_private_dir(dir: &Path) -> Result<()> {
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

/// Hold an exclusive lock on the lock file at `path` until dropped. The file stays (removing
/// a lock file another process has open would let a third one lock a new file of the same
/// name); it is in the private folder, not beside the AWS file.
pub(super) fn lock(path: &Path, file: AwsFile) -> Result<File> {
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

/// A new file, private, never replacing an existing one or following a link.
pub(super) fn write_new_private(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut f = platform::fs::create_new_private(path)?;
    f.write_all(data)?;
    f.sync_all()
}
