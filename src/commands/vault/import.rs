//! `vault import-keys`: a profile's long-term access key moves from the credentials file into
//! the vault, journaled so a killed run is finished or cleared by the next one.

use std::io::Write;

use zeroize::Zeroizing;

use super::open::{existing, unlock_with};
use super::{store, write_line};
use crate::commands::{Ctx, test_hook};
use crate::error::{Error, Result};
use crate::journal::{self, BeginError, Journal};
use crate::profile::editor::{self, AwsFile, ProfileEdit};
use crate::profile::{AwsFiles, Profiles};
use crate::vault::{EntryName, Secret, VaultStore};

/// The profile key saying the access key lives in the vault.
pub const ACCESS_KEY_KEY: &str = "tapcred_access_key";

/// The journal kind of `vault import-keys` (subject: the source profile).
pub const IMPORT_JOURNAL: &str = "import-keys";

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
    test_hook::reached(ctx.env, "import-keys:begun");
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
            test_hook::reached(ctx.env, "import-keys:credentials-edited");
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
    test_hook::reached(ctx.env, "import-keys:vault-written");
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
