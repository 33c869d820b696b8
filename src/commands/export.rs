//! `export --format …`: credentials for shells and files, in the AWS CLI's formats.

use std::io::Write;

use zeroize::Zeroizing;

use crate::commands::Ctx;
use crate::credentials::Credentials;
use crate::engine::{self, Options};
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `export AWS_ACCESS_KEY_ID=…` (POSIX shells)
    Env,
    /// `AWS_ACCESS_KEY_ID=…` (dotenv files)
    EnvNoExport,
    /// `$Env:AWS_ACCESS_KEY_ID="…"`
    Powershell,
    /// `set AWS_ACCESS_KEY_ID=…`
    WindowsCmd,
    /// `set -gx AWS_ACCESS_KEY_ID "…"`
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
    let text = render(&got.credentials, profile, format)?;
    out.write_all(text.as_bytes())
        .map_err(|e| Error::io(format!("cannot write to stdout: {e}")))?;
    Ok(0)
}

/// The variables `exec` sets and `export` prints, in order.
pub fn variables(c: &Credentials) -> Vec<(&'static str, Zeroizing<String>)> {
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
    v
}

pub fn render(c: &Credentials, profile: &str, format: Format) -> Result<Zeroizing<String>> {
    let mut s = Zeroizing::new(String::new());
    let vars = variables(c);
    match format {
        Format::Json => {
            let doc = c.to_process_json();
            s.push_str(
                &serde_json::to_string_pretty(&doc).map_err(|e| Error::internal(e.to_string()))?,
            );
            s.push('\n');
        }
        Format::Ini => {
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
                    Format::Env => format!("export {k}={}\n", v.as_str()),
                    Format::EnvNoExport => format!("{k}={}\n", v.as_str()),
                    Format::Powershell => format!("$Env:{k}=\"{}\"\n", v.as_str()),
                    Format::WindowsCmd => format!("set {k}={}\r\n", v.as_str()),
                    Format::Fish => format!("set -gx {k} \"{}\"\n", v.as_str()),
                    Format::Json | Format::Ini => unreachable!(),
                };
                s.push_str(&line);
            }
        }
    }
    Ok(s)
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
        let env = render(&c, "p", Format::Env).unwrap();
        assert_eq!(
            env.as_str(),
            "export AWS_ACCESS_KEY_ID=ASIAEXAMPLE\nexport AWS_SECRET_ACCESS_KEY=sec/ret+\nexport AWS_SESSION_TOKEN=tok=en\nexport AWS_CREDENTIAL_EXPIRATION=2026-11-28T18:00:00Z\n"
        );
        assert!(
            render(&c, "p", Format::EnvNoExport)
                .unwrap()
                .starts_with("AWS_ACCESS_KEY_ID=ASIAEXAMPLE\n")
        );
        assert!(
            render(&c, "p", Format::Powershell)
                .unwrap()
                .contains("$Env:AWS_SESSION_TOKEN=\"tok=en\"\n")
        );
        assert!(
            render(&c, "p", Format::WindowsCmd)
                .unwrap()
                .contains("set AWS_SECRET_ACCESS_KEY=sec/ret+\r\n")
        );
        assert!(
            render(&c, "p", Format::Fish)
                .unwrap()
                .contains("set -gx AWS_ACCESS_KEY_ID \"ASIAEXAMPLE\"\n")
        );
        let ini = render(&c, "p", Format::Ini).unwrap();
        assert!(
            ini.starts_with("[p]\naws_access_key_id = ASIAEXAMPLE\n"),
            "{}",
            ini.as_str()
        );
        let json: serde_json::Value =
            serde_json::from_str(&render(&c, "p", Format::Json).unwrap()).unwrap();
        assert_eq!(json["Version"], 1);
        assert_eq!(json["Expiration"], "2026-11-28T18:00:00Z");
    }

    #[test]
    fn long_term_keys_have_no_token_or_expiration() {
        let c = Credentials::new("AKIAEXAMPLE", "s", None, None);
        let env = render(&c, "p", Format::Env).unwrap();
        assert!(!env.contains("AWS_SESSION_TOKEN") && !env.contains("EXPIRATION"));
    }
}
