//! IAM Roles Anywhere profiles in `configure` (the keys written) and `doctor` (the profile,
//! the endpoint, the certificate and its expiry, warned 30 days ahead).

use std::io::Write;

use crate::commands::Ctx;
use crate::commands::configure::{ConfigureArgs, profile_name, region};
use crate::commands::doctor::{Check, Status};
use crate::env::EnvLookup;
use crate::error::{Error, Result};
use crate::profile::editor::{self, AwsFile, ProfileEdit};
use crate::profile::{AwsFiles, Profiles, ResolvedProfile, validate};
use crate::rolesanywhere::Target;
use crate::token::certificate::CertificateFacts;
use crate::ui::Ui;

const DEFAULT_PROFILE: &str = "roles-anywhere";

/// Days before a certificate's expiry from which `doctor` warns.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

/// `configure --trust-anchor-arn …`: writes a Roles Anywhere profile to the config file.
pub fn configure(args: &ConfigureArgs, ctx: &Ctx<'_>, out: &mut dyn Write) -> Result<i32> {
    let files = AwsFiles::from_env(ctx.env);
    let profile = args
        .profile
        .clone()
        .unwrap_or_else(|| DEFAULT_PROFILE.to_owned());
    profile_name(&profile, "--profile")?;
    let anchor = args.trust_anchor_arn.clone().unwrap_or_default();
    validate::rolesanywhere_arn(&anchor, "trust-anchor").map_err(|why| {
        Error::usage(format!(
            "--trust-anchor-arn {anchor:?} {why}; copy it from the Roles Anywhere console"
        ))
    })?;
    let Some(ra_profile) = &args.roles_anywhere_profile else {
        return Err(Error::usage(
            "--trust-anchor-arn needs --roles-anywhere-profile arn:aws:rolesanywhere:REGION:ACCOUNT:profile/ID (from the Roles Anywhere console)",
        ));
    };
    validate::rolesanywhere_arn(ra_profile, "profile").map_err(|why| {
        Error::usage(format!(
            "--roles-anywhere-profile {ra_profile:?} {why}; copy it from the Roles Anywhere console"
        ))
    })?;
    let Some(role_arn) = &args.role_arn else {
        return Err(Error::usage(
            "--trust-anchor-arn needs --role-arn arn:aws:iam::ACCOUNT:role/NAME (a role the Roles Anywhere profile lists)",
        ));
    };
    validate::role_arn(role_arn).map_err(|why| {
        Error::usage(format!(
            "--role-arn {role_arn:?} {why}; copy the role's ARN from the IAM console"
        ))
    })?;
    if let Some(r) = &args.region {
        region(r)?;
    }
    for (flag, set) in [
        ("--source-profile", args.source_profile.is_some()),
        ("--mfa-serial", args.mfa_serial.is_some()),
        ("--keys-from-stdin", args.keys_from_stdin),
    ] {
        if set {
            return Err(Error::usage(format!(
                "{flag} does not go with --trust-anchor-arn: a Roles Anywhere profile signs with its certificate, not an access key or MFA; leave {flag} out"
            )));
        }
    }

    let mut edit = ProfileEdit::new(profile.clone())
        .set("tapcred_roles_anywhere_trust_anchor_arn", anchor.clone())
        .set("tapcred_roles_anywhere_profile_arn", ra_profile.clone())
        .set("role_arn", role_arn.clone());
    if let Some(r) = &args.region {
        edit = edit.set("region", r.clone());
    }
    if let Some(d) = &args.duration {
        let secs = validate::duration_seconds(d, 900, 43_200).map_err(|why| {
            Error::usage(format!(
                "--duration {why}; CreateSession allows 900–43200 seconds, e.g. --duration 3600"
            ))
        })?;
        edit = edit.set("duration_seconds", secs.to_string());
    }
    let file_keys = [
        "tapcred_roles_anywhere_certificate",
        "tapcred_roles_anywhere_private_key",
        "tapcred_roles_anywhere_chain",
    ];
    match (&args.certificate, &args.private_key) {
        (Some(c), Some(k)) => {
            if args.piv_slot.is_some() || args.piv_serial.is_some() {
                return Err(Error::usage(
                    "--piv-slot/--piv-serial and --certificate/--private-key name two keys; keep one of them",
                ));
            }
            edit = edit
                .set(file_keys[0], c.clone())
                .set(file_keys[1], k.clone())
                .remove("tapcred_piv_slot")
                .remove("tapcred_piv_serial");
            edit = match &args.chain {
                Some(ch) => edit.set(file_keys[2], ch.clone()),
                None => edit.remove(file_keys[2]),
            };
        }
        (None, None) => {
            let slot = args.piv_slot.clone().unwrap_or_else(|| "9a".to_owned());
            slot.parse::<crate::token::piv::PivSlot>().map_err(|_| {
                Error::usage(format!(
                    "--piv-slot {slot:?} is not a PIV slot; use 9a (the default), 9c, 9d, 9e or 82–95"
                ))
            })?;
            edit = edit.set("tapcred_piv_slot", slot);
            edit = match args.piv_serial {
                Some(n) => edit.set("tapcred_piv_serial", n.to_string()),
                None => edit.remove("tapcred_piv_serial"),
            };
            edit = edit.remove(file_keys[0]).remove(file_keys[1]);
            // The card holds only the certificate: intermediates stay in a file.
            edit = match &args.chain {
                Some(ch) => edit.set(file_keys[2], ch.clone()),
                None => edit.remove(file_keys[2]),
            };
        }
        _ => {
            return Err(Error::usage(
                "--certificate and --private-key go together (the certificate and the key it was issued for)",
            ));
        }
    }
    // Keys of the access-key kind would make the profile ambiguous.
    for k in ["source_profile", "mfa_serial", "credential_source"] {
        edit = edit.remove(k);
    }

    let opts = editor::EditOptions::from_env(ctx.env);
    let receipt = editor::apply_edits_with(
        &files.config,
        AwsFile::Config,
        std::slice::from_ref(&edit),
        &opts,
    )?;
    if let Err(e) = Profiles::load(&files).and_then(|p| p.resolve(&profile, ctx.env)) {
        return match receipt.restore() {
            Ok(()) => Err(Error::new(
                e.kind,
                format!("{}; the AWS files were left as they were", e.message()),
            )),
            Err(u) => Err(Error::io(format!(
                "{}; restoring {} failed ({}){}",
                e.message(),
                receipt.path.display(),
                u.message(),
                receipt
                    .backup
                    .as_ref()
                    .map(|b| format!(": the file as it was is kept in {}", b.display()))
                    .unwrap_or_default()
            ))),
        };
    }
    let mut s = format!(
        "{}: {} {}\n",
        files.config.display(),
        AwsFile::Config.header(&profile),
        edit.set
            .iter()
            .map(|(k, _)| k.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    if let Some(b) = &receipt.backup {
        s.push_str(&format!("previous file kept as {}\n", b.display()));
    }
    s.push_str(&format!("next: tapcred doctor --profile {profile}\n"));
    out.write_all(s.as_bytes())
        .map_err(|e| Error::io(format!("cannot write to stdout: {e}")))?;
    Ok(0)
}

fn check(status: Status, message: String, fix: Option<String>, code: Option<i32>) -> Check {
    Check {
        area: "rolesanywhere",
        status,
        message,
        fix,
        code,
    }
}

fn problem(e: &Error) -> Check {
    let msg = e.message().to_owned();
    let fix = msg
        .rsplit_once("; ")
        .map(|(_, f)| f.to_owned())
        .unwrap_or_else(|| format!("see: {msg}"));
    check(Status::Problem, msg, Some(fix), Some(e.exit_code()))
}

/// What `doctor` says about a Roles Anywhere profile: what it asks for, where it goes, and
/// the certificate (read, never used to sign).
pub fn doctor_checks(p: &ResolvedProfile, env: &dyn EnvLookup, ui: &dyn Ui) -> Vec<Check> {
    let Some(ra) = &p.roles_anywhere else {
        return Vec::new();
    };
    let mut out = vec![check(
        Status::Ok,
        format!(
            "{}: IAM Roles Anywhere, role {} through profile {} and trust anchor {}",
            p.name, ra.role_arn, ra.profile_arn, ra.trust_anchor_arn
        ),
        None,
        None,
    )];
    match Target::for_profile(p, ra, env) {
        Ok(t) => out.push(check(
            Status::Ok,
            format!("CreateSession goes to {} (region {})", t.url, t.region),
            None,
            None,
        )),
        Err(e) => out.push(problem(&e)),
    }
    let signer = match crate::engine::roles_anywhere_signer(ra, &p.name, env, ui) {
        Ok(s) => s,
        Err(e) => {
            out.push(problem(&e));
            return out;
        }
    };
    let what = signer.describe();
    match CertificateFacts::from_der(signer.certificate_der()) {
        Err(why) => out.push(check(
            Status::Problem,
            format!("the certificate of {what} is {why}"),
            Some("replace it with the certificate your CA issued for this key".to_owned()),
            Some(3),
        )),
        Ok(f) => out.extend(expiry_checks(&f, &what, crate::clock::now_utc())),
    }
    out
}

/// The certificate's subject, issuer and expiry: a problem once expired, a note within
/// [`EXPIRY_WARNING_DAYS`] of it.
pub fn expiry_checks(f: &CertificateFacts, what: &str, now: time::OffsetDateTime) -> Vec<Check> {
    let until = crate::credentials::format_rfc3339(f.not_after);
    let days = (f.not_after - now).whole_days();
    let about = format!(
        "certificate of {what}: subject {}, issuer {}, serial {}",
        f.subject, f.issuer, f.serial_decimal
    );
    let renew =
        "have your CA issue a new certificate for the same key and replace the old one".to_owned();
    if now > f.not_after {
        vec![check(
            Status::Problem,
            format!("{about}: expired on {until}"),
            Some(renew),
            Some(5),
        )]
    } else if now < f.not_before {
        vec![check(
            Status::Problem,
            format!(
                "{about}: valid only from {}",
                crate::credentials::format_rfc3339(f.not_before)
            ),
            Some("check this machine's clock".to_owned()),
            Some(5),
        )]
    } else if days < EXPIRY_WARNING_DAYS {
        vec![check(
            Status::Note,
            format!("{about}: expires on {until}, in {days} days"),
            Some(renew),
            None,
        )]
    } else {
        vec![check(
            Status::Ok,
            format!("{about}: valid until {until} ({days} days)"),
            None,
            None,
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(not_before: i64, not_after: i64) -> CertificateFacts {
        CertificateFacts {
            serial_decimal: "4242".into(),
            subject: "CN=leaf".into(),
            issuer: "CN=ca".into(),
            not_before: time::OffsetDateTime::from_unix_timestamp(not_before).unwrap(),
            not_after: time::OffsetDateTime::from_unix_timestamp(not_after).unwrap(),
            public_key_der: Vec::new(),
            sha256_hex: String::new(),
        }
    }

    #[test]
    fn expiry_is_warned_thirty_days_ahead() {
        let now = time::OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let day = 86_400;
        let t = now.unix_timestamp();
        let status = |f: CertificateFacts| expiry_checks(&f, "key file k", now)[0].status;
        assert_eq!(status(facts(t - day, t + 31 * day)), Status::Ok);
        assert_eq!(status(facts(t - day, t + 29 * day)), Status::Note);
        assert_eq!(status(facts(t - 40 * day, t - day)), Status::Problem);
        assert_eq!(status(facts(t + day, t + 40 * day)), Status::Problem);
        let c = &expiry_checks(&facts(t - day, t + 10 * day), "key file k", now)[0];
        assert!(
            c.message.contains("in 10 days")
                && c.fix.as_deref().unwrap().contains("new certificate"),
            "{}",
            c.message
        );
    }
}
