//! `tapcred rotate` of an access key kept in the vault (`tapcred_access_key = vault`), with
//! the MFA seed in the vault too: one unlock gives the key and the code, the new key is sealed
//! in the vault's entry, and the next command needs no unlock and no code. The real binary
//! against a virtual YubiKey's OTP slot through the real pcscd and the strict double. Skips
//! loudly without root/pcscd/vpcd unless CI=true.
#![cfg(unix)] // runs Linux test stacks; the Windows build is checked by clippy and Wine

mod common;

use common::Home;
use tapcred::token::otp::Slot;
use tapcred::token::pcsc::PcscBackend;
use tapcred::ui::RecordingUi;
use tapcred::vault::unlock::open_with;
use tapcred::vault::{EntryName, OtpSlotUnlocker, Secret, VaultStore};
use tapcred_testkit::pcsc_stack::PcscStack;
use tapcred_testkit::sts_double::design;
use tapcred_testkit::virtual_yubikey::{OtpSlot, VirtualYubiKey, VykConfig};

const CONFIG: &str = "[profile mfa]\nsource_profile = toolkit-user\nmfa_serial = arn:aws:iam::111111111111:mfa/toolkit-user\nrole_arn = arn:aws:iam::111111111111:role/toolkit-role\n";

fn touches(stderr: &str) -> usize {
    stderr
        .lines()
        .filter(|l| l.contains("to unlock the tapcred vault"))
        .count()
}

#[test]
fn rotates_a_key_kept_in_the_vault_with_one_unlock() {
    let Some(mut stack) = PcscStack::start_or_skip(
        "cli_rotate_vault::rotates_a_key_kept_in_the_vault_with_one_unlock",
    ) else {
        return;
    };
    let _card = stack
        .insert(
            0,
            VirtualYubiKey::new(
                VykConfig::new()
                    .serial(8181)
                    .otp_slot(2, OtpSlot::hmac_sha1(*b"rotate-vault-slotkey", false)),
            ),
        )
        .expect("insert the virtual YubiKey");
    let d = common::rotate::double();
    let mut h = Home::empty();
    h.write_config(CONFIG);
    h.write_credentials(common::enroll::TOOLKIT_CREDENTIALS);
    let vault = h.path().join("vault-dir/vault");
    h.set("TAPCRED_VAULT", vault.to_str().unwrap())
        .set("AWS_ENDPOINT_URL", &d.endpoint())
        .set("SEED", design::MFA_SEED_BASE32);
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
    let credentials = std::fs::read(h.credentials_path()).unwrap();

    let r = Home::run(&h, &["rotate", "--profile", "mfa"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        touches(&r.stderr),
        1,
        "one unlock for key and code: {}",
        r.stderr
    );
    let keys = common::rotate::keys(&d);
    assert_eq!(keys.len(), 1, "{keys:?}");
    let new_id = keys[0].access_key_id.clone();
    assert_ne!(new_id, design::ACCESS_KEY_ID);
    assert_eq!(d.stats().calls("GetSessionToken"), 1);
    common::rotate::each_window_once(&d);
    // The vault's entry holds the new key; the credentials file is untouched.
    let file = VaultStore::new(&vault).read().unwrap().unwrap();
    let mut u = OtpSlotUnlocker::connect(&PcscBackend::new(), Some(8181), Slot::Two).unwrap();
    let opened = open_with(&file, &mut u, &RecordingUi::new()).unwrap();
    match opened.get(&EntryName::access_key("toolkit-user")).unwrap() {
        Secret::AccessKey { access_key_id, .. } => assert_eq!(access_key_id, new_id),
        other => panic!("{other:?}"),
    }
    assert_eq!(std::fs::read(h.credentials_path()).unwrap(), credentials);
    // The MFA session moved to the new key: the role needs no unlock and no code.
    let r = h.run(&["credential-process", "--profile", "mfa"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(touches(&r.stderr), 0, "{}", r.stderr);
    assert_eq!(d.stats().calls("GetSessionToken"), 1);
    assert_eq!(d.stats().ok("AssumeRole"), 1);
}
