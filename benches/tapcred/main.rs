//! tapcred benchmarks for issues 3 (YubiKey OATH over PC/SC) and 4 (session cache).
//!
//! Run with `bash benches/run.sh` (builds the release binaries, then
//! `cargo bench --bench tapcred`). Every row is measured in this one run, with the compared
//! commands interleaved sample by sample, and reported as a median with min/max and a ratio.
//! See `benches/README.md` for what each row means.
//!
//! Section A needs root, pcscd, vsmartcard-vpcd (a real pcscd in a private network namespace
//! serving the virtual YubiKey) and `$TAPCRED_VENV/bin/ykman`; section B needs only loopback
//! (the strict STS double runs in this process). The warm-path check uses `strace` when it
//! is installed. Anything missing is skipped LOUDLY (a line on stderr and in the table).
//!
//! Linux only (pcscd in a network namespace, strace, /proc): every item of this crate root
//! carries `cfg(target_os = "linux")`; elsewhere (the Windows clippy gate builds all
//! targets) `main` only says so.

#[cfg(target_os = "linux")]
mod cache;
#[cfg(target_os = "linux")]
mod code;
#[cfg(target_os = "linux")]
mod footprint;
#[cfg(target_os = "linux")]
mod harness;
#[cfg(target_os = "linux")]
mod oath_cold;
#[cfg(target_os = "linux")]
mod report;
#[cfg(target_os = "linux")]
mod serve_flood;
#[cfg(target_os = "linux")]
mod serve_idle;
#[cfg(target_os = "linux")]
mod strace;

/// What every section module uses.
#[cfg(target_os = "linux")]
mod prelude {
    pub(crate) use std::collections::{BTreeMap, BTreeSet};
    pub(crate) use std::fmt::Write as _;
    pub(crate) use std::path::{Path, PathBuf};
    pub(crate) use std::process::{Command, Output, Stdio};
    pub(crate) use std::sync::mpsc;
    pub(crate) use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

    pub(crate) use tapcred_testkit::pcsc_stack::{self, PcscStack};
    pub(crate) use tapcred_testkit::sts_double::totp;
    pub(crate) use tapcred_testkit::sts_double::{Config, StsDouble, TokenOutcome};
    pub(crate) use tapcred_testkit::virtual_yubikey::{
        Account, ApduRecord, VirtualYubiKey, VykConfig,
    };

    pub(crate) use crate::cache::*;
    pub(crate) use crate::code::*;
    pub(crate) use crate::footprint::*;
    pub(crate) use crate::harness::*;
    pub(crate) use crate::oath_cold::*;
    pub(crate) use crate::report::*;
    pub(crate) use crate::serve_flood::*;
    pub(crate) use crate::serve_idle::*;
    pub(crate) use crate::strace::*;
    pub(crate) use crate::{A_ACCOUNT, A_SEED, ACCT, CARD_SERIAL, DEMO_SEED};
}

#[cfg(target_os = "linux")]
use prelude::*;

/// Demo MFA seed registered in the STS double (fixtures/sts-double/design.seed).
#[cfg(target_os = "linux")]
pub(crate) const DEMO_SEED: &str = "ORQXAY3SMVSC2ZDFNVXS243FMVSC2MBR";
/// RFC 4648 test seed for the section-A account.
#[cfg(target_os = "linux")]
pub(crate) const A_SEED: &str = "JBSWY3DPEHPK3PXP";
#[cfg(target_os = "linux")]
pub(crate) const A_ACCOUNT: &str = "Bench:alice";
#[cfg(target_os = "linux")]
pub(crate) const CARD_SERIAL: u32 = 7_654_321;
#[cfg(target_os = "linux")]
pub(crate) const ACCT: &str = "111111111111";

#[cfg(target_os = "linux")]
fn tapcred_version(bin: &Path) -> String {
    Command::new(bin)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

#[cfg(target_os = "linux")]
fn main() {
    // `cargo bench` passes `--bench`. Without it (e.g. `cargo test --all-targets`, which
    // builds benches in the test profile) do nothing: benchmarks are not tests.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("benches/tapcred/: not run without --bench; use `bash benches/run.sh`");
        return;
    }
    let tapcred = release_bin("tapcred");
    if !tapcred.is_file() {
        eprintln!(
            "benches: {} is missing; run `bash benches/run.sh` (it builds the release binaries first)",
            tapcred.display()
        );
        std::process::exit(1);
    }
    let work = std::env::temp_dir().join(format!("tapcred-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work).expect("temp dir");
    let mut rep = Report::default();
    let only = std::env::var("TAPCRED_BENCH_ONLY").unwrap_or_default();
    let mut stack = if only.is_empty() || only.contains('A') {
        bench_a(&mut rep, &work)
    } else {
        None
    };
    if only.is_empty() || only.contains('B') {
        bench_b(&mut rep, &work, stack.as_ref());
        if let Some(s) = stack.as_mut() {
            bench_b_oath(&mut rep, &work, s);
        }
    }
    drop(stack);
    if only.is_empty() || only.contains('S') {
        bench_s(&mut rep);
        bench_s_flood(&mut rep);
    }
    let _ = std::fs::remove_dir_all(&work);
    rep.notes.push(format!(
        "network: {}; tapcred: {} ({}, tree {})",
        std::env::var("TAPCRED_BENCH_NETNS").unwrap_or_else(|_| "not set by benches/run.sh".into()),
        tapcred.display(),
        tapcred_version(&tapcred),
        std::env::var("TAPCRED_BENCH_REV").unwrap_or_else(|_| "?".into())
    ));
    let text = rep.print();
    println!("\n{text}");
    let out = std::env::var_os("TAPCRED_BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/bench-results.md"));
    let _ = std::fs::write(&out, &text);
    eprintln!("benches: table also written to {}", out.display());
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("benches/tapcred/ drives Linux stacks (pcscd, strace, /proc): Linux only");
}
