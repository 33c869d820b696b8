//! IAM Roles Anywhere with a certificate and key file (the headless path), end to end
//! against the STS double's Roles Anywhere service, which verifies the signature against
//! the certificate, the chain against the trust anchor, the clock skew, and the trust
//! anchor, profile and role:
//!
//! - the AWS CLI gets credentials through `credential_process` for P-256 (PKCS#8, a serial
//!   above 2^64), P-384 (SEC1) and RSA 2048 (PKCS#1) keys, and through an intermediate CA
//!   (the chain file); the second call is served from tapcred's cache;
//! - an independent signer (Python's `cryptography`, `fixtures/rolesanywhere/pki.py`)
//!   signs the same request: the double accepts it, and tapcred's canonical request and
//!   string to sign equal Python's for the same inputs; a changed body is refused;
//! - failures: an expired certificate, a certificate of another CA, clock skew, a key file
//!   others can read, a key that does not belong to the certificate, the endpoint down.
//!
//! The certificates are made by Python's `cryptography` (the venv, `TAPCRED_VENV`): skips
//! loudly without it, unless CI=true.
#![cfg(unix)] // key-file modes; the Windows ACL words are the platform layer's own tests

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Home, Run, TAPCRED};
use tapcred_testkit::sts_double::rolesanywhere::{ProfileSpec, RolesAnywhereSpec, TrustAnchorSpec};
use tapcred_testkit::sts_double::{Fault, StsDouble, design};

const ANCHOR: &str = "arn:aws:rolesanywhere:us-east-1:111111111111:trust-anchor/a1b2c3d4-1111-2222-3333-444444444444";
const RA_PROFILE: &str =
    "arn:aws:rolesanywhere:us-east-1:111111111111:profile/b1b2c3d4-1111-2222-3333-444444444444";
const AWS_CLI: &str = "/usr/bin/aws";

fn python() -> PathBuf {
    let venv = std::env::var("TAPCRED_VENV").unwrap_or_else(|_| "/opt/tapcred-venv".into());
    Path::new(&venv).join("bin/python")
}

fn pki_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/rolesanywhere/pki.py")
}

/// The double serving Roles Anywhere, a HOME, and the test PKI in `HOME/pki`.
struct Setup {
    double: StsDouble,
    home: Home,
    pki: PathBuf,
}

fn setup(test: &str) -> Option<Setup> {
    if !tapcred_testkit::ci::require(
        test,
        "Python's cryptography in the venv (TAPCRED_VENV, default /opt/tapcred-venv)",
        python().is_file(),
    ) {
        return None;
    }
    let mut home = Home::empty();
    let pki = home.path().join("pki");
    let out = Command::new(python())
        .arg(pki_script())
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
    home.set("AWS_ENDPOINT_URL_ROLESANYWHERE", &double.endpoint());
    Some(Setup { double, home, pki })
}

fn pem_to_der(pem: &str) -> Vec<u8> {
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    data_encoding::BASE64.decode(b64.as_bytes()).unwrap()
}

impl Setup {
    /// `[profile NAME]` signing with `CERT`.pem / `KEY`.key (and the chain file).
    fn profile(&self, name: &str, cert: &str, key: &str, chain: bool) -> String {
        let mut s = format!(
            "[profile {name}]\nregion = us-east-1\ntapcred_roles_anywhere_trust_anchor_arn = {ANCHOR}\ntapcred_roles_anywhere_profile_arn = {RA_PROFILE}\nrole_arn = {}\ntapcred_roles_anywhere_certificate = {}\ntapcred_roles_anywhere_private_key = {}\n",
            design::ROLE_ARN,
            self.pki.join(format!("{cert}.pem")).display(),
            self.pki.join(format!("{key}.key")).display(),
        );
        if chain {
            s.push_str(&format!(
                "tapcred_roles_anywhere_chain = {}\n",
                self.pki.join("chain.pem").display()
            ));
        }
        s
    }

    fn process(&self, profile: &str) -> Run {
        self.home.run(&["credential-process", "--profile", profile])
    }
}

#[test]
fn aws_cli_gets_credentials_from_key_files() {
    let Some(s) = setup("aws_cli_gets_credentials_from_key_files") else {
        return;
    };
    let cli = Path::new(AWS_CLI).is_file();
    if !tapcred_testkit::ci::require(
        "aws_cli_gets_credentials_from_key_files",
        "the AWS CLI v2 at /usr/bin/aws",
        cli,
    ) {
        return;
    }
    let cases = [
        ("p256", "p256", false),
        ("p384", "p384", false),
        ("rsa2048", "rsa2048", false),
        ("via-mid", "via-mid", true),
    ];
    let mut config = String::new();
    for (cert, key, chain) in cases {
        config.push_str(&s.profile(&format!("ra-{cert}"), cert, key, chain));
        config.push_str(&format!(
            "[profile work-{cert}]\nregion = us-east-1\ncredential_process = {TAPCRED} credential-process --profile ra-{cert}\n"
        ));
    }
    s.home.write_config(&config);
    for (i, (cert, _, _)) in cases.iter().enumerate() {
        for attempt in 0..2 {
            let mut c = Command::new(AWS_CLI);
            c.args(["sts", "get-caller-identity", "--output", "json"])
                .args(["--profile", &format!("work-{cert}")])
                .args(["--endpoint-url", &s.double.endpoint()]);
            s.home.prepare(&mut c, &[]);
            c.env("AWS_EC2_METADATA_DISABLED", "true");
            let out = c.output().expect("run the AWS CLI");
            assert!(
                out.status.success(),
                "{cert}: aws failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let id: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let arn = id["Arn"].as_str().unwrap();
            assert!(
                arn.starts_with("arn:aws:sts::111111111111:assumed-role/toolkit-role/"),
                "{cert} (attempt {attempt}): {arn}"
            );
            // One CreateSession per certificate: the second call is tapcred's cache.
            assert_eq!(s.double.roles_anywhere_stats().ok, i as u64 + 1, "{cert}");
        }
    }
    // Above the engine nothing changes: `export` and `exec` get the cached session.
    let out = s.home.run(&["export", "--profile", "ra-p256"]);
    out.ok();
    assert!(out.stdout.contains("AWS_SESSION_TOKEN"), "{}", out.stdout);
    s.home
        .run(&[
            "exec",
            "--profile",
            "ra-rsa2048",
            "--",
            "sh",
            "-c",
            "test -n \"$AWS_ACCESS_KEY_ID\"",
        ])
        .ok();
    let stats = s.double.roles_anywhere_stats();
    assert_eq!(
        stats.ok,
        cases.len() as u64,
        "export and exec were served from the cache"
    );
    assert!(stats.refused.is_empty(), "{:?}", stats.refused);
    assert_eq!(
        stats.sessions_for[0],
        // 2^150 + 12345, as pki.py sets it.
        "1427247692705959881058285969449495136382758969",
        "the P-256 leaf's big serial, in decimal, keyed the scope"
    );
}

/// POST the Python-signed request to the double; the status and body.
fn send_signed(endpoint: &str, headers: &serde_json::Value, body: &str) -> (u16, String) {
    let addr = endpoint.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let mut req = String::from("POST /sessions HTTP/1.1\r\n");
    for (k, v) in headers.as_object().unwrap() {
        req.push_str(&format!("{k}: {}\r\n", v.as_str().unwrap()));
    }
    req.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    ));
    stream.write_all(req.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer[9..12].parse().unwrap();
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn independent_signature_verifies_and_strings_match_tapcreds() {
    use tapcred::rolesanywhere::sign::{Input, amz_date};
    use tapcred::token::certificate::CertificateFacts;
    use tapcred::token::x509::KeyAlgorithm;
    let Some(s) = setup("independent_signature_verifies_and_strings_match_tapcreds") else {
        return;
    };
    let body = format!(
        r#"{{"durationSeconds":3600,"profileArn":"{RA_PROFILE}","roleArn":"{}","trustAnchorArn":"{ANCHOR}"}}"#,
        design::ROLE_ARN
    );
    let host = s.double.endpoint().trim_start_matches("http://").to_owned();
    let now = time::OffsetDateTime::now_utc();
    let date = amz_date(now);
    for (cert, alg, chain) in [
        ("p256", KeyAlgorithm::EcdsaP256, false),
        ("p384", KeyAlgorithm::EcdsaP384, false),
        ("rsa2048", KeyAlgorithm::Rsa2048, false),
        ("via-mid", KeyAlgorithm::EcdsaP256, true),
    ] {
        let mut c = Command::new(python());
        c.arg(pki_script())
            .arg("sign")
            .arg(s.pki.join(format!("{cert}.key")))
            .arg(s.pki.join(format!("{cert}.pem")))
            .args(["us-east-1", &date, &host, "/sessions", &body]);
        if chain {
            c.arg(s.pki.join("chain.pem"));
        }
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let py: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

        // tapcred's strings for the same inputs.
        let der = pem_to_der(&std::fs::read_to_string(s.pki.join(format!("{cert}.pem"))).unwrap());
        let facts = CertificateFacts::from_der(&der).unwrap();
        let x509 = data_encoding::BASE64.encode(&der);
        let chain_b64 = chain.then(|| {
            data_encoding::BASE64.encode(&pem_to_der(
                &std::fs::read_to_string(s.pki.join("chain.pem")).unwrap(),
            ))
        });
        let input = Input {
            host: &host,
            path: "/sessions",
            region: "us-east-1",
            at: now,
            algorithm: alg,
            serial_decimal: &facts.serial_decimal,
            x509: &x509,
            chain: chain_b64.as_deref(),
            body: body.as_bytes(),
        };
        assert_eq!(
            input.canonical_request(),
            py["canonical_request"].as_str().unwrap(),
            "{cert}"
        );
        assert_eq!(
            input.string_to_sign(),
            py["string_to_sign"].as_str().unwrap(),
            "{cert}"
        );
        let auth = py["headers"]["authorization"].as_str().unwrap();
        assert!(
            auth.starts_with(&format!(
                "{} Credential={}/",
                alg.roles_anywhere_name(),
                facts.serial_decimal
            )),
            "{auth}"
        );

        // The double verifies Python's signature as it verifies tapcred's…
        let (status, answer) = send_signed(&s.double.endpoint(), &py["headers"], &body);
        assert_eq!(status, 201, "{cert}: {answer}");
        assert!(answer.contains("\"accessKeyId\":\"ASIA"), "{answer}");
        // …and refuses it for a body it did not sign.
        let changed = body.replace("3600", "1800");
        let (status, answer) = send_signed(&s.double.endpoint(), &py["headers"], &changed);
        assert_eq!(status, 403, "{cert}: {answer}");
        assert!(answer.contains("Signature does not match"), "{answer}");
    }

    // The double's own judgement of a well-signed request: an expired certificate, a role
    // the profile does not list.
    let python_signed = |cert: &str, body: &str| {
        let out = Command::new(python())
            .arg(pki_script())
            .arg("sign")
            .arg(s.pki.join(format!("{cert}.key")))
            .arg(s.pki.join(format!("{cert}.pem")))
            .args(["us-east-1", &date, &host, "/sessions", body])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let py: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        send_signed(&s.double.endpoint(), &py["headers"], body)
    };
    let (status, answer) = python_signed("expired", &body);
    assert_eq!(status, 403, "{answer}");
    assert!(answer.contains("outside its validity period"), "{answer}");
    let other_role = body.replace(design::ROLE_ARN, design::ROLE_B_ARN);
    let (status, answer) = python_signed("p256", &other_role);
    assert_eq!(status, 403, "{answer}");
    assert!(answer.contains("not in the profile's roles"), "{answer}");
    let too_long = body.replace("3600", "7200");
    let (status, answer) = python_signed("p256", &too_long);
    assert_eq!(status, 400, "{answer}");
    assert!(answer.contains("durationSeconds"), "{answer}");
}

#[test]
fn failures_are_one_clear_line_with_stable_exit_codes() {
    let Some(mut s) = setup("failures_are_one_clear_line_with_stable_exit_codes") else {
        return;
    };
    let mut config = String::new();
    config.push_str(&s.profile("expired", "expired", "expired", false));
    config.push_str(&s.profile("stranger", "stranger", "stranger", false));
    config.push_str(&s.profile("good", "p256", "p256", false));
    config.push_str(&s.profile("mismatch", "p256", "stranger", false));
    config.push_str(&s.profile("shared", "p384", "p384", false));
    config.push_str(&s.profile("nokey", "p256", "gone", false));
    s.home.write_config(&config);

    // Expired: said before anything is signed or sent.
    s.process("expired")
        .fails_with(5, &["profile \"expired\"", "expired on", "new one"]);
    // Another CA: the double refuses the chain.
    s.process("stranger").fails_with(
        5,
        &[
            "profile \"stranger\"",
            "AccessDeniedException",
            "Untrusted signing certificate",
        ],
    );
    // A key that is not the certificate's.
    s.process("mismatch")
        .fails_with(3, &["does not belong to certificate", "stranger.key"]);
    // A key file that is not there.
    s.process("nokey").fails_with(
        3,
        &["cannot read private key", "gone.key", "it does not exist"],
    );
    // A key file other users can read.
    use std::os::unix::fs::PermissionsExt;
    let shared = s.pki.join("p384.key");
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o644)).unwrap();
    s.process("shared")
        .fails_with(3, &["readable by other users", "p384.key", "chmod"]);
    // Clock skew: the double's clock 10 minutes ahead.
    s.double.set_clock_offset(600);
    s.process("good")
        .fails_with(5, &["AccessDeniedException", "5 minutes", "clock"]);
    s.double.set_clock_offset(0);
    assert_eq!(s.double.roles_anywhere_stats().ok, 0);
    s.process("good").ok();
    // A server error, then an endpoint that holds the request without answering: network
    // failures, each sent once (a PIN or touch is not spent again silently).
    s.double.inject_fault("CreateSession", Fault::ServerError);
    s.home
        .run(&["credential-process", "--profile", "good", "--no-cache"])
        .fails_with(6, &["InternalServerException", "try again in a minute"]);
    s.double.inject_fault("CreateSession", Fault::Hang(10));
    s.home.set("TAPCRED_STS_READ_TIMEOUT", "1");
    s.home
        .run(&["credential-process", "--profile", "good", "--no-cache"])
        .fails_with(6, &["did not answer within 6 s"]);
    assert_eq!(s.double.roles_anywhere_stats().calls, 5);
    // The endpoint down (nothing listens on port 1).
    s.home
        .set("AWS_ENDPOINT_URL_ROLESANYWHERE", "http://127.0.0.1:1");
    s.home
        .run(&["credential-process", "--profile", "good", "--no-cache"])
        .fails_with(6, &["cannot reach Roles Anywhere at http://127.0.0.1:1"]);
}

/// The fixture certificate and keys (valid 2026–2126) copied into `HOME/ra`, keys 0600.
fn static_pki(home: &Home) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = home.path().join("ra");
    std::fs::create_dir_all(&dir).unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/rolesanywhere/static");
    for f in ["ca.pem", "leaf.pem", "leaf.key", "other.key"] {
        std::fs::copy(fixtures.join(f), dir.join(f)).unwrap();
        let mode = if f.ends_with(".key") { 0o600 } else { 0o644 };
        std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(mode)).unwrap();
    }
    dir
}

#[test]
fn configure_writes_the_profile_and_doctor_shows_the_certificate() {
    let h = Home::empty();
    let dir = static_pki(&h);
    h.write_config("# mine\n[profile other]\nregion = eu-west-1\n");
    let cert = dir.join("leaf.pem").display().to_string();
    let key = dir.join("leaf.key").display().to_string();
    h.run(&[
        "configure",
        "--profile",
        "ra",
        "--trust-anchor-arn",
        ANCHOR,
        "--roles-anywhere-profile",
        RA_PROFILE,
        "--role-arn",
        design::ROLE_ARN,
        "--certificate",
        &cert,
        "--private-key",
        &key,
        "--region",
        "us-east-1",
    ])
    .ok();
    let config = std::fs::read_to_string(h.config_path()).unwrap();
    assert!(
        config.starts_with("# mine\n[profile other]\nregion = eu-west-1\n"),
        "{config}"
    );
    for line in [
        format!("tapcred_roles_anywhere_trust_anchor_arn = {ANCHOR}"),
        format!("tapcred_roles_anywhere_profile_arn = {RA_PROFILE}"),
        format!("role_arn = {}", design::ROLE_ARN),
        format!("tapcred_roles_anywhere_certificate = {cert}"),
        format!("tapcred_roles_anywhere_private_key = {key}"),
    ] {
        assert!(config.contains(&line), "{line} missing in {config}");
    }

    let out = h.run(&["doctor", "--profile", "ra", "--offline", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let checks = report["checks"].as_array().unwrap();
    let ra: Vec<&serde_json::Value> = checks
        .iter()
        .filter(|c| c["area"] == "rolesanywhere")
        .collect();
    let text: Vec<&str> = ra.iter().map(|c| c["message"].as_str().unwrap()).collect();
    assert!(
        text.iter()
            .any(|m| m.contains("IAM Roles Anywhere, role") && m.contains(ANCHOR)),
        "{text:?}"
    );
    assert!(
        text.iter().any(
            |m| m.contains("https://rolesanywhere.us-east-1.amazonaws.com")
                || m.contains("127.0.0.1")
        ),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|m| m.contains("serial 4242") && m.contains("valid until 2126-01-01")),
        "{text:?}"
    );
    assert!(ra.iter().all(|c| c["status"] == "ok"), "{ra:?}");

    // A PIV profile instead: the file keys go, the slot comes (default 9a).
    h.run(&[
        "configure",
        "--profile",
        "ra",
        "--trust-anchor-arn",
        ANCHOR,
        "--roles-anywhere-profile",
        RA_PROFILE,
        "--role-arn",
        design::ROLE_ARN,
        "--piv-serial",
        "12345678",
    ])
    .ok();
    let config = std::fs::read_to_string(h.config_path()).unwrap();
    assert!(
        config.contains("tapcred_piv_slot = 9a\n")
            && config.contains("tapcred_piv_serial = 12345678\n"),
        "{config}"
    );
    assert!(
        !config.contains("tapcred_roles_anywhere_private_key"),
        "{config}"
    );

    // Mixed kinds are refused before anything is written.
    let before = std::fs::read(h.config_path()).unwrap();
    h.run(&[
        "configure",
        "--profile",
        "ra",
        "--trust-anchor-arn",
        ANCHOR,
        "--roles-anywhere-profile",
        RA_PROFILE,
        "--role-arn",
        design::ROLE_ARN,
        "--piv-slot",
        "9c",
        "--certificate",
        &cert,
        "--private-key",
        &key,
    ])
    .fails_with(2, &["--piv-slot", "keep one"]);
    assert_eq!(std::fs::read(h.config_path()).unwrap(), before);
}

#[test]
fn profiles_resolve_with_the_anchors_region_and_the_rolesanywhere_endpoint() {
    use tapcred::profile::{AwsFiles, Profiles, RolesAnywhereKey};
    let h = Home::empty();
    h.write_config(&format!(
        "[profile piv]\ntapcred_roles_anywhere_trust_anchor_arn = {}\ntapcred_roles_anywhere_profile_arn = {}\nrole_arn = {}\nservices = local\n[services local]\nrolesanywhere =\n  endpoint_url = http://127.0.0.1:9\nsts =\n  endpoint_url = http://127.0.0.1:8\n",
        ANCHOR.replace("us-east-1", "eu-central-1"),
        RA_PROFILE.replace("us-east-1", "eu-central-1"),
        design::ROLE_ARN
    ));
    let files = AwsFiles {
        config: h.config_path(),
        credentials: h.credentials_path(),
    };
    let env: std::collections::HashMap<String, String> = Default::default();
    let p = Profiles::load(&files)
        .unwrap()
        .resolve("piv", &env)
        .unwrap();
    let ra = p.roles_anywhere.as_ref().expect("a Roles Anywhere profile");
    assert_eq!(ra.region(), "eu-central-1");
    assert_eq!(ra.endpoint_url.as_deref(), Some("http://127.0.0.1:9"));
    match &ra.key {
        RolesAnywhereKey::Piv {
            key: k,
            chain: None,
        } => {
            assert_eq!(k.slot.to_string(), "9a");
            assert_eq!(k.serial, None);
        }
        other => panic!("{other:?}"),
    }
    assert!(p.steps.is_empty());
    // Env beats the config file, the service's variable beats the general one.
    let target = |pairs: &[(&str, &str)]| {
        let env: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        tapcred::rolesanywhere::Target::for_profile(&p, ra, &env)
            .unwrap()
            .url
    };
    assert_eq!(target(&[]), "http://127.0.0.1:9");
    assert_eq!(
        target(&[("AWS_ENDPOINT_URL", "http://127.0.0.1:7/")]),
        "http://127.0.0.1:7"
    );
    assert_eq!(
        target(&[
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:7"),
            ("AWS_ENDPOINT_URL_ROLESANYWHERE", "http://127.0.0.1:6")
        ]),
        "http://127.0.0.1:6"
    );
    assert_eq!(
        target(&[("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true")]),
        "https://rolesanywhere.eu-central-1.amazonaws.com"
    );
}
