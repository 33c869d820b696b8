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
    let full = release_bin("tapcred-full");
    for (id, bin) in [("F1", &env.tapcred), ("F1w", &full), ("F1f", &floor)] {
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
    wine_f5(rep, env, warm_cache, work);
}

/// Wine's 64-bit loader: `TAPCRED_BENCH_WINE`, else Debian's `/usr/lib/wine/wine64`
/// (package wine64, not on PATH), else `wine64` / `wine` on PATH.
fn wine_binary() -> Option<PathBuf> {
    if let Some(w) = std::env::var_os("TAPCRED_BENCH_WINE") {
        return Some(PathBuf::from(w));
    }
    let deb = PathBuf::from("/usr/lib/wine/wine64");
    if deb.is_file() {
        return Some(deb);
    }
    ["wine64", "wine"]
        .into_iter()
        .find(|w| {
            Command::new(w)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map(PathBuf::from)
}

/// A Unix path as Wine's `Z:` drive sees it.
fn wine_path(p: &Path) -> String {
    format!("Z:{}", p.to_string_lossy().replace('/', "\\"))
}

/// F5: the release `tapcred.exe` under Wine (as `scripts/wine-check.sh` runs it: a private
/// prefix, the ProcessPrng shim DLL beside the .exe), on a cache it primed itself; the
/// launcher's `tapcred-full.exe` (which does the priming) is taken from beside it.
fn wine_f5(rep: &mut Report, env: &Env, linux_warm_cache: &Path, work: &Path) {
    const WHAT: &str = "tapcred.exe warm credential-process under Wine";
    let exe = std::env::var_os("TAPCRED_BENCH_WINE_EXE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            release_bin("tapcred")
                .parent()
                .and_then(Path::parent)
                .unwrap_or(Path::new("target"))
                .join("x86_64-pc-windows-gnu/release/tapcred.exe")
        });
    let Some(wine) = wine_binary() else {
        rep.skip(
            F5,
            WHAT,
            "no Wine (apt install wine64, or set TAPCRED_BENCH_WINE)",
        );
        return;
    };
    if !exe.is_file() {
        rep.skip(
            F5,
            WHAT,
            &format!(
                "{} is missing (cargo build --release --target x86_64-pc-windows-gnu --bin tapcred --bin tapcred-full, or set TAPCRED_BENCH_WINE_EXE)",
                exe.display()
            ),
        );
        return;
    }
    let dir = work.join("wine");
    let bin = dir.join("bin");
    let full = exe.with_file_name("tapcred-full.exe");
    if let Err(e) = std::fs::create_dir_all(&bin)
        .and_then(|()| std::fs::copy(&exe, bin.join("tapcred.exe")).map(drop))
        .and_then(|()| std::fs::copy(&full, bin.join("tapcred-full.exe")).map(drop))
    {
        rep.skip(F5, WHAT, &format!("{}: {e}", bin.display()));
        return;
    }
    // Wine 8 lacks bcryptprimitives.dll (ProcessPrng), which Rust's std needs: the test
    // shim of scripts/wine/ goes beside the .exe, as in wine-check.sh.
    let shim = Command::new("x86_64-w64-mingw32-gcc")
        .args(["-O2", "-shared", "-o"])
        .arg(bin.join("bcryptprimitives.dll"))
        .arg(root().join("scripts/wine/bcryptprimitives.c"))
        .arg(root().join("scripts/wine/bcryptprimitives.def"))
        .arg("-ladvapi32")
        .output();
    if !shim.as_ref().is_ok_and(|o| o.status.success()) {
        rep.skip(
            F5,
            WHAT,
            "cannot build the ProcessPrng shim (apt install gcc-mingw-w64-x86-64)",
        );
        return;
    }
    let prefix = dir.join("prefix");
    let wine_env = |c: &mut Command| {
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &env.home)
            .env("WINEPREFIX", &prefix)
            .env("WINEDEBUG", "-all")
            .env("WINEDLLOVERRIDES", "mscoree,mshtml=");
    };
    let tap = || {
        let mut c = Command::new(&wine);
        c.arg(bin.join("tapcred.exe"))
            .args(["credential-process", "--profile", WINE_TAG]);
        wine_env(&mut c);
        // The cache goes to the prefix's %LOCALAPPDATA%\tapcred.
        c.env("AWS_CONFIG_FILE", wine_path(&env.config))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                wine_path(&root().join("fixtures/aws/design/credentials")),
            )
            .env("AWS_ENDPOINT_URL_STS", &env.endpoint)
            .env("TAPCRED_TOTP_SECRET", DEMO_SEED);
        c
    };
    // First call: creates the prefix (tens of seconds), then GetSessionToken + AssumeRole.
    let prime = ok_stdout(
        run_timed(&mut tap(), Duration::from_secs(300)),
        "wine prime",
    );
    match prime {
        Ok((_, out)) if access_key(&out).is_some() => {}
        Ok(_) => {
            rep.skip(F5, WHAT, "the primed call printed no AccessKeyId");
            return;
        }
        Err(e) => {
            rep.skip(F5, WHAT, &e);
            return;
        }
    }
    // After the prime (the prefix exists now): one persistent wineserver for the whole
    // measurement, as a desktop session has, so no sample pays the server's start.
    let server = wine.with_file_name("wineserver");
    let mut srv = Command::new(if server.is_file() {
        server.as_os_str()
    } else {
        "wineserver".as_ref()
    });
    srv.arg("-p");
    wine_env(&mut srv);
    let _ = srv.stdout(Stdio::null()).stderr(Stdio::null()).status();
    let (mut w, mut l, mut boot) = (Samples::default(), Samples::default(), Samples::default());
    let mut failed = Vec::new();
    for i in 0..N_WINE {
        let mut jobs: Vec<(u8, Command)> = vec![
            (0, tap()),
            (
                1,
                env.cmd(
                    linux_warm_cache,
                    &["credential-process", "--profile", "mfa"],
                    true,
                ),
            ),
            (2, {
                let mut c = Command::new(&wine);
                c.args(["cmd", "/c", "exit"]);
                wine_env(&mut c);
                c
            }),
        ];
        if i % 2 == 1 {
            jobs.reverse();
        }
        for (k, mut c) in jobs {
            match ok_stdout(run_timed(&mut c, Duration::from_secs(60)), "wine") {
                Ok((d, out)) => match k {
                    0 if access_key(&out).is_some() => w.push(d),
                    1 if access_key(&out).is_some() => l.push(d),
                    2 => boot.push(d),
                    _ => failed.push(format!("sample {i}/{k}: no AccessKeyId")),
                },
                Err(e) => failed.push(e),
            }
        }
    }
    stop_wineserver(&mut srv);
    rep.row(
        F5,
        "`wine64 tapcred.exe credential-process --profile wine-00`, warm (release .exe, Wine 8; the same role as `mfa`, its own MFA device; informative)",
        &w,
        &format!(
            "{} of the Linux binary's warm call in the same rounds ({} ms)",
            ratio(w.median(), l.median()),
            l.median()
                .map_or("–".into(), |d| format!("{:.2}", d.as_secs_f64() * 1e3))
        ),
    );
    rep.row(
        "F5w",
        "`wine64 cmd /c exit` (Wine's own process start, same prefix and wineserver)",
        &boot,
        &format!("{} of F5", ratio(boot.median(), w.median())),
    );
    for e in failed.iter().take(3) {
        rep.notes.push(format!("F5: {e}"));
    }
}

const F5: &str = "F5";
/// Interleaved rounds of F5 (Wine start-ups are slow; 15 rounds is enough for a median).
const N_WINE: usize = 15;

fn stop_wineserver(srv: &mut Command) {
    let mut k = Command::new(srv.get_program());
    k.arg("-k");
    for (key, v) in srv.get_envs() {
        if let Some(v) = v {
            k.env(key, v);
        }
    }
    let _ = k.status();
}
