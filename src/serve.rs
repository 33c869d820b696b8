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
//!
//! A small blocking HTTP/1.1 server on `std::net::TcpListener` (request heads parsed by
//! `httparse`), built to survive a hostile local process:
//! - at most [`Limits::max_connections`] connections at once, each on a connection thread
//!   of its own while it is served (a refresh that waits for a touch must not hold up quick
//!   answers). The bound is on threads alive, so it holds under a flood: a free thread takes
//!   the next connection (threads are reused, not started and ended per connection), and
//!   when all are busy the accept thread waits for one before it takes the next connection
//!   (further ones wait in the kernel's accept queue). To make room it drops the oldest connection that has had
//!   [`IDLE_GRACE`] to send its request and has not (a real client sends at once), so a
//!   crowd of idle connections cannot keep a real client out — but a connection whose
//!   thread has not yet run is never dropped for a newer one. With nothing to drop (every
//!   connection is a client waiting for credentials, e.g. for a touch) a new connection
//!   waits at most [`ADMIT_WAIT`] and is then closed;
//! - a request head of at most [`Limits::max_head_bytes`] (else `431`) that must arrive
//!   within [`Limits::request_timeout`] of the connection (else it is closed: slowloris);
//!   every answer is `Connection: close`;
//! - `accept` errors never end the server: a transient one (aborted connection) is retried
//!   at once; any other (out of descriptors, buffers or memory: `EMFILE`, `ENFILE`,
//!   `ENOBUFS`, `ENOMEM`) first drops the oldest unfinished connection, then waits 10 ms,
//!   doubling up to 1 s, while the error lasts (no busy loop, no exit);
//! - idle, it costs nothing: the accept thread blocks in `accept`; a connection thread with
//!   no work ends after a few seconds, and no timer runs.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

use crate::credentials::{Credentials, format_rfc3339};
use crate::error::{Error, Result};

/// What the server calls for fresh credentials (the engine, normally).
pub type CredentialsProvider = Arc<dyn Fn() -> Result<Credentials> + Send + Sync>;

/// The path credentials are served on.
pub const CREDENTIALS_PATH: &str = "/";

pub const ENV_FULL_URI: &str = "AWS_CONTAINER_CREDENTIALS_FULL_URI";
pub const ENV_AUTH_TOKEN: &str = "AWS_CONTAINER_AUTHORIZATION_TOKEN";

/// Bounds on what one local client can make the server hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once (each is a thread and two descriptors).
    pub max_connections: usize,
    /// Request line plus headers, in bytes.
    pub max_head_bytes: usize,
    /// From accept to a complete request head; also bounds writing the answer.
    pub request_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 64,
            max_head_bytes: 16 * 1024,
            request_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// TCP port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Call the provider again when fewer than this remain on the served credentials.
    pub refresh_before: Duration,
    /// Credentials to serve first (already obtained, e.g. to ask for the touch at start).
    pub initial: Option<Credentials>,
    pub limits: Limits,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            port: 0,
            refresh_before: crate::cache::ADVISORY_WINDOW,
            initial: None,
            limits: Limits::default(),
        }
    }
}

/// A running server. Dropping it shuts it down.
pub struct ServeHandle {
    /// `http://127.0.0.1:PORT/`: the value for `AWS_CONTAINER_CREDENTIALS_FULL_URI`.
    pub url: String,
    token: SecretString,
    addr: SocketAddr,
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

    /// Stop accepting, close the listener and wait for the accept loop to end. Requests
    /// already being answered finish on their own threads.
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            // Wake the blocking accept with a connection of our own; it sees `stop`.
            let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
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
    limits: Limits,
    conns: Mutex<Conns>,
    /// Signalled when a connection thread becomes free (or ends).
    thread_free: Condvar,
    /// Signalled when a connection is handed to an idle thread.
    work: Condvar,
}

/// The connections being served.
#[derive(Default)]
struct Conns {
    next_id: u64,
    /// Connection threads alive (busy or idle): at most `max_connections`.
    threads: usize,
    /// Of those, the ones waiting for a connection.
    idle: usize,
    /// Connections handed to idle threads, not yet taken.
    handed: VecDeque<(u64, TcpStream)>,
    /// Connections still sending their request head, oldest first: when accepted, and a
    /// handle to close them.
    unfinished: VecDeque<(u64, Instant, TcpStream)>,
}

/// A connection that has not sent its whole request this long after it was accepted is
/// idle (or a slowloris), not a real client, and may be dropped to make room.
pub const IDLE_GRACE: Duration = Duration::from_millis(250);

/// How long a new connection waits for room when every connection is a real client.
pub const ADMIT_WAIT: Duration = Duration::from_secs(2);

/// A connection thread with nothing to do ends after this long.
const THREAD_IDLE: Duration = Duration::from_secs(5);

/// Start serving on 127.0.0.1.
pub fn start(provider: CredentialsProvider, opts: ServeOptions) -> Result<ServeHandle> {
    let listener = nodelay_listener((Ipv4Addr::LOCALHOST, opts.port).into()).map_err(|e| {
        if opts.port == 0 {
            Error::io(format!("cannot listen on 127.0.0.1: {e}"))
        } else {
            Error::io(format!(
                "cannot listen on 127.0.0.1:{}: {e}; pick another port with --port, or omit it for a free one",
                opts.port
            ))
        }
        .with_source(e)
    })?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::internal(format!("listener has no address: {e}")).with_source(e))?;
    let token = new_token()?;
    let stop = Arc::new(AtomicBool::new(false));
    let state = Arc::new(State {
        provider,
        refresh_before: opts.refresh_before,
        token: token.clone(),
        current: Mutex::new(opts.initial),
        limits: opts.limits,
        conns: Mutex::new(Conns::default()),
        thread_free: Condvar::new(),
        work: Condvar::new(),
    });
    let thread = {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("tapcred-serve".into())
            .spawn(move || accept_loop(&listener, &stop, &state))
            .map_err(|e| Error::io(format!("cannot start the server thread: {e}")).with_source(e))?
    };
    Ok(ServeHandle {
        url: format!("http://{addr}{CREDENTIALS_PATH}"),
        token,
        addr,
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

/// Accept errors that concern only the connection being accepted (gone before it was
/// taken); any other (out of descriptors, buffers or memory) needs time or room to pass.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

const BACKOFF_FIRST: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

fn accept_loop(listener: &TcpListener, stop: &AtomicBool, state: &Arc<State>) {
    let mut backoff = BACKOFF_FIRST;
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                backoff = BACKOFF_FIRST;
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                admit(stream, state);
            }
            // ECONNABORTED, EINTR…: that one connection is gone; take the next.
            Err(e) if is_per_connection(&e) => {
                tracing::debug!(error = %e, "serve: accept failed")
            }
            Err(e) => {
                // Free what a hostile crowd holds first, then give the system a moment.
                let evicted = state.evict_oldest();
                tracing::warn!(error = %e, evicted, "serve: accept failed; retrying");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// Serve `stream` on a connection thread once there is one (see the module notes): an idle
/// thread takes it, else a new thread is started while fewer than the limit exist.
fn admit(stream: TcpStream, state: &Arc<State>) {
    let Ok(handle) = stream.try_clone() else {
        return; // out of descriptors: drop this one (closing it)
    };
    let give_up = Instant::now() + ADMIT_WAIT;
    let mut c = state.lock_conns();
    while c.idle == 0 && c.threads >= state.limits.max_connections {
        let now = Instant::now();
        // Drop idle connections that had their chance; their threads are free at once.
        while let Some((_, at, _)) = c.unfinished.front()
            && now.duration_since(*at) >= IDLE_GRACE
        {
            if let Some((_, _, old)) = c.unfinished.pop_front() {
                let _ = old.shutdown(Shutdown::Both);
            }
        }
        if now >= give_up {
            tracing::debug!("serve: no room for a new connection; closing it");
            return;
        }
        // Until a thread is free, or the oldest unfinished connection's grace is over.
        let wake = c
            .unfinished
            .front()
            .map(|(_, at, _)| *at + IDLE_GRACE)
            .unwrap_or(give_up)
            .min(give_up);
        let wait = wake
            .saturating_duration_since(now)
            .max(Duration::from_millis(1));
        c = state
            .thread_free
            .wait_timeout(c, wait)
            .map(|(g, _)| g)
            .unwrap_or_else(|p| p.into_inner().0);
    }
    c.next_id += 1;
    let id = c.next_id;
    c.unfinished.push_back((id, Instant::now(), handle));
    if c.idle > 0 {
        c.idle -= 1;
        c.handed.push_back((id, stream));
        drop(c);
        state.work.notify_one();
        return;
    }
    c.threads += 1;
    drop(c);
    let st = state.clone();
    let spawned = std::thread::Builder::new()
        .name("tapcred-serve-conn".into())
        .stack_size(256 * 1024)
        .spawn(move || connection_thread(stream, id, &st));
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "serve: cannot start a connection thread");
        let mut c = state.lock_conns();
        c.threads -= 1;
        c.unfinished.retain(|(i, _, _)| *i != id);
    }
}

/// A connection thread: serves its connection, then the ones handed to it, and ends after
/// [`THREAD_IDLE`] without one (so an idle server holds no connection thread, and a flood
/// reuses threads instead of starting and ending thousands).
fn connection_thread(first: TcpStream, id: u64, state: &State) {
    let (mut stream, mut id) = (first, id);
    loop {
        serve_connection(stream, id, state);
        let mut c = state.lock_conns();
        c.unfinished.retain(|(i, _, _)| *i != id);
        c.idle += 1;
        state.thread_free.notify_all();
        let until = Instant::now() + THREAD_IDLE;
        loop {
            if let Some(next) = c.handed.pop_front() {
                (id, stream) = next;
                break;
            }
            let now = Instant::now();
            if now >= until {
                // Leaving: no longer idle, no longer counted.
                c.idle -= 1;
                c.threads -= 1;
                state.thread_free.notify_all();
                return;
            }
            c = state
                .work
                .wait_timeout(c, until - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }
}

/// Why a request head could not be read.
enum HeadError {
    /// The client went away, timed out or was dropped: just close.
    Gone,
    TooLarge,
    Malformed,
}

/// The parts of a request head the server looks at.
struct Head {
    method: String,
    path: String,
    authorized: bool,
}

const MAX_HEADERS: usize = 32;

fn read_head(stream: &mut TcpStream, state: &State) -> std::result::Result<Head, HeadError> {
    let deadline = Instant::now() + state.limits.request_timeout;
    let max = state.limits.max_head_bytes;
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HeadError::Gone);
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|_| HeadError::Gone)?;
        let room = (max + 1 - buf.len()).min(chunk.len());
        let n = match stream.read(&mut chunk[..room]) {
            Ok(0) | Err(_) => return Err(HeadError::Gone),
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => {
                let want = state.token.expose_secret().as_bytes();
                let authorized = req
                    .headers
                    .iter()
                    .filter(|h| h.name.eq_ignore_ascii_case("Authorization"))
                    .any(|h| h.value.ct_eq(want).into());
                let path = req.path.unwrap_or("");
                return Ok(Head {
                    method: req.method.unwrap_or("").to_owned(),
                    path: path.split('?').next().unwrap_or("").to_owned(),
                    authorized,
                });
            }
            Ok(httparse::Status::Partial) if buf.len() > max => return Err(HeadError::TooLarge),
            Ok(httparse::Status::Partial) => {}
            Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
            Err(_) => return Err(HeadError::Malformed),
        }
    }
}

fn serve_connection(mut stream: TcpStream, id: u64, state: &State) {
    let head = read_head(&mut stream, state);
    if !state.finished_head(id) {
        return; // dropped to make room while it was being read
    }
    let (status, body) = match head {
        Err(HeadError::Gone) => return,
        Err(HeadError::TooLarge) => {
            error_body(431, "RequestHeaderFieldsTooLarge", "request head too large")
        }
        Err(HeadError::Malformed) => error_body(400, "BadRequest", "malformed HTTP request"),
        Ok(head) => {
            let answer = answer(&head, state);
            tracing::debug!(
                method = head.method,
                path = head.path,
                status = answer.0,
                "serve: request"
            );
            answer
        }
    };
    let _ = stream.set_write_timeout(Some(state.limits.request_timeout));
    let _ = write_response(&mut stream, status, &body);
    let _ = stream.shutdown(Shutdown::Write);
}

fn answer(head: &Head, state: &State) -> (u16, Zeroizing<Vec<u8>>) {
    if !head.authorized {
        error_body(
            403,
            "AccessDenied",
            "missing or wrong Authorization token (use AWS_CONTAINER_AUTHORIZATION_TOKEN as printed by tapcred serve)",
        )
    } else if head.path != CREDENTIALS_PATH {
        error_body(404, "NotFound", "credentials are served on / only")
    } else if head.method != "GET" {
        error_body(405, "MethodNotAllowed", "use GET")
    } else {
        match state.credentials() {
            Ok(c) => (200, body_for(&c)),
            Err(e) => error_body(500, "CredentialsUnavailable", e.message()),
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Internal Server Error",
    }
}

/// The whole answer in one write (the body may hold credentials: zeroized after).
fn write_response(stream: &mut TcpStream, status: u16, body: &[u8]) -> io::Result<()> {
    let mut out = Zeroizing::new(Vec::with_capacity(body.len() + 160));
    write!(
        out,
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nCache-Control: no-store\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reason(status),
        body.len()
    )?;
    out.extend_from_slice(body);
    stream.write_all(&out)?;
    stream.flush()
}

fn error_body(status: u16, code: &str, message: &str) -> (u16, Zeroizing<Vec<u8>>) {
    let body = serde_json::json!({ "code": code, "message": message });
    (
        status,
        Zeroizing::new(serde_json::to_vec(&body).unwrap_or_default()),
    )
}

impl State {
    fn lock_conns(&self) -> std::sync::MutexGuard<'_, Conns> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drop the oldest connection still sending its head; whether there was one.
    fn evict_oldest(&self) -> bool {
        let old = self.lock_conns().unfinished.pop_front();
        old.map(|(_, _, s)| s.shutdown(Shutdown::Both)).is_some()
    }

    /// The head of `id` has been read (or failed): it can no longer be dropped for room.
    /// False when it was dropped meanwhile.
    fn finished_head(&self, id: u64) -> bool {
        let mut c = self.lock_conns();
        let before = c.unfinished.len();
        c.unfinished.retain(|(i, _, _)| *i != id);
        c.unfinished.len() != before
    }

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

/// A loopback listener with TCP_NODELAY (inherited by accepted sockets on Linux), so a
/// small answer is never held back waiting for a delayed ACK.
pub fn nodelay_listener(addr: std::net::SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    // A deep accept queue: a burst of connections should wait there, not have SYNs dropped
    // (a dropped SYN costs a real client a 1 s retransmit). The kernel caps it (somaxconn).
    socket.listen(1024)?;
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

    /// Send raw bytes, read the answer's status (None: closed without an answer).
    fn raw_status(h: &ServeHandle, bytes: &[u8]) -> Option<u16> {
        let mut s = TcpStream::connect(h.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = s.write_all(bytes);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out)
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }

    #[test]
    fn oversized_and_malformed_heads_get_431_and_400() {
        let (p, calls) = counting(vec![3600]);
        let h = start(p, ServeOptions::default()).unwrap();
        let big = format!(
            "GET / HTTP/1.1\r\nAuthorization: {}\r\nX-Big: {}\r\n\r\n",
            h.token(),
            "a".repeat(20 * 1024)
        );
        assert_eq!(raw_status(&h, big.as_bytes()), Some(431));
        let many: String = (0..40).map(|i| format!("X-{i}: 1\r\n")).collect();
        let many = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_eq!(raw_status(&h, many.as_bytes()), Some(431));
        assert_eq!(raw_status(&h, b"\x16\x03\x01 not http\r\n\r\n"), Some(400));
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        assert_eq!(get(&h, "GET", "/", Some(h.token())).0, 200);
    }

    #[test]
    fn a_full_server_drops_the_oldest_unfinished_connection_for_a_new_one() {
        let (p, _) = counting(vec![3600]);
        let h = start(
            p,
            ServeOptions {
                limits: Limits {
                    max_connections: 4,
                    ..Limits::default()
                },
                ..Default::default()
            },
        )
        .unwrap();
        let mut idle: Vec<TcpStream> = (0..4)
            .map(|_| TcpStream::connect(h.addr()).unwrap())
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(get(&h, "GET", "/", Some(h.token())).0, 200);
        // The oldest idle one was closed by the server to make room.
        idle[0]
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut b = [0u8; 1];
        assert_eq!(idle[0].read(&mut b).unwrap_or(0), 0, "oldest not dropped");
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
        let os = std::error::Error::source(&err).and_then(|s| s.downcast_ref::<std::io::Error>());
        assert_eq!(
            os.map(|e| e.kind()),
            Some(std::io::ErrorKind::AddrInUse),
            "{err:?}"
        );
        h.shutdown();
        // The listener closes when the accept thread ends (joined by shutdown); allow a moment.
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
