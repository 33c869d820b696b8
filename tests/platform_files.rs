//! Issue 11, findings 8 and 10, through the real binary: odd files where tapcred reads its
//! inputs (a FIFO, an endless device, a huge file) are refused at once with one clear line,
//! never a hang or an unbounded read; and a tapcred process has core dumps off.
#![cfg(unix)]

mod common;
use common::{Home, Run};

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

const CONFIG_OK: &str = "[profile toolkit-user]\nregion = us-east-1\n";
const CREDS_OK: &str = "[toolkit-user]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n";
const MFA_PROFILE: &str = "[profile mfa]\nsource_profile = toolkit-user\nrole_arn = arn:aws:iam::111111111111:role/toolkit-role\nmfa_serial = arn:aws:iam::111111111111:mfa/toolkit-user\n";

/// `tapcred ARGS`, killed after 10 s (today's code blocked for ever on a FIFO and read
/// `/dev/zero` until memory ran out): a timeout fails the test.
fn run_bounded(h: &Home, args: &[&str]) -> Run {
    let mut c = h.cmd(args);
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().expect("run tapcred");
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return Run::from(child.wait_with_output().unwrap());
        }
        if start.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("tapcred {args:?} did not finish within 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn mkfifo(p: &Path) {
    // 0600, so the old mode check cannot refuse it before the open.
    let st = std::process::Command::new("mkfifo")
        .args(["-m", "600"])
        .arg(p)
        .status()
        .expect("mkfifo");
    assert!(st.success());
}

fn home(config_extra: &str) -> Home {
    let h = Home::empty();
    h.write_config(&format!("{CONFIG_OK}\n{config_extra}"));
    h.write_credentials(CREDS_OK);
    h
}

#[test]
fn a_fifo_as_the_aws_config_file_is_refused_not_waited_on() {
    let mut h = home("");
    let fifo = h.path().join("config.fifo");
    mkfifo(&fifo);
    h.set("AWS_CONFIG_FILE", fifo.to_str().unwrap());
    run_bounded(&h, &["credential-process", "--profile", "toolkit-user"])
        .fails_with(3, &["config.fifo", "FIFO", "AWS_CONFIG_FILE"]);
}

#[test]
fn dev_zero_as_the_aws_config_file_is_refused_not_read_forever() {
    let mut h = home("");
    h.set("AWS_CONFIG_FILE", "/dev/zero");
    run_bounded(&h, &["credential-process", "--profile", "toolkit-user"])
        .fails_with(3, &["/dev/zero", "character device"]);
}

#[test]
fn an_oversized_aws_credentials_file_is_refused_with_its_name() {
    let h = home("");
    // Valid INI, just far too large for a credentials file (1 MiB cap).
    let mut big = String::from(CREDS_OK);
    while big.len() <= 1024 * 1024 {
        big.push_str("# padding padding padding padding padding padding padding padding\n");
    }
    h.write_credentials(&big);
    run_bounded(&h, &["credential-process", "--profile", "toolkit-user"])
        .fails_with(3, &[".aws/credentials", "larger than 1 MiB"]);
}

#[test]
fn a_fifo_as_the_seed_file_is_refused_not_waited_on() {
    let h = home(&format!("{MFA_PROFILE}tapcred_totp_secret_file = ~/seed\n"));
    mkfifo(&h.path().join("seed"));
    run_bounded(&h, &["credential-process", "--profile", "mfa"])
        .fails_with(3, &["seed", "FIFO", "\"mfa\""]);
}

#[test]
fn an_endless_seed_file_is_refused() {
    let h = home(&format!(
        "{MFA_PROFILE}tapcred_totp_secret_file = /dev/zero\n"
    ));
    run_bounded(&h, &["credential-process", "--profile", "mfa"])
        .fails_with(3, &["/dev/zero", "not a regular file", "\"mfa\""]);
    let big = h.path().join("big-seed");
    std::fs::write(&big, vec![b'A'; 200 * 1024]).unwrap();
    std::fs::set_permissions(&big, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    h.write_config(&format!(
        "{CONFIG_OK}\n{MFA_PROFILE}tapcred_totp_secret_file = {}\n",
        big.display()
    ));
    run_bounded(&h, &["credential-process", "--profile", "mfa"])
        .fails_with(3, &["big-seed", "larger than", "\"mfa\""]);
}

/// Finding 10: a tapcred process runs with the core-file limit 0 (a child of `exec`
/// inherits it; it is started from a shell whose soft limit was raised first, so today's
/// tapcred, which left the limit alone, fails this).
#[test]
fn tapcred_runs_with_core_dumps_off() {
    let h = home("");
    let mut c = std::process::Command::new("sh");
    c.arg("-c").arg(
        "ulimit -S -c unlimited 2>/dev/null || ulimit -S -c 4096 2>/dev/null; \
         echo before=$(ulimit -S -c); exec \"$@\"",
    );
    c.arg("sh").arg(common::TAPCRED);
    h.prepare(
        &mut c,
        &[
            "exec",
            "--profile",
            "toolkit-user",
            "--",
            "sh",
            "-c",
            "echo after=$(ulimit -S -c)",
        ],
    );
    let out = Run::from(c.output().unwrap());
    out.ok();
    let before = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("before="))
        .unwrap();
    if before == "0" {
        // The hard limit is 0: nothing could dump here, so the test cannot tell.
        assert!(
            !ci(),
            "the hard core limit is 0 under CI; this test cannot run"
        );
        eprintln!("SKIP tapcred_runs_with_core_dumps_off: the hard core-file limit is 0 here");
        return;
    }
    assert!(
        out.stdout.lines().any(|l| l == "after=0"),
        "tapcred (and so its exec child) must run with the core limit 0: {:?}",
        out.stdout
    );
}

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

// ---------------------------------------------------------------- files the user owns
// Issue 17, items 8, 9 and 10b: `configure` writing ~/.aws/config and ~/.aws/credentials when
// they are symbolic links, another user's, read-only or readable by others.

const KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
const NEW_SECRET: &str = "bPxRfiCYEXAMPLEKEYwJalrXUtnFEMI/K7MDENGa";
const OLD_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const ROLE: &str = "arn:aws:iam::111111111111:role/toolkit-role";

/// `tapcred configure --profile mfa --role-arn ROLE` with a new secret for toolkit-user on
/// stdin.
fn configure_new_key(h: &Home) -> Run {
    let mut c = h.cmd(&[
        "configure",
        "--profile",
        "mfa",
        "--role-arn",
        ROLE,
        "--keys-from-stdin",
    ]);
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("run tapcred");
    use std::io::Write as _;
    match child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{KEY_ID}\n{NEW_SECRET}\n").as_bytes())
    {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        r => r.unwrap(),
    }
    Run::from(child.wait_with_output().unwrap())
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn file_mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_holding(dir: &Path, needle: &str) -> Vec<std::path::PathBuf> {
    common::files_under(dir)
        .into_iter()
        .filter(|p| {
            std::fs::read(p).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes()))
        })
        .collect()
}

/// A HOME whose ~/.aws/config and ~/.aws/credentials are links into a dotfiles folder.
fn dotfiles_home() -> (Home, std::path::PathBuf) {
    let h = Home::empty();
    let dots = h.path().join("dotfiles");
    std::fs::create_dir_all(&dots).unwrap();
    std::fs::write(dots.join("config"), CONFIG_OK).unwrap();
    std::fs::write(
        dots.join("credentials"),
        format!(
            "[toolkit-user]\naws_access_key_id = {KEY_ID}\naws_secret_access_key = {OLD_SECRET}\n"
        ),
    )
    .unwrap();
    set_mode(&dots.join("credentials"), 0o600);
    std::fs::create_dir_all(h.aws_dir()).unwrap();
    std::os::unix::fs::symlink("../dotfiles/config", h.config_path()).unwrap();
    std::os::unix::fs::symlink(dots.join("credentials"), h.credentials_path()).unwrap();
    (h, dots)
}

/// Item 8: the edit goes through the links to the dotfiles; no lock, backup or temporary file
/// is left beside the targets (inside the dotfiles repository) or in ~/.aws, and the secret
/// being replaced is kept nowhere.
#[test]
fn symlinked_aws_files_are_written_through_with_nothing_left_beside_them() {
    let (h, dots) = dotfiles_home();
    configure_new_key(&h).ok();
    assert!(
        std::fs::symlink_metadata(h.credentials_path())
            .unwrap()
            .file_type()
            .is_symlink()
            && std::fs::symlink_metadata(h.config_path())
                .unwrap()
                .file_type()
                .is_symlink(),
        "the links stay links"
    );
    let creds = std::fs::read_to_string(dots.join("credentials")).unwrap();
    assert!(creds.contains(NEW_SECRET), "{creds}");
    assert!(
        std::fs::read_to_string(dots.join("config"))
            .unwrap()
            .contains(ROLE)
    );
    assert_eq!(names_in(&dots), ["config", "credentials"]);
    assert_eq!(names_in(&h.aws_dir()), ["config", "credentials"]);
    assert_eq!(
        files_holding(h.path(), OLD_SECRET),
        Vec::<std::path::PathBuf>::new(),
        "no plaintext copy of the replaced secret anywhere"
    );
}

/// Item 8: a link that leads nowhere is refused with the fix, not replaced by a file.
#[test]
fn a_dangling_link_is_refused_not_replaced() {
    let h = Home::empty();
    h.write_config(CONFIG_OK);
    let missing = h.path().join("dotfiles/credentials");
    std::os::unix::fs::symlink(&missing, h.credentials_path()).unwrap();
    configure_new_key(&h).fails_with(
        3,
        &[
            ".aws/credentials",
            "symbolic link",
            "dotfiles/credentials",
            "does not exist",
            "remove the link",
        ],
    );
    assert!(
        std::fs::symlink_metadata(h.credentials_path())
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(!missing.exists());
    assert_eq!(std::fs::read_to_string(h.config_path()).unwrap(), CONFIG_OK);
}

/// Item 10b: after tapcred exits, ~/.aws holds the two files and nothing else (the lock
/// lives in tapcred's private folder).
#[test]
fn no_lock_file_stays_in_the_aws_folder() {
    let h = Home::empty();
    configure_new_key(&h).ok();
    configure_new_key(&h).ok();
    assert_eq!(names_in(&h.aws_dir()), ["config", "credentials"]);
}

/// Item 9: a read-only (0400) file is kept: refused with the fix, not rewritten.
#[test]
fn a_read_only_credentials_file_is_refused_with_the_fix() {
    let h = home("");
    set_mode(&h.credentials_path(), 0o400);
    let before = std::fs::read(h.credentials_path()).unwrap();
    configure_new_key(&h).fails_with(
        3,
        &[".aws/credentials", "read-only (mode 0400)", "chmod u+w"],
    );
    assert_eq!(std::fs::read(h.credentials_path()).unwrap(), before);
    assert_eq!(file_mode(&h.credentials_path()), 0o400);
}

/// Item 9: a credentials file others can read is made private when it receives a secret,
/// with a warning that says so.
#[test]
fn a_world_readable_credentials_file_is_tightened_with_a_warning() {
    let h = home("");
    set_mode(&h.credentials_path(), 0o644);
    set_mode(&h.config_path(), 0o644);
    let r = configure_new_key(&h);
    r.ok();
    assert_eq!(file_mode(&h.credentials_path()), 0o600);
    assert!(
        r.stderr.contains("mode 0644") && r.stderr.contains("credentials"),
        "{}",
        r.stderr
    );
    // A config file keeps its mode (it receives no secret).
    assert_eq!(file_mode(&h.config_path()), 0o644);
}

/// Whether this process may chown files (root); otherwise a loud skip (a failure under CI).
fn can_chown(test: &str) -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    tapcred_testkit::ci::skip(test, "it must run as root to chown files to another user");
    false
}

const OTHER_UID: u32 = 4242;

fn chown(p: &Path, uid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(uid)).unwrap();
}

/// Item 9 (`sudo -E` on a user's HOME): another user's credentials file is refused with its
/// owner and the fix; nothing becomes root's in that HOME.
#[test]
fn another_users_file_is_refused_naming_the_owner() {
    if !can_chown("another_users_file_is_refused_naming_the_owner") {
        return;
    }
    let h = home("");
    for p in [
        h.path().to_path_buf(),
        h.aws_dir(),
        h.config_path(),
        h.credentials_path(),
    ] {
        chown(&p, OTHER_UID);
    }
    let before = h.snapshot();
    configure_new_key(&h).fails_with(
        3,
        &[".aws/credentials", "uid 4242", "not to you", "without sudo"],
    );
    assert_eq!(h.snapshot(), before);
    use std::os::unix::fs::MetadataExt;
    for p in common::files_under(h.path()) {
        assert_eq!(
            std::fs::symlink_metadata(&p).unwrap().uid(),
            OTHER_UID,
            "{}",
            p.display()
        );
    }
}

/// Item 9: a new file in another user's folder is refused too (it would be root's).
#[test]
fn a_new_file_in_another_users_folder_is_refused() {
    if !can_chown("a_new_file_in_another_users_folder_is_refused") {
        return;
    }
    let h = Home::empty();
    std::fs::create_dir_all(h.aws_dir()).unwrap();
    chown(h.path(), OTHER_UID);
    chown(&h.aws_dir(), OTHER_UID);
    configure_new_key(&h).fails_with(3, &[".aws", "uid 4242", "without sudo"]);
    assert_eq!(names_in(&h.aws_dir()), Vec::<String>::new());
    // `tmp` is the test HOME's own TMPDIR (Home::empty makes it for the code ledger).
    assert_eq!(
        names_in(h.path())
            .into_iter()
            .filter(|n| n != "tmp")
            .collect::<Vec<_>>(),
        [".aws"]
    );
}
