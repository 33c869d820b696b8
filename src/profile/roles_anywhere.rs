//! IAM Roles Anywhere profiles: `tapcred_roles_anywhere_trust_anchor_arn`,
//! `tapcred_roles_anywhere_profile_arn`, `role_arn`, and the key that signs: a YubiKey PIV
//! slot (`tapcred_piv_slot`, default 9a, `tapcred_piv_serial`) or a certificate and private
//! key file (`tapcred_roles_anywhere_certificate`, `…_private_key`); either with the
//! intermediate CAs in `…_chain`.

use std::path::PathBuf;

use super::load::expand_home;
use super::{Profiles, ROLE_MAX_SECONDS, validate};
use crate::env::EnvLookup;
use crate::error::Result;
use crate::token::keyfile::KeyFiles;
use crate::token::piv::{PivKeyRef, PivSlot};

pub const TRUST_ANCHOR_KEY: &str = "tapcred_roles_anywhere_trust_anchor_arn";
pub const PROFILE_ARN_KEY: &str = "tapcred_roles_anywhere_profile_arn";
pub const CERTIFICATE_KEY: &str = "tapcred_roles_anywhere_certificate";
pub const PRIVATE_KEY_KEY: &str = "tapcred_roles_anywhere_private_key";
pub const CHAIN_KEY: &str = "tapcred_roles_anywhere_chain";
pub const PIV_SLOT_KEY: &str = "tapcred_piv_slot";
pub const PIV_SERIAL_KEY: &str = "tapcred_piv_serial";
/// The PIV slot used when a profile names none (PIV authentication).
pub const DEFAULT_PIV_SLOT: &str = "9a";

/// Every key of a Roles Anywhere profile that marks it as one.
const MARKERS: &[&str] = &[
    TRUST_ANCHOR_KEY,
    PROFILE_ARN_KEY,
    CERTIFICATE_KEY,
    PRIVATE_KEY_KEY,
    CHAIN_KEY,
    PIV_SLOT_KEY,
    PIV_SERIAL_KEY,
];

/// Where the signing key is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RolesAnywhereKey {
    /// A key on a YubiKey; the card holds only the certificate, so intermediate CAs come
    /// from a file.
    Piv {
        key: PivKeyRef,
        chain: Option<PathBuf>,
    },
    Files(KeyFiles),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolesAnywhere {
    pub trust_anchor_arn: String,
    pub profile_arn: String,
    pub role_arn: String,
    pub role_session_name: Option<String>,
    /// 900–43200, validated.
    pub duration_seconds: Option<u32>,
    pub key: RolesAnywhereKey,
    /// `[services X]` `rolesanywhere = endpoint_url = …`, else the profile's `endpoint_url`;
    /// None when ignored (env overrides are applied by the rolesanywhere layer).
    pub endpoint_url: Option<String>,
}

impl RolesAnywhere {
    /// The trust anchor's region (validated when the profile was resolved).
    pub fn region(&self) -> &str {
        self.trust_anchor_arn.split(':').nth(3).unwrap_or_default()
    }
}

impl Profiles {
    /// Whether `profile` is a Roles Anywhere profile (has any of its keys).
    pub(super) fn is_roles_anywhere(&self, profile: &str) -> bool {
        MARKERS.iter().any(|k| self.get(profile, k).is_some())
    }

    pub(super) fn roles_anywhere(
        &self,
        profile: &str,
        env: &dyn EnvLookup,
    ) -> Result<RolesAnywhere> {
        let need = |key: &str| {
            self.get(profile, key).map(str::trim).filter(|v| !v.is_empty()).ok_or_else(|| {
                self.fail(
                    profile,
                    key,
                    "is missing, and a Roles Anywhere profile needs it",
                    "add it: tapcred_roles_anywhere_trust_anchor_arn, tapcred_roles_anywhere_profile_arn and role_arn come from the Roles Anywhere console (`tapcred configure` writes them)",
                )
            })
        };
        let trust_anchor_arn = need(TRUST_ANCHOR_KEY)?;
        let anchor_region =
            validate::rolesanywhere_arn(trust_anchor_arn, "trust-anchor").map_err(|why| {
                self.fail(
                    profile,
                    TRUST_ANCHOR_KEY,
                    format!("{trust_anchor_arn:?} {why}"),
                    "copy the trust anchor's ARN from the Roles Anywhere console",
                )
            })?;
        let profile_arn = need(PROFILE_ARN_KEY)?;
        let profile_region =
            validate::rolesanywhere_arn(profile_arn, "profile").map_err(|why| {
                self.fail(
                    profile,
                    PROFILE_ARN_KEY,
                    format!("{profile_arn:?} {why}"),
                    "copy the profile's ARN from the Roles Anywhere console",
                )
            })?;
        if anchor_region != profile_region {
            return Err(self.fail(
                profile,
                PROFILE_ARN_KEY,
                format!("is in region {profile_region} but the trust anchor is in {anchor_region}"),
                "use a trust anchor and a profile of the same region",
            ));
        }
        let role_arn = need("role_arn")?;
        validate::role_arn(role_arn).map_err(|why| {
            self.fail(
                profile,
                "role_arn",
                format!("{role_arn:?} {why}"),
                "copy the role's ARN from the IAM console, e.g. arn:aws:iam::111111111111:role/NAME",
            )
        })?;
        for k in [
            "source_profile",
            "credential_source",
            "mfa_serial",
            "aws_access_key_id",
            "tapcred_access_key",
        ] {
            if self.get(profile, k).is_some() {
                return Err(self.fail(
                    profile,
                    k,
                    "is set in a Roles Anywhere profile, whose certificate is the only credential it uses",
                    &format!("remove {k}, or move the Roles Anywhere keys to a profile of their own"),
                ));
            }
        }
        let role_session_name = self.role_session_name(profile)?;
        let duration_seconds = self.duration(
            profile,
            ROLE_MAX_SECONDS,
            "CreateSession allows 900–43200 seconds, up to the Roles Anywhere profile's session duration",
        )?;
        let key = self.signing_key(profile, env)?;
        let (endpoint_url, _) = self.service_endpoint(profile, "rolesanywhere")?;
        Ok(RolesAnywhere {
            trust_anchor_arn: trust_anchor_arn.to_owned(),
            profile_arn: profile_arn.to_owned(),
            role_arn: role_arn.to_owned(),
            role_session_name,
            duration_seconds,
            key,
            endpoint_url,
        })
    }

    fn signing_key(&self, profile: &str, env: &dyn EnvLookup) -> Result<RolesAnywhereKey> {
        let path = |key: &str| -> Result<Option<PathBuf>> {
            let Some(v) = self
                .get(profile, key)
                .map(str::trim)
                .filter(|v| !v.is_empty())
            else {
                return Ok(None);
            };
            let home = crate::platform::locations::home(env);
            if crate::platform::locations::starts_with_home(v) && home.is_none() {
                let var = crate::platform::locations::HOME_VAR;
                return Err(self.fail(
                    profile,
                    key,
                    format!("starts with ~ but {var} is not set"),
                    &format!("set {var} or write an absolute path"),
                ));
            }
            Ok(Some(expand_home(v, home.as_deref())))
        };
        let certificate = path(CERTIFICATE_KEY)?;
        let private_key = path(PRIVATE_KEY_KEY)?;
        let chain = path(CHAIN_KEY)?;
        let piv = [PIV_SLOT_KEY, PIV_SERIAL_KEY]
            .into_iter()
            .find(|k| self.get(profile, k).is_some());
        match (certificate, private_key) {
            (Some(certificate), Some(private_key)) => {
                if let Some(k) = piv {
                    return Err(self.fail(
                        profile,
                        k,
                        "is set beside a certificate and key file, so it is not clear which key signs",
                        &format!("keep either {k} (the key on a YubiKey) or {CERTIFICATE_KEY} + {PRIVATE_KEY_KEY}"),
                    ));
                }
                Ok(RolesAnywhereKey::Files(KeyFiles { certificate, private_key, chain }))
            }
            (Some(_), None) => Err(self.fail(profile, CERTIFICATE_KEY, format!("is set but {PRIVATE_KEY_KEY} is missing"), &format!("add {PRIVATE_KEY_KEY} = PATH of the certificate's private key (PEM), or remove both to sign on a YubiKey"))),
            (None, Some(_)) => Err(self.fail(profile, PRIVATE_KEY_KEY, format!("is set but {CERTIFICATE_KEY} is missing"), &format!("add {CERTIFICATE_KEY} = PATH of the certificate (PEM) issued for this key"))),
            (None, None) => {
                let slot_text = self.get(profile, PIV_SLOT_KEY).unwrap_or(DEFAULT_PIV_SLOT);
                let slot: PivSlot = slot_text.trim().parse().map_err(|_| {
                    self.fail(profile, PIV_SLOT_KEY, format!("= {slot_text:?} is not a PIV slot"), "use 9a (authentication, the default), 9c, 9d, 9e or a retired slot 82–95")
                })?;
                let serial = match self.get(profile, PIV_SERIAL_KEY) {
                    Some(v) => Some(v.trim().parse::<u32>().map_err(|_| {
                        self.fail(profile, PIV_SERIAL_KEY, format!("= {v:?} is not a YubiKey serial number"), "use the decimal serial printed on the key or shown by `ykman list`")
                    })?),
                    None => None,
                };
                Ok(RolesAnywhereKey::Piv {
                    key: PivKeyRef { serial, slot },
                    chain,
                })
            }
        }
    }
}
