//! Finding 11.2: a panic anywhere in tapcred prints one fixed line (never the panic's payload,
//! which can hold user data such as a seed) and exits 1. The test binary re-runs itself as a
//! child that installs tapcred's real hook and panics with a payload full of "secrets".

use std::process::Command;

const CHILD_ENV: &str = "TAPCRED_TEST_PANIC_CHILD";
const SECRET: &str = "JBSWY3DPEHPK3PXP-user-data";

fn child_mode() -> Option<String> {
    std::env::var(CHILD_ENV).ok()
}

fn run_child(test: &str, mode: &str) -> std::process::Output {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, mode)
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("re-run the test binary")
}

fn assert_fixed_line(out: &std::process::Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "exit 1 expected: {stderr}");
    assert!(
        stderr.contains(tapcred::cli::PANIC_MESSAGE),
        "the fixed line is missing: {stderr}"
    );
    assert!(!stderr.contains(SECRET), "the payload leaked: {stderr}");
    assert!(!stderr.contains("boom"), "the payload leaked: {stderr}");
    assert!(
        !stderr.contains("panicked at"),
        "default hook ran: {stderr}"
    );
    assert!(!stderr.contains("stack backtrace"), "{stderr}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains(SECRET),
        "the payload leaked on stdout"
    );
}

#[test]
fn panic_on_the_main_thread_prints_a_fixed_line_and_exits_1() {
    if child_mode().is_some() {
        tapcred::cli::install_panic_hook();
        let seed = String::from(SECRET);
        panic!("boom: {seed}");
    }
    assert_fixed_line(&run_child(
        "panic_on_the_main_thread_prints_a_fixed_line_and_exits_1",
        "main",
    ));
}

#[test]
fn panic_on_another_thread_ends_the_process_with_1() {
    if child_mode().is_some() {
        tapcred::cli::install_panic_hook();
        let t = std::thread::spawn(|| {
            let text = format!("{SECRET}é");
            // The bug class of finding 2: slicing inside a multi-byte character.
            let _ = &text[..text.len() - 1];
        });
        let _ = t.join();
        // Reached only if the hook let the process go on after a thread panicked.
        std::process::exit(0);
    }
    assert_fixed_line(&run_child(
        "panic_on_another_thread_ends_the_process_with_1",
        "thread",
    ));
}
