//! The session cache: what it holds for the profile, and how long the profile works from it.

use super::report::{Doctor, Status};
use crate::cache::SessionCache;
use crate::clock;
use crate::env::EnvLookup;
use crate::error::ErrorKind;
use crate::ui::Headless;

/// The cache's state for `name`; the end of its longest valid session, if any.
pub(super) fn cache_check(
    d: &mut Doctor,
    name: &str,
    env: &dyn EnvLookup,
    ui: &Headless,
) -> Option<time::OffsetDateTime> {
    let cache = SessionCache::open_default(env, ui);
    if !cache.enabled() {
        // The cache layer's own warning (collected from the Ui) says why and how to fix it.
        return None;
    }
    let now = clock::now_utc();
    let mine: Vec<_> = cache
        .list()
        .into_iter()
        .filter(|e| e.profile == name)
        .collect();
    let valid = mine.iter().filter(|e| e.expiration > now).count();
    let dir = cache.dir().display();
    match (mine.len(), valid) {
        (0, _) => d.ok(
            "cache",
            format!("no cached session for \"{name}\" in {dir} (the next call asks for a code)"),
        ),
        (_, 0) => d.ok(
            "cache",
            format!(
                "{} expired session(s) for \"{name}\" in {dir} (the next call asks for a code)",
                mine.len()
            ),
        ),
        (_, n) => {
            let left = mine
                .iter()
                .map(|e| (e.expiration - now).whole_minutes())
                .max()
                .unwrap_or(0);
            d.ok(
                "cache",
                format!(
                    "{n} valid session(s) for \"{name}\" in {dir}, the longest for {}h{:02}m",
                    left / 60,
                    left % 60
                ),
            );
            return mine.iter().map(|e| e.expiration).max();
        }
    }
    None
}

/// A profile whose code source does not answer still works while a cached session lasts:
/// the token problems become warnings saying until when, and what the next refresh needs.
pub(super) fn works_from_the_cache(d: &mut Doctor, until: time::OffsetDateTime) {
    let until = until
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    for c in &mut d.checks {
        if c.area == "token" && c.code == Some(ErrorKind::Token.exit_code()) {
            c.status = Status::Note;
            c.code = None;
            c.message = format!(
                "works until {until} from the cached session; the next refresh needs a code source: {}",
                c.message
            );
        }
    }
}
