//! The Windows PC/SC path under Wine: the test-only `winscard.dll` (tests/testkit/winscard/)
//! beside a Windows program forwards every WinSCard call to `tapcred-winscard-bridge`'s code
//! on the real pcscd of the test stack, where the virtual YubiKey sits (Wine's own
//! `winscard.dll` is a stub). First the DLL's own Windows check program, then every PC/SC
//! flow of `tapcred.exe` compared with the Linux `tapcred` on the same key and STS double.
//!
//! Needs root (pcscd in a network namespace), wine64, x86_64-w64-mingw32-gcc and, for the
//! flows, the debug Windows build (`cargo build --target x86_64-pc-windows-gnu --bin tapcred
//! --bin tapcred-full`). Skips loudly without them, fails under CI.
#![cfg(target_os = "linux")]

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tapcred_testkit::ci;
use tapcred_testkit::pcsc_stack::{self, PcscStack};
use tapcred_testkit::virtual_yubikey::{Account, VirtualYubiKey, VykConfig};
use tapcred_testkit::winscard_bridge::{Bridge, PORT_ENV};

const WINE: &str = "/usr/lib/wine/wine64";
const WINESERVER: &str = "/usr/lib/wine/wineserver";
const MINGW_GCC: &str = "x86_64-w64-mingw32-gcc";
/// Wine's own start-up is seconds; a touch wait is up to the key's timeout.
const WINE_DEADLINE: Duration = Duration::from_secs(90);

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn have_mingw() -> bool {
    Command::new(MINGW_GCC)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// What this file needs besides the pcscd stack; `Err` names the missing piece.
fn wine_prerequisites() -> Result<(), String> {
    pcsc_stack::prerequisites()?;
    if !Path::new(WINE).exists() {
        return Err(format!("{WINE} (apt-get install wine64)"));
    }
    if !have_mingw() {
        return Err(format!(
            "{MINGW_GCC} (apt-get install gcc-mingw-w64-x86-64)"
        ));
    }
    Ok(())
}

/// A Wine prefix and a folder of Windows programs with the bridge DLL beside them.
struct Wine {
    dir: tempfile::TempDir,
}

fn compile(out: &Path, args: &[&str]) {
    let o = Command::new(MINGW_GCC)
        .args(["-O2", "-Wall", "-Werror", "-o"])
        .arg(out)
        .args(args)
        .current_dir(repo())
        .output()
        .expect("run mingw gcc");
    assert!(
        o.status.success(),
        "{MINGW_GCC} {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

impl Wine {
    fn new() -> Wine {
        let w = Wine {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir_all(w.bin()).unwrap();
        compile(
            &w.bin().join("winscard.dll"),
            &["-shared", "tests/testkit/winscard/winscard.c", "-lws2_32"],
        );
        w
    }

    fn bin(&self) -> PathBuf {
        self.dir.path().join("bin")
    }

    fn prefix(&self) -> PathBuf {
        self.dir.path().join("prefix")
    }

    /// `wine64 PROGRAM ARGS` (PROGRAM in [`Wine::bin`]) with only the given environment,
    /// the bridge DLL chosen over Wine's, stdin empty, killed after [`WINE_DEADLINE`].
    fn command(&self, program: &str, args: &[&str], env: &[(String, String)]) -> Command {
        let mut c = Command::new(WINE);
        c.arg(self.bin().join(program))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("WINEPREFIX", self.prefix())
            .env("WINEDEBUG", "-all")
            .env("WINEDLLOVERRIDES", "winscard=n;mscoree,mshtml=")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            c.env(k, v);
        }
        c
    }
}

impl Drop for Wine {
    fn drop(&mut self) {
        // Only this prefix's wineserver.
        let _ = Command::new(WINESERVER)
            .arg("-k")
            .env("WINEPREFIX", self.prefix())
            .status();
    }
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Run to the end or kill at the deadline; stdout/stderr with `\r` removed.
fn run_deadline(mut c: Command) -> Out {
    let mut child = c.spawn().expect("start wine64");
    let mut pipes = [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    ]
    .map(|p| {
        std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut p) = p {
                let mut b = Vec::new();
                let _ = p.read_to_end(&mut b);
                s = String::from_utf8_lossy(&b).replace('\r', "");
            }
            s
        })
    })
    .into_iter();
    let deadline = Instant::now() + WINE_DEADLINE;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("a Wine program ran past {WINE_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = pipes.next().unwrap().join().unwrap();
    let stderr = pipes.next().unwrap().join().unwrap();
    Out {
        code: status.code().unwrap_or(-1),
        stdout,
        stderr,
    }
}

/// A port nothing listens on (bound, then closed).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn oath_card(serial: u32) -> VirtualYubiKey {
    VirtualYubiKey::new(
        VykConfig::new()
            .serial(serial)
            .account(Account::totp("GitHub:someone", b"another-seed-0123456789")),
    )
}

/// The DLL's own check: a Windows program built against mingw's `winscard.h` and import
/// library lists readers (length query, buffer, short buffer, SCARD_AUTOALLOCATE), connects,
/// reads the status (numbered state, Windows reader name) and the ATR attribute, SELECTs the
/// OATH applet inside a transaction, cancels a waiting SCardGetStatusChange; and, with
/// nothing listening, sees SCARD_E_NO_SERVICE.
#[test]
fn bridge_dll_own_check_lists_readers_and_selects_oath() {
    const TEST: &str = "wine_pcsc::bridge_dll_own_check_lists_readers_and_selects_oath";
    if let Err(missing) = wine_prerequisites() {
        ci::skip(TEST, &format!("needs {missing}"));
        return;
    }
    let Some(mut stack) = PcscStack::start_or_skip(TEST) else {
        return;
    };
    let _card = stack.insert(0, oath_card(1_111_111)).expect("insert");
    let bridge = Bridge::start(0).expect("start the bridge");
    let wine = Wine::new();
    compile(
        &wine.bin().join("selftest.exe"),
        &["tests/testkit/winscard/selftest.c", "-lwinscard"],
    );
    let port = |p: u16| vec![(PORT_ENV.to_owned(), p.to_string())];

    let out = run_deadline(wine.command("selftest.exe", &[], &port(bridge.port())));
    ci::notice(&out.stdout);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(!out.stdout.contains("FAIL"), "{}", out.stdout);
    for needle in [
        "reader: Yubico YubiKey OTP+FIDO+CCID 0\n",
        "reader: Yubico YubiKey OTP+FIDO+CCID 1\n",
        "ok: SELECT OATH",
        "ok: SCardStatusA state 6",
        "ok: a waiting SCardGetStatusChangeA cancelled",
    ] {
        assert!(out.stdout.contains(needle), "{needle:?} in {}", out.stdout);
    }

    let out = run_deadline(wine.command("selftest.exe", &["noservice"], &port(closed_port())));
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("ok: no bridge"), "{}", out.stdout);
    drop(bridge);
}
