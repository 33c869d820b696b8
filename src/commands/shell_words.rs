//! Quoting for the commands tapcred prints for the person to run (to finish or undo a
//! change by hand, or to name a profile in a fix).

/// A word for a POSIX shell: as is when safe, else single-quoted.
pub(crate) fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-/:".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words() {
        assert_eq!(shell_word("arn:aws:iam::1:mfa/a"), "arn:aws:iam::1:mfa/a");
        assert_eq!(shell_word("it's"), "'it'\\''s'");
        assert_eq!(shell_word("a b"), "'a b'");
    }
}
