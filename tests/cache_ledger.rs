//! "Never reuse a code" holds per user, whichever folder the session cache ends up in: a
//! code is sent (the ledger notes its window), then the cache folder turns out to belong to
//! another user (a `sudo` run made it), so tapcred continues without a cache; the next call
//! within the same TOTP window must wait for a new window instead of resending the code
//! STS already took (which STS refuses: exit 5). Runs as root (to hand the folder to
//! another user); skips loudly otherwise unless CI=true.
#![cfg(unix)] // chown and uids; the Windows build is checked by clippy and Wine

mod common;

use std::os::unix::fs::MetadataExt;
use std::time::{SystemTime, UNIX_EPOCH};

use common::Home;
use tapcred_testkit::sts_double::{StsDouble, TokenOutcome};

const NOBODY: u32 = 65_534;

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn a_cache_folder_of_another_user_does_not_resend_a_used_code() {
    let test = "a_cache_folder_of_another_user_does_not_resend_a_used_code";
    if !rustix::process::geteuid().is_root() {
        tapcred_testkit::ci::skip(test, "needs root to give the cache folder to another user");
        return;
    }
    let d = StsDouble::start_design().expect("start the STS double");
    let home = Home::design_against(&d.endpoint());
    // Both calls inside one 30-second window: start early in a window.
    let into = unix_now() % 30.0;
    if into > 8.0 {
        std::thread::sleep(std::time::Duration::from_secs_f64(30.0 - into + 0.2));
    }
    let window = (unix_now() / 30.0).floor() as u64;

    home.run(&["credential-process", "--profile", "session"])
        .ok();
    let cache = home.cache_dir();
    assert!(cache.is_dir());
    // The folder now belongs to someone else (as after `sudo tapcred …` created it).
    rustix::fs::chown(
        &cache,
        Some(rustix::fs::Uid::from_raw(NOBODY)),
        Some(rustix::fs::Gid::from_raw(NOBODY)),
    )
    .unwrap();
    assert_eq!(std::fs::metadata(&cache).unwrap().uid(), NOBODY);

    let r = home.run(&["credential-process", "--profile", "session"]);
    let events = d.token_code_events();
    r.ok();
    assert!(
        (unix_now() / 30.0).floor() as u64 > window,
        "the second call waited for a new window"
    );
    assert!(
        r.stderr.contains("continuing without a session cache"),
        "{}",
        r.stderr
    );
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(
        events.iter().all(|e| e.outcome == TokenOutcome::Accepted),
        "a code was sent twice: {events:?}"
    );
    assert_ne!(events[0].matched_step, events[1].matched_step);
}
