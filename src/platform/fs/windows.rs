//! The Windows side of [`super`]: owner-only ACLs set on the open handle, reparse points
//! refused.

use std::fs::{self, File, FileType, Metadata, OpenOptions};
use std::io;
use std::os::windows::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::OnceLock;

use windows_permissions::constants::{AceFlags, AceType, SeObjectType, SecurityInformation};
use windows_permissions::{LocalBox, SecurityDescriptor, Sid, utilities, wrappers};
use windows_sys::Win32::Storage::FileSystem::{
    DELETE, FILE_ATTRIBUTE_REPARSE_POINT, FILE_FLAG_BACKUP_SEMANTICS, FILE_FLAG_OPEN_REPARSE_POINT,
    FILE_GENERIC_READ, FILE_GENERIC_WRITE, FILE_READ_ATTRIBUTES, FILE_READ_DATA, READ_CONTROL,
    WRITE_DAC,
};

use super::{DirProblem, ReadError};

/// std cannot pass a security descriptor to `CreateFileW`: the owner-only ACL is set on
/// the new handle right after the create, before anything is written.
pub const ACL_AFTER_CREATE: bool = true;
/// Renaming over a file any handle still has open is refused (Access denied), with
/// FILE_SHARE_DELETE or without.
pub const CAN_REPLACE_OPEN_FILE: bool = false;

const GENERIC_READ: u32 = 0x8000_0000;
const GENERIC_WRITE: u32 = 0x4000_0000;
const GENERIC_ALL: u32 = 0x1000_0000;
const WRITE_OWNER: u32 = 0x0008_0000;
/// File: write data, append; directory: add file, add subdirectory, delete child.
const FILE_WRITE_BITS: u32 = 0x2 | 0x4 | 0x40;
/// Rights that make a file readable by a SID.
pub const READ_RIGHTS: u32 = FILE_READ_DATA | GENERIC_READ | GENERIC_ALL;
/// Rights that make a private file or directory not private: read, write, delete, or
/// change its ACL or owner (reading attributes or the ACL alone does not count).
pub const ANY_RIGHTS: u32 =
    READ_RIGHTS | FILE_WRITE_BITS | DELETE | WRITE_DAC | WRITE_OWNER | GENERIC_WRITE;

const SYSTEM: &str = "S-1-5-18";
const ADMINISTRATORS: &str = "S-1-5-32-544";

/// This process's user SID (from its token), as an SDDL string.
fn me() -> io::Result<&'static str> {
    static ME: OnceLock<Option<String>> = OnceLock::new();
    ME.get_or_init(|| utilities::current_process_sid().ok().map(|s| s.to_string()))
        .as_deref()
        .ok_or_else(|| io::Error::other("cannot read this process's user SID"))
}

/// The SDDL of the owner-only DACL: protected (nothing inherited), one entry, full
/// control for `user` (a directory's entry is inherited by files and directories in it).
pub fn owner_only_sddl(user: &str, dir: bool) -> String {
    let inherit = if dir { "OICI" } else { "" };
    format!("D:P(A;{inherit};FA;;;{user})")
}

fn set_owner_only(handle: &mut File, dir: bool) -> io::Result<()> {
    let sd: LocalBox<SecurityDescriptor> = owner_only_sddl(me()?, dir).parse()?;
    let dacl = sd
        .dacl()
        .ok_or_else(|| io::Error::other("the owner-only ACL did not parse"))?;
    wrappers::SetSecurityInfo(
        handle,
        SeObjectType::SE_FILE_OBJECT,
        SecurityInformation::Dacl | SecurityInformation::ProtectedDacl,
        None,
        None,
        Some(dacl),
        None,
    )
}

pub fn make_owner_only(f: &mut File, dir: bool) -> io::Result<()> {
    set_owner_only(f, dir)
}

/// Open a directory itself (never through a reparse point) with `access`.
fn open_dir(path: &Path, access: u32) -> io::Result<File> {
    let d = OpenOptions::new()
        .access_mode(access)
        .custom_flags(FILE_FLAG_OPEN_REPARSE_POINT | FILE_FLAG_BACKUP_SEMANTICS)
        .open(path)?;
    if is_reparse_point(&d.metadata()?) {
        return Err(super::owner::reparse_point_refusal());
    }
    Ok(d)
}

pub fn make_dir_owner_only(path: &Path) -> io::Result<()> {
    let mut d = open_dir(path, READ_CONTROL | WRITE_DAC | FILE_READ_ATTRIBUTES)?;
    set_owner_only(&mut d, true)
}

fn security_of(f: &File) -> io::Result<LocalBox<SecurityDescriptor>> {
    wrappers::GetSecurityInfo(
        f,
        SeObjectType::SE_FILE_OBJECT,
        SecurityInformation::Dacl | SecurityInformation::Owner,
    )
}

/// Who an ACL lets do `rights` besides `me`, SYSTEM and Administrators: the SIDs (as
/// SDDL strings) of the allow entries that apply to the object itself. A missing DACL
/// (a null DACL) grants everything to everyone: `Everyone`.
pub fn others_granted(sd: &SecurityDescriptor, me: &str, rights: u32) -> Vec<String> {
    // A null DACL (present, no list) grants everything to everyone. windows-permissions
    // 0.2.4 panics on one in `dacl()`, so it is recognised by its SDDL first (an SDDL
    // that cannot be made counts as everyone: refuse rather than guess).
    let null_dacl = wrappers::ConvertSecurityDescriptorToStringSecurityDescriptor(
        sd,
        SecurityInformation::Dacl,
    )
    .map_or(true, |s| s.to_string_lossy().contains("NO_ACCESS_CONTROL"));
    let Some(acl) = sd.dacl().filter(|_| !null_dacl) else {
        return vec!["S-1-1-0".to_owned()];
    };
    let mut who = Vec::new();
    for i in 0..acl.len() {
        let Some(ace) = acl.get_ace(i) else { break };
        let allow = matches!(
            ace.ace_type(),
            AceType::ACCESS_ALLOWED_ACE_TYPE
                | AceType::ACCESS_ALLOWED_OBJECT_ACE_TYPE
                | AceType::ACCESS_ALLOWED_CALLBACK_ACE_TYPE
                | AceType::ACCESS_ALLOWED_CALLBACK_OBJECT_ACE_TYPE
        );
        if !allow || ace.flags().contains(AceFlags::InheritOnly) || ace.mask().bits() & rights == 0
        {
            continue;
        }
        let Some(sid) = ace.sid().map(|s| s.to_string()) else {
            continue;
        };
        if sid != me && sid != SYSTEM && sid != ADMINISTRATORS && !who.contains(&sid) {
            who.push(sid);
        }
    }
    who
}

/// Whether the owner is this user (or Administrators: the owner of what an elevated
/// process creates).
pub fn owner_is(sd: &SecurityDescriptor, me: &str) -> bool {
    sd.owner()
        .map(|o| o.to_string())
        .is_some_and(|o| o == me || o == ADMINISTRATORS)
}

/// A SID for messages: `DOMAIN\name` when it resolves, else the SID string.
fn name_of(sid: &str) -> String {
    let Ok(s) = sid.parse::<LocalBox<Sid>>() else {
        return sid.to_owned();
    };
    match wrappers::LookupAccountSid(&s) {
        Ok((name, domain)) if !domain.is_empty() => {
            format!("{}\\{}", domain.to_string_lossy(), name.to_string_lossy())
        }
        Ok((name, _)) if !name.is_empty() => name.to_string_lossy().into_owned(),
        _ => sid.to_owned(),
    }
}

fn names(sids: &[String]) -> String {
    sids.iter()
        .map(|s| name_of(s))
        .collect::<Vec<_>>()
        .join(", ")
}

/// tapcred's own file: owned by this user (or Administrators). Its ACL was made
/// owner-only on the handle that created it, and its directory's ACL is checked (and
/// tightened) by [`check_dir_access`] before use; the file's ACL is not read back here,
/// so that a runtime which maps ACLs lossily (Wine turns any DACL into Unix mode bits and
/// reports Everyone:read back) does not turn every cache entry into a miss.
pub fn check_private_file(f: &File, _md: &Metadata) -> Result<(), ReadError> {
    let me = me().map_err(ReadError::Io)?;
    let sd = security_of(f).map_err(ReadError::Io)?;
    if owner_is(&sd, me) {
        Ok(())
    } else {
        Err(ReadError::Foreign("owner"))
    }
}

pub fn check_dir_access(path: &Path, _md: &Metadata) -> Result<bool, DirProblem> {
    let link_or = |e: io::Error, other: fn(io::Error) -> DirProblem| {
        if super::owner::is_reparse_point_refusal(&e) {
            DirProblem::Link
        } else {
            other(e)
        }
    };
    let d = open_dir(path, READ_CONTROL | FILE_READ_ATTRIBUTES)
        .map_err(|e| link_or(e, DirProblem::Unreadable))?;
    let me = me().map_err(DirProblem::Unreadable)?;
    let sd = security_of(&d).map_err(DirProblem::Unreadable)?;
    if !owner_is(&sd, me) {
        let owner = sd.owner().map(|o| o.to_string()).unwrap_or_default();
        return Err(DirProblem::Foreign(name_of(&owner)));
    }
    if others_granted(&sd, me, ANY_RIGHTS).is_empty() {
        return Ok(false);
    }
    drop(d);
    make_dir_owner_only(path).map_err(|e| link_or(e, DirProblem::CannotTighten))?;
    Ok(true)
}

pub fn check_dir_owner(path: &Path) -> Result<(), DirProblem> {
    // Links followed (no FILE_FLAG_OPEN_REPARSE_POINT): the folder the person chose.
    let d = OpenOptions::new()
        .access_mode(READ_CONTROL | FILE_READ_ATTRIBUTES)
        .custom_flags(FILE_FLAG_BACKUP_SEMANTICS)
        .open(path)
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => DirProblem::Missing,
            _ => DirProblem::Unreadable(e),
        })?;
    let md = d.metadata().map_err(DirProblem::Unreadable)?;
    if !md.is_dir() {
        return Err(DirProblem::NotDir(super::kind_of(&md)));
    }
    let me = me().map_err(DirProblem::Unreadable)?;
    let sd = security_of(&d).map_err(DirProblem::Unreadable)?;
    if !owner_is(&sd, me) {
        let owner = sd.owner().map(|o| o.to_string()).unwrap_or_default();
        return Err(DirProblem::Foreign(name_of(&owner)));
    }
    Ok(())
}

pub fn take_ownership_hint(path: &Path) -> String {
    format!("takeown /f \"{}\" from an elevated prompt", path.display())
}

pub fn others_can_read(f: &File, _md: &Metadata) -> Option<String> {
    let me = me().ok()?;
    let sd = security_of(f).ok()?;
    let who = others_granted(&sd, me, READ_RIGHTS);
    (!who.is_empty()).then(|| format!("its ACL lets {} read it", names(&who)))
}

pub fn private_no_follow(o: &mut OpenOptions) {
    // WRITE_DAC (and READ_CONTROL) on top of read/write: the owner-only ACL is set on
    // this handle (the owner always has both rights).
    o.access_mode(FILE_GENERIC_READ | FILE_GENERIC_WRITE | WRITE_DAC | READ_CONTROL)
        .custom_flags(FILE_FLAG_OPEN_REPARSE_POINT);
}

pub fn private_no_follow_nonblock(o: &mut OpenOptions) {
    private_no_follow(o);
}

pub fn read_flags(o: &mut OpenOptions, follow_links: bool) {
    o.access_mode(FILE_GENERIC_READ | READ_CONTROL);
    if !follow_links {
        o.custom_flags(FILE_FLAG_OPEN_REPARSE_POINT);
    }
}

pub fn private_dir(_b: &mut fs::DirBuilder) {}

pub fn is_symlink_refusal(_e: &io::Error) -> bool {
    false
}

pub fn make_private_hint(path: &Path) -> String {
    format!(
        "icacls \"{}\" /inheritance:r /grant:r \"%USERNAME%:F\"",
        path.display()
    )
}

pub fn foreign_owner(path: &Path, _md: &Metadata, system_ok: bool) -> Option<String> {
    // READ_CONTROL is enough to read the owner; backup semantics opens a directory too.
    let f = OpenOptions::new()
        .access_mode(READ_CONTROL)
        .custom_flags(FILE_FLAG_BACKUP_SEMANTICS)
        .open(path)
        .ok()?;
    let me = me().ok()?;
    let sd = security_of(&f).ok()?;
    if owner_is(&sd, me) {
        return None;
    }
    let owner = sd.owner().map(|o| o.to_string())?;
    if system_ok && owner == SYSTEM {
        return None;
    }
    Some(name_of(&owner))
}

pub fn read_only(md: &Metadata) -> Option<String> {
    md.permissions()
        .readonly()
        .then(|| "the read-only attribute is set".to_owned())
}

pub fn make_writable_hint(path: &Path) -> String {
    format!("attrib -r \"{}\"", path.display())
}

pub fn user_tag() -> String {
    // %TEMP% is already per user on Windows.
    std::env::var("USERNAME").unwrap_or_else(|_| "user".to_owned())
}

pub fn is_reparse_point(md: &Metadata) -> bool {
    md.file_attributes() & FILE_ATTRIBUTE_REPARSE_POINT != 0
}

pub fn is_null_device(path: &Path) -> bool {
    let p = path.as_os_str().to_string_lossy().to_ascii_lowercase();
    p == "nul" || p == r"\\.\nul"
}

pub fn special_kind(_ft: &FileType) -> &'static str {
    "not a regular file"
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &str = "S-1-5-21-1-2-3-1001";

    fn sd(sddl: &str) -> LocalBox<SecurityDescriptor> {
        sddl.parse().unwrap()
    }

    #[test]
    fn owner_only_acl_names_only_this_user() {
        let file = sd(&format!("O:{ME}{}", owner_only_sddl(ME, false)));
        assert!(others_granted(&file, ME, ANY_RIGHTS).is_empty());
        assert!(owner_is(&file, ME));
        let dir = sd(&owner_only_sddl(ME, true));
        assert!(others_granted(&dir, ME, ANY_RIGHTS).is_empty());
        // Protected: nothing inherited from the parent.
        assert!(owner_only_sddl(ME, true).starts_with("D:P("));
    }

    #[test]
    fn a_profile_acl_is_private_and_others_are_named() {
        // What %USERPROFILE% gives its files: the user, SYSTEM, Administrators.
        let profile = sd(&format!("D:(A;ID;FA;;;{ME})(A;ID;FA;;;SY)(A;ID;FA;;;BA)"));
        assert!(others_granted(&profile, ME, ANY_RIGHTS).is_empty());
        assert!(others_granted(&profile, ME, READ_RIGHTS).is_empty());
        // Users may read: not private, and Users is who is named.
        let shared = sd(&format!("D:(A;;FA;;;{ME})(A;;FR;;;BU)(A;;0x1200a9;;;WD)"));
        assert_eq!(
            others_granted(&shared, ME, READ_RIGHTS),
            vec!["S-1-5-32-545".to_owned(), "S-1-1-0".to_owned()]
        );
        // Another user with write only: not readable by them, but not private either.
        let writer = sd(&format!("D:(A;;FA;;;{ME})(A;;FW;;;S-1-5-21-1-2-3-1002)"));
        assert!(others_granted(&writer, ME, READ_RIGHTS).is_empty());
        assert_eq!(others_granted(&writer, ME, ANY_RIGHTS).len(), 1);
    }

    #[test]
    fn null_dacl_is_everyone_and_inherit_only_entries_do_not_apply() {
        // Windows parses NO_ACCESS_CONTROL into a null DACL (everyone); Wine into an
        // empty one (no one): each must be judged as what it is.
        let null = sd("D:NO_ACCESS_CONTROL");
        let is_null = wrappers::ConvertSecurityDescriptorToStringSecurityDescriptor(
            &null,
            SecurityInformation::Dacl,
        )
        .unwrap()
        .to_string_lossy()
        .contains("NO_ACCESS_CONTROL");
        let want: Vec<String> = if is_null {
            vec!["S-1-1-0".to_owned()]
        } else {
            Vec::new()
        };
        assert_eq!(others_granted(&null, ME, READ_RIGHTS), want);
        assert!(others_granted(&sd("D:"), ME, ANY_RIGHTS).is_empty());
        let inherit_only = sd(&format!(
            "D:(A;;FA;;;{ME})(A;OICIIO;GA;;;CO)(A;OICIIO;GR;;;BU)"
        ));
        assert!(others_granted(&inherit_only, ME, ANY_RIGHTS).is_empty());
        // A deny entry is no grant.
        let deny = sd(&format!("D:(D;;FR;;;WD)(A;;FA;;;{ME})"));
        assert!(others_granted(&deny, ME, READ_RIGHTS).is_empty());
    }

    #[test]
    fn created_files_and_directories_take_the_acl_and_read_back_as_mine() {
        // SetSecurityInfo on each new handle must succeed, and the owner read back
        // must be this process's user (what the grants read back as depends on the
        // file system: Wine reports its Unix mode, see docs/platforms.md).
        let base = std::env::temp_dir().join(format!("tapcred-acl-{}", std::process::id()));
        let dir = base.join("cache");
        super::super::create_private_dir_all(&dir).unwrap();
        let path = dir.join("entry.json");
        let mut f = super::super::create_new_private(&path).unwrap();
        std::io::Write::write_all(&mut f, b"{}").unwrap();
        drop(f);
        let back = super::super::read_private_file(&path, 1024).unwrap();
        assert_eq!(&back[..], b"{}");
        let sd = security_of(&File::open(&path).unwrap()).unwrap();
        assert!(owner_is(&sd, me().unwrap()));
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn owner_must_be_this_user_or_administrators() {
        assert!(owner_is(&sd("O:BAD:"), ME));
        assert!(!owner_is(&sd("O:S-1-5-21-1-2-3-1002D:"), ME));
    }
}
