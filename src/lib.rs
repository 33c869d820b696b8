//! tapcred: AWS profiles with `mfa_serial` served with a tap on a YubiKey.
//!
//! Layers (docs/architecture.md): `cli` → `commands` → `engine` → {`profile`, `token`, `sts`, `cache`,
//! `ui`}. Nothing below imports anything above.

pub mod build_id;
pub mod cache;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod credentials;
pub mod engine;
pub mod env;
pub mod error;
pub mod iam;
pub mod journal;
pub mod platform;
pub mod profile;
pub mod rolesanywhere;
pub mod serve;
pub mod sts;
pub mod text;
pub mod token;
pub mod ui;
pub mod vault;

pub use credentials::Credentials;
pub use error::{Error, ErrorKind, Reason, Result};
