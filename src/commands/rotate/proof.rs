//! Proving a new access key works: GetCallerIdentity signed by it, retried through IAM's
//! propagation delay (bounded).

use std::time::{Duration, Instant};

use crate::commands::interrupt::Interrupt;
use crate::credentials::Credentials;
use crate::error::{Error, Reason, Result};
use crate::sts::CallContext;

use super::setup::Setup;

/// How long the new key may take to work (IAM's propagation delay), by default.
pub const DEFAULT_PROOF_SECONDS: u64 = 60;

/// Env var overriding [`DEFAULT_PROOF_SECONDS`] (1–600).
pub const PROOF_SECONDS_ENV: &str = "TAPCRED_ROTATE_PROOF_SECONDS";

/// GetCallerIdentity signed by `key` (no MFA) until it answers as the user: a new key
/// takes a while to reach STS (InvalidClientTokenId meanwhile), bounded by
/// `TAPCRED_ROTATE_PROOF_SECONDS`.
pub(super) fn prove(s: &Setup<'_>, key: &Credentials, interrupt: &Interrupt) -> Result<()> {
    let bound = Duration::from_secs(proof_seconds(s.ctx.env)?);
    let start = Instant::now();
    let mut pause = Duration::from_millis(250);
    let mut told = false;
    let call = CallContext {
        profile: &s.signer,
        signer: &s.signer,
    };
    loop {
        match s.sts.get_caller_identity(key, call) {
            Ok(who) if who.arn == s.user_arn => return Ok(()),
            Ok(who) => {
                return Err(Error::auth(format!(
                    "the new access key {} acts as {}, not as {}; IAM at the endpoint is not the one the profile's keys belong to",
                    key.access_key_id, who.arn, s.user_arn
                )));
            }
            Err(e)
                if e.reason() == Some(Reason::SessionRejected)
                    && start.elapsed() + pause < bound =>
            {
                if !told {
                    s.ctx.ui.info(
                        "rotate: waiting for IAM to make the new key known to STS (it takes a few seconds)",
                    );
                    told = true;
                }
                interrupt.check()?;
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(4));
            }
            Err(e) if e.reason() == Some(Reason::SessionRejected) => {
                return Err(Error::auth(format!(
                    "the new access key {} did not work within {} s (STS still refuses it); the old key stays in place",
                    key.access_key_id,
                    bound.as_secs()
                )));
            }
            Err(e) => return Err(e),
        }
    }
}

/// `TAPCRED_ROTATE_PROOF_SECONDS` or the default.
pub fn proof_seconds(env: &dyn crate::env::EnvLookup) -> Result<u64> {
    match env.var(PROOF_SECONDS_ENV).filter(|v| !v.trim().is_empty()) {
        None => Ok(DEFAULT_PROOF_SECONDS),
        Some(v) => v
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|n| (1..=600).contains(n))
            .ok_or_else(|| {
                Error::config(format!(
                    "{PROOF_SECONDS_ENV} = {v:?} is not a number of seconds between 1 and 600 (how long rotate waits for a new key to work); fix or unset it"
                ))
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proof_bound_is_checked() {
        use std::collections::HashMap;
        let env = |v: &str| HashMap::from([(PROOF_SECONDS_ENV.to_owned(), v.to_owned())]);
        assert_eq!(
            proof_seconds(&HashMap::<String, String>::new()).unwrap(),
            60
        );
        assert_eq!(proof_seconds(&env("5")).unwrap(), 5);
        for bad in ["0", "601", "soon"] {
            let e = proof_seconds(&env(bad)).unwrap_err();
            assert!(e.message().contains(PROOF_SECONDS_ENV), "{e}");
        }
    }
}
