//! The one test seam of tapcred's journalled changes, read in debug builds only (release
//! builds never look): `TAPCRED_TEST_HOOK=stall:POINT` stops the change at POINT until it is
//! killed (the SIGKILL tests), `panic:POINT` panics there (the tests that the undo still
//! runs). POINT is `KIND:STEP`: the journal's kind and the step just recorded
//! (`enroll:created`, `rotate:store`: [`crate::commands::journalled::step`]), or a point the
//! command names (`import-keys:vault-written`).

use crate::env::EnvLookup;

/// The environment variable the seam reads.
pub const ENV: &str = "TAPCRED_TEST_HOOK";

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
