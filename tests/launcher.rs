//! The two programs (src/cli/launcher.rs): `tapcred` answers a warm `credential-process`
//! itself and hands everything else, unchanged, to `tapcred-full` beside it. Tested on copies
//! of both installed in a folder of the test's own, where the whole program can be made
//! unstartable without touching the build's.
#![cfg(unix)]

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use common::{Home, Run, TAPCRED, TAPCRED_FULL};
use tapcred_testkit::sts_double::{Config, StsDouble};

const CALL: [&str; 3] = ["credential-process", "--profile", "mfa"];

struct Installed {
    launcher: PathBuf,
    full: PathBuf,
}

impl Installed {
    fn into(dir: &Path) -> Installed {
        std::fs::create_dir_all(dir).unwrap();
        let launcher = dir.join("tapcred");
        let full = dir.join("tapcred-full");
        std::fs::copy(TAPCRED, &launcher).unwrap();
        std::fs::copy(TAPCRED_FULL, &full).unwrap();
        Installed { launcher, full }
    }

    fn run(&self, program: &Path, home: &Home, args: &[&str], extra: &[(&str, &str)]) -> Run {
        let mut c = Command::new(program);
        home.prepare(&mut c, args);
        c.envs(extra.iter().copied());
        Run::from(c.output().expect("run"))
    }

    /// The whole program unstartable (mode 0644; size and modification time unchanged).
    fn startable(&self, yes: bool) {
        let mode = if yes { 0o755 } else { 0o644 };
        std::fs::set_permissions(&self.full, std::fs::Permissions::from_mode(mode)).unwrap();
    }
}

#[test]
fn the_launcher_answers_a_hit_alone_and_hands_everything_else_to_the_full_program() {
    let double = StsDouble::start(Config::design()).unwrap();
    let home = Home::design_against(&double.endpoint());
    let bin = Installed::into(&home.path().join("bin"));

    // A miss through the launcher: the whole program does the work.
    let cold = bin.run(&bin.launcher, &home, &CALL, &[]);
    cold.ok();
    assert_eq!(double.stats().requests, 2, "GetSessionToken + AssumeRole");
    // Run directly, the whole program answers the same from the cache.
    let direct = bin.run(&bin.full, &home, &CALL, &[]);
    assert_eq!(direct.ok().stdout, cold.stdout);

    bin.startable(false);
    let warm = bin.run(&bin.launcher, &home, &CALL, &[]);
    assert_eq!(warm.ok().stdout, cold.stdout, "a hit needs no tapcred-full");
    assert_eq!(warm.stderr, "");
    assert_eq!(double.stats().requests, 2);

    // Everything else needs it: one line naming the file and the fix, exit 7 (local I/O).
    let full = bin.full.display().to_string();
    let needles = ["cannot start", full.as_str(), "reinstall both"];
    for args in [
        &["--version"][..],
        &["credential-process", "--profile", "mfa", "--no-cache"],
        &["credential-process", "--profile", "role-chain"],
        &["export", "--profile", "mfa"],
    ] {
        bin.run(&bin.launcher, &home, args, &[])
            .fails_with(7, &needles);
    }
    // Logging asked for: the whole program's to give, so handed over too.
    bin.run(
        &bin.launcher,
        &home,
        &CALL,
        &[("RUST_LOG", "tapcred=debug")],
    )
    .fails_with(7, &needles);

    // The index belongs to this pair of programs: a rebuilt tapcred-full (another
    // modification time) is a miss, which the launcher hands over.
    let later = SystemTime::now() + Duration::from_secs(5);
    std::fs::File::options()
        .write(true)
        .open(&bin.full)
        .unwrap()
        .set_modified(later)
        .unwrap();
    bin.run(&bin.launcher, &home, &CALL, &[])
        .fails_with(7, &needles);
    // Startable again: the full path answers from the session cache (no STS call) and
    // writes the index for the new pair, which the launcher then answers from alone.
    bin.startable(true);
    let refreshed = bin.run(&bin.launcher, &home, &CALL, &[]);
    assert_eq!(refreshed.ok().stdout, cold.stdout);
    bin.startable(false);
    let warm = bin.run(&bin.launcher, &home, &CALL, &[]);
    assert_eq!(warm.ok().stdout, cold.stdout);
    assert_eq!(double.stats().requests, 2);
}

/// Handed over, the whole program gets the arguments, environment, stdin and exit code
/// unchanged, and argv[0] stays `tapcred` (what `ps` shows and usage messages print).
#[test]
fn a_handed_over_call_keeps_arguments_stdin_and_exit_code() {
    let double = StsDouble::start(Config::design()).unwrap();
    let home = Home::design_against(&double.endpoint());
    let bin = Installed::into(&home.path().join("bin"));
    // A usage error from clap names the program as the person typed it.
    let r = bin.run(
        &bin.launcher,
        &home,
        &["credential-process", "--bogus"],
        &[],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("Usage: tapcred credential-process"),
        "{}",
        r.stderr
    );
    // `exec`: the child's exit code, its stdin passed through, and its environment.
    let mut c = Command::new(&bin.launcher);
    home.prepare(
        &mut c,
        &[
            "exec",
            "--profile",
            "mfa",
            "--",
            "sh",
            "-c",
            "read line; echo \"$line $AWS_ACCESS_KEY_ID\"; exit 9",
        ],
    );
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"from-stdin\n")
        .unwrap();
    let out = Run::from(child.wait_with_output().unwrap());
    assert_eq!(out.code, 9, "{}", out.stderr);
    assert!(out.stdout.starts_with("from-stdin ASIA"), "{}", out.stdout);
}

/// A `tapcred` linked into another folder (`ln -s …/tapcred ~/bin/tapcred`) still finds
/// `tapcred-full` beside the file the link leads to.
#[test]
fn a_linked_launcher_finds_the_full_program_beside_its_target() {
    let home = Home::design();
    let bin = Installed::into(&home.path().join("opt/tapcred"));
    let links = home.path().join("bin");
    std::fs::create_dir_all(&links).unwrap();
    std::os::unix::fs::symlink(&bin.launcher, links.join("tapcred")).unwrap();
    let r = bin.run(&links.join("tapcred"), &home, &["--version"], &[]);
    assert!(
        r.ok().stdout.trim().starts_with(&format!(
            "tapcred {} (build {}; the launcher beside it: the same build)",
            env!("CARGO_PKG_VERSION"),
            tapcred::build_id::BUILD_ID
        )),
        "{}",
        r.stdout
    );
}

/// Rewrite every copy of the build id in `path` with `other` (same length): the file then
/// behaves as a program of another build, which is what an upgrade of one file makes.
fn as_other_build(path: &Path, other: &str) -> String {
    let bytes = std::fs::read(path).unwrap();
    let marker = b"tapcred-build-id:";
    let at = bytes
        .windows(marker.len() + 17)
        .position(|w| {
            w.starts_with(marker)
                && w[marker.len()..marker.len() + 16]
                    .iter()
                    .all(u8::is_ascii_hexdigit)
                && w[marker.len() + 16] == b';'
        })
        .expect("the program carries its build id");
    let id = bytes[at + marker.len()..at + marker.len() + 16].to_vec();
    assert_eq!(id.len(), other.len());
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(&id) {
            out.extend_from_slice(other.as_bytes());
            i += id.len();
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    std::fs::write(path, out).unwrap();
    String::from_utf8(id).unwrap()
}

#[test]
fn programs_of_two_builds_are_refused_and_shown_never_mixed() {
    let double = StsDouble::start(Config::design()).unwrap();
    let home = Home::design_against(&double.endpoint());
    let bin = Installed::into(&home.path().join("bin"));
    bin.run(&bin.launcher, &home, &CALL, &[]).ok();
    let one_build = bin
        .run(&bin.full, &home, &["--version"], &[])
        .ok()
        .stdout
        .clone();
    assert!(one_build.contains("the same build"), "{one_build}");
    let doctor = bin.run(
        &bin.full,
        &home,
        &["doctor", "--offline", "--profile", "mfa"],
        &[],
    );
    assert!(doctor.stdout.contains("one build"), "{}", doctor.stdout);

    // The launcher from another build beside this tapcred-full.
    let ours = as_other_build(&bin.launcher, "0123456789abcdef");
    assert_ne!(ours, "0123456789abcdef");
    let launcher = bin.launcher.display().to_string();
    let full = bin.full.display().to_string();
    let needles = [
        launcher.as_str(),
        "build 0123456789abcdef",
        full.as_str(),
        "different builds",
        "reinstall both",
    ];
    // Anything handed over is refused with one line naming both files and the fix.
    for args in [&["--version"][..], &["export", "--profile", "mfa"]] {
        bin.run(&bin.launcher, &home, args, &[])
            .fails_with(7, &needles);
    }
    // The warm index tapcred-full wrote is not this launcher's: no session served from it.
    let warm = bin.run(&bin.launcher, &home, &CALL, &[]);
    warm.fails_with(7, &needles);
    assert_eq!(warm.stdout, "");
    assert_eq!(double.stats().requests, 2, "no STS call either");

    // Run alone, tapcred-full works and says what is wrong beside it; doctor calls it a problem.
    let v = bin
        .run(&bin.full, &home, &["--version"], &[])
        .ok()
        .stdout
        .clone();
    assert!(v.contains("build 0123456789abcdef: DIFFERENT"), "{v}");
    let doctor = bin.run(
        &bin.full,
        &home,
        &["doctor", "--offline", "--profile", "mfa"],
        &[],
    );
    assert_ne!(doctor.code, 0, "{}", doctor.stdout);
    assert!(
        doctor.stdout.contains("build 0123456789abcdef but")
            && doctor.stdout.contains("reinstall both"),
        "{}",
        doctor.stdout
    );
}
