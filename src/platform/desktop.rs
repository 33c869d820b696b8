//! Reaching a person who has no console: Visual Studio, the AWS Toolkits and other GUI
//! programs run `credential_process` without one. Every route here is a short-lived helper
//! program started without a shell; the message travels as an argument or an environment
//! variable, never spliced into script text.
//!
//! | | touch notification | typed MFA code |
//! |---|---|---|
//! | Linux | `notify-send` (needs a session bus; the `notify` feature) | none: a clear error |
//! | macOS | `osascript` `display notification` | `osascript` `display dialog` (gives up after the dialog timeout) |
//! | Windows | PowerShell: a tray balloon (shown as a toast on Windows 10/11), killed when the touch arrives | PowerShell: a Visual Basic `InputBox`, killed after the dialog timeout |
//!
//! Windows: PowerShell's `System.Windows.Forms` and `Microsoft.VisualBasic` are part of
//! every Windows 10/11 install; a toast through `Windows.UI.Notifications` would need an
//! app identity registered by an installer, and `CredUIPromptForCredentialsW` needs
//! `unsafe` calls, which tapcred forbids. The helpers are started with `CREATE_NO_WINDOW`
//! so no console window flashes up.
//!
//! A helper gets only the variables its platform needs to run and show something
//! ([`imp::HELPER_ENV`]), never tapcred's environment: that may hold the seed, the OATH
//! password or AWS keys, and a helper (PowerShell above all) runs more code than tapcred's. A dialog is never waited on for longer than
//! [`dialog_timeout`]: the Toolkit for Visual Studio stalls on a `credential_process` that
//! waits silently, so a missing answer becomes an error, never a hang.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// How long a code dialog stays open unless [`DIALOG_TIMEOUT_ENV`] says otherwise.
pub const DIALOG_TIMEOUT: Duration = Duration::from_secs(120);
/// Whole seconds, [`DIALOG_TIMEOUT_RANGE`]: an IDE may give up sooner than 120 s, a test
/// needs a few seconds.
pub const DIALOG_TIMEOUT_ENV: &str = "TAPCRED_DIALOG_TIMEOUT";
const DIALOG_TIMEOUT_RANGE: std::ops::RangeInclusive<u64> = 1..=600;

/// How long a code dialog stays open: [`DIALOG_TIMEOUT_ENV`] when set, else
/// [`DIALOG_TIMEOUT`].
pub fn dialog_timeout() -> Result<Duration> {
    let Some(v) = std::env::var_os(DIALOG_TIMEOUT_ENV) else {
        return Ok(DIALOG_TIMEOUT);
    };
    let v = v.to_string_lossy();
    if v.trim().is_empty() {
        return Ok(DIALOG_TIMEOUT);
    }
    v.trim()
        .parse::<u64>()
        .ok()
        .filter(|s| DIALOG_TIMEOUT_RANGE.contains(s))
        .map(Duration::from_secs)
        .ok_or_else(|| {
            Error::config(format!(
                "{DIALOG_TIMEOUT_ENV} = \"{}\" is not a whole number of seconds between {} and {}; fix or unset it",
                crate::text::sanitize_foreign(&v, 40),
                DIALOG_TIMEOUT_RANGE.start(),
                DIALOG_TIMEOUT_RANGE.end()
            ))
        })
}

/// A notification on screen; closed (where the platform allows) by [`Shown::close`] or drop.
pub struct Shown(Option<Child>);

impl Shown {
    pub fn close(mut self) {
        self.close_now();
    }
    fn close_now(&mut self) {
        if let Some(mut c) = self.0.take() {
            if imp::CLOSE_BY_KILL {
                let _ = c.kill();
            }
            // Reap it (notify-send and osascript exit at once) without blocking for long.
            std::thread::spawn(move || {
                let _ = c.wait();
            });
        }
    }
}

impl Drop for Shown {
    fn drop(&mut self) {
        self.close_now();
    }
}

/// Whether a desktop notification can be shown from this process.
pub fn can_notify() -> bool {
    imp::can_notify()
}

/// `program` with only [`imp::HELPER_ENV`] of this process's environment (set before
/// anything the caller adds: clearing would remove that too).
fn helper(program: &str) -> Command {
    let mut c = Command::new(program);
    c.env_clear();
    for name in imp::HELPER_ENV {
        if let Some(v) = std::env::var_os(name) {
            c.env(name, v);
        }
    }
    c
}

/// Show `msg` as a desktop notification titled "tapcred" (nothing when impossible).
pub fn notify(msg: &str) -> Shown {
    let child = imp::notify_command(msg).and_then(|mut c| {
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c.spawn().ok()
    });
    Shown(child)
}

/// Ask for a line (an MFA code) in a small dialog. `Ok(None)` when this platform has no
/// dialog; `Err(reason)` (naming `prompt`) when the person cancelled or did not answer within `timeout`
/// (the dialog program is killed then).
pub fn ask_line(prompt: &str, timeout: Duration) -> std::result::Result<Option<String>, String> {
    let Some(mut cmd) = imp::dialog_command(prompt, timeout) else {
        return Ok(None);
    };
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot open a dialog to ask for the code ({e}) ({prompt})"))?;
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let mut out = String::new();
                if let Some(mut o) = child.stdout.take() {
                    let _ = std::io::Read::read_to_string(&mut o, &mut out);
                }
                let line = out.trim().to_owned();
                if !status.success() || line.is_empty() {
                    return Err(format!("the code dialog was cancelled ({prompt})"));
                }
                return Ok(Some(line));
            }
            Ok(None) if started.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "no code was typed within {} s ({prompt}); the dialog was closed ({DIALOG_TIMEOUT_ENV} sets how long it stays open)",
                    timeout.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => return Err(format!("the code dialog failed ({e}) ({prompt})")),
        }
    }
}

#[cfg(not(target_os = "macos"))]
fn on_path(exe: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(exe).is_file()))
        .unwrap_or(false)
}

#[cfg(all(unix, not(target_os = "macos")))]
mod imp {
    use super::*;

    pub const CLOSE_BY_KILL: bool = false;
    /// notify-send: finding programs, the session bus and the display.
    pub const HELPER_ENV: &[&str] = &[
        "PATH",
        "HOME",
        "LANG",
        "LC_ALL",
        "LC_MESSAGES",
        "DBUS_SESSION_BUS_ADDRESS",
        "XDG_RUNTIME_DIR",
        "DISPLAY",
        "WAYLAND_DISPLAY",
    ];

    pub fn can_notify() -> bool {
        cfg!(feature = "notify")
            && std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some()
            && on_path("notify-send")
    }

    pub fn notify_command(msg: &str) -> Option<Command> {
        if !can_notify() {
            return None;
        }
        let mut c = helper("notify-send");
        c.args(["--app-name=tapcred", "--expire-time=15000", "tapcred", msg]);
        Some(c)
    }

    pub fn dialog_command(_prompt: &str, _timeout: Duration) -> Option<Command> {
        None
    }
}

#[cfg(target_os = "macos")]
mod imp {
    use super::*;

    pub const CLOSE_BY_KILL: bool = false;
    const OSASCRIPT: &str = "/usr/bin/osascript";
    /// osascript: the user's session and language.
    pub const HELPER_ENV: &[&str] = &["PATH", "HOME", "USER", "LOGNAME", "TMPDIR", "LANG"];

    pub fn can_notify() -> bool {
        cfg!(feature = "notify") && std::path::Path::new(OSASCRIPT).is_file()
    }

    fn script(lines: &[&str], arg: &str) -> Command {
        let mut c = helper(OSASCRIPT);
        c.args(["-e", "on run argv"]);
        for l in lines {
            c.args(["-e", l]);
        }
        c.args(["-e", "end run", arg]);
        c
    }

    pub fn notify_command(msg: &str) -> Option<Command> {
        can_notify().then(|| {
            script(
                &["display notification (item 1 of argv) with title \"tapcred\""],
                msg,
            )
        })
    }

    pub fn dialog_command(prompt: &str, timeout: Duration) -> Option<Command> {
        std::path::Path::new(OSASCRIPT).is_file().then(|| {
            // Gives up a little after `timeout`, so that ask_line's kill, with its message,
            // comes first.
            let line = format!(
                "text returned of (display dialog (item 1 of argv) default answer \"\" with title \"tapcred\" giving up after {})",
                timeout.as_secs() + 5
            );
            script(&[line.as_str()], prompt)
        })
    }
}

#[cfg(windows)]
mod imp {
    use super::*;
    use std::os::windows::process::CommandExt;

    use windows_sys::Win32::System::Threading::CREATE_NO_WINDOW;

    /// The balloon's helper sleeps to keep its tray icon alive; killing it ends both.
    pub const CLOSE_BY_KILL: bool = true;
    const TEXT_VAR: &str = "TAPCRED_DESKTOP_TEXT";
    /// PowerShell and .NET: the system folders, the user's profile folders, module paths.
    pub const HELPER_ENV: &[&str] = &[
        "SystemRoot",
        "SystemDrive",
        "windir",
        "PATH",
        "PATHEXT",
        "ComSpec",
        "TEMP",
        "TMP",
        "USERNAME",
        "USERDOMAIN",
        "USERPROFILE",
        "HOMEDRIVE",
        "HOMEPATH",
        "APPDATA",
        "LOCALAPPDATA",
        "ProgramData",
        "ProgramFiles",
        "ProgramFiles(x86)",
        "ProgramW6432",
        "CommonProgramFiles",
        "PSModulePath",
        "PROCESSOR_ARCHITECTURE",
        "NUMBER_OF_PROCESSORS",
        "OS",
    ];

    pub fn can_notify() -> bool {
        cfg!(feature = "notify") && on_path("powershell.exe")
    }

    fn powershell(script: &str, text: &str) -> Command {
        let mut c = helper("powershell.exe");
        c.args([
            "-NoProfile",
            "-NonInteractive",
            "-ExecutionPolicy",
            "Bypass",
            "-Command",
            script,
        ])
        .env(TEXT_VAR, text)
        .creation_flags(CREATE_NO_WINDOW);
        c
    }

    pub fn notify_command(msg: &str) -> Option<Command> {
        can_notify().then(|| {
            powershell(
                "Add-Type -AssemblyName System.Windows.Forms; \
                 $n = New-Object System.Windows.Forms.NotifyIcon; \
                 $n.Icon = [System.Drawing.SystemIcons]::Information; \
                 $n.BalloonTipTitle = 'tapcred'; \
                 $n.BalloonTipText = $env:TAPCRED_DESKTOP_TEXT; \
                 $n.Visible = $true; $n.ShowBalloonTip(30000); \
                 Start-Sleep -Seconds 60; $n.Dispose()",
                msg,
            )
        })
    }

    pub fn dialog_command(prompt: &str, _timeout: Duration) -> Option<Command> {
        on_path("powershell.exe").then(|| {
            powershell(
                "Add-Type -AssemblyName Microsoft.VisualBasic; \
                 [Console]::Out.Write([Microsoft.VisualBasic.Interaction]::InputBox($env:TAPCRED_DESKTOP_TEXT, 'tapcred'))",
                prompt,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A helper's environment is the listed variables only, whatever this process holds.
    #[test]
    fn helpers_get_only_the_listed_variables() {
        let c = helper("some-helper");
        assert!(c.get_envs().count() <= imp::HELPER_ENV.len());
        for (k, v) in c.get_envs() {
            let k = k.to_string_lossy();
            assert!(v.is_some(), "{k} removed rather than left out");
            assert!(imp::HELPER_ENV.contains(&&*k), "{k} passed to a helper");
        }
        assert!(
            !imp::HELPER_ENV
                .iter()
                .any(|k| k.starts_with("TAPCRED_") || k.starts_with("AWS_")),
            "tapcred's or AWS variables listed for helpers"
        );
    }
}
