//! The Windows build speaks Windows (issue 19, item 3): `tapcred.exe` run under Wine through
//! representative help, usage and failure paths, every line it prints searched for words a
//! Windows user cannot act on: the full program's file name in usage lines, `$VAR` (cmd
//! needs `%VAR%`, PowerShell `$env:VAR`), Unix modes and `chmod`, udev, gpgconf/scdaemon,
//! `sudo`, and `/` mixed into a `C:\…` path. `export` with no `--format` must default to
//! the PowerShell form.
//!
//! And issue 19, item 4 (no console, as IDEs run it): an IDE that gives up on
//! `credential_process` kills `tapcred.exe`; `tapcred-full.exe`, which it started, must end
//! with it rather than wait out its own timeout; a code dialog nobody answers is killed after
//! `TAPCRED_DIALOG_TIMEOUT` and tapcred fails with one line.
//!
//! Needs wine64 and x86_64-w64-mingw32-gcc (the ProcessPrng stand-in of scripts/wine/), and
//! a Windows build of both programs: the folder in `TAPCRED_WINDOWS_BUILD_DIR`, else the
//! debug build (`cargo build --target x86_64-pc-windows-gnu --bin tapcred --bin
//! tapcred-full`); see [`prerequisites`] for what happens without them. About 75 s for the
//! four Wine tests on a 2-core machine (a fresh Wine prefix each, about 10 s).
#![cfg(target_os = "linux")]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tapcred_testkit::ci;

const WINE: &str = "/usr/lib/wine/wine64";
const WINESERVER: &str = "/usr/lib/wine/wineserver";
const MINGW_GCC: &str = "x86_64-w64-mingw32-gcc";
const DEADLINE: Duration = Duration::from_secs(90);

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The folder holding `tapcred.exe` and `tapcred-full.exe`.
fn windows_build() -> Option<PathBuf> {
    let dir = match std::env::var_os("TAPCRED_WINDOWS_BUILD_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_BIN_EXE_tapcred"))
            .parent()?
            .parent()?
            .join("x86_64-pc-windows-gnu/debug"),
    };
    (dir.join("tapcred.exe").is_file() && dir.join("tapcred-full.exe").is_file()).then_some(dir)
}

/// The Windows build to test, or `None` after saying why not. wine64 missing: a loud skip
/// (a failure under CI). No Windows build: the workspace test run comes before any Windows
/// build, so that is a NOT RUN notice, unless `TAPCRED_WINDOWS_BUILD_DIR` names a folder
/// without the programs (.ci/run sets it after its release build): a failure.
fn prerequisites(test: &str) -> Option<PathBuf> {
    if !Path::new(WINE).exists() {
        ci::skip(test, &format!("needs {WINE} (apt-get install wine64)"));
        return None;
    }
    let build = windows_build();
    if build.is_none() {
        if std::env::var_os("TAPCRED_WINDOWS_BUILD_DIR").is_some() {
            panic!("{test}: TAPCRED_WINDOWS_BUILD_DIR holds no tapcred.exe and tapcred-full.exe");
        }
        ci::notice(&format!(
            "NOT RUN {test}: no debug Windows build (cargo build --target x86_64-pc-windows-gnu --bin tapcred --bin tapcred-full); .ci/run runs it with TAPCRED_WINDOWS_BUILD_DIR after the release build"
        ));
    }
    build
}

/// A Wine prefix with both programs and the ProcessPrng stand-in in one folder.
struct Wine {
    dir: tempfile::TempDir,
    user_dir: PathBuf,
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Wine {
    fn new(build: &Path) -> Wine {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        for exe in ["tapcred.exe", "tapcred-full.exe"] {
            std::fs::copy(build.join(exe), bin.join(exe)).unwrap();
        }
        let o = Command::new(MINGW_GCC)
            .args(["-O2", "-shared", "-o"])
            .arg(bin.join("bcryptprimitives.dll"))
            .args([
                "scripts/wine/bcryptprimitives.c",
                "scripts/wine/bcryptprimitives.def",
                "-ladvapi32",
            ])
            .current_dir(repo())
            .output()
            .expect("run mingw gcc");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let mut w = Wine {
            dir,
            user_dir: PathBuf::new(),
        };
        let profile = w.run_path(Path::new("cmd"), &["/c", "echo %USERPROFILE%"], &[]);
        let name = profile
            .stdout
            .trim()
            .rsplit('\\')
            .next()
            .unwrap()
            .to_owned();
        w.user_dir = w.prefix().join("drive_c/users").join(name);
        assert!(w.user_dir.is_dir(), "no {:?}", w.user_dir);
        w
    }

    fn prefix(&self) -> PathBuf {
        self.dir.path().join("prefix")
    }

    fn tap(&self, args: &[&str], env: &[(&str, &str)]) -> Out {
        self.run_path(&self.dir.path().join("bin/tapcred.exe"), args, env)
    }

    /// Linux processes of this Wine whose command line names `program` (a program started
    /// by bare name shows no folder there: its environment names this Wine's prefix).
    fn running(&self, program: &str) -> Vec<u32> {
        let tag = self
            .dir
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| {
                let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
                let cmd = String::from_utf8_lossy(&cmd);
                let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
                let ours = cmd.contains(&tag) || String::from_utf8_lossy(&env).contains(&tag);
                (ours && cmd.contains(program)).then_some(pid)
            })
            .collect()
    }

    /// Only the given environment (no AWS_*, no XDG_* from the Linux side), stdin empty,
    /// stdout and stderr piped.
    fn command(&self, program: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut c = Command::new(WINE);
        c.arg(program)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("WINEPREFIX", self.prefix())
            .env("WINEDEBUG", "-all")
            .env("WINEDLLOVERRIDES", "mscoree,mshtml=")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// [`Wine::command`] run to its end, stdout and stderr with `\r` removed; killed at
    /// [`DEADLINE`].
    fn run_path(&self, program: &Path, args: &[&str], env: &[(&str, &str)]) -> Out {
        let mut child = self
            .command(program, args, env)
            .spawn()
            .expect("start wine64");
        let readers = [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ]
        .map(|mut p| {
            std::thread::spawn(move || {
                let mut b = Vec::new();
                let _ = p.read_to_end(&mut b);
                String::from_utf8_lossy(&b).replace('\r', "")
            })
        });
        let until = Instant::now() + DEADLINE;
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > until {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{program:?} {args:?} ran past {DEADLINE:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let [o, e] = readers.map(|t| t.join().unwrap());
        Out {
            code: status.code().unwrap_or(-1),
            stdout: o,
            stderr: e,
        }
    }
}

impl Drop for Wine {
    fn drop(&mut self) {
        let _ = Command::new(WINESERVER)
            .arg("-k")
            .env("WINEPREFIX", self.prefix())
            .status();
    }
}

/// The Unix-only words in `text`, each with its line.
fn unix_words(text: &str) -> Vec<String> {
    const WORDS: &[&str] = &[
        "mode 0", "chmod", "udev", "gpgconf", "scdaemon", "sudo ", ".gnupg",
    ];
    let mut found = Vec::new();
    for line in text.lines() {
        for w in WORDS {
            if line.contains(w) {
                found.push(format!("{w:?} in: {line}"));
            }
        }
        if line.contains("Usage:") && (line.contains("tapcred-full") || line.contains(".exe")) {
            found.push(format!("a program file name in: {line}"));
        }
        // `$NAME` is a Unix shell's; PowerShell's `$env:NAME` (any case) is not.
        let unix_var = line.match_indices('$').any(|(i, _)| {
            let after = &line[i + 1..];
            after.starts_with(|c: char| c.is_ascii_uppercase())
                && !after.to_ascii_lowercase().starts_with("env:")
        });
        if unix_var {
            found.push(format!("a $VAR form in: {line}"));
        }
        // A Windows path with `/` in it: from its drive letter to the next blank or quote.
        for (i, _) in line.match_indices(":\\") {
            let rest: String = line[i..]
                .chars()
                .take_while(|c| !c.is_whitespace() && !"\"'(),;".contains(*c))
                .collect();
            if rest.contains('/') {
                found.push(format!("mixed separators in: {line}"));
            }
        }
    }
    found
}

#[test]
fn the_checker_finds_each_unix_word() {
    for bad in [
        "Usage: tapcred-full.exe [OPTIONS] <COMMAND>",
        "set $TAPCRED_TOTP_SECRET for headless runs",
        "seed written to C:\\users\\me\\.aws\\s.seed (mode 0600, never shown)",
        "cannot read C:\\users\\me\\.aws/config",
        "install tapcred's udev rule",
        "release it with `gpgconf --kill scdaemon`",
        "run: chmod 600 x",
    ] {
        assert!(!unix_words(bad).is_empty(), "not caught: {bad}");
    }
    for good in [
        "- powershell:    `$Env:AWS_ACCESS_KEY_ID='…'`",
        "Usage: tapcred export [OPTIONS]",
        "set %TAPCRED_TOTP_SECRET% (cmd) or $env:TAPCRED_TOTP_SECRET (PowerShell)",
        "seed written to C:\\users\\me\\.aws\\s.seed (readable by you only, never shown)",
        "see https://example.com/a/b and C:\\x\\y",
    ] {
        assert!(
            unix_words(good).is_empty(),
            "{good}: {:?}",
            unix_words(good)
        );
    }
}

#[test]
fn windows_messages_use_windows_words() {
    const TEST: &str = "wine_words::windows_messages_use_windows_words";
    let Some(build) = prerequisites(TEST) else {
        return;
    };
    let wine = Wine::new(&build);
    let aws = wine.user_dir.join(".aws");
    std::fs::create_dir_all(&aws).unwrap();
    // Forward slashes in a user's path, as AWS documentation writes them.
    std::fs::write(
        aws.join("config"),
        "[profile soft]\nmfa_serial = arn:aws:iam::111111111111:mfa/u\ntapcred_token = software\n\n\
         [profile seedfile]\nmfa_serial = arn:aws:iam::111111111111:mfa/u\ntapcred_token = software\n\
         tapcred_totp_secret_file = ~/.aws/no-such-seed.txt\n\n\
         [profile auto]\nmfa_serial = arn:aws:iam::111111111111:mfa/u\n",
    )
    .unwrap();
    let keys = "aws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n";
    std::fs::write(
        aws.join("credentials"),
        format!("[soft]\n{keys}\n[seedfile]\n{keys}\n[auto]\n{keys}"),
    )
    .unwrap();

    let mut problems = Vec::new();
    let check = |problems: &mut Vec<String>, what: &str, out: &Out, want_code: Option<i32>| {
        if let Some(c) = want_code
            && out.code != c
        {
            problems.push(format!(
                "{what}: exit {}, expected {c}: {}",
                out.code, out.stderr
            ));
        }
        for p in unix_words(&out.stdout)
            .into_iter()
            .chain(unix_words(&out.stderr))
        {
            problems.push(format!("{what}: {p}"));
        }
        eprintln!(
            "--- {what} (exit {})\n{}{}",
            out.code, out.stdout, out.stderr
        );
    };

    let help = wine.tap(&["--help"], &[]);
    check(&mut problems, "--help", &help, Some(0));
    if !help.stdout.contains("Usage: tapcred [") {
        problems.push(format!("--help: no `Usage: tapcred [`: {}", help.stdout));
    }
    let usage = wine.tap(&["export", "--no-such-option"], &[]);
    check(&mut problems, "export --no-such-option", &usage, Some(2));
    if !usage.stderr.contains("Usage: tapcred export") {
        problems.push(format!(
            "usage error: no `Usage: tapcred export`: {}",
            usage.stderr
        ));
    }
    let export_help = wine.tap(&["export", "--help"], &[]);
    check(&mut problems, "export --help", &export_help, Some(0));
    if !export_help.stdout.contains("[default: powershell]") {
        problems.push(format!(
            "export's default format is not powershell: {}",
            export_help.stdout
        ));
    }
    check(
        &mut problems,
        "code, software token, no seed",
        &wine.tap(&["code", "--profile", "soft"], &[]),
        Some(3),
    );
    check(
        &mut problems,
        "code, seed file missing",
        &wine.tap(&["code", "--profile", "seedfile"], &[]),
        Some(3),
    );
    check(
        &mut problems,
        "unknown profile",
        &wine.tap(&["code", "--profile", "no-such-profile"], &[]),
        Some(3),
    );
    check(
        &mut problems,
        "doctor --offline, software token",
        &wine.tap(&["doctor", "--offline", "--profile", "soft"], &[]),
        None,
    );
    check(
        &mut problems,
        "credential-process, no token source",
        &wine.tap(&["credential-process", "--profile", "auto"], &[]),
        None,
    );
    check(
        &mut problems,
        "vault, no subcommand",
        &wine.tap(&["vault"], &[]),
        None,
    );
    assert!(
        problems.is_empty(),
        "Unix words in the Windows build's messages:\n{}",
        problems.join("\n")
    );
}

/// An IDE's timeout: `tapcred.exe credential-process` is killed while `tapcred-full.exe`
/// waits on STS (a loopback endpoint that takes the request and never answers, read timeout
/// 120 s). `tapcred-full.exe` must be gone within seconds, not after its own timeout.
#[test]
fn killing_the_launcher_ends_the_full_program() {
    const TEST: &str = "wine_words::killing_the_launcher_ends_the_full_program";
    let Some(build) = prerequisites(TEST) else {
        return;
    };
    let wine = Wine::new(&build);
    let aws = wine.user_dir.join(".aws");
    std::fs::create_dir_all(&aws).unwrap();
    std::fs::write(
        aws.join("config"),
        "[profile mfa]\nregion = us-east-1\nmfa_serial = arn:aws:iam::111111111111:mfa/u\ntapcred_token = software\n",
    )
    .unwrap();
    std::fs::write(
        aws.join("credentials"),
        "[mfa]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n",
    )
    .unwrap();
    // STS that accepts and never answers; the connections are held until the test ends.
    let sts = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", sts.local_addr().unwrap());
    let (got, seen) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in sts.incoming().flatten() {
            held.push(c);
            let _ = got.send(());
        }
    });
    let mut launcher = wine
        .command(
            &wine.dir.path().join("bin/tapcred.exe"),
            &["credential-process", "--profile", "mfa"],
            &[
                ("AWS_ENDPOINT_URL_STS", &url),
                ("TAPCRED_STS_READ_TIMEOUT", "120"),
                ("TAPCRED_TOTP_SECRET", "JBSWY3DPEHPK3PXP"),
            ],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tapcred.exe");
    seen.recv_timeout(DEADLINE)
        .expect("tapcred-full.exe never reached the STS endpoint");
    assert!(
        !wine.running("tapcred-full").is_empty(),
        "no tapcred-full.exe process while STS is waited on"
    );
    let killed = Instant::now();
    launcher.kill().unwrap();
    let _ = launcher.wait();
    while !wine.running("tapcred-full").is_empty() {
        assert!(
            killed.elapsed() < Duration::from_secs(15),
            "tapcred-full.exe still runs {:?} after tapcred.exe was killed (it would wait for its own 120 s STS timeout)",
            killed.elapsed()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "{TEST}: tapcred-full.exe gone {:?} after tapcred.exe was killed",
        killed.elapsed()
    );
}

/// A Wine folder whose `powershell.exe` is the stand-in (tests/testkit/wine/desktop_helper.c),
/// answering `answer` or never; a profile `typed` with `tapcred_token = prompt`. Returns the
/// folder of the programs and the `WINEPATH` that puts it on the programs' `PATH`.
fn dialog_wine(build: &Path, answer: Option<&str>) -> (Wine, PathBuf, String) {
    let wine = Wine::new(build);
    let bin = wine.dir.path().join("bin");
    let o = Command::new(MINGW_GCC)
        .args(["-O2", "-Wall", "-Werror", "-o"])
        .arg(bin.join("powershell.exe"))
        .arg("tests/testkit/wine/desktop_helper.c")
        .current_dir(repo())
        .output()
        .expect("run mingw gcc");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    if let Some(a) = answer {
        std::fs::write(bin.join("helper-answer.txt"), a).unwrap();
    }
    let aws = wine.user_dir.join(".aws");
    std::fs::create_dir_all(&aws).unwrap();
    std::fs::write(
        aws.join("config"),
        "[profile typed]\nregion = us-east-1\nmfa_serial = arn:aws:iam::111111111111:mfa/u\ntapcred_token = prompt\n",
    )
    .unwrap();
    std::fs::write(
        aws.join("credentials"),
        "[typed]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n",
    )
    .unwrap();
    let winepath = format!("Z:{}", bin.display()).replace('/', "\\");
    (wine, bin, winepath)
}

/// No console, as an IDE runs `credential_process` (stdin and stdout pipes): a typed code is
/// asked for in a dialog, which on Windows is one program, `powershell.exe`, here a
/// stand-in (tests/testkit/wine/desktop_helper.c) that records its command line and
/// environment and answers a code. It must get PowerShell's non-interactive arguments and
/// the prompt in `TAPCRED_DESKTOP_TEXT`, and none of tapcred's secrets (the seed and OATH
/// password variables); the code it answers is used (STS, a closed port, then fails: exit 6)
/// and nothing hangs.
#[test]
fn the_no_console_dialog_gets_its_arguments_and_no_secrets() {
    const TEST: &str = "wine_words::the_no_console_dialog_gets_its_arguments_and_no_secrets";
    let Some(build) = prerequisites(TEST) else {
        return;
    };
    let (wine, bin, winepath) = dialog_wine(&build, Some("123456"));
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{closed}");
    let started = Instant::now();
    let out = wine.tap(
        &["credential-process", "--profile", "typed"],
        &[
            ("WINEPATH", &winepath),
            ("AWS_ENDPOINT_URL_STS", &url),
            ("TAPCRED_TOTP_SECRET", "JBSWY3DPEHPK3PXP"),
            ("TAPCRED_OATH_PASSWORD", "hunter2-oath"),
        ],
    );
    eprintln!(
        "{TEST}: exit {} after {:?}: {}",
        out.code,
        started.elapsed(),
        out.stderr
    );
    let calls = std::fs::read_to_string(bin.join("helper-calls.txt"))
        .unwrap_or_else(|_| panic!("the dialog program was never started: {}", out.stderr));
    assert_eq!(
        calls.matches("CMDLINE ").count(),
        1,
        "one dialog program per question: {calls}"
    );
    let cmdline = calls.lines().next().unwrap();
    assert!(
        cmdline.contains("-NoProfile -NonInteractive -ExecutionPolicy Bypass -Command")
            && cmdline.contains("InputBox"),
        "{cmdline}"
    );
    assert!(
        calls
            .lines()
            .any(|l| l.starts_with("ENV TAPCRED_DESKTOP_TEXT=") && l.contains("MFA")),
        "the prompt is not in TAPCRED_DESKTOP_TEXT: {calls}"
    );
    for secret in [
        "JBSWY3DPEHPK3PXP",
        "hunter2-oath",
        "wJalrXUtnFEMI",
        "AKIAIOSFODNN7",
    ] {
        assert!(
            !calls.contains(secret),
            "the dialog program inherited a secret ({secret}):\n{calls}"
        );
    }
    assert_eq!(
        out.code, 6,
        "the typed code should reach STS (a closed port: exit 6): {}",
        out.stderr
    );
}

/// Nobody types the code: the dialog program (the stand-in, which never answers) is killed
/// after `TAPCRED_DIALOG_TIMEOUT` (3 s here) and `tapcred.exe credential-process` exits 4
/// with one error line, with stdin and stdout pipes held open as an IDE holds them, so a
/// wait on either would be a hang. The whole call has a deadline far below the default
/// 120 s.
#[test]
fn an_unanswered_dialog_is_killed_after_its_timeout() {
    const TEST: &str = "wine_words::an_unanswered_dialog_is_killed_after_its_timeout";
    const CALL_DEADLINE: Duration = Duration::from_secs(60);
    let Some(build) = prerequisites(TEST) else {
        return;
    };
    let (wine, bin, winepath) = dialog_wine(&build, None);
    let calls_file = bin.join("helper-calls.txt");
    let mut child = wine
        .command(
            &bin.join("tapcred.exe"),
            &["credential-process", "--profile", "typed"],
            &[
                ("WINEPATH", &winepath),
                ("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:9"),
                ("TAPCRED_DIALOG_TIMEOUT", "3"),
            ],
        )
        .stdin(Stdio::piped())
        .spawn()
        .expect("start tapcred.exe");
    let stdin_held = child.stdin.take();
    let readers = [
        Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ]
    .map(|mut p| {
        std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = p.read_to_end(&mut b);
            String::from_utf8_lossy(&b).replace('\r', "")
        })
    });
    let started = Instant::now();
    let mut dialog_seen: Option<Instant> = None;
    let mut dialog_ran = false;
    let status = loop {
        if dialog_seen.is_none()
            && std::fs::read_to_string(&calls_file).is_ok_and(|c| c.contains("InputBox"))
        {
            dialog_seen = Some(Instant::now());
        }
        if dialog_seen.is_some() && !dialog_ran && !wine.running("powershell").is_empty() {
            dialog_ran = true;
        }
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > CALL_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "tapcred.exe credential-process still waits {CALL_DEADLINE:?} after it started (dialog started: {}); TAPCRED_DIALOG_TIMEOUT=3 was not applied",
                dialog_seen.is_some()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let ended = Instant::now();
    drop(stdin_held);
    let [stdout, stderr] = readers.map(|t| t.join().unwrap());
    let calls = std::fs::read_to_string(&calls_file)
        .unwrap_or_else(|_| panic!("the dialog program was never started: {stderr}"));
    let dialog_seen = dialog_seen.expect("the dialog's start was not seen");
    eprintln!(
        "{TEST}: exit {:?} {:?} after the dialog started, {:?} after tapcred.exe started: {stderr}",
        status.code(),
        ended - dialog_seen,
        ended - started
    );
    assert!(dialog_ran, "the dialog program was never seen running");
    assert_eq!(status.code(), Some(4), "{stderr}");
    assert!(stdout.is_empty(), "stdout on error: {stdout}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        lines.len() == 1
            && lines[0].starts_with("tapcred: error: no code was typed within 3 s")
            && lines[0].contains("TAPCRED_DIALOG_TIMEOUT"),
        "one error line naming the timeout expected: {stderr}"
    );
    assert!(
        ended - dialog_seen >= Duration::from_secs(2),
        "tapcred gave up {:?} after the dialog started, before its 3 s",
        ended - dialog_seen
    );
    assert_eq!(calls.matches("CMDLINE ").count(), 1, "{calls}");
    assert!(
        !calls.contains("EXITED"),
        "the dialog program ended by itself rather than being killed: {calls}"
    );
    let until = Instant::now() + Duration::from_secs(10);
    while !wine.running("powershell").is_empty() {
        assert!(
            Instant::now() < until,
            "the dialog program still runs after tapcred.exe exited"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
