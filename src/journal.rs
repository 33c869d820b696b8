//! Journals of multi-step changes that a SIGKILL can interrupt (`enroll`, `vault
//! import-keys`, key changes).
//!
//! A change opens a journal before its first step and records each step *before* taking it
//! (and, where it matters, what the step produced after). The journal is removed when the
//! change has finished or has been undone. A journal still on disk therefore means a run
//! was interrupted: the next run of the same change and `doctor` find it with [`pending`]
//! and offer to finish or undo it, reading the real state first (a step recorded as started
//! may or may not have happened).
//!
//! Journals live in `journal/` in tapcred's data directory (private to this user, like the
//! vault), one JSON file per change: `<kind>-<subject>.json`. They never hold a secret: a
//! step names where a secret is (a file, a vault entry, an OATH account), never its value.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::env::EnvLookup;
use crate::error::{Error, Result};
use crate::platform::fs as pfs;

/// The largest journal file read back (they are a few hundred bytes).
const MAX_JOURNAL_LEN: u64 = 64 * 1024;

/// `journal/` in tapcred's data directory; None when no base is known.
pub fn default_dir(env: &dyn EnvLookup) -> Option<PathBuf> {
    crate::platform::locations::data_dir(env).map(|d| d.join("journal"))
}

/// One recorded step: its name and what the caller needs to finish or undo it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub name: String,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub data: Map<String, Value>,
}

/// What a journal file holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The change: `enroll`, `import-keys`, …
    pub kind: String,
    /// What it changes (a profile name, a vault path), as the user would name it.
    pub subject: String,
    /// Unix seconds when the change began.
    pub started: u64,
    /// The process that wrote it (for messages only: a pid may be reused).
    pub pid: u32,
    pub steps: Vec<Step>,
}

impl Record {
    /// The last step recorded under `name`, if any.
    pub fn step(&self, name: &str) -> Option<&Step> {
        self.steps.iter().rev().find(|s| s.name == name)
    }
    /// Whether a step named `name` was recorded.
    pub fn has(&self, name: &str) -> bool {
        self.step(name).is_some()
    }
    /// A string field of the last step named `step`.
    pub fn text(&self, step: &str, field: &str) -> Option<&str> {
        self.step(step)?.data.get(field)?.as_str()
    }
}

/// An open journal: every [`Journal::step`] is on disk before it returns.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    record: Record,
}

/// A journal file found on disk, read or not.
#[derive(Debug)]
pub struct Pending {
    pub path: PathBuf,
    /// The record, or why it could not be read (a damaged file is still reported).
    pub record: std::result::Result<Record, String>,
}

fn file_name(kind: &str, subject: &str) -> String {
    let safe: String = subject
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    format!("{kind}-{safe}.json")
}

fn io_error(what: &str, path: &Path, e: io::Error) -> Error {
    Error::io(format!(
        "cannot {what} the journal {} ({e}); fix the folder's permissions and run the command again",
        path.display()
    ))
    .with_source(e)
}

fn read_record(path: &Path) -> std::result::Result<Record, String> {
    let bytes = pfs::read_private_file(path, MAX_JOURNAL_LEN).map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| format!("not a tapcred journal: {e}"))
}

impl Journal {
    /// Open a new journal for `kind` on `subject` in `dir`. Fails with the pending record
    /// when one for the same change is already there (an interrupted run): the caller
    /// resumes or undoes it with [`Journal::resume`] first.
    pub fn begin(
        dir: &Path,
        kind: &str,
        subject: &str,
    ) -> std::result::Result<Journal, BeginError> {
        let path = dir.join(file_name(kind, subject));
        if std::fs::symlink_metadata(&path).is_ok() {
            return Err(BeginError::Pending(Pending {
                record: read_record(&path),
                path,
            }));
        }
        pfs::create_private_dir_all(dir).map_err(|e| BeginError::Io(io_error("create", dir, e)))?;
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let journal = Journal {
            path,
            record: Record {
                kind: kind.to_string(),
                subject: subject.to_string(),
                started,
                pid: std::process::id(),
                steps: Vec::new(),
            },
        };
        journal.save().map_err(BeginError::Io)?;
        Ok(journal)
    }

    /// Take over a journal an interrupted run left, to finish or undo its change.
    pub fn resume(pending: &Pending) -> Result<Journal> {
        let record = pending
            .record
            .clone()
            .map_err(|e| io_error("read", &pending.path, io::Error::other(e)))?;
        Ok(Journal {
            path: pending.path.clone(),
            record,
        })
    }

    /// The journal of `kind` on `subject` in `dir`, if a run left one.
    pub fn find(dir: &Path, kind: &str, subject: &str) -> Option<Pending> {
        let path = dir.join(file_name(kind, subject));
        std::fs::symlink_metadata(&path).ok()?;
        Some(Pending {
            record: read_record(&path),
            path,
        })
    }

    /// Record `name` (with `data`) and make it durable before returning.
    pub fn step(&mut self, name: &str, data: Value) -> Result<()> {
        let data = match data {
            Value::Object(m) => m,
            Value::Null => Map::new(),
            other => {
                let mut m = Map::new();
                m.insert("value".into(), other);
                m
            }
        };
        self.record.steps.push(Step {
            name: name.to_string(),
            data,
        });
        self.save()
    }

    pub fn record(&self) -> &Record {
        &self.record
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The change has finished (or been undone): remove the journal.
    pub fn close(self) -> Result<()> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error("remove", &self.path, e)),
        }
    }

    fn save(&self) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(&self.record)
            .map_err(|e| Error::internal(format!("journal: {e}")).with_source(e))?;
        pfs::replace_private(&self.path, ".journal-", &bytes)
            .map_err(|e| io_error("write", &self.path, e))
    }
}

/// Why [`Journal::begin`] did not open a journal.
#[derive(Debug)]
pub enum BeginError {
    /// An interrupted run of the same change left this journal.
    Pending(Pending),
    Io(Error),
}

/// Every journal in `dir` (oldest file name first); an absent folder has none.
pub fn pending(dir: &Path) -> Vec<Pending> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| Pending {
            record: read_record(&path),
            path,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn steps_are_on_disk_before_step_returns_and_close_removes_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let jdir = dir.path().join("journal");
        let mut j = Journal::begin(&jdir, "enroll", "dev").unwrap();
        j.step("create-device", json!({"name": "tapcred-dev"}))
            .unwrap();
        // What a killed process leaves: read it back from disk alone.
        let found = pending(&jdir);
        assert_eq!(found.len(), 1);
        let rec = found[0].record.as_ref().unwrap();
        assert_eq!(rec.kind, "enroll");
        assert_eq!(rec.subject, "dev");
        assert_eq!(rec.text("create-device", "name"), Some("tapcred-dev"));
        assert!(!rec.has("enable"));
        j.step("enable", Value::Null).unwrap();
        assert!(pending(&jdir)[0].record.as_ref().unwrap().has("enable"));
        j.close().unwrap();
        assert!(pending(&jdir).is_empty());
    }

    #[test]
    fn a_second_begin_for_the_same_change_returns_the_pending_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::begin(dir.path(), "import-keys", "a/b c").unwrap();
        j.step("renamed", json!({"backup": "/x"})).unwrap();
        drop(j); // the process "dies": the file stays
        let Err(BeginError::Pending(p)) = Journal::begin(dir.path(), "import-keys", "a/b c") else {
            panic!("a pending journal must stop a new run")
        };
        let resumed = Journal::resume(&p).unwrap();
        assert_eq!(resumed.record().text("renamed", "backup"), Some("/x"));
        resumed.close().unwrap();
        assert!(Journal::begin(dir.path(), "import-keys", "a/b c").is_ok());
    }

    #[test]
    fn a_damaged_journal_is_still_reported() {
        let dir = tempfile::tempdir().unwrap();
        pfs::create_private_dir_all(dir.path()).unwrap();
        pfs::replace_private(&dir.path().join("enroll-x.json"), ".t-", b"{not json").unwrap();
        let found = pending(dir.path());
        assert_eq!(found.len(), 1);
        assert!(
            found[0]
                .record
                .as_ref()
                .unwrap_err()
                .contains("not a tapcred journal")
        );
    }
}
