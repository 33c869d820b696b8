//! What the journalled changes of a profile (enroll, rotate) share: each step recorded before
//! it is taken (and the test point after it), and the refusal to start while an earlier
//! run's journal is pending.

use std::path::Path;

use serde_json::Value;

use crate::commands::test_hook;
use crate::env::EnvLookup;
use crate::error::{Error, Result};
use crate::journal::{BeginError, Journal, Pending};

/// Record the step `name` in `journal` (on disk before it returns), then pass the test point
/// `KIND:NAME`.
pub(crate) fn step(
    journal: &mut Journal,
    env: &dyn EnvLookup,
    name: &str,
    data: Value,
) -> Result<()> {
    journal.step(name, data)?;
    let point = format!("{}:{name}", journal.record().kind);
    test_hook::reached(env, &point);
    Ok(())
}

/// The refusal to start a `kind` change of `profile` while `pending` (an earlier one's
/// journal) is there; `fix` says how to finish or undo it.
pub(crate) fn earlier_interrupted(
    kind: &str,
    profile: &str,
    pending: &Pending,
    fix: &str,
) -> Error {
    let last = pending
        .record
        .as_ref()
        .ok()
        .and_then(|r| r.steps.last().map(|s| s.name.clone()))
        .unwrap_or_else(|| "unknown".into());
    Error::usage(format!(
        "profile \"{profile}\": an earlier {kind} was interrupted (last step: {last}; journal {}); {fix}",
        pending.path.display()
    ))
}

/// Begin the journal of a `kind` change of `profile`, or say that another one is running or
/// was interrupted; `fix` says how to finish or undo that one.
pub(crate) fn begin(dir: &Path, kind: &str, profile: &str, fix: &str) -> Result<Journal> {
    match Journal::begin(dir, kind, profile) {
        Ok(j) => Ok(j),
        Err(BeginError::Io(e)) => Err(e),
        Err(BeginError::Pending(p)) => Err(Error::usage(format!(
            "profile \"{profile}\": another {kind} of this profile is running or was interrupted (journal {}); {fix}",
            p.path.display()
        ))),
    }
}
