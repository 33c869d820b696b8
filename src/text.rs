//! Text from outside tapcred (an STS error message, an endpoint URL from the environment)
//! made safe to print on one line of a terminal: escape sequences and control characters
//! removed, whitespace collapsed, length capped.

/// At most this many characters of foreign text go into a message.
pub const FOREIGN_TEXT_MAX: usize = 300;

/// `text` as one printable line of at most `max` characters (plus "…" when cut): ANSI/VT
/// escape sequences (CSI, OSC, and two-byte ESC forms) and every other control or bidi
/// formatting character are removed, runs of whitespace (newlines included) become one space.
pub fn sanitize_foreign(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max + 4));
    let mut count = 0;
    let mut space = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                match chars.peek() {
                    // CSI: ESC [ params… final byte in @..~
                    Some('[') => {
                        chars.next();
                        for d in chars.by_ref() {
                            if ('@'..='~').contains(&d) {
                                break;
                            }
                        }
                    }
                    // OSC / DCS / APC / PM / SOS: up to BEL or ESC \
                    Some(']' | 'P' | '_' | '^' | 'X') => {
                        chars.next();
                        while let Some(d) = chars.next() {
                            if d == '\u{7}' {
                                break;
                            }
                            if d == '\u{1b}' {
                                if chars.peek() == Some(&'\\') {
                                    chars.next();
                                }
                                break;
                            }
                        }
                    }
                    // ESC + one character (ESC c, ESC 7, …)
                    Some(_) => {
                        chars.next();
                    }
                    None => {}
                }
                continue;
            }
            // C1 CSI (U+009B) and OSC (U+009D) as single characters.
            '\u{9b}' => {
                for d in chars.by_ref() {
                    if ('@'..='~').contains(&d) {
                        break;
                    }
                }
                continue;
            }
            c if c.is_whitespace() => {
                space = !out.is_empty();
                continue;
            }
            c if c.is_control() || is_bidi_or_invisible(c) => continue,
            c => {
                if count >= max {
                    out.push('…');
                    return out;
                }
                if space {
                    out.push(' ');
                    count += 1;
                    space = false;
                }
                out.push(c);
                count += 1;
            }
        }
    }
    out
}

/// Bidirectional overrides/isolates and zero-width characters: they reorder or hide what a
/// terminal shows.
fn is_bidi_or_invisible(c: char) -> bool {
    matches!(c,
        '\u{200b}'..='\u{200f}'
        | '\u{202a}'..='\u{202e}'
        | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{2069}'
        | '\u{feff}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_controls_and_newlines_are_removed() {
        let s = "Access \u{1b}[31mdenied\u{1b}[0m\r\nline two\u{7}\u{1b}]0;pwned title\u{7} end\u{1b}]8;;http://x\u{1b}\\link\u{1b}]8;;\u{1b}\\ \u{9b}2J\u{202e}gnp.exe\u{0}!";
        let t = sanitize_foreign(s, 300);
        assert_eq!(t, "Access denied line two endlink gnp.exe!");
        assert!(!t.chars().any(|c| c.is_control()), "{t:?}");
    }

    #[test]
    fn long_text_is_capped() {
        let big = "x".repeat(5_000_000);
        let t = sanitize_foreign(&big, 300);
        assert_eq!(t.chars().count(), 301);
        assert!(t.ends_with('…'));
        assert_eq!(sanitize_foreign("  a \n\n b  ", 300), "a b");
        assert_eq!(sanitize_foreign("", 300), "");
        assert_eq!(sanitize_foreign("\u{1b}", 300), "");
    }
}
