//! Sliding-window budgets per client address (the agent-connect bucket:
//! 600 attempts per rolling 60 s, shared by `/ws/agent` and
//! `/api/v1/agent/*`).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Addresses tracked at most; when full of active addresses, new ones are
/// refused rather than growing without bound.
const MAX_KEYS: usize = 10_000;
const MAX_KEY_CHARS: usize = 120;

pub struct SlidingWindow {
    limit: usize,
    window: Duration,
    hits: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl SlidingWindow {
    pub fn new(limit: usize, window: Duration) -> SlidingWindow {
        SlidingWindow {
            limit,
            window,
            hits: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one attempt. `Err(retry_after_secs)` when over budget: the
    /// seconds until the oldest counted hit leaves the window, rounded up,
    /// clamped to `[1, window]`.
    pub fn hit(&self, key: &str) -> Result<(), u64> {
        let key: String = key.chars().take(MAX_KEY_CHARS).collect();
        let now = Instant::now();
        let mut hits = self.hits.lock().unwrap_or_else(|p| p.into_inner());
        if !hits.contains_key(&key) && hits.len() >= MAX_KEYS {
            let window = self.window;
            hits.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < window));
            if hits.len() >= MAX_KEYS {
                return Err(self.window.as_secs().max(1));
            }
        }
        let q = hits.entry(key).or_default();
        while q
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            q.pop_front();
        }
        if q.len() >= self.limit {
            let oldest = q.front().copied().unwrap_or(now);
            let left = self.window.saturating_sub(now.duration_since(oldest));
            let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            return Err(secs.clamp(1, self.window.as_secs().max(1)));
        }
        q.push_back(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_then_retry_after_within_window() {
        let w = SlidingWindow::new(3, Duration::from_secs(60));
        for _ in 0..3 {
            assert_eq!(w.hit("1.2.3.4"), Ok(()));
        }
        let retry = w.hit("1.2.3.4").unwrap_err();
        assert!((59..=60).contains(&retry), "{retry}");
        assert_eq!(w.hit("5.6.7.8"), Ok(()), "addresses are independent");
    }

    #[test]
    fn hits_leave_the_window() {
        let w = SlidingWindow::new(1, Duration::from_millis(50));
        assert_eq!(w.hit("a"), Ok(()));
        assert!(w.hit("a").is_err());
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(w.hit("a"), Ok(()));
    }
}
