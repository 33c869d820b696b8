//! The one table: rows (median, min, max, n, ratio), counted facts and notes.

use crate::prelude::*;

pub(crate) fn ms(d: Option<Duration>) -> String {
    d.map_or("–".into(), |d| format!("{:.2}", d.as_secs_f64() * 1e3))
}

pub(crate) fn ratio(a: Option<Duration>, b: Option<Duration>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if !b.is_zero() => format!("{:.2}×", a.as_secs_f64() / b.as_secs_f64()),
        _ => "–".into(),
    }
}

/// The output: one markdown table of timings, then counts and notes.
#[derive(Default)]
pub(crate) struct Report {
    pub(crate) rows: Vec<String>,
    pub(crate) facts: Vec<String>,
    pub(crate) notes: Vec<String>,
}

impl Report {
    pub(crate) fn row(&mut self, id: &str, what: &str, s: &Samples, vs: &str) {
        self.rows.push(format!(
            "| {id} | {what} | {} | {} | {} | {} | {vs} |",
            ms(s.median()),
            ms(s.min()),
            ms(s.max()),
            s.0.len()
        ));
    }
    pub(crate) fn skip(&mut self, id: &str, what: &str, why: &str) {
        eprintln!("SKIPPED {id} ({what}): {why}");
        self.rows.push(format!(
            "| {id} | {what} | – | – | – | 0 | SKIPPED: {why} |"
        ));
    }
    pub(crate) fn fact(&mut self, id: &str, text: String) {
        self.facts.push(format!("| {id} | {text} |"));
    }
    pub(crate) fn print(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "| id | benchmark | median ms | min ms | max ms | n | ratio / note |\n|---|---|---:|---:|---:|---:|---|"
        );
        for r in &self.rows {
            let _ = writeln!(s, "{r}");
        }
        if !self.facts.is_empty() {
            let _ = writeln!(s, "\n| id | counted |\n|---|---|");
            for f in &self.facts {
                let _ = writeln!(s, "{f}");
            }
        }
        if !self.notes.is_empty() {
            let _ = writeln!(s);
            for n in &self.notes {
                let _ = writeln!(s, "- {n}");
            }
        }
        s
    }
}

/// Name an APDU the way the YubiKey applets define them (SELECT and CALCULATE_ALL share
/// INS A4; SELECT has P1=04).
pub(crate) fn apdu_name(r: &ApduRecord) -> String {
    let name = match (r.ins, r.p1) {
        (0xA4, 0x04) => "SELECT",
        (0xA4, _) => "CALCULATE_ALL",
        (0xA2, _) => "CALCULATE",
        (0xA1, _) => "LIST",
        (0xA5, _) => "SEND_REMAINING",
        (0xA3, _) => "VALIDATE",
        (0x1D, _) => "READ_CONFIG",
        (0x01, _) => "PUT/OTP-STATUS",
        (0x02, _) => "DELETE",
        (0xC0, _) => "GET_RESPONSE",
        _ => "?",
    };
    format!("{name}({:02X})", r.ins)
}

pub(crate) fn apdu_summary(h: &[ApduRecord]) -> String {
    let names: Vec<String> = h.iter().map(apdu_name).collect();
    format!("{} APDUs: {}", h.len(), names.join(" → "))
}

pub(crate) fn failed_note(batches: usize) -> String {
    if batches == 0 {
        String::new()
    } else {
        format!("; {batches} batch(es) had failed processes, see counts")
    }
}
