//! Vault integrity against the real binary (issue 17 items 3, 4, 7, 10): an older copy of
//! the vault put back is refused until accepted; `vault import-keys` killed (SIGKILL) at each
//! step is finished by the next run and never leaves the key in a plain-text backup; a vault
//! folder another user owns is refused; a failed `vault init` leaves no `vault.lock`.
//! The YubiKey tests run virtual keys through the real pcscd and skip loudly without
//! root/pcscd/vpcd unless CI=true.
#![cfg(unix)] // runs Linux test stacks (or Unix-only APIs); the Windows build is checked by clippy and Wine

mod common;

use std::path::{Path, PathBuf};

use common::Home;
use tapcred::token::otp::Slot;
use tapcred::token::pcsc::PcscBackend;
use tapcred::ui::RecordingUi;
use tapcred::vault::unlock::open_with;
use tapcred::vault::{EntryName, OtpSlotUnlocker, Secret, VaultStore};
use tapcred_testkit::pcsc_stack::PcscStack;
use tapcred_testkit::virtual_yubikey::{OtpSlot, VirtualYubiKey, VykConfig};
use zeroize::Zeroizing;

const ARN: &str = "arn:aws:iam::111111111111:mfa/toolkit-user";
const KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const SEED: &[u8] = b"forty-byte-AWS-virtual-MFA-seed-for-test";

const CONFIG: &str = "[profile mfa]\nsource_profile = toolkit-user\nmfa_serial = arn:aws:iam::111111111111:mfa/toolkit-user\nrole_arn = arn:aws:iam::111111111111:role/toolkit-role\n";
const CREDENTIALS: &str = "# my keys\n[toolkit-user]\nregion = us-east-1\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\noutput = json\n";
const IMPORTED: &str =
    "# my keys\n[toolkit-user]\nregion = us-east-1\ntapcred_access_key = vault\noutput = json\n";

fn key(serial: u32) -> VirtualYubiKey {
    VirtualYubiKey::new(
        VykConfig::new()
            .serial(serial)
            .otp_slot(2, OtpSlot::hmac_sha1(*b"integrity-slot-key!!", false)),
    )
}

fn home() -> Home {
    let mut h = Home::empty();
    h.write_config(CONFIG);
    h.write_credentials(CREDENTIALS);
    let vault = h.path().join("vault-dir/vault");
    h.set("TAPCRED_VAULT", vault.to_str().unwrap());
    h.set("SEED", &data_encoding::BASE32_NOPAD.encode(SEED));
    h
}

fn vault_path(h: &Home) -> PathBuf {
    h.path().join("vault-dir/vault")
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn generation(h: &Home) -> u64 {
    h.run(&["vault", "list", "--json"]).json()["generation"]
        .as_u64()
        .unwrap()
}

#[test]
fn an_older_copy_of_the_vault_is_refused_until_accepted() {
    let Some(mut stack) =
        PcscStack::start_or_skip("an_older_copy_of_the_vault_is_refused_until_accepted")
    else {
        return;
    };
    let _card = stack
        .insert(0, key(8080))
        .expect("insert the virtual YubiKey");
    let h = home();
    h.run(&["vault", "init", "--unlock", "otp"]).ok();
    h.run(&[
        "vault",
        "add-seed",
        "--profile",
        "mfa",
        "--seed-env",
        "SEED",
    ])
    .ok();
    assert_eq!(generation(&h), 2);
    // A real copy of the vault as it is now (it holds the seed)...
    let old_copy = std::fs::read(vault_path(&h)).unwrap();
    // ...then the seed is removed (the vault is re-keyed) and the key imported.
    h.run(&["vault", "remove", "--profile", "mfa"]).ok();
    h.run(&["vault", "import-keys", "--profile", "toolkit-user"])
        .ok();
    assert_eq!(generation(&h), 4);
    let newest = std::fs::read(vault_path(&h)).unwrap();

    // The old copy put back in place: every command refuses it, naming both generations
    // and the way to accept it; nothing is asked of the key.
    std::fs::write(vault_path(&h), &old_copy).unwrap();
    let shown = vault_path(&h).display().to_string();
    let needles = [
        shown.as_str(),
        "generation 2",
        "generation 4",
        "tapcred vault accept-rollback",
    ];
    h.run(&["vault", "list"]).fails_with(3, &needles);
    h.run(&[
        "vault",
        "add-seed",
        "--profile",
        "mfa",
        "--seed-env",
        "SEED",
    ])
    .fails_with(3, &needles);
    h.run(&["credential-process", "--profile", "mfa"])
        .fails_with(3, &needles);
    assert_eq!(std::fs::read(vault_path(&h)).unwrap(), old_copy);

    // Putting the newest back works again; so does accepting the old one on purpose.
    std::fs::write(vault_path(&h), &newest).unwrap();
    h.run(&["vault", "list"]).ok();
    let r = h.run(&["vault", "accept-rollback"]);
    assert!(r.stdout.contains("nothing to accept"), "{}", r.stdout);
    std::fs::write(vault_path(&h), &old_copy).unwrap();
    let r = h.run(&["vault", "accept-rollback"]);
    r.ok();
    assert!(
        r.stdout.contains("generation 2") && r.stdout.contains("generation 5"),
        "{}",
        r.stdout
    );
    assert_eq!(generation(&h), 5);
    let j = h.run(&["vault", "list", "--json"]).json();
    assert_eq!(j["entries"][0]["name"], ARN, "{j}");
    // And the newest copy is now the older one.
    std::fs::write(vault_path(&h), &newest).unwrap();
    h.run(&["vault", "list"])
        .fails_with(3, &["generation 4", "generation 5"]);
}

/// Run `vault import-keys` stalled at `point` (a test-build hook), wait until it is there,
/// and SIGKILL it.
fn kill_import_at(h: &Home, point: &str) {
    common::kill_at_hook(
        h.cmd(&["vault", "import-keys", "--profile", "toolkit-user"]),
        point,
    );
}

fn files_holding(root: &Path, needle: &[u8]) -> Vec<PathBuf> {
    common::files_under(root)
        .into_iter()
        .filter(|p| contains(&std::fs::read(p).unwrap_or_default(), needle))
        .collect()
}

#[test]
fn import_keys_killed_at_each_step_is_finished_by_the_next_run() {
    let Some(mut stack) =
        PcscStack::start_or_skip("import_keys_killed_at_each_step_is_finished_by_the_next_run")
    else {
        return;
    };
    let _card = stack
        .insert(0, key(8080))
        .expect("insert the virtual YubiKey");
    for point in [
        "import-keys:begun",
        "import-keys:vault-written",
        "import-keys:credentials-edited",
    ] {
        let h = home();
        h.run(&["vault", "init", "--unlock", "otp"]).ok();
        kill_import_at(&h, point);
        // No plain-text copy of the key anywhere but the credentials file itself (which
        // still holds it until its edit), and never a backup of it.
        let creds = h.credentials_path();
        let holding = files_holding(h.path(), SECRET.as_bytes());
        assert!(
            holding.iter().all(|p| *p == creds),
            "{point}: the key is in plain text in {holding:?}"
        );
        assert!(
            !h.path().join(".aws/credentials.tapcred.bak").exists(),
            "{point}: a backup was written"
        );
        // The journal says a change was interrupted.
        let journal = h
            .path()
            .join(".local/share/tapcred/journal/import-keys-toolkit-user.json");
        assert!(journal.exists(), "{point}: no journal left");

        // The next run finishes it: one line says what happened, the result is the same as
        // an uninterrupted import, and the journal is gone.
        let r = h.run(&["vault", "import-keys", "--profile", "toolkit-user"]);
        r.ok();
        match point {
            "import-keys:credentials-edited" => {
                assert!(r.stdout.contains("had finished"), "{point}: {}", r.stdout)
            }
            _ => assert!(
                r.stderr.contains("was interrupted") && r.stdout.contains("moved into the vault"),
                "{point}: {}{}",
                r.stdout,
                r.stderr
            ),
        }
        assert!(!journal.exists(), "{point}: the journal stays");
        assert_eq!(
            std::fs::read_to_string(&creds).unwrap(),
            IMPORTED,
            "{point}"
        );
        assert_eq!(
            files_holding(h.path(), SECRET.as_bytes()),
            Vec::<PathBuf>::new()
        );
        let file = VaultStore::new(vault_path(&h)).read().unwrap().unwrap();
        let mut u = OtpSlotUnlocker::connect(&PcscBackend::new(), Some(8080), Slot::Two).unwrap();
        let v = open_with(&file, &mut u, &RecordingUi::new()).unwrap();
        assert_eq!(
            v.get(&EntryName::access_key("toolkit-user")).unwrap(),
            Secret::AccessKey {
                access_key_id: KEY_ID.into(),
                secret_access_key: Zeroizing::new(SECRET.into()),
            },
            "{point}"
        );
        // A third run: nothing pending, the key is in the vault.
        h.run(&["vault", "import-keys", "--profile", "toolkit-user"])
            .fails_with(2, &["already in the vault"]);
    }
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| {
        use std::os::unix::fs::MetadataExt;
        m.uid() == 0
    })
}

#[test]
fn a_vault_folder_another_user_owns_is_refused() {
    if !is_root() {
        tapcred_testkit::ci::skip(
            "a_vault_folder_another_user_owns_is_refused",
            "it needs root (to give a folder to another user)",
        );
        return;
    }
    let mut h = home();
    let dir = h.path().join("theirs");
    std::fs::create_dir(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
    h.set("TAPCRED_VAULT", dir.join("vault").to_str().unwrap());
    let needles = [
        dir.display().to_string(),
        "belongs to uid 65534, not to you".to_owned(),
        "TAPCRED_VAULT".to_owned(),
        "chown".to_owned(),
    ];
    let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
    for args in [
        &["vault", "list"][..],
        &["vault", "init", "--unlock", "otp"],
        &["vault", "import-keys", "--profile", "toolkit-user"],
    ] {
        h.run(args).fails_with(7, &needles);
    }
    assert_eq!(
        common::files_under(&dir),
        Vec::<PathBuf>::new(),
        "nothing made there"
    );
    // The same folder given back: no complaint about it.
    std::os::unix::fs::chown(&dir, Some(0), Some(0)).unwrap();
    h.run(&["vault", "list"])
        .fails_with(3, &["no vault at", "tapcred vault init"]);
}

#[test]
fn a_failed_vault_init_leaves_no_lock_and_no_folder() {
    let Some(stack) = PcscStack::start_or_skip("a_failed_vault_init_leaves_no_lock_and_no_folder")
    else {
        return;
    };
    // pcscd runs, no key is plugged in: init fails after taking the vault's lock.
    let h = home();
    let before = h.snapshot();
    h.run(&["vault", "init", "--unlock", "otp"])
        .fails_with(4, &[]);
    assert!(
        !h.path().join("vault-dir").exists(),
        "the folder init made stays"
    );
    // A folder that was there stays, without a lock file.
    std::fs::create_dir(h.path().join("vault-dir")).unwrap();
    h.run(&["vault", "init", "--unlock", "otp"])
        .fails_with(4, &[]);
    assert_eq!(
        common::files_under(&h.path().join("vault-dir")),
        Vec::<PathBuf>::new()
    );
    std::fs::remove_dir(h.path().join("vault-dir")).unwrap();
    assert_eq!(h.snapshot(), before);
    drop(stack);
}
