//! The `vault` commands (issue 10): `init`, `add-seed`, `import-keys`, `add-unlock`,
//! `remove`, `list`. The vault is unlocked by a YubiKey OTP slot's HMAC-SHA1
//! challenge-response over PC/SC; see `src/vault/` for the file format.
//!
//! Every command that changes the vault takes the writers' lock first, re-reads the file
//! under it, unlocks once (one touch), changes it and writes it atomically. The file's keyed
//! MAC covers the whole file (header and entries), so removing an entry or an unlocker needs
//! the data key too: `remove` unlocks like the others.

use std::io::{IsTerminal, Read, Write};

use zeroize::Zeroizing;

use crate::commands::Ctx;
use crate::engine;
use crate::error::{Error, Result};
use crate::journal::{self, BeginError, Journal};
use crate::profile::Step;
use crate::profile::editor::{self, AwsFile, ProfileEdit};
use crate::profile::{AwsFiles, Profiles};
use crate::token::EnvLookup;
use crate::token::otp::Slot;
use crate::token::pcsc::PcscBackend;
use crate::token::software::parse_seed;
use crate::ui::Ui;
use crate::vault::fido2::{self, UvMode};
use crate::vault::unlock::{connect_unlocker, enroll, parse_otp_id};
use crate::vault::{
    EntryName, OpenVault, OtpSlotUnlocker, Secret, UnlockOutput, Unlocker, UnlockerDesc,
    UnlockerKind, VaultFile, VaultSession, VaultStore,
};

/// Largest seed input read from stdin.
const MAX_SEED_INPUT: u64 = 4096;

pub(crate) fn store(ctx: &Ctx<'_>) -> Result<VaultStore> {
    VaultStore::from_env(ctx.env).ok_or_else(|| {
        Error::config(
            "no place for the vault: HOME is not set; set HOME, XDG_DATA_HOME or TAPCRED_VAULT",
        )
    })
}

fn write_line(out: &mut dyn Write, line: &str) -> Result<()> {
    writeln!(out, "{line}").map_err(|e| Error::io(format!("cannot write to stdout: {e}")))
}

/// What `--unlock SPEC` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnlockSpec {
    /// `otp`, `otp:1`, `otp:2` (default slot 2).
    Otp(Slot),
    /// `fido2` (touch only) or `fido2:pin` (PIN and touch on every unlock).
    Fido2(UvMode),
}

/// `--unlock otp`, `otp:1`, `otp:2` (default slot 2), `fido2`, `fido2:pin`.
pub fn parse_unlock(s: &str) -> Result<UnlockSpec> {
    let s = s.trim();
    let (kind, rest) = match s.split_once(':') {
        Some((k, r)) => (k, Some(r)),
        None => (s, None),
    };
    match kind.to_ascii_lowercase().as_str() {
        "otp" => Slot::parse(rest.unwrap_or("2"))
            .map(UnlockSpec::Otp)
            .ok_or_else(|| {
                Error::usage(format!(
                    "--unlock {s}: the OTP slot is 1 or 2 (otp:1, otp:2; default otp = slot 2)"
                ))
            }),
        "fido2" => fido2::parse_mode(rest)
            .map(UnlockSpec::Fido2)
            .ok_or_else(|| {
                Error::usage(format!(
                    "--unlock {s}: use fido2 (touch only) or fido2:pin (PIN and touch on every unlock)"
                ))
            }),
        _ => Err(Error::usage(format!(
            "--unlock {s}: unknown unlocker; use otp, otp:SLOT (slot 1 or 2), fido2 or fido2:pin"
        ))),
    }
}

/// The one FIDO2 key plugged in, to enroll (`--serial` chooses among YubiKeys for OTP only).
fn fido2_to_enroll(
    mode: UvMode,
    serial: Option<u32>,
    ctx: &Ctx<'_>,
) -> Result<fido2::Fido2Unlocker> {
    if serial.is_some() {
        return Err(Error::usage(
            "--serial chooses among YubiKeys for an OTP unlocker; with --unlock fido2 plug in only the FIDO2 key to use",
        ));
    }
    fido2::connect_for_enroll(mode, ctx.env)
}

/// `vault init --unlock otp[:SLOT] [--serial N]`.
pub fn init(unlock: &str, serial: Option<u32>, ctx: &Ctx<'_>, out: &mut dyn Write) -> Result<i32> {
    let spec = parse_unlock(unlock)?;
    let store = store(ctx)?;
    let lock = store.lock()?;
    if lock.read()?.is_some() {
        return Err(Error::usage(format!(
            "a vault already exists at {}; add entries with `tapcred vault add-seed`, or move it away to start over",
            store.path().display()
        )));
    }
    let mut u: Box<dyn Unlocker> = match spec {
        UnlockSpec::Otp(slot) => {
            Box::new(OtpSlotUnlocker::connect(&PcscBackend::new(), serial, slot)?)
        }
        UnlockSpec::Fido2(mode) => Box::new(fido2_to_enroll(mode, serial, ctx)?),
    };
    let (desc, output) = enroll(u.as_mut(), ctx.ui)?;
    let id = desc.id.clone();
    let kind = desc.kind;
    let vault = OpenVault::create(desc, output.expose())?;
    lock.write(&vault)?;
    write_line(
        out,
        &format!(
            "vault created at {}, unlocked by {id} ({})",
            store.path().display(),
            kind.label()
        ),
    )?;
    Ok(0)
}

/// Where the seed comes from: `--seed-env NAME`, else stdin when it is not a terminal, else a
/// no-echo prompt. Never argv.
fn read_seed(
    seed_env: Option<&str>,
    serial: &str,
    ctx: &Ctx<'_>,
) -> Result<(Zeroizing<String>, String)> {
    if let Some(name) = seed_env {
        let v = ctx
            .env
            .var(name)
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| {
                Error::config(format!(
                    "--seed-env {name}: {} is not set or empty; set the seed in it",
                    crate::platform::words::env_var(name)
                ))
            })?;
        return Ok((Zeroizing::new(v), crate::platform::words::env_var(name)));
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut text = Zeroizing::new(String::new());
        stdin
            .lock()
            .take(MAX_SEED_INPUT)
            .read_to_string(&mut text)
            .map_err(|e| Error::io(format!("cannot read the seed from stdin ({e})")))?;
        if text.trim().is_empty() {
            return Err(Error::config(
                "no seed on stdin; pipe the base32 seed (or otpauth://totp/ URI) in, or use --seed-env NAME",
            ));
        }
        return Ok((text, "stdin".to_owned()));
    }
    match ctx.ui.ask_secret(&format!(
        "Seed for {serial} (base32 or otpauth://totp/ URI): "
    ))? {
        Some(s) => {
            use secrecy::ExposeSecret;
            Ok((
                Zeroizing::new(s.expose_secret().to_owned()),
                "the terminal".to_owned(),
            ))
        }
        None => Err(Error::config(
            "no terminal to ask for the seed; pipe it on stdin or use --seed-env NAME",
        )),
    }
}

/// `vault add-seed --profile P [--seed-env NAME] [--serial N]`: the seed of P's `mfa_serial`
/// into the vault (added or replaced), after one unlock.
pub fn add_seed(
    profile: &str,
    seed_env: Option<&str>,
    serial: Option<u32>,
    ctx: &Ctx<'_>,
    out: &mut dyn Write,
) -> Result<i32> {
    let mfa_serial = mfa_serial_of(profile, ctx)?;
    let store = store(ctx)?;
    if store.read()?.is_none() {
        return Err(Error::config(format!(
            "no vault at {}; create one with `tapcred vault init --unlock otp`",
            store.path().display()
        )));
    }
    let (text, origin) = read_seed(seed_env, &mfa_serial, ctx)?;
    let totp = parse_seed(&text, &format!("the seed from {origin}"))?;
    let secret = Secret::TotpSeed(Zeroizing::new(totp.secret().as_bytes().to_vec()));
    drop(totp);
    let lock = store.lock()?;
    let file = lock.read()?.ok_or_else(|| {
        Error::config(format!(
            "the vault at {} disappeared",
            store.path().display()
        ))
    })?;
    let mut vault = unlock(&file, serial, ctx)?;
    vault.put(EntryName::seed(mfa_serial.clone()), &secret)?;
    lock.write(&vault)?;
    write_line(
        out,
        &format!(
            "seed for {mfa_serial} (profile \"{profile}\") stored in the vault {}",
            store.path().display()
        ),
    )?;
    Ok(0)
}

/// An opened vault, with the unlocker that opened it and that unlocker's output, kept (in
/// a zeroizing buffer) so the file just written can be opened again to test-decrypt an
/// entry, or re-opened after a re-read, without a second touch. Debug shows no secret.
pub(crate) struct Unlocked {
    pub vault: OpenVault,
    pub id: String,
    output: UnlockOutput,
}

impl std::fmt::Debug for Unlocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unlocked")
            .field("vault", &self.vault)
            .field("id", &self.id)
            .field("output", &self.output)
            .finish()
    }
}

impl Unlocked {
    /// Open `file` (a later read of the same vault) with the same unlocker output: no touch.
    pub fn reopen(&self, file: &VaultFile) -> Result<OpenVault> {
        Ok(file.open(&self.id, self.output.expose())?)
    }

    /// A vault session for this process (the default vault path) whose one unlock replays
    /// this unlocker's output: no device, no second touch.
    pub fn session(&self, env: &dyn EnvLookup) -> VaultSession {
        let (id, output) = (self.id.clone(), self.output.clone());
        VaultSession::from_env(env).with_devices(Box::new(move |d: &UnlockerDesc| {
            Ok((d.id == id).then(|| {
                Box::new(Replay {
                    kind: d.kind,
                    id: id.clone(),
                    output: output.clone(),
                }) as Box<dyn Unlocker>
            }))
        }))
    }
}

/// An unlocker answering with an output this process already got from the device.
struct Replay {
    kind: UnlockerKind,
    id: String,
    output: UnlockOutput,
}

impl Unlocker for Replay {
    fn kind(&self) -> UnlockerKind {
        self.kind
    }
    fn id(&self) -> String {
        self.id.clone()
    }
    fn respond(&mut self, _desc: &UnlockerDesc, _ui: &dyn Ui) -> Result<UnlockOutput> {
        Ok(self.output.clone())
    }
}

/// The `mfa_serial` of a profile's chain (the first step that has one).
fn mfa_serial_of(profile: &str, ctx: &Ctx<'_>) -> Result<String> {
    // The profile's own mfa_serial needs no resolution of its chain (whose keys may be in
    // the vault); else the first one along the chain.
    let profiles = Profiles::load(&AwsFiles::from_env(ctx.env))?;
    if let Some(serial) = profiles.get(profile, "mfa_serial") {
        return Ok(serial.to_owned());
    }
    let resolved = engine::load_profile(profile, ctx.env)?;
    resolved
        .steps
        .iter()
        .find_map(|s| match s {
            Step::SessionToken { mfa, .. } => Some(mfa.serial.clone()),
            Step::AssumeRole(r) => r.mfa.as_ref().map(|m| m.serial.clone()),
        })
        .ok_or_else(|| {
            Error::config(format!(
                "profile \"{profile}\" has no mfa_serial anywhere in its chain, so there is no seed to keep; add mfa_serial to the profile"
            ))
        })
}

/// The profile key saying the access key lives in the vault (HELPERS.md shared decision).
pub const ACCESS_KEY_KEY: &str = "tapcred_access_key";

/// The journal kind of `vault import-keys` (subject: the source profile).
pub const IMPORT_JOURNAL: &str = "import-keys";

/// Test builds only: with `TAPCRED_TEST_STALL=<point>`, stop at that point and wait to be
/// killed (the SIGKILL tests of multi-step changes). Release builds never read it.
fn stall_point(point: &str, ctx: &Ctx<'_>) {
    if cfg!(debug_assertions) && ctx.env.var("TAPCRED_TEST_STALL").as_deref() == Some(point) {
        eprintln!("tapcred test hook: stalled at {point}");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}

/// `vault import-keys --profile SOURCE [--serial N]`: the long-term access key of SOURCE
/// moves from the credentials file into the vault. One unlock; the vault is written, read
/// back and the entry test-decrypted (same unlocker output, no second touch); only then the
/// two key lines of `[SOURCE]` in the credentials file become `tapcred_access_key = vault`
/// (every other byte kept), with no backup of the file (it would hold the key in plain
/// text). A failure after the vault write puts the vault back as it was and leaves the
/// credentials file untouched.
///
/// A journal (kind [`IMPORT_JOURNAL`]) records each step before it is taken, so a run killed
/// half-way is found by the next run (and by `doctor`): while the credentials file still
/// holds the key the import is simply done again (it replaces the entry with the same key);
/// once the file says `tapcred_access_key = vault` and the vault lists the key, the
/// interrupted run had finished and only its journal is cleared.
pub fn import_keys(
    profile: &str,
    serial: Option<u32>,
    ctx: &Ctx<'_>,
    out: &mut dyn Write,
) -> Result<i32> {
    let files = AwsFiles::from_env(ctx.env);
    let jdir = journal::default_dir(ctx.env).ok_or_else(|| {
        Error::config("no place for tapcred's journal: HOME is not set; set HOME or XDG_DATA_HOME")
    })?;
    let to_import = keys_to_import(profile, &files);
    if let Some(pending) = Journal::find(&jdir, IMPORT_JOURNAL, profile) {
        let earlier = Journal::resume(&pending)?;
        let last = earlier
            .record()
            .steps
            .last()
            .map(|s| s.name.clone())
            .unwrap_or_else(|| "none".to_owned());
        match &to_import {
            Ok(_) => {
                ctx.ui.warn(&format!(
                    "an earlier `tapcred vault import-keys --profile {profile}` was interrupted (journal {}, last step: {last}); the credentials file still holds the key, so the import is done again",
                    earlier.path().display()
                ));
                earlier.close()?;
            }
            Err(_) => {
                return finish_interrupted_import(earlier, profile, &files, ctx, out, to_import);
            }
        }
    }
    let (access_key_id, secret) = to_import?;
    let store = store(ctx)?;
    let mut journal = match Journal::begin(&jdir, IMPORT_JOURNAL, profile) {
        Ok(j) => j,
        Err(BeginError::Io(e)) => return Err(e),
        Err(BeginError::Pending(p)) => {
            return Err(Error::usage(format!(
                "another `tapcred vault import-keys --profile {profile}` is running (journal {}); wait for it and run this again",
                p.path.display()
            )));
        }
    };
    journal.step(
        "begin",
        serde_json::json!({
            "vault": store.path().display().to_string(),
            "credentials": files.credentials.display().to_string(),
            "access_key_id": access_key_id,
        }),
    )?;
    stall_point("import-keys:begun", ctx);
    let r = import_steps(
        profile,
        serial,
        (&access_key_id, secret),
        &files,
        &store,
        &mut journal,
        ctx,
    );
    match r {
        Ok(receipt) => {
            stall_point("import-keys:credentials-edited", ctx);
            journal.close()?;
            if let Some(old) = old_backup_with(&receipt.path, &access_key_id) {
                ctx.ui.warn(&format!(
                    "{} (a backup tapcred made at an earlier edit) still holds the access key of \"{profile}\" in plain text; delete it when you no longer need it",
                    old.display()
                ));
            }
            write_line(
                out,
                &format!(
                    "access key {access_key_id} of profile \"{profile}\" moved into the vault {}; {} now says {ACCESS_KEY_KEY} = vault",
                    store.path().display(),
                    receipt.path.display()
                ),
            )?;
            Ok(0)
        }
        Err(Failed { error, vault_kept }) => {
            if !vault_kept {
                // Nothing of this run is left: the vault is as it was.
                journal.close()?;
            }
            Err(error)
        }
    }
}

/// Why the steps of an import stopped, and whether the vault still holds this run's entry
/// (then the journal stays for the next run and `doctor`).
struct Failed {
    error: Error,
    vault_kept: bool,
}

impl From<Error> for Failed {
    fn from(error: Error) -> Self {
        Failed {
            error,
            vault_kept: false,
        }
    }
}

fn import_steps(
    profile: &str,
    serial: Option<u32>,
    (access_key_id, secret): (&str, Zeroizing<String>),
    files: &AwsFiles,
    store: &VaultStore,
    journal: &mut Journal,
    ctx: &Ctx<'_>,
) -> std::result::Result<editor::EditReceipt, Failed> {
    let lock = store.lock().map_err(Error::from)?;
    let file = existing(&lock, store)?;
    let mut u = unlock_with(&file, serial, ctx.env, ctx.ui)?;
    let name = EntryName::access_key(profile);
    let previous = match u.vault.entry_names().any(|n| *n == name) {
        true => Some(u.vault.get(&name).map_err(Error::from)?),
        false => None,
    };
    let entry = Secret::AccessKey {
        access_key_id: access_key_id.to_owned(),
        secret_access_key: secret,
    };
    u.vault.put(name.clone(), &entry).map_err(Error::from)?;
    journal.step("write-vault", serde_json::Value::Null)?;
    lock.write(&u.vault).map_err(|e| Failed {
        error: e.into(),
        // The rename may have happened before the error: the next run looks.
        vault_kept: true,
    })?;
    stall_point("import-keys:vault-written", ctx);
    // Read back what is on disk and decrypt the entry with the same output: the credentials
    // file is edited only when the vault is known to give the key back.
    let checked = (|| -> Result<()> {
        let back = existing(&lock, store)?;
        let got = u.reopen(&back)?.get(&name)?;
        if got != entry {
            return Err(Error::internal(format!(
                "the vault {} read back does not hold the access key just written; the credentials file was not changed",
                store.path().display()
            )));
        }
        Ok(())
    })();
    let edited = checked
        .and_then(|()| journal.step("edit-credentials", serde_json::Value::Null))
        .and_then(|()| {
            let edit = ProfileEdit::new(profile)
                .remove("aws_access_key_id")
                .remove("aws_secret_access_key")
                .set(ACCESS_KEY_KEY, "vault")
                .new_keys_in_place_of_removed()
                .without_backup();
            editor::apply_edits(&files.credentials, AwsFile::Credentials, &[edit])
        });
    match edited {
        Ok(receipt) => Ok(receipt),
        Err(e) => {
            // Put the vault back as it was (the entry it had, or none).
            match &previous {
                Some(p) => u.vault.put(name.clone(), p).map_err(Error::from)?,
                None => {
                    u.vault.remove(&name);
                }
            }
            let undone = lock.write(&u.vault);
            if let Err(undo) = &undone {
                ctx.ui.warn(&format!(
                    "could not take the access key of \"{profile}\" back out of the vault ({undo}); remove it with `tapcred vault remove --access-key {profile}`"
                ));
            }
            Err(Failed {
                error: e,
                vault_kept: undone.is_err(),
            })
        }
    }
}

/// The next run after an interrupted import, when the credentials file no longer holds the
/// key: the import had finished (the file says `tapcred_access_key = vault` and the vault
/// lists the key) and only its journal is left; else the key left the file some other way,
/// and the journal, which has nothing left to finish, is cleared with a word about it.
fn finish_interrupted_import(
    journal: Journal,
    profile: &str,
    files: &AwsFiles,
    ctx: &Ctx<'_>,
    out: &mut dyn Write,
    why_not: Result<(String, Zeroizing<String>)>,
) -> Result<i32> {
    let store = store(ctx)?;
    let says_vault = editor::keys_in(&files.credentials, AwsFile::Credentials, profile)?
        .iter()
        .any(|k| k == ACCESS_KEY_KEY);
    let in_vault = store.read()?.is_some_and(|f| {
        f.entry_names()
            .any(|n| *n == EntryName::access_key(profile))
    });
    let shown = journal.path().display().to_string();
    journal.close()?;
    if says_vault && in_vault {
        write_line(
            out,
            &format!(
                "the interrupted import of the access key of profile \"{profile}\" had finished: it is in the vault {} and {} says {ACCESS_KEY_KEY} = vault (journal {shown} cleared)",
                store.path().display(),
                files.credentials.display()
            ),
        )?;
        return Ok(0);
    }
    ctx.ui.warn(&format!(
        "an interrupted import of the access key of profile \"{profile}\" was found (journal {shown}, now cleared), but {} no longer holds that key and the vault {} {}; check the profile (`tapcred vault list`, `tapcred configure`)",
        files.credentials.display(),
        store.path().display(),
        if in_vault { "has it" } else { "does not have it" }
    ));
    why_not.map(|_| 0)
}

/// The previous `.tapcred.bak` beside the credentials file, when it holds this key id.
fn old_backup_with(
    credentials: &std::path::Path,
    access_key_id: &str,
) -> Option<std::path::PathBuf> {
    let mut name = credentials.file_name()?.to_os_string();
    name.push(".tapcred.bak");
    let bak = credentials.with_file_name(name);
    let text = Zeroizing::new(std::fs::read(&bak).ok()?);
    text.windows(access_key_id.len())
        .any(|w| w == access_key_id.as_bytes())
        .then_some(bak)
}

/// The access key id and secret of `[profile]` in the credentials file, or the one line
/// saying why they cannot be imported and what to do instead.
fn keys_to_import(profile: &str, files: &AwsFiles) -> Result<(String, Zeroizing<String>)> {
    let profiles = Profiles::load(files)?;
    let creds_path = files.credentials.display().to_string();
    let config_path = files.config.display().to_string();
    let at = format!("profile \"{profile}\" ([{profile}] in {creds_path})");
    if !profiles.contains(profile) {
        let names = profiles.names();
        return Err(Error::config(format!(
            "profile \"{profile}\" is not defined in {creds_path} or {config_path}{}; name the profile that holds the access key (the source_profile of your MFA profile)",
            if names.is_empty() {
                String::new()
            } else {
                format!(" (profiles: {})", names.join(", "))
            }
        )));
    }
    let in_creds = editor::keys_in(&files.credentials, AwsFile::Credentials, profile)?;
    let in_config = editor::keys_in(&files.config, AwsFile::Config, profile)?;
    let has = |v: &[String], k: &str| v.iter().any(|x| x == k);
    const ID: &str = "aws_access_key_id";
    const SECRET: &str = "aws_secret_access_key";
    let (id_c, secret_c) = (has(&in_creds, ID), has(&in_creds, SECRET));
    if !id_c && !secret_c {
        if has(&in_creds, ACCESS_KEY_KEY) || has(&in_config, ACCESS_KEY_KEY) {
            return Err(Error::usage(format!(
                "{at}: its access key is already in the vault ({ACCESS_KEY_KEY} = vault); nothing to import (`tapcred vault list` shows it)"
            )));
        }
        if has(&in_config, ID) || has(&in_config, SECRET) {
            return Err(Error::config(format!(
                "{at}: its access key is in the config file {config_path}, not in the credentials file; move the aws_access_key_id and aws_secret_access_key lines to [{profile}] in {creds_path}, then run this again"
            )));
        }
        let elsewhere = [
            "source_profile",
            "credential_source",
            "credential_process",
            "sso_session",
            "sso_start_url",
            "web_identity_token_file",
        ]
        .into_iter()
        .find_map(|k| profiles.get(profile, k).map(|v| (k, v)));
        return Err(match elsewhere {
            Some(("source_profile", src)) => Error::config(format!(
                "{at}: has no access key of its own; its credentials come from source_profile = {src}; import that profile's key: tapcred vault import-keys --profile {src}"
            )),
            Some((k, _)) => Error::config(format!(
                "{at}: has no access key in the credentials file; its credentials come from {k}, which tapcred does not keep; only an IAM user's long-term access key can go into the vault"
            )),
            None => Error::config(format!(
                "{at}: has no aws_access_key_id/aws_secret_access_key; nothing to import (add the IAM user's keys with `tapcred configure`, then import them)"
            )),
        });
    }
    if id_c != secret_c {
        let (has_k, missing) = if id_c { (ID, SECRET) } else { (SECRET, ID) };
        return Err(Error::config(format!(
            "{at}: has {has_k} but not {missing}; fix the profile (both lines, or neither) before importing"
        )));
    }
    if has(&in_config, ID) || has(&in_config, SECRET) {
        return Err(Error::config(format!(
            "{at}: its access key is also written in the config file {config_path}, where it would stay in plain text; remove aws_access_key_id/aws_secret_access_key from that profile in the config file, then run this again"
        )));
    }
    if ["aws_session_token", "aws_security_token"]
        .iter()
        .any(|k| has(&in_creds, k) || has(&in_config, k))
    {
        return Err(Error::config(format!(
            "{at}: has a session token, so its keys are temporary (they expire); the vault keeps an IAM user's long-term access key: put that one in the profile (`tapcred configure`), then import it"
        )));
    }
    let id = profiles.get(profile, ID).unwrap_or_default().to_owned();
    let secret = Zeroizing::new(profiles.get(profile, SECRET).unwrap_or_default().to_owned());
    if id.starts_with("ASIA") {
        return Err(Error::config(format!(
            "{at}: access key {id} is a temporary one (ASIA…, from STS); the vault keeps an IAM user's long-term access key (AKIA…)"
        )));
    }
    Ok((id, secret))
}

/// `vault add-unlock --unlock otp[:SLOT] [--serial N]`: another YubiKey (or another slot)
/// opens the vault too — a backup key. The vault is opened with an unlocker already in it
/// (any of its keys that is plugged in), the new one answers a fresh challenge, the data key
/// is wrapped for it, the vault written atomically and re-opened with the new unlocker.
pub fn add_unlock(
    unlock_spec: &str,
    serial: Option<u32>,
    ctx: &Ctx<'_>,
    out: &mut dyn Write,
) -> Result<i32> {
    let slot = match parse_unlock(unlock_spec)? {
        UnlockSpec::Otp(slot) => slot,
        UnlockSpec::Fido2(mode) => return add_unlock_fido2(mode, serial, ctx, out),
    };
    let store = store(ctx)?;
    let lock = store.lock()?;
    let file = existing(&lock, &store)?;
    let backend = PcscBackend::new();
    // Which key is the new one (its connection is let go at once: opening the vault needs
    // the readers, and a held connection makes the other key's reader busy).
    let (new_id, new_serial) = {
        let u = OtpSlotUnlocker::connect(&backend, serial, slot).map_err(|e| match serial {
            None => Error::new(
                e.kind,
                format!(
                    "{}; with several YubiKeys plugged in, name the new one with --serial N",
                    e.message()
                ),
            ),
            Some(_) => e,
        })?;
        let id = u.id();
        let key_serial = parse_otp_id(&id).and_then(|(s, _)| s);
        (id, key_serial)
    };
    if file.unlocker_descs().any(|d| d.id == new_id) {
        return Err(Error::usage(format!(
            "{new_id} already unlocks the vault {}; plug in the backup YubiKey as well and name it with --serial N (or use the other slot, --unlock otp:1)",
            store.path().display()
        )));
    }
    let mut u = unlock_with(&file, None, ctx.env, ctx.ui)?;
    let mut new = OtpSlotUnlocker::connect(&backend, new_serial.or(serial), slot)?;
    if new.id() != new_id {
        return Err(Error::token(format!(
            "the YubiKey changed while adding it ({new_id} became {}); run again with one backup key plugged in, or with --serial N",
            new.id()
        )));
    }
    let (desc, output) = enroll(&mut new, ctx.ui)?;
    add_and_confirm(&mut u, desc, &output, &lock, &store, out)
}

/// Add the enrolled unlocker to the opened vault, write it, and check that the new
/// unlocker alone opens what was written.
fn add_and_confirm(
    u: &mut Unlocked,
    desc: crate::vault::UnlockerDesc,
    output: &crate::vault::UnlockOutput,
    lock: &crate::vault::store::WriteLock<'_>,
    store: &VaultStore,
    out: &mut dyn Write,
) -> Result<i32> {
    let new_id = desc.id.clone();
    let kind = desc.kind;
    u.vault.add_unlocker(desc, output.expose())?;
    lock.write(&u.vault)?;
    let back = existing(lock, store)?;
    back.open(&new_id, output.expose())?;
    write_line(
        out,
        &format!(
            "{new_id} ({}) now unlocks the vault {} too; it has {} unlockers",
            kind.label(),
            store.path().display(),
            back.unlocker_descs().count()
        ),
    )?;
    Ok(0)
}

/// `vault add-unlock --unlock fido2[:pin]`: open the vault with an unlocker it has (an OTP
/// slot, or a FIDO2 key), then make a credential on the FIDO2 key plugged in. When a FIDO2
/// key opened the vault, the new key must be another one: tapcred waits for the swap
/// (unplug, plug in the new key) before making the credential.
fn add_unlock_fido2(
    mode: UvMode,
    serial: Option<u32>,
    ctx: &Ctx<'_>,
    out: &mut dyn Write,
) -> Result<i32> {
    if serial.is_some() {
        return Err(Error::usage(
            "--serial chooses among YubiKeys for an OTP unlocker; with --unlock fido2 plug in only the FIDO2 key to use",
        ));
    }
    let store = store(ctx)?;
    let lock = store.lock()?;
    let file = existing(&lock, &store)?;
    // No FIDO2 key here: say so before asking an existing unlocker for a touch.
    drop(fido2_to_enroll(mode, None, ctx)?);
    let mut u = unlock_with(&file, None, ctx.env, ctx.ui)?;
    if u.id.starts_with("fido2:") {
        fido2::wait_for_swap(
            &mut || Ok(fido2::open_authenticator()?.is_some()),
            ctx.ui,
            std::time::Duration::from_secs(120),
        )?;
    }
    let mut new = fido2_to_enroll(mode, None, ctx)?;
    let (desc, output) = enroll(&mut new, ctx.ui)?;
    add_and_confirm(&mut u, desc, &output, &lock, &store, out)
}

/// What `vault remove` takes out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoveWhat {
    /// The seed of this profile's `mfa_serial`.
    Profile(String),
    /// The seed of this `mfa_serial`.
    MfaSerial(String),
    /// The access key of this source profile.
    AccessKey(String),
    /// An unlocker, by its id (`otp:SERIAL:SLOT`).
    Unlock(String),
}

/// `vault remove --profile P | --mfa-serial ARN | --access-key SOURCE | --unlock ID`. The
/// file's MAC is keyed with the data key, so this unlocks once like the other writers. The
/// last unlocker cannot be removed. Removing re-keys the vault (a new data key, sealed to
/// the remaining unlockers' public keys: no touch from them), so a removed unlocker's output
/// or an old data key opens nothing written after. An unlocker an older tapcred added has no
/// public key yet: when its key is plugged in it answers once here, else the removal is
/// refused with its name.
pub fn remove(
    what: &RemoveWhat,
    serial: Option<u32>,
    ctx: &Ctx<'_>,
    out: &mut dyn Write,
) -> Result<i32> {
    enum Target {
        Entry(EntryName),
        Unlocker(String),
    }
    let target = match what {
        RemoveWhat::Profile(p) => Target::Entry(EntryName::seed(mfa_serial_of(p, ctx)?)),
        RemoveWhat::MfaSerial(s) => Target::Entry(EntryName::seed(s.clone())),
        RemoveWhat::AccessKey(p) => Target::Entry(EntryName::access_key(p.clone())),
        RemoveWhat::Unlock(id) => Target::Unlocker(id.clone()),
    };
    let store = store(ctx)?;
    let lock = store.lock()?;
    let file = existing(&lock, &store)?;
    // Refuse what cannot be done before asking for a touch.
    match &target {
        Target::Entry(name) if !file.entry_names().any(|n| n == name) => {
            return Err(Error::usage(format!(
                "the vault {} has no {} entry {:?}; `tapcred vault list` shows what it holds",
                store.path().display(),
                name.kind.label(),
                name.name
            )));
        }
        Target::Entry(_) => {}
        Target::Unlocker(id) => {
            let ids: Vec<&str> = file.unlocker_descs().map(|d| d.id.as_str()).collect();
            if !ids.contains(&id.as_str()) {
                return Err(Error::usage(format!(
                    "the vault {} has no unlocker {id:?} (it has {})",
                    store.path().display(),
                    ids.join(", ")
                )));
            }
            if ids.len() == 1 {
                return Err(Error::usage(format!(
                    "{id} is the only unlocker of the vault {}; add another first (`tapcred vault add-unlock --unlock otp --serial N`), or the vault could never be opened again",
                    store.path().display()
                )));
            }
        }
    }
    let mut vault = unlock(&file, serial, ctx)?;
    let removed_unlocker = match &target {
        Target::Unlocker(id) => Some(id.as_str()),
        Target::Entry(_) => None,
    };
    seal_direct_unlockers(&mut vault, removed_unlocker, ctx)?;
    let done = match &target {
        Target::Entry(name) => {
            vault.remove_entry(name)?;
            format!("{} entry {:?}", name.kind.label(), name.name)
        }
        Target::Unlocker(id) => {
            vault.remove_unlocker(id)?;
            format!("unlocker {id}")
        }
    };
    lock.write(&vault)?;
    write_line(
        out,
        &format!(
            "removed the {done} from the vault {}",
            store.path().display()
        ),
    )?;
    if let RemoveWhat::AccessKey(p) = what {
        let files = AwsFiles::from_env(ctx.env);
        let still = editor::keys_in(&files.credentials, AwsFile::Credentials, p)
            .unwrap_or_default()
            .iter()
            .any(|k| k == ACCESS_KEY_KEY);
        if still {
            ctx.ui.warn(&format!(
                "profile \"{p}\" in {} still says {ACCESS_KEY_KEY} = vault; give it an access key again (`tapcred configure`)",
                files.credentials.display()
            ));
        }
    }
    Ok(0)
}

/// Ask each unlocker still wrapped the old way (made by a tapcred before format 2), except
/// `except`, for its output once, so the vault can be re-keyed; one whose key is not here is
/// left as it is (the re-key then names it).
fn seal_direct_unlockers(vault: &mut OpenVault, except: Option<&str>, ctx: &Ctx<'_>) -> Result<()> {
    let direct: Vec<UnlockerDesc> = vault
        .direct_unlockers()
        .filter(|d| Some(d.id.as_str()) != except)
        .cloned()
        .collect();
    for d in direct {
        match connect_unlocker(&d, ctx.env, ctx.ui)? {
            Some(mut u) if u.id() == d.id => {
                let output = u.respond(&d, ctx.ui)?;
                vault.seal_direct(&d.id, output.expose())?;
            }
            _ => {
                tracing::info!(unlocker = %d.id, "not plugged in: cannot move it to the sealed wrap")
            }
        }
    }
    Ok(())
}

/// `vault accept-rollback`: the vault on disk is older than the newest generation tapcred
/// has seen (an old copy put back, on purpose). One unlock proves it is a vault this
/// user's key opens (its MAC checks); it is then written again above every generation seen,
/// so it becomes the newest.
pub fn accept_rollback(serial: Option<u32>, ctx: &Ctx<'_>, out: &mut dyn Write) -> Result<i32> {
    let store = store(ctx)?;
    let lock = store.lock()?;
    let file = store
        .read_accepting_rollback()?
        .ok_or_else(|| no_vault(&store))?;
    let seen = store.seen_generation();
    if seen.is_none_or(|s| file.generation() >= s) {
        write_line(
            out,
            &format!(
                "the vault {} is the newest tapcred has seen (generation {}); nothing to accept",
                store.path().display(),
                file.generation()
            ),
        )?;
        return Ok(0);
    }
    let vault = unlock(&file, serial, ctx)?;
    lock.write(&vault)?;
    let now = existing(&lock, &store)?;
    write_line(
        out,
        &format!(
            "accepted the vault {} (generation {}, older than generation {} seen before); it is now generation {}",
            store.path().display(),
            file.generation(),
            seen.unwrap_or_default(),
            now.generation()
        ),
    )?;
    Ok(0)
}

/// Open the vault with the first unlocker in its header whose device is here
/// (`vault::unlock::connect_unlocker`: one arm per unlocker kind and transport); `serial`:
/// only that YubiKey's OTP-slot unlockers.
pub(crate) fn unlock_with(
    file: &VaultFile,
    serial: Option<u32>,
    env: &dyn EnvLookup,
    ui: &dyn Ui,
) -> Result<Unlocked> {
    let mut tried = Vec::new();
    for d in file.unlocker_descs() {
        if serial.is_some() && parse_otp_id(&d.id).map(|(s, _)| s) != Some(serial) {
            continue;
        }
        match connect_unlocker(d, env, ui) {
            Ok(Some(mut u)) => {
                let id = u.id();
                if id != d.id {
                    tried.push(format!("{}: the key found is {id}", d.id));
                    continue;
                }
                let output = u.respond(d, ui)?;
                let vault = file.open(&id, output.expose())?;
                return Ok(Unlocked { vault, id, output });
            }
            Ok(None) => tried.push(format!("{}: not plugged in", d.id)),
            Err(e) => tried.push(format!("{}: {e}", d.id)),
        }
    }
    let only = serial
        .map(|s| format!(" of YubiKey {s}"))
        .unwrap_or_default();
    Err(Error::token(format!(
        "no YubiKey that unlocks the vault is plugged in (tried {}{only}); plug in one of its keys (`tapcred vault list` shows them)",
        if tried.is_empty() {
            "none".to_owned()
        } else {
            tried.join("; ")
        }
    )))
}

fn unlock(file: &VaultFile, serial: Option<u32>, ctx: &Ctx<'_>) -> Result<OpenVault> {
    Ok(unlock_with(file, serial, ctx.env, ctx.ui)?.vault)
}

/// The vault file (under the lock), or the error saying to create one.
fn existing(lock: &crate::vault::store::WriteLock<'_>, store: &VaultStore) -> Result<VaultFile> {
    lock.read()?.ok_or_else(|| no_vault(store))
}

fn no_vault(store: &VaultStore) -> Error {
    Error::config(format!(
        "no vault at {}; create one with `tapcred vault init --unlock otp`",
        store.path().display()
    ))
}

/// `vault list`: unlockers and entry names; no secret, no touch.
pub fn list(json: bool, ctx: &Ctx<'_>, out: &mut dyn Write) -> Result<i32> {
    let store = store(ctx)?;
    let Some(file) = store.read()? else {
        return Err(Error::config(format!(
            "no vault at {}; create one with `tapcred vault init --unlock otp`",
            store.path().display()
        )));
    };
    if json {
        let doc = serde_json::json!({
            "path": store.path(),
            "generation": file.generation(),
            "unlockers": file.unlocker_descs().map(|d| serde_json::json!({
                "id": d.id, "kind": d.kind.label()
            })).collect::<Vec<_>>(),
            "entries": file.entry_names().map(|e| serde_json::json!({
                "kind": e.kind.label(), "name": e.name
            })).collect::<Vec<_>>(),
        });
        write_line(out, &doc.to_string())?;
        return Ok(0);
    }
    write_line(out, &format!("vault {}", store.path().display()))?;
    for d in file.unlocker_descs() {
        write_line(out, &format!("unlocker  {}  {}", d.id, d.kind.label()))?;
    }
    for e in file.entry_names() {
        // "seed      NAME", "access-key NAME": the label, a space, aligned to 10 columns.
        let label = format!("{} ", e.kind.label());
        write_line(out, &format!("{label:<10}{}", e.name))?;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    /// The two AWS files in a temporary directory.
    fn files(config: &str, credentials: &str) -> (tempfile::TempDir, AwsFiles) {
        let d = tempfile::tempdir().unwrap();
        let f = AwsFiles {
            config: d.path().join("config"),
            credentials: d.path().join("credentials"),
        };
        std::fs::write(&f.config, config).unwrap();
        std::fs::write(&f.credentials, credentials).unwrap();
        (d, f)
    }

    fn refused(config: &str, credentials: &str, profile: &str) -> Error {
        let (_d, f) = files(config, credentials);
        keys_to_import(profile, &f).expect_err("refused")
    }

    #[test]
    fn keys_to_import_takes_the_credentials_file_keys() {
        let (_d, f) = files(
            "[profile u]\nregion = eu-west-1\n",
            "[u]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = s3cr3t\n",
        );
        let (id, secret) = keys_to_import("u", &f).unwrap();
        assert_eq!(id, "AKIAIOSFODNN7EXAMPLE");
        assert_eq!(secret.as_str(), "s3cr3t");
    }

    #[test]
    fn keys_to_import_refuses_with_the_fix_and_never_echoes_the_secret() {
        let keys = "aws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = s3cr3t\n";
        let cases: Vec<(String, String, &str, ErrorKind, &[&str])> =
            vec![
            (
                "[profile m]\nsource_profile = u\nrole_arn = arn:aws:iam::111111111111:role/r\n"
                    .into(),
                format!("[u]\n{keys}"),
                "m",
                ErrorKind::Config,
                &["source_profile = u", "tapcred vault import-keys --profile u"],
            ),
            (
                String::new(),
                format!("[u]\n{keys}aws_session_token = tok\n"),
                "u",
                ErrorKind::Config,
                &["session token"],
            ),
            (
                format!("[profile u]\n{keys}"),
                String::new(),
                "u",
                ErrorKind::Config,
                &["in the config file", "move the aws_access_key_id"],
            ),
            (
                "[profile u]\naws_secret_access_key = s3cr3t\n".into(),
                format!("[u]\n{keys}"),
                "u",
                ErrorKind::Config,
                &["also written in the config file"],
            ),
            (
                String::new(),
                "[u]\ntapcred_access_key = vault\n".into(),
                "u",
                ErrorKind::Usage,
                &["already in the vault"],
            ),
            (
                String::new(),
                "[u]\naws_secret_access_key = s3cr3t\n".into(),
                "u",
                ErrorKind::Config,
                &["has aws_secret_access_key but not aws_access_key_id"],
            ),
            (
                String::new(),
                format!("[u]\n{}", keys.replace("AKIA", "ASIA")),
                "u",
                ErrorKind::Config,
                &["temporary", "ASIA"],
            ),
            (
                String::new(),
                format!("[u]\n{keys}"),
                "nosuch",
                ErrorKind::Config,
                &["\"nosuch\" is not defined", "profiles: u"],
            ),
        ];
        for (config, credentials, profile, kind, needles) in cases {
            let e = refused(&config, &credentials, profile);
            assert_eq!(e.kind, kind, "{e}");
            for n in needles {
                assert!(e.message().contains(n), "{e} should mention {n:?}");
            }
            assert!(!e.message().contains("s3cr3t"), "{e}");
        }
    }
}
