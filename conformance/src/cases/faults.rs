//! Faults a production brain meets: its SQLite filesystem filling up.
//! Nothing acknowledged may be lost, and the brain recovers by itself.

use super::{ensure, ensure_eq, R};
use crate::agent::{self, task_event};
use crate::brain::{Home, StartSpec};
use crate::runner::{owned, Ctx};
use serde_json::json;
use sqlx::Connection;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A tmpfs mounted for the case, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(at).map_err(|e| e.to_string())?;
        let out = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        ensure(
            out.status.success(),
            format!(
                "cannot mount a {size} tmpfs at {} (the case needs root): {}",
                at.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        )?;
        Ok(Tmpfs(at.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Writes zeros into `path` until the filesystem is full.
fn fill(path: &Path) -> Result<u64, String> {
    use std::io::Write;
    let mut f = std::fs::File::create(path).map_err(|e| e.to_string())?;
    let mut written = 0u64;
    for size in [1 << 20, 4096, 512] {
        let block = vec![0u8; size];
        while f.write_all(&block).and_then(|()| f.sync_data()).is_ok() {
            written += size as u64;
        }
    }
    Ok(written)
}

const BATCH: usize = 20;

fn batch(name: &str) -> Vec<serde_json::Value> {
    (0..BATCH)
        .map(|j| {
            task_event(
                &format!("{name}-{j}"),
                "task.received",
                json!({"task_name": "jobs.fill", "blob": "y".repeat(4000)}),
            )
        })
        .collect()
}

/// SQLite on a full filesystem (a 16 MiB tmpfs as `~/.z4j`): a batch that
/// cannot be stored is not acknowledged (neither accepted nor rejected),
/// reads and health keep answering, the same batch is stored once the space
/// is freed, every acknowledged event is there exactly once, and the
/// database passes `PRAGMA integrity_check`.
pub async fn sqlite_disk_full(ctx: Arc<Ctx>) -> R {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let z4j = dir.path().join(".z4j");
    let mount = Tmpfs::mount(&z4j, "16m")?;
    let mut env = agent::admin_env();
    env.push(("Z4J_LOGIN_MIN_DURATION_MS", "0"));
    let mut brain = ctx
        .start_spec(StartSpec {
            env: owned(&env),
            home: Some(Home::at(dir.path().to_path_buf())),
            ..StartSpec::default()
        })
        .await?;
    let op = agent::login(&brain).await?;
    let creds = op.mint(&brain, "filler").await?;
    let mut s = agent::connect(&brain, &creds, Some("w")).await?;
    let mut acked = Vec::new();
    for i in 0..3 {
        let name = format!("ok{i}");
        s.send_events(&name, &batch(&name)).await?;
        s.expect_ack(&name, Duration::from_secs(15)).await?;
        acked.push(name);
    }
    let ballast = z4j.join("ballast");
    fill(&ballast)?;
    // Batches until one is refused: SQLite may still reuse pages it holds.
    let mut refused = None;
    for i in 0..200 {
        let name = format!("full{i}");
        s.send_events(&name, &batch(&name)).await?;
        match s.expect_ack(&name, Duration::from_secs(5)).await {
            Ok(ack) => {
                ensure_eq(
                    (ack["accepted"].as_i64(), ack["rejected"].as_i64()),
                    (Some(BATCH as i64), Some(0)),
                    &format!("ack of {name} on a full disk: {ack}"),
                )?;
                acked.push(name);
            }
            Err(_) => {
                refused = Some(name);
                break;
            }
        }
    }
    let Some(refused) = refused else {
        return Err("200 batches of 80 KB were acknowledged on a full 16 MiB filesystem".into());
    };
    let (status, _) = op
        .get(&brain, "/api/v1/projects/default/tasks?limit=5")
        .await?;
    ensure_eq(status, 200, "the task list while the disk is full")?;
    let (status, _) = op.get(&brain, "/api/v1/health").await?;
    ensure_eq(status, 200, "health while the disk is full")?;
    std::fs::remove_file(&ballast).map_err(|e| e.to_string())?;
    // The agent sends the unacknowledged batch again.
    let mut stored = false;
    for _ in 0..10 {
        s.send_events(&refused, &batch(&refused)).await?;
        if let Ok(ack) = s.expect_ack(&refused, Duration::from_secs(5)).await {
            ensure_eq(
                ack["accepted"].as_i64(),
                Some(BATCH as i64),
                &format!("the re-sent batch {refused} once space is free: {ack}"),
            )?;
            stored = true;
            break;
        }
    }
    ensure(
        stored,
        format!("{refused} never stored after the space was freed"),
    )?;
    acked.push(refused);
    ensure_eq(
        op.task_total(&brain).await?,
        Some((acked.len() * BATCH) as i64),
        &format!("tasks stored for the {} acknowledged batches", acked.len()),
    )?;
    for name in [&acked[0], acked.last().unwrap_or(&acked[0])] {
        let (_, events) = op
            .get(
                &brain,
                &format!("/api/v1/projects/default/events?engine=rq&task_id={name}-0"),
            )
            .await?;
        ensure_eq(
            events["items"].as_array().map(Vec::len),
            Some(1),
            &format!("events of {name}-0"),
        )?;
    }
    drop(s);
    brain.stop().await;
    let url = format!("sqlite://{}", z4j.join("z4j.db").display());
    let mut c = sqlx::SqliteConnection::connect(&url)
        .await
        .map_err(|e| e.to_string())?;
    let check: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_all(&mut c)
        .await
        .map_err(|e| e.to_string())?;
    let _ = c.close().await;
    drop(mount);
    ensure_eq(check, vec!["ok".to_owned()], "PRAGMA integrity_check")
}

/// PostgreSQL unreachable at start-up: the brain exits non-zero at once
/// (a refused port answers at once, well inside the 10 s connect timeout)
/// with one line naming the address and the cause.
pub async fn postgres_unreachable(ctx: Arc<Ctx>) -> R {
    let port = crate::brain::free_port();
    let url = format!("postgresql+asyncpg://z4j@127.0.0.1:{port}/z4j");
    let started = std::time::Instant::now();
    let (code, err, _b) = super::expect_refusal(
        &ctx,
        &[
            ("Z4J_DATABASE_URL", &url),
            (
                "Z4J_SECRET",
                "conformance-unreachable-secret-0123456789abcdef",
            ),
            (
                "Z4J_SESSION_SECRET",
                "conformance-unreachable-session-0123456789abcdef",
            ),
        ],
    )
    .await?;
    let took = started.elapsed();
    ensure(code != 0, "exit 0 with PostgreSQL unreachable")?;
    let line = err
        .lines()
        .find(|l| l.contains(&format!("127.0.0.1:{port}")))
        .ok_or_else(|| format!("no line names 127.0.0.1:{port}: {err}"))?;
    ensure(
        line.to_lowercase().contains("refused"),
        format!("the line does not say the connection was refused: {line}"),
    )?;
    ensure(
        took < ctx.scaled(8.0),
        format!("a refused connection took {took:?} to report (the connect timeout is 10 s)"),
    )
}

/// A PostgreSQL cluster of the case's own (the shared server cannot be
/// restarted under a parallel suite): `initdb` into a temporary directory,
/// run as `postgres` when the suite runs as root; stopped when dropped.
struct PrivatePg {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
}

impl PrivatePg {
    fn run(&self, tool: &str, args: &[&str]) -> Result<(), String> {
        run_pg(&self.bin, tool, args)
    }

    fn start(&self) -> Result<(), String> {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.data.display()
        );
        let log = self.data.join("server.log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data.display().to_string(),
                "-o",
                &opts,
                "-l",
                &log.display().to_string(),
                "-w",
                "start",
            ],
        )
    }

    fn stop(&self) -> Result<(), String> {
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data.display().to_string(),
                "-m",
                "fast",
                "-w",
                "stop",
            ],
        )
    }

    fn create() -> Result<PrivatePg, String> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .map_err(|e| format!("no PostgreSQL server binaries under /usr/lib/postgresql: {e}"))?
            .filter_map(Result::ok)
            .map(|d| d.path().join("bin"))
            .find(|b| b.join("initdb").exists())
            .ok_or("no initdb under /usr/lib/postgresql/*/bin")?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let data = dir.path().join("data");
        if as_root() {
            let ok = std::process::Command::new("chown")
                .args(["-R", "postgres"])
                .arg(dir.path())
                .status()
                .is_ok_and(|s| s.success());
            ensure(ok, "cannot hand the cluster directory to user postgres")?;
        }
        run_pg(
            &bin,
            "initdb",
            &[
                "-D",
                &data.display().to_string(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        )?;
        let pg = PrivatePg {
            bin,
            data,
            port: crate::brain::free_port(),
            _dir: dir,
        };
        pg.start()?;
        Ok(pg)
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let _ = self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data.display().to_string(),
                "-m",
                "immediate",
                "stop",
            ],
        );
    }
}

fn as_root() -> bool {
    // SAFETY: no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn run_pg(bin: &Path, tool: &str, args: &[&str]) -> Result<(), String> {
    let exe = bin.join(tool);
    let mut cmd = if as_root() {
        let mut c = std::process::Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&exe);
        c
    } else {
        std::process::Command::new(&exe)
    };
    let out = cmd
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {tool}: {e}"))?;
    ensure(
        out.status.success(),
        format!(
            "{tool} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    )
}

/// PostgreSQL stopped for 5 s and started again while a real z4j-bare
/// agent streams: the brain reports not-ready while it is down and ready
/// again by itself, refuses an operator's command then (503, nothing
/// half-stored), and every event the agent recorded before, during and
/// after is stored exactly once (what the brain could not store it did not
/// acknowledge, and the agent sent it again); a command issued afterwards
/// is accepted and kept.
pub async fn postgres_restart(ctx: Arc<Ctx>) -> R {
    use super::interop::{spawn_driver, wait_tasks};
    if !crate::python::redis_available().await {
        return Err("Redis is not listening on 127.0.0.1:6379 (the RQ adapter needs it)".into());
    }
    let pg = PrivatePg::create()?;
    let url = format!(
        "postgresql+asyncpg://postgres@127.0.0.1:{}/postgres",
        pg.port
    );
    let mut env = owned(&agent::admin_env());
    env.extend(owned(&[
        ("Z4J_DATABASE_URL", url.as_str()),
        ("Z4J_SECRET", "conformance-restart-secret-0123456789abcdef"),
        (
            "Z4J_SESSION_SECRET",
            "conformance-restart-session-0123456789abcdef",
        ),
        ("Z4J_LOGIN_MIN_DURATION_MS", "0"),
    ]));
    let brain = ctx.start_env(env, None).await?;
    let op = agent::login(&brain).await?;
    let creds = op.mint(&brain, "through-restart").await?;
    let (mut proc, _home) = spawn_driver(&brain, &creds, "ws", 10, "before").await?;
    let with_output = |e: String, proc: &crate::python::Proc| {
        format!("{e}\nagent output:\n{}", proc.output().join("\n"))
    };
    if let Err(e) = wait_tasks(&brain, &op, "before", 10, "success", ctx.scaled(30.0)).await {
        return Err(with_output(e, &proc));
    }
    let ready = |brain: &crate::brain::Brain| {
        let url = brain.url("/api/v1/health/ready");
        async move {
            super::client()
                .get(url)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }
    };
    ensure_eq(ready(&brain).await, 200, "ready before the restart")?;
    pg.stop()?;
    let down = std::time::Instant::now();
    let mut saw_unready = false;
    while down.elapsed() < Duration::from_secs(3) {
        if ready(&brain).await == 503 {
            saw_unready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ensure(
        saw_unready,
        "/api/v1/health/ready never said 503 with PostgreSQL down",
    )?;
    proc.send_line("record during 10").await?;
    let cancel = |task: &str| json!({"agent_id": creds.agent_id, "engine": "rq", "task_id": task});
    let path = "/api/v1/projects/default/commands/cancel-task";
    let (status, body) = op
        .send(
            &brain,
            reqwest::Method::POST,
            path,
            Some(cancel("during-0")),
        )
        .await?;
    ensure_eq(
        (status, body["error"].as_str()),
        (503, Some("unavailable")),
        &format!("a command issued with the database down: {body}"),
    )?;
    tokio::time::sleep(Duration::from_secs(5).saturating_sub(down.elapsed())).await;
    pg.start()?;
    let up = std::time::Instant::now();
    while ready(&brain).await != 200 {
        ensure(
            up.elapsed() < ctx.scaled(15.0),
            "not ready 15 s after PostgreSQL came back",
        )?;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    proc.send_line("record after 10").await?;
    // Batches the brain could not store are not acknowledged; z4j-bare
    // sends an unacknowledged batch again after 90 s.
    let deadline = std::time::Instant::now() + ctx.scaled(90.0 + 40.0);
    loop {
        let mut short = Vec::new();
        for prefix in ["before", "during", "after"] {
            for i in 0..10 {
                let task = format!("{prefix}-{i}");
                let kinds = op.event_kinds(&brain, &task).await?;
                ensure(kinds.len() <= 3, format!("{task} stored twice: {kinds:?}"))?;
                if kinds.len() < 3 {
                    short.push(format!("{task}: {kinds:?}"));
                }
            }
        }
        if short.is_empty() {
            break;
        }
        if std::time::Instant::now() > deadline {
            return Err(with_output(
                format!("events still missing 130 s after the restart: {short:?}"),
                &proc,
            ));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let (status, c) = op
        .send(&brain, reqwest::Method::POST, path, Some(cancel("after-0")))
        .await?;
    ensure_eq(status, 202, &format!("a command after the restart: {c}"))?;
    let id = c["id"].as_str().unwrap_or_default();
    let (status, _) = op
        .get(&brain, &format!("/api/v1/projects/default/commands/{id}"))
        .await?;
    ensure_eq(status, 200, "the accepted command is kept")?;
    proc.stop().await;
    Ok(())
}
