//! Sliding-window budgets per client address (the agent-connect bucket:
//! 600 attempts per rolling 60 s, shared by `/ws/agent` and
//! `/api/v1/agent/*`; the login, MFA, invitation and reset buckets).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Addresses tracked at most (memory stays bounded under a flood of
/// distinct addresses).
const MAX_KEYS: usize = 10_000;
const MAX_KEY_CHARS: usize = 120;

pub struct SlidingWindow {
    limit: usize,
    window: Duration,
    max_keys: usize,
    hits: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl SlidingWindow {
    pub fn new(limit: usize, window: Duration) -> SlidingWindow {
        SlidingWindow::with_max_keys(limit, window, MAX_KEYS)
    }

    pub fn with_max_keys(limit: usize, window: Duration, max_keys: usize) -> SlidingWindow {
        SlidingWindow {
            limit: limit.max(1),
            window,
            max_keys: max_keys.max(1),
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
        if !hits.contains_key(&key) && hits.len() >= self.max_keys {
            self.make_room(&mut hits, now);
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

    /// Frees slots for unseen addresses: idle addresses go first; when every
    /// tracked address is active (a flood of distinct addresses), the
    /// sixteenth of them that matters least is forgotten: addresses still
    /// under budget before exhausted ones, least recently seen first. An
    /// unseen address is never refused for lack of room (refusing it would
    /// lock every newcomer out for a whole window, specs/decisions.md H6);
    /// an exhausted address keeps its history as long as any address under
    /// budget can be forgotten instead.
    fn make_room(&self, hits: &mut HashMap<String, VecDeque<Instant>>, now: Instant) {
        let window = self.window;
        hits.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < window));
        if hits.len() < self.max_keys {
            return;
        }
        let evict = (self.max_keys / 16).max(1);
        let mut rank: Vec<(bool, Instant, String)> = hits
            .iter()
            .map(|(k, q)| {
                (
                    q.len() >= self.limit,
                    q.back().copied().unwrap_or(now),
                    k.clone(),
                )
            })
            .collect();
        rank.select_nth_unstable(evict - 1);
        for (_, _, k) in rank.into_iter().take(evict) {
            hits.remove(&k);
        }
        tracing::warn!(
            tracked = self.max_keys,
            forgotten = evict,
            "per-address budget full of active addresses; forgot the least recently seen"
        );
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.hits.lock().map(|h| h.len()).unwrap_or(0)
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

    /// A table full of active addresses still admits a newcomer, and
    /// memory stays at the cap (the fail-closed table refused everyone).
    #[test]
    fn a_full_table_of_active_addresses_admits_newcomers() {
        let w = SlidingWindow::new(5, Duration::from_secs(60));
        for i in 0..MAX_KEYS * 2 {
            assert_eq!(w.hit(&format!("flood-{i}")), Ok(()), "flood address {i}");
            assert!(w.tracked() <= MAX_KEYS);
        }
        assert_eq!(w.hit("newcomer"), Ok(()));
        assert!(w.tracked() <= MAX_KEYS);
    }

    /// Forgetting prefers addresses under budget: an exhausted address
    /// stays refused while a flood churns through the table.
    #[test]
    fn exhausted_addresses_are_forgotten_last() {
        let w = SlidingWindow::with_max_keys(2, Duration::from_secs(60), 64);
        assert_eq!(w.hit("attacker"), Ok(()));
        assert_eq!(w.hit("attacker"), Ok(()));
        assert!(w.hit("attacker").is_err());
        for i in 0..1000 {
            assert_eq!(w.hit(&format!("flood-{i}")), Ok(()));
            assert!(w.tracked() <= 64);
        }
        assert!(
            w.hit("attacker").is_err(),
            "the exhausted address was forgotten"
        );
    }

    /// Among addresses under budget the least recently seen go first.
    #[test]
    fn least_recently_seen_are_forgotten_first() {
        let w = SlidingWindow::with_max_keys(3, Duration::from_secs(60), 16);
        assert_eq!(w.hit("old"), Ok(()));
        std::thread::sleep(Duration::from_millis(2));
        for i in 0..15 {
            assert_eq!(w.hit(&format!("k{i}")), Ok(()));
        }
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(w.hit("k0"), Ok(()));
        assert_eq!(w.hit("fresh"), Ok(()));
        let hits = w.hits.lock().unwrap();
        assert!(!hits.contains_key("old"), "the oldest address is forgotten");
        assert_eq!(
            hits.get("k0").map(VecDeque::len),
            Some(2),
            "a recent one is kept"
        );
    }
}
