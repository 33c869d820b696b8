//! Two jobs:
//! - the build identity (`TAPCRED_BUILD_ID`, see `src/build_id.rs`): a digest of everything
//!   that makes this build (the sources, the manifests and lock file, the target and
//!   profile), the same for `tapcred` and `tapcred-full` built together, different after any
//!   change;
//! - a link option for the `tapcred` binary (issue 12, warm path): packed relative
//!   relocations (`-z pack-relative-relocs`, DT_RELR) on Linux with glibc.
//!
//! A warm `credential-process` is mostly process start-up, and most of that is the dynamic
//! loader applying ~20k relative relocations. DT_RELR stores them as a bitmap (5 KiB instead
//! of 490 KiB of `.rela.dyn`): the binary shrinks by ~0.5 MB and the loader reads less.
//! The binary stays a PIE (ASLR and full RELRO unchanged).
//!
//! A DT_RELR binary needs glibc ≥ 2.36 at run time (it carries a `GLIBC_ABI_DT_RELR`
//! version need, so an older glibc refuses it with a clear loader error instead of
//! misbehaving). The option is therefore used only when building for the machine we build
//! on (target = host, so the built binary's glibc is this machine's) and when a test
//! program linked with it actually runs here (linker ≥ binutils 2.38 or lld, glibc ≥ 2.36).
//! `TAPCRED_NO_RELR=1` turns it off, e.g. for a release binary meant for older
//! distributions than the build machine. Other targets (macOS, Windows, musl) are untouched.

use std::hash::Hasher;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const FLAG: &str = "-Wl,-z,pack-relative-relocs";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    build_id();
    println!("cargo:rerun-if-env-changed=TAPCRED_NO_RELR");
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    if var("CARGO_CFG_TARGET_OS") != "linux" || var("CARGO_CFG_TARGET_ENV") != "gnu" {
        return;
    }
    if var("TARGET") != var("HOST") {
        return; // cross build: this machine's glibc says nothing about the target's
    }
    if matches!(var("TAPCRED_NO_RELR").as_str(), "1" | "true" | "yes") {
        return;
    }
    if probe() {
        println!("cargo:rustc-link-arg-bins={FLAG}");
    } else {
        println!(
            "cargo:warning=tapcred: linking without DT_RELR (the linker or glibc here does not support -z pack-relative-relocs); the binary works the same, its start is a little slower"
        );
    }
}

/// Link a trivial C program as a PIE with the flag, with the linker driver rustc uses, and
/// run it: true only if both the linker and this machine's loader accept DT_RELR.
fn probe() -> bool {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_else(|| ".".into()));
    let src = out.join("relr_probe.c");
    let exe = out.join("relr_probe");
    if std::fs::write(&src, "int main(void) { return 0; }\n").is_err() {
        return false;
    }
    let cc = std::env::var("RUSTC_LINKER").unwrap_or_else(|_| "cc".into());
    let linked = Command::new(&cc)
        .args(["-fPIE", "-pie", FLAG, "-o"])
        .arg(&exe)
        .arg(&src)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    linked
        && Command::new(&exe)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

/// `TAPCRED_BUILD_ID`: 16 hex digits of a digest over the sources, manifests, lock file,
/// target, profile and features. Both programs are compiled with the same value.
fn build_id() {
    for p in ["src", "Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={p}");
    }
    let mut files = Vec::new();
    collect(Path::new("src"), &mut files);
    files.extend(["build.rs", "Cargo.toml", "Cargo.lock"].map(PathBuf::from));
    files.sort();
    // SipHash with fixed keys: the same inputs give the same id on every run.
    let mut h = std::hash::DefaultHasher::new();
    for f in &files {
        h.write(f.to_string_lossy().as_bytes());
        h.write(&std::fs::read(f).unwrap_or_default());
    }
    let mut vars: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| {
            k.starts_with("CARGO_FEATURE_")
                || [
                    "TARGET",
                    "PROFILE",
                    "OPT_LEVEL",
                    "DEBUG",
                    "CARGO_PKG_VERSION",
                ]
                .contains(&k.as_str())
        })
        .collect();
    vars.sort();
    for (k, v) in vars {
        h.write(k.as_bytes());
        h.write(v.as_bytes());
    }
    println!("cargo:rustc-env=TAPCRED_BUILD_ID={:016x}", h.finish());
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(&p, out);
        } else {
            out.push(p);
        }
    }
}
