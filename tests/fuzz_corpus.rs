//! The fuzz corpus as a stable-toolchain smoke test: every file under `fuzz/corpus/TARGET/`
//! goes through the same target function `cargo +nightly fuzz run TARGET` drives
//! (`fuzz/targets.rs`), so CI replays every checked-in input — including each crash found,
//! kept as a regression — without nightly or cargo-fuzz.
#![cfg(unix)] // the targets write private files with Unix modes; fuzzing runs on Linux

#[path = "../fuzz/targets.rs"]
mod targets;

use std::path::Path;

fn replay(name: &str) {
    let (_, f) = targets::TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no fuzz target {name}"));
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(name);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    assert!(
        files.len() >= 5,
        "{}: the corpus should hold at least a few inputs",
        dir.display()
    );
    for p in &files {
        let data = std::fs::read(p).unwrap();
        let r = std::panic::catch_unwind(|| f(&data));
        assert!(r.is_ok(), "fuzz target {name} panicked on {}", p.display());
    }
}

#[test]
fn every_target_has_a_corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for (name, _) in targets::TARGETS {
        assert!(root.join(name).is_dir(), "fuzz/corpus/{name} missing");
    }
}

#[test]
fn apdu_tlv() {
    replay("apdu_tlv");
}
#[test]
fn oath_session() {
    replay("oath_session");
}
#[test]
fn profile() {
    replay("profile");
}
#[test]
fn seed() {
    replay("seed");
}
#[test]
fn cache_ledger() {
    replay("cache_ledger");
}
#[test]
fn sts_answer() {
    replay("sts_answer");
}
#[test]
fn serve_request() {
    replay("serve_request");
}
