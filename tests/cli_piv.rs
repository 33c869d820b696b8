//! `tapcred piv init | import | status` against the virtual YubiKey behind the REAL pcscd,
//! judged by ykman (it reads back the key and the certificate tapcred put on the card) and by
//! Python's `cryptography`, which checks the certificate request's signature and plays the
//! user's CA. A run killed between generating the key and writing the request is found by
//! `doctor` and finished by the next `piv init` with the same key.
//!
//! Needs root, pcscd, vsmartcard-vpcd and `$TAPCRED_VENV`. Skips loudly unless CI=true.
#![cfg(unix)] // runs Linux test stacks (or Unix-only APIs); the Windows build is checked by clippy and Wine

mod common;
use common::Home;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use tapcred_testkit::pcsc_stack::{CardHandle, PcscStack};
use tapcred_testkit::virtual_yubikey::{VirtualYubiKey, VykConfig};

const SERIAL: u32 = 5_550_002;

fn venv() -> PathBuf {
    PathBuf::from(std::env::var("TAPCRED_VENV").unwrap_or_else(|_| "/opt/tapcred-venv".into()))
}

struct Bench {
    card: CardHandle,
    home: Home,
    _stack: PcscStack,
}

impl Bench {
    fn start(test: &str) -> Option<Bench> {
        if !venv().join("bin/ykman").is_file() {
            tapcred_testkit::ci::skip(test, "ykman is missing (set TAPCRED_VENV)");
            return None;
        }
        let mut stack = PcscStack::start_or_skip(test)?;
        let card = stack
            .insert(
                0,
                VirtualYubiKey::new(
                    VykConfig::new()
                        .serial(SERIAL)
                        .touch_timeout(Duration::from_secs(4)),
                ),
            )
            .expect("insert the virtual YubiKey");
        let mut home = Home::empty();
        home.set("TAPCRED_PIV_PIN", "123456");
        Some(Bench {
            card,
            home,
            _stack: stack,
        })
    }

    fn file(&self, name: &str) -> String {
        self.home.path().join(name).display().to_string()
    }

    fn ykman(&self, args: &[&str]) -> String {
        let out = Command::new(venv().join("bin/ykman"))
            .arg("--reader")
            .arg(self.card.reader_name())
            .args(args)
            .env("HOME", self.home.path())
            .stdin(Stdio::null())
            .output()
            .expect("run ykman");
        assert!(
            out.status.success(),
            "ykman {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// Run a Python script with the venv's interpreter; it must succeed. Returns stdout.
fn python(script: &str, args: &[&str]) -> String {
    let out: Output = Command::new(venv().join("bin/python"))
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Checks the request's signature and that its key is the one in `public_pem`; then signs
/// it as a CA (a fresh P-256 CA key), writing the certificate to `cert_out`. Prints the
/// request's subject.
const CA: &str = r#"
import sys, datetime
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
csr = x509.load_pem_x509_csr(open(sys.argv[1], "rb").read())
assert csr.is_signature_valid, "the request's signature does not verify"
pub = serialization.load_pem_public_key(open(sys.argv[2], "rb").read())
der = lambda k: k.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
assert der(csr.public_key()) == der(pub), "the request is for another key than the slot's"
ca_key = ec.generate_private_key(ec.SECP256R1())
ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
now = datetime.datetime.now(datetime.timezone.utc)
cert = (x509.CertificateBuilder().subject_name(csr.subject).issuer_name(ca_name)
    .public_key(csr.public_key()).serial_number(0x1234abcd)
    .not_valid_before(now - datetime.timedelta(minutes=1))
    .not_valid_after(now + datetime.timedelta(days=90))
    .sign(ca_key, hashes.SHA256()))
open(sys.argv[3], "wb").write(cert.public_bytes(serialization.Encoding.PEM))
print(csr.subject.rfc4514_string())
"#;

#[test]
fn piv_init_import_status_judged_by_ykman_and_python() {
    let Some(b) = Bench::start("piv_init_import_status_judged_by_ykman_and_python") else {
        return;
    };
    let serial = SERIAL.to_string();
    for (slot, algorithm, ykman_type, ours) in [
        ("9a", "p256", "ECCP256", "ECDSA P-256"),
        ("9c", "p384", "ECCP384", "ECDSA P-384"),
        ("9d", "rsa2048", "RSA2048", "RSA 2048"),
    ] {
        let csr = b.file(&format!("{slot}.csr"));
        let t = std::time::Instant::now();
        let run = b.home.run(&[
            "piv",
            "init",
            "--serial",
            &serial,
            "--slot",
            slot,
            "--algorithm",
            algorithm,
            "--subject",
            &format!("CN=alice {slot},O=Example"),
            "--csr",
            &csr,
        ]);
        run.ok();
        eprintln!("piv init {algorithm}: {:?}", t.elapsed());
        assert!(
            run.stdout.contains(&format!("generated a {ours} key")),
            "{}",
            run.stdout
        );
        // ykman reads the key tapcred generated; Python checks the request against it.
        let public = b.file(&format!("{slot}.pub"));
        b.ykman(&["piv", "keys", "export", slot, &public]);
        let info = b.ykman(&["piv", "keys", "info", slot]);
        assert!(info.contains(ykman_type), "{info}");
        let cert = b.file(&format!("{slot}.crt"));
        let subject = python(CA, &[&csr, &public, &cert]);
        assert_eq!(subject, format!("CN=alice {slot},O=Example"));
        b.home
            .run(&["piv", "import", "--slot", slot, "--cert", &cert])
            .ok();
        // ykman reads the certificate back from the slot.
        let info = b.ykman(&["piv", "info"]);
        assert!(info.contains(&format!("CN=alice {slot}")), "{info}");
        let back = b.file(&format!("{slot}.back.crt"));
        b.ykman(&["piv", "certificates", "export", slot, &back]);
        assert_eq!(
            std::fs::read_to_string(&back).unwrap().trim(),
            std::fs::read_to_string(&cert).unwrap().trim()
        );
    }
    let status = b.home.run(&["piv", "status", "--json"]);
    status.ok();
    let doc = status.json();
    assert_eq!(doc["serial"], SERIAL);
    let slots = doc["slots"].as_array().unwrap();
    assert_eq!(slots.len(), 3, "{doc}");
    assert_eq!(slots[0]["slot"], "9a");
    assert_eq!(slots[0]["algorithm"], "ECDSA P-256");
    assert_eq!(slots[0]["serial"], "1234abcd");
    assert!(
        slots[0]["subject"]
            .as_str()
            .unwrap()
            .contains("CN=alice 9a")
    );
    assert!(slots[0]["not_after"].as_str().is_some());
    let text = b.home.run(&["piv", "status"]);
    text.ok();
    assert!(text.stdout.contains("slot 9d: RSA 2048"), "{}", text.stdout);

    // Refusals: a certificate for another key; a slot that already holds a key; a
    // management key that is not the card's.
    b.home
        .run(&["piv", "import", "--slot", "9a", "--cert", &b.file("9c.crt")])
        .fails_with(2, &["is for another key than the one in", "slot 9a"]);
    b.home
        .run(&["piv", "init", "--slot", "9a", "--csr", &b.file("again.csr")])
        .fails_with(2, &["already holds a ECDSA P-256 key", "never replaces"]);
    assert!(!Path::new(&b.file("again.csr")).exists());
    let mut other = Home::empty();
    other
        .set("TAPCRED_PIV_PIN", "123456")
        .set("TAPCRED_PIV_MANAGEMENT_KEY", &"11".repeat(24));
    other
        .run(&["piv", "init", "--slot", "9e", "--csr", &b.file("9e.csr")])
        .fails_with(
            4,
            &[
                "refused the PIV management key",
                "TAPCRED_PIV_MANAGEMENT_KEY",
            ],
        );
    other.set("TAPCRED_PIV_MANAGEMENT_KEY", "0102");
    other
        .run(&["piv", "init", "--slot", "9e", "--csr", &b.file("9e.csr")])
        .fails_with(2, &["TAPCRED_PIV_MANAGEMENT_KEY must be", "48 hex digits"]);
    assert_eq!(b.card.vyk().piv_key_algorithm(0x9E), None);
}

#[test]
fn piv_init_killed_after_generating_is_found_by_doctor_and_finished_with_the_same_key() {
    let Some(b) = Bench::start(
        "piv_init_killed_after_generating_is_found_by_doctor_and_finished_with_the_same_key",
    ) else {
        return;
    };
    let csr = b.file("req.csr");
    let args = [
        "piv",
        "init",
        "--slot",
        "9a",
        "--touch-policy",
        "always",
        "--csr",
        &csr,
    ];
    // The request's signature waits for a touch: the key exists, the request does not.
    let mut child = b
        .home
        .cmd(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        b.card
            .button()
            .wait_for_touch_request(Duration::from_secs(60)),
        "init never reached the signature"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!Path::new(&csr).exists());
    assert!(b.card.vyk().piv_key_algorithm(0x9A).is_some());
    let public = b.file("9a.pub");
    // The card gives up on the touch first (4 s), then ykman reads the key.
    std::thread::sleep(Duration::from_secs(5));
    b.ykman(&["piv", "keys", "export", "9a", &public]);
    let doctor = b.home.run(&["doctor"]);
    let all = format!("{}{}", doctor.stdout, doctor.stderr);
    assert!(
        all.contains("interrupted change: piv-init") && all.contains("9a"),
        "{all}"
    );
    // The next run writes the request for the key that is there (no second key).
    b.card.vyk().set_auto_press(Some(Duration::from_millis(50)));
    let run = b.home.run(&args);
    run.ok();
    assert!(
        run.stderr.contains("finishing an interrupted"),
        "{}",
        run.stderr
    );
    let cert = b.file("9a.crt");
    python(CA, &[&csr, &public, &cert]);
    let doctor = b.home.run(&["doctor"]);
    assert!(
        !format!("{}{}", doctor.stdout, doctor.stderr).contains("piv-init"),
        "the journal is closed"
    );
}
