//! The bad-input table (`docs/bad-inputs.md`), checked against the real binary so it cannot
//! drift: every row is a scenario defined here by id; the test runs each one and compares
//! the exit code, the one-line answer and what was left on disk with the row.
//!
//! Add a row: write a scenario below (an id, what is wrong, a function that runs it), then
//! regenerate the table with
//! `TAPCRED_BAD_INPUTS=write cargo test --test bad_inputs` and review the diff of
//! docs/bad-inputs.md. A normal run fails on any difference, a missing row or an extra row.
#![cfg(unix)] // Unix modes, FIFOs and Linux stacks; the Windows build is checked by clippy and Wine

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::{Home, Run};
use tapcred_testkit::fault_proxy::{FaultProxy, StsFault};
use tapcred_testkit::sts_double::{Fault, StsDouble, design};

/// What a scenario observed.
struct Outcome {
    code: i32,
    /// The `tapcred: error:` line (or, on success, the warning lines), normalised.
    answer: String,
    /// What the run left under HOME (see [`disk_changes`]).
    disk: String,
}

struct Scenario {
    id: &'static str,
    input: &'static str,
    run: fn() -> Outcome,
}

// ----- helpers ---------------------------------------------------------------------------

const KEYS: &str = "[toolkit-user]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n";
const BASE: &str = "[profile toolkit-user]\nregion = us-east-1\n";
const ROLE: &str = "role_arn = arn:aws:iam::111111111111:role/toolkit-role\n";
const SERIAL: &str = "mfa_serial = arn:aws:iam::111111111111:mfa/toolkit-user\n";

/// HOME with the toolkit-user keys and `[profile a]` = `profile_a` (plus `extra` sections).
fn home_a(profile_a: &str) -> Home {
    let h = Home::empty();
    h.write_config(&format!("{BASE}[profile a]\n{profile_a}"));
    h.write_credentials(KEYS);
    h
}

/// A role profile `a` with MFA plus `extra` keys.
fn mfa_a(extra: &str) -> Home {
    home_a(&format!(
        "source_profile = toolkit-user\n{ROLE}{SERIAL}{extra}"
    ))
}

fn snapshot(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    fn walk(d: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
        if let Ok(rd) = std::fs::read_dir(d) {
            for e in rd.flatten() {
                let p = e.path();
                let md = std::fs::symlink_metadata(&p);
                if md.as_ref().is_ok_and(|m| m.is_dir()) {
                    out.push((p.clone(), b"<dir>".to_vec()));
                    walk(&p, out);
                } else if md.as_ref().is_ok_and(|m| m.is_file()) {
                    out.push((p.clone(), std::fs::read(&p).unwrap_or_default()));
                } else {
                    out.push((p.clone(), b"<other>".to_vec()));
                }
            }
        }
    }
    let mut v = Vec::new();
    walk(root, &mut v);
    v.sort();
    v
}

/// What a path under HOME is, for the table.
fn kind(home: &Path, p: &Path) -> String {
    let rel = p
        .strip_prefix(home)
        .unwrap_or(p)
        .to_string_lossy()
        .into_owned();
    let name = p.file_name().unwrap_or_default().to_string_lossy();
    if rel.starts_with(".aws/") {
        return format!("AWS file {rel}");
    }
    // The per-user folder of the ledger and the serial locks ($TMPDIR/tapcred-<uid>).
    let per_user = rel.starts_with("tmp/tapcred-");
    if per_user && !rel["tmp/".len()..].contains('/') {
        return "per-user dir".into();
    }
    if rel.starts_with(".cache/tapcred") || rel.starts_with("xdg/tapcred") || per_user {
        if rel.contains("/steps") {
            return if name == "steps" {
                "ledger dir".into()
            } else {
                "ledger".into()
            };
        }
        if rel.contains("/locks") {
            return if name == "locks" {
                "lock dir".into()
            } else {
                "lock file".into()
            };
        }
        if name.contains(".tmp") || name.starts_with('.') {
            return "partial file".into();
        }
        if name.ends_with(".json") {
            return "cache entry".into();
        }
        if name == "tapcred" {
            return "cache dir".into();
        }
    }
    if rel == ".cache" {
        return "cache dir".into();
    }
    rel
}

/// `unchanged`, or the kinds of paths added (+), changed (~) and removed (-).
fn disk_changes(
    home: &Path,
    before: &[(PathBuf, Vec<u8>)],
    after: &[(PathBuf, Vec<u8>)],
) -> String {
    let mut out = BTreeSet::new();
    for (p, b) in after {
        match before.iter().find(|(q, _)| q == p) {
            None => {
                out.insert(format!("+{}", kind(home, p)));
            }
            Some((_, a)) if a != b => {
                out.insert(format!("~{}", kind(home, p)));
            }
            _ => {}
        }
    }
    for (p, _) in before {
        if !after.iter().any(|(q, _)| q == p) {
            out.insert(format!("-{}", kind(home, p)));
        }
    }
    if out.is_empty() {
        "unchanged".into()
    } else {
        out.into_iter().collect::<Vec<_>>().join(", ")
    }
}

/// The answer as the table shows it: the error line (or the warnings on success), with the
/// temporary HOME shown as `~` and loopback ports as `PORT`.
fn answer(home: &Path, r: &Run) -> String {
    let home_s = home.to_string_lossy();
    let lines: Vec<&str> = r
        .stderr
        .lines()
        // Timing, not the behaviour under test: a run that starts late in a window, or
        // after another run used this window's code, waits for the next one.
        .filter(|l| !l.contains("the current code is about to expire"))
        .filter(|l| !l.contains("waiting for the next code window"))
        .filter(|l| !l.trim().is_empty())
        .collect();
    let errors: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("tapcred: error:"))
        .collect();
    let text = if r.code != 0 && !errors.is_empty() {
        errors.join(" ⏎ ")
    } else {
        lines.join(" ⏎ ")
    };
    let mut t = text.replace(&*home_s, "~").replace(
        &format!("tapcred-{}", rustix::process::geteuid().as_raw()),
        "tapcred-<uid>",
    );
    // 127.0.0.1:NNNNN → 127.0.0.1:PORT
    while let Some(i) = t.find("127.0.0.1:").map(|i| i + "127.0.0.1:".len()) {
        let n = t[i..].bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            break;
        }
        t.replace_range(i..i + n, "PORT");
        if !t[i..].contains("127.0.0.1:") {
            break;
        }
    }
    t
}

/// Run `tapcred ARGS` (detached: no terminal) in `h` and describe the outcome.
fn run_in(h: &Home, args: &[&str]) -> Outcome {
    let before = snapshot(h.path());
    let r = Run::from(h.cmd_detached(args).output().expect("run tapcred"));
    let after = snapshot(h.path());
    if r.code != 0 && r.code <= 7 {
        assert!(
            r.stdout.is_empty(),
            "{args:?}: stdout must stay empty on error: {}",
            r.stdout
        );
        let errors = r
            .stderr
            .lines()
            .filter(|l| l.starts_with("tapcred: error:"))
            .count();
        assert!(
            errors == 1 || r.code == 2,
            "{args:?}: exactly one error line expected: {}",
            r.stderr
        );
    }
    Outcome {
        code: r.code,
        answer: answer(h.path(), &r),
        disk: disk_changes(h.path(), &before, &after),
    }
}

fn cp(h: &Home, profile: &str) -> Outcome {
    run_in(h, &["credential-process", "--profile", profile])
}

/// HOME with the design fixture's AWS files (fixtures/aws/design), the design seed and the STS double as endpoint.
fn design_home(d: &StsDouble) -> Home {
    Home::design_against(&d.endpoint())
}

/// A GetSessionToken answer with these credentials, valid for an hour.
fn gst_answer(akid: &str, secret: &str) -> String {
    let exp = (time::OffsetDateTime::now_utc() + time::Duration::hours(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    format!(
        "<GetSessionTokenResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><GetSessionTokenResult><Credentials><AccessKeyId>{akid}</AccessKeyId><SecretAccessKey>{secret}</SecretAccessKey><SessionToken>token</SessionToken><Expiration>{exp}</Expiration></Credentials></GetSessionTokenResult><ResponseMetadata><RequestId>x</RequestId></ResponseMetadata></GetSessionTokenResponse>"
    )
}

fn double() -> StsDouble {
    StsDouble::start_design().expect("start the STS double")
}

fn seeded(seed: &str) -> Outcome {
    let mut h = mfa_a("");
    h.set("TAPCRED_TOTP_SECRET", seed);
    cp(&h, "a")
}

fn seed_file(contents: &[u8], mode: u32) -> Outcome {
    use std::os::unix::fs::PermissionsExt;
    let h = mfa_a("tapcred_totp_secret_file = ~/seed\n");
    let p = h.path().join("seed");
    std::fs::write(&p, contents).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    cp(&h, "a")
}

/// `credential-process --profile session` through a proxy answering every request with
/// `fault`.
fn sts_fault(fault: StsFault) -> Outcome {
    let d = double();
    let proxy = FaultProxy::start(d.port()).expect("fault proxy");
    proxy.set_default(fault);
    let mut h = design_home(&d);
    h.set("AWS_ENDPOINT_URL_STS", &proxy.endpoint());
    cp(&h, "session")
}

/// A name with what a terminal would act on: an OSC 52 clipboard write, a one-character CSI,
/// a bidi override, CR and NEL.
const EVIL_NAME: &str = "x\u{1b}]52;c;ZWNobyBwd25lZA==\u{7}\u{9b}2J\u{202e}\r\u{85}y";

/// `credential-process --profile a` with the STS endpoint `url` in `var` and a seed: a URL
/// no request can go to must be refused before a code is read.
fn endpoint(var: &str, url: &str) -> Outcome {
    let mut h = mfa_a("");
    h.set("TAPCRED_TOTP_SECRET", "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ")
        .set(var, url);
    cp(&h, "a")
}

/// HOME of [`mfa_a`] with a rotate journal of `toolkit-user` (as a killed `rotate` leaves
/// it), then `tapcred rotate --profile a`.
fn rotate_journal() -> Outcome {
    use std::os::unix::fs::PermissionsExt;
    let h = mfa_a("");
    let dir = h.path().join(".local/share/tapcred/journal");
    std::fs::create_dir_all(&dir).unwrap();
    for d in [dir.parent().unwrap(), &dir] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let p = dir.join("rotate-toolkit-user.json");
    std::fs::write(&p, ROTATE_JOURNAL).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    run_in(&h, &["rotate", "--profile", "a"])
}

const ROTATE_JOURNAL: &str = r#"{"kind":"rotate","subject":"toolkit-user","started":1700000000,"pid":1,"steps":[{"name":"begin","data":{"user":"toolkit-user","profile":"a","old_key_id":"AKIAIOSFODNN7EXAMPLE","store":"file","keep_old":false,"keys_before":["AKIAIOSFODNN7EXAMPLE"]}},{"name":"create","data":{"attempt":0}}]}"#;

/// HOME of [`mfa_a`] with an enroll journal of profile `a` holding `contents` (as a killed
/// `enroll` leaves it), then `tapcred ARGS`.
fn enroll_journal(contents: &str, args: &[&str]) -> Outcome {
    use std::os::unix::fs::PermissionsExt;
    let h = mfa_a("");
    let dir = h.path().join(".local/share/tapcred/journal");
    std::fs::create_dir_all(&dir).unwrap();
    for d in [dir.parent().unwrap(), &dir] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let p = dir.join("enroll-a.json");
    std::fs::write(&p, contents).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    run_in(&h, args)
}

const ENROLL_JOURNAL: &str = r#"{"kind":"enroll","subject":"a","started":1700000000,"pid":1,"steps":[{"name":"create","data":{"user":"toolkit-user","signer":"toolkit-user","account":"111111111111","serial":"arn:aws:iam::111111111111:mfa/toolkit-user","device_name":"toolkit-user","to":"file"}},{"name":"created","data":{"serial":"arn:aws:iam::111111111111:mfa/toolkit-user"}}]}"#;

// ----- the scenarios ---------------------------------------------------------------------

/// HOME with `[profile ra]`, a Roles Anywhere profile with `keys` (the fixture certificate
/// and keys of fixtures/rolesanywhere/static copied to ~/ra, keys mode 0600 unless `shared`).
fn roles_anywhere(keys: &str, shared: bool) -> Outcome {
    roles_anywhere_with(keys, shared, None)
}

/// [`roles_anywhere`] with `AWS_ENDPOINT_URL_ROLESANYWHERE` = `endpoint`.
fn roles_anywhere_with(keys: &str, shared: bool, endpoint: Option<&str>) -> Outcome {
    use std::os::unix::fs::PermissionsExt;
    let mut h = Home::empty();
    if let Some(e) = endpoint {
        h.set("AWS_ENDPOINT_URL_ROLESANYWHERE", e);
    }
    let dir = h.path().join("ra");
    std::fs::create_dir_all(&dir).unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/rolesanywhere/static");
    for f in ["leaf.pem", "leaf.key", "other.key", "encrypted.key"] {
        std::fs::copy(fixtures.join(f), dir.join(f)).unwrap();
        let mode = if f.ends_with(".key") && !shared {
            0o600
        } else {
            0o644
        };
        std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(mode)).unwrap();
    }
    h.write_config(&format!("[profile ra]\nregion = us-east-1\n{keys}"));
    cp(&h, "ra")
}

const RA_ARNS: &str = "tapcred_roles_anywhere_trust_anchor_arn = arn:aws:rolesanywhere:us-east-1:111111111111:trust-anchor/a1b2c3d4-1111-2222-3333-444444444444\ntapcred_roles_anywhere_profile_arn = arn:aws:rolesanywhere:us-east-1:111111111111:profile/b1b2c3d4-1111-2222-3333-444444444444\nrole_arn = arn:aws:iam::111111111111:role/toolkit-role\n";

fn scenarios() -> Vec<Scenario> {
    macro_rules! s {
        ($id:literal, $input:literal, $run:expr) => {
            Scenario {
                id: $id,
                input: $input,
                run: $run,
            }
        };
    }
    vec![
        // --- AWS files and profiles
        s!(
            "no-aws-files",
            "neither ~/.aws/config nor ~/.aws/credentials exists",
            || { cp(&Home::empty(), "mfa") }
        ),
        s!(
            "unknown-profile",
            "`--profile mfx` when only `mfa` exists",
            || { cp(&mfa_a(""), "mfx") }
        ),
        s!(
            "aws-profile-unknown",
            "`AWS_PROFILE=nope`, no `--profile`",
            || {
                let mut h = mfa_a("");
                h.set("AWS_PROFILE", "nope");
                run_in(&h, &["credential-process"])
            }
        ),
        s!(
            "profile-terminal-escapes",
            "`--profile` holding an OSC 52 clipboard write, a C1 CSI, a bidi override, CR and NEL",
            || { cp(&mfa_a(""), EVIL_NAME) }
        ),
        s!(
            "aws-profile-terminal-escapes",
            "`AWS_PROFILE` holding terminal escapes, no `--profile`",
            || {
                let mut h = mfa_a("");
                h.set("AWS_PROFILE", EVIL_NAME);
                run_in(&h, &["credential-process"])
            }
        ),
        s!(
            "config-file-terminal-escapes",
            "`AWS_CONFIG_FILE` (and the credentials file) a path holding terminal escapes",
            || {
                let mut h = mfa_a("");
                let path = h.path().join(format!("conf{EVIL_NAME}"));
                h.set("AWS_CONFIG_FILE", path.to_str().unwrap())
                    .set("AWS_SHARED_CREDENTIALS_FILE", path.to_str().unwrap());
                cp(&h, "a")
            }
        ),
        s!(
            "source-profile-cycle",
            "`a` → `b` → `a` through source_profile",
            || {
                let h = home_a(&format!(
                    "source_profile = b\n{ROLE}[profile b]\nsource_profile = a\n{ROLE}"
                ));
                cp(&h, "a")
            }
        ),
        s!(
            "source-profile-missing",
            "source_profile names a profile that does not exist",
            || { cp(&home_a(&format!("source_profile = nowhere\n{ROLE}")), "a") }
        ),
        s!(
            "source-and-credential-source",
            "both source_profile and credential_source",
            || {
                cp(
                    &home_a(&format!(
                        "source_profile = toolkit-user\ncredential_source = Environment\n{ROLE}"
                    )),
                    "a",
                )
            }
        ),
        s!("role-arn-malformed", "`role_arn = not-an-arn`", || {
            cp(
                &home_a("source_profile = toolkit-user\nrole_arn = not-an-arn\n"),
                "a",
            )
        }),
        s!("mfa-serial-malformed", "`mfa_serial = bad serial!`", || {
            cp(
                &home_a(&format!(
                    "source_profile = toolkit-user\n{ROLE}mfa_serial = bad serial!\n"
                )),
                "a",
            )
        }),
        s!(
            "mfa-serial-short",
            "`mfa_serial = abc` (under 9 characters)",
            || {
                cp(
                    &home_a(&format!(
                        "source_profile = toolkit-user\n{ROLE}mfa_serial = abc\n"
                    )),
                    "a",
                )
            }
        ),
        s!("duration-too-short", "`duration_seconds = 899`", || {
            cp(&mfa_a("duration_seconds = 899\n"), "a")
        }),
        s!("duration-too-long", "`duration_seconds = 43201`", || {
            cp(&mfa_a("duration_seconds = 43201\n"), "a")
        }),
        s!("duration-not-a-number", "`duration_seconds = soon`", || {
            cp(&mfa_a("duration_seconds = soon\n"), "a")
        }),
        s!(
            "external-id-invalid",
            "`external_id` with a space and `!`",
            || { cp(&mfa_a("external_id = no spaces!\n"), "a") }
        ),
        s!(
            "session-name-invalid",
            "`role_session_name` with a space",
            || { cp(&mfa_a("role_session_name = has space\n"), "a") }
        ),
        s!("token-kind-unknown", "`tapcred_token = yubi`", || {
            cp(&mfa_a("tapcred_token = yubi\n"), "a")
        }),
        s!(
            "token-kind-otp",
            "`tapcred_token = otp` (an OTP slot cannot hold an AWS seed)",
            || { cp(&mfa_a("tapcred_token = otp\n"), "a") }
        ),
        s!(
            "token-kind-vault",
            "`tapcred_token = vault` and no vault",
            || { cp(&mfa_a("tapcred_token = vault\n"), "a") }
        ),
        s!(
            "access-key-unknown-place",
            "`tapcred_access_key = keychain` on the source profile",
            || {
                let h = mfa_a("");
                h.write_credentials("[toolkit-user]\ntapcred_access_key = keychain\n");
                cp(&h, "a")
            }
        ),
        s!(
            "access-key-vault-beside-keys",
            "`tapcred_access_key = vault` beside `aws_access_key_id`/`aws_secret_access_key`",
            || {
                let h = mfa_a("");
                h.write_credentials(&format!("{KEYS}tapcred_access_key = vault\n"));
                cp(&h, "a")
            }
        ),
        s!(
            "access-key-vault-no-vault",
            "`tapcred_access_key = vault` and no vault",
            || {
                let h = mfa_a("");
                h.write_credentials("[toolkit-user]\ntapcred_access_key = vault\n");
                cp(&h, "a")
            }
        ),
        s!(
            "vault-rolled-back",
            "an older copy of the vault put back in place",
            || {
                let h = mfa_a("");
                let path = h.path().join(".local/share/tapcred/vault");
                let store = tapcred::vault::VaultStore::new(&path)
                    .with_seen_dir(Some(h.path().join(".cache/tapcred/vault-generations")));
                let desc = tapcred::vault::UnlockerDesc::new_random(
                    tapcred::vault::UnlockerKind::OtpHmacSha1,
                    "otp:1:2",
                )
                .unwrap();
                let v = tapcred::vault::OpenVault::create(desc, b"the unlocker's output").unwrap();
                store.lock().unwrap().write(&v).unwrap();
                let old = std::fs::read(&path).unwrap();
                store.lock().unwrap().write(&v).unwrap();
                std::fs::write(&path, old).unwrap();
                run_in(&h, &["vault", "list"])
            }
        ),
        s!(
            "vault-init-no-key",
            "`vault init` with no YubiKey (no pcscd)",
            || {
                let mut h = mfa_a("");
                h.set("PCSCLITE_CSOCK_NAME", "/nonexistent/pcscd.comm");
                run_in(&h, &["vault", "init", "--unlock", "otp"])
            }
        ),
        s!(
            "yubikey-serial-not-a-number",
            "`tapcred_yubikey_serial = abc`",
            || { cp(&mfa_a("tapcred_yubikey_serial = abc\n"), "a") }
        ),
        s!(
            "secret-env-name-invalid",
            "`tapcred_totp_secret_env = 1-BAD`",
            || { cp(&mfa_a("tapcred_totp_secret_env = 1-BAD\n"), "a") }
        ),
        s!(
            "source-without-keys",
            "source profile has no aws_access_key_id",
            || {
                let h = Home::empty();
                h.write_config(&format!(
                "[profile a]\nsource_profile = nokeys\n{ROLE}{SERIAL}[profile nokeys]\nregion = us-east-1\n"
            ));
                h.write_credentials(KEYS);
                cp(&h, "a")
            }
        ),
        s!(
            "access-key-without-secret",
            "aws_access_key_id without aws_secret_access_key",
            || {
                let h = Home::empty();
                h.write_config(&format!(
                    "[profile a]\nsource_profile = half\n{ROLE}{SERIAL}"
                ));
                h.write_credentials("[half]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\n");
                cp(&h, "a")
            }
        ),
        s!(
            "config-not-utf8",
            "~/.aws/config holds Latin-1 bytes",
            || {
                let h = mfa_a("");
                std::fs::write(h.config_path(), b"[profile a]\nregion = caf\xe9\n").unwrap();
                cp(&h, "a")
            }
        ),
        s!(
            "credentials-not-utf8",
            "~/.aws/credentials holds invalid UTF-8",
            || {
                let h = mfa_a("");
                std::fs::write(
                    h.credentials_path(),
                    b"[toolkit-user]\naws_access_key_id = \xff\xfe\n",
                )
                .unwrap();
                cp(&h, "a")
            }
        ),
        s!(
            "config-is-a-directory",
            "`AWS_CONFIG_FILE` points at a directory",
            || {
                let mut h = mfa_a("");
                let d = h.path().join("adir");
                std::fs::create_dir_all(&d).unwrap();
                h.set("AWS_CONFIG_FILE", &d.to_string_lossy());
                cp(&h, "a")
            }
        ),
        s!(
            "config-line-outside-section",
            "a `key = value` line before any section",
            || {
                let h = Home::empty();
                h.write_config("region = us-east-1\n[profile a]\nregion = us-east-1\n");
                h.write_credentials(KEYS);
                cp(&h, "a")
            }
        ),
        s!(
            "config-section-unclosed",
            "a section header without `]`",
            || {
                let h = Home::empty();
                h.write_config("[profile a\nregion = us-east-1\n");
                h.write_credentials(KEYS);
                cp(&h, "a")
            }
        ),
        s!(
            "config-header-style",
            "`[a]` instead of `[profile a]` in ~/.aws/config",
            || {
                let h = Home::empty();
                h.write_config(&format!(
                    "[a]\nsource_profile = toolkit-user\n{ROLE}{SERIAL}"
                ));
                h.write_credentials(KEYS);
                cp(&h, "a")
            }
        ),
        s!(
            "session-duration-env-invalid",
            "`TAPCRED_SESSION_DURATION=12`",
            || {
                let d = double();
                let mut h = design_home(&d);
                h.set("TAPCRED_SESSION_DURATION", "12");
                cp(&h, "session")
            }
        ),
        // --- seeds
        s!(
            "seed-not-base32",
            "`TAPCRED_TOTP_SECRET` is not base32",
            || { seeded("this is not base32 !!!") }
        ),
        s!(
            "seed-empty",
            "`TAPCRED_TOTP_SECRET=====` (padding only)",
            || seeded("====")
        ),
        s!("seed-otpauth-hotp", "an `otpauth://hotp/` URI", || {
            seeded("otpauth://hotp/AWS:me?secret=GEZDGNBVGY3TQOJQ&counter=3")
        }),
        s!(
            "seed-otpauth-no-secret",
            "an `otpauth://totp/` URI without `secret=`",
            || { seeded("otpauth://totp/AWS:me?issuer=AWS") }
        ),
        s!(
            "seed-multibyte",
            "a seed with a multi-byte character (`ünïcödé…`)",
            || { seeded("ünïcödé-seed-with-multibyte") }
        ),
        s!(
            "seed-otpauth-period-0",
            "`otpauth://totp/…&period=0`",
            || { seeded("otpauth://totp/AWS:me?secret=GEZDGNBVGY3TQOJQ&period=0") }
        ),
        s!(
            "seed-otpauth-digits-10",
            "`otpauth://totp/…&digits=10`",
            || { seeded("otpauth://totp/AWS:me?secret=GEZDGNBVGY3TQOJQ&digits=10") }
        ),
        s!(
            "seed-otpauth-sha256",
            "`otpauth://totp/…&algorithm=SHA256`",
            || { seeded("otpauth://totp/AWS:me?secret=GEZDGNBVGY3TQOJQ&algorithm=SHA256") }
        ),
        s!(
            "seed-otpauth-digits-8",
            "`otpauth://totp/…&digits=8`",
            || { seeded("otpauth://totp/AWS:me?secret=GEZDGNBVGY3TQOJQ&digits=8") }
        ),
        s!(
            "seed-otpauth-period-60",
            "`otpauth://totp/…&period=60`",
            || { seeded("otpauth://totp/AWS:me?secret=GEZDGNBVGY3TQOJQ&period=60") }
        ),
        s!(
            "seed-file-missing",
            "`tapcred_totp_secret_file` names a missing file",
            || { cp(&mfa_a("tapcred_totp_secret_file = ~/seed\n"), "a") }
        ),
        // --- IAM Roles Anywhere profiles
        s!(
            "ra-trust-anchor-malformed",
            "`tapcred_roles_anywhere_trust_anchor_arn` is an IAM role ARN",
            || roles_anywhere(
                "tapcred_roles_anywhere_trust_anchor_arn = arn:aws:iam::111111111111:role/x\n",
                false
            )
        ),
        s!(
            "ra-profile-arn-missing",
            "a Roles Anywhere profile without `tapcred_roles_anywhere_profile_arn`",
            || roles_anywhere(
                "tapcred_roles_anywhere_trust_anchor_arn = arn:aws:rolesanywhere:us-east-1:111111111111:trust-anchor/a1b2c3d4-1111-2222-3333-444444444444\n",
                false
            )
        ),
        s!(
            "ra-certificate-without-key",
            "`tapcred_roles_anywhere_certificate` without `tapcred_roles_anywhere_private_key`",
            || roles_anywhere(
                &format!("{RA_ARNS}tapcred_roles_anywhere_certificate = ~/ra/leaf.pem\n"),
                false
            )
        ),
        s!(
            "ra-piv-and-key-file",
            "`tapcred_piv_slot` beside a certificate and key file",
            || roles_anywhere(
                &format!(
                    "{RA_ARNS}tapcred_piv_slot = 9a\ntapcred_roles_anywhere_certificate = ~/ra/leaf.pem\ntapcred_roles_anywhere_private_key = ~/ra/leaf.key\n"
                ),
                false
            )
        ),
        s!("ra-piv-slot-invalid", "`tapcred_piv_slot = 9z`", || {
            roles_anywhere(&format!("{RA_ARNS}tapcred_piv_slot = 9z\n"), false)
        }),
        s!(
            "ra-certificate-missing",
            "the certificate file does not exist",
            || roles_anywhere(
                &format!(
                    "{RA_ARNS}tapcred_roles_anywhere_certificate = ~/ra/nope.pem\ntapcred_roles_anywhere_private_key = ~/ra/leaf.key\n"
                ),
                false
            )
        ),
        s!(
            "ra-certificate-not-pem",
            "the certificate file holds a private key",
            || roles_anywhere(
                &format!(
                    "{RA_ARNS}tapcred_roles_anywhere_certificate = ~/ra/leaf.key\ntapcred_roles_anywhere_private_key = ~/ra/leaf.key\n"
                ),
                false
            )
        ),
        s!(
            "ra-key-file-shared",
            "the private key file is mode 0644",
            || roles_anywhere(
                &format!(
                    "{RA_ARNS}tapcred_roles_anywhere_certificate = ~/ra/leaf.pem\ntapcred_roles_anywhere_private_key = ~/ra/leaf.key\n"
                ),
                true
            )
        ),
        s!(
            "ra-key-not-the-certificates",
            "the private key belongs to another certificate",
            || roles_anywhere(
                &format!(
                    "{RA_ARNS}tapcred_roles_anywhere_certificate = ~/ra/leaf.pem\ntapcred_roles_anywhere_private_key = ~/ra/other.key\n"
                ),
                false
            )
        ),
        s!(
            "ra-key-encrypted",
            "the private key file is encrypted with a passphrase",
            || roles_anywhere(
                &format!(
                    "{RA_ARNS}tapcred_roles_anywhere_certificate = ~/ra/leaf.pem\ntapcred_roles_anywhere_private_key = ~/ra/encrypted.key\n"
                ),
                false
            )
        ),
        s!(
            "ra-endpoint-down",
            "`AWS_ENDPOINT_URL_ROLESANYWHERE` where nothing listens",
            || roles_anywhere_with(
                &format!(
                    "{RA_ARNS}tapcred_roles_anywhere_certificate = ~/ra/leaf.pem\ntapcred_roles_anywhere_private_key = ~/ra/leaf.key\n"
                ),
                false,
                Some("http://127.0.0.1:1"),
            )
        ),
        s!("seed-file-shared", "seed file mode 0644", || {
            seed_file(b"GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", 0o644)
        }),
        s!("seed-file-not-text", "seed file holds binary bytes", || {
            seed_file(b"\xff\xfe\x00\x01", 0o600)
        }),
        s!("seed-file-empty", "seed file is empty", || seed_file(
            b"", 0o600
        )),
        s!(
            "seed-file-directory",
            "`tapcred_totp_secret_file` is a directory",
            || {
                let h = mfa_a("tapcred_totp_secret_file = ~/seed\n");
                std::fs::create_dir_all(h.path().join("seed")).unwrap();
                cp(&h, "a")
            }
        ),
        s!(
            "role-without-source",
            "role_arn with neither source_profile nor credential_source",
            || { cp(&home_a(&format!("{ROLE}{SERIAL}")), "a") }
        ),
        s!(
            "credential-source-unknown",
            "`credential_source = Laptop`",
            || { cp(&home_a(&format!("credential_source = Laptop\n{ROLE}")), "a") }
        ),
        s!("profile-empty-name", "`--profile ''`", || cp(
            &mfa_a(""),
            ""
        )),
        s!(
            "config-empty-file",
            "`AWS_CONFIG_FILE=/dev/null`, no credentials file",
            || {
                let mut h = Home::empty();
                h.set("AWS_CONFIG_FILE", "/dev/null");
                cp(&h, "a")
            }
        ),
        s!(
            "code-without-mfa-serial",
            "`code --profile` of a profile without mfa_serial",
            || { run_in(&mfa_a(""), &["code", "--profile", "toolkit-user"]) }
        ),
        s!(
            "software-token-without-seed",
            "`tapcred_token = software`, no seed anywhere",
            || { cp(&mfa_a("tapcred_token = software\n"), "a") }
        ),
        s!(
            "prompt-token-without-terminal",
            "`tapcred_token = prompt` with no terminal",
            || { cp(&mfa_a("tapcred_token = prompt\n"), "a") }
        ),
        s!(
            "dialog-timeout-invalid",
            "`TAPCRED_DIALOG_TIMEOUT=soon` when a code is to be typed with no terminal",
            || {
                let mut h = mfa_a("tapcred_token = prompt\n");
                h.set("TAPCRED_DIALOG_TIMEOUT", "soon");
                cp(&h, "a")
            }
        ),
        s!(
            "oath-without-pcscd",
            "`tapcred_token = oath`, pcscd not reachable",
            || {
                let mut h = mfa_a("tapcred_token = oath\n");
                h.set("PCSCLITE_CSOCK_NAME", "/nonexistent/pcscd.comm");
                cp(&h, "a")
            }
        ),
        s!(
            "seed-env-custom-empty",
            "`tapcred_totp_secret_env = MY_SEED`, `MY_SEED` unset, token software",
            || {
                cp(
                    &mfa_a("tapcred_totp_secret_env = MY_SEED\ntapcred_token = software\n"),
                    "a",
                )
            }
        ),
        // --- usage
        s!("export-format-unknown", "`export --format yaml`", || {
            run_in(&Home::design(), &["export", "--format", "yaml"])
        }),
        s!(
            "exec-without-command",
            "`exec --profile mfa` with no command",
            || { run_in(&Home::design(), &["exec", "--profile", "mfa"]) }
        ),
        s!(
            "exec-nested",
            "`exec` inside `exec` (`TAPCRED_PROFILE` set)",
            || {
                let mut h = Home::design();
                h.set("TAPCRED_PROFILE", "outer");
                run_in(&h, &["exec", "--profile", "mfa", "--", "true"])
            }
        ),
        s!(
            "configure-key-in-arguments",
            "`configure --aws-access-key-id AKIA…` (a secret on the command line)",
            || {
                run_in(
                    &Home::empty(),
                    &["configure", "--aws-access-key-id", "AKIAIOSFODNN7EXAMPLE"],
                )
            }
        ),
        s!(
            "completions-disk-full",
            "`completions bash > /dev/full`",
            || {
                let h = Home::empty();
                let mut c = h.cmd_detached(&["completions", "bash"]);
                c.stdout(std::fs::File::create("/dev/full").unwrap());
                let r = Run::from(c.output().expect("run tapcred"));
                Outcome {
                    code: r.code,
                    answer: answer(h.path(), &r),
                    disk: "unchanged".into(),
                }
            }
        ),
        s!("unknown-subcommand", "`tapcred frobnicate`", || {
            run_in(&Home::design(), &["frobnicate"])
        }),
        s!("unknown-flag", "`credential-process --bogus`", || {
            run_in(&Home::design(), &["credential-process", "--bogus"])
        }),
        s!("serve-port-not-a-number", "`serve --port http`", || {
            run_in(&Home::design(), &["serve", "--port", "http", "--", "true"])
        }),
        s!(
            "code-account-and-profile",
            "`code --account X --profile Y`",
            || {
                run_in(
                    &Home::design(),
                    &["code", "--account", "X", "--profile", "mfa"],
                )
            }
        ),
        // --- STS (the strict double)
        s!(
            "sts-wrong-code",
            "a valid seed that is not the MFA device's",
            || {
                let d = double();
                let mut h = design_home(&d);
                h.set("TAPCRED_TOTP_SECRET", "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
                cp(&h, "mfa")
            }
        ),
        s!(
            "sts-unreachable",
            "`AWS_ENDPOINT_URL_STS` is a port nothing listens on",
            || {
                let port = std::net::TcpListener::bind("127.0.0.1:0")
                    .unwrap()
                    .local_addr()
                    .unwrap()
                    .port();
                let mut h = Home::design();
                h.set("AWS_ENDPOINT_URL_STS", &format!("http://127.0.0.1:{port}"))
                    .set("TAPCRED_TOTP_SECRET", design::MFA_SEED_BASE32);
                cp(&h, "session")
            }
        ),
        s!(
            "sts-endpoint-space",
            "`AWS_ENDPOINT_URL_STS=http://127.0.0.1:1/a b` (checked before any code is read)",
            || endpoint("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:1/a b")
        ),
        s!(
            "sts-endpoint-trailing-space",
            "`AWS_ENDPOINT_URL` with a trailing space, as cmd's `set X=url && …` leaves",
            || endpoint("AWS_ENDPOINT_URL", "http://127.0.0.1:1 ")
        ),
        s!(
            "sts-endpoint-control",
            "`AWS_ENDPOINT_URL_STS` with an escape sequence in its path",
            || endpoint("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:1/\u{1b}[2J")
        ),
        s!(
            "sts-endpoint-not-a-url",
            "`AWS_ENDPOINT_URL_STS=not a url`",
            || {
                let mut h = Home::design();
                h.set("AWS_ENDPOINT_URL_STS", "not a url")
                    .set("TAPCRED_TOTP_SECRET", design::MFA_SEED_BASE32);
                cp(&h, "session")
            }
        ),
        s!(
            "sts-throttled",
            "STS answers Throttling to every attempt",
            || {
                let d = double();
                d.throttle_next(100);
                cp(&design_home(&d), "session")
            }
        ),
        s!("sts-invalid-keys", "source keys STS does not know", || {
            let d = double();
            let h = design_home(&d);
            h.write_credentials(
                &common::design_fixture("credentials")
                    .replace("AKIAIOSFODNN7EXAMPLE", "AKIAUNKNOWNKEY000000"),
            );
            cp(&h, "session")
        }),
        // --- issue 11 findings 3, 4, 9, 12 (helper hard)
        s!(
            "sts-endpoint-bad-scheme",
            "`AWS_ENDPOINT_URL_STS=ftp://127.0.0.1:1` (checked before any code is read)",
            || {
                let mut h = Home::design();
                h.set("AWS_ENDPOINT_URL_STS", "ftp://127.0.0.1:1")
                    .set("TAPCRED_TOTP_SECRET", design::MFA_SEED_BASE32);
                cp(&h, "session")
            }
        ),
        s!(
            "sts-endpoint-config-query",
            "`endpoint_url = http://127.0.0.1:1/?x=1` in the config file",
            || {
                let mut h = Home::design();
                let config = std::fs::read_to_string(h.config_path()).unwrap();
                h.write_config(&config.replace(
                    "[profile session]\n",
                    "[profile session]\nendpoint_url = http://127.0.0.1:1/?x=1\n",
                ));
                h.set("TAPCRED_TOTP_SECRET", design::MFA_SEED_BASE32);
                cp(&h, "session")
            }
        ),
        s!(
            "sts-dns-failure",
            "`AWS_ENDPOINT_URL_STS` names a host that does not resolve (no code window used)",
            || {
                let mut h = Home::design();
                h.set("AWS_ENDPOINT_URL_STS", "http://sts.tapcred-test.invalid")
                    .set("TAPCRED_TOTP_SECRET", design::MFA_SEED_BASE32);
                cp(&h, "session")
            }
        ),
        s!(
            "sts-read-timeout-invalid",
            "`TAPCRED_STS_READ_TIMEOUT=soon`",
            || {
                let d = double();
                let mut h = design_home(&d);
                h.set("TAPCRED_STS_READ_TIMEOUT", "soon");
                cp(&h, "session")
            }
        ),
        s!(
            "sts-hang-after-code",
            "STS takes the code and never answers (read timeout 1 s)",
            || {
                let d = double();
                d.inject_fault("GetSessionToken", Fault::Hang(60));
                let mut h = design_home(&d);
                h.set("TAPCRED_STS_READ_TIMEOUT", "1");
                cp(&h, "session")
            }
        ),
        s!(
            "sts-500-after-code-twice",
            "STS takes the code, answers 500; the retry with the next code gets 500 too",
            || {
                let d = double();
                d.inject_fault("GetSessionToken", Fault::ServerError);
                d.inject_fault("GetSessionToken", Fault::ServerError);
                cp(&design_home(&d), "session")
            }
        ),
        s!(
            "sts-answer-not-sts",
            "the endpoint answers 403 with an HTML page",
            || {
                let d = double();
                d.inject_fault(
                    "GetSessionToken",
                    Fault::Replace {
                        status: 403,
                        body: "<html><body>Proxy says no</body></html>".into(),
                    },
                );
                cp(&design_home(&d), "session")
            }
        ),
        s!(
            "sts-error-text-escapes",
            "an STS error message with newlines, C1 escape sequences and 1 MB of text",
            || {
                let d = double();
                let message = format!(
                    "denied\nsecond line \u{9b}31mred\u{9b}0m {}",
                    "A".repeat(1 << 20)
                );
                d.inject_fault(
                    "GetSessionToken",
                    Fault::Replace {
                        status: 403,
                        body: format!(
                            "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>{message}</Message></Error><RequestId>x</RequestId></ErrorResponse>"
                        ),
                    },
                );
                cp(&design_home(&d), "session")
            }
        ),
        s!(
            "sts-credentials-newline",
            "STS credentials with a newline in the secret (`export EVIL=1` on the next line)",
            || {
                let d = double();
                d.inject_fault(
                    "GetSessionToken",
                    Fault::Replace {
                        status: 200,
                        body: gst_answer("ASIAEXAMPLE", "line\nexport EVIL=1"),
                    },
                );
                run_in(&design_home(&d), &["export", "--profile", "session"])
            }
        ),
        s!(
            "export-windows-cmd-unsafe",
            "`export --format windows-cmd` of a secret holding `%PATH%` and `!`",
            || {
                let d = double();
                d.inject_fault(
                    "GetSessionToken",
                    Fault::Replace {
                        status: 200,
                        body: gst_answer("ASIAEXAMPLE", "50%PATH%off!"),
                    },
                );
                let h = design_home(&d);
                let first = Run::from(
                    h.cmd_detached(&["credential-process", "--profile", "session"])
                        .output()
                        .unwrap(),
                );
                assert_eq!(first.code, 0, "{}", first.stderr);
                run_in(
                    &h,
                    &["export", "--profile", "session", "--format", "windows-cmd"],
                )
            }
        ),
        s!(
            "no-token-source",
            "no seed, no YubiKey (no pcscd), no terminal",
            || {
                let h = mfa_a("");
                let mut h = h;
                h.set("PCSCLITE_CSOCK_NAME", "/nonexistent/pcscd.comm")
                    .set("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:9");
                cp(&h, "a")
            }
        ),
        s!("exec-command-missing", "`exec -- no-such-command`", || {
            let d = double();
            run_in(
                &design_home(&d),
                &[
                    "exec",
                    "--profile",
                    "session",
                    "--",
                    "no-such-command-tapcred",
                ],
            )
        }),
        s!(
            "sts-500",
            "STS answers 500 InternalFailure to every request",
            || { sts_fault(StsFault::Status500) }
        ),
        s!(
            "sts-503-html",
            "a load balancer answers 503 with an HTML page",
            || { sts_fault(StsFault::Status503Html) }
        ),
        s!(
            "sts-malformed-xml",
            "STS answers 200 with truncated XML",
            || { sts_fault(StsFault::MalformedXml) }
        ),
        s!(
            "sts-no-credentials",
            "STS answers 200 without a Credentials element",
            || { sts_fault(StsFault::NoCredentials) }
        ),
        s!(
            "sts-html-page",
            "a captive proxy answers 200 with an HTML page",
            || { sts_fault(StsFault::Html) }
        ),
        s!(
            "sts-reset",
            "the connection is reset before any answer",
            || { sts_fault(StsFault::Reset) }
        ),
        s!(
            "sts-truncated-answer",
            "the answer is cut after 100 bytes",
            || { sts_fault(StsFault::Truncate(100)) }
        ),
        s!(
            "sts-answer-lost",
            "STS consumes the code, the answer is lost (reset)",
            || { sts_fault(StsFault::AnswerLost) }
        ),
        s!("sts-slow-2s", "STS answers after 2 s", || {
            sts_fault(StsFault::Slow(std::time::Duration::from_secs(2)))
        }),
        // --- cache
        s!(
            "cache-dir-is-a-file",
            "`XDG_CACHE_HOME/tapcred` is a regular file",
            || {
                let d = double();
                let mut h = design_home(&d);
                let x = h.path().join("xdg");
                std::fs::create_dir_all(&x).unwrap();
                std::fs::write(x.join("tapcred"), b"not a directory").unwrap();
                h.set("XDG_CACHE_HOME", &x.to_string_lossy());
                // The fallback ledger ($TMPDIR/tapcred-<uid>) private to this row: the
                // machine-wide one may hold a window another run just used.
                let tmp = tempfile::tempdir().unwrap();
                h.set("TMPDIR", &tmp.path().to_string_lossy());
                cp(&h, "session")
            }
        ),
        s!(
            "ledger-dir-is-a-file",
            "`$TMPDIR/tapcred-<uid>` (the per-user record of used codes) is a regular file",
            || {
                let d = double();
                let h = design_home(&d);
                let uid = rustix::process::geteuid().as_raw();
                std::fs::write(h.path().join(format!("tmp/tapcred-{uid}")), b"squatted").unwrap();
                cp(&h, "session")
            }
        ),
        s!(
            "cache-entry-corrupt",
            "a cache entry holding `{not json`",
            || {
                let d = double();
                let h = design_home(&d);
                let first = cp(&h, "mfa");
                assert_eq!(first.code, 0, "{}", first.answer);
                corrupt_role_entries(&h, b"{not json");
                cp(&h, "mfa")
            }
        ),
        s!(
            "cache-entry-foreign-mode",
            "a cache entry with mode 0644",
            || {
                let d = double();
                let h = design_home(&d);
                let first = cp(&h, "mfa");
                assert_eq!(first.code, 0, "{}", first.answer);
                for p in role_entries(&h) {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
                }
                cp(&h, "mfa")
            }
        ),
        // --- enroll
        s!(
            "enroll-interrupted",
            "`enroll` again after an enroll of the profile was killed (its journal is left)",
            || {
                enroll_journal(
                    ENROLL_JOURNAL,
                    &["enroll", "--profile", "a", "--to", "file"],
                )
            }
        ),
        s!(
            "enroll-undo-damaged-journal",
            "`enroll --undo` with a journal holding `{not json`",
            || { enroll_journal("{not json", &["enroll", "--profile", "a", "--undo"]) }
        ),
        s!(
            "enroll-iam-endpoint-userinfo",
            "`AWS_ENDPOINT_URL_IAM=http://user:pw@127.0.0.1:1` (checked before any request)",
            || {
                let mut h = home_a(&format!("source_profile = toolkit-user\n{ROLE}"));
                h.set("AWS_ENDPOINT_URL_IAM", "http://user:pw@127.0.0.1:1");
                run_in(&h, &["enroll", "--profile", "a", "--to", "file"])
            }
        ),
        // --- piv (refused before any YubiKey is looked for)
        s!(
            "piv-management-key-malformed",
            "`piv init` with `TAPCRED_PIV_MANAGEMENT_KEY=0102` (not 48 hex digits)",
            || {
                let mut h = Home::empty();
                h.set("TAPCRED_PIV_MANAGEMENT_KEY", "0102");
                run_in(&h, &["piv", "init", "--csr", "req.pem"])
            }
        ),
        s!(
            "piv-csr-folder-missing",
            "`piv init --csr` into a folder that does not exist",
            || {
                let h = Home::empty();
                let csr = h.path().join("nowhere/req.pem");
                run_in(&h, &["piv", "init", "--csr", &csr.display().to_string()])
            }
        ),
        s!(
            "piv-import-not-a-certificate",
            "`piv import --cert` a file that is not a certificate",
            || {
                let h = Home::empty();
                let cert = h.path().join("cert.pem");
                std::fs::write(&cert, "hello\n").unwrap();
                run_in(
                    &h,
                    &["piv", "import", "--cert", &cert.display().to_string()],
                )
            }
        ),
        // --- rotate
        s!(
            "rotate-interrupted",
            "`rotate` again after a rotate of the profile's keys was killed (its journal is left)",
            rotate_journal
        ),
        s!(
            "rotate-no-mfa-serial",
            "`rotate --profile toolkit-user`, a profile of keys with no mfa_serial in its chain",
            || run_in(&mfa_a(""), &["rotate", "--profile", "toolkit-user"])
        ),
        s!(
            "rotate-proof-seconds-bad",
            "`TAPCRED_ROTATE_PROOF_SECONDS=soon`",
            || {
                let mut h = mfa_a("");
                h.set("TAPCRED_ROTATE_PROOF_SECONDS", "soon");
                run_in(&h, &["rotate", "--profile", "a"])
            }
        ),
    ]
}

/// The session cache entries (`*.json` directly in the cache directory).
fn entries(h: &Home) -> Vec<PathBuf> {
    std::fs::read_dir(h.cache_dir())
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect()
        })
        .unwrap_or_default()
}

/// The cached AssumeRole results (the MFA session stays, so no new code is needed).
fn role_entries(h: &Home) -> Vec<PathBuf> {
    entries(h)
        .into_iter()
        .filter(|p| std::fs::read_to_string(p).is_ok_and(|t| t.contains("\"kind\":\"AssumeRole\"")))
        .collect()
}

fn corrupt_role_entries(h: &Home, with: &[u8]) {
    let es = role_entries(h);
    assert!(!es.is_empty(), "no cache entry to corrupt");
    for p in es {
        std::fs::write(&p, with).unwrap();
    }
}

// ----- the table -------------------------------------------------------------------------

const DOC: &str = "docs/bad-inputs.md";
const BEGIN: &str = "<!-- table:begin (generated by tests/bad_inputs.rs; do not edit by hand) -->";
const END: &str = "<!-- table:end -->";

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn row(s: &Scenario, o: &Outcome) -> String {
    format!(
        "| `{}` | {} | {} | {} | {} |",
        s.id,
        cell(s.input),
        cell(&o.answer),
        o.code,
        cell(&o.disk)
    )
}

fn table(rows: &[String]) -> String {
    let mut t = String::from(
        "| id | input or fault | answer (stderr, HOME shown as `~`) | exit | left on disk |\n|---|---|---|---|---|\n",
    );
    for r in rows {
        t.push_str(r);
        t.push('\n');
    }
    t
}

#[test]
fn bad_input_table_matches_the_binary() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(DOC);
    let doc = std::fs::read_to_string(&path).unwrap_or_default();
    let scenarios = scenarios();
    let mut ids = BTreeSet::new();
    for s in &scenarios {
        assert!(ids.insert(s.id), "duplicate scenario id {}", s.id);
    }
    // Parallel runs (8 threads: most scenarios wait on retries or sleeps): the scenarios are
    // independent (own HOME, own STS double).
    let outcomes: Vec<Outcome> = std::thread::scope(|sc| {
        let chunks: Vec<_> = scenarios
            .chunks(scenarios.len().div_ceil(8))
            .map(|chunk| sc.spawn(move || chunk.iter().map(|s| (s.run)()).collect::<Vec<_>>()))
            .collect();
        chunks
            .into_iter()
            .flat_map(|h| h.join().expect("a scenario panicked"))
            .collect()
    });
    let rows: Vec<String> = scenarios
        .iter()
        .zip(&outcomes)
        .map(|(s, o)| row(s, o))
        .collect();
    let want = table(&rows);
    if std::env::var("TAPCRED_BAD_INPUTS").as_deref() == Ok("write") {
        let (head, tail) = match (doc.find(BEGIN), doc.find(END)) {
            (Some(b), Some(e)) => (doc[..b].to_owned(), doc[e + END.len()..].to_owned()),
            _ => (String::new(), String::new()),
        };
        std::fs::write(&path, format!("{head}{BEGIN}\n{want}{END}{tail}")).unwrap();
        tapcred_testkit::ci::notice(&format!("wrote {} rows to {DOC}", rows.len()));
        return;
    }
    let have = match (doc.find(BEGIN), doc.find(END)) {
        (Some(b), Some(e)) => doc[b + BEGIN.len()..e].trim_start_matches('\n').to_owned(),
        _ => panic!("{DOC} has no generated table (markers {BEGIN:?} … {END:?})"),
    };
    let have_rows: Vec<&str> = have.lines().skip(2).collect();
    let mut problems = Vec::new();
    for r in &rows {
        if !have_rows.contains(&r.as_str()) {
            let id = r.split('`').nth(1).unwrap_or("");
            let old = have_rows
                .iter()
                .find(|h| h.split('`').nth(1) == Some(id))
                .copied()
                .unwrap_or("(no row)");
            problems.push(format!("row {id}:\n  table: {old}\n  now:   {r}"));
        }
    }
    for h in &have_rows {
        let id = h.split('`').nth(1).unwrap_or("");
        if !ids.contains(id) {
            problems.push(format!("row {id} has no scenario in tests/bad_inputs.rs"));
        }
    }
    assert!(
        problems.is_empty() && have == want,
        "{DOC} differs from what the binary does ({} problems; regenerate with TAPCRED_BAD_INPUTS=write cargo test --test bad_inputs and review):\n{}",
        problems.len(),
        problems.join("\n")
    );
    assert!(
        rows.len() >= 60,
        "the table should list at least 60 bad inputs, has {}",
        rows.len()
    );
}
