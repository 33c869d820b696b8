//! Running a child as `exec` and `serve -- CMD` do: tapcred stays alive until the child has
//! exited, whatever signal or console event arrives meanwhile, and then reports the child's
//! exit code.
//!
//! Unix: from [`spawn`] until [`Supervised::wait`] returns, SIGINT, SIGTERM, SIGHUP and
//! SIGQUIT no longer end tapcred (handlers through `signal-hook`; the child starts with the
//! default dispositions, as `exec` resets handlers):
//! - a signal **another process sent to tapcred** (`kill`, a service manager, `timeout`) is
//!   forwarded to the child, which would otherwise be orphaned;
//! - a signal **the kernel generated for the terminal** (Ctrl-C, Ctrl-\, hang-up) already
//!   went to the whole foreground process group, the child included, so it is not sent a
//!   second time (a second Ctrl-C often means "stop cleaning up" to a program);
//! - a signal the child itself sent (to its process group, say) is not echoed back to it.
//!
//! The child is waited for with `waitid(WNOWAIT)` first, so it stays a zombie, and its pid
//! cannot be reused, until forwarding has been switched off; only then is it reaped.
//!
//! Windows: the child shares tapcred's console and receives Ctrl-C/Ctrl-Break itself;
//! tapcred's console handler (`ctrlc`) only keeps tapcred alive to wait and report the code.
//! The launcher's child (`tapcred-full.exe`, [`replace_with`]) runs in a kill-on-close job
//! object, so killing the launcher (an IDE's timeout) ends the child and its helpers too.
//!
//! Exit codes: the child's own; on Unix a child killed by signal N gives 128 + N, as shells
//! report it.
//!
//! [`on_interrupt`] is the other use of signals and console events: a command that must
//! undo what it did (`enroll`) turns "stop" into a flag it checks between steps.
//!
//! One signal crate per OS: `signal-hook` on Unix (it also tells who sent a signal, which
//! forwarding needs); `ctrlc` on Windows, where "stop" arrives as console control events
//! (Ctrl-C, Ctrl-Break, the console closing) that only a console handler sees —
//! `signal-hook` has the C runtime's SIGINT/SIGBREAK there, not the console closing.

use std::io;
use std::process::{Command, ExitStatus};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// From now on, until the process ends, set `flag` instead of ending the process when the
/// person asks it to stop: Unix SIGINT (Ctrl-C), SIGTERM, SIGHUP; Windows Ctrl-C and
/// Ctrl-Break (the console closing sets it too, but Windows ends the process soon after).
/// The caller finishes its current step, then undoes.
pub fn on_interrupt(flag: Arc<AtomicBool>) -> io::Result<()> {
    #[cfg(unix)]
    {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        for sig in [SIGINT, SIGTERM, SIGHUP] {
            signal_hook::flag::register(sig, flag.clone())?;
        }
        Ok(())
    }
    #[cfg(windows)]
    {
        windows::on_console_event(flag)
    }
}

/// A running child whose signals are being looked after.
pub struct Supervised {
    child: std::process::Child,
    #[cfg(unix)]
    forward: unix::Forwarder,
}

impl std::fmt::Debug for Supervised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervised")
            .field("pid", &self.child.id())
            .finish_non_exhaustive()
    }
}

/// Start `cmd`, taking over the termination signals (see the module comment).
pub fn spawn(cmd: &mut Command) -> io::Result<Supervised> {
    #[cfg(unix)]
    {
        // Handlers first: a signal arriving right after the spawn must not end tapcred.
        let pending = unix::Forwarder::register()?;
        let child = cmd.spawn()?;
        let forward = pending.start(&child)?;
        Ok(Supervised { child, forward })
    }
    #[cfg(windows)]
    {
        // The handler is this process's own (only an "ignore" flag would be inherited).
        windows::ignore_console_events();
        let child = cmd.spawn()?;
        Ok(Supervised { child })
    }
}

impl Supervised {
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Block until the child exits (no polling); its exit code.
    pub fn wait(mut self) -> io::Result<i32> {
        #[cfg(unix)]
        {
            let status = self.forward.wait(&mut self.child)?;
            Ok(exit_code_of(status))
        }
        #[cfg(windows)]
        {
            Ok(exit_code_of(self.child.wait()?))
        }
    }
}

/// Run `cmd` in place of this process, as the `tapcred` launcher hands a call to
/// `tapcred-full`. Unix: `exec` (argv[0] set to `arg0`), so the process id, signal
/// dispositions, terminal and exit code are the new program's. Windows has no `exec`: `cmd`
/// runs as a [`spawn`]ed child with this console and handles, and this process exits with
/// its code. Returns only the error of a program that could not be started.
pub fn replace_with(cmd: &mut Command, arg0: Option<std::ffi::OsString>) -> io::Error {
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        if let Some(a) = arg0 {
            cmd.arg0(a);
        }
        cmd.exec()
    }
    #[cfg(windows)]
    {
        let _ = arg0; // a Windows child's argv[0] is its own path
        let child = match spawn(cmd) {
            Ok(c) => c,
            Err(e) => return e,
        };
        // Held until this process exits; if it is killed first, the job closes with it.
        let _job = windows::end_with_this_process(&child.child);
        match child.wait() {
            Ok(code) => std::process::exit(code),
            Err(e) => e,
        }
    }
}

/// The child's exit code; a child killed by signal N gives 128 + N, as shells report it.
pub fn exit_code_of(status: ExitStatus) -> i32 {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
    }
    #[cfg(windows)]
    {
        // Windows always has a code (Ctrl-C termination is STATUS_CONTROL_C_EXIT).
        status.code().unwrap_or(1)
    }
}

#[cfg(unix)]
mod unix {
    use std::io;
    use std::process::{Child, ExitStatus};
    use std::sync::{Arc, Mutex};
    use std::thread::JoinHandle;

    use rustix::process::{Pid, Signal, WaitId, WaitIdOptions, kill_process, waitid};
    use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
    use signal_hook::iterator::SignalsInfo;
    use signal_hook::iterator::exfiltrator::WithOrigin;
    use signal_hook::iterator::exfiltrator::origin::Origin;
    use signal_hook::low_level::siginfo::Cause;

    const TAKEN_OVER: [i32; 4] = [SIGINT, SIGTERM, SIGHUP, SIGQUIT];

    /// Handlers registered, child not started yet.
    pub struct Registered {
        signals: SignalsInfo<WithOrigin>,
    }

    /// Forwarding to a running child.
    pub struct Forwarder {
        pid: Pid,
        /// Set (under the lock) once the child has exited: nothing is sent after that.
        exited: Arc<Mutex<bool>>,
        handle: signal_hook::iterator::Handle,
        thread: Option<JoinHandle<()>>,
    }

    impl Forwarder {
        pub fn register() -> io::Result<Registered> {
            Ok(Registered {
                signals: SignalsInfo::<WithOrigin>::new(TAKEN_OVER)?,
            })
        }

        /// Wait for the child to exit, stop forwarding, reap it.
        pub fn wait(&mut self, child: &mut Child) -> io::Result<ExitStatus> {
            loop {
                match waitid(
                    WaitId::Pid(self.pid),
                    WaitIdOptions::EXITED | WaitIdOptions::NOWAIT,
                ) {
                    Ok(_) => break,
                    Err(rustix::io::Errno::INTR) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            *self.exited.lock().unwrap_or_else(|p| p.into_inner()) = true;
            self.stop();
            child.wait()
        }

        fn stop(&mut self) {
            self.handle.close();
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    impl Drop for Forwarder {
        fn drop(&mut self) {
            self.stop();
        }
    }

    impl Registered {
        pub fn start(mut self, child: &Child) -> io::Result<Forwarder> {
            let pid = Pid::from_child(child);
            let exited = Arc::new(Mutex::new(false));
            let handle = self.signals.handle();
            let thread = {
                let exited = exited.clone();
                std::thread::Builder::new()
                    .name("tapcred-signals".into())
                    .spawn(move || {
                        for origin in self.signals.forever() {
                            if !should_forward(&origin, pid) {
                                continue;
                            }
                            let Some(sig) = Signal::from_named_raw(origin.signal) else {
                                continue;
                            };
                            let done = exited.lock().unwrap_or_else(|p| p.into_inner());
                            if !*done {
                                tracing::debug!(signal = origin.signal, "forwarding to the child");
                                let _ = kill_process(pid, sig);
                            }
                        }
                    })?
            };
            Ok(Forwarder {
                pid,
                exited,
                handle,
                thread: Some(thread),
            })
        }
    }

    /// Forward what another process sent; not what the terminal sent to the whole
    /// foreground group (the child has it already), nor what the child sent itself.
    fn should_forward(o: &Origin, child: Pid) -> bool {
        let from_child = o
            .process
            .as_ref()
            .is_some_and(|p| p.pid == child.as_raw_nonzero().get());
        match o.cause {
            Cause::Kernel => false,
            Cause::Sent(_) => !from_child,
            // Systems that do not say (macOS): forward unless it is known to be the child.
            _ => !from_child,
        }
    }
}

#[cfg(windows)]
mod windows {
    use std::os::windows::io::AsRawHandle;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Put `child` (and what it starts later) in a job that kills them when its last handle
    /// closes: when this process ends, however it ends. An IDE that gives up on
    /// `credential_process` kills `tapcred.exe` only, which would otherwise leave
    /// `tapcred-full.exe` waiting for a touch or STS nobody will use, holding the key. `None`
    /// (logged) when the job cannot be made: the child then simply outlives a kill, as before.
    pub fn end_with_this_process(child: &std::process::Child) -> Option<win32job::Job> {
        let mut limits = win32job::ExtendedLimitInfo::new();
        limits.limit_kill_on_job_close();
        let made = win32job::Job::create_with_limit_info(&limits).and_then(|job| {
            job.assign_process(child.as_raw_handle() as isize)?;
            Ok(job)
        });
        made.map_err(|e| tracing::debug!("no kill-on-close job for the child: {e}"))
            .ok()
    }

    /// Keep tapcred alive through Ctrl-C, Ctrl-Break and the console closing while the child
    /// (which got the same event) decides what to do. A handler, not "ignore": the ignore
    /// flag would be inherited by later children.
    pub fn ignore_console_events() {
        // Only one handler per process; a second call (serve then exec in one process never
        // happens, tests may) or one installed by `on_interrupt` also keeps tapcred alive,
        // which is what is wanted.
        let _ = ctrlc::try_set_handler(|| {});
    }

    /// Every console control event sets `flag` and is reported handled: Ctrl-C and
    /// Ctrl-Break no longer end tapcred (the console closing still does, a few seconds later:
    /// Windows allows no more).
    pub fn on_console_event(flag: Arc<AtomicBool>) -> std::io::Result<()> {
        ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
            .map_err(|e| std::io::Error::other(e.to_string()))
    }
}
