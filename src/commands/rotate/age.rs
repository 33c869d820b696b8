//! The age of a profile's long-term access key, for `doctor`: IAM's `CreateDate` from
//! `ListAccessKeys`, asked without a tap (a cached MFA session of the key, else the key itself
//! when it is in the credentials file), and a warning past [`MAX_AGE_DAYS`].

use std::time::Duration;

use crate::cache::{self, SessionCache};
use crate::credentials::Credentials;
use crate::engine;
use crate::env::EnvLookup;
use crate::iam::{Iam, IamTarget};
use crate::profile::{AwsFiles, Profiles, ResolvedProfile};
use crate::sts::StsTarget;
use crate::ui::Ui;
use crate::vault::{EntryName, VaultSession};

/// Keys older than this are due for rotation (AWS's guidance, and most policies).
pub const MAX_AGE_DAYS: i64 = 90;

/// What doctor says about the key's age.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyAge {
    /// The access key id as doctor shows ids (its last 4 characters), or "(in the vault)".
    pub key: String,
    /// Whole days since IAM created it; None when it could not be learned.
    pub days: Option<i64>,
    /// Why not, when `days` is None.
    pub why_unknown: Option<String>,
    /// The profile holding the key, for the fix.
    pub profile: String,
}

impl KeyAge {
    pub fn too_old(&self) -> bool {
        self.days.is_some_and(|d| d > MAX_AGE_DAYS)
    }

    pub fn message(&self) -> String {
        match (self.days, &self.why_unknown) {
            (Some(d), _) if d > MAX_AGE_DAYS => format!(
                "access key {} of profile \"{}\" is {d} days old (IAM's CreateDate), more than {MAX_AGE_DAYS}",
                self.key, self.profile
            ),
            (Some(d), _) => format!(
                "access key {} of profile \"{}\" is {d} days old (IAM's CreateDate)",
                self.key, self.profile
            ),
            (None, Some(why)) => format!(
                "the age of access key {} of profile \"{}\" is not known: {why}",
                self.key, self.profile
            ),
            (None, None) => format!(
                "the age of access key {} of profile \"{}\" is not known",
                self.key, self.profile
            ),
        }
    }

    pub fn fix(&self) -> String {
        format!(
            "rotate it with one tap: tapcred rotate --profile {}",
            self.profile
        )
    }
}

/// The key's age, or None when the profile's keys are not a long-term key of a profile.
pub fn check(
    p: &ResolvedProfile,
    offline: bool,
    env: &dyn EnvLookup,
    ui: &dyn Ui,
) -> Option<KeyAge> {
    let base = &p.base;
    if base.session_token.is_some() || base.origin == "env" {
        return None;
    }
    let cache = SessionCache::open_default(env, ui);
    let identity = match &base.in_vault {
        None => Some(cache::key_identity(&base.access_key_id)),
        Some(_) => VaultSession::from_env(env)
            .sealed_digest(&EntryName::access_key(base.origin.clone()))
            .ok()
            .flatten()
            .and_then(|stamp| cache.known_identity(&stamp)),
    };
    let mut age = KeyAge {
        key: if base.in_vault.is_some() {
            "(in the vault)".to_owned()
        } else {
            crate::commands::configure::key_hint(&base.access_key_id)
        },
        days: None,
        why_unknown: None,
        profile: base.origin.clone(),
    };
    if offline {
        age.why_unknown = Some("not asked (--offline)".into());
        return Some(age);
    }
    let Some(identity) = identity else {
        age.why_unknown = Some(
            "the key is in the vault and no cached session says which it is (doctor does not unlock the vault)"
                .into(),
        );
        return Some(age);
    };
    let target = StsTarget::for_profile(p, env);
    let seconds = engine::session_seconds(env).unwrap_or(engine::DEFAULT_SESSION_SECONDS);
    let session = super::mfa_profile(p, seconds).and_then(|mp| {
        let key = engine::mfa_session_key(&mp, &target, seconds, &identity)?;
        cache.get(&key, Duration::from_secs(60))
    });
    let signer: Credentials = match (session, &base.in_vault) {
        (Some(e), _) => e.credentials,
        (None, None) => crate::sts::base_credentials(base),
        (None, Some(_)) => {
            age.why_unknown = Some(
                "no cached MFA session of the key (doctor does not unlock the vault); run any tapcred command for the profile first".into(),
            );
            return Some(age);
        }
    };
    let files = AwsFiles::from_env(env);
    let iam_target = match Profiles::load(&files)
        .and_then(|profiles| IamTarget::for_profile(&profiles, &p.name, &target, env))
    {
        Ok(t) => t,
        Err(e) => {
            age.why_unknown = Some(e.message().to_owned());
            return Some(age);
        }
    };
    if let (Some(sts), None) = (&target.endpoint_url, &iam_target.endpoint_url) {
        // Keys that work at another STS than AWS's are not asked about at AWS's IAM.
        age.why_unknown = Some(format!(
            "not asked: STS is {sts} and IAM would be iam.amazonaws.com; set AWS_ENDPOINT_URL_IAM to ask that IAM"
        ));
        return Some(age);
    }
    let listed = Iam::new(iam_target, &base.origin)
        .and_then(|iam| iam.list_access_keys_of(&signer, None).map_err(Into::into));
    match listed {
        Err(e) => age.why_unknown = Some(format!("IAM ListAccessKeys failed ({})", e.message())),
        Ok(keys) => match keys
            .iter()
            .find(|k| cache::key_identity(&k.access_key_id) == identity)
        {
            Some(k) => {
                age.key = crate::commands::configure::key_hint(&k.access_key_id);
                age.days = k
                    .created
                    .map(|c| (crate::clock::now_unix() as i64 - c).max(0) / 86_400);
                if age.days.is_none() {
                    age.why_unknown = Some("IAM sent no CreateDate".into());
                }
            }
            None => age.why_unknown = Some("IAM does not list the key".into()),
        },
    }
    Some(age)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn age(days: Option<i64>) -> KeyAge {
        KeyAge {
            key: "…MPLE".into(),
            days,
            why_unknown: None,
            profile: "toolkit-user".into(),
        }
    }

    #[test]
    fn warns_past_ninety_days() {
        assert!(!age(Some(90)).too_old());
        assert!(age(Some(91)).too_old());
        assert!(!age(None).too_old());
        assert!(age(Some(120)).message().contains("120 days old"));
        assert!(
            age(Some(1))
                .fix()
                .contains("tapcred rotate --profile toolkit-user")
        );
    }
}
