//! The per-clause table, JUnit XML and a JSON result file.

use crate::clauses::Clause;
use crate::expectations::Expectations;
use crate::runner::{CaseResult, Database, Outcome};
use std::collections::BTreeMap;
use std::fmt::Write as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail,
    Skipped,
    NotCovered,
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "FAIL",
            Verdict::Skipped => "skipped",
            Verdict::NotCovered => "not covered",
        }
    }
}

/// Whether a case result fails `clause`: a case that stopped fails all its
/// clauses; one that ran to its end fails only those it named.
fn fails(r: &CaseResult, clause: &str) -> bool {
    matches!(r.outcome, Outcome::Fail(_))
        && (r.clause_failures.is_empty() || r.clause_failures.iter().any(|(c, _)| c == clause))
}

/// A clause's verdict on one database: any failing case fails it; otherwise
/// one case that ran it to the end passes it.
pub fn verdict(results: &[CaseResult], clause: &str, db: Database) -> Verdict {
    let mine: Vec<&CaseResult> = results
        .iter()
        .filter(|r| r.db == db && r.clauses.contains(&clause))
        .collect();
    if mine.iter().any(|r| fails(r, clause)) {
        Verdict::Fail
    } else if mine
        .iter()
        .any(|r| r.outcome == Outcome::Pass || !r.clause_failures.is_empty())
    {
        Verdict::Pass
    } else if mine.is_empty() {
        Verdict::NotCovered
    } else {
        Verdict::Skipped
    }
}

pub fn table(
    clauses: &[Clause],
    results: &[CaseResult],
    dbs: &[Database],
    target: &str,
    expected: &Expectations,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\nconformance report: target {target}");
    let mut header = format!("{:<52} {:<26}", "clause", "section");
    for db in dbs {
        let _ = write!(header, " {:<12}", db.name());
    }
    let _ = writeln!(out, "{header}");
    let _ = writeln!(out, "{}", "-".repeat(header.len()));
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for c in clauses {
        let mut line = format!("{:<52} {:<26}", c.id, truncate(&c.section, 26));
        for &db in dbs {
            let v = verdict(results, &c.id, db);
            // A known failure reads differently from a new one.
            let label = match (v, expected.expects_failure(&c.id, db)) {
                (Verdict::Fail, Some(e)) if e.verdict == "flaky" => "fail (flaky)",
                (Verdict::Pass, Some(e)) if e.verdict == "flaky" => "pass (flaky)",
                (Verdict::Fail, Some(_)) => "fail (known)",
                (Verdict::Pass, Some(_)) => "PASS (unexp)",
                _ => v.label(),
            };
            *counts.entry(label).or_default() += 1;
            let _ = write!(line, " {label:<12}");
        }
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(
        out,
        "\nclauses x databases: {}",
        counts
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for r in results {
        if let Outcome::Fail(msg) = &r.outcome {
            let _ = writeln!(out, "\nFAILED {} [{}]: {}", r.case, r.db.name(), msg);
        }
    }
    out
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub fn junit(results: &[CaseResult], target: &str) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n");
    for db in [Database::Sqlite, Database::Postgres] {
        let mine: Vec<&CaseResult> = results.iter().filter(|r| r.db == db).collect();
        if mine.is_empty() {
            continue;
        }
        let failures = mine
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Fail(_)))
            .count();
        let skipped = mine
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Skip(_)))
            .count();
        let _ = writeln!(
            out,
            "  <testsuite name=\"z4j-conformance.{target}.{}\" tests=\"{}\" failures=\"{failures}\" skipped=\"{skipped}\">",
            db.name(),
            mine.len()
        );
        for r in mine {
            let _ = write!(
                out,
                "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\"",
                xml_escape(&r.clauses.join(",")),
                xml_escape(r.case),
                r.duration.as_secs_f64()
            );
            match &r.outcome {
                Outcome::Pass => out.push_str("/>\n"),
                Outcome::Fail(m) => {
                    let _ = writeln!(out, "><failure message=\"{}\"/></testcase>", xml_escape(m));
                }
                Outcome::Skip(m) => {
                    let _ = writeln!(out, "><skipped message=\"{}\"/></testcase>", xml_escape(m));
                }
            }
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

pub fn json(
    clauses: &[Clause],
    results: &[CaseResult],
    dbs: &[Database],
    target: &str,
    expected: &Expectations,
) -> serde_json::Value {
    let cases: Vec<serde_json::Value> = results
        .iter()
        .map(|r| {
            let (verdict, message) = match &r.outcome {
                Outcome::Pass => ("pass", None),
                Outcome::Fail(m) => ("fail", Some(m.clone())),
                Outcome::Skip(m) => ("skipped", Some(m.clone())),
            };
            serde_json::json!({
                "case": r.case, "clauses": r.clauses, "database": r.db.name(),
                "verdict": verdict, "message": message, "seconds": r.duration.as_secs_f64(),
            })
        })
        .collect();
    let per_clause: Vec<serde_json::Value> = clauses
        .iter()
        .map(|c| {
            let v: serde_json::Map<String, serde_json::Value> = dbs
                .iter()
                .map(|&db| {
                    (
                        db.name().to_owned(),
                        verdict(results, &c.id, db).label().into(),
                    )
                })
                .collect();
            let known: serde_json::Map<String, serde_json::Value> = dbs
                .iter()
                .filter_map(|&db| {
                    expected
                        .expects_failure(&c.id, db)
                        .map(|e| (db.name().to_owned(), e.reason.clone().into()))
                })
                .collect();
            serde_json::json!({
                "clause": c.id, "section": c.section, "level": c.level,
                "verdicts": v, "expected_failures": known,
            })
        })
        .collect();
    serde_json::json!({"target": target, "cases": cases, "clauses": per_clause})
}
