//! Fault injection while tapcred waits for a touch on the YubiKey (issue 11, item 14), over
//! the real stack: the `tapcred` binary → pcscd → vpcd → the virtual YubiKey, whose account
//! requires a touch, and the strict STS double.
//!
//! - the stack's own pcscd killed (SIGKILL) while tapcred waits inside a CALCULATE: a clear
//!   token error (exit 4), no hang, nothing half-written, and once pcscd is back the next
//!   call works with one fresh code (the ledger was not poisoned);
//! - Ctrl-C (the terminal's SIGINT, through tmux) and SIGTERM during the touch wait: the
//!   shell sees 130 / 143 (killed by the signal), the terminal settings are what they were,
//!   the cache and ledger locks are free (a second call goes through at once), and no
//!   partial file or cache entry is left.
//!
//! Root + pcscd + vpcd (+ tmux for the terminal); skips loudly otherwise unless CI=true.
#![cfg(unix)]

#[path = "common/clients.rs"]
mod clients;
mod common;

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use clients::{Tmux, card, sh_quote, wait_file};
use common::{Home, Run, TAPCRED};
use tapcred_testkit::pcsc_stack::PcscStack;
use tapcred_testkit::sts_double::{StsDouble, design};

const SERIAL: u32 = 7_654_322;
const AWS_LABEL: &str = "Amazon Web Services:toolkit-user@111111111111";

/// design profiles (fixtures/aws/design) with `tapcred_token = oath` on `mfa`; no software seed.
fn oath_home(d: &StsDouble) -> Home {
    let mut h = Home::empty();
    h.write_config(&common::design_fixture("config").replacen(
        "mfa_serial = arn:aws:iam::111111111111:mfa/toolkit-user\n",
        "mfa_serial = arn:aws:iam::111111111111:mfa/toolkit-user\ntapcred_token = oath\n",
        1,
    ));
    h.write_credentials(&common::design_fixture("credentials"));
    h.set("AWS_ENDPOINT_URL_STS", &d.endpoint());
    h
}

/// No cache entry, no temporary or partial file, and every lock file free: in the cache and
/// in the user's ledger folder (`$TMPDIR/tapcred-<uid>`, where the serial locks live).
fn nothing_half_done(h: &Home) {
    let mut left = common::files_under(&h.cache_dir());
    left.extend(common::files_under(h.ledger_dir().parent().unwrap()));
    for f in &left {
        let name = f.file_name().unwrap().to_string_lossy();
        assert!(
            !name.contains(".tmp") && !name.starts_with('.'),
            "partial file left: {}",
            f.display()
        );
        assert!(
            !name.ends_with(".json") || f.to_string_lossy().contains("/steps/"),
            "cache entry left by a call that never got credentials: {}",
            f.display()
        );
        if name.ends_with(".lock") {
            let lock = std::fs::File::open(f).unwrap();
            assert!(
                lock.try_lock().is_ok(),
                "lock {} still held after tapcred ended",
                f.display()
            );
        }
    }
    assert!(
        left.iter().any(|f| f.to_string_lossy().contains("/locks/")),
        "the call took its locks before waiting for the touch: {left:?}"
    );
}

/// The double accepted exactly `n` codes, none rejected.
fn accepted_codes(d: &StsDouble, n: usize) {
    let events = d.token_code_events();
    assert_eq!(events.len(), n, "{events:?}");
    assert!(
        events.iter().all(|e| e.matched_step.is_some()),
        "{events:?}"
    );
}

/// A second call on the same profile, with the software seed (same mfa_serial, so the same
/// serial and session locks): it must not wait for a lock and must get credentials.
fn second_call_goes_through(h: &Home) {
    // Same HOME (cache, ledger, locks); only the token source differs.
    let cfg_path = h.path().join("config-software");
    let cfg = std::fs::read_to_string(h.config_path())
        .unwrap()
        .replace("tapcred_token = oath", "tapcred_token = software");
    std::fs::write(&cfg_path, cfg).unwrap();
    let mut c = h.cmd_detached(&["credential-process", "--profile", "mfa"]);
    c.env("AWS_CONFIG_FILE", &cfg_path)
        .env("TAPCRED_TOTP_SECRET", design::MFA_SEED_BASE32);
    let t = Instant::now();
    let r = Run::from(c.output().unwrap());
    assert_eq!(r.code, 0, "second call: {}", r.stderr);
    assert!(
        !r.stderr.contains("another tapcred"),
        "the second call waited for a lock: {}",
        r.stderr
    );
    // The lock timeout is 5 minutes; a lock left held would show as a long wait. A code
    // window wait (at most 30 s) is allowed.
    assert!(
        t.elapsed() < Duration::from_secs(60),
        "second call took {:?}",
        t.elapsed()
    );
    assert!(
        r.json()["AccessKeyId"]
            .as_str()
            .unwrap()
            .starts_with("ASIA")
    );
}

#[test]
fn pcscd_killed_during_the_touch_wait_is_a_clear_error_and_the_next_call_works() {
    let Some(mut stack) = PcscStack::start_or_skip(
        "fault_pcscd::pcscd_killed_during_the_touch_wait_is_a_clear_error_and_the_next_call_works",
    ) else {
        return;
    };
    let handle = stack
        .insert(0, card(SERIAL, AWS_LABEL, true, Duration::from_secs(10)))
        .expect("insert the virtual YubiKey");
    let d = StsDouble::start_design().unwrap();
    let h = oath_home(&d);
    let mut child = h
        .cmd_detached(&["credential-process", "--profile", "mfa"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        handle
            .button()
            .wait_for_touch_request(Duration::from_secs(20)),
        "tapcred never asked for a touch"
    );
    stack.kill_pcscd();
    let t = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if t.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("tapcred hangs after pcscd died");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (mut out, mut err) = (String::new(), String::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(
        status.code(),
        Some(4),
        "token error expected; stderr: {err}"
    );
    assert!(out.is_empty(), "stdout: {out}");
    let errors: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("tapcred: error:"))
        .collect();
    assert_eq!(errors.len(), 1, "one error line: {err}");
    let line = errors[0];
    // It names what failed (pcscd, not the key) and the fix.
    assert!(
        line.contains("pcscd") && line.contains("run again") && line.contains("00 00"),
        "names pcscd, the reader and the fix: {line}"
    );
    assert!(
        !line.contains("panicked") && line.len() < 400,
        "one clear line: {line}"
    );
    nothing_half_done(&h);
    accepted_codes(&d, 0);

    // pcscd back, the key back in: the next call reads one code and gets credentials.
    let card = handle.remove();
    stack.restart().expect("restart pcscd");
    let handle = stack.insert(0, card).expect("insert the key again");
    handle
        .vyk()
        .set_auto_press(Some(Duration::from_millis(200)));
    let r = Run::from(
        h.cmd_detached(&["credential-process", "--profile", "mfa"])
            .output()
            .unwrap(),
    );
    assert_eq!(r.code, 0, "after pcscd came back: {}", r.stderr);
    assert!(
        r.json()["AccessKeyId"]
            .as_str()
            .unwrap()
            .starts_with("ASIA")
    );
    accepted_codes(&d, 1);
}

/// `sig` during the touch wait of `tapcred credential-process` on a tmux pane (a real
/// terminal): `Int` is Ctrl-C typed on the pane, `Term` a `kill -TERM` to tapcred.
#[derive(Clone, Copy, Debug)]
enum Sig {
    Int,
    Term,
}

fn signal_during_touch_wait(test: &str, sig: Sig) {
    if !clients::require(test, "tmux", clients::tmux_path().is_some()) {
        return;
    }
    let Some(mut stack) = PcscStack::start_or_skip(test) else {
        return;
    };
    let handle = stack
        .insert(0, card(SERIAL, AWS_LABEL, true, Duration::from_secs(15)))
        .expect("insert the virtual YubiKey");
    let d = StsDouble::start_design().unwrap();
    let h = oath_home(&d);
    let p = |n: &str| h.path().join(n);
    // The pane's shell: a trap (not an ignore, which tapcred would inherit) keeps it alive
    // through the Ctrl-C that reaches its whole process group; tapcred runs in the
    // foreground with the terminal as stdin, its pid written first by `exec`'s shell.
    let mut script = String::from("set -u\n");
    for (k, v) in [
        ("PATH", std::env::var("PATH").unwrap_or_default()),
        ("HOME", h.path().display().to_string()),
        ("XDG_CACHE_HOME", p(".cache").display().to_string()),
        ("AWS_ENDPOINT_URL_STS", d.endpoint()),
        ("LANG", "C.UTF-8".into()),
    ] {
        script.push_str(&format!("export {k}={}\n", sh_quote(&v)));
    }
    script.push_str(&format!(
        "trap ':' INT TERM\nstty -g > {before}\nsh -c 'echo $$ > {pid}; exec \"$0\" credential-process --profile mfa' {tapcred} > {out} 2> {err}\necho $? > {rc}.tmp\nstty -g > {after}\nstty -a > {after}.a\nmv {rc}.tmp {rc}\nsleep 600\n",
        before = sh_quote(&p("stty.before").display().to_string()),
        pid = sh_quote(&p("pid").display().to_string()),
        tapcred = sh_quote(TAPCRED),
        out = sh_quote(&p("out").display().to_string()),
        err = sh_quote(&p("err").display().to_string()),
        rc = sh_quote(&p("rc").display().to_string()),
        after = sh_quote(&p("stty.after").display().to_string()),
    ));
    let script_path = p("pane.sh");
    std::fs::write(&script_path, script).unwrap();
    let tmux = Tmux::start(&script_path, 120, 30);
    assert!(
        handle
            .button()
            .wait_for_touch_request(Duration::from_secs(20)),
        "tapcred never asked for a touch; pane:\n{}",
        tmux.capture()
    );
    // The prompt is on the terminal, not in the captured stderr.
    assert!(
        tmux.wait_for(Duration::from_secs(5), |t| t.contains("Touch your YubiKey"))
            .is_some(),
        "no touch prompt on the terminal:\n{}",
        tmux.capture()
    );
    let pid = wait_file(&p("pid"), Duration::from_secs(5)).expect("pid file");
    let pid = pid.trim().to_owned();
    match sig {
        Sig::Int => {
            tmux.send_key("C-c");
        }
        Sig::Term => {
            let ok = std::process::Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success();
            assert!(ok, "kill -TERM {pid}");
        }
    }
    let rc = wait_file(&p("rc"), Duration::from_secs(20)).unwrap_or_else(|| {
        panic!(
            "tapcred did not end after {sig:?}; pane:\n{}",
            tmux.capture()
        )
    });
    let want = match sig {
        Sig::Int => "130",
        Sig::Term => "143",
    };
    let err = std::fs::read_to_string(p("err")).unwrap_or_default();
    assert_eq!(rc.trim(), want, "exit status after {sig:?}; stderr: {err}");
    assert_eq!(
        std::fs::read_to_string(p("out")).unwrap(),
        "",
        "nothing on stdout"
    );
    // The terminal is as it was: same settings, echo and canonical mode on.
    let before = std::fs::read_to_string(p("stty.before")).unwrap();
    let after = std::fs::read_to_string(p("stty.after")).unwrap();
    assert_eq!(
        before, after,
        "terminal settings changed by the interrupted call"
    );
    let all = std::fs::read_to_string(p("stty.after.a")).unwrap();
    let flags: Vec<&str> = all.split([' ', '\n', ';']).collect();
    for f in ["echo", "icanon", "isig"] {
        assert!(flags.contains(&f), "{f} is off after {sig:?}: {all}");
    }
    nothing_half_done(&h);
    accepted_codes(&d, 0);
    second_call_goes_through(&h);
    accepted_codes(&d, 1);
}

#[test]
fn ctrl_c_during_the_touch_wait_restores_the_terminal_and_frees_the_locks() {
    signal_during_touch_wait(
        "fault_pcscd::ctrl_c_during_the_touch_wait_restores_the_terminal_and_frees_the_locks",
        Sig::Int,
    );
}

#[test]
fn sigterm_during_the_touch_wait_restores_the_terminal_and_frees_the_locks() {
    signal_during_touch_wait(
        "fault_pcscd::sigterm_during_the_touch_wait_restores_the_terminal_and_frees_the_locks",
        Sig::Term,
    );
}
