//! A loopback HTTP proxy in front of an STS endpoint (the strict double) that injects faults
//! per request: 500s, throttling, malformed XML, an HTML page, slow answers, connection
//! resets, and "answer lost" (the request reaches STS, the reply never reaches tapcred).
//!
//! One request per connection (`Connection: close` both ways), so each request meets the
//! next queued fault, then the default one.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the proxy does with one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StsFault {
    /// Forward to STS and relay the answer.
    Pass,
    /// 500 with an STS `InternalFailure` error document (not forwarded).
    Status500,
    /// 503 with an HTML body, as a load balancer sends (not forwarded).
    Status503Html,
    /// 400 `Throttling` "Rate exceeded" (not forwarded).
    Throttle,
    /// 200 with a document that is not well-formed XML (not forwarded).
    MalformedXml,
    /// 200 with a well-formed answer that lacks the credentials (not forwarded).
    NoCredentials,
    /// 200 with a proxy's HTML page (not forwarded).
    Html,
    /// Wait, then forward.
    Slow(Duration),
    /// Close the connection with a TCP reset before answering (not forwarded).
    Reset,
    /// Forward to STS (which acts on it, e.g. consumes the MFA code), then reset the
    /// connection instead of relaying the answer.
    AnswerLost,
    /// Send the first `n` bytes of STS's answer, then close.
    Truncate(usize),
}

struct Shared {
    queue: Mutex<VecDeque<StsFault>>,
    default: Mutex<StsFault>,
    requests: AtomicU64,
    forwarded: AtomicU64,
    stop: AtomicBool,
}

/// A running proxy on 127.0.0.1; dropped: stops accepting.
pub struct FaultProxy {
    port: u16,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// Proxy to `http://127.0.0.1:upstream_port`.
    pub fn start(upstream_port: u16) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared {
            queue: Mutex::new(VecDeque::new()),
            default: Mutex::new(StsFault::Pass),
            requests: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        std::thread::Builder::new()
            .name("sts-fault-proxy".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if s.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let s = s.clone();
                    std::thread::spawn(move || handle(conn, upstream_port, &s));
                }
            })?;
        Ok(FaultProxy { port, shared })
    }

    /// `http://127.0.0.1:PORT` (for `AWS_ENDPOINT_URL_STS`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Apply `fault` to the next request not yet given a queued fault.
    pub fn push(&self, fault: StsFault) {
        self.shared.queue.lock().unwrap().push_back(fault);
    }

    /// The fault for requests once the queue is empty (initially [`StsFault::Pass`]).
    pub fn set_default(&self, fault: StsFault) {
        *self.shared.default.lock().unwrap() = fault;
    }

    /// Requests received.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Requests that reached STS.
    pub fn forwarded(&self) -> u64 {
        self.shared.forwarded.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Read one HTTP request (head + Content-Length body).
fn read_request(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(h) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..h]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= h + 4 + len {
                return Some(buf);
            }
        }
    }
}

/// The request with `Connection: close` (so STS closes after its answer).
fn with_close(req: &[u8]) -> Vec<u8> {
    let h = req
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(req.len());
    let head = String::from_utf8_lossy(&req[..h]);
    let mut out = String::new();
    for line in head.split("\r\n") {
        if !line.to_ascii_lowercase().starts_with("connection:") {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("Connection: close\r\n\r\n");
    let mut v = out.into_bytes();
    v.extend_from_slice(req.get(h + 4..).unwrap_or_default());
    v
}

fn forward(req: &[u8], upstream: u16, shared: &Shared) -> Option<Vec<u8>> {
    shared.forwarded.fetch_add(1, Ordering::SeqCst);
    let mut up = TcpStream::connect(("127.0.0.1", upstream)).ok()?;
    up.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    up.write_all(&with_close(req)).ok()?;
    let mut resp = Vec::new();
    up.read_to_end(&mut resp).ok()?;
    Some(resp)
}

fn canned(status: &str, content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nx-amzn-RequestId: fault-proxy\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn error_doc(code: &str, message: &str, kind: &str) -> String {
    format!(
        "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>{kind}</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>fault-proxy</RequestId></ErrorResponse>"
    )
}

fn reset(s: TcpStream) {
    let sock = socket2::Socket::from(s);
    let _ = sock.set_linger(Some(Duration::ZERO));
    drop(sock);
}

fn handle(mut conn: TcpStream, upstream: u16, shared: &Shared) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let Some(req) = read_request(&mut conn) else {
        return;
    };
    shared.requests.fetch_add(1, Ordering::SeqCst);
    let fault = shared
        .queue
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or_else(|| shared.default.lock().unwrap().clone());
    let answer = match fault {
        StsFault::Pass => forward(&req, upstream, shared),
        StsFault::Slow(d) => {
            std::thread::sleep(d);
            forward(&req, upstream, shared)
        }
        StsFault::Status500 => Some(canned(
            "500 Internal Server Error",
            "text/xml",
            &error_doc("InternalFailure", "An internal error occurred.", "Receiver"),
        )),
        StsFault::Status503Html => Some(canned(
            "503 Service Unavailable",
            "text/html",
            "<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>",
        )),
        StsFault::Throttle => Some(canned(
            "400 Bad Request",
            "text/xml",
            &error_doc("Throttling", "Rate exceeded", "Sender"),
        )),
        StsFault::MalformedXml => Some(canned(
            "200 OK",
            "text/xml",
            "<GetSessionTokenResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><GetSessionTokenResult><Credentials><AccessKeyId>ASIA",
        )),
        StsFault::NoCredentials => Some(canned(
            "200 OK",
            "text/xml",
            "<GetSessionTokenResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><GetSessionTokenResult></GetSessionTokenResult><ResponseMetadata><RequestId>x</RequestId></ResponseMetadata></GetSessionTokenResponse>",
        )),
        StsFault::Html => Some(canned(
            "200 OK",
            "text/html",
            "<html><body>Please log in to the proxy</body></html>",
        )),
        StsFault::Reset => None,
        StsFault::AnswerLost => {
            let _ = forward(&req, upstream, shared);
            None
        }
        StsFault::Truncate(n) => forward(&req, upstream, shared).map(|mut r| {
            r.truncate(n);
            r
        }),
    };
    match answer {
        Some(bytes) => {
            let _ = conn.write_all(&bytes);
            let _ = conn.shutdown(Shutdown::Write);
        }
        None => reset(conn),
    }
}
