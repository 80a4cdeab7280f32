//! `Z4J_RATELIMIT_EVENTS_PER_SECOND`: a token bucket per project holding at
//! most one second of events. Over the limit nothing is dropped: WebSocket
//! ingest waits for tokens (the bounded queue then back-pressures the
//! socket); long-poll refuses the frame so the agent re-sends it
//! (specs/decisions.md G1).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use uuid::Uuid;

pub struct ProjectLimiter {
    rate: f64,
    buckets: Mutex<HashMap<Uuid, Bucket>>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl ProjectLimiter {
    pub fn new(events_per_second: u64) -> ProjectLimiter {
        ProjectLimiter {
            rate: events_per_second.max(1) as f64,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes `n` tokens, possibly into debt; returns how long to wait before
    /// the events may be written (zero when within the budget).
    fn take(&self, project: Uuid, n: u64, allow_debt: bool) -> Option<Duration> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let b = buckets.entry(project).or_insert(Bucket {
            tokens: self.rate,
            at: now,
        });
        let refill = now.duration_since(b.at).as_secs_f64() * self.rate;
        b.tokens = (b.tokens + refill).min(self.rate);
        b.at = now;
        let n = n as f64;
        if b.tokens >= n {
            b.tokens -= n;
            return Some(Duration::ZERO);
        }
        if !allow_debt {
            return None;
        }
        b.tokens -= n;
        Some(Duration::from_secs_f64(-b.tokens / self.rate))
    }

    /// Waits until `n` events fit the project's budget.
    pub async fn acquire(&self, project: Uuid, n: u64) {
        if let Some(wait) = self.take(project, n, true) {
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
    }

    /// Takes `n` tokens only if they are available now.
    pub fn try_acquire(&self, project: Uuid, n: u64) -> bool {
        self.take(project, n, false).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_of_one_second_then_refusal() {
        let l = ProjectLimiter::new(10);
        let p = Uuid::new_v4();
        assert!(l.try_acquire(p, 10));
        assert!(!l.try_acquire(p, 1));
        assert!(l.try_acquire(Uuid::new_v4(), 1), "projects are independent");
    }

    #[test]
    fn debt_is_paid_by_waiting() {
        let l = ProjectLimiter::new(100);
        let p = Uuid::new_v4();
        assert_eq!(l.take(p, 100, true), Some(Duration::ZERO));
        let wait = l.take(p, 50, true).unwrap_or_default();
        assert!(
            wait >= Duration::from_millis(450) && wait <= Duration::from_millis(510),
            "{wait:?}"
        );
    }
}
