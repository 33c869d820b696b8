use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

use time::OffsetDateTime;

use super::*;
use crate::error::ErrorKind;
use crate::ui::{RecordingUi, UiEvent};

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn key(role: &str) -> CacheKey {
    CacheKey::builder(SessionKind::AssumeRole)
        .source("AKIAIOSFODNN7EXAMPLE")
        .role_arn(role)
        .mfa_serial(Some("arn:aws:iam::111111111111:mfa/toolkit-user"))
        .build()
}

fn entry(profile: &str, secret: &str, lifetime: i64) -> Entry {
    let now = OffsetDateTime::now_utc();
    Entry {
        kind: SessionKind::AssumeRole,
        profile: profile.into(),
        mfa_serial: Some("arn:aws:iam::111111111111:mfa/toolkit-user".into()),
        created: now,
        credentials: Credentials::new(
            "ASIATESTKEY",
            secret,
            Some(format!("token-{secret}")),
            Some(now + time::Duration::seconds(lifetime)),
        ),
    }
}

fn warnings(ui: &RecordingUi) -> Vec<String> {
    ui.events()
        .into_iter()
        .filter_map(|e| match e {
            UiEvent::Warn(w) => Some(w),
            _ => None,
        })
        .collect()
}

/// The cache's files as the program writes them, except that a write can be made to fail
/// after half the data (a full disk, an I/O error) or to run something between writing the
/// temp file and renaming it (another process clearing the cache meanwhile).
#[derive(Clone, Default)]
struct Faulty {
    fault: Arc<std::sync::Mutex<Option<io::ErrorKind>>>,
    before_rename: Arc<std::sync::Mutex<Option<BeforeRename>>>,
}

type BeforeRename = Box<dyn Fn(&Path) + Send + Sync>;

impl Faulty {
    /// Make every following write fail with `kind` after half of the data was written;
    /// `None` turns it off.
    fn fail_writes(&self, kind: Option<io::ErrorKind>) {
        *self.fault.lock().unwrap() = kind;
    }

    fn before_rename(&self, f: Option<BeforeRename>) {
        *self.before_rename.lock().unwrap() = f;
    }

    /// `SessionCache::open` writing through this.
    fn open(&self, dir: impl Into<PathBuf>, ui: &dyn Ui) -> SessionCache {
        SessionCache::open(dir, ui).with_files(Box::new(self.clone()))
    }
}

impl FileWriter for Faulty {
    fn replace(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        if let Some(kind) = *self.fault.lock().unwrap() {
            // Dropped unrenamed: the temp file goes, the target stays as it was.
            let _half = pfs::stage(
                path,
                TEMP_PREFIX,
                &data[..data.len() / 2],
                pfs::Perms::Private,
            )?;
            return Err(io::Error::from(kind));
        }
        let staged = pfs::stage(path, TEMP_PREFIX, data, pfs::Perms::Private)?;
        if let Some(hook) = self.before_rename.lock().unwrap().as_ref() {
            hook(staged.path());
        }
        staged.commit(path)
    }
}

fn mode(p: &std::path::Path) -> u32 {
    fs::metadata(p).unwrap().mode() & 0o777
}

fn am_root() -> bool {
    rustix::process::geteuid().is_root()
}

#[test]
#[cfg(target_os = "linux")]
fn default_dir_follows_xdg_then_home() {
    let mut env = HashMap::new();
    assert_eq!(default_dir(&env), None);
    env.insert("HOME".to_string(), "/home/a".to_string());
    assert_eq!(
        default_dir(&env),
        Some(PathBuf::from("/home/a/.cache/tapcred"))
    );
    // A relative XDG_CACHE_HOME is invalid per the XDG spec and ignored.
    env.insert("XDG_CACHE_HOME".to_string(), "rel/cache".to_string());
    assert_eq!(
        default_dir(&env),
        Some(PathBuf::from("/home/a/.cache/tapcred"))
    );
    env.insert("XDG_CACHE_HOME".to_string(), "/x/cache".to_string());
    assert_eq!(default_dir(&env), Some(PathBuf::from("/x/cache/tapcred")));
}

#[test]
fn round_trip_with_private_modes_and_opaque_names() {
    let t = tmp();
    let dir = t.path().join("deep").join("tapcred");
    let ui = RecordingUi::new();
    let c = SessionCache::open(&dir, &ui);
    assert!(c.enabled());
    assert!(!dir.exists(), "nothing is created before a write");
    let k = key("arn:aws:iam::111111111111:role/toolkit-role");
    assert!(c.get(&k, ADVISORY_WINDOW).is_none());
    assert!(c.list().is_empty());
    assert!(!dir.exists());
    assert!(c.put(&k, &entry("mfa", "s3cret", 3600), &ui));
    assert_eq!(mode(&dir), 0o700);
    let path = dir.join(format!("{}.json", k.hex()));
    assert_eq!(mode(&path), 0o600);
    let names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|d| d.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        vec![format!("{}.json", k.hex())],
        "no temp files left"
    );
    let got = c.get(&k, ADVISORY_WINDOW).expect("hit");
    assert_eq!(got.credentials.secret(), "s3cret");
    assert_eq!(got.credentials.token(), Some("token-s3cret"));
    assert_eq!(got.profile, "mfa");
    assert_eq!(got.kind, SessionKind::AssumeRole);
    assert!(!format!("{got:?}").contains("s3cret"));
    assert!(warnings(&ui).is_empty());
    // A different key misses.
    assert!(
        c.get(&key("arn:aws:iam::1:role/other"), ADVISORY_WINDOW)
            .is_none()
    );
}

#[test]
fn open_tightens_an_existing_loose_directory() {
    let t = tmp();
    let dir = t.path().join("c");
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    let ui = RecordingUi::new();
    let c = SessionCache::open(&dir, &ui);
    assert!(c.enabled());
    assert_eq!(mode(&dir), 0o700);
}

#[test]
fn freshness_uses_the_advisory_window_and_distrusts_future_entries() {
    let t = tmp();
    let ui = RecordingUi::new();
    let c = SessionCache::open(t.path(), &ui);
    let k = key("arn:aws:iam::1:role/r");
    let mut e = entry("p", "a", 16 * 60);
    e.created -= time::Duration::minutes(44);
    assert!(c.put(&k, &e, &ui));
    assert!(c.get(&k, ADVISORY_WINDOW).is_some());
    // An hour-long session with 14 minutes left.
    let mut old = entry("p", "b", 14 * 60);
    old.created -= time::Duration::minutes(46);
    assert!(c.put(&k, &old, &ui));
    assert!(c.get(&k, ADVISORY_WINDOW).is_none(), "14 min left: refresh");
    assert!(c.get(&k, Duration::from_secs(60)).is_some());

    // A 15-minute session (duration_seconds = 900) is reused until half of it is left.
    let mut short = entry("p", "s", 10 * 60);
    short.created -= time::Duration::minutes(5);
    assert!(c.put(&k, &short, &ui)); // 10 of 15 minutes left
    assert!(c.get(&k, ADVISORY_WINDOW).is_some());
    let mut short = entry("p", "s", 7 * 60);
    short.created -= time::Duration::minutes(8);
    assert!(c.put(&k, &short, &ui)); // 7 of 15 minutes left
    assert!(c.get(&k, ADVISORY_WINDOW).is_none());

    let now = OffsetDateTime::now_utc();
    assert!(c.put(&k, &entry("p", "c", 3600), &ui));
    // Clock jumped forward past the expiry: miss.
    assert!(
        c.get_at(&k, now + time::Duration::hours(2), ADVISORY_WINDOW)
            .is_none()
    );
    // Clock jumped back an hour: the entry claims to be created in the future: miss.
    assert!(
        c.get_at(&k, now - time::Duration::hours(1), ADVISORY_WINDOW)
            .is_none()
    );
    // Small step back (one minute): still fine.
    assert!(
        c.get_at(&k, now - time::Duration::minutes(1), ADVISORY_WINDOW)
            .is_some()
    );
}

#[test]
fn entries_without_expiration_are_not_stored() {
    let t = tmp();
    let ui = RecordingUi::new();
    let c = SessionCache::open(t.path(), &ui);
    let mut e = entry("p", "x", 3600);
    e.credentials.expiration = None;
    assert!(!c.put(&key("arn:aws:iam::1:role/r"), &e, &ui));
    assert!(c.list().is_empty());
}

#[test]
fn corrupt_and_foreign_files_are_misses_and_get_replaced() {
    let t = tmp();
    let ui = RecordingUi::new();
    let c = SessionCache::open(t.path(), &ui);
    let k = key("arn:aws:iam::1:role/r");
    let path = t.path().join(format!("{}.json", k.hex()));
    let write = |bytes: &[u8], m: u32| {
        let _ = fs::remove_file(&path);
        fs::write(&path, bytes).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(m)).unwrap();
    };

    // A valid document to mutate.
    assert!(c.put(&k, &entry("p", "good", 3600), &ui));
    let good = fs::read_to_string(&path).unwrap();

    let cases: Vec<(&str, Vec<u8>, u32)> = vec![
        ("garbage", b"\x00\xffnot json".to_vec(), 0o600),
        ("empty", Vec::new(), 0o600),
        (
            "truncated",
            good.as_bytes()[..good.len() / 2].to_vec(),
            0o600,
        ),
        (
            "other version",
            good.replace("\"version\":1", "\"version\":99").into_bytes(),
            0o600,
        ),
        (
            "key of another file",
            good.replace(k.hex(), &"0".repeat(64)).into_bytes(),
            0o600,
        ),
        (
            "bad expiration",
            good.replacen("\"expiration\":\"", "\"expiration\":\"x", 1)
                .into_bytes(),
            0o600,
        ),
        ("group readable", good.clone().into_bytes(), 0o640),
        ("world readable", good.clone().into_bytes(), 0o644),
        ("huge", vec![b' '; 100 * 1024], 0o600),
    ];
    for (what, bytes, m) in cases {
        write(&bytes, m);
        assert!(
            c.get(&k, ADVISORY_WINDOW).is_none(),
            "{what} must be a miss"
        );
        assert!(c.list().is_empty(), "{what} must not be listed");
        assert!(c.put(&k, &entry("p", "new", 3600), &ui), "{what}: replace");
        assert_eq!(
            c.get(&k, ADVISORY_WINDOW).unwrap().credentials.secret(),
            "new",
            "{what}"
        );
        assert_eq!(mode(&path), 0o600);
    }

    // A symlink planted in place of the entry is not followed.
    let target = t.path().join("elsewhere");
    fs::write(&target, good.as_bytes()).unwrap();
    fs::set_permissions(&target, fs::Permissions::from_mode(0o600)).unwrap();
    fs::remove_file(&path).unwrap();
    symlink(&target, &path).unwrap();
    assert!(
        c.get(&k, ADVISORY_WINDOW).is_none(),
        "symlink must be a miss"
    );
    assert!(c.put(&k, &entry("p", "fresh", 3600), &ui));
    assert!(
        !fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(
        fs::read_to_string(&target).unwrap(),
        good,
        "target untouched"
    );

    // A directory in place of the entry.
    fs::remove_file(&path).unwrap();
    fs::create_dir(&path).unwrap();
    assert!(c.get(&k, ADVISORY_WINDOW).is_none());
    assert!(warnings(&ui).is_empty());
}

#[test]
fn a_file_owned_by_someone_else_is_a_miss() {
    if !am_root() {
        eprintln!("SKIP a_file_owned_by_someone_else_is_a_miss: needs root to chown");
        return;
    }
    let t = tmp();
    let ui = RecordingUi::new();
    let c = SessionCache::open(t.path(), &ui);
    let k = key("arn:aws:iam::1:role/r");
    assert!(c.put(&k, &entry("p", "x", 3600), &ui));
    let path = t.path().join(format!("{}.json", k.hex()));
    let st = std::process::Command::new("chown")
        .arg("65534")
        .arg(&path)
        .status()
        .unwrap();
    assert!(st.success());
    assert!(c.get(&k, ADVISORY_WINDOW).is_none());
    assert!(c.put(&k, &entry("p", "y", 3600), &ui));
    assert_eq!(fs::metadata(&path).unwrap().uid(), 0);
    assert_eq!(
        c.get(&k, ADVISORY_WINDOW).unwrap().credentials.secret(),
        "y"
    );
}

#[test]
fn a_path_that_is_not_a_directory_disables_the_cache_with_one_warning() {
    let t = tmp();
    let file = t.path().join("cache");
    fs::write(&file, b"x").unwrap();
    let ui = RecordingUi::new();
    let c = SessionCache::open(&file, &ui).with_fallback_dir(Some(t.path().join("fb")));
    assert!(!c.enabled());
    let k = key("arn:aws:iam::1:role/r");
    assert!(!c.put(&k, &entry("p", "x", 3600), &ui));
    assert!(!c.put(&k, &entry("p", "x", 3600), &ui));
    assert!(c.get(&k, ADVISORY_WINDOW).is_none());
    assert!(c.list().is_empty());
    assert_eq!(c.clear(None), 0);
    // Locks and the ledger still work, in the fallback directory.
    let g = c.lock(&k, &ui).unwrap();
    assert!(g.is_held());
    assert!(g.path().unwrap().starts_with(t.path().join("fb")));
    drop(g);
    c.record("serial-1", 1020, &ui);
    assert_eq!(c.last_window_end("serial-1", &ui), Some(1020));
    let w = warnings(&ui);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("not a directory"), "{w:?}");
    assert_eq!(fs::read(&file).unwrap(), b"x", "file untouched");
}

/// Makes `dir` unwritable: a read-only tmpfs mount when root (root ignores mode bits),
/// else chmod 0500. Returns a guard that undoes it.
struct ReadOnly {
    dir: PathBuf,
    mounted: bool,
}

impl ReadOnly {
    fn make(dir: &std::path::Path) -> Option<ReadOnly> {
        if am_root() {
            let ok = std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", "ro,size=64k,mode=0700", "tmpfs"])
                .arg(dir)
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if !ok {
                if std::env::var("CI").as_deref() == Ok("true") {
                    panic!("cannot mount a read-only tmpfs (CI=true)");
                }
                eprintln!("SKIP: cannot mount a read-only tmpfs as root");
                return None;
            }
            Some(ReadOnly {
                dir: dir.to_owned(),
                mounted: true,
            })
        } else {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o500)).unwrap();
            Some(ReadOnly {
                dir: dir.to_owned(),
                mounted: false,
            })
        }
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        if self.mounted {
            let _ = std::process::Command::new("umount").arg(&self.dir).status();
        } else {
            let _ = fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700));
        }
    }
}

#[test]
fn an_unwritable_directory_disables_the_cache_with_one_warning() {
    let t = tmp();
    let dir = t.path().join("ro");
    fs::create_dir(&dir).unwrap();
    let Some(_ro) = ReadOnly::make(&dir) else {
        return;
    };
    let ui = RecordingUi::new();
    let c = SessionCache::open(&dir, &ui).with_fallback_dir(Some(t.path().join("fb")));
    let k = key("arn:aws:iam::1:role/r");
    assert!(c.get(&k, ADVISORY_WINDOW).is_none());
    assert!(!c.put(&k, &entry("p", "x", 3600), &ui));
    assert!(!c.enabled());
    assert!(!c.put(&k, &entry("p", "x", 3600), &ui));
    let g = c.lock(&k, &ui).unwrap();
    assert!(g.is_held());
    c.record("s", 60, &ui);
    assert_eq!(c.last_window_end("s", &ui), Some(60));
    let w = warnings(&ui);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("not writable"), "{w:?}");
}

#[test]
fn a_write_failure_keeps_the_old_entry() {
    let t = tmp();
    let ui = RecordingUi::new();
    let files = Faulty::default();
    let c = files.open(t.path(), &ui);
    let k = key("arn:aws:iam::1:role/r");
    assert!(c.put(&k, &entry("p", "old", 3600), &ui));
    files.fail_writes(Some(io::ErrorKind::StorageFull));
    assert!(!c.put(&k, &entry("p", "new", 3600), &ui));
    assert!(!c.put(&k, &entry("p", "newer", 3600), &ui));
    assert!(c.enabled(), "a full disk does not disable the cache");
    assert_eq!(
        c.get(&k, ADVISORY_WINDOW).unwrap().credentials.secret(),
        "old"
    );
    let w = warnings(&ui);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("no space left"), "{w:?}");
    // No temp file left behind.
    assert_eq!(fs::read_dir(t.path()).unwrap().count(), 1);
    files.fail_writes(None);
    assert!(c.put(&k, &entry("p", "new", 3600), &ui));
    assert_eq!(
        c.get(&k, ADVISORY_WINDOW).unwrap().credentials.secret(),
        "new"
    );
}

#[test]
fn list_and_clear() {
    let t = tmp();
    let ui = RecordingUi::new();
    let c = SessionCache::open(t.path(), &ui);
    let k1 = key("arn:aws:iam::1:role/a");
    let k2 = key("arn:aws:iam::1:role/b");
    let k3 = CacheKey::builder(SessionKind::GetSessionToken)
        .source("AKIAIOSFODNN7EXAMPLE")
        .build();
    assert!(c.put(&k1, &entry("beta", "1", 3600), &ui));
    assert!(c.put(&k2, &entry("alpha", "2", 100), &ui)); // nearly expired: still listed
    let mut gst = entry("alpha", "3", 7200);
    gst.kind = SessionKind::GetSessionToken;
    assert!(c.put(&k3, &gst, &ui));
    fs::write(t.path().join(format!("{}.json", "f".repeat(64))), b"junk").unwrap();
    fs::write(t.path().join(".tmp-1-1"), b"stale").unwrap();

    let l = c.list();
    let shown: Vec<(String, SessionKind)> = l.iter().map(|s| (s.profile.clone(), s.kind)).collect();
    assert_eq!(
        shown,
        vec![
            ("alpha".into(), SessionKind::AssumeRole),
            ("alpha".into(), SessionKind::GetSessionToken),
            ("beta".into(), SessionKind::AssumeRole),
        ]
    );
    assert!(!format!("{l:?}").contains("token-"));
    assert_eq!(c.clear(Some("alpha")), 2);
    assert_eq!(c.list().len(), 1);
    assert_eq!(c.clear(Some("nobody")), 0);
    assert!(c.remove(&k1));
    assert!(!c.remove(&k1));
    assert_eq!(c.clear(None), 1, "the junk entry file");
    assert_eq!(fs::read_dir(t.path()).unwrap().count(), 0);
}

#[test]
fn entry_files_hold_no_plaintext_key_parts_in_their_names() {
    let t = tmp();
    let ui = RecordingUi::new();
    let c = SessionCache::open(t.path(), &ui);
    c.put(
        &key("arn:aws:iam::111111111111:role/toolkit-role"),
        &entry("mfa", "x", 3600),
        &ui,
    );
    for de in fs::read_dir(t.path()).unwrap().flatten() {
        let n = de.file_name().to_string_lossy().into_owned();
        assert!(!n.contains("111111111111") && !n.contains("toolkit"), "{n}");
    }
}

#[test]
fn lock_is_exclusive_and_bounded() {
    let t = tmp();
    let ui = RecordingUi::new();
    let c =
        Arc::new(SessionCache::open(t.path(), &ui).with_lock_timeout(Duration::from_millis(300)));
    let k = key("arn:aws:iam::1:role/r");
    let g = c.lock(&k, &ui).unwrap();
    assert!(g.is_held());
    assert_eq!(mode(g.path().unwrap()), 0o600);
    // Another open file description (as another process would have) cannot take it.
    let start = Instant::now();
    let err = c.lock(&k, &ui).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Io);
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert!(
        err.message()
            .contains("waiting for another tapcred process"),
        "{err}"
    );
    // Other keys and serial locks are independent.
    let other = c.lock(&key("arn:aws:iam::1:role/other"), &ui).unwrap();
    let s = c.lock_serial("arn:aws:iam::1:mfa/u", &ui).unwrap();
    drop((other, s));
    drop(g);
    assert!(c.lock(&k, &ui).is_ok());
}

#[test]
fn lock_serialises_threads() {
    let t = tmp();
    let ui = Arc::new(RecordingUi::new());
    let c = Arc::new(SessionCache::open(t.path(), &*ui));
    let k = key("arn:aws:iam::1:role/r");
    let inside = Arc::new(AtomicUsize::new(0));
    let max_inside = Arc::new(AtomicUsize::new(0));
    let hs: Vec<_> = (0..8)
        .map(|_| {
            let (c, k, ui, inside, max_inside) = (
                c.clone(),
                k.clone(),
                ui.clone(),
                inside.clone(),
                max_inside.clone(),
            );
            std::thread::spawn(move || {
                let _g = c.lock(&k, &*ui).unwrap();
                let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                max_inside.fetch_max(n, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(20));
                inside.fetch_sub(1, Ordering::SeqCst);
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    assert_eq!(max_inside.load(Ordering::SeqCst), 1);
}

#[test]
fn a_killed_holder_does_not_block() {
    let t = tmp();
    let ui = RecordingUi::new();
    let c = SessionCache::open(t.path(), &ui).with_lock_timeout(Duration::from_secs(10));
    let k = key("arn:aws:iam::1:role/r");
    // Create the lock file, then let another process (util-linux flock) hold it.
    let path = c.lock(&k, &ui).unwrap().path().unwrap().to_owned();
    // `-o`: flock(1) holds the lock itself and does not pass the fd to `sleep`.
    let mut child = match std::process::Command::new("flock")
        .arg("-o")
        .arg(&path)
        .args(["sleep", "60"])
        .spawn()
    {
        Ok(ch) => ch,
        Err(e) => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("util-linux flock is needed (CI=true): {e}");
            }
            eprintln!("SKIP a_killed_holder_does_not_block: no `flock` command ({e})");
            return;
        }
    };
    // Wait until the child holds it.
    let held = (0..200).any(|_| {
        std::thread::sleep(Duration::from_millis(10));
        let f = fs::File::open(&path).unwrap();
        match f.try_lock() {
            Ok(()) => {
                f.unlock().unwrap();
                false
            }
            Err(_) => true,
        }
    });
    assert!(held, "flock child never took the lock");
    let c2 = SessionCache::open(t.path(), &ui).with_lock_timeout(Duration::from_millis(200));
    assert!(c2.lock(&k, &ui).is_err(), "held by the child");
    let sleeper = std::process::Command::new("pgrep")
        .args(["-P", &child.id().to_string()])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .unwrap_or_default();
    child.kill().unwrap(); // SIGKILL: no chance to unlock
    child.wait().unwrap();
    let start = Instant::now();
    let g = c.lock(&k, &ui);
    assert!(g.is_ok(), "lock of a killed holder must be free: {g:?}");
    assert!(start.elapsed() < Duration::from_secs(5));
    for pid in sleeper.split_whitespace() {
        let _ = std::process::Command::new("kill").arg(pid).status();
    }
}

#[test]
fn ledger_is_shared_between_instances_and_hashed() {
    let t = tmp();
    let ui = RecordingUi::new();
    let a = SessionCache::open(t.path(), &ui);
    let b = SessionCache::open(t.path(), &ui);
    let serial = "arn:aws:iam::111111111111:mfa/toolkit-user";
    assert_eq!(a.last_window_end(serial, &ui), None);
    a.record(serial, 1020, &ui);
    assert_eq!(b.last_window_end(serial, &ui), Some(1020));
    assert_eq!(
        b.last_window_end("arn:aws:iam::111111111111:mfa/other", &ui),
        None
    );
    b.record(serial, 1050, &ui);
    assert_eq!(a.last_window_end(serial, &ui), Some(1050));
    for de in fs::read_dir(t.path().join("steps")).unwrap().flatten() {
        let n = de.file_name().to_string_lossy().into_owned();
        assert!(!n.contains("toolkit") && !n.contains("1111"), "{n}");
        assert_eq!(mode(&de.path()), 0o600);
    }
    // A corrupt ledger file is "never used" for others, but this process remembers its own.
    for de in fs::read_dir(t.path().join("steps")).unwrap().flatten() {
        fs::write(de.path(), b"{").unwrap();
    }
    let c = SessionCache::open(t.path(), &ui);
    assert_eq!(c.last_window_end(serial, &ui), None);
    assert_eq!(b.last_window_end(serial, &ui), Some(1050));
    assert!(warnings(&ui).is_empty());
}

#[test]
fn discard_removes_only_a_lock_file_this_process_created() {
    let t = tmp();
    let ui = RecordingUi::new();
    let c = SessionCache::open(t.path(), &ui);
    let k = key("arn:aws:iam::1:role/r");
    let g = c.lock(&k, &ui).unwrap();
    let path = g.path().unwrap().to_owned();
    g.discard();
    assert!(!path.exists(), "created by us: removed");
    // An existing lock file (another process's) is kept.
    drop(c.lock(&k, &ui).unwrap());
    let g = c.lock(&k, &ui).unwrap();
    g.discard();
    assert!(path.exists());
    // And the lock is free again either way.
    assert!(c.lock(&k, &ui).unwrap().is_held());
}

// ----- issue 11, finding 8: FIFOs, symlinked directories, a clear during a refresh ---------

/// Runs `f` on a thread and fails the test if it does not finish within 10 s (today's code
/// blocked for ever in `open` on a FIFO).
fn within_10s<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| panic!("{what} hung (blocked in open on a FIFO?)"))
}

fn mkfifo(p: &std::path::Path) {
    rustix::fs::mkfifoat(rustix::fs::CWD, p, rustix::fs::Mode::from_raw_mode(0o600)).unwrap();
}

#[test]
fn a_fifo_at_an_entry_path_is_a_miss_not_a_hang() {
    let t = tmp();
    let dir = t.path().to_path_buf();
    let ui = RecordingUi::new();
    let c = Arc::new(SessionCache::open(&dir, &ui));
    let k = key("arn:aws:iam::1:role/fifo");
    assert!(c.put(&k, &entry("p", "x", 3600), &ui));
    let path = dir.join(format!("{}.json", k.hex()));
    fs::remove_file(&path).unwrap();
    mkfifo(&path);
    let (c2, k2) = (c.clone(), k.clone());
    let got = within_10s("get on a FIFO entry", move || {
        c2.get(&k2, ADVISORY_WINDOW).is_some()
    });
    assert!(!got, "a FIFO is a miss");
    let (c3, k3) = (c.clone(), k.clone());
    let listed = within_10s("list with a FIFO entry", move || {
        let _ = k3;
        c3.list().len()
    });
    assert_eq!(listed, 0);
    // The next store replaces it with a regular file.
    let c4 = c.clone();
    let stored = within_10s("put over a FIFO entry", move || {
        let ui = RecordingUi::new();
        c4.put(&k, &entry("p", "y", 3600), &ui)
    });
    assert!(stored);
    assert!(fs::symlink_metadata(&path).unwrap().is_file());
}

#[test]
fn a_fifo_at_the_ledger_path_is_no_record_not_a_hang() {
    let t = tmp();
    let dir = t.path().to_path_buf();
    let ui = RecordingUi::new();
    let c = SessionCache::open(&dir, &ui);
    let serial = "arn:aws:iam::111111111111:mfa/fifo";
    c.record(serial, 120, &ui);
    let steps = dir.join("steps");
    let file = fs::read_dir(&steps)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    fs::remove_file(&file).unwrap();
    mkfifo(&file);
    // A fresh instance (no in-memory record) reads the ledger from disk.
    let got = within_10s("reading a FIFO ledger", move || {
        let ui = RecordingUi::new();
        let c = SessionCache::open(&dir, &ui);
        let seen = c.last_window_end(serial, &ui);
        c.record(serial, 150, &ui);
        (seen, c.last_window_end(serial, &ui), warnings(&ui))
    });
    assert_eq!(got.0, None, "a FIFO is no record");
    assert_eq!(got.1, Some(150), "recording replaced it");
    assert!(got.2.is_empty(), "{:?}", got.2);
    assert!(fs::symlink_metadata(&file).unwrap().is_file());
}

#[test]
fn a_symlinked_cache_directory_is_refused_and_its_target_not_chmodded() {
    let t = tmp();
    let target = t.path().join("elsewhere");
    fs::create_dir(&target).unwrap();
    fs::set_permissions(&target, fs::Permissions::from_mode(0o755)).unwrap();
    let link = t.path().join("cache");
    symlink(&target, &link).unwrap();
    let ui = RecordingUi::new();
    let c = SessionCache::open(&link, &ui);
    let k = key("arn:aws:iam::1:role/link");
    assert!(!c.put(&k, &entry("p", "x", 3600), &ui), "nothing stored");
    assert_eq!(mode(&target), 0o755, "the link's target keeps its mode");
    assert_eq!(
        fs::read_dir(&target).unwrap().count(),
        0,
        "nothing written through the link"
    );
    let w = warnings(&ui);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("symbolic link") && w[0].contains("XDG_CACHE_HOME"),
        "{w:?}"
    );
}

#[test]
fn sessions_clear_during_a_refresh_does_not_disable_the_writer() {
    let t = tmp();
    let dir = t.path().join("cache");
    let ui = RecordingUi::new();
    let files = Faulty::default();
    let writer = files.open(&dir, &ui);
    let k = key("arn:aws:iam::1:role/race");
    assert!(writer.put(&k, &entry("p", "old", 3600), &ui));
    // Between writing its temp file and renaming it, another process runs
    // `tapcred sessions clear` (which removes entries and temp files) once.
    let clearer_dir = dir.clone();
    let fired = Arc::new(AtomicUsize::new(0));
    let f2 = fired.clone();
    files.before_rename(Some(Box::new(move |_tmp: &std::path::Path| {
        if f2.fetch_add(1, Ordering::SeqCst) == 0 {
            let ui = RecordingUi::new();
            SessionCache::open(&clearer_dir, &ui).clear(None);
        }
    })));
    assert!(
        writer.put(&k, &entry("p", "new", 3600), &ui),
        "the refresh is stored"
    );
    assert!(fired.load(Ordering::SeqCst) >= 1);
    assert!(writer.enabled(), "the cache stays enabled");
    assert!(warnings(&ui).is_empty(), "no warning: {:?}", warnings(&ui));
    assert_eq!(
        writer
            .get(&k, ADVISORY_WINDOW)
            .unwrap()
            .credentials
            .secret(),
        "new"
    );
    // The directory itself removed mid-refresh: made again, still no warning.
    files.before_rename(None);
    fs::remove_dir_all(&dir).unwrap();
    assert!(writer.put(&k, &entry("p", "newer", 3600), &ui));
    assert!(warnings(&ui).is_empty(), "{:?}", warnings(&ui));
    assert_eq!(mode(&dir), 0o700);
}

// ----- issue 17, item 6: the ledger is the user's, not the cache folder's -------------------

#[test]
fn the_ledger_dir_is_shared_whatever_cache_folder_is_used() {
    let t = tmp();
    let ui = RecordingUi::new();
    let ledger = t.path().join("per-user");
    let serial = "arn:aws:iam::111111111111:mfa/toolkit-user";
    let usable =
        SessionCache::open(t.path().join("cache"), &ui).with_ledger_dir(Some(ledger.clone()));
    usable.record(serial, 1020, &ui);
    // Another cache folder, and one that cannot be used (a file): the same record.
    let other =
        SessionCache::open(t.path().join("other"), &ui).with_ledger_dir(Some(ledger.clone()));
    assert_eq!(other.last_window_end(serial, &ui), Some(1020));
    fs::write(t.path().join("file"), b"x").unwrap();
    let broken = SessionCache::open(t.path().join("file"), &ui)
        .with_fallback_dir(Some(t.path().join("fb")))
        .with_ledger_dir(Some(ledger.clone()));
    assert!(!broken.enabled());
    assert_eq!(broken.last_window_end(serial, &ui), Some(1020));
    // The serial lock sits beside the ledger it guards; session locks stay with the cache.
    let g = usable.lock_serial(serial, &ui).unwrap();
    assert!(g.path().unwrap().starts_with(&ledger));
    drop(g);
    let g = usable.lock(&key("arn:aws:iam::1:role/r"), &ui).unwrap();
    assert!(g.path().unwrap().starts_with(t.path().join("cache")));
    assert!(
        !t.path().join("cache/steps").exists(),
        "no ledger in the cache folder"
    );
    assert_eq!(mode(&ledger), 0o700);
}

#[test]
fn an_unusable_ledger_dir_keeps_the_ledger_beside_the_cache_with_one_warning() {
    let t = tmp();
    let ui = RecordingUi::new();
    let squatted = t.path().join("per-user");
    fs::write(&squatted, b"not a directory").unwrap();
    let c = SessionCache::open(t.path().join("cache"), &ui).with_ledger_dir(Some(squatted.clone()));
    c.record("s", 60, &ui);
    assert_eq!(c.last_window_end("s", &ui), Some(60));
    let again = SessionCache::open(t.path().join("cache"), &RecordingUi::new())
        .with_ledger_dir(Some(squatted.clone()));
    assert_eq!(again.last_window_end("s", &RecordingUi::new()), Some(60));
    let w = warnings(&ui);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains(&squatted.display().to_string()) && w[0].contains("a regular file"),
        "{w:?}"
    );
    assert!(t.path().join("cache/steps").is_dir());
}
