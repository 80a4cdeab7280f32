//! Replay guard: timestamp skew window, strictly increasing `seq` and a
//! bounded nonce window, one guard per session per direction.

use crate::isotime::parse_python_isoformat;
use crate::json::{Int, Value};
use std::collections::{HashSet, VecDeque};
use std::time::Duration;

pub const MAX_SKEW_SECONDS: i64 = 60;
pub const NONCE_TTL: Duration = Duration::from_secs(180);
pub const NONCE_CAPACITY: usize = 4096;

/// Which way frames flow; appears in error messages only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    AgentToBrain,
    BrainToAgent,
}

impl Direction {
    pub fn label(self) -> &'static str {
        match self {
            Direction::AgentToBrain => "agent->brain",
            Direction::BrainToAgent => "brain->agent",
        }
    }
}

/// The instant a check happens: wall clock (µs since the Unix epoch) for the
/// skew window, a monotonic reading for nonce expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    pub wall_micros: i64,
    pub monotonic: Duration,
}

impl Now {
    pub fn system(start: std::time::Instant) -> Now {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0);
        Now {
            wall_micros: wall,
            monotonic: start.elapsed(),
        }
    }
}

/// A replay rejection; the message mirrors the reference's `SignatureError`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    #[error("frame envelope missing valid seq")]
    InvalidSeq,
    #[error("frame envelope missing nonce")]
    MissingNonce,
    #[error("frame envelope missing ts")]
    MissingTs,
    #[error("frame ts must be an ISO 8601 string")]
    TsNotString,
    #[error("frame ts is not a valid ISO 8601 string")]
    TsUnparseable,
    #[error("frame ts is naive (missing tzinfo); peers MUST emit tz-aware timestamps (e.g. ISO 8601 with '+00:00' or 'Z')")]
    TsNaive,
    #[error("frame ts skew {skew_tenths}s exceeds limit {MAX_SKEW_SECONDS}s ({direction})")]
    Skew {
        skew_tenths: String,
        direction: &'static str,
    },
    #[error("frame seq {seq} not strictly greater than last-seen {last} ({direction})")]
    SeqNotIncreasing {
        seq: Int,
        last: Int,
        direction: &'static str,
    },
    #[error("frame nonce replay detected ({direction})")]
    NonceReplay { direction: &'static str },
}

/// Seq, nonce and ts of one envelope, before the guard judges them.
pub struct EnvelopeFields<'a> {
    pub seq: Option<&'a Value>,
    pub nonce: Option<&'a Value>,
    pub ts: Option<&'a Value>,
}

#[derive(Debug)]
pub struct ReplayGuard {
    direction: Direction,
    last_seq: Int,
    // Insertion order == time order, so expiry pops from the front.
    nonce_order: VecDeque<(Box<str>, Duration)>,
    nonce_set: HashSet<Box<str>>,
}

impl ReplayGuard {
    pub fn new(direction: Direction) -> Self {
        ReplayGuard {
            direction,
            last_seq: Int::Small(0),
            nonce_order: VecDeque::new(),
            nonce_set: HashSet::new(),
        }
    }

    pub fn last_seq(&self) -> &Int {
        &self.last_seq
    }

    pub fn nonces_held(&self) -> usize {
        self.nonce_set.len()
    }

    /// Judges one envelope; commits its seq and nonce only when it passes.
    pub fn check(&mut self, f: EnvelopeFields<'_>, now: Now) -> Result<(), ReplayError> {
        let direction = self.direction.label();
        // Python's isinstance(seq, int) also admits `true` (== 1).
        let seq = match f.seq {
            Some(Value::Int(i)) if i.is_positive() => i.clone(),
            Some(Value::Bool(true)) => Int::Small(1),
            _ => return Err(ReplayError::InvalidSeq),
        };
        let nonce = match f.nonce {
            Some(Value::Str(s)) if !s.as_str().is_empty() => s.as_str(),
            _ => return Err(ReplayError::MissingNonce),
        };
        let ts = match f.ts {
            None | Some(Value::Null) => return Err(ReplayError::MissingTs),
            Some(Value::Str(s)) => s.as_str(),
            Some(_) => return Err(ReplayError::TsNotString),
        };
        let parsed =
            parse_python_isoformat(&ts.replace('Z', "+00:00")).ok_or(ReplayError::TsUnparseable)?;
        if !parsed.aware {
            return Err(ReplayError::TsNaive);
        }
        let diff = (i128::from(now.wall_micros) - i128::from(parsed.micros)).unsigned_abs();
        if diff > (MAX_SKEW_SECONDS as u128) * 1_000_000 {
            let skew = diff as f64 / 1e6;
            return Err(ReplayError::Skew {
                skew_tenths: format!("{skew:.1}"),
                direction,
            });
        }
        if int_cmp(&seq, &self.last_seq) != std::cmp::Ordering::Greater {
            return Err(ReplayError::SeqNotIncreasing {
                seq,
                last: self.last_seq.clone(),
                direction,
            });
        }
        self.expire(now.monotonic);
        if self.nonce_set.contains(nonce) {
            return Err(ReplayError::NonceReplay { direction });
        }
        self.last_seq = seq;
        let key: Box<str> = nonce.into();
        self.nonce_set.insert(key.clone());
        self.nonce_order.push_back((key, now.monotonic));
        while self.nonce_order.len() > NONCE_CAPACITY {
            if let Some((old, _)) = self.nonce_order.pop_front() {
                self.nonce_set.remove(&old);
            }
        }
        Ok(())
    }

    fn expire(&mut self, monotonic: Duration) {
        let Some(cutoff) = monotonic.checked_sub(NONCE_TTL) else {
            return;
        };
        while let Some((_, inserted)) = self.nonce_order.front() {
            if *inserted >= cutoff {
                break;
            }
            if let Some((old, _)) = self.nonce_order.pop_front() {
                self.nonce_set.remove(&old);
            }
        }
    }
}

/// Numeric order of two unbounded integers.
pub fn int_cmp(a: &Int, b: &Int) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a, b) {
        (Int::Small(x), Int::Small(y)) => x.cmp(y),
        (Int::Big(x), Int::Small(_)) => {
            if x.starts_with('-') {
                Ordering::Less
            } else {
                Ordering::Greater
            }
        }
        (Int::Small(_), Int::Big(_)) => int_cmp(b, a).reverse(),
        (Int::Big(x), Int::Big(y)) => {
            let (xn, yn) = (x.starts_with('-'), y.starts_with('-'));
            match (xn, yn) {
                (true, false) => Ordering::Less,
                (false, true) => Ordering::Greater,
                _ => {
                    let mag = x.len().cmp(&y.len()).then_with(|| x.cmp(y));
                    if xn {
                        mag.reverse()
                    } else {
                        mag
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_777_636_800_000_000;

    fn at(secs: u64) -> Now {
        Now {
            wall_micros: NOW,
            monotonic: Duration::from_secs(secs),
        }
    }

    fn check(g: &mut ReplayGuard, seq: i64, nonce: &str, now: Now) -> Result<(), ReplayError> {
        let seq = Value::int(seq);
        let nonce = Value::str(nonce);
        let ts = Value::str("2026-05-01T12:00:00Z");
        g.check(
            EnvelopeFields {
                seq: Some(&seq),
                nonce: Some(&nonce),
                ts: Some(&ts),
            },
            now,
        )
    }

    #[test]
    fn nonce_expires_after_ttl_and_capacity_is_bounded() {
        let mut g = ReplayGuard::new(Direction::AgentToBrain);
        check(&mut g, 1, "n", at(0)).unwrap();
        assert!(matches!(
            check(&mut g, 2, "n", at(180)),
            Err(ReplayError::NonceReplay { .. })
        ));
        check(&mut g, 3, "n", at(181)).unwrap();
        for i in 0..(NONCE_CAPACITY as i64 + 100) {
            check(&mut g, 10 + i, &format!("x{i}"), at(200)).unwrap();
        }
        assert_eq!(g.nonces_held(), NONCE_CAPACITY);
    }

    #[test]
    fn big_int_order() {
        let big = Int::Big("99999999999999999999".into());
        let neg = Int::Big("-99999999999999999999".into());
        assert!(int_cmp(&big, &Int::Small(i64::MAX)).is_gt());
        assert!(int_cmp(&neg, &Int::Small(i64::MIN)).is_lt());
        assert!(int_cmp(&Int::Big("100000000000000000000".into()), &big).is_gt());
    }
}
