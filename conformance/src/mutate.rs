//! `z4j-conformance mutate`: the suite proves its own strength. Each mutant
//! is a target started wrong on purpose, either one documented default
//! replaced by a plausible wrong value (`conformance/mutants.toml`, applied
//! only where a case leaves the variable unset) or a behaviour the target
//! breaks on request (`[[mutant]]` in its target file). The cases of the
//! mutant's clauses must fail; a mutant they pass is a missing assertion.

use crate::clauses::Clause;
use crate::runner::{self, CaseResult, Outcome, Plan};
use crate::target::Target;
use futures_util::StreamExt;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// `conformance/mutants.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    /// Clause id of a variable with a documented default -> wrong values.
    defaults: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone)]
pub struct Mutant {
    /// `Z4J_X=value` or the behaviour mutant's name.
    pub name: String,
    pub env: Vec<(String, String)>,
    pub clauses: Vec<String>,
}

/// The default mutants for every claimed clause with a documented default,
/// then the target's behaviour mutants. A claimed default with no wrong
/// value in the file is an error: it could never be checked.
pub fn load(path: &Path, catalogue: &[Clause], target: &Target) -> Result<Vec<Mutant>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read the mutant file: {e}", path.display()))?;
    let f: File = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    if let Some(unknown) = crate::clauses::first_unknown(catalogue, f.defaults.keys()) {
        return Err(format!("{}: unknown clause {unknown:?}", path.display()));
    }
    let mut out = Vec::new();
    for c in catalogue {
        if c.default.is_none() || target.not_claimed.contains_key(&c.id) {
            continue;
        }
        let values = f
            .defaults
            .get(&c.id)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                format!(
                    "{}: clause {} has a documented default but no wrong value to try \
                 (add it under [defaults], or list the clause under the target's [not_claimed])",
                    path.display(),
                    c.id
                )
            })?;
        for v in values {
            out.push(Mutant {
                name: format!("{}={v}", c.id),
                env: vec![(c.id.clone(), v.clone())],
                clauses: vec![c.id.clone()],
            });
        }
    }
    for m in &target.mutant {
        if let Some(bad) = crate::clauses::first_unknown(catalogue, &m.clauses) {
            return Err(format!("mutant {}: unknown clause {bad:?}", m.name));
        }
        out.push(Mutant {
            name: m.name.clone(),
            env: m.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            clauses: m.clauses.clone(),
        });
    }
    Ok(out)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// A case failed: the suite noticed.
    Killed(Vec<&'static str>),
    /// Every case passed: a missing assertion.
    Survived,
    /// The target would not start with the mutant (an invalid mutant, not
    /// a kill).
    Invalid(String),
    /// No case for the mutant's clauses runs on this database.
    NoCase,
    /// Cases were skipped: not judged.
    Skipped,
}

impl Fate {
    /// The table's column.
    fn short(&self) -> &'static str {
        match self {
            Fate::Killed(_) => "killed",
            Fate::Survived => "SURVIVED",
            Fate::Invalid(_) => "INVALID",
            Fate::NoCase => "n/a",
            Fate::Skipped => "SKIPPED",
        }
    }

    /// The note under the row: what killed it, or why it was not.
    fn label(&self) -> String {
        match self {
            Fate::Killed(by) => format!("killed ({})", by.join(", ")),
            Fate::Survived => "SURVIVED".into(),
            Fate::Invalid(e) => format!("INVALID: {e}"),
            Fate::NoCase => "n/a".into(),
            Fate::Skipped => "SKIPPED".into(),
        }
    }
}

/// Whether the target accepts the mutant's value at all: a value it
/// refuses is an invalid mutant, not a kill. The target starts once with
/// nothing set (the home then holds a database with its schema and the
/// minted secrets), then again on that home with the mutant, so a default
/// whose effect is a refusal on a fresh home (no schema without
/// auto-migration) still counts as valid.
async fn valid(target: &Target, m: &Mutant) -> Result<(), String> {
    // The suite chooses the address of every start but the default-bind
    // case's, so the bind variables cannot be checked this way.
    if m.env
        .iter()
        .any(|(k, _)| k == "Z4J_BIND_HOST" || k == "Z4J_BIND_PORT")
    {
        return Ok(());
    }
    let first = crate::brain::start(target, runner::spec(&[]))
        .await
        .map_err(|e| format!("the target does not start unmutated: {e}"))?;
    let home = first.stop_keep_home().await;
    let mut spec = runner::spec(&[]);
    spec.env = m.env.clone();
    spec.home = Some(home);
    let mut brain = crate::brain::start(target, spec)
        .await
        .map_err(|e| e.lines().take(3).collect::<Vec<_>>().join(" / "))?;
    brain.stop().await;
    Ok(())
}

/// The fate of one mutant on one database from its case-runs.
fn fate(results: &[&CaseResult]) -> Fate {
    if results.is_empty() {
        return Fate::NoCase;
    }
    let killers: Vec<&'static str> = results
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Fail(_)))
        .map(|r| r.case)
        .collect();
    if !killers.is_empty() {
        Fate::Killed(killers)
    } else if results
        .iter()
        .any(|r| matches!(r.outcome, Outcome::Skip(_)))
    {
        Fate::Skipped
    } else {
        Fate::Survived
    }
}

/// Runs every mutant's cases; returns the table and whether all were
/// killed.
pub async fn run(plan: &Plan, mutants: &[Mutant]) -> (String, bool) {
    // The validity starts are independent: as many at once as cases.
    let checks = futures_util::stream::iter(
        mutants
            .iter()
            .map(|m| async move { (m.name.clone(), valid(&plan.target, m).await) }),
    )
    .buffer_unordered(plan.concurrency.max(1))
    .collect::<Vec<_>>()
    .await;
    let invalid: BTreeMap<String, String> = checks
        .into_iter()
        .filter_map(|(name, r)| r.err().map(|e| (name, e)))
        .collect();
    let mut jobs = Vec::new();
    let mut owner = Vec::new();
    for (i, m) in mutants.iter().enumerate() {
        if invalid.contains_key(&m.name) {
            continue;
        }
        for mut job in runner::select(plan, crate::CASES) {
            if m.clauses
                .iter()
                .any(|c| job.case.clauses.contains(&c.as_str()))
            {
                job.mutation = m.env.clone();
                owner.push(i);
                jobs.push(job);
            }
        }
    }
    eprintln!(
        "mutate: {} mutants, {} case-runs",
        mutants.len(),
        jobs.len()
    );
    let results = runner::execute(plan, jobs).await;
    let mut out = String::new();
    let mut header = format!("{:<66}", "mutant");
    for db in &plan.databases {
        let _ = write!(header, " {:<10}", db.name());
    }
    let _ = writeln!(
        out,
        "\nmutation report: target {}\n{header}",
        plan.target.name
    );
    let _ = writeln!(out, "{}", "-".repeat(header.len()));
    let (mut killed, mut judged) = (0usize, 0usize);
    let mut lines = Vec::new();
    for (i, m) in mutants.iter().enumerate() {
        let mut line = format!("{:<66}", truncate(&m.name, 66));
        let mut notes = Vec::new();
        for &db in &plan.databases {
            let f = match invalid.get(&m.name) {
                Some(e) => Fate::Invalid(e.clone()),
                None => {
                    let mine: Vec<&CaseResult> = results
                        .iter()
                        .zip(&owner)
                        .filter(|(r, o)| **o == i && r.db == db)
                        .map(|(r, _)| r)
                        .collect();
                    fate(&mine)
                }
            };
            if f != Fate::NoCase {
                judged += 1;
            }
            if matches!(f, Fate::Killed(_)) {
                killed += 1;
            }
            let _ = write!(line, " {:<10}", f.short());
            if !matches!(f, Fate::NoCase) {
                notes.push(format!("{}: {}", db.name(), f.label()));
            }
        }
        lines.push((line, notes));
    }
    for (line, notes) in lines {
        let _ = writeln!(out, "{line}");
        for n in &notes {
            let _ = writeln!(out, "      {n}");
        }
    }
    let score = if judged == 0 {
        0.0
    } else {
        100.0 * killed as f64 / judged as f64
    };
    let _ = writeln!(
        out,
        "\nmutation score: {killed} of {judged} mutant x database runs killed ({score:.1} %)"
    );
    (out, judged > 0 && killed == judged)
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}
