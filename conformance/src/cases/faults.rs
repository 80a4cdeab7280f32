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
