//! The PIV side through the REAL pcscd (vpcd in a private network namespace): Yubico's
//! ykman judges the virtual PIV applet (keys generate, certificates generate/import/export,
//! `piv info`), tapcred's `token::piv` signs with the keys ykman made, and Python's
//! `cryptography` (not tapcred, not the testkit) verifies those signatures against the
//! certificate. Then the failures: wrong PIN, blocked PIN, a key pulled mid-signature, a
//! key that goes silent.
//!
//! Needs root, pcscd, vsmartcard-vpcd and `$TAPCRED_VENV` (ykman, python with
//! cryptography). Skips loudly when missing, unless CI=true.
#![cfg(unix)] // runs Linux test stacks (or Unix-only APIs); the Windows build is checked by clippy and Wine

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use tapcred::ErrorKind;
use tapcred::token::piv::{self, Deadlines, PivKeyRef};
use tapcred::token::x509::{CertificateSigner, KeyAlgorithm};
use tapcred::ui::{RecordingUi, UiEvent};
use tapcred_testkit::pcsc_stack::{CardHandle, PcscStack};
use tapcred_testkit::virtual_yubikey::{Fault, VirtualYubiKey, VykConfig};

const MGMT: &str = "010203040506070801020304050607080102030405060708";
const SERIAL: u32 = 5_550_001;

fn venv() -> PathBuf {
    PathBuf::from(std::env::var("TAPCRED_VENV").unwrap_or_else(|_| "/opt/tapcred-venv".into()))
}

/// A real pcscd with one virtual YubiKey, a private HOME for ykman and tapcred.
struct Bench {
    card: Option<CardHandle>,
    home: tempfile::TempDir,
    _stack: PcscStack,
}

impl Bench {
    fn start(test: &str) -> Option<Bench> {
        if !venv().join("bin/ykman").is_file() {
            tapcred_testkit::ci::skip(
                test,
                &format!(
                    "ykman is missing in {} (set TAPCRED_VENV)",
                    venv().display()
                ),
            );
            return None;
        }
        let mut stack = PcscStack::start_or_skip(test)?;
        let card = stack
            .insert(
                0,
                VirtualYubiKey::new(
                    VykConfig::new()
                        .serial(SERIAL)
                        .touch_timeout(Duration::from_secs(5)),
                ),
            )
            .expect("insert the virtual YubiKey");
        Some(Bench {
            card: Some(card),
            home: tempfile::tempdir().unwrap(),
            _stack: stack,
        })
    }

    fn card(&self) -> &CardHandle {
        self.card.as_ref().expect("the card is in")
    }

    fn path(&self, name: &str) -> String {
        self.home.path().join(name).display().to_string()
    }

    /// `ykman --reader <the card> ARGS…`, killed after 60 s.
    fn ykman(&self, args: &[&str]) -> Output {
        let reader = self.card().reader_name();
        let mut child = Command::new(venv().join("bin/ykman"))
            .arg("--reader")
            .arg(&reader)
            .args(args)
            .env("HOME", self.home.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run ykman");
        let deadline = Instant::now() + Duration::from_secs(60);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("ykman {args:?} hung for 60 s");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        child.wait_with_output().unwrap()
    }

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

    /// ykman generates a key in `slot` and a self-signed certificate for it (signed by the
    /// card), then exports the certificate. Returns the certificate's PEM path.
    fn ykman_key(&self, slot: &str, algorithm: &str, touch: &str) -> String {
        let public = self.path(&format!("{slot}-public.pem"));
        let cert = self.path(&format!("{slot}-cert.pem"));
        self.ok(&[
            "piv",
            "keys",
            "generate",
            "-m",
            MGMT,
            "-a",
            algorithm,
            "--touch-policy",
            touch,
            slot,
            &public,
        ]);
        if touch != "NEVER" {
            self.card()
                .vyk()
                .set_auto_press(Some(Duration::from_millis(50)));
        }
        self.ok(&[
            "piv",
            "certificates",
            "generate",
            "-m",
            MGMT,
            "-P",
            "123456",
            "-s",
            &format!("CN=tapcred {slot}"),
            slot,
            &public,
        ]);
        self.card().vyk().set_auto_press(None);
        self.ok(&["piv", "certificates", "export", slot, &cert]);
        cert
    }

    fn env(&self, pin: Option<&str>) -> HashMap<String, String> {
        let mut env = HashMap::new();
        env.insert("HOME".to_owned(), self.home.path().display().to_string());
        if let Some(p) = pin {
            env.insert(piv::PIN_ENV.to_owned(), p.to_owned());
        }
        env
    }
}

/// Python's `cryptography` verifies `signature` over `message` with the certificate's public
/// key (ECDSA-SHA256 or PKCS#1 v1.5 SHA-256), and that the certificate is self-signed
/// correctly. Prints the key type.
fn python_verifies(cert_der: &[u8], message: &[u8], signature: &[u8]) -> String {
    python_check(cert_der, message, signature).unwrap_or_else(|e| panic!("{e}"))
}

fn python_check(cert_der: &[u8], message: &[u8], signature: &[u8]) -> Result<String, String> {
    let dir = tempfile::tempdir().unwrap();
    let (c, m, s) = (
        dir.path().join("cert.der"),
        dir.path().join("msg"),
        dir.path().join("sig"),
    );
    std::fs::write(&c, cert_der).unwrap();
    std::fs::write(&m, message).unwrap();
    std::fs::write(&s, signature).unwrap();
    let script = r#"
import sys
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
cert = x509.load_der_x509_certificate(open(sys.argv[1], "rb").read())
msg = open(sys.argv[2], "rb").read()
sig = open(sys.argv[3], "rb").read()
key = cert.public_key()
if isinstance(key, ec.EllipticCurvePublicKey):
    key.verify(sig, msg, ec.ECDSA(hashes.SHA256()))
    print("ec", key.curve.name)
else:
    key.verify(sig, msg, padding.PKCS1v15(), hashes.SHA256())
    print("rsa", key.key_size)
cert.verify_directly_issued_by(cert)
"#;
    let out = Command::new(venv().join("bin/python"))
        .arg("-c")
        .arg(script)
        .arg(&c)
        .arg(&m)
        .arg(&s)
        .output()
        .expect("run python");
    if !out.status.success() {
        return Err(format!(
            "python rejects the signature: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn quick() -> Deadlines {
    Deadlines {
        quick: Duration::from_secs(3),
        touch: Duration::from_secs(8),
        generate: Duration::from_secs(120),
    }
}

fn key_ref(slot: &str) -> PivKeyRef {
    PivKeyRef {
        serial: Some(SERIAL),
        slot: slot.parse().unwrap(),
    }
}

#[test]
fn ykman_judges_the_piv_applet_and_python_verifies_tapcred_signatures() {
    let Some(b) =
        Bench::start("ykman_judges_the_piv_applet_and_python_verifies_tapcred_signatures")
    else {
        return;
    };
    let info = b.ok(&["piv", "info"]);
    assert!(info.contains("PIV version:              5.4.3"), "{info}");
    assert!(info.contains("PIN tries remaining:      3/3"), "{info}");

    for (slot, algorithm, ours, curve) in [
        ("9a", "ECCP256", KeyAlgorithm::EcdsaP256, "ec secp256r1"),
        ("9c", "ECCP384", KeyAlgorithm::EcdsaP384, "ec secp384r1"),
        ("9d", "RSA2048", KeyAlgorithm::Rsa2048, "rsa 2048"),
    ] {
        let t = Instant::now();
        let cert_pem = b.ykman_key(slot, algorithm, "NEVER");
        eprintln!(
            "{algorithm} in {slot}: ykman generate + certify + export {:?}",
            t.elapsed()
        );
        // ykman's certificate was signed by the card: Python checks it below.
        // tapcred signs with the same key, Python verifies with the certificate's key.
        let signer = piv::open_signer_with(&key_ref(slot), &b.env(Some("123456")), quick())
            .expect("open the PIV signer");
        assert_eq!(signer.algorithm(), ours);
        assert_eq!(
            signer.describe(),
            format!("YubiKey {SERIAL} PIV slot {slot}")
        );
        let pem = std::fs::read_to_string(&cert_pem).unwrap();
        assert!(pem.contains("BEGIN CERTIFICATE"));
        let ui = RecordingUi::new();
        let before = b.card().vyk().piv_signatures();
        let message = format!("CreateSession string to sign for slot {slot}");
        let signature = signer
            .sign_sha256(message.as_bytes(), &ui)
            .expect("sign on the card");
        assert_eq!(b.card().vyk().piv_signatures(), before + 1);
        assert_eq!(
            python_verifies(signer.certificate_der(), message.as_bytes(), &signature),
            curve
        );
        // A different message does not verify with that signature (the judge can fail).
        assert!(
            python_check(signer.certificate_der(), b"another message", &signature).is_err(),
            "a signature must not verify another message"
        );
        // The PIN came from TAPCRED_PIV_PIN: nothing was asked.
        assert!(
            !ui.events()
                .iter()
                .any(|e| matches!(e, UiEvent::AskSecret(_))),
            "{:?}",
            ui.events()
        );
    }
    // ykman re-imports an exported certificate (it checks the key matches by signing).
    b.ok(&[
        "piv",
        "certificates",
        "import",
        "-m",
        MGMT,
        "-P",
        "123456",
        "9a",
        &b.path("9a-cert.pem"),
    ]);
    let info = b.ok(&["piv", "info"]);
    for (slot, key_type) in [("9A", "ECCP256"), ("9C", "ECCP384"), ("9D", "RSA2048")] {
        assert!(info.contains(&format!("Slot {slot}")), "{info}");
        assert!(info.contains(key_type), "{info}");
    }
    assert!(info.contains("CN=tapcred 9a"), "{info}");
    // The private keys never left the card: no command gave them out, and the card's
    // objects hold certificates only.
    assert!(b.card().vyk().piv_object(0x5FC105).is_some());
}

#[test]
fn a_wrong_pin_stops_with_the_retries_left_and_is_never_retried() {
    let Some(b) = Bench::start("a_wrong_pin_stops_with_the_retries_left_and_is_never_retried")
    else {
        return;
    };
    b.ykman_key("9a", "ECCP256", "NEVER");
    // The PIN typed at the prompt (no TAPCRED_PIV_PIN): wrong once.
    let signer = piv::open_signer_with(&key_ref("9a"), &b.env(None), quick()).unwrap();
    let ui = RecordingUi::new();
    ui.secrets
        .lock()
        .unwrap()
        .extend(["654321".to_owned(), "123456".to_owned()]);
    let e = signer.sign_sha256(b"m", &ui).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Token);
    assert_eq!(e.exit_code(), 4);
    assert!(
        e.message().contains(&format!(
            "wrong PIV PIN for YubiKey {SERIAL} PIV slot 9a: 2 attempts left"
        )),
        "{e}"
    );
    // Asked once; the second queued PIN was not used.
    let asked = ui
        .events()
        .iter()
        .filter(|e| matches!(e, UiEvent::AskSecret(_)))
        .count();
    assert_eq!(asked, 1);
    assert_eq!(b.card().vyk().piv_pin_retries(), 2);
    assert!(!e.message().contains("654321"), "the PIN is never printed");
    // Two more wrong PINs (from the environment) block it; then even the right PIN is refused.
    for left in ["1 attempt left", "blocked"] {
        let s = piv::open_signer_with(&key_ref("9a"), &b.env(Some("000000")), quick()).unwrap();
        let e = s.sign_sha256(b"m", &RecordingUi::new()).unwrap_err();
        assert!(e.message().contains(left), "{e}");
    }
    let s = piv::open_signer_with(&key_ref("9a"), &b.env(Some("123456")), quick()).unwrap();
    let e = s.sign_sha256(b"m", &RecordingUi::new()).unwrap_err();
    assert!(
        e.message().contains("is blocked") && e.message().contains("unblock-pin"),
        "{e}"
    );
    assert_eq!(
        b.card().vyk().piv_signatures(),
        1,
        "only ykman's certificate"
    );
}

#[test]
fn touch_prompt_key_pulled_mid_signature_and_a_silent_key() {
    let Some(mut b) = Bench::start("touch_prompt_key_pulled_mid_signature_and_a_silent_key") else {
        return;
    };
    b.ykman_key("9a", "ECCP256", "ALWAYS");
    // Touch policy always: the prompt shows, the button is pressed, the signature is made.
    let signer = piv::open_signer_with(&key_ref("9a"), &b.env(Some("123456")), quick()).unwrap();
    let button = b.card().button();
    let mut ui = RecordingUi::new();
    ui.on_touch = Some(Box::new(move || {
        let button = button.clone();
        std::thread::spawn(move || button.press_when_requested(Duration::from_secs(5)));
    }));
    let sig = signer
        .sign_sha256(b"touched", &ui)
        .expect("sign after touch");
    python_verifies(signer.certificate_der(), b"touched", &sig);
    let ev = ui.events();
    assert!(
        matches!(&ev[..], [UiEvent::TouchWait(m), UiEvent::TouchDone(true)] if m.contains(&format!("YubiKey {SERIAL}")) && m.contains("slot 9a")),
        "{ev:?}"
    );
    // Nobody touches: the key gives up (6982) and tapcred says so.
    let e = signer
        .sign_sha256(b"untouched", &RecordingUi::new())
        .unwrap_err();
    assert!(e.message().contains("was not touched in time"), "{e}");
    // A key that takes the command and never answers: the deadline ends it.
    let signer = piv::open_signer_with(&key_ref("9a"), &b.env(Some("123456")), quick()).unwrap();
    b.card().vyk().inject(Fault::Delay(Duration::from_secs(6)));
    let t = Instant::now();
    let e = signer
        .sign_sha256(b"silent", &RecordingUi::new())
        .unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(e.message().contains("did not answer within 3 s"), "{e}");
    // The slow card finishes its command before the next part.
    std::thread::sleep(Duration::from_secs(4));
    // The key pulled out of its reader while it waits for the touch.
    let card = b.card.take().unwrap();
    let vyk = card.vyk().clone();
    let puller = std::thread::spawn(move || {
        assert!(vyk.button().wait_for_touch_request(Duration::from_secs(5)));
        drop(card.remove());
    });
    let signer = piv::open_signer_with(&key_ref("9a"), &b.env(Some("123456")), quick()).unwrap();
    let e = signer
        .sign_sha256(b"pulled", &RecordingUi::new())
        .unwrap_err();
    puller.join().unwrap();
    assert_eq!(e.kind, ErrorKind::Token);
    assert!(e.message().contains("was removed"), "{e}");
}
