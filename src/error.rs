//! One error type for the whole library. Every error carries a [`ErrorKind`], which decides
//! the process exit code, and a one-line message that names the file, profile, key or device
//! involved and says how to fix it. Messages never contain secrets.

use std::fmt;

/// What went wrong, coarsely; each kind has a stable exit code (documented in README).
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

#[derive(Clone, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    message: String,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
        }
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
        write!(f, "Error({:?}: {})", self.kind, self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;
