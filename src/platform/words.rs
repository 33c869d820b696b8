//! The words a message uses for what differs by the person's OS and shell: how a variable
//! is written, what a private file is called, the `export` format their shell reads, what
//! to do when a USB key cannot be opened. Every message that names one of these goes
//! through here, so a Windows user never reads `$VAR`, `mode 0600` or udev advice.

/// Environment variable `name` as the person's shell writes it, for messages: `$NAME` on
/// Unix; on Windows both shells, `%NAME% (cmd) or $env:NAME (PowerShell)`.
pub fn env_var(name: &str) -> String {
    if cfg!(windows) {
        format!("%{name}% (cmd) or $env:{name} (PowerShell)")
    } else {
        format!("${name}")
    }
}

/// What a file only its owner may read is called: Unix "mode 0600"; Windows, where an
/// owner-only ACL stands for it, "readable by you only".
pub const PRIVATE_FILE: &str = if cfg!(windows) {
    "readable by you only"
} else {
    "mode 0600"
};

/// `export`'s format when none is given: the one the person's usual shell reads (POSIX
/// `export` lines; PowerShell on Windows, whose cmd users pass `--format windows-cmd`).
pub const DEFAULT_EXPORT_FORMAT: &str = if cfg!(windows) { "powershell" } else { "env" };

/// What to do when a YubiKey's USB HID interface cannot be opened, after the error itself:
/// Linux users need tapcred's udev rule; elsewhere the system gives access to the person
/// at the desk, so re-plugging (or closing another program using the key) is the advice.
pub fn usb_access_hint() -> &'static str {
    if cfg!(target_os = "linux") {
        "install tapcred's udev rule (udev/70-tapcred-yubikey.rules, see docs/install.md), then re-plug the key"
    } else {
        "re-plug the key and close other programs using it (YubiKey Manager, a browser's security-key prompt)"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_are_written_as_this_os_shells_write_them() {
        let v = env_var("TAPCRED_TOTP_SECRET");
        if cfg!(windows) {
            assert_eq!(
                v,
                "%TAPCRED_TOTP_SECRET% (cmd) or $env:TAPCRED_TOTP_SECRET (PowerShell)"
            );
        } else {
            assert_eq!(v, "$TAPCRED_TOTP_SECRET");
        }
    }

    #[test]
    fn windows_words_have_no_unix_modes() {
        if cfg!(windows) {
            assert!(!PRIVATE_FILE.contains("mode"), "{PRIVATE_FILE}");
            assert_eq!(DEFAULT_EXPORT_FORMAT, "powershell");
            assert!(!usb_access_hint().contains("udev"));
        } else {
            assert_eq!(PRIVATE_FILE, "mode 0600");
            assert_eq!(DEFAULT_EXPORT_FORMAT, "env");
        }
    }
}
