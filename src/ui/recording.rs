//! [`RecordingUi`], the tests' [`Ui`]: only in test builds (the `testing` feature, which the
//! crate's own dev-dependency turns on for `tests/`).

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use secrecy::SecretString;

use super::Ui;
use crate::error::Result;

/// What a [`RecordingUi`] saw, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UiEvent {
    Info(String),
    Warn(String),
    TouchWait(String),
    TouchDone(bool),
    Wait { what: String, seconds: u64 },
    AskSecret(String),
    AskLine(String),
}

/// A [`Ui`] for tests: records every event, answers prompts from queues,
/// and sleeps for real in `wait_until` (so timing logic is exercised) unless `no_sleep`.
#[derive(Default)]
pub struct RecordingUi {
    pub events: Mutex<Vec<UiEvent>>,
    pub secrets: Mutex<Vec<String>>,
    pub lines: Mutex<Vec<String>>,
    pub no_sleep: bool,
    /// Called on every `touch_wait` (tests use it to press the virtual button).
    pub on_touch: Option<Box<dyn Fn() + Send + Sync>>,
}

impl RecordingUi {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn events(&self) -> Vec<UiEvent> {
        self.events.lock().unwrap().clone()
    }
    fn push(&self, e: UiEvent) {
        self.events.lock().unwrap().push(e);
    }
}

impl Ui for RecordingUi {
    fn info(&self, msg: &str) {
        self.push(UiEvent::Info(msg.to_owned()));
    }
    fn warn(&self, msg: &str) {
        self.push(UiEvent::Warn(msg.to_owned()));
    }
    fn touch_wait(&self, msg: &str) {
        self.push(UiEvent::TouchWait(msg.to_owned()));
        if let Some(f) = &self.on_touch {
            f();
        }
    }
    fn touch_done(&self, ok: bool) {
        self.push(UiEvent::TouchDone(ok));
    }
    fn wait_until(&self, what: &str, deadline: SystemTime) {
        let left = deadline
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        self.push(UiEvent::Wait {
            what: what.to_owned(),
            seconds: left.as_secs_f64().ceil() as u64,
        });
        if !self.no_sleep {
            std::thread::sleep(left);
        }
    }
    fn ask_secret(&self, prompt: &str) -> Result<Option<SecretString>> {
        self.push(UiEvent::AskSecret(prompt.to_owned()));
        let mut q = self.secrets.lock().unwrap();
        Ok(if q.is_empty() {
            None
        } else {
            Some(SecretString::from(q.remove(0)))
        })
    }
    fn ask_line(&self, prompt: &str) -> Result<Option<String>> {
        self.push(UiEvent::AskLine(prompt.to_owned()));
        let mut q = self.lines.lock().unwrap();
        Ok(if q.is_empty() {
            None
        } else {
            Some(q.remove(0))
        })
    }
    fn interactive(&self) -> bool {
        !self.secrets.lock().unwrap().is_empty() || !self.lines.lock().unwrap().is_empty()
    }
}
