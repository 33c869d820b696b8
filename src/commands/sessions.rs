//! `sessions`: list and clear cached sessions. Never shows a secret.

use std::io::Write;

use crate::cache::{EntrySummary, SessionCache};
use crate::clock;
use crate::commands::Ctx;
use crate::credentials::format_rfc3339;
use crate::error::{Error, Result};

/// `tapcred sessions [--json]`: profile, kind, expiry (and MFA serial) of each cached session.
pub fn list(json: bool, ctx: &Ctx<'_>, out: &mut dyn Write) -> Result<i32> {
    let cache = SessionCache::open_default(ctx.env, ctx.ui);
    let entries = cache.list();
    let now = clock::now_utc();
    let text = if json {
        let rows: Vec<serde_json::Value> = entries
            .iter()
            .map(|e| {
                serde_json::json!({
                    "profile": e.profile,
                    "kind": e.kind.as_str(),
                    "mfa_serial": e.mfa_serial,
                    "created": format_rfc3339(e.created),
                    "expiration": format_rfc3339(e.expiration),
                    "seconds_left": (e.expiration - now).whole_seconds().max(0),
                })
            })
            .collect();
        format!("{}\n", serde_json::Value::Array(rows))
    } else if entries.is_empty() {
        ctx.ui
            .info(&format!("no cached sessions in {}", cache.dir().display()));
        String::new()
    } else {
        table(&entries, now)
    };
    out.write_all(text.as_bytes())
        .map_err(|e| Error::io(format!("cannot write to stdout: {e}")).with_source(e))?;
    Ok(0)
}

/// `tapcred sessions clear [--profile P]`.
pub fn clear(profile: Option<&str>, ctx: &Ctx<'_>, out: &mut dyn Write) -> Result<i32> {
    let cache = SessionCache::open_default(ctx.env, ctx.ui);
    let n = cache.clear(profile);
    let what = match profile {
        Some(p) => format!(" of profile \"{p}\""),
        None => String::new(),
    };
    writeln!(
        out,
        "removed {n} cached session{}{what}",
        if n == 1 { "" } else { "s" }
    )
    .map_err(|e| Error::io(format!("cannot write to stdout: {e}")).with_source(e))?;
    Ok(0)
}

fn table(entries: &[EntrySummary], now: time::OffsetDateTime) -> String {
    let rows: Vec<[String; 5]> = entries
        .iter()
        .map(|e| {
            [
                e.profile.clone(),
                e.kind.as_str().to_owned(),
                format_rfc3339(e.expiration),
                left(e.expiration - now),
                e.mfa_serial.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let head = ["PROFILE", "KIND", "EXPIRES", "LEFT", "MFA SERIAL"];
    let mut w = head.map(str::len);
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let mut s = String::new();
    for r in std::iter::once(head.map(str::to_owned)).chain(rows) {
        let line = format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {:<w3$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3]
        );
        s.push_str(line.trim_end());
        s.push('\n');
    }
    s
}

fn left(d: time::Duration) -> String {
    let s = d.whole_seconds();
    if s <= 0 {
        "expired".into()
    } else if s < 3600 {
        format!("{}m", s / 60)
    } else {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::Credentials;
    use crate::cache::{CacheKey, Entry, SessionKind};
    use crate::ui::RecordingUi;

    fn setup() -> (tempfile::TempDir, HashMap<String, String>, RecordingUi) {
        let t = tempfile::tempdir().unwrap();
        let mut env = HashMap::new();
        env.insert(
            "XDG_CACHE_HOME".to_string(),
            t.path().to_string_lossy().into_owned(),
        );
        (t, env, RecordingUi::new())
    }

    fn store(env: &HashMap<String, String>, ui: &RecordingUi, profile: &str, role: &str) {
        let c = SessionCache::open_default(env, ui);
        let now = clock::now_utc();
        let e = Entry {
            kind: SessionKind::AssumeRole,
            profile: profile.into(),
            mfa_serial: Some("arn:aws:iam::1:mfa/u".into()),
            created: now,
            credentials: Credentials::new(
                "ASIAX",
                "TOPSECRET",
                Some("TOKENSECRET".into()),
                Some(now + time::Duration::minutes(90)),
            ),
        };
        let k = CacheKey::builder(SessionKind::AssumeRole)
            .role_arn(role)
            .build();
        assert!(c.put(&k, &e, ui));
    }

    #[test]
    fn list_shows_sessions_without_secrets_and_clear_removes_them() {
        let (t, env, ui) = setup();
        let ctx = Ctx { env: &env, ui: &ui };
        let mut out = Vec::new();
        list(false, &ctx, &mut out).unwrap();
        assert!(out.is_empty());
        store(&env, &ui, "dev", "r1");
        store(&env, &ui, "admin", "r2");
        let mut out = Vec::new();
        list(false, &ctx, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("PROFILE"));
        assert!(lines[1].starts_with("admin") && lines[1].contains("AssumeRole"));
        assert!(
            lines[1].contains("1h29m") || lines[1].contains("1h30m"),
            "{text}"
        );
        assert!(lines[2].starts_with("dev"));
        assert!(!text.contains("SECRET") && !text.contains("ASIAX"));

        let mut out = Vec::new();
        list(true, &ctx, &mut out).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 2);
        assert_eq!(v[0]["profile"], "admin");
        assert_eq!(v[0]["kind"], "AssumeRole");
        assert!(v[0]["seconds_left"].as_i64().unwrap() > 5000);
        assert!(!String::from_utf8(out).unwrap().contains("SECRET"));

        let mut out = Vec::new();
        clear(Some("dev"), &ctx, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "removed 1 cached session of profile \"dev\"\n"
        );
        let mut out = Vec::new();
        clear(None, &ctx, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "removed 1 cached session\n"
        );
        assert!(SessionCache::open_default(&env, &ui).list().is_empty());
        drop(t);
    }
}
