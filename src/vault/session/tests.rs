//! The session with in-memory unlockers: one unlock serves every secret; the first unlocker
//! whose device is present opens it (a backup when the first key is absent).

use std::cell::RefCell;
use std::rc::Rc;

use zeroize::Zeroizing;

use super::*;
use crate::ErrorKind;
use crate::ui::RecordingUi;
use crate::vault::unlock::UnlockOutput;
use crate::vault::{UnlockerKind, VaultStore};

const ARN: &str = "arn:aws:iam::111111111111:mfa/toolkit-user";
const SEED: &[u8] = b"AWS-virtual-MFA-seed-is-forty-bytes-long";
const KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
const KEY_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

/// An unlocker whose output is HMAC-free: a fixed secret per "device", and a log of asks.
struct MemUnlocker {
    id: String,
    secret: Vec<u8>,
    asked: Rc<RefCell<Vec<String>>>,
}

impl Unlocker for MemUnlocker {
    fn kind(&self) -> UnlockerKind {
        UnlockerKind::OtpHmacSha1
    }
    fn id(&self) -> String {
        self.id.clone()
    }
    fn respond(&mut self, desc: &UnlockerDesc, _ui: &dyn Ui) -> Result<UnlockOutput> {
        self.asked.borrow_mut().push(self.id.clone());
        let mut out = self.secret.clone();
        out.extend_from_slice(&desc.challenge);
        Ok(UnlockOutput::new(out))
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: VaultStore,
    asked: Rc<RefCell<Vec<String>>>,
}

impl Fixture {
    /// A vault on disk with unlockers `ids` (device secrets `secret-of-ID`), holding the seed
    /// and the access key of profile `toolkit-user`.
    fn new(ids: &[&str]) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = VaultStore::new(dir.path().join("vault"));
        let asked = Rc::new(RefCell::new(Vec::new()));
        let ui = RecordingUi::new();
        let mut vault: Option<OpenVault> = None;
        for id in ids {
            let mut u = Self::device(id, &asked);
            let (desc, out) = crate::vault::unlock::enroll(&mut u, &ui).unwrap();
            match vault.as_mut() {
                None => vault = Some(OpenVault::create(desc, out.expose()).unwrap()),
                Some(v) => v.add_unlocker(desc, out.expose()).unwrap(),
            }
        }
        let mut vault = vault.unwrap();
        vault
            .put(
                EntryName::seed(ARN),
                &Secret::TotpSeed(Zeroizing::new(SEED.to_vec())),
            )
            .unwrap();
        vault
            .put(
                EntryName::access_key("toolkit-user"),
                &Secret::AccessKey {
                    access_key_id: KEY_ID.into(),
                    secret_access_key: Zeroizing::new(KEY_SECRET.into()),
                },
            )
            .unwrap();
        store.lock().unwrap().write(&vault).unwrap();
        asked.borrow_mut().clear();
        Fixture {
            _dir: dir,
            store,
            asked,
        }
    }

    fn device(id: &str, asked: &Rc<RefCell<Vec<String>>>) -> MemUnlocker {
        MemUnlocker {
            id: id.to_owned(),
            secret: format!("secret-of-{id}").into_bytes(),
            asked: asked.clone(),
        }
    }

    /// A connector that finds only the devices in `present` (and counts the lookups).
    fn connector<'a>(
        &'a self,
        present: &'a [&'a str],
        looked: &'a RefCell<Vec<String>>,
    ) -> impl FnMut(&UnlockerDesc) -> Result<Option<Box<dyn Unlocker>>> + 'a {
        move |d| {
            looked.borrow_mut().push(d.id.clone());
            Ok(present
                .contains(&d.id.as_str())
                .then(|| Box::new(Self::device(&d.id, &self.asked)) as Box<dyn Unlocker>))
        }
    }
}

fn seed_of(s: Secret) -> Vec<u8> {
    match s {
        Secret::TotpSeed(b) => b.to_vec(),
        other => panic!("not a seed: {other:?}"),
    }
}

#[test]
fn listing_needs_no_unlock_and_both_secrets_cost_one() {
    let f = Fixture::new(&["otp:1111:2"]);
    let s = VaultSession::new(f.store.clone());
    let ui = RecordingUi::new();
    assert!(s.lists(&EntryName::seed(ARN)).unwrap());
    assert!(s.lists(&EntryName::access_key("toolkit-user")).unwrap());
    assert!(
        !s.lists(&EntryName::seed("arn:aws:iam::1:mfa/other"))
            .unwrap()
    );
    assert!(!s.is_open());
    assert!(f.asked.borrow().is_empty());

    let looked = RefCell::new(Vec::new());
    let mut connect = f.connector(&["otp:1111:2"], &looked);
    let creds = s
        .access_key_with("toolkit-user", &mut connect, &ui)
        .unwrap();
    assert_eq!(creds.access_key_id, KEY_ID);
    assert_eq!(creds.secret(), KEY_SECRET);
    assert!(creds.session_token.is_none() && creds.expiration.is_none());
    // The seed after the key: no second device lookup, no second ask.
    s.open_with(&mut connect, &ui).unwrap();
    assert_eq!(seed_of(s.get_opened(&EntryName::seed(ARN)).unwrap()), SEED);
    assert_eq!(s.unlocks(), 1);
    assert_eq!(*f.asked.borrow(), ["otp:1111:2"]);
    assert_eq!(*looked.borrow(), ["otp:1111:2"]);
    // Debug shows the path and state, no secret.
    let dbg = format!("{s:?}");
    assert!(dbg.contains("opened: true"), "{dbg}");
    assert!(!dbg.contains(KEY_SECRET));
}

#[test]
fn the_backup_unlocker_opens_when_the_first_device_is_absent() {
    let f = Fixture::new(&["otp:1111:2", "otp:2222:2"]);
    let s = VaultSession::new(f.store.clone());
    let looked = RefCell::new(Vec::new());
    let mut connect = f.connector(&["otp:2222:2"], &looked);
    s.open_with(&mut connect, &RecordingUi::new()).unwrap();
    assert_eq!(seed_of(s.get_opened(&EntryName::seed(ARN)).unwrap()), SEED);
    // The first was looked for and absent; only the backup was asked.
    assert_eq!(*looked.borrow(), ["otp:1111:2", "otp:2222:2"]);
    assert_eq!(*f.asked.borrow(), ["otp:2222:2"]);
    assert_eq!(s.unlocks(), 1);
}

#[test]
fn no_present_device_names_the_file_and_its_unlockers() {
    let f = Fixture::new(&["otp:1111:2", "otp:2222:1"]);
    let s = VaultSession::new(f.store.clone());
    let looked = RefCell::new(Vec::new());
    let e = s
        .open_with(&mut f.connector(&[], &looked), &RecordingUi::new())
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Token);
    let m = e.message();
    assert!(m.contains(&f.store.path().display().to_string()), "{m}");
    assert!(m.contains("otp:1111:2") && m.contains("otp:2222:1"), "{m}");
    assert!(m.contains("plug in one of those keys"), "{m}");
    assert_eq!(s.unlocks(), 0);
    assert!(f.asked.borrow().is_empty());
}

#[test]
fn a_device_with_another_secret_cannot_open() {
    let f = Fixture::new(&["otp:1111:2"]);
    let s = VaultSession::new(f.store.clone());
    let asked = f.asked.clone();
    let mut connect = |d: &UnlockerDesc| -> Result<Option<Box<dyn Unlocker>>> {
        Ok(Some(Box::new(MemUnlocker {
            id: d.id.clone(),
            secret: b"a reprogrammed slot".to_vec(),
            asked: asked.clone(),
        })))
    };
    let e = s.open_with(&mut connect, &RecordingUi::new()).unwrap_err();
    assert_eq!(e.exit_code(), 4, "{e:?}");
    assert!(e.message().contains("cannot open this vault"), "{e}");
    assert!(!s.is_open());
}

#[test]
fn missing_vault_or_entry_names_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let s = VaultSession::new(VaultStore::new(dir.path().join("none")));
    assert!(!s.lists(&EntryName::seed(ARN)).unwrap());
    let looked = RefCell::new(Vec::new());
    let f = Fixture::new(&["otp:1111:2"]);
    let e = s
        .access_key_with(
            "p",
            &mut f.connector(&["otp:1111:2"], &looked),
            &RecordingUi::new(),
        )
        .unwrap_err();
    assert_eq!(e.exit_code(), 3);
    assert!(e.message().contains("no vault at"), "{e}");
    assert!(e.message().contains("vault import-keys --profile p"), "{e}");

    let s = VaultSession::new(f.store.clone());
    let e = s
        .access_key_with(
            "other",
            &mut f.connector(&["otp:1111:2"], &looked),
            &RecordingUi::new(),
        )
        .unwrap_err();
    assert_eq!(e.exit_code(), 3);
    assert!(
        e.message().contains("holds no access key for it")
            && e.message()
                .contains("tapcred vault import-keys --profile other"),
        "{e}"
    );
    // Decided from the header: nothing was unlocked.
    assert!(looked.borrow().is_empty());
    assert_eq!(s.unlocks(), 0);
}

#[test]
fn a_damaged_file_is_reported_once_per_session_as_damaged() {
    let f = Fixture::new(&["otp:1111:2"]);
    let mut bytes = std::fs::read(f.store.path()).unwrap();
    bytes.truncate(bytes.len() - 7);
    std::fs::write(f.store.path(), &bytes).unwrap();
    let s = VaultSession::new(f.store.clone());
    let e = s.lists(&EntryName::seed(ARN)).unwrap_err();
    assert!(e.message().contains("vault damaged"), "{e}");
    assert_eq!(e.exit_code(), 3);
}

#[test]
fn otp_ids_parse() {
    use crate::token::otp::Slot;
    use crate::vault::unlock::parse_otp_id;
    assert_eq!(parse_otp_id("otp:1234:2"), Some((Some(1234), Slot::Two)));
    assert_eq!(parse_otp_id("otp:unknown:1"), Some((None, Slot::One)));
    for bad in [
        "otp:1234",
        "otp:x:2",
        "otp:1:3",
        "fido2:abc",
        "otp:1:2:3",
        "",
    ] {
        assert_eq!(parse_otp_id(bad), None, "{bad}");
    }
}
