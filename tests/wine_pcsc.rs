//! The Windows PC/SC path under Wine: the test-only `winscard.dll` (tests/testkit/winscard/)
//! beside a Windows program forwards every WinSCard call to `tapcred-winscard-bridge`'s code
//! on the real pcscd of the test stack, where the virtual YubiKey sits (Wine's own
//! `winscard.dll` is a stub). First the DLL's own Windows check program, then every PC/SC
//! flow of `tapcred.exe` compared with the Linux `tapcred` on the same key and STS double.
//!
//! Needs root (pcscd in a network namespace), wine64 and x86_64-w64-mingw32-gcc: skips
//! loudly without them, fails under CI. The flows also need a Windows build of both
//! programs: the folder in `TAPCRED_WINDOWS_BUILD_DIR`, else the debug build (`cargo build
//! --target x86_64-pc-windows-gnu --bin tapcred --bin tapcred-full`); without either they
//! say NOT RUN (the workspace test run precedes any Windows build; .ci/run runs them after
//! its release build, where a missing build is a failure).
#![cfg(target_os = "linux")]

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tapcred_testkit::ci;
use tapcred_testkit::pcsc_stack::{self, PcscStack};
use tapcred_testkit::virtual_yubikey::{Account, OtpSlot, VirtualYubiKey, VykConfig};
use tapcred_testkit::winscard_bridge::{Bridge, PORT_ENV};

const WINE: &str = "/usr/lib/wine/wine64";
const WINESERVER: &str = "/usr/lib/wine/wineserver";
const MINGW_GCC: &str = "x86_64-w64-mingw32-gcc";
/// Wine's own start-up is seconds; a touch wait is up to the key's timeout; `enroll` waits
/// for two fresh 30 s code windows for IAM and a third for STS.
const WINE_DEADLINE: Duration = Duration::from_secs(150);

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
        // Create the prefix now (seconds, once) so that no program's output carries
        // Wine's first-start notices.
        let _ = run_deadline(w.command_path(Path::new("cmd"), &["/c", "echo"], &[]));
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
        self.command_path(&self.bin().join(program), args, env)
    }

    fn command_path(&self, program: &Path, args: &[&str], env: &[(String, String)]) -> Command {
        let mut c = Command::new(WINE);
        c.arg(program)
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

// ---- every PC/SC flow: Linux `tapcred` and `tapcred.exe` under Wine, side by side ----

use common::{Home, TAPCRED};
use tapcred_testkit::sts_double::{StsDouble, design};

const SERIAL_A: u32 = 7_654_321;
const SERIAL_B: u32 = 8_765_432;
const AWS_LABEL: &str = "Amazon Web Services:toolkit-user@111111111111";
const PASSWORD: &str = "open sesame 42";

fn seed() -> Vec<u8> {
    data_encoding::BASE32_NOPAD
        .decode(design::MFA_SEED_BASE32.as_bytes())
        .unwrap()
}

fn aws_card(serial: u32, touch: bool, password: Option<&str>) -> VirtualYubiKey {
    let mut cfg = VykConfig::new()
        .serial(serial)
        .touch_timeout(Duration::from_secs(3))
        .account(Account::totp(AWS_LABEL, &seed()).touch(touch))
        .account(Account::totp("GitHub:someone", b"another-seed-0123456789"));
    if let Some(p) = password {
        cfg = cfg.password(p);
    }
    VirtualYubiKey::new(cfg)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Os {
    Linux,
    Windows,
}

/// The Windows build under test: the folder in `TAPCRED_WINDOWS_BUILD_DIR` (CI points it
/// at the release build it has just made), else the debug build next to this test's own
/// target directory.
fn windows_build() -> Option<(PathBuf, PathBuf)> {
    let dir = match std::env::var_os("TAPCRED_WINDOWS_BUILD_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(TAPCRED)
            .parent()?
            .parent()?
            .join("x86_64-pc-windows-gnu/debug"),
    };
    let (l, f) = (dir.join("tapcred.exe"), dir.join("tapcred-full.exe"));
    (l.is_file() && f.is_file()).then_some((l, f))
}

/// `Z:\…`: a Linux path as Wine's programs see it.
fn z_path(p: &Path) -> String {
    format!("Z:{}", p.display()).replace('/', "\\")
}

struct Bench {
    wine: Wine,
    stack: PcscStack,
    bridge: Option<Bridge>,
}

/// What one side of a flow printed, and the line compared.
struct Seen {
    out: Out,
    /// The error line (empty on success) with paths, separators, the program's file name and
    /// pcsc-lite's reader numbers made neutral.
    message: String,
}

impl Bench {
    /// `tapcred ARGS` on `os` with `h`'s AWS files, cache and environment, not started.
    fn command(&self, os: Os, h: &Home, args: &[&str], extra: &[(&str, &str)]) -> Command {
        let mut env: Vec<(String, String)> = h.env.clone();
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        match os {
            Os::Linux => {
                let mut c = h.cmd(args);
                c.stdout(Stdio::piped()).stderr(Stdio::piped());
                for (k, v) in extra {
                    c.env(k, v);
                }
                c
            }
            Os::Windows => {
                let home = h.path();
                env.extend(
                    [
                        ("AWS_CONFIG_FILE", home.join(".aws/config")),
                        ("AWS_SHARED_CREDENTIALS_FILE", home.join(".aws/credentials")),
                        ("XDG_CACHE_HOME", home.join(".cache")),
                        ("XDG_DATA_HOME", home.join(".local/share")),
                    ]
                    .map(|(k, p)| (k.to_owned(), z_path(&p))),
                );
                if !env.iter().any(|(k, _)| k == PORT_ENV) {
                    let port = self.bridge.as_ref().map_or_else(closed_port, Bridge::port);
                    env.push((PORT_ENV.to_owned(), port.to_string()));
                }
                self.wine.command("tapcred.exe", args, &env)
            }
        }
    }

    /// Run `tapcred ARGS` on `os` with `h`'s AWS files, cache and environment.
    fn tapcred(&self, os: Os, h: &Home, args: &[&str], extra: &[(&str, &str)]) -> Seen {
        let out = run_deadline(self.command(os, h, args, extra));
        let last = out
            .stderr
            .lines()
            .rfind(|l| l.starts_with("tapcred: error:"))
            .unwrap_or_default();
        let message = last
            .replace(&z_path(h.path()), "<home>")
            .replace(&h.path().display().to_string(), "<home>")
            .replace('\\', "/")
            .replace("tapcred-full.exe", "tapcred")
            .replace("tapcred.exe", "tapcred")
            .replace("CCID 00 00", "CCID 0")
            .replace("CCID 00 01", "CCID 1");
        Seen { out, message }
    }
}

fn home_for(d: &StsDouble, extra_profile_lines: &str) -> Home {
    let mut h = Home::empty();
    h.write_config(&common::design_fixture("config").replacen(
        "mfa_serial = arn:aws:iam::111111111111:mfa/toolkit-user\n",
        &format!(
            "mfa_serial = arn:aws:iam::111111111111:mfa/toolkit-user\ntapcred_token = oath\n{extra_profile_lines}"
        ),
        1,
    ));
    h.write_credentials(&common::design_fixture("credentials"));
    h.set("AWS_ENDPOINT_URL_STS", &d.endpoint());
    h
}

fn valid_code_sent(d: &StsDouble) -> Result<(), String> {
    let events = d.token_code_events();
    match events.as_slice() {
        [e] if e
            .matched_step
            .is_some_and(|s| e.code == common::totp_sha1(&seed(), s * 30)) =>
        {
            Ok(())
        }
        _ => Err(format!("the double did not get one valid code: {events:?}")),
    }
}

fn credentials_json(s: &Seen) -> Result<(), String> {
    let v: serde_json::Value = serde_json::from_str(&s.out.stdout)
        .map_err(|e| format!("stdout is not JSON ({e}): {:?}", s.out.stdout))?;
    match v["AccessKeyId"].as_str() {
        Some(k) if k.starts_with("ASIA") => Ok(()),
        _ => Err(format!("no session credentials: {v}")),
    }
}

/// One flow on one OS: its result, and what this flow demands of it (Err: why not).
type FlowFn = fn(&mut Bench, Os) -> (Seen, Result<(), String>);

fn flow_credential_process(b: &mut Bench, os: Os) -> (Seen, Result<(), String>) {
    let _card = b.stack.insert(0, aws_card(SERIAL_A, false, None)).unwrap();
    let d = StsDouble::start_design().unwrap();
    let h = home_for(&d, "");
    let s = b.tapcred(os, &h, &["credential-process", "--profile", "mfa"], &[]);
    let ok = credentials_json(&s).and_then(|()| valid_code_sent(&d));
    (s, ok)
}

fn flow_touch(b: &mut Bench, os: Os) -> (Seen, Result<(), String>) {
    let card = b.stack.insert(0, aws_card(SERIAL_A, true, None)).unwrap();
    card.vyk().set_auto_press(Some(Duration::from_millis(300)));
    let d = StsDouble::start_design().unwrap();
    let h = home_for(&d, "");
    let s = b.tapcred(os, &h, &["credential-process", "--profile", "mfa"], &[]);
    let ok = credentials_json(&s)
        .and_then(|()| valid_code_sent(&d))
        .and_then(|()| match card.vyk().button().touch_requests() {
            1 => Ok(()),
            n => Err(format!("{n} touch requests")),
        })
        .and_then(|()| {
            if s.out.stderr.contains("Touch your YubiKey") {
                Ok(())
            } else {
                Err("no touch prompt".into())
            }
        });
    (s, ok)
}

fn flow_password(b: &mut Bench, os: Os) -> (Seen, Result<(), String>) {
    let _card = b
        .stack
        .insert(0, aws_card(SERIAL_A, false, Some(PASSWORD)))
        .unwrap();
    let d = StsDouble::start_design().unwrap();
    let mut h = home_for(&d, "");
    h.set("TAPCRED_OATH_PASSWORD", PASSWORD);
    let s = b.tapcred(os, &h, &["credential-process", "--profile", "mfa"], &[]);
    let ok = credentials_json(&s).and_then(|()| valid_code_sent(&d));
    (s, ok)
}

fn flow_wrong_password(b: &mut Bench, os: Os) -> (Seen, Result<(), String>) {
    let _card = b
        .stack
        .insert(0, aws_card(SERIAL_A, false, Some(PASSWORD)))
        .unwrap();
    let d = StsDouble::start_design().unwrap();
    let mut h = home_for(&d, "");
    h.set("TAPCRED_OATH_PASSWORD", "not the password");
    let s = b.tapcred(os, &h, &["credential-process", "--profile", "mfa"], &[]);
    let ok = if s.out.code != 0 && d.stats().requests == 0 {
        Ok(())
    } else {
        Err(format!(
            "exit {}, {} STS requests",
            s.out.code,
            d.stats().requests
        ))
    };
    (s, ok)
}

fn flow_two_keys_by_serial(b: &mut Bench, os: Os) -> (Seen, Result<(), String>) {
    // The key asked for sits in the second slot; the first holds another key with the same
    // account name but another seed.
    let decoy = VirtualYubiKey::new(
        VykConfig::new()
            .serial(SERIAL_A)
            .account(Account::totp(AWS_LABEL, b"the-wrong-seed-0123456789")),
    );
    let _a = b.stack.insert(0, decoy).unwrap();
    let _b = b.stack.insert(1, aws_card(SERIAL_B, false, None)).unwrap();
    let d = StsDouble::start_design().unwrap();
    let h = home_for(&d, &format!("tapcred_yubikey_serial = {SERIAL_B}\n"));
    let s = b.tapcred(os, &h, &["credential-process", "--profile", "mfa"], &[]);
    let ok = credentials_json(&s).and_then(|()| valid_code_sent(&d));
    (s, ok)
}

fn flow_devices(b: &mut Bench, os: Os) -> (Seen, Result<(), String>) {
    let _a = b.stack.insert(0, aws_card(SERIAL_A, false, None)).unwrap();
    let _b = b.stack.insert(1, aws_card(SERIAL_B, false, None)).unwrap();
    let h = Home::design();
    let s = b.tapcred(os, &h, &["devices", "--json"], &[]);
    let ok = serde_json::from_str::<serde_json::Value>(&s.out.stdout)
        .map_err(|e| format!("not JSON ({e}): {}", s.out.stdout))
        .and_then(|v| {
            let serials: Vec<u64> = v
                .as_array()
                .map(|a| a.iter().filter_map(|d| d["serial"].as_u64()).collect())
                .unwrap_or_default();
            if serials.contains(&SERIAL_A.into()) && serials.contains(&SERIAL_B.into()) {
                Ok(())
            } else {
                Err(format!("serials {serials:?} in {v}"))
            }
        });
    (s, ok)
}

fn flow_code(b: &mut Bench, os: Os) -> (Seen, Result<(), String>) {
    let _card = b.stack.insert(0, aws_card(SERIAL_A, false, None)).unwrap();
    let h = Home::design();
    let before = tapcred::clock::now_unix();
    let s = b.tapcred(os, &h, &["code", "--account", AWS_LABEL], &[]);
    let after = tapcred::clock::now_unix();
    let code = s.out.stdout.trim().to_owned();
    let ok = if (before / 30..=after / 30 + 1).any(|t| common::totp_sha1(&seed(), t * 30) == code) {
        Ok(())
    } else {
        Err(format!("code {code:?} is not the seed's"))
    };
    (s, ok)
}

fn flow_doctor(b: &mut Bench, os: Os) -> (Seen, Result<(), String>) {
    let _card = b.stack.insert(0, aws_card(SERIAL_A, false, None)).unwrap();
    let d = StsDouble::start_design().unwrap();
    let h = home_for(&d, "");
    let s = b.tapcred(os, &h, &["doctor", "--offline", "--profile", "mfa"], &[]);
    let all = format!("{}{}", s.out.stdout, s.out.stderr);
    let ok = if all.contains(&SERIAL_A.to_string()) {
        Ok(())
    } else {
        Err(format!("doctor does not show the key {SERIAL_A}: {all}"))
    };
    (s, ok)
}

fn flow_pulled_mid_touch(b: &mut Bench, os: Os) -> (Seen, Result<(), String>) {
    let card = b.stack.insert(0, aws_card(SERIAL_A, true, None)).unwrap();
    let vyk = card.vyk().clone();
    card.vyk().on_touch_request(move || vyk.remove());
    let d = StsDouble::start_design().unwrap();
    let h = home_for(&d, "");
    let s = b.tapcred(os, &h, &["credential-process", "--profile", "mfa"], &[]);
    let ok = if s.out.code == 4 && s.out.stdout.is_empty() && d.stats().requests == 0 {
        Ok(())
    } else {
        Err(format!(
            "exit {}, stdout {:?}, {} STS requests",
            s.out.code,
            s.out.stdout,
            d.stats().requests
        ))
    };
    drop(card);
    (s, ok)
}

/// The smart-card service is not there: pcscd's socket missing on Linux, nothing listening
/// for the DLL on Windows (SCARD_E_NO_SERVICE, as with SCardSvr stopped).
fn flow_no_service(b: &mut Bench, os: Os) -> (Seen, Result<(), String>) {
    let d = StsDouble::start_design().unwrap();
    let h = home_for(&d, "");
    let missing = h.path().join("no-pcscd.comm");
    let port = closed_port().to_string();
    let extra: Vec<(&str, &str)> = match os {
        Os::Linux => vec![("PCSCLITE_CSOCK_NAME", missing.to_str().unwrap())],
        Os::Windows => vec![(PORT_ENV, &port)],
    };
    let s = b.tapcred(os, &h, &["credential-process", "--profile", "mfa"], &extra);
    let hint = match os {
        Os::Linux => "pcscd",
        Os::Windows => "Smart Card service (SCardSvr) is not running",
    };
    let ok = if s.out.code == 4 && s.message.contains(hint) {
        Ok(())
    } else {
        Err(format!(
            "exit {}, message {:?} lacks {hint:?}",
            s.out.code, s.message
        ))
    };
    (s, ok)
}

const ENROLL_CONFIG: &str = "[profile mfa]\nsource_profile = toolkit-user\nrole_arn = arn:aws:iam::111111111111:role/toolkit-role\n";
const ENROLL_OTHER: &str = "GitHub:someone";

/// `enroll --touch` for a new IAM user, every touch pressed: the virtual MFA device created
/// and enabled with two codes from the key, the seed on the key as a touch account named by
/// its ARN, `mfa_serial` written into the config file (three touches: two for IAM, one for
/// STS).
fn flow_enroll_touch(b: &mut Bench, os: Os) -> (Seen, Result<(), String>) {
    let card = b
        .stack
        .insert(
            0,
            VirtualYubiKey::new(
                VykConfig::new()
                    .serial(SERIAL_A)
                    .touch_timeout(Duration::from_secs(15))
                    .account(Account::totp(ENROLL_OTHER, b"another-seed-0123456789")),
            ),
        )
        .unwrap();
    card.vyk().set_auto_press(Some(Duration::from_millis(300)));
    let d = common::enroll::new_user_double();
    let h = common::enroll::home(&d, ENROLL_CONFIG);
    let s = b.tapcred(os, &h, &["enroll", "--profile", "mfa", "--touch"], &[]);
    let config = std::fs::read_to_string(h.config_path()).unwrap_or_default();
    let devices = d
        .iam_state()
        .user_devices
        .get(design::USER_NAME)
        .cloned()
        .unwrap_or_default();
    let ok = if s.out.code != 0 {
        Err(format!("exit {}", s.out.code))
    } else if card.vyk().credential_ids() != [ENROLL_OTHER, design::MFA_SERIAL] {
        Err(format!(
            "accounts on the key: {:?}",
            card.vyk().credential_ids()
        ))
    } else if card.vyk().requires_touch(design::MFA_SERIAL) != Some(true) {
        Err("the new account does not require a touch".into())
    } else if devices != [design::MFA_SERIAL] {
        Err(format!("IAM devices of the user: {devices:?}"))
    } else if !config.contains(&format!("mfa_serial = {}", design::MFA_SERIAL)) {
        Err(format!("the config file: {config}"))
    } else {
        match card.button().touch_requests() {
            3 => Ok(()),
            n => Err(format!("{n} touches, not 3")),
        }
    };
    drop(card);
    (s, ok)
}

/// `enroll --touch` for a new IAM user: the virtual MFA device is created, the seed goes onto
/// the key as a touch account, nobody touches within the key's timeout, and everything is
/// undone over the same PC/SC connection path: the OATH account deleted, the device deleted,
/// the AWS files as before.
fn flow_enroll_touch_rolled_back(b: &mut Bench, os: Os) -> (Seen, Result<(), String>) {
    let card = b
        .stack
        .insert(
            0,
            VirtualYubiKey::new(
                VykConfig::new()
                    .serial(SERIAL_A)
                    .touch_timeout(Duration::from_secs(2))
                    .account(Account::totp(ENROLL_OTHER, b"another-seed-0123456789")),
            ),
        )
        .unwrap();
    let d = common::enroll::new_user_double();
    let h = common::enroll::home(&d, ENROLL_CONFIG);
    let before = common::enroll::aws_files(&h);
    let s = b.tapcred(os, &h, &["enroll", "--profile", "mfa", "--touch"], &[]);
    let undone = [
        "Touch your YubiKey",
        "undo: deleted OATH account \"arn:aws:iam::111111111111:mfa/toolkit-user\"",
        "undo: deleted virtual MFA device",
        "everything was undone",
    ];
    let ok = if s.out.code != 4 {
        Err(format!("exit {}", s.out.code))
    } else if let Some(n) = undone.iter().find(|n| !s.out.stderr.contains(*n)) {
        Err(format!("stderr lacks {n:?}"))
    } else if d.calls("CreateVirtualMFADevice") != 1 {
        Err("no virtual MFA device was created, so nothing was undone".into())
    } else if card.vyk().credential_ids() != [ENROLL_OTHER] {
        Err(format!(
            "the key is not as before: {:?}",
            card.vyk().credential_ids()
        ))
    } else if !d.iam_state().virtual_devices.is_empty() || d.calls("EnableMFADevice") != 0 {
        Err(format!("IAM is not as before: {:?}", d.iam_state()))
    } else if common::enroll::aws_files(&h) != before {
        Err("the AWS files changed".into())
    } else {
        Ok(())
    };
    drop(card);
    (s, ok)
}

const VAULT_SLOT_KEY: [u8; 20] = *b"wine-vault-slot-key!";

/// The vault opened by the key's OTP slot 2 (HMAC-SHA1 challenge-response, touch) over
/// PC/SC, made and used by the program under test: `vault init --unlock otp`, `vault
/// add-seed`, `vault import-keys` (the credentials file then holds no secret), then
/// `credential-process` with the seed and the access key from the vault on one touch.
fn flow_vault_otp_unlock(b: &mut Bench, os: Os) -> (Seen, Result<(), String>) {
    let card = b
        .stack
        .insert(
            0,
            VirtualYubiKey::new(
                VykConfig::new()
                    .serial(SERIAL_A)
                    .otp_slot(2, OtpSlot::hmac_sha1(VAULT_SLOT_KEY, true))
                    .touch_timeout(Duration::from_secs(5)),
            ),
        )
        .unwrap();
    card.vyk().set_auto_press(Some(Duration::from_millis(50)));
    let d = StsDouble::start_design().unwrap();
    let mut h = Home::empty();
    h.write_config(&format!(
        "[profile mfa]\nsource_profile = toolkit-user\nrole_arn = {}\nmfa_serial = {}\ntapcred_token = vault\n",
        design::ROLE_ARN,
        design::MFA_SERIAL
    ));
    h.write_credentials(&format!(
        "[toolkit-user]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
        design::ACCESS_KEY_ID,
        design::SECRET_ACCESS_KEY
    ));
    h.set("AWS_ENDPOINT_URL_STS", &d.endpoint());
    h.set("WINE_FLOW_SEED", design::MFA_SEED_BASE32);
    for args in [
        &["vault", "init", "--unlock", "otp"][..],
        &[
            "vault",
            "add-seed",
            "--profile",
            "mfa",
            "--seed-env",
            "WINE_FLOW_SEED",
        ],
        &["vault", "import-keys", "--profile", "toolkit-user"],
    ] {
        let s = b.tapcred(os, &h, args, &[]);
        if s.out.code != 0 {
            let why = format!("`tapcred {}` exited {}", args.join(" "), s.out.code);
            return (s, Err(why));
        }
    }
    let creds = std::fs::read_to_string(h.credentials_path()).unwrap_or_default();
    let touches = card.button().touch_requests();
    let s = b.tapcred(os, &h, &["credential-process", "--profile", "mfa"], &[]);
    let ok = if !creds.contains("tapcred_access_key = vault")
        || creds.contains(design::SECRET_ACCESS_KEY)
    {
        Err(format!("the credentials file after import-keys: {creds}"))
    } else {
        credentials_json(&s)
            .and_then(|()| valid_code_sent(&d))
            .and_then(|()| match card.button().touch_requests() - touches {
                1 => Ok(()),
                n => Err(format!("{n} touches to open the vault, not 1")),
            })
    };
    drop(card);
    (s, ok)
}

/// Flows whose message legitimately names the OS's own service.
const OS_SPECIFIC_MESSAGE: &[&str] = &["smart-card service missing"];

/// The stack, a Wine folder with both Windows programs, the ProcessPrng stand-in and the
/// bridge DLL, and a bridge; `None` after a skip or NOT RUN notice (see the file's doc).
fn windows_bench(test: &str) -> Option<Bench> {
    if let Err(missing) = wine_prerequisites() {
        ci::skip(test, &format!("needs {missing}"));
        return None;
    }
    let Some((launcher, full)) = windows_build() else {
        let build = "cargo build --target x86_64-pc-windows-gnu --bin tapcred --bin tapcred-full";
        if std::env::var_os("TAPCRED_WINDOWS_BUILD_DIR").is_some() {
            panic!("{test}: TAPCRED_WINDOWS_BUILD_DIR holds no tapcred.exe and tapcred-full.exe");
        }
        // The workspace test run comes before any Windows build; .ci/run runs this test
        // again after the release build, with TAPCRED_WINDOWS_BUILD_DIR set (then it must
        // run).
        ci::notice(&format!(
            "NOT RUN {test}: no debug Windows build ({build}); .ci/run runs it with TAPCRED_WINDOWS_BUILD_DIR after the release build"
        ));
        return None;
    };
    let stack = PcscStack::start_or_skip(test)?;
    let wine = Wine::new();
    std::fs::copy(&launcher, wine.bin().join("tapcred.exe")).unwrap();
    std::fs::copy(&full, wine.bin().join("tapcred-full.exe")).unwrap();
    // Rust's std for Windows needs ProcessPrng, which Wine 8 lacks (scripts/wine/).
    compile(
        &wine.bin().join("bcryptprimitives.dll"),
        &[
            "-shared",
            "scripts/wine/bcryptprimitives.c",
            "scripts/wine/bcryptprimitives.def",
            "-ladvapi32",
        ],
    );
    Some(Bench {
        wine,
        stack,
        bridge: Some(Bridge::start(0).expect("start the bridge")),
    })
}

#[test]
fn every_pcsc_flow_matches_linux_under_wine() {
    const TEST: &str = "wine_pcsc::every_pcsc_flow_matches_linux_under_wine";
    let Some(mut bench) = windows_bench(TEST) else {
        return;
    };
    let flows: &[(&str, FlowFn)] = &[
        (
            "credential-process, code from the key",
            flow_credential_process,
        ),
        ("touch, pressed by the test", flow_touch),
        ("password-protected applet", flow_password),
        ("wrong applet password", flow_wrong_password),
        ("two keys, chosen by serial", flow_two_keys_by_serial),
        ("devices --json (two keys)", flow_devices),
        ("code --account", flow_code),
        ("doctor --offline", flow_doctor),
        ("key pulled mid-touch", flow_pulled_mid_touch),
        ("enroll --touch, three touches", flow_enroll_touch),
        (
            "enroll --touch, no touch: rolled back",
            flow_enroll_touch_rolled_back,
        ),
        ("vault opened by the OTP slot", flow_vault_otp_unlock),
        ("smart-card service missing", flow_no_service),
    ];
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    // Each side starts with both slots empty as pcscd sees them: a card inserted while
    // pcscd still reports the last one would meet it mid-removal.
    let run = |bench: &mut Bench, flow: FlowFn, os: Os| {
        for slot in 0..2 {
            pcsc_stack::wait_card_present(
                &pcsc_stack::reader_name(slot),
                false,
                Duration::from_secs(5),
            )
            .unwrap();
        }
        flow(bench, os)
    };
    for (name, flow) in flows {
        let (lin, lin_ok) = run(&mut bench, *flow, Os::Linux);
        let (win, win_ok) = run(&mut bench, *flow, Os::Windows);
        let same = lin.out.code == win.out.code
            && (OS_SPECIFIC_MESSAGE.contains(name) || lin.message == win.message);
        for (os, ok, seen) in [("Linux", &lin_ok, &lin), ("Windows", &win_ok, &win)] {
            if let Err(e) = ok {
                problems.push(format!(
                    "{name} on {os}: {e}\n  stderr: {}",
                    seen.out.stderr.trim()
                ));
            }
        }
        if !same {
            problems.push(format!(
                "{name}: Linux exit {} {:?} vs Windows exit {} {:?}",
                lin.out.code, lin.message, win.out.code, win.message
            ));
        }
        rows.push(format!(
            "| {name} | {} {} | {} {} | {} |",
            lin.out.code,
            lin.message,
            win.out.code,
            win.message,
            if same && lin_ok.is_ok() && win_ok.is_ok() {
                "same"
            } else {
                "DIFFERS"
            }
        ));
    }
    ci::notice(&format!(
        "\n| flow | Linux: exit, last stderr line | Windows (Wine): exit, last stderr line | |\n|---|---|---|---|\n{}\n",
        rows.join("\n")
    ));
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Kill the Wine program under test, then fail with `why`.
fn fail(why: String, child: &mut std::process::Child) -> ! {
    let _ = child.kill();
    let _ = child.wait();
    panic!("{why}");
}

/// No console, waiting for a touch: `tapcred.exe credential-process` (stdin, stdout and
/// stderr pipes, as an IDE runs it) starts the notification program, `powershell.exe`, here
/// the stand-in of tests/testkit/wine/desktop_helper.c, which records its start and writes
/// `EXITED` only if it ends by itself. The touch is pressed once the balloon runs; the
/// balloon must then be killed while tapcred still runs (STS holds the request unanswered,
/// so the job object's kill at tapcred's exit cannot be what ends it), and the whole call
/// ends at STS's read timeout rather than hanging.
#[test]
fn the_touch_balloon_is_killed_when_the_touch_arrives() {
    const TEST: &str = "wine_pcsc::the_touch_balloon_is_killed_when_the_touch_arrives";
    const STS_READ_TIMEOUT_S: u64 = 20;
    let Some(mut bench) = windows_bench(TEST) else {
        return;
    };
    let bin = bench.wine.bin();
    compile(
        &bin.join("powershell.exe"),
        &["tests/testkit/wine/desktop_helper.c"],
    );
    let calls_file = bin.join("helper-calls.txt");
    let card = bench
        .stack
        .insert(
            0,
            VirtualYubiKey::new(
                VykConfig::new()
                    .serial(SERIAL_A)
                    .touch_timeout(Duration::from_secs(60))
                    .account(Account::totp(AWS_LABEL, &seed()).touch(true)),
            ),
        )
        .unwrap();
    // STS that takes the request and never answers; connections held until the test ends.
    let sts = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", sts.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in sts.incoming().flatten() {
            held.push(c);
        }
    });
    let d = StsDouble::start_design().unwrap();
    let h = home_for(&d, "");
    let winepath = z_path(&bin);
    let read_timeout = STS_READ_TIMEOUT_S.to_string();
    let mut child = bench
        .command(
            Os::Windows,
            &h,
            &["credential-process", "--profile", "mfa"],
            &[
                ("WINEPATH", &winepath),
                ("AWS_ENDPOINT_URL_STS", &url),
                ("TAPCRED_STS_READ_TIMEOUT", &read_timeout),
            ],
        )
        .stdin(Stdio::piped())
        .spawn()
        .expect("start tapcred.exe");
    let stdin_held = child.stdin.take();
    let stderr = {
        let mut p = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = p.read_to_end(&mut b);
            String::from_utf8_lossy(&b).replace('\r', "")
        })
    };
    let _stdout = child.stdout.take();
    let started = Instant::now();
    let button = card.vyk().button();
    if !button.wait_for_touch_request(Duration::from_secs(60)) {
        fail("tapcred.exe never asked for a touch".into(), &mut child);
    }
    // The balloon's program running, as Wine shows it.
    let balloon_running = |wine: &Wine| {
        let tag = wine
            .dir
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        std::fs::read_dir("/proc").unwrap().any(|e| {
            let Some(pid) = e
                .ok()
                .and_then(|e| e.file_name().to_str()?.parse::<u32>().ok())
            else {
                return false;
            };
            // Started by bare name: its folder is not in its command line, this Wine's
            // prefix is in its environment.
            let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                String::from_utf8_lossy(&c).contains("powershell")
                    && String::from_utf8_lossy(&env).contains(&tag)
            })
        })
    };
    let until = Instant::now() + Duration::from_secs(30);
    while !(std::fs::read_to_string(&calls_file).is_ok_and(|c| c.contains("NotifyIcon"))
        && balloon_running(&bench.wine))
    {
        if Instant::now() > until {
            fail(
                format!(
                    "no notification program started within 30 s of the touch request: {:?}",
                    std::fs::read_to_string(&calls_file)
                ),
                &mut child,
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let balloon_up = started.elapsed();
    if !button.press() {
        fail("the touch press did not count".into(), &mut child);
    }
    let pressed = Instant::now();
    while balloon_running(&bench.wine) {
        if child.try_wait().unwrap().is_some() {
            fail(
                "tapcred.exe exited before its balloon was gone: the touch did not kill it".into(),
                &mut child,
            );
        }
        if pressed.elapsed() > Duration::from_secs(10) {
            fail(
                format!(
                    "the balloon still runs {:?} after the touch",
                    pressed.elapsed()
                ),
                &mut child,
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let killed_after = pressed.elapsed();
    let tapcred_running = child.try_wait().unwrap().is_none();
    let deadline = Duration::from_secs(STS_READ_TIMEOUT_S + 40);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > deadline {
            fail(
                format!("tapcred.exe still runs {deadline:?} after it started: a hang"),
                &mut child,
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    drop(stdin_held);
    let stderr = stderr.join().unwrap();
    let calls = std::fs::read_to_string(&calls_file).unwrap();
    eprintln!(
        "{TEST}: balloon up {balloon_up:?} after start, gone {killed_after:?} after the touch; tapcred.exe exit {:?} after {:?}: {stderr}",
        status.code(),
        started.elapsed()
    );
    assert!(
        tapcred_running,
        "tapcred.exe had exited when the balloon was found gone"
    );
    assert_eq!(
        calls.matches("CMDLINE ").count(),
        1,
        "one balloon per touch: {calls}"
    );
    assert!(
        !calls.contains("EXITED"),
        "the balloon program ended by itself rather than being killed: {calls}"
    );
    assert!(stderr.contains("Touch your YubiKey"), "{stderr}");
    assert_eq!(
        status.code(),
        Some(6),
        "STS never answers: a network error after the read timeout: {stderr}"
    );
}
