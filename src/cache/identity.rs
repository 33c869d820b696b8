//! Which long-term key a session belongs to. A session is keyed by the identity of the
//! access key that signed its first call — a SHA-256 of the access key id, never the
//! secret — wherever the key is kept: the same key moved from the credentials file into the
//! vault keeps its sessions, and another key (another IAM user) in the same place never
//! gets them.
//!
//! A key in the vault is sealed: its id is known only after an unlock (a touch), which a
//! cached session must not cost. So the cache remembers, per sealed vault entry, the
//! identity found the last time that entry was opened: `ids/<stamp>` holds the identity,
//! where the stamp is the entry's [`crate::vault::VaultFile::sealed_digest`] (readable
//! without a key, and new whenever the entry is written again). An unknown stamp means the
//! vault must be opened to learn whose key it holds.

use sha2::{Digest, Sha256};

use super::SessionCache;
use crate::ui::Ui;

const DIR: &str = "ids";

/// The identity of the long-term key `access_key_id` (lowercase hex).
pub fn key_identity(access_key_id: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"tapcred key identity v1\0");
    h.update(access_key_id.as_bytes());
    data_encoding::HEXLOWER.encode(&h.finalize())
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl SessionCache {
    /// The identity recorded for the sealed vault entry `stamp`, if any.
    pub fn known_identity(&self, stamp: &str) -> Option<String> {
        if !is_hex64(stamp) {
            return None;
        }
        let raw = self.read_aux(&format!("{DIR}/{stamp}"))?;
        let id = std::str::from_utf8(&raw).ok()?.trim();
        is_hex64(id).then(|| id.to_owned())
    }

    /// Record that the sealed vault entry `stamp` holds the key of `identity` (best effort:
    /// without it the next call unlocks the vault to learn it again).
    pub fn remember_identity(&self, stamp: &str, identity: &str, ui: &dyn Ui) {
        if is_hex64(stamp)
            && is_hex64(identity)
            && self.known_identity(stamp).as_deref() != Some(identity)
        {
            self.write_aux(DIR, stamp, identity.as_bytes(), ui);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_a_hash_of_the_key_id_only() {
        let a = key_identity("AKIAIOSFODNN7EXAMPLE");
        assert!(is_hex64(&a));
        assert!(!a.contains("AKIA"));
        assert_eq!(a, key_identity("AKIAIOSFODNN7EXAMPLE"));
        assert_ne!(a, key_identity("AKIAOTHERUSEREXAMPLE"));
    }
}
