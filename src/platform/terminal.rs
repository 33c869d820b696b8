//! The controlling terminal: where prompts and progress go whatever stdout/stderr are (under
//! `credential_process` the SDK captures both). Unix: `/dev/tty`. Windows: the console's
//! `CONIN$`/`CONOUT$` (a GUI parent such as Visual Studio starts `credential_process`
//! without a console, and then neither opens). Never stdout.

use std::fs::{File, OpenOptions};

/// The person's terminal, for reading a line and writing progress.
pub struct Terminal {
    pub input: File,
    pub output: File,
    /// What returns the cursor to the start of the line and blanks it: an ANSI erase on
    /// Unix; on Windows a classic console may not interpret ANSI sequences (turning that on
    /// takes an `unsafe` console call), so the line is overwritten with spaces.
    pub clear_line: &'static str,
}

/// The controlling terminal, if this process has one.
pub fn open() -> Option<Terminal> {
    imp::open()
}

#[cfg(unix)]
mod imp {
    use super::*;

    pub fn open() -> Option<Terminal> {
        let output = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/tty")
            .ok()?;
        let input = output.try_clone().ok()?;
        Some(Terminal {
            input,
            output,
            clear_line: "\r\x1b[2K",
        })
    }
}

#[cfg(windows)]
mod imp {
    use super::*;

    pub fn open() -> Option<Terminal> {
        let input = OpenOptions::new()
            .read(true)
            .write(true)
            .open("CONIN$")
            .ok()?;
        let output = OpenOptions::new()
            .read(true)
            .write(true)
            .open("CONOUT$")
            .ok()?;
        Some(Terminal {
            input,
            output,
            clear_line: "\r                                                                               \r",
        })
    }
}
