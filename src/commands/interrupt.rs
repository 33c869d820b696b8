//! What stops a journalled change (enroll, rotate) so that its undo still runs: Ctrl-C (and
//! SIGTERM, SIGHUP) as a flag checked between steps, a panic as an error.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

/// Set when the person asks to stop (Ctrl-C, SIGTERM, SIGHUP): the current step finishes,
/// then the command undoes what it did (or keeps what it must, in its journal).
#[derive(Clone, Default)]
pub struct Interrupt(Arc<AtomicBool>);

impl Interrupt {
    pub fn new() -> Self {
        Self::default()
    }

    /// A flag set when the person asks the process to stop
    /// ([`crate::platform::process::on_interrupt`], installed here, for this command).
    pub fn install() -> Self {
        let i = Interrupt::new();
        if let Err(e) = crate::platform::process::on_interrupt(i.0.clone()) {
            tracing::warn!(error = %e, "cannot install the Ctrl-C handler");
        }
        i
    }

    pub fn raise(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Stop between steps when the person asked to.
    pub(crate) fn check(&self) -> Result<()> {
        if self.is_set() {
            Err(Error::usage("interrupted"))
        } else {
            Ok(())
        }
    }
}

/// Run `f`, turning a panic on this thread into an internal error (naming where it
/// happened, never its payload), so the undo still runs. tapcred's panic hook exits the
/// process; for the duration of `f` this thread's panics only record where they happened,
/// other threads' go to that hook.
pub(crate) fn catching_panics<T>(command: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    use std::panic::{self, AssertUnwindSafe};
    type Hook = dyn Fn(&panic::PanicHookInfo<'_>) + Send + Sync;
    let me = std::thread::current().id();
    let at: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let prev: Arc<Hook> = Arc::from(panic::take_hook());
    let for_others = prev.clone();
    let slot = at.clone();
    panic::set_hook(Box::new(move |info| {
        if std::thread::current().id() != me {
            return for_others(info);
        }
        let place = info
            .location()
            .map(|l| format!(" [at {}:{}]", l.file(), l.line()));
        if let Ok(mut g) = slot.lock() {
            *g = place;
        }
    }));
    let r = panic::catch_unwind(AssertUnwindSafe(f));
    drop(panic::take_hook());
    panic::set_hook(Box::new(move |info| prev(info)));
    r.unwrap_or_else(|_| {
        let at = at.lock().ok().and_then(|g| g.clone()).unwrap_or_default();
        Err(Error::internal(format!(
            "internal error during {command} (a bug in tapcred; details withheld because they could contain secrets){at}; please report it with the command you ran"
        )))
    })
}
