//! Session engine: resolve profile → obtain code → STS → credentials.

use crate::clock;
use crate::credentials::Credentials;
use crate::error::Result;
use crate::profile::{AwsFiles, Mfa, Profiles, ResolvedProfile, Step};
use crate::sts::{self, CallContext, MfaCode, Sts, StsTarget};
use crate::token::{self, Code, CodeRequest, EnvLookup, TokenSource, window_of};
use crate::ui::Ui;

/// A code with less than this many seconds left in its window is not sent.
pub const MIN_SECONDS_LEFT: u64 = 3;

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Skip the session cache entirely.
    pub no_cache: bool,
    /// Send MFA directly on AssumeRole instead of through a cached MFA session.
    pub no_session: bool,
}

/// Everything a command needs about a profile's credentials.
pub struct Obtained {
    pub credentials: Credentials,
    pub profile: ResolvedProfile,
    pub target: StsTarget,
}

pub fn load_profile(name: &str, env: &dyn EnvLookup) -> Result<ResolvedProfile> {
    let files = AwsFiles::from_env(env);
    let profiles = Profiles::load(&files)?;
    profiles.resolve(name, env)
}

/// Credentials for the profile `name`.
pub fn credentials(
    name: &str,
    opts: &Options,
    env: &dyn EnvLookup,
    ui: &dyn Ui,
) -> Result<Obtained> {
    let profile = load_profile(name, env)?;
    let target = StsTarget::for_profile(&profile, env);
    let _ = opts;
    let credentials = run_steps(&profile, &target, env, ui)?;
    Ok(Obtained {
        credentials,
        profile,
        target,
    })
}

fn run_steps(
    profile: &ResolvedProfile,
    target: &StsTarget,
    env: &dyn EnvLookup,
    ui: &dyn Ui,
) -> Result<Credentials> {
    let mut creds = sts::base_credentials(&profile.base);
    if profile.steps.is_empty() {
        return Ok(creds);
    }
    let sts = Sts::new(target.clone())?;
    let mut signer = profile.base.origin.clone();
    for step in &profile.steps {
        match step {
            Step::SessionToken {
                profile: p,
                mfa,
                duration_seconds,
            } => {
                let code = obtain_code(mfa, p, env, ui)?;
                let m = MfaCode {
                    serial: &mfa.serial,
                    code: &code.digits,
                };
                let ctx = CallContext {
                    profile: p,
                    signer: &signer,
                };
                creds = sts.get_session_token(&creds, Some(m), *duration_seconds, ctx)?;
                signer = p.clone();
            }
            Step::AssumeRole(role) => {
                let code = match &role.mfa {
                    Some(mfa) => Some(obtain_code(mfa, &role.profile, env, ui)?),
                    None => None,
                };
                let m = role
                    .mfa
                    .as_ref()
                    .zip(code.as_ref())
                    .map(|(mfa, c)| MfaCode {
                        serial: &mfa.serial,
                        code: &c.digits,
                    });
                let ctx = CallContext {
                    profile: &role.profile,
                    signer: &signer,
                };
                creds = sts.assume_role(&creds, role, m, role.duration_seconds, ctx)?;
                signer = role.profile.clone();
            }
        }
    }
    Ok(creds)
}

/// Pick the token source and read one code from a window with enough time left.
pub fn obtain_code(mfa: &Mfa, profile: &str, env: &dyn EnvLookup, ui: &dyn Ui) -> Result<Code> {
    let mut source = token::select(&mfa.token, &mfa.serial, env, ui)?;
    read_code(source.as_mut(), &mfa.serial, profile, None, ui)
}

/// Read a code from `source` for a window that starts at or after `not_before` (the end of the
/// last window used for this serial) and has at least [`MIN_SECONDS_LEFT`] left, waiting with
/// a countdown when needed.
pub fn read_code(
    source: &mut dyn TokenSource,
    serial: &str,
    profile: &str,
    not_before: Option<u64>,
    ui: &dyn Ui,
) -> Result<Code> {
    let period = source.period();
    let now = clock::now_unix();
    let at = plan_code_time(now, not_before, period, MIN_SECONDS_LEFT);
    if at > now {
        let why = if not_before.is_some_and(|nb| nb > now) {
            "the current code was already used; waiting for the next code window"
        } else {
            "the current code is about to expire; waiting for the next code window"
        };
        ui.wait_until(why, clock::unix_to_system(at));
    }
    source.code(
        &CodeRequest {
            mfa_serial: serial,
            profile,
            at: at.max(clock::now_unix()),
        },
        ui,
    )
}

/// The earliest unix time ≥ `now` whose window starts at or after `not_before` and leaves at
/// least `min_left` seconds. A `not_before` more than one period ahead (the clock went back)
/// is capped to one period so a clock jump never blocks for long.
pub fn plan_code_time(now: u64, not_before: Option<u64>, period: u64, min_left: u64) -> u64 {
    let mut at = now;
    if let Some(nb) = not_before {
        at = at.max(nb.min(now + period));
    }
    let (_, end) = window_of(at, period);
    if end - at < min_left { end } else { at }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_waits_for_fresh_window() {
        assert_eq!(plan_code_time(100, None, 30, 3), 100);
        // 118 leaves 2 s in window [90,120): wait for 120.
        assert_eq!(plan_code_time(118, None, 30, 3), 120);
        // window [90,120) already used: the next window starts at 120.
        assert_eq!(plan_code_time(100, Some(120), 30, 3), 120);
        // used window is in the past: no wait.
        assert_eq!(plan_code_time(125, Some(120), 30, 3), 125);
        // clock went back a day: wait at most one period.
        assert_eq!(plan_code_time(100, Some(100_000), 30, 3), 130);
    }
}
