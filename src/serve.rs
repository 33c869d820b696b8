//! `tapcred serve`: a loopback container-credentials endpoint, the one way long-running
//! programs (any AWS SDK) get MFA-protected credentials and keep refreshing them.
//!
//! Protocol (what the SDKs' container/ECS provider speaks):
//! - Listens on `127.0.0.1` only (port 0 = ephemeral by default). The SDKs accept
//!   `AWS_CONTAINER_CREDENTIALS_FULL_URI` over plain http only for loopback (and the ECS/EKS
//!   link-local addresses), which is exactly this.
//! - `GET /` with header `Authorization: <token>`, where the token is 32 random bytes in hex,
//!   made at start and handed to children as `AWS_CONTAINER_AUTHORIZATION_TOKEN`. It is
//!   compared in constant time. Missing or wrong → `403 {"code":"AccessDenied","message":…}`
//!   (for every path and method: nothing is revealed without the token). With the token:
//!   other paths → 404, other methods → 405.
//! - 200 body: `{"AccessKeyId","SecretAccessKey","Token","Expiration"}` (RFC 3339, UTC).
//! - The credentials last served are kept and handed out again while more than
//!   `refresh_before` (default 15 minutes, botocore's advisory window) remains; then the
//!   provider is called again, once, even under concurrent requests. Behind the provider sits
//!   the engine with its cached MFA session, so a tap is needed only when that session
//!   itself expires. If a refresh fails while the old credentials are still valid, those are
//!   served; with nothing valid the answer is `500 {"code":"CredentialsUnavailable",…}`.

use std::fmt;
use std::io::Cursor;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use subtle::ConstantTimeEq;
use tiny_http::{Header, Response, Server, StatusCode};
use zeroize::{Zeroize, Zeroizing};

use crate::credentials::{Credentials, format_rfc3339};
use crate::error::{Error, Result};

/// What the server calls for fresh credentials (the engine, normally).
pub type CredentialsProvider = Arc<dyn Fn() -> Result<Credentials> + Send + Sync>;

/// The path credentials are served on.
pub const CREDENTIALS_PATH: &str = "/";

pub const ENV_FULL_URI: &str = "AWS_CONTAINER_CREDENTIALS_FULL_URI";
pub const ENV_AUTH_TOKEN: &str = "AWS_CONTAINER_AUTHORIZATION_TOKEN";

#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// TCP port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Call the provider again when fewer than this remain on the served credentials.
    pub refresh_before: Duration,
    /// Credentials to serve first (already obtained, e.g. to ask for the touch at start).
    pub initial: Option<Credentials>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            port: 0,
            refresh_before: crate::cache::ADVISORY_WINDOW,
            initial: None,
        }
    }
}

/// A running server. Dropping it shuts it down.
pub struct ServeHandle {
    /// `http://127.0.0.1:PORT/`: the value for `AWS_CONTAINER_CREDENTIALS_FULL_URI`.
    pub url: String,
    token: SecretString,
    addr: SocketAddr,
    server: Arc<Server>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for ServeHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServeHandle")
            .field("url", &self.url)
            .field("token", &"<redacted>")
            .finish()
    }
}

impl ServeHandle {
    /// The bearer token (the value for `AWS_CONTAINER_AUTHORIZATION_TOKEN`).
    pub fn token(&self) -> &str {
        self.token.expose_secret()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The two variables a client needs, in order: full URI, authorization token.
    pub fn env_vars(&self) -> [(&'static str, String); 2] {
        [
            (ENV_FULL_URI, self.url.clone()),
            (ENV_AUTH_TOKEN, self.token().to_owned()),
        ]
    }

    /// Stop accepting requests and wait for the accept loop to end. Requests already being
    /// answered finish on their own threads.
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ServeHandle {
    fn drop(&mut self) {
        self.stop_now();
    }
}

struct State {
    provider: CredentialsProvider,
    refresh_before: Duration,
    token: SecretString,
    /// The credentials last served; the mutex also makes refreshes single-flight.
    current: Mutex<Option<Credentials>>,
}

/// Start serving on 127.0.0.1.
pub fn start(provider: CredentialsProvider, opts: ServeOptions) -> Result<ServeHandle> {
    let listener = nodelay_listener((Ipv4Addr::LOCALHOST, opts.port).into());
    let server = listener.and_then(|l| Server::from_listener(l, None).map_err(std::io::Error::other)).map_err(|e| {
        if opts.port == 0 {
            Error::io(format!("cannot listen on 127.0.0.1: {e}"))
        } else {
            Error::io(format!(
                "cannot listen on 127.0.0.1:{}: {e}; pick another port with --port, or omit it for a free one",
                opts.port
            ))
        }
    })?;
    let addr = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| Error::internal("listener has no IP address"))?;
    let token = new_token()?;
    let server = Arc::new(server);
    let stop = Arc::new(AtomicBool::new(false));
    let state = Arc::new(State {
        provider,
        refresh_before: opts.refresh_before,
        token: token.clone(),
        current: Mutex::new(opts.initial),
    });
    let thread = {
        let (server, stop) = (server.clone(), stop.clone());
        std::thread::Builder::new()
            .name("tapcred-serve".into())
            .spawn(move || accept_loop(&server, &stop, &state))
            .map_err(|e| Error::io(format!("cannot start the server thread: {e}")))?
    };
    Ok(ServeHandle {
        url: format!("http://{addr}{CREDENTIALS_PATH}"),
        token,
        addr,
        server,
        stop,
        thread: Some(thread),
    })
}

fn new_token() -> Result<SecretString> {
    let mut raw = Zeroizing::new([0u8; 32]);
    getrandom::fill(raw.as_mut())
        .map_err(|e| Error::internal(format!("no randomness for the server token: {e}")))?;
    Ok(SecretString::from(data_encoding::HEXLOWER.encode(&*raw)))
}

fn accept_loop(server: &Server, stop: &AtomicBool, state: &Arc<State>) {
    while !stop.load(Ordering::SeqCst) {
        let req = match server.recv() {
            Ok(r) => r,
            Err(e) => {
                if !stop.load(Ordering::SeqCst) {
                    tracing::debug!(error = %e, "serve: accept failed");
                    std::thread::sleep(Duration::from_millis(10));
                }
                continue;
            }
        };
        let state = state.clone();
        // One thread per request: a refresh that waits for a touch must not hold up the
        // quick answers (403s, cached credentials for others waiting on the same mutex).
        let spawned = std::thread::Builder::new()
            .name("tapcred-serve-req".into())
            .spawn(move || handle(req, &state));
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "serve: cannot spawn a request thread");
        }
    }
}

type Body = Cursor<Zeroizing<Vec<u8>>>;

fn json_response(status: u16, body: Zeroizing<Vec<u8>>) -> Response<Body> {
    let len = body.len();
    let ct =
        Header::from_bytes(&b"Content-Type"[..], &b"application/json"[..]).expect("static header");
    let cc = Header::from_bytes(&b"Cache-Control"[..], &b"no-store"[..]).expect("static header");
    Response::new(
        StatusCode(status),
        vec![ct, cc],
        Cursor::new(body),
        Some(len),
        None,
    )
}

fn error_response(status: u16, code: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({ "code": code, "message": message });
    json_response(
        status,
        Zeroizing::new(serde_json::to_vec(&body).unwrap_or_default()),
    )
}

fn authorized(req: &tiny_http::Request, token: &SecretString) -> bool {
    let want = token.expose_secret().as_bytes();
    req.headers()
        .iter()
        .filter(|h| h.field.equiv("Authorization"))
        .any(|h| h.value.as_bytes().ct_eq(want).into())
}

fn handle(req: tiny_http::Request, state: &State) {
    let method = req.method().clone();
    let path = req.url().split('?').next().unwrap_or("").to_owned();
    let resp = if !authorized(&req, &state.token) {
        error_response(
            403,
            "AccessDenied",
            "missing or wrong Authorization token (use AWS_CONTAINER_AUTHORIZATION_TOKEN as printed by tapcred serve)",
        )
    } else if path != CREDENTIALS_PATH {
        error_response(404, "NotFound", "credentials are served on / only")
    } else if method != tiny_http::Method::Get {
        error_response(405, "MethodNotAllowed", "use GET")
    } else {
        match state.credentials() {
            Ok(c) => json_response(200, body_for(&c)),
            Err(e) => error_response(500, "CredentialsUnavailable", e.message()),
        }
    };
    tracing::debug!(%method, path, status = resp.status_code().0, "serve: request");
    let _ = req.respond(resp);
}

impl State {
    fn credentials(&self) -> Result<Credentials> {
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let now = crate::clock::now_utc();
        let left = |c: &Credentials| c.seconds_left(now);
        if let Some(c) = cur.as_ref() {
            match left(c) {
                None => return Ok(c.clone()),
                Some(s) if s > self.refresh_before.as_secs() as i64 => return Ok(c.clone()),
                _ => {}
            }
        }
        match (self.provider)() {
            Ok(fresh) => {
                *cur = Some(fresh.clone());
                Ok(fresh)
            }
            Err(e) => match cur.as_ref() {
                Some(old) if left(old).is_some_and(|s| s > 0) => {
                    tracing::warn!(error = %e, "serve: refresh failed; serving the previous credentials until they expire");
                    Ok(old.clone())
                }
                _ => Err(e),
            },
        }
    }
}

/// The container-credentials document.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ContainerJson {
    access_key_id: String,
    secret_access_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expiration: Option<String>,
}

impl Drop for ContainerJson {
    fn drop(&mut self) {
        self.secret_access_key.zeroize();
        if let Some(t) = self.token.as_mut() {
            t.zeroize();
        }
    }
}

fn body_for(c: &Credentials) -> Zeroizing<Vec<u8>> {
    let doc = ContainerJson {
        access_key_id: c.access_key_id.clone(),
        secret_access_key: c.secret().to_owned(),
        token: c.token().map(str::to_owned),
        expiration: c.expiration.map(format_rfc3339),
    };
    Zeroizing::new(serde_json::to_vec(&doc).unwrap_or_default())
}

/// A loopback listener with TCP_NODELAY, which accepted sockets inherit on Linux: tiny_http
/// writes responses in 1 KiB pieces, and with Nagle a kept-alive client waits 40 ms for the
/// delayed ACK of the first piece.
pub fn nodelay_listener(addr: std::net::SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(128)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::sync::atomic::AtomicUsize;

    use time::OffsetDateTime;

    use super::*;

    /// A minimal HTTP/1.1 client: (status, body).
    fn get(h: &ServeHandle, method: &str, path: &str, auth: Option<&str>) -> (u16, String) {
        let mut s = TcpStream::connect(h.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut req =
            format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
        if let Some(a) = auth {
            req.push_str(&format!("Authorization: {a}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let status: u16 = out.split_whitespace().nth(1).unwrap().parse().unwrap();
        let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
        (status, body)
    }

    fn creds(n: usize, lifetime_s: i64) -> Credentials {
        Credentials::new(
            format!("ASIA{n:04}"),
            format!("secret-{n}"),
            Some(format!("token-{n}")),
            Some(OffsetDateTime::now_utc() + time::Duration::seconds(lifetime_s)),
        )
    }

    /// Provider that returns credentials number 1, 2, … with the lifetimes given in turn
    /// (the last one repeats), counting calls.
    fn counting(lifetimes: Vec<i64>) -> (CredentialsProvider, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let p: CredentialsProvider = Arc::new(move || {
            let n = c.fetch_add(1, Ordering::SeqCst) + 1;
            let l = lifetimes[(n - 1).min(lifetimes.len() - 1)];
            Ok(creds(n, l))
        });
        (p, calls)
    }

    #[test]
    fn binds_loopback_with_a_random_hex_token() {
        let (p, _) = counting(vec![3600]);
        let h = start(p.clone(), ServeOptions::default()).unwrap();
        let h2 = start(p, ServeOptions::default()).unwrap();
        assert!(h.addr().ip().is_loopback());
        assert_ne!(h.addr().port(), 0);
        assert_eq!(h.url, format!("http://127.0.0.1:{}/", h.addr().port()));
        assert_eq!(h.token().len(), 64);
        assert!(h.token().bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(h.token(), h2.token());
        assert!(!format!("{h:?}").contains(h.token()));
        let env = h.env_vars();
        assert_eq!(env[0], (ENV_FULL_URI, h.url.clone()));
        assert_eq!(env[1].1, h.token());
    }

    #[test]
    fn bearer_token_is_required() {
        let (p, calls) = counting(vec![3600]);
        let h = start(p, ServeOptions::default()).unwrap();
        let wrong = "0".repeat(64);
        let short = &h.token()[..63];
        let bearer = format!("Bearer {}", h.token());
        for (auth, path, method) in [
            (None, "/", "GET"),
            (Some(wrong.as_str()), "/", "GET"),
            (Some(short), "/", "GET"),
            (Some(bearer.as_str()), "/", "GET"),
            (Some(""), "/", "GET"),
            (None, "/other", "GET"),
            (None, "/", "POST"),
        ] {
            let (status, body) = get(&h, method, path, auth);
            assert_eq!(status, 403, "{auth:?} {path} {method}");
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["code"], "AccessDenied");
            assert!(v["message"].is_string());
        }
        assert_eq!(calls.load(Ordering::SeqCst), 0, "provider never called");
        let (status, _) = get(&h, "GET", "/other", Some(h.token()));
        assert_eq!(status, 404);
        let (status, _) = get(&h, "POST", "/", Some(h.token()));
        assert_eq!(status, 405);
        let (status, body) = get(&h, "GET", "/", Some(h.token()));
        assert_eq!(status, 200);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["AccessKeyId"], "ASIA0001");
        assert_eq!(v["SecretAccessKey"], "secret-1");
        assert_eq!(v["Token"], "token-1");
        let exp = crate::credentials::parse_rfc3339(v["Expiration"].as_str().unwrap()).unwrap();
        assert!(v["Expiration"].as_str().unwrap().ends_with('Z'));
        assert!((exp - OffsetDateTime::now_utc()).whole_seconds() > 3500);
    }

    #[test]
    fn serves_cached_credentials_and_refreshes_before_expiry() {
        // 1st: expires in 10 min (< 15 min window: refreshed on the next request),
        // 2nd: 1 h (kept), so requests 2.. all see number 2.
        let (p, calls) = counting(vec![600, 3600]);
        let h = start(p, ServeOptions::default()).unwrap();
        let key_of = |body: String| -> String {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            v["AccessKeyId"].as_str().unwrap().to_owned()
        };
        assert_eq!(key_of(get(&h, "GET", "/", Some(h.token())).1), "ASIA0001");
        assert_eq!(key_of(get(&h, "GET", "/", Some(h.token())).1), "ASIA0002");
        for _ in 0..5 {
            assert_eq!(key_of(get(&h, "GET", "/", Some(h.token())).1), "ASIA0002");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn initial_credentials_are_served_without_calling_the_provider() {
        let (p, calls) = counting(vec![3600]);
        let h = start(
            p,
            ServeOptions {
                initial: Some(creds(7, 3600)),
                ..Default::default()
            },
        )
        .unwrap();
        let (status, body) = get(&h, "GET", "/", Some(h.token()));
        assert_eq!(status, 200);
        assert!(body.contains("ASIA0007"));
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn concurrent_requests_refresh_once() {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let p: CredentialsProvider = Arc::new(move || {
            let n = c.fetch_add(1, Ordering::SeqCst) + 1;
            std::thread::sleep(Duration::from_millis(300)); // a touch
            Ok(creds(n, 3600))
        });
        let h = Arc::new(start(p, ServeOptions::default()).unwrap());
        let ts: Vec<_> = (0..8)
            .map(|_| {
                let h = h.clone();
                std::thread::spawn(move || get(&h, "GET", "/", Some(h.token())))
            })
            .collect();
        for t in ts {
            let (status, body) = t.join().unwrap();
            assert_eq!(status, 200);
            assert!(body.contains("ASIA0001"));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn provider_errors_and_fallback_to_still_valid_credentials() {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let p: CredentialsProvider = Arc::new(move || {
            match c.fetch_add(1, Ordering::SeqCst) {
                0 => Err(Error::token("touch timed out on YubiKey 123")),
                1 => Ok(creds(1, 300)), // short: every request tries to refresh
                _ => Err(Error::network("STS unreachable")),
            }
        });
        let h = start(p, ServeOptions::default()).unwrap();
        let (status, body) = get(&h, "GET", "/", Some(h.token()));
        assert_eq!(status, 500);
        assert!(body.contains("CredentialsUnavailable") && body.contains("touch timed out"));
        let (status, body) = get(&h, "GET", "/", Some(h.token()));
        assert_eq!((status, body.contains("ASIA0001")), (200, true));
        // Refresh fails, but the old credentials still have 5 minutes: served.
        let (status, body) = get(&h, "GET", "/", Some(h.token()));
        assert_eq!((status, body.contains("ASIA0001")), (200, true));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn a_taken_port_is_a_clear_error_and_shutdown_frees_it() {
        let (p, _) = counting(vec![3600]);
        let h = start(p.clone(), ServeOptions::default()).unwrap();
        let port = h.addr().port();
        let err = start(
            p.clone(),
            ServeOptions {
                port,
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(
            err.message().contains(&format!("127.0.0.1:{port}")),
            "{err}"
        );
        assert!(err.message().contains("--port"), "{err}");
        h.shutdown();
        // tiny_http closes its listener on its own thread right after: allow it a moment.
        let closed = (0..200).any(|_| {
            std::thread::sleep(Duration::from_millis(10));
            TcpStream::connect(("127.0.0.1", port)).is_err()
        });
        assert!(closed, "still listening after shutdown");
        let again = start(
            p,
            ServeOptions {
                port,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(again.addr().port(), port);
    }
}
