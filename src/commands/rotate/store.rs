//! Where the access key lives (the credentials file, through the byte-preserving editor, or
//! the vault entry): the new key put in, the old one put back, the key read back.

use zeroize::Zeroizing;

use crate::commands::vault::Unlocked;
use crate::credentials::Credentials;
use crate::error::{Error, Result};
use crate::profile::Profiles;
use crate::profile::editor::{self, AwsFile, EditReceipt, ProfileEdit};
use crate::vault::{EntryName, Secret, VaultStore};

use super::setup::Setup;

/// Where the key lives.
pub(super) enum Store {
    File {
        path: std::path::PathBuf,
    },
    Vault {
        store: VaultStore,
        unlocked: Box<Unlocked>,
    },
}

impl Store {
    pub(super) fn word(&self) -> &'static str {
        match self {
            Store::File { .. } => "file",
            Store::Vault { .. } => "vault",
        }
    }

    pub(super) fn describe(&self) -> String {
        match self {
            Store::File { path } => path.display().to_string(),
            Store::Vault { store, .. } => format!("the vault {}", store.path().display()),
        }
    }
}

/// The key as it was before an edit, to put back.
pub(super) enum Previous {
    File(Box<EditReceipt>),
    Vault(Secret),
}

/// Put `key` where the profile's key lives; returns how to put the old one back.
pub(super) fn put_key(s: &Setup<'_>, key: &Credentials) -> Result<Previous> {
    match &s.store {
        Store::File { path } => {
            let edit = ProfileEdit::new(s.signer.clone())
                .set("aws_access_key_id", key.access_key_id.clone())
                .set_secret(
                    "aws_secret_access_key",
                    secrecy::SecretString::from(key.secret().to_owned()),
                )
                .without_backup();
            let receipt = editor::apply_edits(path, AwsFile::Credentials, &[edit])?;
            Ok(Previous::File(Box::new(receipt)))
        }
        Store::Vault { store, unlocked } => {
            let name = EntryName::access_key(s.signer.clone());
            let old = Secret::AccessKey {
                access_key_id: s.current.access_key_id.clone(),
                secret_access_key: Zeroizing::new(s.current.secret().to_owned()),
            };
            let new = Secret::AccessKey {
                access_key_id: key.access_key_id.clone(),
                secret_access_key: Zeroizing::new(key.secret().to_owned()),
            };
            unlocked.change(store, |v| v.put(name, &new))?;
            Ok(Previous::Vault(old))
        }
    }
}

pub(super) fn restore_key(s: &Setup<'_>, prev: &Previous) -> Result<()> {
    match (prev, &s.store) {
        (Previous::File(receipt), _) => receipt.restore(),
        (Previous::Vault(old), Store::Vault { store, unlocked }) => {
            let name = EntryName::access_key(s.signer.clone());
            unlocked.change(store, |v| v.put(name, old)).map(|_| ())
        }
        _ => Err(Error::internal("the old key's place is not this run's")),
    }
}

/// The key as stored now, read back from the file or the vault.
pub(super) fn read_stored(s: &Setup<'_>) -> Result<Credentials> {
    match &s.store {
        Store::File { .. } => {
            let profiles = Profiles::load(&s.files)?;
            let r = profiles.resolve(&s.signer, s.ctx.env)?;
            Ok(crate::sts::base_credentials(&r.base))
        }
        Store::Vault { store, unlocked } => {
            match unlocked
                .read(store)?
                .get(&EntryName::access_key(s.signer.clone()))?
            {
                Secret::AccessKey {
                    access_key_id,
                    secret_access_key,
                } => Ok(Credentials::new(
                    access_key_id,
                    secret_access_key.to_string(),
                    None,
                    None,
                )),
                Secret::TotpSeed(_) => Err(Error::internal("the vault entry is not an access key")),
            }
        }
    }
}
