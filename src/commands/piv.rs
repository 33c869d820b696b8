//! `tapcred piv init | import | status`: a PIV key on the YubiKey for IAM Roles Anywhere.
//! `init` generates the key on the card and writes a certificate request for the user's
//! CA; `import` stores the CA's certificate in the slot (after checking it is for that
//! key); `status` shows what each slot holds. `init` is journaled: a run killed between
//! generating the key and writing the request is found by the next `init` (which writes
//! the request for the key already there instead of replacing it) and by `doctor`.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Subcommand, ValueEnum};
use serde_json::json;

use super::Ctx;
use crate::error::{Error, Result};
use crate::journal::{self, BeginError, Journal};
use crate::token::piv::{self, Deadlines, ManagementKey, PivAdmin, PivSlot};
use crate::token::x509::KeyAlgorithm;

/// The journal kind of `piv init`.
pub const KIND: &str = "piv-init";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Algorithm {
    P256,
    P384,
    Rsa2048,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TouchPolicy {
    Never,
    Always,
    Cached,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PinPolicy {
    Never,
    Once,
    Always,
}

fn parse_slot(s: &str) -> std::result::Result<PivSlot, String> {
    s.parse()
}

#[derive(Debug, Subcommand)]
pub enum PivCmd {
    /// Generate a key in a PIV slot of the YubiKey and write a certificate request (PEM)
    /// for your CA. Needs the PIV management key (the factory default, or
    /// TAPCRED_PIV_MANAGEMENT_KEY) and the PIN (TAPCRED_PIV_PIN or the prompt).
    Init {
        /// Which YubiKey (serial number) when several are plugged in.
        #[arg(long, value_name = "N")]
        serial: Option<u32>,
        /// The slot: 9a (authentication), 9c (signature), 9d or 9e.
        #[arg(long, default_value = "9a", value_parser = parse_slot)]
        slot: PivSlot,
        #[arg(long, value_enum, default_value = "p256")]
        algorithm: Algorithm,
        /// When the key wants a touch to sign.
        #[arg(long, value_enum, default_value = "never")]
        touch_policy: TouchPolicy,
        /// When the key wants the PIN (default: the slot's own policy).
        #[arg(long, value_enum)]
        pin_policy: Option<PinPolicy>,
        /// The certificate request's subject.
        #[arg(long, default_value = "CN=tapcred")]
        subject: String,
        /// Where to write the certificate request (PEM).
        #[arg(long, value_name = "FILE")]
        csr: PathBuf,
    },
    /// Store the certificate your CA issued for the slot's key (checked against the key).
    Import {
        #[arg(long, value_name = "N")]
        serial: Option<u32>,
        #[arg(long, default_value = "9a", value_parser = parse_slot)]
        slot: PivSlot,
        /// The certificate (PEM or DER).
        #[arg(long, value_name = "FILE")]
        cert: PathBuf,
        /// Intermediate certificates (PEM), checked to chain to the certificate's issuer.
        #[arg(long, value_name = "FILE")]
        chain: Option<PathBuf>,
    },
    /// Show each PIV slot's key and certificate: algorithm, subject, serial, not-after.
    Status {
        #[arg(long, value_name = "N")]
        serial: Option<u32>,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: PivCmd, ctx: &Ctx<'_>, out: &mut dyn Write) -> Result<i32> {
    run_with(cmd, ctx, Deadlines::default(), out)
}

/// [`run`] with chosen deadlines (tests).
pub fn run_with(cmd: PivCmd, ctx: &Ctx<'_>, d: Deadlines, out: &mut dyn Write) -> Result<i32> {
    match cmd {
        PivCmd::Init {
            serial,
            slot,
            algorithm,
            touch_policy,
            pin_policy,
            subject,
            csr,
        } => init(
            &InitArgs {
                serial,
                slot,
                algorithm,
                touch_policy,
                pin_policy,
                subject,
                csr,
            },
            ctx,
            d,
            out,
        ),
        PivCmd::Import {
            serial,
            slot,
            cert,
            chain,
        } => import(serial, slot, &cert, chain.as_deref(), ctx, d, out),
        PivCmd::Status { serial, json } => status(serial, json, ctx, d, out),
    }
}

struct InitArgs {
    serial: Option<u32>,
    slot: PivSlot,
    algorithm: Algorithm,
    touch_policy: TouchPolicy,
    pin_policy: Option<PinPolicy>,
    subject: String,
    csr: PathBuf,
}

fn key_algorithm(a: Algorithm) -> KeyAlgorithm {
    match a {
        Algorithm::P256 => KeyAlgorithm::EcdsaP256,
        Algorithm::P384 => KeyAlgorithm::EcdsaP384,
        Algorithm::Rsa2048 => KeyAlgorithm::Rsa2048,
    }
}

fn algorithm_name(a: KeyAlgorithm) -> &'static str {
    match a {
        KeyAlgorithm::EcdsaP256 => "ECDSA P-256",
        KeyAlgorithm::EcdsaP384 => "ECDSA P-384",
        KeyAlgorithm::Rsa2048 => "RSA 2048",
    }
}

fn io_err(what: &str, path: &Path, e: impl std::fmt::Display) -> Error {
    Error::io(format!("cannot {what} {} ({e})", path.display()))
}

fn pin(ctx: &Ctx<'_>, who: &str) -> Result<secrecy::SecretString> {
    if let Some(p) = ctx.env.var(piv::PIN_ENV).filter(|p| !p.is_empty()) {
        return Ok(secrecy::SecretString::from(p));
    }
    match ctx.ui.ask_secret(&format!("PIV PIN of {who}: "))? {
        Some(p) => Ok(p),
        None => Err(Error::token(format!(
            "{who}: signing the certificate request needs the PIV PIN; type it at the prompt or set {}",
            piv::PIN_ENV
        ))),
    }
}

fn init(a: &InitArgs, ctx: &Ctx<'_>, d: Deadlines, out: &mut dyn Write) -> Result<i32> {
    let mgmt = ManagementKey::from_env(ctx.env)?;
    if let Some(parent) = a.csr.parent().filter(|p| !p.as_os_str().is_empty())
        && !parent.is_dir()
    {
        return Err(Error::usage(format!(
            "--csr {}: the folder {} does not exist; create it or choose another path",
            a.csr.display(),
            parent.display()
        )));
    }
    let admin = piv::open_admin(a.serial, ctx.env, d)?;
    let who = format!("{} PIV slot {}", admin.label(), a.slot);
    let subject_key = format!(
        "{}-{}",
        admin
            .serial()
            .map(|s| s.to_string())
            .unwrap_or_else(|| "key".into()),
        a.slot
    );
    let jdir = journal::default_dir(ctx.env).ok_or_else(|| {
        Error::config(
            "piv init keeps a journal of its steps in tapcred's data folder, and none is known; set HOME (or XDG_DATA_HOME)",
        )
    })?;
    let held = admin.slot_info(a.slot)?;
    let pending = Journal::find(&jdir, KIND, &subject_key);
    let algorithm = key_algorithm(a.algorithm);
    let (mut journal, public_key) = match (&held.public_key, held.algorithm, pending) {
        // An interrupted init generated this key: finish with the key that is there (its
        // request may be what the CA is waiting for) instead of replacing it.
        (Some(pk), Some(alg), Some(p)) => {
            ctx.ui.info(&format!(
                "finishing an interrupted `tapcred piv init`: {who} already holds the {} key it generated; writing its certificate request",
                algorithm_name(alg)
            ));
            (Journal::resume(&p)?, (pk.clone(), alg))
        }
        (Some(_), Some(alg), None) => {
            return Err(Error::usage(format!(
                "{who} already holds a {} key; `tapcred piv init` never replaces a key; choose another --slot, or delete it first (`ykman piv keys delete {}`)",
                algorithm_name(alg),
                a.slot
            )));
        }
        (_, _, None) if held.certificate.is_some() => {
            return Err(Error::usage(format!(
                "{who} already holds a certificate; `tapcred piv init` never replaces a key; choose another --slot"
            )));
        }
        (_, _, pending) => {
            admin.authenticate(&mgmt)?;
            let pin_policy = match a.pin_policy {
                None => yubikey::PinPolicy::Default,
                Some(PinPolicy::Never) => yubikey::PinPolicy::Never,
                Some(PinPolicy::Once) => yubikey::PinPolicy::Once,
                Some(PinPolicy::Always) => yubikey::PinPolicy::Always,
            };
            let touch_policy = match a.touch_policy {
                TouchPolicy::Never => yubikey::TouchPolicy::Never,
                TouchPolicy::Always => yubikey::TouchPolicy::Always,
                TouchPolicy::Cached => yubikey::TouchPolicy::Cached,
            };
            let mut journal = match pending {
                Some(p) => Journal::resume(&p)?,
                None => match Journal::begin(&jdir, KIND, &subject_key) {
                    Ok(j) => j,
                    Err(BeginError::Pending(p)) => Journal::resume(&p)?,
                    Err(BeginError::Io(e)) => return Err(e),
                },
            };
            journal.step(
                "generate",
                json!({ "slot": a.slot.to_string(), "algorithm": algorithm_name(algorithm) }),
            )?;
            let pk = admin.generate(a.slot, algorithm, pin_policy, touch_policy)?;
            (journal, (pk, algorithm))
        }
    };
    let (public_key, algorithm) = public_key;
    let touch = admin.slot_info(a.slot)?.policy.is_some_and(|p| {
        matches!(
            p.touch,
            yubikey::TouchPolicy::Always | yubikey::TouchPolicy::Cached
        )
    });
    let pin = pin(ctx, &who)?;
    admin.verify_pin(&pin)?;
    let pem =
        admin.certificate_request(a.slot, algorithm, &public_key, &a.subject, ctx.ui, touch)?;
    journal.step("csr", json!({ "file": a.csr.display().to_string() }))?;
    crate::platform::fs::replace_private(&a.csr, ".csr-", pem.as_bytes())
        .map_err(|e| io_err("write the certificate request", &a.csr, e))?;
    journal.close()?;
    writeln!(
        out,
        "{who}: generated a {} key; certificate request written to {}\nHave your CA sign it, then: tapcred piv import --slot {} --cert FILE",
        algorithm_name(algorithm),
        a.csr.display(),
        a.slot
    )
    .map_err(|e| Error::io(format!("cannot write output: {e}")))?;
    Ok(0)
}

/// Certificates in a PEM file (or one DER certificate).
fn read_certificates(path: &Path) -> Result<Vec<Vec<u8>>> {
    use x509_cert::der::{Decode, Encode};
    let bytes = std::fs::read(path).map_err(|e| io_err("read", path, e))?;
    if bytes.first() == Some(&0x30) {
        return x509_cert::Certificate::from_der(&bytes)
            .map(|_| vec![bytes])
            .map_err(|e| {
                Error::usage(format!(
                    "{}: not an X.509 certificate ({e})",
                    path.display()
                ))
            });
    }
    let certs = x509_cert::Certificate::load_pem_chain(&bytes).map_err(|e| {
        tracing::debug!(file = %path.display(), error = %e, "not PEM certificates");
        Error::usage(format!(
            "{}: not a certificate (PEM \"-----BEGIN CERTIFICATE-----\" or DER); give the file your CA issued",
            path.display()
        ))
    })?;
    if certs.is_empty() {
        return Err(Error::usage(format!(
            "{}: holds no certificate",
            path.display()
        )));
    }
    certs
        .iter()
        .map(|c| c.to_der().map_err(|e| Error::internal(e.to_string())))
        .collect()
}

fn import(
    serial: Option<u32>,
    slot: PivSlot,
    cert: &Path,
    chain: Option<&Path>,
    ctx: &Ctx<'_>,
    d: Deadlines,
    out: &mut dyn Write,
) -> Result<i32> {
    use x509_cert::der::Decode;
    let mgmt = ManagementKey::from_env(ctx.env)?;
    let leaf = read_certificates(cert)?.remove(0);
    let leaf_cert =
        x509_cert::Certificate::from_der(&leaf).map_err(|e| Error::usage(e.to_string()))?;
    if piv::certificate_algorithm(&leaf).is_none() {
        return Err(Error::usage(format!(
            "{}: the certificate's key is not ECDSA P-256, P-384 or RSA 2048",
            cert.display()
        )));
    }
    if let Some(chain) = chain {
        let certs = read_certificates(chain)?;
        let first =
            x509_cert::Certificate::from_der(&certs[0]).map_err(|e| Error::usage(e.to_string()))?;
        if first.tbs_certificate.subject != leaf_cert.tbs_certificate.issuer {
            return Err(Error::usage(format!(
                "{}: its first certificate ({}) is not the issuer of {} ({}); list the chain from the certificate's issuer up",
                chain.display(),
                first.tbs_certificate.subject,
                cert.display(),
                leaf_cert.tbs_certificate.issuer
            )));
        }
    }
    let admin = piv::open_admin(serial, ctx.env, d)?;
    let who = format!("{} PIV slot {slot}", admin.label());
    let held = admin.slot_info(slot)?;
    let Some(public) = held.public_key else {
        return Err(Error::usage(format!(
            "{who} holds no key this YubiKey can describe (no key, or firmware before 5.3); make one with `tapcred piv init --slot {slot}`"
        )));
    };
    if piv::certificate_public_key(&leaf).as_deref() != Some(public.as_slice()) {
        return Err(Error::usage(format!(
            "{}: the certificate is for another key than the one in {who}; import the certificate issued for this slot's request",
            cert.display()
        )));
    }
    admin.authenticate(&mgmt)?;
    admin.import(slot, &leaf)?;
    let mut said = format!(
        "{who}: certificate imported ({}, not after {})\n",
        leaf_cert.tbs_certificate.subject, leaf_cert.tbs_certificate.validity.not_after
    );
    // The card keeps one certificate per slot: the intermediates stay in their file.
    if let Some(chain) = chain {
        said.push_str(&format!(
            "the chain stays in {}: add `tapcred_roles_anywhere_chain = {}` to the Roles Anywhere profile\n",
            chain.display(),
            chain.display()
        ));
    }
    out.write_all(said.as_bytes())
        .map_err(|e| Error::io(format!("cannot write output: {e}")))?;
    Ok(0)
}

fn status(
    serial: Option<u32>,
    as_json: bool,
    ctx: &Ctx<'_>,
    d: Deadlines,
    out: &mut dyn Write,
) -> Result<i32> {
    use x509_cert::der::Decode;
    let admin: PivAdmin = piv::open_admin(serial, ctx.env, d)?;
    let mut rows = Vec::new();
    for name in PivSlot::NAMES {
        let slot: PivSlot = name.parse().map_err(Error::internal)?;
        let info = admin.slot_info(slot)?;
        if info.algorithm.is_none() && info.certificate.is_none() {
            continue;
        }
        let cert = info
            .certificate
            .as_deref()
            .and_then(|c| x509_cert::Certificate::from_der(c).ok());
        let algorithm = info.algorithm.or_else(|| {
            info.certificate
                .as_deref()
                .and_then(piv::certificate_algorithm)
        });
        rows.push(json!({
            "slot": slot.to_string(),
            "algorithm": algorithm.map(algorithm_name),
            "touch_policy": info.policy.map(|p| format!("{:?}", p.touch).to_lowercase()),
            "pin_policy": info.policy.map(|p| format!("{:?}", p.pin).to_lowercase()),
            "subject": cert.as_ref().map(|c| c.tbs_certificate.subject.to_string()),
            "serial": cert.as_ref().map(|c| data_encoding::HEXLOWER.encode(c.tbs_certificate.serial_number.as_bytes())),
            "not_after": cert.as_ref().map(|c| c.tbs_certificate.validity.not_after.to_string()),
        }));
    }
    let w = |e: std::io::Error| Error::io(format!("cannot write output: {e}"));
    if as_json {
        let doc = json!({ "yubikey": admin.label(), "serial": admin.serial(), "slots": rows });
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&doc).map_err(|e| Error::internal(e.to_string()))?
        )
        .map_err(w)?;
        return Ok(0);
    }
    writeln!(out, "{} (reader \"{}\")", admin.label(), admin.reader()).map_err(w)?;
    if rows.is_empty() {
        writeln!(
            out,
            "  no PIV keys or certificates; make one with `tapcred piv init --csr FILE`"
        )
        .map_err(w)?;
    }
    for r in &rows {
        let s = |k: &str| r[k].as_str().unwrap_or("-").to_owned();
        writeln!(
            out,
            "  slot {}: {}, touch {}, pin {}\n    subject {}\n    serial {}\n    not after {}",
            s("slot"),
            s("algorithm"),
            s("touch_policy"),
            s("pin_policy"),
            s("subject"),
            s("serial"),
            s("not_after")
        )
        .map_err(w)?;
    }
    Ok(0)
}
