//! The real [`Ui`]: the controlling terminal first, then a desktop notification (and for a
//! typed code a dialog), then stderr. What differs per OS is in [`crate::platform`].
//! Every message is escaped ([`crate::text::escape`]): they quote names and answers from
//! outside.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use secrecy::SecretString;

use crate::error::{Error, Result};
use crate::platform::{desktop, terminal};
use crate::text::escape;
use crate::ui::Ui;

/// Start of a line that replaces the current one (turned into the platform's way of
/// clearing a line on the terminal, dropped on stderr).
const CLEAR: &str = "\r\x1b[2K";

struct Tty {
    input: File,
    output: File,
    clear_line: &'static str,
}

pub struct TerminalUi {
    tty: Option<Mutex<Tty>>,
    /// Desktop notifications when there is no terminal ([`desktop::notify`]).
    notify: bool,
    /// Whether a waiting line is open (so `touch_done` can clear it).
    pending: Mutex<bool>,
    /// The notification shown for the current touch wait (closed when it ends).
    shown: Mutex<Option<desktop::Shown>>,
}

impl TerminalUi {
    /// Opens the controlling terminal (`/dev/tty`; `CONIN$`/`CONOUT$`) if there is one.
    pub fn new() -> Self {
        let tty = terminal::open().map(|t| {
            Mutex::new(Tty {
                input: t.input,
                output: t.output,
                clear_line: t.clear_line,
            })
        });
        let notify = tty.is_none() && desktop::can_notify();
        TerminalUi {
            tty,
            notify,
            pending: Mutex::new(false),
            shown: Mutex::new(None),
        }
    }

    /// A UI that never touches the terminal (stderr only).
    pub fn stderr_only() -> Self {
        TerminalUi {
            tty: None,
            notify: false,
            pending: Mutex::new(false),
            shown: Mutex::new(None),
        }
    }

    fn write(&self, text: &str) {
        match &self.tty {
            Some(tty) => {
                let mut t = tty.lock().unwrap_or_else(|e| e.into_inner());
                let text = text.replace(CLEAR, t.clear_line);
                let _ = t.output.write_all(text.as_bytes());
                let _ = t.output.flush();
            }
            None => {
                // stderr: no cursor tricks, whole lines only.
                let clean = text.replace(CLEAR, "");
                let clean = clean.trim_start_matches('\r');
                if !clean.is_empty() {
                    let mut e = std::io::stderr().lock();
                    let _ = e.write_all(clean.as_bytes());
                    if !clean.ends_with('\n') {
                        let _ = e.write_all(b"\n");
                    }
                }
            }
        }
    }

    fn notify_desktop(&self, msg: &str) {
        if self.notify {
            let shown = desktop::notify(msg);
            *self.shown.lock().unwrap_or_else(|e| e.into_inner()) = Some(shown);
        }
    }
}

impl Default for TerminalUi {
    fn default() -> Self {
        Self::new()
    }
}

impl Ui for TerminalUi {
    fn info(&self, msg: &str) {
        self.write(&format!("tapcred: {}\n", escape(msg)));
    }
    fn warn(&self, msg: &str) {
        self.write(&format!("tapcred: warning: {}\n", escape(msg)));
    }
    fn touch_wait(&self, msg: &str) {
        let msg = &*escape(msg);
        *self.pending.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.notify_desktop(msg);
        if self.tty.is_some() {
            self.write(&format!("\r\x1b[2Ktapcred: {msg} "));
        } else {
            self.write(&format!("tapcred: {msg}\n"));
        }
    }
    fn touch_done(&self, ok: bool) {
        if let Some(shown) = self.shown.lock().unwrap_or_else(|e| e.into_inner()).take() {
            shown.close();
        }
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if *p && self.tty.is_some() {
            self.write(if ok {
                "\r\x1b[2Ktapcred: touch received\n"
            } else {
                "\r\x1b[2K"
            });
        }
        *p = false;
    }
    fn wait_until(&self, what: &str, deadline: SystemTime) {
        let what = &*escape(what);
        let left = |now: SystemTime| deadline.duration_since(now).unwrap_or(Duration::ZERO);
        let first = left(SystemTime::now());
        if first.is_zero() {
            return;
        }
        if self.tty.is_none() {
            self.write(&format!(
                "tapcred: {what} ({} s)\n",
                first.as_secs_f64().ceil() as u64
            ));
            self.notify_desktop(what);
            std::thread::sleep(first);
            return;
        }
        loop {
            let l = left(SystemTime::now());
            if l.is_zero() {
                break;
            }
            self.write(&format!(
                "\r\x1b[2Ktapcred: {what} ({} s)",
                l.as_secs_f64().ceil() as u64
            ));
            let frac = Duration::from_nanos((l.as_nanos() % 1_000_000_000) as u64);
            std::thread::sleep(if frac.is_zero() {
                Duration::from_secs(1)
            } else {
                frac
            });
        }
        self.write("\r\x1b[2K");
    }
    fn ask_secret(&self, prompt: &str) -> Result<Option<SecretString>> {
        if self.tty.is_none() {
            return Ok(None);
        }
        rpassword::prompt_password(format!("tapcred: {}", escape(prompt)))
            .map(|s| Some(SecretString::from(s)))
            .map_err(|e| Error::io(format!("cannot read from the terminal: {e}")).with_source(e))
    }
    fn ask_line(&self, prompt: &str) -> Result<Option<String>> {
        let prompt = &*escape(prompt);
        let Some(tty) = &self.tty else {
            // No console (a GUI parent): a small dialog where the platform has one, never
            // a silent wait.
            let question = prompt.trim_end().trim_end_matches(':');
            let timeout = desktop::dialog_timeout()?;
            return desktop::ask_line(question, timeout).map_err(Error::token);
        };
        self.write(&format!("tapcred: {prompt}"));
        let file = tty
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .input
            .try_clone()
            .map_err(|e| Error::io(format!("cannot read from the terminal: {e}")).with_source(e))?;
        let mut line = String::new();
        BufReader::new(file)
            .read_line(&mut line)
            .map_err(|e| Error::io(format!("cannot read from the terminal: {e}")).with_source(e))?;
        Ok(Some(line.trim().to_owned()))
    }
    fn interactive(&self) -> bool {
        self.tty.is_some()
    }
}
