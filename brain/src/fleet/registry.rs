//! Live agent connections of this process, keyed by the worker-first slot
//! `(agent_id, worker_id | legacy)` (spec 2.8).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use tokio::sync::watch;
use uuid::Uuid;

/// How a connection is told to close right away (displacement, revocation,
/// shutdown). The reader and writer both watch it.
#[derive(Clone)]
pub struct Kick(watch::Sender<Option<u16>>);

impl Kick {
    pub fn new() -> (Kick, watch::Receiver<Option<u16>>) {
        let (tx, rx) = watch::channel(None);
        (Kick(tx), rx)
    }

    pub fn close(&self, code: u16) {
        self.0.send_if_modified(|c| {
            if c.is_none() {
                *c = Some(code);
                true
            } else {
                false
            }
        });
    }
}

/// A brain→agent frame, signed by the connection's writer at send time.
pub struct Outbound {
    pub frame_type: z4j_protocol::FrameType,
    pub id: String,
    pub payload: Vec<(&'static str, z4j_protocol::Value)>,
}

#[derive(Clone)]
pub struct Entry {
    pub conn_id: u64,
    /// `None` is the legacy slot (a `hello` without `worker_id`).
    pub worker_id: Option<String>,
    pub kick: Kick,
    /// The connection's writer queue. Weak, so the queue closes (and the
    /// writer finishes) when the connection's own tasks are done.
    pub out: Option<tokio::sync::mpsc::WeakSender<Outbound>>,
    /// Engines whose `hello` capabilities carry `retry_by_reference_v1`.
    pub retry_engines: Vec<String>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct CapExceeded;

#[derive(Default)]
pub struct Registry {
    agents: Mutex<HashMap<Uuid, Vec<Entry>>>,
    next_id: AtomicU64,
}

impl Registry {
    pub fn next_conn_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Vec<Entry>>> {
        self.agents.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a connection. A connection already in the same slot is
    /// displaced (closed 4002); a new slot beyond `cap` (0 = none) is refused.
    pub fn register(&self, agent_id: Uuid, entry: Entry, cap: usize) -> Result<(), CapExceeded> {
        let mut agents = self.lock();
        let slots = agents.entry(agent_id).or_default();
        if let Some(pos) = slots.iter().position(|e| e.worker_id == entry.worker_id) {
            let old = std::mem::replace(&mut slots[pos], entry);
            old.kick.close(4002);
            return Ok(());
        }
        if cap > 0 && slots.len() >= cap {
            return Err(CapExceeded);
        }
        slots.push(entry);
        Ok(())
    }

    /// Removes a connection if it still holds its slot. Returns true when
    /// the agent has no connection left here.
    pub fn unregister(&self, agent_id: Uuid, conn_id: u64) -> bool {
        let mut agents = self.lock();
        let Some(slots) = agents.get_mut(&agent_id) else {
            return true;
        };
        slots.retain(|e| e.conn_id != conn_id);
        if slots.is_empty() {
            agents.remove(&agent_id);
            true
        } else {
            false
        }
    }

    /// Closes every connection of an agent (revocation: 4003).
    pub fn kick_agent(&self, agent_id: Uuid, code: u16) -> usize {
        let agents = self.lock();
        agents.get(&agent_id).map_or(0, |slots| {
            for e in slots {
                e.kick.close(code);
            }
            slots.len()
        })
    }

    /// Closes every connection (shutdown: 1001).
    pub fn kick_all(&self, code: u16) {
        for slots in self.lock().values() {
            for e in slots {
                e.kick.close(code);
            }
        }
    }

    pub fn connections(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }

    /// Where to deliver a command: the first registered connection of the
    /// agent, or for the retry family (`retry_engine` set) the first whose
    /// capabilities allow retries on that engine.
    pub fn route(&self, agent_id: Uuid, retry_engine: Option<&str>) -> Option<Entry> {
        let agents = self.lock();
        agents
            .get(&agent_id)?
            .iter()
            .find(|e| match retry_engine {
                Some(engine) => e.retry_engines.iter().any(|x| x == engine),
                None => true,
            })
            .cloned()
    }

    /// Agents with at least one connection here.
    pub fn agent_ids(&self) -> Vec<Uuid> {
        self.lock().keys().copied().collect()
    }

    pub fn is_connected(&self, agent_id: Uuid) -> bool {
        self.lock().get(&agent_id).is_some_and(|s| !s.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(r: &Registry, worker: Option<&str>) -> (Entry, watch::Receiver<Option<u16>>) {
        let (kick, rx) = Kick::new();
        (
            Entry {
                conn_id: r.next_conn_id(),
                worker_id: worker.map(str::to_owned),
                kick,
                out: None,
                retry_engines: Vec::new(),
            },
            rx,
        )
    }

    #[test]
    fn same_slot_displaces_with_4002_and_cap_counts_slots() {
        let r = Registry::default();
        let agent = Uuid::new_v4();
        let (a, rx_a) = entry(&r, Some("w1"));
        let (b, _rx_b) = entry(&r, Some("w1"));
        let (legacy, _rx_l) = entry(&r, None);
        let (c, _rx_c) = entry(&r, Some("w2"));
        assert_eq!(r.register(agent, a.clone(), 2), Ok(()));
        assert_eq!(r.register(agent, b.clone(), 2), Ok(()));
        assert_eq!(*rx_a.borrow(), Some(4002));
        assert_eq!(r.register(agent, legacy, 2), Ok(()));
        assert_eq!(r.register(agent, c, 2), Err(CapExceeded));
        // The displaced connection's late cleanup must not remove the winner.
        assert!(!r.unregister(agent, a.conn_id));
        assert_eq!(r.connections(), 2);
        assert!(!r.unregister(agent, b.conn_id));
    }

    #[test]
    fn zero_cap_means_unlimited() {
        let r = Registry::default();
        let agent = Uuid::new_v4();
        for i in 0..100 {
            let (e, _) = entry(&r, Some(&format!("w{i}")));
            assert_eq!(r.register(agent, e, 0), Ok(()));
        }
        assert_eq!(r.connections(), 100);
    }
}
