//! Section F: what the binary costs to carry and to run — size, shared libraries, peak RSS
//! of the warm and cold paths (`/usr/bin/time -f %M`), the release build time `run.sh`
//! measured, and the Windows binary's warm path under Wine (informative, when available).

use crate::prelude::*;

/// Peak RSS in KiB of one run of `cmd` under `/usr/bin/time -f %M`, with its stdout.
fn peak_rss(cmd: &Command) -> Result<(u64, String), String> {
    let mut t = Command::new("/usr/bin/time");
    t.args(["-f", "rss=%M"])
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .env_clear();
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            t.env(k, v);
        }
    }
    let (_, out) = run_timed(&mut t, Duration::from_secs(90)).map_err(|e| format!("time: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "exit {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let kib = err
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("rss=")?.trim().parse().ok())
        .ok_or("no rss= line from /usr/bin/time")?;
    Ok((kib, String::from_utf8_lossy(&out.stdout).into_owned()))
}

fn median_u64(mut v: Vec<u64>) -> Option<u64> {
    v.sort_unstable();
    v.get(v.len() / 2).copied()
}

fn mib(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// `NEEDED` entries of an ELF file (`readelf -d`).
fn needed_libs(bin: &Path) -> Option<Vec<String>> {
    let out = Command::new("readelf").arg("-d").arg(bin).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    Some(
        text.lines()
            .filter(|l| l.contains("(NEEDED)"))
            .filter_map(|l| Some(l.split('[').nth(1)?.trim_end_matches(']').to_owned()))
            .collect(),
    )
}

pub(crate) fn bench_f(
    rep: &mut Report,
    env: &Env,
    warm_cache: &Path,
    cache_file: Option<&Path>,
    work: &Path,
) {
    // F1: size and libraries.
    let floor = release_bin("tapcred-bench-floor");
    for (id, bin) in [("F1", &env.tapcred), ("F1f", &floor)] {
        match std::fs::metadata(bin) {
            Ok(md) => {
                let libs = needed_libs(bin)
                    .map(|l| format!("; shared libraries: {}", l.join(", ")))
                    .unwrap_or_default();
                rep.fact(
                    id,
                    format!(
                        "`{}`: {} ({} bytes){libs}",
                        bin.file_name().unwrap_or_default().to_string_lossy(),
                        mib(md.len()),
                        md.len()
                    ),
                );
            }
            Err(e) => rep.fact(id, format!("{}: {e}", bin.display())),
        }
    }

    // F2/F3: peak RSS, warm and cold (software seed, empty cache, a fresh serial each).
    if !Path::new("/usr/bin/time").is_file() {
        rep.skip(
            "F2",
            "peak RSS",
            "/usr/bin/time is missing (apt install time)",
        );
    } else {
        let mut warm = Vec::new();
        let mut cat = Vec::new();
        let mut errors = Vec::new();
        for _ in 0..5 {
            match peak_rss(&env.cmd(
                warm_cache,
                &["credential-process", "--profile", "mfa"],
                true,
            )) {
                Ok((k, out)) if access_key(&out).is_some() => warm.push(k),
                Ok(_) => errors.push("warm: no AccessKeyId".to_owned()),
                Err(e) => errors.push(format!("warm: {e}")),
            }
            if let Some(f) = cache_file {
                let mut c = Command::new("cat");
                c.arg(f);
                if let Ok((k, _)) = peak_rss(&c) {
                    cat.push(k);
                }
            }
        }
        let mut cold = Vec::new();
        for i in 0..M_RSS {
            avoid_window_end(5);
            let cache = work.join(format!("cache-rss-{i}"));
            let profile = format!("rss-{i:02}");
            match peak_rss(&env.cmd(&cache, &["credential-process", "--profile", &profile], true)) {
                Ok((k, out)) if access_key(&out).is_some() => cold.push(k),
                Ok(_) => errors.push("cold: no AccessKeyId".to_owned()),
                Err(e) => errors.push(format!("cold: {e}")),
            }
        }
        let kib =
            |v: Option<u64>| v.map_or("–".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0));
        rep.fact(
            "F2",
            format!(
                "peak RSS, warm `credential-process` (median of {}): {}; `cat` of the cache file: {}",
                warm.len(),
                kib(median_u64(warm)),
                kib(median_u64(cat))
            ),
        );
        rep.fact(
            "F3",
            format!(
                "peak RSS, cold `credential-process` (empty cache: code + GetSessionToken + AssumeRole over HTTPS client setup; median of {}): {}",
                cold.len(),
                kib(median_u64(cold))
            ),
        );
        for e in errors.iter().take(3) {
            rep.notes.push(format!("F2/F3: {e}"));
        }
    }

    // F4: build time, measured by run.sh (cargo build --release of tapcred + testkit bins).
    match std::env::var("TAPCRED_BENCH_BUILD") {
        Ok(b) if !b.is_empty() => {
            rep.fact("F4", format!("`cargo build --release` in this run: {b}"))
        }
        _ => rep.fact(
            "F4",
            "build time not measured in this run (set by benches/run.sh)".into(),
        ),
    }

    // F5: the Windows binary under Wine (informative).
    let exe = std::env::var_os("TAPCRED_BENCH_WINE_EXE")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/x86_64-pc-windows-gnu/release/tapcred.exe"));
    let wine = Command::new("wine")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !wine || !exe.is_file() {
        rep.skip(
            "F5",
            "tapcred.exe warm credential-process under Wine",
            &format!(
                "needs `wine` on PATH ({}) and {} ({})",
                if wine { "found" } else { "missing" },
                exe.display(),
                if exe.is_file() { "found" } else { "missing" }
            ),
        );
        return;
    }
    wine_rows(rep, env, &exe, warm_cache);
}

/// F5: `wine tapcred.exe credential-process` on a cache it primed itself, interleaved with
/// the Linux binary's warm call and `wine cmd /c exit` (Wine's own start-up).
fn wine_rows(rep: &mut Report, env: &Env, exe: &Path, linux_warm_cache: &Path) {
    let cache = linux_warm_cache.with_file_name("cache-wine");
    let wine_cmd = |args: &[&str]| {
        let mut c = env.cmd(&cache, args, true);
        let mut w = Command::new("wine");
        w.arg(exe).args(c.get_args()).env_clear();
        for (k, v) in c.get_envs() {
            if let Some(v) = v {
                w.env(k, v);
            }
        }
        w.env("LOCALAPPDATA", cache.to_string_lossy().as_ref())
            .env("WINEDEBUG", "-all");
        c = w;
        c
    };
    let prime = ok_stdout(
        run_timed(
            &mut wine_cmd(&["credential-process", "--profile", "mfa"]),
            Duration::from_secs(120),
        ),
        "wine prime",
    );
    if let Err(e) = prime {
        rep.skip("F5", "tapcred.exe under Wine", &e);
        return;
    }
    let (mut w, mut l, mut boot) = (Samples::default(), Samples::default(), Samples::default());
    for i in 0..9 {
        let mut jobs: Vec<(u8, Command)> = vec![
            (0, wine_cmd(&["credential-process", "--profile", "mfa"])),
            (
                1,
                env.cmd(
                    linux_warm_cache,
                    &["credential-process", "--profile", "mfa"],
                    true,
                ),
            ),
            (2, {
                let mut c = Command::new("wine");
                c.args(["cmd", "/c", "exit"]).env("WINEDEBUG", "-all");
                c
            }),
        ];
        if i % 2 == 1 {
            jobs.reverse();
        }
        for (k, mut c) in jobs {
            if let Ok((d, out)) = ok_stdout(run_timed(&mut c, Duration::from_secs(60)), "wine") {
                match k {
                    0 if access_key(&out).is_some() => w.push(d),
                    1 if access_key(&out).is_some() => l.push(d),
                    2 => boot.push(d),
                    _ => {}
                }
            }
        }
    }
    rep.row(
        "F5",
        "`wine tapcred.exe credential-process --profile mfa`, warm (informative)",
        &w,
        &format!(
            "{} of the Linux binary's warm call",
            ratio(w.median(), l.median())
        ),
    );
    rep.row(
        "F5w",
        "`wine cmd /c exit` (Wine's own start-up)",
        &boot,
        &format!("{} of F5", ratio(boot.median(), w.median())),
    );
}
