//! One error type for the whole library. Every error carries a [`ErrorKind`], which decides
//! the process exit code, and a one-line message that names the file, profile, key or device
//! involved and says how to fix it. Messages never contain secrets.

use std::fmt;

/// What went wrong, coarsely; each kind has a stable exit code (documented in docs/configuration.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Unexpected failure inside tapcred (exit 1).
    Internal,
    /// Bad command line (exit 2; clap uses 2 as well).
    Usage,
    /// AWS config/credentials files, profiles, tapcred_* keys, seed files (exit 3).
    Config,
    /// Token source: no YubiKey, no matching account, touch timeout, wrong password (exit 4).
    Token,
    /// STS refused: wrong code, wrong serial, role requires MFA, bad keys (exit 5).
    Auth,
    /// Could not reach the STS endpoint, or it answered with something unusable (exit 6).
    Network,
    /// Local state: cache directory, locks, child process spawning (exit 7).
    Io,
}

impl ErrorKind {
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorKind::Internal => 1,
            ErrorKind::Usage => 2,
            ErrorKind::Config => 3,
            ErrorKind::Token => 4,
            ErrorKind::Auth => 5,
            ErrorKind::Network => 6,
            ErrorKind::Io => 7,
        }
    }
}

/// Why an STS call failed, finer than [`ErrorKind`], for the decisions the engine makes
/// (drop a cached session, keep or burn a code window, retry with the next code). Decisions
/// are made on this, never on message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// STS does not accept the signing credentials' token: unknown/revoked
    /// (`InvalidClientTokenId`) or expired (`ExpiredToken`). For a cached session: drop it.
    SessionRejected,
    /// STS refused the MFA code (wrong, or already used).
    CodeRejected,
    /// The request never left this machine (bad endpoint URL, DNS failure, connection
    /// refused, connect timeout): STS saw no code.
    NotSent,
    /// The request may have reached STS, but no answer came back: a 5xx, or the connection
    /// dropped after the request was written. A code in it may have been consumed.
    NoAnswer,
    /// No answer within the read timeout. A code in it may have been consumed.
    TimedOut,
    /// An answer came back that is not a usable STS answer (unparsable, no credentials).
    BadAnswer,
    /// STS is throttling.
    Throttled,
    /// Any other refusal by STS (access denied, validation, …).
    Refused,
    /// Not an STS reason: a device is plugged in but it is not the one asked for (a FIDO2
    /// key without the vault unlocker's credential). The vault tries its next unlocker.
    WrongDevice,
}

impl Reason {
    /// The request may have reached STS, so a code it carried may be used up.
    pub fn may_have_reached_sts(self) -> bool {
        !matches!(self, Reason::NotSent | Reason::WrongDevice)
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    reason: Option<Reason>,
    message: String,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            reason: None,
            message: message.into(),
        }
    }
    /// The same error with a typed [`Reason`] (STS call failures).
    pub fn with_reason(mut self, reason: Reason) -> Self {
        self.reason = Some(reason);
        self
    }
    pub fn reason(&self) -> Option<Reason> {
        self.reason
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Usage, message)
    }
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }
    pub fn token(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Token, message)
    }
    pub fn auth(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Auth, message)
    }
    pub fn network(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Network, message)
    }
    pub fn io(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Io, message)
    }
    pub fn message(&self) -> &str {
        &self.message
    }
    pub fn exit_code(&self) -> i32 {
        self.kind.exit_code()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason {
            Some(r) => write!(f, "Error({:?}/{r:?}: {})", self.kind, self.message),
            None => write!(f, "Error({:?}: {})", self.kind, self.message),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;
