//! The steps of an enroll once the destination is checked: create the device, put the seed
//! there, read two codes, enable the device, write the profile, prove it with one STS call —
//! each recorded in the journal before it is taken.

use std::rc::Rc;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::cache::SessionCache;
use crate::commands::{Ctx, journalled};
use crate::credentials::Credentials;
use crate::engine::{self, Engine, MIN_SECONDS_LEFT, Options, plan_code_time};
use crate::error::{Error, Result};
use crate::iam::Iam;
use crate::journal::Journal;
use crate::profile::editor::{self, AwsFile, EditReceipt, ProfileEdit};
use crate::profile::{AwsFiles, Mfa, Profiles};
use crate::sts::{CallContext, Sts, StsApi, StsTarget};
use crate::token::oath::enroll::MAX_NAME_LEN;
use crate::token::oath::{OathType, matching};
use crate::token::software::SoftwareSource;
use crate::token::{self, Code, TokenSource};
use crate::ui::Ui;
use crate::vault::{EntryName, Secret, VaultSession};

use super::seed_file::write_seed_file;
use super::undo::{self, step};
use super::{Args, Dest};
use crate::commands::interrupt::Interrupt;

pub(super) struct Done {
    pub(super) serial: String,
    pub(super) where_: String,
    pub(super) arn: String,
}

pub(super) struct Job<'a> {
    pub(super) args: &'a Args,
    pub(super) ctx: &'a Ctx<'a>,
    pub(super) interrupt: &'a Interrupt,
    pub(super) iam: &'a Iam,
    pub(super) creds: &'a Credentials,
    pub(super) user: &'a str,
    pub(super) account: &'a str,
    pub(super) files: &'a AwsFiles,
    pub(super) profiles: &'a Profiles,
    pub(super) cache: &'a SessionCache,
    pub(super) dest: Dest,
    /// This process's vault session (at most one unlock, shared by the signing keys and the
    /// proof).
    pub(super) session: Rc<VaultSession>,
    /// Every step is recorded here before it is taken.
    pub(super) journal: Journal,
    /// The profile edit, for restoring the config file byte for byte.
    pub(super) receipt: Option<Box<EditReceipt>>,
    /// Finishing a run that was interrupted (`--resume`).
    pub(super) resumed: bool,
}

impl Job<'_> {
    pub(super) fn ui(&self) -> &dyn Ui {
        self.ctx.ui
    }

    /// Record `name` in the journal (durable before the step is taken).
    pub(super) fn step(&mut self, name: &str, data: Value) -> Result<()> {
        journalled::step(&mut self.journal, self.ctx.env, name, data)
    }

    pub(super) fn enroll(&mut self, device_name: &str) -> Result<Done> {
        let ui = self.ctx.ui;
        let device = self
            .iam
            .create_virtual_mfa_device(self.creds, device_name)?;
        let serial = device.serial.clone();
        self.step(step::CREATED, json!({ "serial": serial }))?;
        ui.info(&format!("enroll: created virtual MFA device {serial}"));
        self.interrupt.check()?;

        // The seed goes to its place and is dropped.
        let (source, where_, oath_account): (Box<dyn TokenSource>, String, Option<String>) =
            match &self.dest {
                Dest::Oath { name, key } => {
                    let name = if serial.len() <= MAX_NAME_LEN && name != &serial {
                        // IAM put the device somewhere else than expected (a path).
                        serial.clone()
                    } else {
                        name.clone()
                    };
                    let (label, key_serial) = (key.label().to_owned(), key.serial());
                    // A field-level borrow: the destination stays borrowed meanwhile.
                    journalled::step(
                        &mut self.journal,
                        self.ctx.env,
                        step::STORE_SEED,
                        json!({ "to": "oath", "name": name, "key_serial": key_serial, "touch": self.args.touch }),
                    )?;
                    key.put(&name, &device.seed, self.args.touch)?;
                    ui.info(&format!(
                        "enroll: seed stored on {label} as OATH account \"{name}\"{} (never shown)",
                        if self.args.touch {
                            ", touch required"
                        } else {
                            ""
                        }
                    ));
                    (
                        Box::new(key.source(&name, self.args.touch)),
                        format!("{label}, OATH account \"{name}\""),
                        Some(name),
                    )
                }
                Dest::File { path } => {
                    let path = path.clone();
                    self.step(
                        step::STORE_SEED,
                        json!({ "to": "file", "path": path.display().to_string() }),
                    )?;
                    let text = Zeroizing::new(format!(
                        "{}\n",
                        data_encoding::BASE32_NOPAD.encode(&device.seed)
                    ));
                    write_seed_file(&path, text.as_bytes()).map_err(|e| {
                        Error::io(format!(
                            "cannot create seed file {}: {e}; choose another --seed-file",
                            path.display()
                        ))
                        .with_source(e)
                    })?;
                    ui.info(&format!(
                        "enroll: seed written to {} ({}, never shown)",
                        path.display(),
                        crate::platform::words::PRIVATE_FILE
                    ));
                    let origin = format!("seed file {}", path.display());
                    let text = Zeroizing::new(data_encoding::BASE32_NOPAD.encode(&device.seed));
                    (
                        Box::new(SoftwareSource::from_seed(&text, &origin)?),
                        origin,
                        None,
                    )
                }
                Dest::Vault { store, unlocked } => {
                    // A field-level borrow: the destination stays borrowed meanwhile.
                    journalled::step(
                        &mut self.journal,
                        self.ctx.env,
                        step::STORE_SEED,
                        json!({ "to": "vault" }),
                    )?;
                    let name = EntryName::seed(serial.clone());
                    let secret = Secret::TotpSeed(Zeroizing::new(device.seed.to_vec()));
                    let path = unlocked.change(store, |v| v.put(name.clone(), &secret))?;
                    // Read back and decrypt: the seed in the file is the one IAM gave.
                    let back = unlocked.read(store)?.get(&name)?;
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
        self.finish(serial, source, where_, oath_account, false)
    }

    /// From the seed in its place: enable (unless IAM already has), the profile, the proof.
    pub(super) fn finish(
        &mut self,
        serial: String,
        mut source: Box<dyn TokenSource>,
        where_: String,
        oath_account: Option<String>,
        enabled: bool,
    ) -> Result<Done> {
        let ui = self.ctx.ui;
        let profile = self.args.profile.as_str();
        // Two consecutive codes, each from its own window, recorded in the step ledger.
        let touches = match (self.touch_needed(), enabled) {
            (false, _) => 0,
            (true, false) => 3,
            (true, true) => 1,
        };
        if !enabled {
            let (code1, code2) = self.two_codes(source.as_mut(), &serial, touches)?;
            self.interrupt.check()?;
            self.step(step::ENABLE, Value::Null)?;
            self.iam.enable_mfa_device(
                self.creds,
                self.user,
                &serial,
                &code1.digits,
                &code2.digits,
            )?;
            self.step(step::ENABLED, Value::Null)?;
            ui.info(&format!(
                "enroll: MFA device enabled for IAM user {} in account {}",
                self.user, self.account
            ));
            self.interrupt.check()?;
        }

        // The profile.
        let edit = self.profile_edit(&serial, oath_account.as_deref())?;
        let previous: serde_json::Map<String, Value> = undo::PROFILE_KEYS
            .iter()
            .filter_map(|k| {
                self.profiles
                    .get(profile, k)
                    .map(|v| (k.to_string(), Value::from(v)))
            })
            .collect();
        // A resumed run keeps what the first run recorded: the values before its edit.
        if !self.journal.record().has(step::PROFILE) {
            self.step(step::PROFILE, json!({ "previous": previous }))?;
        }
        let receipt = editor::apply_edits(&self.files.config, AwsFile::Config, &[edit])?;
        let config_path = receipt.path.clone();
        let backup = receipt.backup.as_ref().map(|b| b.display().to_string());
        self.receipt = Some(Box::new(receipt));
        if !self.journal.record().has(step::PROFILE_WRITTEN) {
            self.step(step::PROFILE_WRITTEN, json!({ "backup": backup }))?;
        }
        ui.info(&format!(
            "enroll: wrote mfa_serial into profile \"{profile}\" in {}",
            config_path.display()
        ));
        self.interrupt.check()?;

        // Proof: the profile as written, through the engine (the session is cached).
        if touches > 0 {
            ui.info(&format!(
                "enroll: touch {touches} of {touches} is for a fresh code to prove profile \"{profile}\" works (codes sent to IAM are never sent again)"
            ));
        }
        self.wait_for_fresh_window(&serial, source.period())?;
        self.step(step::PROVE, Value::Null)?;
        let arn = self.prove(source)?;
        ui.info(&format!("enroll: profile \"{profile}\" works: {arn}"));
        Ok(Done {
            serial,
            where_,
            arn,
        })
    }

    pub(super) fn touch_needed(&self) -> bool {
        matches!(self.dest, Dest::Oath { .. }) && self.args.touch
    }

    /// Wait (interruptibly, with a countdown) until a window after every one used for
    /// `serial` starts with enough time left.
    pub(super) fn wait_for_fresh_window(&self, serial: &str, period: u64) -> Result<()> {
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
    pub(super) fn wait_until(&self, what: &str, deadline: SystemTime) -> Result<()> {
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
    pub(super) fn two_codes(
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

    pub(super) fn read_code(
        &self,
        source: &mut dyn TokenSource,
        serial: &str,
        profile: &str,
    ) -> Result<Code> {
        engine::read_code(self.cache, source, serial, profile, self.ui())
    }

    pub(super) fn profile_edit(
        &self,
        serial: &str,
        oath_account: Option<&str>,
    ) -> Result<ProfileEdit> {
        let profile = self.args.profile.as_str();
        let get = |k: &str| self.profiles.get(profile, k);
        let mut edit = ProfileEdit::new(profile).set("mfa_serial", serial);
        match &self.dest {
            Dest::Oath { key, .. } => {
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
            Dest::Vault { .. } => {
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
    pub(super) fn prove(&self, source: Box<dyn TokenSource>) -> Result<String> {
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
                    &token::Sources::real(env, &crate::vault::VaultSeeds::new(token_vault.clone())),
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
}

fn now_f64() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
