//! The vault file as read: parsing and checking the layout, reading its header without a
//! key, and opening it with one unlocker's output.

use std::collections::BTreeMap;
use std::fmt;

use sha2::{Digest, Sha256};

use super::bytes::Cursor;
use super::entry::{EntryKind, EntryName, SealedEntry};
use super::keys::Keys;
use super::open_vault::OpenVault;
use super::unlocker::{UnlockerDesc, UnlockerKind, Wrap, WrappedUnlocker};
use super::{
    AEAD_XCHACHA20POLY1305, KEY_LEN, MAC_LEN, MAGIC, MAX_FILE_LEN, MAX_SECRET_LEN, MAX_UNLOCKERS,
    NONCE_LEN, SUM_LEN, TAG_LEN, VERSION, WRAP_DIRECT, WRAP_SEALED,
};
use crate::vault::VaultError;

/// A parsed vault file: the header can be read (unlockers, entry names) without any key.
#[derive(Clone)]
pub struct VaultFile {
    pub(super) version: u16,
    pub(super) generation: u64,
    pub(super) unlockers: Vec<WrappedUnlocker>,
    pub(super) entries: BTreeMap<EntryName, SealedEntry>,
    /// The bytes the keyed MAC covers, and the MAC.
    pub(super) macced: Vec<u8>,
    pub(super) mac: [u8; MAC_LEN],
}

impl fmt::Debug for VaultFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultFile")
            .field("unlockers", &self.unlocker_descs().collect::<Vec<_>>())
            .field("entries", &self.entry_names().collect::<Vec<_>>())
            .finish()
    }
}

impl VaultFile {
    /// Parse and check a vault file's bytes. Any structural problem, trailing or missing
    /// byte, or checksum mismatch is [`VaultError::Damaged`]; it never panics.
    pub fn parse(bytes: &[u8]) -> Result<VaultFile, VaultError> {
        let damaged = |why: &str| VaultError::Damaged(why.to_owned());
        if bytes.len() > MAX_FILE_LEN {
            return Err(damaged("it is larger than any vault tapcred writes"));
        }
        if bytes.len() < MAGIC.len() || bytes[..MAGIC.len()] != MAGIC {
            return Err(damaged("it does not start like a tapcred vault"));
        }
        let mut c = Cursor {
            b: bytes,
            at: MAGIC.len(),
        };
        let version = c.u16().map_err(|_| damaged("it is cut short"))?;
        if version != 1 && version != VERSION {
            return Err(VaultError::UnsupportedVersion(version));
        }
        if bytes.len() < MAGIC.len() + 2 + MAC_LEN + SUM_LEN {
            return Err(damaged("it is cut short"));
        }
        let (body, sum) = bytes.split_at(bytes.len() - SUM_LEN);
        if Sha256::digest(body).as_slice() != sum {
            return Err(damaged(
                "its checksum does not match (a byte was changed, or the file was cut short)",
            ));
        }
        let (macced, mac) = body.split_at(body.len() - MAC_LEN);
        let mut c = Cursor {
            b: macced,
            at: c.at,
        };
        let parsed = (|| -> Result<_, &'static str> {
            if c.u8()? != AEAD_XCHACHA20POLY1305 {
                return Err("it names an unknown cipher");
            }
            let generation = match version {
                1 => 0,
                _ => u64::from_be_bytes(c.array()?),
            };
            let n = c.u8()? as usize;
            if n == 0 || n > MAX_UNLOCKERS {
                return Err("its unlocker count is out of range");
            }
            let mut unlockers: Vec<WrappedUnlocker> = Vec::with_capacity(n);
            for _ in 0..n {
                let kind = UnlockerKind::from_code(c.u8()?).ok_or("an unlocker kind is unknown")?;
                let id = std::str::from_utf8(c.take16()?)
                    .map_err(|_| "an unlocker id is not UTF-8")?
                    .to_owned();
                let desc = UnlockerDesc {
                    kind,
                    id,
                    salt: c.take16()?.to_vec(),
                    challenge: c.take16()?.to_vec(),
                    credential_id: c.take16()?.to_vec(),
                };
                desc.check()
                    .map_err(|_| "an unlocker field is out of range")?;
                if unlockers.iter().any(|u| u.desc.id == desc.id) {
                    return Err("two unlockers have the same id");
                }
                let wrap = match version {
                    1 => Wrap::Direct,
                    _ => match c.u8()? {
                        WRAP_DIRECT => Wrap::Direct,
                        WRAP_SEALED => Wrap::Sealed {
                            public: c.array()?,
                            ephemeral: c.array()?,
                        },
                        _ => return Err("an unlocker's wrap is unknown"),
                    },
                };
                let nonce = c.array::<NONCE_LEN>()?;
                let wrapped = c.take16()?.to_vec();
                if wrapped.len() != KEY_LEN + TAG_LEN {
                    return Err("a wrapped key has the wrong length");
                }
                unlockers.push(WrappedUnlocker {
                    desc,
                    wrap,
                    nonce,
                    wrapped,
                });
            }
            let m = c.u32()? as usize;
            let mut entries = BTreeMap::new();
            for _ in 0..m {
                let kind = EntryKind::from_code(c.u8()?).ok_or("an entry kind is unknown")?;
                let name = std::str::from_utf8(c.take16()?)
                    .map_err(|_| "an entry name is not UTF-8")?
                    .to_owned();
                let name = EntryName { kind, name };
                name.check().map_err(|_| "an entry name is out of range")?;
                let nonce = c.array::<NONCE_LEN>()?;
                let sealed = c.take32()?.to_vec();
                if sealed.len() < TAG_LEN || sealed.len() > MAX_SECRET_LEN + TAG_LEN {
                    return Err("an entry has the wrong length");
                }
                if entries
                    .insert(name, SealedEntry { nonce, sealed })
                    .is_some()
                {
                    return Err("two entries have the same name");
                }
            }
            c.done()?;
            Ok((generation, unlockers, entries))
        })();
        let (generation, unlockers, entries) = parsed.map_err(damaged)?;
        let mut m = [0u8; MAC_LEN];
        m.copy_from_slice(mac);
        Ok(VaultFile {
            version,
            generation,
            unlockers,
            entries,
            macced: macced.to_vec(),
            mac: m,
        })
    }

    pub fn unlocker_descs(&self) -> impl Iterator<Item = &UnlockerDesc> {
        self.unlockers.iter().map(|u| &u.desc)
    }

    pub fn entry_names(&self) -> impl Iterator<Item = &EntryName> {
        self.entries.keys()
    }

    /// A digest of one sealed entry as stored (name, nonce, ciphertext), known without any
    /// key; `None` when the entry is absent. Every write of the entry draws a new nonce, so
    /// the digest changes whenever the entry is written again (the session cache tells
    /// which key an entry holds by it without an unlock).
    pub fn sealed_digest(&self, name: &EntryName) -> Option<[u8; 32]> {
        let e = self.entries.get(name)?;
        let mut h = Sha256::new();
        h.update(name.aad());
        h.update(e.nonce);
        h.update((e.sealed.len() as u64).to_be_bytes());
        h.update(&e.sealed);
        Some(h.finalize().into())
    }

    /// The format version the file was written in (1 or 2).
    pub fn version(&self) -> u16 {
        self.version
    }

    /// The file's generation (0 for a version-1 file). Only a MAC-checked file
    /// ([`OpenVault::generation`]) proves it; the header alone can be forged.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Unwrap the data key with unlocker `id`'s output and check the whole file's MAC. A
    /// direct wrap of the opener becomes a sealed one in the opened vault (written on the
    /// next write).
    pub fn open(&self, id: &str, output: &[u8]) -> Result<OpenVault, VaultError> {
        let u = self
            .unlockers
            .iter()
            .find(|u| u.desc.id == id)
            .ok_or_else(|| {
                VaultError::NotFound(format!(
                    "the vault has no unlocker {id:?} (it has {})",
                    self.unlockers
                        .iter()
                        .map(|u| u.desc.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
        let keys = Keys::from_data_key(u.unwrap(output)?);
        if !keys.verify_mac(&self.macced, &self.mac) {
            return Err(VaultError::Damaged(
                "its seal does not match its contents (it was edited outside tapcred)".into(),
            ));
        }
        let mut vault = OpenVault {
            generation: self.generation,
            unlockers: self.unlockers.clone(),
            entries: self.entries.clone(),
            keys,
        };
        vault.seal_direct(id, output)?;
        Ok(vault)
    }
}
