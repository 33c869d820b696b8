//! Every command in README's `sh` blocks, run as a newcomer would, against the doubles: the
//! strict STS double for STS, the virtual YubiKey through a real pcscd for the YubiKey (a
//! software seed when that stack cannot start outside CI), the real AWS CLI as the SDK. Stand-ins
//! for programs that are not ours (`terraform`, `my-daemon`, `./deploy.sh`) call the AWS CLI,
//! which reads the credentials the same way those programs would. A README command that is
//! neither run nor listed in NOT_RUN with a reason fails the test.
#![cfg(unix)] // runs Linux test stacks (or Unix-only APIs); the Windows build is checked by clippy and Wine

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tapcred_testkit::pcsc_stack::PcscStack;
use tapcred_testkit::sts_double::{StsDouble, design};
use tapcred_testkit::virtual_yubikey::{Account, VirtualYubiKey, VykConfig};

/// Commands shown in README that this harness does not run, and where they are exercised.
const NOT_RUN: &[(&str, &str)] = &[
    (
        "sudo CI=true bash .ci/run",
        "the CI entry point, which runs this test",
    ),
    (
        "sudo apt install",
        "package installation: done by .ci/run on every CI machine",
    ),
    (
        "cargo install --locked --path .",
        "a release build of this crate; CI builds and tests the same crate",
    ),
    (
        "tapcred enroll",
        "creates an IAM device and writes a key: tests/cli_enroll_oath.rs runs configure → enroll --touch → credential-process through pcscd and the virtual YubiKey, tests/cli_enroll.rs the --to file path and every rollback",
    ),
    (
        "sudo install -m 0644 udev/",
        "installs the udev rule on the host (root, a real udev): tests/udev_rule.rs checks the rule's syntax, name and product ids",
    ),
    (
        "sudo udevadm control --reload-rules",
        "reloads the host's udev (root, a real udev): tests/udev_rule.rs checks the rule itself",
    ),
    (
        "ykman otp chalresp",
        "Yubico's tool programming a key's OTP slot: the virtual YubiKey's slots are programmed in the tests that use them (tests/vault_otp.rs judges the slot's answer with ykman)",
    ),
    (
        "tapcred vault ",
        "needs a YubiKey's OTP slot: tests/cli_vault.rs (init, add-seed, list), tests/cli_vault_keys.rs (import-keys byte for byte, refusals, a backup key, remove, eight writers at once) and tests/cli_enroll_vault.rs run them through pcscd and the virtual YubiKey",
    ),
    (
        "openssl ",
        "a CA and certificates for IAM Roles Anywhere: tests/rolesanywhere.rs and tests/rolesanywhere_piv.rs make theirs with Python's cryptography (fixtures/rolesanywhere/pki.py)",
    ),
    (
        "chmod 600 ci.key",
        "the key file made by openssl above: tests/rolesanywhere.rs checks a key others can read is refused",
    ),
    (
        "python3 -c 'import json",
        "the trust anchor's source for the real AWS: the Roles Anywhere double is given the CA directly",
    ),
    (
        "\"sourceData\"",
        "the second line of the python3 command above",
    ),
    (
        "aws rolesanywhere ",
        "AWS-side setup of Roles Anywhere: the double is configured by the tests (tests/rolesanywhere.rs)",
    ),
    (
        "tapcred configure --profile deploy --trust-anchor-arn",
        "needs the certificate files made above: tests/rolesanywhere.rs runs configure for key files, tests/rolesanywhere_piv.rs for a PIV slot",
    ),
    (
        "tapcred piv ",
        "needs a YubiKey's PIV applet: tests/cli_piv.rs and tests/rolesanywhere_piv.rs run piv init/import/status through pcscd and the virtual YubiKey",
    ),
    (
        "ykman oath accounts add",
        "Yubico's tool writing to a key: tests/testkit/tests/ykman_judge.rs runs `ykman oath accounts add` against the virtual YubiKey",
    ),
];

fn readme_commands() -> Vec<String> {
    // README and every page under docs/: the walkthroughs moved there from README.
    let text: String = common::doc_pages()
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap() + "\n")
        .collect();
    let mut out = Vec::new();
    let mut in_sh = false;
    let mut pending = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with("```") {
            in_sh = !in_sh && t == "```sh";
            continue;
        }
        if !in_sh || t.is_empty() || t.starts_with('#') {
            continue;
        }
        if let Some(head) = t.strip_suffix('\\') {
            pending.push_str(head);
            continue;
        }
        pending.push_str(t);
        out.push(std::mem::take(&mut pending));
    }
    out
}

fn write_exec(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

struct Sandbox {
    home: common::Home,
    shims: PathBuf,
    double: StsDouble,
    /// The software seed is given to every command (no YubiKey stack here).
    software_only: bool,
}

impl Sandbox {
    fn command(&self, line: &str) -> Command {
        let tapcred_dir = Path::new(common::TAPCRED).parent().unwrap();
        let mut c = Command::new("bash");
        c.args(["-euo", "pipefail", "-c", line])
            .current_dir(self.home.path())
            .env_clear()
            .env(
                "PATH",
                format!(
                    "{}:{}:/usr/local/bin:/usr/bin:/bin",
                    self.shims.display(),
                    tapcred_dir.display()
                ),
            )
            .env("HOME", self.home.path())
            .env("XDG_CACHE_HOME", self.home.path().join(".cache"))
            .env("AWS_ENDPOINT_URL_STS", self.double.endpoint());
        if self.software_only || line.contains("deploy.sh") {
            c.env("TAPCRED_TOTP_SECRET", design::MFA_SEED_BASE32);
        }
        c
    }
}

#[test]
fn every_readme_command_works() {
    let _one = ONE_PCSCD.lock().unwrap_or_else(|p| p.into_inner());
    let commands = readme_commands();
    assert!(
        commands.len() >= 10,
        "README lost its commands? {commands:?}"
    );
    let aws = Path::new("/usr/bin/aws");
    if !aws.exists() {
        tapcred_testkit::ci::skip(
            "readme_commands",
            "/usr/bin/aws is missing (apt install awscli)",
        );
        return;
    }

    // The YubiKey: the design seed under AWS's QR label, touch required, pressed by a
    // simulated finger shortly after the key starts waiting.
    let mut stack =
        PcscStack::start_or_skip("readme_commands (YubiKey part; falls back to a software seed)");
    let seed = data_encoding::BASE32_NOPAD
        .decode(design::MFA_SEED_BASE32.as_bytes())
        .unwrap();
    let _card = stack.as_mut().map(|s| {
        let card = VirtualYubiKey::new(VykConfig::new().serial(5_550_123).account(
            Account::totp("Amazon Web Services:toolkit-user@111111111111", &seed).touch(true),
        ));
        let handle = s.insert(0, card).expect("insert the virtual YubiKey");
        handle
            .vyk()
            .set_auto_press(Some(Duration::from_millis(300)));
        handle
    });

    let double = StsDouble::start_design().expect("STS double");
    let home = common::Home::design();
    home.write_config(&format!(
        "{}\n[profile work]\ncredential_process = tapcred credential-process --profile mfa\nregion = eu-west-1\n",
        common::design_fixture("config")
    ));
    let shims = home.path().join("shims");
    std::fs::create_dir_all(&shims).unwrap();
    // The AWS CLI 2.9 ignores AWS_ENDPOINT_URL_STS for its own calls; point it at the double.
    write_exec(
        &shims.join("aws"),
        r#"exec /usr/bin/aws "$@" --endpoint-url "$AWS_ENDPOINT_URL_STS" --region us-east-1"#,
    );
    for name in ["terraform", "my-daemon"] {
        write_exec(&shims.join(name), "exec aws sts get-caller-identity");
    }
    write_exec(
        &home.path().join("deploy.sh"),
        "exec aws sts get-caller-identity",
    );
    let sandbox = Sandbox {
        home,
        shims,
        double,
        software_only: stack.is_none(),
    };

    let mut ran = 0;
    for line in &commands {
        if let Some((_, why)) = NOT_RUN.iter().find(|(p, _)| line.starts_with(p)) {
            tapcred_testkit::ci::notice(&format!("not run here: {line}  ({why})"));
            continue;
        }
        let out = if line.starts_with("bash scripts/") {
            // Repository scripts run from the checkout with the caller's toolchain.
            Command::new("bash")
                .args(["-c", line])
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .env_remove("TAPCRED_TOTP_SECRET")
                .output()
                .unwrap()
        } else {
            assert!(
                line.starts_with("tapcred ")
                    || line.starts_with("eval ")
                    || line.starts_with("aws ")
                    || line.contains("tapcred")
                    || line.starts_with("AWS_PROFILE="),
                "unexpected README command: {line}"
            );
            if line.starts_with("tapcred devices") && stack.is_none() {
                tapcred_testkit::ci::notice(&format!(
                    "not run here: {line}  (no pcscd stack on this machine; CI runs it)"
                ));
                continue;
            }
            sandbox.command(line).output().unwrap()
        };
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "README command failed: {line}\nstdout: {stdout}\nstderr: {stderr}"
        );
        if line.contains("get-caller-identity")
            || ["terraform", "my-daemon", "deploy.sh"]
                .iter()
                .any(|p| line.contains(p))
        {
            assert!(
                stdout.contains("arn:aws:sts::111111111111:assumed-role/toolkit-role/"),
                "{line}: {stdout}"
            );
        }
        if line.contains("--format json") || line.contains("demo.sh") {
            assert!(
                stdout.contains("\"Version\"") && stdout.contains("ASIA"),
                "{line}: {stdout}"
            );
        }
        if line.starts_with("tapcred devices") {
            assert!(
                stdout.contains("5550123") && stdout.contains("toolkit-user@111111111111"),
                "{stdout}"
            );
        }
        if line.starts_with("tapcred code") {
            assert!(
                stdout.trim().len() == 6 && stdout.trim().bytes().all(|b| b.is_ascii_digit()),
                "{stdout}"
            );
        }
        ran += 1;
    }
    let stats = sandbox.double.stats();
    assert_eq!(
        stats.errors_with_code("AccessDenied"),
        0,
        "no code rejected, none reused: {stats:?}"
    );
    assert!(ran >= 12, "ran {ran} README commands");
    let man = sandbox.home.path().join("tapcred.1");
    assert!(
        std::fs::read_to_string(man)
            .unwrap()
            .contains(".TH tapcred")
    );
    assert!(
        sandbox
            .home
            .path()
            .join(".local/share/bash-completion/completions/tapcred")
            .exists()
    );
}

/// One pcscd per machine: `scripts/try.sh` takes the test stack's lock in a child process,
/// so the two tests here take turns instead of one falling back to a software seed.
static ONE_PCSCD: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The `sh` commands of `page` in the `## ` sections for which `pick` says true, in page
/// order.
fn walkthrough(page: &str, pick: impl Fn(&str) -> bool) -> Vec<String> {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(page)).unwrap();
    let (mut out, mut heading) = (Vec::new(), String::new());
    let (mut in_fence, mut in_sh) = (false, false);
    for line in text.lines() {
        let t = line.trim();
        if !in_fence && line.starts_with("## ") {
            heading = line.to_string();
        }
        if t.starts_with("```") {
            in_sh = !in_fence && t == "```sh";
            in_fence = !in_fence;
            continue;
        }
        if in_sh && !t.is_empty() && !t.starts_with('#') && pick(&heading) {
            out.push(t.to_string());
        }
    }
    out
}

/// A `scripts/try.sh --print-env` sandbox; dropping it runs its `$TAPCRED_TRY_STOP`.
struct TrySandbox {
    env_file: PathBuf,
    shims: PathBuf,
    stop: String,
    home: PathBuf,
}

impl TrySandbox {
    fn start(args: &[&str], scratch: &Path, shims: &Path) -> Option<TrySandbox> {
        let out = Command::new("bash")
            .arg("scripts/try.sh")
            .args(args)
            .arg("--print-env")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env_remove("TAPCRED_TOTP_SECRET")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "try.sh {args:?}: {stderr}");
        let env_file = scratch.join(format!("try-env{}", args.join("")));
        std::fs::write(&env_file, &out.stdout).unwrap();
        let var = |name: &str| {
            let o = Command::new("bash")
                .arg("-c")
                .arg(format!(". '{}'; printf %s \"${name}\"", env_file.display()))
                .output()
                .unwrap();
            String::from_utf8(o.stdout).unwrap()
        };
        let key = var("TAPCRED_TRY_KEY");
        // Built before any check, so that its Drop stops what try.sh started.
        let sandbox = TrySandbox {
            shims: shims.to_path_buf(),
            stop: var("TAPCRED_TRY_STOP"),
            home: PathBuf::from(var("HOME")),
            env_file: env_file.clone(),
        };
        assert!(sandbox.stop.ends_with("/stop"), "{stderr}");
        if key != "virtual" {
            // Under CI=true the virtual YubiKey must run: the walkthroughs are tried as a
            // key owner would.
            tapcred_testkit::ci::skip(
                "walkthroughs_work_in_try_sh",
                &format!("try.sh fell back to the software seed: {stderr}"),
            );
            return None;
        }
        Some(sandbox)
    }

    /// Run `line` in the sandbox (with `stdin` as its input), as typed in its shell.
    fn run(&self, line: &str, stdin: &str) {
        let script = format!(
            ". '{}'; export PATH='{}':\"$PATH\"; cd \"$HOME\"; {line}",
            self.env_file.display(),
            self.shims.display()
        );
        let mut child = Command::new("timeout")
            .args(["180", "bash", "-euo", "pipefail", "-c", &script])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(
            out.status.success(),
            "in scripts/try.sh: `{line}` failed ({})\nstdout: {stdout}\nstderr: {stderr}",
            out.status
        );
        if line.contains("get-caller-identity")
            || ["terraform", "my-daemon", "deploy.sh"]
                .iter()
                .any(|p| line.contains(p))
        {
            assert!(
                stdout.contains("arn:aws:sts::111111111111:assumed-role/toolkit-role/"),
                "{line}: {stdout}"
            );
        }
        if line.starts_with("tapcred code") {
            assert!(
                stdout.trim().len() == 6 && stdout.trim().bytes().all(|b| b.is_ascii_digit()),
                "{stdout}"
            );
        }
        if line.starts_with("tapcred doctor") {
            assert!(stdout.contains("no problems found"), "{stdout}");
        }
    }
}

impl Drop for TrySandbox {
    fn drop(&mut self) {
        let _ = Command::new(&self.stop).status();
    }
}

/// Commands in the walkthroughs that are not typed into the sandbox, and why.
const NOT_IN_SANDBOX: &[(&str, &str)] = &[
    (
        "ykman ",
        "Yubico's tool: in scripts/try.sh the virtual key already holds the OATH account and a programmed OTP slot 2",
    ),
    ("sudo ", "installs on the host"),
    ("cargo install", "installs on the host"),
];

/// The README quickstart and the docs' walkthroughs (usage: configure → enroll → doctor →
/// the recipes; the vault), typed as written into `scripts/try.sh`'s sandboxes with the
/// virtual YubiKey: `--fresh` for a new IAM user, the default one for the rest.
#[test]
fn walkthroughs_work_in_try_sh() {
    if !Path::new("/usr/bin/aws").exists() {
        tapcred_testkit::ci::skip(
            "walkthroughs_work_in_try_sh",
            "/usr/bin/aws is missing (apt install awscli)",
        );
        return;
    }
    let _one = ONE_PCSCD.lock().unwrap_or_else(|p| p.into_inner());
    let scratch = common::Home::empty();
    let shims = scratch.path().join("shims");
    std::fs::create_dir_all(&shims).unwrap();
    // The AWS CLI 2.9 ignores AWS_ENDPOINT_URL for its own calls; point it at the double.
    write_exec(
        &shims.join("aws"),
        r#"exec /usr/bin/aws "$@" --endpoint-url "$AWS_ENDPOINT_URL" --region us-east-1"#,
    );
    for name in ["terraform", "my-daemon"] {
        write_exec(&shims.join(name), "exec aws sts get-caller-identity");
    }
    let skipped = |line: &str| {
        NOT_IN_SANDBOX
            .iter()
            .find(|(p, _)| line.starts_with(p))
            .map(|(_, why)| tapcred_testkit::ci::notice(&format!("not typed: {line} ({why})")))
            .is_some()
    };
    let from_nothing = |h: &str| h.contains("From nothing");
    // Roles Anywhere and PIV walkthroughs start from a CA and a trust anchor the sandbox does
    // not have; tests/rolesanywhere.rs, rolesanywhere_piv.rs and cli_piv.rs run those paths
    // against the Roles Anywhere double and the virtual PIV applet.
    let needs_a_certificate_authority =
        |h: &str| h.contains("Roles Anywhere") || h.contains("PIV keys");
    let new_user: Vec<String> = walkthrough("docs/usage.md", from_nothing)
        .into_iter()
        .chain(walkthrough("README.md", |h| h.contains("Quickstart")))
        .collect();
    let recipes: Vec<String> = walkthrough("docs/vault.md", |_| true)
        .into_iter()
        .chain(walkthrough("docs/usage.md", |h| {
            !from_nothing(h) && !needs_a_certificate_authority(h)
        }))
        .collect();
    for expected in [
        "tapcred configure",
        "tapcred enroll",
        "tapcred doctor",
        "tapcred exec",
    ] {
        assert!(
            new_user.iter().any(|l| l.starts_with(expected)),
            "{new_user:?}"
        );
    }
    for expected in ["tapcred vault init", "tapcred serve", "tapcred export"] {
        assert!(
            recipes.iter().any(|l| l.starts_with(expected)),
            "{recipes:?}"
        );
    }

    let Some(fresh) = TrySandbox::start(&["--fresh"], scratch.path(), &shims) else {
        return;
    };
    for line in &new_user {
        if !skipped(line) {
            fresh.run(line, "");
        }
    }
    drop(fresh);

    let Some(sandbox) = TrySandbox::start(&[], scratch.path(), &shims) else {
        return;
    };
    // usage.md's SDK recipe: the `[profile work]` its `ini` block shows.
    let config = sandbox.home.join(".aws/config");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(
        "\n[profile work]\ncredential_process = tapcred credential-process --profile mfa\nregion = eu-west-1\n",
    );
    std::fs::write(&config, text).unwrap();
    write_exec(
        &sandbox.home.join("deploy.sh"),
        "exec aws sts get-caller-identity",
    );
    for line in &recipes {
        if skipped(line) {
            continue;
        }
        // `vault add-seed` reads the seed the user pastes (the double's demo device's).
        let stdin = if line.starts_with("tapcred vault add-seed") {
            format!("{}\n", design::MFA_SEED_BASE32)
        } else {
            String::new()
        };
        // The CI recipe runs with the seed in the environment, as that section says.
        let line = if line.contains("deploy.sh") {
            format!("TAPCRED_TOTP_SECRET={} {line}", design::MFA_SEED_BASE32)
        } else {
            line.clone()
        };
        sandbox.run(&line, &stdin);
    }
}

/// A pcscd that try.sh did not start (here a stand-in process named `pcscd`) is left alone:
/// the sandbox says why it has no virtual key, uses the software seed, and its stop leaves
/// that process running.
#[test]
fn try_sh_leaves_a_pcscd_it_did_not_start_alone() {
    let _one = ONE_PCSCD.lock().unwrap_or_else(|p| p.into_inner());
    // Held while the stand-in runs, so other test stacks on this machine wait for it to end
    // instead of refusing to start next to "another pcscd".
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(tapcred_testkit::pcsc_stack::LOCK_PATH)
        .unwrap();
    lock.lock().unwrap();
    let scratch = common::Home::empty();
    let fake = scratch.path().join("pcscd");
    std::fs::copy("/bin/sleep", &fake).unwrap();
    let mut other = Command::new(&fake).arg("120").spawn().unwrap();
    let other_pid = other.id();
    let out = Command::new("bash")
        .args(["scripts/try.sh", "--print-env"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stop = stdout
        .lines()
        .find_map(|l| l.strip_prefix("export TAPCRED_TRY_STOP="))
        .map(str::to_owned);
    if let Some(stop) = &stop {
        Command::new(stop).status().unwrap();
    }
    let alive = other.try_wait().unwrap().is_none();
    let _ = other.kill();
    let _ = other.wait();
    drop(lock);
    assert!(out.status.success() && stop.is_some(), "{stderr}");
    assert!(alive, "try.sh stopped a pcscd it did not start: {stderr}");
    assert!(
        stdout.contains("TAPCRED_TRY_KEY=software") && stdout.contains("TAPCRED_TOTP_SECRET="),
        "{stdout}"
    );
    let why = if is_root() {
        format!("a pcscd (pid {other_pid}) is already running: try.sh leaves it alone")
    } else {
        "not root".to_owned()
    };
    assert!(
        stderr.contains("the demo software seed") && stderr.contains(&why),
        "{stderr}"
    );
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}
