//! `tapcred vault init --unlock fido2[:pin]` from the command line, through the real
//! `ctap-hid-fido2` adapter: spec errors, `--serial` misuse, and no authenticator plugged in
//! (hidapi starts, lists the FIDO HID interfaces, finds none; nothing is written, nothing
//! reaches stdout). The unlocker itself is tested over the in-memory authenticator in
//! src/vault/fido2_tests.rs.
#![cfg(unix)] // FIDO2 unlock is not available on Windows in this version

mod common;

use common::Home;

fn home() -> Home {
    let mut h = Home::empty();
    h.write_config("[profile mfa]\nmfa_serial = arn:aws:iam::111111111111:mfa/u\n");
    let vault = h.path().join("vault-dir/vault");
    h.set("TAPCRED_VAULT", vault.to_str().unwrap());
    h
}

/// Off CI, a machine with `/dev/hidraw*` may have a real FIDO2 key plugged in, which would
/// answer where these tests expect none: skip (loudly). Under CI the test runs regardless.
fn real_hid_devices_may_answer(test: &str) -> bool {
    let hidraw = std::fs::read_dir("/dev")
        .map(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("hidraw"))
        })
        .unwrap_or(false);
    if hidraw && !tapcred_testkit::ci::is_ci() {
        tapcred_testkit::ci::skip(
            test,
            "this machine has /dev/hidraw devices (maybe a real FIDO2 key)",
        );
        return true;
    }
    false
}

#[test]
fn fido2_unlock_specs_are_checked_before_any_device() {
    let h = home();
    h.run(&["vault", "init", "--unlock", "fido2:3"])
        .fails_with(2, &["fido2:3", "fido2:pin"]);
    h.run(&["vault", "init", "--unlock", "yubikey"])
        .fails_with(2, &["unknown unlocker", "fido2"]);
    h.run(&["vault", "init", "--unlock", "fido2", "--serial", "123"])
        .fails_with(2, &["--serial"]);
    assert!(!h.path().join("vault-dir/vault").exists());
}

#[test]
fn fido2_init_without_an_authenticator_says_so() {
    if real_hid_devices_may_answer("fido2_init_without_an_authenticator_says_so") {
        return;
    }
    let h = home();
    for spec in ["fido2", "fido2:pin"] {
        h.run(&["vault", "init", "--unlock", spec])
            .fails_with(4, &["no FIDO2 authenticator found", "plug in"]);
    }
    assert!(!h.path().join("vault-dir/vault").exists());
}

#[test]
fn fido2_add_unlock_without_an_authenticator_says_so_before_any_unlock() {
    if real_hid_devices_may_answer(
        "fido2_add_unlock_without_an_authenticator_says_so_before_any_unlock",
    ) {
        return;
    }
    let h = home();
    // No vault yet: that is said first.
    h.run(&["vault", "add-unlock", "--unlock", "fido2"])
        .fails_with(3, &["no vault at"]);
}

const CHILD_ENV: &str = "TAPCRED_TEST_FIDO_STDOUT_CHILD";

/// What the FIDO2 library prints while tapcred talks to a key (such as "- unknown field in
/// pin retries response" for a CTAP 2.1 key's powerCycleState) lands nowhere: not on stdout
/// (which carries credential_process JSON), not on stderr (tapcred's own lines): the guard
/// points fd 1 at the null device for the call and puts it back. The test binary re-runs
/// itself as a child with real (uncaptured) stdout and stderr.
#[test]
fn library_output_during_a_fido2_call_is_discarded() {
    if std::env::var_os(CHILD_ENV).is_some() {
        use std::io::Write;
        print!("before ");
        let n = tapcred::platform::stdio::with_stdout_discarded(|| {
            println!("LIBRARY-NOISE");
            print!("unterminated-noise");
            42
        });
        println!("after {n}");
        std::io::stdout().flush().unwrap();
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "library_output_during_a_fido2_call_is_discarded",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stdout.contains("NOISE") && !stdout.contains("noise"),
        "{stdout}"
    );
    assert!(stdout.contains("before after 42"), "{stdout}");
    assert!(
        !stderr.contains("NOISE") && !stderr.contains("noise"),
        "{stderr}"
    );
}

const PANIC_CHILD_ENV: &str = "TAPCRED_TEST_FIDO_PANIC_CHILD";

/// A panic inside the FIDO2 library (hidapi failing to start, an answer sliced out of range)
/// becomes an error under tapcred's own panic hook (which otherwise exits 1 at once), with
/// the payload kept out of every output; afterwards the hook is tapcred's again.
#[test]
fn a_library_panic_becomes_an_error_and_the_hook_comes_back() {
    if let Some(mode) = std::env::var_os(PANIC_CHILD_ENV) {
        tapcred::cli::install_panic_hook();
        let r: Result<(), String> =
            tapcred::token::fido2::ctap_hid::catch_library_panic("testing", || {
                panic!("payload-with-a-secret")
            });
        println!("survived: {}", r.unwrap_err());
        if mode == "again" {
            // Outside the guard, tapcred's hook is back: fixed line, exit 1.
            panic!("payload-with-a-secret");
        }
        return;
    }
    let run = |mode: &str| {
        std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "a_library_panic_becomes_an_error_and_the_hook_comes_back",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(PANIC_CHILD_ENV, mode)
            .output()
            .unwrap()
    };
    let out = run("once");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("survived: the FIDO2 library failed while testing"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("payload") && !stderr.contains("payload"),
        "{stderr}"
    );
    assert!(!stderr.contains(tapcred::cli::PANIC_MESSAGE), "{stderr}");

    let out = run("again");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(tapcred::cli::PANIC_MESSAGE), "{stderr}");
    assert!(!stderr.contains("payload"), "{stderr}");
}
