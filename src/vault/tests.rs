//! The vault format, its crypto and the file on disk, without hardware: unlocker outputs are
//! plain bytes here (the OTP unlocker over the virtual YubiKey is tested in tests/vault_otp.rs).

use std::sync::Arc;

use proptest::prelude::*;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::format::{EntryName, OpenVault, Secret, UnlockerDesc, UnlockerKind, VaultFile};
use super::store::VaultStore;
use super::{UnlockOutput, VaultError};

const SEED: &[u8] = b"0123456789abcdefghijABCDEFGHIJ0123456789"; // 40 bytes, like AWS
const AKID: &str = "AKIAIOSFODNN7EXAMPLE";
const SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const SERIAL: &str = "arn:aws:iam::111111111111:mfa/toolkit-user";

fn desc(id: &str) -> UnlockerDesc {
    UnlockerDesc::new_random(UnlockerKind::OtpHmacSha1, id).unwrap()
}

fn seed(b: &[u8]) -> Secret {
    Secret::TotpSeed(Zeroizing::new(b.to_vec()))
}

fn keys(id: &str, secret: &str) -> Secret {
    Secret::AccessKey {
        access_key_id: id.to_owned(),
        secret_access_key: Zeroizing::new(secret.to_owned()),
    }
}

/// A vault with one unlocker `otp:1:2` (output `out`), a seed and an access key.
fn sample(out: &[u8]) -> (UnlockerDesc, Vec<u8>) {
    let d = desc("otp:1:2");
    let mut v = OpenVault::create(d.clone(), out).unwrap();
    v.put(EntryName::seed(SERIAL), &seed(SEED)).unwrap();
    v.put(
        EntryName::access_key("toolkit-user"),
        &keys(AKID, SECRET_KEY),
    )
    .unwrap();
    (d, v.to_bytes())
}

const OUT_A: &[u8; 20] = b"unlocker-output-A-20";
const OUT_B: &[u8; 32] = b"unlocker-output-B-thirty-two-byt";

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn round_trip_seed_and_access_key() {
    let (_, bytes) = sample(OUT_A);
    let f = VaultFile::parse(&bytes).unwrap();
    // The header is readable without a key: unlockers and entry names, no secrets.
    assert_eq!(
        f.unlocker_descs()
            .map(|d| d.id.as_str())
            .collect::<Vec<_>>(),
        ["otp:1:2"]
    );
    assert_eq!(
        f.entry_names().cloned().collect::<Vec<_>>(),
        [
            EntryName::seed(SERIAL),
            EntryName::access_key("toolkit-user")
        ]
    );
    let v = f.open("otp:1:2", OUT_A).unwrap();
    assert_eq!(v.get(&EntryName::seed(SERIAL)).unwrap(), seed(SEED));
    assert_eq!(
        v.get(&EntryName::access_key("toolkit-user")).unwrap(),
        keys(AKID, SECRET_KEY)
    );
    // Written again unchanged, it reads back the same (fresh MAC, same entries).
    let again = VaultFile::parse(&v.to_bytes())
        .unwrap()
        .open("otp:1:2", OUT_A)
        .unwrap();
    assert_eq!(again.get(&EntryName::seed(SERIAL)).unwrap(), seed(SEED));
    // Names are per kind: a seed named like a profile is another entry.
    assert!(matches!(
        v.get(&EntryName::seed("toolkit-user")),
        Err(VaultError::NotFound(_))
    ));
}

#[test]
fn wrong_unlocker_output_cannot_open() {
    let (_, bytes) = sample(OUT_A);
    let f = VaultFile::parse(&bytes).unwrap();
    for wrong in [&b"unlocker-output-A-21"[..], &[0u8; 20], OUT_B, b""] {
        let e = f.open("otp:1:2", wrong).unwrap_err();
        assert!(matches!(e, VaultError::WrongKey(_)), "{e:?}");
        assert!(
            e.message().contains("\"otp:1:2\" cannot open this vault"),
            "{e}"
        );
        assert_eq!(crate::Error::from(e).exit_code(), 4);
    }
    let e = f.open("otp:9:1", OUT_A).unwrap_err();
    assert!(matches!(e, VaultError::NotFound(_)), "{e:?}");
    assert!(e.message().contains("otp:1:2"), "{e}");
}

#[test]
fn backup_unlocker_opens_the_same_entries() {
    let (_, bytes) = sample(OUT_A);
    let mut v = VaultFile::parse(&bytes)
        .unwrap()
        .open("otp:1:2", OUT_A)
        .unwrap();
    v.add_unlocker(desc("otp:2:2"), OUT_B).unwrap();
    // Same id twice is refused.
    assert!(matches!(
        v.add_unlocker(desc("otp:2:2"), OUT_B),
        Err(VaultError::Invalid(_))
    ));
    let f = VaultFile::parse(&v.to_bytes()).unwrap();
    let by_b = f.open("otp:2:2", OUT_B).unwrap();
    assert_eq!(by_b.get(&EntryName::seed(SERIAL)).unwrap(), seed(SEED));
    assert_eq!(
        by_b.get(&EntryName::access_key("toolkit-user")).unwrap(),
        keys(AKID, SECRET_KEY)
    );
    // An entry added through the backup is readable through the first key.
    let mut by_b = by_b;
    by_b.put(EntryName::seed("arn:aws:iam::1:mfa/x"), &seed(b"other"))
        .unwrap();
    let f = VaultFile::parse(&by_b.to_bytes()).unwrap();
    let by_a = f.open("otp:1:2", OUT_A).unwrap();
    assert_eq!(
        by_a.get(&EntryName::seed("arn:aws:iam::1:mfa/x")).unwrap(),
        seed(b"other")
    );
    // Each output opens only its own unlocker.
    assert!(matches!(
        f.open("otp:2:2", OUT_A),
        Err(VaultError::WrongKey(_))
    ));
    // Removing the backup leaves the first; the last one cannot be removed.
    let mut by_a = by_a;
    by_a.remove_unlocker("otp:2:2").unwrap();
    assert!(matches!(
        by_a.remove_unlocker("otp:1:2"),
        Err(VaultError::Invalid(_))
    ));
    let f = VaultFile::parse(&by_a.to_bytes()).unwrap();
    assert!(matches!(
        f.open("otp:2:2", OUT_B),
        Err(VaultError::NotFound(_))
    ));
}

#[test]
fn every_changed_byte_is_reported_as_damage() {
    let (_, bytes) = sample(OUT_A);
    for i in 0..bytes.len() {
        for flip in [0x01u8, 0x80] {
            let mut t = bytes.clone();
            t[i] ^= flip;
            let r = VaultFile::parse(&t).and_then(|f| f.open("otp:1:2", OUT_A));
            match r {
                Err(VaultError::Damaged(why)) => assert!(!why.is_empty()),
                // The two version bytes: another version is named as such.
                Err(VaultError::UnsupportedVersion(_)) if (8..10).contains(&i) => {}
                other => panic!("byte {i} ^ {flip:#x}: {other:?}"),
            }
        }
    }
}

#[test]
fn a_recomputed_checksum_does_not_hide_an_edit() {
    // Someone who edits the file and fixes the unkeyed checksum is caught by the wrapped
    // key's tag, an entry's tag, or the keyed MAC: the vault never opens with the edit.
    let (_, bytes) = sample(OUT_A);
    let body = bytes.len() - 32;
    let mut opened_damaged = 0;
    for i in 10..body {
        let mut t = bytes[..body].to_vec();
        t[i] ^= 0x01;
        let sum = Sha256::digest(&t);
        t.extend_from_slice(&sum);
        match VaultFile::parse(&t).and_then(|f| f.open("otp:1:2", OUT_A)) {
            Ok(_) => panic!("byte {i} edited and the vault still opened"),
            Err(VaultError::Damaged(_)) => opened_damaged += 1,
            // The edit hit this unlocker's own fields or wrapped key.
            Err(VaultError::WrongKey(_) | VaultError::NotFound(_)) => {}
            Err(e) => panic!("byte {i}: {e:?}"),
        }
    }
    assert!(opened_damaged > body / 2, "{opened_damaged} of {body}");
    // Dropping an entry and re-sealing the checksum: the keyed MAC catches it.
    let f = VaultFile::parse(&bytes).unwrap();
    let v = f.open("otp:1:2", OUT_A).unwrap();
    let mut fewer = VaultFile::parse(&bytes)
        .unwrap()
        .open("otp:1:2", OUT_A)
        .unwrap();
    assert!(fewer.remove(&EntryName::seed(SERIAL)));
    let fewer_bytes = fewer.to_bytes();
    let full_bytes = v.to_bytes();
    // Splice: the full file's MAC on the shorter body, checksum recomputed.
    let mut spliced = fewer_bytes[..fewer_bytes.len() - 64].to_vec();
    spliced.extend_from_slice(&full_bytes[full_bytes.len() - 64..full_bytes.len() - 32]);
    let sum = Sha256::digest(&spliced);
    spliced.extend_from_slice(&sum);
    assert!(matches!(
        VaultFile::parse(&spliced).and_then(|f| f.open("otp:1:2", OUT_A)),
        Err(VaultError::Damaged(_))
    ));
}

#[test]
fn every_truncation_and_extension_is_reported_as_damage() {
    let (_, bytes) = sample(OUT_A);
    for n in 0..bytes.len() {
        match VaultFile::parse(&bytes[..n]) {
            Err(VaultError::Damaged(why)) => assert!(!why.is_empty()),
            other => panic!("truncated to {n}: {other:?}"),
        }
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(matches!(
        VaultFile::parse(&longer),
        Err(VaultError::Damaged(_))
    ));
    let e = VaultFile::parse(&bytes[..20]).unwrap_err();
    assert!(e.message().starts_with("vault damaged: "), "{e}");
    assert!(e.message().contains("restore it from a backup"), "{e}");
    assert_eq!(crate::Error::from(e).exit_code(), 3);
}

#[test]
fn debug_output_has_no_secret() {
    let (_, bytes) = sample(OUT_A);
    let v = VaultFile::parse(&bytes)
        .unwrap()
        .open("otp:1:2", OUT_A)
        .unwrap();
    let s = v.get(&EntryName::seed(SERIAL)).unwrap();
    let k = v.get(&EntryName::access_key("toolkit-user")).unwrap();
    let shown = format!(
        "{v:?} {s:?} {k:?} {:?} {:?}",
        UnlockOutput::new(OUT_A.to_vec()),
        VaultFile::parse(&bytes).unwrap()
    );
    for secret in [
        std::str::from_utf8(SEED).unwrap(),
        SECRET_KEY,
        std::str::from_utf8(OUT_A).unwrap(),
    ] {
        assert!(!shown.contains(secret), "{shown}");
    }
    assert!(shown.contains(AKID), "the key id is not secret: {shown}");
}

#[test]
fn kind_and_name_rules() {
    let mut v = OpenVault::create(desc("otp:1:2"), OUT_A).unwrap();
    assert!(matches!(
        v.put(EntryName::seed(SERIAL), &keys(AKID, SECRET_KEY)),
        Err(VaultError::Invalid(_))
    ));
    for bad in ["", "a\nb", &"x".repeat(600)] {
        assert!(matches!(
            v.put(EntryName::seed(bad), &seed(SEED)),
            Err(VaultError::Invalid(_))
        ));
    }
    // Replacing an entry keeps one entry with the new secret.
    v.put(EntryName::seed(SERIAL), &seed(b"one")).unwrap();
    v.put(EntryName::seed(SERIAL), &seed(b"two")).unwrap();
    assert_eq!(v.entry_names().count(), 1);
    assert_eq!(v.get(&EntryName::seed(SERIAL)).unwrap(), seed(b"two"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Neither the seed, nor the secret access key, nor the unlocker's output, nor the data
    /// key or the wrapping key derived from the output appear anywhere in the file's bytes.
    #[test]
    fn file_bytes_never_contain_a_secret(
        seed_bytes in proptest::collection::vec(any::<u8>(), 16..64),
        secret in "[A-Za-z0-9/+]{40}",
        out in proptest::collection::vec(any::<u8>(), 20..=32),
    ) {
        let d = desc("otp:7:2");
        let mut v = OpenVault::create(d.clone(), &out).unwrap();
        v.put(EntryName::seed(SERIAL), &seed(&seed_bytes)).unwrap();
        v.put(EntryName::access_key("p"), &keys(AKID, &secret)).unwrap();
        let bytes = v.to_bytes();
        let (data_key, entry_key, mac_key) = v.test_keys();
        let kek = super::format::test_kek(&d, &out);
        for (what, s) in [
            ("seed", &seed_bytes[..]),
            ("secret access key", secret.as_bytes()),
            ("unlocker output", &out[..]),
            ("data key", &data_key[..]),
            ("entry key", &entry_key[..]),
            ("mac key", &mac_key[..]),
            ("wrapping key", &kek[..]),
        ] {
            prop_assert!(!contains(&bytes, s), "the file contains the {what}");
            // Not even a 12-byte piece of it.
            for piece in s.windows(12) {
                prop_assert!(!contains(&bytes, piece), "the file contains part of the {what}");
            }
        }
        let b32 = data_encoding::BASE32_NOPAD.encode(&seed_bytes);
        prop_assert!(!contains(&bytes, b32.as_bytes()));
    }

    /// The parser never panics, whatever the bytes.
    #[test]
    fn parse_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = VaultFile::parse(&bytes);
        let mut with_magic = super::format::MAGIC.to_vec();
        with_magic.extend_from_slice(&[0, 1]);
        with_magic.extend_from_slice(&bytes);
        let _ = VaultFile::parse(&with_magic);
        // And with a valid checksum, so the structure parser itself is exercised.
        let sum = Sha256::digest(&with_magic);
        with_magic.extend_from_slice(&sum);
        if let Ok(f) = VaultFile::parse(&with_magic) {
            let _ = f.open("otp:1:2", OUT_A);
        }
    }

    /// Edits of a real vault (splices, random overwrites, with the checksum recomputed) never
    /// panic and never open.
    #[test]
    fn edited_vaults_never_panic_or_open(
        at in any::<proptest::sample::Index>(),
        junk in proptest::collection::vec(any::<u8>(), 1..8),
        cut in any::<proptest::sample::Index>(),
    ) {
        let (_, bytes) = sample(OUT_A);
        let body = &bytes[..bytes.len() - 32];
        let i = at.index(body.len());
        let mut t = body[..i].to_vec();
        t.extend_from_slice(&junk);
        let j = (i + cut.index(8)).min(body.len());
        t.extend_from_slice(&body[j..]);
        let sum = Sha256::digest(&t);
        t.extend_from_slice(&sum);
        if t != bytes {
            prop_assert!(VaultFile::parse(&t).and_then(|f| f.open("otp:1:2", OUT_A)).is_err());
        }
    }
}

// ----- the file on disk -------------------------------------------------------------------

fn store_in(dir: &tempfile::TempDir) -> VaultStore {
    VaultStore::new(dir.path().join("sub").join("vault"))
}

#[test]
fn store_writes_atomically_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(&dir);
    assert!(store.read().unwrap().is_none());
    let (_, bytes) = sample(OUT_A);
    let v = VaultFile::parse(&bytes)
        .unwrap()
        .open("otp:1:2", OUT_A)
        .unwrap();
    {
        let lock = store.lock().unwrap();
        assert!(lock.read().unwrap().is_none());
        lock.write(&v).unwrap();
    }
    let f = store.read().unwrap().unwrap();
    let back = f.open("otp:1:2", OUT_A).unwrap();
    assert_eq!(back.get(&EntryName::seed(SERIAL)).unwrap(), seed(SEED));
    // No temp file is left beside it.
    let names: Vec<String> = std::fs::read_dir(store.path().parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(sorted, ["vault", "vault.lock"], "{names:?}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(store.path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
    // A damaged file on disk is reported with its path.
    let mut raw = std::fs::read(store.path()).unwrap();
    let n = raw.len();
    raw.truncate(n - 1);
    std::fs::write(store.path(), &raw).unwrap();
    let e = store.read().unwrap_err();
    assert!(matches!(e, VaultError::Damaged(_)), "{e:?}");
    assert!(
        e.message().contains(&store.path().display().to_string()),
        "{e}"
    );
}

#[test]
fn store_refuses_a_directory_at_the_vault_path() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(&dir);
    std::fs::create_dir_all(store.path()).unwrap();
    let e = store.read().unwrap_err();
    assert!(matches!(e, VaultError::Io(_)), "{e:?}");
    assert!(e.message().contains("not a regular file"), "{e}");
}

#[cfg(unix)]
#[test]
fn store_refuses_a_vault_others_can_read_or_a_link() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(&dir);
    store
        .lock()
        .unwrap()
        .write(&OpenVault::create(desc("otp:1:2"), OUT_A).unwrap())
        .unwrap();
    std::fs::set_permissions(store.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = store.read().unwrap_err();
    assert!(matches!(e, VaultError::Io(_)), "{e:?}");
    assert!(e.message().contains("chmod 600"), "{e}");
    std::fs::set_permissions(store.path(), std::fs::Permissions::from_mode(0o600)).unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(store.path(), &link).unwrap();
    let e = VaultStore::new(&link).read().unwrap_err();
    assert!(e.message().contains("symbolic link"), "{e}");
    assert!(store.read().unwrap().is_some());
}

#[test]
fn default_path_rules() {
    use std::collections::HashMap;
    let env = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    assert_eq!(
        VaultStore::default_path(&env(&[("TAPCRED_VAULT", "/v/x"), ("HOME", "/h")])),
        Some("/v/x".into())
    );
    assert_eq!(
        VaultStore::default_path(&env(&[("XDG_DATA_HOME", "/d"), ("HOME", "/h")])),
        Some("/d/tapcred/vault".into())
    );
    assert_eq!(
        VaultStore::default_path(&env(&[("XDG_DATA_HOME", "rel"), ("HOME", "/h")])),
        Some("/h/.local/share/tapcred/vault".into())
    );
    assert_eq!(VaultStore::default_path(&env(&[])), None);
}

#[test]
fn concurrent_writers_under_the_lock_lose_nothing() {
    // Writers in separate threads, each with its own store handle (its own lock file
    // descriptor, as separate processes have): lock → read → open → add → write, many
    // times each. Without the lock, read-modify-write races would drop entries.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vault");
    let d = desc("otp:1:2");
    {
        let store = VaultStore::new(&path);
        let lock = store.lock().unwrap();
        lock.write(&OpenVault::create(d, OUT_A).unwrap()).unwrap();
    }
    let path = Arc::new(path);
    const WRITERS: usize = 4;
    const EACH: usize = 8;
    let handles: Vec<_> = (0..WRITERS)
        .map(|w| {
            let path = Arc::clone(&path);
            std::thread::spawn(move || {
                let store = VaultStore::new(path.as_path());
                for i in 0..EACH {
                    let lock = store.lock().unwrap();
                    let mut v = lock
                        .read()
                        .unwrap()
                        .unwrap()
                        .open("otp:1:2", OUT_A)
                        .unwrap();
                    // Widen the race window a little.
                    std::thread::yield_now();
                    v.put(
                        EntryName::seed(format!("arn:aws:iam::1:mfa/w{w}-{i}")),
                        &seed(format!("seed-{w}-{i}").as_bytes()),
                    )
                    .unwrap();
                    lock.write(&v).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let v = VaultStore::new(path.as_path())
        .read()
        .unwrap()
        .unwrap()
        .open("otp:1:2", OUT_A)
        .unwrap();
    assert_eq!(v.entry_names().count(), WRITERS * EACH);
    for w in 0..WRITERS {
        for i in 0..EACH {
            assert_eq!(
                v.get(&EntryName::seed(format!("arn:aws:iam::1:mfa/w{w}-{i}")))
                    .unwrap(),
                seed(format!("seed-{w}-{i}").as_bytes())
            );
        }
    }
}

#[test]
fn a_writer_waits_for_the_lock_and_gives_up_after_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let store = VaultStore::new(dir.path().join("vault"));
    let held = store.lock().unwrap();
    let other = VaultStore::new(dir.path().join("vault"))
        .with_lock_timeout(std::time::Duration::from_millis(100));
    let e = other.lock().unwrap_err();
    assert!(matches!(e, VaultError::Io(_)), "{e:?}");
    assert!(e.message().contains("another tapcred process"), "{e}");
    drop(held);
    other.lock().unwrap();
}

// ----- re-key on removal, format upgrade, generations ---------------------------------------

/// Decrypt every entry of `file` with `entry_key`, the way anyone holding that key would
/// (XChaCha20-Poly1305 with the entry's AAD), without tapcred's open: which ones open.
fn entries_opened_by(file: &VaultFile, entry_key: &[u8; 32]) -> Vec<EntryName> {
    use chacha20poly1305::aead::{Aead, KeyInit, Payload};
    use chacha20poly1305::{XChaCha20Poly1305, XNonce};
    let c = XChaCha20Poly1305::new_from_slice(entry_key).unwrap();
    file.test_sealed()
        .into_iter()
        .filter(|(name, nonce, sealed)| {
            let mut aad = b"tapcred vault v1 entry".to_vec();
            aad.push(match name.kind {
                super::EntryKind::TotpSeed => 1,
                super::EntryKind::AccessKey => 2,
            });
            aad.extend_from_slice(&(name.name.len() as u16).to_be_bytes());
            aad.extend_from_slice(name.name.as_bytes());
            c.decrypt(
                &XNonce::from(*nonce),
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .is_ok()
        })
        .map(|(name, _, _)| name)
        .collect()
}

/// A vault with unlockers A (`otp:1:2`) and B (`otp:2:2`), a seed and an access key.
fn two_unlockers() -> Vec<u8> {
    let (_, bytes) = sample(OUT_A);
    let mut v = VaultFile::parse(&bytes)
        .unwrap()
        .open("otp:1:2", OUT_A)
        .unwrap();
    v.add_unlocker(desc("otp:2:2"), OUT_B).unwrap();
    v.to_bytes()
}

#[test]
fn removing_an_unlocker_rekeys_so_its_output_opens_nothing_written_after() {
    let old = VaultFile::parse(&two_unlockers()).unwrap();
    // What B (about to be removed) gets from the file as it is now: the data key.
    let by_b = old.open("otp:2:2", OUT_B).unwrap();
    let (old_data_key, old_entry_key, _) = by_b.test_keys();
    assert_eq!(entries_opened_by(&old, &old_entry_key).len(), 2);

    // A removes B (one unlock: A only), then adds a secret.
    let mut v = old.open("otp:1:2", OUT_A).unwrap();
    v.remove_unlocker("otp:2:2").unwrap();
    v.put(
        EntryName::seed("arn:aws:iam::1:mfa/after"),
        &seed(b"added after"),
    )
    .unwrap();
    let new = VaultFile::parse(&v.to_bytes()).unwrap();
    assert_eq!(new.entry_names().count(), 3);
    // B's old data key opens none of them, not even through a decryptor that skips the MAC.
    assert_eq!(entries_opened_by(&new, &old_entry_key), []);
    let by_a = new.open("otp:1:2", OUT_A).unwrap();
    let (new_data_key, new_entry_key, _) = by_a.test_keys();
    assert_ne!(new_data_key, old_data_key);
    assert_eq!(entries_opened_by(&new, &new_entry_key).len(), 3);
    assert_eq!(by_a.get(&EntryName::seed(SERIAL)).unwrap(), seed(SEED));
    // B's output against A's sealed key: the wrong key.
    assert!(matches!(
        new.open("otp:1:2", OUT_B),
        Err(VaultError::WrongKey(_))
    ));
}

#[test]
fn removing_a_secret_rekeys_the_vault() {
    let old = VaultFile::parse(&two_unlockers()).unwrap();
    let mut v = old.open("otp:2:2", OUT_B).unwrap();
    let (_, old_entry_key, _) = v.test_keys();
    assert!(
        v.remove_entry(&EntryName::access_key("toolkit-user"))
            .unwrap()
    );
    assert!(!v.remove_entry(&EntryName::access_key("nosuch")).unwrap());
    v.put(
        EntryName::seed("arn:aws:iam::1:mfa/after"),
        &seed(b"added after"),
    )
    .unwrap();
    let new = VaultFile::parse(&v.to_bytes()).unwrap();
    assert_eq!(entries_opened_by(&new, &old_entry_key), []);
    // Both unlockers still open it (B was not present for A's new sealed key: none needed).
    for (id, out) in [("otp:1:2", &OUT_A[..]), ("otp:2:2", &OUT_B[..])] {
        let o = new.open(id, out).unwrap();
        assert_eq!(o.get(&EntryName::seed(SERIAL)).unwrap(), seed(SEED));
        assert!(matches!(
            o.get(&EntryName::access_key("toolkit-user")),
            Err(VaultError::NotFound(_))
        ));
    }
}

#[test]
fn a_version_1_file_opens_and_is_upgraded_on_the_next_write() {
    let d = desc("otp:1:2");
    let v1 = super::format::test_v1_bytes(&[(&d, OUT_A)], &[(EntryName::seed(SERIAL), seed(SEED))]);
    let f = VaultFile::parse(&v1).unwrap();
    assert_eq!((f.version(), f.generation()), (1, 0));
    assert_eq!(f.test_sealed_wraps(), [false]);
    assert!(matches!(
        f.open("otp:1:2", OUT_B),
        Err(VaultError::WrongKey(_))
    ));
    let mut v = f.open("otp:1:2", OUT_A).unwrap();
    assert_eq!(v.get(&EntryName::seed(SERIAL)).unwrap(), seed(SEED));
    // Opening sealed the opener's key: the vault can be re-keyed with it alone.
    assert_eq!(v.direct_unlockers().count(), 0);
    v.add_unlocker(desc("otp:2:2"), OUT_B).unwrap();
    let up = VaultFile::parse(&v.to_bytes_at(7)).unwrap();
    assert_eq!((up.version(), up.generation()), (2, 7));
    assert_eq!(up.test_sealed_wraps(), [true, true]);
    let mut v = up.open("otp:2:2", OUT_B).unwrap();
    assert_eq!(v.generation(), 7);
    v.remove_unlocker("otp:1:2").unwrap();
    assert_eq!(v.get(&EntryName::seed(SERIAL)).unwrap(), seed(SEED));
}

#[test]
fn a_direct_unlocker_stops_a_rekey_until_it_answers_once() {
    // What an older tapcred's `add-unlock` made: two direct unlockers. A opens.
    let (da, db) = (desc("otp:1:2"), desc("otp:2:2"));
    let v1 = super::format::test_v1_bytes(
        &[(&da, OUT_A), (&db, OUT_B)],
        &[(EntryName::seed(SERIAL), seed(SEED))],
    );
    let mut v = VaultFile::parse(&v1)
        .unwrap()
        .open("otp:1:2", OUT_A)
        .unwrap();
    let direct: Vec<String> = v.direct_unlockers().map(|d| d.id.clone()).collect();
    assert_eq!(direct, ["otp:2:2"]);
    let e = v.remove_entry(&EntryName::seed(SERIAL)).unwrap_err();
    assert!(e.message().contains("otp:2:2"), "{e}");
    assert!(v.get(&EntryName::seed(SERIAL)).is_ok(), "nothing removed");
    let e = v.remove_unlocker("otp:1:2").unwrap_err();
    assert!(e.message().contains("otp:2:2"), "{e}");
    assert_eq!(v.unlocker_descs().count(), 2, "nothing removed");
    // Removing B itself needs no answer from B.
    let mut without_b = VaultFile::parse(&v1)
        .unwrap()
        .open("otp:1:2", OUT_A)
        .unwrap();
    without_b.remove_unlocker("otp:2:2").unwrap();
    // B answers once (the wrong output is refused): sealed, and the removal goes through.
    assert!(matches!(
        v.seal_direct("otp:2:2", OUT_A),
        Err(VaultError::WrongKey(_))
    ));
    v.seal_direct("otp:2:2", OUT_B).unwrap();
    assert!(v.remove_entry(&EntryName::seed(SERIAL)).unwrap());
    let after = VaultFile::parse(&v.to_bytes()).unwrap();
    assert_eq!(after.entry_names().count(), 0);
    assert!(after.open("otp:2:2", OUT_B).is_ok());
    assert!(after.open("otp:1:2", OUT_A).is_ok());
}

#[test]
fn the_generation_is_under_the_mac() {
    let (_, bytes) = sample(OUT_A);
    let v = VaultFile::parse(&bytes)
        .unwrap()
        .open("otp:1:2", OUT_A)
        .unwrap();
    let mut raw = v.to_bytes_at(5);
    // magic 8, version 2, aead 1, then the generation: make it 6 and fix the checksum.
    assert_eq!(raw[11..19], 5u64.to_be_bytes());
    raw[18] = 6;
    let n = raw.len();
    let sum = Sha256::digest(&raw[..n - 32]);
    raw[n - 32..].copy_from_slice(&sum);
    let f = VaultFile::parse(&raw).unwrap();
    assert_eq!(f.generation(), 6);
    assert!(matches!(
        f.open("otp:1:2", OUT_A),
        Err(VaultError::Damaged(_))
    ));
}

/// A store at `dir/sub/vault` remembering generations in `dir/seen`.
fn store_with_seen(dir: &tempfile::TempDir) -> VaultStore {
    store_in(dir).with_seen_dir(Some(dir.path().join("seen")))
}

#[test]
fn an_older_copy_put_back_is_refused_until_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_seen(&dir);
    let (_, bytes) = sample(OUT_A);
    let v = VaultFile::parse(&bytes)
        .unwrap()
        .open("otp:1:2", OUT_A)
        .unwrap();
    store.lock().unwrap().write(&v).unwrap();
    let old_copy = std::fs::read(store.path()).unwrap();
    let f = store.read().unwrap().unwrap();
    assert_eq!(f.generation(), 1);
    let mut v = f.open("otp:1:2", OUT_A).unwrap();
    v.remove_entry(&EntryName::seed(SERIAL)).unwrap();
    {
        let lock = store.lock().unwrap();
        lock.write(&v).unwrap();
        // A second write under the same lock (an undo) still goes up.
        lock.write(&v).unwrap();
    }
    assert_eq!(store.read().unwrap().unwrap().generation(), 3);
    assert_eq!(store.seen_generation(), Some(3));

    // The old copy, put back in place byte for byte.
    std::fs::write(store.path(), &old_copy).unwrap();
    let e = store.read().unwrap_err();
    assert!(
        matches!(
            e,
            VaultError::RolledBack {
                file: 1,
                seen: 3,
                ..
            }
        ),
        "{e:?}"
    );
    let msg = e.message();
    for needle in [
        store.path().display().to_string().as_str(),
        "generation 1",
        "generation 3",
        "tapcred vault accept-rollback",
    ] {
        assert!(msg.contains(needle), "{msg} should say {needle:?}");
    }
    assert_eq!(crate::Error::from(e).exit_code(), 3);
    // Under the lock too; and a store with no record (a judge) reads it.
    assert!(matches!(
        store.lock().unwrap().read(),
        Err(VaultError::RolledBack { .. })
    ));
    assert_eq!(store_in(&dir).read().unwrap().unwrap().generation(), 1);

    // Accepting it: read without the check, written above everything seen.
    let f = store.read_accepting_rollback().unwrap().unwrap();
    let v = f.open("otp:1:2", OUT_A).unwrap();
    store.lock().unwrap().write(&v).unwrap();
    let f = store.read().unwrap().unwrap();
    assert_eq!(f.generation(), 4);
    assert!(f.entry_names().any(|n| *n == EntryName::seed(SERIAL)));
}

#[test]
fn a_forged_header_generation_does_not_raise_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_seen(&dir);
    let (_, bytes) = sample(OUT_A);
    let v = VaultFile::parse(&bytes)
        .unwrap()
        .open("otp:1:2", OUT_A)
        .unwrap();
    store.lock().unwrap().write(&v).unwrap();
    let good = std::fs::read(store.path()).unwrap();
    // Someone without the key raises the generation (and fixes the checksum).
    let mut forged = good.clone();
    forged[18] = 0xff;
    let n = forged.len();
    let sum = Sha256::digest(&forged[..n - 32]);
    forged[n - 32..].copy_from_slice(&sum);
    std::fs::write(store.path(), &forged).unwrap();
    let f = store.read().unwrap().unwrap();
    assert!(matches!(
        f.open("otp:1:2", OUT_A),
        Err(VaultError::Damaged(_))
    ));
    assert_eq!(store.seen_generation(), Some(1));
    // The good file is still accepted afterwards.
    std::fs::write(store.path(), &good).unwrap();
    let f = store.read().unwrap().unwrap();
    let v = f.open("otp:1:2", OUT_A).unwrap();
    store.remember_opened(&v);
    assert_eq!(store.seen_generation(), Some(1));
}

#[test]
fn a_lock_that_wrote_nothing_leaves_no_lock_file_and_no_folder() {
    let dir = tempfile::tempdir().unwrap();
    let store = VaultStore::new(dir.path().join("a/b/vault"));
    drop(store.lock().unwrap());
    assert!(
        !dir.path().join("a").exists(),
        "the folders it made are removed"
    );
    // A folder that was there stays; the lock file made for nothing goes.
    std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
    drop(store.lock().unwrap());
    assert!(dir.path().join("a/b").is_dir());
    assert!(!dir.path().join("a/b/vault.lock").exists());
    // Once a vault is written, its lock file stays (other writers may be waiting on it).
    let (_, bytes) = sample(OUT_A);
    let v = VaultFile::parse(&bytes)
        .unwrap()
        .open("otp:1:2", OUT_A)
        .unwrap();
    store.lock().unwrap().write(&v).unwrap();
    assert!(dir.path().join("a/b/vault.lock").exists());
}
