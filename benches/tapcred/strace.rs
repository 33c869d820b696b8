//! B8: the warm path under `strace` (syscalls, threads, sockets, files opened).

use crate::prelude::*;

/// `cmd` wrapped in `strace STRACE_ARGS -o OUT`, with the same environment.
pub(crate) fn under_strace(cmd: &Command, strace_args: &[&str], out_file: &Path) -> Command {
    let mut s = Command::new("strace");
    s.args(strace_args)
        .arg("-o")
        .arg(out_file)
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            s.env(k, v);
        }
    }
    s
}

/// Syscall totals of one run under `strace -f -c` (name → (calls, seconds spent)).
pub(crate) fn strace_counts(
    cmd: &Command,
    out_file: &Path,
) -> Result<BTreeMap<String, (u64, f64)>, String> {
    let mut s = under_strace(cmd, &["-f", "-qq", "-c", "-w"], out_file);
    ok_stdout(run_timed(&mut s, Duration::from_secs(60)), "strace")?;
    let text = std::fs::read_to_string(out_file).map_err(|e| e.to_string())?;
    let mut m = BTreeMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() >= 5
            && let Ok(calls) = f[3].parse::<u64>()
        {
            let secs = f[1].parse::<f64>().unwrap_or(0.0);
            m.insert(f[f.len() - 1].to_string(), (calls, secs));
        }
    }
    Ok(m)
}

/// Threads/processes created, sockets opened and files opened by one run.
pub(crate) fn strace_trace(
    cmd: &Command,
    out_file: &Path,
) -> Result<(usize, usize, Vec<String>), String> {
    let mut s = under_strace(
        cmd,
        &[
            "-f",
            "-qq",
            "-e",
            "trace=clone,clone3,fork,vfork,socket,openat",
        ],
        out_file,
    );
    ok_stdout(run_timed(&mut s, Duration::from_secs(60)), "strace")?;
    let text = std::fs::read_to_string(out_file).map_err(|e| e.to_string())?;
    let (mut threads, mut sockets, mut files) = (0, 0, Vec::new());
    for line in text.lines() {
        let body = line.split_once(' ').map_or(line, |(_, b)| b).trim_start();
        let failed = body.contains("= -1");
        if (body.starts_with("clone") || body.starts_with("fork") || body.starts_with("vfork"))
            && !failed
            && !body.contains("resumed")
        {
            threads += 1;
        } else if body.starts_with("socket(") && !failed {
            sockets += 1;
        } else if body.starts_with("openat(")
            && !failed
            && let Some(p) = body.split('"').nth(1)
            && !p.starts_with("/lib")
            && !p.starts_with("/usr/lib")
            && !p.starts_with("/etc/ld.so")
            && !p.starts_with("/proc")
            && !p.starts_with("/sys")
        {
            files.push(p.to_string());
        }
    }
    let certs = files
        .iter()
        .filter(|p| p.starts_with("/etc/ssl/certs/"))
        .count();
    files.retain(|p| !p.starts_with("/etc/ssl/certs/"));
    if certs > 0 {
        files.push(format!("/etc/ssl/certs/* ({certs} files)"));
    }
    Ok((threads, sockets, files))
}

pub(crate) fn warm_path_check(
    rep: &mut Report,
    env: &Env,
    warm_cache: &Path,
    cache_file: &Path,
    work: &Path,
) {
    if Command::new("strace")
        .arg("-V")
        .stdout(Stdio::null())
        .status()
        .map(|s| !s.success())
        .unwrap_or(true)
    {
        rep.skip(
            "B8",
            "warm path: threads, sockets, files",
            "strace is not installed (apt install strace)",
        );
        return;
    }
    let warm = || {
        env.cmd(
            warm_cache,
            &["credential-process", "--profile", "mfa"],
            true,
        )
    };
    let plain = || {
        env.cmd(
            &work.join("cache-nocache"),
            &["credential-process", "--profile", "nomfa", "--no-cache"],
            true,
        )
    };
    // Each MFA run needs its own serial (a code is accepted once per serial and window).
    let mfa = |tag: &str| {
        env.cmd(
            &work.join("cache-nocache"),
            &["credential-process", "--profile", tag, "--no-cache"],
            true,
        )
    };
    let cat = || {
        let mut c = Command::new("cat");
        c.arg(cache_file);
        c
    };
    let total = |m: &BTreeMap<String, (u64, f64)>| m.get("total").map_or(0, |t| t.0);
    let rows: Vec<(&str, Command, Command)> = vec![
        ("warm (B1)", warm(), warm()),
        ("cat (B2)", cat(), cat()),
        ("no-cache, MFA (B3)", mfa("trace-00"), mfa("trace-01")),
        ("no-cache, no MFA (B4)", plain(), plain()),
    ];
    for (i, (name, c1, c2)) in rows.iter().enumerate() {
        avoid_window_end(5);
        let counts = strace_counts(c1, &work.join(format!("strace-c-{i}")));
        let traced = strace_trace(c2, &work.join(format!("strace-t-{i}")));
        match (counts, traced) {
            (Ok(m), Ok((threads, sockets, files))) => {
                let some: Vec<String> = [
                    "connect",
                    "futex",
                    "epoll_wait",
                    "fsync",
                    "fdatasync",
                    "flock",
                    "clock_nanosleep",
                    "rename",
                ]
                .iter()
                .filter_map(|k| {
                    m.get(*k).map(|(n, secs)| {
                        if secs * 1e3 >= 1.0 {
                            format!("{k} {n} taking {:.1} ms", secs * 1e3)
                        } else {
                            format!("{k} {n}")
                        }
                    })
                })
                .collect();
                rep.fact(
                    "B8",
                    format!(
                        "{name}: {} syscalls ({}), {threads} threads/processes created (clone/clone3/fork), {sockets} sockets, files opened: {}",
                        total(&m),
                        if some.is_empty() { "none of connect/futex/epoll/fsync/flock/sleep".into() } else { some.join(", ") },
                        if files.is_empty() {
                            "–".into()
                        } else {
                            files.join(", ")
                        }
                    ),
                )
            }
            (Err(e), _) | (_, Err(e)) => rep.fact("B8", format!("{name}: strace failed: {e}")),
        }
    }
}
