//! `tapcred vault import-keys`, `add-unlock`, `remove`, and concurrent writers: the real
//! binary against virtual YubiKeys' OTP slots through the real pcscd. Skips loudly without
//! root/pcscd/vpcd unless CI=true.
#![cfg(unix)] // runs Linux test stacks (or Unix-only APIs); the Windows build is checked by clippy and Wine

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::Home;
use tapcred::token::otp::Slot;
use tapcred::token::pcsc::PcscBackend;
use tapcred::ui::RecordingUi;
use tapcred::vault::unlock::open_with;
use tapcred::vault::{EntryName, OpenVault, OtpSlotUnlocker, Secret, VaultFile, VaultStore};
use tapcred_testkit::pcsc_stack::PcscStack;
use tapcred_testkit::virtual_yubikey::{OtpSlot, VirtualYubiKey, VykConfig};
use zeroize::Zeroizing;

const ARN: &str = "arn:aws:iam::111111111111:mfa/toolkit-user";
const KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const SEED: &[u8] = b"forty-byte-AWS-virtual-MFA-seed-for-test";

fn key(serial: u32, slot_key: &[u8; 20]) -> VirtualYubiKey {
    VirtualYubiKey::new(
        VykConfig::new()
            .serial(serial)
            .otp_slot(2, OtpSlot::hmac_sha1(*slot_key, false)),
    )
}

const CONFIG: &str = "[profile mfa]\nsource_profile = toolkit-user\nmfa_serial = arn:aws:iam::111111111111:mfa/toolkit-user\nrole_arn = arn:aws:iam::111111111111:role/toolkit-role\n";

/// Comments, blank lines, other profiles, a CRLF line, an inline comment, keys after the
/// access key: everything import-keys must keep byte for byte.
const CREDENTIALS: &str = "# my keys\n[default]\nregion = eu-west-1\n\n[toolkit-user]\nregion = us-east-1\r\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY ; rotated in May\noutput = json\n\n; the next one is a test user\n[other]\naws_access_key_id=AKIAOTHEROTHEROTHER1\naws_secret_access_key=other-secret-other-secret\n";

const IMPORTED: &str = "# my keys\n[default]\nregion = eu-west-1\n\n[toolkit-user]\nregion = us-east-1\r\ntapcred_access_key = vault\noutput = json\n\n; the next one is a test user\n[other]\naws_access_key_id=AKIAOTHEROTHEROTHER1\naws_secret_access_key=other-secret-other-secret\n";

fn home() -> Home {
    let mut h = Home::empty();
    h.write_config(CONFIG);
    h.write_credentials(CREDENTIALS);
    let vault = h.path().join("vault-dir/vault");
    h.set("TAPCRED_VAULT", vault.to_str().unwrap());
    h
}

fn vault_path(h: &Home) -> PathBuf {
    h.path().join("vault-dir/vault")
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// The vault opened by the YubiKey with `serial` through pcscd (the test is the judge, with
/// tapcred's library, not the command under test).
fn open(h: &Home, serial: u32) -> OpenVault {
    let file = VaultStore::new(vault_path(h)).read().unwrap().unwrap();
    let mut u = OtpSlotUnlocker::connect(&PcscBackend::new(), Some(serial), Slot::Two).unwrap();
    open_with(&file, &mut u, &RecordingUi::new()).unwrap()
}

fn touches(stderr: &str) -> usize {
    stderr
        .lines()
        .filter(|l| l.contains("to unlock the tapcred vault"))
        .count()
}

/// The AWS files and the vault, byte for byte.
fn state(h: &Home) -> Vec<(PathBuf, Vec<u8>)> {
    [h.config_path(), h.credentials_path(), vault_path(h)]
        .into_iter()
        .map(|p| {
            let b = std::fs::read(&p).unwrap_or_default();
            (p, b)
        })
        .collect()
}

#[test]
fn import_keys_moves_the_access_key_into_the_vault() {
    let Some(mut stack) =
        PcscStack::start_or_skip("import_keys_moves_the_access_key_into_the_vault")
    else {
        return;
    };
    let _card = stack
        .insert(0, key(8080, b"import-keys-slot-key"))
        .expect("insert the virtual YubiKey");
    let h = home();
    let creds = h.credentials_path();
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o640)).unwrap();

    // No vault yet: said so, nothing touched.
    let before = state(&h);
    h.run(&["vault", "import-keys", "--profile", "toolkit-user"])
        .fails_with(3, &["no vault at", "tapcred vault init --unlock otp"]);
    assert_eq!(state(&h), before);
    h.run(&["vault", "init", "--unlock", "otp"]).ok();

    let r = h.run(&["vault", "import-keys", "--profile", "toolkit-user"]);
    r.ok();
    assert!(
        r.stdout.contains(KEY_ID) && r.stdout.contains("tapcred_access_key = vault"),
        "{}",
        r.stdout
    );
    assert_eq!(touches(&r.stderr), 1, "one unlock: {}", r.stderr);
    for text in [&r.stdout, &r.stderr] {
        assert!(!text.contains(SECRET), "the secret is printed: {text}");
    }
    // The credentials file: exactly the two key lines became one, in their place; the
    // file's mode is kept; the editor's backup (it would hold the secret) is not left.
    assert_eq!(std::fs::read_to_string(&creds).unwrap(), IMPORTED);
    assert_eq!(mode(&creds), 0o640);
    assert!(!h.path().join(".aws/credentials.tapcred.bak").exists());
    let on_disk: Vec<(PathBuf, Vec<u8>)> = h.snapshot();
    for (p, bytes) in &on_disk {
        assert!(
            !contains(bytes, SECRET.as_bytes()),
            "{} holds the secret in plain text",
            p.display()
        );
    }
    // The vault gives the key back.
    assert_eq!(
        open(&h, 8080)
            .get(&EntryName::access_key("toolkit-user"))
            .unwrap(),
        Secret::AccessKey {
            access_key_id: KEY_ID.into(),
            secret_access_key: Zeroizing::new(SECRET.into()),
        }
    );
    let r = h.run(&["vault", "list"]);
    assert!(r.stdout.contains("access-key toolkit-user"), "{}", r.stdout);

    // Refusals: one line, the fix, and nothing changes (no touch asked for).
    let before = state(&h);
    h.run(&["vault", "import-keys", "--profile", "toolkit-user"])
        .fails_with(2, &["already in the vault"]);
    h.run(&["vault", "import-keys", "--profile", "mfa"])
        .fails_with(
            3,
            &[
                "source_profile = toolkit-user",
                "tapcred vault import-keys --profile toolkit-user",
            ],
        );
    h.run(&["vault", "import-keys", "--profile", "nosuch"])
        .fails_with(3, &["\"nosuch\" is not defined"]);
    assert_eq!(state(&h), before);

    for (creds_text, config_text, needles, code) in [
        (
            "[t]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = s\naws_session_token = tok\n",
            "",
            &["session token", "temporary"][..],
            3,
        ),
        (
            "[t]\naws_access_key_id = ASIAIOSFODNN7EXAMPLE\naws_secret_access_key = s\n",
            "",
            &["ASIA", "temporary"][..],
            3,
        ),
        (
            "[t]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\n",
            "",
            &["not aws_secret_access_key"][..],
            3,
        ),
        (
            "",
            "[profile t]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = s\n",
            &["in the config file", "move the aws_access_key_id"][..],
            3,
        ),
        (
            "[t]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = s\n",
            "[profile t]\naws_secret_access_key = s\n",
            &["also written in the config file"][..],
            3,
        ),
        (
            "",
            "[profile t]\ncredential_process = /bin/echo\n",
            &["credential_process", "long-term access key"][..],
            3,
        ),
        ("[t]\nregion = x\n", "", &["nothing to import"][..], 3),
    ] {
        let h2 = {
            let mut h2 = Home::empty();
            h2.set("TAPCRED_VAULT", vault_path(&h).to_str().unwrap());
            h2.write_credentials(creds_text);
            h2.write_config(config_text);
            h2
        };
        let before = (h2.snapshot(), state(&h));
        h2.run(&["vault", "import-keys", "--profile", "t"])
            .fails_with(code, needles);
        assert_eq!((h2.snapshot(), state(&h)), before, "{needles:?}");
    }

    // A YubiKey that is not plugged in: nothing changes.
    let before = state(&h);
    h.run(&[
        "vault",
        "import-keys",
        "--profile",
        "other",
        "--serial",
        "999",
    ])
    .fails_with(4, &["no YubiKey that unlocks the vault"]);
    assert_eq!(state(&h), before);

    // The credentials file cannot be written after the vault was (its lock is a directory):
    // the vault is put back as it was, the credentials file is untouched.
    let opts = tapcred::profile::editor::EditOptions {
        private_dir: Some(h.path().join(".local/share/tapcred/aws-files")),
        backup: true,
    };
    let lock = tapcred::profile::editor::lock_path(
        &opts,
        &creds,
        tapcred::profile::editor::AwsFile::Credentials,
    )
    .unwrap();
    std::fs::remove_file(&lock).ok();
    std::fs::create_dir(&lock).unwrap();
    let creds_before = std::fs::read(&creds).unwrap();
    let r = h.run(&["vault", "import-keys", "--profile", "other"]);
    assert_eq!(r.code, 7, "{}", r.stderr);
    assert!(r.stderr.contains("lock"), "{}", r.stderr);
    assert_eq!(std::fs::read(&creds).unwrap(), creds_before);
    let names: Vec<EntryName> = open(&h, 8080).entry_names().cloned().collect();
    assert_eq!(names, [EntryName::access_key("toolkit-user")]);
    std::fs::remove_dir(&lock).unwrap();
    // And once it can be written, it works. A backup from an earlier tapcred edit that
    // still holds this key is named (it is not this command's to delete), and kept.
    let old_bak = h.path().join(".aws/credentials.tapcred.bak");
    std::fs::write(&old_bak, &creds_before).unwrap();
    let r = h.run(&["vault", "import-keys", "--profile", "other"]);
    r.ok();
    assert!(
        r.stderr.contains(&format!(
            "{} (a backup tapcred made at an earlier edit) still holds the access key of \"other\"",
            old_bak.display()
        )),
        "{}",
        r.stderr
    );
    assert_eq!(std::fs::read(&old_bak).unwrap(), creds_before);
    let text = std::fs::read_to_string(&creds).unwrap();
    assert!(
        text.ends_with("[other]\ntapcred_access_key=vault\n"),
        "{text}"
    );
    assert!(!text.contains("aws_secret_access_key"), "{text}");
}

#[test]
fn a_backup_key_opens_the_vault_and_remove_works() {
    let Some(mut stack) = PcscStack::start_or_skip("a_backup_key_opens_the_vault_and_remove_works")
    else {
        return;
    };
    let card_a = stack
        .insert(0, key(8080, b"main-key-slot-2-key!"))
        .expect("insert key A");
    let _card_b = stack
        .insert(1, key(9090, b"backup-key-slot-2-k!"))
        .expect("insert key B");
    let h = home();
    h.run(&["vault", "init", "--unlock", "otp", "--serial", "8080"])
        .ok();
    // Two keys plugged in: which one is new must be said; the same key twice is refused.
    h.run(&["vault", "add-unlock", "--unlock", "otp"])
        .fails_with(4, &["--serial N"]);
    h.run(&["vault", "add-unlock", "--unlock", "otp", "--serial", "8080"])
        .fails_with(2, &["otp:8080:2 already unlocks the vault"]);
    h.run(&["vault", "add-unlock", "--unlock", "fido2"])
        .fails_with(4, &["no FIDO2 authenticator found"]);
    let r = h.run(&["vault", "add-unlock", "--unlock", "otp", "--serial", "9090"]);
    r.ok();
    assert!(r.stdout.contains("otp:9090:2"), "{}", r.stdout);
    assert!(r.stdout.contains("2 unlockers"), "{}", r.stdout);
    let j = h.run(&["vault", "list", "--json"]).json();
    let ids: Vec<&str> = j["unlockers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["otp:8080:2", "otp:9090:2"]);

    // A seed and an access key go in while both keys are there.
    let mut h = h;
    h.set("SEED", &data_encoding::BASE32_NOPAD.encode(SEED));
    h.run(&[
        "vault",
        "add-seed",
        "--profile",
        "mfa",
        "--seed-env",
        "SEED",
    ])
    .ok();
    h.run(&["vault", "import-keys", "--profile", "toolkit-user"])
        .ok();

    // Key A is lost: the backup alone opens the vault and gives both secrets back.
    card_a.remove();
    let v = open(&h, 9090);
    assert_eq!(
        v.get(&EntryName::seed(ARN)).unwrap(),
        Secret::TotpSeed(Zeroizing::new(SEED.to_vec()))
    );
    assert!(matches!(
        v.get(&EntryName::access_key("toolkit-user")).unwrap(),
        Secret::AccessKey { access_key_id, .. } if access_key_id == KEY_ID
    ));

    // Remove the lost key's unlocker with the backup; the last unlocker stays.
    let before = state(&h);
    h.run(&["vault", "remove", "--unlock", "otp:1234:2"])
        .fails_with(2, &["no unlocker \"otp:1234:2\"", "otp:8080:2, otp:9090:2"]);
    assert_eq!(state(&h), before);
    h.run(&["vault", "remove", "--unlock", "otp:8080:2"]).ok();
    let j = h.run(&["vault", "list", "--json"]).json();
    assert_eq!(j["unlockers"].as_array().unwrap().len(), 1);
    let before = state(&h);
    h.run(&["vault", "remove", "--unlock", "otp:9090:2"])
        .fails_with(2, &["only unlocker", "add another first"]);
    assert_eq!(state(&h), before);

    // Entries: by profile (its mfa_serial), by access key; unknown ones are refused.
    h.run(&["vault", "remove", "--access-key", "nosuch"])
        .fails_with(2, &["no access-key entry \"nosuch\""]);
    h.run(&["vault", "remove", "--profile", "mfa"]).ok();
    let r = h.run(&["vault", "remove", "--access-key", "toolkit-user"]);
    r.ok();
    assert!(
        r.stderr.contains("still says tapcred_access_key = vault"),
        "{}",
        r.stderr
    );
    let j = h.run(&["vault", "list", "--json"]).json();
    assert_eq!(j["entries"].as_array().unwrap().len(), 0, "{j}");
    // The file is still a valid vault the backup opens.
    assert_eq!(open(&h, 9090).entry_names().count(), 0);
    // Nothing to remove named: a usage error from the parser.
    assert_eq!(h.run(&["vault", "remove"]).code, 2);
}

#[test]
fn eight_writers_at_once_all_land() {
    let Some(mut stack) = PcscStack::start_or_skip("eight_writers_at_once_all_land") else {
        return;
    };
    let _card = stack
        .insert(0, key(8080, b"concurrent-slot-key!"))
        .expect("insert the virtual YubiKey");
    let mut h = Home::empty();
    let mut config = String::new();
    let mut creds = String::new();
    for i in 0..4 {
        config.push_str(&format!(
            "[profile m{i}]\nmfa_serial = arn:aws:iam::111111111111:mfa/user-{i}\naws_access_key_id = AKIAIOSFODNN7EXAMPL{i}\naws_secret_access_key = unused\n"
        ));
        creds.push_str(&format!(
            "[s{i}]\naws_access_key_id = AKIAIOSFODNN7EXAMPL{i}\naws_secret_access_key = secret-number-{i}-secret-number\n"
        ));
    }
    h.write_config(&config);
    h.write_credentials(&creds);
    h.set("TAPCRED_VAULT", vault_path(&h).to_str().unwrap());
    h.set("SEED", &data_encoding::BASE32_NOPAD.encode(SEED));
    h.run(&["vault", "init", "--unlock", "otp"]).ok();

    let children: Vec<_> = (0..4)
        .flat_map(|i| {
            let m = format!("m{i}");
            let s = format!("s{i}");
            [
                h.cmd(&["vault", "add-seed", "--profile", &m, "--seed-env", "SEED"])
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap(),
                h.cmd(&["vault", "import-keys", "--profile", &s])
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap(),
            ]
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let bytes = std::fs::read(vault_path(&h)).unwrap();
    let file = VaultFile::parse(&bytes).expect("a valid vault");
    assert_eq!(file.entry_names().count(), 8, "{file:?}");
    let v = open(&h, 8080);
    for i in 0..4 {
        assert_eq!(
            v.get(&EntryName::seed(format!(
                "arn:aws:iam::111111111111:mfa/user-{i}"
            )))
            .unwrap(),
            Secret::TotpSeed(Zeroizing::new(SEED.to_vec()))
        );
        assert_eq!(
            v.get(&EntryName::access_key(format!("s{i}"))).unwrap(),
            Secret::AccessKey {
                access_key_id: format!("AKIAIOSFODNN7EXAMPL{i}"),
                secret_access_key: Zeroizing::new(format!("secret-number-{i}-secret-number")),
            }
        );
    }
    let text = std::fs::read_to_string(h.credentials_path()).unwrap();
    assert_eq!(
        text.matches("tapcred_access_key = vault").count(),
        4,
        "{text}"
    );
    assert!(!text.contains("aws_secret_access_key"), "{text}");
}

/// README's "Done means": `vault init`, `vault import-keys`, `vault add-seed`, then
/// `credential-process` with no plaintext secret on disk and one unlock for both the seed and
/// the access key; the session is cached, so the next call needs none.
#[test]
fn credential_process_after_import_keys_and_add_seed() {
    let Some(mut stack) =
        PcscStack::start_or_skip("credential_process_after_import_keys_and_add_seed")
    else {
        return;
    };
    let _card = stack
        .insert(0, key(8080, b"walkthrough-slot-key"))
        .expect("insert the virtual YubiKey");
    let d = tapcred_testkit::sts_double::StsDouble::start_design().expect("STS double");
    let mut h = home();
    h.set("AWS_ENDPOINT_URL", &d.endpoint());
    h.set("SEED", tapcred_testkit::sts_double::design::MFA_SEED_BASE32);
    h.run(&["vault", "init", "--unlock", "otp"]).ok();
    h.run(&["vault", "import-keys", "--profile", "toolkit-user"])
        .ok();
    h.run(&[
        "vault",
        "add-seed",
        "--profile",
        "mfa",
        "--seed-env",
        "SEED",
    ])
    .ok();
    h.set("SEED", "");
    for (p, bytes) in h.snapshot() {
        assert!(
            !contains(&bytes, SECRET.as_bytes())
                && !contains(
                    &bytes,
                    tapcred_testkit::sts_double::design::MFA_SEED_BASE32.as_bytes()
                ),
            "{} holds a secret in plain text",
            p.display()
        );
    }

    let r = h.run(&["credential-process", "--profile", "mfa"]);
    r.ok();
    assert!(
        r.json()["AccessKeyId"]
            .as_str()
            .unwrap()
            .starts_with("ASIA"),
        "{}",
        r.stdout
    );
    assert_eq!(
        touches(&r.stderr),
        1,
        "one unlock for seed and key: {}",
        r.stderr
    );
    assert_eq!(d.stats().ok("AssumeRole"), 1);
    // Cached: no unlock, no STS call.
    let r = h.run(&["credential-process", "--profile", "mfa"]);
    r.ok();
    assert_eq!(touches(&r.stderr), 0, "{}", r.stderr);
    assert_eq!(d.stats().ok("AssumeRole"), 1);
}
