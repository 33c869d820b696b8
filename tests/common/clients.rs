//! Support for the real-client tests (`tests/clients_*.rs`): a temporary HOME whose AWS
//! config has a `credential_process` profile running tapcred, a clean environment for the
//! client (nothing inherited from the outer shell: no real AWS variables), the virtual
//! YubiKey holding the STS double's seed, and the checks on what the double saw.
//!
//! Included with `#[path = "common/clients.rs"] mod clients;` next to `mod common;`.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tapcred_testkit::sts_double::{StsDouble, design};
use tapcred_testkit::virtual_yubikey::{Account, VirtualYubiKey, VykConfig};

use crate::common::{Home, TAPCRED, totp_sha1};

/// The AWS CLI v2 from Debian (a pip-installed v1 may come first on PATH: never use PATH).
pub const AWS_CLI: &str = "/usr/bin/aws";
/// PATH for every client: system directories only (no pyenv shims, no ~/.local).
pub const CLEAN_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The assumed-role ARN prefix of the design profile `mfa` (role toolkit-role).
pub const TOOLKIT_ROLE_SESSION: &str = "arn:aws:sts::111111111111:assumed-role/toolkit-role/";
/// The name AWS's own "Add MFA device" flow gives the OATH account.
pub const AWS_OATH_LABEL: &str = "Amazon Web Services:toolkit-user@111111111111";

pub use tapcred_testkit::ci::require;

/// `tmux` on the system PATH.
pub fn tmux_path() -> Option<PathBuf> {
    CLEAN_PATH
        .split(':')
        .map(|d| Path::new(d).join("tmux"))
        .find(|p| p.is_file())
}

/// `$TAPCRED_VENV/bin/python` (default /opt/tapcred-venv).
pub fn venv_python() -> PathBuf {
    let venv = std::env::var("TAPCRED_VENV").unwrap_or_else(|_| "/opt/tapcred-venv".into());
    Path::new(&venv).join("bin/python")
}

/// The double's demo seed, decoded.
pub fn seed() -> Vec<u8> {
    data_encoding::BASE32_NOPAD
        .decode(design::MFA_SEED_BASE32.as_bytes())
        .unwrap()
}

/// The double accepted exactly one code, the seed's TOTP for the step it matched, and saw
/// no other code.
pub fn one_valid_code(d: &StsDouble) {
    let events = d.token_code_events();
    assert_eq!(events.len(), 1, "exactly one code expected: {events:?}");
    let e = &events[0];
    let step = e
        .matched_step
        .unwrap_or_else(|| panic!("the code was rejected: {e:?}"));
    assert_eq!(e.serial, design::MFA_SERIAL);
    assert_eq!(e.code, totp_sha1(&seed(), step * 30), "{e:?}");
    assert!(
        step.abs_diff(e.current_step) <= 1,
        "code of step {step} accepted at step {}",
        e.current_step
    );
}

/// A virtual YubiKey 5 holding the double's seed under `account`.
pub fn card(serial: u32, account: &str, touch: bool, touch_timeout: Duration) -> VirtualYubiKey {
    VirtualYubiKey::new(
        VykConfig::new()
            .serial(serial)
            .touch_timeout(touch_timeout)
            .account(
                Account::totp_base32(account, design::MFA_SEED_BASE32)
                    .expect("design seed is base32")
                    .touch(touch),
            ),
    )
}

/// How tapcred gets its TOTP code in a client test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// `tapcred_token = oath` through the real pcscd; `credential_process` is tapcred itself.
    Oath,
    /// `tapcred_token = software`; `credential_process` is a wrapper script in HOME that
    /// exports the seed and execs tapcred (the seed never appears in an argv).
    Software,
}

/// A temporary HOME (with its own XDG_CACHE_HOME: no test shares tapcred's cache) whose
/// `~/.aws/config` is the design example (fixtures/aws/design) plus
/// `[profile work] credential_process = … credential-process --profile mfa`.
pub struct ClientHome {
    pub home: Home,
    pub endpoint: String,
    pub source: Source,
}

impl ClientHome {
    pub fn new(d: &StsDouble, source: Source) -> ClientHome {
        let home = Home::design();
        let endpoint = d.endpoint();
        let token = match source {
            Source::Oath => "oath",
            Source::Software => "software",
        };
        let design_config = crate::common::design_fixture("config");
        assert!(design_config.contains("[profile mfa]\n"));
        let mut config = design_config.replace(
            "[profile mfa]\n",
            &format!("[profile mfa]\ntapcred_token = {token}\n"),
        );
        let process = match source {
            Source::Oath => format!("{TAPCRED} credential-process --profile mfa"),
            Source::Software => {
                let wrapper = home.path().join("bin/tapcred-software");
                std::fs::create_dir_all(wrapper.parent().unwrap()).unwrap();
                std::fs::write(
                    &wrapper,
                    format!(
                        "#!/bin/sh\n# Headless CI recipe: the seed comes from the environment.\nexport TAPCRED_TOTP_SECRET='{}'\nexport AWS_ENDPOINT_URL_STS='{endpoint}'\nexec '{TAPCRED}' \"$@\"\n",
                        design::MFA_SEED_BASE32
                    ),
                )
                .unwrap();
                std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o700)).unwrap();
                format!("{} credential-process --profile mfa", wrapper.display())
            }
        };
        config.push_str(&format!(
            "\n# A client-facing profile: credentials come from tapcred.\n[profile work]\ncredential_process = {process}\nregion = us-east-1\n"
        ));
        home.write_config(&config);
        ClientHome {
            home,
            endpoint,
            source,
        }
    }

    pub fn path(&self) -> &Path {
        self.home.path()
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path().join(name)
    }

    /// The whole environment of a client process: HOME, XDG_CACHE_HOME, the AWS files, the
    /// STS endpoint for tapcred, IMDS off, and a system PATH. Nothing else.
    pub fn env(&self) -> Vec<(String, String)> {
        let p = |s: &str| self.path().join(s).display().to_string();
        vec![
            ("PATH".into(), CLEAN_PATH.into()),
            ("HOME".into(), p("")),
            ("XDG_CACHE_HOME".into(), p(".cache")),
            ("AWS_CONFIG_FILE".into(), p(".aws/config")),
            ("AWS_SHARED_CREDENTIALS_FILE".into(), p(".aws/credentials")),
            ("AWS_ENDPOINT_URL_STS".into(), self.endpoint.clone()),
            ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
            ("LANG".into(), "C.UTF-8".into()),
            // tapcred's per-user record of used codes: one per test HOME (see Home::empty).
            ("TMPDIR".into(), p("tmp")),
        ]
    }

    /// A `Command` with exactly [`ClientHome::env`] (the outer environment is cleared).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
        let mut c = std::process::Command::new(program);
        c.env_clear()
            .envs(self.env())
            .current_dir(self.path())
            .stdin(std::process::Stdio::null());
        c
    }
}

/// A private tmux server (own socket in a temp dir, no user config, empty environment)
/// with one detached session of a fixed size. Killed on drop.
pub struct Tmux {
    tmux: PathBuf,
    dir: tempfile::TempDir,
    pub session: String,
}

impl Tmux {
    /// Start `sh SCRIPT` in a new detached session `cols`×`rows`. The script carries the
    /// environment (exports), so nothing but its path is in tmux's argv.
    pub fn start(script: &Path, cols: u16, rows: u16) -> Tmux {
        let tmux = tmux_path().expect("tmux");
        let dir = tempfile::Builder::new()
            .prefix("tapcred-tmux")
            .tempdir()
            .unwrap();
        let t = Tmux {
            tmux,
            dir,
            session: "client".into(),
        };
        let out = t
            .cmd()
            .args(["new-session", "-d", "-s", &t.session])
            .args(["-x", &cols.to_string(), "-y", &rows.to_string()])
            .arg("/bin/sh")
            .arg(script)
            .output()
            .expect("run tmux");
        assert!(
            out.status.success(),
            "tmux new-session: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        t
    }

    fn cmd(&self) -> std::process::Command {
        let mut c = std::process::Command::new(&self.tmux);
        c.env_clear()
            .env("PATH", CLEAN_PATH)
            .env("TERM", "xterm-256color")
            .env("LANG", "C.UTF-8")
            .arg("-S")
            .arg(self.dir.path().join("sock"))
            .arg("-f")
            .arg("/dev/null")
            .stdin(std::process::Stdio::null());
        c
    }

    /// The visible pane text (`capture-pane -p -J`: wrapped lines joined).
    pub fn capture(&self) -> String {
        let out = self
            .cmd()
            .args(["capture-pane", "-p", "-J", "-t", &self.session])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Type `text` literally into the pane, then Enter.
    pub fn type_line(&self, text: &str) {
        let out = self
            .cmd()
            .args(["send-keys", "-t", &self.session, "-l", text])
            .output()
            .expect("tmux send-keys");
        assert!(out.status.success(), "tmux send-keys failed");
        let out = self
            .cmd()
            .args(["send-keys", "-t", &self.session, "Enter"])
            .output()
            .expect("tmux send-keys");
        assert!(out.status.success(), "tmux send-keys failed");
    }

    /// Press one key on the pane (tmux key name, e.g. `C-c`).
    pub fn send_key(&self, key: &str) {
        let out = self
            .cmd()
            .args(["send-keys", "-t", &self.session, key])
            .output()
            .expect("tmux send-keys");
        assert!(out.status.success(), "tmux send-keys {key} failed");
    }

    /// Poll the pane until `pred` holds (returns the pane text) or `timeout` passes (None).
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let text = self.capture();
            if pred(&text) {
                return Some(text);
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").output();
    }
}

/// Single-quote for sh.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Wait until `path` exists (the pane script writes it last), up to `timeout`.
pub fn wait_file(path: &Path, timeout: Duration) -> Option<String> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            return Some(text);
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
