//! What the `enroll` tests share: a new IAM user with long-term keys and no MFA device (the
//! role requires MFA), and a HOME whose profiles point at it.

use std::path::PathBuf;

use tapcred_testkit::sts_double::{RoleSpec, StsDouble, UserSpec, design};

use super::Home;

/// The source profile `configure` writes: toolkit-user's long-term keys.
pub const TOOLKIT_CREDENTIALS: &str = "[toolkit-user]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n";

/// A new IAM user with only long-term keys and no MFA device; the role requires MFA.
pub fn new_user_double() -> StsDouble {
    StsDouble::builder()
        .user(UserSpec::new(
            design::USER_NAME,
            design::ACCOUNT,
            design::ACCESS_KEY_ID,
            design::SECRET_ACCESS_KEY,
        ))
        .role(RoleSpec::new(design::ROLE_ARN).require_mfa(true))
        .start()
        .unwrap()
}

/// HOME with `config` and toolkit-user's keys, IAM and STS at the double.
pub fn home(d: &StsDouble, config: &str) -> Home {
    let mut h = Home::empty();
    h.write_config(config);
    h.write_credentials(TOOLKIT_CREDENTIALS);
    h.set("AWS_ENDPOINT_URL", &d.endpoint());
    h
}

/// The files under ~/.aws, except the editor's lock file (which stays by design).
pub fn aws_files(h: &Home) -> Vec<(PathBuf, Vec<u8>)> {
    h.snapshot()
        .into_iter()
        .filter(|(p, _)| p.starts_with(h.path().join(".aws")))
        .filter(|(p, _)| !p.to_string_lossy().ends_with(".tapcred.lock"))
        .collect()
}
