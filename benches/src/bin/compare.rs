//! Side by side: starts a fresh reference brain (z4j 1.13.0 from PyPI, in
//! the virtualenv the conformance suite makes) and a fresh z4j-rs brain on
//! each database kind, runs the same cells against both (alternating which
//! goes first), and reports z4j-rs / reference ratios per cell.
//!
//! `benches/compare` builds and runs this. `--baseline FILE` then gates on
//! the ratios of a saved run (exit 1 past `--threshold`); `--results FILE`
//! evaluates a saved run instead of measuring.

use clap::Parser;
use std::path::PathBuf;
use std::time::Duration;
use z4j_benches::compare::{self, Cell, CellResult, Db, Figures, Run};
use z4j_benches::load::{self, Config, Shape};
use z4j_benches::TaskIds;
use z4j_conformance::agent::{self, ADMIN_EMAIL, ADMIN_PASSWORD};
use z4j_conformance::brain::{self, Brain, StartSpec};
use z4j_conformance::postgres::Provider;
use z4j_conformance::target::Target;

#[derive(Parser)]
#[command(
    name = "compare",
    about = "z4j-rs against the reference brain, cell by cell"
)]
struct Args {
    /// Database kinds: sqlite, postgres or both.
    #[arg(long, default_value = "both")]
    database: String,
    /// Only cells whose label starts with this (e.g. `sqlite/c4/b1`).
    #[arg(long)]
    only: Option<String>,
    /// Multiplies the events per run (0.1 for a quick look).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// The z4j-rs binary (a release build).
    #[arg(long, default_value_os_t = z4j_conformance::repo_root().join("target/release/z4j"))]
    z4j_bin: PathBuf,
    /// The floor probe (`cargo build --release -p z4j-benches --example
    /// floor`), run once per database kind before its cells.
    #[arg(long, default_value_os_t = z4j_conformance::repo_root().join("target/release/examples/floor"))]
    floor_bin: PathBuf,
    /// Save the run as JSON here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Evaluate this saved run instead of measuring.
    #[arg(long)]
    results: Option<PathBuf>,
    /// Compare the ratios with this saved run; exit 1 on a regression.
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// Relative worsening of a ratio that counts as a regression.
    #[arg(long, default_value_t = 0.10)]
    threshold: f64,
}

fn main() {
    let args = Args::parse();
    let code = match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("compare: {e}");
            2
        }
    };
    std::process::exit(code);
}

fn run(args: Args) -> Result<i32, String> {
    if !(args.threshold > 0.0 && args.threshold < 10.0) {
        return Err(format!("--threshold {} must be in (0, 10)", args.threshold));
    }
    if args.scale.is_nan() || args.scale <= 0.0 {
        return Err(format!("--scale {} must be positive", args.scale));
    }
    let now: Run = match &args.results {
        Some(path) => read_run(path)?,
        None => measure(&args)?,
    };
    println!("{}", compare::table(&now));
    for f in &now.failures {
        println!("FAILED RUN {f}");
    }
    if let Some(path) = &args.out {
        let text = serde_json::to_string_pretty(&now).map_err(|e| e.to_string())?;
        std::fs::write(path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))?;
        eprintln!("compare: saved {}", path.display());
    }
    let failed_runs = i32::from(!now.failures.is_empty());
    let Some(path) = &args.baseline else {
        return Ok(failed_runs);
    };
    let baseline = read_run(path)?;
    let found = compare::regressions(&baseline, &now, args.threshold);
    let shared = now
        .cells
        .iter()
        .filter(|c| baseline.cells.iter().any(|b| b.cell == c.cell))
        .count();
    if shared == 0 {
        return Err(format!(
            "{}: no cell in common with this run, nothing to compare",
            path.display()
        ));
    }
    println!(
        "against {} (commit {}): {shared} cells compared, threshold {:.0} %",
        path.display(),
        baseline.commit,
        args.threshold * 100.0
    );
    for r in &found {
        println!(
            "REGRESSION {} {}: {:.3} -> {:.3} ({:.1} % worse)",
            r.cell,
            r.metric,
            r.baseline,
            r.now,
            r.worse_by * 100.0
        );
    }
    if found.is_empty() {
        println!("no regression");
        Ok(failed_runs)
    } else {
        Ok(1)
    }
}

fn read_run(path: &PathBuf) -> Result<Run, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: not a compare run: {e}", path.display()))
}

fn measure(args: &Args) -> Result<Run, String> {
    let dbs = match args.database.as_str() {
        "sqlite" => vec![Db::Sqlite],
        "postgres" | "postgresql" => vec![Db::Postgres],
        "both" => vec![Db::Sqlite, Db::Postgres],
        other => {
            return Err(format!(
                "--database {other:?}: use sqlite, postgres or both"
            ))
        }
    };
    if !args.z4j_bin.exists() {
        return Err(format!(
            "{}: no z4j binary (build it: cargo build --release -p z4j-brain)",
            args.z4j_bin.display()
        ));
    }
    if !args.floor_bin.exists() {
        return Err(format!(
            "{}: no floor probe (build it: cargo build --release -p z4j-benches --example floor)",
            args.floor_bin.display()
        ));
    }
    let root = z4j_conformance::repo_root().join("conformance/targets");
    let bin = args.z4j_bin.display().to_string();
    let rust = Target::load(&root.join("rust.toml"), Some(&bin))?;
    let reference = Target::load(&root.join("python-reference.toml"), None)?;
    let cells: Vec<Cell> = compare::matrix(&dbs)
        .into_iter()
        .filter(|c| {
            args.only
                .as_ref()
                .is_none_or(|o| c.label().starts_with(o.as_str()))
        })
        .collect();
    if cells.is_empty() {
        return Err("--only matches no cell".into());
    }
    let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let started_at = chrono::Utc::now().to_rfc3339();
    let mut results = Vec::new();
    let mut failures = Vec::new();
    for db in dbs {
        let mine: Vec<&Cell> = cells.iter().filter(|c| c.database == db).collect();
        if mine.is_empty() {
            continue;
        }
        let floor = floor(&args.floor_bin, db)?;
        eprintln!(
            "compare: {} commit p50 {:.2} ms, p90 {:.2} ms",
            db.name(),
            floor.commit_ms.p50,
            floor.commit_ms.p90
        );
        let (ref_brain, rust_brain, pg) = rt.block_on(start_pair(&reference, &rust, db))?;
        for (i, cell) in mine.iter().enumerate() {
            // Alternate which brain goes first, so neither always runs on a
            // machine warmed (or tired) by the other.
            let order = if i % 2 == 0 {
                [true, false]
            } else {
                [false, true]
            };
            let (mut r_fig, mut z_fig) = (None, None);
            for is_ref in order {
                let b = if is_ref { &ref_brain } else { &rust_brain };
                let events = compare::events_for(cell, is_ref, args.scale);
                eprintln!(
                    "compare: {} {} ({events} events)",
                    cell.label(),
                    if is_ref { "reference" } else { "z4j-rs" }
                );
                let fig = match rt.block_on(one(b, cell, events)) {
                    Ok(f) => f,
                    Err(e) => {
                        // No figure from a failed run; the others go on.
                        eprintln!("compare:   FAILED: {e}");
                        failures.push(format!(
                            "{} {}: {e}",
                            cell.label(),
                            if is_ref { "reference" } else { "z4j-rs" }
                        ));
                        continue;
                    }
                };
                eprintln!(
                    "compare:   {:.0} events/s, p99 {:.1} ms, brain {:.0} MiB, {:.1} CPU s",
                    fig.events_per_second,
                    fig.p99_ms,
                    fig.peak_rss_mib.unwrap_or(0.0),
                    fig.cpu_seconds.unwrap_or(0.0)
                );
                if is_ref {
                    r_fig = Some(fig);
                } else {
                    z_fig = Some(fig);
                }
            }
            if let (Some(reference), Some(rust)) = (r_fig, z_fig) {
                results.push(CellResult {
                    cell: **cell,
                    ratios: compare::ratios(&reference, &rust),
                    reference,
                    rust,
                    floor: floor.cells.iter().find(|f| f.cell == **cell).cloned(),
                });
            }
        }
        drop((ref_brain, rust_brain));
        if let Some((provider, names)) = pg {
            for n in names {
                rt.block_on(provider.drop_database(&n));
            }
        }
    }
    Ok(Run {
        commit: commit(),
        machine: machine(),
        started_at,
        cells: results,
        failures,
    })
}

/// One run of the floor probe on a fresh database of kind `db`.
fn floor(bin: &PathBuf, db: Db) -> Result<compare::Floor, String> {
    eprintln!("compare: {} floor and commit bound", db.name());
    let out = std::process::Command::new(bin)
        .args(["--database", db.name()])
        .output()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    if !out.status.success() {
        return Err(format!(
            "floor probe on {} failed: {}",
            db.name(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("floor probe on {}: not a floor run: {e}", db.name()))
}

type PgDatabases = Option<(Provider, Vec<String>)>;

async fn start_pair(
    reference: &Target,
    rust: &Target,
    db: Db,
) -> Result<(Brain, Brain, PgDatabases), String> {
    let provider = match db {
        Db::Postgres => Some(Provider::discover().await?),
        Db::Sqlite => None,
    };
    let mut names = Vec::new();
    let mut brains = Vec::new();
    for target in [reference, rust] {
        let mut env: Vec<(String, String)> = agent::admin_env()
            .into_iter()
            .chain([
                // Neither brain's event budget is what is measured.
                ("Z4J_RATELIMIT_EVENTS_PER_SECOND", "100000000"),
                ("Z4J_LOG_LEVEL", "WARNING"),
            ])
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        if let Some(p) = &provider {
            let (name, url) = p.create_database().await?;
            names.push(name);
            env.push(("Z4J_DATABASE_URL".into(), url));
            env.extend(
                z4j_conformance::runner::SHARED_SECRETS
                    .iter()
                    .map(|(k, v)| ((*k).into(), (*v).into())),
            );
            env.extend(target.postgres_env.clone());
        }
        let spec = StartSpec {
            env,
            ..StartSpec::default()
        };
        brains.push(
            brain::start(target, spec)
                .await
                .map_err(|e| format!("starting {}: {e}", target.name))?,
        );
    }
    let rust_brain = brains.pop().ok_or("no z4j-rs brain")?;
    let ref_brain = brains.pop().ok_or("no reference brain")?;
    Ok((ref_brain, rust_brain, provider.map(|p| (p, names))))
}

async fn one(b: &Brain, cell: &Cell, events: usize) -> Result<Figures, String> {
    let cfg = Config {
        url: b.base_url.clone(),
        email: ADMIN_EMAIL.into(),
        password: ADMIN_PASSWORD.into(),
        agent: None,
        project: "default".into(),
        connections: cell.connections,
        shape: Shape::Agents,
        batch: cell.batch,
        window: cell.window,
        events,
        stall_timeout: Duration::from_secs(60),
        settle_timeout: Duration::from_secs(60),
        brain_pid: b.pid(),
        rate: None,
        sample_every: None,
        probe_every: None,
        task_ids: TaskIds::Sequential,
    };
    let r = load::run(&cfg).await?;
    Ok(Figures {
        events: r.acked_events,
        events_per_second: r.events_per_second,
        p50_ms: r.ack_latency_ms.p50,
        p99_ms: r.ack_latency_ms.p99,
        peak_rss_mib: r.brain.as_ref().map(|u| u.peak_rss_mib),
        cpu_seconds: r.brain.as_ref().map(|u| u.cpu_seconds),
    })
}

fn commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(z4j_conformance::repo_root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))?
                .split_whitespace()
                .nth(1)?
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cores} cores ({cpu}), {mem_gib:.0} GiB")
}
