//! `sessions`: list and clear cached sessions.

use std::io::Write;

use crate::commands::Ctx;
use crate::error::{Error, Result};

pub fn list(_json: bool, _ctx: &Ctx<'_>, _out: &mut dyn Write) -> Result<i32> {
    Err(Error::internal("the session cache is not available yet"))
}

pub fn clear(_profile: Option<&str>, _ctx: &Ctx<'_>, _out: &mut dyn Write) -> Result<i32> {
    Err(Error::internal("the session cache is not available yet"))
}
