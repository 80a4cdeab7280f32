//! Per-target expectations (`conformance/expectations/<target>.toml`): the
//! clauses a target is known to fail, and why. A run is gated on the
//! expectations, not on "all pass": a new failure fails the run, and so does
//! an unexpected pass (the file must then be updated), as in an Autobahn gate.

use crate::clauses::Clause;
use crate::report::{verdict, Verdict};
use crate::runner::{CaseResult, Database};
use serde::Deserialize;
use std::path::Path;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    /// Clause id from `specs/clauses.toml`.
    pub clause: String,
    /// "fail", or "flaky" (either verdict accepted: the target's behaviour
    /// sits at a timing threshold and was seen both ways). Passing is the
    /// default; a skip or a clause without a case is never gated.
    pub verdict: String,
    /// Databases the expectation holds on; both when absent.
    #[serde(default)]
    pub databases: Vec<String>,
    /// Why, with the observed behaviour.
    pub reason: String,
}

impl Expectation {
    fn applies_to(&self, db: Database) -> bool {
        self.databases.is_empty() || self.databases.iter().any(|d| d == db.name())
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    expect: Vec<Expectation>,
}

#[derive(Debug, Default)]
pub struct Expectations {
    pub entries: Vec<Expectation>,
}

/// Loads a file; a missing file means "everything passes". Unknown clauses,
/// verdicts and databases are errors, so a typo cannot hide a failure.
pub fn load(path: &Path, catalogue: &[Clause]) -> Result<Expectations, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Expectations::default()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let f: File = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    for e in &f.expect {
        if !catalogue.iter().any(|c| c.id == e.clause) {
            return Err(format!(
                "{}: expectation for unknown clause {:?}",
                path.display(),
                e.clause
            ));
        }
        if e.verdict != "fail" && e.verdict != "flaky" {
            return Err(format!(
                "{}: clause {}: verdict {:?} (\"fail\" or \"flaky\"; pass is the default)",
                path.display(),
                e.clause,
                e.verdict
            ));
        }
        if let Some(bad) = e
            .databases
            .iter()
            .find(|d| *d != "sqlite" && *d != "postgres")
        {
            return Err(format!(
                "{}: clause {}: database {bad:?} (use sqlite or postgres)",
                path.display(),
                e.clause
            ));
        }
        if e.reason.trim().is_empty() {
            return Err(format!(
                "{}: clause {}: an expected failure needs a reason",
                path.display(),
                e.clause
            ));
        }
    }
    let mut seen = std::collections::HashSet::new();
    for e in &f.expect {
        for db in [Database::Sqlite, Database::Postgres] {
            if e.applies_to(db) && !seen.insert((e.clause.clone(), db)) {
                return Err(format!(
                    "{}: clause {} is expected twice on {}",
                    path.display(),
                    e.clause,
                    db.name()
                ));
            }
        }
    }
    Ok(Expectations { entries: f.expect })
}

impl Expectations {
    pub fn expects_failure(&self, clause: &str, db: Database) -> Option<&Expectation> {
        self.entries
            .iter()
            .find(|e| e.clause == clause && e.applies_to(db))
    }
}

/// A clause whose verdict differs from its expectation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub clause: String,
    pub db: Database,
    pub expected: Verdict,
    pub observed: Verdict,
}

/// Compares the run with the expectations. Skipped and uncovered clauses are
/// not gated: they say nothing about the target. A partial run (`--case`,
/// `--clause`) reports new failures only: a clause it saw pass may still be
/// failed by a case it did not run.
pub fn compare(
    catalogue: &[Clause],
    results: &[CaseResult],
    dbs: &[Database],
    exp: &Expectations,
    complete: bool,
) -> Vec<Mismatch> {
    let mut out = Vec::new();
    for c in catalogue {
        for &db in dbs {
            let observed = verdict(results, &c.id, db);
            if !matches!(observed, Verdict::Pass | Verdict::Fail) {
                continue;
            }
            let expected = match exp.expects_failure(&c.id, db) {
                Some(e) if e.verdict == "flaky" => continue,
                Some(_) => Verdict::Fail,
                None => Verdict::Pass,
            };
            if observed != expected && (complete || observed == Verdict::Fail) {
                out.push(Mismatch {
                    clause: c.id.clone(),
                    db,
                    expected,
                    observed,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::Outcome;
    use std::time::Duration;

    fn clause(id: &str) -> Clause {
        Clause {
            id: id.into(),
            section: "s".into(),
            default: None,
            level: "must".into(),
            guarantee: "g".into(),
        }
    }

    fn result(clauses: &'static [&'static str], db: Database, outcome: Outcome) -> CaseResult {
        CaseResult {
            case: "c",
            clauses,
            asserts: &[],
            db,
            outcome,
            duration: Duration::ZERO,
            clause_failures: Vec::new(),
        }
    }

    fn parse(text: &str, cat: &[Clause]) -> Result<Expectations, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let p = dir.path().join("e.toml");
        std::fs::write(&p, text).map_err(|e| e.to_string())?;
        load(&p, cat)
    }

    #[test]
    fn gate_fails_on_new_failures_and_unexpected_passes() {
        let cat = [clause("A"), clause("B"), clause("C"), clause("D")];
        let exp = parse(
            "[[expect]]\nclause = \"B\"\nverdict = \"fail\"\nreason = \"inert\"\n\
             [[expect]]\nclause = \"C\"\nverdict = \"fail\"\ndatabases = [\"postgres\"]\nreason = \"r\"\n\
             [[expect]]\nclause = \"D\"\nverdict = \"flaky\"\nreason = \"timing\"\n",
            &cat,
        )
        .expect("valid file");
        let results = [
            result(&["A"], Database::Sqlite, Outcome::Fail("new".into())),
            result(&["B"], Database::Sqlite, Outcome::Fail("known".into())),
            result(&["C"], Database::Sqlite, Outcome::Pass),
            result(&["C"], Database::Postgres, Outcome::Pass),
            result(&["D"], Database::Sqlite, Outcome::Fail("sometimes".into())),
            result(&["D"], Database::Postgres, Outcome::Pass),
        ];
        let dbs = [Database::Sqlite, Database::Postgres];
        // A partial run does not report the stale expectation of C.
        assert_eq!(compare(&cat, &results, &dbs, &exp, false).len(), 1);
        let m = compare(&cat, &results, &dbs, &exp, true);
        assert_eq!(
            m,
            vec![
                Mismatch {
                    clause: "A".into(),
                    db: Database::Sqlite,
                    expected: Verdict::Pass,
                    observed: Verdict::Fail
                },
                Mismatch {
                    clause: "C".into(),
                    db: Database::Postgres,
                    expected: Verdict::Fail,
                    observed: Verdict::Pass
                },
            ]
        );
    }

    #[test]
    fn a_case_that_ran_to_its_end_fails_only_the_clauses_it_named() {
        let mut r = result(&["A", "B"], Database::Sqlite, Outcome::Fail("[B] x".into()));
        r.clause_failures = vec![("B".into(), "x".into())];
        assert_eq!(verdict(&[r.clone()], "A", Database::Sqlite), Verdict::Pass);
        assert_eq!(verdict(&[r.clone()], "B", Database::Sqlite), Verdict::Fail);
        // A case that stopped early fails everything it covers.
        r.clause_failures.clear();
        assert_eq!(verdict(&[r], "A", Database::Sqlite), Verdict::Fail);
    }

    #[test]
    fn bad_files_are_refused_with_the_culprit_named() {
        let cat = [clause("A")];
        let unknown = parse(
            "[[expect]]\nclause = \"Z\"\nverdict = \"fail\"\nreason = \"r\"\n",
            &cat,
        );
        assert!(unknown.is_err_and(|e| e.contains("\"Z\"")));
        let verdict = parse(
            "[[expect]]\nclause = \"A\"\nverdict = \"pass\"\nreason = \"r\"\n",
            &cat,
        );
        assert!(verdict.is_err_and(|e| e.contains("pass is the default")));
        let twice = parse(
            "[[expect]]\nclause = \"A\"\nverdict = \"fail\"\nreason = \"r\"\n\
             [[expect]]\nclause = \"A\"\nverdict = \"fail\"\ndatabases = [\"sqlite\"]\nreason = \"r\"\n",
            &cat,
        );
        assert!(twice.is_err_and(|e| e.contains("twice on sqlite")));
        let no_reason = parse(
            "[[expect]]\nclause = \"A\"\nverdict = \"fail\"\nreason = \" \"\n",
            &cat,
        );
        assert!(no_reason.is_err_and(|e| e.contains("needs a reason")));
        let db = parse(
            "[[expect]]\nclause = \"A\"\nverdict = \"fail\"\ndatabases = [\"mysql\"]\nreason = \"r\"\n",
            &cat,
        );
        assert!(db.is_err_and(|e| e.contains("mysql")));
    }
}
