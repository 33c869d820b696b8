//! Signals to `tapcred exec` / `tapcred serve -- CMD` (Unix): tapcred stays until its child
//! has finished cleaning up, hands a signal sent to tapcred alone on to the child (no
//! orphan), keeps the endpoint answering meanwhile, and exits with the child's code.
//!
//! The child is `sh` with traps; it tells the test where it is through files in the temp
//! HOME. The profile is the design's static-key `toolkit-user`: no STS, no key.
#![cfg(unix)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Home;

/// A child that prints `ready PID`, then on SIGINT or SIGTERM ignores further ones, writes
/// `cleaning`, takes a second, writes `cleaned-SIG`, and exits 7 (INT) or 9 (TERM).
const TRAPPING_CHILD: &str = r#"
cleanup() {
  trap '' INT TERM
  echo cleaning > "$MARK.cleaning"
  sleep 1
  echo "cleaned-$1" > "$MARK"
  exit "$2"
}
trap 'cleanup INT 7' INT
trap 'cleanup TERM 9' TERM
echo "ready $$ ${AWS_CONTAINER_CREDENTIALS_FULL_URI:-} ${AWS_CONTAINER_AUTHORIZATION_TOKEN:-}"
i=0
while [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
exit 1
"#;

struct Running {
    tapcred: Child,
    /// The child's first line: `ready PID [URI TOKEN]`.
    ready: Vec<String>,
    mark: PathBuf,
}

/// `tapcred VERB --profile toolkit-user -- sh -c TRAPPING_CHILD`, up to the child's `ready`.
fn start(h: &Home, verb: &str, own_group: bool) -> Running {
    let mark = h.path().join("mark");
    let mut c = h.cmd(&[
        verb,
        "--profile",
        "toolkit-user",
        "--",
        "sh",
        "-c",
        TRAPPING_CHILD,
    ]);
    // stderr to a file: the child inherits it, and a pipe would be held open by an orphan.
    let stderr = std::fs::File::create(h.path().join("stderr")).unwrap();
    c.env("MARK", &mark).stdout(Stdio::piped()).stderr(stderr);
    if own_group {
        c.process_group(0);
    }
    let mut tapcred = c.spawn().expect("start tapcred");
    let mut line = String::new();
    BufReader::new(tapcred.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let ready: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
    assert_eq!(ready.first().map(String::as_str), Some("ready"), "{line:?}");
    Running {
        tapcred,
        ready,
        mark,
    }
}

fn kill(sig: &str, target: &str) {
    let ok = Command::new("kill")
        .args([sig, "--", target])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {target}");
}

/// Wait up to 20 s for tapcred; (exit code or -signal, stderr).
fn finish(r: &mut Running) -> (i32, String) {
    let t = Instant::now();
    loop {
        if let Some(st) = r.tapcred.try_wait().unwrap() {
            use std::os::unix::process::ExitStatusExt;
            let err = std::fs::read_to_string(r.mark.with_file_name("stderr")).unwrap();
            return (st.code().unwrap_or_else(|| -st.signal().unwrap_or(0)), err);
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "tapcred did not exit"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn alive(pid: &str) -> bool {
    Path::new("/proc").join(pid).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

/// Make sure a child left behind by a failing run does not outlive the test.
fn reap(pid: &str) {
    if alive(pid) {
        let _ = Command::new("kill").args(["-KILL", pid]).status();
    }
}

fn read_mark(p: &Path) -> String {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .trim()
        .to_owned()
}

#[test]
fn sigint_to_exec_waits_for_the_childs_cleanup_and_exits_with_its_code() {
    let h = Home::design();
    let mut r = start(&h, "exec", false);
    let child = r.ready[1].clone();
    kill("-INT", &r.tapcred.id().to_string());
    let (code, err) = finish(&mut r);
    reap(&child);
    assert_eq!(
        code, 7,
        "tapcred must exit with the child's code; stderr: {err}"
    );
    assert_eq!(
        read_mark(&r.mark),
        "cleaned-INT",
        "the child finished its cleanup"
    );
    assert!(!alive(&child));
}

#[test]
fn ctrl_c_to_the_process_group_lets_the_child_finish_before_exec_exits() {
    // Ctrl-C reaches the whole foreground group: tapcred and its child get SIGINT at once.
    let h = Home::design();
    let mut r = start(&h, "exec", true);
    let child = r.ready[1].clone();
    kill("-INT", &format!("-{}", r.tapcred.id()));
    let (code, err) = finish(&mut r);
    reap(&child);
    assert_eq!(code, 7, "stderr: {err}");
    assert_eq!(read_mark(&r.mark), "cleaned-INT");
}

#[test]
fn sigterm_to_exec_reaches_the_child_and_leaves_no_orphan() {
    let h = Home::design();
    let mut r = start(&h, "exec", false);
    let child = r.ready[1].clone();
    kill("-TERM", &r.tapcred.id().to_string());
    let (code, err) = finish(&mut r);
    let orphan = alive(&child);
    reap(&child);
    assert!(!orphan, "the child outlived tapcred (orphaned)");
    assert_eq!(read_mark(&r.mark), "cleaned-TERM", "the child got SIGTERM");
    assert_eq!(code, 9, "stderr: {err}");
}

#[test]
fn sighup_to_serve_reaches_the_child() {
    // SIGHUP is taken over too (a closing terminal); the child's default action ends it, and
    // tapcred reports it the shell's way: 128 + 1.
    let h = Home::design();
    let mut r = start(&h, "serve", false);
    let child = r.ready[1].clone();
    kill("-HUP", &r.tapcred.id().to_string());
    let (code, err) = finish(&mut r);
    let orphan = alive(&child);
    reap(&child);
    assert!(!orphan, "the child outlived tapcred (orphaned)");
    assert_eq!(code, 129, "stderr: {err}");
}

/// GET the endpoint with the token: the status code, or None when nothing answers.
fn get_status(uri: &str, token: &str) -> Option<u16> {
    let addr = uri.strip_prefix("http://")?.trim_end_matches('/');
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let req = format!(
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {token}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn serve_keeps_answering_while_the_child_cleans_up_after_sigint() {
    let h = Home::design();
    let mut r = start(&h, "serve", false);
    let child = r.ready[1].clone();
    let (uri, token) = (r.ready[2].clone(), r.ready[3].clone());
    assert_eq!(get_status(&uri, &token), Some(200));
    kill("-INT", &r.tapcred.id().to_string());
    // The child is now cleaning up (for a second): the endpoint must still answer.
    let cleaning = Path::new(&format!("{}.cleaning", r.mark.display())).to_owned();
    let t = Instant::now();
    while !cleaning.exists() && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let during = get_status(&uri, &token);
    let (code, err) = finish(&mut r);
    reap(&child);
    assert!(
        cleaning.exists(),
        "the child never got SIGINT; stderr: {err}"
    );
    assert_eq!(
        during,
        Some(200),
        "the endpoint went away during the child's cleanup"
    );
    assert_eq!(code, 7, "stderr: {err}");
    assert_eq!(read_mark(&r.mark), "cleaned-INT");
    // And after the child, the endpoint is gone.
    assert_eq!(get_status(&uri, &token), None);
}

#[test]
fn ctrl_c_on_a_real_terminal_reaches_the_child_once_and_exec_waits_for_it() {
    // A real terminal: `script` runs tapcred on a new pty and copies our stdin to it, so the
    // 0x03 written below is the line discipline's Ctrl-C, a kernel SIGINT to the pty's
    // foreground group (tapcred and its child). The child gets it from the terminal; tapcred
    // must not send it a second one, and must wait for its cleanup.
    let h = Home::design();
    let mark = h.path().join("mark");
    let child = h.path().join("child.sh");
    std::fs::write(
        &child,
        // Every INT is logged; after the first, the child stays a second (a second INT,
        // which must not come, would be logged too), then cleans up and exits 7.
        r#"got=0
trap 'echo INT >> "$MARK.log"; got=1' INT
echo ready
i=0
while [ $got = 0 ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
[ $got = 1 ] || exit 1
i=0
while [ $i -lt 10 ]; do sleep 0.1; i=$((i+1)); done
echo cleaned > "$MARK"
exit 7
"#,
    )
    .unwrap();
    // Under strace (kill syscalls only): whether tapcred sent the child a signal is then a
    // fact, not something the child's shell may have merged with the terminal's SIGINT.
    let trace = h.path().join("kill.trace");
    let wrapper = h.path().join("run.sh");
    std::fs::write(
        &wrapper,
        format!(
            "exec strace -f -qq -e trace=kill,tkill,tgkill -o '{}' '{}' exec --profile toolkit-user -- sh '{}'\n",
            trace.display(),
            common::TAPCRED,
            child.display()
        ),
    )
    .unwrap();
    let mut c = Command::new("script");
    h.prepare(&mut c, &[]);
    c.args(["-q", "-e", "-c"])
        .arg(format!("exec sh '{}'", wrapper.display()))
        .arg("/dev/null")
        .env("MARK", &mark)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut script = c.spawn().expect("script (bsdutils)");
    let mut stdin = script.stdin.take().unwrap();
    let mut out = BufReader::new(script.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("ready") {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "no ready line");
    }
    stdin.write_all(b"\x03").unwrap();
    stdin.flush().unwrap();
    let t = Instant::now();
    let status = loop {
        if let Some(st) = script.try_wait().unwrap() {
            break st;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "tapcred did not exit"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(stdin);
    assert_eq!(
        read_mark(&mark),
        "cleaned",
        "the child finished its cleanup"
    );
    assert_eq!(
        status.code(),
        Some(7),
        "tapcred exits with the child's code"
    );
    let log = std::fs::read_to_string(mark.with_extension("log")).unwrap();
    assert_eq!(log.lines().count(), 1, "the child got Ctrl-C once: {log:?}");
    let trace = std::fs::read_to_string(&trace).expect("strace ran (apt: strace)");
    assert!(
        !trace
            .lines()
            .any(|l| l.contains("kill(") && l.contains("SIGINT")),
        "tapcred sent the child a second SIGINT:\n{trace}"
    );
}
