//! `tapcred_token = vault`: the TOTP seed of the profile's `mfa_serial` kept in tapcred's
//! vault (`EntryName::seed(mfa_serial)`), opened through the process's [`VaultSession`]
//! (one unlock serves the seed and the access key). [`VaultSeeds`] plugs the vault into the
//! token layer's source selection ([`crate::token::SeedStore`]). Codes are AWS virtual MFA's: RFC 6238,
//! SHA-1, 6 digits, 30 s, as the software source. The seed is decrypted for each code and
//! zeroized right after it.

use std::rc::Rc;

use totp_rs::{Algorithm, Secret as TotpSecret};

use crate::clock::window_of;
use crate::env::EnvLookup;
use crate::error::{Error, Result};
use crate::token::software::{AWS_DIGITS, AWS_PERIOD};
use crate::token::{Code, CodeRequest, SeedStore, TokenSettings, TokenSource};
use crate::ui::Ui;
use crate::vault::{EntryName, Secret, VaultSession};

/// The vault as the token layer's [`SeedStore`]: `auto` and `tapcred_token = vault` read
/// seeds through this process's session.
pub struct VaultSeeds(Rc<VaultSession>);

impl VaultSeeds {
    /// Seeds from `session` (shared with the access key: one unlock for both).
    pub fn new(session: Rc<VaultSession>) -> Self {
        VaultSeeds(session)
    }

    /// Seeds from the vault `env` points at, in a session of their own.
    pub fn from_env(env: &dyn EnvLookup) -> Self {
        VaultSeeds(Rc::new(VaultSession::from_env(env)))
    }
}

impl SeedStore for VaultSeeds {
    fn lists(&self, mfa_serial: &str) -> Result<bool> {
        VaultSource::lists(&self.0, mfa_serial)
    }

    fn open(
        &self,
        settings: &TokenSettings,
        mfa_serial: &str,
        env: &dyn EnvLookup,
        ui: &dyn Ui,
    ) -> Result<Box<dyn TokenSource>> {
        Ok(Box::new(VaultSource::open(
            settings, mfa_serial, &self.0, env, ui,
        )?))
    }
}

pub struct VaultSource {
    session: Rc<VaultSession>,
    serial: String,
}

impl std::fmt::Debug for VaultSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultSource")
            .field("vault", &self.session.path())
            .field("serial", &self.serial)
            .finish()
    }
}

impl VaultSource {
    /// Whether `auto` should use the vault for `mfa_serial`: the vault file exists and lists
    /// a seed for it (read from the header: no unlock).
    pub fn lists(session: &VaultSession, mfa_serial: &str) -> Result<bool> {
        session.lists(&EntryName::seed(mfa_serial))
    }

    /// The vault's seed for `mfa_serial`, the vault opened (one touch per process, shared
    /// with the access key). A clear error when there is no vault or no seed for the serial.
    pub fn open(
        settings: &TokenSettings,
        mfa_serial: &str,
        session: &Rc<VaultSession>,
        env: &dyn EnvLookup,
        ui: &dyn Ui,
    ) -> Result<VaultSource> {
        let src = Self::check(settings, mfa_serial, session)?;
        session.open(env, ui)?;
        Ok(src)
    }

    /// [`VaultSource::open`] without the unlock (`doctor`): the file and the entry only.
    pub fn check(
        settings: &TokenSettings,
        mfa_serial: &str,
        session: &Rc<VaultSession>,
    ) -> Result<VaultSource> {
        let profile = &settings.profile;
        if !Self::lists(session, mfa_serial)? {
            let fix = format!("tapcred vault add-seed --profile {profile}");
            return Err(match (session.file()?, session.path()) {
                (Some(_), Some(p)) => Error::config(format!(
                    "profile \"{profile}\" has tapcred_token = vault, but the vault {} holds no seed for {mfa_serial}; store it with `{fix}`",
                    p.display()
                )),
                (_, Some(p)) => Error::config(format!(
                    "profile \"{profile}\" has tapcred_token = vault, but there is no vault at {}; create it with `tapcred vault init --unlock otp`, then `{fix}`",
                    p.display()
                )),
                (_, None) => Error::config(format!(
                    "profile \"{profile}\" has tapcred_token = vault, but there is no place for the vault (HOME is not set); set HOME, XDG_DATA_HOME or TAPCRED_VAULT"
                )),
            });
        }
        Ok(VaultSource {
            session: session.clone(),
            serial: mfa_serial.to_owned(),
        })
    }
}

impl TokenSource for VaultSource {
    fn describe(&self) -> String {
        match self.session.path() {
            Some(p) => format!("vault seed ({})", p.display()),
            None => "vault seed".to_owned(),
        }
    }

    fn period(&self) -> u64 {
        AWS_PERIOD
    }

    fn code(&mut self, req: &CodeRequest<'_>, _ui: &dyn Ui) -> Result<Code> {
        let secret = self.session.get_opened(&EntryName::seed(&self.serial))?;
        let Secret::TotpSeed(seed) = secret else {
            return Err(Error::internal("a vault seed entry held another kind"));
        };
        if seed.is_empty() {
            return Err(Error::config(format!(
                "the vault's seed for {} is empty; store it again with `tapcred vault add-seed --profile {}`",
                self.serial, req.profile
            )));
        }
        // totp-rs (feature "zeroize") wipes its copy when `totp` is dropped; `seed` is
        // Zeroizing and wiped at the end of this function.
        let totp = totp_rs::Builder::new()
            .with_algorithm(Algorithm::SHA1)
            .with_digits(AWS_DIGITS)
            .with_step_duration(AWS_PERIOD)
            .with_secret(TotpSecret::from(seed.to_vec()))
            .build_noncompliant();
        let (window_start, window_end) = window_of(req.at, AWS_PERIOD);
        let digits = zeroize::Zeroizing::new(totp.generate(req.at).to_string());
        drop(totp);
        drop(seed);
        Ok(Code {
            digits,
            window_start,
            window_end,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::collections::HashMap;

    use crate::error::ErrorKind;
    use crate::token::TokenKind;
    use crate::ui::RecordingUi;
    use crate::vault::unlock::{UnlockOutput, Unlocker};
    use crate::vault::{OpenVault, UnlockerDesc, UnlockerKind, VaultStore};
    use zeroize::Zeroizing;

    struct Fixed;
    impl Unlocker for Fixed {
        fn kind(&self) -> UnlockerKind {
            UnlockerKind::OtpHmacSha1
        }
        fn id(&self) -> String {
            "otp:1:2".into()
        }
        fn respond(&mut self, _d: &UnlockerDesc, _ui: &dyn Ui) -> Result<UnlockOutput> {
            Ok(UnlockOutput::new(b"fixed output".to_vec()))
        }
    }

    #[test]
    fn codes_are_rfc6238_sha1_six_digits_and_a_missing_seed_names_the_fix() {
        // RFC 6238's SHA-1 key; at 59 s the 8-digit code is 94287082, so 6 digits: 287082.
        let dir = tempfile::tempdir().unwrap();
        let store = VaultStore::new(dir.path().join("vault"));
        let ui = RecordingUi::new();
        let (desc, out) = crate::vault::unlock::enroll(&mut Fixed, &ui).unwrap();
        let mut v = OpenVault::create(desc, out.expose()).unwrap();
        v.put(
            EntryName::seed("arn:aws:iam::1:mfa/u"),
            &Secret::TotpSeed(Zeroizing::new(b"12345678901234567890".to_vec())),
        )
        .unwrap();
        store.lock().unwrap().write(&v).unwrap();
        let session = Rc::new(VaultSession::new(store));
        let settings = TokenSettings {
            profile: "mfa".into(),
            ..TokenSettings::default()
        };
        let mut src = VaultSource::check(&settings, "arn:aws:iam::1:mfa/u", &session).unwrap();
        session
            .open_with(&mut |_| Ok(Some(Box::new(Fixed) as Box<dyn Unlocker>)), &ui)
            .unwrap();
        let req = |at| CodeRequest {
            mfa_serial: "arn:aws:iam::1:mfa/u",
            profile: "mfa",
            at,
        };
        for (at, want) in [
            (59, "287082"),
            (1111111109, "081804"),
            (20000000000, "353130"),
        ] {
            let c = src.code(&req(at), &ui).unwrap();
            assert_eq!(c.digits.as_str(), want, "at {at}");
            assert_eq!((c.window_start, c.window_end), window_of(at, 30));
        }
        assert!(src.describe().contains("vault seed"), "{}", src.describe());
        let e = VaultSource::check(&settings, "arn:aws:iam::1:mfa/other", &session).unwrap_err();
        assert_eq!(e.exit_code(), 3);
        assert!(
            e.message()
                .contains("holds no seed for arn:aws:iam::1:mfa/other")
                && e.message().contains("tapcred vault add-seed --profile mfa"),
            "{e}"
        );
    }

    /// A vault holding `seed` for `serial`, and a session whose only unlocker is `Fixed`
    /// counting its answers (= touches).
    fn vault_with(
        serial: &str,
        seed: &[u8],
    ) -> (tempfile::TempDir, Rc<VaultSession>, Rc<Cell<usize>>) {
        let dir = tempfile::tempdir().unwrap();
        let store = VaultStore::new(dir.path().join("vault"));
        let (desc, out) = crate::vault::unlock::enroll(&mut Fixed, &RecordingUi::new()).unwrap();
        let mut v = OpenVault::create(desc, out.expose()).unwrap();
        v.put(
            EntryName::seed(serial),
            &Secret::TotpSeed(Zeroizing::new(seed.to_vec())),
        )
        .unwrap();
        store.lock().unwrap().write(&v).unwrap();
        let asked = Rc::new(Cell::new(0));
        let a = asked.clone();
        let session = VaultSession::new(store).with_devices(Box::new(move |_| {
            a.set(a.get() + 1);
            Ok(Some(Box::new(Fixed) as Box<dyn Unlocker>))
        }));
        (dir, Rc::new(session), asked)
    }

    #[test]
    fn vault_seeds_list_without_an_unlock_and_two_sources_cost_one_unlock() {
        let serial = "arn:aws:iam::1:mfa/u";
        let (_d, session, asked) = vault_with(serial, b"12345678901234567890");
        let seeds = VaultSeeds::new(session);
        let settings = TokenSettings {
            kind: TokenKind::Vault,
            profile: "mfa".into(),
            ..TokenSettings::default()
        };
        let (env, ui) = (HashMap::<String, String>::new(), RecordingUi::new());
        assert!(seeds.lists(serial).unwrap());
        assert!(!seeds.lists("arn:aws:iam::1:mfa/other").unwrap());
        assert_eq!(asked.get(), 0, "listing needs no unlock");
        let req = CodeRequest {
            mfa_serial: serial,
            profile: "mfa",
            at: 59,
        };
        let mut first = seeds.open(&settings, serial, &env, &ui).unwrap();
        assert!(
            first.describe().starts_with("vault seed"),
            "{}",
            first.describe()
        );
        assert_eq!(first.code(&req, &ui).unwrap().digits.as_str(), "287082");
        let mut again = seeds.open(&settings, serial, &env, &ui).unwrap();
        assert_eq!(again.code(&req, &ui).unwrap().digits.as_str(), "287082");
        assert_eq!(asked.get(), 1, "one unlock for both sources");
        let e = seeds
            .open(&settings, "arn:aws:iam::1:mfa/other", &env, &ui)
            .err()
            .unwrap();
        assert_eq!(e.kind, ErrorKind::Config);
        assert!(
            e.message().contains("tapcred vault add-seed --profile mfa"),
            "{e}"
        );
        assert_eq!(asked.get(), 1, "a missing seed asks for no unlock");
    }

    #[test]
    fn vault_seeds_without_a_vault_list_nothing_and_say_the_setting() {
        let env = HashMap::<String, String>::new();
        let seeds = VaultSeeds::from_env(&env);
        assert!(!seeds.lists("arn:aws:iam::1:mfa/u").unwrap());
        let settings = TokenSettings {
            kind: TokenKind::Vault,
            profile: "mfa".into(),
            ..TokenSettings::default()
        };
        let e = seeds
            .open(&settings, "arn:aws:iam::1:mfa/u", &env, &RecordingUi::new())
            .err()
            .unwrap();
        assert_eq!(e.kind, ErrorKind::Config);
        assert!(e.message().contains("tapcred_token = vault"), "{e}");
    }
}
