//! What older tapcred versions left beside an AWS file (`NAME.tapcred.lock`,
//! `NAME.tapcred.bak`): listing it for `doctor`, and cleaning it up where nothing is lost.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use super::AwsFile;
use super::file_io::read_bytes;
use super::private_folder::{StatePaths, write_new_private};
use crate::platform;

/// The lock file and the backup older tapcred versions wrote beside the AWS file at `path`
/// (exactly these names; the editor's own now live in the private folder), those that exist.
pub(super) fn leftover_paths(path: &Path) -> Vec<(PathBuf, Leftover)> {
    let Some(name) = path.file_name() else {
        return Vec::new();
    };
    [
        (".tapcred.lock", Leftover::Lock),
        (".tapcred.bak", Leftover::Backup),
    ]
    .into_iter()
    .map(|(suffix, kind)| {
        let mut n = name.to_os_string();
        n.push(suffix);
        (path.with_file_name(n), kind)
    })
    .filter(|(p, _)| fs::symlink_metadata(p).is_ok())
    .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Leftover {
    Lock,
    Backup,
}

/// Whether the leftover at `p` is a regular file of this user (never a link, never a file
/// someone else made).
pub(super) fn leftover_is_mine(p: &Path) -> bool {
    fs::symlink_metadata(p)
        .is_ok_and(|md| md.is_file() && platform::fs::foreign_owner(p, &md, false).is_none())
}

/// The old lock file at `p`, locked, when no process (an older tapcred still running)
/// holds it.
pub(super) fn lock_if_free(p: &Path) -> Option<File> {
    let f = platform::fs::open_lock_file(p, false).ok()?;
    match f.try_lock() {
        Ok(()) => Some(f),
        Err(_) => None,
    }
}

/// What an older version left beside `path` (an AWS file of kind `file`), for `doctor`: each
/// leftover with what it is and what happens to it.
pub fn leftovers_beside(path: &Path, file: AwsFile) -> Vec<(PathBuf, String, Option<String>)> {
    leftover_paths(path)
        .into_iter()
        .map(|(p, kind)| {
            let rm = format!("delete it when you no longer need it: rm {}", p.display());
            let (what, fix) = match kind {
                Leftover::Lock if !leftover_is_mine(&p) => {
                    ("an old lock file that is not yours".to_owned(), Some(rm))
                }
                Leftover::Lock => match lock_if_free(&p) {
                    Some(_) => (
                        "an old lock file, not in use: tapcred's next edit of the file removes it"
                            .to_owned(),
                        None,
                    ),
                    None => (
                        "an old lock file held by a running older tapcred".to_owned(),
                        None,
                    ),
                },
                Leftover::Backup if file == AwsFile::Credentials => (
                    "an old backup: a plaintext copy of the credentials file (access keys) from before tapcred's first edit".to_owned(),
                    Some(rm),
                ),
                Leftover::Backup => (
                    "an old backup of the config file from before tapcred's first edit; tapcred's next edit moves it into its private folder when that holds none".to_owned(),
                    None,
                ),
            };
            (p, format!("left by an older tapcred: {what}"), fix)
        })
        .collect()
}

/// Remove what an older version left beside `target`, where nothing is lost: its lock file
/// when it is this user's and no process holds it; the config backup moved into the private
/// folder when that holds none (or the same bytes). The credentials backup stays (plaintext
/// keys, perhaps the only copy: the person deletes it; `doctor` lists it), and so does
/// anything else. Best effort: an edit never fails because of it.
pub(super) fn clean_leftovers(target: &Path, file: AwsFile, state: &StatePaths) {
    for (p, kind) in leftover_paths(target) {
        if !leftover_is_mine(&p) {
            continue;
        }
        match kind {
            Leftover::Lock => {
                // Removed while locked, so no older tapcred takes it meanwhile.
                if let Some(_held) = lock_if_free(&p) {
                    let _ = fs::remove_file(&p);
                }
            }
            Leftover::Backup => {
                let Ok(old) = read_bytes(&p, file) else {
                    continue;
                };
                let Some(old) = old else { continue };
                let same_as = |q: &Path| read_bytes(q, file).ok().flatten().as_ref() == Some(&old);
                let moved = file == AwsFile::Config
                    && (same_as(&state.backup)
                        || (fs::symlink_metadata(&state.backup).is_err()
                            && write_new_private(&state.backup, &old).is_ok()));
                if moved {
                    let _ = fs::remove_file(&p);
                }
            }
        }
    }
}
