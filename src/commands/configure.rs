//! `configure`: create or update the pair of profiles of the AWS MFA setup — the IAM user's
//! long-term keys (`[SOURCE]` in the credentials file) and the MFA profile (`role_arn`,
//! `source_profile`, `mfa_serial`, … in the config file) — with the byte-preserving editor.
//!
//! The access key never comes from argv: the terminal (the secret without echo), stdin (two
//! lines, or the console's CSV), or `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`.

use std::io::{IsTerminal, Read, Write};

use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use crate::commands::Ctx;
use crate::error::{Error, ErrorKind, Result};
use crate::profile::editor::{self, AwsFile, EditReceipt, ProfileEdit};
use crate::profile::{AwsFiles, Profiles, validate};

/// What the person asked for on the command line (everything optional).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConfigureArgs {
    /// The MFA profile to create or update (default: "mfa").
    #[arg(short, long)]
    pub profile: Option<String>,
    /// The profile holding the IAM user's long-term keys (default: the profile's
    /// source_profile, else "toolkit-user").
    #[arg(long)]
    pub source_profile: Option<String>,
    /// The role to assume, arn:aws:iam::ACCOUNT:role/NAME.
    #[arg(long)]
    pub role_arn: Option<String>,
    /// The MFA device's ARN (leave it out when `tapcred enroll` will create the device).
    #[arg(long)]
    pub mfa_serial: Option<String>,
    /// Region for the MFA profile (region = …).
    #[arg(long)]
    pub region: Option<String>,
    /// Role session length in seconds (duration_seconds, 900–43200).
    #[arg(long)]
    pub duration: Option<String>,
    /// Read the access key id and secret from stdin (two lines, or the console's CSV).
    #[arg(long)]
    pub keys_from_stdin: bool,
    /// IAM Roles Anywhere instead of an access key: the trust anchor's ARN
    /// (arn:aws:rolesanywhere:REGION:ACCOUNT:trust-anchor/ID). With it come
    /// --roles-anywhere-profile, --role-arn, and the key: --certificate + --private-key
    /// (files) or --piv-slot (a YubiKey, default 9a).
    #[arg(long, value_name = "ARN")]
    pub trust_anchor_arn: Option<String>,
    /// The Roles Anywhere profile's ARN (arn:aws:rolesanywhere:REGION:ACCOUNT:profile/ID).
    #[arg(long, value_name = "ARN")]
    pub roles_anywhere_profile: Option<String>,
    /// The certificate file (PEM) of a headless Roles Anywhere profile.
    #[arg(long, value_name = "PATH")]
    pub certificate: Option<String>,
    /// Its private key file (PEM, readable by you only).
    #[arg(long, value_name = "PATH")]
    pub private_key: Option<String>,
    /// Intermediate CA certificates (PEM), when the CA is not the trust anchor itself.
    #[arg(long, value_name = "PATH")]
    pub chain: Option<String>,
    /// The YubiKey PIV slot holding the key (9a, 9c, 9d, 9e, 82–95).
    #[arg(long, value_name = "SLOT")]
    pub piv_slot: Option<String>,
    /// Which YubiKey (serial number) holds it, when several are plugged in.
    #[arg(long, value_name = "N")]
    pub piv_serial: Option<u32>,
}

const DEFAULT_PROFILE: &str = "mfa";
const DEFAULT_SOURCE: &str = "toolkit-user";

struct Keys {
    id: String,
    secret: SecretString,
    from: &'static str,
}

pub fn run(args: &ConfigureArgs, ctx: &Ctx<'_>, out: &mut dyn Write) -> Result<i32> {
    if args.trust_anchor_arn.is_some() {
        return super::roles_anywhere_setup::configure(args, ctx, out);
    }
    let files = AwsFiles::from_env(ctx.env);
    // The current files must parse before anything is asked or written.
    let current = match Profiles::load(&files) {
        Ok(p) => Some(p),
        Err(e) if !files.config.exists() && !files.credentials.exists() => {
            drop(e);
            None
        }
        Err(e) => return Err(e),
    };
    let get = |p: &str, k: &str| {
        current
            .as_ref()
            .and_then(|c| c.get(p, k).map(str::to_owned))
    };

    let profile = match &args.profile {
        Some(p) => p.clone(),
        None => ask(
            ctx,
            &format!("MFA profile to create or update [{DEFAULT_PROFILE}]: "),
        )?
        .unwrap_or_else(|| DEFAULT_PROFILE.to_owned()),
    };
    profile_name(&profile, "--profile")?;

    let source = match &args.source_profile {
        Some(s) => s.clone(),
        None => match get(&profile, "source_profile") {
            Some(s) => s,
            None => ask(
                ctx,
                &format!("profile for the IAM user's long-term keys [{DEFAULT_SOURCE}]: "),
            )?
            .unwrap_or_else(|| DEFAULT_SOURCE.to_owned()),
        },
    };
    profile_name(&source, "--source-profile")?;
    if source == profile {
        return Err(Error::usage(format!(
            "--source-profile \"{source}\" is the MFA profile itself; name the profile that holds the IAM user's keys differently (e.g. --source-profile {DEFAULT_SOURCE})"
        )));
    }

    let role_arn = match &args.role_arn {
        Some(r) => Some(r.clone()),
        None => match get(&profile, "role_arn") {
            Some(_) => None, // kept as it is
            None => Some(
                ask(ctx, "role to assume (arn:aws:iam::ACCOUNT:role/NAME): ")?.ok_or_else(|| {
                    Error::usage(format!(
                        "profile \"{profile}\" has no role_arn; pass --role-arn arn:aws:iam::ACCOUNT:role/NAME (or run tapcred configure in a terminal to be asked)"
                    ))
                })?,
            ),
        },
    };
    if let Some(r) = &role_arn {
        validate::role_arn(r).map_err(|why| {
            Error::usage(format!(
                "--role-arn {r:?} {why}; copy the role's ARN from the IAM console, e.g. arn:aws:iam::111111111111:role/NAME"
            ))
        })?;
    }

    let mfa_serial = match &args.mfa_serial {
        Some(m) => Some(m.clone()),
        None if get(&profile, "mfa_serial").is_some() => None,
        None => ask(
            ctx,
            "MFA device ARN (arn:aws:iam::ACCOUNT:mfa/NAME; empty if `tapcred enroll` will create it): ",
        )?,
    };
    if let Some(m) = &mfa_serial {
        validate::mfa_serial(m).map_err(|why| {
            Error::usage(format!(
                "--mfa-serial {m:?} {why}; use the MFA device's ARN (arn:aws:iam::ACCOUNT:mfa/NAME), or leave it out and run `tapcred enroll`"
            ))
        })?;
    }
    if let Some(r) = &args.region {
        region(r)?;
    }
    let duration = match &args.duration {
        Some(d) => Some(validate::duration_seconds(d, 900, 43_200).map_err(|why| {
            Error::usage(format!(
                "--duration {why}; AssumeRole allows 900–43200 seconds (up to the role's maximum session duration), e.g. --duration 3600"
            ))
        })?),
        None => None,
    };

    let has_keys = get(&source, "aws_access_key_id").is_some()
        && get(&source, "aws_secret_access_key").is_some();
    let keys = read_keys(args, ctx, &source, has_keys)?;
    if keys.is_none() && !has_keys {
        return Err(Error::usage(format!(
            "no access key for profile \"{source}\": run tapcred configure in a terminal, pipe the key id and the secret as two lines on stdin, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (never as arguments)"
        )));
    }

    // The edits. A key of the MFA profile already written in the credentials file is updated
    // there (that file wins in the merge); everything else goes to the config file.
    let in_creds = editor::keys_in(&files.credentials, AwsFile::Credentials, &profile)?;
    let mut cfg = ProfileEdit::new(profile.clone());
    let mut creds_extra = ProfileEdit::new(profile.clone());
    let mut put = |k: &str, v: String| {
        if in_creds.iter().any(|x| x == k) {
            creds_extra = std::mem::take(&mut creds_extra).set(k, v);
        } else {
            cfg = std::mem::take(&mut cfg).set(k, v);
        }
    };
    put("source_profile", source.clone());
    if let Some(r) = &role_arn {
        put("role_arn", r.clone());
    }
    if let Some(m) = &mfa_serial {
        put("mfa_serial", m.clone());
    }
    if let Some(r) = &args.region {
        put("region", r.clone());
    }
    if let Some(d) = duration {
        put("duration_seconds", d.to_string());
    }
    let mut creds_edits = Vec::new();
    if let Some(k) = &keys {
        creds_edits.push(
            ProfileEdit::new(source.clone())
                .set("aws_access_key_id", k.id.clone())
                .set_secret("aws_secret_access_key", k.secret.clone())
                .remove("aws_session_token")
                .remove("aws_security_token"),
        );
    }
    if !creds_extra.set.is_empty() {
        creds_edits.push(creds_extra);
    }

    let opts = editor::EditOptions::from_env(ctx.env);
    let mut done: Vec<EditReceipt> = Vec::new();
    let result = (|| -> Result<()> {
        if !creds_edits.is_empty() {
            done.push(editor::apply_edits_with(
                &files.credentials,
                AwsFile::Credentials,
                &creds_edits,
                &opts,
            )?);
        }
        if !cfg.set.is_empty() {
            done.push(editor::apply_edits_with(
                &files.config,
                AwsFile::Config,
                std::slice::from_ref(&cfg),
                &opts,
            )?);
        }
        // The result must resolve as tapcred (and the AWS CLI) will read it.
        Profiles::load(&files)?.resolve(&profile, ctx.env)?;
        Ok(())
    })();
    if let Err(e) = result {
        let mut undo_failed = Vec::new();
        for r in done.iter().rev() {
            if let Err(u) = r.restore() {
                undo_failed.push(format!("{} ({})", r.path.display(), u.message()));
            }
        }
        if undo_failed.is_empty() {
            return Err(Error::new(
                e.kind,
                format!("{}; the AWS files were left as they were", e.message()),
            ));
        }
        let backups: Vec<String> = done
            .iter()
            .filter_map(|r| r.backup.as_ref().map(|b| b.display().to_string()))
            .collect();
        let fix = match backups.is_empty() {
            true => "check the file by hand".to_owned(),
            false => format!(
                "the config file as it was is kept in {}",
                backups.join(", ")
            ),
        };
        return Err(Error::new(
            ErrorKind::Io,
            format!(
                "{}; restoring failed for {}: {fix}",
                e.message(),
                undo_failed.join(", ")
            ),
        ));
    }
    for r in &done {
        if let Some(how) = &r.tightened {
            ctx.ui.warn(&format!(
                "{} was readable by other users ({how}); it now holds a secret, so tapcred made it readable by you only",
                r.path.display()
            ));
        }
    }

    // Summary (no secret: the key id's last 4 characters at most).
    let mut s = String::new();
    if let Some(k) = &keys {
        s.push_str(&format!(
            "{}: [{source}] aws_access_key_id ({}, from {}), aws_secret_access_key\n",
            files.credentials.display(),
            key_hint(&k.id),
            k.from
        ));
    }
    if !creds_extra_keys(&creds_edits, &source).is_empty() {
        s.push_str(&format!(
            "{}: [{profile}] {}\n",
            files.credentials.display(),
            creds_extra_keys(&creds_edits, &source).join(", ")
        ));
    }
    let changed: Vec<&str> = cfg
        .set
        .iter()
        .filter(|(k, v)| get(&profile, k).as_deref() != Some(v.expose_secret()))
        .map(|(k, _)| k.as_str())
        .collect();
    if !changed.is_empty() {
        let keys = changed;
        s.push_str(&format!(
            "{}: {} {}\n",
            files.config.display(),
            AwsFile::Config.header(&profile),
            keys.join(", ")
        ));
    }
    for b in done.iter().filter_map(|r| r.backup.as_ref()) {
        s.push_str(&format!("previous file kept as {}\n", b.display()));
    }
    let has_serial = mfa_serial.is_some() || get(&profile, "mfa_serial").is_some();
    if has_serial {
        s.push_str(&format!("next: tapcred doctor --profile {profile}\n"));
    } else {
        s.push_str(&format!(
            "next: tapcred enroll --profile {profile} --touch   (creates the MFA device and puts its seed on the YubiKey)\n"
        ));
    }
    out.write_all(s.as_bytes())
        .map_err(|e| Error::io(format!("cannot write to stdout: {e}")).with_source(e))?;
    Ok(0)
}

fn creds_extra_keys(edits: &[ProfileEdit], source: &str) -> Vec<String> {
    edits
        .iter()
        .filter(|e| e.profile != source)
        .flat_map(|e| e.set.iter().map(|(k, _)| k.clone()))
        .collect()
}

/// `…ABCD`: enough to recognise a key, never the key.
pub fn key_hint(id: &str) -> String {
    let n = id.chars().count();
    let tail: String = id.chars().skip(n.saturating_sub(4)).collect();
    format!("…{tail}")
}

/// A visible answer from the terminal; `None` when there is no terminal or it is empty.
fn ask(ctx: &Ctx<'_>, prompt: &str) -> Result<Option<String>> {
    if !ctx.ui.interactive() {
        return Ok(None);
    }
    Ok(ctx
        .ui
        .ask_line(prompt)?
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty()))
}

pub(super) fn profile_name(name: &str, flag: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.@+".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::usage(format!(
            "{flag} {name:?} is not a usable profile name; use up to 64 letters, digits and _-.@+"
        )))
    }
}

pub(super) fn region(r: &str) -> Result<()> {
    let parts: Vec<&str> = r.split('-').collect();
    let ok = parts.len() >= 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
        && parts
            .last()
            .is_some_and(|p| p.chars().all(|c| c.is_ascii_digit()));
    if ok {
        Ok(())
    } else {
        Err(Error::usage(format!(
            "--region {r:?} is not an AWS region; write one like us-east-1 or eu-west-1"
        )))
    }
}

/// `AKIA` + 16 upper-case letters/digits: an IAM user's long-term key.
fn check_key_id(id: &str, from: &str) -> Result<()> {
    if id.starts_with("ASIA") {
        return Err(Error::usage(format!(
            "the access key id from {from} ({}) is a temporary (ASIA…) key; configure needs the IAM user's long-term key (AKIA…): IAM console → Users → Security credentials → Create access key",
            key_hint(id)
        )));
    }
    let ok = id.len() == 20
        && id.starts_with("AKIA")
        && id
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(Error::usage(format!(
            "the access key id from {from} is not an IAM access key id (AKIA and 16 more upper-case letters or digits, 20 in all); copy it again from the IAM console or the downloaded CSV"
        )))
    }
}

fn check_secret(secret: &str, from: &str) -> Result<()> {
    let ok = secret.len() == 40
        && secret
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '/' || c == '+');
    if ok {
        Ok(())
    } else {
        Err(Error::usage(format!(
            "the secret access key from {from} is not 40 characters of letters, digits, / and + (as AWS issues them); copy it again from the IAM console or the downloaded CSV"
        )))
    }
}

/// The new keys, or `None` to keep the existing ones.
fn read_keys(
    args: &ConfigureArgs,
    ctx: &Ctx<'_>,
    source: &str,
    has_keys: bool,
) -> Result<Option<Keys>> {
    let stdin_is_tty = std::io::stdin().is_terminal();
    if args.keys_from_stdin {
        return match keys_from_stdin()? {
            Some(k) => Ok(Some(k)),
            None => Err(Error::usage(
                "--keys-from-stdin: stdin was empty; pipe two lines, the access key id then the secret access key (or the console's CSV)",
            )),
        };
    }
    let env_id = ctx.env.var("AWS_ACCESS_KEY_ID").filter(|v| !v.is_empty());
    let env_secret = ctx
        .env
        .var("AWS_SECRET_ACCESS_KEY")
        .filter(|v| !v.is_empty())
        .map(SecretString::from);
    match (env_id, env_secret) {
        (Some(id), Some(secret)) => {
            let from = "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY";
            check_key_id(&id, from)?;
            check_secret(secret.expose_secret(), from)?;
            return Ok(Some(Keys { id, secret, from }));
        }
        (Some(_), None) | (None, Some(_)) => {
            return Err(Error::usage(
                "only one of AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY is set; set both (the IAM user's long-term key) or neither",
            ));
        }
        (None, None) => {}
    }
    if ctx.ui.interactive() && stdin_is_tty {
        let keep = if has_keys {
            " (empty: keep the current key)"
        } else {
            ""
        };
        let id = ask(ctx, &format!("access key id for [{source}]{keep}: "))?;
        let Some(id) = id else {
            return Ok(None);
        };
        let from = "the terminal";
        check_key_id(&id, from)?;
        let secret = ctx
            .ui
            .ask_secret(&format!(
                "secret access key for {} (not shown): ",
                key_hint(&id)
            ))?
            .ok_or_else(|| Error::usage("no terminal to read the secret access key from"))?;
        let trimmed = SecretString::from(secret.expose_secret().trim().to_owned());
        check_secret(trimmed.expose_secret(), from)?;
        return Ok(Some(Keys {
            id,
            secret: trimmed,
            from,
        }));
    }
    if !stdin_is_tty {
        return keys_from_stdin();
    }
    Ok(None)
}

/// Two non-empty lines (key id, secret), or the IAM console's CSV
/// (`Access key ID,Secret access key` header, then `ID,SECRET`). `None` when stdin is empty.
fn keys_from_stdin() -> Result<Option<Keys>> {
    let mut text = Zeroizing::new(String::new());
    std::io::stdin()
        .take(64 * 1024)
        .read_to_string(&mut text)
        .map_err(|e| {
            Error::usage(format!(
                "cannot read the keys from stdin: {e}; pipe UTF-8 text"
            ))
            .with_source(e)
        })?;
    let lines: Vec<&str> = text
        .lines()
        .map(|l| l.trim().trim_start_matches('\u{feff}'))
        .filter(|l| !l.is_empty())
        .filter(|l| !l.to_ascii_lowercase().starts_with("access key id"))
        .collect();
    let from = "stdin";
    let (id, secret) = match lines.as_slice() {
        [] => return Ok(None),
        [one] if one.contains(',') => {
            let mut parts = one.split(',');
            (
                parts.next().unwrap_or_default().trim(),
                parts.next().unwrap_or_default().trim(),
            )
        }
        [id, secret] => (*id, *secret),
        _ => {
            return Err(Error::usage(
                "stdin must hold two lines, the access key id then the secret access key (or the console's CSV); nothing was written",
            ));
        }
    };
    check_key_id(id, from)?;
    check_secret(secret, from)?;
    Ok(Some(Keys {
        id: id.to_owned(),
        secret: SecretString::from(secret.to_owned()),
        from,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_checks_never_echo_the_secret() {
        let e = check_secret("short/secret", "stdin").unwrap_err();
        assert!(!e.message().contains("short/secret"));
        assert!(check_secret("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "x").is_ok());
        assert!(check_key_id("AKIAIOSFODNN7EXAMPLE", "x").is_ok());
        assert!(
            check_key_id("ASIAIOSFODNN7EXAMPLE", "x")
                .unwrap_err()
                .message()
                .contains("temporary")
        );
        assert!(check_key_id("akiaiosfodnn7example", "x").is_err());
        assert_eq!(key_hint("AKIAIOSFODNN7EXAMPLE"), "…MPLE");
    }

    #[test]
    fn regions_and_names() {
        assert!(region("us-east-1").is_ok());
        assert!(region("us-gov-west-1").is_ok());
        assert!(region("eu-west").is_err());
        assert!(region("US-EAST-1").is_err());
        assert!(profile_name("toolkit-user", "--p").is_ok());
        assert!(profile_name("a b", "--p").is_err());
        assert!(profile_name("a]", "--p").is_err());
    }
}
