//! Deleting what outlived its retention: raw events (daily partitions on
//! PostgreSQL, batched deletes elsewhere) and agent status samples.

use super::{Db, StoreError, Ts};
use crate::{on_db, on_read};
use chrono::{Duration, NaiveDate};
use sqlx::PgPool;
use uuid::Uuid;

/// Rows deleted per statement, so no sweep holds long locks.
pub const BATCH: i64 = 5000;

/// Deletes events older than `cutoff` in batches; on PostgreSQL only the
/// default partition (dated ones are dropped whole). Returns rows deleted.
pub async fn delete_events_before(db: &Db, cutoff: Ts) -> Result<u64, StoreError> {
    match db {
        Db::Sqlite(_) => {
            // Project by project, so each batch is a range of the primary
            // key (project_id, occurred_at, id): events keep no index on
            // the instant alone, which every insert would pay for.
            let projects: Vec<Uuid> = on_read!(db, p => sqlx::query_scalar("SELECT id FROM projects")
                .fetch_all(p)
                .await)?;
            // WITHOUT ROWID: address rows by their primary key.
            let sql = "DELETE FROM events WHERE (project_id, occurred_at, id) IN \
                       (SELECT project_id, occurred_at, id FROM events \
                        WHERE project_id = $3 AND occurred_at < $1 ORDER BY occurred_at LIMIT $2)";
            let mut total = 0;
            for project in projects {
                total += batched_by(db, sql, cutoff, Some(project)).await?;
            }
            Ok(total)
        }
        Db::Postgres(_) => {
            let sql = "DELETE FROM events_default WHERE ctid IN \
                       (SELECT ctid FROM events_default WHERE occurred_at < $1 LIMIT $2)";
            batched(db, sql, cutoff).await
        }
    }
}

/// Deletes agent status samples captured before `cutoff`.
pub async fn delete_status_history_before(db: &Db, cutoff: Ts) -> Result<u64, StoreError> {
    let sql = "DELETE FROM agent_status_history WHERE id IN \
               (SELECT id FROM agent_status_history WHERE captured_at < $1 LIMIT $2)";
    batched(db, sql, cutoff).await
}

/// Deletes queue depth samples of minutes before `cutoff`.
pub async fn delete_depth_samples_before(db: &Db, cutoff: Ts) -> Result<u64, StoreError> {
    let sql = "DELETE FROM queue_depth_samples WHERE (queue_id, minute) IN \
               (SELECT queue_id, minute FROM queue_depth_samples WHERE minute < $1 LIMIT $2)";
    batched(db, sql, cutoff).await
}

async fn batched(db: &Db, sql: &str, cutoff: Ts) -> Result<u64, StoreError> {
    batched_by(db, sql, cutoff, None).await
}

/// Runs `sql` (`$1` the cutoff, `$2` the batch size, `$3` if given the
/// project) until a batch deletes fewer than `BATCH` rows.
async fn batched_by(
    db: &Db,
    sql: &str,
    cutoff: Ts,
    project: Option<Uuid>,
) -> Result<u64, StoreError> {
    let mut total = 0;
    loop {
        let n = on_db!(db, p => {
            let q = sqlx::query(sql).bind(cutoff).bind(BATCH);
            match project {
                Some(id) => q.bind(id),
                None => q,
            }
            .execute(p)
            .await
            .map(|r| r.rows_affected())
        })?;
        total += n;
        if n < BATCH as u64 {
            return Ok(total);
        }
    }
}

pub fn partition_name(day: NaiveDate) -> String {
    format!("events_{}", day.format("%Y_%m_%d"))
}

/// Creates the daily partitions `first ..= first + days` that are missing.
/// A day whose rows already sit in the default partition is skipped (and
/// its rows stay there, pruned by the batched delete). Returns the names
/// created.
pub async fn ensure_event_partitions(
    pool: &PgPool,
    first: NaiveDate,
    days: i64,
) -> Result<Vec<String>, StoreError> {
    let mut created = Vec::new();
    for i in 0..=days {
        let day = first + Duration::days(i);
        let name = partition_name(day);
        let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(&name)
            .fetch_one(pool)
            .await?;
        if exists {
            continue;
        }
        let next = day + Duration::days(1);
        let ddl = format!(
            "CREATE TABLE IF NOT EXISTS {name} PARTITION OF events \
             FOR VALUES FROM ('{day} 00:00:00+00') TO ('{next} 00:00:00+00')"
        );
        let mut tx = pool.begin().await?;
        sqlx::query("SET LOCAL lock_timeout = '2s'")
            .execute(&mut *tx)
            .await?;
        match sqlx::query(&ddl).execute(&mut *tx).await {
            Ok(_) => {
                tx.commit().await?;
                created.push(name);
            }
            Err(e) => {
                tracing::warn!(partition = %name, error = %e, "cannot create an event partition");
            }
        }
    }
    Ok(created)
}

/// Drops daily partitions whose whole day lies before `cutoff_day`.
pub async fn drop_event_partitions_before(
    pool: &PgPool,
    cutoff_day: NaiveDate,
) -> Result<Vec<String>, StoreError> {
    let children: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i \
         JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent \
         WHERE p.relname = 'events' AND c.relname LIKE 'events\\_2%'",
    )
    .fetch_all(pool)
    .await?;
    let mut dropped = Vec::new();
    for name in children {
        let Some(day) = name
            .strip_prefix("events_")
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y_%m_%d").ok())
        else {
            continue;
        };
        // The partition holds [day, day + 1): all of it is older than the
        // cutoff when day + 1 <= cutoff.
        if day + Duration::days(1) <= cutoff_day {
            sqlx::query(&format!("DROP TABLE IF EXISTS {name}"))
                .execute(pool)
                .await?;
            dropped.push(name);
        }
    }
    Ok(dropped)
}
