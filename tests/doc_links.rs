//! Every relative link in README.md and docs/*.md resolves: the file exists (relative to the
//! page), and a `#fragment` names a heading of the page it points at (GitHub's slugs). The
//! repository explains itself, so no link may leave it or point at nothing.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn pages() -> Vec<PathBuf> {
    common::doc_pages()
}

/// GitHub's heading anchor: lower case, spaces to `-`, punctuation other than `-`/`_` dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The lines of `text` outside fenced code blocks.
fn prose(text: &str) -> Vec<&str> {
    let mut fenced = false;
    text.lines()
        .filter(|l| {
            if l.trim_start().starts_with("```") {
                fenced = !fenced;
                return false;
            }
            !fenced
        })
        .collect()
}

fn anchors(text: &str) -> BTreeSet<String> {
    prose(text)
        .into_iter()
        .filter_map(|l| {
            let t = l.trim_start_matches('#');
            (l.starts_with('#') && t.starts_with(' ')).then(|| slug(t))
        })
        .collect()
}

/// `[text](target)` targets on prose lines, inline code removed first.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in prose(text) {
        let mut clean = String::new();
        let mut in_code = false;
        for c in line.chars() {
            if c == '`' {
                in_code = !in_code;
                clean.push('`');
            } else if !in_code {
                clean.push(c);
            }
        }
        let mut rest = clean.as_str();
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let Some(end) = after.find(')') else { break };
            out.push(after[..end].to_string());
            rest = &after[end..];
        }
    }
    out
}

#[test]
fn every_relative_link_resolves() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        for link in links(&text) {
            if link.starts_with("http://") || link.starts_with("https://") {
                continue;
            }
            checked += 1;
            let (file, fragment) = match link.split_once('#') {
                Some((f, a)) => (f, Some(a)),
                None => (link.as_str(), None),
            };
            let target = if file.is_empty() {
                page.clone()
            } else {
                page.parent().unwrap().join(file)
            };
            let shown = page.strip_prefix(root()).unwrap().display().to_string();
            if !target.exists() {
                broken.push(format!("{shown}: ({link}): no such file"));
                continue;
            }
            if let Some(a) = fragment {
                let body = std::fs::read_to_string(&target).unwrap_or_default();
                if !anchors(&body).contains(a) {
                    broken.push(format!("{shown}: ({link}): no heading with that anchor"));
                }
            }
        }
    }
    assert!(
        checked >= 15,
        "only {checked} links found: is the parser right?"
    );
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// No tracked file cites the founding notes that live outside the repository: the
/// repository explains itself (docs/architecture.md is the design).
#[test]
fn nothing_cites_files_outside_the_repository() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let listed = std::process::Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(root)
        .output()
        .expect("git ls-files");
    assert!(listed.status.success(), "git ls-files failed");
    let this_file = "tests/doc_links.rs";
    let needles = [
        concat!("DESIGN", ".md"),
        concat!("HELPERS", ".md"),
        concat!("shared/", "reference"),
        concat!("../", "shared"),
    ];
    let mut found = Vec::new();
    let mut scanned = 0;
    for name in listed.stdout.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = String::from_utf8_lossy(name);
        if name == this_file {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(root.join(&*name)) else {
            continue; // binary or gone from the work tree
        };
        scanned += 1;
        for (n, line) in text.lines().enumerate() {
            for needle in needles {
                if line.contains(needle) {
                    found.push(format!("{name}:{}: cites {needle}", n + 1));
                }
            }
        }
    }
    assert!(
        scanned > 100,
        "only {scanned} files scanned: is git ls-files right?"
    );
    assert!(
        found.is_empty(),
        "files outside the repository are cited:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_parser_sees_what_it_must() {
    let text = "# Exit codes\n\nsee [x](a.md#exit-codes) and `[no](b.md)`\n```\n[no](c.md)\n```\n";
    assert_eq!(links(text), vec!["a.md#exit-codes"]);
    assert!(anchors(text).contains("exit-codes"));
    assert_eq!(
        slug("Crates: which does what, and why"),
        "crates-which-does-what-and-why"
    );
}

#[test]
fn readme_is_a_front_page() {
    let lines = std::fs::read_to_string(root().join("README.md"))
        .unwrap()
        .lines()
        .count();
    assert!(
        lines <= 300,
        "README.md has {lines} lines; the rest belongs in docs/"
    );
}
