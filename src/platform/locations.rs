//! Where things are, per OS: the home directory (which holds `.aws\config` as the AWS CLI
//! reads it), tapcred's cache directory and its data directory (the vault), and tapcred's
//! own two programs.
//!
//! | | home | cache (`XDG_CACHE_HOME` set and absolute wins everywhere) | data (`XDG_DATA_HOME` likewise) |
//! |---|---|---|---|
//! | Linux | `$HOME` | `$HOME/.cache/tapcred` | `$HOME/.local/share/tapcred` |
//! | macOS | `$HOME` | `$HOME/Library/Caches/tapcred` | `$HOME/Library/Application Support/tapcred` |
//! | Windows | `%USERPROFILE%` (then `%HOME%`, then `%HOMEDRIVE%%HOMEPATH%`) | `%LOCALAPPDATA%\tapcred` | `%APPDATA%\tapcred` |

use std::path::{Path, PathBuf};

use crate::env::EnvLookup;

/// The person's home directory (unset or empty variables count as missing).
pub fn home(env: &dyn EnvLookup) -> Option<String> {
    let get = |k: &str| env.var(k).filter(|v| !v.is_empty());
    if cfg!(windows) {
        get("USERPROFILE").or_else(|| get("HOME")).or_else(|| {
            let drive = get("HOMEDRIVE")?;
            let path = get("HOMEPATH")?;
            Some(format!("{drive}{path}"))
        })
    } else {
        get("HOME")
    }
}

/// The variable(s) [`home`] reads, for messages ("set HOME").
pub const HOME_VAR: &str = if cfg!(windows) { "USERPROFILE" } else { "HOME" };

/// The launcher users run (`cli::launcher`) and the whole program it hands calls to; the
/// two are installed side by side.
pub const LAUNCHER: &str = "tapcred";
pub const FULL_PROGRAM: &str = "tapcred-full";

/// The file name of tapcred's program `name` on this OS (`tapcred-full.exe` on Windows).
pub fn program_file_name(name: &str) -> String {
    format!("{name}{}", std::env::consts::EXE_SUFFIX)
}

/// The folder tapcred's programs are installed in: the running executable's. Linux reports
/// that executable with symbolic links resolved; macOS and Windows may report a link to it
/// (a `tapcred` linked into `~/bin`, say), so when [`FULL_PROGRAM`] is not beside the path
/// reported, the folder of the file it leads to is used.
pub fn programs_dir() -> std::io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let reported = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if reported.join(program_file_name(FULL_PROGRAM)).exists() {
        return Ok(reported);
    }
    Ok(std::fs::canonicalize(&exe)
        .ok()
        .and_then(|real| real.parent().map(Path::to_path_buf))
        .unwrap_or(reported))
}

/// tapcred's program `name` in [`programs_dir`].
pub fn sibling_program(name: &str) -> std::io::Result<PathBuf> {
    Ok(programs_dir()?.join(program_file_name(name)))
}

/// Where one of tapcred's per-user directories goes on each OS (the table at the top).
struct PerUserDir {
    /// Absolute `$XDG_…` that wins everywhere.
    xdg: &'static str,
    /// The Windows variable, else `%USERPROFILE%\AppData\<windows_fallback>`.
    windows_var: &'static str,
    windows_fallback: &'static str,
    /// Below `$HOME` on macOS, and on Linux and other Unix.
    macos: &'static [&'static str],
    unix: &'static [&'static str],
}

impl PerUserDir {
    fn resolve(&self, env: &dyn EnvLookup) -> Option<PathBuf> {
        let absolute = |k: &str| env.var(k).filter(|x| Path::new(x).is_absolute());
        if let Some(x) = absolute(self.xdg) {
            return Some(PathBuf::from(x).join("tapcred"));
        }
        let (base, below) = if cfg!(windows) {
            if let Some(d) = absolute(self.windows_var) {
                return Some(PathBuf::from(d).join("tapcred"));
            }
            (home(env)?, &["AppData", self.windows_fallback][..])
        } else if cfg!(target_os = "macos") {
            (home(env)?, self.macos)
        } else {
            (home(env)?, self.unix)
        };
        let mut dir = PathBuf::from(base);
        dir.extend(below);
        Some(dir.join("tapcred"))
    }
}

/// tapcred's cache directory, None when no base is known.
pub fn cache_dir(env: &dyn EnvLookup) -> Option<PathBuf> {
    PerUserDir {
        xdg: "XDG_CACHE_HOME",
        windows_var: "LOCALAPPDATA",
        windows_fallback: "Local",
        macos: &["Library", "Caches"],
        unix: &[".cache"],
    }
    .resolve(env)
}

/// tapcred's data directory (the vault lives here), None when no base is known.
pub fn data_dir(env: &dyn EnvLookup) -> Option<PathBuf> {
    PerUserDir {
        xdg: "XDG_DATA_HOME",
        windows_var: "APPDATA",
        windows_fallback: "Roaming",
        macos: &["Library", "Application Support"],
        unix: &[".local", "share"],
    }
    .resolve(env)
}

/// Expand a leading `~` (`~/` and, on Windows, `~\`) with `home`; anything else unchanged.
pub fn expand_home(path: &str, home: Option<&str>) -> PathBuf {
    let rest = path
        .strip_prefix("~/")
        .or_else(|| path.strip_prefix("~\\").filter(|_| cfg!(windows)));
    match (path, rest, home) {
        ("~", _, Some(home)) => PathBuf::from(home),
        // Component by component: one separator in what is shown (no `C:\u\.aws/config`).
        (_, Some(rest), Some(home)) => {
            let mut p = PathBuf::from(home);
            p.extend(
                rest.split(|c| c == '/' || (cfg!(windows) && c == '\\'))
                    .filter(|c| !c.is_empty()),
            );
            p
        }
        (p, _, _) => PathBuf::from(p),
    }
}

/// Whether `path` starts with `~` in the sense of [`expand_home`].
pub fn starts_with_home(path: &str) -> bool {
    path == "~" || path.starts_with("~/") || (cfg!(windows) && path.starts_with("~\\"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn xdg_cache_home_wins_when_absolute() {
        let abs = if cfg!(windows) { "C:\\xdg" } else { "/xdg" };
        let e = env(&[
            ("XDG_CACHE_HOME", abs),
            ("HOME", "/h"),
            ("USERPROFILE", "C:\\u"),
            ("LOCALAPPDATA", "C:\\u\\AppData\\Local"),
        ]);
        assert_eq!(cache_dir(&e), Some(Path::new(abs).join("tapcred")));
        let rel = env(&[("XDG_CACHE_HOME", "rel"), ("HOME", "/h")]);
        assert_ne!(cache_dir(&rel), Some(Path::new("rel").join("tapcred")));
    }

    #[test]
    fn per_os_cache_dir() {
        let e = env(&[("HOME", "/h")]);
        let want = if cfg!(windows) {
            Some(
                Path::new("/h")
                    .join("AppData")
                    .join("Local")
                    .join("tapcred"),
            )
        } else if cfg!(target_os = "macos") {
            Some(PathBuf::from("/h/Library/Caches/tapcred"))
        } else {
            Some(PathBuf::from("/h/.cache/tapcred"))
        };
        assert_eq!(cache_dir(&e), want);
        assert_eq!(cache_dir(&env(&[])), None);
    }

    #[test]
    fn per_os_data_dir() {
        let e = env(&[("HOME", "/h"), ("USERPROFILE", "/h")]);
        let want = if cfg!(windows) {
            Path::new("/h")
                .join("AppData")
                .join("Roaming")
                .join("tapcred")
        } else if cfg!(target_os = "macos") {
            PathBuf::from("/h/Library/Application Support/tapcred")
        } else {
            PathBuf::from("/h/.local/share/tapcred")
        };
        assert_eq!(data_dir(&e), Some(want));
        assert_eq!(data_dir(&env(&[])), None);
        let abs = if cfg!(windows) { "C:\\d" } else { "/d" };
        let x = env(&[("XDG_DATA_HOME", abs), ("HOME", "/h"), ("APPDATA", "C:\\a")]);
        assert_eq!(data_dir(&x), Some(Path::new(abs).join("tapcred")));
        if cfg!(windows) {
            let a = env(&[
                ("APPDATA", "C:\\u\\AppData\\Roaming"),
                ("USERPROFILE", "C:\\u"),
            ]);
            assert_eq!(
                data_dir(&a),
                Some(Path::new("C:\\u\\AppData\\Roaming").join("tapcred"))
            );
        }
    }

    #[test]
    fn tilde_expansion() {
        assert_eq!(expand_home("~", Some("/h")), PathBuf::from("/h"));
        assert_eq!(
            expand_home("~/x/y", Some("/h")),
            Path::new("/h").join("x/y")
        );
        assert_eq!(expand_home("~/x", None), PathBuf::from("~/x"));
        assert_eq!(expand_home("~bob/x", Some("/h")), PathBuf::from("~bob/x"));
        assert!(starts_with_home("~/a") && !starts_with_home("a~"));
    }

    /// What is shown has one separator: `~/.aws/config` under `C:\u` is `C:\u\.aws\config`
    /// on Windows (the AWS default path and a user's forward slashes alike).
    #[test]
    fn expanded_paths_use_this_os_separator_only() {
        let home = if cfg!(windows) { "C:\\u" } else { "/u" };
        let want = Path::new(home).join(".aws").join("config");
        assert_eq!(expand_home("~/.aws/config", Some(home)), want);
        assert_eq!(expand_home("~//.aws/config", Some(home)), want);
        if cfg!(windows) {
            assert_eq!(expand_home("~\\.aws/config", Some(home)), want);
            assert_eq!(want.display().to_string(), "C:\\u\\.aws\\config");
        }
    }
}
