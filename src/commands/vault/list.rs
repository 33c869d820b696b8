//! `vault list`: the unlockers and entry names; no secret, no touch.

use std::io::Write;

use super::{store, write_line};
use crate::commands::Ctx;
use crate::error::{Error, Result};

/// `vault list`: unlockers and entry names; no secret, no touch.
pub fn list(json: bool, ctx: &Ctx<'_>, out: &mut dyn Write) -> Result<i32> {
    let store = store(ctx)?;
    let Some(file) = store.read()? else {
        return Err(Error::config(format!(
            "no vault at {}; create one with `tapcred vault init --unlock otp`",
            store.path().display()
        )));
    };
    if json {
        let doc = serde_json::json!({
            "path": store.path(),
            "generation": file.generation(),
            "unlockers": file.unlocker_descs().map(|d| serde_json::json!({
                "id": d.id, "kind": d.kind.label()
            })).collect::<Vec<_>>(),
            "entries": file.entry_names().map(|e| serde_json::json!({
                "kind": e.kind.label(), "name": e.name
            })).collect::<Vec<_>>(),
        });
        write_line(out, &doc.to_string())?;
        return Ok(0);
    }
    write_line(out, &format!("vault {}", store.path().display()))?;
    for d in file.unlocker_descs() {
        write_line(out, &format!("unlocker  {}  {}", d.id, d.kind.label()))?;
    }
    for e in file.entry_names() {
        // "seed      NAME", "access-key NAME": the label, a space, aligned to 10 columns.
        let label = format!("{} ", e.kind.label());
        write_line(out, &format!("{label:<10}{}", e.name))?;
    }
    Ok(0)
}
