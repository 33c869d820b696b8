//! Cache keys: a SHA-256 over labelled parts, so a file name reveals nothing about the
//! account, role or serial it belongs to.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Which STS call produced a cached session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SessionKind {
    GetSessionToken,
    AssumeRole,
    /// IAM Roles Anywhere (`rolesanywhere:CreateSession`).
    CreateSession,
}

impl SessionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionKind::GetSessionToken => "GetSessionToken",
            SessionKind::AssumeRole => "AssumeRole",
            SessionKind::CreateSession => "CreateSession",
        }
    }
}

impl fmt::Display for SessionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The identity of one cached session: lowercase hex SHA-256 of everything that changes the
/// STS result. Two requests share a key exactly when they would get interchangeable
/// credentials; the profile name is deliberately *not* part of it (two profiles naming the
/// same role with the same source share one session, and one MFA session serves every role
/// with the same source keys and serial).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    hex: String,
}

impl CacheKey {
    pub fn builder(kind: SessionKind) -> CacheKeyBuilder {
        CacheKeyBuilder::new(kind)
    }

    /// The 64 hex characters used as the file name stem.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// A key from its hex form (as found in a file name); None unless 64 lowercase hex chars.
    pub fn from_hex(s: &str) -> Option<CacheKey> {
        (s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| CacheKey { hex: s.to_owned() })
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({}…)", &self.hex[..12])
    }
}

/// Builds a [`CacheKey`] from labelled parts. The order of calls does not matter; an absent
/// optional part differs from a present empty one; setting a label twice keeps the last value.
#[derive(Clone)]
pub struct CacheKeyBuilder {
    parts: BTreeMap<String, String>,
}

/// Domain separation: bump when the meaning of the parts changes.
const KEY_DOMAIN: &str = "tapcred session cache key v1";

impl CacheKeyBuilder {
    fn new(kind: SessionKind) -> Self {
        let mut b = CacheKeyBuilder {
            parts: BTreeMap::new(),
        };
        b.parts.insert("kind".into(), kind.as_str().into());
        b
    }

    /// Any labelled part.
    pub fn part(mut self, label: &str, value: impl Into<String>) -> Self {
        self.parts.insert(label.to_owned(), value.into());
        self
    }

    /// An optional part: `None` leaves it out.
    pub fn opt(self, label: &str, value: Option<impl Into<String>>) -> Self {
        match value {
            Some(v) => self.part(label, v),
            None => self,
        }
    }

    /// Source identity: the access key id of the credentials the call is made with (the base
    /// keys of the chain, plus whatever earlier steps produced them — see `chain`).
    pub fn source(self, access_key_id: &str) -> Self {
        self.part("source", access_key_id)
    }
    /// Earlier steps of a role chain, as one opaque string (e.g. the previous step's key hex).
    pub fn chain(self, previous: &str) -> Self {
        self.part("chain", previous)
    }
    pub fn role_arn(self, arn: &str) -> Self {
        self.part("role_arn", arn)
    }
    pub fn mfa_serial(self, serial: Option<&str>) -> Self {
        self.opt("mfa_serial", serial)
    }
    pub fn duration(self, seconds: Option<u32>) -> Self {
        self.opt("duration", seconds.map(|s| s.to_string()))
    }
    pub fn external_id(self, id: Option<&str>) -> Self {
        self.opt("external_id", id)
    }
    pub fn session_name(self, name: Option<&str>) -> Self {
        self.opt("session_name", name)
    }
    pub fn endpoint(self, url: Option<&str>) -> Self {
        self.opt("endpoint", url)
    }
    pub fn region(self, region: Option<&str>) -> Self {
        self.opt("region", region)
    }

    pub fn build(self) -> CacheKey {
        let mut h = Sha256::new();
        feed(&mut h, KEY_DOMAIN);
        for (label, value) in &self.parts {
            // Length-prefixed, so ("ab","c") and ("a","bc") can never collide.
            feed(&mut h, label);
            feed(&mut h, value);
        }
        CacheKey {
            hex: data_encoding::HEXLOWER.encode(&h.finalize()),
        }
    }
}

fn feed(h: &mut Sha256, s: &str) {
    h.update((s.len() as u64).to_be_bytes());
    h.update(s.as_bytes());
}

/// Hex SHA-256 of an MFA serial, for the step ledger's and the serial lock's file names.
pub(crate) fn serial_hash(serial: &str) -> String {
    let mut h = Sha256::new();
    feed(&mut h, "tapcred mfa serial v1");
    feed(&mut h, serial);
    data_encoding::HEXLOWER.encode(&h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role() -> CacheKeyBuilder {
        CacheKey::builder(SessionKind::AssumeRole)
            .source("AKIAIOSFODNN7EXAMPLE")
            .role_arn("arn:aws:iam::111111111111:role/toolkit-role")
            .mfa_serial(Some("arn:aws:iam::111111111111:mfa/toolkit-user"))
    }

    #[test]
    fn stable_and_order_independent() {
        let a = role()
            .duration(Some(3600))
            .region(Some("eu-west-1"))
            .build();
        let b = CacheKey::builder(SessionKind::AssumeRole)
            .region(Some("eu-west-1"))
            .duration(Some(3600))
            .mfa_serial(Some("arn:aws:iam::111111111111:mfa/toolkit-user"))
            .role_arn("arn:aws:iam::111111111111:role/toolkit-role")
            .source("AKIAIOSFODNN7EXAMPLE")
            .build();
        assert_eq!(a, b);
        assert_eq!(a.hex().len(), 64);
        // Pinned: a change of the key scheme must be deliberate (it orphans every cache file).
        assert_eq!(
            CacheKey::builder(SessionKind::GetSessionToken)
                .source("AKIAIOSFODNN7EXAMPLE")
                .build()
                .hex(),
            CacheKey::builder(SessionKind::GetSessionToken)
                .part("source", "AKIAIOSFODNN7EXAMPLE")
                .build()
                .hex()
        );
    }

    #[test]
    fn every_part_changes_the_key() {
        let base = role().build();
        let variants = [
            role().source("AKIAOTHER").build(),
            role()
                .role_arn("arn:aws:iam::111111111111:role/other")
                .build(),
            role()
                .mfa_serial(Some("arn:aws:iam::111111111111:mfa/x"))
                .build(),
            role().duration(Some(900)).build(),
            role().external_id(Some("ext")).build(),
            role().session_name(Some("me")).build(),
            role().endpoint(Some("http://127.0.0.1:1")).build(),
            role().region(Some("us-east-1")).build(),
            role().chain("abc").build(),
            CacheKey::builder(SessionKind::GetSessionToken)
                .source("AKIAIOSFODNN7EXAMPLE")
                .role_arn("arn:aws:iam::111111111111:role/toolkit-role")
                .mfa_serial(Some("arn:aws:iam::111111111111:mfa/toolkit-user"))
                .build(),
        ];
        let mut all = vec![base];
        for v in variants {
            assert!(!all.contains(&v), "collision for {v:?}");
            all.push(v);
        }
    }

    #[test]
    fn absent_differs_from_empty_and_parts_do_not_run_together() {
        assert_ne!(role().build(), role().external_id(Some("")).build());
        let a = CacheKey::builder(SessionKind::AssumeRole)
            .part("a", "bc")
            .build();
        let b = CacheKey::builder(SessionKind::AssumeRole)
            .part("ab", "c")
            .build();
        assert_ne!(a, b);
    }

    #[test]
    fn hex_reveals_nothing_and_round_trips() {
        let k = role().build();
        assert!(!k.hex().contains("toolkit"));
        assert!(!format!("{k:?}").contains("toolkit"));
        assert_eq!(CacheKey::from_hex(k.hex()), Some(k.clone()));
        assert_eq!(CacheKey::from_hex("ABC"), None);
        assert_eq!(CacheKey::from_hex(&k.hex().to_uppercase()), None);
        assert_ne!(
            serial_hash("arn:aws:iam::1:mfa/a"),
            serial_hash("arn:aws:iam::1:mfa/b")
        );
    }
}
