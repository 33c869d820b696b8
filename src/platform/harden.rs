//! No core dumps while secrets are held (issue 11, finding 10): a core file of a process
//! holding a seed, an OATH password or session keys would carry them to disk (and on Linux
//! to whatever `core_pattern` pipes it to). Called once at start, before anything secret is
//! read; tapcred holds secrets for almost its whole run, so it stays so.
//!
//! - Linux: `PR_SET_DUMPABLE` 0 (no core file, no `ptrace` attach by same-uid processes,
//!   `/proc/PID/mem` and `environ` closed to other processes of the user) and the soft
//!   `RLIMIT_CORE` 0. Both through `rustix` (no `unsafe` here). `exec` children get
//!   `dumpable` back from the kernel at `execve`; they inherit the core limit 0 (they hold
//!   the session credentials in their environment too).
//! - macOS: the soft `RLIMIT_CORE` 0 (macOS writes cores to `/cores` only when the limit
//!   allows; crash reports carry no memory).
//! - Windows: no core files; Windows Error Reporting writes a full dump only where an
//!   administrator configured `LocalDumps`, and turning that off per process
//!   (`WerAddExcludedApplication`/`SetErrorMode`) takes `unsafe` calls. tapcred's panic
//!   hook exits with status 1 instead of aborting, so a Rust panic never reaches WER.

/// What was turned off, for `-v` logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hardened {
    pub core_limit_zero: bool,
    pub not_dumpable: bool,
}

/// Turn core dumps off for this process. Failures are logged and ignored (nothing to do
/// about them that would help the person).
pub fn disable_core_dumps() -> Hardened {
    let h = imp::disable_core_dumps();
    tracing::debug!(?h, "core dumps off");
    h
}

#[cfg(unix)]
mod imp {
    use super::Hardened;
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

    pub fn disable_core_dumps() -> Hardened {
        let old = getrlimit(Resource::Core);
        let core_limit_zero = setrlimit(
            Resource::Core,
            Rlimit {
                current: Some(0),
                maximum: old.maximum,
            },
        )
        .is_ok();
        #[cfg(any(target_os = "linux", target_os = "android"))]
        let not_dumpable =
            rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
                .is_ok();
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        let not_dumpable = false;
        Hardened {
            core_limit_zero,
            not_dumpable,
        }
    }
}

#[cfg(windows)]
mod imp {
    use super::Hardened;

    pub fn disable_core_dumps() -> Hardened {
        Hardened {
            core_limit_zero: false,
            not_dumpable: false,
        }
    }
}
