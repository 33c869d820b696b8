//! Child processes for `exec`/`serve` (owned by the process-handling work: spawn, signals,
//! exit codes). Only the exit-code rule lives here so far.

use std::process::ExitStatus;

/// The child's exit code; on Unix a child killed by signal N gives 128 + N, as shells report
/// it. On Windows every exit carries a code (`TerminateProcess`'s included).
pub fn exit_code_of(status: ExitStatus) -> i32 {
    imp::exit_code_of(status)
}

#[cfg(unix)]
mod imp {
    use std::os::unix::process::ExitStatusExt;
    use std::process::ExitStatus;

    pub fn exit_code_of(status: ExitStatus) -> i32 {
        status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
    }
}

#[cfg(windows)]
mod imp {
    use std::process::ExitStatus;

    pub fn exit_code_of(status: ExitStatus) -> i32 {
        status.code().unwrap_or(1)
    }
}
