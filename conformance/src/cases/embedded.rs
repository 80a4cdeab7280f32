//! The embedded scheduler (scheduler spec §6): the brain runs
//! `<python> -m z4j_scheduler serve` as a supervised child. Most cases use
//! the suite's stand-in package (`conformance/python/standin`, put first on
//! `PYTHONPATH`), which records its start, arguments, environment, the
//! signals it gets and a heartbeat, and then exits, runs, or ignores
//! SIGTERM as told; one case runs the real z4j-scheduler 1.13.0.

use super::scheduler::{create, fired_jobs_run, RqWorker};
use super::{ensure, ensure_eq, owned, R};
use crate::agent::{self, Operator};
use crate::brain::{free_port, Brain};
use crate::runner::Ctx;
use crate::sched::{self, pb, Pki};
use serde_json::{json, Value as Json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Python's own start-up, between the brain's spawn and the stand-in's
/// first record (a generous bound on a busy two-core machine).
const STARTUP_SLACK: f64 = 0.6;

/// A stand-in's record log and the environment that points a brain at it.
struct Standin {
    _dir: tempfile::TempDir,
    log: PathBuf,
    marker: String,
}

impl Standin {
    fn new() -> Result<Standin, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let log = dir.path().join("standin.log");
        Ok(Standin {
            _dir: dir,
            log,
            marker: uuid::Uuid::new_v4().simple().to_string(),
        })
    }

    /// Embedded mode on the stand-in in `mode`, the gRPC port on loopback.
    fn env(&self, mode: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let standin = crate::python::scripts_dir().join("standin");
        let mut env = owned(&agent::admin_env());
        env.extend(owned(&[
            ("Z4J_ENVIRONMENT", "dev"),
            ("Z4J_EMBEDDED_SCHEDULER", "true"),
            ("Z4J_SCHEDULER_GRPC_BIND_HOST", "127.0.0.1"),
            ("Z4J_SCHEDULER_GRPC_BIND_PORT", "0"),
            ("PYTHONPATH", &standin.display().to_string()),
            ("Z4J_SCHEDULER_STANDIN_LOG", &self.log.display().to_string()),
            ("Z4J_SCHEDULER_STANDIN_MODE", mode),
            ("Z4J_SCHEDULER_STANDIN_MARKER", &self.marker),
        ]));
        // A later entry wins: the case's own choices.
        for (k, v) in owned(extra) {
            env.retain(|(e, _)| *e != k);
            env.push((k, v));
        }
        env
    }

    fn records(&self) -> Vec<Json> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    fn events(&self, event: &str) -> Vec<Json> {
        self.records()
            .into_iter()
            .filter(|r| r["event"] == event)
            .collect()
    }

    /// The last record of process `pid` (its last sign of life).
    fn last_of(&self, pid: i64) -> Option<f64> {
        self.records()
            .iter()
            .filter(|r| r["pid"].as_i64() == Some(pid))
            .filter_map(|r| r["t"].as_f64())
            .reduce(f64::max)
    }

    /// Waits until `n` records of `event` exist.
    async fn wait_for(&self, event: &str, n: usize, within: Duration) -> Result<Vec<Json>, String> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.events(event);
            if got.len() >= n {
                return Ok(got);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} {event:?} record(s) of the stand-in within {within:?}, expected {n}: {:?}",
                    got.len(),
                    self.records()
                        .iter()
                        .filter(|r| r["event"] != "beat")
                        .collect::<Vec<_>>()
                ));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The target feature: `GET /api/v1/schedulers` reports the supervisor as
/// `embedded: {state, exits, pid}` (a z4j-rs addition, decision Y10).
const SUPERVISOR_STATUS: &str = "embedded_supervisor_status";

/// The target feature: the interpreter of the embedded scheduler is
/// `Z4J_EMBEDDED_SCHEDULER_PYTHON`, checked at start-up (decision Y9; the
/// reference runs its own interpreter).
const PYTHON_SETTING: &str = "embedded_scheduler_python";

/// `GET /api/v1/schedulers` as the admin.
async fn fleet(brain: &Brain, op: &Operator) -> Result<Json, String> {
    let (st, body) = op.get(brain, "/api/v1/schedulers").await?;
    ensure_eq(st, 200, &format!("fleet page: {body}"))?;
    Ok(body)
}

/// Waits until the fleet page reports the supervisor in `state`: its
/// `embedded` object, or `None` for a target that does not claim the
/// `embedded_supervisor_status` feature (the reference reports no state).
async fn wait_state(
    ctx: &Ctx,
    brain: &Brain,
    op: &Operator,
    state: &str,
    within: Duration,
) -> Result<Option<Json>, String> {
    if !ctx.target.has(SUPERVISOR_STATUS) {
        return Ok(None);
    }
    let deadline = Instant::now() + within;
    loop {
        let f = fleet(brain, op).await?;
        if f["embedded"]["state"] == state {
            return Ok(Some(f["embedded"].clone()));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the supervisor never reported {state:?} within {within:?}: {}",
                f["embedded"]
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The fleet page `f` shows the supervisor `running` (on targets that
/// report it).
fn supervisor_running(ctx: &Ctx, f: &Json) -> R {
    if ctx.target.has(SUPERVISOR_STATUS) {
        ensure_eq(
            f["embedded"]["state"].as_str(),
            Some("running"),
            "supervisor state",
        )?;
    }
    Ok(())
}

fn env_of(start: &Json, name: &str) -> Option<String> {
    start["env"][name].as_str().map(str::to_owned)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}

/// The gRPC port the child was told (`127.0.0.1:<port>`).
fn grpc_port_of(start: &Json) -> Result<u16, String> {
    env_of(start, "Z4J_SCHEDULER_BRAIN_GRPC_URL")
        .and_then(|u| u.strip_prefix("127.0.0.1:").and_then(|p| p.parse().ok()))
        .filter(|p| *p > 0)
        .ok_or_else(|| {
            format!(
                "Z4J_SCHEDULER_BRAIN_GRPC_URL of the child: {}",
                start["env"]
            )
        })
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// The child of a default embedded brain: `-m z4j_scheduler serve` by
/// `python3` from PATH, its environment filtered to the documented names
/// with the documented defaults and the brain's wiring, a loopback PKI
/// minted into `~/.z4j/embedded-pki` (0700, files 0600) on which the gRPC
/// server admits the scheduler-embedded certificate although the operator
/// listed another name and configured other TLS files; its output re-logged
/// with key material redacted; SIGTERM at shutdown, and a child that obeys
/// it ends the brain well inside the grace window.
pub async fn spawn(ctx: Arc<Ctx>) -> R {
    let s = Standin::new()?;
    let junk = tempfile::tempdir().map_err(|e| e.to_string())?;
    let other_pki = Pki::new(junk.path())?;
    let env = s.env(
        "run",
        &[
            ("LC_STANDIN", "kept"),
            ("STANDIN_PRIVATE", "must-not-pass"),
            ("Z4J_SCHEDULER_GRPC_ALLOWED_CNS", r#"["someone-else"]"#),
            ("Z4J_SCHEDULER_GRPC_TLS_CERT", &other_pki.path("server.crt")),
            ("Z4J_SCHEDULER_GRPC_TLS_KEY", &other_pki.path("server.key")),
            ("Z4J_SCHEDULER_GRPC_TLS_CA", &other_pki.path("ca.crt")),
        ],
    );
    let mut brain = ctx.start_env(env, None).await?;
    let op = agent::login(&brain).await?;
    let start = s.wait_for("start", 1, ctx.scaled(20.0)).await?.remove(0);
    ensure_eq(
        start["argv"].clone(),
        json!(["serve"]),
        "the child's argv after -m z4j_scheduler",
    )?;
    // Filtered: the documented names pass, nothing else of the brain's.
    for (name, want) in [
        ("LC_STANDIN", Some("kept".to_owned())),
        ("STANDIN_PRIVATE", None),
        ("Z4J_BOOTSTRAP_ADMIN_PASSWORD", None),
        ("Z4J_ENVIRONMENT", None),
        ("Z4J_DATABASE_URL", None),
        ("Z4J_SECRET", None),
        ("HOME", Some(brain.home.display().to_string())),
        ("Z4J_SCHEDULER_STANDIN_MARKER", Some(s.marker.clone())),
        // Defaults the operator could have set.
        ("Z4J_SCHEDULER_ENVIRONMENT", Some("dev".to_owned())),
        ("Z4J_SCHEDULER_BIND_HOST", Some("127.0.0.1".to_owned())),
        (
            "Z4J_SCHEDULER_INSTANCE_ID",
            Some(format!("{}-embedded", hostname())),
        ),
        // The brain's wiring.
        ("Z4J_SCHEDULER_BRAIN_REST_URL", Some(brain.base_url.clone())),
        ("Z4J_SCHEDULER_LEADER_BACKEND", Some("single".to_owned())),
    ] {
        ensure_eq(
            env_of(&start, name),
            want,
            &format!("{name} in the child's environment"),
        )?;
    }
    ensure(
        start["env"]["PATH"].is_string(),
        "PATH is passed to the child",
    )?;
    let port = grpc_port_of(&start)?;
    // The PKI, in the documented default directory.
    let pki_dir = brain.home.join(".z4j").join("embedded-pki");
    ensure_eq(
        super::file_mode(&pki_dir),
        Some(0o700),
        "embedded-pki directory mode",
    )?;
    let files = [
        ("Z4J_SCHEDULER_TLS_CERT", "scheduler-embedded.crt"),
        ("Z4J_SCHEDULER_TLS_KEY", "scheduler-embedded.key"),
        ("Z4J_SCHEDULER_TLS_CA", "ca.crt"),
    ];
    for (var, file) in files {
        let path = pki_dir.join(file);
        ensure_eq(
            env_of(&start, var),
            Some(path.display().to_string()),
            &format!("{var} of the child"),
        )?;
        ensure_eq(
            super::file_mode(&path),
            Some(0o600),
            &format!("{file} mode"),
        )?;
    }
    for file in ["brain-embedded.crt", "brain-embedded.key"] {
        ensure_eq(
            super::file_mode(&pki_dir.join(file)),
            Some(0o600),
            &format!("{file} mode"),
        )?;
    }
    // The gRPC server runs on that PKI and admits the embedded certificate
    // only: the operator's allow-list and TLS files were replaced.
    let ca = read(&pki_dir.join("ca.crt"))?;
    let identity = (
        read(&pki_dir.join("scheduler-embedded.crt"))?,
        read(&pki_dir.join("scheduler-embedded.key"))?,
    );
    let mut client = sched::mtls_pem(port, &ca, Some(identity)).await?;
    let ping = client
        .ping(pb::PingRequest {})
        .await
        .map_err(|e| format!("Ping with the scheduler-embedded certificate: {e}"))?
        .into_inner();
    if ping.scheduler_protocol_epoch != 0 {
        ctx.fail_clause(
            "scheduler.legacy-protocol",
            format!(
                "Ping epoch over the embedded PKI: {}, want 0",
                ping.scheduler_protocol_epoch
            ),
        );
    }
    let outsider = other_pki.client("someone-else")?;
    let refused = match sched::mtls_pem(port, &ca, Some(outsider)).await {
        Err(_) => true,
        Ok(mut c) => c.ping(pb::PingRequest {}).await.is_err(),
    };
    ensure(
        refused,
        "a certificate of the operator's CA was admitted in embedded mode",
    )?;
    // The child's output is in the brain's log; key material is not.
    let deadline = Instant::now() + ctx.scaled(5.0);
    while !brain
        .output()
        .contains(&format!("standin hello {}", s.marker))
    {
        if Instant::now() > deadline {
            return Err(format!(
                "the child's stdout line is not in the brain's output:\n{}",
                brain.output()
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ensure(
        !brain
            .output()
            .contains(&format!("standin-secret-{}", s.marker)),
        "a line with a PEM private-key marker was re-logged unredacted",
    )?;
    // The fleet page probes the embedded scheduler's default ops URL.
    let f = fleet(&brain, &op).await?;
    ensure_eq(
        f["schedulers"][0]["url"].as_str(),
        Some("http://127.0.0.1:7800"),
        "fleet URL in embedded mode with no Z4J_SCHEDULER_INFO_URLS",
    )?;
    ensure_eq(f["total"].as_i64(), Some(1), "fleet size")?;
    supervisor_running(&ctx, &f)?;
    if ctx.target.has(SUPERVISOR_STATUS) {
        ensure_eq(
            f["embedded"]["pid"].as_i64(),
            start["pid"].as_i64(),
            "supervised pid",
        )?;
    }
    // SIGTERM reaches the child; one that obeys ends the brain at once.
    let t0 = now();
    brain.signal(libc::SIGTERM);
    let code = brain.wait_exit(ctx.scaled(8.0)).await;
    ensure(
        code.is_some(),
        "the brain was still running 8 s after SIGTERM",
    )?;
    if code != Some(0) {
        ctx.fail_clause(
            "server.graceful-shutdown",
            format!("exit status after SIGTERM with an obedient embedded child: {code:?}, want 0"),
        );
    }
    let term = s.wait_for("term", 1, Duration::from_secs(1)).await?;
    let waited = term[0]["t"].as_f64().unwrap_or(0.0) - t0;
    ensure(
        (0.0..5.0).contains(&waited),
        format!("the child got SIGTERM {waited:.2} s after the brain did"),
    )?;
    Ok(())
}

/// `Z4J_EMBEDDED_SCHEDULER_PKI_DIR` set: the PKI is minted there (an
/// existing 0755 directory made 0700, a stale file overwritten) and not in
/// the default directory.
pub async fn pki_dir(ctx: Arc<Ctx>) -> R {
    use std::os::unix::fs::PermissionsExt;
    let s = Standin::new()?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let pki = dir.path().join("pki");
    std::fs::create_dir(&pki).map_err(|e| e.to_string())?;
    std::fs::set_permissions(&pki, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| e.to_string())?;
    std::fs::write(pki.join("ca.crt"), "stale").map_err(|e| e.to_string())?;
    let pki_text = pki.display().to_string();
    let brain = ctx
        .start_env(
            s.env("run", &[("Z4J_EMBEDDED_SCHEDULER_PKI_DIR", &pki_text)]),
            None,
        )
        .await?;
    let start = s.wait_for("start", 1, ctx.scaled(20.0)).await?.remove(0);
    ensure_eq(
        super::file_mode(&pki),
        Some(0o700),
        "configured PKI directory mode",
    )?;
    ensure(
        read(&pki.join("ca.crt"))?.contains("BEGIN CERTIFICATE"),
        "the stale ca.crt was not replaced",
    )?;
    ensure_eq(
        env_of(&start, "Z4J_SCHEDULER_TLS_CA"),
        Some(pki.join("ca.crt").display().to_string()),
        "the child's CA path",
    )?;
    ensure(
        !brain.home.join(".z4j").join("embedded-pki").exists(),
        "the default PKI directory was created although another was configured",
    )?;
    Ok(())
}

/// Configuration the embedded scheduler cannot run with stops start-up
/// with a line naming the variable (decision Y9): an argv other than
/// ["serve"], a bare string, a PKI directory under /etc, an interpreter
/// that does not exist or cannot import z4j_scheduler, and values outside
/// the documented ranges (the range ends start). Unset, embedded mode is
/// off: no child.
pub async fn refusals(ctx: Arc<Ctx>) -> R {
    let s = Standin::new()?;
    let cases: &[(&str, &str, &str)] = &[
        (
            "Z4J_EMBEDDED_SCHEDULER_ARGV",
            r#"["serve","--log-level=DEBUG"]"#,
            "--log-level=DEBUG",
        ),
        (
            "Z4J_EMBEDDED_SCHEDULER_ARGV",
            "serve",
            "Z4J_EMBEDDED_SCHEDULER_ARGV",
        ),
        (
            "Z4J_EMBEDDED_SCHEDULER_ARGV",
            "[]",
            "Z4J_EMBEDDED_SCHEDULER_ARGV",
        ),
        (
            "Z4J_EMBEDDED_SCHEDULER_PKI_DIR",
            "/etc/z4j-embedded-pki",
            "/etc",
        ),
        (
            "Z4J_EMBEDDED_SCHEDULER_PYTHON",
            "/nonexistent/python3",
            "/nonexistent/python3",
        ),
        (
            "Z4J_EMBEDDED_SCHEDULER_PYTHON",
            "/bin/false",
            "cannot import z4j_scheduler",
        ),
        (
            "Z4J_EMBEDDED_SCHEDULER_RESTART_BACKOFF_SECONDS",
            "0.09",
            "Z4J_EMBEDDED_SCHEDULER_RESTART_BACKOFF_SECONDS",
        ),
        (
            "Z4J_EMBEDDED_SCHEDULER_RESTART_BACKOFF_SECONDS",
            "60.1",
            "Z4J_EMBEDDED_SCHEDULER_RESTART_BACKOFF_SECONDS",
        ),
        (
            "Z4J_EMBEDDED_SCHEDULER_SHUTDOWN_GRACE_SECONDS",
            "0.4",
            "Z4J_EMBEDDED_SCHEDULER_SHUTDOWN_GRACE_SECONDS",
        ),
        (
            "Z4J_EMBEDDED_SCHEDULER_RESTART_MAX_ATTEMPTS",
            "-1",
            "Z4J_EMBEDDED_SCHEDULER_RESTART_MAX_ATTEMPTS",
        ),
        (
            "Z4J_EMBEDDED_SCHEDULER_RESTART_MAX_ATTEMPTS",
            "10001",
            "Z4J_EMBEDDED_SCHEDULER_RESTART_MAX_ATTEMPTS",
        ),
    ];
    for (var, value, needle) in cases {
        let mut spec = crate::runner::spec(&[]);
        spec.env = s.env("run", &[(var, value)]);
        spec.expect_exit = true;
        // The interpreter setting is a z4j-rs variable (spec §6.3).
        let clause = if *var == "Z4J_EMBEDDED_SCHEDULER_PYTHON" {
            if !ctx.target.has(PYTHON_SETTING) {
                continue;
            }
            "scheduler.embedded"
        } else {
            var
        };
        let before = s.events("start").len();
        let mut brain = ctx.start_spec(spec).await?;
        let code = brain.wait_exit(ctx.scaled(30.0)).await;
        let out = brain.output();
        drop(brain);
        if !matches!(code, Some(c) if c != 0) {
            ctx.fail_clause(
                clause,
                format!("{var}={value}: start-up went on (exit {code:?})\n{out}"),
            );
        } else if !(out.contains(var) && out.contains(needle)) {
            ctx.fail_clause(
                clause,
                format!("{var}={value}: the refusal does not name {var} and {needle:?}: {out}"),
            );
        } else if s.events("start").len() > before {
            ctx.fail_clause(
                clause,
                format!("{var}={value}: a child was started by a brain that refused to start"),
            );
        }
    }
    // Off by default: the stand-in is importable, yet nothing starts it
    // and the fleet page has no supervisor to show.
    let mut off = s.env("run", &[]);
    off.retain(|(k, _)| k != "Z4J_EMBEDDED_SCHEDULER");
    let before = s.events("start").len();
    let brain = ctx.start_env(off, None).await?;
    let op = agent::login(&brain).await?;
    tokio::time::sleep(ctx.scaled(2.0)).await;
    ensure(
        s.events("start").len() == before,
        "a child was started with Z4J_EMBEDDED_SCHEDULER unset",
    )?;
    let f = fleet(&brain, &op).await?;
    ensure_eq(
        f["embedded"].clone(),
        Json::Null,
        "fleet page of a brain without embedded mode",
    )?;
    ensure_eq(
        f["total"].as_i64(),
        Some(0),
        "fleet size without embedded mode or URLs",
    )?;
    drop(brain);
    // The range ends themselves are accepted.
    for (var, value) in [
        ("Z4J_EMBEDDED_SCHEDULER_RESTART_BACKOFF_SECONDS", "0.1"),
        ("Z4J_EMBEDDED_SCHEDULER_SHUTDOWN_GRACE_SECONDS", "0.5"),
        ("Z4J_EMBEDDED_SCHEDULER_RESTART_MAX_ATTEMPTS", "10000"),
    ] {
        let mut brain = ctx.start_env(s.env("run", &[(var, value)]), None).await?;
        brain.stop().await;
    }
    Ok(())
}

/// Exit→start gaps of consecutive children, in seconds.
fn gaps(s: &Standin) -> Vec<f64> {
    let starts = s.events("start");
    let exits = s.events("exit");
    exits
        .iter()
        .zip(starts.iter().skip(1))
        .map(|(e, st)| st["t"].as_f64().unwrap_or(0.0) - e["t"].as_f64().unwrap_or(0.0))
        .collect()
}

/// Each gap within `min(60, nominal) × [0.7, 1.3]`, at most 60 s, the
/// upper end widened by Python's start-up and the timing tolerance.
fn check_gaps(ctx: &Ctx, got: &[f64], nominal: &[f64]) -> R {
    for (i, (g, n)) in got.iter().zip(nominal).enumerate() {
        // Capped before the jitter, and the jittered delay capped again.
        let capped = n.min(60.0);
        let lo = capped * 0.7 - 0.05;
        let hi = (capped * 1.3).min(60.0) + STARTUP_SLACK * ctx.tolerance;
        ensure(
            (lo..=hi).contains(g),
            format!(
                "restart {} came {g:.2} s after the exit; documented {n} s ±30 % (accepted {lo:.2}..{hi:.2}); all gaps {got:.2?}",
                i + 1
            ),
        )?;
    }
    Ok(())
}

/// A child that keeps exiting, with the default backoff (2 s) and two
/// attempts: restarted after 2 s and 4 s (±30 %, exit 0 counted as a
/// crash), and then, the attempts used up, never again — the supervisor
/// says `failed`.
pub async fn restart_backoff_default(ctx: Arc<Ctx>) -> R {
    let s = Standin::new()?;
    let brain = ctx
        .start_env(
            s.env(
                "exit",
                &[("Z4J_EMBEDDED_SCHEDULER_RESTART_MAX_ATTEMPTS", "2")],
            ),
            None,
        )
        .await?;
    let op = agent::login(&brain).await?;
    s.wait_for("exit", 3, ctx.scaled(2.6 + 5.2 + 3.0 * STARTUP_SLACK + 5.0))
        .await?;
    check_gaps(&ctx, &gaps(&s), &[2.0, 4.0])?;
    // A third restart would have come within 8 s × 1.3.
    gave_up(&ctx, &brain, &op, &s, 3, "two restart attempts").await
}

/// The supervisor has given up after `exits` exits: it says `failed` with
/// that count (where the target reports it) and starts no further child.
async fn gave_up(
    ctx: &Ctx,
    brain: &Brain,
    op: &agent::Operator,
    s: &Standin,
    exits: usize,
    attempts: &str,
) -> R {
    if let Some(e) = wait_state(ctx, brain, op, "failed", ctx.scaled(2.0)).await? {
        ensure_eq(
            e["exits"].as_i64(),
            Some(exits as i64),
            "exits counted by the supervisor",
        )?;
    }
    tokio::time::sleep(ctx.scaled(2.0)).await;
    ensure_eq(
        s.events("start").len(),
        exits,
        &format!("children started with {attempts}"),
    )
}

/// `Z4J_EMBEDDED_SCHEDULER_RESTART_MAX_ATTEMPTS=0`: the child is never
/// restarted.
pub async fn max_attempts_zero(ctx: Arc<Ctx>) -> R {
    let s = Standin::new()?;
    let brain = ctx
        .start_env(
            s.env(
                "exit",
                &[
                    ("Z4J_EMBEDDED_SCHEDULER_RESTART_MAX_ATTEMPTS", "0"),
                    ("Z4J_EMBEDDED_SCHEDULER_RESTART_BACKOFF_SECONDS", "0.2"),
                ],
            ),
            None,
        )
        .await?;
    let op = agent::login(&brain).await?;
    s.wait_for("exit", 1, ctx.scaled(20.0)).await?;
    wait_state(&ctx, &brain, &op, "failed", ctx.scaled(2.0)).await?;
    tokio::time::sleep(ctx.scaled(0.26 + STARTUP_SLACK + 1.0)).await;
    ensure_eq(
        s.events("start").len(),
        1,
        "children started with no restart attempts",
    )?;
    Ok(())
}

/// The default of 10 attempts, with a 0.1 s base: ten restarts after
/// 0.1·2ⁿ s each (±30 %), the eleventh never; and the ±30 % jitter is
/// there: over the five longest gaps the ratios to nominal are not all
/// within 5 % of each other (a jittered supervisor does that with
/// probability 2·10⁻⁴).
pub async fn max_attempts_default(ctx: Arc<Ctx>) -> R {
    let s = Standin::new()?;
    let brain = ctx
        .start_env(
            s.env(
                "exit",
                &[("Z4J_EMBEDDED_SCHEDULER_RESTART_BACKOFF_SECONDS", "0.1")],
            ),
            None,
        )
        .await?;
    let op = agent::login(&brain).await?;
    let nominal: Vec<f64> = (0..10).map(|n| 0.1 * f64::from(1u32 << n)).collect();
    let total: f64 = nominal.iter().map(|n| n * 1.3).sum::<f64>() + 11.0 * STARTUP_SLACK;
    s.wait_for("exit", 11, ctx.scaled(total + 10.0)).await?;
    let got = gaps(&s);
    check_gaps(&ctx, &got, &nominal)?;
    gave_up(&ctx, &brain, &op, &s, 11, "the default 10 attempts").await?;
    let ratios: Vec<f64> = got[5..]
        .iter()
        .zip(&nominal[5..])
        .map(|(g, n)| g / n)
        .collect();
    let spread = ratios.iter().copied().fold(f64::MIN, f64::max)
        - ratios.iter().copied().fold(f64::MAX, f64::min);
    ensure(
        spread > 0.05,
        format!("no jitter: the longest gaps are {ratios:.3?} × nominal"),
    )
}

/// The 60 s cap: with the largest base (60 s) both restarts come within
/// [42, 60] s — capped after the jitter too, and not doubled to 120 s.
pub async fn backoff_cap(ctx: Arc<Ctx>) -> R {
    let s = Standin::new()?;
    let _brain = ctx
        .start_env(
            s.env(
                "exit",
                &[
                    ("Z4J_EMBEDDED_SCHEDULER_RESTART_BACKOFF_SECONDS", "60"),
                    ("Z4J_EMBEDDED_SCHEDULER_RESTART_MAX_ATTEMPTS", "2"),
                ],
            ),
            None,
        )
        .await?;
    s.wait_for("exit", 3, ctx.scaled(120.0 + 3.0 * STARTUP_SLACK + 10.0))
        .await?;
    check_gaps(&ctx, &gaps(&s), &[60.0, 120.0])
}

/// A child that ignores SIGTERM is killed once the grace window is over:
/// at the default 10 s and at a configured 1 s, each with a lower and an
/// upper bound; the brain then exits.
pub async fn shutdown_grace(ctx: Arc<Ctx>) -> R {
    for (grace, set) in [(10.0, None), (1.0, Some("1"))] {
        let s = Standin::new()?;
        let extra: Vec<(&str, &str)> = set
            .map(|v| vec![("Z4J_EMBEDDED_SCHEDULER_SHUTDOWN_GRACE_SECONDS", v)])
            .unwrap_or_default();
        let mut brain = ctx.start_env(s.env("stubborn", &extra), None).await?;
        let start = s.wait_for("start", 1, ctx.scaled(20.0)).await?.remove(0);
        let pid = start["pid"].as_i64().unwrap_or(0);
        s.wait_for("beat", 1, ctx.scaled(5.0)).await?;
        brain.signal(libc::SIGTERM);
        let term = s.wait_for("term", 1, ctx.scaled(5.0)).await?;
        let t_term = term[0]["t"].as_f64().unwrap_or(0.0);
        let code = brain.wait_exit(ctx.scaled(grace + 5.0 + 10.0)).await;
        let lived = s.last_of(pid).unwrap_or(0.0) - t_term;
        // The heartbeat is every 50 ms: the last one is up to that early.
        let (lo, hi) = (grace - 0.15, grace + 0.5 * ctx.tolerance);
        ensure(
            (lo..=hi).contains(&lived),
            format!("the stubborn child lived {lived:.2} s after SIGTERM; grace {grace} s (accepted {lo:.2}..{hi:.2})"),
        )?;
        // A clean exit is the graceful-shutdown clause's (-1: ended by a
        // signal rather than exiting).
        if code != Some(0) {
            ctx.fail_clause(
                "server.graceful-shutdown",
                format!("brain exit status after SIGTERM with an embedded child (grace {grace} s): {code:?}, want 0"),
            );
        }
    }
    Ok(())
}

/// The child runs in its own process group and does not outlive a brain
/// killed outright (decision Y10): it gets SIGTERM at once.
pub async fn orphan(ctx: Arc<Ctx>) -> R {
    let s = Standin::new()?;
    let mut brain = ctx
        .start_env(
            s.env("run", &[("Z4J_SCHEDULER_STANDIN_ORPHAN_EXIT", "0")]),
            None,
        )
        .await?;
    let start = s.wait_for("start", 1, ctx.scaled(20.0)).await?.remove(0);
    let pid = start["pid"].as_i64().unwrap_or(0);
    ensure_eq(
        start["pgid"].as_i64(),
        Some(pid),
        "the child leads its own process group",
    )?;
    let t0 = now();
    brain.kill();
    let got = s.wait_for("term", 1, ctx.scaled(3.0)).await;
    // Never leave a stand-in behind, whatever happened.
    // SAFETY: signalling the stand-in this case caused to be started.
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
    }
    let term = got?;
    let after = term[0]["t"].as_f64().unwrap_or(0.0) - t0;
    ensure(
        after < 2.0 * ctx.tolerance,
        format!("the child learnt of the brain's death {after:.2} s later"),
    )
}

/// Two replicas on one PostgreSQL database: one supervises the child, the
/// other stands by; when the supervising replica is killed, the standby
/// starts its own child within its 5 s retry (decision Y10).
pub async fn standby(ctx: Arc<Ctx>) -> R {
    let s = Standin::new()?;
    let (db_env, _) = ctx.pinned_database().await?;
    let mut env = s.env("run", &[]);
    env.extend(db_env);
    let first = ctx.start_env(env.clone(), None).await?;
    let starts = s.wait_for("start", 1, ctx.scaled(20.0)).await?;
    let second = ctx.start_env(env, None).await?;
    let op2 = agent::login(&second).await?;
    wait_state(&ctx, &second, &op2, "standby", ctx.scaled(5.0)).await?;
    tokio::time::sleep(Duration::from_secs(6)).await;
    ensure_eq(
        s.events("start").len(),
        1,
        "children of two replicas while both run",
    )?;
    ensure_eq(
        starts[0]["ppid"].as_u64(),
        first.pid().map(u64::from),
        "the first replica supervises",
    )?;
    let t0 = now();
    let _home = first.kill_keep_home().await;
    let next = s
        .wait_for("start", 2, ctx.scaled(5.0 + STARTUP_SLACK + 3.0))
        .await?;
    let took = next[1]["t"].as_f64().unwrap_or(0.0) - t0;
    ensure(
        took <= (5.0 + STARTUP_SLACK) * ctx.tolerance + 1.0,
        format!("the standby took over after {took:.2} s"),
    )?;
    ensure_eq(
        next[1]["ppid"].as_u64(),
        second.pid().map(u64::from),
        "the second replica supervises",
    )?;
    wait_state(&ctx, &second, &op2, "running", ctx.scaled(2.0)).await?;
    Ok(())
}

/// The real z4j-scheduler 1.13.0 as the embedded child (the suite's
/// virtualenv interpreter): it connects over the minted mTLS, the fleet
/// page sees it, and an interval schedule created through the REST API is
/// fired to a real RQ worker whose job runs.
pub async fn real_scheduler(ctx: Arc<Ctx>) -> R {
    if !crate::python::redis_available().await {
        return Err("Redis is not listening on 127.0.0.1:6379 (the RQ worker needs it)".into());
    }
    let python = crate::python::python().await?.display().to_string();
    let ops_port = free_port().to_string();
    let info = format!(r#"["http://127.0.0.1:{ops_port}"]"#);
    let mut env = owned(&agent::admin_env());
    env.extend(owned(&[
        ("Z4J_ENVIRONMENT", "dev"),
        ("Z4J_EMBEDDED_SCHEDULER", "true"),
        ("Z4J_EMBEDDED_SCHEDULER_PYTHON", &python),
        ("Z4J_SCHEDULER_GRPC_BIND_HOST", "127.0.0.1"),
        ("Z4J_SCHEDULER_GRPC_BIND_PORT", "0"),
        ("Z4J_SCHEDULER_GRPC_WATCH_POLL_SECONDS", "0.5"),
        ("Z4J_SCHEDULER_INFO_URLS", &info),
        // The scheduler's own settings reach it through the brain.
        ("Z4J_SCHEDULER_BIND_PORT", &ops_port),
        ("Z4J_SCHEDULER_LOG_JSON", "false"),
    ]));
    let mut brain = ctx.start_env(env, None).await?;
    let op = agent::login(&brain).await?;
    let deadline = Instant::now() + ctx.scaled(60.0);
    loop {
        let f = fleet(&brain, &op).await?;
        if f["healthy"] == 1 && f["schedulers"][0]["info"]["ready"] == true {
            supervisor_running(&ctx, &f)?;
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the embedded z4j-scheduler never answered /info ready: {f}\n{}",
                brain.output()
            ));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let worker = RqWorker::start(&ctx, &brain, &op).await?;
    let id = create(
        &brain,
        &op,
        "embedded-interop",
        json!({"expression": "2s", "task_name": "rq_jobs.add", "args": [4, 5], "kwargs": {}, "queue": worker.queue}),
    )
    .await?;
    let context = |what: String| {
        format!(
            "{what}\nbrain output (the scheduler's lines included):\n{}\nworker output:\n{}",
            brain.output(),
            worker.proc.output().join("\n")
        )
    };
    fired_jobs_run(&ctx, &brain, &op, &id, &context).await?;
    let code = brain.stop().await;
    ensure_eq(code, Some(0), "brain exit status with the real scheduler")?;
    // The supervisor's own account of the stop (its log line) is part of
    // the same z4j-rs reporting.
    if ctx.target.has(SUPERVISOR_STATUS) {
        ensure(
            brain.output().contains("embedded scheduler: SIGTERM"),
            "the brain did not stop its child",
        )?;
    }
    worker.proc.stop().await;
    Ok(())
}
