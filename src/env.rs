//! Where environment lookups come from: the CLI passes the real environment, tests pass a
//! map, so nothing below `cli` reads `std::env` for a setting directly.

/// Looks up one environment variable.
pub trait EnvLookup {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct RealEnv;

impl EnvLookup for RealEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl EnvLookup for std::collections::HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}
