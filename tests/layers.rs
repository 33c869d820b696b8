//! The layer order written in `src/lib.rs` holds for every file under `src/`: each
//! `crate::…` path (a `use` line, a multi-line `use crate::{…}` group, an inline path, or a
//! `super::…` chain that climbs to the crate root), tests inside `src/` included, names a
//! module of a lower layer. Comments and string literals are not code and are skipped. There
//! is no exception list: fix the import or move the code. Every top-level module must have a
//! layer. `cargo test --test layers -- --nocapture` also prints the module graph.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The layers of `src/lib.rs`, lowest first: (label, modules).
#[derive(Debug)]
struct Order {
    layers: Vec<(String, Vec<String>)>,
}

impl Order {
    /// `src/lib.rs`'s doc comment: the first ```` ```text ```` block, one `label: modules`
    /// line per layer.
    fn parse(lib_rs: &str) -> Result<Order, String> {
        let doc: Vec<&str> = lib_rs
            .lines()
            .filter_map(|l| l.strip_prefix("//!"))
            .map(str::trim)
            .collect();
        let start = doc
            .iter()
            .position(|l| *l == "```text")
            .ok_or("src/lib.rs: no ```text block with the layer order in its doc comment")?;
        let mut layers = Vec::new();
        let mut seen = BTreeSet::new();
        for line in &doc[start + 1..] {
            if *line == "```" {
                if layers.is_empty() {
                    return Err("src/lib.rs: the layer block is empty".to_owned());
                }
                return Ok(Order { layers });
            }
            let (label, mods) = line.split_once(':').ok_or_else(|| {
                format!("src/lib.rs: layer line {line:?} is not `label: modules`")
            })?;
            let mods: Vec<String> = mods.split_whitespace().map(str::to_owned).collect();
            if mods.is_empty() {
                return Err(format!("src/lib.rs: layer {label:?} names no module"));
            }
            for m in &mods {
                if !seen.insert(m.clone()) {
                    return Err(format!("src/lib.rs: module {m} is in two layers"));
                }
            }
            layers.push((label.trim().to_owned(), mods));
        }
        Err("src/lib.rs: the layer block has no closing ```".to_owned())
    }

    fn layer_of(&self, module: &str) -> Option<usize> {
        self.layers
            .iter()
            .position(|(_, mods)| mods.iter().any(|m| m == module))
    }

    fn modules(&self) -> BTreeSet<&str> {
        self.layers
            .iter()
            .flat_map(|(_, mods)| mods.iter().map(String::as_str))
            .collect()
    }

    fn describe(&self, layer: usize) -> String {
        format!("layer {} \"{}\"", layer + 1, self.layers[layer].0)
    }
}

/// The crate root's re-exports (`pub use error::{Error, Result};`): name → module, so
/// `crate::Error` counts as an import of `error`.
fn root_reexports(lib_rs: &str) -> BTreeMap<String, String> {
    let mut names = BTreeMap::new();
    for line in lib_rs.lines() {
        let Some(rest) = line.strip_prefix("pub use ") else {
            continue;
        };
        let rest = rest.trim_end_matches(';');
        let Some((module, items)) = rest.split_once("::") else {
            continue;
        };
        let items = items.trim_start_matches('{').trim_end_matches('}');
        for item in items.split(',') {
            let name = item.rsplit(" as ").next().unwrap_or(item).trim();
            let name = name.rsplit("::").next().unwrap_or(name);
            if !name.is_empty() {
                names.insert(name.to_owned(), module.to_owned());
            }
        }
    }
    names
}

/// `text` with every comment and string or character literal blanked (newlines kept), so
/// only code is scanned and line numbers still hold.
fn code_only(text: &str) -> Vec<u8> {
    let b = text.as_bytes();
    let mut out = b.to_vec();
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in &mut out[from..to.min(b.len())] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut i = 0;
    while i < b.len() {
        let at = |k: usize| b.get(i + k).copied().unwrap_or(0);
        if at(0) == b'/' && at(1) == b'/' {
            let end = b[i..]
                .iter()
                .position(|&c| c == b'\n')
                .map_or(b.len(), |p| i + p);
            blank(&mut out, i, end);
            i = end;
        } else if at(0) == b'/' && at(1) == b'*' {
            let (mut depth, mut j) = (1, i + 2);
            while j < b.len() && depth > 0 {
                if b[j] == b'/' && b.get(j + 1) == Some(&b'*') {
                    depth += 1;
                    j += 2;
                } else if b[j] == b'*' && b.get(j + 1) == Some(&b'/') {
                    depth -= 1;
                    j += 2;
                } else {
                    j += 1;
                }
            }
            blank(&mut out, i, j);
            i = j;
        } else if at(0) == b'r'
            && (i == 0 || !ident(b[i - 1]) || b[i - 1] == b'b')
            && (at(1) == b'"' || at(1) == b'#')
        {
            // A raw string r"…", r#"…"#, br"…": ends at a quote and as many hashes.
            let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
            if b.get(i + 1 + hashes) != Some(&b'"') {
                i += 1;
                continue;
            }
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            let body = i + 2 + hashes;
            let end = b[body..]
                .windows(close.len())
                .position(|w| w == close.as_slice())
                .map_or(b.len(), |p| body + p + close.len());
            blank(&mut out, i, end);
            i = end;
        } else if at(0) == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            blank(&mut out, i, j + 1);
            i = j + 1;
        } else if at(0) == b'\'' {
            // A character literal ('x', '\n', '\u{1F600}', 'é'); otherwise a lifetime.
            let end = if at(1) == b'\\' {
                // The escaped character (even a quote) is never the end.
                b.get(i + 3..)
                    .and_then(|rest| rest.iter().position(|&c| c == b'\''))
                    .map(|p| i + 3 + p + 1)
            } else {
                let ch_len = text[i + 1..].chars().next().map_or(1, char::len_utf8);
                (b.get(i + 1 + ch_len) == Some(&b'\'')).then_some(i + 2 + ch_len)
            };
            match end {
                Some(end) => {
                    blank(&mut out, i, end);
                    i = end;
                }
                None => i += 1,
            }
        } else {
            i += 1;
        }
    }
    out
}

/// A token of code: an identifier (`$crate` included) or one punctuation mark (`::` is
/// one), with its line.
#[derive(Debug, Clone, PartialEq)]
struct Tok {
    text: String,
    line: usize,
}

fn tokens(code: &[u8]) -> Vec<Tok> {
    let mut toks = Vec::new();
    let (mut i, mut line) = (0, 1);
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80;
    while i < code.len() {
        let c = code[i];
        if c == b'\n' {
            line += 1;
            i += 1;
        } else if c.is_ascii_whitespace() {
            i += 1;
        } else if ident(c) || (c == b'$' && code.get(i + 1).is_some_and(|&n| ident(n))) {
            let start = i;
            i += 1;
            while i < code.len() && ident(code[i]) {
                i += 1;
            }
            let text = String::from_utf8_lossy(&code[start..i]).into_owned();
            toks.push(Tok { text, line });
        } else if c == b':' && code.get(i + 1) == Some(&b':') {
            toks.push(Tok {
                text: "::".to_owned(),
                line,
            });
            i += 2;
        } else {
            toks.push(Tok {
                text: (c as char).to_string(),
                line,
            });
            i += 1;
        }
    }
    toks
}

/// One path that reaches the crate root: the name right after the root and its line.
#[derive(Debug, Clone, PartialEq)]
struct RootRef {
    line: usize,
    name: String,
}

/// Every path in `text` that names something at the crate root: `crate::x`, `$crate::x`,
/// `use crate::{x, y::z}`, and `super::…::x` when the `super`s climb from the file's module
/// (`depth` below the root, plus any inline `mod m { … }` it is in) up to the root.
fn root_refs(text: &str, depth: usize) -> Vec<RootRef> {
    let toks = tokens(&code_only(text));
    let is = |k: usize, s: &str| toks.get(k).is_some_and(|t| t.text == s);
    let mut refs = Vec::new();
    // One entry per open brace: whether it opened an inline module.
    let mut braces: Vec<bool> = Vec::new();
    let mut k = 0;
    while k < toks.len() {
        let t = &toks[k];
        match t.text.as_str() {
            "{" => {
                let opens_mod = k >= 2 && is(k - 2, "mod");
                braces.push(opens_mod);
            }
            "}" => {
                braces.pop();
            }
            _ => {}
        }
        let starts_path = k == 0 || !is(k - 1, "::");
        // Index of the `::` after which the crate root's names follow.
        let mut root_sep = None;
        if starts_path && (t.text == "crate" || t.text == "$crate") && is(k + 1, "::") {
            root_sep = Some(k + 1);
        } else if starts_path && t.text == "super" {
            let here = depth + braces.iter().filter(|m| **m).count();
            let mut n = 0;
            while is(k + 2 * n, "super") && is(k + 2 * n + 1, "::") {
                n += 1;
            }
            if n > 0 && n >= here {
                root_sep = Some(k + 2 * here - 1);
            }
        }
        if let Some(sep) = root_sep {
            refs.extend(names_after(&toks, sep + 1));
        }
        k += 1;
    }
    refs
}

/// The root-level names a path continues with from token `k`: one name, or each item of a
/// `{…}` group (nested groups belong to their item).
fn names_after(toks: &[Tok], k: usize) -> Vec<RootRef> {
    let Some(first) = toks.get(k) else {
        return Vec::new();
    };
    if first.text != "{" {
        return vec![RootRef {
            line: first.line,
            name: first.text.clone(),
        }];
    }
    let mut names = Vec::new();
    let (mut depth, mut item_start) = (0, true);
    for t in &toks[k..] {
        match t.text.as_str() {
            "{" => {
                depth += 1;
                if depth == 1 {
                    item_start = true;
                }
            }
            "}" => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            "," if depth == 1 => item_start = true,
            _ if depth == 1 && item_start => {
                item_start = false;
                if t.text != "self" {
                    names.push(RootRef {
                        line: t.line,
                        name: t.text.clone(),
                    });
                }
            }
            _ => {}
        }
    }
    names
}

/// A source file of the library: its path under `src/` ("token/select.rs") and its text.
struct SourceFile {
    rel: String,
    text: String,
}

impl SourceFile {
    /// The top-level module it belongs to ("token").
    fn module(&self) -> &str {
        let first = self.rel.split('/').next().unwrap_or("");
        first.strip_suffix(".rs").unwrap_or(first)
    }

    /// How far its module is below the crate root: `engine.rs` and `token/mod.rs` 1,
    /// `token/select.rs` 2, `token/select/tests.rs` 3.
    fn depth(&self) -> usize {
        let parts: Vec<&str> = self.rel.split('/').collect();
        if parts.last() == Some(&"mod.rs") {
            parts.len() - 1
        } else {
            parts.len()
        }
    }
}

/// An import between two top-level modules, where it is written.
#[derive(Debug, Clone)]
struct Edge {
    from: String,
    to: String,
    at: String,
}

/// Every cross-module import of `files`, and a line for each reference the order cannot
/// place (a name neither a module of the order nor a root re-export).
fn edges(
    files: &[SourceFile],
    order: &Order,
    reexports: &BTreeMap<String, String>,
) -> (Vec<Edge>, Vec<String>) {
    let modules = order.modules();
    let (mut found, mut unknown) = (Vec::new(), Vec::new());
    for f in files {
        let from = f.module();
        for r in root_refs(&f.text, f.depth()) {
            let at = format!("src/{}:{}", f.rel, r.line);
            let to = if modules.contains(r.name.as_str()) {
                r.name.clone()
            } else if let Some(m) = reexports.get(&r.name) {
                m.clone()
            } else {
                unknown.push(format!(
                    "{at}: crate::{} is neither a module of the layer order in src/lib.rs nor a re-export at the crate root",
                    r.name
                ));
                continue;
            };
            if to != from {
                found.push(Edge {
                    from: from.to_owned(),
                    to,
                    at,
                });
            }
        }
    }
    (found, unknown)
}

/// Every import that breaks `order`, one line each: where, both modules, both layers.
fn violations(
    files: &[SourceFile],
    order: &Order,
    reexports: &BTreeMap<String, String>,
) -> Vec<String> {
    let (found, mut bad) = edges(files, order, reexports);
    for f in files {
        if order.layer_of(f.module()).is_none() {
            bad.push(format!(
                "src/{}: its module {} is in no layer of src/lib.rs",
                f.rel,
                f.module()
            ));
        }
    }
    for e in found {
        let (Some(from), Some(to)) = (order.layer_of(&e.from), order.layer_of(&e.to)) else {
            continue;
        };
        let how = if to > from {
            "an upward import"
        } else if to == from {
            "an import within one layer"
        } else {
            continue;
        };
        bad.push(format!(
            "{}: {} ({}) imports {} ({}): {how}",
            e.at,
            e.from,
            order.describe(from),
            e.to,
            order.describe(to)
        ));
    }
    // By file, then by line number.
    bad.sort_by_key(|l| {
        let (file, rest) = l.split_once(':').unwrap_or((l, ""));
        let line: usize = rest
            .split(':')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        (file.to_owned(), line, l.clone())
    });
    bad.dedup();
    bad
}

fn read_tree(dir: &Path, rel: &str, out: &mut Vec<SourceFile>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let rel = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        if path.is_dir() {
            read_tree(&path, &rel, out);
        } else if name.ends_with(".rs") {
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            out.push(SourceFile { rel, text });
        }
    }
}

/// The library's source files: everything under `src/` but the crate root (`lib.rs`) and
/// the programs (`main.rs`, `bin/`), which sit above every layer.
fn library_files(src: &Path) -> Vec<SourceFile> {
    let mut files = Vec::new();
    read_tree(src, "", &mut files);
    files.retain(|f| f.rel != "lib.rs" && f.rel != "main.rs" && !f.rel.starts_with("bin/"));
    files
}

/// The top-level modules as the tree has them: `src/x.rs` and `src/x/`.
fn tree_modules(src: &Path) -> BTreeSet<String> {
    std::fs::read_dir(src)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|p| {
            let name = p.file_name()?.to_string_lossy().into_owned();
            if p.is_dir() {
                (name != "bin").then_some(name)
            } else {
                let m = name.strip_suffix(".rs")?;
                (m != "lib" && m != "main").then(|| m.to_owned())
            }
        })
        .collect()
}

/// Strongly connected groups of more than one module (import cycles), by Tarjan's walk.
fn cycles(edges: &BTreeSet<(String, String)>) -> Vec<Vec<String>> {
    struct Walk<'a> {
        next: BTreeMap<&'a str, Vec<&'a str>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        found: Vec<Vec<String>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, v: &'a str) {
            let i = self.index.len();
            self.index.insert(v, i);
            self.low.insert(v, i);
            self.stack.push(v);
            for w in self.next.get(v).cloned().unwrap_or_default() {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let l = self.low[v].min(self.low[w]);
                    self.low.insert(v, l);
                } else if self.stack.contains(&w) {
                    let l = self.low[v].min(self.index[w]);
                    self.low.insert(v, l);
                }
            }
            if self.low[v] == self.index[v] {
                let mut group = Vec::new();
                while let Some(w) = self.stack.pop() {
                    group.push(w.to_owned());
                    if w == v {
                        break;
                    }
                }
                if group.len() > 1 {
                    group.sort();
                    self.found.push(group);
                }
            }
        }
    }
    let mut walk = Walk {
        next: BTreeMap::new(),
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for (a, b) in edges {
        walk.next.entry(a).or_default().push(b);
        walk.next.entry(b).or_default();
    }
    let nodes: Vec<&str> = walk.next.keys().copied().collect();
    for v in nodes {
        if !walk.index.contains_key(v) {
            walk.visit(v);
        }
    }
    walk.found
}

#[test]
fn the_source_tree_obeys_the_layer_order_in_lib_rs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = root.join("src");
    let lib_rs = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let order = Order::parse(&lib_rs).unwrap_or_else(|e| panic!("{e}"));
    let reexports = root_reexports(&lib_rs);

    let in_order: BTreeSet<String> = order.modules().into_iter().map(str::to_owned).collect();
    let in_tree = tree_modules(&src);
    let declared: BTreeSet<String> = lib_rs
        .lines()
        .filter_map(|l| {
            l.strip_prefix("pub mod ")
                .or_else(|| l.strip_prefix("mod "))
        })
        .map(|l| l.trim_end_matches(';').trim().to_owned())
        .collect();
    let mut bad: Vec<String> = Vec::new();
    for m in in_tree.union(&declared) {
        if !in_order.contains(m) {
            bad.push(format!(
                "module {m} (src/) is in no layer of src/lib.rs: add it to the layer list"
            ));
        }
    }
    for m in in_order.difference(&in_tree) {
        bad.push(format!(
            "src/lib.rs lists module {m} in a layer, but src/ has no such module"
        ));
    }
    // The module graph, for whoever changes the layers (shown with --nocapture), printed
    // before any verdict.
    let files = library_files(&src);
    assert!(
        files.len() > 50,
        "only {} files found under src/",
        files.len()
    );
    let (found, _) = edges(&files, &order, &reexports);
    let graph: BTreeSet<(String, String)> = found.into_iter().map(|e| (e.from, e.to)).collect();
    let loops = cycles(&graph);
    println!(
        "{} modules in {} layers, {} edges, cycles: {:?}",
        in_order.len(),
        order.layers.len(),
        graph.len(),
        loops
    );
    for (from, to) in &graph {
        println!("  {from} -> {to}");
    }
    bad.extend(violations(&files, &order, &reexports));
    assert!(
        bad.is_empty(),
        "the layer order of src/lib.rs is broken ({} problems):\n{}",
        bad.len(),
        bad.join("\n")
    );
    assert!(loops.is_empty(), "import cycles: {loops:?}");
}

// --- The checker itself, on synthetic files -------------------------------------------------

const LIB: &str = "//! Layers:
//!
//! ```text
//! ground: error env
//! os:     platform
//! top:    token vault
//! ```

pub mod env;
pub mod error;
pub mod platform;
pub mod token;
pub mod vault;

pub use error::{Error, Result as Res};
";

fn check(files: &[(&str, &str)]) -> Vec<String> {
    let order = Order::parse(LIB).unwrap();
    let files: Vec<SourceFile> = files
        .iter()
        .map(|(rel, text)| SourceFile {
            rel: (*rel).to_owned(),
            text: (*text).to_owned(),
        })
        .collect();
    violations(&files, &order, &root_reexports(LIB))
}

#[test]
fn checker_catches_a_planted_upward_import() {
    let bad = check(&[(
        "platform/locations.rs",
        "use std::path::PathBuf;\n\nuse crate::error::Result;\nuse crate::token::EnvLookup;\n",
    )]);
    assert_eq!(
        bad,
        vec![
            "src/platform/locations.rs:4: platform (layer 2 \"os\") imports token (layer 3 \"top\"): an upward import"
        ]
    );
}

#[test]
fn checker_reads_groups_inline_paths_tests_and_super_chains() {
    let text = r#"use crate::{
    error::Error,
    platform::{self, fs},
};

fn f() -> crate::Res<()> {
    let _ = crate::vault::open();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::vault::Thing;
    use super::super::super::token as t;
}
"#;
    // In `platform/x.rs` (depth 2) the tests module is at depth 3: three `super`s reach the
    // root, two do not.
    let bad = check(&[("platform/x.rs", text)]);
    assert_eq!(
        bad,
        vec![
            "src/platform/x.rs:7: platform (layer 2 \"os\") imports vault (layer 3 \"top\"): an upward import",
            "src/platform/x.rs:14: platform (layer 2 \"os\") imports token (layer 3 \"top\"): an upward import",
        ]
    );
    // From a file at the module's root (`platform/mod.rs`, depth 1), one `super` is the root.
    let bad = check(&[(
        "platform/mod.rs",
        "use super::token::Thing;\nuse super::error::E;\n",
    )]);
    assert_eq!(
        bad,
        vec![
            "src/platform/mod.rs:1: platform (layer 2 \"os\") imports token (layer 3 \"top\"): an upward import"
        ]
    );
}

#[test]
fn checker_refuses_imports_within_a_layer_and_unknown_names_but_allows_downward_ones() {
    let bad = check(&[
        ("token/mod.rs", "use crate::vault::VaultSession;\n"),
        (
            "vault/store.rs",
            "use crate::token::keylock;\nuse crate::Error;\nuse crate::platform::fs;\n",
        ),
        ("env.rs", "pub fn f() { crate::nowhere::g() }\n"),
        ("cli.rs", "use crate::error::Error;\n"),
    ]);
    assert_eq!(
        bad,
        vec![
            "src/cli.rs: its module cli is in no layer of src/lib.rs",
            "src/env.rs:1: crate::nowhere is neither a module of the layer order in src/lib.rs nor a re-export at the crate root",
            "src/token/mod.rs:1: token (layer 3 \"top\") imports vault (layer 3 \"top\"): an import within one layer",
            "src/vault/store.rs:1: vault (layer 3 \"top\") imports token (layer 3 \"top\"): an import within one layer",
        ]
    );
}

#[test]
fn checker_skips_comments_and_strings_but_not_the_code_around_them() {
    let text = "//! See [`crate::token::select`].
/* use crate::token::X; /* nested */ still a comment crate::vault */
const S: &str = \"crate::token::x\";
const R: &str = r#\"use crate::vault::Y; \"quoted\" \"#;
const C: char = '\"'; fn f<'a>(x: &'a str) -> &'a str { x }
// use crate::vault::Z;
use crate::token::Real; // crate::vault in a trailing comment
";
    let bad = check(&[("platform/y.rs", text)]);
    assert_eq!(
        bad,
        vec![
            "src/platform/y.rs:7: platform (layer 2 \"os\") imports token (layer 3 \"top\"): an upward import"
        ]
    );
}

#[test]
fn the_order_is_parsed_strictly() {
    assert!(Order::parse("//! no block\n").is_err());
    assert!(Order::parse("//! ```text\n//! a: x\n//! b: x\n//! ```\n").is_err());
    assert!(Order::parse("//! ```text\n//! a:\n//! ```\n").is_err());
    assert!(Order::parse("//! ```text\n//! a: x\n").is_err());
    let o = Order::parse(LIB).unwrap();
    assert_eq!(o.layer_of("error"), Some(0));
    assert_eq!(o.layer_of("vault"), Some(2));
    assert_eq!(
        root_reexports(LIB).get("Res").map(String::as_str),
        Some("error")
    );
    let g: BTreeSet<(String, String)> = [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")]
        .iter()
        .map(|(x, y)| (x.to_string(), y.to_string()))
        .collect();
    assert_eq!(cycles(&g), vec![vec!["a", "b", "c"]]);
}
