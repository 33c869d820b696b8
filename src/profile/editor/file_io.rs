//! Reading an AWS file's bytes and text, and the errors of file operations, naming the file.

use std::fs;
use std::io;
use std::path::Path;

use zeroize::Zeroizing;

use super::AwsFile;
use crate::error::{Error, Result};

pub(super) fn io_error(path: &Path, file: AwsFile, what: &str, e: io::Error) -> Error {
    Error::io(format!(
        "{}: {what} (AWS {} file): {e}; check the directory's permissions and free space",
        path.display(),
        file.what()
    ))
    .with_source(e)
}

pub(super) fn read_error(path: &Path, file: AwsFile, e: &io::Error) -> Error {
    Error::config(format!(
        "{}: cannot read the AWS {} file: {e}; check its permissions",
        path.display(),
        file.what()
    ))
}

pub(super) fn read_bytes(path: &Path, file: AwsFile) -> Result<Option<Zeroizing<Vec<u8>>>> {
    match fs::read(path) {
        Ok(b) => Ok(Some(Zeroizing::new(b))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(read_error(path, file, &e)),
    }
}

/// A file's bytes, wiped on drop.
pub(super) type Bytes = Zeroizing<Vec<u8>>;

pub(super) fn utf8(
    path: &Path,
    file: AwsFile,
    bytes: Zeroizing<Vec<u8>>,
) -> Result<Zeroizing<String>> {
    match std::str::from_utf8(&bytes) {
        Ok(s) => Ok(Zeroizing::new(s.to_owned())),
        Err(_) => Err(Error::config(format!(
            "{}: the AWS {} file is not UTF-8 text; save it as UTF-8",
            path.display(),
            file.what()
        ))),
    }
}
