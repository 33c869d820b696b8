//! The vault file format, version 2 (version 1 is still read), and its crypto. Pure
//! functions over bytes: no I/O, no hardware (an unlocker's output comes in as bytes).
//!
//! ```text
//! magic      8   "TCVAULT\0"
//! version    2   2 (big-endian, as every integer here); 1 = the format before generations
//! aead       1   1 = XChaCha20-Poly1305 (24-byte random nonces, 16-byte tags)
//! generation 8   (version 2 only) one more than the generation of the file it replaced
//! unlockers  1   count n, 1..=16, then n times:
//!   kind           1   1 = YubiKey OTP slot HMAC-SHA1, 2 = FIDO2 hmac-secret
//!   id             2+  UTF-8 label, unique in the file ("otp:12345678:2")
//!   salt           2+  HKDF salt (32 random bytes)
//!   challenge      2+  what the device is asked (OTP: 32 random bytes; FIDO2: the salt)
//!   credential id  2+  FIDO2 credential id (empty for OTP)
//!   wrap           1   (version 2 only) 1 = direct, 2 = sealed; version 1: always direct
//!   public key    32   (sealed only) the unlocker's X25519 public key
//!   ephemeral     32   (sealed only) the X25519 public key of this wrap
//!   nonce         24
//!   wrapped key    2+  AEAD(KEK, nonce, data key, AAD)
//! entries    4   count m, then m times:
//!   kind           1   1 = TOTP seed (name = mfa_serial), 2 = access key (name = source profile)
//!   name           2+  UTF-8, unique per kind
//!   nonce         24
//!   sealed         4+  AEAD(entry key, nonce, secret, AAD = "tapcred vault v1 entry" ‖ kind ‖ name)
//! mac       32   HMAC-SHA256(mac key, every byte before it)
//! checksum  32   SHA-256(every byte before it)
//! ```
//!
//! Wraps. *Direct* (every unlocker of a version-1 file): KEK = HKDF-SHA256(ikm = unlocker
//! output, salt, info = "tapcred vault v1 wrap" ‖ kind), AAD = magic ‖ 0x0001 ‖ aead ‖ the
//! unlocker's fields. *Sealed*: the unlocker's X25519 secret key is HKDF-SHA256(ikm = output,
//! salt, info = "tapcred vault v2 unlocker x25519" ‖ kind); the data key is sealed to its public
//! key with a fresh ephemeral key: KEK = HKDF-SHA256(ikm = X25519(ephemeral, public), salt =
//! ephemeral ‖ public, info = "tapcred vault v2 wrap"), AAD = magic ‖ 0x02 ‖ the unlocker's
//! fields ‖ public ‖ ephemeral. Sealing needs only the public key, so removing an unlocker (or
//! a secret) re-keys the vault — a new data key, every entry re-sealed under it, the new key
//! sealed to each remaining unlocker — with one touch: a removed unlocker's output, or an old
//! data key, opens nothing written after. A direct wrap becomes a sealed one when its unlocker
//! opens the vault (its output gives the key pair); re-keying needs every unlocker sealed.
//!
//! The generation is under the MAC: tapcred remembers the highest one it has seen for each
//! vault (`super::store`), so an older copy of the file put back in place is refused.
//!
//! `2+`/`4+` = a 2- or 4-byte length, then that many bytes. The entry key and the mac key are
//! HKDF-SHA256 expansions of the data key (info "tapcred vault v1 entries" / "… file mac").
//! The checksum tells a damaged file (any changed or missing byte) from a wrong key before
//! any key is tried; the keyed MAC catches a deliberate edit that recomputed the checksum
//! (an entry removed or swapped, another unlocker's fields changed). Names are in the clear
//! so `vault list` needs no touch; secrets are not.

mod bytes;
mod entry;
mod file;
mod keys;
mod open_vault;
#[cfg(test)]
mod test_support;
mod unlocker;

pub use entry::{EntryKind, EntryName, Secret};
pub use file::VaultFile;
pub use open_vault::OpenVault;
#[cfg(test)]
pub(super) use test_support::{test_kek, test_v1_bytes};
pub use unlocker::{UnlockerDesc, UnlockerKind};

pub const MAGIC: [u8; 8] = *b"TCVAULT\0";
pub const VERSION: u16 = 2;
/// The version named in a direct wrap's AAD (direct wraps were made by version 1).
const DIRECT_WRAP_VERSION: u16 = 1;
const WRAP_DIRECT: u8 = 1;
const WRAP_SEALED: u8 = 2;
const AEAD_XCHACHA20POLY1305: u8 = 1;
/// A vault file larger than this is not one tapcred wrote.
pub const MAX_FILE_LEN: usize = 1 << 20;
pub const MAX_UNLOCKERS: usize = 16;
pub const MAX_NAME_LEN: usize = 512;
const MAX_FIELD_LEN: usize = 1024;
const MAX_SECRET_LEN: usize = 8 * 1024;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const KEY_LEN: usize = 32;
const MAC_LEN: usize = 32;
const SUM_LEN: usize = 32;
