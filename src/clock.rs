//! Wall-clock time in one place, so tests can reason about it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub fn unix_to_system(t: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(t)
}

pub fn now_utc() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

/// Window `[start, end)` of `period`-second steps that contains `at`.
pub fn window_of(at: u64, period: u64) -> (u64, u64) {
    let start = at - at % period;
    (start, start + period)
}
