//! The TOTP step ledger: the end of the last time window whose code was sent, per
//! `mfa_serial`, shared by every tapcred process. AWS rejects a code used twice, so the
//! engine does, under [`SessionCache::lock_serial`]:
//!
//! ```text
//! last = cache.last_window_end(serial)
//! (at, wait) = plan_code_time(now, last, period, MIN_CODE_SECONDS_LEFT)
//! wait → ui.wait_until("waiting for the next code window", wait)
//! code = source.code(at)   → STS call → cache.record(serial, code.window_end)
//! ```
//!
//! The ledger is the user's, not the cache folder's: see [`SessionCache::with_ledger_dir`].

use serde::{Deserialize, Serialize};

use super::{FORMAT_VERSION, SessionCache, key::serial_hash};
use crate::clock::window_of;
use crate::ui::Ui;

/// A code with less time than this left in its window is not sent (it could expire on the
/// way to STS); the next window's code is used instead.
pub const MIN_CODE_SECONDS_LEFT: u64 = 3;

/// When to compute the next code: returns `(at, wait_until)`.
///
/// `at` is the earliest time ≥ `now` whose window (of `period` seconds) starts at or after
/// `last_window_end` and has at least `min_left_secs` left; `wait_until` is `Some(at)` when
/// that lies in the future (the caller must wait until then: a code is only valid in its own
/// window), else `None`.
///
/// Clock jumps: a `last_window_end` in the future means the clock went back after it was
/// recorded. If it lies at most one window past the current one (a small step back, e.g. an
/// NTP correction) it is honoured — waiting up to two periods is better than a rejected code.
/// Further ahead than that, it came from a clock that disagrees with ours by more than a
/// window, so it no longer identifies any window we could use: the wait is capped at the
/// next window boundary (less than one period), never "until the clock catches up".
/// `record` then overwrites the ledger with the new, earlier window end.
pub fn plan_code_time(
    now: f64,
    last_window_end: Option<u64>,
    period: u64,
    min_left_secs: u64,
) -> (u64, Option<u64>) {
    let period = period.max(1);
    // A rule that could never be met would move to the next window forever.
    let min_left = min_left_secs.min(period - 1) as f64;
    let now = if now.is_finite() { now.max(0.0) } else { 0.0 };
    let now_s = now.floor() as u64;
    let (_, current_end) = window_of(now_s, period);

    let mut t = now_s;
    if let Some(last) = last_window_end
        && last > t
    {
        t = if last <= current_end + period {
            last
        } else {
            current_end
        };
    }
    let (_, end) = window_of(t, period);
    let left = end as f64 - now.max(t as f64);
    if left < min_left {
        t = end;
    }
    if t as f64 > now {
        // t is a future window boundary (or a later second of the current window when the
        // ledger ended mid-window with another period): wait for it.
        (t, Some(t))
    } else {
        (t, None)
    }
}

#[derive(Serialize, Deserialize)]
struct StepDoc {
    version: u32,
    window_end: u64,
}

impl SessionCache {
    /// End of the last window whose code was sent for `serial` by any tapcred process
    /// (None when never, or when the ledger file is unreadable or not ours).
    pub fn last_window_end(&self, serial: &str, ui: &dyn Ui) -> Option<u64> {
        let h = serial_hash(serial);
        let mem = self.mem_ledger.lock().unwrap().get(&h).copied();
        let from_file = self.ledger_home(ui).and_then(|d| {
            let buf = self
                .read_private(&d.join("steps").join(format!("{h}.json")))
                .ok()?;
            let doc: StepDoc = serde_json::from_slice(&buf).ok()?;
            (doc.version == FORMAT_VERSION).then_some(doc.window_end)
        });
        // This process's own record wins over nothing; the file (shared) wins otherwise,
        // except that a later record of ours that failed to persist must still count.
        match (from_file, mem) {
            (Some(f), Some(m)) => Some(f.max(m)),
            (f, m) => f.or(m),
        }
    }

    /// Record that a code from the window ending at `window_end` was sent for `serial`.
    /// Overwrites the previous value (also an apparently later one: see [`plan_code_time`]
    /// on clock jumps). If the ledger cannot be written, this process still remembers it and
    /// the person is warned once.
    pub fn record(&self, serial: &str, window_end: u64, ui: &dyn Ui) {
        let h = serial_hash(serial);
        self.mem_ledger
            .lock()
            .unwrap()
            .insert(h.clone(), window_end);
        let Some(d) = self.ledger_home(ui) else {
            return;
        };
        let steps = d.join("steps");
        let doc = StepDoc {
            version: FORMAT_VERSION,
            window_end,
        };
        let buf = serde_json::to_vec(&doc).unwrap_or_default();
        if let Err(e) = self.write_atomic(&steps, &steps.join(format!("{h}.json")), &buf) {
            self.warn_once(
                ui,
                &format!(
                    "cannot record the last code window in {} ({e}); another tapcred process could reuse this code (check disk space and permissions)",
                    steps.display()
                ),
            );
        }
    }
}

impl SessionCache {
    /// Undo [`record`](Self::record)`(serial, window_end)` for a request that never left this
    /// machine (connection refused, DNS failure): STS saw no code, so the window is still
    /// usable. Puts back `previous` (None: no record), unless another process has recorded a
    /// different window meanwhile. Takes the serial's lock.
    pub fn unrecord(&self, serial: &str, window_end: u64, previous: Option<u64>, ui: &dyn Ui) {
        let Ok(_guard) = self.lock_serial(serial, ui) else {
            return;
        };
        let h = serial_hash(serial);
        {
            let mut mem = self.mem_ledger.lock().unwrap();
            if mem.get(&h) == Some(&window_end) {
                match previous {
                    Some(p) => mem.insert(h.clone(), p),
                    None => mem.remove(&h),
                };
            }
        }
        let Some(d) = self.ledger_home(ui) else {
            return;
        };
        let steps = d.join("steps");
        let path = steps.join(format!("{h}.json"));
        let current = self
            .read_private(&path)
            .ok()
            .and_then(|buf| serde_json::from_slice::<StepDoc>(&buf).ok())
            .map(|doc| doc.window_end);
        if current != Some(window_end) {
            return;
        }
        match previous {
            Some(p) => {
                let doc = StepDoc {
                    version: FORMAT_VERSION,
                    window_end: p,
                };
                let buf = serde_json::to_vec(&doc).unwrap_or_default();
                let _ = self.write_atomic(&steps, &path, &buf);
            }
            None => {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: u64 = 30;
    const M: u64 = MIN_CODE_SECONDS_LEFT;

    #[test]
    fn fresh_serial_uses_now() {
        assert_eq!(plan_code_time(1000.2, None, P, M), (1000, None));
        // 1000 is in [990, 1020): 19.8 s left.
        assert_eq!(plan_code_time(1019.0, None, P, M), (1020, Some(1020)));
    }

    #[test]
    fn too_little_left_moves_to_next_window() {
        // 1017.0 → 3.0 s left: enough.
        assert_eq!(plan_code_time(1017.0, None, P, M), (1017, None));
        // 1017.5 → 2.5 s left: next window.
        assert_eq!(plan_code_time(1017.5, None, P, M), (1020, Some(1020)));
        assert_eq!(plan_code_time(1019.99, None, P, M), (1020, Some(1020)));
        // The first instant of a window is fine.
        assert_eq!(plan_code_time(1020.0, None, P, M), (1020, None));
    }

    #[test]
    fn used_window_waits_for_the_next_one() {
        // A code of [990, 1020) was sent; at 1001 we must wait for 1020.
        assert_eq!(plan_code_time(1001.0, Some(1020), P, M), (1020, Some(1020)));
        // Old ledger entries do not delay anything.
        assert_eq!(plan_code_time(1001.0, Some(990), P, M), (1001, None));
        assert_eq!(plan_code_time(1001.0, Some(0), P, M), (1001, None));
        // Exactly at the boundary the new window is usable at once.
        assert_eq!(plan_code_time(1020.0, Some(1020), P, M), (1020, None));
    }

    #[test]
    fn waiting_is_never_longer_than_two_periods() {
        for now10 in 9900..10_500u64 {
            let now = now10 as f64 / 10.0;
            for last in [None, Some(0), Some(990), Some(1020), Some(1050), Some(1080)]
                .into_iter()
                .chain((0..20).map(|k| Some(1000 + k * 1000)))
            {
                let (at, wait) = plan_code_time(now, last, P, M);
                assert!(at as f64 >= now.floor(), "at {at} before now {now}");
                let (s, e) = window_of(at, P);
                assert!(
                    e as f64 - now.max(at as f64) >= M as f64,
                    "too little left: now {now} at {at}"
                );
                assert!(
                    at - now.floor() as u64 <= 2 * P,
                    "waits too long: {now} {last:?}"
                );
                assert_eq!(wait.is_some(), at as f64 > now);
                if let Some(l) = last
                    && l <= window_of(now as u64, P).1 + P
                {
                    // Honoured ledger: the chosen window starts at or after the last end.
                    assert!(
                        s >= l || at >= l,
                        "reused window: now {now} last {l} at {at}"
                    );
                }
            }
        }
    }

    #[test]
    fn clock_jumped_back_far_caps_the_wait_at_one_window() {
        // Ledger written at 1_000_000 s; the clock went back to 1000.5.
        let (at, wait) = plan_code_time(1000.5, Some(1_000_020), P, M);
        assert_eq!((at, wait), (1020, Some(1020)));
        // Small step back (ledger is the next window's end): honoured.
        let (at, wait) = plan_code_time(1000.5, Some(1050), P, M);
        assert_eq!((at, wait), (1050, Some(1050)));
        // One second beyond that: treated as a jump.
        let (at, _) = plan_code_time(1000.5, Some(1051), P, M);
        assert_eq!(at, 1020);
    }

    #[test]
    fn odd_inputs_do_not_panic_or_loop() {
        assert_eq!(plan_code_time(f64::NAN, None, P, M), (0, None));
        assert_eq!(plan_code_time(-5.0, None, P, M), (0, None));
        // period 0 is treated as 1; min_left ≥ period is clamped.
        let (at, _) = plan_code_time(10.5, None, 0, 5);
        assert!(at >= 10);
        let (at, w) = plan_code_time(10.0, None, 5, 99);
        assert_eq!((at, w), (10, None));
        // A ledger from a different period (60 s windows) still moves forward.
        let (at, w) = plan_code_time(1001.0, Some(1020), 60, M);
        assert_eq!((at, w), (1020, Some(1020)));
    }
}
