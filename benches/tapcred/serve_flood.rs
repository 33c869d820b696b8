//! Row S2: `tapcred serve` under a local connection flood (issue 17 item 16). One thread
//! opens loopback connections as fast as it can for `TAPCRED_BENCH_FLOOD_SECONDS` (default
//! 10), keeping the last 200 open and idle and closing the rest, then stops by itself.
//! Meanwhile a real client asks for credentials every 10 ms the way the SDKs' container
//! provider does (the token, a 2 s timeout, no retry), and the server's threads are counted
//! from /proc every 2 ms. Reported: the flood's rate, the share of real requests answered
//! with credentials, their latency, and the most threads seen (limit: 64 connection
//! threads, plus the command's thread and the accept thread).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::prelude::*;

const WHAT: &str = "`tapcred serve --profile toolkit-user` under a local connection flood";

struct Server {
    child: std::process::Child,
    addr: SocketAddr,
    token: String,
    _home: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(bin: &Path) -> Result<Server, String> {
    let home = tempfile::tempdir().map_err(|e| e.to_string())?;
    let aws = home.path().join(".aws");
    std::fs::create_dir_all(&aws).map_err(|e| e.to_string())?;
    for f in ["config", "credentials"] {
        std::fs::copy(root().join("fixtures/aws/design").join(f), aws.join(f))
            .map_err(|e| format!("{f}: {e}"))?;
    }
    let mut child = Command::new(bin)
        .args(["serve", "--profile", "toolkit-user"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("TMPDIR", home.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("spawn {}: {e}", bin.display()))?;
    let mut lines = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
    let mut value = |prefix: &str| {
        lines
            .next()
            .and_then(|l| l.ok())
            .and_then(|l| l.strip_prefix(prefix).map(str::to_owned))
            .ok_or(format!("serve did not print {prefix}"))
    };
    let uri = value("export AWS_CONTAINER_CREDENTIALS_FULL_URI=http://")?;
    let token = value("export AWS_CONTAINER_AUTHORIZATION_TOKEN=")?;
    let addr = uri
        .trim_end_matches('/')
        .parse()
        .map_err(|e| format!("{uri}: {e}"))?;
    Ok(Server {
        child,
        addr,
        token,
        _home: home,
    })
}

/// One request as an SDK makes it: whether credentials came back, and how long it took.
fn real_request(addr: SocketAddr, token: &str) -> (bool, Duration) {
    let t = Instant::now();
    let limit = Duration::from_secs(2);
    let ok = (|| {
        let mut s = TcpStream::connect_timeout(&addr, limit).ok()?;
        let left = limit.checked_sub(t.elapsed())?;
        s.set_read_timeout(Some(left)).ok()?;
        s.set_write_timeout(Some(left)).ok()?;
        write!(
            s,
            "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {token}\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        (out.starts_with("HTTP/1.1 200") && out.contains("\"AccessKeyId\"")).then_some(())
    })()
    .is_some();
    (ok, t.elapsed())
}

fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|rd| rd.count())
        .unwrap_or(0)
}

pub(crate) fn bench_s_flood(rep: &mut Report) {
    let secs = env_usize("TAPCRED_BENCH_FLOOD_SECONDS", 10) as f64;
    let srv = match start(&release_bin("tapcred")) {
        Ok(s) => s,
        Err(why) => {
            rep.skip("S2", WHAT, &why);
            return;
        }
    };
    if !real_request(srv.addr, &srv.token).0 {
        rep.skip("S2", WHAT, "the server does not answer before the flood");
        return;
    }
    let pid = srv.child.id();
    let done = Arc::new(AtomicBool::new(false));
    let most = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (done, most) = (done.clone(), most.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                most.fetch_max(threads(pid), Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let addr = srv.addr;
    let flood = std::thread::spawn(move || {
        let t = Instant::now();
        let mut held = std::collections::VecDeque::new();
        let mut n = 0u64;
        while t.elapsed().as_secs_f64() < secs {
            if let Ok(s) = TcpStream::connect(addr) {
                n += 1;
                held.push_back(s);
                if held.len() > 200 {
                    held.pop_front();
                }
            }
        }
        n as f64 / t.elapsed().as_secs_f64()
    });
    std::thread::sleep(Duration::from_millis(200));
    let (mut served, mut asked) = (0usize, 0usize);
    let mut latency = Samples::default();
    while !flood.is_finished() {
        let (ok, took) = real_request(srv.addr, &srv.token);
        asked += 1;
        if ok {
            served += 1;
            latency.push(took);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let rate = flood.join().unwrap_or(0.0);
    done.store(true, Ordering::SeqCst);
    let _ = sampler.join();
    let after = (0..20)
        .filter(|_| real_request(srv.addr, &srv.token).0)
        .count();
    rep.fact(
        "S2",
        format!(
            "{WHAT}: {rate:.0} connections/s for {secs:.0} s (one process, 200 held idle): real requests (2 s timeout, no retry) answered {served} of {asked} ({:.1} %), latency median {} ms, max {} ms; server threads at most {} (limit 64 + 2); afterwards {after} of 20",
            100.0 * served as f64 / asked.max(1) as f64,
            ms(latency.median()),
            ms(latency.max()),
            most.load(Ordering::SeqCst),
        ),
    );
}
