//! The `tapcred` program: a warm `credential-process` answered by a small binary, anything
//! else handed, arguments and environment untouched, to `tapcred-full` (the whole program)
//! installed beside it.
//!
//! Why two programs (issue 12): a warm `credential-process` — what every AWS SDK runs on
//! each credential refresh — is mostly process start-up. A binary that links the SDK, PC/SC
//! and the HID/FIDO2 stack spends that start-up in the dynamic loader: binding ~560 symbols
//! across six libraries (libpcsclite and libudev among them) and applying 16k relocations
//! to 250 KB of read-only data, ~0.65 M instructions and ~100 page faults, before `main`.
//! This binary's `main` reaches only the warm path (the warm index, the cache entry, the
//! JSON), so the linker drops everything else, and with it libpcsclite, libudev and libm:
//! ~0.5 MB, libc and libgcc_s only, like any small Rust program (benches/README.md, B1).
//!
//! A miss costs one `exec` (Unix: the same process id, signals, terminal and exit code);
//! Windows has no `exec`, so there `tapcred-full` runs as a child and this process exits
//! with its code (`platform::process::replace_with`).

use std::ffi::OsString;
use std::process::Command;

use super::Cmd;
use crate::build_id;
use crate::commands;
use crate::engine;
use crate::env::RealEnv;
use crate::error::Error;
use crate::platform::locations::{self, FULL_PROGRAM, LAUNCHER};

/// `main` of the `tapcred` binary: the process exit code.
pub fn main() -> i32 {
    super::install_panic_hook();
    if let Some(code) = warm_hit() {
        return code;
    }
    hand_over(std::env::args_os())
}

/// A warm `credential-process`, answered here; `None` for anything else, which includes
/// every miss, every other command and flag, and `RUST_LOG` (the full program sets up the
/// logging that says what the warm lookup did).
fn warm_hit() -> Option<i32> {
    if std::env::var_os("RUST_LOG").is_some_and(|v| !v.is_empty()) {
        return None;
    }
    let Cmd::CredentialProcess(args) =
        super::fast_credential_process(std::env::args_os().skip(1))?.command
    else {
        return None;
    };
    // Before the session keys are read, as in the full program.
    crate::platform::harden::disable_core_dumps();
    let env = RealEnv;
    let credentials = engine::warm_credentials(&args.name(&env), &args.options(), &env)?;
    Some(
        match commands::process::print(&credentials, &mut std::io::stdout().lock()) {
            Ok(code) => code,
            Err(e) => {
                super::print_error(&e);
                e.exit_code()
            }
        },
    )
}

/// Run `tapcred-full` with `args` (argv[0] included) in place of this process; returns only
/// when it cannot be started, with exit code 7.
fn hand_over(mut args: impl Iterator<Item = OsString>) -> i32 {
    let arg0 = args.next();
    let err = match locations::sibling_program(FULL_PROGRAM) {
        Ok(full) => {
            let mut full_cmd = Command::new(&full);
            full_cmd
                .args(args)
                .env(build_id::LAUNCHER_BUILD_ENV, build_id::MARKED);
            let e = crate::platform::process::replace_with(&mut full_cmd, arg0);
            format!("cannot start {}: {e}", full.display())
        }
        Err(e) => format!("cannot find tapcred's own folder: {e}"),
    };
    let e = Error::io(format!(
        "{err}; tapcred is two programs installed side by side, `{}` and `{}`: reinstall \
         both (`cargo install --locked --path .` in tapcred's source folder, or the package) \
         or copy both into one folder",
        locations::program_file_name(LAUNCHER),
        locations::program_file_name(FULL_PROGRAM)
    ));
    super::print_error(&e);
    e.exit_code()
}
