//! What `exec` and `serve` hand to their child: the credentials (or the endpoint), never
//! tapcred's own secrets. The real binary runs `sh`, which prints its environment and its
//! child's (`sh -c env`): no `TAPCRED_*` secret, no profile's `tapcred_totp_secret_env`
//! variable (the selected profile's, one up its chain, or any other profile's), and no seed
//! or password value may appear in either.

mod common;

use common::Home;
use tapcred_testkit::sts_double::{StsDouble, design};

const OATH_PASSWORD: &str = "applet-password-not-for-children";
const FIDO_PIN: &str = "fido-pin-4711-not-for-children";
const OTHER_SEED: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";

/// The design profiles plus a chain whose MFA step reads its seed from `TEAM_MFA_SEED`, and an
/// unrelated profile naming `OTHER_TEAM_SEED`.
fn setup() -> (StsDouble, Home) {
    let d = StsDouble::start_design().expect("start the STS double");
    let h = Home::design();
    let mut config = common::design_fixture("config");
    config.push_str(
        "
[profile team-mfa]
source_profile = toolkit-user
role_arn = arn:aws:iam::111111111111:role/toolkit-role
mfa_serial = arn:aws:iam::111111111111:mfa/toolkit-user
tapcred_totp_secret_env = TEAM_MFA_SEED

[profile team-chain]
source_profile = team-mfa
role_arn = arn:aws:iam::111111111111:role/chained-role
region = eu-west-1

[profile other-team]
source_profile = toolkit-user
role_arn = arn:aws:iam::111111111111:role/toolkit-role-b
mfa_serial = arn:aws:iam::111111111111:mfa/toolkit-user
tapcred_totp_secret_env = OTHER_TEAM_SEED
",
    );
    h.write_config(&config);
    let mut h = h;
    h.set("AWS_ENDPOINT_URL_STS", &d.endpoint())
        .set("TEAM_MFA_SEED", design::MFA_SEED_BASE32)
        .set("TAPCRED_TOTP_SECRET", design::MFA_SEED_BASE32)
        .set("OTHER_TEAM_SEED", OTHER_SEED)
        .set("TAPCRED_OATH_PASSWORD", OATH_PASSWORD)
        .set("TAPCRED_FIDO_PIN", FIDO_PIN)
        .set("UNRELATED_SETTING", "kept");
    (d, h)
}

/// The child prints its environment, a marker, and its own child's environment.
const PRINT_ENVS: &str = "env; echo '--- grandchild ---'; sh -c env";

fn check(stdout: &str, expect_key: &str) {
    let (child, grandchild) = stdout
        .split_once("--- grandchild ---")
        .unwrap_or_else(|| panic!("the child did not print both environments: {stdout}"));
    for (who, env) in [("child", child), ("grandchild", grandchild)] {
        let names: Vec<&str> = env
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, _)| k))
            .collect();
        // The command did run with what it exists to hand over.
        assert!(names.contains(&expect_key), "{who}: no {expect_key}: {env}");
        assert!(names.contains(&"UNRELATED_SETTING"), "{who}: {env}");
        for secret in [
            "TAPCRED_TOTP_SECRET",
            "TEAM_MFA_SEED",
            "OTHER_TEAM_SEED",
            "TAPCRED_OATH_PASSWORD",
            "TAPCRED_FIDO_PIN",
        ] {
            assert!(
                !names.contains(&secret),
                "{who} was handed {secret}; its variables: {names:?}"
            );
        }
        for value in [design::MFA_SEED_BASE32, OTHER_SEED, OATH_PASSWORD, FIDO_PIN] {
            assert!(!env.contains(value), "{who} was handed a secret value");
        }
    }
}

/// `tapcred VERB --profile team-chain -- sh -c PRINT_ENVS`: the child and grandchild see
/// `credential_var` (the credentials reached them) and no secret; the seed was used, from
/// the chain's own variable.
fn child_and_grandchild_get_no_secret(verb: &str, credential_var: &str) {
    let (d, h) = setup();
    let out = h.run(&[
        verb,
        "--profile",
        "team-chain",
        "--",
        "sh",
        "-c",
        PRINT_ENVS,
    ]);
    assert_eq!(out.code, 0, "{verb}: {}", out.stderr);
    check(&out.stdout, credential_var);
    assert_eq!(d.token_code_events().len(), 1);
}

#[test]
fn exec_child_and_grandchild_get_no_tapcred_secret() {
    child_and_grandchild_get_no_secret("exec", "AWS_SESSION_TOKEN");
}

#[test]
fn serve_child_and_grandchild_get_no_tapcred_secret() {
    child_and_grandchild_get_no_secret("serve", "AWS_CONTAINER_AUTHORIZATION_TOKEN");
}
