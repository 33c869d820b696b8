//! The real [`Ui`]: the controlling terminal first, then a desktop notification, then stderr.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use secrecy::SecretString;

use crate::error::{Error, Result};
use crate::ui::Ui;

pub struct TerminalUi {
    tty: Option<Mutex<File>>,
    /// Desktop notifications (notify-send over the session bus) when there is no terminal.
    notify: bool,
    /// Whether a waiting line is open (so `touch_done` can clear it).
    pending: Mutex<bool>,
}

impl TerminalUi {
    /// Opens `/dev/tty` if this process has a controlling terminal.
    pub fn new() -> Self {
        let tty = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/tty")
            .ok()
            .map(Mutex::new);
        let notify = tty.is_none()
            && cfg!(feature = "notify")
            && std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some()
            && which("notify-send");
        TerminalUi {
            tty,
            notify,
            pending: Mutex::new(false),
        }
    }

    /// A UI that never touches the terminal (stderr only).
    pub fn stderr_only() -> Self {
        TerminalUi {
            tty: None,
            notify: false,
            pending: Mutex::new(false),
        }
    }

    fn write(&self, text: &str) {
        match &self.tty {
            Some(tty) => {
                let mut t = tty.lock().unwrap_or_else(|e| e.into_inner());
                let _ = t.write_all(text.as_bytes());
                let _ = t.flush();
            }
            None => {
                // stderr: no cursor tricks, whole lines only.
                let clean = text.trim_start_matches('\r').replace("\x1b[2K", "");
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
            let _ = std::process::Command::new("notify-send")
                .args(["--app-name=tapcred", "--expire-time=15000", "tapcred", msg])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn();
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
        self.write(&format!("tapcred: {msg}\n"));
    }
    fn warn(&self, msg: &str) {
        self.write(&format!("tapcred: warning: {msg}\n"));
    }
    fn touch_wait(&self, msg: &str) {
        *self.pending.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.notify_desktop(msg);
        if self.tty.is_some() {
            self.write(&format!("\r\x1b[2Ktapcred: {msg} "));
        } else {
            self.write(&format!("tapcred: {msg}\n"));
        }
    }
    fn touch_done(&self, ok: bool) {
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
        rpassword::prompt_password(format!("tapcred: {prompt}"))
            .map(|s| Some(SecretString::from(s)))
            .map_err(|e| Error::io(format!("cannot read from the terminal: {e}")))
    }
    fn ask_line(&self, prompt: &str) -> Result<Option<String>> {
        let Some(tty) = &self.tty else {
            return Ok(None);
        };
        self.write(&format!("tapcred: {prompt}"));
        let file = tty
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .try_clone()
            .map_err(|e| Error::io(format!("cannot read from the terminal: {e}")))?;
        let mut line = String::new();
        BufReader::new(file)
            .read_line(&mut line)
            .map_err(|e| Error::io(format!("cannot read from the terminal: {e}")))?;
        Ok(Some(line.trim().to_owned()))
    }
    fn interactive(&self) -> bool {
        self.tty.is_some()
    }
}

fn which(cmd: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(cmd).is_file()))
        .unwrap_or(false)
}
