//! What the `rotate` tests share: the design user (MFA device, long-term key) in a double
//! whose access-key actions need an MFA session, and a HOME whose profiles point at it.

use std::path::PathBuf;

use tapcred_testkit::sts_double::{AccessKeyInfo, Config, StsDouble, design};

use super::{Home, Run};

pub const CONFIG: &str = "# my settings\n[profile toolkit-user]\nmfa_serial = arn:aws:iam::111111111111:mfa/toolkit-user\n\n[profile mfa]\nsource_profile = toolkit-user\nrole_arn = arn:aws:iam::111111111111:role/toolkit-role\nmfa_serial = arn:aws:iam::111111111111:mfa/toolkit-user\n";

/// Comments, another profile and a key after the secret: kept byte for byte.
pub const CREDENTIALS: &str = "# my keys\n[other]\naws_access_key_id = AKIAOTHEROTHEROTHER1\naws_secret_access_key = other-secret\n\n[toolkit-user]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\nregion = us-east-1 ; keep\n";

pub fn double() -> StsDouble {
    let d = StsDouble::start(Config::design()).unwrap();
    d.require_mfa_for_access_keys(true);
    d
}

/// HOME with [`CONFIG`] and [`CREDENTIALS`], STS and IAM at the double, the design seed as
/// the software token.
pub fn home(d: &StsDouble) -> Home {
    let mut h = Home::empty();
    h.write_config(CONFIG);
    h.write_credentials(CREDENTIALS);
    h.set("AWS_ENDPOINT_URL", &d.endpoint())
        .set("TAPCRED_TOTP_SECRET", design::MFA_SEED_BASE32);
    h
}

pub fn rotate(h: &Home, extra: &[&str]) -> Run {
    let mut args = vec!["rotate", "--profile", "mfa"];
    args.extend_from_slice(extra);
    Run::from(h.cmd_detached(&args).output().expect("run tapcred"))
}

pub fn keys(d: &StsDouble) -> Vec<AccessKeyInfo> {
    d.iam_state().access_keys[design::USER_NAME].clone()
}

pub fn extra_key(d: &StsDouble, active: bool) -> String {
    d.add_access_key(design::USER_NAME, active)
}

pub fn journal_path(h: &Home) -> PathBuf {
    h.path()
        .join(".local/share/tapcred/journal/rotate-toolkit-user.json")
}

/// The secret of `[toolkit-user]` in the credentials file now.
pub fn stored_secret(h: &Home) -> String {
    let text = std::fs::read_to_string(h.credentials_path()).unwrap();
    text.lines()
        .skip_while(|l| *l != "[toolkit-user]")
        .find_map(|l| l.strip_prefix("aws_secret_access_key = "))
        .expect("a secret in [toolkit-user]")
        .trim()
        .to_owned()
}

/// Every TOTP window the double saw for the serial was sent once.
pub fn each_window_once(d: &StsDouble) {
    let events = d.token_code_events();
    let mut steps: Vec<u64> = events.iter().filter_map(|e| e.matched_step).collect();
    let n = steps.len();
    steps.sort_unstable();
    steps.dedup();
    assert_eq!(steps.len(), n, "a window sent twice: {events:?}");
    assert!(n >= 1, "at least one code: {events:?}");
}

/// The files under ~/.aws, except the editor's lock file.
pub fn aws_files(h: &Home) -> Vec<(PathBuf, Vec<u8>)> {
    aws_files_of(&h.snapshot(), h)
}

pub fn aws_files_of(snapshot: &[(PathBuf, Vec<u8>)], h: &Home) -> Vec<(PathBuf, Vec<u8>)> {
    snapshot
        .iter()
        .filter(|(p, _)| p.starts_with(h.path().join(".aws")))
        .filter(|(p, _)| !p.to_string_lossy().ends_with(".tapcred.lock"))
        .cloned()
        .collect()
}

/// Exit `code`, nothing on stdout, and the one `tapcred: error:` line (after the progress
/// lines) names every needle.
pub fn fails(out: &Run, code: i32, needles: &[&str]) {
    assert_eq!(out.code, code, "{}", out.stderr);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    let errors: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("tapcred: error: "))
        .collect();
    assert_eq!(errors.len(), 1, "{}", out.stderr);
    for n in needles {
        assert!(
            errors[0].contains(n),
            "{:?} should mention {n:?}",
            errors[0]
        );
    }
}
