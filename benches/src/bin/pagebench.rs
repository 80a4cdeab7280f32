//! Page latency at scale (issue 20: "pages stay usable with 100k tasks"):
//! against a brain whose project already holds the tasks (seeded with
//! `loadgen`), times the task listing with each filter through the REST API
//! and the dashboard pages, `--repeat` sequential requests each after one
//! warm-up, on loopback so the time is the server's plus well under a
//! millisecond. Prints a table and one JSON line; exits 1 when a request
//! fails or a p95 is over `--budget-ms`.
//!
//! `pagebench --url http://127.0.0.1:7700 --repeat 20 --budget-ms 200`

use clap::Parser;
use serde_json::{json, Value as Json};
use std::time::{Duration, Instant};
use z4j_benches::load::Latency;
use z4j_benches::BrainLogin;
use z4j_conformance::agent::{self, Operator, Target};

#[derive(Parser)]
#[command(about = "Times task listings, filters and pages of a populated project")]
struct Args {
    #[command(flatten)]
    login: BrainLogin,
    /// The project whose tasks are listed.
    #[arg(long, default_value = "default")]
    project: String,
    /// Timed requests per route (after one warm-up).
    #[arg(long, default_value_t = 20)]
    repeat: usize,
    /// The p95 each route must stay under.
    #[arg(long, default_value_t = 200.0)]
    budget_ms: f64,
}

/// One timed request: what it is, and its path.
struct Route {
    label: &'static str,
    path: String,
}

#[tokio::main]
async fn main() {
    let a = Args::parse();
    match run(&a).await {
        Ok(over) if over.is_empty() => {}
        Ok(over) => {
            eprintln!(
                "pagebench: p95 over {} ms: {}",
                a.budget_ms,
                over.join(", ")
            );
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("pagebench: {e}");
            std::process::exit(1);
        }
    }
}

async fn run(a: &Args) -> Result<Vec<String>, String> {
    if a.repeat == 0 {
        return Err("--repeat must be at least 1".into());
    }
    let target = Target::from_url(&a.login.url)?;
    let op = agent::login_as(&target, &a.login.email, &a.login.password)
        .await
        .map_err(|e| format!("{e} (check --email/--password)"))?;
    let api = format!("/api/v1/projects/{}/tasks", a.project);
    let (total, sample) = census(&target, &op, &api).await?;
    let routes = routes(a, &api, &sample)?;
    let mut rows = Vec::new();
    let mut over = Vec::new();
    for r in &routes {
        timed(&target, &op, &r.path).await?; // warm-up
        let mut samples = Vec::with_capacity(a.repeat);
        for _ in 0..a.repeat {
            samples.push(timed(&target, &op, &r.path).await?);
        }
        let lat = Latency::of(samples);
        println!(
            "{:<34} p50 {:>7.1} ms  p95 {:>7.1} ms  max {:>7.1} ms",
            r.label, lat.p50, lat.p95, lat.max
        );
        if lat.p95 > a.budget_ms {
            over.push(r.label.to_owned());
        }
        rows.push(json!({"route": r.label, "path": r.path, "p50_ms": lat.p50,
                         "p95_ms": lat.p95, "max_ms": lat.max}));
    }
    println!(
        "{}",
        json!({"tasks": total, "repeat": a.repeat, "budget_ms": a.budget_ms, "routes": rows})
    );
    Ok(over)
}

/// How many tasks the project holds and its newest task, whose id and
/// name the filters search for.
async fn census(target: &Target, op: &Operator, api: &str) -> Result<(i64, Json), String> {
    let (status, body) = op
        .get(target, &format!("{api}?limit=1&include_total=true"))
        .await?;
    match (status, body["items"].get(0), body["total_count"].as_i64()) {
        (200, Some(sample), Some(total)) => Ok((total, sample.clone())),
        _ => Err(format!(
            "GET {api}: {status} {body} (an empty project: seed it with loadgen)"
        )),
    }
}

fn routes(a: &Args, api: &str, sample: &Json) -> Result<Vec<Route>, String> {
    let field = |k: &str| {
        sample[k]
            .as_str()
            .map(str::to_owned)
            .ok_or(format!("the newest task has no {k}: {sample}"))
    };
    let (task_id, name, engine) = (field("task_id")?, field("name")?, field("engine")?);
    // A substring every task of the run shares, and one no task has: the
    // rare match walks the whole project.
    let common: String = name
        .chars()
        .skip(name.chars().count().saturating_sub(12))
        .collect();
    let hour_ago = (chrono::Utc::now() - chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let page = format!("/projects/{}/tasks", a.project);
    // Query values and path segments alike: every byte but the unreserved.
    let enc = |s: &str| -> String {
        url::form_urlencoded::byte_serialize(s.as_bytes())
            .collect::<String>()
            .replace('+', "%20")
    };
    let r = |label, path: String| Route { label, path };
    Ok(vec![
        r("api: newest 50", api.to_owned()),
        r("api: state=failure", format!("{api}?state=failure")),
        r(
            "api: state=success, 500",
            format!("{api}?state=success&limit=500"),
        ),
        r(
            "api: name (every task)",
            format!("{api}?name={}", enc(&common)),
        ),
        r("api: name (no task)", format!("{api}?name=zz-no-such-task")),
        r(
            "api: name (every task) + total",
            format!("{api}?name={}&include_total=true", enc(&common)),
        ),
        r(
            "api: state=failure + total",
            format!("{api}?state=failure&include_total=true"),
        ),
        r(
            "api: search task id",
            format!("{api}?search={}", enc(&task_id)),
        ),
        r("api: args (rare)", format!("{api}?args=10976")),
        r("api: queue", format!("{api}?queue=emails")),
        r("api: since 1 h", format!("{api}?since={}", enc(&hour_ago))),
        r("page: tasks", page.clone()),
        r("page: tasks state=failure", format!("{page}?state=failure")),
        r(
            "page: tasks name (no task)",
            format!("{page}?name=zz-no-such-task"),
        ),
        r(
            "page: tasks search task id",
            format!("{page}?search={}", enc(&task_id)),
        ),
        r("page: tasks args (rare)", format!("{page}?args=10976")),
        r(
            "page: task detail",
            format!("{page}/{}/{}", enc(&engine), enc(&task_id)),
        ),
        r("page: project overview", format!("/projects/{}", a.project)),
        r("page: home", "/home".to_owned()),
    ])
}

/// One GET with the operator's session; anything but 200 is an error.
async fn timed(target: &Target, op: &Operator, path: &str) -> Result<Duration, String> {
    let started = Instant::now();
    let (status, body) = op.get_text(target, path).await?;
    let took = started.elapsed();
    if status != 200 {
        let head: String = body.chars().take(300).collect();
        return Err(format!("GET {path}: {status} {head}"));
    }
    Ok(took)
}
