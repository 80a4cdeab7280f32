//! The per-clause table, JUnit XML and a JSON result file.

use crate::clauses::Clause;
use crate::expectations::Expectations;
use crate::runner::{Assert, Case, CaseResult, Database, Outcome};
use crate::target::Target;
use std::collections::BTreeMap;
use std::fmt::Write as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail,
    Skipped,
    NotCovered,
    /// Every case for the clause is for another database.
    NotApplicable,
    /// The target says it does not implement the clause (with a reason).
    NotClaimed,
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "FAIL",
            Verdict::Skipped => "skipped",
            Verdict::NotCovered => "not covered",
            Verdict::NotApplicable => "n/a",
            Verdict::NotClaimed => "not claimed",
        }
    }
}

/// Whether a case result fails `clause`: a case that stopped fails all its
/// clauses; one that ran to its end fails only those it named.
fn fails(r: &CaseResult, clause: &str) -> bool {
    matches!(r.outcome, Outcome::Fail(_))
        && (r.clause_failures.is_empty() || r.clause_failures.iter().any(|(c, _)| c == clause))
}

/// A clause's verdict on one database from the case-runs alone: any failing
/// case fails it; any skipped one leaves it unjudged (a skip is never a
/// pass); otherwise it passes when at least one case ran it to the end.
pub fn verdict(results: &[CaseResult], clause: &str, db: Database) -> Verdict {
    let mine: Vec<&CaseResult> = results
        .iter()
        .filter(|r| r.db == db && r.clauses.contains(&clause))
        .collect();
    if mine.iter().any(|r| fails(r, clause)) {
        Verdict::Fail
    } else if mine.is_empty() {
        Verdict::NotCovered
    } else if mine.iter().any(|r| matches!(r.outcome, Outcome::Skip(_))) {
        Verdict::Skipped
    } else {
        Verdict::Pass
    }
}

/// The verdict as reported: [`verdict`], with what the suite and the target
/// say about clauses nobody judged.
pub fn judged(results: &[CaseResult], clause: &str, db: Database, target: &Target) -> Verdict {
    let v = verdict(results, clause, db);
    if !matches!(v, Verdict::NotCovered | Verdict::Skipped) {
        return v;
    }
    if target.not_claimed.contains_key(clause) {
        return Verdict::NotClaimed;
    }
    let cases: Vec<&Case> = crate::CASES
        .iter()
        .filter(|c| c.clauses.contains(&clause))
        .collect();
    if v == Verdict::NotCovered && !cases.is_empty() && !cases.iter().any(|c| c.dbs.includes(db)) {
        return Verdict::NotApplicable;
    }
    v
}

/// What the passing case-runs asserted about a clause, as letters:
/// D default, B below, A above, L lower bound, U upper bound, G grey box.
pub fn strength(results: &[CaseResult], clause: &str) -> String {
    Assert::letters(
        results
            .iter()
            .filter(|r| r.clauses.contains(&clause) && r.outcome == Outcome::Pass)
            .flat_map(|r| {
                r.asserts
                    .iter()
                    .filter(|(c, _)| *c == clause)
                    .flat_map(|(_, a)| a.iter().copied())
            }),
    )
}

/// Clause x database pairs nobody judged, with why.
pub fn unjudged(
    clauses: &[Clause],
    results: &[CaseResult],
    dbs: &[Database],
    target: &Target,
) -> Vec<(String, Database, Verdict, String)> {
    let mut out = Vec::new();
    for c in clauses {
        for &db in dbs {
            let v = judged(results, &c.id, db, target);
            let why = match v {
                Verdict::NotClaimed => target.not_claimed.get(&c.id).cloned().unwrap_or_default(),
                Verdict::NotCovered => "no case exercises it".to_owned(),
                Verdict::Skipped => results
                    .iter()
                    .filter(|r| r.db == db && r.clauses.contains(&c.id.as_str()))
                    .filter_map(|r| match &r.outcome {
                        Outcome::Skip(m) => Some(format!("{}: {m}", r.case)),
                        _ => None,
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
                _ => continue,
            };
            out.push((c.id.clone(), db, v, why));
        }
    }
    out
}

pub fn table(
    clauses: &[Clause],
    results: &[CaseResult],
    dbs: &[Database],
    target: &Target,
    expected: &Expectations,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\nconformance report: target {}", target.name);
    let mut header = format!("{:<52} {:<22} {:<7}", "clause", "section", "asserts");
    for db in dbs {
        let _ = write!(header, " {:<12}", db.name());
    }
    let _ = writeln!(out, "{header}");
    let _ = writeln!(out, "{}", "-".repeat(header.len()));
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for c in clauses {
        let mut line = format!(
            "{:<52} {:<22} {:<7}",
            c.id,
            truncate(&c.section, 22),
            strength(results, &c.id)
        );
        for &db in dbs {
            let v = judged(results, &c.id, db, target);
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
        "\nasserts: D at the documented default (variable unset), B just under a \
         limit, A just over it, L lower and U upper bound of a timing, G grey box"
    );
    let _ = writeln!(
        out,
        "clauses x databases: {}",
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
    target: &Target,
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
                        judged(results, &c.id, db, target).label().into(),
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
                "asserts": strength(results, &c.id),
            })
        })
        .collect();
    serde_json::json!({"target": target.name, "cases": cases, "clauses": per_clause})
}
