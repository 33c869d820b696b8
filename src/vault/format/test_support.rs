//! What the vault tests build on: a version-1 file, the keys of an open vault, the wraps.

use chacha20poly1305::XNonce;
use chacha20poly1305::aead::{Aead, Payload};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::bytes::put16;
use super::entry::{EntryName, Secret, seal_entry};
use super::file::VaultFile;
use super::keys::{Keys, cipher, fill_random, random_nonce};
use super::open_vault::OpenVault;
use super::unlocker::{UnlockerDesc, derive_kek};
use super::{AEAD_XCHACHA20POLY1305, KEY_LEN, MAGIC, NONCE_LEN};

impl OpenVault {
    /// The data key and the keys derived from it (for the "never in the file" test).
    pub(in crate::vault) fn test_keys(&self) -> ([u8; KEY_LEN], [u8; KEY_LEN], [u8; KEY_LEN]) {
        (
            *self.keys.data_key,
            *self.keys.entry_key,
            *self.keys.mac_key,
        )
    }
}

impl VaultFile {
    /// Each entry's name, nonce and sealed bytes, as in the file (for decrypting them with
    /// keys from elsewhere in tests).
    pub(in crate::vault) fn test_sealed(&self) -> Vec<(EntryName, [u8; NONCE_LEN], Vec<u8>)> {
        self.entries
            .iter()
            .map(|(n, e)| (n.clone(), e.nonce, e.sealed.clone()))
            .collect()
    }

    /// Whether each unlocker's wrap is sealed (else direct), in header order.
    pub(in crate::vault) fn test_sealed_wraps(&self) -> Vec<bool> {
        self.unlockers.iter().map(|u| u.is_sealed()).collect()
    }
}

/// A version-1 file (as tapcred before generations wrote it: no generation, direct wraps)
/// with `unlockers` and `entries`, for the upgrade tests.
pub(in crate::vault) fn test_v1_bytes(
    unlockers: &[(&UnlockerDesc, &[u8])],
    entries: &[(EntryName, Secret)],
) -> Vec<u8> {
    let mut data_key = Zeroizing::new([0u8; KEY_LEN]);
    fill_random(data_key.as_mut_slice()).unwrap();
    let keys = Keys::from_data_key(data_key);
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&1u16.to_be_bytes());
    out.push(AEAD_XCHACHA20POLY1305);
    out.push(unlockers.len() as u8);
    for (desc, output) in unlockers {
        let nonce = random_nonce().unwrap();
        let wrapped = cipher(&derive_kek(desc, output))
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: keys.data_key.as_slice(),
                    aad: &desc.direct_aad(),
                },
            )
            .unwrap();
        desc.write_fields(&mut out);
        out.extend_from_slice(&nonce);
        put16(&mut out, &wrapped);
    }
    out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    for (name, secret) in entries {
        let e = seal_entry(&keys, name, &secret.encode()).unwrap();
        out.push(name.kind.code());
        put16(&mut out, name.name.as_bytes());
        out.extend_from_slice(&e.nonce);
        out.extend_from_slice(&(e.sealed.len() as u32).to_be_bytes());
        out.extend_from_slice(&e.sealed);
    }
    let mac = keys.mac(&out);
    out.extend_from_slice(&mac);
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    out
}

/// The wrapping key an unlocker's output gives (for the "never in the file" test).
pub(in crate::vault) fn test_kek(desc: &UnlockerDesc, output: &[u8]) -> [u8; KEY_LEN] {
    *derive_kek(desc, output)
}
