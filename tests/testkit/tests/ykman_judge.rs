//! Yubico's ykman as the independent judge of the virtual YubiKey, through the REAL
//! pcscd (vpcd in a private network namespace). If ykman and the card disagree, the card
//! is wrong.
//!
//! Needs root, pcscd, vsmartcard-vpcd and `$TAPCRED_VENV/bin/ykman` (default
//! /opt/tapcred-venv). Skips loudly when missing, unless CI=true.
#![cfg(unix)] // runs Linux test stacks (or Unix-only APIs); the Windows build is checked by clippy and Wine

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::Sha256;
use tapcred_testkit::pcsc_stack::{self, CardHandle, PcscStack};
use tapcred_testkit::virtual_yubikey::{Account, VirtualYubiKey, VykConfig};

const RFC_KEY: &[u8] = b"12345678901234567890";
const B32: &str = "JBSWY3DPEHPK3PXP"; // "Hello!\xde\xad\xbe\xef"
const B32_BYTES: &[u8] = b"Hello!\xde\xad\xbe\xef";
const SERIAL: u32 = 7_777_777;

fn ykman_path() -> PathBuf {
    let venv = std::env::var("TAPCRED_VENV").unwrap_or_else(|_| "/opt/tapcred-venv".into());
    Path::new(&venv).join("bin/ykman")
}

/// A real pcscd with one virtual YubiKey in slot 0, and a private HOME for ykman.
struct Judge {
    card: CardHandle,
    home: PathBuf,
    // Declared last: dropped after the card.
    _stack: PcscStack,
}

impl Judge {
    fn start(test: &str, config: VykConfig) -> Option<Judge> {
        if !ykman_path().is_file() {
            tapcred_testkit::ci::skip(
                test,
                &format!(
                    "ykman is missing at {} (set TAPCRED_VENV)",
                    ykman_path().display()
                ),
            );
            return None;
        }
        let mut stack = PcscStack::start_or_skip(test)?;
        let card = stack
            .insert(0, VirtualYubiKey::new(config))
            .expect("insert the virtual YubiKey");
        let home =
            std::env::temp_dir().join(format!("tapcred-ykman-home-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&home);
        std::fs::create_dir_all(&home).unwrap();
        Some(Judge {
            card,
            home,
            _stack: stack,
        })
    }

    /// Run `ykman --reader "<exact reader name>" ARGS…`.
    fn ykman(&self, args: &[&str]) -> Output {
        let reader = pcsc_stack::reader_name(0);
        let mut full = vec!["--reader", reader.as_str()];
        full.extend_from_slice(args);
        self.ykman_raw(&full)
    }

    /// Run ykman with exactly these arguments (killed after 30 s).
    fn ykman_raw(&self, args: &[&str]) -> Output {
        let mut child = Command::new(ykman_path())
            .args(args)
            .env("HOME", &self.home)
            .env("XDG_DATA_HOME", self.home.join(".local/share"))
            .env("XDG_CONFIG_HOME", self.home.join(".config"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run ykman");
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("ykman {args:?} hung for 30 s");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        child.wait_with_output().unwrap()
    }

    /// ykman must succeed; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.ykman(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "ykman {args:?} failed ({}): stdout {stdout:?} stderr {:?}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// ykman must fail; returns stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.ykman(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !out.status.success(),
            "ykman {args:?} should fail: stdout {:?}",
            String::from_utf8_lossy(&out.stdout)
        );
        stderr
    }
}

impl Drop for Judge {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Independent RFC 6238 / RFC 4226 computation.
fn hotp<M: Mac + KeyInit>(key: &[u8], counter: u64, digits: u32) -> String {
    let mut mac = <M as KeyInit>::new_from_slice(key).unwrap();
    mac.update(&counter.to_be_bytes());
    let h = mac.finalize().into_bytes();
    let off = (h[h.len() - 1] & 0x0F) as usize;
    let v = u32::from_be_bytes(h[off..off + 4].try_into().unwrap()) & 0x7FFF_FFFF;
    format!("{:0w$}", v % 10u32.pow(digits), w = digits as usize)
}

/// Codes valid at any time step between `before` and `after` (a call may cross a step).
fn totp_candidates<M: Mac + KeyInit>(
    key: &[u8],
    period: u64,
    digits: u32,
    before: u64,
    after: u64,
) -> Vec<String> {
    (before / period..=after / period)
        .map(|step| hotp::<M>(key, step, digits))
        .collect()
}

/// Parse `ykman oath accounts code` output: "NAME   CODE" per line (names may hold spaces).
fn codes(stdout: &str) -> Vec<(String, String)> {
    stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (name, code) = l.trim_end().rsplit_once(char::is_whitespace).unwrap();
            (name.trim().to_string(), code.to_string())
        })
        .collect()
}

fn code_for(stdout: &str, name: &str) -> String {
    codes(stdout)
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no code for {name:?} in {stdout:?}"))
        .1
}

fn standard_card() -> VykConfig {
    VykConfig::new()
        .serial(SERIAL)
        .account(Account::totp("RFC:vector", RFC_KEY).digits(8))
        .account(Account::totp_base32("Amazon Web Services:alice@111111111111", B32).unwrap())
        .account(Account::totp_base32("Sixty:bob", B32).unwrap().period(60))
        .account(Account::hotp("Counter:carol", RFC_KEY, 0))
        .account(Account::totp_base32("Touch:dave", B32).unwrap().touch(true))
}

#[test]
fn ykman_sees_serial_firmware_and_form_factor() {
    let Some(j) = Judge::start(
        "ykman_sees_serial_firmware_and_form_factor",
        standard_card(),
    ) else {
        return;
    };
    let info = j.ok(&["info"]);
    assert!(info.contains(&format!("Serial number: {SERIAL}")), "{info}");
    assert!(info.contains("Firmware version: 5.4.3"), "{info}");
    assert!(info.contains("Keychain (USB-A)"), "{info}");
    assert!(info.contains("OATH"), "{info}");
    // Select by serial, without --reader.
    let listed = j.ykman_raw(&["list", "--serials"]);
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout).trim(),
        SERIAL.to_string()
    );
    let serial = SERIAL.to_string();
    let out = j.ykman_raw(&["--device", &serial, "oath", "accounts", "list"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("RFC:vector"));
    let oath = j.ok(&["oath", "info"]);
    assert!(oath.contains("OATH version:        5.4.3"), "{oath}");
    assert!(oath.contains("Password protection: disabled"), "{oath}");
}

#[test]
fn ykman_reads_serial_through_otp_applet_without_management() {
    let Some(j) = Judge::start(
        "ykman_reads_serial_through_otp_applet_without_management",
        VykConfig::new()
            .serial(5_551_234)
            .without_management()
            .account(Account::totp("a", RFC_KEY)),
    ) else {
        return;
    };
    let info = j.ok(&["info"]);
    assert!(info.contains("Serial number: 5551234"), "{info}");
    // ykman really took the OTP applet path: management answered 6A82.
    let hist = j.card.vyk().history();
    assert!(
        hist.iter()
            .any(|r| r.ins == 0x01 && r.p1 == 0x10 && r.sw == Some(0x9000)),
        "no OTP serial read in {hist:?}"
    );
}

#[test]
fn ykman_lists_and_computes_the_same_codes() {
    let Some(j) = Judge::start("ykman_lists_and_computes_the_same_codes", standard_card()) else {
        return;
    };
    let list = j.ok(&["oath", "accounts", "list"]);
    let mut names: Vec<&str> = list.lines().map(str::trim).collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            "60/Sixty:bob",
            "Amazon Web Services:alice@111111111111",
            "Counter:carol",
            "RFC:vector",
            "Touch:dave"
        ]
    );

    let before = now();
    let out = j.ok(&["oath", "accounts", "code"]);
    let after = now();
    let rfc = code_for(&out, "RFC:vector");
    assert!(
        totp_candidates::<Hmac<Sha1>>(RFC_KEY, 30, 8, before, after).contains(&rfc),
        "RFC key code {rfc} at {before}..{after}"
    );
    let alice = code_for(&out, "Amazon Web Services:alice@111111111111");
    assert!(totp_candidates::<Hmac<Sha1>>(B32_BYTES, 30, 6, before, after).contains(&alice));
    // 60-s period: CALCULATE_ALL gave a 30-s value; ykman recomputes with its own step.
    let bob = code_for(&out, "60/Sixty:bob");
    assert!(
        totp_candidates::<Hmac<Sha1>>(B32_BYTES, 60, 6, before, after).contains(&bob),
        "60-s code {bob}"
    );
    assert!(out.contains("[HOTP Account]"), "{out}");
    assert!(out.contains("[Requires Touch]"), "{out}");
    // A USB ATR on a YubiKey-named reader: ykman sends extended APDUs.
    assert!(
        j.card
            .vyk()
            .history()
            .iter()
            .any(|r| r.extended && r.ins == 0xA4 && r.p1 == 0),
        "ykman sent no extended CALCULATE_ALL"
    );
    // CALCULATE_ALL does not move the HOTP counter.
    assert_eq!(j.card.vyk().hotp_counter("Counter:carol"), Some(0));

    // HOTP: RFC 4226 vectors with the card's counter.
    for (i, expected) in ["755224", "287082", "359152"].iter().enumerate() {
        let out = j.ok(&["oath", "accounts", "code", "Counter:carol"]);
        assert_eq!(code_for(&out, "Counter:carol"), *expected, "HOTP #{i}");
    }
    assert_eq!(j.card.vyk().hotp_counter("Counter:carol"), Some(3));

    // Single-code mode with the RFC vector key.
    let before = now();
    let single = j.ok(&["oath", "accounts", "code", "-s", "RFC:vector"]);
    let after = now();
    assert!(
        totp_candidates::<Hmac<Sha1>>(RFC_KEY, 30, 8, before, after)
            .contains(&single.trim().to_string()),
        "{single}"
    );
}

#[test]
fn ykman_unlocks_password_protected_key() {
    let Some(j) = Judge::start(
        "ykman_unlocks_password_protected_key",
        standard_card().password("correct horse"),
    ) else {
        return;
    };
    let oath = j.ok(&["oath", "info"]);
    assert!(oath.contains("Password protection: enabled"), "{oath}");
    let list = j.ok(&["oath", "accounts", "list", "-p", "correct horse"]);
    assert!(list.contains("RFC:vector"), "{list}");
    let before = now();
    let out = j.ok(&[
        "oath",
        "accounts",
        "code",
        "-p",
        "correct horse",
        "RFC:vector",
    ]);
    let after = now();
    assert!(
        totp_candidates::<Hmac<Sha1>>(RFC_KEY, 30, 8, before, after)
            .contains(&code_for(&out, "RFC:vector"))
    );
    let err = j.fails(&["oath", "accounts", "list", "-p", "wrong horse"]);
    assert!(err.contains("Wrong password"), "{err}");
    // No password at all: ykman cannot read the list (it would prompt; stdin is closed).
    j.fails(&["oath", "accounts", "list"]);

    // Change the password with ykman, then the old one fails and the new one works.
    j.ok(&[
        "oath",
        "access",
        "change",
        "-p",
        "correct horse",
        "-n",
        "battery staple",
    ]);
    j.fails(&["oath", "accounts", "list", "-p", "correct horse"]);
    assert!(
        j.ok(&["oath", "accounts", "list", "-p", "battery staple"])
            .contains("RFC:vector")
    );
    // Clear it.
    j.ok(&["oath", "access", "change", "-p", "battery staple", "-c"]);
    assert!(!j.card.vyk().has_password());
    assert!(j.ok(&["oath", "accounts", "list"]).contains("RFC:vector"));
}

#[test]
fn ykman_waits_for_touch_and_times_out_without_it() {
    let Some(j) = Judge::start(
        "ykman_waits_for_touch_and_times_out_without_it",
        standard_card().touch_timeout(Duration::from_millis(1500)),
    ) else {
        return;
    };
    // The test presses only after ykman's CALCULATE is waiting on the card.
    let button = j.card.button();
    let presser = std::thread::spawn(move || {
        let waited = button.wait_for_touch_request(Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(200));
        waited && button.press()
    });
    let before = now();
    let out = j.ykman(&["oath", "accounts", "code", "Touch:dave"]);
    let after = now();
    assert!(presser.join().unwrap(), "card never asked for touch");
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        totp_candidates::<Hmac<Sha1>>(B32_BYTES, 30, 6, before, after)
            .contains(&code_for(&stdout, "Touch:dave"))
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("Touch your YubiKey"));

    // Nobody presses: the card answers 6982 after its timeout.
    let requests = j.card.button().touch_requests();
    let start = Instant::now();
    let err = j.fails(&["oath", "accounts", "code", "Touch:dave"]);
    assert!(err.contains("Touch account timed out"), "{err}");
    assert!(start.elapsed() >= Duration::from_millis(1500));
    assert_eq!(j.card.button().touch_requests(), requests + 1);
}

#[test]
fn ykman_adds_renames_and_deletes_accounts() {
    let Some(j) = Judge::start(
        "ykman_adds_renames_and_deletes_accounts",
        VykConfig::new().serial(SERIAL),
    ) else {
        return;
    };
    j.ok(&["oath", "accounts", "add", "-i", "Example", "alice", B32]);
    j.ok(&["oath", "accounts", "add", "-t", "-i", "Touchy", "t", B32]);
    j.ok(&[
        "oath", "accounts", "add", "-o", "HOTP", "-c", "5", "-i", "H", "h", B32,
    ]);
    // 40-byte secret (SHA-256, 8 digits, 60 s).
    let long_b32 = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    j.ok(&[
        "oath", "accounts", "add", "-a", "SHA256", "-d", "8", "-P", "60", "-i", "S", "s256",
        long_b32,
    ]);
    let mut ids = j.card.vyk().credential_ids();
    ids.sort();
    assert_eq!(ids, vec!["60/S:s256", "Example:alice", "H:h", "Touchy:t"]);
    assert_eq!(j.card.vyk().requires_touch("Touchy:t"), Some(true));
    assert_eq!(j.card.vyk().hotp_counter("H:h"), Some(5));
    let list = j.ok(&["oath", "accounts", "list"]);
    assert!(list.contains("Example:alice"), "{list}");

    let before = now();
    let out = j.ok(&["oath", "accounts", "code"]);
    let after = now();
    assert!(
        totp_candidates::<Hmac<Sha1>>(B32_BYTES, 30, 6, before, after)
            .contains(&code_for(&out, "Example:alice"))
    );
    let secret_256 = b"1234567890123456789012345678901234567890";
    assert!(
        totp_candidates::<Hmac<Sha256>>(secret_256, 60, 8, before, after)
            .contains(&code_for(&out, "60/S:s256")),
        "{out}"
    );
    let h = j.ok(&["oath", "accounts", "code", "H:h"]);
    assert_eq!(code_for(&h, "H:h"), hotp::<Hmac<Sha1>>(B32_BYTES, 5, 6));

    j.ok(&[
        "oath",
        "accounts",
        "rename",
        "-f",
        "Example:alice",
        "Example:alicia",
    ]);
    j.ok(&["oath", "accounts", "delete", "-f", "H:h"]);
    let mut ids = j.card.vyk().credential_ids();
    ids.sort();
    assert_eq!(ids, vec!["60/S:s256", "Example:alicia", "Touchy:t"]);
    j.ok(&["oath", "reset", "-f"]);
    assert!(j.card.vyk().credential_ids().is_empty());
}

#[test]
fn ykman_reports_full_key() {
    let mut config = VykConfig::new().serial(SERIAL);
    for i in 0..31 {
        config = config.account(Account::totp(
            &format!("Bulk:user{i:02}@example.com"),
            RFC_KEY,
        ));
    }
    let Some(j) = Judge::start("ykman_reports_full_key", config) else {
        return;
    };
    // A long LIST / CALCULATE_ALL reply chains through SEND REMAINING.
    let list = j.ok(&["oath", "accounts", "list"]);
    assert_eq!(list.lines().count(), 31);
    let out = j.ok(&["oath", "accounts", "code"]);
    assert_eq!(codes(&out).len(), 31);
    assert!(
        j.card.vyk().history().iter().any(|r| r.ins == 0xA5),
        "expected response chaining"
    );
    j.ok(&["oath", "accounts", "add", "Last:one", B32]);
    let err = j.fails(&["oath", "accounts", "add", "Too:many", B32]);
    assert!(err.contains("No space"), "{err}");
}

#[test]
fn ykman_over_nfc_style_atr_uses_short_apdus() {
    use tapcred_testkit::virtual_yubikey::NFC_ATR;
    let mut config = VykConfig::new().serial(SERIAL).atr(&NFC_ATR);
    for i in 0..12 {
        config = config.account(Account::totp(
            &format!("Short:user{i:02}-with-a-long-name@example.com"),
            RFC_KEY,
        ));
    }
    let Some(j) = Judge::start("ykman_over_nfc_style_atr_uses_short_apdus", config) else {
        return;
    };
    let before = now();
    let out = j.ok(&["oath", "accounts", "code"]);
    let after = now();
    let all = codes(&out);
    assert_eq!(all.len(), 12, "{out}");
    let expected = totp_candidates::<Hmac<Sha1>>(RFC_KEY, 30, 6, before, after);
    assert!(all.iter().all(|(_, c)| expected.contains(c)), "{out}");
    // The CALCULATE_ALL reply needed chaining; every command APDU was short.
    let hist = j.card.vyk().history();
    assert!(
        hist.iter().any(|r| r.ins == 0xA5),
        "expected response chaining"
    );
    assert!(
        hist.iter().all(|r| !r.extended && r.len <= 261),
        "extended APDU seen over NFC: {:?}",
        hist.iter().map(|r| r.len).max()
    );
}
