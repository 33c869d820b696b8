//! One error type for the whole library. Every error carries a [`ErrorKind`], which decides
//! the process exit code, and a one-line message that names the file, profile, key or device
//! involved and says how to fix it. Messages never contain secrets. Where a lower error
//! (io, PC/SC, the AWS SDK, a module's own error enum) caused it, that error is kept as the
//! [`std::error::Error::source`] (callers and tests can downcast it); the one-line message
//! stays tapcred's own, and only the message is shown to the person.

use std::fmt;
use std::sync::Arc;

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
    /// Not an STS reason: the smart-card service (pcscd, WinSCard, CryptoTokenKit) is not
    /// running, so no YubiKey could be asked. `doctor` says how to start it; `enroll`
    /// offers the seed file instead.
    ServiceMissing,
    /// Not an STS reason: the YubiKey answered but holds no OATH account for the
    /// `mfa_serial`. `doctor` says how to put the seed on it.
    NoAccount,
}

impl Reason {
    /// The request may have reached STS, so a code it carried may be used up.
    pub fn may_have_reached_sts(self) -> bool {
        !matches!(
            self,
            Reason::NotSent | Reason::WrongDevice | Reason::ServiceMissing | Reason::NoAccount
        )
    }
}

/// The lower error an [`Error`] came from; shared, so that `Error` stays `Clone`.
type Source = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// Not derived with `thiserror`: its `#[source]` on an `Arc` hands out the `Arc` itself,
/// which no caller can downcast to the io/PC/SC/SDK error inside.
#[derive(Clone)]
pub struct Error {
    pub kind: ErrorKind,
    reason: Option<Reason>,
    message: String,
    source: Option<Source>,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Equal when kind, reason and message are: the source is detail for logs, not identity.
impl PartialEq for Error {
    fn eq(&self, other: &Self) -> bool {
        (self.kind, self.reason, &self.message) == (other.kind, other.reason, &other.message)
    }
}

impl Eq for Error {}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            reason: None,
            message: message.into(),
            source: None,
        }
    }
    /// The same error with a typed [`Reason`] (STS call failures, and the few token
    /// outcomes callers decide on).
    pub fn with_reason(mut self, reason: Reason) -> Self {
        self.reason = Some(reason);
        self
    }
    /// The same error, caused by `source` (kept for [`std::error::Error::source`]; the
    /// message is unchanged).
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
    }
    /// The same error with `message` in place of its own: kind, reason and source kept (for
    /// callers that add a fix or a name to a lower error's line).
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
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

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason {
            Some(r) => write!(f, "Error({:?}/{r:?}: {})", self.kind, self.message),
            None => write!(f, "Error({:?}: {})", self.kind, self.message),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use std::error::Error as _;
    use std::io;

    use super::*;

    /// The messages of `e`'s source chain, outermost first (`e` itself not included).
    fn chain(e: &(dyn std::error::Error + 'static)) -> Vec<String> {
        std::iter::successors(e.source(), |&s| s.source())
            .map(|s| s.to_string())
            .collect()
    }

    #[test]
    fn the_source_chain_is_walked_to_the_bottom_and_the_message_is_unchanged() {
        let os = io::Error::new(io::ErrorKind::PermissionDenied, "os said no");
        let inner = Error::io("cannot write /c/x: os said no").with_source(os);
        let outer = Error::io("cache: cannot write /c/x: os said no; fix it").with_source(inner);
        assert_eq!(
            outer.to_string(),
            "cache: cannot write /c/x: os said no; fix it"
        );
        assert_eq!(outer.exit_code(), 7);
        assert_eq!(
            chain(&outer),
            ["cannot write /c/x: os said no", "os said no"],
            "{outer:?}"
        );
        let bottom = std::iter::successors(outer.source(), |&s| s.source())
            .last()
            .unwrap();
        let io = bottom
            .downcast_ref::<io::Error>()
            .expect("an io::Error at the bottom");
        assert_eq!(io.kind(), io::ErrorKind::PermissionDenied);
    }

    #[test]
    fn no_source_is_none_and_a_clone_keeps_it() {
        let e = Error::config("bad");
        assert!(e.source().is_none());
        let e = e.with_source(io::Error::other("low"));
        let c = e.clone();
        assert_eq!(chain(&c), ["low"]);
        assert_eq!(c, e);
        // Equality ignores the source.
        assert_eq!(Error::config("bad"), e);
    }

    #[test]
    fn with_message_keeps_kind_reason_and_source() {
        let e = Error::token("cannot reach a YubiKey")
            .with_reason(Reason::ServiceMissing)
            .with_source(io::Error::other("no service"))
            .with_message("cannot reach a YubiKey; or use a seed file");
        assert_eq!(e.kind, ErrorKind::Token);
        assert_eq!(e.reason(), Some(Reason::ServiceMissing));
        assert_eq!(chain(&e), ["no service"]);
        assert_eq!(e.message(), "cannot reach a YubiKey; or use a seed file");
    }
}
