//! Which build a program is. tapcred is two programs that must come from one build: the
//! `tapcred` launcher answers warm calls from an index that `tapcred-full` writes, and hands
//! everything else to `tapcred-full`. A launcher and a full program from different builds
//! would disagree on cache keys and formats, so:
//!
//! - both carry [`MARKED`], the build id (a digest of the sources, lock file, target and
//!   profile, made by `build.rs`) behind a marker, readable from the file itself
//!   ([`id_in_file`]) without running it;
//! - the launcher hands its id to `tapcred-full` in [`LAUNCHER_BUILD_ENV`], and
//!   `tapcred-full` refuses to run for a launcher of another build ([`check_launcher`]);
//! - `--version` and `doctor` show both programs' ids.

use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::platform::locations::{self, FULL_PROGRAM, LAUNCHER};

/// This build's id: 16 hex digits.
pub const BUILD_ID: &str = env!("TAPCRED_BUILD_ID");

/// The id as it stands in both binaries: `tapcred-build-id:` + 16 hex digits + `;`.
pub const MARKED: &str = concat!("tapcred-build-id:", env!("TAPCRED_BUILD_ID"), ";");

/// Set by the launcher for `tapcred-full`: the launcher's [`MARKED`] id.
pub const LAUNCHER_BUILD_ENV: &str = "TAPCRED_LAUNCHER_BUILD";

const PREFIX: &[u8] = b"tapcred-build-id:";
const ID_LEN: usize = 16;

/// The id inside a [`MARKED`] string, if it is one.
fn id_of_marked(bytes: &[u8]) -> Option<&str> {
    let rest = bytes.strip_prefix(PREFIX)?;
    let id = rest.get(..ID_LEN)?;
    (rest.get(ID_LEN) == Some(&b';') && id.iter().all(u8::is_ascii_hexdigit))
        .then(|| std::str::from_utf8(id).ok())
        .flatten()
}

/// The build id stored in the program file at `path`; None when the file has none (not
/// tapcred, or a tapcred from before build ids).
pub fn id_in_file(path: &Path) -> std::io::Result<Option<String>> {
    let bytes = std::fs::read(path)?;
    let mut at = 0;
    while let Some(i) = find(&bytes[at..], PREFIX) {
        if let Some(id) = id_of_marked(&bytes[at + i..]) {
            return Ok(Some(id.to_string()));
        }
        at += i + 1;
    }
    Ok(None)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The launcher beside the running program.
pub fn launcher_path() -> std::io::Result<PathBuf> {
    locations::sibling_program(LAUNCHER)
}

/// In `tapcred-full`: refuse to run for a launcher of another build (exit 7 with one line
/// naming both files and the fix). `handed` is [`LAUNCHER_BUILD_ENV`] as this process got it;
/// absent when `tapcred-full` was started directly, which is allowed.
pub fn check_launcher(handed: Option<&str>) -> Result<(), Error> {
    let Some(handed) = handed else {
        return Ok(());
    };
    if handed == MARKED {
        return Ok(());
    }
    let theirs = id_of_marked(handed.as_bytes()).unwrap_or("unknown");
    let name = |n: &str| {
        locations::sibling_program(n)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| locations::program_file_name(n))
    };
    Err(Error::io(format!(
        "{} (build {theirs}) and {} (build {BUILD_ID}) are from different builds of tapcred; \
         reinstall both together (`cargo install --locked --path .` in tapcred's source folder, \
         or the package)",
        name(LAUNCHER),
        name(FULL_PROGRAM),
    )))
}

/// The `--version` text: the version, this build, and the launcher beside it.
pub fn version_text() -> String {
    let launcher = match launcher_path().map(|p| id_in_file(&p)) {
        Ok(Ok(Some(id))) if id == BUILD_ID => "the same build".to_string(),
        Ok(Ok(Some(id))) => format!("build {id}: DIFFERENT, reinstall both"),
        Ok(Ok(None)) => "no build id".to_string(),
        Ok(Err(_)) | Err(_) => "not found".to_string(),
    };
    format!(
        "{} (build {BUILD_ID}; the launcher beside it: {launcher})",
        env!("CARGO_PKG_VERSION")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marked_id_is_found_in_a_file_and_a_bare_marker_is_not_taken() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("prog");
        // The bare prefix (as a search needle would stand) comes first and is passed over.
        let mut bytes = b"xx tapcred-build-id:zz\0 more".to_vec();
        bytes.extend_from_slice(MARKED.as_bytes());
        bytes.extend_from_slice(b"tail");
        std::fs::write(&f, &bytes).unwrap();
        assert_eq!(id_in_file(&f).unwrap().as_deref(), Some(BUILD_ID));
        std::fs::write(&f, b"no id here").unwrap();
        assert_eq!(id_in_file(&f).unwrap(), None);
    }

    #[test]
    fn a_launcher_of_another_build_is_refused_naming_both_files() {
        assert!(check_launcher(None).is_ok());
        assert!(check_launcher(Some(MARKED)).is_ok());
        let other = "tapcred-build-id:0123456789abcdef;";
        let e = check_launcher(Some(other)).unwrap_err();
        assert_eq!(e.exit_code(), 7);
        let m = e.message();
        assert!(m.contains("build 0123456789abcdef"), "{m}");
        assert!(m.contains(&format!("build {BUILD_ID}")), "{m}");
        assert!(m.contains("reinstall both"), "{m}");
    }

    #[test]
    fn the_build_id_is_sixteen_hex_digits() {
        assert_eq!(BUILD_ID.len(), 16);
        assert!(BUILD_ID.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(id_of_marked(MARKED.as_bytes()), Some(BUILD_ID));
    }
}
