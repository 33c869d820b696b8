//! The `vault` commands (issue 10): `init`, `add-seed`, `import-keys`, `add-unlock`,
//! `remove`, `list`. The vault is unlocked by a YubiKey OTP slot's HMAC-SHA1
//! challenge-response over PC/SC; see `src/vault/` for the file format.
//!
//! Every command that changes the vault takes the writers' lock first, re-reads the file
//! under it, unlocks once (one touch), changes it and writes it atomically. The file's keyed
//! MAC covers the whole file (header and entries), so removing an entry or an unlocker needs
//! the data key too: `remove` unlocks like the others.

mod add_unlock;
mod import;
mod init;
mod list;
mod open;
mod remove;
mod rollback;
mod seed;
mod unlock_spec;

use crate::commands::{Ctx, write_line};
use crate::error::{Error, Result};
use crate::vault::VaultStore;

pub use add_unlock::add_unlock;
pub use import::{ACCESS_KEY_KEY, IMPORT_JOURNAL, import_keys};
pub use init::init;
pub use list::list;
pub(crate) use open::{Unlocked, unlock_with};
pub use remove::{RemoveWhat, remove};
pub use rollback::accept_rollback;
pub use seed::add_seed;
pub use unlock_spec::{UnlockSpec, parse_unlock};

pub(crate) fn store(ctx: &Ctx<'_>) -> Result<VaultStore> {
    VaultStore::from_env(ctx.env).ok_or_else(|| {
        Error::config(
            "no place for the vault: HOME is not set; set HOME, XDG_DATA_HOME or TAPCRED_VAULT",
        )
    })
}
