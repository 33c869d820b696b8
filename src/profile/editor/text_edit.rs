//! The edit of the text itself: checking keys, values and profile names, applying
//! [`ProfileEdit`]s line by line, and the edits that undo them.

use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use super::lines::{
    Kind, Line, Section, classify, comment_start, occurrences, sections_of, split_lines,
    value_range,
};
use super::{AwsFile, ProfileEdit};
use crate::error::{Error, Result};

pub(super) fn check_key(key: &str) -> Result<()> {
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

pub(super) fn check_value(key: &str, value: &str) -> Result<()> {
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

pub(super) fn check_profile(profile: &str) -> Result<()> {
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

/// Apply the edits to `text`. Pure; the basis of [`apply_edits`](super::apply_edits) (and of
/// its property tests).
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
pub(super) fn eol_style(lines: &[Line<'_>]) -> &'static str {
    match lines.iter().find(|l| !l.eol.is_empty()) {
        Some(l) if l.eol == "\r\n" => "\r\n",
        _ => "\n",
    }
}

/// `key=value` or `key = value`, as the profile's (else the file's) first property does.
pub(super) fn spaced(lines: &[Line<'_>], sections: &[Section]) -> bool {
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

pub(super) fn edit_one(text: &str, file: AwsFile, edit: &ProfileEdit) -> Zeroizing<String> {
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
pub(super) fn inverse_edits(text: &str, file: AwsFile, edits: &[ProfileEdit]) -> Vec<ProfileEdit> {
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
