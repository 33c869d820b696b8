//! This process's standard output, for code that calls a library which prints.

/// Run `f` with file descriptor 1 pointing at the null device. The FIDO2 crate still
/// `println!`s in a few places (an unknown field or extension in an answer, a parse oddity);
/// stdout may carry `credential_process` JSON or `export` lines, so nothing from the crate
/// may land there, and its notes are not tapcred's to show on stderr either.
///
/// Called on the thread that writes tapcred's output (which does not write while `f`
/// runs), never on an exchange's worker thread: a worker that never gets its answer is
/// abandoned, and must hold neither Rust's stdout lock nor fd 1's only way back.
#[cfg(not(windows))]
pub fn with_stdout_discarded<T>(f: impl FnOnce() -> T) -> T {
    use std::io::Write;
    use std::os::fd::AsFd;
    let _ = std::io::stdout().flush();
    let null = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .ok();
    let saved = rustix::io::dup(std::io::stdout().as_fd()).ok();
    let moved = saved.is_some()
        && null
            .as_ref()
            .is_some_and(|n| rustix::stdio::dup2_stdout(n.as_fd()).is_ok());
    let r = f();
    let _ = std::io::stdout().flush();
    if moved && let Some(fd) = &saved {
        let _ = rustix::stdio::dup2_stdout(fd);
    }
    r
}
