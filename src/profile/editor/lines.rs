//! The line and section model of an AWS file: physical lines, what each line is, the
//! sections of a profile and the lines of a key, with aws-config's parse rules.

use super::AwsFile;

/// One physical line: its text without the terminator, and the terminator ("\n", "\r\n" or
/// "" for a last line without one).
pub(super) struct Line<'a> {
    pub(super) text: &'a str,
    pub(super) eol: &'a str,
}

pub(super) fn split_lines(text: &str) -> Vec<Line<'_>> {
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
pub(super) enum Kind {
    Blank,
    Comment,
    Header,
    Continuation,
    Property,
}

pub(super) fn classify(line: &str) -> Kind {
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
pub(super) fn comment_start(line: &str, need_whitespace: bool) -> Option<usize> {
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
pub(super) fn header_parts(line: &str) -> Option<(Option<&str>, &str)> {
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
pub(super) fn property_key(line: &str) -> Option<String> {
    let (k, _) = line.split_once('=')?;
    Some(k.trim_matches([' ', '\t']).to_ascii_lowercase())
}

/// Whether the header line belongs to `profile` in `file`.
pub(super) fn header_matches(
    line: &str,
    file: AwsFile,
    profile: &str,
    prefixed_default: bool,
) -> bool {
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
pub(super) struct Section {
    pub(super) header: usize,
    pub(super) end: usize,
}

pub(super) fn sections_of(lines: &[Line<'_>], file: AwsFile, profile: &str) -> Vec<Section> {
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
pub(super) fn occurrences(
    lines: &[Line<'_>],
    sections: &[Section],
    key: &str,
) -> Vec<(usize, Vec<usize>)> {
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
pub(super) fn value_range(line: &str) -> (usize, usize) {
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
