//! Software TOTP from a seed in an env var or a file (headless runs), with `totp-rs`.
//! The seed is base32 (any case, spaces allowed, padding optional) or an `otpauth://totp/` URI.

use std::path::Path;

use totp_rs::{Algorithm, Secret, Totp};
use zeroize::Zeroizing;

use crate::clock::window_of;
use crate::env::EnvLookup;
use crate::error::{Error, Result};
use crate::token::{Code, CodeRequest, TokenSettings, TokenSource};
use crate::ui::Ui;

pub struct SoftwareSource {
    totp: Totp,
    origin: String,
}

impl SoftwareSource {
    /// The seed named by the settings: the file if `tapcred_totp_secret_file` is set, else
    /// the env var. `Ok(None)` when neither holds a seed (so `auto` can move on).
    pub fn from_settings(
        settings: &TokenSettings,
        env: &dyn EnvLookup,
    ) -> Result<Option<SoftwareSource>> {
        if let Some(path) = &settings.totp_secret_file {
            let text = read_seed_file(path, &settings.profile)?;
            let origin = format!("seed file {}", path.display());
            return parse_seed(&text, &origin).map(|totp| Some(SoftwareSource { totp, origin }));
        }
        match env.var(&settings.totp_secret_env) {
            Some(v) if !v.trim().is_empty() => {
                let text = Zeroizing::new(v);
                let origin = format!(
                    "seed in {}",
                    crate::platform::words::env_var(&settings.totp_secret_env)
                );
                parse_seed(&text, &origin).map(|totp| Some(SoftwareSource { totp, origin }))
            }
            _ => Ok(None),
        }
    }

    pub fn from_seed(seed: &str, origin: &str) -> Result<SoftwareSource> {
        Ok(SoftwareSource {
            totp: parse_seed(seed, origin)?,
            origin: origin.to_owned(),
        })
    }
}

impl TokenSource for SoftwareSource {
    fn describe(&self) -> String {
        format!("software TOTP ({})", self.origin)
    }
    fn period(&self) -> u64 {
        self.totp.step()
    }
    fn code(&mut self, req: &CodeRequest<'_>, _ui: &dyn Ui) -> Result<Code> {
        let (window_start, window_end) = window_of(req.at, self.period());
        let digits = Zeroizing::new(self.totp.generate(req.at).to_string());
        Ok(Code {
            digits,
            window_start,
            window_end,
        })
    }
}

/// A seed file holds one line (a base32 seed or an otpauth URI): anything larger is not one.
pub const MAX_SEED_FILE: u64 = 64 * 1024;

fn read_seed_file(path: &Path, profile: &str) -> Result<Zeroizing<String>> {
    use crate::platform::fs::{ReadError, make_private_hint, read_secret_file};
    let shown = path.display();
    let bytes = read_secret_file(path, MAX_SEED_FILE).map_err(|e| {
        let message = match &e {
            ReadError::Shared(how) => format!(
                "profile \"{profile}\": seed file {shown} is readable by other users ({how}); run: {}",
                make_private_hint(path)
            ),
            ReadError::NotRegular(what) => format!(
                "profile \"{profile}\": tapcred_totp_secret_file {shown} is {what}, not a regular file; point it at a file holding the seed"
            ),
            ReadError::TooLarge(_) => format!(
                "profile \"{profile}\": tapcred_totp_secret_file {shown} is larger than {} KiB, so it is not a seed file; point it at a file holding only the seed",
                MAX_SEED_FILE / 1024
            ),
            e => format!(
                "profile \"{profile}\": cannot read tapcred_totp_secret_file {shown}: {e}; fix the path or create the file (private to you, {})",
                crate::platform::words::PRIVATE_FILE
            ),
        };
        Error::config(message).with_source(e)
    })?;
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        Error::config(format!(
            "profile \"{profile}\": seed file {shown} is not text; it must hold a base32 seed or an otpauth://totp/ URI"
        ))
    })?;
    Ok(Zeroizing::new(text.trim().to_owned()))
}

/// AWS virtual MFA devices: RFC 6238 with these parameters, nothing else.
pub const AWS_DIGITS: u8 = 6;
pub const AWS_PERIOD: u64 = 30;

/// Parse a base32 seed or an `otpauth://totp/` URI. Errors name `origin`, never the seed.
/// A URI must describe an AWS virtual MFA device (6 digits, 30 s, SHA1): other parameters
/// would only make STS refuse every code (or, for a period of 0, divide by zero).
pub fn parse_seed(text: &str, origin: &str) -> Result<Totp> {
    let text = text.trim();
    // `get` rather than slicing: the 10th byte may fall inside a multi-byte character.
    let scheme = text.get(..10).unwrap_or("");
    if scheme.eq_ignore_ascii_case("otpauth://") {
        let rest = text.get(10..).unwrap_or("");
        if !rest
            .get(..5)
            .is_some_and(|h| h.eq_ignore_ascii_case("totp/"))
        {
            return Err(Error::config(format!(
                "{origin}: the otpauth URI is not a TOTP one (only otpauth://totp/… is supported; HOTP counters cannot serve AWS MFA)"
            )));
        }
        let totp = Totp::from_url_unchecked(text).map_err(|e| {
            Error::config(format!(
                "{origin}: the otpauth://totp/ URI is invalid ({}); export it again from the authenticator",
                redact_totp_error(&e.to_string())
            ))
        })?;
        return check_aws_parameters(totp, origin);
    }
    let cleaned: Zeroizing<String> = Zeroizing::new(
        text.chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .map(|c| c.to_ascii_uppercase())
            .collect::<String>()
            .trim_end_matches('=')
            .to_owned(),
    );
    let bytes = Zeroizing::new(data_encoding::BASE32_NOPAD.decode(cleaned.as_bytes()).map_err(|_| {
        Error::config(format!(
            "{origin}: the seed is not base32 (letters A-Z and digits 2-7) nor an otpauth://totp/ URI; copy the \"secret key\" AWS showed when the MFA device was created"
        ))
    })?);
    if bytes.is_empty() {
        return Err(Error::config(format!("{origin}: the seed is empty")));
    }
    Ok(totp_rs::Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_step_duration(30)
        .with_secret(Secret::from(bytes.to_vec()))
        .build_noncompliant())
}

/// Refuse a TOTP whose digits, period or algorithm differ from AWS virtual MFA's.
fn check_aws_parameters(totp: Totp, origin: &str) -> Result<Totp> {
    let algorithm = totp.algorithm();
    let mut wrong = Vec::new();
    if totp.digits() != AWS_DIGITS {
        wrong.push(format!("{} digits", totp.digits()));
    }
    if totp.step() != AWS_PERIOD {
        wrong.push(format!("a {} s period", totp.step()));
    }
    if algorithm != Algorithm::SHA1 {
        wrong.push(format!("{algorithm}"));
    }
    if wrong.is_empty() {
        return Ok(totp);
    }
    Err(Error::config(format!(
        "{origin}: the otpauth://totp/ URI asks for {}, but AWS virtual MFA devices use 6 digits, a 30 s period and SHA1; use the URI or base32 secret key AWS showed for this MFA device",
        wrong.join(", ")
    )))
}

/// totp-rs error texts may echo URL parts; keep only the first clause, never the query.
fn redact_totp_error(msg: &str) -> String {
    msg.split(['?', '&']).next().unwrap_or("invalid").to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::RecordingUi;

    fn code(t: &Totp, at: u64, digits: usize) -> String {
        let s = t.generate(at).to_string();
        assert_eq!(s.len(), digits);
        s
    }

    fn rfc(alg: Algorithm, key: &[u8]) -> Totp {
        totp_rs::Builder::new()
            .with_algorithm(alg)
            .with_digits(8)
            .with_step_duration(30)
            .with_secret(Secret::from(key.to_vec()))
            .build_noncompliant()
    }

    #[test]
    fn rfc6238_vectors_sha1_sha256_sha512() {
        let k1 = b"12345678901234567890";
        let k256 = b"12345678901234567890123456789012";
        let k512 = b"1234567890123456789012345678901234567890123456789012345678901234";
        let cases: [(u64, &str, &str, &str); 6] = [
            (59, "94287082", "46119246", "90693936"),
            (1111111109, "07081804", "68084774", "25091201"),
            (1111111111, "14050471", "67062674", "99943326"),
            (1234567890, "89005924", "91819424", "93441116"),
            (2000000000, "69279037", "90698825", "38618901"),
            (20000000000, "65353130", "77737706", "47863826"),
        ];
        for (t, s1, s256, s512) in cases {
            assert_eq!(code(&rfc(Algorithm::SHA1, k1), t, 8), s1, "sha1 t={t}");
            assert_eq!(
                code(&rfc(Algorithm::SHA256, k256), t, 8),
                s256,
                "sha256 t={t}"
            );
            assert_eq!(
                code(&rfc(Algorithm::SHA512, k512), t, 8),
                s512,
                "sha512 t={t}"
            );
        }
    }

    #[test]
    fn base32_any_case_spaces_and_padding() {
        // base32 of "12345678901234567890"
        let canonical = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
        let a = parse_seed(canonical, "t").unwrap();
        let b = parse_seed("gezd gnbv gy3t qojq gezd gnbv gy3t qojq", "t").unwrap();
        let c = parse_seed("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ====", "t").unwrap();
        assert_eq!(a.generate(59).to_string(), "287082");
        assert_eq!(b.generate(59).to_string(), "287082");
        assert_eq!(c.generate(59).to_string(), "287082");
        // short demo seeds are accepted (AWS seeds are 40 bytes, demos are often 10)
        assert!(parse_seed("JBSWY3DPEHPK3PXP", "t").is_ok());
    }

    /// Finding 11.2: a seed whose 10th byte falls inside a multi-byte character used to
    /// panic (`text[..10]`), printing the seed in the panic message.
    #[test]
    fn multibyte_seed_is_an_error_not_a_panic() {
        for seed in [
            "ABCDEFGHIé",
            "otpauth:/é/totp/x?secret=GEZDGNBV",
            "ééééééééé",
            "🔑🔑🔑",
        ] {
            let r = std::panic::catch_unwind(|| parse_seed(seed, "seed in $TAPCRED_TOTP_SECRET"));
            let e = r
                .unwrap_or_else(|_| panic!("parse_seed panicked on a multi-byte seed"))
                .unwrap_err();
            assert_eq!(e.kind, crate::ErrorKind::Config);
            assert!(e.message().contains("$TAPCRED_TOTP_SECRET"), "{e}");
            assert!(!e.message().contains(seed), "the seed is echoed: {e}");
        }
    }

    /// Finding 11.2: AWS virtual MFA is 6 digits, 30 s, SHA-1. Anything else is refused at
    /// parse time (it used to be accepted and sent to STS, or to panic on period 0 / 10
    /// digits), with one line naming the source and never the seed.
    #[test]
    fn otpauth_uri_other_than_aws_parameters_is_refused() {
        let base = "otpauth://totp/ACME:alice?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
        for (extra, needle) in [
            ("&digits=8", "8 digits"),
            ("&digits=10", "10 digits"),
            ("&digits=0", "0 digits"),
            ("&period=60", "60 s"),
            ("&period=0", "0 s"),
            ("&algorithm=SHA256", "SHA256"),
            ("&algorithm=SHA512", "SHA512"),
            ("&digits=8&period=60&algorithm=SHA256", "8 digits"),
        ] {
            let uri = format!("{base}{extra}");
            let r = std::panic::catch_unwind(|| parse_seed(&uri, "seed file /s"));
            let e = r
                .unwrap_or_else(|_| panic!("parse_seed panicked on {extra}"))
                .err()
                .unwrap_or_else(|| panic!("{extra} was accepted"));
            assert_eq!(e.kind, crate::ErrorKind::Config, "{extra}");
            let m = e.message();
            assert!(m.contains("seed file /s"), "{m}");
            assert!(m.contains(needle), "{extra}: {m}");
            assert!(
                m.contains("6 digits") && m.contains("30 s") && m.contains("SHA1"),
                "{m}"
            );
            assert!(!m.contains("GEZDGNBV"), "the seed is echoed: {m}");
            assert!(!m.contains('\n'), "one line: {m}");
        }
        // The AWS parameters, explicit or implied, are accepted.
        for extra in ["", "&digits=6&period=30&algorithm=SHA1", "&algorithm=sha1"] {
            let t = parse_seed(&format!("{base}{extra}"), "t").unwrap();
            assert_eq!(t.generate(59).to_string(), "287082", "{extra}");
        }
    }

    #[test]
    fn otpauth_uri_with_aws_parameters_gives_aws_windows() {
        let uri = "otpauth://totp/Amazon%20Web%20Services:alice@111111111111?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Amazon%20Web%20Services";
        let t = parse_seed(uri, "t").unwrap();
        let mut s = SoftwareSource {
            totp: t,
            origin: "t".into(),
        };
        assert_eq!(s.period(), 30);
        let c = s
            .code(
                &CodeRequest {
                    mfa_serial: "x",
                    profile: "p",
                    at: 130,
                },
                &RecordingUi::new(),
            )
            .unwrap();
        assert_eq!((c.window_start, c.window_end), (120, 150));
        assert_eq!(c.digits.len(), 6);
        // RFC 6238 SHA1 vector at t=59, last six digits.
        assert_eq!(s.totp.generate(59).to_string(), "287082");
    }

    #[test]
    fn bad_seeds_are_clear_and_do_not_echo() {
        let e = parse_seed("not-a-seed!!1", "seed in $X").unwrap_err();
        assert!(e.message().contains("not base32"), "{e}");
        assert!(!e.message().contains("not-a-seed"));
        let e = parse_seed("otpauth://hotp/ACME:a?secret=GEZDGNBV&counter=1", "f").unwrap_err();
        assert!(e.message().contains("not a TOTP"), "{e}");
    }

    #[test]
    #[cfg(unix)]
    fn seed_file_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("seed");
        std::fs::write(&p, "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let settings = TokenSettings {
            totp_secret_file: Some(p.clone()),
            profile: "mfa".into(),
            ..Default::default()
        };
        let env = std::collections::HashMap::new();
        let e = SoftwareSource::from_settings(&settings, &env)
            .err()
            .unwrap();
        assert!(e.message().contains("chmod 600"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let s = SoftwareSource::from_settings(&settings, &env)
            .unwrap()
            .unwrap();
        assert_eq!(s.totp.generate(59).to_string(), "287082");
        let missing = TokenSettings {
            totp_secret_file: Some(dir.path().join("nope")),
            ..settings
        };
        let e = SoftwareSource::from_settings(&missing, &env).err().unwrap();
        assert!(e.message().contains("nope"), "{e}");
    }
}
