//! The `tapcred-vpcd-card` binary: its own pcscd stack (`--with-pcscd`), the control
//! socket, SIGTERM clean-up, and the cross-process lock that serialises pcscd users.
#![cfg(unix)] // runs Linux test stacks (or Unix-only APIs); the Windows build is checked by clippy and Wine

use std::ffi::CString;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tapcred_testkit::pcsc_stack::{self, PcscStack};
use tapcred_testkit::virtual_yubikey::OATH_AID;

fn wait_for(path: &Path, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if std::fs::metadata(path).is_ok_and(|m| m.len() > 0) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn control(sock: &Path, cmd: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tapcred-vpcd-card"))
        .arg("control")
        .arg(sock)
        .args(cmd)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    )
}

/// Stops the spawned binary (SIGTERM, by its pid) if the test fails half-way.
struct Reap(std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            // SIGTERM to the child this test spawned.
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_raw(self.0.id() as i32).expect("child pid"),
                rustix::process::Signal::TERM,
            );
            let _ = self.0.wait();
        }
    }
}

fn tx(card: &pcsc::Card, apdu: &[u8]) -> Vec<u8> {
    let mut buf = [0u8; 1024];
    card.transmit(apdu, &mut buf).expect("transmit").to_vec()
}

#[test]
fn binary_serves_card_with_own_pcscd_after_lock_is_free() {
    let Some(stack) =
        PcscStack::start_or_skip("binary_serves_card_with_own_pcscd_after_lock_is_free")
    else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("tapcred-vyk-bin-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ready = dir.join("ready");
    let sock = dir.join("control.sock");
    let mut child = Reap(
        Command::new(env!("CARGO_BIN_EXE_tapcred-vpcd-card"))
            .args([
                "--with-pcscd",
                "--serial",
                "2468",
                "--touch-timeout-ms",
                "5000",
            ])
            .arg("--ready-file")
            .arg(&ready)
            .arg("--control")
            .arg(&sock)
            // The seed travels in the environment, not argv.
            .env(
                "TAPCRED_VYK_ACCOUNTS",
                "T:touch=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ,touch,digits=8\n",
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );

    // While this process holds the stack, the binary must wait for the lock.
    assert!(
        !wait_for(&ready, Duration::from_millis(800)),
        "a second pcscd stack started while the first held the lock"
    );
    drop(stack);
    assert!(
        wait_for(&ready, Duration::from_secs(10)),
        "binary not ready after the lock was released"
    );
    let line = std::fs::read_to_string(&ready).unwrap();
    assert!(line.contains(&pcsc_stack::reader_name(0)), "{line}");
    assert!(line.contains("serial=2468"), "{line}");

    let (ok, status) = control(&sock, &["status"]);
    assert!(ok, "{status}");
    assert!(status.contains("credentials=1"), "{status}");
    let (ok, reply) = control(&sock, &["press"]);
    assert!(!ok && reply.contains("not waiting"), "{reply}");

    // A touch CALCULATE through pcscd, pressed through the control socket.
    let ctx = pcsc::Context::establish(pcsc::Scope::User).unwrap();
    let name = CString::new(pcsc_stack::reader_name(0)).unwrap();
    let card = ctx
        .connect(&name, pcsc::ShareMode::Shared, pcsc::Protocols::ANY)
        .unwrap();
    let mut select = vec![0x00, 0xA4, 0x04, 0x00, OATH_AID.len() as u8];
    select.extend_from_slice(&OATH_AID);
    assert_eq!(&tx(&card, &select)[..2], &[0x79, 0x03]);
    let sock2 = sock.clone();
    let presser = std::thread::spawn(move || control(&sock2, &["press-when-requested", "5000"]));
    let mut calc = vec![0x00, 0xA2, 0x00, 0x01, 0x13, 0x71, 0x07];
    calc.extend_from_slice(b"T:touch");
    calc.extend_from_slice(&[0x74, 0x08, 0, 0, 0, 0, 0, 0, 0, 1]);
    let reply = tx(&card, &calc);
    let (pressed, answer) = presser.join().unwrap();
    assert!(pressed, "{answer}");
    // RFC 6238 t=59, 8 digits: 94287082.
    assert_eq!(
        reply,
        [0x76, 0x05, 0x08, 0x41, 0x39, 0x7E, 0xEA, 0x90, 0x00]
    );
    drop(card);

    // SIGTERM: the binary stops pcscd and removes its socket file.
    let pcscd_pid: u32 = std::fs::read_to_string(pcsc_stack::PID_PATH)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SIGTERM to the child this test spawned.
    let _ = rustix::process::kill_process(
        rustix::process::Pid::from_raw(child.0.id() as i32).expect("child pid"),
        rustix::process::Signal::TERM,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "binary ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    assert!(
        !Path::new(&format!("/proc/{pcscd_pid}")).exists(),
        "pcscd left running"
    );
    assert!(!sock.exists());
    let _ = std::fs::remove_dir_all(&dir);
}
