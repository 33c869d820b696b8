//! `tapcred enroll`: a new virtual MFA device for the IAM user whose long-term keys the
//! profile's chain starts from, with its seed going straight from IAM into the YubiKey's OATH
//! applet (or a new 0600 seed file with `--to file`, or tapcred's vault with `--to vault`),
//! enabled with two consecutive codes read from there, written into the profile, and proven
//! with one STS call.
//!
//! Steps: GetCallerIdentity (user, account) → checks of the destination (key present and
//! unlocked, account name free; or the seed file new) → CreateVirtualMFADevice → PUT (or the
//! seed file) → two consecutive codes (the second in the next 30 s window) → EnableMFADevice →
//! `mfa_serial` (and `tapcred_oath_account` when the automatic matching would not find the
//! account) into the profile → one engine call (GetSessionToken/AssumeRole with a fresh code:
//! the two windows sent to IAM are in the step ledger, so they are never sent to STS).
//!
//! Rollback: a failure after CreateVirtualMFADevice (or Ctrl-C, SIGTERM, SIGHUP) undoes what
//! was done, newest first: the profile edit (the editor's receipt), DeactivateMFADevice, the
//! OATH account (DELETE), the seed file or the vault entry, DeleteVirtualMFADevice. An undo that fails is
//! printed as the exact command to run by hand.
//!
//! The seed: decoded from IAM's answer into a zeroizing buffer, sent in the PUT APDU (or
//! written to the seed file, or sealed into the vault), dropped. `--to vault` unlocks the
//! vault once, before the device is created (the one touch); the unlocker's output is kept
//! in memory so the seed is stored, and on a failure taken out again, without another touch. Never printed, logged or passed in argv.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use zeroize::Zeroizing;

use crate::cache::SessionCache;
use crate::commands::Ctx;
use crate::credentials::Credentials;
use crate::engine::{self, Engine, MIN_SECONDS_LEFT, Options, plan_code_time};
use crate::error::{Error, Result};
use crate::iam::{Iam, IamTarget};
use crate::profile::editor::{self, AwsFile, EditReceipt, ProfileEdit};
use crate::profile::{AwsFiles, Mfa, Profiles};
use crate::sts::{CallContext, Sts, StsApi, StsTarget};
use crate::token::device::Backend;
use crate::token::oath::enroll::{EnrollKey, MAX_NAME_LEN};
use crate::token::oath::{OathType, matching};
use crate::token::pcsc::PcscBackend;
use crate::token::software::SoftwareSource;
use crate::token::{self, Code, TokenSettings, TokenSource};
use crate::ui::Ui;
use crate::vault::{EntryName, Secret, VaultSession, VaultStore};

use super::vault::Unlocked;

/// Exit code after an interrupted enroll (128 + SIGINT), once the rollback ran.
pub const EXIT_INTERRUPTED: i32 = 130;

/// Where the seed goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Destination {
    /// The YubiKey's OATH applet.
    #[default]
    Oath,
    /// A new private seed file (headless use; `tapcred_totp_secret_file`).
    File,
    /// tapcred's vault (`tapcred vault init` first; `tapcred_token = vault`).
    Vault,
}

#[derive(Debug, Clone, Default)]
pub struct Args {
    pub profile: String,
    /// The OATH account requires a touch for every code.
    pub touch: bool,
    /// The IAM device name (default: the IAM user name).
    pub device_name: Option<String>,
    pub to: Destination,
    /// Which YubiKey when several are plugged in.
    pub yubikey_serial: Option<u32>,
    /// `--to file`: where (default: `tapcred-PROFILE.seed` beside the config file).
    pub seed_file: Option<PathBuf>,
}

/// Set when the person asks to stop (Ctrl-C, SIGTERM, SIGHUP): the current step finishes,
/// then everything done so far is undone.
#[derive(Clone, Default)]
pub struct Interrupt(Arc<AtomicBool>);

impl Interrupt {
    pub fn new() -> Self {
        Self::default()
    }

    /// A flag set by the process's Ctrl-C handler (installed here, for this command).
    pub fn install() -> Self {
        let i = Interrupt::new();
        let flag = i.0.clone();
        if let Err(e) = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)) {
            tracing::warn!(error = %e, "cannot install the Ctrl-C handler");
        }
        i
    }

    pub fn raise(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    fn check(&self) -> Result<()> {
        if self.is_set() {
            Err(Error::usage("interrupted"))
        } else {
            Ok(())
        }
    }
}

pub fn run(args: &Args, ctx: &Ctx<'_>, out: &mut dyn Write) -> Result<i32> {
    let interrupt = Interrupt::install();
    run_with(args, ctx, Arc::new(PcscBackend::new()), &interrupt, out)
}

/// Where the seed is going, checked before the device is created.
enum Dest {
    /// The key itself is in [`Job::key`] (the rollback needs it after the flow returned).
    Oath {
        name: String,
    },
    File {
        path: PathBuf,
    },
    /// The opened vault is in [`Job::vault`].
    Vault,
}

/// One thing done that a rollback undoes.
enum Undo {
    DeleteDevice { serial: String },
    OathAccount { name: String },
    SeedFile { path: PathBuf },
    VaultEntry { name: EntryName },
    Deactivate { user: String, serial: String },
    Profile(Box<EditReceipt>),
}

/// [`run`] with the YubiKey backend and the interrupt flag given (tests pass virtual keys).
pub fn run_with(
    args: &Args,
    ctx: &Ctx<'_>,
    backend: Arc<dyn Backend>,
    interrupt: &Interrupt,
    out: &mut dyn Write,
) -> Result<i32> {
    let (env, ui) = (ctx.env, ctx.ui);
    let profile = args.profile.as_str();
    let files = AwsFiles::from_env(env);
    let profiles = Profiles::load(&files)?;
    let resolved = profiles.resolve(profile, env)?;
    let signer = resolved.base.origin.clone();
    if resolved.base.session_token.is_some() {
        return Err(Error::config(format!(
            "profile \"{profile}\": the keys of \"{signer}\" are temporary (they have a session token); enroll needs the long-term access key of an IAM user"
        )));
    }
    // `--to vault` unlocks the vault first, once: the seed goes in with that unlock, and
    // the session below replays it, so keys kept in the vault (`tapcred_access_key = vault`)
    // and the proof cost no second touch. Otherwise keys in the vault cost one unlock here,
    // shared with the proof.
    let mut vault = None;
    let session = match args.to {
        Destination::Vault => {
            let store = super::vault::store(ctx)?;
            let file = store.read()?.ok_or_else(|| {
                Error::config(format!(
                    "no vault at {}; create one with `tapcred vault init --unlock otp`, then enroll again",
                    store.path().display()
                ))
            })?;
            ui.info(&format!(
                "enroll: unlocking the vault {} (the seed will be sealed in it)",
                store.path().display()
            ));
            let serial = args.yubikey_serial.or(resolved.token.yubikey_serial);
            let unlocked = super::vault::unlock_with(&file, serial, env, ui)?;
            let session = unlocked.session(env);
            vault = Some((store, unlocked));
            session
        }
        _ => VaultSession::from_env(env),
    };
    let session = Rc::new(session);
    let creds = engine::vault_base_keys(&session, &resolved.base, env, ui)?;
    let sts_target = StsTarget::for_profile(&resolved, env);
    let iam_target = IamTarget::for_profile(&profiles, profile, &sts_target, env)?;
    let call = CallContext {
        profile,
        signer: &signer,
    };
    let sts = Sts::new(sts_target.clone())?;
    let who = sts.get_caller_identity(&creds, call)?;
    let (account, user) = iam_user(&who.arn).ok_or_else(|| {
        Error::config(format!(
            "profile \"{profile}\": the keys of profile \"{signer}\" act as {}, not as an IAM user; MFA devices belong to IAM users, so enroll needs an IAM user's long-term keys",
            who.arn
        ))
    })?;
    ui.info(&format!(
        "enroll: the keys of profile \"{signer}\" belong to IAM user {user} in account {account}"
    ));
    let device_name = args.device_name.clone().unwrap_or_else(|| user.clone());
    check_device_name(&device_name)?;
    let expected_serial = format!("arn:aws:iam::{account}:mfa/{device_name}");

    let (dest, key) = match args.to {
        Destination::Oath => {
            let settings = TokenSettings {
                yubikey_serial: args.yubikey_serial.or(resolved.token.yubikey_serial),
                profile: profile.to_owned(),
                ..TokenSettings::default()
            };
            let key = EnrollKey::open(backend, env, &settings, ui)?;
            let name = oath_name(&expected_serial, &device_name)?;
            key.check_new(&name, args.touch)?;
            ui.info(&format!(
                "enroll: {} is ready; the seed will go straight into its OATH applet as \"{name}\"{}",
                key.label(),
                if args.touch { " (touch required)" } else { "" }
            ));
            (Dest::Oath { name }, Some(key))
        }
        Destination::File => {
            let path = args.seed_file.clone().unwrap_or_else(|| {
                let dir = files.config.parent().unwrap_or(Path::new("."));
                dir.join(format!("tapcred-{profile}.seed"))
            });
            if std::fs::symlink_metadata(&path).is_ok() {
                return Err(Error::usage(format!(
                    "seed file {} already exists; enroll writes a new file only: choose another --seed-file or remove it",
                    path.display()
                )));
            }
            (Dest::File { path }, None)
        }
        Destination::Vault => {
            let (store, _) = vault.as_ref().expect("the vault was unlocked above");
            let name = EntryName::seed(expected_serial.clone());
            if store
                .read()?
                .is_some_and(|f| f.entry_names().any(|n| *n == name))
            {
                return Err(Error::usage(format!(
                    "the vault {} already holds a seed for {expected_serial}; remove it (`tapcred vault remove --mfa-serial {expected_serial}`) or choose another --device-name",
                    store.path().display()
                )));
            }
            (Dest::Vault, None)
        }
    };
    interrupt.check()?;

    let cache = SessionCache::open_default(env, ui);
    let iam = Iam::new(iam_target, &signer)?;
    let mut job = Job {
        args,
        ctx,
        interrupt,
        iam: &iam,
        creds: &creds,
        signer: &signer,
        user: &user,
        account: &account,
        files: &files,
        profiles: &profiles,
        cache: &cache,
        key,
        vault,
        session,
        undo: Vec::new(),
        undone_any: false,
    };
    match job.enroll(&device_name, dest) {
        Ok(done) => {
            writeln!(
                out,
                "profile \"{profile}\": mfa_serial = {} ({}); proven: {}",
                done.serial, done.where_, done.arn
            )
            .map_err(|e| Error::io(format!("cannot write to stdout: {e}")))?;
            Ok(0)
        }
        Err(err) if job.undo.is_empty() && !interrupt.is_set() => Err(err),
        Err(err) => {
            let interrupted = interrupt.is_set();
            if interrupted {
                ui.warn("enroll interrupted; undoing what was done");
            } else {
                ui.warn(&format!("enroll failed: {err}"));
                ui.warn("undoing what was done");
            }
            let manual = job.rollback();
            if manual.is_empty() {
                if !job.undone_any {
                    ui.info("enroll: nothing had been changed");
                } else {
                    ui.info("enroll: everything was undone; nothing is left behind");
                }
            } else {
                ui.warn("enroll: could not undo everything; clean up by hand:");
                for m in &manual {
                    ui.warn(&format!("  {m}"));
                }
            }
            if interrupted {
                Ok(EXIT_INTERRUPTED)
            } else {
                Err(err)
            }
        }
    }
}

/// `arn:aws:iam::ACCT:user[/path]/NAME` → (ACCT, NAME).
fn iam_user(arn: &str) -> Option<(String, String)> {
    let rest = arn.strip_prefix("arn:aws")?;
    let rest = rest.split_once(":iam::")?.1;
    let (account, resource) = rest.split_once(':')?;
    let name = resource.strip_prefix("user/")?.rsplit('/').next()?;
    (!account.is_empty() && !name.is_empty()).then(|| (account.to_owned(), name.to_owned()))
}

fn check_device_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 226
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::usage(format!(
            "device name \"{name}\": IAM allows 1 to 226 characters of letters, digits and _+=,.@-; choose another --device-name"
        )))
    }
}

/// The OATH account name: the `mfa_serial` itself (the aws-vault convention, found by
/// DESIGN.md's matching without `tapcred_oath_account`). AWS's QR label
/// (`Amazon Web Services:NAME@ACCT`) is always longer, so a serial that does not fit the key's
/// 64 bytes means a shorter device name.
fn oath_name(serial: &str, device: &str) -> Result<String> {
    if serial.len() <= MAX_NAME_LEN {
        return Ok(serial.to_owned());
    }
    Err(Error::usage(format!(
        "device name \"{device}\" is too long for a YubiKey account named by its ARN ({} bytes, at most {MAX_NAME_LEN}); choose a --device-name of at most {} characters",
        serial.len(),
        MAX_NAME_LEN + device.len() - serial.len()
    )))
}

struct Done {
    serial: String,
    where_: String,
    arn: String,
}

struct Job<'a> {
    args: &'a Args,
    ctx: &'a Ctx<'a>,
    interrupt: &'a Interrupt,
    iam: &'a Iam,
    creds: &'a Credentials,
    signer: &'a str,
    user: &'a str,
    account: &'a str,
    files: &'a AwsFiles,
    profiles: &'a Profiles,
    cache: &'a SessionCache,
    key: Option<EnrollKey>,
    /// `--to vault`: the vault's place and the unlocker output that opened it.
    vault: Option<(VaultStore, Unlocked)>,
    /// This process's vault session (at most one unlock, shared by the signing keys and the
    /// proof).
    session: Rc<VaultSession>,
    undo: Vec<Undo>,
    undone_any: bool,
}

impl Job<'_> {
    fn ui(&self) -> &dyn Ui {
        self.ctx.ui
    }

    fn enroll(&mut self, device_name: &str, dest: Dest) -> Result<Done> {
        let ui = self.ctx.ui;
        let profile = self.args.profile.as_str();
        // Nothing exists before this call; everything after it is undone on failure.
        let device = self
            .iam
            .create_virtual_mfa_device(self.creds, device_name)?;
        let serial = device.serial.clone();
        self.undo.push(Undo::DeleteDevice {
            serial: serial.clone(),
        });
        ui.info(&format!("enroll: created virtual MFA device {serial}"));
        self.interrupt.check()?;

        // The seed goes to its place and is dropped.
        let (mut source, where_, oath_account): (Box<dyn TokenSource>, String, Option<String>) =
            match &dest {
                Dest::Oath { name } => {
                    let key = self.key.as_ref().expect("an OATH destination has its key");
                    let name = if serial.len() <= MAX_NAME_LEN && name != &serial {
                        // IAM put the device somewhere else than expected (a path).
                        serial.clone()
                    } else {
                        name.clone()
                    };
                    key.put(&name, &device.seed, self.args.touch)?;
                    self.undo.push(Undo::OathAccount { name: name.clone() });
                    ui.info(&format!(
                        "enroll: seed stored on {} as OATH account \"{name}\"{} (never shown)",
                        key.label(),
                        if self.args.touch {
                            ", touch required"
                        } else {
                            ""
                        }
                    ));
                    (
                        Box::new(key.source(&name, self.args.touch)),
                        format!("{}, OATH account \"{name}\"", key.label()),
                        Some(name),
                    )
                }
                Dest::File { path } => {
                    let text = Zeroizing::new(format!(
                        "{}\n",
                        data_encoding::BASE32_NOPAD.encode(&device.seed)
                    ));
                    write_seed_file(path, text.as_bytes()).map_err(|e| {
                        Error::io(format!(
                            "cannot create seed file {}: {e}; choose another --seed-file",
                            path.display()
                        ))
                    })?;
                    self.undo.push(Undo::SeedFile { path: path.clone() });
                    ui.info(&format!(
                        "enroll: seed written to {} ({}, never shown)",
                        path.display(),
                        crate::platform::words::PRIVATE_FILE
                    ));
                    let origin = format!("seed file {}", path.display());
                    let text = Zeroizing::new(data_encoding::BASE32_NOPAD.encode(&device.seed));
                    (
                        Box::new(SoftwareSource::from_seed(&text, &origin)?),
                        format!("seed file {}", path.display()),
                        None,
                    )
                }
                Dest::Vault => {
                    let name = EntryName::seed(serial.clone());
                    let secret = Secret::TotpSeed(Zeroizing::new(device.seed.to_vec()));
                    let path = self.vault_change(|v| v.put(name.clone(), &secret))?;
                    self.undo.push(Undo::VaultEntry { name: name.clone() });
                    // Read back and decrypt: the seed in the file is the one IAM gave.
                    let back = self.vault_read()?.get(&name)?;
                    if back != secret {
                        return Err(Error::internal(format!(
                            "the vault {} read back does not hold the seed just stored",
                            path.display()
                        )));
                    }
                    ui.info(&format!(
                        "enroll: seed sealed in the vault {} (never shown)",
                        path.display()
                    ));
                    let text = Zeroizing::new(data_encoding::BASE32_NOPAD.encode(&device.seed));
                    let origin = format!("the vault {}", path.display());
                    (
                        Box::new(SoftwareSource::from_seed(&text, &origin)?),
                        origin,
                        None,
                    )
                }
            };
        drop(device);
        self.interrupt.check()?;

        // Two consecutive codes, each from its own window, recorded in the step ledger.
        let touches = if self.touch_needed(&dest) { 3 } else { 0 };
        let (code1, code2) = self.two_codes(source.as_mut(), &serial, touches)?;
        self.interrupt.check()?;
        let enabled = self.iam.enable_mfa_device(
            self.creds,
            self.user,
            &serial,
            &code1.digits,
            &code2.digits,
        );
        if let Err(e) = enabled {
            if e.kind == crate::ErrorKind::Network {
                // The answer was lost: it may be enabled. Deactivating a device that is not
                // enabled is a NoSuchEntity the rollback tolerates.
                self.undo.push(Undo::Deactivate {
                    user: self.user.to_owned(),
                    serial: serial.clone(),
                });
            }
            return Err(e);
        }
        self.undo.push(Undo::Deactivate {
            user: self.user.to_owned(),
            serial: serial.clone(),
        });
        ui.info(&format!(
            "enroll: MFA device enabled for IAM user {} in account {}",
            self.user, self.account
        ));
        self.interrupt.check()?;

        // The profile.
        let edit = self.profile_edit(&serial, oath_account.as_deref(), &dest)?;
        let receipt = editor::apply_edits(&self.files.config, AwsFile::Config, &[edit])?;
        let config_path = receipt.path.clone();
        self.undo.push(Undo::Profile(Box::new(receipt)));
        ui.info(&format!(
            "enroll: wrote mfa_serial into profile \"{profile}\" in {}",
            config_path.display()
        ));
        self.interrupt.check()?;

        // Proof: the profile as written, through the engine (the session is cached).
        if touches > 0 {
            ui.info(&format!(
                "enroll: touch 3 of 3 is for a fresh code to prove profile \"{profile}\" works (codes sent to IAM are never sent again)"
            ));
        }
        self.wait_for_fresh_window(&serial, source.period())?;
        let arn = self.prove(source)?;
        ui.info(&format!("enroll: profile \"{profile}\" works: {arn}"));
        Ok(Done {
            serial,
            where_,
            arn,
        })
    }

    /// Under the vault's writers' lock: re-read it, open it with the kept unlocker output (no
    /// touch), change it, write it. Returns the vault's path.
    fn vault_change(
        &self,
        change: impl FnOnce(
            &mut crate::vault::OpenVault,
        ) -> std::result::Result<(), crate::vault::VaultError>,
    ) -> Result<PathBuf> {
        let (store, unlocked) = self
            .vault
            .as_ref()
            .expect("a vault destination has its vault");
        let lock = store.lock()?;
        let file = lock.read()?.ok_or_else(|| {
            Error::config(format!(
                "the vault {} disappeared during enroll",
                store.path().display()
            ))
        })?;
        let mut v = unlocked.reopen(&file)?;
        change(&mut v)?;
        lock.write(&v)?;
        Ok(store.path().to_owned())
    }

    /// The vault as on disk now, opened with the kept unlocker output.
    fn vault_read(&self) -> Result<crate::vault::OpenVault> {
        let (store, unlocked) = self
            .vault
            .as_ref()
            .expect("a vault destination has its vault");
        let file = store.read()?.ok_or_else(|| {
            Error::config(format!(
                "the vault {} disappeared during enroll",
                store.path().display()
            ))
        })?;
        unlocked.reopen(&file)
    }

    fn touch_needed(&self, dest: &Dest) -> bool {
        matches!(dest, Dest::Oath { .. }) && self.args.touch
    }

    /// Wait (interruptibly, with a countdown) until a window after every one used for
    /// `serial` starts with enough time left.
    fn wait_for_fresh_window(&self, serial: &str, period: u64) -> Result<()> {
        let last = self.cache.last_window_end(serial, self.ui());
        let (_, wait) = plan_code_time(now_f64(), last, period, MIN_SECONDS_LEFT);
        if let Some(at) = wait {
            let why = if last.is_some_and(|l| l as f64 > now_f64()) {
                "waiting for the next 30 s code window (a code is used once)"
            } else {
                "waiting for the next 30 s code window (the current one is about to end)"
            };
            self.wait_until(why, crate::clock::unix_to_system(at))?;
        }
        self.interrupt.check()
    }

    /// A countdown that a Ctrl-C ends within a second.
    fn wait_until(&self, what: &str, deadline: SystemTime) -> Result<()> {
        let ui = self.ui();
        if !ui.interactive() {
            let left = deadline
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO);
            ui.info(&format!("{what} ({} s)", left.as_secs_f64().ceil() as u64));
        }
        loop {
            self.interrupt.check()?;
            let now = SystemTime::now();
            let Ok(left) = deadline.duration_since(now) else {
                return Ok(());
            };
            if left.is_zero() {
                return Ok(());
            }
            let step = left.min(Duration::from_secs(1));
            if ui.interactive() {
                ui.wait_until(what, now + step);
            } else {
                std::thread::sleep(left.min(Duration::from_millis(200)));
            }
        }
    }

    /// Code 1 in a window, code 2 in the next one (waiting for it with a countdown).
    fn two_codes(
        &self,
        source: &mut dyn TokenSource,
        serial: &str,
        touches: u32,
    ) -> Result<(Code, Code)> {
        let ui = self.ui();
        let profile = self.args.profile.as_str();
        let say = |n: u32, what: &str| {
            if touches > 0 {
                ui.info(&format!("enroll: touch {n} of {touches} is for {what}"));
            }
        };
        if touches == 0 {
            ui.info("enroll: reading two consecutive codes for EnableMFADevice");
        }
        say(
            1,
            "the first of the two consecutive codes IAM needs to enable the device",
        );
        self.wait_for_fresh_window(serial, source.period())?;
        let mut first = self.read_code(source, serial, profile)?;
        loop {
            self.interrupt.check()?;
            say(2, "the second code, from the next 30 s window");
            self.wait_for_fresh_window(serial, source.period())?;
            let second = self.read_code(source, serial, profile)?;
            if second.window_start == first.window_end {
                return Ok((first, second));
            }
            // The windows are not adjacent (a slow touch, a suspended machine): the newer code
            // becomes the first one.
            tracing::debug!("codes not from adjacent windows; reading another");
            first = second;
        }
    }

    fn read_code(&self, source: &mut dyn TokenSource, serial: &str, profile: &str) -> Result<Code> {
        engine::read_code(self.cache, source, serial, profile, self.ui())
    }

    fn profile_edit(
        &self,
        serial: &str,
        oath_account: Option<&str>,
        dest: &Dest,
    ) -> Result<ProfileEdit> {
        let profile = self.args.profile.as_str();
        let get = |k: &str| self.profiles.get(profile, k);
        let mut edit = ProfileEdit::new(profile).set("mfa_serial", serial);
        match dest {
            Dest::Oath { .. } => {
                let key = self.key.as_ref().expect("an OATH destination has its key");
                let name = oath_account.unwrap_or(serial);
                let auto_finds = {
                    let present = key.accounts()?;
                    let candidates: Vec<matching::Candidate<'_>> = present
                        .iter()
                        .map(|n| matching::Candidate {
                            name: n,
                            kind: OathType::Totp,
                        })
                        .collect();
                    matching::choose(&candidates, None, serial).ok() == Some(name)
                };
                if !auto_finds || get("tapcred_oath_account").is_some() {
                    edit = edit.set("tapcred_oath_account", name);
                }
                if get("tapcred_totp_secret_file").is_some() {
                    edit = edit.remove("tapcred_totp_secret_file");
                }
                if get("tapcred_token").is_some_and(|t| !matches!(t, "auto" | "oath")) {
                    edit = edit.remove("tapcred_token");
                }
            }
            Dest::File { path } => {
                edit = edit.set("tapcred_totp_secret_file", path.display().to_string());
                if get("tapcred_oath_account").is_some() {
                    edit = edit.remove("tapcred_oath_account");
                }
                if get("tapcred_token").is_some_and(|t| !matches!(t, "auto" | "software")) {
                    edit = edit.remove("tapcred_token");
                }
            }
            Dest::Vault => {
                edit = edit.set("tapcred_token", "vault");
                for k in ["tapcred_oath_account", "tapcred_totp_secret_file"] {
                    if get(k).is_some() {
                        edit = edit.remove(k);
                    }
                }
            }
        }
        Ok(edit)
    }

    /// One engine call for the profile as now written, with `source` for its code; then
    /// GetCallerIdentity with the result. Returns the ARN the credentials act as.
    fn prove(&self, source: Box<dyn TokenSource>) -> Result<String> {
        let (env, ui) = (self.ctx.env, self.ctx.ui);
        let profile = self.args.profile.as_str();
        let resolved = engine::load_profile(profile, env)?;
        let target = StsTarget::for_profile(&resolved, env);
        let session_seconds = engine::session_seconds(env)?;
        let sts_target = target.clone();
        let mut source = Some(source);
        let vault = self.session.clone();
        let token_vault = vault.clone();
        let stamp_vault = vault.clone();
        let mut engine = Engine::new(
            self.cache,
            ui,
            Box::new(move || Ok(Box::new(Sts::new(sts_target.clone())?) as Box<dyn StsApi>)),
            Box::new(move |mfa: &Mfa| match source.take() {
                Some(s) => Ok(s),
                None => token::select_with(
                    &mfa.token,
                    &mfa.serial,
                    &token::Sources::real(env).with_vault(token_vault.clone()),
                    ui,
                ),
            }),
        )
        .with_base_keys(Box::new(move |b| {
            engine::vault_base_keys(&vault, b, env, ui)
        }))
        .with_vault_stamp(Box::new(move |b| engine::vault_stamp(&stamp_vault, b)));
        let (creds, _) = engine.obtain(&resolved, &target, &Options::default(), session_seconds)?;
        let who = Sts::new(target)?.get_caller_identity(
            &creds,
            CallContext {
                profile,
                signer: profile,
            },
        )?;
        Ok(who.arn)
    }

    /// Undo everything done, newest first. Returns what could not be undone, as commands.
    fn rollback(&mut self) -> Vec<String> {
        let ui = self.ctx.ui;
        let mut manual = Vec::new();
        let aws_profile = format!("--profile {}", shell_word(self.signer));
        while let Some(step) = self.undo.pop() {
            self.undone_any = true;
            match step {
                Undo::Profile(receipt) => match receipt.restore() {
                    Ok(()) => {
                        if let Some(bak) = &receipt.backup {
                            let _ = std::fs::remove_file(bak);
                        }
                        ui.info(&format!(
                            "undo: restored {} as it was",
                            receipt.path.display()
                        ));
                    }
                    Err(e) => {
                        ui.warn(&format!("undo: {e}"));
                        manual.push(match &receipt.backup {
                            Some(bak) => format!(
                                "mv {} {}",
                                shell_word(&bak.display().to_string()),
                                shell_word(&receipt.path.display().to_string())
                            ),
                            None => format!(
                                "remove mfa_serial (and tapcred_* keys enroll added) from profile \"{}\" in {}",
                                self.args.profile,
                                receipt.path.display()
                            ),
                        });
                    }
                },
                Undo::Deactivate { user, serial } => {
                    match self.iam.deactivate_mfa_device(self.creds, &user, &serial) {
                        Ok(()) => ui.info(&format!("undo: deactivated {serial}")),
                        Err(e) if e.message().contains("does not exist") => {}
                        Err(e) => {
                            ui.warn(&format!("undo: {e}"));
                            manual.push(format!(
                                "aws iam deactivate-mfa-device --user-name {} --serial-number {} {aws_profile}",
                                shell_word(&user),
                                shell_word(&serial)
                            ));
                        }
                    }
                }
                Undo::OathAccount { name } => {
                    let Some(key) = &self.key else { continue };
                    match key.delete(&name) {
                        Ok(()) => ui.info(&format!(
                            "undo: deleted OATH account \"{name}\" from {}",
                            key.label()
                        )),
                        Err(e) => {
                            ui.warn(&format!("undo: {e}"));
                            let device = key
                                .serial()
                                .map(|s| format!("--device {s} "))
                                .unwrap_or_default();
                            manual.push(format!(
                                "ykman {device}oath accounts delete --force {}",
                                shell_word(&name)
                            ));
                        }
                    }
                }
                Undo::SeedFile { path } => match std::fs::remove_file(&path) {
                    Ok(()) => ui.info(&format!("undo: removed {}", path.display())),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        ui.warn(&format!("undo: cannot remove {}: {e}", path.display()));
                        manual.push(format!("rm {}", shell_word(&path.display().to_string())));
                    }
                },
                Undo::VaultEntry { name } => match self.vault_change(|v| {
                    v.remove(&name);
                    Ok(())
                }) {
                    Ok(path) => ui.info(&format!(
                        "undo: removed the seed for {} from the vault {}",
                        name.name,
                        path.display()
                    )),
                    Err(e) => {
                        ui.warn(&format!("undo: {e}"));
                        manual.push(format!(
                            "tapcred vault remove --mfa-serial {}",
                            shell_word(&name.name)
                        ));
                    }
                },
                Undo::DeleteDevice { serial } => {
                    match self.iam.delete_virtual_mfa_device(self.creds, &serial) {
                        Ok(()) => ui.info(&format!("undo: deleted virtual MFA device {serial}")),
                        Err(e) => {
                            ui.warn(&format!("undo: {e}"));
                            manual.push(format!(
                                "aws iam delete-virtual-mfa-device --serial-number {} {aws_profile}",
                                shell_word(&serial)
                            ));
                        }
                    }
                }
            }
        }
        manual
    }
}

/// A new private file (0600 from its creation, never replacing anything, never through a
/// link) holding `data`, synced.
fn write_seed_file(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut f = crate::platform::fs::create_new_private(path)?;
    f.write_all(data)?;
    f.sync_all()
}

fn now_f64() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A word for a POSIX shell: as is when safe, else single-quoted.
fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-/:".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_from_arn() {
        assert_eq!(
            iam_user("arn:aws:iam::111111111111:user/toolkit-user"),
            Some(("111111111111".into(), "toolkit-user".into()))
        );
        assert_eq!(
            iam_user("arn:aws:iam::111111111111:user/div/alice"),
            Some(("111111111111".into(), "alice".into()))
        );
        assert_eq!(
            iam_user("arn:aws-cn:iam::111111111111:user/a"),
            Some(("111111111111".into(), "a".into()))
        );
        assert_eq!(iam_user("arn:aws:iam::111111111111:root"), None);
        assert_eq!(iam_user("arn:aws:sts::111111111111:assumed-role/r/s"), None);
    }

    #[test]
    fn oath_names_fit_the_key() {
        let serial = "arn:aws:iam::111111111111:mfa/toolkit-user";
        assert_eq!(oath_name(serial, "toolkit-user").unwrap(), serial);
        let fits = "a".repeat(34);
        let s = format!("arn:aws:iam::111111111111:mfa/{fits}");
        assert_eq!(oath_name(&s, &fits).unwrap().len(), 64);
        let long = "a".repeat(35);
        let s = format!("arn:aws:iam::111111111111:mfa/{long}");
        let e = oath_name(&s, &long).unwrap_err();
        assert!(e.message().contains("at most 34 characters"), "{e}");
        assert!(check_device_name("a b").is_err());
        assert!(check_device_name("ok_name.1@x").is_ok());
    }

    #[test]
    fn shell_words() {
        assert_eq!(shell_word("arn:aws:iam::1:mfa/a"), "arn:aws:iam::1:mfa/a");
        assert_eq!(shell_word("it's"), "'it'\\''s'");
        assert_eq!(shell_word("a b"), "'a b'");
    }
}
