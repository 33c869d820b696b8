//! A real AWS SDK client (`aws-config`'s container/ECS credentials provider) against
//! `tapcred::serve`.
//!
//! aws-config reads `AWS_CONTAINER_CREDENTIALS_FULL_URI` / `AWS_CONTAINER_AUTHORIZATION_TOKEN`
//! from the process environment only (its `ProviderConfig::with_env` is crate-private), and
//! setting env vars in a threaded test is `unsafe` in edition 2024. So each test starts the
//! server in this process and runs the SDK in a child: this same test binary, filtered to
//! `sdk_child`, with the variables set on the child's command line environment. `sdk_child`
//! is a helper, not a test of its own: it is `#[ignore]`d (a normal run lists it as ignored,
//! never as passed), the parent runs it with `--ignored` and checks that it ran, and without
//! `TAPCRED_SDK_CHILD` it fails instead of passing vacuously.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_credential_types::provider::ProvideCredentials;
use tapcred::Credentials;
use tapcred::serve::{self, CredentialsProvider, ServeOptions};
use time::OffsetDateTime;

fn creds(n: usize, lifetime_s: i64) -> Credentials {
    Credentials::new(
        format!("ASIASERVE{n:04}"),
        format!("secret-{n}"),
        Some(format!("token-{n}")),
        Some(OffsetDateTime::now_utc() + time::Duration::seconds(lifetime_s)),
    )
}

/// Runs `sdk_child` with the given env; returns (success, stdout+stderr).
fn run_child(env: &[(&str, String)]) -> (bool, String) {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(exe);
    cmd.args([
        "--exact",
        "sdk_child",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env_remove("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
    .env_remove("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")
    .env("TAPCRED_SDK_CHILD", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let ran = String::from_utf8_lossy(&out.stdout).contains("1 passed");
    (out.status.success() && ran, text)
}

#[test]
fn sdk_container_provider_fetches_and_refreshes_across_a_forced_expiry() {
    // Credentials 1 expire in 10 minutes: inside the 15-minute window, so the server asks
    // the provider again on the next request. Credentials 2 last an hour and are kept.
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let provider: CredentialsProvider = Arc::new(move || {
        let n = c.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(creds(n, if n == 1 { 600 } else { 3600 }))
    });
    let h = serve::start(provider, ServeOptions::default()).unwrap();
    let mut env: Vec<(&str, String)> = h.env_vars().to_vec();
    env.push((
        "TAPCRED_SDK_EXPECT",
        "ASIASERVE0001,ASIASERVE0002,ASIASERVE0002".into(),
    ));
    let (ok, out) = run_child(&env);
    assert!(ok, "SDK child failed:\n{out}");
    assert!(out.contains("sdk_child: 3 fetches ok"), "{out}");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[test]
fn sdk_container_provider_is_refused_without_the_token() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let provider: CredentialsProvider = Arc::new(move || {
        c.fetch_add(1, Ordering::SeqCst);
        Ok(creds(1, 3600))
    });
    let h = serve::start(provider, ServeOptions::default()).unwrap();
    let env = vec![
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", h.url.clone()),
        ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "f".repeat(64)),
        ("TAPCRED_SDK_EXPECT", "error".into()),
    ];
    let (ok, out) = run_child(&env);
    assert!(ok, "SDK child failed:\n{out}");
    assert!(out.contains("sdk_child: refused"), "{out}");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

/// Helper run as a child process by the tests above (see the module comment).
#[test]
#[ignore = "helper: run as a child by the sdk_container_provider_* tests"]
fn sdk_child() {
    assert!(
        std::env::var_os("TAPCRED_SDK_CHILD").is_some(),
        "TAPCRED_SDK_CHILD not set: sdk_child runs only as a child of the tests above"
    );
    let expect = std::env::var("TAPCRED_SDK_EXPECT").unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let http = tapcred::sts::https_client();
        let conf = aws_config::provider_config::ProviderConfig::empty().with_http_client(http);
        let p = aws_config::ecs::EcsCredentialsProvider::builder()
            .configure(&conf)
            .build();
        if expect == "error" {
            let r = p.provide_credentials().await;
            assert!(r.is_err(), "a wrong token must be refused");
            let msg = format!("{:?}", r.unwrap_err());
            assert!(msg.contains("AccessDenied") || msg.contains("403"), "{msg}");
            println!("sdk_child: refused");
            return;
        }
        let want: Vec<&str> = expect.split(',').collect();
        for (i, w) in want.iter().enumerate() {
            let c = p
                .provide_credentials()
                .await
                .unwrap_or_else(|e| panic!("fetch {i}: {e:?}"));
            assert_eq!(c.access_key_id(), *w, "fetch {i}");
            let n = &w["ASIASERVE".len()..].trim_start_matches('0');
            assert_eq!(c.secret_access_key(), format!("secret-{n}"));
            assert_eq!(c.session_token(), Some(format!("token-{n}").as_str()));
            let exp = c.expiry().expect("Expiration parsed by the SDK");
            assert!(exp > std::time::SystemTime::now());
        }
        println!("sdk_child: {} fetches ok", want.len());
    });
}
