//! A vault whose data key is known: entries, unlockers, re-keying, and writing it back at
//! the next generation.

use std::collections::BTreeMap;
use std::fmt;

use chacha20poly1305::XNonce;
use chacha20poly1305::aead::{Aead, Payload};
use sha2::{Digest, Sha256};
use x25519_dalek::PublicKey;
use zeroize::Zeroizing;

use super::bytes::put16;
use super::entry::{EntryName, SealedEntry, Secret, seal_entry};
use super::keys::{Keys, cipher, fill_random};
use super::unlocker::{UnlockerDesc, Wrap, WrappedUnlocker, unlocker_secret};
use super::{AEAD_XCHACHA20POLY1305, KEY_LEN, MAGIC, MAX_SECRET_LEN, MAX_UNLOCKERS, VERSION};
use crate::vault::VaultError;

/// A vault whose data key is known: entries can be read, added and removed, unlockers
/// added, and the result serialised. Debug shows no secret.
pub struct OpenVault {
    /// The generation of the file it was read from (0: a new vault).
    pub(super) generation: u64,
    pub(super) unlockers: Vec<WrappedUnlocker>,
    pub(super) entries: BTreeMap<EntryName, SealedEntry>,
    pub(super) keys: Keys,
}

impl fmt::Debug for OpenVault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenVault")
            .field(
                "unlockers",
                &self
                    .unlockers
                    .iter()
                    .map(|u| &u.desc.id)
                    .collect::<Vec<_>>(),
            )
            .field("entries", &self.entries.keys().collect::<Vec<_>>())
            .field("keys", &"<redacted>")
            .finish()
    }
}

impl OpenVault {
    /// A new, empty vault with a fresh random data key, wrapped for its first unlocker.
    pub fn create(first: UnlockerDesc, output: &[u8]) -> Result<OpenVault, VaultError> {
        let mut data_key = Zeroizing::new([0u8; KEY_LEN]);
        fill_random(data_key.as_mut_slice())?;
        let mut v = OpenVault {
            generation: 0,
            unlockers: Vec::new(),
            entries: BTreeMap::new(),
            keys: Keys::from_data_key(data_key),
        };
        v.add_unlocker(first, output)?;
        Ok(v)
    }

    /// Wrap the data key for another unlocker (a backup key).
    pub fn add_unlocker(&mut self, desc: UnlockerDesc, output: &[u8]) -> Result<(), VaultError> {
        desc.check()?;
        if self.unlockers.iter().any(|u| u.desc.id == desc.id) {
            return Err(VaultError::Invalid(format!(
                "the vault already has an unlocker {:?}",
                desc.id
            )));
        }
        if self.unlockers.len() >= MAX_UNLOCKERS {
            return Err(VaultError::Invalid(format!(
                "a vault holds at most {MAX_UNLOCKERS} unlockers"
            )));
        }
        let public = PublicKey::from(&unlocker_secret(&desc, output)).to_bytes();
        let sealed = WrappedUnlocker::seal(desc, public, &self.keys.data_key)?;
        self.unlockers.push(sealed);
        Ok(())
    }

    /// Turn unlocker `id`'s direct wrap into a sealed one, given its output (which must
    /// unwrap this vault's data key). Nothing to do when it is sealed already.
    pub fn seal_direct(&mut self, id: &str, output: &[u8]) -> Result<(), VaultError> {
        let Some(i) = self.unlockers.iter().position(|u| u.desc.id == id) else {
            return Err(VaultError::NotFound(format!(
                "the vault has no unlocker {id:?}"
            )));
        };
        if self.unlockers[i].is_sealed() {
            return Ok(());
        }
        let data_key = self.unlockers[i].unwrap(output)?;
        if data_key.as_slice() != self.keys.data_key.as_slice() {
            return Err(VaultError::Damaged(format!(
                "unlocker {id:?} holds another vault's key"
            )));
        }
        let desc = self.unlockers[i].desc.clone();
        let public = PublicKey::from(&unlocker_secret(&desc, output)).to_bytes();
        self.unlockers[i] = WrappedUnlocker::seal(desc, public, &self.keys.data_key)?;
        Ok(())
    }

    /// The unlockers still wrapped directly (made by a tapcred before version 2): the vault
    /// cannot be re-keyed until each has opened it once ([`OpenVault::seal_direct`]).
    pub fn direct_unlockers(&self) -> impl Iterator<Item = &UnlockerDesc> {
        self.unlockers
            .iter()
            .filter(|u| !u.is_sealed())
            .map(|u| &u.desc)
    }

    /// A new data key: every entry re-sealed under it, and it sealed to every unlocker's
    /// public key. The old data key (and the output of an unlocker removed before) opens
    /// nothing of what is written after. Every unlocker must be sealed already.
    pub fn rekey(&mut self) -> Result<(), VaultError> {
        let direct: Vec<&str> = self.direct_unlockers().map(|d| d.id.as_str()).collect();
        if !direct.is_empty() {
            return Err(VaultError::Invalid(format!(
                "the vault cannot be re-keyed while {} still use the key wrap of a tapcred before 0.2: plug in those keys too (each is asked once, to move it to the new wrap) and run the command again",
                direct.join(", ")
            )));
        }
        let mut data_key = Zeroizing::new([0u8; KEY_LEN]);
        fill_random(data_key.as_mut_slice())?;
        let new_keys = Keys::from_data_key(data_key);
        let mut entries = BTreeMap::new();
        for name in self.entries.keys() {
            let secret = self.get(name)?;
            let sealed = seal_entry(&new_keys, name, &secret.encode())?;
            entries.insert(name.clone(), sealed);
        }
        let mut unlockers = Vec::with_capacity(self.unlockers.len());
        for u in &self.unlockers {
            let Wrap::Sealed { public, .. } = u.wrap else {
                unreachable!("checked above: every unlocker is sealed")
            };
            unlockers.push(WrappedUnlocker::seal(
                u.desc.clone(),
                public,
                &new_keys.data_key,
            )?);
        }
        self.entries = entries;
        self.unlockers = unlockers;
        self.keys = new_keys;
        Ok(())
    }

    /// The generation of the file this vault was read from (0 for a new vault, or a
    /// version-1 file). Known only after the MAC was checked.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Remove an unlocker and re-key the vault ([`OpenVault::rekey`]), so that unlocker's
    /// output opens nothing written after. The last one cannot be removed (nothing could
    /// open the vault).
    pub fn remove_unlocker(&mut self, id: &str) -> Result<(), VaultError> {
        let Some(i) = self.unlockers.iter().position(|u| u.desc.id == id) else {
            return Err(VaultError::NotFound(format!(
                "the vault has no unlocker {id:?}"
            )));
        };
        if self.unlockers.len() == 1 {
            return Err(VaultError::Invalid(format!(
                "{id:?} is the vault's only unlocker; add another before removing it"
            )));
        }
        let removed = self.unlockers.remove(i);
        if let Err(e) = self.rekey() {
            self.unlockers.insert(i, removed);
            return Err(e);
        }
        Ok(())
    }

    pub fn unlocker_descs(&self) -> impl Iterator<Item = &UnlockerDesc> {
        self.unlockers.iter().map(|u| &u.desc)
    }

    pub fn entry_names(&self) -> impl Iterator<Item = &EntryName> {
        self.entries.keys()
    }

    /// Add or replace an entry. The secret's kind must match the name's kind.
    pub fn put(&mut self, name: EntryName, secret: &Secret) -> Result<(), VaultError> {
        name.check()?;
        if secret.kind() != name.kind {
            return Err(VaultError::Invalid(format!(
                "a {} cannot be stored as a {} entry",
                secret.kind().label(),
                name.kind.label()
            )));
        }
        let plain = secret.encode();
        if plain.len() > MAX_SECRET_LEN {
            return Err(VaultError::Invalid(format!(
                "secret for {:?} is longer than {MAX_SECRET_LEN} bytes",
                name.name
            )));
        }
        let sealed = seal_entry(&self.keys, &name, &plain)?;
        self.entries.insert(name, sealed);
        Ok(())
    }

    /// Decrypt one entry.
    pub fn get(&self, name: &EntryName) -> Result<Secret, VaultError> {
        let e = self.entries.get(name).ok_or_else(|| {
            VaultError::NotFound(format!(
                "the vault has no {} entry {:?}",
                name.kind.label(),
                name.name
            ))
        })?;
        let plain = cipher(&self.keys.entry_key)
            .decrypt(
                &XNonce::from(e.nonce),
                Payload {
                    msg: &e.sealed,
                    aad: &name.aad(),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| VaultError::Damaged(format!("entry {:?} does not decrypt", name.name)))?;
        Secret::decode(name.kind, &plain)
            .ok_or_else(|| VaultError::Damaged(format!("entry {:?} is malformed", name.name)))
    }

    /// Remove an entry; whether it existed. No re-key: for taking back an entry this
    /// process just added ([`OpenVault::remove_entry`] removes a secret for good).
    pub fn remove(&mut self, name: &EntryName) -> bool {
        self.entries.remove(name).is_some()
    }

    /// Remove an entry and re-key the vault ([`OpenVault::rekey`]): a data key taken before
    /// (from memory, or from an old copy and a removed unlocker) opens nothing written after.
    /// Whether it existed (nothing changes when it did not).
    pub fn remove_entry(&mut self, name: &EntryName) -> Result<bool, VaultError> {
        if !self.entries.contains_key(name) {
            return Ok(false);
        }
        self.rekey()?;
        self.entries.remove(name);
        Ok(true)
    }

    /// The file's bytes (always the current version) with the generation it was read with.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_bytes_at(self.generation)
    }

    /// The file's bytes: header (with `generation`), entries, keyed MAC, checksum.
    pub fn to_bytes_at(&self, generation: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + 128 * self.entries.len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_be_bytes());
        out.push(AEAD_XCHACHA20POLY1305);
        out.extend_from_slice(&generation.to_be_bytes());
        out.push(self.unlockers.len() as u8);
        for u in &self.unlockers {
            u.write(&mut out);
        }
        out.extend_from_slice(&(self.entries.len() as u32).to_be_bytes());
        for (name, e) in &self.entries {
            out.push(name.kind.code());
            put16(&mut out, name.name.as_bytes());
            out.extend_from_slice(&e.nonce);
            out.extend_from_slice(&(e.sealed.len() as u32).to_be_bytes());
            out.extend_from_slice(&e.sealed);
        }
        let mac = self.keys.mac(&out);
        out.extend_from_slice(&mac);
        let sum = Sha256::digest(&out);
        out.extend_from_slice(&sum);
        out
    }
}
