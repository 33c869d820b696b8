//! The release path of the OTP-slot vault over USB HID, end to end: the real `tapcred`
//! binary, inside the virtual HID key's namespace (FUSE-backed `/dev/hidrawN`, sysfs that
//! libudev reads, no pcscd at all), finds the key through hidapi's C backend, makes a vault
//! with `vault init --unlock otp`, stores a seed, and a later process prints the seed's
//! TOTP after one touch of the button. Needs root, /dev/fuse and util-linux; skips loudly
//! otherwise, fails under CI.
#![cfg(target_os = "linux")]

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::{SystemTime, UNIX_EPOCH};

use common::{Home, Run, TAPCRED, totp_sha1};
use tapcred_testkit::ci;
use tapcred_testkit::hidraw::{HidKey, KeySpec};
use tapcred_testkit::sts_double::design;

const SLOT_KEY: [u8; 20] = *b"hid-vault-slot-key-A";
const SERIAL: u32 = 27_182_818;

/// The key process: this binary re-run by `HidKey::start` (nothing in a normal run).
#[test]
fn hid_key_process() {
    tapcred_testkit::hidraw::serve_if_child();
}

fn run(key: &HidKey, home: &Home, args: &[&str], stdin: &[u8]) -> Run {
    let mut c = key.command(TAPCRED);
    home.prepare(&mut c, args);
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("run tapcred in the key's namespace");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    Run::from(child.wait_with_output().unwrap())
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn otp_vault_over_hid_with_no_pcscd_opens_in_a_later_process_with_one_touch() {
    let test = "otp_vault_over_hid_with_no_pcscd_opens_in_a_later_process_with_one_touch";
    if let Err(what) = HidKey::available() {
        ci::skip(test, &format!("the virtual HID key needs {what}"));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let spec = KeySpec {
        serial: SERIAL,
        fido: false,
        touch_timeout_ms: 10_000,
        ..KeySpec::default()
    }
    .slot(2, SLOT_KEY, true);
    let key = HidKey::start(&spec, dir.path()).expect("the virtual HID key starts");

    let mut home = Home::empty();
    home.write_config(&format!(
        "[profile mfa]\nsource_profile = toolkit-user\nrole_arn = {}\nmfa_serial = {}\ntapcred_token = vault\nregion = us-east-1\n",
        design::ROLE_ARN,
        design::MFA_SERIAL
    ));
    home.write_credentials(&format!(
        "[toolkit-user]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
        design::ACCESS_KEY_ID,
        design::SECRET_ACCESS_KEY
    ));
    let vault = home.path().join("data/tapcred/vault");
    home.set("TAPCRED_VAULT", vault.to_str().unwrap());

    key.press();
    let r = run(&key, &home, &["vault", "init", "--unlock", "otp"], b"");
    r.ok();
    assert!(!key.button_pending(), "init asked the key for a touch");
    assert!(vault.is_file());

    key.press();
    run(
        &key,
        &home,
        &["vault", "add-seed", "--profile", "mfa"],
        design::MFA_SEED_BASE32.as_bytes(),
    )
    .ok();
    assert!(!key.button_pending());

    // A later process: one touch, the seed's code.
    key.press();
    let before = now();
    let r = run(&key, &home, &["code", "--profile", "mfa"], b"");
    let after = now();
    r.ok();
    assert!(!key.button_pending(), "the code needed the touch");
    let seed = data_encoding::BASE32_NOPAD
        .decode(design::MFA_SEED_BASE32.as_bytes())
        .unwrap();
    let code = r.stdout.trim().to_owned();
    assert!(
        code == totp_sha1(&seed, before) || code == totp_sha1(&seed, after),
        "{code}: {}",
        r.stderr
    );

    // Three processes at once on the one key (each waits for the key's lock; the key
    // touched whenever it blinks): all print the code.
    key.auto_touch(true);
    let children: Vec<_> = (0..3)
        .map(|_| {
            let mut c = key.command(TAPCRED);
            home.prepare(&mut c, &["code", "--profile", "mfa"]);
            c.stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let started = now();
    for c in children {
        let r = Run::from(c.wait_with_output().unwrap());
        r.ok();
        let code = r.stdout.trim().to_owned();
        assert!(
            (started.saturating_sub(30)..=now() + 30)
                .step_by(30)
                .any(|t| code == totp_sha1(&seed, t)),
            "{code}: {}",
            r.stderr
        );
    }
    key.auto_touch(false);

    // Without a touch the key times out and tapcred says so (no pcscd to fall back on).
    let dir2 = tempfile::tempdir().unwrap();
    drop(key);
    let key = HidKey::start(
        &KeySpec {
            touch_timeout_ms: 1_000,
            ..spec
        },
        dir2.path(),
    )
    .expect("the virtual HID key starts again");
    let r = run(&key, &home, &["code", "--profile", "mfa"], b"");
    assert_eq!(r.code, 4, "no touch: a token error: {}", r.stderr);
}
