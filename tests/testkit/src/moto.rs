//! moto as a peer STS: `moto_server` from the tapcred venv (`$TAPCRED_VENV`, default
//! `/opt/tapcred-venv`), on loopback, with its request recorder on, so a test can assert on
//! exactly what a client sent (`TokenCode`, `SerialNumber`, …). moto validates nothing about
//! MFA; the strict checks live in [`crate::sts_double`].
//!
//! ```no_run
//! use tapcred_testkit::moto::MotoServer;
//! let Some(moto) = MotoServer::start_or_skip("my_test") else { return };
//! // AWS_ENDPOINT_URL_STS = moto.endpoint(); run the client …
//! let calls = moto.recorded_sts_calls();
//! assert_eq!(calls[0]["TokenCode"].len(), 6);
//! ```

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long `moto_server` may take to answer its first request.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// The venv holding the Python test tools: `$TAPCRED_VENV` or `/opt/tapcred-venv`.
pub fn venv() -> PathBuf {
    std::env::var_os("TAPCRED_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/tapcred-venv"))
}

/// Path of `moto_server` in the venv, if it is there.
pub fn moto_server_path() -> Option<PathBuf> {
    let p = venv().join("bin").join("moto_server");
    p.is_file().then_some(p)
}

/// One request moto recorded.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    pub url: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl RecordedRequest {
    /// Query-string parameters merged with the form body (the Query protocol's fields).
    pub fn form_fields(&self) -> HashMap<String, String> {
        let mut out = HashMap::new();
        if let Some((_, q)) = self.url.split_once('?') {
            for (k, v) in form_urlencoded::parse(q.as_bytes()) {
                out.insert(k.into_owned(), v.into_owned());
            }
        }
        for (k, v) in form_urlencoded::parse(&self.body) {
            out.insert(k.into_owned(), v.into_owned());
        }
        out
    }
}

/// A running `moto_server` (killed on drop) with recording enabled.
pub struct MotoServer {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl std::fmt::Debug for MotoServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MotoServer")
            .field("endpoint", &self.endpoint())
            .finish()
    }
}

impl MotoServer {
    /// Start `moto_server -H 127.0.0.1 -p PORT` with `MOTO_ENABLE_RECORDING=True` and a
    /// private recording file; waits until it answers. Recording starts empty and on.
    pub fn start() -> Result<MotoServer, String> {
        let exe = moto_server_path().ok_or_else(|| {
            format!(
                "moto_server not found in {} (set TAPCRED_VENV, or: python3 -m venv /opt/tapcred-venv && /opt/tapcred-venv/bin/pip install 'moto[server]')",
                venv().display()
            )
        })?;
        let mut last_err = String::new();
        for _ in 0..3 {
            match Self::start_once(&exe) {
                Ok(m) => return Ok(m),
                Err(e) => last_err = e,
            }
        }
        Err(last_err)
    }

    /// [`start`](Self::start), or `None` after printing a loud SKIP line when the venv is
    /// missing; under `CI=true` a missing venv or a failed start panics.
    pub fn start_or_skip(test: &str) -> Option<MotoServer> {
        if moto_server_path().is_none() && !crate::ci::is_ci() {
            crate::ci::skip(
                test,
                &format!(
                    "moto_server is missing from {} (set TAPCRED_VENV or install moto[server])",
                    venv().display()
                ),
            );
            return None;
        }
        match Self::start() {
            Ok(m) => Some(m),
            Err(e) => panic!("{test}: cannot start moto: {e}"),
        }
    }

    fn start_once(exe: &Path) -> Result<MotoServer, String> {
        let port = free_port()?;
        let dir = private_dir(port)?;
        let log = std::fs::File::create(dir.join("moto.log"))
            .map_err(|e| format!("cannot create moto log: {e}"))?;
        let log2 = log
            .try_clone()
            .map_err(|e| format!("cannot clone log handle: {e}"))?;
        let child = Command::new(exe)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_ENABLE_RECORDING", "True")
            .env("MOTO_RECORDER_FILEPATH", dir.join("recording.jsonl"))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
        let mut server = MotoServer { child, port, dir };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!(
                    "moto_server exited ({status}) before answering: {}",
                    server.log_tail()
                ));
            }
            if let Ok((200, _)) = server.request("GET", "/moto-api/", b"") {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "moto_server did not answer within {READY_TIMEOUT:?}: {}",
                    server.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        server.reset_recording()?;
        server.start_recording()?;
        Ok(server)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Forget everything recorded so far.
    pub fn reset_recording(&self) -> Result<(), String> {
        self.post_ok("/moto-api/recorder/reset-recording")
    }

    pub fn start_recording(&self) -> Result<(), String> {
        self.post_ok("/moto-api/recorder/start-recording")
    }

    pub fn stop_recording(&self) -> Result<(), String> {
        self.post_ok("/moto-api/recorder/stop-recording")
    }

    /// Reset moto's emulated state (all services).
    pub fn reset_state(&self) -> Result<(), String> {
        self.post_ok("/moto-api/reset")
    }

    /// The raw recording: JSON lines.
    pub fn download_recording(&self) -> Result<String, String> {
        match self.request("GET", "/moto-api/recorder/download-recording", b"")? {
            (200, body) => Ok(body),
            (s, body) => Err(format!("download-recording: HTTP {s}: {body}")),
        }
    }

    /// Every recorded request, parsed.
    pub fn recorded_requests(&self) -> Result<Vec<RecordedRequest>, String> {
        parse_recording(&self.download_recording()?)
    }

    /// The form fields of every recorded STS call (`Version=2011-06-15`), in order, e.g.
    /// `{"Action": "AssumeRole", "TokenCode": "047091", "SerialNumber": "arn:…", …}`.
    /// Panics (with moto's log) if the recording cannot be read.
    pub fn recorded_sts_calls(&self) -> Vec<HashMap<String, String>> {
        let requests = self
            .recorded_requests()
            .unwrap_or_else(|e| panic!("moto recording unreadable: {e}; {}", self.log_tail()));
        requests
            .iter()
            .map(RecordedRequest::form_fields)
            .filter(|f| f.get("Version").map(String::as_str) == Some("2011-06-15"))
            .collect()
    }

    fn post_ok(&self, path: &str) -> Result<(), String> {
        match self.request("POST", path, b"")? {
            (200, _) => Ok(()),
            (s, body) => Err(format!("{path}: HTTP {s}: {body}")),
        }
    }

    /// A one-shot HTTP/1.0 request to moto (no keep-alive, no chunked bodies).
    fn request(&self, method: &str, path: &str, body: &[u8]) -> Result<(u16, String), String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))
            .map_err(|e| format!("connect to moto: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        let head = format!(
            "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\n\r\n",
            self.port,
            body.len()
        );
        s.write_all(head.as_bytes())
            .and_then(|_| s.write_all(body))
            .map_err(|e| format!("write to moto: {e}"))?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)
            .map_err(|e| format!("read from moto: {e}"))?;
        let text = String::from_utf8_lossy(&raw);
        let status = text
            .get(9..12)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("bad HTTP response from moto: {:?}", text.get(..40)))?;
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        Ok((status, body))
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("moto.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(15)..].join("\n");
        format!("moto log tail:\n{tail}")
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Parse moto's recording (JSON lines; bodies base64 when `body_encoded`).
pub fn parse_recording(text: &str) -> Result<Vec<RecordedRequest>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("recording line {}: {e}", n + 1))?;
        let s = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_owned();
        let body_text = s("body");
        let body = if v.get("body_encoded").and_then(|b| b.as_bool()) == Some(true) {
            data_encoding::BASE64
                .decode(body_text.as_bytes())
                .map_err(|e| format!("recording line {}: body base64: {e}", n + 1))?
        } else {
            body_text.into_bytes()
        };
        let headers = v
            .get("headers")
            .and_then(|h| h.as_object())
            .map(|h| {
                h.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        out.push(RecordedRequest {
            method: s("method"),
            url: s("url"),
            headers,
            body,
        });
    }
    Ok(out)
}

fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind(("127.0.0.1", 0)).map_err(|e| format!("no free port: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

fn private_dir(port: u16) -> Result<PathBuf, String> {
    let mut r = [0u8; 6];
    getrandom::fill(&mut r).map_err(|e| e.to_string())?;
    let dir = std::env::temp_dir().join(format!(
        "tapcred-moto-{}-{port}-{}",
        std::process::id(),
        data_encoding::HEXLOWER.encode(&r)
    ));
    std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_recording_line() {
        let line = r#"{"headers": {"Host": "127.0.0.1:1"}, "method": "POST", "url": "http://127.0.0.1:1/", "body": "QWN0aW9uPUFzc3VtZVJvbGUmVmVyc2lvbj0yMDExLTA2LTE1JlRva2VuQ29kZT0wNDcwOTE=", "body_encoded": true}
{"headers": {}, "method": "GET", "url": "http://127.0.0.1:1/?Action=GetCallerIdentity&Version=2011-06-15", "body": "", "body_encoded": false}
"#;
        let r = parse_recording(line).unwrap();
        assert_eq!(r.len(), 2);
        let f = r[0].form_fields();
        assert_eq!(f["Action"], "AssumeRole");
        assert_eq!(f["TokenCode"], "047091");
        assert_eq!(r[1].form_fields()["Action"], "GetCallerIdentity");
        assert!(parse_recording("not json").is_err());
    }
}
