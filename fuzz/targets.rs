//! Fuzz target bodies, shared by the cargo-fuzz binaries (`fuzz/fuzz_targets/*.rs`, nightly)
//! and the stable corpus replay (`tests/fuzz_corpus.rs`, run by CI). Each takes arbitrary
//! bytes and must neither panic nor hang; they use only tapcred's public API and std.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tapcred::token::device::{self, Backend, Connection};
use tapcred::token::oath::apdu::{ApduClient, Command};
use tapcred::token::oath::{CredentialId, OathType, matching};
use tapcred::token::oath::{codec, session, tlv};
use tapcred::token::transport::ApduTransport;

/// A target: arbitrary bytes in, no panic.
pub type Target = fn(&[u8]);

/// Every target by name (the directory name under `fuzz/corpus/`).
pub const TARGETS: &[(&str, Target)] = &[
    ("apdu_tlv", apdu_tlv),
    ("oath_session", oath_session),
    ("profile", profile),
    ("seed", seed),
    ("cache_ledger", cache_ledger),
    ("sts_answer", sts_answer),
    ("serve_request", serve_request),
];

// ----- card answers ------------------------------------------------------------------------

/// A card that answers every APDU with the next chunk of the fuzz input. Chunks are
/// length-prefixed: one byte, or 0xFF followed by a big-endian u16. When the input runs out
/// the card is gone (a transport error, as when a key is pulled).
#[derive(Clone)]
struct Script(Arc<Mutex<(Vec<u8>, usize)>>);

impl Script {
    fn new(data: &[u8]) -> Script {
        Script(Arc::new(Mutex::new((data.to_vec(), 0))))
    }
    fn next(&self) -> Option<Vec<u8>> {
        let mut g = self.0.lock().unwrap();
        let (data, pos) = &mut *g;
        let first = *data.get(*pos)?;
        *pos += 1;
        let len = if first == 0xFF {
            let hi = *data.get(*pos)? as usize;
            let lo = *data.get(*pos + 1)? as usize;
            *pos += 2;
            (hi << 8) | lo
        } else {
            first as usize
        };
        let end = (*pos + len).min(data.len());
        let out = data[*pos..end].to_vec();
        *pos = end;
        Some(out)
    }
}

impl ApduTransport for Script {
    fn transmit(&mut self, _apdu: &[u8]) -> tapcred::Result<Vec<u8>> {
        self.next()
            .ok_or_else(|| tapcred::Error::token("fuzz card: removed"))
    }
}

impl Connection for Script {
    fn extended_max(&self) -> Option<usize> {
        Some(3062)
    }
}

struct ScriptBackend(Script);

impl Backend for ScriptBackend {
    fn readers(&self) -> tapcred::Result<Vec<String>> {
        Ok(vec!["Yubico YubiKey OTP+FIDO+CCID 00 00".to_owned()])
    }
    fn connect(&self, _reader: &str) -> tapcred::Result<Option<Box<dyn Connection>>> {
        Ok(Some(Box::new(self.0.clone())))
    }
}

/// The APDU/TLV layer: every parser of card answers, names and serials, and response
/// chaining (61xx / SEND REMAINING) over the input split into answers.
pub fn apdu_tlv(data: &[u8]) {
    let _ = tlv::parse(data);
    let _ = tlv::parse_one(data);
    let _ = codec::parse_select(data);
    let _ = codec::parse_list(data);
    let _ = codec::parse_calculate(data);
    let _ = codec::parse_calculate_all(data).map(|v| {
        for e in v {
            let _ = (e.name(), e.kind());
        }
    });
    let _ = codec::parse_truncated_value(data).map(|t| t.code());
    let _ = device::parse_device_info(data);
    let text = String::from_utf8_lossy(data);
    for kind in [OathType::Totp, OathType::Hotp] {
        let id = CredentialId::parse(&text, kind);
        let _ = id.format(kind);
    }
    let _ = codec::decode_base32_secret(&text);
    let _ = matching::parse_mfa_arn(&text);
    let mut client = ApduClient::new(Script::new(data));
    let _ = client.send(&Command::new(0xA1, 0, 0, vec![]));
    let mut ext = ApduClient::new(Script::new(data));
    ext.set_extended(Some(3062));
    ext.set_yk42_quirk(true);
    let _ = ext.send(&Command::new(0xA4, 0, 0, vec![0u8; 300]));
}

/// The OATH client fed arbitrary card answers through the in-memory transport: a whole
/// `tapcred code` flow (find the key, SELECT, VALIDATE with a password, CALCULATE_ALL,
/// matching, CALCULATE), then the session calls one by one.
pub fn oath_session(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let script = Script::new(rest);
    let mut env = HashMap::new();
    env.insert("TAPCRED_OATH_PASSWORD".to_owned(), "fuzz".to_owned());
    let ui = tapcred::ui::RecordingUi {
        no_sleep: true,
        ..Default::default()
    };
    let settings = tapcred::token::TokenSettings {
        oath_account: (flags & 1 != 0).then(|| "Amazon Web Services:alice@111111111111".into()),
        ..Default::default()
    };
    let _ = tapcred::token::oath::code_for_with(
        Arc::new(ScriptBackend(script.clone())),
        &env,
        "arn:aws:iam::111111111111:mfa/alice",
        &settings,
        &ui,
    );
    // The remaining answers drive a session directly.
    let Ok(mut s) = session::Session::open(script, (flags & 2 != 0).then_some(3062)) else {
        return;
    };
    if s.locked() {
        let key = codec::derive_key(b"fuzz", &s.info().salt);
        let _ = s.validate(&key);
    }
    let _ = s.info().version_string();
    let _ = s.info().device_id();
    let _ = s.list();
    let _ = s.codes(1_700_000_000);
    let _ = s.calculate(
        b"alice",
        &codec::totp_challenge(1_700_000_000, 30),
        flags & 4 != 0,
    );
    let _ = s.delete(b"alice");
}

// ----- files ---------------------------------------------------------------------------------

/// A private scratch directory for this process (one per target run, reused across inputs).
fn scratch(name: &str) -> PathBuf {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    let base = BASE.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("tapcred-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    });
    let d = base.join(name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write_private(path: &Path, data: &[u8]) {
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    f.write_all(data).unwrap();
}

/// The profile loader: the input is `config \0 credentials` (no NUL: config only); every
/// profile found is resolved.
pub fn profile(data: &[u8]) {
    let dir = scratch("profile");
    let (config, credentials) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    let files = tapcred::profile::AwsFiles {
        config: dir.join("config"),
        credentials: dir.join("credentials"),
    };
    std::fs::write(&files.config, config).unwrap();
    match credentials {
        Some(c) => std::fs::write(&files.credentials, c).unwrap(),
        None => {
            let _ = std::fs::remove_file(&files.credentials);
        }
    }
    let Ok(p) = tapcred::profile::Profiles::load(&files) else {
        return;
    };
    let env: HashMap<String, String> = HashMap::new();
    for name in p.names().into_iter().take(16) {
        if let Ok(r) = p.resolve(&name, &env) {
            let _ = tapcred::sts::StsTarget::for_profile(&r, &env);
        }
    }
    let _ = p.resolve("default", &env);
    let _ = p.resolve("no such profile", &env);
}

/// Seeds and `otpauth://` URIs (env var or file contents), then a code from what was
/// accepted.
pub fn seed(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    use tapcred::token::TokenSource;
    if let Ok(mut src) = tapcred::token::software::SoftwareSource::from_seed(text, "fuzz seed") {
        let ui = tapcred::ui::RecordingUi::new();
        let req = tapcred::token::CodeRequest {
            mfa_serial: "arn:aws:iam::111111111111:mfa/alice",
            profile: "fuzz",
            at: 1_700_000_000,
        };
        let _ = src.period();
        let _ = src.code(&req, &ui);
    }
}

/// The session cache and TOTP ledger readers: the input is written as a cache entry file
/// and as a ledger file (mode 0600, ours), then read back, listed and cleared.
pub fn cache_ledger(data: &[u8]) {
    use tapcred::cache::{CacheKey, SessionCache, SessionKind};
    let dir = scratch("cache");
    let ui = tapcred::ui::RecordingUi::new();
    let cache = SessionCache::open(&dir, &ui);
    let key = CacheKey::builder(SessionKind::GetSessionToken)
        .source("AKIAFUZZ")
        .mfa_serial(Some("arn:aws:iam::111111111111:mfa/alice"))
        .build();
    write_private(&dir.join(format!("{}.json", key.hex())), data);
    let _ = cache.get(&key, tapcred::cache::ADVISORY_WINDOW);
    let _ = cache.list();
    let serial = "arn:aws:iam::111111111111:mfa/alice";
    // Let the cache create its state directory, then replace the ledger file.
    cache.record(serial, 30, &ui);
    if let Some(steps) = find_dir(&dir, "steps") {
        for e in std::fs::read_dir(&steps).into_iter().flatten().flatten() {
            write_private(&e.path(), data);
        }
    }
    let _ = cache.last_window_end(serial, &ui);
    let _ = cache.clear(None);
}

fn find_dir(root: &Path, name: &str) -> Option<PathBuf> {
    for e in std::fs::read_dir(root).ok()?.flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n == name) {
                return Some(p);
            }
            if let Some(f) = find_dir(&p, name) {
                return Some(f);
            }
        }
    }
    None
}

// ----- network ---------------------------------------------------------------------------

/// A loopback HTTP server that answers every request with the current fuzz answer.
struct Canned {
    url: String,
    answer: Arc<Mutex<Vec<u8>>>,
}

fn read_request(s: &mut TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let Ok(n) = s.read(&mut chunk) else { return };
        if n == 0 {
            return;
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
                return;
            }
        }
    }
}

fn canned() -> &'static Canned {
    static C: OnceLock<Canned> = OnceLock::new();
    C.get_or_init(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let answer = Arc::new(Mutex::new(Vec::new()));
        let a = answer.clone();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                read_request(&mut s);
                let body = a.lock().unwrap().clone();
                let _ = s.write_all(&body);
            }
        });
        Canned { url, answer }
    })
}

/// STS answers: the SDK's XML parse and tapcred's mapping of its results and errors
/// (`src/sts/`: codes → messages and exit codes, credentials → cache entries). The first byte
/// picks the HTTP status (200/400/403/404, none the SDK retries), the rest is the body.
pub fn sts_answer(data: &[u8]) {
    use tapcred::sts::{CallContext, MfaCode, Sts, StsApi, StsTarget};
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let status = [
        "200 OK",
        "400 Bad Request",
        "403 Forbidden",
        "404 Not Found",
    ][sel as usize % 4];
    let c = canned();
    let mut answer = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    answer.extend_from_slice(body);
    *c.answer.lock().unwrap() = answer;
    thread_local! {
        static STS: Sts = Sts::new(StsTarget {
            region: "us-east-1".into(),
            endpoint_url: Some(canned().url.clone()),
        })
        .unwrap();
    }
    let creds = tapcred::Credentials::new("AKIAFUZZ", "fuzz-secret", None, None);
    let ctx = CallContext {
        profile: "fuzz",
        signer: "fuzz-user",
    };
    let mfa = MfaCode {
        serial: "arn:aws:iam::111111111111:mfa/alice",
        code: "123456",
    };
    STS.with(|sts| {
        let r = if sel & 0x80 == 0 {
            sts.get_session_token(&creds, Some(mfa), None, ctx)
        } else {
            let role = tapcred::profile::RoleStep {
                profile: "fuzz".into(),
                role_arn: "arn:aws:iam::111111111111:role/r".into(),
                external_id: None,
                role_session_name: None,
                duration_seconds: None,
                mfa: None,
            };
            sts.assume_role(&creds, &role, Some(mfa), None, ctx)
        };
        match r {
            // Whatever came back, the message stays one line.
            Err(e) => assert!(
                !e.message().contains('\n'),
                "multi-line STS error: {:?}",
                e.message()
            ),
            // Credentials handed out are complete.
            Ok(c) => assert!(
                !c.access_key_id.is_empty()
                    && !c.secret().is_empty()
                    && c.token().is_some_and(|t| !t.is_empty())
                    && c.expiration.is_some_and(|e| e.unix_timestamp() > 0),
                "incomplete credentials accepted"
            ),
        }
    });
}

/// `serve`'s request handling: the input is sent as raw bytes on a connection to a running
/// server; afterwards a well-formed request must still be answered.
pub fn serve_request(data: &[u8]) {
    struct Served {
        handle: tapcred::serve::ServeHandle,
    }
    static S: OnceLock<Served> = OnceLock::new();
    let s = S.get_or_init(|| {
        let provider: tapcred::serve::CredentialsProvider = Arc::new(|| {
            Ok(tapcred::Credentials::new(
                "ASIAFUZZ",
                "fuzz-secret",
                Some("fuzz-token".into()),
                Some(time::OffsetDateTime::now_utc() + time::Duration::hours(1)),
            ))
        });
        Served {
            handle: tapcred::serve::start(provider, Default::default()).unwrap(),
        }
    });
    let addr = s.handle.addr();
    if let Ok(mut c) = TcpStream::connect(addr) {
        let _ = c.set_read_timeout(Some(Duration::from_millis(500)));
        let _ = c.write_all(data);
        let _ = c.shutdown(std::net::Shutdown::Write);
        let mut sink = Vec::new();
        let _ = c.read_to_end(&mut sink);
    }
    let mut c = TcpStream::connect(addr).expect("serve stopped accepting");
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        c,
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {}\r\nConnection: close\r\n\r\n",
        s.handle.token()
    )
    .unwrap();
    let mut resp = Vec::new();
    let _ = c.read_to_end(&mut resp);
    assert!(
        resp.starts_with(b"HTTP/1.1 200"),
        "serve stopped answering after {} fuzz bytes: {:?}",
        data.len(),
        String::from_utf8_lossy(&resp[..resp.len().min(200)])
    );
}
