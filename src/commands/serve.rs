//! `serve`: a loopback container-credentials endpoint.

use std::io::Write;

use crate::commands::Ctx;
use crate::engine::Options;
use crate::error::{Error, Result};

pub fn run(
    _profile: &str,
    _port: u16,
    _command: &[String],
    _opts: &Options,
    _ctx: &Ctx<'_>,
    _out: &mut dyn Write,
) -> Result<i32> {
    Err(Error::internal("serve is not available yet"))
}
