//! The virtual USB HID YubiKey (FUSE-backed `/dev/hidrawN` in a private mount namespace,
//! no pcscd) judged by independent clients: ykman finds the key over its OTP interface and
//! drives the HMAC-SHA1 slots (answers computed here); python-fido2 finds the FIDO
//! interface over hidraw and runs the CTAP2 judge on it (clientPIN protocols 1 and 2,
//! makeCredential, the `up=false` probe, `hmac-secret` checked against the key's
//! CredRandom values computed here); ykman reads its FIDO application. Needs root, /dev/fuse, util-linux and the venv;
//! skips loudly otherwise, fails under CI.
#![cfg(target_os = "linux")]

mod common;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::otp_keys::{KEY_A, KEY_B, hmac_sha1};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use tapcred_testkit::ci;
use tapcred_testkit::hidraw::{HidKey, KeySpec};
use tapcred_testkit::moto::venv;

const SERIAL: u32 = 31_415_926;

/// The key process: this binary re-run by `HidKey::start` (nothing in a normal run).
#[test]
fn hid_key_process() {
    tapcred_testkit::hidraw::serve_if_child();
}

fn spec() -> KeySpec {
    KeySpec {
        serial: SERIAL,
        firmware: (5, 4, 3),
        touch_timeout_ms: 10_000,
        ..KeySpec::default()
    }
    .slot(1, KEY_B, true)
    .slot(2, KEY_A, false)
}

/// The key plugged in, or None (skipped) when this machine cannot run it.
fn plug(test: &str, spec: &KeySpec) -> Option<(tempfile::TempDir, HidKey)> {
    if let Err(what) = HidKey::available() {
        ci::skip(test, &format!("the virtual HID key needs {what}"));
        return None;
    }
    if !ci::require(
        test,
        "ykman in the venv",
        venv().join("bin/ykman").is_file(),
    ) {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let key = HidKey::start(spec, dir.path()).expect("the virtual HID key starts");
    Some((dir, key))
}

fn ykman(key: &HidKey, args: &[&str]) -> Command {
    let mut c = key.command(venv().join("bin/ykman"));
    c.args(args).stdin(Stdio::null());
    c
}

fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn ykman_lists_and_reads_the_key_over_hid_only() {
    let Some((_dir, key)) = plug("ykman_lists_and_reads_the_key_over_hid_only", &spec()) else {
        return;
    };
    let list = ykman(&key, &["list"]).output().unwrap();
    let out = String::from_utf8_lossy(&list.stdout);
    assert!(list.status.success(), "{}", text(&list));
    assert!(out.contains("YubiKey"), "{}", text(&list));
    assert!(
        out.contains("5.4.3"),
        "firmware from the OTP status: {}",
        text(&list)
    );
    assert!(out.contains(&SERIAL.to_string()), "{}", text(&list));
    assert_eq!(out.lines().count(), 1, "one key: {}", text(&list));

    let info = ykman(&key, &["info"]).output().unwrap();
    let out = String::from_utf8_lossy(&info.stdout);
    assert!(info.status.success(), "{}", text(&info));
    assert!(
        out.contains(&format!("Serial number: {SERIAL}")),
        "{}",
        text(&info)
    );
    assert!(out.contains("Firmware version: 5.4.3"), "{}", text(&info));
    // No pcscd in the key's namespace: ykman could only have used HID.
    assert!(
        String::from_utf8_lossy(&info.stderr).contains("PC/SC not available"),
        "{}",
        text(&info)
    );
}

#[test]
fn ykman_otp_calculate_gives_hmac_sha1_of_the_slot_key() {
    let Some((_dir, key)) = plug(
        "ykman_otp_calculate_gives_hmac_sha1_of_the_slot_key",
        &spec(),
    ) else {
        return;
    };
    for challenge in [
        b"tapcred".to_vec(),
        vec![0xAB; 32],
        vec![0x10, 0x20, 0x00], // ends in 00: ykman pads with 01
        (0..64).collect::<Vec<u8>>(),
    ] {
        let o = ykman(&key, &["otp", "calculate", "2", &hex(&challenge)])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        // HMAC_LT64 (how ykman programs a slot): a full 64-byte challenge loses its
        // trailing bytes equal to its last byte; shorter ones are hashed as given.
        let mut hashed = challenge.as_slice();
        if hashed.len() == 64 {
            let last = hashed[63];
            while hashed.last() == Some(&last) {
                hashed = &hashed[..hashed.len() - 1];
            }
        }
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            hex(&hmac_sha1(&KEY_A, hashed)),
            "challenge {}",
            hex(&challenge)
        );
    }
    // TOTP from the slot (a Unix time in): RFC 4226 truncation of HMAC-SHA1(key, the
    // 8-byte 30-second step).
    let step: u64 = 55_555_555;
    let o = ykman(
        &key,
        &[
            "otp",
            "calculate",
            "--totp",
            "-d",
            "8",
            "2",
            &(step * 30).to_string(),
        ],
    )
    .output()
    .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let mac = hmac_sha1(&KEY_A, &step.to_be_bytes());
    let off = usize::from(mac[19] & 0x0F);
    let v = u32::from_be_bytes(mac[off..off + 4].try_into().unwrap()) & 0x7FFF_FFFF;
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        format!("{:08}", v % 100_000_000)
    );
}

#[test]
fn a_touch_slot_answers_only_after_the_button() {
    let Some((_dir, key)) = plug("a_touch_slot_answers_only_after_the_button", &spec()) else {
        return;
    };
    let challenge = b"touch me";
    let child = ykman(&key, &["otp", "calculate", "1", &hex(challenge)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = child;
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "answered before the button"
    );
    key.press();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(!key.button_pending(), "the key took the press");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        hex(&hmac_sha1(&KEY_B, challenge))
    );
}

#[test]
fn python_fido2_finds_the_fido_interface_and_pings_it() {
    let Some((_dir, key)) = plug(
        "python_fido2_finds_the_fido_interface_and_pings_it",
        &spec(),
    ) else {
        return;
    };
    let script = r#"
from fido2.hid import CtapHidDevice, CTAPHID
devs = list(CtapHidDevice.list_devices())
assert len(devs) == 1, devs
d = devs[0]
desc = d.descriptor
print("VIDPID %04x:%04x" % (desc.vid, desc.pid))
print("NAME", desc.product_name)
payload = bytes(range(200))
assert d.call(CTAPHID.PING, payload) == payload
print("PING-OK")
"#;
    let o = key
        .command(venv().join("bin/python"))
        .args(["-c", script])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", text(&o));
    assert!(out.contains("VIDPID 1050:0407"), "{}", text(&o));
    assert!(
        out.contains("NAME Yubico YubiKey OTP+FIDO+CCID"),
        "{}",
        text(&o)
    );
    assert!(out.contains("PING-OK"), "{}", text(&o));
}

#[test]
fn an_unplugged_key_fails_and_vanishes() {
    let Some((_dir, key)) = plug("an_unplugged_key_fails_and_vanishes", &spec()) else {
        return;
    };
    // A reader blocked on the FIDO node gets an error when the key goes.
    let script = r#"
import os, sys, time, glob
fd = os.open("/dev/hidraw1", os.O_RDWR)
sys.stdout.write("OPEN\n"); sys.stdout.flush()
try:
    os.read(fd, 64)
    print("READ-DATA")
except OSError as e:
    print("READ-ERR", e.errno)
try:
    os.write(fd, b"\0" + bytes(64))
    print("WRITE-OK")
except OSError as e:
    print("WRITE-ERR", e.errno)
print("NODES", sorted(glob.glob("/dev/hidraw*")), sorted(os.listdir("/sys/class/hidraw")))
"#;
    let mut child = key
        .command(venv().join("bin/python"))
        .args(["-c", script])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    key.unplug();
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the blocked read never failed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = child.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("READ-ERR 5"), "EIO, as hidraw: {out}");
    assert!(out.contains("WRITE-ERR 19"), "ENODEV: {out}");
    assert!(out.contains("NODES [] []"), "{out}");
    let list = ykman(&key, &["list"]).output().unwrap();
    assert!(
        String::from_utf8_lossy(&list.stdout).trim().is_empty(),
        "{}",
        text(&list)
    );
}

fn hex32(v: &serde_json::Value) -> [u8; 32] {
    let s = v.as_str().expect("a hex string");
    let bytes: Vec<u8> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect();
    bytes.try_into().expect("32 bytes")
}

fn hmac_sha256(key: &[u8; 32], salt: &[u8; 32]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap();
    m.update(salt);
    m.finalize().into_bytes().into()
}

#[test]
fn python_fido2_over_hidraw_gets_the_hmac_secret_output_credrandom_gives() {
    let Some((dir, key)) = plug(
        "python_fido2_over_hidraw_gets_the_hmac_secret_output_credrandom_gives",
        &spec(),
    ) else {
        return;
    };
    let judge = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/testkit/judges/fido2_judge.py");
    let started = Instant::now();
    let o = key
        .command(venv().join("bin/python"))
        .arg(judge)
        .arg("--hidraw")
        .arg(dir.path().join("button"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    eprintln!("python-fido2 judge over hidraw: {:?}", started.elapsed());
    let result: serde_json::Value = serde_json::from_slice(&o.stdout).expect("judge JSON");
    let credentials = key.fido_credentials();

    assert_eq!(
        result["versions"],
        serde_json::json!(["FIDO_2_0", "FIDO_2_1"])
    );
    assert_eq!(result["ctaphid_version"], 2);
    assert_eq!(result["keepalive_statuses"], serde_json::json!([2]));
    assert_eq!(result["retries"], serde_json::json!([8, 7]));
    assert_eq!(
        result["blocking_codes"],
        serde_json::json!([0x31, 0x31, 0x34, 0x34])
    );
    let randoms = &credentials[result["credential_id"].as_str().unwrap()];
    assert!(randoms.is_object(), "the key holds the judged credential");
    let salt = hex32(&result["salt"]);
    let without_uv = hmac_sha256(&hex32(&randoms["without_uv"]), &salt);
    let with_uv = hmac_sha256(&hex32(&randoms["with_uv"]), &salt);
    assert_ne!(without_uv, with_uv);
    for k in ["no_uv_p1", "no_uv_p2", "no_uv_after_pin"] {
        assert_eq!(hex32(&result[k]), without_uv, "{k}");
    }
    for k in ["uv_p1", "uv_p2", "uv_legacy_p1", "uv_legacy_p2"] {
        assert_eq!(hex32(&result[k]), with_uv, "{k}");
    }
}

#[test]
fn ykman_reads_the_fido_application_over_hid() {
    let Some((_dir, key)) = plug("ykman_reads_the_fido_application_over_hid", &spec()) else {
        return;
    };
    let o = ykman(&key, &["fido", "info"]).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", text(&o));
    assert!(out.contains("PIN:"), "{}", text(&o));
    assert!(out.to_lowercase().contains("not set"), "{}", text(&o));
}

#[test]
fn ykman_programs_and_deletes_a_challenge_response_slot_over_hid() {
    let Some((_dir, key)) = plug(
        "ykman_programs_and_deletes_a_challenge_response_slot_over_hid",
        &spec(),
    ) else {
        return;
    };
    let new_key = *b"programmed-by-ykman!";
    let o = ykman(&key, &["otp", "chalresp", "-f", "1", &hex(&new_key)])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    // Slot 1 held a touch slot with another key: now it answers at once, with the new key.
    let challenge = b"after programming";
    let o = ykman(&key, &["otp", "calculate", "1", &hex(challenge)])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        hex(&hmac_sha1(&new_key, challenge))
    );

    let o = ykman(&key, &["otp", "delete", "-f", "2"]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let o = ykman(&key, &["otp", "info"]).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", text(&o));
    assert!(out.contains("Slot 1: programmed"), "{}", text(&o));
    assert!(out.contains("Slot 2: empty"), "{}", text(&o));
    let o = ykman(&key, &["otp", "calculate", "2", &hex(challenge)])
        .output()
        .unwrap();
    assert!(!o.status.success(), "a deleted slot answered: {}", text(&o));
}
