//! `tapcred vault init / add-seed / list`, the real binary against the virtual YubiKey's OTP
//! slot through the real pcscd. Skips loudly without root/pcscd/vpcd unless CI=true.
#![cfg(unix)] // runs Linux test stacks (or Unix-only APIs); the Windows build is checked by clippy and Wine

mod common;

use std::io::Write;
use std::process::Stdio;

use common::{Home, Run};
use tapcred::token::otp::Slot;
use tapcred::token::pcsc::PcscBackend;
use tapcred::ui::RecordingUi;
use tapcred::vault::unlock::open_with;
use tapcred::vault::{EntryName, OtpSlotUnlocker, Secret, VaultStore};
use tapcred_testkit::pcsc_stack::PcscStack;
use tapcred_testkit::virtual_yubikey::{OtpSlot, VirtualYubiKey, VykConfig};

const ARN: &str = "arn:aws:iam::111111111111:mfa/toolkit-user";
const SEED: &[u8] = b"forty-byte-AWS-virtual-MFA-seed-for-test";
const OTHER_SEED: &[u8] = b"another seed, twenty";

fn home() -> Home {
    let mut h = Home::empty();
    h.write_config(&format!(
        "[profile mfa]\nmfa_serial = {ARN}\n[profile nomfa]\nregion = us-east-1\n"
    ));
    h.write_credentials(
        "[mfa]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n[nomfa]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = x\n",
    );
    let vault = h.path().join("vault-dir/vault");
    h.set("TAPCRED_VAULT", vault.to_str().unwrap());
    h
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

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn vault_init_add_seed_and_list_through_pcscd() {
    let Some(mut stack) = PcscStack::start_or_skip("vault_init_add_seed_and_list_through_pcscd")
    else {
        return;
    };
    let _card = stack
        .insert(
            0,
            VirtualYubiKey::new(
                VykConfig::new()
                    .serial(8080)
                    .otp_slot(2, OtpSlot::hmac_sha1(*b"cli-vault-slot-key-2", false)),
            ),
        )
        .expect("insert the virtual YubiKey");
    let h = home();
    let vault_path = h.path().join("vault-dir/vault");

    // Before init: no vault, said so.
    h.run(&["vault", "list"])
        .fails_with(3, &["no vault at", "tapcred vault init --unlock otp"]);
    // Bad slots are usage errors; FIDO2 with no authenticator plugged in is said so
    // (tests/cli_vault_fido2.rs covers the FIDO2 command line).
    h.run(&["vault", "init", "--unlock", "fido2"])
        .fails_with(4, &["no FIDO2 authenticator found"]);
    h.run(&["vault", "init", "--unlock", "otp:3"])
        .fails_with(2, &["slot is 1 or 2"]);
    // Slot 1 is empty on this key: the fix is named.
    h.run(&["vault", "init", "--unlock", "otp:1"]).fails_with(
        4,
        &[
            "OTP slot 1 of YubiKey 8080 is empty",
            "ykman otp chalresp --generate 1",
        ],
    );
    assert!(!vault_path.exists());

    let r = h.run(&["vault", "init", "--unlock", "otp"]);
    r.ok();
    assert!(r.stdout.contains("unlocked by otp:8080:2"), "{}", r.stdout);
    assert!(vault_path.is_file());
    h.run(&["vault", "init", "--unlock", "otp"])
        .fails_with(2, &["already exists"]);

    // The seed from stdin (base32, spaced like AWS shows it).
    let b32 = data_encoding::BASE32_NOPAD.encode(SEED);
    let spaced: String = b32
        .as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(" ");
    let r = with_stdin(
        &h,
        &["vault", "add-seed", "--profile", "mfa"],
        spaced.as_bytes(),
    );
    r.ok();
    assert!(r.stdout.contains(ARN), "{}", r.stdout);
    assert!(!r.stdout.contains(&b32) && !r.stderr.contains(&b32));

    let r = h.run(&["vault", "list"]);
    r.ok();
    assert!(r.stdout.contains("unlocker  otp:8080:2"), "{}", r.stdout);
    assert!(
        r.stdout.contains(&format!("seed      {ARN}")),
        "{}",
        r.stdout
    );
    let j = h.run(&["vault", "list", "--json"]).json();
    assert_eq!(j["entries"][0]["name"], ARN);
    assert_eq!(j["unlockers"][0]["id"], "otp:8080:2");

    // On disk: 0600, and neither the seed nor its base32 form.
    let bytes = std::fs::read(&vault_path).unwrap();
    assert!(!contains(&bytes, SEED));
    assert!(!contains(&bytes, b32.as_bytes()));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&vault_path).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // The key opens it and the seed is the one typed.
    let open = || {
        let file = VaultStore::new(&vault_path).read().unwrap().unwrap();
        let mut u = OtpSlotUnlocker::connect(&PcscBackend::new(), Some(8080), Slot::Two).unwrap();
        open_with(&file, &mut u, &RecordingUi::new()).unwrap()
    };
    assert_eq!(
        open().get(&EntryName::seed(ARN)).unwrap(),
        Secret::TotpSeed(zeroize::Zeroizing::new(SEED.to_vec()))
    );

    // --seed-env with an otpauth URI replaces it.
    let mut h2 = home();
    h2.set("TAPCRED_VAULT", vault_path.to_str().unwrap());
    h2.set(
        "MY_SEED",
        &format!(
            "otpauth://totp/Amazon%20Web%20Services:toolkit-user@111111111111?secret={}&issuer=Amazon%20Web%20Services",
            data_encoding::BASE32_NOPAD.encode(OTHER_SEED)
        ),
    );
    h2.run(&[
        "vault",
        "add-seed",
        "--profile",
        "mfa",
        "--seed-env",
        "MY_SEED",
    ])
    .ok();
    assert_eq!(
        open().get(&EntryName::seed(ARN)).unwrap(),
        Secret::TotpSeed(zeroize::Zeroizing::new(OTHER_SEED.to_vec()))
    );
    assert_eq!(open().entry_names().count(), 1);

    // Bad inputs: a profile without mfa_serial, an unset variable, a seed that is not one.
    h.run(&["vault", "add-seed", "--profile", "nomfa", "--seed-env", "X"])
        .fails_with(3, &["profile \"nomfa\" has no mfa_serial"]);
    h.run(&[
        "vault",
        "add-seed",
        "--profile",
        "mfa",
        "--seed-env",
        "UNSET",
    ])
    .fails_with(3, &["$UNSET is not set"]);
    with_stdin(
        &h,
        &["vault", "add-seed", "--profile", "mfa"],
        b"not base32 at all!",
    )
    .fails_with(3, &["the seed from stdin", "not base32"]);
}
