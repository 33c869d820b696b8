//! Shared support for the root crate's integration tests: a temporary HOME holding AWS files,
//! and the real `tapcred` binary run with a clean, explicit environment.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub mod enroll;
pub mod otp_keys;
pub mod rotate;

pub const TAPCRED: &str = env!("CARGO_BIN_EXE_tapcred");
/// The whole program, which the `tapcred` launcher runs in its place for all but a warm
/// `credential-process` (src/cli/launcher.rs).
pub const TAPCRED_FULL: &str = env!("CARGO_BIN_EXE_tapcred-full");

/// The design example files (fixtures/aws/design).
pub fn design_fixture(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/aws/design")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

pub struct Home {
    pub dir: tempfile::TempDir,
    /// Extra environment for every command.
    pub env: Vec<(String, String)>,
}

impl Home {
    pub fn empty() -> Home {
        let dir = tempfile::tempdir().unwrap();
        // Each HOME its own temporary folder: tapcred keeps its per-user record of used MFA
        // codes there, and tests running side by side against their own STS doubles must
        // not wait for each other's code windows.
        let tmp = dir.path().join("tmp");
        std::fs::create_dir(&tmp).unwrap();
        Home {
            env: vec![("TMPDIR".into(), tmp.display().to_string())],
            dir,
        }
    }

    /// HOME with ~/.aws/config and ~/.aws/credentials from the design example (fixtures/aws/design).
    pub fn design() -> Home {
        let h = Home::empty();
        h.write_config(&design_fixture("config"));
        h.write_credentials(&design_fixture("credentials"));
        h
    }

    /// [`Home::design`] sent to the STS double at `endpoint`, with the design MFA device's
    /// seed (`fixtures/sts-double/design.seed`) as the software seed.
    pub fn design_against(endpoint: &str) -> Home {
        let mut h = Home::design();
        h.set("AWS_ENDPOINT_URL_STS", endpoint).set(
            "TAPCRED_TOTP_SECRET",
            tapcred_testkit::sts_double::design::MFA_SEED_BASE32,
        );
        h
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn aws_dir(&self) -> PathBuf {
        let d = self.path().join(".aws");
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    pub fn config_path(&self) -> PathBuf {
        self.path().join(".aws/config")
    }

    pub fn credentials_path(&self) -> PathBuf {
        self.path().join(".aws/credentials")
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.path().join(".cache/tapcred")
    }

    /// The step ledger ("never reuse a code"): per user, in `$TMPDIR/tapcred-<uid>/steps`.
    pub fn ledger_dir(&self) -> PathBuf {
        let tmp = self
            .env
            .iter()
            .find(|(k, _)| k == "TMPDIR")
            .map(|(_, v)| PathBuf::from(v))
            .unwrap_or_else(std::env::temp_dir);
        tmp.join(format!("tapcred-{}", tapcred::platform::fs::user_tag()))
            .join("steps")
    }

    pub fn write_config(&self, text: &str) {
        std::fs::write(self.aws_dir().join("config"), text).unwrap();
    }

    pub fn write_credentials(&self, text: &str) {
        std::fs::write(self.aws_dir().join("credentials"), text).unwrap();
    }

    pub fn set(&mut self, k: &str, v: &str) -> &mut Self {
        self.env.retain(|(a, _)| a != k);
        self.env.push((k.to_owned(), v.to_owned()));
        self
    }

    /// `tapcred ARGS` with HOME set here and nothing inherited but PATH.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(TAPCRED);
        self.prepare(&mut c, args);
        c
    }

    /// `tapcred ARGS` in a new session (`setsid -w`): no controlling terminal, even when the
    /// test runner has one, so every message to a person goes to stderr.
    pub fn cmd_detached(&self, args: &[&str]) -> Command {
        let mut c = Command::new("setsid");
        c.arg("-w").arg(TAPCRED);
        self.prepare(&mut c, args);
        c
    }

    /// Append `args` and this HOME's clean environment to `c`.
    pub fn prepare(&self, c: &mut Command, args: &[&str]) {
        c.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.path())
            .env("XDG_CACHE_HOME", self.path().join(".cache"))
            .stdin(Stdio::null());
        for (k, v) in &self.env {
            c.env(k, v);
        }
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.cmd(args).output().expect("run tapcred"))
    }

    /// Bytes of every file under HOME, to prove a command wrote nothing.
    pub fn snapshot(&self) -> Vec<(PathBuf, Vec<u8>)> {
        fn walk(d: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
            if let Ok(rd) = std::fs::read_dir(d) {
                for e in rd.flatten() {
                    let p = e.path();
                    if p.is_dir() {
                        walk(&p, out);
                    } else {
                        out.push((p.clone(), std::fs::read(&p).unwrap_or_default()));
                    }
                }
            }
        }
        let mut v = Vec::new();
        walk(self.path(), &mut v);
        v.sort();
        v
    }
}

/// The repository's documentation pages: README.md, then every `docs/*.md` in name order.
pub fn doc_pages() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut docs: Vec<_> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    let mut pages = vec![root.join("README.md")];
    pages.extend(docs);
    pages
}

/// Every file under `dir`, recursively (directories themselves not listed).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                v.extend(files_under(&p));
            } else {
                v.push(p);
            }
        }
    }
    v
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    pub fn ok(&self) -> &Self {
        assert_eq!(
            self.code, 0,
            "expected success\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {:?}", self.stdout))
    }

    /// The failure contract: exit `code`, nothing on stdout, exactly one stderr line
    /// `tapcred: error: …` containing every `needle`.
    pub fn fails_with(&self, code: i32, needles: &[&str]) -> &Self {
        assert_eq!(
            self.code, code,
            "exit code\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        assert!(
            self.stdout.is_empty(),
            "stdout must stay empty on error: {:?}",
            self.stdout
        );
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert_eq!(
            lines.len(),
            1,
            "one clear line expected, got: {:?}",
            self.stderr
        );
        assert!(lines[0].starts_with("tapcred: error: "), "{:?}", lines[0]);
        for n in needles {
            assert!(lines[0].contains(n), "{:?} should mention {n:?}", lines[0]);
        }
        self
    }
}

/// RFC 6238 TOTP with HMAC-SHA-1, written independently of tapcred's code.
pub fn rfc_totp(seed: &[u8], at: u64, period: u64, digits: u32) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(seed).unwrap();
    mac.update(&(at / period).to_be_bytes());
    let h = mac.finalize().into_bytes();
    let off = (h[19] & 0x0f) as usize;
    let v = u32::from_be_bytes([h[off], h[off + 1], h[off + 2], h[off + 3]]) & 0x7fff_ffff;
    format!("{:0w$}", v % 10u32.pow(digits), w = digits as usize)
}

/// The AWS virtual-MFA flavour: 6 digits, 30 s.
pub fn totp_sha1(seed: &[u8], unix: u64) -> String {
    rfc_totp(seed, unix, 30, 6)
}

/// Run `cmd` with the test-build hook stalling it at `point` (`KIND:STEP`, as
/// `TAPCRED_TEST_HOOK=stall:POINT` names it), wait until it says it is there (150 s at most),
/// SIGKILL it, and return what it printed on stderr. Panics if it never gets there.
pub fn kill_at_hook(mut cmd: Command, point: &str) -> String {
    use std::io::{BufRead, BufReader};
    use std::sync::mpsc;
    use std::time::Duration;
    let mut child = cmd
        .env("TAPCRED_TEST_HOOK", format!("stall:{point}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tapcred");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line.clone());
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let wanted = format!("stalled at {point}");
    loop {
        match rx.recv_timeout(Duration::from_secs(150)) {
            Ok(line) if line.contains(&wanted) => break,
            Ok(_) => {}
            Err(e) => {
                let _ = child.kill();
                panic!("never reached {point} ({e}): {}", reader.join().unwrap());
            }
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    reader.join().unwrap()
}
