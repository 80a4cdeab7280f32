//! The dashboard hub behind `/ws/dashboard` (dashboard spec 1): browsers
//! subscribe to one project and are told *that* something changed, never
//! what; they refetch over REST.
//!
//! Better than the reference where it falls short (decisions D1-D5):
//! * publishes are throttled per (project, topic): the first in a quiet
//!   period goes out at once, the rest of the window merge into one at its
//!   end, so a 10k events/s stream costs a browser at most one frame per
//!   topic per [`WINDOW`];
//! * a subscriber whose queue is full is closed (1013), not silently
//!   forgotten with its socket left open;
//! * sessions that end (logout, revocation, deactivation) and memberships
//!   that are removed close their sockets, on every replica;
//! * other replicas are reached over the cluster's NOTIFY connection
//!   (`z4j_dashboard`, payload `{p,t,w}` as the reference, so mixed
//!   replicas understand each other's topic pushes).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use uuid::Uuid;

/// The NOTIFY channel shared with the reference.
pub const CHANNEL: &str = "z4j_dashboard";
/// Live subscriptions one user may hold in one process (reference: 50).
pub const MAX_PER_USER: usize = 50;
/// Frames queued for one browser before it counts as unable to keep up.
pub const QUEUE: usize = 64;
/// Throttle window per (project, topic).
pub const WINDOW: Duration = Duration::from_secs(1);

/// Close codes (dashboard spec 1.5; 1013 and the session closes are ours).
pub mod close {
    pub const BAD_SUBSCRIBE: u16 = 4400;
    pub const UNAUTHENTICATED: u16 = 4401;
    pub const OVER_CAPACITY: u16 = 4402;
    pub const FORBIDDEN: u16 = 4403;
    pub const IDLE: u16 = 4408;
    /// The browser could not keep up: reconnect and refetch.
    pub const TRY_AGAIN: u16 = 1013;
    /// The brain is shutting down.
    pub const GOING_AWAY: u16 = 1001;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    Task,
    Command,
    Agent,
    /// z4j-rs: a schedule's definition, state or fire history changed
    /// (decision D14; clients ignore topics they do not know).
    Schedule,
}

impl Topic {
    pub fn as_str(self) -> &'static str {
        match self {
            Topic::Task => "task.changed",
            Topic::Command => "command.changed",
            Topic::Agent => "agent.changed",
            Topic::Schedule => "schedule.changed",
        }
    }

    pub fn parse(s: &str) -> Option<Topic> {
        Some(match s {
            "task.changed" => Topic::Task,
            "command.changed" => Topic::Command,
            "agent.changed" => Topic::Agent,
            "schedule.changed" => Topic::Schedule,
            _ => return None,
        })
    }
}

/// Which sockets a cross-replica close reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Session(Uuid),
    User(Uuid),
    /// Every session of the user but one (revoke-others).
    UserExcept {
        user: Uuid,
        keep: Uuid,
    },
    Member {
        user: Uuid,
        project: Uuid,
    },
}

/// A message for the other replicas (serialised on [`CHANNEL`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Wire {
    Topic { project: Uuid, topic: Topic },
    Close { scope: Scope, code: u16 },
}

impl Wire {
    pub fn encode(&self, worker: &str) -> String {
        use serde_json::json;
        match self {
            Wire::Topic { project, topic } => {
                json!({"p": project, "t": topic.as_str(), "w": worker}).to_string()
            }
            Wire::Close { scope, code } => {
                let (kind, id, other) = match scope {
                    Scope::Session(s) => ("session", *s, None),
                    Scope::User(u) => ("user", *u, None),
                    Scope::UserExcept { user, keep } => ("others", *user, Some(*keep)),
                    Scope::Member { user, project } => ("member", *user, Some(*project)),
                };
                json!({"x": kind, "id": id, "p": other, "c": code, "w": worker}).to_string()
            }
        }
    }

    /// A payload from another replica; `None` for our own, malformed ones
    /// and unknown topics.
    pub fn decode(payload: &str, own_worker: &str) -> Option<Wire> {
        let v: serde_json::Value = serde_json::from_str(payload).ok()?;
        if v["w"].as_str() == Some(own_worker) {
            return None;
        }
        let uuid = |k: &str| v[k].as_str().and_then(|s| Uuid::parse_str(s).ok());
        if let Some(kind) = v["x"].as_str() {
            let id = uuid("id")?;
            let code = u16::try_from(v["c"].as_u64()?).ok()?;
            let scope = match kind {
                "session" => Scope::Session(id),
                "user" => Scope::User(id),
                "others" => Scope::UserExcept {
                    user: id,
                    keep: uuid("p")?,
                },
                "member" => Scope::Member {
                    user: id,
                    project: uuid("p")?,
                },
                _ => return None,
            };
            return Some(Wire::Close { scope, code });
        }
        Some(Wire::Topic {
            project: uuid("p")?,
            topic: Topic::parse(v["t"].as_str()?)?,
        })
    }
}

/// Why a subscription was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// [`MAX_PER_USER`] reached.
    UserCap,
    /// The hub is closed (shutdown).
    Closed,
}

struct Sub {
    id: u64,
    user: Uuid,
    session: Uuid,
    tx: mpsc::Sender<Topic>,
    kick: watch::Sender<Option<u16>>,
}

#[derive(Default)]
struct Throttle {
    last: Option<Instant>,
    /// A trailing push is scheduled.
    pending: bool,
}

#[derive(Default)]
struct State {
    subs: HashMap<Uuid, Vec<Sub>>,
    per_user: HashMap<Uuid, usize>,
    throttle: HashMap<(Uuid, Topic), Throttle>,
    next_id: u64,
    closed: bool,
}

/// The hub: cheap to share (`Arc<Live>`).
pub struct Live {
    state: Mutex<State>,
    window: Duration,
    /// Messages for the other replicas (`postgres_notify` only); drained by
    /// `workers::cluster`.
    outbox: Option<mpsc::Sender<Wire>>,
    outbox_rx: Mutex<Option<mpsc::Receiver<Wire>>>,
}

/// One browser's subscription; unregisters itself when dropped.
pub struct Subscription {
    hub: Arc<Live>,
    project: Uuid,
    id: u64,
    pub topics: mpsc::Receiver<Topic>,
    /// Set to a close code when the hub wants the socket closed.
    pub kick: watch::Receiver<Option<u16>>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.remove(self.project, self.id);
    }
}

impl Live {
    /// A hub; `replicated` when other replicas are reached over NOTIFY.
    pub fn new(replicated: bool) -> Arc<Live> {
        Live::with_window(replicated, WINDOW)
    }

    pub fn with_window(replicated: bool, window: Duration) -> Arc<Live> {
        let (outbox, rx) = if replicated {
            let (tx, rx) = mpsc::channel(1024);
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        Arc::new(Live {
            state: Mutex::new(State::default()),
            window,
            outbox,
            outbox_rx: Mutex::new(rx),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain maps behind: usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The messages for other replicas, taken once by the cluster worker.
    pub fn take_outbox(&self) -> Option<mpsc::Receiver<Wire>> {
        self.outbox_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    pub fn subscribe(
        self: &Arc<Self>,
        project: Uuid,
        user: Uuid,
        session: Uuid,
    ) -> Result<Subscription, Refused> {
        let mut st = self.lock();
        if st.closed {
            return Err(Refused::Closed);
        }
        let held = st.per_user.get(&user).copied().unwrap_or(0);
        if held >= MAX_PER_USER {
            return Err(Refused::UserCap);
        }
        st.next_id += 1;
        let id = st.next_id;
        let (tx, topics) = mpsc::channel(QUEUE);
        let (kick_tx, kick) = watch::channel(None);
        st.subs.entry(project).or_default().push(Sub {
            id,
            user,
            session,
            tx,
            kick: kick_tx,
        });
        *st.per_user.entry(user).or_default() += 1;
        Ok(Subscription {
            hub: self.clone(),
            project,
            id,
            topics,
            kick,
        })
    }

    fn remove(&self, project: Uuid, id: u64) {
        let mut st = self.lock();
        let State { subs, per_user, .. } = &mut *st;
        let Some(list) = subs.get_mut(&project) else {
            return;
        };
        if let Some(i) = list.iter().position(|s| s.id == id) {
            let sub = list.swap_remove(i);
            if let Some(n) = per_user.get_mut(&sub.user) {
                *n -= 1;
                if *n == 0 {
                    per_user.remove(&sub.user);
                }
            }
        }
        if list.is_empty() {
            subs.remove(&project);
        }
    }

    /// Live subscriptions in this process.
    pub fn subscribers(&self) -> usize {
        self.lock().subs.values().map(Vec::len).sum()
    }

    /// Something changed in `project` (after the write committed).
    pub fn publish(self: &Arc<Self>, project: Uuid, topic: Topic) {
        self.throttled(project, topic, true);
    }

    /// Something changed in each of these projects (a sweep's rows): one
    /// push per project however many rows it had.
    pub fn publish_each(self: &Arc<Self>, projects: &[Uuid], topic: Topic) {
        let mut told = std::collections::HashSet::new();
        for p in projects {
            if told.insert(*p) {
                self.publish(*p, topic);
            }
        }
    }

    /// A change another replica published.
    pub fn publish_remote(self: &Arc<Self>, project: Uuid, topic: Topic) {
        self.throttled(project, topic, false);
    }

    fn throttled(self: &Arc<Self>, project: Uuid, topic: Topic, replicate: bool) {
        let now = Instant::now();
        let mut st = self.lock();
        let t = st.throttle.entry((project, topic)).or_default();
        if t.pending {
            return; // merged into the scheduled push
        }
        match t.last {
            Some(last) if now < last + self.window => {
                t.pending = true;
                let at = last + self.window;
                drop(st);
                let hub = self.clone();
                tokio::spawn(async move {
                    tokio::time::sleep_until(at).await;
                    hub.push_now(project, topic, replicate, true);
                });
            }
            _ => {
                t.last = Some(now);
                drop(st);
                self.push_now(project, topic, replicate, false);
            }
        }
    }

    fn push_now(&self, project: Uuid, topic: Topic, replicate: bool, trailing: bool) {
        let mut st = self.lock();
        if trailing {
            let t = st.throttle.entry((project, topic)).or_default();
            t.pending = false;
            t.last = Some(Instant::now());
        }
        // Forget quiet keys so the map stays the size of the active set.
        if st.throttle.len() > 4096 {
            let horizon = Instant::now() - self.window;
            st.throttle
                .retain(|_, t| t.pending || t.last.is_some_and(|l| l > horizon));
        }
        if let Some(list) = st.subs.get_mut(&project) {
            for sub in list.iter() {
                if sub.tx.try_send(topic).is_err() {
                    // Full (or gone): a browser that cannot keep up is told
                    // to reconnect rather than silently left behind.
                    let _ = sub.kick.send(Some(close::TRY_AGAIN));
                }
            }
        }
        drop(st);
        if replicate {
            self.replicate(Wire::Topic { project, topic });
        }
    }

    /// Closes the sockets in `scope` here and on every replica.
    pub fn close(&self, scope: Scope, code: u16) {
        self.close_local(scope, code);
        self.replicate(Wire::Close { scope, code });
    }

    /// Closes the sockets in `scope` held by this process.
    pub fn close_local(&self, scope: Scope, code: u16) -> usize {
        let st = self.lock();
        let mut n = 0;
        for (project, list) in &st.subs {
            for sub in list {
                let hit = match scope {
                    Scope::Session(s) => sub.session == s,
                    Scope::User(u) => sub.user == u,
                    Scope::UserExcept { user, keep } => sub.user == user && sub.session != keep,
                    Scope::Member { user, project: p } => sub.user == user && *project == p,
                };
                if hit {
                    let _ = sub.kick.send(Some(code));
                    n += 1;
                }
            }
        }
        n
    }

    /// Shutdown: no new subscriptions, every socket told to go.
    pub fn shut(&self) {
        let mut st = self.lock();
        st.closed = true;
        for sub in st.subs.values().flatten() {
            let _ = sub.kick.send(Some(close::GOING_AWAY));
        }
    }

    fn replicate(&self, w: Wire) {
        if let Some(tx) = &self.outbox {
            if tx.try_send(w).is_err() {
                // Best effort, as the reference: pages also refetch on
                // focus and reconnect.
                tracing::warn!("dashboard outbox full; a cross-replica push is lost");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (Uuid, Uuid, Uuid) {
        (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4())
    }

    #[tokio::test]
    async fn first_push_is_immediate_and_a_burst_merges_into_one_trailing() {
        let hub = Live::with_window(false, Duration::from_millis(200));
        let (p, u, s) = ids();
        let mut sub = hub.subscribe(p, u, s).expect("subscribe");
        for _ in 0..1000 {
            hub.publish(p, Topic::Task);
        }
        assert_eq!(sub.topics.try_recv().ok(), Some(Topic::Task));
        assert!(sub.topics.try_recv().is_err(), "burst not merged");
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert_eq!(sub.topics.try_recv().ok(), Some(Topic::Task));
        assert!(sub.topics.try_recv().is_err());
        // Topics and projects are throttled apart.
        hub.publish(p, Topic::Agent);
        hub.publish(Uuid::new_v4(), Topic::Task);
        assert_eq!(sub.topics.try_recv().ok(), Some(Topic::Agent));
        assert!(sub.topics.try_recv().is_err(), "other project leaked");
    }

    #[tokio::test]
    async fn a_full_queue_kicks_with_1013() {
        let hub = Live::with_window(false, Duration::ZERO);
        let (p, u, s) = ids();
        let sub = hub.subscribe(p, u, s).expect("subscribe");
        for _ in 0..QUEUE {
            hub.publish(p, Topic::Command);
        }
        assert_eq!(*sub.kick.borrow(), None, "kicked before the queue was full");
        hub.publish(p, Topic::Command);
        assert_eq!(*sub.kick.borrow(), Some(close::TRY_AGAIN));
    }

    #[test]
    fn per_user_cap_and_release_on_drop() {
        let hub = Live::new(false);
        let (p, u, s) = ids();
        let held: Vec<_> = (0..MAX_PER_USER)
            .map(|_| hub.subscribe(p, u, s).expect("under the cap"))
            .collect();
        assert_eq!(hub.subscribe(p, u, s).err(), Some(Refused::UserCap));
        assert!(
            hub.subscribe(p, Uuid::new_v4(), s).is_ok(),
            "cap is per user"
        );
        drop(held);
        assert_eq!(hub.subscribers(), 0);
        assert!(hub.subscribe(p, u, s).is_ok());
    }

    #[test]
    fn close_scopes_reach_only_their_sockets() {
        let hub = Live::new(false);
        let (p, u, s) = ids();
        let other_p = Uuid::new_v4();
        let a = hub.subscribe(p, u, s).expect("a");
        let b = hub.subscribe(other_p, u, Uuid::new_v4()).expect("b");
        let c = hub.subscribe(p, Uuid::new_v4(), Uuid::new_v4()).expect("c");
        assert_eq!(hub.close_local(Scope::Session(s), 4401), 1);
        assert_eq!(*a.kick.borrow(), Some(4401));
        assert_eq!(*b.kick.borrow(), None);
        assert_eq!(
            hub.close_local(
                Scope::Member {
                    user: u,
                    project: other_p
                },
                4403
            ),
            1
        );
        assert_eq!(*b.kick.borrow(), Some(4403));
        assert_eq!(*c.kick.borrow(), None);
    }

    #[test]
    fn wire_round_trip_skips_own_and_malformed() {
        let p = Uuid::new_v4();
        let w = Wire::Topic {
            project: p,
            topic: Topic::Agent,
        };
        assert_eq!(Wire::decode(&w.encode("aa"), "bb"), Some(w.clone()));
        assert_eq!(Wire::decode(&w.encode("aa"), "aa"), None);
        let c = Wire::Close {
            scope: Scope::Member {
                user: p,
                project: p,
            },
            code: 4403,
        };
        assert_eq!(Wire::decode(&c.encode("aa"), "bb"), Some(c));
        assert_eq!(Wire::decode(r#"{"p":"x","t":"task.changed"}"#, "bb"), None);
        assert_eq!(
            Wire::decode(&format!(r#"{{"p":"{p}","t":"queue.changed"}}"#), "bb"),
            None
        );
    }
}
