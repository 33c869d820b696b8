//! PC/SC is the same `pcsc` crate everywhere (pcsc-lite's pcscd on Linux/BSD,
//! PCSC.framework on macOS, WinSCard on Windows); only what to tell a person whose
//! smart-card service is not answering differs.

/// The smart-card service went away in the middle of an operation (its connection broke):
/// what it is called here and how to check on it.
pub fn service_lost_hint() -> &'static str {
    if cfg!(target_os = "macos") {
        "the macOS smart-card service lost the connection during the operation (it stopped or restarted); unplug and re-insert the YubiKey and run again"
    } else if cfg!(windows) {
        "the Windows Smart Card service (SCardSvr) lost the connection during the operation (it stopped or restarted); check it is running (`sc query SCardSvr`) and run again"
    } else {
        "pcscd (the PC/SC smart-card daemon) lost the connection during the operation (it stopped, crashed or restarted); check it is running (`systemctl status pcscd`) and run again"
    }
}

/// The hint when the PC/SC service is missing, for this OS.
pub fn no_service_hint() -> &'static str {
    if cfg!(target_os = "macos") {
        "the macOS smart-card service is not answering; unplug and re-insert the YubiKey (PC/SC is built into macOS, nothing to install)"
    } else if cfg!(windows) {
        "the Windows Smart Card service (SCardSvr) is not running; start it with `sc start SCardSvr` in an administrator prompt, or set its startup type to Automatic in services.msc"
    } else {
        "pcscd (the PC/SC smart-card daemon) is not running; install and start it: Debian/Ubuntu `sudo apt install pcscd && sudo systemctl start pcscd.socket`, Fedora `sudo dnf install pcsc-lite && sudo systemctl start pcscd.socket`, Arch `sudo pacman -S pcsclite ccid && sudo systemctl start pcscd.socket`"
    }
}

/// What to do about a YubiKey another program holds: which programs usually do, and how
/// to make them let go on this OS.
pub fn key_busy_hint() -> &'static str {
    if cfg!(windows) {
        "close the other program (another tapcred, YubiKey Manager or ykman, or a smart-card tool such as Gpg4win's Kleopatra) and run again"
    } else {
        "usually gpg-agent's scdaemon, or another tapcred or ykman still running; release it with `gpgconf --kill scdaemon` (or put `disable-ccid` in ~/.gnupg/scdaemon.conf), close the other program, and run again"
    }
}

/// The service's short name, for one-line summaries ("pcscd running?").
pub fn service_name() -> &'static str {
    if cfg!(target_os = "macos") {
        "the smart-card service"
    } else if cfg!(windows) {
        "the Smart Card service"
    } else {
        "pcscd"
    }
}
