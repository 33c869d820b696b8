//! Byte-preserving edits of `~/.aws/config` and `~/.aws/credentials` (for `configure` and
//! `enroll`).
//!
//! Only the lines an edit needs are touched: a key that exists is rewritten in place (its
//! spelling, the spacing around `=` and a trailing `# comment` are kept), a new key goes at the
//! end of its section (before the section's trailing blank lines and comments), a missing
//! section is appended at the end of the file with the header style of that file
//! (`[profile x]` in config except `[default]`, `[x]` in credentials). Every other byte stays:
//! comments, order, blank lines, unknown keys, other profiles, CRLF line endings (new lines use
//! the file's style), a missing final newline, indentation.
//!
//! Writing (see [`apply_edits_with`]): a symbolic link is followed to its target; a file or
//! folder of another user and a read-only file are refused; tapcred's writers are serialised
//! by a lock file in tapcred's private folder ([`private_dir`]), never beside the AWS file;
//! the new text goes to a temporary file in the same directory (fsync, rename), and a change
//! another program made meanwhile is seen (the file is read again before and after the
//! rename, and so is the replaced file) and the edit redone on it; what such a program wrote
//! into the replaced file, or over this edit's text, is merged back by lines. The file's permissions are kept (new files are private;
//! a file others can read is made private when it receives a secret). The config file is
//! kept once, as before tapcred's first edit, in the private folder; the credentials file
//! never gets a backup (it would be a plaintext copy of the access keys). What older versions
//! left beside the file (`NAME.tapcred.lock`, `NAME.tapcred.bak`) is cleaned up where
//! nothing is lost ([`leftovers_beside`] lists it for `doctor`). Values are held as
//! secrets and zeroized; errors never contain them.
//!
//! The line rules are those of aws-config's parser (`aws_runtime::env_config::parse`): a line
//! starting with `[` is a section header, `#`/`;` at column 0 a comment, a non-blank line
//! starting with a space or tab continues the previous property, anything else is
//! `key = value` (an inline comment needs whitespace before `#`/`;`).

mod careful_write;
mod edits;
mod file_io;
mod leftovers;
mod line_merge;
mod lines;
mod private_folder;
mod target;
mod text_edit;

use aws_runtime::env_config::file::EnvConfigFileKind;

pub use edits::{
    EditOptions, EditReceipt, ProfileEdit, apply_edits, apply_edits_with, keys_in, remove_keys,
};
pub use leftovers::leftovers_beside;
pub use private_folder::{lock_path, private_dir};
pub use text_edit::edit_text;

/// Which AWS file is edited (decides the header style and the parse rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AwsFile {
    Config,
    Credentials,
}

impl AwsFile {
    fn kind(self) -> EnvConfigFileKind {
        match self {
            AwsFile::Config => EnvConfigFileKind::Config,
            AwsFile::Credentials => EnvConfigFileKind::Credentials,
        }
    }

    fn what(self) -> &'static str {
        match self {
            AwsFile::Config => "config",
            AwsFile::Credentials => "credentials",
        }
    }

    /// The header line for `profile` in this file.
    pub fn header(self, profile: &str) -> String {
        match (self, profile) {
            (AwsFile::Credentials, p) | (AwsFile::Config, p @ "default") => format!("[{p}]"),
            (AwsFile::Config, p) => format!("[profile {p}]"),
        }
    }
}

// What the tests (`use super::*`) reach beyond the public paths.
#[cfg(test)]
use {
    crate::error::Result,
    crate::profile::load::parse_files,
    careful_write::Lost,
    file_io::Bytes,
    line_merge::merge_lines,
    lines::{occurrences, sections_of, split_lines},
    private_folder::state_paths,
    secrecy::{ExposeSecret, SecretString},
    std::fs::{self, File},
    std::path::Path,
    target::resolve_target,
    zeroize::Zeroizing,
};

#[cfg(test)]
mod tests;
