//! `vault remove`: an entry or an unlocker out of the vault, which is then re-keyed.

use std::io::Write;

use super::import::ACCESS_KEY_KEY;
use super::open::{existing, unlock};
use super::seed::mfa_serial_of;
use super::{store, write_line};
use crate::commands::Ctx;
use crate::error::{Error, Result};
use crate::profile::AwsFiles;
use crate::profile::editor::{self, AwsFile};
use crate::vault::unlock::connect_unlocker;
use crate::vault::{EntryName, OpenVault, UnlockerDesc};

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
