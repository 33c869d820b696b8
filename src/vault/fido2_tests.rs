//! The FIDO2 hmac-secret unlocker over the testkit's in-memory authenticator
//! (`tapcred_testkit::virtual_fido2`): enrolment, reopening, wrong authenticator, PIN
//! handling (env, terminal, wrong, blocked), UV modes, a backup OTP unlocker, redaction.

use std::collections::HashMap;

use tapcred_testkit::virtual_fido2::VirtualAuthenticator;
use zeroize::Zeroizing;

use super::fido2::{
    Fido2Unlocker, PIN_ENV, RP_ID, UvMode, connect_device, id_for, parse_mode, wait_for_swap,
};
use super::format::{EntryName, OpenVault, Secret, UnlockerDesc, UnlockerKind, VaultFile};
use super::unlock::{Unlocker, enroll, open_with};
use crate::token::fido2::{
    Fido2Device, Fido2Error, Fido2Info, Fido2Pin, choose_one, holds_credential,
};
use crate::ui::{RecordingUi, UiEvent};

const SEED: &[u8] = b"0123456789abcdefghijABCDEFGHIJ0123456789";
const SERIAL: &str = "arn:aws:iam::111111111111:mfa/toolkit-user";
const PIN: &str = "493817";

/// The in-memory authenticator behind tapcred's device trait (the CTAP2 status codes pass
/// through as a real device's would).
struct Virt(VirtualAuthenticator);

impl Fido2Device for Virt {
    fn label(&self) -> String {
        self.0.product.clone()
    }
    fn info(&mut self) -> Result<Fido2Info, Fido2Error> {
        let i = self.0.info();
        Ok(Fido2Info {
            aaguid: i.aaguid.to_vec(),
            hmac_secret: i.extensions.iter().any(|e| e == "hmac-secret"),
            client_pin: i.client_pin,
            always_uv: i.always_uv,
            make_cred_uv_not_rqd: i.make_cred_uv_not_rqd,
        })
    }
    fn pin_retries(&mut self) -> Result<u32, Fido2Error> {
        Ok(self.0.pin_retries())
    }
    fn make_credential(
        &mut self,
        rp_id: &str,
        pin: Option<&Fido2Pin>,
    ) -> Result<Vec<u8>, Fido2Error> {
        self.0
            .make_credential(rp_id, pin.map(Fido2Pin::expose))
            .map_err(Fido2Error::Ctap)
    }
    fn check_pin(&mut self, _rp_id: &str, pin: &Fido2Pin) -> Result<(), Fido2Error> {
        self.0.check_pin(pin.expose()).map_err(Fido2Error::Ctap)
    }
    fn probe_credential(&mut self, rp_id: &str, credential_id: &[u8]) -> Result<(), Fido2Error> {
        self.0
            .get_assertion_silent(rp_id, credential_id)
            .map_err(Fido2Error::Ctap)
    }
    fn hmac_secret(
        &mut self,
        rp_id: &str,
        credential_id: &[u8],
        salt: &[u8; 32],
        pin: Option<&Fido2Pin>,
    ) -> Result<Zeroizing<[u8; 32]>, Fido2Error> {
        self.0
            .get_assertion_hmac_secret(rp_id, credential_id, salt, pin.map(Fido2Pin::expose))
            .map(Zeroizing::new)
            .map_err(Fido2Error::Ctap)
    }
}

fn env(pin: Option<&str>) -> HashMap<String, String> {
    let mut m = HashMap::new();
    if let Some(p) = pin {
        m.insert(PIN_ENV.to_owned(), p.to_owned());
    }
    m
}

/// A UI whose touch prompt presses `a`'s button.
fn touching(a: &VirtualAuthenticator) -> RecordingUi {
    let mut ui = RecordingUi::new();
    ui.no_sleep = true;
    ui.on_touch = Some(Box::new(a.toucher()));
    ui
}

fn seed() -> Secret {
    Secret::TotpSeed(Zeroizing::new(SEED.to_vec()))
}

/// `vault init --unlock fido2[:pin]` over `a`: the file's bytes and the header entry.
fn init(a: &VirtualAuthenticator, mode: UvMode, pin_env: Option<&str>) -> (Vec<u8>, UnlockerDesc) {
    let ui = touching(a);
    let mut u = Fido2Unlocker::for_enroll(Box::new(Virt(a.clone())), mode, &env(pin_env));
    let (desc, out) = enroll(&mut u, &ui).unwrap();
    assert_eq!(out.expose().len(), 32);
    let mut v = OpenVault::create(desc.clone(), out.expose()).unwrap();
    v.put(EntryName::seed(SERIAL), &seed()).unwrap();
    (v.to_bytes(), desc)
}

fn open(
    bytes: &[u8],
    a: &VirtualAuthenticator,
    pin_env: Option<&str>,
    ui: &RecordingUi,
) -> crate::error::Result<OpenVault> {
    let file = VaultFile::parse(bytes).unwrap();
    let desc = file
        .unlocker_descs()
        .find(|d| d.kind == UnlockerKind::Fido2HmacSecret)
        .unwrap()
        .clone();
    let mut u = Fido2Unlocker::for_desc(Box::new(Virt(a.clone())), &desc, &env(pin_env));
    open_with(&file, &mut u, ui)
}

#[test]
fn virtual_authenticator_state_is_per_credential_and_per_authenticator() {
    let a = VirtualAuthenticator::new();
    let b = VirtualAuthenticator::new();
    let salt = [7u8; 32];
    let other_salt = [8u8; 32];
    for _ in 0..2 {
        a.touch();
    }
    let c1 = a.make_credential(RP_ID, None).unwrap();
    let c2 = a.make_credential(RP_ID, None).unwrap();
    assert_ne!(c1, c2);
    let out = |cred: &[u8], s: &[u8; 32]| {
        a.touch();
        a.get_assertion_hmac_secret(RP_ID, cred, s, None)
    };
    let first = out(&c1, &salt).unwrap();
    assert_eq!(out(&c1, &salt).unwrap(), first, "same credential + salt");
    assert_ne!(out(&c2, &salt).unwrap(), first, "another credential");
    assert_ne!(out(&c1, &other_salt).unwrap(), first, "another salt");
    // No touch: the authenticator times out waiting for user presence.
    assert_eq!(
        a.get_assertion_hmac_secret(RP_ID, &c1, &salt, None),
        Err(0x2F)
    );
    // Another authenticator does not know the credential (nor does a's other RP).
    b.touch();
    assert_eq!(
        b.get_assertion_hmac_secret(RP_ID, &c1, &salt, None),
        Err(0x2E)
    );
    assert_eq!(out_rp(&a, "other-rp", &c1, &salt), Err(0x2E));
}

fn out_rp(a: &VirtualAuthenticator, rp: &str, c: &[u8], s: &[u8; 32]) -> Result<[u8; 32], u8> {
    a.touch();
    a.get_assertion_hmac_secret(rp, c, s, None)
}

#[test]
fn virtual_authenticator_uv_and_no_uv_outputs_differ() {
    let a = VirtualAuthenticator::new().with_pin(PIN);
    a.touch();
    let c = a.make_credential(RP_ID, Some(PIN)).unwrap();
    a.touch();
    let with_uv = a
        .get_assertion_hmac_secret(RP_ID, &c, &[1; 32], Some(PIN))
        .unwrap();
    a.touch();
    let without = a
        .get_assertion_hmac_secret(RP_ID, &c, &[1; 32], None)
        .unwrap();
    assert_ne!(with_uv, without, "CTAP 2.1: two CredRandoms per credential");
}

#[test]
fn fido2_vault_created_then_opened_with_the_same_authenticator() {
    let a = VirtualAuthenticator::new();
    let (bytes, desc) = init(&a, UvMode::Touch, None);
    assert_eq!(desc.kind, UnlockerKind::Fido2HmacSecret);
    assert_eq!(desc.challenge.len(), 32, "the hmac-secret salt");
    assert!(!desc.credential_id.is_empty());
    assert_eq!(a.credential_count(), 1);
    // fido2:<aaguid start>:<credential hash>, no ":pin": touch only.
    assert_eq!(
        desc.id,
        id_for(&a.aaguid, &desc.credential_id, UvMode::Touch)
    );
    let parts: Vec<&str> = desc.id.split(':').collect();
    assert_eq!(parts.len(), 3, "{}", desc.id);
    assert_eq!(parts[1], data_encoding::HEXLOWER.encode(&a.aaguid[..4]));
    // The file keeps the credential id and salt (public), never the output.
    let file = VaultFile::parse(&bytes).unwrap();
    assert_eq!(file.unlocker_descs().next().unwrap(), &desc);

    let ui = touching(&a);
    let v = open(&bytes, &a, None, &ui).unwrap();
    assert_eq!(v.get(&EntryName::seed(SERIAL)).unwrap(), seed());
    let ev = ui.events();
    assert!(
        matches!(ev.as_slice(), [UiEvent::TouchWait(m), UiEvent::TouchDone(true)] if m.contains(&desc.id)),
        "one touch prompt, no PIN prompt: {ev:?}"
    );
}

#[test]
fn another_authenticator_cannot_open_the_vault() {
    let a = VirtualAuthenticator::new();
    let (bytes, _) = init(&a, UvMode::Touch, None);
    let b = VirtualAuthenticator::new();
    let e = open(&bytes, &b, None, &touching(&b)).unwrap_err();
    assert_eq!(e.exit_code(), 4, "{e}");
    assert!(e.message().contains("cannot open this vault"), "{e}");
    assert!(e.message().contains("does not hold the credential"), "{e}");
    // After a reset, the same authenticator is another one too.
    a.reset();
    let e = open(&bytes, &a, None, &touching(&a)).unwrap_err();
    assert!(e.message().contains("cannot open this vault"), "{e}");
}

#[test]
fn the_output_of_another_credential_is_a_wrong_key() {
    // Two credentials on one authenticator: the header's salt answered by the other
    // credential unwraps nothing (VaultError::WrongKey from the format).
    let a = VirtualAuthenticator::new();
    let (bytes, desc) = init(&a, UvMode::Touch, None);
    a.touch();
    let other = a.make_credential(RP_ID, None).unwrap();
    a.touch();
    let salt: [u8; 32] = desc.challenge.as_slice().try_into().unwrap();
    let wrong = a
        .get_assertion_hmac_secret(RP_ID, &other, &salt, None)
        .unwrap();
    let file = VaultFile::parse(&bytes).unwrap();
    let e = file.open(&desc.id, &wrong).unwrap_err();
    assert!(matches!(e, super::VaultError::WrongKey(_)), "{e:?}");
}

#[test]
fn pin_mode_uses_the_pin_from_the_environment_and_counts_wrong_pins() {
    let a = VirtualAuthenticator::new().with_pin(PIN);
    let (bytes, desc) = init(&a, UvMode::Pin, Some(PIN));
    assert!(desc.id.ends_with(":pin"), "{}", desc.id);
    let ui = touching(&a);
    let v = open(&bytes, &a, Some(PIN), &ui).unwrap();
    assert_eq!(v.get(&EntryName::seed(SERIAL)).unwrap(), seed());
    assert!(
        !ui.events()
            .iter()
            .any(|e| matches!(e, UiEvent::AskSecret(_))),
        "the env PIN needs no prompt"
    );

    let wrong = "000000";
    let e = open(&bytes, &a, Some(wrong), &touching(&a)).unwrap_err();
    assert_eq!(e.exit_code(), 4);
    assert!(e.message().contains("wrong FIDO2 PIN"), "{e}");
    assert!(e.message().contains("7 tries left"), "{e}");
    assert!(
        e.message().contains(PIN_ENV),
        "names where the PIN came from: {e}"
    );
    assert!(!e.message().contains(wrong) && !format!("{e:?}").contains(wrong));
    assert_eq!(a.pin_retries(), 7);
    let e = open(&bytes, &a, Some(wrong), &touching(&a)).unwrap_err();
    assert!(e.message().contains("6 tries left"), "{e}");
    // The third wrong PIN in a row blocks PIN entry until the key is re-plugged.
    let e = open(&bytes, &a, Some(wrong), &touching(&a)).unwrap_err();
    assert!(e.message().contains("unplug and re-insert"), "{e}");
    let e = open(&bytes, &a, Some(PIN), &touching(&a)).unwrap_err();
    assert!(e.message().contains("unplug and re-insert"), "{e}");
    a.power_cycle();
    // The right PIN resets the counter.
    open(&bytes, &a, Some(PIN), &touching(&a)).unwrap();
    assert_eq!(a.pin_retries(), 8);
}

#[test]
fn a_blocked_pin_says_so_and_what_is_left() {
    let a = VirtualAuthenticator::new().with_pin(PIN);
    let (bytes, _) = init(&a, UvMode::Pin, Some(PIN));
    let mut last = None;
    for i in 0..8 {
        if i % 3 == 0 {
            a.power_cycle();
        }
        last = Some(open(&bytes, &a, Some("999999"), &touching(&a)).unwrap_err());
    }
    assert_eq!(a.pin_retries(), 0);
    let e = last.unwrap();
    assert!(e.message().contains("is blocked"), "{e}");
    assert!(e.message().contains("backup unlocker"), "{e}");
    a.power_cycle();
    let e = open(&bytes, &a, Some(PIN), &touching(&a)).unwrap_err();
    assert!(
        e.message().contains("is blocked"),
        "even the right PIN: {e}"
    );
}

#[test]
fn pin_from_the_terminal_without_echo_and_none_without_a_terminal() {
    let a = VirtualAuthenticator::new().with_pin(PIN);
    let (bytes, _) = init(&a, UvMode::Pin, Some(PIN));
    let ui = touching(&a);
    ui.secrets.lock().unwrap().push(PIN.to_owned());
    open(&bytes, &a, None, &ui).unwrap();
    let ev = ui.events();
    assert!(
        matches!(&ev[0], UiEvent::AskSecret(p) if p.contains("FIDO2 PIN")),
        "asked with no echo first: {ev:?}"
    );
    assert!(
        matches!(ev[1], UiEvent::TouchWait(_)),
        "then the touch: {ev:?}"
    );

    // No env, no terminal: one clear line naming the env var; no PIN tried.
    let e = open(&bytes, &a, None, &touching(&a)).unwrap_err();
    assert_eq!(e.exit_code(), 4);
    assert!(e.message().contains(PIN_ENV), "{e}");
    assert_eq!(a.pin_retries(), 8);

    // A PIN too short is refused before the authenticator sees it.
    let e = open(&bytes, &a, Some("12"), &touching(&a)).unwrap_err();
    assert_eq!(e.exit_code(), 2, "{e}");
    assert_eq!(a.pin_retries(), 8);
}

#[test]
fn touch_mode_with_a_pin_set_asks_the_pin_only_to_make_the_credential() {
    // A CTAP 2.0-style key: a PIN set and no makeCredUvNotRqd, so MakeCredential needs it;
    // the assertions stay touch only (no PIN later, not even a prompt).
    let mut a = VirtualAuthenticator::new().with_pin(PIN);
    a.make_cred_uv_not_rqd = false;
    let ui = touching(&a);
    ui.secrets.lock().unwrap().push(PIN.to_owned());
    let mut u = Fido2Unlocker::for_enroll(Box::new(Virt(a.clone())), UvMode::Touch, &env(None));
    let (desc, out) = enroll(&mut u, &ui).unwrap();
    let asks = ui
        .events()
        .iter()
        .filter(|e| matches!(e, UiEvent::AskSecret(_)))
        .count();
    assert_eq!(asks, 1, "the PIN is asked once: {:?}", ui.events());
    assert!(!desc.id.ends_with(":pin"));
    let v = OpenVault::create(desc, out.expose()).unwrap();
    let bytes = v.to_bytes();
    let ui = touching(&a);
    open(&bytes, &a, None, &ui).unwrap();
    assert!(
        !ui.events()
            .iter()
            .any(|e| matches!(e, UiEvent::AskSecret(_)))
    );

    // With a YubiKey-5-like key (makeCredUvNotRqd) the PIN is not needed at all.
    let b = VirtualAuthenticator::new().with_pin(PIN);
    let (bytes, _) = init(&b, UvMode::Touch, None);
    open(&bytes, &b, None, &touching(&b)).unwrap();
}

#[test]
fn uv_required_without_a_pin_set_is_a_clear_error() {
    let mut a = VirtualAuthenticator::new();
    a.always_uv = true;
    let mut u = Fido2Unlocker::for_enroll(Box::new(Virt(a.clone())), UvMode::Touch, &env(None));
    let e = enroll(&mut u, &touching(&a)).unwrap_err();
    assert!(e.message().contains("no PIN set"), "{e}");
    assert!(e.message().contains("alwaysUv"), "{e}");
    assert_eq!(a.credential_count(), 0, "nothing made");

    let b = VirtualAuthenticator::new();
    let mut u = Fido2Unlocker::for_enroll(Box::new(Virt(b.clone())), UvMode::Pin, &env(Some(PIN)));
    let e = enroll(&mut u, &touching(&b)).unwrap_err();
    assert!(e.message().contains("no PIN set"), "{e}");
    assert!(e.message().contains("fido2:pin"), "{e}");
}

#[test]
fn always_uv_forces_pin_mode_and_a_touch_vault_explains_a_later_always_uv() {
    let mut a = VirtualAuthenticator::new().with_pin(PIN);
    a.always_uv = true;
    let (bytes, desc) = init(&a, UvMode::Touch, Some(PIN));
    assert!(
        desc.id.ends_with(":pin"),
        "alwaysUv makes it a PIN unlocker: {}",
        desc.id
    );
    open(&bytes, &a, Some(PIN), &touching(&a)).unwrap();

    // Made for touch only, then the owner turns alwaysUv on: the PIN would give another
    // secret, so the error says what to do instead of trying.
    let mut b = VirtualAuthenticator::new().with_pin(PIN);
    let (bytes, _) = init(&b, UvMode::Touch, None);
    b.always_uv = true;
    let e = open(&bytes, &b, Some(PIN), &touching(&b)).unwrap_err();
    assert!(e.message().contains("touch only"), "{e}");
    assert!(e.message().contains("alwaysUv"), "{e}");
}

#[test]
fn no_touch_is_a_timeout_error() {
    let a = VirtualAuthenticator::new();
    let (bytes, _) = init(&a, UvMode::Touch, None);
    let mut ui = RecordingUi::new();
    ui.no_sleep = true;
    let e = open(&bytes, &a, None, &ui).unwrap_err();
    assert_eq!(e.exit_code(), 4);
    assert!(e.message().contains("not touched in time"), "{e}");
    assert_eq!(ui.events().last(), Some(&UiEvent::TouchDone(false)));
}

#[test]
fn an_authenticator_without_hmac_secret_is_refused() {
    let mut a = VirtualAuthenticator::new();
    a.hmac_secret = false;
    let mut u = Fido2Unlocker::for_enroll(Box::new(Virt(a.clone())), UvMode::Touch, &env(None));
    let e = enroll(&mut u, &touching(&a)).unwrap_err();
    assert!(e.message().contains("hmac-secret"), "{e}");
}

#[test]
fn backup_otp_and_fido2_both_open_the_same_vault() {
    // First unlocker: an OTP slot (its output as bytes, as in the format tests).
    let otp_out = b"otp-slot-hmac-sha1-20";
    let otp = UnlockerDesc::new_random(UnlockerKind::OtpHmacSha1, "otp:1234:2").unwrap();
    let mut v = OpenVault::create(otp.clone(), otp_out).unwrap();
    v.put(EntryName::seed(SERIAL), &seed()).unwrap();
    // `vault add-unlock --unlock fido2` from the unlocked vault.
    let a = VirtualAuthenticator::new();
    let mut u = Fido2Unlocker::for_enroll(Box::new(Virt(a.clone())), UvMode::Touch, &env(None));
    let (desc, out) = enroll(&mut u, &touching(&a)).unwrap();
    v.add_unlocker(desc, out.expose()).unwrap();
    let bytes = v.to_bytes();

    let by_fido = open(&bytes, &a, None, &touching(&a)).unwrap();
    let by_otp = VaultFile::parse(&bytes)
        .unwrap()
        .open(&otp.id, otp_out)
        .unwrap();
    for v in [&by_fido, &by_otp] {
        assert_eq!(v.get(&EntryName::seed(SERIAL)).unwrap(), seed());
    }
    // And the vault's bytes never hold the FIDO2 output.
    assert!(!bytes.windows(32).any(|w| w == out.expose()));
}

#[test]
fn the_pin_is_never_in_debug_or_errors() {
    let p = Fido2Pin::new(PIN, "test").unwrap();
    assert!(!format!("{p:?}").contains(PIN));
    let a = VirtualAuthenticator::new().with_pin(PIN);
    let (bytes, _) = init(&a, UvMode::Pin, Some(PIN));
    let file = VaultFile::parse(&bytes).unwrap();
    let desc = file.unlocker_descs().next().unwrap().clone();
    let mut u = Fido2Unlocker::for_desc(Box::new(Virt(a.clone())), &desc, &env(Some(PIN)));
    open_with(&file, &mut u, &touching(&a)).unwrap();
    // The unlocker now caches the PIN; its Debug does not show it.
    let dbg = format!("{u:?}");
    assert!(!dbg.contains(PIN), "{dbg}");
    assert!(dbg.contains("<redacted>"), "{dbg}");
    // Nor does any error on the way (a wrong PIN that shares digits with the right one).
    let wrong = "4938170";
    let e = open(&bytes, &a, Some(wrong), &touching(&a)).unwrap_err();
    for text in [e.message().to_owned(), format!("{e:?}"), e.to_string()] {
        assert!(!text.contains(wrong) && !text.contains(PIN), "{text}");
    }
}

#[test]
fn a_damaged_fido2_entry_is_not_sent_to_the_authenticator() {
    let a = VirtualAuthenticator::new();
    let (_, mut desc) = init(&a, UvMode::Touch, None);
    desc.challenge.truncate(16);
    let mut u = Fido2Unlocker::for_desc(Box::new(Virt(a.clone())), &desc, &env(None));
    let ui = touching(&a);
    let e = u.respond(&desc, &ui).unwrap_err();
    assert_eq!(e.exit_code(), 3, "{e}");
    assert!(ui.events().is_empty(), "no touch asked: {:?}", ui.events());
}

#[test]
fn unlock_specs_and_several_authenticators() {
    assert_eq!(parse_mode(None), Some(UvMode::Touch));
    assert_eq!(parse_mode(Some("pin")), Some(UvMode::Pin));
    assert_eq!(parse_mode(Some("PIN")), Some(UvMode::Pin));
    assert_eq!(parse_mode(Some("3")), None);
    assert_eq!(choose_one(Vec::<u8>::new(), &[]).unwrap(), None);
    assert_eq!(choose_one(vec![1u8], &["a".into()]).unwrap(), Some(1));
    let e = choose_one(vec![1u8, 2], &["YubiKey 5 NFC".into(), "Solo 2".into()]).unwrap_err();
    assert_eq!(e.exit_code(), 4);
    assert!(e.message().contains("2 FIDO2 authenticators"), "{e}");
    assert!(
        e.message().contains("YubiKey 5 NFC") && e.message().contains("Solo 2"),
        "{e}"
    );
    // A zero AAGUID (privacy, U2F-era keys) gives the tag "any".
    assert!(id_for(&[0; 16], b"cred", UvMode::Pin).starts_with("fido2:any:"));
}

#[test]
fn adding_a_second_fido2_key_waits_for_the_swap() {
    use std::time::Duration;
    let ui = RecordingUi::new();
    // Old key still in, then out, then the new one in.
    let mut seq = vec![Ok(true), Ok(true), Ok(false), Ok(false), Ok(true)].into_iter();
    let mut calls = 0;
    wait_for_swap(
        &mut || {
            calls += 1;
            seq.next().unwrap_or(Ok(true))
        },
        &ui,
        Duration::from_secs(30),
    )
    .unwrap();
    assert_eq!(calls, 5);
    assert!(matches!(&ui.events()[0], UiEvent::Info(m) if m.contains("Unplug")));
    // Never unplugged: a clear timeout, not a credential on the same key.
    let e = wait_for_swap(&mut || Ok(true), &ui, Duration::from_millis(300)).unwrap_err();
    assert_eq!(e.exit_code(), 4);
    assert!(e.message().contains("no new FIDO2 key"), "{e}");
    // "Several keys" while swapping counts as present, not as a failure.
    let mut seq = vec![
        Ok(false),
        Err(crate::error::Error::token("2 keys")),
        Ok(true),
    ]
    .into_iter();
    wait_for_swap(&mut || seq.next().unwrap(), &ui, Duration::from_secs(30)).unwrap();
}

#[test]
fn connecting_checks_silently_that_the_key_holds_the_credential() {
    let a = VirtualAuthenticator::new();
    let (bytes, desc) = init(&a, UvMode::Touch, None);
    let b = VirtualAuthenticator::new();
    // The right key: an unlocker, and no touch was used for the check.
    let u = connect_device(Box::new(Virt(a.clone())), &desc, &env(None)).unwrap();
    assert!(u.is_some());
    assert_eq!(
        a.get_assertion_hmac_secret(RP_ID, &desc.credential_id, &[0; 32], None),
        Err(0x2F),
        "the probe consumed no touch and left none pending"
    );
    // Another key is a "wrong device" error: the session goes on to the next unlocker and
    // reports it ("cannot open this vault") only when none opens the vault.
    let e = connect_device(Box::new(Virt(b.clone())), &desc, &env(None)).unwrap_err();
    assert_eq!(e.reason(), Some(crate::error::Reason::WrongDevice), "{e:?}");
    assert!(e.message().contains("cannot open this vault"), "{e}");
    // A key that refuses silent assertions (alwaysUv) may hold it: the unlock decides.
    let mut c = a.clone();
    c.always_uv = true;
    assert!(
        connect_device(Box::new(Virt(c)), &desc, &env(None))
            .unwrap()
            .is_some()
    );
    assert_eq!(holds_credential(Err(Fido2Error::Ctap(0x36))), Ok(true));
    assert_eq!(holds_credential(Err(Fido2Error::Ctap(0x2E))), Ok(false));
    assert!(holds_credential(Err(Fido2Error::Transport("read error".into()))).is_err());
    drop(bytes);
}

#[test]
fn a_backup_fido2_key_opens_the_vault_when_the_first_is_absent() {
    // Key A made the vault, key B was added as a backup; only B is plugged in. Opening goes
    // through the header in order, as unlock_with and the session do: A's entry finds a key
    // that does not hold A's credential (None), B's entry opens it.
    let a = VirtualAuthenticator::new();
    let b = VirtualAuthenticator::new();
    let ui = touching(&a);
    let mut ua = Fido2Unlocker::for_enroll(Box::new(Virt(a.clone())), UvMode::Touch, &env(None));
    let (da, oa) = enroll(&mut ua, &ui).unwrap();
    let mut v = OpenVault::create(da, oa.expose()).unwrap();
    v.put(EntryName::seed(SERIAL), &seed()).unwrap();
    let mut ub = Fido2Unlocker::for_enroll(Box::new(Virt(b.clone())), UvMode::Touch, &env(None));
    let (db, ob) = enroll(&mut ub, &touching(&b)).unwrap();
    v.add_unlocker(db, ob.expose()).unwrap();
    let file = VaultFile::parse(&v.to_bytes()).unwrap();
    let ui = touching(&b);
    let mut opened = None;
    for d in file.unlocker_descs() {
        match connect_device(Box::new(Virt(b.clone())), d, &env(None)) {
            Ok(Some(mut u)) => {
                opened = Some((d.id.clone(), open_with(&file, &mut u, &ui).unwrap()));
                break;
            }
            Err(e) if e.reason() == Some(crate::error::Reason::WrongDevice) => continue,
            r => panic!("{:?}", r.map(|u| u.is_some())),
        }
    }
    let (id, vault) = opened.expect("the backup key opens it");
    assert_eq!(id, file.unlocker_descs().nth(1).unwrap().id);
    assert_eq!(vault.get(&EntryName::seed(SERIAL)).unwrap(), seed());
}

#[test]
fn one_fido2_touch_serves_seed_and_access_key_through_the_session() {
    use crate::vault::session::VaultSession;
    use crate::vault::store::VaultStore;
    // Key A made the vault, key B is the backup; only B is plugged in.
    let a = VirtualAuthenticator::new();
    let b = VirtualAuthenticator::new().with_pin(PIN);
    let mut ua = Fido2Unlocker::for_enroll(Box::new(Virt(a.clone())), UvMode::Touch, &env(None));
    let (da, oa) = enroll(&mut ua, &touching(&a)).unwrap();
    let mut v = OpenVault::create(da, oa.expose()).unwrap();
    v.put(EntryName::seed(SERIAL), &seed()).unwrap();
    let key = Secret::AccessKey {
        access_key_id: "AKIAIOSFODNN7EXAMPLE".to_owned(),
        secret_access_key: Zeroizing::new("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".to_owned()),
    };
    v.put(EntryName::access_key("toolkit-user"), &key).unwrap();
    let mut ub = Fido2Unlocker::for_enroll(Box::new(Virt(b.clone())), UvMode::Pin, &env(Some(PIN)));
    let (db, ob) = enroll(&mut ub, &touching(&b)).unwrap();
    v.add_unlocker(db, ob.expose()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = VaultStore::new(dir.path().join("vault"));
    store.lock().unwrap().write(&v).unwrap();

    let plugged = b.clone();
    let session = VaultSession::new(store).with_devices(Box::new(move |d| {
        Ok(
            connect_device(Box::new(Virt(plugged.clone())), d, &env(Some(PIN)))?
                .map(|u| Box::new(u) as Box<dyn Unlocker>),
        )
    }));
    let ui = touching(&b);
    let no_env = env(None);
    assert_eq!(
        session
            .secret(&EntryName::seed(SERIAL), &no_env, &ui)
            .unwrap(),
        seed()
    );
    let creds = session.access_key("toolkit-user", &no_env, &ui).unwrap();
    assert_eq!(creds.access_key_id, "AKIAIOSFODNN7EXAMPLE");
    assert_eq!(creds.secret(), "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY");
    assert_eq!(session.unlocks(), 1);
    let touches = ui
        .events()
        .iter()
        .filter(|e| matches!(e, UiEvent::TouchWait(_)))
        .count();
    assert_eq!(touches, 1, "one touch for both: {:?}", ui.events());
}

/// `Virt` whose next probes answer the scripted errors first.
struct ScriptedProbe {
    dev: Virt,
    probe: std::collections::VecDeque<Fido2Error>,
}

impl Fido2Device for ScriptedProbe {
    fn label(&self) -> String {
        self.dev.label()
    }
    fn info(&mut self) -> Result<Fido2Info, Fido2Error> {
        self.dev.info()
    }
    fn pin_retries(&mut self) -> Result<u32, Fido2Error> {
        self.dev.pin_retries()
    }
    fn make_credential(
        &mut self,
        rp_id: &str,
        pin: Option<&Fido2Pin>,
    ) -> Result<Vec<u8>, Fido2Error> {
        self.dev.make_credential(rp_id, pin)
    }
    fn check_pin(&mut self, rp_id: &str, pin: &Fido2Pin) -> Result<(), Fido2Error> {
        self.dev.check_pin(rp_id, pin)
    }
    fn probe_credential(&mut self, rp_id: &str, credential_id: &[u8]) -> Result<(), Fido2Error> {
        match self.probe.pop_front() {
            Some(e) => Err(e),
            None => self.dev.probe_credential(rp_id, credential_id),
        }
    }
    fn hmac_secret(
        &mut self,
        rp_id: &str,
        credential_id: &[u8],
        salt: &[u8; 32],
        pin: Option<&Fido2Pin>,
    ) -> Result<Zeroizing<[u8; 32]>, Fido2Error> {
        self.dev.hmac_secret(rp_id, credential_id, salt, pin)
    }
}

#[test]
fn the_silent_probe_counts_only_a_success_as_yes() {
    assert_eq!(holds_credential(Ok(())), Ok(true));
    assert_eq!(holds_credential(Err(Fido2Error::Ctap(0x2E))), Ok(false));
    // Busy, garbage, any other refusal: an error, not "it holds the credential".
    for code in [0x06, 0x7F, 0x01, 0x11] {
        assert_eq!(
            holds_credential(Err(Fido2Error::Ctap(code))),
            Err(Fido2Error::Ctap(code)),
            "0x{code:02X}"
        );
    }
    // A busy key is an error naming the key, with no touch asked and no re-plug advice.
    let a = VirtualAuthenticator::new();
    let (_, desc) = init(&a, UvMode::Touch, None);
    let busy = ScriptedProbe {
        dev: Virt(a.clone()),
        probe: [Fido2Error::Ctap(0x06)].into(),
    };
    let e = connect_device(Box::new(busy), &desc, &env(None)).unwrap_err();
    assert_eq!(e.exit_code(), 4, "{e}");
    assert!(e.message().contains("\"Virtual FIDO2\""), "{e}");
    assert!(e.message().contains("busy"), "{e}");
    assert!(!e.message().contains("unplug"), "{e}");
    assert!(!e.message().contains("0x06"), "in tapcred's words: {e}");
}

#[test]
fn a_wrong_pin_is_refused_before_any_touch_prompt() {
    let a = VirtualAuthenticator::new().with_pin(PIN);
    let (bytes, _) = init(&a, UvMode::Pin, Some(PIN));
    let ui = touching(&a);
    let e = open(&bytes, &a, Some("000000"), &ui).unwrap_err();
    assert!(e.message().contains("wrong FIDO2 PIN"), "{e}");
    assert!(
        !ui.events()
            .iter()
            .any(|e| matches!(e, UiEvent::TouchWait(_))),
        "no touch asked for a wrong PIN: {:?}",
        ui.events()
    );
    // Enrolling with a wrong PIN: no touch asked either, no credential made.
    let b = VirtualAuthenticator::new().with_pin(PIN);
    let ui = touching(&b);
    let mut u =
        Fido2Unlocker::for_enroll(Box::new(Virt(b.clone())), UvMode::Pin, &env(Some("000000")));
    let e = enroll(&mut u, &ui).unwrap_err();
    assert!(e.message().contains("wrong FIDO2 PIN"), "{e}");
    assert!(
        !ui.events()
            .iter()
            .any(|e| matches!(e, UiEvent::TouchWait(_)))
    );
    assert_eq!(b.credential_count(), 0);
    // The right PIN still opens it with one touch.
    let ui = touching(&a);
    open(&bytes, &a, Some(PIN), &ui).unwrap();
}

#[test]
fn a_session_with_only_another_fido2_key_says_it_cannot_open_this_vault() {
    use crate::vault::session::VaultSession;
    use crate::vault::store::VaultStore;
    let a = VirtualAuthenticator::new();
    let mut ua = Fido2Unlocker::for_enroll(Box::new(Virt(a.clone())), UvMode::Touch, &env(None));
    let (da, oa) = enroll(&mut ua, &touching(&a)).unwrap();
    let mut v = OpenVault::create(da, oa.expose()).unwrap();
    v.put(EntryName::seed(SERIAL), &seed()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = VaultStore::new(dir.path().join("vault"));
    store.lock().unwrap().write(&v).unwrap();
    let other = VirtualAuthenticator::new();
    let session = VaultSession::new(store).with_devices(Box::new(move |d| {
        Ok(
            connect_device(Box::new(Virt(other.clone())), d, &env(None))?
                .map(|u| Box::new(u) as Box<dyn Unlocker>),
        )
    }));
    let e = session.open(&env(None), &RecordingUi::new()).unwrap_err();
    assert_eq!(e.exit_code(), 4, "{e}");
    assert!(e.message().contains("cannot open this vault"), "{e}");
    assert!(!e.message().contains("none of its unlockers"), "{e}");
}

/// A key shared by several clients that misbehaves as a real one on hidraw does when two
/// talk at once: an exchange that overlaps another gets the other's answer (here: the
/// output for another salt) or "channel busy". `silent` makes it take requests and never
/// answer.
#[derive(Clone)]
struct SharedHidKey {
    dev: VirtualAuthenticator,
    in_exchange: std::sync::Arc<std::sync::atomic::AtomicBool>,
    silent: bool,
    busy_first: std::sync::Arc<std::sync::atomic::AtomicU32>,
}

impl SharedHidKey {
    fn new(dev: &VirtualAuthenticator) -> Self {
        SharedHidKey {
            dev: dev.clone(),
            in_exchange: Default::default(),
            silent: false,
            busy_first: Default::default(),
        }
    }

    fn exchange<T>(&self, f: impl FnOnce() -> Result<T, Fido2Error>) -> Result<T, Fido2Error> {
        use std::sync::atomic::Ordering;
        if self.silent {
            loop {
                std::thread::park();
            }
        }
        if self
            .busy_first
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(Fido2Error::Ctap(0x06));
        }
        if self.in_exchange.swap(true, Ordering::SeqCst) {
            return Err(Fido2Error::Ctap(0x06));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        let r = f();
        self.in_exchange.store(false, Ordering::SeqCst);
        r
    }
}

impl Fido2Device for SharedHidKey {
    fn label(&self) -> String {
        "Shared FIDO2".to_owned()
    }
    fn info(&mut self) -> Result<Fido2Info, Fido2Error> {
        let d = self.dev.clone();
        self.exchange(|| Virt(d).info())
    }
    fn pin_retries(&mut self) -> Result<u32, Fido2Error> {
        let d = self.dev.clone();
        self.exchange(|| Ok(d.pin_retries()))
    }
    fn check_pin(&mut self, rp_id: &str, pin: &Fido2Pin) -> Result<(), Fido2Error> {
        let d = self.dev.clone();
        self.exchange(|| Virt(d).check_pin(rp_id, pin))
    }
    fn make_credential(
        &mut self,
        rp_id: &str,
        pin: Option<&Fido2Pin>,
    ) -> Result<Vec<u8>, Fido2Error> {
        let d = self.dev.clone();
        self.exchange(|| Virt(d).make_credential(rp_id, pin))
    }
    fn probe_credential(&mut self, rp_id: &str, credential_id: &[u8]) -> Result<(), Fido2Error> {
        let d = self.dev.clone();
        self.exchange(|| Virt(d).probe_credential(rp_id, credential_id))
    }
    fn hmac_secret(
        &mut self,
        rp_id: &str,
        credential_id: &[u8],
        salt: &[u8; 32],
        pin: Option<&Fido2Pin>,
    ) -> Result<Zeroizing<[u8; 32]>, Fido2Error> {
        let d = self.dev.clone();
        self.exchange(|| {
            d.touch();
            Virt(d.clone()).hmac_secret(rp_id, credential_id, salt, pin)
        })
    }
}

fn quick_deadlines() -> crate::token::fido2::Deadlines {
    crate::token::fido2::Deadlines {
        quick: std::time::Duration::from_millis(300),
        touch: std::time::Duration::from_millis(600),
        busy_pause: std::time::Duration::from_millis(1),
        busy_retries: 5,
    }
}

#[test]
fn a_silent_key_fails_within_its_deadline_naming_the_key() {
    use crate::token::fido2::SharedKey;
    let a = VirtualAuthenticator::new();
    let (bytes, desc) = init(&a, UvMode::Touch, None);
    let file = VaultFile::parse(&bytes).unwrap();
    // Silent from the start: the probe (no touch) gives up after the quick deadline.
    let mut silent = SharedHidKey::new(&a);
    silent.silent = true;
    let t = std::time::Instant::now();
    let e = connect_device(
        Box::new(SharedKey::new(silent.clone(), None, quick_deadlines())),
        &desc,
        &env(None),
    )
    .unwrap_err();
    let took = t.elapsed();
    assert!(
        took >= std::time::Duration::from_millis(300) && took < std::time::Duration::from_secs(3),
        "{took:?}"
    );
    assert_eq!(e.exit_code(), 4, "{e}");
    assert!(
        e.message()
            .contains("\"Shared FIDO2\" did not answer within"),
        "{e}"
    );
    assert!(!e.message().contains('\n'), "one line: {e}");
    // Silent once the touch is asked for: the touch deadline, then exit 4; the UI's touch
    // prompt is closed as failed.
    let mut u = Fido2Unlocker::for_desc(
        Box::new(SharedKey::new(silent, None, quick_deadlines())),
        &desc,
        &env(None),
    );
    let ui = touching(&a);
    let t = std::time::Instant::now();
    let e = open_with(&file, &mut u, &ui).unwrap_err();
    assert!(
        t.elapsed() >= std::time::Duration::from_millis(600),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(e.exit_code(), 4, "{e}");
    assert!(e.message().contains("did not answer within"), "{e}");
    assert_eq!(ui.events().last(), Some(&UiEvent::TouchDone(false)));
}

#[test]
fn concurrent_clients_of_one_key_all_succeed_under_its_lock() {
    use crate::token::fido2::{KeyLocker, SharedKey};
    let a = VirtualAuthenticator::new();
    let (bytes, desc) = init(&a, UvMode::Touch, None);
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let shared = SharedHidKey::new(&a);
    let run = |with_lock: bool| {
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (shared, keys, desc, bytes) =
                    (shared.clone(), keys.clone(), desc.clone(), bytes.clone());
                std::thread::spawn(move || {
                    // Each thread opens the lock file itself, as a separate process would.
                    let lock: Option<KeyLocker> = with_lock.then(|| {
                        Box::new(move || {
                            crate::token::keylock::lock(
                                Some(&keys),
                                "/dev/hidraw7",
                                "the FIDO2 authenticator \"Shared FIDO2\"",
                                crate::token::keylock::WAIT,
                            )
                        }) as KeyLocker
                    });
                    let mut deadlines = quick_deadlines();
                    deadlines.busy_retries = 0;
                    let dev = SharedKey::new(shared, lock, deadlines);
                    let mut u = connect_device(Box::new(dev), &desc, &env(None))?
                        .expect("holds the credential");
                    let file = VaultFile::parse(&bytes).unwrap();
                    let ui = RecordingUi::new();
                    open_with(&file, &mut u, &ui).map(|_| ())
                })
            })
            .collect::<Vec<_>>();
        threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect::<Vec<_>>()
    };
    // Four at once, each taking the key's lock: all open the vault.
    for r in run(true) {
        r.unwrap();
    }
    // The fake does misbehave without the lock (so the test above can fail).
    let unlocked = run(false);
    assert!(
        unlocked.iter().any(|r| r.is_err()),
        "no overlap seen without the lock"
    );
}

#[test]
fn a_busy_key_is_retried_a_bounded_number_of_times() {
    use crate::token::fido2::SharedKey;
    let a = VirtualAuthenticator::new();
    let (_, desc) = init(&a, UvMode::Touch, None);
    let busy = SharedHidKey::new(&a);
    busy.busy_first
        .store(3, std::sync::atomic::Ordering::SeqCst);
    // Three "busy" answers, then the probe goes through.
    let u = connect_device(
        Box::new(SharedKey::new(busy.clone(), None, quick_deadlines())),
        &desc,
        &env(None),
    )
    .unwrap();
    assert!(u.is_some());
    // Busy for longer than the retries: one line saying so, no re-plug advice.
    busy.busy_first
        .store(100, std::sync::atomic::Ordering::SeqCst);
    let e = connect_device(
        Box::new(SharedKey::new(busy.clone(), None, quick_deadlines())),
        &desc,
        &env(None),
    )
    .unwrap_err();
    assert!(e.message().contains("busy with another program"), "{e}");
    assert!(!e.message().contains("unplug"), "{e}");
    assert_eq!(
        busy.busy_first.load(std::sync::atomic::Ordering::SeqCst),
        100 - 6,
        "one try and five retries"
    );
}
