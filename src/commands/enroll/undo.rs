//! Undoing an enroll, from its journal and IAM's real state: the same code for a failure in
//! the running enroll and for `tapcred enroll --undo` after a run that was killed.
//!
//! Every IAM write can commit and lose its answer, so nothing here trusts what the journal
//! says was done: it asks IAM (ListMFADevices, ListVirtualMFADevices) first. The seed is
//! removed only once IAM says the device is not enabled: an enabled device whose seed exists
//! nowhere locks its user out. When IAM's state cannot be read, nothing is removed and the
//! journal stays, with the commands that finish the cleanup.

use std::path::PathBuf;

use serde_json::Value;

use crate::commands::shell_words::shell_word;
use crate::credentials::Credentials;
use crate::error::Error;
use crate::iam::{Iam, IamCode, IamError};
use crate::journal::Record;
use crate::profile::editor::{self, AwsFile, EditReceipt, ProfileEdit};
use crate::ui::Ui;

/// The journal's kind for enroll.
pub const KIND: &str = "enroll";

/// Step names, each recorded before the step is taken.
pub mod step {
    /// Before CreateVirtualMFADevice: the plan (user, signer, serial, destination).
    pub const CREATE: &str = "create";
    /// After it: the serial IAM gave.
    pub const CREATED: &str = "created";
    /// Before the seed goes to its place (where).
    pub const STORE_SEED: &str = "store-seed";
    /// Before EnableMFADevice.
    pub const ENABLE: &str = "enable";
    /// After it.
    pub const ENABLED: &str = "enabled";
    /// Before the profile edit: the previous values of the keys it changes.
    pub const PROFILE: &str = "profile";
    /// After it: the editor's backup, if this edit made it.
    pub const PROFILE_WRITTEN: &str = "profile-written";
    /// Before the proof.
    pub const PROVE: &str = "prove";
}

/// The keys enroll may change in the profile.
pub const PROFILE_KEYS: &[&str] = &[
    "mfa_serial",
    "tapcred_oath_account",
    "tapcred_totp_secret_file",
    "tapcred_token",
];

/// What IAM says about the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceState {
    /// No such virtual MFA device.
    Absent,
    /// It exists and is enabled for no one.
    Unassigned,
    /// It is enabled (for the user, or anyone).
    Enabled,
}

/// IAM's real state of `serial`: ListMFADevices for `user`, then the account's virtual
/// devices.
pub fn device_state(
    iam: &Iam,
    creds: &Credentials,
    user: &str,
    serial: &str,
) -> Result<DeviceState, IamError> {
    if iam
        .list_mfa_devices(creds, user)?
        .iter()
        .any(|s| s == serial)
    {
        return Ok(DeviceState::Enabled);
    }
    Ok(
        match iam
            .list_virtual_mfa_devices(creds)?
            .into_iter()
            .find(|d| d.serial == serial)
        {
            None => DeviceState::Absent,
            Some(d) if d.user.is_some() => DeviceState::Enabled,
            Some(_) => DeviceState::Unassigned,
        },
    )
}

/// Where the seed was put, read back from the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeedPlace {
    File(PathBuf),
    Oath {
        name: String,
        key_serial: Option<u32>,
    },
    Vault {
        serial: String,
    },
}

impl SeedPlace {
    /// The command that removes the seed by hand.
    pub fn manual(&self) -> String {
        match self {
            SeedPlace::File(p) => format!("rm {}", shell_word(&p.display().to_string())),
            SeedPlace::Oath { name, key_serial } => format!(
                "ykman {}oath accounts delete --force {}",
                key_serial
                    .map(|s| format!("--device {s} "))
                    .unwrap_or_default(),
                shell_word(name)
            ),
            SeedPlace::Vault { serial } => {
                format!("tapcred vault remove --mfa-serial {}", shell_word(serial))
            }
        }
    }

    /// What a removal did, for the undo's progress line.
    pub fn removed(&self) -> String {
        match self {
            SeedPlace::File(p) => format!("removed the seed file {}", p.display()),
            SeedPlace::Oath { name, .. } => format!("deleted OATH account \"{name}\""),
            SeedPlace::Vault { serial } => format!("removed the seed for {serial} from the vault"),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            SeedPlace::File(p) => format!("the seed file {}", p.display()),
            SeedPlace::Oath { name, .. } => format!("the OATH account \"{name}\""),
            SeedPlace::Vault { serial } => format!("the vault's seed for {serial}"),
        }
    }
}

/// What an enroll journal says: the plan and how far it got.
#[derive(Debug, Clone)]
pub struct Progress {
    pub profile: String,
    pub user: String,
    pub signer: String,
    pub serial: String,
    /// The seed was (perhaps) put in its place.
    pub seed: Option<SeedPlace>,
    /// The profile was (perhaps) edited: the previous values of [`PROFILE_KEYS`].
    pub profile_previous: Option<serde_json::Map<String, Value>>,
    pub profile_backup: Option<PathBuf>,
    /// The last step recorded.
    pub last_step: String,
}

impl Progress {
    pub fn from_record(rec: &Record) -> Result<Progress, Error> {
        let damaged = |what: &str| {
            Error::io(format!(
                "the enroll journal of profile \"{}\" lacks {what}; remove it after checking IAM by hand (aws iam list-virtual-mfa-devices)",
                rec.subject
            ))
        };
        let plan = rec.step(step::CREATE).ok_or_else(|| damaged("its plan"))?;
        let text = |k: &str| plan.data.get(k).and_then(Value::as_str).map(str::to_owned);
        let serial = rec
            .text(step::CREATED, "serial")
            .map(str::to_owned)
            .or_else(|| text("serial"))
            .ok_or_else(|| damaged("the device serial"))?;
        let seed = rec.step(step::STORE_SEED).and_then(|s| {
            let get = |k: &str| s.data.get(k).and_then(Value::as_str).map(str::to_owned);
            match get("to").as_deref() {
                Some("file") => get("path").map(|p| SeedPlace::File(PathBuf::from(p))),
                Some("oath") => get("name").map(|name| SeedPlace::Oath {
                    name,
                    key_serial: s
                        .data
                        .get("key_serial")
                        .and_then(Value::as_u64)
                        .and_then(|n| u32::try_from(n).ok()),
                }),
                Some("vault") => Some(SeedPlace::Vault {
                    serial: serial.clone(),
                }),
                _ => None,
            }
        });
        Ok(Progress {
            profile: rec.subject.clone(),
            user: text("user").ok_or_else(|| damaged("the IAM user"))?,
            signer: text("signer").ok_or_else(|| damaged("the signing profile"))?,
            serial,
            seed,
            profile_previous: rec
                .step(step::PROFILE)
                .and_then(|s| s.data.get("previous"))
                .and_then(Value::as_object)
                .cloned(),
            profile_backup: rec.text(step::PROFILE_WRITTEN, "backup").map(PathBuf::from),
            last_step: rec.steps.last().map(|s| s.name.clone()).unwrap_or_default(),
        })
    }

    fn aws(&self) -> String {
        format!("--profile {}", shell_word(&self.signer))
    }

    pub fn deactivate_cmd(&self) -> String {
        format!(
            "aws iam deactivate-mfa-device --user-name {} --serial-number {} {}",
            shell_word(&self.user),
            shell_word(&self.serial),
            self.aws()
        )
    }

    pub fn delete_cmd(&self) -> String {
        format!(
            "aws iam delete-virtual-mfa-device --serial-number {} {}",
            shell_word(&self.serial),
            self.aws()
        )
    }

    pub fn undo_cmd(&self) -> String {
        format!(
            "tapcred enroll --profile {} --undo",
            shell_word(&self.profile)
        )
    }
}

/// The config file edit, as this process made it (restored byte for byte when the file is
/// unchanged since) or as the journal recorded it (the keys put back).
pub enum ProfileUndo<'a> {
    Receipt(&'a EditReceipt),
    Journal {
        config: PathBuf,
        previous: serde_json::Map<String, Value>,
        backup: Option<PathBuf>,
    },
}

/// How an undo ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Everything enroll made is gone (the journal may be closed).
    Clean,
    /// Something stays; these commands (or `--undo` again) finish the cleanup.
    Incomplete(Vec<String>),
}

/// Undo what `p` records, newest first, after asking IAM for the device's real state.
/// `remove_seed` takes the seed out of its place (it runs only once the device is known not
/// to be enabled).
pub fn undo(
    iam: &Iam,
    creds: &Credentials,
    ui: &dyn Ui,
    p: &Progress,
    profile: Option<ProfileUndo<'_>>,
    remove_seed: &mut dyn FnMut(&SeedPlace) -> Result<(), Error>,
) -> Outcome {
    let keep_all = |why: String, first: Vec<String>| {
        ui.warn(&why);
        let mut manual = first;
        if let Some(seed) = &p.seed {
            ui.warn(&format!(
                "undo: kept {} (the device may still need it)",
                seed.describe()
            ));
        }
        manual.push(format!(
            "then remove the rest with `{}` (or by hand: {}; {})",
            p.undo_cmd(),
            p.seed
                .as_ref()
                .map(SeedPlace::manual)
                .unwrap_or_else(|| "no seed was stored".into()),
            p.delete_cmd()
        ));
        Outcome::Incomplete(manual)
    };
    let state = match device_state(iam, creds, &p.user, &p.serial) {
        Ok(s) => s,
        Err(e) => {
            return keep_all(
                format!(
                    "undo: cannot read IAM's state of {} ({e}); nothing was removed",
                    p.serial
                ),
                vec![format!(
                    "aws iam list-mfa-devices --user-name {} {}   # if {} is listed: {}",
                    shell_word(&p.user),
                    p.aws(),
                    p.serial,
                    p.deactivate_cmd()
                )],
            );
        }
    };
    let mut state = state;
    if state == DeviceState::Enabled {
        match iam.deactivate_mfa_device(creds, &p.user, &p.serial) {
            Ok(()) => {
                ui.info(&format!("undo: deactivated {}", p.serial));
                state = DeviceState::Unassigned;
            }
            Err(e) if e.is(IamCode::NoSuchEntity) => state = DeviceState::Unassigned,
            Err(e) => {
                // The answer may be lost after IAM deactivated it: ask again.
                state = match device_state(iam, creds, &p.user, &p.serial) {
                    Ok(DeviceState::Enabled) | Err(_) => {
                        return keep_all(
                            format!("undo: cannot deactivate {} ({e})", p.serial),
                            vec![p.deactivate_cmd()],
                        );
                    }
                    Ok(s) => {
                        ui.info(&format!("undo: deactivated {}", p.serial));
                        s
                    }
                };
            }
        }
    }
    // The device is not enabled now: nothing needs the seed or the profile edit.
    let mut manual = Vec::new();
    match profile {
        Some(ProfileUndo::Receipt(receipt)) => match receipt.restore() {
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
                        p.profile,
                        receipt.path.display()
                    ),
                });
            }
        },
        Some(ProfileUndo::Journal {
            config,
            previous,
            backup,
        }) => {
            let mut edit = ProfileEdit::new(&p.profile);
            for &k in PROFILE_KEYS {
                edit = match previous.get(k).and_then(Value::as_str) {
                    Some(v) => edit.set(k, v),
                    None => edit.remove(k),
                };
            }
            match editor::apply_edits(&config, AwsFile::Config, &[edit]) {
                Ok(r) => {
                    for bak in backup.iter().chain(r.backup.iter()) {
                        let _ = std::fs::remove_file(bak);
                    }
                    ui.info(&format!(
                        "undo: put profile \"{}\" in {} back as it was",
                        p.profile,
                        config.display()
                    ));
                }
                Err(e) => {
                    ui.warn(&format!("undo: {e}"));
                    manual.push(format!(
                        "remove mfa_serial (and tapcred_* keys enroll added) from profile \"{}\" in {}",
                        p.profile,
                        config.display()
                    ));
                }
            }
        }
        None => {}
    }
    if let Some(seed) = &p.seed {
        match remove_seed(seed) {
            Ok(()) => ui.info(&format!("undo: {}", seed.removed())),
            Err(e) => {
                ui.warn(&format!("undo: {e}"));
                manual.push(seed.manual());
            }
        }
    }
    if state != DeviceState::Absent {
        match iam.delete_virtual_mfa_device(creds, &p.serial) {
            Ok(()) => ui.info(&format!("undo: deleted virtual MFA device {}", p.serial)),
            Err(e) if e.is(IamCode::NoSuchEntity) => {}
            Err(e) => match device_state(iam, creds, &p.user, &p.serial) {
                Ok(DeviceState::Absent) => {
                    ui.info(&format!("undo: deleted virtual MFA device {}", p.serial))
                }
                _ => {
                    ui.warn(&format!("undo: {e}"));
                    manual.push(p.delete_cmd());
                }
            },
        }
    }
    if manual.is_empty() {
        Outcome::Clean
    } else {
        Outcome::Incomplete(manual)
    }
}
