//! Finding and parsing the two files (aws-config's parser), lookups, and messages that say
//! which file and section a key is in.

use std::borrow::Cow;
use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::future::Future;
use std::path::Path;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use aws_config::profile::ProfileSet;
use aws_runtime::env_config::file::{EnvConfigFileKind, EnvConfigFiles};
use aws_types::os_shim_internal::{Env, Fs};

use super::{AwsFiles, FileData, Profiles, Which, validate};
use crate::env::EnvLookup;
use crate::error::{Error, Result};

impl AwsFiles {
    /// `AWS_CONFIG_FILE` / `AWS_SHARED_CREDENTIALS_FILE` (a leading `~` is expanded with
    /// the home directory), else `~/.aws/config` and `~/.aws/credentials` (`HOME`;
    /// `%USERPROFILE%` on Windows, as the AWS CLI: [`crate::platform::locations::home`]).
    /// Without a home the paths keep a literal `~`, as the AWS SDKs do, and will not be found.
    pub fn from_env(env: &dyn EnvLookup) -> AwsFiles {
        let home = crate::platform::locations::home(env);
        let pick = |var: &str, default: &str| match env.var(var).filter(|v| !v.is_empty()) {
            Some(path) => expand_home(&path, home.as_deref()),
            None => expand_home(&format!("~/.aws/{default}"), home.as_deref()),
        };
        AwsFiles {
            config: pick("AWS_CONFIG_FILE", "config"),
            credentials: pick("AWS_SHARED_CREDENTIALS_FILE", "credentials"),
        }
    }
}

pub(super) use crate::platform::locations::expand_home;

/// The largest AWS config or credentials file read (the AWS CLI's own files are a few KiB;
/// this bounds what `AWS_CONFIG_FILE=/dev/zero` or a runaway generator can make us hold).
pub const MAX_AWS_FILE: u64 = 1024 * 1024;

/// Read a file that may be missing: `Ok(None)` when it does not exist. Only a regular file
/// of at most [`MAX_AWS_FILE`] is read (a FIFO or a device is refused without blocking).
pub(super) fn read_optional(path: &Path, what: &str) -> Result<Option<String>> {
    use crate::platform::fs::{ReadError, read_regular};
    let shown = path.display();
    match read_regular(path, MAX_AWS_FILE, true) {
        Ok(bytes) => String::from_utf8(bytes.to_vec()).map(Some).map_err(|_| {
            Error::config(format!(
                "{shown}: the AWS {what} file is not UTF-8 text; save it as UTF-8"
            ))
        }),
        Err(ReadError::NotFound) => Ok(None),
        Err(ReadError::NotRegular(kind)) => Err(Error::config(format!(
            "{shown}: the AWS {what} file is {kind}, not a regular file; point AWS_{}_FILE at a regular file",
            if what == "config" {
                "CONFIG"
            } else {
                "SHARED_CREDENTIALS"
            }
        ))),
        Err(ReadError::TooLarge(cap)) => Err(Error::config(format!(
            "{shown}: the AWS {what} file is larger than {} MiB, which no AWS {what} file is; check that this is the right file",
            cap / (1024 * 1024)
        ))),
        Err(e) => Err(Error::config(format!(
            "{shown}: cannot read the AWS {what} file: {e}; check its permissions"
        ))
        .with_source(e)),
    }
}

/// Drive a future that never really waits (aws-config's profile loader does only
/// synchronous std::fs I/O, here against an in-memory map) without an async runtime.
pub(super) fn run_ready<F: Future>(fut: F) -> Result<F::Output> {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(out) => Ok(out),
        Poll::Pending => Err(Error::internal(
            "internal error: aws-config's profile parser did not finish synchronously; please report this",
        )),
    }
}

/// Parse the given files with aws-config's public parser (exactly the AWS CLI's rules).
pub(super) fn parse_files(files: &[(EnvConfigFileKind, &Path, &str)]) -> Result<ProfileSet> {
    let mut map: HashMap<OsString, Vec<u8>> = HashMap::new();
    let mut builder = EnvConfigFiles::builder();
    for (kind, path, text) in files {
        map.insert(path.as_os_str().to_owned(), text.as_bytes().to_vec());
        builder = builder.with_file(*kind, *path);
    }
    if files.is_empty() {
        builder = builder.with_contents(EnvConfigFileKind::Config, "");
    }
    let fs = Fs::from_raw_map(map);
    let env = Env::from_slice(&[]);
    let set = run_ready(aws_config::profile::load(
        &fs,
        &env,
        &builder.build(),
        Some(Cow::Borrowed("default")),
    ))?;
    set.map_err(|e| {
        // The parse error (with path and line) is the source of the load error.
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(inner) = source {
            text = format!("{text}: {inner}");
            source = inner.source();
        }
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        Error::config(format!("{text}; fix that line"))
    })
}

/// How a profile's section header is written in a file.
pub(super) fn header(which: Which, profile: &str) -> String {
    match (which, profile) {
        (Which::Credentials, p) | (Which::Config, p @ "default") => format!("[{p}]"),
        (Which::Config, p) => format!("[profile {p}]"),
    }
}

pub(super) fn parse_bool(value: &str) -> Option<bool> {
    if value.eq_ignore_ascii_case("true") {
        Some(true)
    } else if value.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

impl Profiles {
    /// Read both files. A file that does not exist is treated as empty; if neither exists,
    /// that is a config error naming both paths.
    pub fn load(files: &AwsFiles) -> Result<Profiles> {
        let config_text = read_optional(&files.config, "config")?;
        let credentials_text = read_optional(&files.credentials, "credentials")?;
        if config_text.is_none() && credentials_text.is_none() {
            return Err(Error::config(format!(
                "no AWS profiles: neither {} nor {} exists; create them with `aws configure` \
                 (or write a [profile NAME] section in the first and a [NAME] section with \
                 aws_access_key_id/aws_secret_access_key in the second), or point \
                 AWS_CONFIG_FILE / AWS_SHARED_CREDENTIALS_FILE at your files",
                files.config.display(),
                files.credentials.display()
            )));
        }
        let mut both = Vec::new();
        if let Some(text) = &config_text {
            both.push((
                EnvConfigFileKind::Config,
                files.config.as_path(),
                text.as_str(),
            ));
        }
        if let Some(text) = &credentials_text {
            both.push((
                EnvConfigFileKind::Credentials,
                files.credentials.as_path(),
                text.as_str(),
            ));
        }
        let merged = parse_files(&both)?;
        // Each file on its own is parsed only if a message needs it (see FileData).
        let one = |kind, path: &Path, text: Option<String>| {
            text.map(|text| FileData {
                kind,
                path: path.to_owned(),
                text: zeroize::Zeroizing::new(text),
                set: std::cell::OnceCell::new(),
            })
        };
        let config = one(EnvConfigFileKind::Config, &files.config, config_text);
        let credentials = one(
            EnvConfigFileKind::Credentials,
            &files.credentials,
            credentials_text,
        );
        Ok(Profiles {
            files: files.clone(),
            merged,
            config,
            credentials,
        })
    }

    /// The text of each file as parsed (config, credentials); None for a missing file.
    pub fn texts(&self) -> (Option<&str>, Option<&str>) {
        (
            self.config.as_ref().map(|d| d.text.as_str()),
            self.credentials.as_ref().map(|d| d.text.as_str()),
        )
    }

    /// Profile names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.merged.profiles().map(str::to_owned).collect();
        names.sort();
        names
    }

    /// Whether a profile of that name exists in either file.
    pub fn contains(&self, name: &str) -> bool {
        self.merged.get_profile(name).is_some()
    }

    /// The merged value of `key` in `profile` (credentials file wins), trimmed; an empty
    /// value counts as unset. Key names are case-insensitive, profile names are not.
    pub fn get(&self, profile: &str, key: &str) -> Option<&str> {
        self.merged
            .get_profile(profile)?
            .get(key)
            .map(str::trim)
            .filter(|v| !v.is_empty())
    }

    /// Whether each file exists (config, credentials).
    pub fn existing(&self) -> (bool, bool) {
        (self.config.is_some(), self.credentials.is_some())
    }

    pub(super) fn data(&self, which: Which) -> Option<&FileData> {
        match which {
            Which::Config => self.config.as_ref(),
            Which::Credentials => self.credentials.as_ref(),
        }
    }

    pub(super) fn path(&self, which: Which) -> &Path {
        match which {
            Which::Config => &self.files.config,
            Which::Credentials => &self.files.credentials,
        }
    }

    /// The file the merged value of `key` comes from (the credentials file wins, as in the
    /// merge), else the file(s) where the profile is defined.
    pub(super) fn files_of(&self, profile: &str, key: Option<&str>) -> Vec<Which> {
        let in_file = |which: Which| self.data(which).and_then(|d| d.set()?.get_profile(profile));
        if let Some(key) = key {
            for which in [Which::Credentials, Which::Config] {
                if in_file(which).is_some_and(|p| p.get(key).is_some()) {
                    return vec![which];
                }
            }
        }
        let found: Vec<Which> = [Which::Config, Which::Credentials]
            .into_iter()
            .filter(|&w| in_file(w).is_some())
            .collect();
        if found.is_empty() {
            vec![Which::Config]
        } else {
            found
        }
    }

    /// Where a key (or, with `None`, the profile) is written, for messages:
    /// `profile "NAME" ([profile NAME] in PATH)`.
    pub fn location(&self, profile: &str, key: Option<&str>) -> String {
        self.at(profile, key)
    }

    /// `profile "NAME" ([profile NAME] in PATH)` prefix for a message: the file is the one
    /// holding `key` when it is set, else the file(s) defining the profile.
    pub(super) fn at(&self, profile: &str, key: Option<&str>) -> String {
        let files: Vec<String> = self
            .files_of(profile, key)
            .into_iter()
            .map(|w| format!("{} in {}", header(w, profile), self.path(w).display()))
            .collect();
        format!("profile \"{profile}\" ({})", files.join(" and "))
    }

    pub(super) fn fail(
        &self,
        profile: &str,
        key: &str,
        problem: impl fmt::Display,
        fix: &str,
    ) -> Error {
        Error::config(format!(
            "{}: {key} {problem}; {fix}",
            self.at(profile, Some(key))
        ))
    }

    pub(super) fn not_found(&self, name: &str) -> Error {
        let names = self.names();
        let read: Vec<String> = [Which::Config, Which::Credentials]
            .into_iter()
            .map(|w| {
                let path = self.path(w).display();
                if self.data(w).is_some() {
                    format!("read {path}")
                } else {
                    format!("{path} does not exist")
                }
            })
            .collect();
        let mut msg = format!("profile \"{name}\" not found ({})", read.join("; "));
        // The most common slip: the other file's header style.
        let mut header_slip = false;
        if let Some(d) = &self.config
            && name != "default"
            && d.headers().iter().any(|h| *h == name)
        {
            header_slip = true;
            msg.push_str(&format!(
                "; {} has [{name}], but the config file needs [profile {name}]",
                self.files.config.display()
            ));
        }
        if let Some(d) = &self.credentials
            && d.headers().contains(&format!("profile {name}"))
        {
            header_slip = true;
            msg.push_str(&format!(
                "; {} has [profile {name}], but the credentials file needs [{name}]",
                self.files.credentials.display()
            ));
        }
        let close = validate::close_names(name, &names);
        if !close.is_empty() {
            let quoted: Vec<String> = close.iter().map(|n| format!("\"{n}\"")).collect();
            msg.push_str(&format!("; did you mean {}?", quoted.join(" or ")));
        } else if names.is_empty() {
            msg.push_str("; the files define no profiles");
        } else {
            let shown: Vec<&str> = names.iter().take(12).map(String::as_str).collect();
            let more = if names.len() > shown.len() {
                ", …"
            } else {
                ""
            };
            msg.push_str(&format!("; profiles there: {}{more}", shown.join(", ")));
        }
        let sep = if msg.ends_with('?') { " " } else { "; " };
        if header_slip {
            msg.push_str(&format!("{sep}fix that section header"));
        } else {
            msg.push_str(&format!(
                "{sep}pick a profile with --profile or AWS_PROFILE, or add [profile {name}] to {}",
                self.files.config.display()
            ));
        }
        Error::config(msg)
    }
}

/// The contents of every section header line (`[ profile  a ]` → `profile a`).
pub(super) fn headers(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let inner = line.trim().strip_prefix('[')?;
            let inner = inner.split(']').next()?;
            Some(inner.split_whitespace().collect::<Vec<_>>().join(" "))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use std::path::PathBuf;

    /// An unreadable AWS file keeps the OS error under its one-line message: the chain
    /// goes `Error` → `ReadError::Io` → `io::Error`.
    #[test]
    fn an_unreadable_aws_file_keeps_the_io_error_as_its_source() {
        use std::error::Error as _;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain");
        std::fs::write(&file, "x").unwrap();
        // A path through a regular file: ENOTDIR (Unix), "path not found" (Windows).
        let e = read_optional(&file.join("config"), "config").unwrap_err();
        assert_eq!(e.exit_code(), 3);
        assert!(
            e.message().contains("cannot read the AWS config file"),
            "{e}"
        );
        let read = e.source().expect("the ReadError is the source");
        assert!(
            matches!(
                read.downcast_ref::<crate::platform::fs::ReadError>(),
                Some(crate::platform::fs::ReadError::Io(_))
            ),
            "{read:?}"
        );
        let io = read
            .source()
            .and_then(|s| s.downcast_ref::<std::io::Error>());
        assert!(io.is_some_and(|io| io.raw_os_error().is_some()), "{io:?}");
    }

    #[test]
    fn run_ready_completes_the_parser_without_a_runtime() {
        assert_eq!(run_ready(async { 7 }).unwrap(), 7);
        let set = parse_files(&[(
            EnvConfigFileKind::Config,
            Path::new("/x/config"),
            "[profile a]\nregion = r\n",
        )])
        .unwrap();
        assert_eq!(set.get_profile("a").unwrap().get("region"), Some("r"));
    }

    #[test]
    fn run_ready_reports_a_pending_future_as_internal() {
        let err = run_ready(std::future::pending::<()>()).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Internal);
        assert!(err.message().contains("did not finish synchronously"));
    }

    #[test]
    fn parse_errors_name_the_file_and_line_on_one_line() {
        let err = parse_files(&[(
            EnvConfigFileKind::Credentials,
            Path::new("/home/u/.aws/credentials"),
            "[a]\nno equals sign here\n",
        )])
        .map(|_| ())
        .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Config);
        let msg = err.message();
        assert!(msg.contains("/home/u/.aws/credentials on line 2"), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
    }

    #[test]
    fn header_lines() {
        assert_eq!(
            headers("# c\n[ profile   a ]\nk = v\n[b] ; note\n  [c]\n"),
            vec!["profile a", "b", "c"]
        );
        assert_eq!(header(Which::Config, "a"), "[profile a]");
        assert_eq!(header(Which::Config, "default"), "[default]");
        assert_eq!(header(Which::Credentials, "a"), "[a]");
    }

    #[test]
    fn home_expansion() {
        assert_eq!(expand_home("~/x/y", Some("/h")), PathBuf::from("/h/x/y"));
        assert_eq!(expand_home("~", Some("/h")), PathBuf::from("/h"));
        assert_eq!(expand_home("~user/x", Some("/h")), PathBuf::from("~user/x"));
        assert_eq!(
            expand_home("/abs/~/x", Some("/h")),
            PathBuf::from("/abs/~/x")
        );
        assert_eq!(expand_home("~/x", None), PathBuf::from("~/x"));
    }

    #[test]
    fn booleans() {
        assert_eq!(parse_bool("TRUE"), Some(true));
        assert_eq!(parse_bool("false"), Some(false));
        assert_eq!(parse_bool("1"), None);
    }
}
