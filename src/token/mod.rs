//! The token layer (HAL): "give me the TOTP code for this `mfa_serial`, for this time".
//! One implementation per source; [`select`] picks one as docs/architecture.md's `auto` rule says.

use std::fmt;
use std::path::PathBuf;

use zeroize::Zeroizing;

use crate::error::Result;
use crate::ui::Ui;

pub mod device;
pub mod hid;
pub mod keylock;
pub mod oath;
pub mod otp;
pub mod pcsc;
pub mod piv;
pub mod prompt;
pub mod software;
pub mod transport;
pub mod vault;
pub mod x509;

pub use crate::env::{EnvLookup, RealEnv};

/// `tapcred_token` in a profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenKind {
    #[default]
    Auto,
    Oath,
    Software,
    Vault,
    Prompt,
}

impl TokenKind {
    pub const NAMES: &'static [&'static str] = &["auto", "oath", "software", "vault", "prompt"];

    pub fn parse(s: &str) -> Option<TokenKind> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "auto" => TokenKind::Auto,
            "oath" => TokenKind::Oath,
            "software" => TokenKind::Software,
            "vault" => TokenKind::Vault,
            "prompt" => TokenKind::Prompt,
            _ => return None,
        })
    }
}

pub const DEFAULT_SECRET_ENV: &str = "TAPCRED_TOTP_SECRET";

/// The `tapcred_*` keys of a profile, already validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSettings {
    pub kind: TokenKind,
    pub oath_account: Option<String>,
    pub yubikey_serial: Option<u32>,
    /// Name of the env var holding the seed (default `TAPCRED_TOTP_SECRET`).
    pub totp_secret_env: String,
    pub totp_secret_file: Option<PathBuf>,
    /// The profile these settings came from, for messages.
    pub profile: String,
}

impl Default for TokenSettings {
    fn default() -> Self {
        TokenSettings {
            kind: TokenKind::Auto,
            oath_account: None,
            yubikey_serial: None,
            totp_secret_env: DEFAULT_SECRET_ENV.to_owned(),
            totp_secret_file: None,
            profile: String::new(),
        }
    }
}

/// A one-time code and the time window it belongs to.
pub struct Code {
    pub digits: Zeroizing<String>,
    /// Unix seconds: the code is valid from `window_start` (inclusive) to `window_end`.
    pub window_start: u64,
    pub window_end: u64,
}

impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Code")
            .field("digits", &"<redacted>")
            .field("window_start", &self.window_start)
            .field("window_end", &self.window_end)
            .finish()
    }
}

/// What the engine asks a source for.
#[derive(Debug, Clone, Copy)]
pub struct CodeRequest<'a> {
    /// The profile's `mfa_serial` (ARN or hardware serial).
    pub mfa_serial: &'a str,
    /// The profile name, for messages.
    pub profile: &'a str,
    /// Unix time to compute the code for. The engine has already made sure this time is in
    /// a window never used before for this serial and with enough time left.
    pub at: u64,
}

pub trait TokenSource {
    /// Short description for messages and logs, e.g. `YubiKey 12345678 OATH "Amazon Web Services:alice@1111"`.
    fn describe(&self) -> String;
    /// Period in seconds of this source's codes (30 for AWS virtual MFA).
    fn period(&self) -> u64 {
        30
    }
    /// Whether the source can compute a code for any `at` (seeds, OATH). A typed code is
    /// always "now", so the engine waits for a fresh window before asking for it.
    fn computes_any_time(&self) -> bool {
        true
    }
    fn code(&mut self, req: &CodeRequest<'_>, ui: &dyn Ui) -> Result<Code>;
}

/// Window `[start, end)` of `period`-second steps that contains `at`.
pub fn window_of(at: u64, period: u64) -> (u64, u64) {
    let start = at - at % period;
    (start, start + period)
}

mod select;
pub use select::{Sources, select, select_with};
