//! Which file an edit writes (a symbolic link's target) and whether the person's files may be
//! written (owner, read-only), and creating its folder.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::AwsFile;
use super::file_io::io_error;
use crate::error::{Error, Result};
use crate::platform;

/// The file an edit writes: `path`, or the file a symbolic link at `path` leads to (so the
/// rename replaces that file and the link stays). A link that leads nowhere is refused
/// rather than replaced by a regular file (which would silently cut the link, say into a
/// dotfiles repository) or followed into creating its target (a folder tapcred did not
/// choose).
pub(super) fn resolve_target(path: &Path, file: AwsFile) -> Result<PathBuf> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => fs::canonicalize(path).map_err(|e| {
            let dest = fs::read_link(path)
                .map(|d| d.display().to_string())
                .unwrap_or_else(|_| "?".to_owned());
            let why = match e.kind() {
                io::ErrorKind::NotFound => "does not exist".to_owned(),
                _ => format!("cannot be followed ({e})"),
            };
            Error::config(format!(
                "{}: the AWS {} file is a symbolic link to {dest}, which {why}; create the file it leads to, or remove the link, then run again",
                path.display(),
                file.what()
            ))
            .with_source(e)
        }),
        _ => Ok(path.to_owned()),
    }
}

/// What the person's files say about being written: another user's file (or, for a new
/// file, another user's folder: the file would be ours in their folder, as after `sudo -E`)
/// and a read-only file are refused with the fix.
pub(super) fn check_intent(target: &Path, file: AwsFile) -> Result<()> {
    let (at, md, system_ok) = match fs::metadata(target) {
        Ok(md) => (target.to_owned(), md, false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // The folder the new file goes in, or the nearest one that exists.
            let Some((dir, md)) = target
                .ancestors()
                .skip(1)
                .filter(|d| !d.as_os_str().is_empty())
                .find_map(|d| fs::metadata(d).ok().map(|md| (d.to_owned(), md)))
            else {
                return Ok(());
            };
            (dir, md, true)
        }
        // Reported by the read that follows, with its own words.
        Err(_) => return Ok(()),
    };
    if let Some(owner) = platform::fs::foreign_owner(&at, &md, system_ok) {
        let what = if system_ok {
            format!("the folder for the AWS {} file", file.what())
        } else {
            format!("the AWS {} file", file.what())
        };
        return Err(Error::config(format!(
            "{}: {what} belongs to {owner}, not to you; tapcred does not write another user's files: run it as that user (without sudo), or set AWS_CONFIG_FILE / AWS_SHARED_CREDENTIALS_FILE to files of yours",
            at.display()
        )));
    }
    if !system_ok && let Some(how) = platform::fs::read_only(&md) {
        return Err(Error::config(format!(
            "{}: the AWS {} file is read-only ({how}), so tapcred leaves it alone; run `{}` to let tapcred edit it, or make the change by hand",
            at.display(),
            file.what(),
            platform::fs::make_writable_hint(&at)
        )));
    }
    Ok(())
}

pub(super) fn create_dir(dir: &Path, file: AwsFile) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    platform::fs::create_private_dir_all(dir)
        .map_err(|e| io_error(dir, file, "cannot create the directory", e))
}
