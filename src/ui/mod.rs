//! Every message to a person goes through [`Ui`]. Device and engine code never prints.
//!
//! The real implementation ([`TerminalUi`]) writes to the controlling terminal (`/dev/tty`)
//! whatever stdout/stderr are (under `credential_process` the SDK captures both), falls back
//! to a desktop notification when there is no terminal, and otherwise to stderr. It never
//! writes to stdout.

use std::sync::Mutex;
use std::time::SystemTime;

use secrecy::SecretString;

use crate::error::Result;

pub trait Ui: Send + Sync {
    /// A short line of progress or confirmation for the person.
    fn info(&self, msg: &str);
    /// Something the person should know (non-fatal).
    fn warn(&self, msg: &str);
    /// The device is waiting for a touch now. Called right before the blocking device call;
    /// [`Ui::touch_done`] is called when it returns (either way).
    fn touch_wait(&self, msg: &str);
    fn touch_done(&self, ok: bool);
    /// Block until `deadline`, showing `what` with a countdown of the seconds left.
    fn wait_until(&self, what: &str, deadline: SystemTime);
    /// Ask for a secret without echo. `Ok(None)` when there is no terminal to ask on.
    fn ask_secret(&self, prompt: &str) -> Result<Option<SecretString>>;
    /// Ask for a visible line (a typed MFA code). `Ok(None)` when there is no terminal.
    fn ask_line(&self, prompt: &str) -> Result<Option<String>>;
    /// Whether a person can be asked something (a controlling terminal exists).
    fn interactive(&self) -> bool;
}

/// A [`Ui`] with no person behind it, for work that must neither talk nor block: the warm
/// path (the full program gives an unusable cache's warning, once) and `doctor` (which
/// reports the warnings among its findings). It shows nothing, asks nothing (not
/// interactive), returns at once from [`Ui::wait_until`], and keeps the warnings in order.
#[derive(Default)]
pub struct Headless {
    warnings: Mutex<Vec<String>>,
}

impl Headless {
    pub fn new() -> Self {
        Self::default()
    }

    /// The warnings given so far, in order.
    pub fn warnings(&self) -> Vec<String> {
        self.warnings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Ui for Headless {
    fn info(&self, _msg: &str) {}
    fn warn(&self, msg: &str) {
        self.warnings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(msg.to_owned());
    }
    fn touch_wait(&self, _msg: &str) {}
    fn touch_done(&self, _ok: bool) {}
    fn wait_until(&self, _what: &str, _deadline: SystemTime) {}
    fn ask_secret(&self, _prompt: &str) -> Result<Option<SecretString>> {
        Ok(None)
    }
    fn ask_line(&self, _prompt: &str) -> Result<Option<String>> {
        Ok(None)
    }
    fn interactive(&self) -> bool {
        false
    }
}

#[cfg(any(test, feature = "testing"))]
mod recording;
#[cfg(any(test, feature = "testing"))]
pub use recording::{RecordingUi, UiEvent};

mod terminal;
pub use terminal::TerminalUi;

#[cfg(test)]
mod tests {
    use super::*;

    /// Nothing asked, nothing waited for; the warnings kept in order for a report.
    #[test]
    fn headless_asks_nothing_waits_for_nothing_and_keeps_warnings() {
        let ui = Headless::new();
        ui.info("progress");
        ui.warn("first");
        ui.touch_wait("touch");
        ui.touch_done(true);
        let start = std::time::Instant::now();
        ui.wait_until(
            "later",
            SystemTime::now() + std::time::Duration::from_secs(30),
        );
        assert!(start.elapsed() < std::time::Duration::from_secs(1));
        assert!(ui.ask_secret("pin").unwrap().is_none());
        assert!(ui.ask_line("code").unwrap().is_none());
        assert!(!ui.interactive());
        ui.warn("second");
        assert_eq!(ui.warnings(), ["first", "second"]);
    }
}
