//! Running commands and collecting samples: spawn → exit wall time, medians, the shared
//! helpers of every section.

use crate::prelude::*;

pub(crate) fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub(crate) fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub(crate) fn release_bin(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    target.join("release").join(name)
}

pub(crate) fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Spawn `cmd`, wait for it (killed after `timeout`), return wall time from spawn to exit.
pub(crate) fn run_timed(
    cmd: &mut Command,
    timeout: Duration,
) -> Result<(Duration, Output), String> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let t0 = Instant::now();
    let child = cmd.spawn().map_err(|e| format!("spawn {cmd:?}: {e}"))?;
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let out = child.wait_with_output();
        let _ = tx.send((t0.elapsed(), out));
    });
    match rx.recv_timeout(timeout) {
        Ok((elapsed, Ok(out))) => Ok((elapsed, out)),
        Ok((_, Err(e))) => Err(format!("wait: {e}")),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            Err(format!("timed out after {timeout:?}"))
        }
    }
}

pub(crate) fn ok_stdout(
    res: Result<(Duration, Output), String>,
    what: &str,
) -> Result<(Duration, String), String> {
    let (d, out) = res.map_err(|e| format!("{what}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what}: exit {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok((d, String::from_utf8_lossy(&out.stdout).into_owned()))
}

#[derive(Default, Clone)]
pub(crate) struct Samples(pub(crate) Vec<Duration>);

impl Samples {
    pub(crate) fn push(&mut self, d: Duration) {
        self.0.push(d);
    }
    pub(crate) fn median(&self) -> Option<Duration> {
        if self.0.is_empty() {
            return None;
        }
        let mut v = self.0.clone();
        v.sort();
        let n = v.len();
        Some(if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2
        })
    }
    pub(crate) fn min(&self) -> Option<Duration> {
        self.0.iter().min().copied()
    }
    pub(crate) fn max(&self) -> Option<Duration> {
        self.0.iter().max().copied()
    }
}

pub(crate) fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Wait so that a code read now has more than `margin` seconds left in its 30 s window
/// (tapcred waits for the next window below ~3 s; this keeps that wait out of samples).
pub(crate) fn avoid_window_end(margin: i64) {
    let left = 30 - now_unix().rem_euclid(30);
    if left <= margin {
        std::thread::sleep(Duration::from_millis((left as u64) * 1000 + 200));
    }
}

pub(crate) fn access_key(json: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(json)
        .ok()?
        .get("AccessKeyId")?
        .as_str()
        .map(str::to_owned)
}
