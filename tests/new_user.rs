//! A new user's path (issue 11, finding 12): the CI entry point leaves services it did not
//! start alone, `scripts/demo.sh` works with `CARGO_TARGET_DIR`, and README's install
//! command and minimum Rust are right.
#![cfg(unix)] // runs bash scripts on Linux

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Commands that stop or signal processes by name, i.e. ones CI did not start.
#[test]
fn ci_scripts_never_stop_services_they_did_not_start() {
    let mut scripts = vec![".ci/run".to_owned()];
    for e in std::fs::read_dir(root().join("scripts")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "sh") {
            scripts.push(format!(
                "scripts/{}",
                p.file_name().unwrap().to_str().unwrap()
            ));
        }
    }
    for s in &scripts {
        for (n, line) in read(s).lines().enumerate() {
            let code = line.split('#').next().unwrap_or("");
            for bad in [
                "pkill",
                "killall",
                "systemctl stop",
                "systemctl kill",
                "pidof",
                "service ",
            ] {
                assert!(
                    !code.contains(bad),
                    "{s}:{}: `{bad}` would touch a service CI did not start: {line}",
                    n + 1
                );
            }
        }
    }
}

/// README's install uses the lock file, and the minimum Rust it states is the one in
/// Cargo.toml, which is at least every locked dependency's `rust-version`.
#[test]
fn readme_install_is_locked_and_states_the_real_minimum_rust() {
    let readme = read("README.md");
    let install: Vec<&str> = readme
        .lines()
        .filter(|l| l.trim_start().starts_with("cargo install"))
        .collect();
    assert!(!install.is_empty(), "README has no `cargo install` line");
    for l in &install {
        assert!(
            l.contains("--locked"),
            "README install without --locked: {l}"
        );
    }
    let toml = read("Cargo.toml");
    let ours = toml
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .expect("Cargo.toml has rust-version")
        .trim_matches('"')
        .to_owned();
    assert!(
        readme.contains(&format!("Rust {ours} or later")),
        "README must state the minimum Rust as \"Rust {ours} or later\""
    );
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--locked", "--format-version", "1"])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let parse = |v: &str| -> Vec<u32> { v.split('.').map(|x| x.parse().unwrap()).collect() };
    let mut need = (parse("0"), String::new());
    for p in meta["packages"].as_array().unwrap() {
        if let Some(v) = p["rust_version"].as_str() {
            let v = parse(v);
            if v > need.0 {
                need = (v, p["name"].as_str().unwrap().to_owned());
            }
        }
    }
    assert!(
        parse(&ours) >= need.0,
        "rust-version {ours} is below {:?}, which {} needs",
        need.0,
        need.1
    );
}

/// The real target directory of this build (…/target/debug/tapcred → …/target).
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_tapcred"))
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .to_owned()
}

/// With `CARGO_TARGET_DIR` elsewhere (here: another path to the same directory, so nothing
/// is rebuilt), the demo runs the binaries cargo built there, and succeeds.
#[test]
fn demo_uses_cargo_target_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let elsewhere = tmp.path().join("elsewhere-target");
    std::os::unix::fs::symlink(target_dir(), &elsewhere).unwrap();
    let out = Command::new("bash")
        .arg(root().join("scripts/demo.sh"))
        .env("CARGO_TARGET_DIR", &elsewhere)
        .env("HOME", tmp.path())
        .env_remove("AWS_PROFILE")
        .env_remove("TAPCRED_TOTP_SECRET")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "demo failed\nstdout: {stdout}\nstderr: {stderr}"
    );
    let want = format!("# binaries: {}/debug", elsewhere.display());
    assert!(
        stdout.lines().any(|l| l == want),
        "the demo must use CARGO_TARGET_DIR ({want}):\n{stdout}"
    );
    assert!(stdout.contains("\"AccessKeyId\":\"ASIA"), "{stdout}");
}
