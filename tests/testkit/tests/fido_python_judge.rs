//! python-fido2 as the independent judge of the virtual FIDO key (`virtual_ctaphid`), with
//! the key served on a pipe by `tapcred-virtual-fido`: CTAPHID (INIT, PING across
//! continuation packets, WINK, MSG refused, keep-alives while a touch is awaited), getInfo,
//! makeCredential with packed self-attestation, the `up=false` probe, clientPIN with PIN
//! protocols 1 and 2 (setPIN, both token commands, a wrong PIN, changePIN) and the
//! `hmac-secret` extension in both protocols, with and without UV.
//!
//! The judge reports the `hmac-secret` outputs python-fido2 decrypted; this test computes
//! the expected ones on its own, HMAC-SHA-256(CredRandom, salt), from the CredRandom values
//! the key dumps at the end. Needs `$TAPCRED_VENV/bin/python` with python-fido2 (default
//! /opt/tapcred-venv); skips loudly when missing, unless CI=true.
#![cfg(unix)] // the judge talks to the key through pipes and select(); Linux CI runs it

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use data_encoding::HEXLOWER;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

fn python() -> PathBuf {
    let venv = std::env::var("TAPCRED_VENV").unwrap_or_else(|_| "/opt/tapcred-venv".into());
    Path::new(&venv).join("bin/python")
}

fn judge_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("judges/fido2_judge.py")
}

fn python_fido2_present(test: &str) -> bool {
    let present = Command::new(python())
        .args(["-c", "import fido2.ctap2.pin"])
        .output()
        .is_ok_and(|o| o.status.success());
    tapcred_testkit::ci::require(
        test,
        &format!("python-fido2 under {}", python().display()),
        present,
    )
}

fn run_judge(device_args: &[&str]) -> Output {
    Command::new(python())
        .arg(judge_script())
        .arg(env!("CARGO_BIN_EXE_tapcred-virtual-fido"))
        .args(device_args)
        .output()
        .expect("run the python-fido2 judge")
}

fn hex32(v: &serde_json::Value) -> [u8; 32] {
    HEXLOWER
        .decode(v.as_str().expect("a hex string").as_bytes())
        .expect("hex")
        .try_into()
        .expect("32 bytes")
}

fn hmac_sha256(key: &[u8; 32], salt: &[u8; 32]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap();
    m.update(salt);
    m.finalize().into_bytes().into()
}

#[test]
fn python_fido2_gets_the_hmac_secret_output_credrandom_gives_in_both_pin_protocols() {
    let test = "python_fido2_gets_the_hmac_secret_output_credrandom_gives_in_both_pin_protocols";
    if !python_fido2_present(test) {
        return;
    }
    let dir = std::env::temp_dir().join(format!("tapcred-fido-judge-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let dump = dir.join("credentials.json");
    let out = run_judge(&["--dump", dump.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the judge failed: {stderr}");
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).expect("judge JSON");
    let credentials: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&dump).expect("the key's dump")).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();

    assert_eq!(
        result["versions"],
        serde_json::json!(["FIDO_2_0", "FIDO_2_1"])
    );
    assert_eq!(result["ctaphid_version"], 2);
    // WINK and CBOR, no MSG (NMSG): what the key's INIT answer says.
    assert_eq!(result["capabilities"], 0x01 | 0x04 | 0x08);
    assert_eq!(
        result["keepalive_statuses"],
        serde_json::json!([2]),
        "the judge pressed the button on 'user presence needed' keep-alives"
    );
    assert_eq!(result["retries"], serde_json::json!([8, 7]));
    // PIN_INVALID, PIN_INVALID, PIN_AUTH_BLOCKED; then even the right PIN is blocked.
    assert_eq!(
        result["blocking_codes"],
        serde_json::json!([0x31, 0x31, 0x34, 0x34])
    );
    assert_eq!(result["retries_left"], 5);

    let id = result["credential_id"].as_str().unwrap();
    let randoms = &credentials[id];
    assert!(randoms.is_object(), "the key holds the judged credential");
    let salt = hex32(&result["salt"]);
    let without_uv = hmac_sha256(&hex32(&randoms["without_uv"]), &salt);
    let with_uv = hmac_sha256(&hex32(&randoms["with_uv"]), &salt);
    assert_ne!(without_uv, with_uv);
    for key in ["no_uv_p1", "no_uv_p2", "no_uv_after_pin"] {
        assert_eq!(hex32(&result[key]), without_uv, "{key}");
    }
    for key in ["uv_p1", "uv_p2", "uv_legacy_p1", "uv_legacy_p2"] {
        assert_eq!(hex32(&result[key]), with_uv, "{key}");
    }
}

#[test]
fn python_fido2_fails_a_key_whose_pin_protocol_2_kdf_is_wrong() {
    let test = "python_fido2_fails_a_key_whose_pin_protocol_2_kdf_is_wrong";
    if !python_fido2_present(test) {
        return;
    }
    let out = run_judge(&["--fault", "pin2-kdf"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the judge passed a broken key");
    assert!(
        stderr.contains("protocol 2") && stderr.contains("PIN_AUTH_INVALID"),
        "{stderr}"
    );
}
