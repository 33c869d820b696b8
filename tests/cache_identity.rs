//! A cached session belongs to the long-term key that made it, not to the place the key is
//! kept: after another IAM user's key is imported into the vault for the same profile (the
//! AWS files end up byte for byte as before), `credential-process` must not hand out the
//! first user's session — neither through the `tapcred` launcher's warm index nor through
//! the whole program — and a key moved from the credentials file into the vault keeps its
//! session (same key, same identity). Real binary, real pcscd, the virtual YubiKey's OTP
//! slot as the vault's unlocker, STS at the loopback double. Skips loudly without
//! root/pcscd/vpcd unless CI=true.
#![cfg(unix)] // runs Linux test stacks; the Windows build is checked by clippy and Wine

mod common;

use std::time::Duration;

use common::Home;
use tapcred_testkit::pcsc_stack::{CardHandle, PcscStack};
use tapcred_testkit::sts_double::{Config, StsDouble, design};
use tapcred_testkit::virtual_yubikey::{OtpSlot, VirtualYubiKey, VykConfig};

const SLOT_KEY: [u8; 20] = *b"cache-identity-slot!";
const OTHER_KEY_ID: &str = "AKIAOTHERUSEREXAMPLE";
const OTHER_SECRET: &str = "otherUserSecretKey/K7MDENG/bPxRfiCYEXAMPLE";
const OTHER_ARN: &str = "arn:aws:iam::111111111111:user/other-user";

/// The design double plus a second IAM user of the same account.
fn two_users() -> Config {
    let mut v: serde_json::Value = serde_json::from_str(design::JSON).unwrap();
    v["users"].as_array_mut().unwrap().push(serde_json::json!({
        "name": "other-user",
        "account": "111111111111",
        "access_key_id": OTHER_KEY_ID,
        "secret_access_key": OTHER_SECRET,
        "mfa_devices": []
    }));
    Config::from_json(&v.to_string()).unwrap()
}

fn insert(stack: &mut PcscStack) -> CardHandle {
    let c = stack
        .insert(
            0,
            VirtualYubiKey::new(
                VykConfig::new()
                    .serial(90_917)
                    .otp_slot(2, OtpSlot::hmac_sha1(SLOT_KEY, true))
                    .touch_timeout(Duration::from_secs(5)),
            ),
        )
        .expect("insert the virtual YubiKey");
    c.vyk().set_auto_press(Some(Duration::from_millis(50)));
    c
}

fn keys(id: &str, secret: &str) -> String {
    format!("[toolkit-user]\naws_access_key_id = {id}\naws_secret_access_key = {secret}\n")
}

/// The source ARN behind the session `credential-process` printed.
fn signer_of(d: &StsDouble, out: &serde_json::Value) -> String {
    let akid = out["AccessKeyId"].as_str().expect("an access key id");
    d.stats()
        .issued
        .iter()
        .find(|i| i.access_key_id == akid)
        .map(|i| i.source_arn.clone())
        .unwrap_or_else(|| panic!("{akid} was not issued by the double"))
}

#[test]
fn another_users_key_in_the_vault_is_not_served_the_first_users_session() {
    let test = "another_users_key_in_the_vault_is_not_served_the_first_users_session";
    let Some(mut stack) = PcscStack::start_or_skip(test) else {
        return;
    };
    let _key = insert(&mut stack);
    let d = StsDouble::start(two_users()).expect("start the STS double");
    let mut home = Home::empty();
    // A role without MFA: every call is signed by the vault's key alone, so the session
    // shows whose key signed it.
    home.write_config(
        "[profile app]\nsource_profile = toolkit-user\nrole_arn = arn:aws:iam::111111111111:role/chained-role\nregion = us-east-1\n",
    );
    home.write_credentials(&keys(design::ACCESS_KEY_ID, design::SECRET_ACCESS_KEY));
    let vault = home.path().join("data/tapcred/vault");
    home.set("TAPCRED_VAULT", vault.to_str().unwrap());
    home.set("AWS_ENDPOINT_URL_STS", &d.endpoint());

    // The key in the credentials file makes a session; moved into the vault it is the same
    // key, so the same session answers (no new STS call).
    let first = home.run(&["credential-process", "--profile", "app"]);
    first.ok();
    assert_eq!(signer_of(&d, &first.json()), design::USER_ARN);
    home.run(&["vault", "init", "--unlock", "otp"]).ok();
    home.run(&["vault", "import-keys", "--profile", "toolkit-user"])
        .ok();
    let files_with_vault = (
        std::fs::read(home.config_path()).unwrap(),
        std::fs::read(home.credentials_path()).unwrap(),
    );
    let requests = d.stats().requests;
    let moved = home.run(&["credential-process", "--profile", "app"]);
    moved.ok();
    assert_eq!(
        moved.json()["AccessKeyId"],
        first.json()["AccessKeyId"],
        "the same key, now in the vault, keeps its session"
    );
    assert_eq!(d.stats().requests, requests);
    // Twice: the second answer comes from the launcher's warm index.
    home.run(&["credential-process", "--profile", "app"]).ok();

    // Another IAM user's key imported for the same profile: the AWS files end up exactly as
    // before, only the vault's entry differs.
    home.write_credentials(&keys(OTHER_KEY_ID, OTHER_SECRET));
    home.run(&["vault", "import-keys", "--profile", "toolkit-user"])
        .ok();
    assert_eq!(
        (
            std::fs::read(home.config_path()).unwrap(),
            std::fs::read(home.credentials_path()).unwrap(),
        ),
        files_with_vault
    );
    for round in ["first call", "second call (warm)"] {
        let r = home.run(&["credential-process", "--profile", "app"]);
        r.ok();
        assert_ne!(
            r.json()["AccessKeyId"],
            first.json()["AccessKeyId"],
            "{round}: the first user's session was served for the second user's key"
        );
        assert_eq!(signer_of(&d, &r.json()), OTHER_ARN, "{round}");
    }
    assert_eq!(
        d.stats().ok("AssumeRole"),
        2,
        "one session per key, each made once"
    );
}
