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
    let hidraw = std::fs::read_dir("/dev")
        .map(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("hidraw"))
        })
        .unwrap_or(false);
    if hidraw && !tapcred_testkit::ci::is_ci() {
        tapcred_testkit::ci::skip(
            "fido2_init_without_an_authenticator_says_so",
            "this machine has /dev/hidraw devices (maybe a real FIDO2 key)",
        );
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
    let hidraw = std::fs::read_dir("/dev")
        .map(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("hidraw"))
        })
        .unwrap_or(false);
    if hidraw && !tapcred_testkit::ci::is_ci() {
        tapcred_testkit::ci::skip(
            "fido2_add_unlock_without_an_authenticator_says_so_before_any_unlock",
            "this machine has /dev/hidraw devices (maybe a real FIDO2 key)",
        );
        return;
    }
    let h = home();
    // No vault yet: that is said first.
    h.run(&["vault", "add-unlock", "--unlock", "fido2"])
        .fails_with(3, &["no vault at"]);
}
