//! Command state changes reported by agents (spec 5.7, 5.8). Issuing and
//! delivering commands is the commands capability's job.

use super::{Db, StoreError, Ts};
use crate::on_db;
use sqlx::types::Json as SqlJson;
use uuid::Uuid;
use z4j_protocol::frame::{CommandResult, ResultStatus};
use z4j_protocol::json::Value;

/// `command_ack`: pending → dispatched; duplicates and foreign ids are
/// no-ops.
pub async fn mark_dispatched(db: &Db, id: Uuid, agent_id: Uuid) -> Result<(), StoreError> {
    on_db!(db, p => sqlx::query(
        "UPDATE commands SET status = 'dispatched', dispatched_at = $3 \
         WHERE id = $1 AND agent_id = $2 AND status = 'pending'"
    )
    .bind(id)
    .bind(agent_id)
    .bind(Ts::now())
    .execute(p)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// `command_result`: only the first terminal transition counts.
pub async fn finish(
    db: &Db,
    id: Uuid,
    agent_id: Uuid,
    r: &CommandResult,
) -> Result<(), StoreError> {
    let (status, error) = match r.status {
        ResultStatus::Success => ("completed", None),
        ResultStatus::Failed => (
            "failed",
            Some(
                r.error
                    .clone()
                    .unwrap_or_else(|| "agent reported failure".into()),
            ),
        ),
    };
    let result = r
        .result
        .as_ref()
        .and_then(|o| z4j_protocol::canonical::to_canonical(&Value::Object(o.clone())).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|t| serde_json::value::RawValue::from_string(t).ok());
    on_db!(db, p => sqlx::query(
        "UPDATE commands SET status = $3, result = $4, error = $5, completed_at = $6 \
         WHERE id = $1 AND agent_id = $2 AND status IN ('pending', 'dispatched')"
    )
    .bind(id)
    .bind(agent_id)
    .bind(status)
    .bind(result.as_ref().map(SqlJson))
    .bind(error)
    .bind(Ts::now())
    .execute(p)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}
