//! Interrupted changes: the journals killed multi-step changes left behind.

use super::report::Doctor;
use crate::env::EnvLookup;
use crate::error::ErrorKind;

/// Interrupted changes: every journal a killed multi-step change left (enroll, vault
/// import-keys, …) is a problem until it is finished or undone.
pub(super) fn interrupted_changes(d: &mut Doctor, env: &dyn EnvLookup) {
    let Some(dir) = crate::journal::default_dir(env) else {
        return;
    };
    for p in crate::journal::pending(&dir) {
        match &p.record {
            Ok(r) => {
                let when = time::OffsetDateTime::from_unix_timestamp(r.started as i64)
                    .map(crate::credentials::format_rfc3339)
                    .unwrap_or_else(|_| r.started.to_string());
                let last = r.steps.last().map(|s| s.name.as_str()).unwrap_or("none");
                d.problem(
                    "changes",
                    format!(
                        "interrupted change: {} of \"{}\" started {when}, last step \"{last}\" (journal {})",
                        r.kind,
                        r.subject,
                        p.path.display()
                    ),
                    crate::commands::enroll::pending_fix(&r.kind, &r.subject),
                    ErrorKind::Io.exit_code(),
                );
            }
            Err(e) => d.problem(
                "changes",
                format!("unreadable journal {}: {e}", p.path.display()),
                format!("check what it was doing, then remove {}", p.path.display()),
                ErrorKind::Io.exit_code(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::doctor::report::Status;

    #[test]
    fn every_pending_journal_is_a_problem_with_its_command() {
        let dir = tempfile::tempdir().unwrap();
        let env: std::collections::HashMap<String, String> = [(
            "XDG_DATA_HOME".to_string(),
            dir.path().display().to_string(),
        )]
        .into();
        let mut d = Doctor { checks: Vec::new() };
        interrupted_changes(&mut d, &env);
        assert!(d.checks.is_empty(), "no journal, no check");
        let jdir = crate::journal::default_dir(&env).unwrap();
        let mut j = crate::journal::Journal::begin(&jdir, "import-keys", "toolkit-user").unwrap();
        j.step("renamed", serde_json::Value::Null).unwrap();
        crate::journal::Journal::begin(&jdir, "enroll", "mfa").unwrap();
        interrupted_changes(&mut d, &env);
        assert_eq!(d.checks.len(), 2, "{:?}", d.checks);
        assert!(
            d.checks
                .iter()
                .all(|c| c.status == Status::Problem && c.code == Some(7))
        );
        let enroll = &d.checks[0];
        assert!(enroll.message.contains("enroll of \"mfa\""), "{enroll:?}");
        assert!(enroll.message.contains("last step \"none\""), "{enroll:?}");
        assert!(
            enroll
                .fix
                .as_deref()
                .unwrap()
                .contains("tapcred enroll --profile mfa --undo"),
            "{enroll:?}"
        );
        let import = &d.checks[1];
        assert!(
            import.message.contains("last step \"renamed\""),
            "{import:?}"
        );
        assert_eq!(
            import.fix.as_deref(),
            Some("run `tapcred vault import-keys` again")
        );
    }
}
