//! Byte-preserving edits of `~/.aws/config` and `~/.aws/credentials` (for `configure` and
//! `enroll`).
//!
//! Only the lines an edit needs are touched: a key that exists is rewritten in place (its
//! spelling, the spacing around `=` and a trailing `# comment` are kept), a new key goes at the
//! end of its section (before the section's trailing blank lines and comments), a missing
//! section is appended at the end of the file with the header style of that file
//! (`[profile x]` in config except `[default]`, `[x]` in credentials). Every other byte stays:
//! comments, order, blank lines, unknown keys, other profiles, CRLF line endings (new lines use
//! the file's style), a missing final newline, indentation.
//!
//! Writing: a lock file beside the target (`NAME.tapcred.lock`, `File::lock`) serialises
//! concurrent tapcred writers; the new text goes to a temporary file in the same directory
//! (fsync, rename); the first edit keeps the previous file once as `NAME.tapcred.bak`; the
//! file's permissions are kept (new files are 0600). Values are held as secrets and zeroized;
//! errors never contain them.
//!
//! The line rules are those of aws-config's parser (`aws_runtime::env_config::parse`): a line
//! starting with `[` is a section header, `#`/`;` at column 0 a comment, a non-blank line
//! starting with a space or tab continues the previous property, anything else is
//! `key = value` (an inline comment needs whitespace before `#`/`;`).

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use aws_runtime::env_config::file::EnvConfigFileKind;
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use super::load::parse_files;
use crate::error::{Error, Result};
use crate::platform;

/// Which AWS file is edited (decides the header style and the parse rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AwsFile {
    Config,
    Credentials,
}

impl AwsFile {
    fn kind(self) -> EnvConfigFileKind {
        match self {
            AwsFile::Config => EnvConfigFileKind::Config,
            AwsFile::Credentials => EnvConfigFileKind::Credentials,
        }
    }

    fn what(self) -> &'static str {
        match self {
            AwsFile::Config => "config",
            AwsFile::Credentials => "credentials",
        }
    }

    /// The header line for `profile` in this file.
    pub fn header(self, profile: &str) -> String {
        match (self, profile) {
            (AwsFile::Credentials, p) | (AwsFile::Config, p @ "default") => format!("[{p}]"),
            (AwsFile::Config, p) => format!("[profile {p}]"),
        }
    }
}

/// The edits of one profile: keys to set (values held as secrets), keys to remove.
#[derive(Clone, Default)]
pub struct ProfileEdit {
    pub profile: String,
    pub set: Vec<(String, SecretString)>,
    pub remove: Vec<String>,
    /// New keys take the place of the first removed line of the profile's last section
    /// (instead of going at its end): `vault import-keys` turns the two key lines into one
    /// line where they were.
    pub in_place_of_removed: bool,
    /// Make no backup of the file for this edit: it removes a secret that must not stay in
    /// a plain-text copy (`vault import-keys`).
    pub no_backup: bool,
}

impl fmt::Debug for ProfileEdit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<&str> = self.set.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("ProfileEdit")
            .field("profile", &self.profile)
            .field("set", &keys)
            .field("remove", &self.remove)
            .field("in_place_of_removed", &self.in_place_of_removed)
            .field("no_backup", &self.no_backup)
            .finish()
    }
}

impl ProfileEdit {
    pub fn new(profile: impl Into<String>) -> ProfileEdit {
        ProfileEdit {
            profile: profile.into(),
            ..ProfileEdit::default()
        }
    }

    /// Set a plain value (an ARN, a region, a number).
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> ProfileEdit {
        self.set
            .push((key.into(), SecretString::from(value.into())));
        self
    }

    /// Set a secret value (the secret access key).
    pub fn set_secret(mut self, key: impl Into<String>, value: SecretString) -> ProfileEdit {
        self.set.push((key.into(), value));
        self
    }

    /// Remove every occurrence of `key` in the profile.
    pub fn remove(mut self, key: impl Into<String>) -> ProfileEdit {
        self.remove.push(key.into());
        self
    }

    /// New keys go where the first removed line of the section was (see
    /// [`ProfileEdit::in_place_of_removed`]).
    pub fn new_keys_in_place_of_removed(mut self) -> ProfileEdit {
        self.in_place_of_removed = true;
        self
    }

    /// No backup of the file for this edit (see [`ProfileEdit::no_backup`]).
    pub fn without_backup(mut self) -> ProfileEdit {
        self.no_backup = true;
        self
    }
}

/// What [`apply_edits`] did; [`EditReceipt::restore`] undoes it.
pub struct EditReceipt {
    pub path: PathBuf,
    pub file: AwsFile,
    /// Whether the file's bytes changed (false: the edits were already in place).
    pub changed: bool,
    /// The backup written by this edit (the first tapcred edit of that file), if any.
    pub backup: Option<PathBuf>,
    /// The file before (None: it did not exist).
    previous: Option<Zeroizing<Vec<u8>>>,
    /// The file as written.
    written: Zeroizing<Vec<u8>>,
    /// The inverse edits, for restoring when someone else changed the file in between.
    inverse: Vec<ProfileEdit>,
}

impl fmt::Debug for EditReceipt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EditReceipt")
            .field("path", &self.path)
            .field("file", &self.file)
            .field("changed", &self.changed)
            .field("backup", &self.backup)
            .field("existed", &self.previous.is_some())
            .finish_non_exhaustive()
    }
}

impl EditReceipt {
    /// Put the file back as it was before the edit. If the file is still exactly as this edit
    /// wrote it, the previous bytes are restored (or the file removed if it did not exist);
    /// if another writer changed it since, only this edit's keys are put back (their previous
    /// values, or removed), keeping the other writer's changes.
    pub fn restore(&self) -> Result<()> {
        if !self.changed {
            return Ok(());
        }
        let target = real_path(&self.path);
        let _lock = lock(&target, self.file)?;
        let current = read_bytes(&target, self.file)?;
        if current.as_deref().map(|c| c.as_slice()) == Some(self.written.as_slice()) {
            return match &self.previous {
                Some(prev) => write_atomic(&target, self.file, prev, true),
                None => fs::remove_file(&target).map_err(|e| {
                    io_error(
                        &target,
                        self.file,
                        "cannot remove the file created by this edit",
                        &e,
                    )
                }),
            };
        }
        let Some(current) = current else {
            return Ok(());
        };
        let text = utf8(&target, self.file, current)?;
        let out = edit_text(&text, self.file, &self.inverse)?;
        if out.as_bytes() != text.as_bytes() {
            write_atomic(&target, self.file, out.as_bytes(), true)?;
        }
        Ok(())
    }
}

/// Apply `edits` to the file at `path` (created if missing), under the lock, atomically.
pub fn apply_edits(path: &Path, file: AwsFile, edits: &[ProfileEdit]) -> Result<EditReceipt> {
    let target = real_path(path);
    if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_dir(dir, file)?;
    }
    let _lock = lock(&target, file)?;
    let previous = read_bytes(&target, file)?;
    let text = match &previous {
        Some(bytes) => utf8(&target, file, bytes.clone())?,
        None => Zeroizing::new(String::new()),
    };
    if previous.is_some() {
        parse_files(&[(file.kind(), &target, &text)])?;
    }
    let inverse = inverse_edits(&text, file, edits);
    let out = edit_text(&text, file, edits)?;
    let changed = previous.is_none() || out.as_bytes() != text.as_bytes();
    let mut backup = None;
    if changed {
        if let Some(prev) = previous
            .as_ref()
            .filter(|_| !edits.iter().any(|e| e.no_backup))
        {
            let bak = sibling(&target, ".tapcred.bak");
            if fs::symlink_metadata(&bak).is_err() {
                write_new_private(&bak, prev)
                    .map_err(|e| io_error(&bak, file, "cannot write the backup", &e))?;
                backup = Some(bak);
            }
        }
        write_atomic(&target, file, out.as_bytes(), previous.is_some())?;
    }
    Ok(EditReceipt {
        path: target,
        file,
        changed,
        backup,
        previous,
        written: Zeroizing::new(out.as_bytes().to_vec()),
        inverse,
    })
}

/// Remove `keys` from `profile` (every occurrence), like [`apply_edits`].
pub fn remove_keys(
    path: &Path,
    file: AwsFile,
    profile: &str,
    keys: &[&str],
) -> Result<EditReceipt> {
    let mut edit = ProfileEdit::new(profile);
    for k in keys {
        edit = edit.remove(*k);
    }
    apply_edits(path, file, &[edit])
}

/// The (lower-cased) keys `profile` has in the file at `path` (empty when the file or the
/// section is missing).
pub fn keys_in(path: &Path, file: AwsFile, profile: &str) -> Result<Vec<String>> {
    let Some(bytes) = read_bytes(&real_path(path), file)? else {
        return Ok(Vec::new());
    };
    let text = utf8(path, file, bytes)?;
    let lines = split_lines(&text);
    let sections = sections_of(&lines, file, profile);
    let mut keys: Vec<String> = sections
        .iter()
        .flat_map(|s| s.header + 1..s.end)
        .filter(|&i| classify(lines[i].text) == Kind::Property)
        .filter_map(|i| property_key(lines[i].text))
        .collect();
    keys.sort();
    keys.dedup();
    Ok(keys)
}

// ---------------------------------------------------------------- the text edit itself

/// One physical line: its text without the terminator, and the terminator ("\n", "\r\n" or
/// "" for a last line without one).
struct Line<'a> {
    text: &'a str,
    eol: &'a str,
}

fn split_lines(text: &str) -> Vec<Line<'_>> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        match rest.find('\n') {
            Some(i) => {
                let (line, eol) = if i > 0 && rest.as_bytes()[i - 1] == b'\r' {
                    (&rest[..i - 1], &rest[i - 1..=i])
                } else {
                    (&rest[..i], &rest[i..=i])
                };
                out.push(Line { text: line, eol });
                rest = &rest[i + 1..];
            }
            None => {
                out.push(Line {
                    text: rest,
                    eol: "",
                });
                rest = "";
            }
        }
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Blank,
    Comment,
    Header,
    Continuation,
    Property,
}

fn classify(line: &str) -> Kind {
    if line.trim_matches([' ', '\t']).is_empty() {
        Kind::Blank
    } else if line.starts_with(['#', ';']) {
        Kind::Comment
    } else if line.starts_with('[') {
        Kind::Header
    } else if line.starts_with([' ', '\t']) {
        Kind::Continuation
    } else {
        Kind::Property
    }
}

/// Index where an inline comment starts (aws-config's rule: `#`/`;` after whitespace for
/// properties, anywhere for headers).
fn comment_start(line: &str, need_whitespace: bool) -> Option<usize> {
    let mut prev_ws = false;
    for (i, c) in line.char_indices() {
        if (c == '#' || c == ';') && (prev_ws || !need_whitespace) {
            return Some(i);
        }
        prev_ws = c.is_whitespace();
    }
    None
}

/// `(prefix, name)` of a header line, as aws-config normalises it.
fn header_parts(line: &str) -> Option<(Option<&str>, &str)> {
    let line = line.trim_matches([' ', '\t']);
    let line = match comment_start(line, false) {
        Some(i) => &line[..i],
        None => line,
    };
    let inner = line
        .trim_matches([' ', '\t'])
        .strip_prefix('[')?
        .strip_suffix(']')?
        .trim_matches([' ', '\t']);
    Some(match inner.split_once([' ', '\t']) {
        Some((prefix, name)) => (Some(prefix.trim()), name.trim()),
        None => (None, inner.trim()),
    })
}

/// The lower-cased key of a property line.
fn property_key(line: &str) -> Option<String> {
    let (k, _) = line.split_once('=')?;
    Some(k.trim_matches([' ', '\t']).to_ascii_lowercase())
}

/// Whether the header line belongs to `profile` in `file`.
fn header_matches(line: &str, file: AwsFile, profile: &str, prefixed_default: bool) -> bool {
    let Some((prefix, name)) = header_parts(line) else {
        return false;
    };
    match file {
        AwsFile::Credentials => prefix.is_none() && name == profile,
        AwsFile::Config => match (prefix, profile) {
            (Some("profile"), p) => name == p,
            (None, "default") => name == "default" && !prefixed_default,
            _ => false,
        },
    }
}

/// A section of the file: the header line index and the end (exclusive).
struct Section {
    header: usize,
    end: usize,
}

fn sections_of(lines: &[Line<'_>], file: AwsFile, profile: &str) -> Vec<Section> {
    let prefixed_default = file == AwsFile::Config
        && lines.iter().any(|l| {
            classify(l.text) == Kind::Header
                && header_parts(l.text) == Some((Some("profile"), "default"))
        });
    let headers: Vec<usize> = (0..lines.len())
        .filter(|&i| classify(lines[i].text) == Kind::Header)
        .collect();
    headers
        .iter()
        .enumerate()
        .filter(|(_, h)| header_matches(lines[**h].text, file, profile, prefixed_default))
        .map(|(n, &h)| Section {
            header: h,
            end: headers.get(n + 1).copied().unwrap_or(lines.len()),
        })
        .collect()
}

/// Property lines of `key` in the sections, each with its continuation lines.
fn occurrences(lines: &[Line<'_>], sections: &[Section], key: &str) -> Vec<(usize, Vec<usize>)> {
    let mut out = Vec::new();
    for s in sections {
        let mut i = s.header + 1;
        while i < s.end {
            if classify(lines[i].text) == Kind::Property
                && property_key(lines[i].text).as_deref() == Some(key)
            {
                let mut conts = Vec::new();
                let mut j = i + 1;
                while j < s.end {
                    match classify(lines[j].text) {
                        Kind::Blank | Kind::Comment => {}
                        Kind::Continuation => conts.push(j),
                        _ => break,
                    }
                    j += 1;
                }
                out.push((i, conts));
                i = j;
            } else {
                i += 1;
            }
        }
    }
    out
}

/// The value's byte range in a property line (after `=` and its spaces, before an inline
/// comment and trailing spaces).
fn value_range(line: &str) -> (usize, usize) {
    let eq = line.find('=').unwrap_or(line.len());
    let end_limit = comment_start(line, true)
        .filter(|&c| c > eq)
        .unwrap_or(line.len());
    let start = eq + 1 + line[eq + 1..end_limit].len()
        - line[eq + 1..end_limit]
            .trim_start_matches([' ', '\t'])
            .len();
    let end = start + line[start..end_limit].trim_end_matches([' ', '\t']).len();
    (start, end.max(start))
}

fn check_key(key: &str) -> Result<()> {
    let ok = !key.is_empty()
        && key.chars().all(|c| {
            c.is_ascii_alphanumeric() || ['_', '-', '/', '.', '%', '@', ':', '+'].contains(&c)
        });
    if ok {
        Ok(())
    } else {
        Err(Error::internal(format!(
            "internal error: {key:?} is not a valid AWS config key; please report this"
        )))
    }
}

fn check_value(key: &str, value: &str) -> Result<()> {
    let bad = value.is_empty()
        || value.contains(['\n', '\r'])
        || value.starts_with([' ', '\t'])
        || value.ends_with([' ', '\t'])
        || comment_start(value, true).is_some_and(|i| i > 0);
    if bad {
        return Err(Error::usage(format!(
            "the value for {key} is empty, spans lines, has leading/trailing spaces or a ' #'/' ;' (which AWS reads as a comment); give a single-line value without those"
        )));
    }
    Ok(())
}

fn check_profile(profile: &str) -> Result<()> {
    let ok = !profile.is_empty()
        && profile.chars().all(|c| {
            c.is_ascii_alphanumeric() || ['_', '-', '/', '.', '%', '@', ':', '+'].contains(&c)
        });
    if ok {
        Ok(())
    } else {
        Err(Error::usage(format!(
            "profile name {profile:?} is not valid in AWS files; use letters, digits and _-/.%@:+"
        )))
    }
}

/// Apply the edits to `text`. Pure; the basis of [`apply_edits`] (and of its property tests).
pub fn edit_text(text: &str, file: AwsFile, edits: &[ProfileEdit]) -> Result<Zeroizing<String>> {
    let mut cur = Zeroizing::new(text.to_owned());
    for edit in edits {
        check_profile(&edit.profile)?;
        for (k, v) in &edit.set {
            check_key(k)?;
            check_value(k, v.expose_secret())?;
        }
        for k in &edit.remove {
            check_key(k)?;
        }
        cur = edit_one(&cur, file, edit);
    }
    Ok(cur)
}

/// The line ending new lines get: the file's first one, else "\n".
fn eol_style(lines: &[Line<'_>]) -> &'static str {
    match lines.iter().find(|l| !l.eol.is_empty()) {
        Some(l) if l.eol == "\r\n" => "\r\n",
        _ => "\n",
    }
}

/// `key=value` or `key = value`, as the profile's (else the file's) first property does.
fn spaced(lines: &[Line<'_>], sections: &[Section]) -> bool {
    let first_in = |range: std::ops::Range<usize>| {
        range
            .filter(|&i| classify(lines[i].text) == Kind::Property)
            .find_map(|i| {
                let t = lines[i].text;
                let eq = t.find('=')?;
                Some(t[..eq].ends_with([' ', '\t']))
            })
    };
    sections
        .iter()
        .find_map(|s| first_in(s.header + 1..s.end))
        .or_else(|| first_in(0..lines.len()))
        .unwrap_or(true)
}

fn edit_one(text: &str, file: AwsFile, edit: &ProfileEdit) -> Zeroizing<String> {
    let lines = split_lines(text);
    let eol = eol_style(&lines);
    let sections = sections_of(&lines, file, &edit.profile);
    let sep = if spaced(&lines, &sections) {
        " = "
    } else {
        "="
    };

    // Per original line: None = keep, Some(text) = replace (empty vec = delete).
    let mut replace: Vec<Option<Vec<Zeroizing<String>>>> = vec![None; lines.len()];
    let mut new_keys: Vec<Zeroizing<String>> = Vec::new();

    // The last assignment of a key within one edit wins.
    let mut sets: Vec<(String, &SecretString)> = Vec::new();
    for (k, v) in &edit.set {
        let k = k.to_ascii_lowercase();
        sets.retain(|(x, _)| *x != k);
        sets.push((k, v));
    }
    let removes: Vec<String> = edit
        .remove
        .iter()
        .map(|k| k.to_ascii_lowercase())
        .filter(|k| !sets.iter().any(|(s, _)| s == k))
        .collect();

    for key in &removes {
        for (line, conts) in occurrences(&lines, &sections, key) {
            replace[line] = Some(Vec::new());
            for c in conts {
                replace[c] = Some(Vec::new());
            }
        }
    }
    for (key, value) in &sets {
        let value = value.expose_secret();
        let occ = occurrences(&lines, &sections, key);
        // Every occurrence gets the value: aws-config merges duplicate sections whose
        // headers are spelled differently (`[profile a]`, `[ profile  a ]`) in hash order,
        // so "the last one" is not reliably the one read.
        match occ.is_empty() {
            false => {
                for (line, conts) in &occ {
                    let t = lines[*line].text;
                    let (start, end) = value_range(t);
                    let mut new = Zeroizing::new(String::with_capacity(t.len() + value.len()));
                    new.push_str(&t[..start]);
                    if start == end && !t[..start].ends_with([' ', '\t']) && sep == " = " {
                        new.push(' ');
                    }
                    new.push_str(value);
                    if start == end && end < t.len() && !t[end..].starts_with([' ', '\t']) {
                        new.push(' ');
                    }
                    new.push_str(&t[end..]);
                    if *new != *t {
                        replace[*line] = Some(vec![new]);
                    }
                    for c in conts {
                        replace[*c] = Some(Vec::new());
                    }
                }
            }
            true => {
                let mut new = Zeroizing::new(String::new());
                new.push_str(key);
                new.push_str(sep);
                new.push_str(value);
                new_keys.push(new);
            }
        }
    }

    // Where new keys go: after the last property (or continuation) line of the last section,
    // else right after its header; a missing section goes at the end of the file. With
    // `in_place_of_removed`, where the section's first removed property line was.
    let mut insert_after: Option<usize> = None;
    let mut insert_at: Option<usize> = None;
    let mut append_section = false;
    if !new_keys.is_empty() {
        let removed_at = sections
            .last()
            .filter(|_| edit.in_place_of_removed)
            .and_then(|s| {
                (s.header + 1..s.end).find(|&i| {
                    classify(lines[i].text) == Kind::Property
                        && matches!(&replace[i], Some(v) if v.is_empty())
                })
            });
        match sections.last() {
            Some(_) if removed_at.is_some() => insert_at = removed_at,
            Some(s) => {
                let last = (s.header + 1..s.end)
                    .rev()
                    .find(|&i| {
                        matches!(classify(lines[i].text), Kind::Property | Kind::Continuation)
                            && !matches!(&replace[i], Some(v) if v.is_empty())
                    })
                    .unwrap_or(s.header);
                insert_after = Some(last);
            }
            None => append_section = true,
        }
    }

    // Output lines (body, terminator): original lines keep theirs, new lines get the file's.
    let mut outl: Vec<(&str, &str)> = Vec::with_capacity(lines.len() + new_keys.len() + 2);
    for (i, line) in lines.iter().enumerate() {
        if insert_at == Some(i) {
            let eol_here = if line.eol.is_empty() { eol } else { line.eol };
            outl.extend(new_keys.iter().map(|k| (k.as_str(), eol_here)));
        }
        match &replace[i] {
            None => outl.push((line.text, line.eol)),
            Some(v) => outl.extend(v.iter().map(|b| (b.as_str(), line.eol))),
        }
        if insert_after == Some(i) {
            outl.extend(new_keys.iter().map(|k| (k.as_str(), eol)));
        }
    }
    let header = file.header(&edit.profile);
    if append_section {
        if lines
            .last()
            .is_some_and(|l| classify(l.text) != Kind::Blank)
        {
            outl.push(("", eol));
        }
        outl.push((&header, eol));
        outl.extend(new_keys.iter().map(|k| (k.as_str(), eol)));
    }
    // Every line but the last is terminated; the file ends without a newline only if it did.
    // (When the unterminated last line itself is removed, the line before it keeps its own
    // terminator: only that line's bytes go.)
    let last = lines.len().wrapping_sub(1);
    let last_removed = !lines.is_empty()
        && matches!(&replace[last], Some(v) if v.is_empty())
        && insert_after != Some(last)
        && insert_at != Some(last)
        && !append_section;
    let ended_without_eol = lines.last().is_some_and(|l| l.eol.is_empty()) && !last_removed;
    let n = outl.len();
    let mut out = Zeroizing::new(String::with_capacity(text.len() + 256));
    for (i, (body, line_eol)) in outl.into_iter().enumerate() {
        out.push_str(body);
        if i + 1 < n || !ended_without_eol {
            out.push_str(if line_eol.is_empty() { eol } else { line_eol });
        }
    }
    out
}

/// The edits that undo `edits` on `text` (previous values back, new keys removed).
fn inverse_edits(text: &str, file: AwsFile, edits: &[ProfileEdit]) -> Vec<ProfileEdit> {
    let lines = split_lines(text);
    let mut out: Vec<ProfileEdit> = Vec::new();
    for edit in edits.iter().rev() {
        let sections = sections_of(&lines, file, &edit.profile);
        let mut inv = ProfileEdit::new(edit.profile.clone());
        let keys = edit
            .set
            .iter()
            .map(|(k, _)| k.to_ascii_lowercase())
            .chain(edit.remove.iter().map(|k| k.to_ascii_lowercase()));
        for key in keys {
            match occurrences(&lines, &sections, &key).last() {
                Some((line, _)) => {
                    let t = lines[*line].text;
                    let (s, e) = value_range(t);
                    if s < e {
                        inv = inv.set_secret(key, SecretString::from(t[s..e].to_owned()));
                    } else {
                        inv = inv.remove(key);
                    }
                }
                None => inv = inv.remove(key),
            }
        }
        out.push(inv);
    }
    out
}

// ---------------------------------------------------------------- files, lock, atomic write

/// Follow a symlink to the file it names, so the rename replaces the file, not the link.
fn real_path(path: &Path) -> PathBuf {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => fs::canonicalize(path).unwrap_or(path.to_owned()),
        _ => path.to_owned(),
    }
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(suffix);
    path.with_file_name(name)
}

fn io_error(path: &Path, file: AwsFile, what: &str, e: &io::Error) -> Error {
    Error::io(format!(
        "{}: {what} (AWS {} file): {e}; check the directory's permissions and free space",
        path.display(),
        file.what()
    ))
}

fn create_dir(dir: &Path, file: AwsFile) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    platform::fs::create_private_dir_all(dir)
        .map_err(|e| io_error(dir, file, "cannot create the directory", &e))
}

/// Hold an exclusive lock on `NAME.tapcred.lock` beside the file until dropped.
fn lock(target: &Path, file: AwsFile) -> Result<File> {
    let path = sibling(target, ".tapcred.lock");
    let f = match platform::fs::open_lock_file(&path, true) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            platform::fs::open_lock_file(&path, false)
        }
        r => r,
    }
    .map_err(|e| io_error(&path, file, "cannot open the lock file", &e))?;
    f.lock()
        .map_err(|e| io_error(&path, file, "cannot lock", &e))?;
    Ok(f)
}

fn read_bytes(path: &Path, file: AwsFile) -> Result<Option<Zeroizing<Vec<u8>>>> {
    match fs::read(path) {
        Ok(b) => Ok(Some(Zeroizing::new(b))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::config(format!(
            "{}: cannot read the AWS {} file: {e}; check its permissions",
            path.display(),
            file.what()
        ))),
    }
}

fn utf8(path: &Path, file: AwsFile, bytes: Zeroizing<Vec<u8>>) -> Result<Zeroizing<String>> {
    match std::str::from_utf8(&bytes) {
        Ok(s) => Ok(Zeroizing::new(s.to_owned())),
        Err(_) => Err(Error::config(format!(
            "{}: the AWS {} file is not UTF-8 text; save it as UTF-8",
            path.display(),
            file.what()
        ))),
    }
}

/// Temp file in the same directory → write → fsync → rename over `target` → fsync the
/// directory. The permissions are the existing file's; a new file is private (the temporary
/// file is created 0600 on Unix; on Windows it inherits the profile directory's ACL).
fn write_atomic(target: &Path, file: AwsFile, data: &[u8], existed: bool) -> Result<()> {
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let res = (|| -> io::Result<()> {
        let mut tmp = tempfile::Builder::new()
            .prefix(".tapcred-")
            .suffix(".tmp")
            .tempfile_in(&dir)?;
        if existed && let Ok(md) = fs::metadata(target) {
            fs::set_permissions(tmp.path(), md.permissions())?;
        }
        tmp.write_all(data)?;
        tmp.as_file().sync_all()?;
        tmp.persist(target).map_err(|e| e.error)?;
        if let Ok(d) = File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    res.map_err(|e| io_error(target, file, "cannot write", &e))
}

/// A new file, private, never replacing an existing one or following a link.
fn write_new_private(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut f = platform::fs::create_new_private(path)?;
    f.write_all(data)?;
    f.sync_all()
}

#[cfg(test)]
mod tests;
