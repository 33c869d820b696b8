//! `tapcred rotate`: see [`flow`].

pub mod age;
mod flow;

pub use flow::*;
