//! The commands, each a function over the engine; the CLI only parses arguments and maps
//! errors to exit codes. Commands write to stdout only what they exist to print.

pub mod child;
pub mod code;
pub mod configure;
pub mod devices;
pub mod doctor;
pub mod enroll;
pub mod exec;
pub mod export;
pub mod interrupt;
pub mod journalled;
pub mod man;
pub mod piv;
pub mod process;
pub mod roles_anywhere_setup;
pub mod rotate;
pub mod serve;
pub mod sessions;
pub mod shell_words;
pub mod test_hook;
pub mod vault;

use crate::env::EnvLookup;
use crate::ui::Ui;

/// What every command gets: the environment and the person.
pub struct Ctx<'a> {
    pub env: &'a dyn EnvLookup,
    pub ui: &'a dyn Ui,
}

/// One line of the command's result on stdout.
pub(crate) fn write_line(out: &mut dyn std::io::Write, line: &str) -> crate::error::Result<()> {
    writeln!(out, "{line}")
        .map_err(|e| crate::error::Error::io(format!("cannot write to stdout: {e}")).with_source(e))
}
