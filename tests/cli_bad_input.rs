//! Bad input through the real binary: each case exits non-zero with one clear line naming the
//! file/profile/key and the fix, prints nothing on stdout, and writes nothing.
#![cfg(unix)] // runs Linux test stacks (or Unix-only APIs); the Windows build is checked by clippy and Wine

mod common;
use common::Home;

const CONFIG_OK: &str = "[profile toolkit-user]\nregion = us-east-1\n";
const CREDS_OK: &str = "[toolkit-user]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n";

fn home(config_extra: &str) -> Home {
    let h = Home::empty();
    h.write_config(&format!("{CONFIG_OK}\n{config_extra}"));
    h.write_credentials(CREDS_OK);
    h
}

fn check(h: &Home, profile: &str, code: i32, needles: &[&str]) {
    let before = h.snapshot();
    h.run(&["credential-process", "--profile", profile])
        .fails_with(code, needles);
    assert_eq!(
        before,
        h.snapshot(),
        "a failing command must not write anything"
    );
}

#[test]
fn missing_files() {
    let h = Home::empty();
    check(&h, "mfa", 3, &[".aws/config", ".aws/credentials"]);
}

#[test]
fn unknown_profile_suggests_close_names() {
    let h = home(
        "[profile mfa]\nsource_profile = toolkit-user\nrole_arn = arn:aws:iam::111111111111:role/toolkit-role\nmfa_serial = arn:aws:iam::111111111111:mfa/toolkit-user\n",
    );
    check(&h, "mfx", 3, &["\"mfx\"", "mfa"]);
}

#[test]
fn source_profile_cycle() {
    let h = home(
        "[profile a]\nsource_profile = b\nrole_arn = arn:aws:iam::111111111111:role/a\n[profile b]\nsource_profile = a\nrole_arn = arn:aws:iam::111111111111:role/b\n",
    );
    check(&h, "a", 3, &["cycle", "a", "b"]);
}

#[test]
fn missing_source_profile() {
    let h = home(
        "[profile a]\nsource_profile = nowhere\nrole_arn = arn:aws:iam::111111111111:role/a\n",
    );
    check(&h, "a", 3, &["nowhere", "source_profile"]);
}

#[test]
fn source_profile_and_credential_source_together() {
    let h = home(
        "[profile a]\nsource_profile = toolkit-user\ncredential_source = Environment\nrole_arn = arn:aws:iam::111111111111:role/a\n",
    );
    check(
        &h,
        "a",
        3,
        &["source_profile", "credential_source", "\"a\""],
    );
}

#[test]
fn malformed_role_arn() {
    let h = home("[profile a]\nsource_profile = toolkit-user\nrole_arn = not-an-arn\n");
    check(&h, "a", 3, &["role_arn", "\"a\""]);
}

#[test]
fn malformed_mfa_serial() {
    let h = home(
        "[profile a]\nsource_profile = toolkit-user\nrole_arn = arn:aws:iam::111111111111:role/a\nmfa_serial = bad serial!\n",
    );
    check(&h, "a", 3, &["mfa_serial", "\"a\""]);
    let short = home(
        "[profile a]\nsource_profile = toolkit-user\nrole_arn = arn:aws:iam::111111111111:role/a\nmfa_serial = abc\n",
    );
    check(&short, "a", 3, &["mfa_serial"]);
}

#[test]
fn duration_out_of_range() {
    for d in ["899", "43201", "soon"] {
        let h = home(&format!(
            "[profile a]\nsource_profile = toolkit-user\nrole_arn = arn:aws:iam::111111111111:role/a\nduration_seconds = {d}\n"
        ));
        check(&h, "a", 3, &["duration_seconds", "900", "43200"]);
    }
}

const MFA_PROFILE: &str = "[profile mfa]\nsource_profile = toolkit-user\nrole_arn = arn:aws:iam::111111111111:role/toolkit-role\nmfa_serial = arn:aws:iam::111111111111:mfa/toolkit-user\n";

#[test]
fn seed_not_base32() {
    let mut h = home(MFA_PROFILE);
    h.set("TAPCRED_TOTP_SECRET", "this is not base32 !!!");
    check(&h, "mfa", 3, &["TAPCRED_TOTP_SECRET", "base32"]);
    let out = h.run(&["credential-process", "--profile", "mfa"]);
    assert!(
        !out.stderr.contains("this is not"),
        "the seed must never be echoed"
    );
}

#[test]
fn otpauth_uri_not_totp() {
    let mut h = home(MFA_PROFILE);
    h.set(
        "TAPCRED_TOTP_SECRET",
        "otpauth://hotp/AWS:me?secret=GEZDGNBVGY3TQOJQ&counter=3",
    );
    check(&h, "mfa", 3, &["TAPCRED_TOTP_SECRET", "TOTP"]);
}

#[test]
fn unreadable_or_shared_seed_file() {
    use std::os::unix::fs::PermissionsExt;
    let h = home(&format!("{MFA_PROFILE}tapcred_totp_secret_file = ~/seed\n"));
    check(&h, "mfa", 3, &["seed", "\"mfa\""]);
    let seed = h.path().join("seed");
    std::fs::write(&seed, "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ").unwrap();
    std::fs::set_permissions(&seed, std::fs::Permissions::from_mode(0o644)).unwrap();
    check(&h, "mfa", 3, &["chmod 600", "seed"]);
}

#[test]
fn usage_errors_exit_2() {
    let h = Home::design();
    let out = h.run(&["export", "--format", "yaml"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stdout.is_empty());
    let out = h.run(&["exec", "--profile", "mfa"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
}

#[test]
fn exec_refuses_to_nest() {
    let mut h = Home::design();
    h.set("TAPCRED_PROFILE", "outer");
    h.run(&["exec", "--profile", "mfa", "--", "true"])
        .fails_with(2, &["outer", "already inside"]);
}

/// Finding 11.2: seeds that used to panic (printing the seed) or be sent to STS with
/// parameters AWS never uses: exit 3, one line naming the source, the seed never echoed.
#[test]
fn seed_that_used_to_panic_or_mislead() {
    let cases: [(&str, &[&str]); 6] = [
        // 10th byte inside a multi-byte character (used to panic on `text[..10]`).
        ("ABCDEFGHIésecretpart", &["base32"]),
        (
            "otpauth://totp/AWS:me?secret=GEZDGNBVGY3TQOJQ&period=0",
            &["0 s", "30 s"],
        ),
        (
            "otpauth://totp/AWS:me?secret=GEZDGNBVGY3TQOJQ&digits=10",
            &["10 digits", "6 digits"],
        ),
        (
            "otpauth://totp/AWS:me?secret=GEZDGNBVGY3TQOJQ&digits=8",
            &["8 digits"],
        ),
        (
            "otpauth://totp/AWS:me?secret=GEZDGNBVGY3TQOJQ&period=60",
            &["60 s"],
        ),
        (
            "otpauth://totp/AWS:me?secret=GEZDGNBVGY3TQOJQ&algorithm=SHA256",
            &["SHA256", "SHA1"],
        ),
    ];
    for (seed, needles) in cases {
        let mut h = home(MFA_PROFILE);
        h.set("TAPCRED_TOTP_SECRET", seed);
        let mut all = vec!["TAPCRED_TOTP_SECRET"];
        all.extend_from_slice(needles);
        check(&h, "mfa", 3, &all);
        let out = h.run(&["credential-process", "--profile", "mfa"]);
        assert!(
            !out.stderr.contains("secretpart") && !out.stderr.contains("GEZDGNBV"),
            "the seed must never be echoed: {}",
            out.stderr
        );
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    }
}

/// Finding 11.12 (part): with no seed, no YubiKey and no terminal the answer used to be one
/// 630-character line. It is one short line naming the profile and the next step; what was
/// tried is logged at -v.
#[test]
fn no_token_source_is_one_short_line_with_details_at_v() {
    let mut h = home(MFA_PROFILE);
    // No pcscd (another test's virtual key must not be seen) and, should a code be read after
    // all, only a loopback endpoint.
    h.set("PCSCLITE_CSOCK_NAME", "/nonexistent/pcscd.comm")
        .set("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:9");
    let out = h.run(&["credential-process", "--profile", "mfa"]);
    out.fails_with(4, &["\"mfa\"", "tapcred doctor --profile mfa"]);
    let line = out.stderr.trim_end();
    assert!(
        line.chars().count() <= 160,
        "{} chars: {line}",
        line.chars().count()
    );
    let verbose = h.run(&["-v", "credential-process", "--profile", "mfa"]);
    assert_eq!(verbose.code, 4);
    assert!(verbose.stdout.is_empty());
    for tried in ["TAPCRED_TOTP_SECRET", "YubiKey", "typed code"] {
        assert!(
            verbose.stderr.contains(tried),
            "-v should say {tried:?} was tried: {}",
            verbose.stderr
        );
    }
}

// ----- issue 17, items 11–15: what reaches the terminal, inputs that get too far ------------

/// No character a terminal would act on (controls, bidi and invisible formatting) on stdout
/// or stderr, except the line feeds and tabs of tapcred's own layout.
fn no_raw_controls(what: &str, out: &common::Run) {
    for (stream, text) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        let raw: Vec<char> = text
            .chars()
            .filter(|&c| tapcred::text::is_unsafe(c) && !matches!(c, '\n' | '\t'))
            .collect();
        assert!(raw.is_empty(), "{what}: raw {raw:?} on {stream}: {text:?}");
    }
}

fn detached(h: &Home, args: &[&str]) -> common::Run {
    common::Run::from(h.cmd_detached(args).output().expect("run tapcred"))
}

/// Item 11: `--profile`, `AWS_PROFILE` and `AWS_CONFIG_FILE` carrying an OSC 52 clipboard
/// write, a C1 CSI, a bidi override, CR and NEL are shown as escapes, on stderr (errors) and
/// on stdout (doctor's report).
#[test]
fn local_inputs_with_control_characters_are_shown_escaped() {
    let evil = "x\u{1b}]52;c;ZWNobyBwd25lZA==\u{7}\u{9b}2J\u{202e}\r\u{85}y";
    let h = home(MFA_PROFILE);
    for args in [
        &["credential-process", "--profile", evil][..],
        &["export", "--profile", evil],
        &["doctor", "--offline", "--profile", evil],
        &["sessions", "clear", "--profile", evil],
        // clap's own errors quote the argument too.
        &["credential-process", evil],
        &[evil],
    ] {
        let out = detached(&h, args);
        // `sessions clear` of a profile with no sessions succeeds (and says so).
        assert_eq!(
            out.code == 0,
            args[0] == "sessions",
            "{args:?}: {}",
            out.stderr
        );
        no_raw_controls(&format!("{args:?}"), &out);
        let all = format!("{}{}", out.stdout, out.stderr);
        // (clap drops escape sequences from its own errors; tapcred shows them.)
        assert!(all.contains("\\u009b2J"), "{args:?}: {all}");
        if args.len() > 2 {
            assert!(all.contains("\\u001b]52;"), "{args:?}: {all}");
        }
    }
    let mut h = home(MFA_PROFILE);
    h.set("AWS_PROFILE", evil);
    for args in [&["credential-process"][..], &["doctor", "--offline"]] {
        let out = detached(&h, args);
        assert_eq!(out.code, 3, "{args:?}: {}", out.stderr);
        no_raw_controls(&format!("AWS_PROFILE {args:?}"), &out);
        assert!(
            format!("{}{}", out.stdout, out.stderr).contains("\\u202e"),
            "{}",
            out.stderr
        );
    }
    let mut h = home(MFA_PROFILE);
    let dir = h.path().join(format!("conf{evil}"));
    h.set("AWS_CONFIG_FILE", dir.to_str().unwrap())
        .set("AWS_SHARED_CREDENTIALS_FILE", dir.to_str().unwrap());
    let out = detached(&h, &["credential-process", "--profile", "mfa"]);
    out.fails_with(3, &["\\u009b2J"]);
    no_raw_controls("AWS_CONFIG_FILE", &out);
}

/// A loopback HTTP server answering every request with `answer(request body)` (status,
/// body): stands in for STS and IAM where an answer must carry what AWS never sends.
fn answering_server(
    answer: impl Fn(&str) -> (u16, String) + Send + 'static,
) -> (String, std::thread::JoinHandle<()>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let thread = std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let (status, text) = answer(&String::from_utf8_lossy(&body));
            let _ = write!(
                conn,
                "HTTP/1.1 {status} X\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
        }
    });
    (endpoint, thread)
}

/// Item 11: what AWS answers — the user name in GetCallerIdentity's ARN, an IAM error code
/// and message — with CR, LF, U+009B (CSI), U+202E and U+0085: shown as escapes.
#[test]
fn aws_answers_with_control_characters_are_shown_escaped() {
    let user = "evil\u{9b}31m\u{202e}\u{85}name";
    let (endpoint, _server) = answering_server(move |body| {
        if body.contains("Action=GetCallerIdentity") {
            (
                200,
                format!(
                    "<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><GetCallerIdentityResult><Arn>arn:aws:iam::111111111111:user/{user}</Arn><UserId>AIDAEXAMPLE</UserId><Account>111111111111</Account></GetCallerIdentityResult><ResponseMetadata><RequestId>x</RequestId></ResponseMetadata></GetCallerIdentityResponse>"
                ),
            )
        } else {
            (403, "<ErrorResponse xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\"><Error><Type>Sender</Type><Code>Odd\u{202e}Code</Code><Message>line one\r\nline two \u{9b}2J\u{202e}txt.exe\u{85}end</Message></Error><RequestId>x</RequestId></ErrorResponse>".to_owned())
        }
    });
    let mut h = home("");
    h.set("AWS_ENDPOINT_URL", &endpoint);
    let out = detached(
        &h,
        &[
            "enroll",
            "--profile",
            "toolkit-user",
            "--to",
            "file",
            "--device-name",
            "plain",
        ],
    );
    assert_eq!(out.code, 5, "{}", out.stderr);
    no_raw_controls("enroll against odd answers", &out);
    for shown in [
        "evil\\u009b31m\\u202e\\u0085name",
        "Odd\\u202eCode",
        "line one\\r\\nline two \\u009b2J\\u202etxt.exe\\u0085end",
    ] {
        assert!(out.stderr.contains(shown), "{shown}: {}", out.stderr);
    }
}

/// Item 12: an endpoint URL with a space or a control character (or the trailing space of
/// cmd's `set X=url && …`) is refused with exit 3 before any code is read: no code window
/// is spent (the ledger stays empty).
#[test]
fn endpoint_urls_with_spaces_or_controls_are_refused_before_a_code() {
    for (var, url) in [
        ("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:1/a b"),
        ("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:1 "),
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:1/\u{1b}[2J"),
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:1/a\tb"),
    ] {
        let mut h = home(MFA_PROFILE);
        h.set("TAPCRED_TOTP_SECRET", "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ")
            .set(var, url);
        let out = detached(&h, &["credential-process", "--profile", "mfa"]);
        out.fails_with(3, &[var, "\"mfa\"", "space or control character"]);
        no_raw_controls(url, &out);
        let spent: Vec<_> = common::files_under(&h.cache_dir())
            .into_iter()
            .filter(|p| p.to_string_lossy().contains("/steps/"))
            .collect();
        assert!(
            spent.is_empty(),
            "{url:?}: a code window was used: {spent:?}"
        );
    }
}

/// Item 13: completions into a full disk or a closed pipe: exit 7 with one line, no panic.
#[test]
fn completions_into_a_full_disk_or_a_closed_pipe_exit_7() {
    let h = Home::empty();
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    for (what, stdout) in [
        ("/dev/full", std::process::Stdio::from(full)),
        ("a closed pipe", std::process::Stdio::from(writer)),
    ] {
        let mut c = h.cmd(&["completions", "bash"]);
        c.stdout(stdout);
        let out = common::Run::from(c.output().unwrap());
        assert_eq!(out.code, 7, "{what}: {}", out.stderr);
        assert!(
            !out.stderr.contains("internal error"),
            "{what}: {}",
            out.stderr
        );
        assert_eq!(out.stderr.lines().count(), 1, "{what}: {}", out.stderr);
        assert!(out.stderr.starts_with("tapcred: error: "), "{}", out.stderr);
    }
}

/// Item 15: an access key on the command line gets a message pointing at stdin, the prompt
/// and the variables — never echoing the value.
#[test]
fn configure_with_the_key_in_arguments_points_at_stdin() {
    let h = Home::empty();
    for args in [
        &["configure", "--aws-access-key-id", "AKIAIOSFODNN7EXAMPLE"][..],
        &["configure", "--aws-secret-access-key=wJalrXUtnFEMI/K7MDENG"],
        &[
            "configure",
            "--profile",
            "p",
            "--aws-access-key-id",
            "AKIAIOSFODNN7EXAMPLE",
        ],
    ] {
        let out = detached(&h, args);
        out.fails_with(2, &["stdin", "prompt", "AWS_ACCESS_KEY_ID", "never"]);
        assert!(
            !out.stderr.contains("AKIAIOSFODNN7EXAMPLE"),
            "{}",
            out.stderr
        );
        assert!(!out.stderr.contains("wJalrXUtnFEMI"), "{}", out.stderr);
    }
}

/// Item 15: `vault --help` describes the vault as what it is, a token source.
#[test]
fn vault_help_says_it_is_a_token_source() {
    let out = Home::empty().run(&["vault", "--help"]);
    assert_eq!(out.code, 0);
    assert!(!out.stdout.contains("not yet used"), "{}", out.stdout);
    assert!(
        out.stdout.contains("tapcred_token = vault"),
        "{}",
        out.stdout
    );
}

/// Item 15: with no smart-card service, `enroll --touch` (the YubiKey destination) names
/// `--to file` as the way to enroll without one.
#[test]
fn enroll_without_pcscd_names_the_headless_way() {
    let d = common::enroll::new_user_double();
    let mut h = common::enroll::home(&d, "[profile toolkit-user]\nregion = us-east-1\n");
    h.set("PCSCLITE_CSOCK_NAME", "/nonexistent/pcscd.comm");
    let out = detached(&h, &["enroll", "--profile", "toolkit-user", "--touch"]);
    assert_eq!(out.code, 4, "{}", out.stderr);
    let error = out
        .stderr
        .lines()
        .find(|l| l.starts_with("tapcred: error: "))
        .unwrap_or_default();
    assert!(error.contains("--to file"), "{}", out.stderr);
}
