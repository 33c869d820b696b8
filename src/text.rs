//! The one sanitizer for text from outside tapcred — AWS answers (error codes and messages,
//! user names, device serials), the environment (`AWS_PROFILE`, file paths, endpoint URLs),
//! arguments (`--profile`) and file contents — on its way to a terminal or a log.
//!
//! A terminal acts on some characters instead of showing them: C0 and C1 controls (ESC
//! starts sequences that can recolour, retitle, move the cursor or write the clipboard
//! (OSC 52); U+009B is a one-character CSI; CR and U+0085 rewrite or break the line) and
//! invisible formatting characters (bidi overrides and isolates reorder what is shown;
//! zero-width characters hide text). Each of them is shown as a visible escape instead:
//! `\n`, `\r`, `\t`, or `\uXXXX` — the same notation as JSON, so an escaped JSON document is
//! still the same JSON document.
//!
//! Two choke points apply it to everything tapcred prints: [`escape`] on each error and
//! UI line (one line: a newline in foreign text cannot start a forged line), and
//! [`SafeWriter`] on the stdout of reports and listings and on the log (their own line
//! breaks and tabs kept). [`sanitize_foreign`] additionally caps the length, for messages
//! that quote an answer of unbounded size.

use std::borrow::Cow;
use std::io::{self, Write};

/// At most this many characters of foreign text go into a message.
pub const FOREIGN_TEXT_MAX: usize = 300;

/// Whether a terminal could act on `c` instead of showing it: a control character (C0, DEL,
/// C1) or an invisible formatting character.
pub fn is_unsafe(c: char) -> bool {
    c.is_control() || is_invisible_format(c)
}

/// Bidirectional overrides/isolates/marks, zero-width and invisible operators, line and
/// paragraph separators, the byte-order mark, interlinear annotations and tag characters.
fn is_invisible_format(c: char) -> bool {
    matches!(c,
        '\u{61c}'
        | '\u{180e}'
        | '\u{200b}'..='\u{200f}'
        | '\u{2028}'..='\u{202e}'
        | '\u{2060}'..='\u{206f}'
        | '\u{feff}'
        | '\u{fff9}'..='\u{fffb}'
        | '\u{e0001}'
        | '\u{e0020}'..='\u{e007f}')
}

/// Append the visible escape of `c`.
fn push_escape(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        _ => {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
}

/// `text` with every unsafe character (newlines included) as a visible escape: one line.
/// Borrowed when there is nothing to escape (the common case).
pub fn escape(text: &str) -> Cow<'_, str> {
    escape_where(text, is_unsafe)
}

/// As [`escape`], but line feeds and tabs are kept: for text whose layout is tapcred's own
/// (a report, a listing) and whose foreign parts are single-line values.
pub fn escape_keeping_lines(text: &str) -> Cow<'_, str> {
    escape_where(text, |c| is_unsafe(c) && !matches!(c, '\n' | '\t'))
}

fn escape_where(text: &str, unsafe_char: impl Fn(char) -> bool) -> Cow<'_, str> {
    let Some(first) = text.find(&unsafe_char) else {
        return Cow::Borrowed(text);
    };
    let mut out = String::with_capacity(text.len() + 16);
    out.push_str(&text[..first]);
    for c in text[first..].chars() {
        if unsafe_char(c) {
            push_escape(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Foreign `text` for a one-line message: spaces trimmed, escaped as [`escape`] does, cut to
/// at most `max` characters (plus "…" when cut).
pub fn sanitize_foreign(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max + 4));
    let mut count = 0;
    let mut piece = String::new();
    // Only spaces: any other character at either end is shown, as anywhere else.
    for c in text.trim_matches(' ').chars() {
        piece.clear();
        if is_unsafe(c) {
            push_escape(&mut piece, c);
        } else {
            piece.push(c);
        }
        let n = piece.chars().count();
        if count + n > max {
            out.push('…');
            return out;
        }
        out.push_str(&piece);
        count += n;
    }
    out
}

/// A writer that shows every unsafe character it is given as a visible escape, except line
/// feeds and tabs ([`escape_keeping_lines`]). Bytes that are not UTF-8 are shown as `\xNN`; a
/// character split across two writes is put back together first.
pub struct SafeWriter<W: Write> {
    inner: W,
    /// The start of a character whose remaining bytes have not been written yet.
    partial: Vec<u8>,
}

impl<W: Write> SafeWriter<W> {
    pub fn new(inner: W) -> Self {
        SafeWriter {
            inner,
            partial: Vec::new(),
        }
    }

    fn emit(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        loop {
            match std::str::from_utf8(bytes) {
                Ok(s) => return self.inner.write_all(escape_keeping_lines(s).as_bytes()),
                Err(e) => {
                    let (good, rest) = bytes.split_at(e.valid_up_to());
                    // Valid by construction.
                    let good = std::str::from_utf8(good).unwrap_or_default();
                    self.inner
                        .write_all(escape_keeping_lines(good).as_bytes())?;
                    match e.error_len() {
                        // An incomplete character at the end: wait for the rest.
                        None => {
                            self.partial.extend_from_slice(rest);
                            return Ok(());
                        }
                        Some(n) => {
                            for b in &rest[..n] {
                                write!(self.inner, "\\x{b:02x}")?;
                            }
                            bytes = &rest[n..];
                        }
                    }
                }
            }
        }
    }
}

impl<W: Write> Write for SafeWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.partial.is_empty() {
            self.emit(buf)?;
        } else {
            let mut joined = std::mem::take(&mut self.partial);
            joined.extend_from_slice(buf);
            self.emit(&joined)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.partial.is_empty() {
            let left = std::mem::take(&mut self.partial);
            for b in left {
                write!(self.inner, "\\x{b:02x}")?;
            }
        }
        self.inner.flush()
    }
}

impl<W: Write> Drop for SafeWriter<W> {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_invisible_characters_become_visible_escapes() {
        let s = "x\u{1b}]52;c;aGk=\u{7} \r\n\t\u{9b}2J \u{85} \u{202e}gnp.exe \u{2066}\u{200b}\u{0}\u{7f}\u{e0041}é→";
        let t = escape(s);
        assert_eq!(
            t,
            "x\\u001b]52;c;aGk=\\u0007 \\r\\n\\t\\u009b2J \\u0085 \\u202egnp.exe \\u2066\\u200b\\u0000\\u007f\\udb40\\udc41é→"
        );
        assert!(!t.chars().any(is_unsafe), "{t:?}");
        assert!(matches!(escape("plain text é"), Cow::Borrowed(_)));
        assert_eq!(escape_keeping_lines("a\n\tb\r\u{1b}"), "a\n\tb\\r\\u001b");
    }

    #[test]
    fn escaped_json_is_the_same_json() {
        let v = serde_json::json!({"name": "a\u{9b}b\u{202e}c\u{85}\u{e0041}\u{1b}", "n": [1, 2]});
        let text = serde_json::to_string_pretty(&v).unwrap();
        let shown = escape_keeping_lines(&text);
        assert!(!shown.chars().any(|c| is_unsafe(c) && c != '\n'));
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&shown).unwrap(),
            v
        );
    }

    #[test]
    fn foreign_text_is_trimmed_escaped_and_capped() {
        let big = "x".repeat(5_000_000);
        let t = sanitize_foreign(&big, 300);
        assert_eq!(t.chars().count(), 301);
        assert!(t.ends_with('…'));
        assert_eq!(sanitize_foreign("  a \n b  ", 300), "a \\n b");
        assert_eq!(sanitize_foreign("", 300), "");
        assert_eq!(sanitize_foreign("\u{1b}", 300), "\\u001b");
        // An escape is not cut in half.
        assert_eq!(sanitize_foreign("ab\u{1b}", 4), "ab…");
    }

    #[test]
    fn the_writer_escapes_across_split_writes_and_bad_bytes() {
        let mut out = Vec::new();
        {
            let mut w = SafeWriter::new(&mut out);
            let text = "ok é\u{9b}\n".as_bytes();
            // Every split point, including inside the two-byte characters.
            for b in text {
                w.write_all(std::slice::from_ref(b)).unwrap();
            }
            w.write_all(b"\xff\x1bz\n\xc3").unwrap();
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "ok é\\u009b\n\\xff\\u001bz\n\\xc3"
        );
    }
}
