//! `tapcred serve` end to end: the real binary in front of the strict STS double, with a real
//! SDK client (aws-config's container provider + aws-sdk-sts `GetCallerIdentity`) as the
//! child, across a forced expiry of the served role credentials.
//!
//! The SDK client is this test binary itself, run by `tapcred serve -- …` on the ignored test
//! `serve_child` with `SERVE_CLI_SDK_CHILD=1` (not a `TAPCRED_` name: tapcred removes those
//! from its children); `serve_child` is that helper, not a test of its own: a normal run lists
//! it as ignored, and run without the variable it fails.
#![cfg(unix)] // runs Linux test stacks (or Unix-only APIs); the Windows build is checked by clippy and Wine

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aws_credential_types::provider::ProvideCredentials;
use common::{Home, Run};
use tapcred_testkit::sts_double::{Config, StsDouble};

/// Set for the SDK child; not `TAPCRED_*`, which tapcred keeps from its children.
const SERVE_CHILD_VAR: &str = "SERVE_CLI_SDK_CHILD";

struct World {
    home: Home,
    double: StsDouble,
}

impl World {
    fn new() -> World {
        let double = StsDouble::start(Config::design()).expect("STS double");
        let home = Home::design_against(&double.endpoint());
        World { home, double }
    }

    /// `tapcred ARGS` without a controlling terminal, with the test HOME's environment.
    fn cmd(&self, args: &[&str]) -> Command {
        self.home.cmd_detached(args)
    }

    fn run(&self, args: &[&str]) -> Run {
        Run::from(self.cmd(args).output().expect("run tapcred"))
    }
}

#[test]
fn sdk_child_gets_credentials_and_survives_a_forced_expiry_without_a_new_tap() {
    let w = World::new();
    // One tap: the MFA session (12 h) is created and cached by another role's call.
    w.run(&["credential-process", "--profile", "mfa-b"]).ok();
    assert_eq!(w.double.token_code_events().len(), 1);
    // From now on the double issues 30-second credentials: the role session served to the
    // child expires during the test and must be renewed from the cached MFA session.
    w.double.set_issued_lifetime(Some(30));
    let exe = std::env::current_exe().unwrap();
    let exe = exe.to_str().unwrap();
    let mut c = w.cmd(&[
        "serve",
        "--profile",
        "mfa",
        "--",
        exe,
        "--exact",
        "serve_child",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    c.env(SERVE_CHILD_VAR, "1");
    let out = Run::from(c.output().unwrap());
    assert_eq!(
        out.code, 0,
        "serve + SDK child failed\nstdout: {}\nstderr: {}",
        out.stdout, out.stderr
    );
    assert!(
        out.stdout.contains("1 passed"),
        "the child did not run: {}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("serve_child: 2 distinct sessions, GetCallerIdentity ok"),
        "{}",
        out.stdout
    );
    // Still the one code from the start: the renewal used the cached MFA session.
    assert_eq!(w.double.token_code_events().len(), 1);
    assert_eq!(w.double.calls("GetSessionToken"), 1);
    assert!(w.double.calls("AssumeRole") >= 3, "mfa-b, mfa, mfa renewed");
    assert!(w.double.calls("GetCallerIdentity") >= 2);
}

#[test]
fn serve_exits_with_the_child_exit_code_and_clears_conflicting_variables() {
    let mut w = World::new();
    w.home.set("AWS_ACCESS_KEY_ID", "AKIASHOULDNOTLEAK");
    w.home.set("AWS_PROFILE", "other");
    let out = w.run(&[
        "serve",
        "--profile",
        "session",
        "--",
        "sh",
        "-c",
        "test -z \"$AWS_ACCESS_KEY_ID$AWS_PROFILE\" && test -n \"$AWS_CONTAINER_AUTHORIZATION_TOKEN\" && case \"$AWS_CONTAINER_CREDENTIALS_FULL_URI\" in http://127.0.0.1:*/) exit 7;; esac; exit 1",
    ]);
    assert_eq!(out.code, 7, "{}", out.stderr);
    assert!(out.stdout.is_empty());
}

#[test]
fn serve_without_a_command_prints_the_variables_and_checks_the_token() {
    let w = World::new();
    // Run tapcred directly (not under setsid) so the test can stop exactly this process.
    let mut c = w.home.cmd(&["serve", "--profile", "session"]);
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let uri_line = lines.next().unwrap().unwrap();
    let token_line = lines.next().unwrap().unwrap();
    let uri = uri_line
        .strip_prefix("export AWS_CONTAINER_CREDENTIALS_FULL_URI=")
        .unwrap_or_else(|| panic!("{uri_line}"))
        .to_owned();
    let token = token_line
        .strip_prefix("export AWS_CONTAINER_AUTHORIZATION_TOKEN=")
        .unwrap_or_else(|| panic!("{token_line}"))
        .to_owned();
    assert_eq!(token.len(), 64);
    let addr = uri
        .strip_prefix("http://")
        .unwrap()
        .trim_end_matches('/')
        .to_owned();
    assert!(addr.starts_with("127.0.0.1:"));
    let get = |auth: Option<&str>| -> (u16, String) {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut req = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n".to_owned();
        if let Some(a) = auth {
            req.push_str(&format!("Authorization: {a}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let status = out.split_whitespace().nth(1).unwrap().parse().unwrap();
        (
            status,
            out.split("\r\n\r\n").nth(1).unwrap_or("").to_owned(),
        )
    };
    let (status, body) = get(None);
    assert_eq!(status, 403);
    assert!(body.contains("AccessDenied"));
    let (status, _) = get(Some(&"0".repeat(64)));
    assert_eq!(status, 403);
    let (status, body) = get(Some(&token));
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(v["AccessKeyId"].as_str().unwrap().starts_with("ASIA"));
    assert!(v["Token"].is_string() && v["Expiration"].is_string());
    assert_eq!(w.double.calls("GetSessionToken"), 1);
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Helper: the SDK client run as `tapcred serve`'s child (see the module comment).
#[test]
#[ignore = "helper: run as `tapcred serve`'s child by sdk_child_gets_credentials_…"]
fn serve_child() {
    assert!(
        std::env::var_os(SERVE_CHILD_VAR).is_some(),
        "{SERVE_CHILD_VAR} not set: serve_child runs only as tapcred serve's child"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let http = tapcred::sts::https_client();
        let conf =
            aws_config::provider_config::ProviderConfig::empty().with_http_client(http.clone());
        let ecs = aws_config::ecs::EcsCredentialsProvider::builder()
            .configure(&conf)
            .build();
        let endpoint = std::env::var("AWS_ENDPOINT_URL_STS").expect("endpoint passed through");
        let region = std::env::var("AWS_REGION").expect("serve sets AWS_REGION");
        let mut seen = Vec::new();
        let start = Instant::now();
        for round in 0..2 {
            let c = ecs
                .provide_credentials()
                .await
                .unwrap_or_else(|e| panic!("round {round}: {e:?}"));
            let exp = c.expiry().expect("Expiration");
            assert!(
                exp > std::time::SystemTime::now(),
                "served expired credentials"
            );
            let sts_conf = aws_sdk_sts::Config::builder()
                .behavior_version(aws_sdk_sts::config::BehaviorVersion::latest())
                .region(aws_sdk_sts::config::Region::new(region.clone()))
                .endpoint_url(&endpoint)
                .http_client(http.clone())
                .credentials_provider(c.clone())
                .build();
            let who = aws_sdk_sts::Client::from_conf(sts_conf)
                .get_caller_identity()
                .send()
                .await
                .unwrap_or_else(|e| panic!("GetCallerIdentity round {round}: {e:?}"));
            let arn = who.arn().unwrap_or_default();
            assert!(arn.contains("assumed-role/toolkit-role/"), "{arn}");
            seen.push(c.access_key_id().to_owned());
            if round == 0 {
                // 30-second credentials are renewed by tapcred once half is gone.
                tokio::time::sleep(Duration::from_secs(17)).await;
            }
        }
        assert_ne!(seen[0], seen[1], "renewed across the expiry");
        assert!(start.elapsed() < Duration::from_secs(40));
        println!("serve_child: 2 distinct sessions, GetCallerIdentity ok");
    });
}

/// Static keys in `[default]` of the shared credentials file, which every SDK's default chain
/// reads before the container endpoint.
const DEFAULT_STATIC_KEY: &str = "AKIADEFAULTSTATICKEY";
const DEFAULT_CHAIN_CHILD_VAR: &str = "SERVE_CLI_DEFAULT_CHAIN_CHILD";
const DEFAULT_CHAIN_PREFIX: &str = "DEFAULT_CHAIN_KEY=";

#[test]
fn sdk_default_chain_in_the_child_uses_the_endpoint_not_default_static_keys() {
    let w = World::new();
    let creds = std::fs::read_to_string(w.home.credentials_path()).unwrap();
    w.home.write_credentials(&format!(
        "[default]\naws_access_key_id = {DEFAULT_STATIC_KEY}\naws_secret_access_key = defaultsecretdefaultsecretdefaultsecret1\n\n{creds}"
    ));
    w.home.write_config(&format!(
        "[default]\nregion = eu-north-1\n\n{}",
        std::fs::read_to_string(w.home.config_path()).unwrap()
    ));
    let exe = std::env::current_exe().unwrap();
    let mut c = w.cmd(&[
        "serve",
        "--profile",
        "session",
        "--",
        exe.to_str().unwrap(),
        "--exact",
        "default_chain_child",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    let tmp = w.home.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    c.env(DEFAULT_CHAIN_CHILD_VAR, "1").env("TMPDIR", &tmp);
    let out = Run::from(c.output().unwrap());
    // tapcred's per-user record of used codes (tapcred-<uid>) stays, by design.
    let ledger = format!("tapcred-{}", rustix::process::geteuid().as_raw());
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name() != ledger.as_str())
        .collect();
    assert!(
        left.is_empty(),
        "the child's empty AWS files were not removed: {left:?}"
    );
    assert_eq!(
        out.code, 0,
        "stdout: {}\nstderr: {}",
        out.stdout, out.stderr
    );
    assert!(
        out.stdout.contains("1 passed"),
        "child did not run: {}",
        out.stdout
    );
    let key = out
        .stdout
        .lines()
        .find_map(|l| l.split_once(DEFAULT_CHAIN_PREFIX).map(|(_, k)| k.trim()))
        .unwrap_or_else(|| panic!("no {DEFAULT_CHAIN_PREFIX} line: {}", out.stdout));
    assert_ne!(
        key, DEFAULT_STATIC_KEY,
        "the child's SDK used [default] static keys"
    );
    assert!(key.starts_with("ASIA"), "{key}");
    assert_eq!(w.double.calls("GetSessionToken"), 1);
    // The user's files are untouched.
    assert!(
        std::fs::read_to_string(w.home.credentials_path())
            .unwrap()
            .contains(DEFAULT_STATIC_KEY)
    );
}

/// Helper: an SDK's whole default chain (aws-config `defaults`), run as `tapcred serve`'s
/// child by the test above; prints the access key it got.
#[test]
#[ignore = "helper: run as `tapcred serve`'s child by sdk_default_chain_in_the_child_…"]
fn default_chain_child() {
    assert!(
        std::env::var_os(DEFAULT_CHAIN_CHILD_VAR).is_some(),
        "{DEFAULT_CHAIN_CHILD_VAR} not set: default_chain_child runs only as tapcred serve's child"
    );
    // The files tapcred points the child at: empty, in a directory only this user can enter.
    for var in ["AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"] {
        let p = std::path::PathBuf::from(std::env::var_os(var).expect(var));
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 0, "{var}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(p.parent().unwrap())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o700, "{var}'s directory");
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(tapcred::sts::https_client())
            .load()
            .await;
        let region = conf.region().map(|r| r.to_string());
        let c = conf
            .credentials_provider()
            .expect("a credentials provider")
            .provide_credentials()
            .await
            .expect("credentials from the default chain");
        // The region still comes from tapcred (AWS_REGION), not from the user's files.
        assert_eq!(region.as_deref(), Some("us-east-1"));
        println!("{DEFAULT_CHAIN_PREFIX}{}", c.access_key_id());
    });
}
