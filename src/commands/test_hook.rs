//! The one test seam of tapcred's journalled changes, read in debug builds only (release
//! builds never look): `TAPCRED_TEST_HOOK=stall:POINT` stops the change at POINT until it is
//! killed (the SIGKILL tests), `panic:POINT` panics there (the tests that the undo still
//! runs). POINT is `KIND:STEP`: the journal's kind and the step just recorded
//! (`enroll:created`, `rotate:store`), or a point the command names
//! (`import-keys:vault-written`).

use serde_json::Value;

use crate::env::EnvLookup;
use crate::error::Result;
use crate::journal::Journal;

/// The environment variable the seam reads.
pub const ENV: &str = "TAPCRED_TEST_HOOK";

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
    reached(env, &point);
    Ok(())
}

/// The change reached `point`: stall or panic there when the test asked for it.
#[cfg(debug_assertions)]
pub(crate) fn reached(env: &dyn EnvLookup, point: &str) {
    let Some(hook) = env.var(ENV) else {
        return;
    };
    match hook.split_once(':') {
        Some(("stall", p)) if p == point => {
            eprintln!("tapcred test hook: stalled at {point}");
            loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            }
        }
        Some(("panic", p)) if p == point => panic!("tapcred test hook: panic at {point}"),
        _ => {}
    }
}

#[cfg(not(debug_assertions))]
pub(crate) fn reached(_env: &dyn EnvLookup, _point: &str) {}
