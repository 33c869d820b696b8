//! The installed programs: the launcher and the full program beside it are one build.

use super::report::Doctor;

/// Both programs from one build (`crate::build_id`).
pub(super) fn programs_check(d: &mut Doctor) {
    use crate::build_id::{self, BUILD_ID};
    let full =
        crate::platform::locations::program_file_name(crate::platform::locations::FULL_PROGRAM);
    let launcher = build_id::launcher_path();
    match launcher.as_ref().map(|p| (p, build_id::id_in_file(p))) {
        Ok((p, Ok(Some(id)))) if id == BUILD_ID => d.ok(
            "program",
            format!("{} and {full} beside it: one build ({BUILD_ID})", p.display()),
        ),
        Ok((p, Ok(Some(id)))) => d.problem(
            "program",
            format!(
                "{} is build {id} but {full} is build {BUILD_ID}: every call through it fails",
                p.display()
            ),
            "reinstall both together (`cargo install --locked --path .` in tapcred's source folder, or the package)",
            7,
        ),
        Ok((p, Ok(None))) => d.note(
            "program",
            format!("{} has no build id (not this tapcred's launcher)", p.display()),
            Some("reinstall both programs together".to_owned()),
        ),
        Ok((p, Err(e))) => d.note(
            "program",
            format!("no launcher beside {full} ({}: {e}); {full} still works alone", p.display()),
            None,
        ),
        Err(e) => d.note("program", format!("cannot find tapcred's own folder: {e}"), None),
    }
}
