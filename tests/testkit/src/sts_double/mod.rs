//! A strict STS test double: a loopback HTTP server speaking the STS Query protocol that
//! checks what moto does not — SigV4 signatures, TOTP codes against registered seeds, code
//! reuse, MFA-flagged sessions, trust rules, external ids and the duration limits.
//!
//! ```no_run
//! use tapcred_testkit::sts_double::{Config, StsDouble};
//! let double = StsDouble::start(Config::design()).unwrap();
//! let endpoint = double.endpoint(); // http://127.0.0.1:PORT
//! // … point AWS_ENDPOINT_URL_STS at it, run the flow …
//! assert_eq!(double.stats().ok("AssumeRole"), 1);
//! ```
//!
//! Rules (AWS's, error codes and messages as AWS sends them):
//! - Every request must carry a valid SigV4 `Authorization` header for a known key: an IAM
//!   user's long-term key, or credentials this double issued (with their
//!   `X-Amz-Security-Token`). `X-Amz-Date` must be within 5 minutes of the double's clock.
//! - `SerialNumber` + `TokenCode`: the serial must be an MFA device of the calling IAM user
//!   (for a session, the user at the root of the chain); the code must be the RFC 6238 code of
//!   the current step ±1; a (serial, step) is accepted once only (a reused code gets AWS's
//!   "invalid MFA one time pass code" message). A code is consumed as soon as it validates,
//!   even if the call then fails on trust or duration.
//! - A role that requires MFA accepts long-term keys with valid MFA in the same call, or
//!   session credentials issued with MFA. **Choice:** a session assumed *from* an MFA session
//!   inherits the MFA flag, so role → role chains started with one tap keep working. This is
//!   the double's choice, not a verified fact about AWS: whether AWS carries
//!   `aws:MultiFactorAuthPresent` into a chained session was not checked against real AWS.
//! - Role chaining (AssumeRole with temporary credentials) is capped at 1 hour; the cap is
//!   checked before the role's MaxSessionDuration.
//! - GetSessionToken refuses session credentials (AccessDenied).
//!
//! IAM's virtual-MFA actions are served on the same port (signed for `iam`, Version
//! 2010-05-08): see [`iam`](self) — `CreateVirtualMFADevice`, `EnableMFADevice`,
//! `DeactivateMFADevice`, `DeleteVirtualMFADevice`, `ListMFADevices`,
//! `ListVirtualMFADevices`. Devices enabled there become MFA devices STS accepts codes for.
//!
//! IAM Roles Anywhere's `CreateSession` (`POST /sessions`) is served on the same port once
//! [`StsDouble::set_roles_anywhere`] names trust anchors and profiles: see
//! [`rolesanywhere`]. The role sessions it issues are STS sessions of the double's roles.
//!
//! And the access keys of each user: `CreateAccessKey` (2 per user), `UpdateAccessKey`,
//! `DeleteAccessKey`, `ListAccessKeys`, with a propagation delay for new keys
//! ([`StsDouble::set_key_propagation`]) and, optionally, MFA required for them
//! ([`StsDouble::require_mfa_for_access_keys`]).

mod config;
mod engine;
mod iam;
pub mod rolesanywhere;
mod sigv4;
pub mod totp;
mod xml;

pub use config::{Config, DEFAULT_MAX_SESSION_DURATION, MfaDevice, RoleSpec, UserSpec, design};
pub use engine::{
    ActionStats, IssuedInfo, ROLE_CHAINING_MAX_SECS, Stats, TokenCodeEvent, TokenOutcome,
};
pub use iam::{
    AccessKeyInfo, IAM_WRITES, IamSnapshot, MAX_ACCESS_KEYS_PER_USER, MAX_MFA_DEVICES_PER_USER,
    VIRTUAL_SEED_BYTES, VirtualDeviceInfo,
};

use engine::{Engine, Incoming};

/// A fault the double applies to one STS request *after* handling it normally, so a
/// `TokenCode` in it is validated and consumed first (what happens when STS used a code and
/// its answer was lost). Queued per action with [`StsDouble::inject_fault`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer HTTP 500 `InternalFailure` (a `Receiver` fault) instead.
    ServerError,
    /// Answer bytes that are not HTTP, as a connection broken mid-answer looks to the client.
    BrokenAnswer,
    /// Hold the connection this many seconds without answering (then close it).
    Hang(u64),
    /// Answer with this status and body (`Content-Type: text/xml`) instead.
    Replace { status: u16, body: String },
}
/// Attempts tapcred's SDK clients make for one call (the first and its retries).
pub const SDK_ATTEMPTS: u64 = 3;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// A running double. Stops (and frees its port) when dropped.
pub struct StsDouble {
    port: u16,
    engine: Arc<Mutex<Engine>>,
    stop: Arc<AtomicBool>,
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for StsDouble {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StsDouble")
            .field("endpoint", &self.endpoint())
            .finish()
    }
}

/// Builds a [`StsDouble`] from users and roles.
#[derive(Debug, Default)]
pub struct StsDoubleBuilder {
    config: Config,
    port: u16,
}

impl StsDoubleBuilder {
    /// Start from an existing configuration (e.g. [`Config::design`]).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }
    pub fn user(mut self, user: UserSpec) -> Self {
        self.config.users.push(user);
        self
    }
    pub fn role(mut self, role: RoleSpec) -> Self {
        self.config.roles.push(role);
        self
    }
    /// Listen on this port (default 0: an ephemeral one).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }
    pub fn start(self) -> Result<StsDouble, String> {
        StsDouble::start_on(self.config, self.port)
    }
}

impl StsDouble {
    pub fn builder() -> StsDoubleBuilder {
        StsDoubleBuilder::default()
    }

    /// Start with [`Config::design`] (the design's user, device and roles) on an ephemeral port.
    pub fn start_design() -> Result<StsDouble, String> {
        Self::start(Config::design())
    }

    /// Start on an ephemeral loopback port.
    pub fn start(config: Config) -> Result<StsDouble, String> {
        Self::start_on(config, 0)
    }

    /// Start on `127.0.0.1:port` (0 = ephemeral).
    pub fn start_on(config: Config, port: u16) -> Result<StsDouble, String> {
        config.validate()?;
        let server = nodelay_listener(([127, 0, 0, 1], port).into())
            .and_then(|l| tiny_http::Server::from_listener(l, None).map_err(std::io::Error::other))
            .map_err(|e| format!("STS double: cannot listen on 127.0.0.1:{port}: {e}"))?;
        let port = server
            .server_addr()
            .to_ip()
            .map(|a| a.port())
            .ok_or("STS double: no IP listen address")?;
        let server = Arc::new(server);
        let engine = Arc::new(Mutex::new(Engine::new(config, port)));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (server, engine, stop) = (server.clone(), engine.clone(), stop.clone());
            std::thread::Builder::new()
                .name("sts-double".into())
                .spawn(move || serve(&server, &engine, &stop))
                .map_err(|e| format!("STS double: cannot spawn thread: {e}"))?
        };
        Ok(StsDouble {
            port,
            engine,
            stop,
            server,
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT` (for `AWS_ENDPOINT_URL_STS` / `endpoint_url`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    fn engine(&self) -> MutexGuard<'_, Engine> {
        self.engine.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counters, every TokenCode seen, every credential issued.
    pub fn stats(&self) -> Stats {
        self.engine().stats()
    }

    /// Requests received for `action` (e.g. `"AssumeRole"`), including rejected ones.
    pub fn calls(&self, action: &str) -> u64 {
        self.stats().calls(action)
    }

    /// Every TokenCode seen, in arrival order.
    pub fn token_code_events(&self) -> Vec<TokenCodeEvent> {
        self.stats().token_codes
    }

    /// Forget counters and events (issued sessions and used codes are kept).
    pub fn reset_stats(&self) {
        self.engine().reset_stats();
    }

    /// Answer the next `n` requests with 400 Throttling "Rate exceeded".
    pub fn throttle_next(&self, n: u32) {
        self.engine().throttle_next(n);
    }

    /// Apply `fault` to the next request for `action` (e.g. `"GetSessionToken"`); several
    /// calls queue several faults, in order.
    pub fn inject_fault(&self, action: &str, fault: Fault) {
        self.engine().inject_fault(action, fault);
    }

    /// Apply `fault` to requests number `first` to `first + count - 1` of `action` (counted
    /// from 1 since the double started, rejected requests and retries included), each
    /// handled normally first: an IAM write commits, then its answer is lost. The fault
    /// harness for every IAM write ([`IAM_WRITES`]) and read.
    pub fn fault_calls(&self, action: &str, first: u64, count: u64, fault: Fault) {
        self.engine().fault_calls(action, first, count, fault);
    }

    /// The `nth` call of `action` commits and tapcred never learns it: the answer to that
    /// request and to the SDK's retries of it ([`SDK_ATTEMPTS`] in all) is `fault`.
    pub fn lose_answer(&self, action: &str, nth: u64, fault: Fault) {
        self.fault_calls(action, nth, SDK_ATTEMPTS, fault);
    }

    /// Every credential issued so far becomes unknown (403 InvalidClientTokenId).
    pub fn revoke_all_sessions(&self) {
        self.engine().revoke_all_sessions();
    }

    /// Issue credentials that live at most `secs` (whatever DurationSeconds asked), or the
    /// full duration again with `None`. The response's Expiration tells the truth.
    pub fn set_issued_lifetime(&self, secs: Option<u64>) {
        self.engine().set_issued_lifetime(secs);
    }

    /// Shift the double's clock (TOTP steps, signature skew, expiry) by `secs`.
    pub fn set_clock_offset(&self, secs: i64) {
        self.engine().set_clock_offset(secs);
    }

    /// The double's clock, unix seconds.
    pub fn now(&self) -> i64 {
        self.engine().now()
    }

    /// IAM's state: virtual MFA devices and each user's assigned serials (no seeds).
    pub fn iam_state(&self) -> IamSnapshot {
        self.engine().iam_snapshot()
    }

    /// Answer the next `n` calls of the IAM `action` with the AWS error `code`
    /// (`InvalidAuthenticationCode`, `NoSuchEntity`, `LimitExceeded`, `AccessDenied`, else
    /// a 500 `ServiceFailure`), without doing the work.
    pub fn iam_fail_next(&self, action: &str, n: u32, code: &str) {
        self.engine().iam_fail_next(action, n, code);
    }

    /// Serve IAM Roles Anywhere's `CreateSession` with these trust anchors and profiles
    /// (roles are the double's STS roles).
    pub fn set_roles_anywhere(&self, spec: rolesanywhere::RolesAnywhereSpec) {
        self.engine().rolesanywhere = spec;
    }

    /// What Roles Anywhere saw.
    pub fn roles_anywhere_stats(&self) -> rolesanywhere::RolesAnywhereStats {
        self.engine().rolesanywhere_stats.clone()
    }

    /// A key made by CreateAccessKey from now on fails authentication
    /// (`InvalidClientTokenId`) for its first `calls` requests and its first `secs` seconds,
    /// as IAM's changes take a while to reach STS.
    pub fn set_key_propagation(&self, calls: u32, secs: u64) {
        self.engine().set_key_propagation(calls, secs);
    }

    /// The access-key actions refuse long-term keys (AccessDenied) and accept only an MFA
    /// session: the self-management policy with `aws:MultiFactorAuthPresent`.
    pub fn require_mfa_for_access_keys(&self, yes: bool) {
        self.engine().require_mfa_for_access_keys(yes);
    }

    /// A further access key for the user `user_name` (as made in the console), Active or
    /// Inactive; its id. Panics on an unknown user.
    pub fn add_access_key(&self, user_name: &str, active: bool) -> String {
        self.engine().add_access_key(user_name, active)
    }

    /// Backdate (or move) an access key's CreateDate; false when no such key.
    pub fn set_key_created(&self, access_key_id: &str, unix: i64) -> bool {
        self.engine().set_key_created(access_key_id, unix)
    }

    /// The TOTP step the double considers current.
    pub fn current_step(&self) -> u64 {
        totp::step_at(self.now())
    }
}

impl Drop for StsDouble {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(server: &tiny_http::Server, engine: &Mutex<Engine>, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        let request = match server.recv_timeout(Duration::from_millis(200)) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(_) => break,
        };
        handle_request(request, engine);
    }
}

fn header(name: &str, value: &str) -> tiny_http::Header {
    tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("valid header bytes")
}

fn handle_request(mut request: tiny_http::Request, engine: &Mutex<Engine>) {
    use std::io::Write;
    let mut body = Vec::new();
    if request.as_reader().read_to_end(&mut body).is_err() {
        let _ = request.respond(tiny_http::Response::empty(400));
        return;
    }
    let method = request.method().as_str().to_owned();
    let url = request.url().to_owned();
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|h| {
            (
                h.field.as_str().as_str().to_ascii_lowercase(),
                h.value.as_str().to_owned(),
            )
        })
        .collect();
    let mut engine = engine.lock().unwrap_or_else(|p| p.into_inner());
    let date = xml::http_date(engine.now());

    if let Some(admin) = url.strip_prefix("/_double/") {
        let (status, text) = admin_request(&mut engine, &method, admin);
        drop(engine);
        let response = tiny_http::Response::from_string(text)
            .with_status_code(status)
            .with_header(header("Content-Type", "application/json"))
            .with_header(header("Date", &date));
        let _ = request.respond(response);
        return;
    }

    if url.split('?').next() == Some("/sessions") && method == "POST" {
        let reply = rolesanywhere::handle(&mut engine, &method, &url, &headers, &body);
        let fault = engine.take_fault(&Incoming {
            method,
            url: "/?Action=CreateSession".into(),
            headers,
            body: Vec::new(),
        });
        drop(engine);
        let mut response = tiny_http::Response::from_string(reply.body)
            .with_status_code(reply.status)
            .with_header(header("Content-Type", "application/json"))
            .with_header(header("Date", &date));
        if let Some(t) = &reply.error_type {
            response = response.with_header(header("x-amzn-ErrorType", t));
        }
        match fault {
            Some(Fault::Hang(secs)) => {
                let _ = std::thread::Builder::new()
                    .name("rolesanywhere-double-hang".into())
                    .spawn(move || {
                        std::thread::sleep(Duration::from_secs(secs));
                        drop(request);
                    });
            }
            Some(Fault::ServerError) => {
                let _ = request.respond(
                    tiny_http::Response::from_string(
                        "{\"message\":\"An internal error has occurred\"}",
                    )
                    .with_status_code(500)
                    .with_header(header("Content-Type", "application/json"))
                    .with_header(header("x-amzn-ErrorType", "InternalServerException:")),
                );
            }
            _ => {
                let _ = request.respond(response);
            }
        }
        return;
    }
    let incoming = Incoming {
        method,
        url,
        headers,
        body,
    };
    let reply = engine.handle(&incoming);
    let fault = engine.take_fault(&incoming);
    drop(engine);
    let reply = match fault {
        None => reply,
        Some(Fault::ServerError) => engine::Reply {
            status: 500,
            body: xml::server_error(
                "InternalFailure",
                "An internal error has occurred.",
                &reply.request_id,
            ),
            request_id: reply.request_id,
        },
        Some(Fault::Replace { status, body }) => engine::Reply {
            status,
            body,
            request_id: reply.request_id,
        },
        Some(Fault::BrokenAnswer) => {
            let mut w = request.into_writer();
            let _ = w.write_all(b"\x00\x01 not an HTTP answer\r\n\r\n");
            let _ = w.flush();
            return;
        }
        Some(Fault::Hang(secs)) => {
            let _ = std::thread::Builder::new()
                .name("sts-double-hang".into())
                .spawn(move || {
                    std::thread::sleep(Duration::from_secs(secs));
                    drop(request);
                });
            return;
        }
    };
    let response = tiny_http::Response::from_string(reply.body)
        .with_status_code(reply.status)
        .with_header(header("Content-Type", "text/xml"))
        .with_header(header("x-amzn-RequestId", &reply.request_id))
        .with_header(header("Date", &date));
    let _ = request.respond(response);
}

/// The HTTP admin surface for tests that run the double as a separate process:
/// `GET stats`, `GET health`, `POST reset-stats`, `POST throttle?n=N`, `POST revoke-all`,
/// `POST issued-lifetime?secs=N` (no `secs` = back to normal), `POST clock-offset?secs=N`,
/// `POST fault?action=ACTION&kind=server-error|broken|hang[&secs=N]`,
/// `GET iam` (virtual MFA devices and assignments, JSON), `POST iam-fail?action=A&n=N&code=C`.
fn admin_request(engine: &mut Engine, method: &str, path: &str) -> (u16, String) {
    let (name, query) = path.split_once('?').unwrap_or((path, ""));
    let arg = |key: &str| -> Option<String> {
        form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
    };
    let ok = || (200, "{\"ok\":true}".to_owned());
    let bad = |m: &str| (400, serde_json::json!({ "error": m }).to_string());
    match (method, name) {
        ("GET", "stats") => (
            200,
            serde_json::to_string_pretty(&engine.stats()).unwrap_or_default(),
        ),
        ("GET", "health") => ok(),
        ("POST", "reset-stats") => {
            engine.reset_stats();
            ok()
        }
        ("POST", "throttle") => match arg("n").and_then(|n| n.parse().ok()) {
            Some(n) => {
                engine.throttle_next(n);
                ok()
            }
            None => bad("throttle needs ?n=COUNT"),
        },
        ("GET", "iam") => (
            200,
            serde_json::to_string_pretty(&engine.iam_snapshot()).unwrap_or_default(),
        ),
        ("POST", "iam-fail") => match (arg("action"), arg("n").and_then(|n| n.parse().ok())) {
            (Some(action), Some(n)) => {
                let code = arg("code").unwrap_or_else(|| "ServiceFailure".into());
                engine.iam_fail_next(&action, n, &code);
                ok()
            }
            _ => bad("iam-fail needs ?action=ACTION&n=COUNT[&code=CODE]"),
        },
        ("POST", "fault") => {
            let fault = match arg("kind").as_deref() {
                Some("server-error") => Some(Fault::ServerError),
                Some("broken") => Some(Fault::BrokenAnswer),
                Some("hang") => arg("secs").and_then(|n| n.parse().ok()).map(Fault::Hang),
                _ => None,
            };
            match (arg("action"), fault) {
                (Some(action), Some(f)) => {
                    engine.inject_fault(&action, f);
                    ok()
                }
                _ => bad("fault needs ?action=ACTION&kind=server-error|broken|hang[&secs=N]"),
            }
        }
        ("POST", "revoke-all") => {
            engine.revoke_all_sessions();
            ok()
        }
        ("POST", "issued-lifetime") => match arg("secs") {
            None => {
                engine.set_issued_lifetime(None);
                ok()
            }
            Some(s) => match s.parse() {
                Ok(n) => {
                    engine.set_issued_lifetime(Some(n));
                    ok()
                }
                Err(_) => bad("issued-lifetime needs ?secs=SECONDS"),
            },
        },
        ("POST", "clock-offset") => match arg("secs").and_then(|n| n.parse().ok()) {
            Some(n) => {
                engine.set_clock_offset(n);
                (
                    200,
                    serde_json::json!({ "ok": true, "clock_offset": engine.clock_offset() })
                        .to_string(),
                )
            }
            None => bad("clock-offset needs ?secs=SECONDS"),
        },
        _ => (
            404,
            serde_json::json!({ "error": "unknown admin path" }).to_string(),
        ),
    }
}

/// A loopback listener with TCP_NODELAY, which accepted sockets inherit on Linux: tiny_http
/// writes responses in 1 KiB pieces, and with Nagle a kept-alive client waits 40 ms for the
/// delayed ACK of the first piece.
fn nodelay_listener(addr: std::net::SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(128)?;
    Ok(socket.into())
}
