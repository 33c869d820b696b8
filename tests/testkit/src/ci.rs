//! The one CI gate for every test: whether the run is a CI run (then every stack a test
//! needs must start, and a missing one is a failure), and loud skip notices otherwise.
//!
//! `CI` counts as set for any non-empty value except `false` and `0` (case-insensitive,
//! surrounding spaces ignored): `CI=true`, `CI=1`, `CI=yes` all mean CI, as GitHub, GitLab
//! and most runners set it.

use std::io::Write;

/// Whether this is a CI run (env `CI`, see the module doc).
pub fn is_ci() -> bool {
    is_ci_value(std::env::var("CI").ok().as_deref())
}

/// The truth table behind [`is_ci`]: `None` (unset), `""`, `"false"`, `"0"` are not CI;
/// every other value is.
pub fn is_ci_value(v: Option<&str>) -> bool {
    match v.map(str::trim) {
        None | Some("") | Some("0") => false,
        Some(v) => !v.eq_ignore_ascii_case("false"),
    }
}

/// A notice written straight to the process's stderr: libtest captures `eprintln!` of
/// passing tests, but not a direct write, so it is shown without `--nocapture`.
pub fn notice(message: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{message}");
}

/// Skip `test` because `why` (a missing tool, no root…): a loud `SKIPPED` line off CI;
/// under CI a panic, so the run fails instead of passing without testing.
pub fn skip(test: &str, why: &str) {
    if is_ci() {
        panic!("{test}: CI is set but {why}");
    }
    notice(&format!(
        "SKIPPED {test}: {why} (under CI this is a failure)"
    ));
}

/// `true` when `present`; otherwise [`skip`] (panics under CI) and `false`.
pub fn require(test: &str, what: &str, present: bool) -> bool {
    if !present {
        skip(test, &format!("{what} is missing"));
    }
    present
}

#[cfg(test)]
mod tests {
    use super::is_ci_value;

    #[test]
    fn truth_table() {
        for off in [
            None,
            Some(""),
            Some("  "),
            Some("0"),
            Some("false"),
            Some("FALSE"),
            Some(" False "),
        ] {
            assert!(!is_ci_value(off), "{off:?} is not CI");
        }
        for on in ["true", "TRUE", "1", "yes", "on", "GitHub", "2"] {
            assert!(is_ci_value(Some(on)), "{on:?} is CI");
        }
    }
}
