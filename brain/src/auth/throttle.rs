//! Login throttling kept in process memory: the per-IP `login` bucket
//! (http-api 6.4: 20 per rolling minute), the per-IP MFA bucket, and the
//! per-email failure backoff
//! (specs/decisions.md A2). Keyed by the attempted email, known or not, so
//! the backoff itself cannot tell an existing account from an unknown one.

use crate::net::SlidingWindow;
use crate::settings::Settings;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const LOGIN_PER_IP: usize = 20;
pub const LOGIN_WINDOW: Duration = Duration::from_secs(60);
/// The public invitation routes (preview, accept) per client address.
pub const INVITATION_PER_IP: usize = 30;
/// The password-reset routes (request, confirm) per client address.
pub const PASSWORD_RESET_PER_IP: usize = 10;
/// `GET /activity` per user per minute, and the users tracked at most.
pub const ACTIVITY_PER_USER: usize = 60;
const ACTIVITY_USERS: usize = 50_000;
/// Emails tracked at most; beyond it idle streaks are forgotten first.
const MAX_STREAKS: usize = 100_000;

struct Streak {
    failures: u32,
    last: Instant,
}

pub struct AuthThrottle {
    pub login_per_ip: SlidingWindow,
    /// `Z4J_MFA_VERIFICATION_RATE_PER_MIN`, shared by the code-taking MFA
    /// routes (http-api 3.3).
    pub mfa_per_ip: SlidingWindow,
    pub invitation_per_ip: SlidingWindow,
    pub password_reset_per_ip: SlidingWindow,
    /// `GET /activity`: 60 per user per rolling minute, per process, at
    /// most 50 000 users tracked (dashboard spec 3.5).
    pub activity_per_user: SlidingWindow,
    streaks: Mutex<HashMap<String, Streak>>,
    base: f64,
    max: f64,
    /// A streak idle this long starts again from zero.
    forget_after: Duration,
    /// What a login for an unknown account verifies against, so unknown and
    /// known accounts cost the same argon2 work (hashed once, at this
    /// brain's cost, on first use).
    dummy_hash: std::sync::OnceLock<String>,
}

/// The delay added to the k-th consecutive failed login (k >= 1) for one
/// email: `min(max, base * 2^(k-1))` seconds.
pub fn backoff(base: f64, max: f64, k: u32) -> Duration {
    if k == 0 {
        return Duration::ZERO;
    }
    let secs = (base * 2f64.powi(k.min(30) as i32 - 1)).min(max).max(0.0);
    Duration::from_secs_f64(secs)
}

impl AuthThrottle {
    pub fn new(s: &Settings) -> AuthThrottle {
        AuthThrottle {
            login_per_ip: SlidingWindow::new(LOGIN_PER_IP, LOGIN_WINDOW),
            mfa_per_ip: SlidingWindow::new(
                s.mfa_verification_rate_per_min.max(1) as usize,
                Duration::from_secs(60),
            ),
            invitation_per_ip: SlidingWindow::new(INVITATION_PER_IP, LOGIN_WINDOW),
            password_reset_per_ip: SlidingWindow::new(PASSWORD_RESET_PER_IP, LOGIN_WINDOW),
            activity_per_user: SlidingWindow::with_max_keys(
                ACTIVITY_PER_USER,
                LOGIN_WINDOW,
                ACTIVITY_USERS,
            ),
            streaks: Mutex::new(HashMap::new()),
            base: s.login_backoff_base_seconds,
            max: s.login_backoff_max_seconds,
            forget_after: Duration::from_secs(s.login_lockout_duration_seconds.max(60) as u64),
            dummy_hash: std::sync::OnceLock::new(),
        }
    }

    /// See `dummy_hash`; blocking on first use (call it off the executor or
    /// accept one hash's delay once).
    pub fn dummy_hash(&self, cost: crate::auth::password::Cost) -> &str {
        self.dummy_hash.get_or_init(|| {
            crate::auth::password::hash_blocking("z4j-dummy-password", cost).unwrap_or_default()
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Streak>> {
        self.streaks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a failed attempt; returns the backoff for its response.
    pub fn fail(&self, email: &str) -> Duration {
        let now = Instant::now();
        let mut streaks = self.lock();
        if !streaks.contains_key(email) && streaks.len() >= MAX_STREAKS {
            let forget = self.forget_after;
            streaks.retain(|_, s| now.duration_since(s.last) < forget);
            if streaks.len() >= MAX_STREAKS {
                streaks.clear();
            }
        }
        let s = streaks.entry(email.to_owned()).or_insert(Streak {
            failures: 0,
            last: now,
        });
        if now.duration_since(s.last) >= self.forget_after {
            s.failures = 0;
        }
        s.failures = s.failures.saturating_add(1);
        s.last = now;
        backoff(self.base, self.max, s.failures)
    }

    /// A successful login ends the email's streak.
    pub fn succeed(&self, email: &str) {
        self.lock().remove(email);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_base_up_to_max() {
        let got: Vec<f64> = (0..7).map(|k| backoff(0.5, 5.0, k).as_secs_f64()).collect();
        assert_eq!(got, [0.0, 0.5, 1.0, 2.0, 4.0, 5.0, 5.0]);
        assert_eq!(backoff(0.0, 5.0, 9), Duration::ZERO);
        assert_eq!(backoff(1.0, 2.0, 1000).as_secs_f64(), 2.0);
    }
}
