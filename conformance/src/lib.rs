//! z4j-conformance: a black-box suite for z4j brains. It knows a brain only
//! through its documented surface (a command line, env vars, HTTP, the
//! database URL it was given), so it can gate any implementation.

pub mod agent;
pub mod brain;
mod cases;
pub mod clauses;
pub mod expectations;
pub mod mutate;
pub mod postgres;
pub mod python;
pub mod report;
pub mod runner;
pub mod sched;
pub mod smtp_sink;
pub mod target;

use clap::{Parser, Subcommand};
use runner::{Database, Plan};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use cases::CASES;

/// The repository root (where `specs/` and `conformance/` live).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

#[derive(Parser, Debug)]
#[command(
    name = "z4j-conformance",
    about = "Black-box conformance suite for z4j brains"
)]
pub struct Args {
    /// Target description file.
    #[arg(long, global = true, default_value_os_t = repo_root().join("conformance/targets/rust.toml"))]
    pub target: PathBuf,
    /// Path substituted for {bin} in the target (or Z4J_CONFORMANCE_BIN).
    #[arg(long, global = true)]
    pub bin: Option<String>,
    /// sqlite, postgres or both.
    #[arg(long, global = true, default_value = "both")]
    pub database: String,
    /// Run only the cases covering this clause id.
    #[arg(long)]
    pub clause: Option<String>,
    /// Run only the case with this name (or names starting with it and a dot,
    /// e.g. `auth`).
    #[arg(long)]
    pub case: Option<String>,
    /// List cases and clauses without running anything.
    #[arg(long)]
    pub list: bool,
    /// Clause catalogue.
    #[arg(long, default_value_os_t = repo_root().join("specs/clauses.toml"))]
    pub clauses: PathBuf,
    /// Write JUnit XML here.
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// Write the JSON result file here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Multiplies timing tolerances (slow machines).
    #[arg(long, global = true, default_value_t = 1.0)]
    pub timing_tolerance: f64,
    /// Cases run at once.
    #[arg(long, global = true, default_value_t = 4)]
    pub concurrency: usize,
    /// Expected failures of the target; default
    /// `conformance/expectations/<target name>.toml` (absent: all pass).
    #[arg(long)]
    pub expectations: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Mutation testing: start the target with one default replaced by a
    /// wrong value (or one behaviour broken) and expect the cases of that
    /// clause to fail. Exits 1 unless every mutant is killed.
    Mutate {
        /// Wrong values for the documented defaults.
        #[arg(long, default_value_os_t = repo_root().join("conformance/mutants.toml"))]
        mutants: PathBuf,
        /// Only mutants whose name contains one of these (repeatable), e.g.
        /// `Z4J_LOGIN_LOCKOUT_THRESHOLD` or `replay-guard-off`.
        #[arg(long)]
        only: Vec<String>,
        /// Write the table here as well.
        #[arg(long)]
        report: Option<PathBuf>,
    },
}

/// Whether the run is under CI (`CI=true` or `CI=1`): then nothing the
/// target claims may go unjudged.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Runs the suite; returns the process exit status.
pub fn main_with(args: Args) -> i32 {
    let catalogue = match clauses::load(&args.clauses) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("conformance: {e}");
            return 2;
        }
    };
    // A case naming an unknown clause is a bug in the suite.
    for case in CASES {
        for c in case.clauses {
            if !catalogue.iter().any(|k| k.id == *c) {
                eprintln!("conformance: case {} names unknown clause {c}", case.name);
                return 2;
            }
        }
    }
    if args.list {
        list(&catalogue, &args.target);
        return 0;
    }
    let target = match target::Target::load(&args.target, args.bin.as_deref()) {
        Ok(t) => Arc::new(t),
        Err(e) => {
            eprintln!("conformance: {e}");
            return 2;
        }
    };
    let expectations_path = args.expectations.clone().unwrap_or_else(|| {
        repo_root()
            .join("conformance/expectations")
            .join(format!("{}.toml", target.name))
    });
    let expected = match expectations::load(&expectations_path, &catalogue) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("conformance: {e}");
            return 2;
        }
    };
    let databases = match args.database.as_str() {
        "sqlite" => vec![Database::Sqlite],
        "postgres" | "postgresql" => vec![Database::Postgres],
        "both" => vec![Database::Sqlite, Database::Postgres],
        other => {
            eprintln!("conformance: --database {other:?}: use sqlite, postgres or both");
            return 2;
        }
    };
    if let Some(bad) = clauses::first_unknown(&catalogue, target.not_claimed.keys()) {
        eprintln!(
            "conformance: target {}: not_claimed names unknown clause {bad:?}",
            target.name
        );
        return 2;
    }
    let plan = Plan {
        target: target.clone(),
        databases: databases.clone(),
        clause_filter: args.clause.clone(),
        case_filter: args.case.clone(),
        tolerance: args.timing_tolerance.max(0.1),
        concurrency: args.concurrency,
        case_timeout: Duration::from_secs_f64(1200.0 * args.timing_tolerance.max(1.0)),
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("conformance: cannot start the runtime: {e}");
            return 2;
        }
    };
    if let Some(Command::Mutate {
        mutants,
        only,
        report,
    }) = &args.command
    {
        return mutate_main(&rt, &plan, &catalogue, mutants, only, report.as_deref());
    }
    let results = rt.block_on(runner::run(&plan, CASES));
    println!(
        "{}",
        report::table(&catalogue, &results, &databases, &target, &expected)
    );
    let write = |path: &Option<PathBuf>, text: String| {
        if let Some(p) = path {
            if let Err(e) = std::fs::write(p, text) {
                eprintln!("conformance: cannot write {}: {e}", p.display());
            }
        }
    };
    write(&args.junit, report::junit(&results, &target.name));
    write(
        &args.json,
        report::json(&catalogue, &results, &databases, &target, &expected).to_string(),
    );
    let passed = results
        .iter()
        .filter(|r| r.outcome == runner::Outcome::Pass)
        .count();
    let failed = results
        .iter()
        .filter(|r| matches!(r.outcome, runner::Outcome::Fail(_)))
        .count();
    let skipped = results.len() - passed - failed;
    let complete = args.clause.is_none() && args.case.is_none();
    let mismatches = expectations::compare(&catalogue, &results, &databases, &expected, complete);
    println!(
        "conformance: {passed} passed, {failed} failed, {skipped} skipped; \
         {} clause verdicts differ from {}",
        mismatches.len(),
        expectations_path.display()
    );
    for m in &mismatches {
        let hint = if m.observed == report::Verdict::Pass {
            "an expected failure passed: remove it from the expectations file"
        } else {
            "a new failure"
        };
        println!(
            "  {} [{}]: expected {}, observed {} ({hint})",
            m.clause,
            m.db.name(),
            m.expected.label(),
            m.observed.label()
        );
    }
    // A skip is never a pass: what nobody judged is listed, and under CI a
    // clause the target claims fails the run when it went unjudged.
    let mut unjudged_claimed = 0;
    if complete {
        let unjudged = report::unjudged(&catalogue, &results, &databases, &target);
        if !unjudged.is_empty() {
            println!("not judged ({}):", unjudged.len());
        }
        for (clause, db, v, why) in &unjudged {
            let claimed = *v != report::Verdict::NotClaimed;
            if claimed {
                unjudged_claimed += 1;
            }
            println!("  {clause} [{}]: {} ({why})", db.name(), v.label());
        }
        if unjudged_claimed > 0 && under_ci() {
            println!(
                "conformance: {unjudged_claimed} claimed clause x database pairs were not judged \
                 (CI=true): cover them, or list them under the target's [not_claimed] with the reason"
            );
        }
    }
    i32::from(!mismatches.is_empty() || (unjudged_claimed > 0 && under_ci()))
}

fn mutate_main(
    rt: &tokio::runtime::Runtime,
    plan: &Plan,
    catalogue: &[clauses::Clause],
    mutants: &std::path::Path,
    only: &[String],
    report_path: Option<&std::path::Path>,
) -> i32 {
    let all = match mutate::load(mutants, catalogue, &plan.target) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("conformance: {e}");
            return 2;
        }
    };
    let chosen: Vec<mutate::Mutant> = all
        .into_iter()
        .filter(|m| only.is_empty() || only.iter().any(|o| m.name.contains(o.as_str())))
        .collect();
    if chosen.is_empty() {
        eprintln!("conformance: no mutant matches --only {only:?}");
        return 2;
    }
    let (table, all_killed) = rt.block_on(mutate::run(plan, &chosen));
    println!("{table}");
    if let Some(p) = report_path {
        if let Err(e) = std::fs::write(p, &table) {
            eprintln!("conformance: cannot write {}: {e}", p.display());
        }
    }
    i32::from(!all_killed)
}

/// `--list`: every case, the clauses no case covers, and the clauses with
/// a documented default that no case asserts at that default.
fn list(catalogue: &[clauses::Clause], target_path: &std::path::Path) {
    let not_claimed = target::Target::read(target_path)
        .map(|t| t.not_claimed)
        .unwrap_or_default();
    for case in CASES {
        let clauses: Vec<String> = case
            .clauses
            .iter()
            .map(|c| {
                let a = runner::Assert::letters(case.asserts_on(c).iter().copied());
                if a.is_empty() {
                    (*c).to_owned()
                } else {
                    format!("{c}[{a}]")
                }
            })
            .collect();
        println!("{:<48} {:?} {}", case.name, case.dbs, clauses.join(", "));
    }
    let mark = |id: &str| {
        if not_claimed.contains_key(id) {
            " (not claimed by the target)"
        } else {
            ""
        }
    };
    let uncovered: Vec<&str> = catalogue
        .iter()
        .filter(|c| !CASES.iter().any(|k| k.clauses.contains(&c.id.as_str())))
        .map(|c| c.id.as_str())
        .collect();
    println!(
        "\n{} clauses, {} not covered by any case:",
        catalogue.len(),
        uncovered.len()
    );
    for u in &uncovered {
        println!("  {u}{}", mark(u));
    }
    let at_default = |id: &str, campaign: bool| {
        CASES.iter().any(|k| {
            k.is_campaign() == campaign && k.asserts_on(id).contains(&runner::Assert::Default)
        })
    };
    let with_default = || catalogue.iter().filter(|c| c.default.is_some());
    let not_at_default: Vec<&str> = with_default()
        .filter(|c| !at_default(&c.id, false) && !at_default(&c.id, true))
        .map(|c| c.id.as_str())
        .collect();
    println!(
        "\n{} clauses with a documented default not asserted at it:",
        not_at_default.len()
    );
    for u in not_at_default {
        println!("  {u}{}", mark(u));
    }
    let campaign_only: Vec<&str> = with_default()
        .filter(|c| !at_default(&c.id, false) && at_default(&c.id, true))
        .map(|c| c.id.as_str())
        .collect();
    println!(
        "\n{} clauses asserted at their default only by a long campaign (--case campaign):",
        campaign_only.len()
    );
    for u in campaign_only {
        println!("  {u}{}", mark(u));
    }
}
