//! What `doctor` found: the checks as they are collected, and the report printed as text.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;

use crate::error::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Note,
    Problem,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// files, profile, token, pcsc, yubikey, hid, udev, clock, cache
    pub area: &'static str,
    pub status: Status,
    pub message: String,
    /// What to do about it (problems and notes).
    pub fix: Option<String>,
    /// The exit code this problem maps to (docs/configuration.md "Exit codes").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub profile: String,
    pub config_file: PathBuf,
    pub credentials_file: PathBuf,
    /// Profiles from the selected one to the one holding the keys.
    pub chain: Vec<String>,
    pub checks: Vec<Check>,
    pub yubikeys: Vec<YubiKeyReport>,
    pub clock_skew_seconds: Option<i64>,
    pub next_step: Option<String>,
    pub exit_code: i32,
}

#[derive(Debug, Serialize)]
pub struct YubiKeyReport {
    pub serial: Option<u32>,
    pub firmware: Option<String>,
    pub reader: String,
    pub oath_accounts: Vec<String>,
    pub locked: bool,
}

pub(super) struct Doctor {
    pub(super) checks: Vec<Check>,
}

impl Doctor {
    pub(super) fn ok(&mut self, area: &'static str, message: impl Into<String>) {
        self.push(area, Status::Ok, message.into(), None, None);
    }
    pub(super) fn note(
        &mut self,
        area: &'static str,
        message: impl Into<String>,
        fix: Option<String>,
    ) {
        self.push(area, Status::Note, message.into(), fix, None);
    }
    pub(super) fn problem(
        &mut self,
        area: &'static str,
        message: impl Into<String>,
        fix: impl Into<String>,
        code: i32,
    ) {
        self.push(
            area,
            Status::Problem,
            message.into(),
            Some(fix.into()),
            Some(code),
        );
    }
    /// An error from another layer: its text names the problem and (after the last "; ")
    /// the fix.
    pub(super) fn error(&mut self, area: &'static str, e: &Error) {
        let msg = e.message();
        let fix = match msg.rsplit_once("; ") {
            Some((_, fix)) => fix.to_owned(),
            None => format!("see: {msg}"),
        };
        self.problem(area, msg, fix, e.exit_code());
    }
    fn push(
        &mut self,
        area: &'static str,
        status: Status,
        message: String,
        fix: Option<String>,
        code: Option<i32>,
    ) {
        self.checks.push(Check {
            area,
            status,
            message,
            fix,
            code,
        });
    }
}

pub fn render(r: &Report) -> String {
    let mut s = format!("tapcred doctor: profile \"{}\"\n", r.profile);
    for c in &r.checks {
        let tag = match c.status {
            Status::Ok => "ok     ",
            Status::Note => "note   ",
            Status::Problem => "PROBLEM",
        };
        let _ = writeln!(s, "  {tag} {:8} {}", c.area, c.message);
    }
    match (&r.next_step, r.exit_code) {
        (Some(step), 0) => {
            let _ = writeln!(s, "no problems found; next: {step}");
        }
        (Some(step), _) => {
            let _ = writeln!(s, "next step: {step}");
        }
        (None, _) => {
            let _ = writeln!(
                s,
                "no problems found; try: tapcred exec --profile {} -- aws sts get-caller-identity",
                r.profile
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fix_is_the_last_clause_of_an_error() {
        let mut d = Doctor { checks: Vec::new() };
        d.error(
            "profile",
            &Error::config("profile \"a\": role_arn is bad; copy the ARN"),
        );
        assert_eq!(d.checks[0].fix.as_deref(), Some("copy the ARN"));
        assert_eq!(d.checks[0].code, Some(3));
    }
}
