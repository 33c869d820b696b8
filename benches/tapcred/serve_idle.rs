//! Section S: what an idle `tapcred serve` costs (issue 12 item 3). The measurement itself is
//! `benches/serve_idle.sh` (per-thread CPU ticks and context switches from /proc over a
//! window); this runs it on the release launcher and puts its numbers in the table.

use crate::prelude::*;

pub(crate) fn bench_s(rep: &mut Report) {
    const WHAT: &str = "idle `tapcred serve --profile toolkit-user -- sleep N`";
    let secs = std::env::var("TAPCRED_BENCH_IDLE_SECONDS").unwrap_or_else(|_| "60".into());
    let out = Command::new("bash")
        .arg(root().join("benches/serve_idle.sh"))
        .arg(release_bin("tapcred"))
        .env("TAPCRED_IDLE_SECONDS", &secs)
        .current_dir(root())
        .stdin(Stdio::null())
        .output();
    let text = match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        Ok(o) => {
            let why = String::from_utf8_lossy(&o.stderr).trim().to_owned();
            rep.skip("S1", WHAT, &format!("serve_idle.sh failed: {why}"));
            return;
        }
        Err(e) => {
            rep.skip("S1", WHAT, &format!("bash: {e}"));
            return;
        }
    };
    let field = |label: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(label))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| "?".into())
    };
    rep.fact(
        "S1",
        format!(
            "{WHAT} over {secs} s with no request (benches/serve_idle.sh): CPU time {}, voluntary context switches {}, involuntary {} ({})",
            field("cpu time (utime+stime):"),
            field("voluntary context switches:"),
            field("involuntary context switches:"),
            field("window:")
        ),
    );
}
