//! The strict STS double, driven by the real `aws-sdk-sts` client (real SigV4 signing, real
//! XML parsing): every rule accepts what it should and rejects what it should.

mod common;

use aws_sdk_sts::Client;
use std::io::{BufRead, BufReader, Read, Write};
use std::time::{SystemTime, UNIX_EPOCH};
use tapcred_testkit::sts_double::{Config, StsDouble, TokenOutcome, design};

// ---- helpers (independent of the double's own code) -----------------------------------

/// RFC 6238 of a base32 seed (tests/common: written again, not the double's math).
fn totp(seed_b32: &str, step: u64) -> String {
    common::totp_b32(seed_b32, step)
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn step_now() -> u64 {
    (unix_now() / 30) as u64
}

fn code_now() -> String {
    totp(design::MFA_SEED_BASE32, step_now())
}

/// A 6-digit code that is valid for none of the steps around now.
fn wrong_code() -> String {
    let s = step_now();
    let near: Vec<String> = (s - 3..=s + 3)
        .map(|k| totp(design::MFA_SEED_BASE32, k))
        .collect();
    (0..1_000_000)
        .map(|n| format!("{n:06}"))
        .find(|c| !near.contains(c))
        .unwrap()
}

use common::rt;

fn client_with(
    double: &StsDouble,
    akid: &str,
    secret: &str,
    token: Option<&str>,
    retries: bool,
) -> Client {
    common::sts_client(&double.endpoint(), akid, secret, token, retries)
}

/// The design user's long-term keys, no retries (so every error surfaces as sent).
fn user_client(double: &StsDouble) -> Client {
    client_with(
        double,
        design::ACCESS_KEY_ID,
        design::SECRET_ACCESS_KEY,
        None,
        false,
    )
}

fn session_client(double: &StsDouble, c: &aws_sdk_sts::types::Credentials) -> Client {
    client_with(
        double,
        c.access_key_id(),
        c.secret_access_key(),
        Some(c.session_token()),
        false,
    )
}

fn design_double() -> StsDouble {
    StsDouble::start(Config::design()).expect("double starts")
}

use common::err_parts;

const MSG_BAD_CODE: &str = "MultiFactorAuthentication failed with invalid MFA one time pass code. ";
const MSG_BAD_SERIAL: &str = "MultiFactorAuthentication failed, unable to validate MFA code. Please verify your MFA serial number is valid and associated with this user.";
const MSG_BOTH: &str =
    "MultiFactorAuthentication failed, must provide both MFA serial number and one time pass code.";

fn denied_msg(caller: &str, role: &str) -> String {
    format!("User: {caller} is not authorized to perform: sts:AssumeRole on resource: {role}")
}

// ---- MFA on AssumeRole ------------------------------------------------------------------

#[test]
fn good_mfa_assume_role_issues_asia_credentials() {
    let double = design_double();
    let rt = rt();
    let code = code_now();
    let before = unix_now();
    let out = rt
        .block_on(
            user_client(&double)
                .assume_role()
                .role_arn(design::ROLE_ARN)
                .role_session_name("alice@example.com")
                .serial_number(design::MFA_SERIAL)
                .token_code(&code)
                .send(),
        )
        .expect("MFA AssumeRole succeeds");
    let creds = out.credentials().unwrap();
    assert!(
        creds.access_key_id().starts_with("ASIA"),
        "{}",
        creds.access_key_id()
    );
    assert_eq!(creds.access_key_id().len(), 20);
    assert!(creds.secret_access_key().len() >= 40);
    assert!(creds.session_token().len() > 100);
    let exp = creds.expiration().secs();
    assert!(
        (before + 3600..=unix_now() + 3601).contains(&exp),
        "default 1h: {exp}"
    );
    let user = out.assumed_role_user().unwrap();
    assert_eq!(
        user.arn(),
        "arn:aws:sts::111111111111:assumed-role/toolkit-role/alice@example.com"
    );
    assert!(user.assumed_role_id().starts_with("AROA"));
    assert!(user.assumed_role_id().ends_with(":alice@example.com"));

    let stats = double.stats();
    assert_eq!(stats.calls("AssumeRole"), 1);
    assert_eq!(stats.ok("AssumeRole"), 1);
    let events = &stats.token_codes;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].outcome, TokenOutcome::Accepted);
    assert_eq!(events[0].serial, design::MFA_SERIAL);
    assert_eq!(events[0].code, code);
    let m = events[0].matched_step.unwrap();
    assert!(m.abs_diff(step_now()) <= 1);
    assert!(stats.issued[0].mfa);
}

#[test]
fn wrong_code_is_rejected_as_invalid_mfa() {
    let double = design_double();
    let rt = rt();
    let err = rt
        .block_on(
            user_client(&double)
                .assume_role()
                .role_arn(design::ROLE_ARN)
                .role_session_name("s1")
                .serial_number(design::MFA_SERIAL)
                .token_code(wrong_code())
                .send(),
        )
        .expect_err("wrong code must fail");
    assert_eq!(
        err_parts(&err),
        (403, "AccessDenied".into(), MSG_BAD_CODE.into())
    );
    let ev = double.token_code_events();
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].outcome, TokenOutcome::WrongCode);
    assert_eq!(double.stats().issued.len(), 0);
}

#[test]
fn code_from_neighbouring_steps_accepted_but_not_further() {
    let double = design_double();
    let rt = rt();
    let c = user_client(&double);
    // Start well inside a window so the whole loop sees the same current step.
    let left = 30 - unix_now() % 30;
    if left < 5 {
        std::thread::sleep(std::time::Duration::from_secs(left as u64 + 1));
    }
    let s = double.current_step();
    for (step, ok) in [(s + 1, true), (s - 1, true), (s + 3, false), (s - 3, false)] {
        let r = rt.block_on(
            c.get_session_token()
                .serial_number(design::MFA_SERIAL)
                .token_code(totp(design::MFA_SEED_BASE32, step))
                .send(),
        );
        if ok {
            r.expect("neighbouring step accepted");
        } else {
            let e = r.expect_err("far step rejected");
            assert_eq!(err_parts(&e).2, MSG_BAD_CODE);
        }
    }
}

#[test]
fn reused_code_is_rejected_like_aws() {
    let double = design_double();
    let rt = rt();
    let c = user_client(&double);
    let code = code_now();
    rt.block_on(
        c.assume_role()
            .role_arn(design::ROLE_ARN)
            .role_session_name("first")
            .serial_number(design::MFA_SERIAL)
            .token_code(&code)
            .send(),
    )
    .expect("first use accepted");
    // Same code again, even for another role and another action.
    for second in [
        rt.block_on(
            c.assume_role()
                .role_arn(design::ROLE_B_ARN)
                .role_session_name("second")
                .serial_number(design::MFA_SERIAL)
                .token_code(&code)
                .send(),
        )
        .map(|_| ())
        .map_err(|e| err_parts(&e)),
        rt.block_on(
            c.get_session_token()
                .serial_number(design::MFA_SERIAL)
                .token_code(&code)
                .send(),
        )
        .map(|_| ())
        .map_err(|e| err_parts(&e)),
    ] {
        assert_eq!(
            second.expect_err("reuse must fail"),
            (403, "AccessDenied".into(), MSG_BAD_CODE.into())
        );
    }
    let ev = double.token_code_events();
    let outcomes: Vec<_> = ev.iter().map(|e| e.outcome).collect();
    assert_eq!(
        outcomes,
        [
            TokenOutcome::Accepted,
            TokenOutcome::Reused,
            TokenOutcome::Reused
        ]
    );
    assert_eq!(ev[1].matched_step, ev[0].matched_step);
}

#[test]
fn wrong_serial_is_rejected() {
    let double = design_double();
    let rt = rt();
    let err = rt
        .block_on(
            user_client(&double)
                .assume_role()
                .role_arn(design::ROLE_ARN)
                .role_session_name("s1")
                .serial_number("arn:aws:iam::111111111111:mfa/someone-else")
                .token_code(code_now())
                .send(),
        )
        .expect_err("foreign serial must fail");
    assert_eq!(
        err_parts(&err),
        (403, "AccessDenied".into(), MSG_BAD_SERIAL.into())
    );
    assert_eq!(
        double.token_code_events()[0].outcome,
        TokenOutcome::UnknownSerial
    );
}

#[test]
fn serial_without_code_and_code_without_serial_are_rejected() {
    let double = design_double();
    let rt = rt();
    let c = user_client(&double);
    let e1 = rt
        .block_on(
            c.assume_role()
                .role_arn(design::ROLE_ARN)
                .role_session_name("s1")
                .serial_number(design::MFA_SERIAL)
                .send(),
        )
        .expect_err("serial alone");
    assert_eq!(
        err_parts(&e1),
        (403, "AccessDenied".into(), MSG_BOTH.into())
    );
    let e2 = rt
        .block_on(c.get_session_token().token_code(code_now()).send())
        .expect_err("code alone");
    assert_eq!(
        err_parts(&e2),
        (403, "AccessDenied".into(), MSG_BOTH.into())
    );
}

#[test]
fn role_requiring_mfa_refuses_a_call_without_mfa() {
    let double = design_double();
    let rt = rt();
    let err = rt
        .block_on(
            user_client(&double)
                .assume_role()
                .role_arn(design::ROLE_ARN)
                .role_session_name("s1")
                .send(),
        )
        .expect_err("no MFA");
    assert_eq!(
        err_parts(&err),
        (
            403,
            "AccessDenied".into(),
            denied_msg(design::USER_ARN, design::ROLE_ARN)
        )
    );
    // A role without the requirement accepts the same call.
    rt.block_on(
        user_client(&double)
            .assume_role()
            .role_arn(design::CHAINED_ROLE_ARN)
            .role_session_name("s1")
            .send(),
    )
    .expect("chained-role needs no MFA");
    // An unknown role is the same AccessDenied.
    let err = rt
        .block_on(
            user_client(&double)
                .assume_role()
                .role_arn("arn:aws:iam::111111111111:role/nope")
                .role_session_name("s1")
                .serial_number(design::MFA_SERIAL)
                .token_code(code_now())
                .send(),
        )
        .expect_err("unknown role");
    assert_eq!(
        err_parts(&err).2,
        denied_msg(design::USER_ARN, "arn:aws:iam::111111111111:role/nope")
    );
}

// ---- session credentials ------------------------------------------------------------------

#[test]
fn mfa_session_credentials_satisfy_mfa_roles_and_plain_ones_do_not() {
    let double = design_double();
    let rt = rt();
    let user = user_client(&double);
    let mfa_session = rt
        .block_on(
            user.get_session_token()
                .serial_number(design::MFA_SERIAL)
                .token_code(code_now())
                .send(),
        )
        .expect("MFA GetSessionToken");
    let mfa_creds = mfa_session.credentials().unwrap().clone();
    let exp = mfa_creds.expiration().secs();
    assert!(
        (unix_now() + 43200 - 5..=unix_now() + 43200).contains(&exp),
        "12h default"
    );

    // One tap, two MFA roles.
    let s = session_client(&double, &mfa_creds);
    for role in [design::ROLE_ARN, design::ROLE_B_ARN] {
        rt.block_on(
            s.assume_role()
                .role_arn(role)
                .role_session_name("day")
                .send(),
        )
        .unwrap_or_else(|e| panic!("MFA session assumes {role}: {:?}", err_parts(&e)));
    }

    // Role → role: a session assumed from an MFA session keeps the MFA flag.
    let a = rt
        .block_on(
            s.assume_role()
                .role_arn(design::ROLE_ARN)
                .role_session_name("hop1")
                .send(),
        )
        .unwrap();
    let hop1 = session_client(&double, a.credentials().unwrap());
    let b = rt
        .block_on(
            hop1.assume_role()
                .role_arn(design::CHAINED_ROLE_ARN)
                .role_session_name("hop2")
                .send(),
        )
        .expect("role → chained-role");
    let hop2 = session_client(&double, b.credentials().unwrap());
    rt.block_on(
        hop2.assume_role()
            .role_arn(design::ROLE_B_ARN)
            .role_session_name("hop3")
            .send(),
    )
    .expect("chained-role session (from MFA) → MFA role");

    // A session obtained without MFA does not satisfy the trust condition.
    let plain = rt
        .block_on(user.get_session_token().send())
        .expect("plain GetSessionToken");
    let p = session_client(&double, plain.credentials().unwrap());
    let err = rt
        .block_on(
            p.assume_role()
                .role_arn(design::ROLE_ARN)
                .role_session_name("xx")
                .send(),
        )
        .expect_err("non-MFA session");
    assert_eq!(
        err_parts(&err),
        (
            403,
            "AccessDenied".into(),
            denied_msg(design::USER_ARN, design::ROLE_ARN)
        )
    );
    // From a role session the message names the assumed-role ARN.
    let nomfa_role = rt
        .block_on(
            user.assume_role()
                .role_arn(design::CHAINED_ROLE_ARN)
                .role_session_name("plain")
                .send(),
        )
        .unwrap();
    let r = session_client(&double, nomfa_role.credentials().unwrap());
    let err = rt
        .block_on(
            r.assume_role()
                .role_arn(design::ROLE_ARN)
                .role_session_name("xx")
                .send(),
        )
        .expect_err("non-MFA role session");
    assert_eq!(
        err_parts(&err).2,
        denied_msg(
            "arn:aws:sts::111111111111:assumed-role/chained-role/plain",
            design::ROLE_ARN
        )
    );
    let issued = double.stats().issued;
    assert!(issued.iter().filter(|i| i.mfa).count() >= 5);
}

#[test]
fn get_session_token_refuses_session_credentials_and_checks_duration() {
    let double = design_double();
    let rt = rt();
    let user = user_client(&double);
    let s = rt.block_on(user.get_session_token().send()).unwrap();
    let sc = session_client(&double, s.credentials().unwrap());
    let err = rt
        .block_on(sc.get_session_token().send())
        .expect_err("GetSessionToken from session creds");
    let (status, code, _) = err_parts(&err);
    assert_eq!((status, code.as_str()), (403, "AccessDenied"));

    for (d, ok) in [(899, false), (900, true), (129600, true), (129601, false)] {
        let r = rt.block_on(user.get_session_token().duration_seconds(d).send());
        match (r, ok) {
            (Ok(o), true) => {
                let exp = o.credentials().unwrap().expiration().secs();
                assert!((exp - unix_now() - d as i64).abs() <= 5);
            }
            (Err(e), false) => assert_eq!(err_parts(&e).1, "ValidationError"),
            (r, _) => panic!(
                "duration {d}: unexpected {:?}",
                r.map(|_| ()).map_err(|e| err_parts(&e))
            ),
        }
    }
}

#[test]
fn role_chaining_is_capped_at_one_hour() {
    let double = design_double();
    let rt = rt();
    let user = user_client(&double);
    let s = rt
        .block_on(
            user.get_session_token()
                .serial_number(design::MFA_SERIAL)
                .token_code(code_now())
                .send(),
        )
        .unwrap();
    let sc = session_client(&double, s.credentials().unwrap());
    let err = rt
        .block_on(
            sc.assume_role()
                .role_arn(design::LONG_ROLE_ARN)
                .role_session_name("long")
                .duration_seconds(7200)
                .send(),
        )
        .expect_err("chained > 1h");
    assert_eq!(
        err_parts(&err),
        (
            400,
            "ValidationError".into(),
            "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining.".into()
        )
    );
    rt.block_on(
        sc.assume_role()
            .role_arn(design::LONG_ROLE_ARN)
            .role_session_name("long")
            .duration_seconds(3600)
            .send(),
    )
    .expect("chained = 1h is fine");
}

#[test]
fn max_session_duration_is_enforced_and_direct_mfa_gets_long_sessions() {
    let double = design_double();
    let rt = rt();
    let user = user_client(&double);
    let s = double.current_step();
    let err = rt
        .block_on(
            user.assume_role()
                .role_arn(design::ROLE_ARN)
                .role_session_name("long")
                .duration_seconds(7200)
                .serial_number(design::MFA_SERIAL)
                .token_code(totp(design::MFA_SEED_BASE32, s))
                .send(),
        )
        .expect_err("toolkit-role max is 1h");
    assert_eq!(
        err_parts(&err),
        (
            400,
            "ValidationError".into(),
            "The requested DurationSeconds exceeds the MaxSessionDuration set for this role."
                .into()
        )
    );
    let out = rt
        .block_on(
            user.assume_role()
                .role_arn(design::LONG_ROLE_ARN)
                .role_session_name("long")
                .duration_seconds(43200)
                .serial_number(design::MFA_SERIAL)
                .token_code(totp(design::MFA_SEED_BASE32, s + 1))
                .send(),
        )
        .expect("long-role allows 12h with MFA on AssumeRole");
    let exp = out.credentials().unwrap().expiration().secs();
    assert!((exp - unix_now() - 43200).abs() <= 5);
    let err = rt
        .block_on(
            user.assume_role()
                .role_arn(design::LONG_ROLE_ARN)
                .role_session_name("long")
                .duration_seconds(43201)
                .send(),
        )
        .expect_err("over the API maximum");
    assert_eq!(err_parts(&err).1, "ValidationError");
}

#[test]
fn external_id_must_match() {
    let double = design_double();
    let rt = rt();
    let user = user_client(&double);
    let want = denied_msg(design::USER_ARN, design::EXTERNAL_ROLE_ARN);
    for ext in [None, Some("wrong-id")] {
        let err = rt
            .block_on(
                user.assume_role()
                    .role_arn(design::EXTERNAL_ROLE_ARN)
                    .role_session_name("xx")
                    .set_external_id(ext.map(str::to_owned))
                    .send(),
            )
            .expect_err("missing or wrong external id");
        assert_eq!(err_parts(&err), (403, "AccessDenied".into(), want.clone()));
    }
    rt.block_on(
        user.assume_role()
            .role_arn(design::EXTERNAL_ROLE_ARN)
            .role_session_name("xx")
            .external_id(design::EXTERNAL_ID)
            .send(),
    )
    .expect("right external id");
}

#[test]
fn role_session_name_rules() {
    let double = design_double();
    let rt = rt();
    let user = user_client(&double);
    for bad in ["has space", "semi;colon", &"x".repeat(65)] {
        let err = rt
            .block_on(
                user.assume_role()
                    .role_arn(design::CHAINED_ROLE_ARN)
                    .role_session_name(bad)
                    .send(),
            )
            .expect_err(bad);
        assert_eq!(err_parts(&err).1, "ValidationError", "{bad}");
    }
    rt.block_on(
        user.assume_role()
            .role_arn(design::CHAINED_ROLE_ARN)
            .role_session_name("a_b+c=d,e.f@g-h")
            .send(),
    )
    .expect("all allowed characters");
}

// ---- authentication ------------------------------------------------------------------------

#[test]
fn unknown_key_and_wrong_secret_are_rejected() {
    let double = design_double();
    let rt = rt();
    let c = client_with(&double, "AKIAUNKNOWNKEY000000", "whatever", None, false);
    let err = rt
        .block_on(c.get_caller_identity().send())
        .expect_err("unknown key");
    assert_eq!(
        err_parts(&err),
        (
            403,
            "InvalidClientTokenId".into(),
            "The security token included in the request is invalid.".into()
        )
    );
    let c = client_with(
        &double,
        design::ACCESS_KEY_ID,
        "not-the-secret",
        None,
        false,
    );
    let err = rt
        .block_on(c.get_caller_identity().send())
        .expect_err("wrong secret");
    let (status, code, msg) = err_parts(&err);
    assert_eq!((status, code.as_str()), (403, "SignatureDoesNotMatch"));
    assert!(msg.starts_with("The request signature we calculated does not match"));
    assert_eq!(double.stats().errors_with_code("SignatureDoesNotMatch"), 1);
}

#[test]
fn session_token_must_accompany_issued_keys() {
    let double = design_double();
    let rt = rt();
    let s = rt
        .block_on(user_client(&double).get_session_token().send())
        .unwrap();
    let c = s.credentials().unwrap();
    for token in [None, Some("forged-token")] {
        let client = client_with(
            &double,
            c.access_key_id(),
            c.secret_access_key(),
            token,
            false,
        );
        let err = rt
            .block_on(client.get_caller_identity().send())
            .expect_err("missing/forged token");
        assert_eq!(err_parts(&err).1, "InvalidClientTokenId");
    }
}

#[test]
fn revoked_sessions_become_invalid() {
    let double = design_double();
    let rt = rt();
    let s = rt
        .block_on(user_client(&double).get_session_token().send())
        .unwrap();
    let sc = session_client(&double, s.credentials().unwrap());
    rt.block_on(sc.get_caller_identity().send())
        .expect("works before revocation");
    double.revoke_all_sessions();
    let err = rt
        .block_on(sc.get_caller_identity().send())
        .expect_err("revoked");
    assert_eq!(
        err_parts(&err),
        (
            403,
            "InvalidClientTokenId".into(),
            "The security token included in the request is invalid.".into()
        )
    );
    // Long-term keys still work.
    rt.block_on(user_client(&double).get_caller_identity().send())
        .expect("user keys unaffected");
    assert!(double.stats().issued.iter().all(|i| i.revoked));
}

#[test]
fn forced_short_lifetime_then_expired_token() {
    let double = design_double();
    let rt = rt();
    double.set_issued_lifetime(Some(1));
    let out = rt
        .block_on(
            user_client(&double)
                .assume_role()
                .role_arn(design::CHAINED_ROLE_ARN)
                .role_session_name("short")
                .duration_seconds(3600)
                .send(),
        )
        .unwrap();
    let c = out.credentials().unwrap();
    assert!(
        c.expiration().secs() <= unix_now() + 1,
        "Expiration tells the truth"
    );
    let info = &double.stats().issued[0];
    assert_eq!((info.requested_duration, info.lifetime), (3600, 1));
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let err = rt
        .block_on(session_client(&double, c).get_caller_identity().send())
        .expect_err("expired");
    assert_eq!(
        err_parts(&err),
        (
            403,
            "ExpiredToken".into(),
            "The security token included in the request is expired".into()
        )
    );
    double.set_issued_lifetime(None);
    let out = rt
        .block_on(user_client(&double).get_session_token().send())
        .unwrap();
    assert!(out.credentials().unwrap().expiration().secs() > unix_now() + 43000);
}

#[test]
fn throttling_surfaces_without_retries_and_is_retried_by_the_sdk() {
    let double = design_double();
    let rt = rt();
    double.throttle_next(1);
    let err = rt
        .block_on(user_client(&double).get_caller_identity().send())
        .expect_err("throttled");
    assert_eq!(
        err_parts(&err),
        (400, "Throttling".into(), "Rate exceeded".into())
    );
    // The SDK's standard retry strategy retries Throttling: one throttled + one good call.
    double.reset_stats();
    double.throttle_next(1);
    let retrying = client_with(
        &double,
        design::ACCESS_KEY_ID,
        design::SECRET_ACCESS_KEY,
        None,
        true,
    );
    rt.block_on(retrying.get_caller_identity().send())
        .expect("retried after throttling");
    let stats = double.stats();
    assert_eq!(stats.calls("GetCallerIdentity"), 2);
    assert_eq!(stats.ok("GetCallerIdentity"), 1);
    assert_eq!(stats.errors_with_code("Throttling"), 1);
}

#[test]
fn clock_skew_is_rejected_and_the_sdk_corrects_it_from_the_date_header() {
    let double = design_double();
    let rt = rt();
    double.set_clock_offset(600);
    let err = rt
        .block_on(user_client(&double).get_caller_identity().send())
        .expect_err("10 min skew");
    let (status, code, msg) = err_parts(&err);
    assert_eq!((status, code.as_str()), (403, "SignatureDoesNotMatch"));
    assert!(msg.starts_with("Signature expired: "), "{msg}");
    assert!(msg.ends_with(" - 5 min.)"), "{msg}");
    // With retries the SDK reads the double's Date header, corrects its clock and re-signs.
    double.reset_stats();
    let retrying = client_with(
        &double,
        design::ACCESS_KEY_ID,
        design::SECRET_ACCESS_KEY,
        None,
        true,
    );
    rt.block_on(retrying.get_caller_identity().send())
        .expect("skew-corrected retry succeeds");
    assert_eq!(double.stats().calls("GetCallerIdentity"), 2);
    // Behind by 10 minutes: "not yet current".
    double.set_clock_offset(-600);
    let err = rt
        .block_on(user_client(&double).get_caller_identity().send())
        .expect_err("-10 min skew");
    assert!(err_parts(&err).2.starts_with("Signature not yet current: "));
}

// ---- GetCallerIdentity ---------------------------------------------------------------------

#[test]
fn get_caller_identity_for_user_session_and_role_credentials() {
    let double = design_double();
    let rt = rt();
    let user = user_client(&double);
    let me = rt.block_on(user.get_caller_identity().send()).unwrap();
    assert_eq!(me.arn(), Some(design::USER_ARN));
    assert_eq!(me.account(), Some(design::ACCOUNT));
    assert!(me.user_id().unwrap().starts_with("AIDA"));

    let s = rt.block_on(user.get_session_token().send()).unwrap();
    let me2 = rt
        .block_on(
            session_client(&double, s.credentials().unwrap())
                .get_caller_identity()
                .send(),
        )
        .unwrap();
    assert_eq!(
        me2.arn(),
        Some(design::USER_ARN),
        "GetSessionToken acts as the user"
    );

    let r = rt
        .block_on(
            user.assume_role()
                .role_arn(design::ROLE_ARN)
                .role_session_name("who-am-i")
                .serial_number(design::MFA_SERIAL)
                .token_code(code_now())
                .send(),
        )
        .unwrap();
    let me3 = rt
        .block_on(
            session_client(&double, r.credentials().unwrap())
                .get_caller_identity()
                .send(),
        )
        .unwrap();
    assert_eq!(
        me3.arn(),
        Some("arn:aws:sts::111111111111:assumed-role/toolkit-role/who-am-i")
    );
    assert_eq!(me3.account(), Some(design::ACCOUNT));
    assert_eq!(
        me3.user_id(),
        Some(r.assumed_role_user().unwrap().assumed_role_id())
    );
    let stats = double.stats();
    assert_eq!(stats.calls("GetCallerIdentity"), 3);
    assert_eq!(stats.calls("GetSessionToken"), 1);
    assert_eq!(stats.calls("AssumeRole"), 1);
}

// ---- raw HTTP: tampering, GET, admin surface, the binary -----------------------------------

/// Minimal HTTP/1.1 client over loopback: returns (status, body).
fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Sign a request the way an SDK would (independently of the double's verifier settings).
fn sign_headers(host: &str, method: &str, path_query: &str, body: &[u8]) -> Vec<(String, String)> {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    let identity = aws_credential_types::Credentials::new(
        design::ACCESS_KEY_ID,
        design::SECRET_ACCESS_KEY,
        None,
        None,
        "t",
    )
    .into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("sts")
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let mut headers = vec![
        ("host".to_owned(), host.to_owned()),
        (
            "content-type".to_owned(),
            "application/x-www-form-urlencoded".to_owned(),
        ),
    ];
    let uri = format!("http://{host}{path_query}");
    let signable = SignableRequest::new(
        method,
        uri.as_str(),
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Bytes(body),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    for (k, v) in instructions.headers() {
        headers.push((k.to_owned(), v.to_owned()));
    }
    headers
}

#[test]
fn tampered_body_fails_the_signature_and_get_query_works() {
    let double = design_double();
    let host = format!("127.0.0.1:{}", double.port());
    let body = b"Action=GetSessionToken&Version=2011-06-15&DurationSeconds=900";
    let h = sign_headers(&host, "POST", "/", body);
    let (status, xml) = http(&host, "POST", "/", &h, body);
    assert_eq!(status, 200, "{xml}");
    assert!(
        xml.contains(
            "<GetSessionTokenResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">"
        )
    );

    let tampered = b"Action=GetSessionToken&Version=2011-06-15&DurationSeconds=901";
    let (status, xml) = http(&host, "POST", "/", &h, tampered);
    assert_eq!(status, 403);
    assert!(xml.contains("<Code>SignatureDoesNotMatch</Code>"), "{xml}");
    assert!(xml.contains("<Type>Sender</Type>"));
    assert!(xml.contains("<RequestId>"));

    // The Authorization header with one hex digit of the signature flipped.
    let mut h2 = sign_headers(&host, "POST", "/", body);
    for (k, v) in h2.iter_mut() {
        if k.eq_ignore_ascii_case("authorization") {
            let last = v.pop().unwrap();
            v.push(if last == '0' { '1' } else { '0' });
        }
    }
    let (status, xml) = http(&host, "POST", "/", &h2, body);
    assert_eq!(status, 403);
    assert!(xml.contains("<Code>SignatureDoesNotMatch</Code>"), "{xml}");

    // GET with the action in the (signed) query string.
    let pq = "/?Action=GetCallerIdentity&Version=2011-06-15";
    let h = sign_headers(&host, "GET", pq, b"");
    let (status, xml) = http(&host, "GET", pq, &h, b"");
    assert_eq!(status, 200, "{xml}");
    assert!(xml.contains(&format!("<Arn>{}</Arn>", design::USER_ARN)));

    // No Authorization at all.
    let (status, xml) = http(&host, "POST", "/", &[], body);
    assert_eq!(status, 403);
    assert!(xml.contains("<Code>MissingAuthenticationToken</Code>"));

    // Unknown action, properly signed.
    let body = b"Action=DecodeAuthorizationMessage&Version=2011-06-15";
    let h = sign_headers(&host, "POST", "/", body);
    let (status, xml) = http(&host, "POST", "/", &h, body);
    assert_eq!(status, 400);
    assert!(xml.contains("<Code>InvalidAction</Code>"));
}

#[test]
fn admin_surface_serves_stats_and_fault_injection() {
    let double = design_double();
    let host = format!("127.0.0.1:{}", double.port());
    let rt = rt();
    rt.block_on(user_client(&double).get_caller_identity().send())
        .unwrap();
    let (status, json) = http(&host, "GET", "/_double/stats", &[], b"");
    assert_eq!(status, 200);
    let stats: tapcred_testkit::sts_double::Stats = serde_json::from_str(&json).unwrap();
    assert_eq!(stats.calls("GetCallerIdentity"), 1);
    assert!(!json.contains(design::SECRET_ACCESS_KEY));

    assert_eq!(
        http(&host, "POST", "/_double/throttle?n=1", &[], b"").0,
        200
    );
    let err = rt
        .block_on(user_client(&double).get_caller_identity().send())
        .expect_err("throttled via admin");
    assert_eq!(err_parts(&err).1, "Throttling");
    assert_eq!(http(&host, "POST", "/_double/revoke-all", &[], b"").0, 200);
    assert_eq!(
        http(&host, "POST", "/_double/issued-lifetime?secs=5", &[], b"").0,
        200
    );
    let out = rt
        .block_on(user_client(&double).get_session_token().send())
        .unwrap();
    assert!(out.credentials().unwrap().expiration().secs() <= unix_now() + 5);
    assert_eq!(http(&host, "POST", "/_double/reset-stats", &[], b"").0, 200);
    assert_eq!(double.stats().requests, 0);
    assert_eq!(http(&host, "GET", "/_double/nope", &[], b"").0, 404);
}

#[test]
fn binary_serves_the_design_fixture() {
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/sts-double/design.json"
    );
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tapcred-sts-double"))
        .args(["--config", fixture])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let endpoint = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("first line: {line:?}"))
        .to_owned();
    let host = endpoint.strip_prefix("http://").unwrap().to_owned();
    let body = b"Action=GetCallerIdentity&Version=2011-06-15";
    let h = sign_headers(&host, "POST", "/", body);
    let (status, xml) = http(&host, "POST", "/", &h, body);
    let (s2, json) = http(&host, "GET", "/_double/stats", &[], b"");
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(status, 200, "{xml}");
    assert!(xml.contains("<Account>111111111111</Account>"));
    assert_eq!(s2, 200);
    assert!(json.contains("\"GetCallerIdentity\""));
}

#[test]
fn builder_config_and_json_config_agree() {
    use tapcred_testkit::sts_double::{RoleSpec, UserSpec};
    let double = StsDouble::builder()
        .user(
            UserSpec::new("dev", "222222222222", "AKIADEVEXAMPLE000001", "dev-secret")
                .mfa_device("GAHT12345678", "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"),
        )
        .role(
            RoleSpec::new("arn:aws:iam::222222222222:role/path/admin")
                .require_mfa(true)
                .trust_principal("arn:aws:iam::222222222222:user/dev"),
        )
        .start()
        .unwrap();
    let rt = rt();
    let c = client_with(&double, "AKIADEVEXAMPLE000001", "dev-secret", None, false);
    let out = rt
        .block_on(
            c.assume_role()
                .role_arn("arn:aws:iam::222222222222:role/path/admin")
                .role_session_name("dev")
                .serial_number("GAHT12345678")
                .token_code(totp("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", step_now()))
                .send(),
        )
        .expect("hardware-style serial");
    assert_eq!(
        out.assumed_role_user().unwrap().arn(),
        "arn:aws:sts::222222222222:assumed-role/admin/dev"
    );
    assert!(Config::from_json("{\"users\": [], \"bogus\": 1}").is_err());
    assert!(Config::from_json(r#"{"roles":[{"arn":"arn:aws:iam::1:role/x"}]}"#).is_err());
    let d = Config::design();
    assert_eq!(d.users.len(), 1);
    assert_eq!(d.roles.len(), 5);
    assert!(
        !format!("{d:?}").contains(design::SECRET_ACCESS_KEY),
        "Debug redacts"
    );
}

// ---- a second SigV4 implementation: botocore through the AWS CLI -------------------------

fn aws_cli() -> Option<std::path::PathBuf> {
    ["/usr/bin/aws", "/usr/local/bin/aws"]
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.is_file())
}

fn run_aws(
    exe: &std::path::Path,
    endpoint: &str,
    env: &[(&str, &str)],
    args: &[&str],
) -> (bool, String, String) {
    let mut cmd = std::process::Command::new(exe);
    cmd.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", std::env::temp_dir())
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .args(["--endpoint-url", endpoint, "--output", "json"])
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn aws_cli_requests_verify_and_errors_read_as_aws() {
    let Some(aws) = aws_cli() else {
        tapcred_testkit::ci::skip(
            "aws_cli_requests_verify_and_errors_read_as_aws",
            "/usr/bin/aws is missing (apt-get install awscli)",
        );
        return;
    };
    let double = design_double();
    let ep = double.endpoint();
    let keys = [
        ("AWS_ACCESS_KEY_ID", design::ACCESS_KEY_ID),
        ("AWS_SECRET_ACCESS_KEY", design::SECRET_ACCESS_KEY),
    ];
    let (ok, out, err) = run_aws(&aws, &ep, &keys, &["sts", "get-caller-identity"]);
    assert!(ok, "{err}");
    assert!(out.contains(design::USER_ARN), "{out}");

    let code = code_now();
    let args = [
        "sts",
        "assume-role",
        "--role-arn",
        design::ROLE_ARN,
        "--role-session-name",
        "cli",
        "--serial-number",
        design::MFA_SERIAL,
        "--token-code",
        &code,
    ];
    let (ok, out, err) = run_aws(&aws, &ep, &keys, &args);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let c = &v["Credentials"];
    let (ak, sk, st) = (
        c["AccessKeyId"].as_str().unwrap().to_owned(),
        c["SecretAccessKey"].as_str().unwrap().to_owned(),
        c["SessionToken"].as_str().unwrap().to_owned(),
    );
    // Same code again: botocore shows AWS's error text.
    let (ok, _, err) = run_aws(&aws, &ep, &keys, &args);
    assert!(!ok);
    assert!(
        err.contains("(AccessDenied)") && err.contains("invalid MFA one time pass code"),
        "{err}"
    );
    // botocore signing with a session token.
    let session = [
        ("AWS_ACCESS_KEY_ID", ak.as_str()),
        ("AWS_SECRET_ACCESS_KEY", sk.as_str()),
        ("AWS_SESSION_TOKEN", st.as_str()),
    ];
    let (ok, out, err) = run_aws(&aws, &ep, &session, &["sts", "get-caller-identity"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("arn:aws:sts::111111111111:assumed-role/toolkit-role/cli"),
        "{out}"
    );
}

#[test]
fn concurrent_clients_are_all_served_and_counted() {
    let double = design_double();
    let started = std::time::Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                let rt = rt();
                let c = user_client(&double);
                for _ in 0..25 {
                    rt.block_on(c.get_caller_identity().send())
                        .expect("concurrent GetCallerIdentity");
                }
            });
        }
    });
    let elapsed = started.elapsed();
    let stats = double.stats();
    assert_eq!(stats.requests, 200);
    assert_eq!(stats.ok("GetCallerIdentity"), 200);
    eprintln!("200 signed GetCallerIdentity calls from 8 clients in {elapsed:?}");
}
