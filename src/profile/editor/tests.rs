use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

/// The editor's private folder for these tests (one per test process, not the real one).
fn test_opts() -> EditOptions {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    let dir = DIR.get_or_init(|| tempfile::tempdir().unwrap());
    EditOptions {
        private_dir: Some(dir.path().join("aws-files")),
        backup: true,
    }
}

/// [`super::apply_edits`] with the tests' private folder.
fn apply_edits(path: &Path, file: AwsFile, edits: &[ProfileEdit]) -> Result<EditReceipt> {
    apply_edits_with(path, file, edits, &test_opts())
}

fn edit(text: &str, file: AwsFile, e: ProfileEdit) -> String {
    edit_text(text, file, &[e]).unwrap().to_string()
}

/// Every key the tests use.
const KEYS: &[&str] = &[
    "k",
    "region",
    "role_arn",
    "x-y",
    "mfa_serial",
    "zz",
    "s3",
    "output",
    "x",
    "y",
    "z",
    "aws_access_key_id",
    "k0",
    "k1",
    "k2",
    "k3",
    "k4",
    "k5",
    "k6",
    "k7",
    "k8",
    "k9",
];

/// profile → key → value, as aws-config parses `text` (one file).
fn parsed(text: &str, file: AwsFile) -> BTreeMap<String, BTreeMap<String, String>> {
    let set = parse_files(&[(file.kind(), Path::new("/t/file"), text)]).unwrap();
    let mut out = BTreeMap::new();
    for name in set.profiles() {
        let p = set.get_profile(name).unwrap();
        let props = KEYS
            .iter()
            .filter_map(|k| Some((k.to_string(), p.get(k)?.to_owned())))
            .collect();
        out.insert(name.to_owned(), props);
    }
    out
}

#[test]
fn updates_in_place_keeping_spelling_spacing_and_comment() {
    let text = "[profile a]\nRegion=us-east-1 # prod\noutput = json\n";
    assert_eq!(
        edit(
            text,
            AwsFile::Config,
            ProfileEdit::new("a").set("region", "eu-west-1")
        ),
        "[profile a]\nRegion=eu-west-1 # prod\noutput = json\n"
    );
}

#[test]
fn appends_new_keys_before_trailing_blanks_and_comments() {
    let text = "[a]\nx = 1\n\n# about b\n[b]\ny = 2\n";
    assert_eq!(
        edit(
            text,
            AwsFile::Credentials,
            ProfileEdit::new("a").set("z", "3")
        ),
        "[a]\nx = 1\nz = 3\n\n# about b\n[b]\ny = 2\n"
    );
}

#[test]
fn new_keys_in_place_of_removed_lines() {
    let import = || {
        ProfileEdit::new("a")
            .remove("aws_access_key_id")
            .remove("aws_secret_access_key")
            .set("tapcred_access_key", "vault")
            .new_keys_in_place_of_removed()
    };
    // Two lines become one where the first was; the rest of the section stays after it.
    let text = "# keys\n[a]\nregion = eu-west-1\naws_access_key_id = AKIA\r\naws_secret_access_key = s # c\nx = 1\n[b]\naws_access_key_id = B\n";
    assert_eq!(
        edit(text, AwsFile::Credentials, import()),
        "# keys\n[a]\nregion = eu-west-1\ntapcred_access_key = vault\r\nx = 1\n[b]\naws_access_key_id = B\n"
    );
    // The secret first, the id last without a final newline: in place; the removed last
    // line's bytes go, the line before keeps its own terminator (as for any removal).
    let text = "[a]\naws_secret_access_key=s\nk=v\naws_access_key_id=AKIA";
    assert_eq!(
        edit(text, AwsFile::Credentials, import()),
        "[a]\ntapcred_access_key=vault\nk=v\n"
    );
    let text = "[a]\nk=v\naws_access_key_id=AKIA\naws_secret_access_key=s";
    assert_eq!(
        edit(text, AwsFile::Credentials, import()),
        "[a]\nk=v\ntapcred_access_key=vault\n"
    );
    // Nothing removed: the new key goes at the section's end, as without the flag.
    let text = "[a]\nk = v\n\n[b]\n";
    assert_eq!(
        edit(text, AwsFile::Credentials, import()),
        "[a]\nk = v\ntapcred_access_key = vault\n\n[b]\n"
    );
}

#[test]
fn new_key_in_an_empty_section_goes_after_the_header() {
    let text = "[profile a]\n\n[profile b]\nk = v\n";
    assert_eq!(
        edit(text, AwsFile::Config, ProfileEdit::new("a").set("k", "w")),
        "[profile a]\nk = w\n\n[profile b]\nk = v\n"
    );
}

#[test]
fn missing_sections_use_the_file_header_style() {
    assert_eq!(
        edit("", AwsFile::Config, ProfileEdit::new("mfa").set("k", "v")),
        "[profile mfa]\nk = v\n"
    );
    assert_eq!(
        edit(
            "",
            AwsFile::Config,
            ProfileEdit::new("default").set("k", "v")
        ),
        "[default]\nk = v\n"
    );
    assert_eq!(
        edit(
            "[x]\na = b\n",
            AwsFile::Credentials,
            ProfileEdit::new("mfa").set("k", "v")
        ),
        "[x]\na = b\n\n[mfa]\nk = v\n"
    );
    // `[mfa]` in the config file is not the profile (AWS ignores it): a real section is added.
    assert_eq!(
        edit(
            "[mfa]\nk = old\n",
            AwsFile::Config,
            ProfileEdit::new("mfa").set("k", "v")
        ),
        "[mfa]\nk = old\n\n[profile mfa]\nk = v\n"
    );
}

#[test]
fn crlf_and_key_equals_value_style_are_kept() {
    let text = "[profile a]\r\nregion=us-east-1\r\n";
    assert_eq!(
        edit(
            text,
            AwsFile::Config,
            ProfileEdit::new("a")
                .set("output", "json")
                .set("region", "x")
        ),
        "[profile a]\r\nregion=x\r\noutput=json\r\n"
    );
    assert_eq!(
        edit(text, AwsFile::Config, ProfileEdit::new("b").set("k", "v")),
        "[profile a]\r\nregion=us-east-1\r\n\r\n[profile b]\r\nk=v\r\n"
    );
}

#[test]
fn a_missing_final_newline_stays_missing() {
    assert_eq!(
        edit(
            "[a]\nx = 1",
            AwsFile::Credentials,
            ProfileEdit::new("a").set("y", "2")
        ),
        "[a]\nx = 1\ny = 2"
    );
    assert_eq!(
        edit(
            "[a]\nx = 1",
            AwsFile::Credentials,
            ProfileEdit::new("b").set("y", "2")
        ),
        "[a]\nx = 1\n\n[b]\ny = 2"
    );
    assert_eq!(
        edit(
            "[a]\nx = 1\ny = 2",
            AwsFile::Credentials,
            ProfileEdit::new("a").remove("x")
        ),
        "[a]\ny = 2"
    );
    // Removing the unterminated last line removes only its bytes.
    assert_eq!(
        edit(
            "[a]\nx = 1",
            AwsFile::Credentials,
            ProfileEdit::new("a").remove("x")
        ),
        "[a]\n"
    );
}

#[test]
fn remove_takes_every_occurrence_and_its_continuation_lines() {
    let text =
        "[profile a]\ns3 =\n  max_concurrent_requests = 2\n# keep\nk = 1\n[profile a]\ns3 = x\n";
    assert_eq!(
        edit(text, AwsFile::Config, ProfileEdit::new("a").remove("S3")),
        "[profile a]\n# keep\nk = 1\n[profile a]\n"
    );
}

#[test]
fn prefixed_default_wins_over_plain_default_in_config() {
    let text = "[default]\nregion = a\n[profile default]\nregion = b\n";
    assert_eq!(
        edit(
            text,
            AwsFile::Config,
            ProfileEdit::new("default").set("region", "c")
        ),
        "[default]\nregion = a\n[profile default]\nregion = c\n"
    );
}

#[test]
fn headers_with_spaces_and_comments_match() {
    let text = "[ profile   a ] # mine\nk = 1\n";
    assert_eq!(
        edit(text, AwsFile::Config, ProfileEdit::new("a").set("k", "2")),
        "[ profile   a ] # mine\nk = 2\n"
    );
}

#[test]
fn every_occurrence_is_updated() {
    // Differently spelled duplicate headers are merged by aws-config in hash order: only
    // setting every occurrence makes the result certain.
    let text = "[profile a]\nk = 1\n[profile b]\n[ profile  a ]\nk = 2\n";
    assert_eq!(
        edit(text, AwsFile::Config, ProfileEdit::new("a").set("k", "3")),
        "[profile a]\nk = 3\n[profile b]\n[ profile  a ]\nk = 3\n"
    );
}

#[test]
fn values_that_would_not_read_back_are_refused_without_echo() {
    for bad in ["", " x", "x ", "a\nb", "a #b", "a ;b"] {
        let err = edit_text(
            "",
            AwsFile::Credentials,
            &[ProfileEdit::new("a").set_secret("aws_secret_access_key", SecretString::from(bad))],
        )
        .unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.message().contains("aws_secret_access_key"));
        if !bad.trim().is_empty() {
            assert!(!err.message().contains(bad.trim()), "{}", err.message());
        }
    }
    assert!(
        edit_text(
            "",
            AwsFile::Config,
            &[ProfileEdit::new("a b").set("k", "v")]
        )
        .is_err()
    );
}

#[test]
fn debug_output_has_no_values() {
    let e = ProfileEdit::new("a")
        .set_secret("aws_secret_access_key", SecretString::from("s3cr3tVALUE"));
    assert!(!format!("{e:?}").contains("s3cr3tVALUE"));
}

// ------------------------------------------------------------------ on disk

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn apply_creates_private_files_backs_up_once_and_restores() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("aws/config");
    let r1 = apply_edits(
        &path,
        AwsFile::Config,
        &[ProfileEdit::new("u").set("region", "eu-west-1")],
    )
    .unwrap();
    assert!(r1.changed && r1.backup.is_none());
    let lock = lock_path(&test_opts(), &path, AwsFile::Config).unwrap();
    assert!(lock.starts_with(test_opts().private_dir.unwrap()));
    #[cfg(unix)]
    {
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert_eq!(mode(&lock), 0o600);
    }
    let beside: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().collect();
    assert_eq!(beside.len(), 1, "nothing but the file beside it");
    let first = fs::read_to_string(&path).unwrap();
    let r2 = apply_edits(
        &path,
        AwsFile::Config,
        &[ProfileEdit::new("u").set("x", "1")],
    )
    .unwrap();
    let bak = r2
        .backup
        .clone()
        .expect("the first edit of an existing file keeps it");
    assert!(bak.starts_with(test_opts().private_dir.unwrap()));
    assert_eq!(fs::read_to_string(&bak).unwrap(), first);
    #[cfg(unix)]
    assert_eq!(mode(&bak), 0o600);
    let r3 = apply_edits(
        &path,
        AwsFile::Config,
        &[ProfileEdit::new("u").set("x", "2")],
    )
    .unwrap();
    assert!(r3.backup.is_none(), "the backup is kept once");
    assert_eq!(fs::read_to_string(&bak).unwrap(), first);
    // Unchanged edits write nothing.
    let r4 = apply_edits(
        &path,
        AwsFile::Config,
        &[ProfileEdit::new("u").set("x", "2")],
    )
    .unwrap();
    assert!(!r4.changed);

    r3.restore().unwrap();
    assert!(fs::read_to_string(&path).unwrap().contains("x = 1\n"));
    r2.restore().unwrap();
    assert_eq!(fs::read_to_string(&path).unwrap(), first);
    r1.restore().unwrap();
    assert!(
        !path.exists(),
        "a file this edit created is removed on restore"
    );
}

#[test]
fn the_credentials_file_never_gets_a_backup() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("credentials");
    fs::write(&path, "[u]\naws_secret_access_key = OLDSECRET\n").unwrap();
    let r = apply_edits(
        &path,
        AwsFile::Credentials,
        &[ProfileEdit::new("u").remove("aws_secret_access_key")],
    )
    .unwrap();
    assert!(r.changed && r.backup.is_none());
    let private = test_opts().private_dir.unwrap();
    for e in fs::read_dir(&private).unwrap() {
        let b = fs::read(e.unwrap().path()).unwrap();
        assert!(!b.windows(9).any(|w| w == b"OLDSECRET"));
    }
}

#[cfg(unix)]
#[test]
fn apply_keeps_the_existing_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config");
    fs::write(&path, "[default]\nregion = a\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
    }
    let r = apply_edits(
        &path,
        AwsFile::Config,
        &[ProfileEdit::new("default").set("region", "b")],
    )
    .unwrap();
    assert_eq!(mode(&path), 0o640);
    assert!(r.tightened.is_none());
}

#[test]
fn restore_after_another_writer_undoes_only_its_own_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config");
    fs::write(&path, "[profile a]\nregion = r\n").unwrap();
    let mine = apply_edits(
        &path,
        AwsFile::Config,
        &[ProfileEdit::new("a")
            .set("mfa_serial", "arn:aws:iam::111111111111:mfa/u")
            .set("region", "s")],
    )
    .unwrap();
    apply_edits(
        &path,
        AwsFile::Config,
        &[ProfileEdit::new("b").set("k", "v")],
    )
    .unwrap();
    mine.restore().unwrap();
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        "[profile a]\nregion = r\n\n[profile b]\nk = v\n"
    );
}

#[test]
fn a_file_aws_cannot_parse_is_refused_and_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config");
    fs::write(&path, "[profile a]\nno equals here\n").unwrap();
    let err = apply_edits(
        &path,
        AwsFile::Config,
        &[ProfileEdit::new("a").set("k", "v")],
    )
    .unwrap_err();
    assert_eq!(err.exit_code(), 3);
    assert!(err.message().contains("line 2"), "{}", err.message());
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        "[profile a]\nno equals here\n"
    );
}

#[cfg(unix)]
#[test]
fn a_symlinked_file_is_edited_through_the_link() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real");
    fs::write(&real, "[a]\nk = 1\n").unwrap();
    let link = dir.path().join("credentials");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    apply_edits(
        &link,
        AwsFile::Credentials,
        &[ProfileEdit::new("a").set("k", "2")],
    )
    .unwrap();
    assert!(
        fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(fs::read_to_string(&real).unwrap(), "[a]\nk = 2\n");
}

#[test]
fn concurrent_writers_do_not_lose_edits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config");
    fs::write(&path, "# mine\n").unwrap();
    std::thread::scope(|s| {
        for t in 0..8 {
            let path = &path;
            s.spawn(move || {
                for i in 0..10 {
                    apply_edits(
                        path,
                        AwsFile::Config,
                        &[ProfileEdit::new(format!("p{t}")).set(format!("k{i}"), format!("v{i}"))],
                    )
                    .unwrap();
                }
            });
        }
    });
    let text = fs::read_to_string(&path).unwrap();
    let p = parsed(&text, AwsFile::Config);
    for t in 0..8 {
        for i in 0..10 {
            assert_eq!(p[&format!("p{t}")][&format!("k{i}")], format!("v{i}"));
        }
    }
    assert!(text.starts_with("# mine\n"));
}

// ------------------------------------------------------------------ properties

/// A random, valid file: headers in several spellings, properties (some with inline comments,
/// some `k=v`), comments, blank lines, continuation lines; LF or CRLF; final newline or not.
fn arb_file() -> impl Strategy<Value = (String, bool)> {
    const NAMES: [&str; 4] = ["a", "b", "default", "mfa"];
    let keys = prop::sample::select(vec!["k", "region", "Role_Arn", "x-y", "mfa_serial"]);
    // A header is a name index; its spelling is chosen once per name and file (aws-config
    // merges duplicate sections spelled differently in hash order, so a file mixing
    // spellings of one profile has no single reading to compare with).
    let line = prop_oneof![
        (0..NAMES.len()).prop_map(|n| format!("\u{0}{n}")),
        (keys, "[a-z0-9:/]{1,8}", 0..4usize).prop_map(|(k, v, style)| match style {
            0 => format!("{k} = {v}"),
            1 => format!("{k}={v}"),
            2 => format!("{k} = {v} # note"),
            _ => format!("{k}\t=  {v}\t"),
        }),
        Just("# comment".to_owned()),
        Just("; other comment".to_owned()),
        Just(String::new()),
        Just("   ".to_owned()),
    ];
    (
        prop::sample::select(vec!["s3", "zz", "output"]),
        prop::collection::vec(line, 0..20),
        prop::array::uniform4(0..4usize),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(first_key, lines, styles, crlf, final_nl)| {
            let mut lines: Vec<String> = lines
                .into_iter()
                .map(|l| match l.strip_prefix('\u{0}') {
                    Some(i) => {
                        let i: usize = i.parse().unwrap();
                        let n = NAMES[i];
                        match styles[i] {
                            0 => format!("[profile {n}]"),
                            1 => format!("[{n}]"),
                            2 => format!("[ profile  {n} ] # c"),
                            _ => format!("[{n}] ;x"),
                        }
                    }
                    None => l,
                })
                .collect();
            // Properties need a section first; continuation lines need a property.
            lines.insert(0, "[default]".to_owned());
            lines.insert(1, format!("{first_key} ="));
            lines.insert(2, "  sub = 1".to_owned());
            let eol = if crlf { "\r\n" } else { "\n" };
            let mut text = lines.join(eol);
            if final_nl {
                text.push_str(eol);
            }
            (text, crlf)
        })
}

fn arb_edit() -> impl Strategy<Value = ProfileEdit> {
    let names = prop::sample::select(vec!["a", "b", "default", "mfa", "new"]);
    let keys = prop::sample::select(vec!["k", "region", "role_arn", "x-y", "mfa_serial", "zz"]);
    (
        names,
        prop::collection::vec((keys.clone(), "[A-Za-z0-9/+=]{1,12}"), 0..4),
        prop::collection::vec(keys, 0..3),
    )
        .prop_map(|(n, set, remove)| {
            let mut e = ProfileEdit::new(n);
            for (k, v) in set {
                e = e.set(k, v);
            }
            for k in remove {
                e = e.remove(k);
            }
            e
        })
}

/// Lines of `text` outside the edit's reach: drop, in the profile's sections, the lines of
/// the touched keys (and their continuations), and the blank line + header a new section
/// brings.
fn untouched(text: &str, file: AwsFile, e: &ProfileEdit) -> Vec<String> {
    let lines = split_lines(text);
    let sections = sections_of(&lines, file, &e.profile);
    let mut drop = vec![false; lines.len()];
    let touched = e
        .set
        .iter()
        .map(|(k, _)| k.to_ascii_lowercase())
        .chain(e.remove.iter().map(|k| k.to_ascii_lowercase()));
    for k in touched {
        for (l, conts) in occurrences(&lines, &sections, &k) {
            drop[l] = true;
            for c in conts {
                drop[c] = true;
            }
        }
    }
    lines
        .iter()
        .enumerate()
        .filter(|(i, _)| !drop[*i])
        .map(|(_, l)| l.text.to_owned())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn only_the_intended_lines_change((text, crlf) in arb_file(), e in arb_edit(), creds in any::<bool>()) {
        let file = if creds { AwsFile::Credentials } else { AwsFile::Config };
        prop_assume!(parse_files(&[(file.kind(), Path::new("/t/file"), &text)]).is_ok());
        let out = edit_text(&text, file, std::slice::from_ref(&e)).unwrap().to_string();

        // 1. aws-config reads exactly the intended result.
        let mut want = parsed(&text, file);
        let mut sets: BTreeMap<String, String> = BTreeMap::new();
        for (k, v) in &e.set {
            sets.insert(k.to_ascii_lowercase(), v.expose_secret().to_owned());
        }
        {
            let p = want.entry(e.profile.clone()).or_default();
            for k in &e.remove {
                if !sets.contains_key(&k.to_ascii_lowercase()) {
                    p.remove(&k.to_ascii_lowercase());
                }
            }
            for (k, v) in &sets {
                p.insert(k.clone(), v.clone());
            }
        }
        if e.set.is_empty() && !parsed(&text, file).contains_key(&e.profile) {
            want.remove(&e.profile);
        }
        prop_assert_eq!(parsed(&out, file), want);

        // 2. Every other line is byte-identical and in order; the new lines are only the
        //    touched keys, a header and a blank separator.
        let before = untouched(&text, file, &e);
        let after_all = untouched(&out, file, &e);
        let new_header = file.header(&e.profile);
        let mut after = after_all.clone();
        if after.len() > before.len() && after.last() == Some(&new_header) {
            after.pop();
            if after.len() > before.len() && after.last().is_some_and(|l| l.is_empty()) {
                after.pop();
            }
        }
        // (A blank last line loses nothing but its terminator when the line after it is
        // removed from a file without a final newline.)
        let trim = |v: &[String]| {
            let mut v = v.to_vec();
            while v.last().is_some_and(|l| l.trim().is_empty()) {
                v.pop();
            }
            v
        };
        prop_assert_eq!(trim(&before), trim(&after), "out: {:?}", out);

        // 3. Line endings: the file's style everywhere, final newline as before.
        if crlf {
            prop_assert_eq!(out.matches('\n').count(), out.matches("\r\n").count());
        } else {
            prop_assert!(!out.contains('\r'));
        }
        if !out.is_empty() && !text.is_empty() {
            let last_line = text.rsplit('\n').next().unwrap_or_default();
            let last_line_removed = !out.ends_with(last_line);
            if !last_line_removed {
                prop_assert_eq!(out.ends_with('\n'), text.ends_with('\n'));
            }
        }
    }

    #[test]
    fn editing_twice_is_a_no_op(( text, _crlf) in arb_file(), e in arb_edit()) {
        prop_assume!(parse_files(&[(EnvConfigFileKind::Config, Path::new("/t/file"), &text)]).is_ok());
        let once = edit_text(&text, AwsFile::Config, std::slice::from_ref(&e)).unwrap().to_string();
        let twice = edit_text(&once, AwsFile::Config, std::slice::from_ref(&e)).unwrap().to_string();
        prop_assert_eq!(once, twice);
    }
}

/// What older versions left beside the AWS files: a lock nobody holds is removed by the next
/// edit, one a running process holds stays; the config backup moves into the private folder;
/// the credentials backup (plaintext keys, perhaps the only copy) stays; other names, links
/// and directories are never touched.
#[test]
fn an_edit_removes_the_leftovers_of_older_versions_it_may() {
    let dir = tempfile::tempdir().unwrap();
    let opts = EditOptions {
        private_dir: Some(dir.path().join("private")),
        backup: true,
    };
    let aws = dir.path().join("aws");
    fs::create_dir(&aws).unwrap();
    let config = aws.join("config");
    let creds = aws.join("credentials");
    fs::write(&config, "[profile a]\nregion = x\n").unwrap();
    fs::write(&creds, "[a]\naws_access_key_id = AKIDNOW\n").unwrap();
    let old = |name: &str, body: &str| {
        let p = aws.join(name);
        fs::write(&p, body).unwrap();
        p
    };
    let config_lock = old("config.tapcred.lock", "");
    let creds_lock = old("credentials.tapcred.lock", "");
    let config_bak = old("config.tapcred.bak", "[profile a]\nregion = before\n");
    let creds_bak = old(
        "credentials.tapcred.bak",
        "[a]\naws_access_key_id = AKIDOLD\n",
    );
    let similar = [
        old("config.tapcred.lock.1", ""),
        old("config.lock", ""),
        old("config.tapcred.back", ""),
    ];
    // An older tapcred still running holds the credentials lock.
    let holder = File::options().write(true).open(&creds_lock).unwrap();
    holder.lock().unwrap();
    let listed = |p: &Path, f: AwsFile| {
        leftovers_beside(p, f)
            .into_iter()
            .map(|(p, why, _)| (p.file_name().unwrap().to_string_lossy().into_owned(), why))
            .collect::<Vec<_>>()
    };
    let before = listed(&creds, AwsFile::Credentials);
    assert_eq!(before.len(), 2, "{before:?}");
    assert!(
        before[0].1.contains("held by a running older tapcred"),
        "{before:?}"
    );
    assert!(before[1].1.contains("plaintext copy"), "{before:?}");
    assert_eq!(listed(&config, AwsFile::Config).len(), 2);

    let edit = [ProfileEdit::new("a").set("region", "y")];
    apply_edits_with(&config, AwsFile::Config, &edit, &opts).unwrap();
    assert!(!config_lock.exists(), "a lock nobody holds is removed");
    assert!(!config_bak.exists(), "the config backup moved");
    let state = state_paths(
        &opts,
        &resolve_target(&config, AwsFile::Config).unwrap(),
        AwsFile::Config,
    )
    .unwrap();
    assert_eq!(
        fs::read_to_string(&state.backup).unwrap(),
        "[profile a]\nregion = before\n",
        "the private backup is the old one (from before the first edit)"
    );
    let edit = [ProfileEdit::new("a").set("region", "z")];
    apply_edits_with(&creds, AwsFile::Credentials, &edit, &opts).unwrap();
    assert!(creds_lock.exists(), "a lock another process holds stays");
    assert!(creds_bak.exists(), "the only copy of old keys stays");
    for p in &similar {
        assert!(p.exists(), "{} is not a name tapcred wrote", p.display());
    }
    drop(holder);
    // Now free; the credentials backup is never the editor's to delete.
    let edit = [ProfileEdit::new("a").set("region", "w")];
    apply_edits_with(&creds, AwsFile::Credentials, &edit, &opts).unwrap();
    assert!(!creds_lock.exists() && creds_bak.exists());
    assert_eq!(listed(&creds, AwsFile::Credentials).len(), 1);
}

/// A leftover name that is a link or a folder is never removed.
#[cfg(unix)]
#[test]
fn leftover_names_that_are_links_or_folders_stay() {
    let dir = tempfile::tempdir().unwrap();
    let opts = EditOptions {
        private_dir: Some(dir.path().join("private")),
        backup: true,
    };
    let config = dir.path().join("config");
    fs::write(&config, "[profile a]\n").unwrap();
    let elsewhere = dir.path().join("precious");
    fs::write(&elsewhere, "keep").unwrap();
    std::os::unix::fs::symlink(&elsewhere, dir.path().join("config.tapcred.lock")).unwrap();
    fs::create_dir(dir.path().join("config.tapcred.bak")).unwrap();
    apply_edits_with(
        &config,
        AwsFile::Config,
        &[ProfileEdit::new("a").set("region", "y")],
        &opts,
    )
    .unwrap();
    assert!(fs::symlink_metadata(dir.path().join("config.tapcred.lock")).is_ok());
    assert!(dir.path().join("config.tapcred.bak").is_dir());
    assert_eq!(fs::read_to_string(&elsewhere).unwrap(), "keep");
}

fn bytes(s: &str) -> Bytes {
    Zeroizing::new(s.as_bytes().to_vec())
}

#[test]
fn a_lost_append_is_merged_after_what_the_file_gained_since() {
    let base = "# top\n[profile a]\nregion = x\n";
    let theirs = format!("{base}[profile lost]\nregion = y\n");
    let ours = format!("{base}[profile t]\nrole_arn = r\n[profile next]\nregion = y\n");
    let merged = merge_lines(base.as_bytes(), theirs.as_bytes(), ours.as_bytes()).unwrap();
    assert_eq!(
        String::from_utf8(merged).unwrap(),
        format!("{ours}[profile lost]\nregion = y\n")
    );
}

#[test]
fn a_merge_keeps_changes_on_both_sides_and_ours_where_both_changed_a_line() {
    let base = "[profile a]\nregion = x\n[profile b]\nregion = x\n[profile c]\nregion = x\n";
    let theirs = "[profile a]\nregion = THEIRS\n[profile b]\nregion = x\n[profile c]\nregion = T\n";
    let ours = "[profile a]\nregion = x\n[profile b]\nregion = OURS\n[profile c]\nregion = O\n";
    let merged = merge_lines(base.as_bytes(), theirs.as_bytes(), ours.as_bytes()).unwrap();
    assert_eq!(
        String::from_utf8(merged).unwrap(),
        "[profile a]\nregion = THEIRS\n[profile b]\nregion = OURS\n[profile c]\nregion = O\n"
    );
}

#[test]
fn a_lost_version_already_in_the_file_is_not_added_twice() {
    let base = "[profile a]\nregion = x\n";
    let ours = format!("{base}[profile t]\nrole_arn = r\n");
    // Another program read our write and appended to it: nothing is missing.
    let current = format!("{ours}[profile more]\nregion = y\n");
    let lost = Lost {
        versions: vec![(Some(bytes(base)), bytes(&ours))],
        ours: None,
    };
    assert_eq!(
        lost.carried_onto(Some(&bytes(&current)))
            .unwrap()
            .as_slice(),
        current.as_bytes()
    );
    // Another program wrote over it with what it read before: ours comes back, theirs stays.
    let over = format!("{base}[profile other]\nregion = y\n");
    assert_eq!(
        lost.carried_onto(Some(&bytes(&over))).unwrap().as_slice(),
        format!("{over}[profile t]\nrole_arn = r\n").as_bytes()
    );
}

#[test]
fn a_write_into_the_replaced_file_is_redone_on_while_the_file_holds_ours() {
    let base = "[profile a]\nregion = x\n";
    let ours = format!("{base}[profile t]\nrole_arn = r\n");
    let after = format!("{base}[profile py]\nregion = y\n");
    let lost = Lost {
        versions: vec![(Some(bytes(base)), bytes(&after))],
        ours: Some(bytes(&ours)),
    };
    assert_eq!(
        lost.carried_onto(Some(&bytes(&ours))).unwrap().as_slice(),
        after.as_bytes()
    );
    assert!(lost.carried_onto(None).is_none());
    assert!(Lost::default().carried_onto(Some(&bytes(base))).is_none());
}
