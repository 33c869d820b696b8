//! `udev/*.rules`: the rule's syntax (udev(7): comma-separated `KEY OP "value"` pairs;
//! match keys take `==`/`!=`, assignment keys `=`/`+=`/`-=`/`:=`; every GOTO has its LABEL),
//! its file name (ordered before systemd's `73-seat-late.rules`, so `uaccess` takes effect),
//! and its coverage: every YubiKey product id with an OTP or FIDO HID interface
//! (yubikey-protocols.md D.1) gets `TAG+="uaccess"` on its hidraw node, and nothing else
//! does. `udevadm verify` would be a second judge but needs systemd ≥ 253 (Debian 12 has
//! 252), so the grammar is checked here.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// D.1: product ids (vendor 1050) whose interfaces include the OTP (keyboard) HID interface.
const OTP_HID: &[&str] = &[
    "0010", "0110", "0111", "0114", "0116", "0401", "0403", "0405", "0407", "0410",
];
/// D.1: product ids whose interfaces include the FIDO HID interface.
const FIDO_HID: &[&str] = &[
    "0113", "0114", "0115", "0116", "0120", "0402", "0403", "0406", "0407", "0410",
];
/// D.1: CCID-only product ids (pcscd's business; no hidraw node to open).
const CCID_ONLY: &[&str] = &["0112", "0404"];

const MATCH_KEYS: &[&str] = &[
    "ACTION",
    "SUBSYSTEM",
    "SUBSYSTEMS",
    "KERNEL",
    "KERNELS",
    "DRIVERS",
    "ATTR",
    "ATTRS",
    "ENV",
];
const ASSIGN_KEYS: &[&str] = &["TAG", "GROUP", "MODE", "OWNER", "ENV", "GOTO", "LABEL"];

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pair {
    key: String,
    attr: Option<String>,
    op: String,
    value: String,
}

/// Parse one rule line into its pairs, or say what is wrong.
fn parse_line(line: &str) -> Result<Vec<Pair>, String> {
    let mut pairs = Vec::new();
    let mut rest = line.trim();
    while !rest.is_empty() {
        let key_end = rest
            .find(|c: char| !(c.is_ascii_uppercase() || c == '_'))
            .ok_or_else(|| format!("no operator after {rest:?}"))?;
        let key = &rest[..key_end];
        if key.is_empty() {
            return Err(format!("expected a key at {rest:?}"));
        }
        rest = &rest[key_end..];
        let mut attr = None;
        if let Some(r) = rest.strip_prefix('{') {
            let close = r.find('}').ok_or("unclosed {")?;
            attr = Some(r[..close].to_owned());
            rest = &r[close + 1..];
        }
        let op = ["==", "!=", "+=", "-=", ":=", "="]
            .into_iter()
            .find(|op| rest.starts_with(op))
            .ok_or_else(|| format!("no operator after {key}"))?;
        rest = &rest[op.len()..];
        let r = rest
            .strip_prefix('"')
            .ok_or_else(|| format!("{key}: value not in double quotes"))?;
        let close = r
            .find('"')
            .ok_or_else(|| format!("{key}: unclosed quote"))?;
        let value = r[..close].to_owned();
        rest = r[close + 1..].trim_start();
        let is_match = op == "==" || op == "!=";
        let known = if is_match { MATCH_KEYS } else { ASSIGN_KEYS };
        if !known.contains(&key) {
            return Err(format!(
                "{key}{op}: not a udev {} key",
                if is_match { "match" } else { "assignment" }
            ));
        }
        if matches!(key, "ATTRS" | "ATTR" | "ENV") != attr.is_some() {
            return Err(format!("{key}: {{attribute}} missing or not allowed"));
        }
        pairs.push(Pair {
            key: key.to_owned(),
            attr,
            op: op.to_owned(),
            value,
        });
        if rest.is_empty() {
            break;
        }
        rest = rest
            .strip_prefix(',')
            .ok_or_else(|| format!("expected ',' before {rest:?}"))?
            .trim_start();
        if rest.is_empty() {
            return Err("trailing ','".into());
        }
    }
    Ok(pairs)
}

fn rule_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("udev");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rules"))
        .collect();
    v.sort();
    v
}

fn rules(path: &Path) -> Vec<Vec<Pair>> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|(i, l)| {
            assert!(
                !l.ends_with('\\'),
                "{}:{}: no continuation lines",
                path.display(),
                i + 1
            );
            parse_line(l).unwrap_or_else(|e| panic!("{}:{}: {e}", path.display(), i + 1))
        })
        .collect()
}

fn get<'a>(rule: &'a [Pair], key: &str, attr: Option<&str>) -> Option<&'a Pair> {
    rule.iter()
        .find(|p| p.key == key && p.attr.as_deref() == attr)
}

#[test]
fn the_parser_rejects_broken_rules() {
    assert!(parse_line(r#"SUBSYSTEM=="hidraw", TAG+="uaccess""#).is_ok());
    for bad in [
        r#"SUBSYSTEM=="hidraw" TAG+="uaccess""#,
        r#"SUBSYSTEM=="hidraw", TAG+="uaccess"#,
        r#"SUBSYSTEM==hidraw"#,
        r#"TAG=="uaccess""#,
        r#"SUBSYSTEM="hidraw""#,
        r#"ATTRS=="1050""#,
        r#"SUBSYSTEM=="hidraw","#,
        r#"FOO=="x""#,
    ] {
        assert!(parse_line(bad).is_err(), "{bad}");
    }
}

#[test]
fn udev_rule_syntax_name_and_product_ids() {
    let files = rule_files();
    assert_eq!(files.len(), 1, "{files:?}");
    let path = &files[0];
    let name = path.file_name().unwrap().to_str().unwrap();
    let prio: u32 = name
        .split('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{name}: must start with a number"));
    assert!(
        prio < 73,
        "{name}: must sort before 73-seat-late.rules for uaccess"
    );
    assert!(name.contains("yubikey"), "{name}");

    let rules = rules(path);
    // GOTO targets exist, each LABEL once.
    let labels: Vec<&str> = rules
        .iter()
        .flatten()
        .filter(|p| p.key == "LABEL")
        .map(|p| p.value.as_str())
        .collect();
    let unique: BTreeSet<&str> = labels.iter().copied().collect();
    assert_eq!(unique.len(), labels.len(), "duplicate LABEL");
    for p in rules.iter().flatten().filter(|p| p.key == "GOTO") {
        assert!(
            unique.contains(p.value.as_str()),
            "GOTO {} has no LABEL",
            p.value
        );
    }
    // The rules are skipped for anything but hidraw (and for removal).
    let guards: Vec<&Vec<Pair>> = rules
        .iter()
        .filter(|r| r.iter().any(|p| p.key == "GOTO"))
        .collect();
    assert!(guards.iter().any(|r| get(r, "SUBSYSTEM", None)
        .is_some_and(|p| p.op == "!=" && p.value == "hidraw")));

    // Product ids granted access: every OTP and FIDO HID interface, nothing else.
    let mut granted = BTreeSet::new();
    for r in &rules {
        let Some(tag) = get(r, "TAG", None) else {
            continue;
        };
        assert_eq!(
            (tag.op.as_str(), tag.value.as_str()),
            ("+=", "uaccess"),
            "{r:?}"
        );
        let vendor = get(r, "ATTRS", Some("idVendor")).expect("a vendor match");
        assert_eq!((vendor.op.as_str(), vendor.value.as_str()), ("==", "1050"));
        let product = get(r, "ATTRS", Some("idProduct")).expect("a product match");
        assert_eq!(product.op, "==");
        for pid in product.value.split('|') {
            assert!(
                pid.len() == 4 && pid.chars().all(|c| c.is_ascii_hexdigit()),
                "{pid:?}"
            );
            assert!(granted.insert(pid.to_owned()), "{pid} listed twice");
        }
        // Non-systemd setups: group access as well.
        assert_eq!(get(r, "MODE", None).map(|p| p.value.as_str()), Some("0660"));
        assert!(get(r, "GROUP", None).is_some());
    }
    let want: BTreeSet<String> = OTP_HID
        .iter()
        .chain(FIDO_HID)
        .map(|s| (*s).to_owned())
        .collect();
    assert_eq!(granted, want, "product ids with uaccess");
    for pid in CCID_ONLY {
        assert!(!granted.contains(*pid), "{pid} has no HID interface");
    }
}

/// The install steps people follow (README, the rule's own header) and the .deb name the
/// rule that is in `udev/`, reload udev, and re-apply the rule to keys already plugged in.
#[test]
fn install_steps_name_the_rule() {
    let files = rule_files();
    let name = files[0].file_name().unwrap().to_str().unwrap().to_owned();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let install = format!("sudo install -m 0644 udev/{name} /etc/udev/rules.d/");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let header = std::fs::read_to_string(&files[0]).unwrap();
    for (what, text) in [("README.md", &readme), (name.as_str(), &header)] {
        assert!(text.contains(&install), "{what}: no `{install}`");
        assert!(
            text.contains("udevadm control --reload-rules") && text.contains("udevadm trigger"),
            "{what}: reload and trigger steps"
        );
    }
    let package = std::fs::read_to_string(root.join("scripts/package.sh")).unwrap();
    assert!(
        package.contains("udev/*.rules") && package.contains("/usr/lib/udev/rules.d/"),
        "the .deb installs the rule under /usr/lib/udev/rules.d"
    );
    // Removal events are left alone, and only hidraw nodes are touched.
    let rules = rules(&files[0]);
    assert!(rules.iter().any(|r| {
        get(r, "ACTION", None).is_some_and(|p| p.op == "==" && p.value == "remove")
            && get(r, "GOTO", None).is_some()
    }));
}
