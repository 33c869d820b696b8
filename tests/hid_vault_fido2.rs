//! The release path of the FIDO2 (`hmac-secret`) vault unlocker over USB HID, end to end:
//! the real `tapcred` binary, inside the virtual HID key's namespace (FUSE-backed
//! `/dev/hidrawN`, sysfs that libudev reads, no pcscd at all), reaches the key's FIDO
//! interface through hidapi and ctap-hid-fido2 (CTAPHID framing, CBOR, ECDH, PIN protocol,
//! salt encryption) with no test seam. The key counts the times it blinked for a touch, so
//! "no touch was asked" is checked on the key, not on tapcred's words.
//!
//! Needs root, /dev/fuse and util-linux; skips loudly otherwise, fails under CI.
#![cfg(target_os = "linux")]

mod common;

use std::io::{Read, Write};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Home, Run, TAPCRED, totp_sha1};
use tapcred_testkit::ci;
use tapcred_testkit::hidraw::{HidKey, KeySpec};
use tapcred_testkit::sts_double::design;

const PIN: &str = "271828";

/// The key process: this binary re-run by `HidKey::start` (nothing in a normal run).
#[test]
fn hid_key_process() {
    tapcred_testkit::hidraw::serve_if_child();
}

fn fido_key(serial: u32) -> KeySpec {
    KeySpec {
        serial,
        otp: false,
        touch_timeout_ms: 3_000,
        ..KeySpec::default()
    }
}

fn start(test: &str, specs: &[KeySpec]) -> Option<(tempfile::TempDir, HidKey)> {
    if let Err(what) = HidKey::available() {
        ci::skip(test, &format!("the virtual HID key needs {what}"));
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let key = HidKey::start_keys(specs, dir.path()).expect("the virtual HID key starts");
    Some((dir, key))
}

fn home() -> Home {
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
    home
}

fn spawn(key: &HidKey, home: &Home, args: &[&str]) -> Child {
    let mut c = key.command(TAPCRED);
    home.prepare(&mut c, args);
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tapcred in the key's namespace")
}

fn run(key: &HidKey, home: &Home, args: &[&str], stdin: &[u8]) -> Run {
    let mut child = spawn(key, home, args);
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    Run::from(child.wait_with_output().unwrap())
}

/// Exit `code`, and the last stderr line is tapcred's one error line with every needle
/// (a touch prompt may come before it).
fn fails(r: &Run, code: i32, needles: &[&str]) {
    assert_eq!(r.code, code, "stdout: {}\nstderr: {}", r.stdout, r.stderr);
    assert!(r.stdout.is_empty(), "{}", r.stdout);
    let errors: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("tapcred: error:"))
        .collect();
    assert_eq!(errors.len(), 1, "one error line: {}", r.stderr);
    for n in needles {
        assert!(
            errors[0].contains(n),
            "{:?} should mention {n:?}",
            errors[0]
        );
    }
    for crate_text in ["0x", "err =", "Nonce", "unknown field", "panicked"] {
        assert!(!r.stderr.contains(crate_text), "crate text: {}", r.stderr);
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn seed() -> Vec<u8> {
    data_encoding::BASE32_NOPAD
        .decode(design::MFA_SEED_BASE32.as_bytes())
        .unwrap()
}

/// `code` printed the seed's TOTP.
fn prints_the_code(r: &Run, before: u64, after: u64) {
    r.ok();
    let code = r.stdout.trim();
    assert!(
        code == totp_sha1(&seed(), before) || code == totp_sha1(&seed(), after),
        "{code}: {}",
        r.stderr
    );
}

fn code(key: &HidKey, home: &Home) -> Run {
    let before = now();
    let r = run(key, home, &["code", "--profile", "mfa"], b"");
    prints_the_code(&r, before, now());
    r
}

/// A vault made with `unlock` on key 0, holding the design seed.
fn init_vault(key: &HidKey, home: &Home, unlock: &str) {
    key.auto_touch(true);
    let asked = key.touches_asked();
    run(key, home, &["vault", "init", "--unlock", unlock], b"").ok();
    assert_eq!(
        key.touches_asked() - asked,
        2,
        "init: a touch to make the credential and one to test it"
    );
    run(
        key,
        home,
        &["vault", "add-seed", "--profile", "mfa"],
        design::MFA_SEED_BASE32.as_bytes(),
    )
    .ok();
}

#[test]
fn fido2_vault_over_hid_opens_with_one_touch_and_fails_cleanly_without_one() {
    let test = "fido2_vault_over_hid_opens_with_one_touch_and_fails_cleanly_without_one";
    let Some((_dir, key)) = start(test, &[fido_key(41_000_001)]) else {
        return;
    };
    let home = home();

    // devices and doctor see the HID-only key (no pcscd in the namespace).
    let r = run(&key, &home, &["devices"], b"");
    r.ok();
    assert!(r.stdout.contains("FIDO"), "{}", r.stdout);
    assert!(r.stdout.contains("YubiKey"), "{}", r.stdout);
    let r = run(&key, &home, &["doctor"], b"");
    assert!(
        r.stdout.contains("FIDO") && r.stdout.contains("YubiKey"),
        "doctor: {}\n{}",
        r.stdout,
        r.stderr
    );

    init_vault(&key, &home, "fido2");

    // A later process: one touch, the seed's code.
    let asked = key.touches_asked();
    code(&key, &home);
    assert_eq!(
        key.touches_asked() - asked,
        1,
        "one touch to open the vault"
    );

    // Three processes at once on the one key: all succeed.
    let started = Instant::now();
    let children: Vec<Child> = (0..3)
        .map(|_| spawn(&key, &home, &["code", "--profile", "mfa"]))
        .collect();
    for c in children {
        let before = now();
        let r = Run::from(c.wait_with_output().unwrap());
        prints_the_code(&r, before.saturating_sub(30), now());
    }
    eprintln!(
        "three concurrent codes over FIDO2 HID: {:?}",
        started.elapsed()
    );

    // No touch in time: the key's own timeout (3 s), exit 4, tapcred's words.
    key.auto_touch(false);
    let started = Instant::now();
    let r = run(&key, &home, &["code", "--profile", "mfa"], b"");
    fails(&r, 4, &["not touched in time"]);
    assert!(started.elapsed() < Duration::from_secs(15));

    // The key pulled out while it waits for the touch.
    let asked = key.touches_asked();
    let mut child = spawn(&key, &home, &["code", "--profile", "mfa"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while key.touches_asked() == asked {
        assert!(Instant::now() < deadline, "the key never asked for a touch");
        std::thread::sleep(Duration::from_millis(20));
    }
    key.unplug();
    let started = Instant::now();
    let _ = child.stdin.take();
    let r = Run::from(child.wait_with_output().unwrap());
    assert!(started.elapsed() < Duration::from_secs(10));
    fails(&r, 4, &["YubiKey"]);
}

#[test]
fn fido2_pin_vault_over_hid_checks_the_pin_before_any_touch() {
    let test = "fido2_pin_vault_over_hid_checks_the_pin_before_any_touch";
    let spec = KeySpec {
        fido_pin: Some(PIN.into()),
        ..fido_key(41_000_002)
    };
    let Some((_dir, key)) = start(test, &[spec]) else {
        return;
    };
    let mut home = home();
    home.set("TAPCRED_FIDO_PIN", PIN);
    init_vault(&key, &home, "fido2:pin");

    // The PIN from the environment: one touch.
    let asked = key.touches_asked();
    code(&key, &home);
    assert_eq!(key.touches_asked() - asked, 1);

    // A wrong PIN: refused before any touch is asked, with the tries left.
    home.set("TAPCRED_FIDO_PIN", "000000");
    let asked = key.touches_asked();
    let r = run(&key, &home, &["code", "--profile", "mfa"], b"");
    fails(&r, 4, &["wrong FIDO2 PIN", "7 tries left"]);
    assert_eq!(key.touches_asked(), asked, "a wrong PIN asked for a touch");

    // The PIN typed at the prompt (a terminal from `script`).
    home.set("TAPCRED_FIDO_PIN", "");
    let before = now();
    let r = typed_at_prompt(&key, &home, &["code", "--profile", "mfa"], PIN);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("FIDO2 PIN of"),
        "the prompt: {}",
        r.stdout
    );
    let code_now = [totp_sha1(&seed(), before), totp_sha1(&seed(), now())];
    assert!(
        code_now.iter().any(|c| r.stdout.contains(c.as_str())),
        "{}",
        r.stdout
    );
}

/// Run tapcred under `script` (a pseudo-terminal, made outside the key's namespace, whose
/// private /dev has no pseudo-terminal multiplexer of its own) and type `line` once it
/// prompts.
fn typed_at_prompt(key: &HidKey, home: &Home, args: &[&str], line: &str) -> Run {
    let mut c = std::process::Command::new("script");
    let enter = format!("nsenter -t {} -m --", key.pid());
    let cmdline = [enter, TAPCRED.to_owned()]
        .into_iter()
        .chain(args.iter().map(|a| (*a).to_owned()))
        .collect::<Vec<_>>()
        .join(" ");
    home.prepare(&mut c, &[]);
    c.args(["-q", "-e", "-c", &cmdline, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("script");
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = [0u8; 256];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
            let _ = tx.send(String::from_utf8_lossy(&all).into_owned());
        }
        String::from_utf8_lossy(&all).into_owned()
    });
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut seen = String::new();
    while !seen.contains("PIN of") {
        if let Ok(more) = rx.recv_timeout(Duration::from_millis(100)) {
            seen = more;
        }
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            let mut stderr = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
            panic!("no PIN prompt; the terminal showed {seen:?}; stderr {stderr:?}");
        }
    }
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(format!("{line}\r").as_bytes()).unwrap();
    stdin.flush().unwrap();
    let status = child.wait().unwrap();
    drop(stdin);
    let stdout = reader.join().unwrap();
    let mut stderr = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
    Run {
        code: status.code().unwrap_or(-1),
        stdout,
        stderr,
    }
}

#[test]
fn a_blocked_fido2_pin_is_said_in_tapcreds_words() {
    let test = "a_blocked_fido2_pin_is_said_in_tapcreds_words";
    let spec = KeySpec {
        fido_pin: Some(PIN.into()),
        fido_pin_retries: Some(1),
        ..fido_key(41_000_003)
    };
    let Some((_dir, key)) = start(test, &[spec]) else {
        return;
    };
    let mut home = home();
    home.set("TAPCRED_FIDO_PIN", "000000");
    let r = run(
        &key,
        &home,
        &["vault", "init", "--unlock", "fido2:pin"],
        b"",
    );
    fails(&r, 4, &["blocked"]);
    home.set("TAPCRED_FIDO_PIN", PIN);
    let r = run(
        &key,
        &home,
        &["vault", "init", "--unlock", "fido2:pin"],
        b"",
    );
    fails(&r, 4, &["blocked", "backup unlocker"]);
    assert_eq!(key.touches_asked(), 0);
}

#[test]
fn a_silent_fido2_key_fails_within_the_deadline_naming_the_key() {
    let test = "a_silent_fido2_key_fails_within_the_deadline_naming_the_key";
    let spec = KeySpec {
        fido_silent: true,
        ..fido_key(41_000_004)
    };
    let Some((_dir, key)) = start(test, &[spec]) else {
        return;
    };
    let home = home();
    let started = Instant::now();
    let r = run(&key, &home, &["vault", "init", "--unlock", "fido2"], b"");
    let took = started.elapsed();
    fails(&r, 4, &["YubiKey", "did not answer"]);
    assert!(took < Duration::from_secs(20), "took {took:?}");
    eprintln!("silent FIDO2 key: exit 4 after {took:?}");
}

#[test]
fn a_backup_key_is_added_and_a_key_without_the_credential_is_passed_over() {
    let test = "a_backup_key_is_added_and_a_key_without_the_credential_is_passed_over";
    let specs = [
        fido_key(41_000_005),
        KeySpec {
            plugged_in: false,
            ..fido_key(41_000_006)
        },
        KeySpec {
            plugged_in: false,
            ..fido_key(41_000_007)
        },
    ];
    let Some((_dir, key)) = start(test, &specs) else {
        return;
    };
    let home = home();
    init_vault(&key, &home, "fido2");

    // add-unlock: opened with key 0, then key 0 out and key 1 in.
    key.auto_touch_key(1, true);
    let mut child = spawn(&key, &home, &["vault", "add-unlock", "--unlock", "fido2"]);
    let deadline = Instant::now() + Duration::from_secs(15);
    while key.touches_asked() < 3 {
        assert!(
            Instant::now() < deadline,
            "add-unlock never opened the vault"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(700));
    key.unplug_key(0);
    std::thread::sleep(Duration::from_millis(700));
    key.plug_key(1);
    let _ = child.stdin.take();
    Run::from(child.wait_with_output().unwrap()).ok();
    assert!(
        key.touches_asked_key(1) >= 1,
        "the backup key made its credential"
    );

    // The backup key alone opens the vault with one touch.
    let asked = key.touches_asked_key(1);
    code(&key, &home);
    assert_eq!(key.touches_asked_key(1) - asked, 1);

    // Two FIDO2 keys plugged in: tapcred will not guess which one to touch.
    key.plug_key(2);
    let r = run(&key, &home, &["code", "--profile", "mfa"], b"");
    fails(&r, 4, &["2 FIDO2 authenticators are plugged in"]);

    // Only a key without the vault's credential: passed over by the silent probe.
    key.unplug_key(1);
    std::thread::sleep(Duration::from_millis(300));
    key.auto_touch_key(2, true);
    let r = run(&key, &home, &["code", "--profile", "mfa"], b"");
    fails(&r, 4, &["cannot open this vault"]);
    assert_eq!(
        key.touches_asked_key(2),
        0,
        "the blank key was asked for a touch"
    );
}

/// python-fido2, an independent client, asks the key for the hmac-secret output of the
/// credential and salt that tapcred's vault records for its FIDO2 unlocker; that output opens
/// the vault, and one bit off does not: tapcred derives exactly what CTAP 2.1's hmac-secret
/// defines (salt encryption and output decryption included), not just something it can repeat.
#[test]
fn python_fido2_gets_the_output_tapcred_unlocks_its_vault_with() {
    use tapcred::vault::{UnlockerKind, VaultFile};
    let test = "python_fido2_gets_the_output_tapcred_unlocks_its_vault_with";
    let Some((dir, key)) = start(test, &[fido_key(41_000_009)]) else {
        return;
    };
    let home = home();
    init_vault(&key, &home, "fido2");
    let bytes = std::fs::read(home.path().join("data/tapcred/vault")).unwrap();
    let file = VaultFile::parse(&bytes).expect("tapcred's vault");
    let desc = file
        .unlocker_descs()
        .find(|d| d.kind == UnlockerKind::Fido2HmacSecret)
        .expect("a FIDO2 unlocker")
        .clone();
    let hex = |b: &[u8]| data_encoding::HEXLOWER.encode(b);
    let judge = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/testkit/judges/fido2_judge.py");
    let o = key
        .command(tapcred_testkit::moto::venv().join("bin/python"))
        .arg(judge)
        .arg("--output")
        .arg(dir.path().join("button"))
        .arg(tapcred::vault::fido2::RP_ID)
        .arg(hex(&desc.credential_id))
        .arg(hex(&desc.challenge[..32]))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let result: serde_json::Value = serde_json::from_slice(&o.stdout).expect("judge JSON");
    let output = data_encoding::HEXLOWER
        .decode(result["output1"].as_str().unwrap().as_bytes())
        .unwrap();
    assert_eq!(output.len(), 32);
    file.open(&desc.id, &output)
        .expect("python-fido2's hmac-secret output opens tapcred's vault");
    let mut off = output.clone();
    off[31] ^= 1;
    assert!(
        file.open(&desc.id, &off).is_err(),
        "any other output is refused"
    );
}
