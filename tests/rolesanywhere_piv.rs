//! IAM Roles Anywhere signed ON the (virtual) YubiKey, end to end, the way a user sets it
//! up: `tapcred piv init --csr` generates the key on the card behind the REAL pcscd, the
//! test CA (Python's `cryptography`, `fixtures/rolesanywhere/pki.py`) issues the
//! certificate, `tapcred piv import` stores it, the STS double trusts that CA as a trust
//! anchor. Then the AWS CLI gets credentials through `credential_process` from a profile
//! naming only the slot and the key's serial:
//!
//! - the double verified the signature against the card's certificate; the card's history
//!   shows the signature was made on the card (GENERAL AUTHENTICATE) and that no answer
//!   ever carried a piece of a private key; the next call is a cache hit without any card
//!   exchange, even with the key pulled out (P-256 in 9a, RSA 2048 in 9c);
//! - `doctor --profile` shows the certificate read from the card and its expiry;
//! - a card certificate issued by an intermediate CA gets a session once the profile names
//!   the chain (`configure --piv-slot … --chain`), and is refused by the double without it;
//! - the PIN comes from `TAPCRED_PIV_PIN`; a wrong one ends with exit 4 and the retries
//!   left, after exactly one VERIFY; touch policy always shows the touch prompt, and a key
//!   nobody touches ends with exit 4.
//!
//! Needs root, pcscd, vsmartcard-vpcd, `$TAPCRED_VENV` (python with cryptography) and the
//! AWS CLI v2. Skips loudly when missing, unless CI=true.
#![cfg(unix)] // runs Linux test stacks; the Windows build is checked by clippy and Wine

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Home, Run, TAPCRED};
use tapcred_testkit::pcsc_stack::{CardHandle, PcscStack};
use tapcred_testkit::sts_double::rolesanywhere::{ProfileSpec, RolesAnywhereSpec, TrustAnchorSpec};
use tapcred_testkit::sts_double::{StsDouble, design};
use tapcred_testkit::virtual_yubikey::{ApduRecord, VirtualYubiKey, VykConfig};

const SERIAL: u32 = 5_550_003;
const ANCHOR: &str = "arn:aws:rolesanywhere:us-east-1:111111111111:trust-anchor/a1b2c3d4-1111-2222-3333-444444444444";
const RA_PROFILE: &str =
    "arn:aws:rolesanywhere:us-east-1:111111111111:profile/b1b2c3d4-1111-2222-3333-444444444444";
const AWS_CLI: &str = "/usr/bin/aws";
/// Seconds the virtual key waits for a touch before it refuses (6982).
const TOUCH_TIMEOUT: Duration = Duration::from_secs(3);

const INS_VERIFY: u8 = 0x20;
const INS_GENERAL_AUTHENTICATE: u8 = 0x87;
const INS_GENERATE: u8 = 0x47;
const INS_PUT_DATA: u8 = 0xDB;

fn venv() -> PathBuf {
    PathBuf::from(std::env::var("TAPCRED_VENV").unwrap_or_else(|_| "/opt/tapcred-venv".into()))
}

fn pem_to_der(pem: &str) -> Vec<u8> {
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    data_encoding::BASE64.decode(b64.as_bytes()).unwrap()
}

/// A real pcscd with one virtual YubiKey, the double serving Roles Anywhere and trusting
/// the test CA in `HOME/pki`, and a HOME whose tapcred finds both.
struct Bench {
    card: Option<CardHandle>,
    stack: PcscStack,
    double: StsDouble,
    home: Home,
    pki: PathBuf,
}

/// The certificate the test CA issued for a slot's key.
struct Issued {
    serial_decimal: String,
    /// YYYY-MM-DD
    not_after: String,
}

impl Bench {
    fn start(test: &str) -> Option<Bench> {
        let python = venv().join("bin/python");
        if !tapcred_testkit::ci::require(
            test,
            "Python's cryptography in the venv (TAPCRED_VENV, default /opt/tapcred-venv)",
            python.is_file(),
        ) || !tapcred_testkit::ci::require(
            test,
            "the AWS CLI v2 at /usr/bin/aws",
            Path::new(AWS_CLI).is_file(),
        ) {
            return None;
        }
        let mut stack = PcscStack::start_or_skip(test)?;
        let card = stack
            .insert(0, Self::new_card())
            .expect("insert the virtual YubiKey");
        let mut home = Home::empty();
        let pki = home.path().join("pki");
        let out = Command::new(&python)
            .arg(Self::pki_script())
            .arg("make")
            .arg(&pki)
            .output()
            .expect("run pki.py");
        assert!(
            out.status.success(),
            "pki.py make: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let double = StsDouble::start_design().expect("start the double");
        double.set_roles_anywhere(RolesAnywhereSpec {
            trust_anchors: vec![TrustAnchorSpec {
                arn: ANCHOR.into(),
                ca_der: pem_to_der(&std::fs::read_to_string(pki.join("ca.pem")).unwrap()),
                enabled: true,
            }],
            profiles: vec![ProfileSpec {
                arn: RA_PROFILE.into(),
                role_arns: vec![design::ROLE_ARN.into()],
                duration_seconds: 3600,
                enabled: true,
            }],
        });
        home.set("AWS_ENDPOINT_URL_ROLESANYWHERE", &double.endpoint())
            .set("TAPCRED_PIV_PIN", "123456");
        Some(Bench {
            card: Some(card),
            stack,
            double,
            home,
            pki,
        })
    }

    fn new_card() -> VirtualYubiKey {
        VirtualYubiKey::new(VykConfig::new().serial(SERIAL).touch_timeout(TOUCH_TIMEOUT))
    }

    fn pki_script() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/rolesanywhere/pki.py")
    }

    fn card(&self) -> &CardHandle {
        self.card.as_ref().expect("the card is in")
    }

    fn file(&self, name: &str) -> String {
        self.home.path().join(name).display().to_string()
    }

    /// `piv init --csr` on the card, the test CA issues the certificate, `piv import`.
    fn enroll(&self, slot: &str, algorithm: &str, touch_policy: &str) -> Issued {
        self.enroll_by(slot, algorithm, touch_policy, "ca")
    }

    /// [`Bench::enroll`] with the certificate issued by `ca` ("ca", or "mid": the
    /// intermediate, imported with its chain).
    fn enroll_by(&self, slot: &str, algorithm: &str, touch_policy: &str, ca: &str) -> Issued {
        let csr = self.file(&format!("{slot}.csr"));
        let t = Instant::now();
        self.home
            .run(&[
                "piv",
                "init",
                "--serial",
                &SERIAL.to_string(),
                "--slot",
                slot,
                "--algorithm",
                algorithm,
                "--touch-policy",
                touch_policy,
                "--subject",
                &format!("CN=alice {slot},O=Example"),
                "--csr",
                &csr,
            ])
            .ok();
        eprintln!("piv init {algorithm} in {slot}: {:?}", t.elapsed());
        let cert = self.file(&format!("{slot}.crt"));
        let out = Command::new(venv().join("bin/python"))
            .arg(Self::pki_script())
            .args(["issue", &self.pki.display().to_string(), &csr, &cert, ca])
            .output()
            .expect("run pki.py issue");
        assert!(
            out.status.success(),
            "pki.py issue: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let printed = String::from_utf8_lossy(&out.stdout).into_owned();
        let (serial_decimal, not_after) = printed.trim().split_once(' ').expect("serial date");
        let chain = self.pki.join("chain.pem").display().to_string();
        let mut import = vec![
            "piv".to_owned(),
            "import".into(),
            "--serial".into(),
            SERIAL.to_string(),
            "--slot".into(),
            slot.into(),
            "--cert".into(),
            cert,
        ];
        if ca == "mid" {
            import.extend(["--chain".into(), chain]);
        }
        let import: Vec<&str> = import.iter().map(String::as_str).collect();
        let run = self.home.run(&import);
        run.ok();
        if ca == "mid" {
            assert!(
                run.stdout.contains("add `tapcred_roles_anywhere_chain = "),
                "{}",
                run.stdout
            );
        }
        Issued {
            serial_decimal: serial_decimal.to_owned(),
            not_after: not_after.to_owned(),
        }
    }

    /// `[profile ra-SLOT]` signing on the card's SLOT, and `[profile work-SLOT]` that the
    /// AWS CLI uses through `credential_process`.
    fn profiles(slots: &[&str]) -> String {
        slots.iter().map(|slot| Bench::profile(slot, "")).collect()
    }

    /// [`Bench::profiles`] for one slot, with `extra` lines in `[profile ra-SLOT]`.
    fn profile(slot: &str, extra: &str) -> String {
        format!(
            "[profile ra-{slot}]\nregion = us-east-1\ntapcred_roles_anywhere_trust_anchor_arn = {ANCHOR}\ntapcred_roles_anywhere_profile_arn = {RA_PROFILE}\nrole_arn = {}\ntapcred_piv_slot = {slot}\ntapcred_piv_serial = {SERIAL}\n{extra}[profile work-{slot}]\nregion = us-east-1\ncredential_process = {TAPCRED} credential-process --profile ra-{slot}\n",
            design::ROLE_ARN
        )
    }

    /// `aws sts get-caller-identity --profile work-SLOT` against the double: the ARN.
    fn aws_caller(&self, slot: &str) -> String {
        let mut c = Command::new(AWS_CLI);
        c.args(["sts", "get-caller-identity", "--output", "json"])
            .args(["--profile", &format!("work-{slot}")])
            .args(["--endpoint-url", &self.double.endpoint()]);
        self.home.prepare(&mut c, &[]);
        c.env("AWS_EC2_METADATA_DISABLED", "true");
        let t = Instant::now();
        let out = c.output().expect("run the AWS CLI");
        eprintln!("aws get-caller-identity (slot {slot}): {:?}", t.elapsed());
        assert!(
            out.status.success(),
            "slot {slot}: aws failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let id: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        id["Arn"].as_str().unwrap().to_owned()
    }

    fn process(&self, slot: &str, extra: &[&str]) -> Run {
        let profile = format!("ra-{slot}");
        let mut args = vec!["credential-process", "--profile", &profile];
        args.extend_from_slice(extra);
        self.home.run(&args)
    }
}

fn count(history: &[ApduRecord], ins: u8) -> usize {
    history.iter().filter(|r| r.ins == ins).count()
}

/// The card signed (one GENERAL AUTHENTICATE for the slot, the last of its chained
/// segments answered with the signature), nothing was generated or written, and no answer
/// held a piece of a private key.
fn signed_on_the_card(history: &[ApduRecord], slot: u8) {
    let signatures: Vec<&ApduRecord> = history
        .iter()
        // Command chaining (CLA bit 0x10) splits an RSA input: count the last segments.
        .filter(|r| r.ins == INS_GENERAL_AUTHENTICATE && r.p2 == slot && r.cla & 0x10 == 0)
        .collect();
    assert_eq!(signatures.len(), 1, "{history:?}");
    // 9000, or 61xx: the rest of the signature follows in GET RESPONSE.
    assert!(
        matches!(signatures[0].sw, Some(sw) if sw == 0x9000 || sw >> 8 == 0x61),
        "{history:?}"
    );
    assert!(signatures[0].reply_len > 0, "{history:?}");
    assert_eq!(count(history, INS_GENERATE), 0, "{history:?}");
    assert_eq!(count(history, INS_PUT_DATA), 0, "{history:?}");
    assert!(
        history.iter().all(|r| !r.reveals_private_key),
        "an answer carried private key material: {history:?}"
    );
}

#[test]
fn aws_cli_gets_credentials_signed_on_the_card_and_doctor_shows_its_certificate() {
    let Some(mut b) = Bench::start(
        "aws_cli_gets_credentials_signed_on_the_card_and_doctor_shows_its_certificate",
    ) else {
        return;
    };
    let slots = [("9a", "p256", 0x9A_u8), ("9c", "rsa2048", 0x9C_u8)];
    let issued: Vec<Issued> = slots
        .iter()
        .map(|(slot, alg, _)| b.enroll(slot, alg, "never"))
        .collect();
    // Every command `piv init`/`import` sent: no answer carried a private key either.
    assert!(
        b.card()
            .vyk()
            .history()
            .iter()
            .all(|r| !r.reveals_private_key),
        "{:?}",
        b.card().vyk().history()
    );
    b.home
        .write_config(&Bench::profiles(&slots.map(|(s, _, _)| s)));

    for (i, ((slot, _, id), cert)) in slots.iter().zip(&issued).enumerate() {
        b.card().vyk().clear_history();
        let before = b.card().vyk().piv_signatures();
        let arn = b.aws_caller(slot);
        assert!(
            arn.starts_with("arn:aws:sts::111111111111:assumed-role/toolkit-role/"),
            "{slot}: {arn}"
        );
        // The double verified the signature against the certificate tapcred read from the
        // card, the one the CA issued for the card's key.
        let stats = b.double.roles_anywhere_stats();
        assert_eq!(stats.ok, i as u64 + 1, "{slot}: {:?}", stats.refused);
        assert!(stats.refused.is_empty(), "{:?}", stats.refused);
        assert_eq!(stats.sessions_for[i], cert.serial_decimal, "{slot}");
        assert_eq!(b.card().vyk().piv_signatures(), before + 1, "{slot}");
        let history = b.card().vyk().history();
        signed_on_the_card(&history, *id);
        // The PIN came from TAPCRED_PIV_PIN and was checked once.
        assert_eq!(count(&history, INS_VERIFY), 1, "{history:?}");

        // The next call: tapcred's cache, not one exchange with the card.
        b.card().vyk().clear_history();
        b.aws_caller(slot);
        assert!(
            b.card().vyk().history().is_empty(),
            "{:?}",
            b.card().vyk().history()
        );
        assert_eq!(b.double.roles_anywhere_stats().ok, i as u64 + 1);
    }

    // `doctor` reads the certificate from the card: subject, serial and expiry.
    for ((slot, _, _), cert) in slots.iter().zip(&issued) {
        let out = b.home.run(&[
            "doctor",
            "--profile",
            &format!("ra-{slot}"),
            "--offline",
            "--json",
        ]);
        let report: serde_json::Value = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("doctor --json ({e}): {} {}", out.stdout, out.stderr));
        let ra: Vec<&serde_json::Value> = report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["area"] == "rolesanywhere")
            .collect();
        let text: Vec<&str> = ra.iter().map(|c| c["message"].as_str().unwrap()).collect();
        assert!(
            text.iter().any(|m| m.contains(&format!(
                "certificate of YubiKey {SERIAL} PIV slot {slot}: subject CN=alice {slot},O=Example"
            )) && m.contains(&format!("serial {}", cert.serial_decimal))
                && m.contains(&format!("valid until {}", cert.not_after))),
            "{text:?}"
        );
        assert!(ra.iter().all(|c| c["status"] == "ok"), "{ra:?}");
        let human = b
            .home
            .run(&["doctor", "--profile", &format!("ra-{slot}"), "--offline"]);
        assert!(
            human
                .stdout
                .contains(&format!("valid until {}", cert.not_after)),
            "{}",
            human.stdout
        );
    }

    // The key pulled out: both profiles are still served, from the cache.
    let card = b.card.take().unwrap();
    let vyk = card.remove();
    for (slot, _, _) in &slots {
        b.aws_caller(slot);
    }
    assert_eq!(b.double.roles_anywhere_stats().ok, slots.len() as u64);
    // Without the cache, the pulled key is said in one line (exit 4).
    b.process("9a", &["--no-cache"]).fails_with(
        4,
        &[
            &format!("YubiKey {SERIAL} (tapcred_piv_serial) is not plugged in"),
            "insert it or change tapcred_piv_serial",
        ],
    );
    b.card = Some(b.stack.insert(0, vyk).expect("re-insert"));
    b.process("9a", &["--no-cache"]).ok();
    assert_eq!(b.double.roles_anywhere_stats().ok, slots.len() as u64 + 1);
}

#[test]
fn a_wrong_pin_is_not_retried_and_an_untouched_key_ends_with_exit_4() {
    let Some(mut b) =
        Bench::start("a_wrong_pin_is_not_retried_and_an_untouched_key_ends_with_exit_4")
    else {
        return;
    };
    // `piv init` signs the request with the new key, which wants a touch.
    b.card()
        .vyk()
        .set_auto_press(Some(Duration::from_millis(50)));
    b.enroll("9a", "p256", "always");
    b.card().vyk().set_auto_press(None);
    b.home.write_config(&Bench::profiles(&["9a"]));

    // A wrong PIN: one VERIFY, exit 4, the retries left; nothing signed, nothing sent.
    b.home.set("TAPCRED_PIV_PIN", "654321");
    b.card().vyk().clear_history();
    let run = b.process("9a", &[]);
    run.fails_with(
        4,
        &[
            &format!("wrong PIV PIN for YubiKey {SERIAL} PIV slot 9a"),
            "2 attempts left",
            "does not retry",
        ],
    );
    assert!(!run.stderr.contains("654321"), "{}", run.stderr);
    let history = b.card().vyk().history();
    assert_eq!(count(&history, INS_VERIFY), 1, "{history:?}");
    assert_eq!(count(&history, INS_GENERAL_AUTHENTICATE), 0, "{history:?}");
    assert_eq!(b.card().vyk().piv_pin_retries(), 2);
    assert_eq!(b.double.roles_anywhere_stats().calls, 0);

    // The right PIN and touch policy always: the touch prompt, a touch, credentials.
    b.home.set("TAPCRED_PIV_PIN", "123456");
    assert_eq!(b.card().vyk().piv_pin_retries(), 2);
    let button = b.card().button();
    let presser = std::thread::spawn(move || button.press_when_requested(Duration::from_secs(20)));
    b.card().vyk().clear_history();
    let run = b.process("9a", &[]);
    assert!(presser.join().unwrap(), "tapcred never asked for the touch");
    run.ok();
    assert!(
        run.stderr.contains(&format!(
            "Touch your YubiKey (YubiKey {SERIAL}) to sign with PIV slot 9a"
        )),
        "{}",
        run.stderr
    );
    assert!(run.stdout.contains("\"AccessKeyId\""), "{}", run.stdout);
    signed_on_the_card(&b.card().vyk().history(), 0x9A);
    assert_eq!(
        b.card().vyk().piv_pin_retries(),
        3,
        "the right PIN resets them"
    );
    assert_eq!(b.double.roles_anywhere_stats().ok, 1);

    // Nobody touches: the key gives up after its timeout, tapcred says so (exit 4), and
    // nothing is sent.
    let t = Instant::now();
    let run = b.process("9a", &["--no-cache"]);
    eprintln!("untouched: {:?}", t.elapsed());
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    let lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert!(
        lines.iter().any(|l| l.contains("Touch your YubiKey")),
        "{lines:?}"
    );
    let errors: Vec<&&str> = lines.iter().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "{lines:?}");
    assert!(errors[0].contains("was not touched in time"), "{lines:?}");
    assert!(t.elapsed() < TOUCH_TIMEOUT + Duration::from_secs(10));
    assert_eq!(b.double.roles_anywhere_stats().calls, 1);
}

#[test]
fn a_card_certificate_from_an_intermediate_ca_is_sent_with_its_chain() {
    let Some(b) = Bench::start("a_card_certificate_from_an_intermediate_ca_is_sent_with_its_chain")
    else {
        return;
    };
    // The trust anchor holds the root; the card's certificate comes from the intermediate,
    // so CreateSession must carry the intermediate (X-Amz-X509-Chain).
    let issued = b.enroll_by("9a", "p256", "never", "mid");
    let chain = b.pki.join("chain.pem");
    // Without the chain the double cannot link the certificate to the anchor.
    b.home.write_config(&Bench::profile("9a", ""));
    b.process("9a", &[])
        .fails_with(5, &["profile \"ra-9a\"", "Untrusted signing certificate"]);
    // `configure` adds the chain to the PIV profile (the card holds only the certificate).
    b.home
        .run(&[
            "configure",
            "--profile",
            "ra-9a",
            "--trust-anchor-arn",
            ANCHOR,
            "--roles-anywhere-profile",
            RA_PROFILE,
            "--role-arn",
            design::ROLE_ARN,
            "--piv-slot",
            "9a",
            "--piv-serial",
            &SERIAL.to_string(),
            "--chain",
            &chain.display().to_string(),
        ])
        .ok();
    let config = std::fs::read_to_string(b.home.config_path()).unwrap();
    assert!(
        config.contains(&format!(
            "tapcred_roles_anywhere_chain = {}\n",
            chain.display()
        )) && config.contains("tapcred_piv_slot = 9a\n"),
        "{config}"
    );
    b.card().vyk().clear_history();
    let arn = b.aws_caller("9a");
    assert!(arn.contains("assumed-role/toolkit-role/"), "{arn}");
    let stats = b.double.roles_anywhere_stats();
    assert_eq!(stats.ok, 1, "{:?}", stats.refused);
    assert_eq!(stats.sessions_for[0], issued.serial_decimal);
    signed_on_the_card(&b.card().vyk().history(), 0x9A);
}
