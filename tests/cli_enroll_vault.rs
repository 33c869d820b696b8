//! `tapcred enroll --to vault`: the new virtual MFA device's seed goes straight into the
//! vault (one unlock of the virtual YubiKey's OTP slot through the real pcscd), the profile
//! says `tapcred_token = vault`; IAM and STS at the strict double. The source profile's
//! access key is in the vault as well, so the one unlock also signs every call. A failure
//! after the seed was sealed takes it out of the vault again. Skips loudly without root/pcscd/vpcd unless
//! CI=true.

#![cfg(unix)] // runs Linux test stacks (setsid, pcscd); the Windows build is checked by clippy and Wine

mod common;

use std::path::PathBuf;

use common::{Home, Run, totp_sha1};
use tapcred::token::otp::Slot;
use tapcred::token::pcsc::PcscBackend;
use tapcred::ui::RecordingUi;
use tapcred::vault::unlock::open_with;
use tapcred::vault::{EntryName, OpenVault, OtpSlotUnlocker, Secret, VaultStore};
use tapcred_testkit::pcsc_stack::PcscStack;
use tapcred_testkit::sts_double::{Fault, SDK_ATTEMPTS, StsDouble, design};
use tapcred_testkit::virtual_yubikey::{OtpSlot, VirtualYubiKey, VykConfig};

const KEY_SERIAL: u32 = 7_070_707;
const SERIAL: &str = "arn:aws:iam::111111111111:mfa/toolkit-user";

fn card() -> VirtualYubiKey {
    VirtualYubiKey::new(
        VykConfig::new()
            .serial(KEY_SERIAL)
            .otp_slot(2, OtpSlot::hmac_sha1(*b"enroll-to-vault-key!", false)),
    )
}

const CONFIG: &str = "# mine\n[profile mfa]\nsource_profile = toolkit-user\nrole_arn = arn:aws:iam::111111111111:role/toolkit-role\n";

fn home(d: &StsDouble) -> Home {
    let mut h = common::enroll::home(d, CONFIG);
    let vault = h.path().join("vault-dir/vault");
    h.set("TAPCRED_VAULT", vault.to_str().unwrap());
    h
}

fn vault_path(h: &Home) -> PathBuf {
    h.path().join("vault-dir/vault")
}

fn open(h: &Home) -> OpenVault {
    let file = VaultStore::new(vault_path(h)).read().unwrap().unwrap();
    let mut u = OtpSlotUnlocker::connect(&PcscBackend::new(), Some(KEY_SERIAL), Slot::Two).unwrap();
    open_with(&file, &mut u, &RecordingUi::new()).unwrap()
}

fn enroll(h: &Home) -> Run {
    Run::from(
        h.cmd_detached(&["enroll", "--profile", "mfa", "--to", "vault"])
            .output()
            .expect("run tapcred"),
    )
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn enroll_to_vault_seals_the_seed_and_rolls_back() {
    let Some(mut stack) = PcscStack::start_or_skip("enroll_to_vault_seals_the_seed_and_rolls_back")
    else {
        return;
    };
    let _card = stack.insert(0, card()).expect("insert the virtual YubiKey");

    // No vault: refused before anything is created.
    let d = common::enroll::new_user_double();
    let h = home(&d);
    let out = enroll(&h);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("tapcred vault init"), "{}", out.stderr);
    assert_eq!(d.calls("CreateVirtualMFADevice"), 0);
    h.run(&["vault", "init", "--unlock", "otp"]).ok();
    // The source profile's key goes into the vault too (README's recovery path): enroll
    // signs with it and seals the seed with the same one unlock.
    h.run(&["vault", "import-keys", "--profile", "toolkit-user"])
        .ok();

    // A failure after the seed was sealed (IAM refuses the codes): the entry goes again.
    let before = common::enroll::aws_files(&h);
    let vault_before = open(&h).entry_names().count();
    d.iam_fail_next("EnableMFADevice", 1, "InvalidAuthenticationCode");
    let out = enroll(&h);
    assert_eq!(out.code, 5, "{}", out.stderr);
    for needle in [
        "seed sealed in the vault",
        &format!("undo: removed the seed for {SERIAL} from the vault"),
        "undo: deleted virtual MFA device",
        "everything was undone",
    ] {
        assert!(out.stderr.contains(needle), "{needle}: {}", out.stderr);
    }
    assert_one_unlock_prompt(&out);
    assert_eq!(common::enroll::aws_files(&h), before);
    assert_eq!(open(&h).entry_names().count(), vault_before);
    assert!(d.iam_state().virtual_devices.is_empty());

    // The walk: one unlock, the seed in the vault only, the profile says so.
    let out = enroll(&h);
    out.ok();
    assert!(
        out.stdout.contains(SERIAL) && out.stdout.contains("assumed-role/toolkit-role"),
        "{}",
        out.stdout
    );
    assert_one_unlock_prompt(&out);
    let config = std::fs::read_to_string(h.config_path()).unwrap();
    assert_eq!(
        config,
        format!("{CONFIG}mfa_serial = {SERIAL}\ntapcred_token = vault\n")
    );
    let Secret::TotpSeed(seed) = open(&h).get(&EntryName::seed(SERIAL)).unwrap() else {
        panic!("a seed entry")
    };
    assert_eq!(seed.len(), 40, "an AWS virtual MFA seed is 40 bytes");
    // The seed in the vault is the one IAM enabled: its codes are the ones IAM accepted.
    let events = d.token_code_events();
    let enable: Vec<_> = events
        .iter()
        .filter(|e| e.action == "EnableMFADevice")
        .collect();
    assert_eq!(enable.len(), 2, "{events:?}");
    let s1 = enable[0].matched_step.expect("accepted");
    assert_eq!(enable[0].code, totp_sha1(&seed, s1 * 30));
    // The seed is nowhere in clear: not in any file under HOME, not in the output.
    let b32 = data_encoding::BASE32_NOPAD.encode(&seed);
    for (p, bytes) in h.snapshot() {
        assert!(
            !contains(&bytes, &seed)
                && !contains(&bytes, b32.as_bytes())
                && !contains(&bytes, design::SECRET_ACCESS_KEY.as_bytes()),
            "{} holds the seed or the secret key",
            p.display()
        );
    }
    assert!(!out.stderr.contains(&b32) && !out.stdout.contains(&b32));
    assert_eq!(
        h.run(&["vault", "list", "--json"]).json()["entries"][0]["name"],
        SERIAL
    );
}

/// The vault was opened once: one touch prompt on stderr.
fn assert_one_unlock_prompt(out: &Run) {
    assert_eq!(
        out.stderr
            .lines()
            .filter(|l| l.contains("to unlock the tapcred vault"))
            .count(),
        1,
        "one touch: {}",
        out.stderr
    );
}

/// EnableMFADevice commits and its answer is lost; DeactivateMFADevice is then unreachable:
/// the vault keeps the seed of the enabled device; `enroll --undo` (one unlock) removes it
/// once IAM has deactivated and deleted the device.
#[test]
fn enable_answer_lost_keeps_the_vault_seed_until_undo() {
    let Some(mut stack) =
        PcscStack::start_or_skip("enable_answer_lost_keeps_the_vault_seed_until_undo")
    else {
        return;
    };
    let _card = stack.insert(0, card()).expect("insert the virtual YubiKey");
    let d = common::enroll::new_user_double();
    let h = home(&d);
    h.run(&["vault", "init", "--unlock", "otp"]).ok();
    let before = common::enroll::aws_files(&h);
    d.lose_answer("EnableMFADevice", 1, Fault::ServerError);
    d.iam_fail_next("DeactivateMFADevice", SDK_ATTEMPTS as u32, "ServiceFailure");
    let out = enroll(&h);
    assert_eq!(out.code, 6, "{}", out.stderr);
    assert!(d.iam_state().user_devices[design::USER_NAME].contains(&SERIAL.to_owned()));
    assert!(
        open(&h).get(&EntryName::seed(SERIAL)).is_ok(),
        "the vault keeps the seed of the enabled device: {}",
        out.stderr
    );
    assert!(
        out.stderr.contains("aws iam deactivate-mfa-device"),
        "{}",
        out.stderr
    );
    let out = Run::from(
        h.cmd_detached(&["enroll", "--profile", "mfa", "--undo"])
            .output()
            .expect("run tapcred"),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(open(&h).get(&EntryName::seed(SERIAL)).is_err());
    assert!(d.iam_state().virtual_devices.is_empty());
    assert_eq!(common::enroll::aws_files(&h), before);
}
