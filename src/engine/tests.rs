//! The engine's flow with a fake STS (strict about reused codes, able to revoke sessions) and
//! a counting token source: cache hits, single flight, the step ledger, MFA-session reuse.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use secrecy::SecretString;

use super::*;
use crate::clock::window_of;
use crate::error::ErrorKind;
use crate::profile::BaseCredentials;
use crate::token::TokenSettings;
use crate::ui::{RecordingUi, UiEvent};

const SERIAL: &str = "arn:aws:iam::111111111111:mfa/toolkit-user";
const BASE_KEY: &str = "AKIAIOSFODNN7EXAMPLE";

#[derive(Default)]
struct StsLog {
    /// (operation, signing access key id, MFA code sent, duration)
    calls: Vec<(&'static str, String, Option<String>, Option<u32>)>,
    used_codes: HashSet<(String, String)>,
    revoked: HashSet<String>,
    /// Signing keys STS denies with this (foreign) message text.
    denied: std::collections::HashMap<String, String>,
    /// Errors to answer the next calls with (front first), after logging them.
    fail_next: std::collections::VecDeque<Error>,
    issued: usize,
}

#[derive(Clone, Default)]
struct FakeSts(Arc<Mutex<StsLog>>);

impl FakeSts {
    fn issue(&self, prefix: &str, duration: Option<u32>) -> Credentials {
        let mut l = self.0.lock().unwrap();
        l.issued += 1;
        let n = l.issued;
        Credentials::new(
            format!("ASIA{prefix}{n:04}"),
            format!("secret-{n}"),
            Some(format!("token-{n}")),
            Some(clock::now_utc() + time::Duration::seconds(duration.unwrap_or(3600) as i64)),
        )
    }
    fn check(
        &self,
        op: &'static str,
        creds: &Credentials,
        mfa: Option<MfaCode<'_>>,
        duration: Option<u32>,
        ctx: CallContext<'_>,
    ) -> Result<()> {
        let mut l = self.0.lock().unwrap();
        l.calls.push((
            op,
            creds.access_key_id.clone(),
            mfa.map(|m| m.code.to_owned()),
            duration,
        ));
        if l.revoked.contains(&creds.access_key_id) {
            // The wording of sts::explain for InvalidClientTokenId.
            return Err(Error::auth(format!(
                "profile \"{}\": STS does not know the access key of profile \"{}\" (deleted, deactivated or mistyped, or a revoked session); update the keys in profile \"{}\"",
                ctx.profile, ctx.signer, ctx.signer
            ))
            .with_reason(Reason::SessionRejected));
        }
        if let Some(e) = l.fail_next.pop_front() {
            return Err(e);
        }
        if let Some(text) = l.denied.get(&creds.access_key_id) {
            // The wording of sts::explain for an AccessDenied it has no special case for:
            // STS's own message text follows.
            return Err(Error::auth(format!(
                "profile \"{}\": STS denied {op}: {text}",
                ctx.profile
            ))
            .with_reason(Reason::Refused));
        }
        if let Some(m) = mfa
            && !l
                .used_codes
                .insert((m.serial.to_owned(), m.code.to_owned()))
        {
            return Err(Error::auth(format!(
                "profile \"{}\": STS rejected the MFA code (invalid MFA one time pass code)",
                ctx.profile
            ))
            .with_reason(Reason::CodeRejected));
        }
        Ok(())
    }
    fn calls(&self) -> Vec<(&'static str, String, Option<String>, Option<u32>)> {
        self.0.lock().unwrap().calls.clone()
    }
    fn ops(&self) -> Vec<&'static str> {
        self.calls().into_iter().map(|c| c.0).collect()
    }
    fn fail_next(&self, e: Error) {
        self.0.lock().unwrap().fail_next.push_back(e);
    }
    fn deny(&self, akid: &str, text: &str) {
        self.0
            .lock()
            .unwrap()
            .denied
            .insert(akid.to_owned(), text.to_owned());
    }
    fn revoke(&self, akid: &str) {
        self.0.lock().unwrap().revoked.insert(akid.to_owned());
    }
}

impl StsApi for FakeSts {
    fn get_session_token(
        &self,
        creds: &Credentials,
        mfa: Option<MfaCode<'_>>,
        duration: Option<u32>,
        ctx: CallContext<'_>,
    ) -> Result<Credentials> {
        self.check("GetSessionToken", creds, mfa, duration, ctx)?;
        Ok(self.issue("GST", duration))
    }
    fn assume_role(
        &self,
        creds: &Credentials,
        role: &RoleStep,
        mfa: Option<MfaCode<'_>>,
        duration: Option<u32>,
        ctx: CallContext<'_>,
    ) -> Result<Credentials> {
        self.check("AssumeRole", creds, mfa, duration, ctx)?;
        let name = role.role_arn.rsplit('/').next().unwrap().to_uppercase();
        Ok(self.issue(&name, duration))
    }
}

/// A TOTP-like source: the "code" is the window number, so reuse is visible.
struct FakeToken {
    reads: Arc<AtomicUsize>,
}

impl TokenSource for FakeToken {
    fn describe(&self) -> String {
        "fake token".into()
    }
    fn code(&mut self, req: &CodeRequest<'_>, _ui: &dyn Ui) -> Result<Code> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        let (start, end) = window_of(req.at, 30);
        Ok(Code {
            digits: format!("{:06}", (start / 30) % 1_000_000).into(),
            window_start: start,
            window_end: end,
        })
    }
}

struct World {
    dir: tempfile::TempDir,
    sts: FakeSts,
    reads: Arc<AtomicUsize>,
    sts_inits: Arc<AtomicUsize>,
    ui: RecordingUi,
}

impl World {
    fn new() -> World {
        World {
            dir: tempfile::tempdir().unwrap(),
            sts: FakeSts::default(),
            reads: Arc::new(AtomicUsize::new(0)),
            sts_inits: Arc::new(AtomicUsize::new(0)),
            ui: RecordingUi {
                no_sleep: true,
                ..RecordingUi::default()
            },
        }
    }
    fn cache(&self) -> SessionCache {
        SessionCache::open(self.dir.path().join("cache"), &self.ui)
            .with_fallback_dir(Some(self.dir.path().join("fb")))
    }
    fn obtain(&self, p: &ResolvedProfile, opts: &Options) -> Result<(Credentials, bool)> {
        let cache = self.cache();
        self.obtain_with(&cache, p, opts)
    }
    fn obtain_with(
        &self,
        cache: &SessionCache,
        p: &ResolvedProfile,
        opts: &Options,
    ) -> Result<(Credentials, bool)> {
        let sts = self.sts.clone();
        let inits = self.sts_inits.clone();
        let reads = self.reads.clone();
        let mut e = Engine::new(
            cache,
            &self.ui,
            Box::new(move || {
                inits.fetch_add(1, Ordering::SeqCst);
                Ok(Box::new(sts.clone()) as Box<dyn StsApi>)
            }),
            Box::new(move |_mfa: &Mfa| {
                Ok(Box::new(FakeToken {
                    reads: reads.clone(),
                }) as Box<dyn TokenSource>)
            }),
        );
        e.obtain(p, &target(), opts, DEFAULT_SESSION_SECONDS)
    }
    fn reads(&self) -> usize {
        self.reads.load(Ordering::SeqCst)
    }
    /// Waits because a window was already used (waits for "too little left" depend on
    /// when the test runs and are not counted).
    fn waits(&self) -> usize {
        self.ui
            .events()
            .iter()
            .filter(|e| matches!(e, UiEvent::Wait { what, .. } if what.contains("already used")))
            .count()
    }
}

fn target() -> StsTarget {
    StsTarget {
        region: "us-east-1".into(),
        endpoint_url: Some("http://127.0.0.1:9".into()),
    }
}

fn mfa() -> Mfa {
    Mfa {
        serial: SERIAL.into(),
        token: TokenSettings::default(),
    }
}

fn base() -> BaseCredentials {
    BaseCredentials {
        origin: "toolkit-user".into(),
        access_key_id: BASE_KEY.into(),
        secret_access_key: SecretString::from("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
        session_token: None,
        in_vault: None,
    }
}

fn resolved(name: &str, steps: Vec<Step>) -> ResolvedProfile {
    ResolvedProfile {
        name: name.into(),
        region: None,
        endpoint_url: None,
        ignore_configured_endpoint_urls: false,
        base: base(),
        steps,
        token: TokenSettings::default(),
        roles_anywhere: None,
    }
}

fn role_profile(name: &str, role: &str, duration: Option<u32>) -> ResolvedProfile {
    resolved(
        name,
        vec![Step::AssumeRole(RoleStep {
            profile: name.into(),
            role_arn: format!("arn:aws:iam::111111111111:role/{role}"),
            external_id: None,
            role_session_name: None,
            duration_seconds: duration,
            mfa: Some(mfa()),
        })],
    )
}

fn gst_profile(name: &str) -> ResolvedProfile {
    resolved(
        name,
        vec![Step::SessionToken {
            profile: name.into(),
            mfa: mfa(),
            duration_seconds: None,
        }],
    )
}

#[test]
fn warm_path_makes_no_sts_client_and_reads_no_code() {
    let w = World::new();
    let p = gst_profile("mfa");
    let (a, hit) = w.obtain(&p, &Options::default()).unwrap();
    assert!(!hit);
    assert_eq!((w.reads(), w.sts.ops().len()), (1, 1));
    let inits = w.sts_inits.load(Ordering::SeqCst);
    for _ in 0..3 {
        let (b, hit) = w.obtain(&p, &Options::default()).unwrap();
        assert!(hit);
        assert_eq!(b.access_key_id, a.access_key_id);
        assert_eq!(b.secret(), a.secret());
        assert_eq!(b.token(), a.token());
    }
    assert_eq!(
        w.sts_inits.load(Ordering::SeqCst),
        inits,
        "no STS client on a hit"
    );
    assert_eq!((w.reads(), w.sts.ops().len()), (1, 1));
}

#[test]
fn no_cache_bypasses_the_cache_but_not_the_ledger() {
    let w = World::new();
    let p = gst_profile("mfa");
    let opts = Options {
        no_cache: true,
        ..Default::default()
    };
    w.obtain(&p, &opts).unwrap();
    w.obtain(&p, &opts).unwrap();
    assert_eq!(w.reads(), 2);
    assert_eq!(w.sts.ops(), vec!["GetSessionToken", "GetSessionToken"]);
    // The second call waited for a fresh window, so STS saw two different codes.
    assert_eq!(w.waits(), 1, "{:?}", w.ui.events());
    assert!(w.cache().list().is_empty(), "nothing stored");
}

#[test]
fn three_roles_in_a_row_cost_one_code() {
    let w = World::new();
    let mut keys = HashSet::new();
    for r in ["admin", "dev", "audit"] {
        let (c, _) = w
            .obtain(&role_profile(r, r, None), &Options::default())
            .unwrap();
        assert!(c.access_key_id.contains(&r.to_uppercase()));
        keys.insert(c.access_key_id);
    }
    assert_eq!(keys.len(), 3);
    assert_eq!(w.reads(), 1, "one tap for three roles");
    let calls = w.sts.calls();
    let ops: Vec<_> = calls.iter().map(|c| c.0).collect();
    assert_eq!(
        ops,
        vec!["GetSessionToken", "AssumeRole", "AssumeRole", "AssumeRole"]
    );
    // The MFA session: 12 h, signed by the base keys, with a code; roles signed by it, no code.
    assert_eq!(calls[0].1, BASE_KEY);
    assert!(calls[0].2.is_some());
    assert_eq!(calls[0].3, Some(DEFAULT_SESSION_SECONDS));
    for c in &calls[1..] {
        assert!(c.1.starts_with("ASIAGST"), "{c:?}");
        assert!(c.2.is_none());
    }
    // A plain mfa_serial profile of the same source shares that MFA session.
    let (c, hit) = w.obtain(&gst_profile("mfa"), &Options::default()).unwrap();
    assert!(hit && c.access_key_id.starts_with("ASIAGST"));
    assert_eq!(w.reads(), 1);
    // tapcred sessions: one MFA session + three roles.
    assert_eq!(w.cache().list().len(), 4);
}

#[test]
fn no_session_sends_mfa_on_assume_role_and_never_reuses_a_code() {
    let w = World::new();
    let opts = Options {
        no_session: true,
        ..Default::default()
    };
    let before = crate::clock::now_unix();
    w.obtain(&role_profile("a", "a", None), &opts).unwrap();
    w.obtain(&role_profile("b", "b", None), &opts).unwrap();
    let after = crate::clock::now_unix();
    let calls = w.sts.calls();
    assert_eq!(calls.len(), 2);
    assert!(calls.iter().all(|c| c.0 == "AssumeRole" && c.1 == BASE_KEY));
    assert_ne!(calls[0].2, calls[1].2, "two different codes");
    assert_eq!(w.reads(), 2);
    // The test runs on the real clock: when a window boundary passed between the two calls
    // (a loaded machine), the second call had a fresh window and needed no wait.
    // When the first call came with under MIN_SECONDS_LEFT left, it took the next window,
    // and the second waits for the one after: up to 30 + MIN_SECONDS_LEFT seconds.
    if before / 30 == after / 30 {
        assert_eq!(w.waits(), 1, "the second call waited for the next window");
        assert!(w.ui.events().iter().any(|e| matches!(e,
            UiEvent::Wait { what, seconds }
                if what.contains("already used") && *seconds <= 30 + crate::engine::MIN_SECONDS_LEFT)));
    } else {
        assert!(w.waits() <= 1);
    }
}

#[test]
fn long_durations_go_direct_and_are_cached_separately() {
    let w = World::new();
    let p = role_profile("long", "long", Some(4 * 3600));
    let (a, _) = w.obtain(&p, &Options::default()).unwrap();
    let calls = w.sts.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].0, "AssumeRole");
    assert_eq!(calls[0].1, BASE_KEY);
    assert!(calls[0].2.is_some(), "MFA on AssumeRole");
    assert_eq!(calls[0].3, Some(4 * 3600));
    let (b, hit) = w.obtain(&p, &Options::default()).unwrap();
    assert!(hit);
    assert_eq!(a.access_key_id, b.access_key_id);
    // The same role at 1 h is another session (via the MFA session).
    let (c, _) = w
        .obtain(
            &role_profile("long", "long", Some(3600)),
            &Options::default(),
        )
        .unwrap();
    assert_ne!(c.access_key_id, a.access_key_id);
}

#[test]
fn temporary_base_credentials_cannot_make_an_mfa_session() {
    let w = World::new();
    let mut p = role_profile("r", "r", None);
    p.base.session_token = Some(SecretString::from("env-session"));
    w.obtain(&p, &Options::default()).unwrap();
    assert_eq!(w.sts.ops(), vec!["AssumeRole"]);
    assert!(w.sts.calls()[0].2.is_some());
}

#[test]
fn a_revoked_mfa_session_is_dropped_and_renewed_once() {
    let w = World::new();
    w.obtain(&role_profile("a", "a", None), &Options::default())
        .unwrap();
    let gst = w.sts.calls()[1].1.clone(); // the session that signed the AssumeRole
    assert!(gst.starts_with("ASIAGST"));
    w.sts.revoke(&gst);
    // A new role: the cached (revoked) session is tried, rejected, dropped, renewed.
    let (c, hit) = w
        .obtain(&role_profile("b", "b", None), &Options::default())
        .unwrap();
    assert!(!hit && c.access_key_id.contains('B'));
    assert_eq!(w.reads(), 2);
    let ops = w.sts.ops();
    assert_eq!(
        ops,
        vec![
            "GetSessionToken",
            "AssumeRole",
            "AssumeRole", // rejected: revoked
            "GetSessionToken",
            "AssumeRole"
        ]
    );
    assert!(w.ui.events().iter().any(|e| matches!(e,
        UiEvent::Info(m) if m.contains("rejected by STS"))));
    // Both sessions are now good; a third role costs no code.
    w.obtain(&role_profile("c", "c", None), &Options::default())
        .unwrap();
    assert_eq!(w.reads(), 2);
}

/// Finding 11.11: whether a cached session was revoked is decided on STS's error code, not
/// on words in a message. A plain denial whose (foreign) text happens to say "have expired"
/// or "revoked session" must not drop the cached MFA session nor cost another code.
#[test]
fn a_denial_that_mentions_expiry_is_not_a_revoked_session() {
    let w = World::new();
    w.obtain(&role_profile("a", "a", None), &Options::default())
        .unwrap();
    let gst = w.sts.calls()[1].1.clone();
    assert!(gst.starts_with("ASIAGST"));
    w.sts.deny(
        &gst,
        "User is not authorized to perform: sts:AssumeRole: the grants of this revoked session have expired",
    );
    let err = w
        .obtain(&role_profile("b", "b", None), &Options::default())
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Auth);
    assert_eq!(w.reads(), 1, "a denial costs no new code: {err}");
    assert_eq!(
        w.sts.ops(),
        vec!["GetSessionToken", "AssumeRole", "AssumeRole"]
    );
    assert!(
        w.cache()
            .list()
            .iter()
            .any(|e| e.kind == SessionKind::GetSessionToken),
        "the MFA session stays cached"
    );
}

/// Finding 11.11, the other way round: a session rejection is recognised by its reason
/// whatever the message says.
#[test]
fn a_typed_session_rejection_is_recognised_whatever_its_wording() {
    let e = Error::auth("any words at all").with_reason(Reason::SessionRejected);
    assert!(is_invalid_session(&e));
    let e = Error::auth("STS does not know the access key (a revoked session); have expired");
    assert!(!is_invalid_session(&e));
    let e = Error::auth("revoked session").with_reason(Reason::Refused);
    assert!(!is_invalid_session(&e));
}

#[test]
fn a_revoked_fresh_session_is_an_error_not_a_loop() {
    let w = World::new();
    w.obtain(&role_profile("a", "a", None), &Options::default())
        .unwrap();
    // Revoke everything the fake will ever issue from here on, too.
    for n in 0..20 {
        w.sts.revoke(&format!("ASIAGST{n:04}"));
    }
    let err = w
        .obtain(&role_profile("b", "b", None), &Options::default())
        .unwrap_err();
    assert!(err.message().contains("revoked session"), "{err}");
    assert_eq!(w.reads(), 2, "exactly one fresh MFA attempt");
}

#[test]
fn parallel_callers_share_one_code_and_one_sts_call() {
    let w = Arc::new(World::new());
    let p = Arc::new(gst_profile("mfa"));
    let ts: Vec<_> = (0..8)
        .map(|_| {
            let (w, p) = (w.clone(), p.clone());
            std::thread::spawn(move || {
                let c = w
                    .obtain(&p, &Options::default())
                    .unwrap_or_else(|e| panic!("{e:?}: {:?}", w.ui.events()))
                    .0;
                (c.access_key_id.clone(), c.secret().to_owned())
            })
        })
        .collect();
    let got: HashSet<_> = ts.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(got.len(), 1, "everyone got the same credentials");
    assert_eq!(w.reads(), 1);
    assert_eq!(w.sts.ops(), vec!["GetSessionToken"]);
}

#[test]
fn sts_errors_pass_through_and_nothing_is_cached() {
    let w = World::new();
    // Make the base keys unknown to STS (not a cached signer: no retry).
    w.sts.revoke(BASE_KEY);
    let err = w
        .obtain(&gst_profile("mfa"), &Options::default())
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Auth);
    assert_eq!(w.sts.ops().len(), 1);
    assert!(w.cache().list().is_empty());
    // The code was recorded anyway: the next attempt waits for a new window.
    w.obtain(&gst_profile("mfa"), &Options::default())
        .unwrap_err();
    assert_eq!(w.waits(), 1);
}

#[test]
fn cache_keys_separate_what_changes_the_result() {
    let t = target();
    let o = Options::default();
    let a = role_profile("a", "a", None);
    let key = |p: &ResolvedProfile, t: &StsTarget, o: &Options| {
        plan(
            p,
            t,
            o,
            DEFAULT_SESSION_SECONDS,
            &crate::cache::key_identity(&p.base.access_key_id),
        )
        .last()
        .unwrap()
        .key
        .clone()
    };
    let k = key(&a, &t, &o);
    // Profile name alone does not change it.
    assert_eq!(k, key(&role_profile("other-name", "a", None), &t, &o));
    let mut other_base = a.clone();
    other_base.base.access_key_id = "AKIAOTHER".into();
    let mut other_ext = a.clone();
    if let Step::AssumeRole(r) = &mut other_ext.steps[0] {
        r.external_id = Some("x".into());
    }
    let other_endpoint = StsTarget {
        endpoint_url: None,
        ..t.clone()
    };
    let other_region = StsTarget {
        region: "eu-west-1".into(),
        endpoint_url: None,
    };
    // With an explicit endpoint the region does not change the credentials.
    let same_endpoint_other_region = StsTarget {
        region: "eu-west-1".into(),
        ..t.clone()
    };
    assert_eq!(k, key(&a, &same_endpoint_other_region, &o));
    // Without one, each region has its own endpoint.
    assert_ne!(key(&a, &other_endpoint, &o), key(&a, &other_region, &o));
    for k2 in [
        key(&other_base, &t, &o),
        key(&other_ext, &t, &o),
        key(&a, &other_endpoint, &o),
        key(&a, &other_region, &o),
        key(
            &a,
            &t,
            &Options {
                no_session: true,
                ..Default::default()
            },
        ),
        key(&role_profile("a", "a", Some(900)), &t, &o),
    ] {
        assert_ne!(k, k2);
    }
    // The MFA session key is the same as a plain GetSessionToken profile's.
    let via = plan(
        &a,
        &t,
        &o,
        DEFAULT_SESSION_SECONDS,
        &crate::cache::key_identity(&a.base.access_key_id),
    );
    assert_eq!(via.len(), 2);
    assert_eq!(via[0].key, key(&gst_profile("mfa"), &t, &o));
}

#[test]
fn session_duration_env() {
    let mut env = std::collections::HashMap::new();
    assert_eq!(session_seconds(&env).unwrap(), DEFAULT_SESSION_SECONDS);
    env.insert(SESSION_DURATION_ENV.to_string(), "3600".to_string());
    assert_eq!(session_seconds(&env).unwrap(), 3600);
    for bad in ["60", "200000", "soon"] {
        env.insert(SESSION_DURATION_ENV.to_string(), bad.to_string());
        let e = session_seconds(&env).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Config);
        assert!(e.message().contains(SESSION_DURATION_ENV));
    }
}

#[test]
fn a_token_source_error_leaves_no_files_behind() {
    let w = World::new();
    let cache = w.cache();
    let mut e = Engine::new(
        &cache,
        &w.ui,
        Box::new(|| panic!("no STS client may be made")),
        Box::new(|_mfa: &Mfa| Err(Error::config("seed is not base32"))),
    );
    let err = e
        .obtain(
            &role_profile("r", "r", None),
            &target(),
            &Options::default(),
            3600,
        )
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Config);
    let mut files = Vec::new();
    fn walk(d: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                walk(&e.path(), out);
            } else {
                out.push(e.path());
            }
        }
    }
    walk(w.dir.path(), &mut files);
    assert!(files.is_empty(), "{files:?}");
}

/// Finding 11.4: a request that never left this machine gives its code window back; one that
/// may have reached STS keeps it recorded.
#[test]
fn only_a_request_that_may_have_reached_sts_uses_up_its_window() {
    let w = World::new();
    let p = gst_profile("mfa");
    w.sts
        .fail_next(Error::network("refused").with_reason(Reason::NotSent));
    w.obtain(&p, &Options::default()).unwrap_err();
    assert_eq!(w.cache().last_window_end(SERIAL, &w.ui), None);
    w.sts
        .fail_next(Error::network("refused").with_reason(Reason::NotSent));
    w.obtain(&p, &Options::default()).unwrap_err();
    assert_eq!(w.waits(), 0, "{:?}", w.ui.events());
    for r in [Reason::NoAnswer, Reason::TimedOut, Reason::BadAnswer] {
        let w = World::new();
        w.sts.fail_next(Error::network("lost").with_reason(r));
        w.sts.fail_next(Error::network("lost").with_reason(r));
        w.obtain(&p, &Options::default()).unwrap_err();
        assert!(w.cache().last_window_end(SERIAL, &w.ui).is_some(), "{r:?}");
    }
}

/// Finding 11.3: an MFA call that got no answer is retried once, with the next window's code
/// (never the same code); a second failure or a timeout ends the run; calls without a code
/// are left to the SDK's own retries.
#[test]
fn a_lost_mfa_answer_is_retried_once_with_a_new_code() {
    let p = gst_profile("mfa");
    let w = World::new();
    w.sts
        .fail_next(Error::network("HTTP 500").with_reason(Reason::NoAnswer));
    w.obtain(&p, &Options::default()).unwrap();
    let calls = w.sts.calls();
    assert_eq!(calls.len(), 2);
    assert_ne!(calls[0].2, calls[1].2, "the retry carries the next code");
    assert_eq!((w.reads(), w.waits()), (2, 1));
    assert!(w.ui.events().iter().any(|e| matches!(e,
        UiEvent::Info(m) if m.contains("retrying once with the next code"))));

    let w = World::new();
    w.sts
        .fail_next(Error::network("throttled").with_reason(Reason::Throttled));
    w.obtain(&p, &Options::default()).unwrap();
    let calls = w.sts.calls();
    assert_eq!(
        calls.len(),
        2,
        "a throttled MFA call is retried with a new code"
    );
    assert_ne!(calls[0].2, calls[1].2);

    let w = World::new();
    for _ in 0..2 {
        w.sts
            .fail_next(Error::network("HTTP 500").with_reason(Reason::NoAnswer));
    }
    let e = w.obtain(&p, &Options::default()).unwrap_err();
    assert_eq!(e.exit_code(), 6);
    assert_eq!(w.sts.calls().len(), 2, "one retry, not more");

    for r in [Reason::TimedOut, Reason::BadAnswer, Reason::CodeRejected] {
        let w = World::new();
        w.sts.fail_next(Error::network("x").with_reason(r));
        w.obtain(&p, &Options::default()).unwrap_err();
        assert_eq!(w.sts.calls().len(), 1, "{r:?} is not retried");
    }

    // A code-less AssumeRole (signed by the cached MFA session) is not retried here.
    let w = World::new();
    w.obtain(&role_profile("a", "a", None), &Options::default())
        .unwrap();
    w.sts
        .fail_next(Error::network("HTTP 500").with_reason(Reason::NoAnswer));
    w.obtain(&role_profile("b", "b", None), &Options::default())
        .unwrap_err();
    assert_eq!(
        w.sts.ops(),
        vec!["GetSessionToken", "AssumeRole", "AssumeRole"]
    );
    assert_eq!(w.reads(), 1);
}

/// Keys in the vault: the engine asks for them only when a call must be signed with them
/// (a cache miss of the first step) or when the vault's entry is one it has not seen (to
/// learn whose key it holds), never on a hit; the cache key holds the key's identity, so the
/// same key in the file shares the session, and another key in the same entry does not.
#[test]
fn keys_in_the_vault_are_fetched_only_on_a_miss() {
    let w = World::new();
    let in_vault = |p: ResolvedProfile| ResolvedProfile {
        base: BaseCredentials {
            access_key_id: String::new(),
            secret_access_key: SecretString::from(""),
            in_vault: Some("/v/vault".into()),
            ..p.base
        },
        ..p
    };
    // The vault's entry: its stamp and the key it holds.
    let entry = Arc::new(std::sync::Mutex::new(("a".repeat(64), BASE_KEY.to_owned())));
    let fetched = Arc::new(AtomicUsize::new(0));
    let obtain = |p: &ResolvedProfile| {
        let cache = w.cache();
        let sts = w.sts.clone();
        let reads = w.reads.clone();
        let f = fetched.clone();
        let (e1, e2) = (entry.clone(), entry.clone());
        let mut e = Engine::new(
            &cache,
            &w.ui,
            Box::new(move || Ok(Box::new(sts.clone()) as Box<dyn StsApi>)),
            Box::new(move |_mfa: &Mfa| {
                Ok(Box::new(FakeToken {
                    reads: reads.clone(),
                }) as Box<dyn TokenSource>)
            }),
        )
        .with_base_keys(Box::new(move |b: &BaseCredentials| {
            assert_eq!(
                b.in_vault.as_deref(),
                Some(std::path::Path::new("/v/vault"))
            );
            f.fetch_add(1, Ordering::SeqCst);
            let key = e1.lock().unwrap().1.clone();
            Ok(Credentials::new(&key, "from-the-vault", None, None))
        }))
        .with_vault_stamp(Box::new(move |_: &BaseCredentials| {
            Ok(Some(e2.lock().unwrap().0.clone()))
        }));
        e.obtain(p, &target(), &Options::default(), DEFAULT_SESSION_SECONDS)
    };
    let a = in_vault(role_profile("a", "a", None));
    let (first, hit) = obtain(&a).unwrap();
    assert!(!hit);
    assert_eq!(
        fetched.load(Ordering::SeqCst),
        1,
        "one fetch: identity and signing"
    );
    let calls = w.sts.calls();
    assert_eq!(calls[0].0, "GetSessionToken");
    assert_eq!(calls[0].1, BASE_KEY, "signed with the vault's key");
    // A hit: nothing fetched. Another role of the same source: the cached MFA session signs.
    let (again, hit) = obtain(&a).unwrap();
    assert!(hit);
    assert_eq!(again.access_key_id, first.access_key_id);
    obtain(&in_vault(role_profile("b", "b", None))).unwrap();
    assert_eq!(fetched.load(Ordering::SeqCst), 1);
    assert_eq!(w.reads(), 1);
    // The same key in the credentials file is the same identity: the same session.
    let (from_file, hit) = w
        .obtain(&role_profile("a", "a", None), &Options::default())
        .unwrap();
    assert!(hit);
    assert_eq!(from_file.access_key_id, first.access_key_id);
    // The entry rewritten with the same key (a new stamp): one fetch to learn that, no STS.
    let sts_calls = w.sts.calls().len();
    entry.lock().unwrap().0 = "b".repeat(64);
    let (same, hit) = obtain(&a).unwrap();
    assert!(hit);
    assert_eq!(same.access_key_id, first.access_key_id);
    assert_eq!(fetched.load(Ordering::SeqCst), 2);
    assert_eq!(w.sts.calls().len(), sts_calls);
    // Another IAM user's key imported into the same entry: never the first user's session.
    *entry.lock().unwrap() = ("c".repeat(64), "AKIAOTHERUSEREXAMPLE".to_owned());
    let (other, hit) = obtain(&a).unwrap();
    assert!(!hit, "the first user's session was served for another key");
    assert_ne!(other.access_key_id, first.access_key_id);
    let calls = w.sts.calls();
    assert_eq!(calls[sts_calls].0, "GetSessionToken");
    assert_eq!(calls[sts_calls].1, "AKIAOTHERUSEREXAMPLE");
    assert_eq!(
        fetched.load(Ordering::SeqCst),
        3,
        "one fetch: identity and signing"
    );
    // Without a way to reach the vault, keys in the vault are an error, not empty keys.
    let w2 = World::new();
    let e = w2
        .obtain(&in_vault(gst_profile("mfa")), &Options::default())
        .unwrap_err();
    assert!(e.message().contains("/v/vault"), "{e}");
    assert!(w2.sts.calls().is_empty());
}
