//! The `auto` order and every explicit kind, over virtual YubiKeys (the testkit's, in
//! memory) and a map for an environment.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tapcred_testkit::virtual_yubikey::{Account, VirtualYubiKey, VykConfig};

use super::*;
use crate::error::ErrorKind;
use crate::token::device::Connection;
use crate::token::transport::ApduTransport;
use crate::token::{CodeRequest, DEFAULT_SECRET_ENV};
use crate::ui::RecordingUi;

const ARN: &str = "arn:aws:iam::111111111111:mfa/alice";
const AWS_LABEL: &str = "Amazon Web Services:alice@111111111111";
/// "12345678901234567890" (RFC 6238's SHA-1 seed).
const SEED_B32: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
const SEED: &[u8] = b"12345678901234567890";
const OTHER_SEED: &[u8] = b"another-seed-of-20-b";
const AT: u64 = 1_111_111_109;

/// Virtual keys in YubiKey readers; `None` as a whole: the PC/SC service is down.
struct Keys(Option<Vec<Arc<Mutex<VirtualYubiKey>>>>);

struct Conn(Arc<Mutex<VirtualYubiKey>>);

impl ApduTransport for Conn {
    fn transmit(&mut self, apdu: &[u8]) -> crate::Result<Vec<u8>> {
        Ok(self.0.lock().unwrap().transmit(apdu))
    }
}
impl Connection for Conn {}

fn reader(i: usize) -> String {
    format!("Yubico YubiKey OTP+FIDO+CCID 00 {i:02}")
}

impl Backend for Keys {
    fn readers(&self) -> crate::Result<Vec<String>> {
        match &self.0 {
            Some(k) => Ok((0..k.len()).map(reader).collect()),
            None => Err(Error::token("cannot reach a YubiKey: pcscd is not running")),
        }
    }
    fn connect(&self, name: &str) -> crate::Result<Option<Box<dyn Connection>>> {
        let keys = self.0.as_ref().expect("readers listed");
        let i = (0..keys.len()).find(|&i| reader(i) == name).unwrap();
        Ok(Some(Box::new(Conn(keys[i].clone()))))
    }
}

fn keys(cfgs: Vec<VykConfig>) -> Arc<dyn Backend> {
    Arc::new(Keys(Some(
        cfgs.into_iter()
            .map(|c| Arc::new(Mutex::new(VirtualYubiKey::new(c))))
            .collect(),
    )))
}

fn key_with(serial: u32, name: &str, seed: &[u8]) -> VykConfig {
    VykConfig::new()
        .serial(serial)
        .account(Account::totp(name, seed))
}

fn no_pcscd() -> Arc<dyn Backend> {
    Arc::new(Keys(None))
}

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn settings(kind: TokenKind) -> TokenSettings {
    TokenSettings {
        kind,
        profile: "mfa".into(),
        ..TokenSettings::default()
    }
}

/// A UI with a terminal: someone could type a code.
fn terminal() -> RecordingUi {
    let ui = RecordingUi::new();
    ui.lines.lock().unwrap().push("123456".into());
    ui
}

/// Stored seeds in memory, where the vault plugs in: what it holds, and how many times a
/// source was opened from it (for the vault, an unlock asks for a touch).
#[derive(Default)]
struct MemSeeds {
    seeds: HashMap<String, Vec<u8>>,
    opened: Cell<usize>,
}

impl MemSeeds {
    fn with(serial: &str, seed: &[u8]) -> Self {
        MemSeeds {
            seeds: HashMap::from([(serial.to_owned(), seed.to_vec())]),
            opened: Cell::new(0),
        }
    }
}

/// A code source opened from [`MemSeeds`].
struct Stored(SoftwareSource);

impl TokenSource for Stored {
    fn describe(&self) -> String {
        "stored seed".to_owned()
    }
    fn code(&mut self, req: &CodeRequest<'_>, ui: &dyn Ui) -> Result<crate::token::Code> {
        self.0.code(req, ui)
    }
}

impl SeedStore for MemSeeds {
    fn lists(&self, mfa_serial: &str) -> Result<bool> {
        Ok(self.seeds.contains_key(mfa_serial))
    }
    fn open(
        &self,
        settings: &TokenSettings,
        mfa_serial: &str,
        _env: &dyn EnvLookup,
        _ui: &dyn Ui,
    ) -> Result<Box<dyn TokenSource>> {
        let Some(seed) = self.seeds.get(mfa_serial) else {
            return Err(Error::config(format!(
                "profile \"{}\" has tapcred_token = vault, but no seed is stored for {mfa_serial}",
                settings.profile
            )));
        };
        self.opened.set(self.opened.get() + 1);
        let b32 = data_encoding::BASE32_NOPAD.encode(seed);
        Ok(Box::new(Stored(SoftwareSource::from_seed(&b32, "test")?)))
    }
}

fn pick(
    kind: TokenKind,
    env: &HashMap<String, String>,
    pcsc: Arc<dyn Backend>,
    ui: &RecordingUi,
) -> Result<Box<dyn TokenSource>> {
    pick_with_seeds(kind, env, pcsc, &MemSeeds::default(), ui)
}

fn pick_with_seeds(
    kind: TokenKind,
    env: &HashMap<String, String>,
    pcsc: Arc<dyn Backend>,
    seeds: &MemSeeds,
    ui: &RecordingUi,
) -> Result<Box<dyn TokenSource>> {
    let sources = Sources { env, pcsc, seeds };
    select_with(&settings(kind), ARN, &sources, ui)
}

fn code(src: &mut Box<dyn TokenSource>, ui: &RecordingUi) -> String {
    let req = CodeRequest {
        mfa_serial: ARN,
        profile: "mfa",
        at: AT,
    };
    src.code(&req, ui).unwrap().digits.to_string()
}

/// The RFC 6238 code of `seed` at [`AT`], computed by totp-rs (not by the virtual key).
fn expected(seed: &[u8]) -> String {
    let b32 = data_encoding::BASE32_NOPAD.encode(seed);
    let mut s = SoftwareSource::from_seed(&b32, "test").unwrap();
    let req = CodeRequest {
        mfa_serial: ARN,
        profile: "mfa",
        at: AT,
    };
    s.code(&req, &RecordingUi::new())
        .unwrap()
        .digits
        .to_string()
}

#[test]
fn auto_1_a_software_seed_wins_over_a_plugged_in_key() {
    let ui = terminal();
    // The key holds an account for the serial, with another seed: the seed must win.
    let pcsc = keys(vec![key_with(1111, AWS_LABEL, OTHER_SEED)]);
    let e = env(&[(DEFAULT_SECRET_ENV, SEED_B32)]);
    let mut src = pick(TokenKind::Auto, &e, pcsc, &ui).unwrap();
    assert!(
        src.describe().starts_with("software TOTP"),
        "{}",
        src.describe()
    );
    assert_eq!(code(&mut src, &ui), "081804"); // RFC 6238 SHA-1, T = 1111111109: 07081804
    assert!(ui.events().is_empty(), "no device or prompt touched");
}

#[test]
fn auto_1_a_malformed_seed_is_an_error_not_a_skip() {
    let ui = terminal();
    let pcsc = keys(vec![key_with(1111, AWS_LABEL, SEED)]);
    let e = env(&[(DEFAULT_SECRET_ENV, "not base32 !!")]);
    let err = pick(TokenKind::Auto, &e, pcsc, &ui).err().unwrap();
    assert_eq!(err.kind, ErrorKind::Config, "{err}");
    assert!(err.message().contains(DEFAULT_SECRET_ENV), "{err}");
}

#[test]
fn auto_3_oath_on_the_plugged_in_key_when_no_seed() {
    let ui = terminal();
    let pcsc = keys(vec![key_with(1111, AWS_LABEL, SEED)]);
    let mut src = pick(TokenKind::Auto, &env(&[]), pcsc, &ui).unwrap();
    assert!(
        src.describe().contains(&format!("OATH \"{AWS_LABEL}\"")),
        "{}",
        src.describe()
    );
    assert_eq!(code(&mut src, &ui), expected(SEED));
}

#[test]
fn auto_3_the_oath_password_comes_from_the_injected_env() {
    let ui = RecordingUi::new();
    let locked = || keys(vec![key_with(1111, AWS_LABEL, SEED).password("hunter2")]);
    let e = env(&[(oath::PASSWORD_ENV, "hunter2")]);
    let mut src = pick(TokenKind::Auto, &e, locked(), &ui).unwrap();
    assert_eq!(code(&mut src, &ui), expected(SEED));
    // Without it (and no terminal) the locked key is an error the user must fix.
    let err = pick(TokenKind::Auto, &env(&[]), locked(), &ui)
        .err()
        .unwrap();
    assert!(err.message().contains(oath::PASSWORD_ENV), "{err}");
}

#[test]
fn auto_3_several_keys_without_a_serial_are_an_error_even_with_a_terminal() {
    let ui = terminal();
    let pcsc = keys(vec![
        key_with(1111, AWS_LABEL, SEED),
        key_with(2222, AWS_LABEL, OTHER_SEED),
    ]);
    let err = pick(TokenKind::Auto, &env(&[]), pcsc, &ui).err().unwrap();
    assert_eq!(err.kind, ErrorKind::Token);
    assert!(err.message().contains("2 YubiKeys"), "{err}");
    assert!(err.message().contains("tapcred_yubikey_serial"), "{err}");
}

#[test]
fn auto_4_a_typed_code_when_the_key_has_no_matching_account() {
    let ui = terminal();
    let pcsc = keys(vec![key_with(
        1111,
        "Amazon Web Services:bob@222222222222",
        SEED,
    )]);
    let src = pick(TokenKind::Auto, &env(&[]), pcsc, &ui).unwrap();
    assert_eq!(src.describe(), "typed code");
    assert!(!src.computes_any_time());
}

#[test]
fn auto_4_a_typed_code_when_pcscd_is_down_or_no_key_is_plugged_in() {
    for pcsc in [no_pcscd(), keys(vec![])] {
        let ui = terminal();
        let src = pick(TokenKind::Auto, &env(&[]), pcsc, &ui).unwrap();
        assert_eq!(src.describe(), "typed code");
    }
}

#[test]
fn auto_5_no_terminal_is_an_error_naming_what_was_tried() {
    for pcsc in [no_pcscd(), keys(vec![]), keys(vec![key_with(1, "x", SEED)])] {
        let ui = RecordingUi::new();
        let err = pick(TokenKind::Auto, &env(&[]), pcsc, &ui).err().unwrap();
        assert_eq!(err.kind, ErrorKind::Token);
        let m = err.message();
        for what in [
            "profile \"mfa\"",
            "$TAPCRED_TOTP_SECRET",
            "a YubiKey",
            "a typed code",
            "tapcred doctor --profile mfa",
        ] {
            assert!(m.contains(what), "{what:?} missing from: {m}");
        }
    }
}

#[test]
fn explicit_software_needs_its_seed() {
    let ui = terminal();
    let e = env(&[(DEFAULT_SECRET_ENV, SEED_B32)]);
    let src = pick(TokenKind::Software, &e, no_pcscd(), &ui).unwrap();
    assert!(src.describe().starts_with("software TOTP"));
    let err = pick(TokenKind::Software, &env(&[]), no_pcscd(), &ui)
        .err()
        .unwrap();
    assert_eq!(err.kind, ErrorKind::Config);
    assert!(err.message().contains("tapcred_token = software"), "{err}");
}

#[test]
fn explicit_oath_ignores_a_seed_and_never_falls_back_to_a_prompt() {
    let ui = terminal();
    let e = env(&[(DEFAULT_SECRET_ENV, SEED_B32)]);
    let pcsc = keys(vec![key_with(1111, AWS_LABEL, OTHER_SEED)]);
    let mut src = pick(TokenKind::Oath, &e, pcsc, &ui).unwrap();
    assert_eq!(code(&mut src, &ui), expected(OTHER_SEED));
    let err = pick(TokenKind::Oath, &e, keys(vec![]), &ui).err().unwrap();
    assert_eq!(err.kind, ErrorKind::Token);
    assert!(err.message().contains("no YubiKey found"), "{err}");
}

#[test]
fn explicit_prompt_and_vault() {
    let ui = RecordingUi::new();
    let e = env(&[(DEFAULT_SECRET_ENV, SEED_B32)]);
    let pcsc = || keys(vec![key_with(1111, AWS_LABEL, SEED)]);
    let src = pick(TokenKind::Prompt, &e, pcsc(), &ui).unwrap();
    assert_eq!(src.describe(), "typed code");
    let err = pick(TokenKind::Vault, &e, pcsc(), &ui).err().unwrap();
    assert_eq!(err.kind, ErrorKind::Config);
    assert!(err.message().contains("tapcred_token = vault"), "{err}");
}

#[test]
fn auto_2_the_vault_after_a_seed_and_before_the_key() {
    let ui = RecordingUi::new();
    // The key has an account for the serial (another seed): the stored seed must win.
    let pcsc = || keys(vec![key_with(1111, AWS_LABEL, OTHER_SEED)]);
    let seeds = MemSeeds::with(ARN, SEED);
    let mut src = pick_with_seeds(TokenKind::Auto, &env(&[]), pcsc(), &seeds, &ui).unwrap();
    assert_eq!(src.describe(), "stored seed");
    assert_eq!(code(&mut src, &ui), expected(SEED));
    assert_eq!(seeds.opened.get(), 1);
    let mut again = pick_with_seeds(TokenKind::Vault, &env(&[]), pcsc(), &seeds, &ui).unwrap();
    assert_eq!(code(&mut again, &ui), expected(SEED));

    // A software seed still comes first: the store is not opened.
    let seeds = MemSeeds::with(ARN, SEED);
    let e = env(&[(DEFAULT_SECRET_ENV, SEED_B32)]);
    let src = pick_with_seeds(TokenKind::Auto, &e, pcsc(), &seeds, &ui).unwrap();
    assert!(src.describe().starts_with("software TOTP"));
    assert_eq!(seeds.opened.get(), 0);

    // A store without this serial's seed: on to the key's OATH account, nothing opened.
    let seeds = MemSeeds::with("arn:aws:iam::111111111111:mfa/someone-else", SEED);
    let mut src = pick_with_seeds(TokenKind::Auto, &env(&[]), pcsc(), &seeds, &ui).unwrap();
    assert_eq!(code(&mut src, &ui), expected(OTHER_SEED));
    assert_eq!(seeds.opened.get(), 0);
    // Asked for explicitly, the store's own error comes through unchanged.
    let err = pick_with_seeds(TokenKind::Vault, &env(&[]), pcsc(), &seeds, &ui)
        .err()
        .unwrap();
    assert_eq!(err.kind, ErrorKind::Config);
    assert!(
        err.message()
            .contains("no seed is stored for arn:aws:iam::111111111111:mfa/alice"),
        "{err}"
    );
}
