//! `export --format …`: credentials for shells and files, in the AWS CLI's formats.

use std::io::Write;

use zeroize::Zeroizing;

use crate::commands::Ctx;
use crate::credentials::Credentials;
use crate::engine::{self, Options};
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `export AWS_ACCESS_KEY_ID='…'` (POSIX shells)
    Env,
    /// `AWS_ACCESS_KEY_ID='…'` (dotenv files)
    EnvNoExport,
    /// `$Env:AWS_ACCESS_KEY_ID='…'`
    Powershell,
    /// `set "AWS_ACCESS_KEY_ID=…"`
    WindowsCmd,
    /// `set -gx AWS_ACCESS_KEY_ID '…'`
    Fish,
    /// The `credential_process` JSON (Version 1)
    Json,
    /// A credentials-file section
    Ini,
}

pub fn run(
    profile: &str,
    format: Format,
    opts: &Options,
    ctx: &Ctx<'_>,
    out: &mut dyn Write,
) -> Result<i32> {
    let got = engine::credentials(profile, opts, ctx.env, ctx.ui)?;
    let text = render(&got.credentials, Some(&got.target.region), profile, format)?;
    out.write_all(text.as_bytes())
        .map_err(|e| Error::io(format!("cannot write to stdout: {e}")).with_source(e))?;
    Ok(0)
}

/// The variables `exec` sets and `export` prints, in order: the credentials, then the
/// region they were obtained in (the profile's or the environment's, else STS's default),
/// so tools in the child or the shell call the same region.
pub fn variables(c: &Credentials, region: Option<&str>) -> Vec<(&'static str, Zeroizing<String>)> {
    let mut v = vec![
        ("AWS_ACCESS_KEY_ID", Zeroizing::new(c.access_key_id.clone())),
        (
            "AWS_SECRET_ACCESS_KEY",
            Zeroizing::new(c.secret().to_owned()),
        ),
    ];
    if let Some(t) = c.token() {
        v.push(("AWS_SESSION_TOKEN", Zeroizing::new(t.to_owned())));
    }
    if let Some(e) = c.expiration_rfc3339() {
        v.push(("AWS_CREDENTIAL_EXPIRATION", Zeroizing::new(e)));
    }
    if let Some(r) = region {
        v.push(("AWS_REGION", Zeroizing::new(r.to_owned())));
        v.push(("AWS_DEFAULT_REGION", Zeroizing::new(r.to_owned())));
    }
    v
}

/// The text for `format`. Every value is quoted for its shell (evaluating the output never
/// runs anything in a value, and gives the value back byte for byte); where a format cannot
/// hold a value safely (windows-cmd: `%`, `!`, `^`, `"`; ini: spaces or control characters)
/// the export is refused rather than mangled. The shell formats carry `region` too; json and
/// ini are credentials only (the `credential_process` document, a credentials-file section).
pub fn render(
    c: &Credentials,
    region: Option<&str>,
    profile: &str,
    format: Format,
) -> Result<Zeroizing<String>> {
    let mut s = Zeroizing::new(String::new());
    let vars = variables(c, region);
    match format {
        Format::Json => {
            let doc = c.to_process_json();
            s.push_str(
                &serde_json::to_string_pretty(&doc)
                    .map_err(|e| Error::internal(e.to_string()).with_source(e))?,
            );
            s.push('\n');
        }
        Format::Ini => {
            if profile.is_empty()
                || profile
                    .chars()
                    .any(|ch| ch.is_control() || matches!(ch, '[' | ']'))
            {
                return Err(Error::usage(format!(
                    "profile {profile:?} cannot be an ini section name; use --format json"
                )));
            }
            for (k, v) in variables(c, None).iter() {
                if v.chars().any(|ch| ch.is_control() || ch.is_whitespace()) {
                    return Err(cannot_hold(
                        profile,
                        k,
                        "ini",
                        "spaces or control characters",
                    ));
                }
            }
            s.push_str(&format!("[{profile}]\n"));
            s.push_str(&format!("aws_access_key_id = {}\n", c.access_key_id));
            s.push_str(&format!("aws_secret_access_key = {}\n", c.secret()));
            if let Some(t) = c.token() {
                s.push_str(&format!("aws_session_token = {t}\n"));
            }
            if let Some(e) = c.expiration_rfc3339() {
                s.push_str(&format!("aws_credential_expiration = {e}\n"));
            }
        }
        _ => {
            for (k, v) in &vars {
                let line = match format {
                    Format::Env => format!("export {k}={}\n", posix_quote(v)),
                    Format::EnvNoExport => format!("{k}={}\n", posix_quote(v)),
                    Format::Powershell => format!("$Env:{k}={}\n", powershell_quote(v)),
                    Format::WindowsCmd => format!("set \"{k}={}\"\r\n", cmd_value(profile, k, v)?),
                    Format::Fish => format!("set -gx {k} {}\n", fish_quote(v)),
                    Format::Json | Format::Ini => unreachable!(),
                };
                s.push_str(&line);
            }
        }
    }
    Ok(s)
}

fn cannot_hold(profile: &str, key: &str, format: &str, what: &str) -> Error {
    Error::network(format!(
        "profile \"{profile}\": the {key} STS returned contains {what}, which {format} cannot hold safely; use --format json (or check the endpoint override: AWS credentials never contain these)"
    ))
    .with_reason(crate::error::Reason::BadAnswer)
}

/// POSIX shells: single quotes keep everything literal; a `'` is `'\''`.
fn posix_quote(v: &str) -> String {
    format!("'{}'", v.replace('\'', "'\\''"))
}

/// fish: inside single quotes only `\\` and `\'` are escapes.
fn fish_quote(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// PowerShell: single-quoted strings are verbatim; a quote is doubled. PowerShell also takes
/// the typographic single quotes as quotes, so those are doubled too.
fn powershell_quote(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 2);
    out.push('\'');
    for ch in v.chars() {
        if matches!(ch, '\'' | '\u{2018}' | '\u{2019}' | '\u{201a}' | '\u{201b}') {
            out.push(ch);
        }
        out.push(ch);
    }
    out.push('\'');
    out
}

/// cmd.exe: `set "K=V"` keeps `&|<>` literal, but `%` and `!` still expand and `"`/`^` end
/// or escape; there is no escape that works both at the prompt and in a batch file, so such
/// values are refused.
fn cmd_value<'v>(profile: &str, key: &str, v: &'v str) -> Result<&'v str> {
    if v.chars()
        .any(|ch| matches!(ch, '%' | '!' | '^' | '"') || ch.is_control() || !ch.is_ascii())
    {
        return Err(cannot_hold(
            profile,
            key,
            "windows-cmd",
            "%, !, ^, \" or control characters",
        ));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Credentials {
        let exp = time::macros::datetime!(2026-11-28 18:00:00 UTC);
        Credentials::new("ASIAEXAMPLE", "sec/ret+", Some("tok=en".into()), Some(exp))
    }

    #[test]
    fn every_format() {
        let c = creds();
        let env = render(&c, None, "p", Format::Env).unwrap();
        assert_eq!(
            env.as_str(),
            "export AWS_ACCESS_KEY_ID='ASIAEXAMPLE'\nexport AWS_SECRET_ACCESS_KEY='sec/ret+'\nexport AWS_SESSION_TOKEN='tok=en'\nexport AWS_CREDENTIAL_EXPIRATION='2026-11-28T18:00:00Z'\n"
        );
        assert!(
            render(&c, None, "p", Format::EnvNoExport)
                .unwrap()
                .starts_with("AWS_ACCESS_KEY_ID='ASIAEXAMPLE'\n")
        );
        assert!(
            render(&c, None, "p", Format::Powershell)
                .unwrap()
                .contains("$Env:AWS_SESSION_TOKEN='tok=en'\n")
        );
        assert!(
            render(&c, None, "p", Format::WindowsCmd)
                .unwrap()
                .contains("set \"AWS_SECRET_ACCESS_KEY=sec/ret+\"\r\n")
        );
        assert!(
            render(&c, None, "p", Format::Fish)
                .unwrap()
                .contains("set -gx AWS_ACCESS_KEY_ID 'ASIAEXAMPLE'\n")
        );
        let ini = render(&c, None, "p", Format::Ini).unwrap();
        assert!(
            ini.starts_with("[p]\naws_access_key_id = ASIAEXAMPLE\n"),
            "{}",
            ini.as_str()
        );
        let json: serde_json::Value =
            serde_json::from_str(&render(&c, None, "p", Format::Json).unwrap()).unwrap();
        assert_eq!(json["Version"], 1);
        assert_eq!(json["Expiration"], "2026-11-28T18:00:00Z");
    }

    /// Finding 11.9: quoting per shell (the shells themselves are run in tests/sts_faults.rs;
    /// PowerShell, not packaged for Debian, is checked here against its quoting rules).
    #[test]
    fn values_are_quoted_for_each_shell() {
        assert_eq!(posix_quote("a'b$(x)`y`"), "'a'\\''b$(x)`y`'");
        assert_eq!(fish_quote("a'b\\c$(x)(y)"), "'a\\'b\\\\c$(x)(y)'");
        assert_eq!(
            powershell_quote("a'b$x`n\u{2019}"),
            "'a''b$x`n\u{2019}\u{2019}'"
        );
        // Decoding PowerShell's single-quoted string gives the value back.
        let v = "x'y''z\u{2018}$(calc)";
        let q = powershell_quote(v);
        let inner = &q[1..q.len() - 1];
        let mut decoded = String::new();
        let mut chars = inner.chars().peekable();
        while let Some(ch) = chars.next() {
            let quote = matches!(ch, '\'' | '\u{2018}' | '\u{2019}' | '\u{201a}' | '\u{201b}');
            if quote {
                assert_eq!(chars.next(), Some(ch), "a lone quote ends the string: {q}");
            }
            decoded.push(ch);
        }
        assert_eq!(decoded, v);
        let bad = Credentials::new("ASIAX", "50%off!", None, None);
        let e = render(&bad, None, "p", Format::WindowsCmd).unwrap_err();
        assert_eq!(e.exit_code(), 6);
        assert!(e.message().contains("windows-cmd"), "{e}");
        let spaced = Credentials::new("ASIAX", "a b", None, None);
        assert!(render(&spaced, None, "p", Format::Ini).is_err());
        assert!(render(&creds(), None, "p]\n[evil", Format::Ini).is_err());
    }

    #[test]
    fn long_term_keys_have_no_token_or_expiration() {
        let c = Credentials::new("AKIAEXAMPLE", "s", None, None);
        let env = render(&c, None, "p", Format::Env).unwrap();
        assert!(!env.contains("AWS_SESSION_TOKEN") && !env.contains("EXPIRATION"));
    }
}
