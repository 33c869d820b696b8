//! The profile layer against real files: the fixtures in `fixtures/aws/` and small files
//! written to a temporary directory for each bad input.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use secrecy::ExposeSecret;
use tapcred::ErrorKind;
use tapcred::profile::{AwsFiles, Profiles, ResolvedProfile, RoleStep, Step, selected_name};
use tapcred::token::{DEFAULT_SECRET_ENV, TokenKind};

/// A secret value every bad-input test carries; no message may contain it.
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETVALUE";

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn fixture(dir: &str) -> AwsFiles {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/aws")
        .join(dir);
    AwsFiles {
        config: root.join("config"),
        credentials: root.join("credentials"),
    }
}

fn load_fixture(dir: &str) -> Profiles {
    Profiles::load(&fixture(dir)).expect("fixture loads")
}

fn resolve(p: &Profiles, name: &str) -> ResolvedProfile {
    p.resolve(name, &env(&[("HOME", "/home/tester")]))
        .unwrap_or_else(|e| panic!("resolving {name}: {e}"))
}

fn role(step: &Step) -> &RoleStep {
    match step {
        Step::AssumeRole(r) => r,
        other => panic!("expected AssumeRole, got {other:?}"),
    }
}

/// Config and credentials written to a temp dir (None = the file does not exist).
struct Tmp {
    _dir: tempfile::TempDir,
    files: AwsFiles,
}

fn write(config: Option<&str>, credentials: Option<&str>) -> Tmp {
    let dir = tempfile::tempdir().unwrap();
    let files = AwsFiles {
        config: dir.path().join("config"),
        credentials: dir.path().join("credentials"),
    };
    if let Some(c) = config {
        std::fs::write(&files.config, c).unwrap();
    }
    if let Some(c) = credentials {
        std::fs::write(&files.credentials, c).unwrap();
    }
    Tmp { _dir: dir, files }
}

fn keys(name: &str) -> String {
    format!(
        "[{name}]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = {SECRET}\n"
    )
}

/// Resolve `profile` from these files, expecting a Config error; check the message is one
/// line, carries no secret and names every `needles` item; return it.
fn bad(config: &str, credentials: &str, profile: &str, needles: &[&str]) -> String {
    bad_env(config, credentials, profile, &[], needles)
}

fn bad_env(
    config: &str,
    credentials: &str,
    profile: &str,
    vars: &[(&str, &str)],
    needles: &[&str],
) -> String {
    let t = write(Some(config), Some(credentials));
    let err = Profiles::load(&t.files)
        .and_then(|p| p.resolve(profile, &env(vars)))
        .map(|r| r.name)
        .expect_err("this input must be refused");
    assert_eq!(err.kind, ErrorKind::Config, "{err:?}");
    assert_eq!(err.exit_code(), 3);
    let msg = err.message().to_owned();
    eprintln!("{profile}: {msg}");
    assert!(!msg.contains('\n'), "one line: {msg}");
    assert!(!msg.contains(SECRET), "secret leaked: {msg}");
    assert!(!msg.contains("SECRETVALUE"), "secret leaked: {msg}");
    for n in needles {
        let n = n.replace("{config}", &t.files.config.display().to_string());
        let n = n.replace("{credentials}", &t.files.credentials.display().to_string());
        assert!(msg.contains(&n), "message lacks {n:?}: {msg}");
    }
    msg
}

// ---------------------------------------------------------------- positive cases

#[test]
fn design_mfa_profile_resolves_to_one_mfa_assume_role() {
    let p = load_fixture("design");
    let r = resolve(&p, "mfa");
    assert_eq!(r.name, "mfa");
    assert_eq!(r.base.origin, "toolkit-user");
    assert_eq!(r.base.access_key_id, "AKIAIOSFODNN7EXAMPLE");
    assert_eq!(
        r.base.secret_access_key.expose_secret(),
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    );
    assert!(r.base.session_token.is_none());
    assert_eq!(r.steps.len(), 1);
    let s = role(&r.steps[0]);
    assert_eq!(s.profile, "mfa");
    assert_eq!(s.role_arn, "arn:aws:iam::111111111111:role/toolkit-role");
    let mfa = s.mfa.as_ref().expect("mfa on the role step");
    assert_eq!(mfa.serial, "arn:aws:iam::111111111111:mfa/toolkit-user");
    assert_eq!(mfa.token.profile, "mfa");
    assert_eq!(mfa.token.kind, TokenKind::Auto);
    assert_eq!(mfa.token.totp_secret_env, DEFAULT_SECRET_ENV);
    assert_eq!(s.external_id, None);
    assert_eq!(s.role_session_name, None);
    assert_eq!(s.duration_seconds, None);
    assert_eq!(r.region, None);
    assert_eq!(r.endpoint_url, None);
    assert!(!r.ignore_configured_endpoint_urls);
    assert_eq!(r.token.profile, "mfa");
    // The Debug output of the base never shows the secret.
    assert!(!format!("{:?}", r.base).contains("EXAMPLEKEY"));
}

#[test]
fn design_toolkit_user_is_plain_static_keys() {
    let p = load_fixture("design");
    let r = resolve(&p, "toolkit-user");
    assert_eq!(r.base.origin, "toolkit-user");
    assert!(r.steps.is_empty());
    assert_eq!(
        p.names(),
        vec![
            "external",
            "long",
            "mfa",
            "mfa-b",
            "role-chain",
            "session",
            "toolkit-user"
        ]
    );
}

#[test]
fn design_snippet_in_the_credentials_file_alone() {
    // the design snippet verbatim in ~/.aws/credentials, no config file at all.
    let files = fixture("design-single");
    assert!(!files.config.exists());
    let p = Profiles::load(&files).unwrap();
    assert_eq!(p.existing(), (false, true));
    let r = resolve(&p, "mfa");
    assert_eq!(r.base.origin, "toolkit-user");
    assert_eq!(r.steps.len(), 1);
    assert_eq!(
        role(&r.steps[0]).mfa.as_ref().unwrap().serial,
        "arn:aws:iam::111111111111:mfa/toolkit-user"
    );
}

#[test]
fn role_to_role_chain_in_order_from_the_base() {
    let p = load_fixture("design");
    let r = resolve(&p, "role-chain");
    assert_eq!(r.base.origin, "toolkit-user");
    assert_eq!(r.region.as_deref(), Some("eu-west-1"));
    assert_eq!(r.steps.len(), 2);
    let first = role(&r.steps[0]);
    let second = role(&r.steps[1]);
    assert_eq!(first.profile, "mfa");
    assert_eq!(
        first.role_arn,
        "arn:aws:iam::111111111111:role/toolkit-role"
    );
    assert!(
        first.mfa.is_some(),
        "mfa_serial belongs to the mfa profile's step"
    );
    assert_eq!(second.profile, "role-chain");
    assert_eq!(
        second.role_arn,
        "arn:aws:iam::111111111111:role/chained-role"
    );
    assert!(
        second.mfa.is_none(),
        "role-chain has no mfa_serial of its own"
    );
}

#[test]
fn session_profile_is_get_session_token_with_merged_keys() {
    let p = load_fixture("design");
    let r = resolve(&p, "session");
    assert_eq!(r.base.origin, "session");
    assert_eq!(r.base.access_key_id, "AKIAIOSFODNN7EXAMPLE");
    assert_eq!(r.region.as_deref(), Some("us-east-1"));
    match r.steps.as_slice() {
        [
            Step::SessionToken {
                profile,
                mfa,
                duration_seconds,
            },
        ] => {
            assert_eq!(profile, "session");
            assert_eq!(mfa.serial, "arn:aws:iam::111111111111:mfa/toolkit-user");
            assert_eq!(mfa.token.profile, "session");
            assert_eq!(*duration_seconds, None);
        }
        other => panic!("expected one SessionToken step, got {other:?}"),
    }
}

#[test]
fn external_id_session_name_duration() {
    let p = load_fixture("design");
    let r = resolve(&p, "external");
    let s = role(&r.steps[0]);
    assert_eq!(s.role_arn, "arn:aws:iam::111111111111:role/external-role");
    assert_eq!(s.external_id.as_deref(), Some("tapcred-external"));
    assert_eq!(s.role_session_name.as_deref(), Some("tapcred-demo"));
    assert_eq!(s.duration_seconds, Some(3600));
    assert_eq!(r.base.origin, "toolkit-user");
}

#[test]
fn default_in_both_files_is_one_profile() {
    let p = load_fixture("full");
    let r = resolve(&p, "default");
    assert_eq!(
        r.region.as_deref(),
        Some("us-west-2"),
        "region from config [default]"
    );
    assert_eq!(r.base.origin, "default");
    assert_eq!(r.base.access_key_id, "AKIADEFAULTEXAMPLE01");
    assert!(r.steps.is_empty());
}

#[test]
fn profile_x_in_config_and_x_in_credentials_merge_credentials_winning() {
    let p = load_fixture("full");
    let r = resolve(&p, "merged");
    // region is in both files: the credentials file wins, as in the AWS CLI.
    assert_eq!(r.region.as_deref(), Some("us-east-2"));
    assert_eq!(r.base.access_key_id, "AKIAMERGEDEXAMPLE001");
    assert!(
        matches!(r.steps.as_slice(), [Step::SessionToken { mfa, .. }] if mfa.serial == "arn:aws:iam::111111111111:mfa/merged")
    );
}

#[test]
fn comments_nested_sections_tapcred_keys_and_services_endpoint() {
    let p = load_fixture("full");
    assert_eq!(
        p.get("dev", "s3"),
        Some("max_concurrent_requests = 10\naddressing_style = path")
    );
    assert_eq!(
        p.get("DEV", "region"),
        None,
        "profile names are case-sensitive"
    );
    assert_eq!(p.get("dev", "REGION"), Some("eu-central-1"), "keys are not");
    let r = resolve(&p, "dev");
    assert_eq!(r.region.as_deref(), Some("eu-central-1"));
    // [services local-sts] sts = endpoint_url beats base's own endpoint_url; s3's is unused.
    assert_eq!(r.endpoint_url.as_deref(), Some("http://127.0.0.1:4566"));
    assert!(!r.ignore_configured_endpoint_urls);
    assert_eq!(r.base.origin, "base");
    let s = role(&r.steps[0]);
    let mfa = s.mfa.as_ref().unwrap();
    assert_eq!(mfa.serial, "arn:aws:iam::111111111111:mfa/alice");
    assert_eq!(mfa.token.kind, TokenKind::Oath);
    assert_eq!(
        mfa.token.oath_account.as_deref(),
        Some("Amazon Web Services:alice@111111111111")
    );
    assert_eq!(mfa.token.yubikey_serial, Some(12345678));
    assert_eq!(r.token, mfa.token);
    // The base profile's region/endpoint do not leak into the selected profile.
    let b = resolve(&p, "base");
    assert_eq!(b.endpoint_url.as_deref(), Some("https://sts.base.example"));
}

#[test]
fn ignore_configured_endpoint_urls_drops_every_configured_endpoint() {
    let p = load_fixture("full");
    let r = resolve(&p, "ignoring");
    assert!(r.ignore_configured_endpoint_urls);
    assert_eq!(r.endpoint_url, None);
    let r = resolve(&p, "plain-endpoint");
    assert_eq!(r.endpoint_url.as_deref(), Some("http://127.0.0.1:5000"));
    assert!(!r.ignore_configured_endpoint_urls);
}

#[test]
fn credential_source_environment_and_tilde_in_secret_file() {
    let p = load_fixture("full");
    let vars = env(&[
        ("HOME", "/home/ci"),
        ("AWS_ACCESS_KEY_ID", "AKIAENVEXAMPLE000001"),
        ("AWS_SECRET_ACCESS_KEY", "env-secret"),
        ("AWS_SESSION_TOKEN", "env-token"),
    ]);
    let r = p.resolve("from-env", &vars).unwrap();
    assert_eq!(r.base.origin, "env");
    assert_eq!(r.base.access_key_id, "AKIAENVEXAMPLE000001");
    assert_eq!(r.base.secret_access_key.expose_secret(), "env-secret");
    assert_eq!(
        r.base
            .session_token
            .as_ref()
            .map(|t| t.expose_secret().to_owned()),
        Some("env-token".to_owned())
    );
    let s = role(&r.steps[0]);
    assert_eq!(s.role_arn, "arn:aws:iam::666666666666:role/ci");
    let t = &s.mfa.as_ref().unwrap().token;
    assert_eq!(t.kind, TokenKind::Software);
    assert_eq!(t.totp_secret_env, "CI_TOTP_SEED");
    assert_eq!(
        t.totp_secret_file.as_deref(),
        Some(Path::new("/home/ci/.config/tapcred/ci.seed"))
    );
}

#[test]
fn credential_source_environment_without_the_variables() {
    let p = load_fixture("full");
    let err = p
        .resolve(
            "from-env",
            &env(&[
                ("HOME", "/h"),
                ("AWS_ACCESS_KEY_ID", "AKIAENVEXAMPLE000001"),
            ]),
        )
        .map(|r| r.name)
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Config);
    let msg = err.message();
    assert!(msg.contains("\"from-env\""), "{msg}");
    assert!(msg.contains("AWS_SECRET_ACCESS_KEY is not set"), "{msg}");
    assert!(!msg.contains("AWS_ACCESS_KEY_ID is"), "{msg}");
    assert!(
        msg.contains("export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
        "{msg}"
    );
}

#[test]
fn self_source_profile_with_keys() {
    let p = load_fixture("full");
    let r = resolve(&p, "self-source");
    assert_eq!(r.base.origin, "self-source");
    assert_eq!(
        r.base
            .session_token
            .as_ref()
            .map(|t| t.expose_secret().to_owned()),
        Some("self-session-token-EXAMPLE".to_owned())
    );
    assert_eq!(r.steps.len(), 1);
    assert_eq!(
        role(&r.steps[0]).role_arn,
        "arn:aws:iam::777777777777:role/self"
    );
}

#[test]
fn source_profile_keys_win_over_its_role_arn() {
    let p = load_fixture("full");
    // Selected: both-ways's own role_arn counts (assumed with base's keys).
    let r = resolve(&p, "both-ways");
    assert_eq!(r.base.origin, "base");
    assert_eq!(
        role(&r.steps[0]).role_arn,
        "arn:aws:iam::999999999999:role/only-when-selected"
    );
    // As a source profile: its static keys are the base, its role_arn is not assumed.
    let r = resolve(&p, "keys-win");
    assert_eq!(r.base.origin, "both-ways");
    assert_eq!(r.base.access_key_id, "AKIABOTHWAYSEXAMPLE1");
    assert_eq!(r.steps.len(), 1);
    assert_eq!(
        role(&r.steps[0]).role_arn,
        "arn:aws:iam::888888888888:role/top"
    );
}

#[test]
fn vault_settings_and_long_session_token_duration() {
    let p = load_fixture("full");
    let r = resolve(&p, "vault-seed");
    assert_eq!(r.token.kind, TokenKind::Vault);
    match r.steps.as_slice() {
        [
            Step::SessionToken {
                duration_seconds, ..
            },
        ] => assert_eq!(*duration_seconds, Some(129_600)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn file_locations_from_the_environment() {
    let vars = env(&[
        ("HOME", "/home/u"),
        ("AWS_CONFIG_FILE", "/etc/aws/cfg"),
        ("AWS_SHARED_CREDENTIALS_FILE", "~/secrets/creds"),
    ]);
    assert_eq!(
        AwsFiles::from_env(&vars),
        AwsFiles {
            config: PathBuf::from("/etc/aws/cfg"),
            credentials: PathBuf::from("/home/u/secrets/creds"),
        }
    );
    assert_eq!(
        AwsFiles::from_env(&env(&[("HOME", "/home/u"), ("AWS_CONFIG_FILE", "")])),
        AwsFiles {
            config: PathBuf::from("/home/u/.aws/config"),
            credentials: PathBuf::from("/home/u/.aws/credentials"),
        }
    );
    // No HOME: the literal ~ stays (and will not be found), as in the AWS SDKs.
    assert_eq!(
        AwsFiles::from_env(&env(&[])).config,
        PathBuf::from("~/.aws/config")
    );
}

#[test]
fn aws_config_file_and_shared_credentials_file_are_the_files_read() {
    let t = write(
        Some(
            "[profile elsewhere]\nsource_profile = src\nrole_arn = arn:aws:iam::123456789012:role/r\n",
        ),
        Some(&keys("src")),
    );
    let vars = env(&[
        ("HOME", "/nonexistent-home"),
        ("AWS_CONFIG_FILE", t.files.config.to_str().unwrap()),
        (
            "AWS_SHARED_CREDENTIALS_FILE",
            t.files.credentials.to_str().unwrap(),
        ),
    ]);
    let files = AwsFiles::from_env(&vars);
    assert_eq!(files, t.files);
    let p = Profiles::load(&files).unwrap();
    let r = p.resolve("elsewhere", &vars).unwrap();
    assert_eq!(r.base.origin, "src");
    assert_eq!(
        role(&r.steps[0]).role_arn,
        "arn:aws:iam::123456789012:role/r"
    );
}

#[test]
fn selected_profile_precedence() {
    let both = env(&[("AWS_PROFILE", "a"), ("AWS_DEFAULT_PROFILE", "b")]);
    assert_eq!(selected_name(Some("cli"), &both), "cli");
    assert_eq!(selected_name(None, &both), "a");
    assert_eq!(
        selected_name(None, &env(&[("AWS_DEFAULT_PROFILE", "b")])),
        "b"
    );
    assert_eq!(selected_name(None, &env(&[("AWS_PROFILE", "")])), "default");
}

#[test]
fn one_missing_file_is_empty() {
    let t = write(None, Some(&keys("only")));
    let p = Profiles::load(&t.files).unwrap();
    assert_eq!(p.names(), vec!["only"]);
    let t = write(Some("[profile c]\nregion = x\n"), None);
    let p = Profiles::load(&t.files).unwrap();
    assert_eq!(p.names(), vec!["c"]);
}

// ---------------------------------------------------------------- bad inputs

#[test]
fn neither_file_exists() {
    let t = write(None, None);
    let err = Profiles::load(&t.files).map(|_| ()).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Config);
    let msg = err.message();
    assert!(msg.contains(&t.files.config.display().to_string()), "{msg}");
    assert!(
        msg.contains(&t.files.credentials.display().to_string()),
        "{msg}"
    );
    assert!(msg.contains("aws configure"), "{msg}");
    assert!(msg.contains("AWS_CONFIG_FILE"), "{msg}");
}

#[test]
fn unparsable_file_names_file_and_line() {
    let t = write(Some("region = x\n[profile a]\n"), None);
    let err = Profiles::load(&t.files).map(|_| ()).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Config);
    let msg = err.message();
    assert!(!msg.contains('\n'), "{msg}");
    assert!(msg.contains(&t.files.config.display().to_string()), "{msg}");
    assert!(msg.contains("line 1"), "{msg}");
}

#[test]
fn profile_not_found_suggests_close_names_and_lists_files() {
    let msg = bad(
        "[profile mfa]\nsource_profile = toolkit-user\nrole_arn = arn:aws:iam::111111111111:role/r\n",
        &keys("toolkit-user"),
        "mfx",
        &[
            "profile \"mfx\" not found",
            "read {config}",
            "read {credentials}",
            "did you mean \"mfa\"? pick a profile",
            "--profile",
        ],
    );
    assert!(!msg.contains("toolkit-user"), "only close names: {msg}");
    // Nothing close: the names are listed instead.
    bad(
        "[profile mfa]\nregion = x\n",
        &keys("toolkit-user"),
        "production",
        &["profiles there: mfa, toolkit-user"],
    );
}

#[test]
fn profile_not_found_points_at_the_wrong_header_style() {
    bad(
        "[work]\nregion = x\n",
        &keys("other"),
        "work",
        &["{config} has [work], but the config file needs [profile work]"],
    );
    bad(
        "",
        &format!("[profile work]\naws_access_key_id = A\naws_secret_access_key = {SECRET}\n"),
        "work",
        &["{credentials} has [profile work], but the credentials file needs [work]"],
    );
    // The fix follows what was found, not words in the message: a name that itself says
    // " needs [" is not a header slip.
    bad(
        "[profile mfa]\nregion = x\n",
        &keys("other"),
        "w needs [x",
        &["pick a profile with --profile"],
    );
}

#[test]
fn source_profile_cycle() {
    bad(
        "[profile a]\nsource_profile = b\nrole_arn = arn:aws:iam::111111111111:role/a\n\
         [profile b]\nsource_profile = a\nrole_arn = arn:aws:iam::111111111111:role/b\n",
        &keys("unrelated"),
        "a",
        &[
            "{config}",
            "profile \"b\"",
            "source_profile",
            "a → b → a",
            "change one of",
        ],
    );
    // A profile naming itself without keys is a cycle of one.
    bad(
        "[profile me]\nsource_profile = me\nrole_arn = arn:aws:iam::111111111111:role/me\n",
        &keys("unrelated"),
        "me",
        &[
            "[profile me] in {config}",
            "source_profile names the profile itself",
            "add the keys",
        ],
    );
}

#[test]
fn source_profile_missing() {
    bad(
        "[profile r]\nsource_profile = toolkit-usr\nrole_arn = arn:aws:iam::111111111111:role/r\n",
        &keys("toolkit-user"),
        "r",
        &[
            "[profile r] in {config}",
            "profile \"r\"",
            "source_profile names profile \"toolkit-usr\"",
            "did you mean \"toolkit-user\"?",
            "fix the name",
        ],
    );
}

#[test]
fn source_profile_and_credential_source_together() {
    bad(
        "[profile r]\nsource_profile = k\ncredential_source = Environment\nrole_arn = arn:aws:iam::111111111111:role/r\n",
        &keys("k"),
        "r",
        &[
            "[profile r] in {config}",
            "both source_profile and credential_source",
            "keep exactly one",
        ],
    );
}

#[test]
fn unsupported_credential_sources() {
    for cs in ["Ec2InstanceMetadata", "EcsContainer"] {
        bad(
            &format!(
                "[profile r]\ncredential_source = {cs}\nrole_arn = arn:aws:iam::111111111111:role/r\n"
            ),
            "",
            "r",
            &[
                "[profile r] in {config}",
                "credential_source",
                "not supported by tapcred",
                "source_profile = PROFILE_WITH_KEYS",
            ],
        );
    }
    bad(
        "[profile r]\ncredential_source = environment\nrole_arn = arn:aws:iam::111111111111:role/r\n",
        "",
        "r",
        &[
            "credential_source = \"environment\" is not a known credential source",
            "use Environment",
        ],
    );
}

#[test]
fn nothing_to_authenticate_with() {
    bad(
        "[profile empty]\nregion = eu-west-1\n",
        "",
        "empty",
        &[
            "[profile empty] in {config}",
            "nothing to authenticate with",
            "aws_access_key_id",
            "role_arn + source_profile",
        ],
    );
    // ... also when reached through a chain.
    bad(
        "[profile r]\nsource_profile = empty\nrole_arn = arn:aws:iam::111111111111:role/r\n[profile empty]\nregion = x\n",
        "",
        "r",
        &["profile \"empty\"", "reached through r → empty"],
    );
    bad(
        "[profile sso]\nsso_session = corp\n",
        "",
        "sso",
        &["sso_session is not supported by tapcred"],
    );
    bad(
        "[profile r]\nrole_arn = arn:aws:iam::111111111111:role/r\n",
        "",
        "r",
        &[
            "[profile r] in {config}",
            "role_arn is set but neither source_profile nor credential_source",
            "add source_profile",
        ],
    );
}

#[test]
fn half_a_key_pair() {
    bad(
        "",
        "[k]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\n",
        "k",
        &[
            "[k] in {credentials}",
            "profile \"k\"",
            "aws_access_key_id is set but aws_secret_access_key is missing",
            "add the secret",
        ],
    );
    bad(
        "",
        &format!("[k]\naws_secret_access_key = {SECRET}\n"),
        "k",
        &[
            "[k] in {credentials}",
            "aws_secret_access_key is set but aws_access_key_id is missing",
        ],
    );
}

fn role_profile(extra: &str) -> String {
    format!(
        "[profile r]\nsource_profile = k\nrole_arn = arn:aws:iam::111111111111:role/r\n{extra}\n"
    )
}

#[test]
fn malformed_role_arn() {
    for arn in [
        "toolkit-role",
        "arn:aws:iam::11111111111:role/short-account",
        "arn:aws:iam::111111111111:user/not-a-role",
    ] {
        bad(
            &format!("[profile r]\nsource_profile = k\nrole_arn = {arn}\n"),
            &keys("k"),
            "r",
            &[
                "[profile r] in {config}",
                "role_arn",
                arn,
                "arn:aws:iam::111111111111:role/NAME",
            ],
        );
    }
}

#[test]
fn role_arn_in_the_credentials_file_is_named_there() {
    bad(
        "[profile r]\nsource_profile = k\n",
        &format!("{}[r]\nrole_arn = nope\n", keys("k")),
        "r",
        &["[r] in {credentials}", "role_arn \"nope\""],
    );
}

#[test]
fn malformed_mfa_serial() {
    bad(
        &role_profile("mfa_serial = 123456"),
        &keys("k"),
        "r",
        &[
            "[profile r] in {config}",
            "mfa_serial \"123456\"",
            "9–256",
            "arn:aws:iam::ACCOUNT:mfa/NAME",
        ],
    );
    bad(
        "[profile s]\nmfa_serial = arn:aws:iam::111111111111:mfa/has space\n",
        &keys("s"),
        "s",
        &["[profile s] in {config}", "mfa_serial", "' '"],
    );
}

#[test]
fn bad_duration_seconds() {
    for d in ["600", "43201", "1h", "-1"] {
        bad(
            &role_profile(&format!("duration_seconds = {d}")),
            &keys("k"),
            "r",
            &[
                "[profile r] in {config}",
                "duration_seconds",
                "900–43200",
                "3600",
            ],
        );
    }
    // GetSessionToken's limit is higher, but not unbounded.
    bad(
        "[profile s]\nmfa_serial = arn:aws:iam::111111111111:mfa/u\nduration_seconds = 129601\n",
        &keys("s"),
        "s",
        &["duration_seconds", "900–129600"],
    );
}

#[test]
fn bad_external_id() {
    let msg = bad(
        &role_profile("external_id = x"),
        &keys("k"),
        "r",
        &[
            "[profile r] in {config}",
            "external_id",
            "2–1224",
            "external id given by the role's owner",
        ],
    );
    assert!(msg.contains("1 characters long"), "{msg}");
    bad(
        &role_profile("external_id = has space"),
        &keys("k"),
        "r",
        &["external_id", "' '"],
    );
}

#[test]
fn bad_role_session_name() {
    bad(
        &role_profile(&format!("role_session_name = {}", "n".repeat(65))),
        &keys("k"),
        "r",
        &["[profile r] in {config}", "role_session_name", "2–64"],
    );
    bad(
        &role_profile("role_session_name = a:b"),
        &keys("k"),
        "r",
        &["role_session_name \"a:b\"", "':'"],
    );
}

#[test]
fn bad_tapcred_keys() {
    bad(
        &role_profile("tapcred_token = yubikey"),
        &keys("k"),
        "r",
        &[
            "[profile r] in {config}",
            "tapcred_token = \"yubikey\"",
            "auto, oath, software, vault, prompt",
        ],
    );
    bad(
        &role_profile("tapcred_yubikey_serial = YK-123"),
        &keys("k"),
        "r",
        &["tapcred_yubikey_serial = \"YK-123\"", "decimal serial"],
    );
    bad(
        &role_profile("tapcred_yubikey_serial = 99999999999"),
        &keys("k"),
        "r",
        &["tapcred_yubikey_serial"],
    );
    // The OTP slot cannot hold an AWS seed (docs/architecture.md): `otp` is refused with the reason
    // and what to use instead, in any spelling, and so is its old slot key.
    for v in ["otp", "OTP", " Otp "] {
        bad(
            &role_profile(&format!("tapcred_token = {v}")),
            &keys("k"),
            "r",
            &[
                "profile \"r\"",
                "tapcred_token = \"otp\" is not a token source",
                "40 bytes",
                "20-byte HMAC-SHA1 key",
                "tapcred_token = oath",
                "ykman oath accounts add",
                "tapcred_token = vault",
            ],
        );
    }
    bad(
        &role_profile("tapcred_otp_slot = 2"),
        &keys("k"),
        "r",
        &[
            "tapcred_otp_slot is no longer a profile key",
            "remove it",
            "tapcred_token = oath",
        ],
    );
    bad(
        &role_profile("tapcred_totp_secret_env = JBSWY3DP EHPK3PXP"),
        &keys("k"),
        "r",
        &["tapcred_totp_secret_env", "NAME of the variable"],
    );
    bad(
        &role_profile("tapcred_totp_secret_file = ~/seed"),
        &keys("k"),
        "r",
        &["tapcred_totp_secret_file", "HOME is not set"],
    );
    // The tapcred_* keys of a profile in the chain are checked too (its mfa step).
    bad(
        "[profile top]\nsource_profile = r\nrole_arn = arn:aws:iam::111111111111:role/top\n\
         [profile r]\nsource_profile = k\nrole_arn = arn:aws:iam::111111111111:role/r\n\
         mfa_serial = arn:aws:iam::111111111111:mfa/u\ntapcred_token = otp\n",
        &keys("k"),
        "top",
        &["profile \"r\"", "tapcred_token = \"otp\""],
    );
}

#[test]
fn bad_ignore_configured_endpoint_urls() {
    bad(
        &role_profile("ignore_configured_endpoint_urls = yes"),
        &keys("k"),
        "r",
        &[
            "ignore_configured_endpoint_urls = \"yes\"",
            "write true or false",
        ],
    );
}

#[test]
fn unreadable_file_is_a_config_error() {
    let t = write(Some("[profile a]\n"), None);
    std::fs::remove_file(&t.files.config).unwrap();
    std::fs::create_dir(&t.files.config).unwrap();
    let err = Profiles::load(&t.files).map(|_| ()).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Config);
    assert!(
        err.message()
            .contains(&t.files.config.display().to_string())
    );
    // A directory is named as such (src/platform reads only regular files).
    assert!(
        err.message().contains("is a directory, not a regular file"),
        "{}",
        err.message()
    );
}

// ---------------------------------------------------------------- differential: botocore

/// Resolve every profile of AWS_CONFIG_FILE/AWS_SHARED_CREDENTIALS_FILE the way the AWS CLI
/// (botocore) does, with a fake STS client; print JSON: the merged profile keys and, per
/// profile, the AssumeRole calls botocore makes (in order), the keys it uses for a non-role
/// profile, or the error it raises. Needs only botocore.
const BOTOCORE_SCRIPT: &str = r#"
import datetime
import json
import sys

import botocore.session


def scalar_profiles(session):
    out = {}
    for name, keys in session.full_config.get("profiles", {}).items():
        out[name] = {k: v for k, v in keys.items() if isinstance(v, str)}
    return out


class FakeSts:
    def __init__(self, calls, access_key):
        self.calls = calls
        self.access_key = access_key

    def assume_role(self, **kwargs):
        call = {"source_access_key": self.access_key}
        call.update({k: v for k, v in kwargs.items() if k != "TokenCode"})
        self.calls.append(call)
        expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
        return {
            "Credentials": {
                "AccessKeyId": "ASIA-" + kwargs["RoleArn"].rsplit("/", 1)[-1],
                "SecretAccessKey": "fake-secret",
                "SessionToken": "fake-token",
                "Expiration": expires,
            }
        }


def resolve(name):
    session = botocore.session.Session(profile=name)
    resolver = session.get_component("credential_provider")
    provider = resolver.get_provider("assume-role")
    calls = []

    def client_creator(service, **kw):
        return FakeSts(calls, kw.get("aws_access_key_id"))

    provider._client_creator = client_creator
    provider.cache = {}
    provider._prompter = lambda prompt: "123456"
    try:
        creds = provider.load()
        if creds is None:
            # Not a role profile: the rest of botocore's chain (credentials file, config
            # file, ...) decides.
            other = session.get_credentials()
            if other is None:
                return {"error": "NoCredentials"}
            return {"role": False, "access_key": other.access_key}
        creds.get_frozen_credentials()
        return {"role": True, "calls": calls}
    except Exception as e:  # noqa: BLE001 - the class name is the answer
        return {"error": type(e).__name__}


def main():
    session = botocore.session.Session()
    profiles = scalar_profiles(session)
    result = {"profiles": profiles, "resolved": {n: resolve(n) for n in sys.argv[1:] or profiles}}
    json.dump(result, sys.stdout, indent=1, sort_keys=True, default=str)


main()
"#;

/// Run [`BOTOCORE_SCRIPT`] (the AWS CLI's own resolution, with a fake STS)
/// on these files. `None` (after a loud note) when the Python venv is missing on a developer
/// machine; under `CI=true` a missing venv fails the test.
fn botocore(files: &AwsFiles, vars: &[(&str, &str)]) -> Option<serde_json::Value> {
    let venv = std::env::var("TAPCRED_VENV").unwrap_or_else(|_| "/opt/tapcred-venv".to_owned());
    let python = Path::new(&venv).join("bin/python");
    if !python.exists() {
        tapcred_testkit::ci::skip(
            "botocore differential test",
            &format!(
                "{} is missing (set TAPCRED_VENV to a venv with botocore)",
                python.display()
            ),
        );
        return None;
    }
    let home = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(&python)
        .arg("-c")
        .arg(BOTOCORE_SCRIPT)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", home.path())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", &files.config)
        .env("AWS_SHARED_CREDENTIALS_FILE", &files.credentials)
        .envs(vars.iter().copied())
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "botocore script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).expect("botocore script prints JSON"))
}

/// Compare every profile of these files with what botocore makes of them: the merged key
/// values, and for each profile the AssumeRole calls in order (role ARN, MFA serial,
/// external id, session name, duration, and which access key signs each call), or that both
/// refuse it. Returns botocore's verdicts (None when skipped).
fn same_as_botocore(files: &AwsFiles, vars: &[(&str, &str)]) -> Option<serde_json::Value> {
    let boto = botocore(files, vars)?;
    let mut all_vars = env(vars);
    all_vars.insert("HOME".into(), "/home/tester".into());
    let ours = Profiles::load(files).unwrap();
    let boto_profiles = boto["profiles"].as_object().unwrap();
    let mut names: Vec<String> = boto_profiles.keys().cloned().collect();
    names.sort();
    assert_eq!(ours.names(), names, "same profile names as botocore");
    for (name, keys) in boto_profiles {
        for (key, value) in keys.as_object().unwrap() {
            let value = value.as_str().unwrap().trim();
            let expected = (!value.is_empty()).then_some(value);
            assert_eq!(ours.get(name, key), expected, "[{name}] {key}");
        }
    }
    for (name, verdict) in boto["resolved"].as_object().unwrap() {
        let resolved = ours.resolve(name, &all_vars);
        if let Some(error) = verdict.get("error") {
            assert!(
                resolved.is_err(),
                "botocore refuses {name} ({error}) but tapcred resolved it"
            );
            continue;
        }
        let r = resolved.unwrap_or_else(|e| panic!("botocore resolves {name}, tapcred: {e}"));
        let roles: Vec<&RoleStep> = r
            .steps
            .iter()
            .filter_map(|s| match s {
                Step::AssumeRole(role) => Some(role),
                Step::SessionToken { .. } => None,
            })
            .collect();
        if verdict["role"] == false {
            assert!(
                roles.is_empty(),
                "{name}: botocore assumes no role, tapcred: {roles:?}"
            );
            assert_eq!(
                verdict["access_key"].as_str(),
                Some(r.base.access_key_id.as_str()),
                "{name}: the keys botocore uses"
            );
            continue;
        }
        let calls = verdict["calls"].as_array().unwrap();
        assert_eq!(
            roles.len(),
            calls.len(),
            "{name}: number of AssumeRole calls"
        );
        let mut signer = r.base.access_key_id.clone();
        for (ours, call) in roles.iter().zip(calls) {
            let s = |k: &str| call.get(k).and_then(|v| v.as_str()).map(str::to_owned);
            assert_eq!(
                s("source_access_key"),
                Some(signer.clone()),
                "{name}: signer"
            );
            assert_eq!(Some(ours.role_arn.clone()), s("RoleArn"), "{name}");
            assert_eq!(
                ours.mfa.as_ref().map(|m| m.serial.clone()),
                s("SerialNumber"),
                "{name}"
            );
            assert_eq!(ours.external_id, s("ExternalId"), "{name}");
            if ours.role_session_name.is_some() {
                assert_eq!(ours.role_session_name, s("RoleSessionName"), "{name}");
            }
            assert_eq!(
                ours.duration_seconds.map(u64::from),
                call.get("DurationSeconds").and_then(|v| v.as_u64()),
                "{name}"
            );
            signer = format!("ASIA-{}", ours.role_arn.rsplit('/').next().unwrap());
        }
    }
    Some(boto["resolved"].clone())
}

#[test]
fn fixtures_resolve_as_botocore_does() {
    let env_keys = [
        ("AWS_ACCESS_KEY_ID", "AKIAENVEXAMPLE000001"),
        ("AWS_SECRET_ACCESS_KEY", "env-secret"),
    ];
    for (dir, count) in [("design", 7), ("design-single", 2), ("full", 11)] {
        if let Some(verdicts) = same_as_botocore(&fixture(dir), &env_keys) {
            assert_eq!(verdicts.as_object().unwrap().len(), count, "{dir}");
        }
    }
}

#[test]
fn refusals_agree_with_botocore() {
    let cases: &[(&str, &str)] = &[
        // cycle
        (
            "[profile a]\nsource_profile = b\nrole_arn = arn:aws:iam::111111111111:role/a\n\
             [profile b]\nsource_profile = a\nrole_arn = arn:aws:iam::111111111111:role/b\n",
            "",
        ),
        // missing source profile
        (
            "[profile a]\nsource_profile = nope\nrole_arn = arn:aws:iam::111111111111:role/a\n",
            "",
        ),
        // both source_profile and credential_source
        (
            "[profile a]\nsource_profile = k\ncredential_source = Environment\nrole_arn = arn:aws:iam::111111111111:role/a\n",
            "[k]\naws_access_key_id = AKIAK\naws_secret_access_key = s\n",
        ),
        // self reference without keys
        (
            "[profile a]\nsource_profile = a\nrole_arn = arn:aws:iam::111111111111:role/a\n",
            "",
        ),
        // role_arn with neither source
        (
            "[profile a]\nrole_arn = arn:aws:iam::111111111111:role/a\n",
            "",
        ),
        // a source profile with only half a key pair
        (
            "[profile a]\nsource_profile = k\nrole_arn = arn:aws:iam::111111111111:role/a\n",
            "[k]\naws_access_key_id = AKIAK\n",
        ),
    ];
    for (config, credentials) in cases {
        let t = write(Some(config), Some(credentials));
        if let Some(verdicts) = same_as_botocore(&t.files, &[]) {
            assert!(
                verdicts["a"].get("error").is_some(),
                "botocore refuses: {config}"
            );
        }
    }
}

#[test]
fn profile_default_beats_plain_default_in_config() {
    // The AWS rule: in the config file, [profile default] replaces [default] entirely.
    let t = write(
        Some("[default]\nregion = plain\n[profile default]\nregion = prefixed\n"),
        Some(&keys("default")),
    );
    let p = Profiles::load(&t.files).unwrap();
    let r = resolve(&p, "default");
    assert_eq!(r.region.as_deref(), Some("prefixed"));
    assert_eq!(r.base.origin, "default");
}

#[test]
fn non_utf8_file_is_a_config_error() {
    let t = write(None, None);
    std::fs::write(&t.files.credentials, b"[a]\naws_access_key_id = \xff\xfe\n").unwrap();
    let err = Profiles::load(&t.files).map(|_| ()).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Config);
    assert!(err.message().contains("not UTF-8"), "{}", err.message());
    assert!(
        err.message()
            .contains(&t.files.credentials.display().to_string())
    );
}

#[test]
fn absolute_secret_file_and_defaults() {
    let t = write(
        Some(
            "[profile s]\nmfa_serial = GAHT12345678\ntapcred_totp_secret_file = /etc/seed\n\
             tapcred_token = Software\n",
        ),
        Some(&keys("s")),
    );
    let p = Profiles::load(&t.files).unwrap();
    // No HOME needed for an absolute path; tapcred_token is case-insensitive.
    let r = p.resolve("s", &env(&[])).unwrap();
    assert_eq!(
        r.token.totp_secret_file.as_deref(),
        Some(Path::new("/etc/seed"))
    );
    assert_eq!(r.token.kind, TokenKind::Software);
    assert_eq!(r.token.totp_secret_env, DEFAULT_SECRET_ENV);
    assert_eq!(r.token.profile, "s");
}

mod generated {
    use super::*;
    use proptest::prelude::*;

    fn arn(i: usize) -> String {
        format!(
            "arn:aws:iam::{:012}:role/r{i}",
            100_000_000_000u64 + i as u64
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// A chain p0 → p1 → … → keys gives one AssumeRole per role profile, in order from
        /// the keys, each carrying its own profile's mfa_serial only.
        #[test]
        fn chains_resolve_in_order(len in 1usize..7, mfa_mask in 0u32..128) {
            let mut config = String::new();
            for i in 0..len {
                let source = if i + 1 == len { "keys".to_owned() } else { format!("p{}", i + 1) };
                config.push_str(&format!("[profile p{i}]\nsource_profile = {source}\nrole_arn = {}\n", arn(i)));
                if mfa_mask & (1 << i) != 0 {
                    config.push_str(&format!("mfa_serial = arn:aws:iam::111111111111:mfa/u{i}\n"));
                }
            }
            let t = write(Some(&config), Some(&keys("keys")));
            let p = Profiles::load(&t.files).unwrap();
            let r = p.resolve("p0", &env(&[])).unwrap();
            prop_assert_eq!(&r.base.origin, "keys");
            prop_assert_eq!(r.steps.len(), len);
            for (k, step) in r.steps.iter().enumerate() {
                let i = len - 1 - k;
                let s = role(step);
                prop_assert_eq!(&s.profile, &format!("p{i}"));
                prop_assert_eq!(&s.role_arn, &arn(i));
                let want = (mfa_mask & (1 << i) != 0).then(|| format!("arn:aws:iam::111111111111:mfa/u{i}"));
                prop_assert_eq!(s.mfa.as_ref().map(|m| m.serial.clone()), want);
            }
        }

        /// Closing the chain into a loop at any point is refused, naming the whole cycle.
        #[test]
        fn cycles_are_named(len in 1usize..7, back in 0usize..7) {
            let back = back % len;
            let mut config = String::new();
            for i in 0..len {
                let source = if i + 1 == len { format!("p{back}") } else { format!("p{}", i + 1) };
                config.push_str(&format!("[profile p{i}]\nsource_profile = {source}\nrole_arn = {}\n", arn(i)));
            }
            let t = write(Some(&config), Some(&keys("unused")));
            let p = Profiles::load(&t.files).unwrap();
            let err = p.resolve("p0", &env(&[])).map(|r| r.name).unwrap_err();
            prop_assert_eq!(err.kind, ErrorKind::Config);
            let cycle: Vec<String> = (back..len).map(|i| format!("p{i}")).chain([format!("p{back}")]).collect();
            let msg = err.message();
            prop_assert!(msg.contains(&cycle.join(" → ")), "{}", msg);
        }
    }
}

// ---------------------------------------------------------------- tapcred_access_key = vault

const MFA_ROLE: &str = "[profile mfa]\nsource_profile = toolkit-user\nrole_arn = arn:aws:iam::111111111111:role/toolkit-role\nmfa_serial = arn:aws:iam::111111111111:mfa/toolkit-user\n";

#[test]
fn access_key_in_the_vault_resolves_without_reading_it() {
    // In the credentials file (where `vault import-keys` puts it) or in config: same result.
    for (config, credentials) in [
        (
            MFA_ROLE.to_owned(),
            "[toolkit-user]\ntapcred_access_key = vault\n".to_owned(),
        ),
        (
            format!("{MFA_ROLE}[profile toolkit-user]\ntapcred_access_key = Vault\n"),
            String::new(),
        ),
    ] {
        let t = write(Some(&config), Some(&credentials));
        let p = Profiles::load(&t.files).unwrap();
        let r = p
            .resolve(
                "mfa",
                &env(&[("HOME", "/home/tester"), ("TAPCRED_VAULT", "/v/vault")]),
            )
            .unwrap();
        assert_eq!(r.base.origin, "toolkit-user");
        assert_eq!(r.base.in_vault.as_deref(), Some(Path::new("/v/vault")));
        assert!(r.base.access_key_id.is_empty());
        assert!(r.base.secret_access_key.expose_secret().is_empty());
        assert_eq!(r.steps.len(), 1);
        // Without TAPCRED_VAULT: the XDG data dir, else HOME's.
        let r = p.resolve("mfa", &env(&[("HOME", "/home/tester")])).unwrap();
        assert_eq!(
            r.base.in_vault.as_deref(),
            Some(Path::new("/home/tester/.local/share/tapcred/vault"))
        );
    }
}

#[test]
fn access_key_in_the_vault_bad_values_are_refused() {
    bad(
        MFA_ROLE,
        "[toolkit-user]\ntapcred_access_key = keychain\n",
        "mfa",
        &[
            "tapcred_access_key",
            "\"keychain\" is not a place for the access key",
            "tapcred_access_key = vault",
        ],
    );
    // Keys left beside it: which one is meant is not clear.
    bad(
        MFA_ROLE,
        &format!("{}tapcred_access_key = vault\n", keys("toolkit-user")),
        "mfa",
        &["aws_access_key_id", "beside tapcred_access_key = vault"],
    );
    // Nowhere to look for the vault.
    bad_env(
        MFA_ROLE,
        "[toolkit-user]\ntapcred_access_key = vault\n",
        "mfa",
        &[],
        &["no place for the vault", "TAPCRED_VAULT"],
    );
}

/// A role whose source_profile is a Roles Anywhere profile: tapcred does not chain roles from
/// Roles Anywhere credentials, and says so (not "neither source_profile nor credential_source").
#[test]
fn a_role_sourced_from_a_roles_anywhere_profile_is_refused_by_name() {
    let ra = "[profile ra]\nregion = us-east-1\ntapcred_roles_anywhere_trust_anchor_arn = arn:aws:rolesanywhere:us-east-1:111111111111:trust-anchor/a\ntapcred_roles_anywhere_profile_arn = arn:aws:rolesanywhere:us-east-1:111111111111:profile/p\nrole_arn = arn:aws:iam::111111111111:role/ra-role\ntapcred_piv_slot = 9a\n";
    let msg = bad(
        &format!(
            "{ra}[profile next]\nsource_profile = ra\nrole_arn = arn:aws:iam::111111111111:role/next\n"
        ),
        "",
        "next",
        &["source_profile", "\"ra\"", "Roles Anywhere"],
    );
    assert!(!msg.contains("neither source_profile"), "{msg}");
}
