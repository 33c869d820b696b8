//! The slots tapcred signs with, and what a slot's key is: its algorithm and its PIN and
//! touch policies.

use std::fmt;
use std::str::FromStr;

use yubikey::piv::{self as ykpiv, AlgorithmId, SlotId};

use crate::token::x509::KeyAlgorithm;

/// A PIV key slot tapcred signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PivSlot {
    /// 9a, PIV Authentication (PIN once per session by default).
    #[default]
    Authentication,
    /// 9c, Digital Signature (PIN before every signature by default).
    Signature,
    /// 9d, Key Management.
    KeyManagement,
    /// 9e, Card Authentication (no PIN by default).
    CardAuthentication,
}

impl PivSlot {
    pub const NAMES: &'static [&'static str] = &["9a", "9c", "9d", "9e"];

    pub(super) fn id(self) -> SlotId {
        match self {
            PivSlot::Authentication => SlotId::Authentication,
            PivSlot::Signature => SlotId::Signature,
            PivSlot::KeyManagement => SlotId::KeyManagement,
            PivSlot::CardAuthentication => SlotId::CardAuthentication,
        }
    }
}

impl FromStr for PivSlot {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "9a" => PivSlot::Authentication,
            "9c" => PivSlot::Signature,
            "9d" => PivSlot::KeyManagement,
            "9e" => PivSlot::CardAuthentication,
            other => {
                return Err(format!(
                    "\"{other}\" is not a PIV slot tapcred signs with; use one of 9a, 9c, 9d, 9e"
                ));
            }
        })
    }
}

impl fmt::Display for PivSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PivSlot::Authentication => "9a",
            PivSlot::Signature => "9c",
            PivSlot::KeyManagement => "9d",
            PivSlot::CardAuthentication => "9e",
        })
    }
}

/// Which key: the YubiKey (by serial, or the only one plugged in) and the slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PivKeyRef {
    pub serial: Option<u32>,
    pub slot: PivSlot,
}

/// The slot's key as the card describes it (GET METADATA, firmware 5.3 and later).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotPolicy {
    pub pin: yubikey::PinPolicy,
    pub touch: yubikey::TouchPolicy,
}

pub(super) fn algorithm_of(id: AlgorithmId) -> Option<KeyAlgorithm> {
    match id {
        AlgorithmId::EccP256 => Some(KeyAlgorithm::EcdsaP256),
        AlgorithmId::EccP384 => Some(KeyAlgorithm::EcdsaP384),
        AlgorithmId::Rsa2048 => Some(KeyAlgorithm::Rsa2048),
        AlgorithmId::Rsa1024 => None,
    }
}

pub(super) fn algorithm_id(a: KeyAlgorithm) -> AlgorithmId {
    match a {
        KeyAlgorithm::EcdsaP256 => AlgorithmId::EccP256,
        KeyAlgorithm::EcdsaP384 => AlgorithmId::EccP384,
        KeyAlgorithm::Rsa2048 => AlgorithmId::Rsa2048,
    }
}

pub(super) fn pin_policy_of(
    slot: PivSlot,
    meta: Option<&ykpiv::SlotMetadata>,
) -> yubikey::PinPolicy {
    match meta.and_then(|m| m.policy) {
        Some((p, _)) if p != yubikey::PinPolicy::Default => p,
        _ => match slot {
            PivSlot::CardAuthentication => yubikey::PinPolicy::Never,
            PivSlot::Signature => yubikey::PinPolicy::Always,
            _ => yubikey::PinPolicy::Once,
        },
    }
}
