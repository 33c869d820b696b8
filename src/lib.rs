//! tapcred: AWS profiles with `mfa_serial` served with a tap on a YubiKey.
//!
//! Layers (docs/architecture.md "Layers"), one per line, lowest first. A module may import
//! (`crate::…`, tests included) only modules of the layers below its own: never one above,
//! never another module of its own layer. Every top-level module is in exactly one layer.
//! `tests/layers.rs` reads this list and checks every file under `src/` against it.
//!
//! ```text
//! ground:   clock credentials env error text
//! os:       platform
//! services: build_id journal ui
//! devices:  token
//! vault:    vault
//! config:   cache profile
//! sts:      serve sts
//! aws:      iam rolesanywhere
//! engine:   engine
//! commands: commands
//! cli:      cli
//! ```
//!
//! The programs (`src/main.rs`, `src/bin/`) sit above `cli` and use the library by name.

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
