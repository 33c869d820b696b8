//! `tapcred man`: one page per command and subcommand, each with FILES, ENVIRONMENT and
//! EXIT STATUS; `tapcred man` alone still prints the main page.

mod common;
use common::Home;

/// Every page the clap definition implies: tapcred.1, tapcred-SUB.1, tapcred-SUB-SUBSUB.1.
fn expected_pages() -> Vec<String> {
    fn walk(prefix: &str, cmd: &clap::Command, out: &mut Vec<String>) {
        out.push(format!("{prefix}.1"));
        for sub in cmd.get_subcommands() {
            if sub.get_name() != "help" && !sub.is_hide_set() {
                walk(&format!("{prefix}-{}", sub.get_name()), sub, out);
            }
        }
    }
    let mut v = Vec::new();
    walk("tapcred", &tapcred::cli::command(), &mut v);
    v.sort();
    v
}

#[test]
fn one_page_per_subcommand_with_files_environment_exit_status() {
    let h = Home::empty();
    let dir = h.path().join("man/man1");
    let r = h.run(&["man", "--dir", dir.to_str().unwrap()]);
    r.ok();
    let mut found: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    found.sort();
    let want = expected_pages();
    assert!(want.len() >= 10, "{want:?}");
    assert_eq!(found, want, "one page per command and subcommand");
    for name in &found {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        let stem = name.trim_end_matches(".1");
        assert!(
            text.contains(&format!(".TH {stem} 1")),
            "{name}: title names the page:\n{}",
            &text[..text.len().min(300)]
        );
        for s in [
            ".SH NAME",
            ".SH SYNOPSIS",
            ".SH \"FILES\"",
            ".SH \"ENVIRONMENT\"",
            ".SH \"EXIT STATUS\"",
            ".SH \"SEE ALSO\"",
        ] {
            assert!(text.contains(s), "{name} lacks {s}");
        }
        for needle in ["TAPCRED_TOTP_SECRET", "XDG_CACHE_HOME", "aws/config"] {
            assert!(text.contains(needle), "{name} lacks {needle}");
        }
        // Every exit code of README's table.
        for code in 0..=7 {
            assert!(
                text.contains(&format!(".TP\n\\fB{code}\\fR\n")),
                "{name}: EXIT STATUS lacks {code}"
            );
        }
        // The page renders without roff warnings when man is installed.
        if std::path::Path::new("/usr/bin/groff").exists() {
            let out = std::process::Command::new("groff")
                .args(["-k", "-man", "-Tutf8", "-ww", "-z"])
                .arg(dir.join(name))
                .output()
                .unwrap();
            assert!(
                out.stderr.is_empty(),
                "{name}: groff warnings: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    assert_eq!(
        r.stdout.lines().count(),
        want.len(),
        "prints each path written"
    );
}

#[test]
fn man_alone_prints_the_main_page() {
    let h = Home::empty();
    let r = h.run(&["man"]);
    r.ok();
    assert!(r.stdout.starts_with(".ie") || r.stdout.contains(".TH tapcred 1"));
    assert!(r.stdout.contains(".SH \"EXIT STATUS\""));
    assert!(r.stdout.contains("credential\\-process"));
}
