//! Legacy `WatchSchedules`: each stream polls the served rows every
//! `Z4J_SCHEDULER_GRPC_WATCH_POLL_SECONDS` and sends the difference
//! (scheduler spec §2.6). Polling the shared database serves changes made
//! through any replica, and a row that stops qualifying (deleted, or
//! re-owned) is always sent as DELETED (decision Y3). The caps bound the
//! streams per process and per identity.

use super::wire;
use crate::schedules::Scope;
use crate::store::schedules::{self as rows, Schedule};
use crate::store::{Db, Ts};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tonic::Status;
use uuid::Uuid;
use z4j_scheduler_proto::v1 as pb;
use z4j_scheduler_proto::v1::schedule_event::Kind;

/// The open-stream counts.
pub struct Caps {
    max_total: usize,
    max_per_identity: usize,
    open: Mutex<(usize, HashMap<String, usize>)>,
}

/// One open stream's place under the caps; given back on drop, however the
/// stream ends.
pub struct Slot {
    caps: Arc<Caps>,
    key: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.caps.open.lock().unwrap_or_else(|p| p.into_inner());
        open.0 = open.0.saturating_sub(1);
        if let Some(n) = open.1.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.1.remove(&self.key);
            }
        }
    }
}

impl Caps {
    pub fn new(max_total: usize, max_per_identity: usize) -> Caps {
        Caps {
            max_total,
            max_per_identity,
            open: Mutex::new((0, HashMap::new())),
        }
    }

    /// Streams open now.
    pub fn open(&self) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).0
    }

    /// The per-identity cap first, then the process cap (§2.6.4).
    pub fn acquire(self: &Arc<Self>, key: &str) -> Result<Slot, Status> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let mine = open.1.get(key).copied().unwrap_or(0);
        if mine >= self.max_per_identity {
            return Err(Status::resource_exhausted(
                "WatchSchedules per-cert concurrent stream cap reached",
            ));
        }
        if open.0 >= self.max_total {
            return Err(Status::resource_exhausted(
                "WatchSchedules concurrent stream cap reached",
            ));
        }
        open.0 += 1;
        *open.1.entry(key.to_owned()).or_insert(0) += 1;
        Ok(Slot {
            caps: self.clone(),
            key: key.to_owned(),
        })
    }
}

/// Every served row of `scope` in id order, `page` rows per query, handed
/// to `each` a page at a time; `each` answering false stops the walk.
pub async fn for_each_page<F, Fut>(
    db: &Db,
    scope: &Scope,
    page: i64,
    mut each: F,
) -> Result<(), crate::store::StoreError>
where
    F: FnMut(Vec<Schedule>) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let mut after = None;
    loop {
        let batch = rows::served(db, scope.ids(), after, page).await?;
        let full = batch.len() as i64 == page;
        after = batch.last().map(|s| s.id);
        if !each(batch).await || !full {
            return Ok(());
        }
    }
}

async fn snapshot(db: &Db, scope: &Scope) -> Result<Vec<Schedule>, crate::store::StoreError> {
    let mut all = Vec::new();
    for_each_page(db, scope, 500, |batch| {
        all.extend(batch);
        std::future::ready(true)
    })
    .await?;
    Ok(all)
}

fn event(kind: Kind, s: &Schedule) -> pb::ScheduleEvent {
    pb::ScheduleEvent {
        kind: kind as i32,
        schedule: Some(wire::schedule(s)),
        deleted_id: String::new(),
        resume_token: wire::token(s.updated_at),
    }
}

/// Polls until the caller goes away. The first cycle sends the rows
/// changed after the resume token as CREATED (none without a token).
pub async fn run(
    db: Db,
    scope: Scope,
    resume: Option<Ts>,
    poll: Duration,
    tx: mpsc::Sender<Result<pb::ScheduleEvent, Status>>,
    slot: Slot,
    mut cut: tokio::sync::watch::Receiver<bool>,
) {
    let _slot = slot;
    let mut known: Option<HashMap<Uuid, Ts>> = None;
    loop {
        match snapshot(&db, &scope).await {
            Ok(now) => {
                let mut events = Vec::new();
                let next: HashMap<Uuid, Ts> = now.iter().map(|s| (s.id, s.updated_at)).collect();
                match &known {
                    None => {
                        if let Some(t) = resume {
                            events.extend(
                                now.iter()
                                    .filter(|s| s.updated_at > t)
                                    .map(|s| event(Kind::Created, s)),
                            );
                        }
                    }
                    Some(before) => {
                        for s in &now {
                            match before.get(&s.id) {
                                None => events.push(event(Kind::Created, s)),
                                Some(old) if s.updated_at > *old => {
                                    events.push(event(Kind::Updated, s))
                                }
                                Some(_) => {}
                            }
                        }
                        for id in before.keys().filter(|id| !next.contains_key(id)) {
                            events.push(pb::ScheduleEvent {
                                kind: Kind::Deleted as i32,
                                schedule: None,
                                deleted_id: id.to_string(),
                                resume_token: wire::token(Ts::now()),
                            });
                        }
                    }
                }
                for e in events {
                    if tx.send(Ok(e)).await.is_err() {
                        return;
                    }
                }
                known = Some(next);
            }
            Err(e) => tracing::warn!(error = %e, "watch poll failed; retrying"),
        }
        tokio::select! {
            () = tokio::time::sleep(poll) => {}
            () = tx.closed() => return,
            _ = cut.wait_for(|c| *c) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_identity_then_total_and_released_on_drop() {
        let caps = Arc::new(Caps::new(3, 2));
        let a1 = caps.acquire("a").unwrap();
        let _a2 = caps.acquire("a").unwrap();
        let e = caps.acquire("a").err().unwrap();
        assert_eq!(e.code(), tonic::Code::ResourceExhausted);
        assert!(e.message().contains("per-cert"));
        let _b1 = caps.acquire("b").unwrap();
        let e = caps.acquire("c").err().unwrap();
        assert_eq!(e.message(), "WatchSchedules concurrent stream cap reached");
        drop(a1);
        assert!(caps.acquire("c").is_ok());
    }
}
