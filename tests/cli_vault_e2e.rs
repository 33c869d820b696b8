//! The vault end to end: `credential-process` with the TOTP seed AND the long-term access
//! key in the vault (the credentials file holds no secret, only `tapcred_access_key =
//! vault`), the real binary through the real pcscd to the virtual YubiKey's OTP slot 2
//! (HMAC-SHA1, touch required, pressed automatically), STS at the strict loopback double;
//! a wrong key, a tampered and a truncated vault; the AWS CLI through a `credential_process`
//! profile. The vault is made with tapcred's own commands (`vault init`, `add-seed`,
//! `import-keys`), as a user would. Skips loudly without root/pcscd/vpcd unless CI=true.
#![cfg(unix)] // runs Linux test stacks (or Unix-only APIs); the Windows build is checked by clippy and Wine

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::{Home, Run, TAPCRED, totp_sha1};
use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::Sha256;
use tapcred::vault::VaultStore;
use tapcred_testkit::pcsc_stack::{CardHandle, PcscStack};
use tapcred_testkit::sts_double::{StsDouble, TokenOutcome, design};
use tapcred_testkit::virtual_yubikey::{OtpSlot, VirtualYubiKey, VykConfig};

const SLOT_KEY: [u8; 20] = *b"e2e-vault-slot-key-A";
const OTHER_SLOT_KEY: [u8; 20] = *b"e2e-vault-slot-key-B";
const SERIAL: u32 = 90_901;
/// The AWS CLI v2 from Debian (never PATH: a pip v1 may come first).
const AWS_CLI: &str = "/usr/bin/aws";
const CLEAN_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn card(slot_key: [u8; 20]) -> VirtualYubiKey {
    VirtualYubiKey::new(
        VykConfig::new()
            .serial(SERIAL)
            .otp_slot(2, OtpSlot::hmac_sha1(slot_key, true))
            .touch_timeout(Duration::from_secs(5)),
    )
}

fn insert(stack: &mut PcscStack, slot_key: [u8; 20]) -> CardHandle {
    let c = stack
        .insert(0, card(slot_key))
        .expect("insert the virtual YubiKey");
    // The person at the keyboard: presses 50 ms after each blink.
    c.vyk().set_auto_press(Some(Duration::from_millis(50)));
    c
}

fn seed() -> Vec<u8> {
    data_encoding::BASE32_NOPAD
        .decode(design::MFA_SEED_BASE32.as_bytes())
        .unwrap()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// `[profile mfa]` assumes toolkit-role from toolkit-user's keys with MFA, its code from the
/// vault; `[profile work]` is what an SDK or the AWS CLI uses.
fn config() -> String {
    format!(
        "[profile mfa]\nsource_profile = toolkit-user\nrole_arn = {}\nmfa_serial = {}\ntapcred_token = vault\nregion = us-east-1\n\n[profile work]\ncredential_process = {TAPCRED} credential-process --profile mfa\nregion = us-east-1\n",
        design::ROLE_ARN,
        design::MFA_SERIAL
    )
}

struct VaultHome {
    home: Home,
    vault: PathBuf,
}

/// A HOME whose vault holds the seed and toolkit-user's access key, made with tapcred's
/// commands: `vault init --unlock otp`, `vault add-seed --profile mfa` (the seed on stdin),
/// `vault import-keys --profile toolkit-user`. Afterwards the credentials file holds no
/// secret.
fn vault_home(d: &StsDouble) -> VaultHome {
    let mut home = Home::empty();
    home.write_config(&config());
    home.write_credentials(&format!(
        "[toolkit-user]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
        design::ACCESS_KEY_ID,
        design::SECRET_ACCESS_KEY
    ));
    let vault = home.path().join("data/tapcred/vault");
    home.set("TAPCRED_VAULT", vault.to_str().unwrap());
    home.set("AWS_ENDPOINT_URL_STS", &d.endpoint());
    home.run(&["vault", "init", "--unlock", "otp"]).ok();
    with_stdin(
        &home,
        &["vault", "add-seed", "--profile", "mfa"],
        design::MFA_SEED_BASE32.as_bytes(),
    )
    .ok();
    home.run(&["vault", "import-keys", "--profile", "toolkit-user"])
        .ok();
    let creds = std::fs::read_to_string(home.credentials_path()).unwrap();
    assert!(creds.contains("tapcred_access_key = vault"), "{creds}");
    assert!(
        !creds.contains(design::SECRET_ACCESS_KEY) && !creds.contains(design::ACCESS_KEY_ID),
        "the credentials file still holds the key: {creds}"
    );
    VaultHome { home, vault }
}

fn with_stdin(h: &Home, args: &[&str], input: &[u8]) -> Run {
    let mut c = h.cmd(args);
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("run tapcred");
    child.stdin.take().unwrap().write_all(input).unwrap();
    Run::from(child.wait_with_output().unwrap())
}

/// HMAC-SHA1 challenge-response APDUs of slot 2 the card answered so far.
fn slot_asks(c: &CardHandle) -> usize {
    c.vyk()
        .history()
        .iter()
        .filter(|r| r.ins == 0x01 && r.p1 == 0x38)
        .count()
}

#[test]
fn credential_process_one_touch_for_seed_and_keys_from_the_vault() {
    let test = "credential_process_one_touch_for_seed_and_keys_from_the_vault";
    let Some(mut stack) = PcscStack::start_or_skip(test) else {
        return;
    };
    let key = insert(&mut stack, SLOT_KEY);
    let d = StsDouble::start_design().expect("start the STS double");
    let VaultHome { home, vault } = vault_home(&d);
    assert_eq!(d.stats().requests, 0, "making the vault calls no STS");

    let touches = key.button().touch_requests();
    let asks = slot_asks(&key);
    // With debug logs on (stderr): they must carry no secret either.
    let r = home.run(&["-vv", "credential-process", "--profile", "mfa"]);
    r.ok();
    // One touch (and one slot answer) served both the access key and the seed.
    assert_eq!(key.button().touch_requests() - touches, 1, "{}", r.stderr);
    assert_eq!(slot_asks(&key) - asks, 1);
    assert_eq!(
        r.stderr
            .lines()
            .filter(|l| l.contains("to unlock the tapcred vault"))
            .count(),
        1,
        "{}",
        r.stderr
    );
    let j = r.json();
    assert_eq!(j["Version"], 1);
    let akid = j["AccessKeyId"].as_str().unwrap().to_owned();
    assert!(akid.starts_with("ASIA"), "{j}");
    assert!(j["SecretAccessKey"].as_str().is_some_and(|s| s.len() >= 20));
    assert!(j["SessionToken"].as_str().is_some());
    assert!(j["Expiration"].as_str().is_some());
    // The double: signed by toolkit-user's key from the vault (SigV4 with its secret), one
    // code, the seed's TOTP, accepted.
    let stats = d.stats();
    assert!(stats.errors.is_empty(), "{:?}", stats.errors);
    assert_eq!(stats.ok("GetSessionToken"), 1);
    assert_eq!(stats.ok("AssumeRole"), 1);
    let gst = stats
        .issued
        .iter()
        .find(|i| i.action == "GetSessionToken")
        .expect("an MFA session");
    assert_eq!(gst.source_arn, design::USER_ARN);
    assert!(gst.mfa);
    let events = d.token_code_events();
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(e.outcome, TokenOutcome::Accepted, "{e:?}");
    assert_eq!(e.serial, design::MFA_SERIAL);
    let step = e.matched_step.unwrap();
    assert_eq!(e.code, totp_sha1(&seed(), step * 30));
    // Nothing secret on stderr, logs included: not the vault's key, not the code, not the
    // seed, not the session's secret or token.
    assert!(r.stderr.contains("opening the vault"), "{}", r.stderr);
    for secret in [
        design::SECRET_ACCESS_KEY,
        design::MFA_SEED_BASE32,
        &e.code,
        j["SecretAccessKey"].as_str().unwrap(),
        j["SessionToken"].as_str().unwrap(),
    ] {
        assert!(!r.stderr.contains(secret), "secret in stderr: {}", r.stderr);
    }

    // The second call: from the cache, no unlock, no touch, no STS request (the vault's
    // header is read, without a key, to check it still holds the same access key).
    let requests = d.stats().requests;
    let r2 = home.run(&["credential-process", "--profile", "mfa"]);
    r2.ok();
    assert_eq!(r2.json()["AccessKeyId"], akid.as_str());
    assert_eq!(key.button().touch_requests() - touches, 1);
    assert_eq!(slot_asks(&key) - asks, 1);
    assert_eq!(d.stats().requests, requests);
    assert!(r2.stderr.is_empty(), "{}", r2.stderr);

    // The vault file's bytes: no seed (raw or base32), no key id or secret, no unlocker
    // output and no key derived from it.
    let bytes = std::fs::read(&vault).unwrap();
    assert!(!contains(&bytes, &seed()));
    assert!(!contains(&bytes, design::MFA_SEED_BASE32.as_bytes()));
    assert!(!contains(&bytes, design::SECRET_ACCESS_KEY.as_bytes()));
    assert!(!contains(&bytes, design::ACCESS_KEY_ID.as_bytes()));
    let file = VaultStore::new(&vault).read().unwrap().unwrap();
    let descs: Vec<_> = file.unlocker_descs().cloned().collect();
    assert_eq!(descs.len(), 1);
    let desc = &descs[0];
    assert_eq!(desc.id, format!("otp:{SERIAL}:2"));
    let mut m = <Hmac<Sha1> as KeyInit>::new_from_slice(&SLOT_KEY).unwrap();
    m.update(&desc.challenge);
    let output = m.finalize().into_bytes();
    let mut kek = [0u8; 32];
    Hkdf::<Sha256>::new(Some(&desc.salt), &output)
        .expand(b"tapcred vault v1 wrap\x01", &mut kek)
        .unwrap();
    assert!(!contains(&bytes, &output));
    assert!(!contains(&bytes, &kek));
    // A check on the check: this output really opens the vault (searching for a wrong one
    // would prove nothing), and the KEK is derived as `src/vault/format/mod.rs` documents.
    assert!(file.open(&desc.id, &output).is_ok());
}

#[test]
fn wrong_key_tampered_and_truncated_vaults_are_refused() {
    let test = "wrong_key_tampered_and_truncated_vaults_are_refused";
    let Some(mut stack) = PcscStack::start_or_skip(test) else {
        return;
    };
    let key = insert(&mut stack, SLOT_KEY);
    let d = StsDouble::start_design().expect("start the STS double");
    let VaultHome { home, vault } = vault_home(&d);
    let good = std::fs::read(&vault).unwrap();

    // Same serial and slot, another slot secret (reprogrammed, or another key): no opening.
    drop(key.remove());
    let other = insert(&mut stack, OTHER_SLOT_KEY);
    let r = home.run(&["credential-process", "--profile", "mfa"]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(r.stdout.is_empty());
    let last = r.stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("tapcred: error: ") && last.contains("cannot open this vault"),
        "{}",
        r.stderr
    );
    assert_eq!(d.stats().requests, 0, "nothing reached STS");
    assert_eq!(
        std::fs::read(&vault).unwrap(),
        good,
        "the vault is untouched"
    );
    drop(other.remove());
    let _key = insert(&mut stack, SLOT_KEY);

    // One byte changed in the middle, or the file cut short: "vault damaged", exit 3,
    // before any touch.
    let mut tampered = good.clone();
    let mid = tampered.len() / 2;
    tampered[mid] ^= 0x01;
    let mut truncated = good.clone();
    truncated.truncate(good.len() - 9);
    for (what, bytes) in [("tampered", tampered), ("truncated", truncated)] {
        std::fs::write(&vault, &bytes).unwrap();
        let r = home.run(&["credential-process", "--profile", "mfa"]);
        r.fails_with(3, &["vault damaged", &vault.display().to_string()]);
        assert_eq!(d.stats().requests, 0, "{what}: nothing reached STS");
    }
    // Restored, it works again: one call, one accepted code.
    std::fs::write(&vault, &good).unwrap();
    home.run(&["credential-process", "--profile", "mfa"]).ok();
    assert_eq!(d.stats().ok("AssumeRole"), 1);
}

#[test]
fn aws_cli_through_credential_process_with_the_vault() {
    let test = "aws_cli_through_credential_process_with_the_vault";
    if !tapcred_testkit::ci::require(
        test,
        "the AWS CLI v2 at /usr/bin/aws (apt-get install awscli)",
        Path::new(AWS_CLI).is_file(),
    ) {
        return;
    }
    let Some(mut stack) = PcscStack::start_or_skip(test) else {
        return;
    };
    let key = insert(&mut stack, SLOT_KEY);
    let d = StsDouble::start_design().expect("start the STS double");
    let VaultHome { home, vault } = vault_home(&d);
    let touches = key.button().touch_requests();
    let p = |s: &str| home.path().join(s).display().to_string();
    let aws = |args: &[&str]| {
        std::process::Command::new(AWS_CLI)
            .args(args)
            .env_clear()
            .env("PATH", CLEAN_PATH)
            .env("HOME", p(""))
            .env("XDG_CACHE_HOME", p(".cache"))
            .env("AWS_CONFIG_FILE", p(".aws/config"))
            .env("AWS_SHARED_CREDENTIALS_FILE", p(".aws/credentials"))
            .env("AWS_ENDPOINT_URL_STS", d.endpoint())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("TAPCRED_VAULT", &vault)
            .env("LANG", "C.UTF-8")
            .current_dir(home.path())
            .stdin(Stdio::null())
            .output()
            .expect("run the AWS CLI")
    };
    // AWS CLI 2.9 ignores AWS_ENDPOINT_URL*: --endpoint-url sends its own call to the double;
    // tapcred gets AWS_ENDPOINT_URL_STS from the environment the CLI passes on.
    let args = [
        "--profile",
        "work",
        "sts",
        "get-caller-identity",
        "--endpoint-url",
        &d.endpoint(),
        "--region",
        "us-east-1",
        "--output",
        "json",
    ];
    let out = aws(&args);
    assert!(
        out.status.success(),
        "aws failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let who: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let arn = who["Arn"].as_str().unwrap();
    assert!(
        arn.starts_with("arn:aws:sts::111111111111:assumed-role/toolkit-role/"),
        "{who}"
    );
    assert_eq!(key.button().touch_requests() - touches, 1);
    let events = d.token_code_events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].outcome, TokenOutcome::Accepted);
    // Again: the CLI's second run is served from tapcred's cache (no touch, one STS call:
    // the CLI's own GetCallerIdentity).
    let before = d.stats();
    let out = aws(&args);
    assert!(out.status.success());
    assert_eq!(key.button().touch_requests() - touches, 1);
    let after = d.stats();
    assert_eq!(after.requests - before.requests, 1);
    assert_eq!(
        after.calls("GetCallerIdentity") - before.calls("GetCallerIdentity"),
        1
    );
}

/// The README's recovery path: a new access key imported into the vault first, then `enroll
/// --to vault` for a new MFA device; enroll signs its IAM and STS calls with the key from
/// the vault, and the profile then works from the vault alone.
#[test]
fn enroll_to_vault_with_the_access_key_already_in_the_vault() {
    let test = "enroll_to_vault_with_the_access_key_already_in_the_vault";
    let Some(mut stack) = PcscStack::start_or_skip(test) else {
        return;
    };
    let key = insert(&mut stack, SLOT_KEY);
    // An IAM user with keys and no MFA device yet.
    let d = common::enroll::new_user_double();
    let mut home = Home::empty();
    home.write_config(&format!(
        "[profile mfa]\nsource_profile = toolkit-user\nrole_arn = {}\n",
        design::ROLE_ARN
    ));
    home.write_credentials(&format!(
        "[toolkit-user]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
        design::ACCESS_KEY_ID,
        design::SECRET_ACCESS_KEY
    ));
    let vault = home.path().join("data/tapcred/vault");
    home.set("TAPCRED_VAULT", vault.to_str().unwrap());
    home.set("AWS_ENDPOINT_URL", &d.endpoint());
    home.run(&["vault", "init", "--unlock", "otp"]).ok();
    home.run(&["vault", "import-keys", "--profile", "toolkit-user"])
        .ok();
    let out = Run::from(
        home.cmd_detached(&["enroll", "--profile", "mfa", "--to", "vault"])
            .output()
            .expect("run tapcred"),
    );
    out.ok();
    assert!(
        out.stdout.contains("assumed-role/toolkit-role"),
        "{}",
        out.stdout
    );
    eprintln!(
        "enroll --to vault with the key in the vault: {} vault unlocks",
        out.stderr
            .lines()
            .filter(|l| l.contains("to unlock the tapcred vault"))
            .count()
    );
    let config = std::fs::read_to_string(home.config_path()).unwrap();
    assert!(config.contains("tapcred_token = vault"), "{config}");
    let creds = std::fs::read_to_string(home.credentials_path()).unwrap();
    assert!(!creds.contains(design::SECRET_ACCESS_KEY), "{creds}");
    // Every IAM/STS call was signed with toolkit-user's key (from the vault).
    let stats = d.stats();
    assert!(
        stats
            .errors
            .keys()
            .all(|c| c != "SignatureDoesNotMatch" && c != "InvalidClientTokenId"),
        "{:?}",
        stats.errors
    );
    // Served from the vault alone, from the session enroll's proof cached: no touch.
    let touches = key.button().touch_requests();
    let r = home.run(&["credential-process", "--profile", "mfa"]);
    r.ok();
    assert!(
        r.json()["AccessKeyId"]
            .as_str()
            .unwrap()
            .starts_with("ASIA")
    );
    assert_eq!(key.button().touch_requests(), touches);
}

/// Two unlockers; the first key is not plugged in: the backup opens the vault (its touch),
/// and with no key at all the one-line error names the vault file and both unlockers.
#[test]
fn the_backup_key_opens_when_the_first_is_absent() {
    let test = "the_backup_key_opens_when_the_first_is_absent";
    let Some(mut stack) = PcscStack::start_or_skip(test) else {
        return;
    };
    let first = insert(&mut stack, SLOT_KEY);
    let d = StsDouble::start_design().expect("start the STS double");
    let VaultHome { home, vault } = vault_home(&d);
    const BACKUP: u32 = 90_902;
    let backup = stack
        .insert(
            1,
            VirtualYubiKey::new(
                VykConfig::new()
                    .serial(BACKUP)
                    .otp_slot(2, OtpSlot::hmac_sha1(OTHER_SLOT_KEY, true))
                    .touch_timeout(Duration::from_secs(5)),
            ),
        )
        .expect("insert the backup key");
    backup.vyk().set_auto_press(Some(Duration::from_millis(50)));
    home.run(&[
        "vault",
        "add-unlock",
        "--unlock",
        "otp",
        "--serial",
        &BACKUP.to_string(),
    ])
    .ok();
    drop(first.remove());

    let before = backup.button().touch_requests();
    let r = home.run(&["credential-process", "--profile", "mfa"]);
    r.ok();
    assert_eq!(backup.button().touch_requests() - before, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("YubiKey {BACKUP}")),
        "the prompt names the backup key: {}",
        r.stderr
    );
    assert_eq!(d.token_code_events().len(), 1);

    // No key at all (and no cached session: another profile's cache dir): one line, exit 4,
    // naming the vault and what it lists.
    drop(backup.remove());
    let mut home2 = Home::empty();
    std::fs::create_dir_all(home2.aws_dir()).unwrap();
    std::fs::copy(home.config_path(), home2.config_path()).unwrap();
    std::fs::copy(home.credentials_path(), home2.credentials_path()).unwrap();
    home2.set("TAPCRED_VAULT", vault.to_str().unwrap());
    home2.set("AWS_ENDPOINT_URL_STS", &d.endpoint());
    home2
        .run(&["credential-process", "--profile", "mfa"])
        .fails_with(
            4,
            &[
                &vault.display().to_string(),
                &format!("otp:{SERIAL}:2"),
                &format!("otp:{BACKUP}:2"),
                "plug in one of those keys",
            ],
        );
    assert_eq!(d.token_code_events().len(), 1, "no code was sent");
}
