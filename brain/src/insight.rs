//! What the dashboard concludes from the aggregates (dashboard spec 3.1–3.3):
//! a project's failure rate and health, the items that need attention, the
//! trend windows and buckets with their cap, and a sparse series filled for
//! a chart. Pure: the store counts, this decides; REST and pages share it.

use crate::store::aggregates::{Counters, LatencyCell, TrendCell};
use crate::store::commands::Status as CommandStatus;
use crate::store::observed::DepthSample;
use crate::store::Ts;
use serde::Serialize;

/// The summary's counting window and its activity window.
pub const SUMMARY_WINDOW_SECS: i64 = 24 * 3600;
pub const ACTIVITY_WINDOW_SECS: i64 = 30 * 24 * 3600;

/// Failure rate above which a project is degraded and flagged.
const RATE_WARN: f64 = 0.05;
/// Failure rate above which the flag is critical.
const RATE_CRITICAL: f64 = 0.20;
/// Receives a rate needs before it is flagged (a few tasks say little).
pub const RATE_MIN_TASKS: i64 = 20;

/// Failures ÷ receives of the window: 0 without failures, 1 with failures
/// and no receives (received before the window), capped at 1.
pub fn failure_rate(received: i64, failed: i64) -> f64 {
    if failed <= 0 {
        0.0
    } else if received <= 0 {
        1.0
    } else {
        (failed as f64 / received as f64).min(1.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Offline,
    Degraded,
    Idle,
    Healthy,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Offline => "offline",
            Health::Degraded => "degraded",
            Health::Idle => "idle",
            Health::Healthy => "healthy",
        }
    }
}

/// The first rule that holds: every agent offline; a high failure rate,
/// a stuck command or some agent offline; nothing running; else healthy.
pub fn health(c: &Counters) -> Health {
    if c.agents_total > 0 && c.agents_online == 0 {
        Health::Offline
    } else if failure_rate(c.received, c.failed) > RATE_WARN
        || c.stuck_commands > 0
        || c.agents_online < c.agents_total
    {
        Health::Degraded
    } else if c.received == 0 && c.workers_online == 0 {
        Health::Idle
    } else {
        Health::Healthy
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    Warning,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AttentionKind {
    AgentOffline,
    HighFailureRate,
    StuckCommands,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attention {
    pub kind: AttentionKind,
    pub severity: Severity,
    pub count: Option<i64>,
    pub message: String,
}

/// At most one item per rule for a project; a failure rate counts with
/// more than `min_tasks` receives ([`RATE_MIN_TASKS`]).
pub fn attention(c: &Counters, min_tasks: i64) -> Vec<Attention> {
    let mut out = Vec::new();
    let offline = c.agents_total - c.agents_online;
    if offline > 0 {
        let all = c.agents_online == 0;
        out.push(Attention {
            kind: AttentionKind::AgentOffline,
            severity: if all {
                Severity::Critical
            } else {
                Severity::Warning
            },
            count: Some(offline),
            message: if all && offline == 1 {
                "its agent is offline".to_owned()
            } else if all {
                format!("all {offline} agents are offline")
            } else {
                format!("{offline} of {} agents offline", c.agents_total)
            },
        });
    }
    let rate = failure_rate(c.received, c.failed);
    let severity = if c.failed > 0 && c.received == 0 {
        Some(Severity::Critical)
    } else if rate > RATE_WARN && c.received > min_tasks {
        Some(if rate > RATE_CRITICAL {
            Severity::Critical
        } else {
            Severity::Warning
        })
    } else {
        None
    };
    if let Some(severity) = severity {
        out.push(Attention {
            kind: AttentionKind::HighFailureRate,
            severity,
            count: Some(c.failed),
            message: format!(
                "{:.1}% of tasks failed in the last 24 h ({} failed, {} received)",
                rate * 100.0,
                c.failed,
                c.received
            ),
        });
    }
    if c.stuck_commands > 0 {
        out.push(Attention {
            kind: AttentionKind::StuckCommands,
            severity: Severity::Warning,
            count: Some(c.stuck_commands),
            message: format!(
                "{} command(s) dispatched and past their deadline",
                c.stuck_commands
            ),
        });
    }
    out
}

/// The windows `/stats?hours=` accepts; anything else means 24.
pub const STATS_HOURS: [i64; 5] = [1, 6, 24, 72, 168];

/// A project's health as `/stats` reports it (a coarser rule than the
/// summary's): critical with no agent online; degraded when an agent is
/// offline, the queues hold 10 000 tasks or more, or a tenth or more of the
/// finished tasks failed; else healthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SystemHealth {
    pub status: &'static str,
    pub agents_all_online: bool,
    pub queue_depth_ok: bool,
    pub failure_rate_ok: bool,
    pub brain_db_ok: bool,
}

pub fn system_health(
    agents_online: i64,
    agents_offline: i64,
    queue_depth: i64,
    finished_failure_rate: f64,
) -> SystemHealth {
    let agents_all_online = agents_offline == 0 && agents_online > 0;
    let queue_depth_ok = queue_depth < 10_000;
    let failure_rate_ok = finished_failure_rate < 0.1;
    let status = if agents_online == 0 {
        "critical"
    } else if !agents_all_online || !queue_depth_ok || !failure_rate_ok {
        "degraded"
    } else {
        "healthy"
    };
    SystemHealth {
        status,
        agents_all_online,
        queue_depth_ok,
        failure_rate_ok,
        brain_db_ok: true,
    }
}

/// `exception` as the failure list shows it: at most 500 characters, the
/// last one an ellipsis when cut.
pub fn short_exception(s: &str) -> String {
    const MAX: usize = 500;
    if s.chars().count() <= MAX {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(MAX - 1).collect();
    out.push('…');
    out
}

/// A trends window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    H1,
    H6,
    H24,
    H72,
    D7,
}

impl Window {
    pub const ALL: [Window; 5] = [Window::H1, Window::H6, Window::H24, Window::H72, Window::D7];

    pub fn parse(s: &str) -> Option<Window> {
        Window::ALL.into_iter().find(|w| w.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Window::H1 => "1h",
            Window::H6 => "6h",
            Window::H24 => "24h",
            Window::H72 => "72h",
            Window::D7 => "7d",
        }
    }

    pub fn secs(self) -> i64 {
        match self {
            Window::H1 => 3600,
            Window::H6 => 6 * 3600,
            Window::H24 => 24 * 3600,
            Window::H72 => 72 * 3600,
            Window::D7 => 7 * 24 * 3600,
        }
    }
}

impl Window {
    /// The bucket a chart of this window draws: 60 to 168 bars.
    pub fn chart_bucket(self) -> Bucket {
        match self {
            Window::H1 => Bucket::M1,
            Window::H6 => Bucket::M5,
            Window::H24 => Bucket::M15,
            Window::H72 | Window::D7 => Bucket::H1,
        }
    }
}

/// A trends bucket width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    M1,
    M5,
    M15,
    H1,
    D1,
}

impl Bucket {
    pub const ALL: [Bucket; 5] = [Bucket::M1, Bucket::M5, Bucket::M15, Bucket::H1, Bucket::D1];

    pub fn parse(s: &str) -> Option<Bucket> {
        Bucket::ALL.into_iter().find(|b| b.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Bucket::M1 => "1m",
            Bucket::M5 => "5m",
            Bucket::M15 => "15m",
            Bucket::H1 => "1h",
            Bucket::D1 => "1d",
        }
    }

    pub fn secs(self) -> i64 {
        match self {
            Bucket::M1 => 60,
            Bucket::M5 => 300,
            Bucket::M15 => 900,
            Bucket::H1 => 3600,
            Bucket::D1 => 86_400,
        }
    }
}

/// Buckets one response may carry.
pub const MAX_BUCKETS: i64 = 500;

/// The pair's bucket count when it is within [`MAX_BUCKETS`].
pub fn bucket_count(w: Window, b: Bucket) -> Option<i64> {
    let n = w.secs() / b.secs();
    (n <= MAX_BUCKETS).then_some(n)
}

/// One bucket of finished tasks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Point {
    /// Bucket start, seconds since the epoch.
    #[serde(skip)]
    pub start: i64,
    pub success: i64,
    pub failure: i64,
    pub retry: i64,
    pub revoked: i64,
    pub total: i64,
    pub avg_runtime_ms: Option<i64>,
}

impl Point {
    fn empty(start: i64) -> Point {
        Point {
            start,
            success: 0,
            failure: 0,
            retry: 0,
            revoked: 0,
            total: 0,
            avg_runtime_ms: None,
        }
    }
}

/// The sparse series: one point per bucket that has rows, by start.
pub fn series(cells: &[TrendCell]) -> Vec<Point> {
    let mut out: Vec<(Point, i64, i64)> = Vec::new();
    for c in cells {
        if out.last().is_none_or(|(p, _, _)| p.start != c.bucket) {
            out.push((Point::empty(c.bucket), 0, 0));
        }
        let Some((p, sum, n)) = out.last_mut() else {
            continue;
        };
        match c.state.as_str() {
            "success" => p.success += c.count,
            "failure" => p.failure += c.count,
            "retry" => p.retry += c.count,
            "revoked" => p.revoked += c.count,
            _ => continue,
        }
        p.total += c.count;
        *sum += c.runtime_sum;
        *n += c.runtime_count;
    }
    out.into_iter()
        .map(|(mut p, sum, n)| {
            p.avg_runtime_ms = (n > 0).then(|| sum / n);
            p
        })
        .collect()
}

/// The series with every bucket of the window present (empty ones zero),
/// from the bucket holding `now - window` to the one holding `now`: what a
/// chart draws, so a quiet hour shows as a gap rather than vanishing.
pub fn filled(points: &[Point], w: Window, b: Bucket, now: Ts) -> Vec<Point> {
    let step = b.secs();
    let end = now.0.timestamp().div_euclid(step) * step;
    let start = (now.0.timestamp() - w.secs()).div_euclid(step) * step;
    let mut out = Vec::new();
    let mut it = points.iter().peekable();
    let mut t = start;
    while t <= end {
        while it.peek().is_some_and(|p| p.start < t) {
            it.next();
        }
        match it.peek() {
            Some(p) if p.start == t => out.push((*p).clone()),
            _ => out.push(Point::empty(t)),
        }
        t += step;
    }
    out
}

/// Queues one depth chart or response carries (the first by engine and
/// name); a project's other queues are listed without a history.
pub const MAX_DEPTH_QUEUES: i64 = 50;

/// One queue's depth over a window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DepthSeries {
    pub engine: String,
    pub name: String,
    pub points: Vec<DepthPoint>,
}

/// The highest depth reported in one bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DepthPoint {
    /// Bucket start, seconds since the epoch.
    #[serde(skip)]
    pub start: i64,
    pub depth: i64,
}

/// Per-minute samples (ordered by queue, then minute) as one sparse series
/// per queue: a point per bucket of `bucket_secs` that has samples, holding
/// their maximum.
pub fn depth_series(samples: &[DepthSample], bucket_secs: i64) -> Vec<DepthSeries> {
    let mut out: Vec<DepthSeries> = Vec::new();
    for s in samples {
        let start = s.minute.0.timestamp().div_euclid(bucket_secs) * bucket_secs;
        if out
            .last()
            .is_none_or(|q| q.engine != s.engine || q.name != s.name)
        {
            out.push(DepthSeries {
                engine: s.engine.clone(),
                name: s.name.clone(),
                points: Vec::new(),
            });
        }
        let Some(q) = out.last_mut() else { continue };
        match q.points.last_mut() {
            Some(p) if p.start == start => p.depth = p.depth.max(s.depth),
            _ => q.points.push(DepthPoint {
                start,
                depth: s.depth,
            }),
        }
    }
    out
}

/// One bucket of finished commands: how many the agents answered (and
/// how fast, from issue to result) and how many timed out unanswered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LatencyPoint {
    /// Bucket start, seconds since the epoch.
    #[serde(skip)]
    pub start: i64,
    pub completed: i64,
    pub failed: i64,
    pub timed_out: i64,
    /// Mean (truncated) and highest wait of the answered ones; none
    /// when every command of the bucket timed out.
    pub mean_ms: Option<i64>,
    pub max_ms: Option<i64>,
}

/// The sparse latency series: a point per bucket that has cells (ordered
/// by bucket), statuses other than the three finished ones ignored.
pub fn latency_series(cells: &[LatencyCell]) -> Vec<LatencyPoint> {
    let mut out: Vec<(LatencyPoint, i64)> = Vec::new();
    for c in cells {
        if out.last().is_none_or(|(p, _)| p.start != c.bucket) {
            out.push((
                LatencyPoint {
                    start: c.bucket,
                    completed: 0,
                    failed: 0,
                    timed_out: 0,
                    mean_ms: None,
                    max_ms: None,
                },
                0,
            ));
        }
        let Some((p, sum)) = out.last_mut() else {
            continue;
        };
        match CommandStatus::parse(&c.status) {
            Some(CommandStatus::Completed) => p.completed += c.count,
            Some(CommandStatus::Failed) => p.failed += c.count,
            Some(CommandStatus::Timeout) => {
                p.timed_out += c.count;
                continue;
            }
            _ => continue,
        }
        *sum += c.sum_ms;
        p.max_ms = Some(p.max_ms.unwrap_or(0).max(c.max_ms));
    }
    out.into_iter()
        .map(|(mut p, sum)| {
            let answered = p.completed + p.failed;
            p.mean_ms = (answered > 0).then(|| sum / answered);
            p
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(received: i64, failed: i64) -> Counters {
        Counters {
            received,
            failed,
            workers_online: 1,
            workers_total: 1,
            agents_online: 1,
            agents_total: 1,
            ..Counters::default()
        }
    }

    #[test]
    fn failure_rate_edges() {
        assert_eq!(failure_rate(0, 0), 0.0);
        assert_eq!(failure_rate(10, 0), 0.0);
        assert_eq!(failure_rate(0, 3), 1.0);
        assert_eq!(failure_rate(4, 1), 0.25);
        assert_eq!(failure_rate(2, 5), 1.0);
    }

    #[test]
    fn health_rules_in_order() {
        let mut c = counters(100, 0);
        assert_eq!(health(&c), Health::Healthy);
        c.agents_online = 0;
        c.failed = 50;
        assert_eq!(health(&c), Health::Offline, "offline wins over degraded");
        c.agents_online = 1;
        assert_eq!(health(&c), Health::Degraded);
        c.failed = 5; // exactly 5 %: not above
        assert_eq!(health(&c), Health::Healthy);
        c.failed = 6;
        assert_eq!(health(&c), Health::Degraded);
        let mut idle = counters(0, 0);
        idle.workers_online = 0;
        assert_eq!(health(&idle), Health::Idle);
        let none = Counters::default();
        assert_eq!(
            health(&none),
            Health::Idle,
            "no agents at all is not offline"
        );
    }

    #[test]
    fn failure_rate_attention_needs_more_than_twenty_tasks() {
        let kinds = |c: &Counters| {
            attention(c, RATE_MIN_TASKS)
                .into_iter()
                .map(|a| (a.kind, a.severity))
                .collect::<Vec<_>>()
        };
        assert!(kinds(&counters(20, 10)).is_empty(), "20 tasks: not flagged");
        assert_eq!(
            kinds(&counters(21, 2)),
            vec![(AttentionKind::HighFailureRate, Severity::Warning)]
        );
        assert!(kinds(&counters(100, 5)).is_empty(), "5 % is not above 5 %");
        assert_eq!(
            kinds(&counters(100, 21)),
            vec![(AttentionKind::HighFailureRate, Severity::Critical)]
        );
        assert_eq!(
            kinds(&counters(100, 20)),
            vec![(AttentionKind::HighFailureRate, Severity::Warning)]
        );
        assert_eq!(
            kinds(&counters(0, 1)),
            vec![(AttentionKind::HighFailureRate, Severity::Critical)]
        );
    }

    #[test]
    fn agent_offline_is_critical_only_when_none_is_online() {
        let mut c = counters(0, 0);
        c.agents_total = 3;
        c.agents_online = 1;
        let a = attention(&c, RATE_MIN_TASKS);
        assert_eq!((a[0].severity, a[0].count), (Severity::Warning, Some(2)));
        assert_eq!(a[0].message, "2 of 3 agents offline");
        c.agents_online = 0;
        assert_eq!(
            attention(&c, RATE_MIN_TASKS)[0].severity,
            Severity::Critical
        );
        assert_eq!(
            attention(&c, RATE_MIN_TASKS)[0].message,
            "all 3 agents are offline"
        );
        c.agents_total = 1;
        assert_eq!(
            attention(&c, RATE_MIN_TASKS)[0].message,
            "its agent is offline"
        );
    }

    #[test]
    fn system_health_edges() {
        assert_eq!(system_health(0, 0, 0, 0.0).status, "critical");
        assert_eq!(system_health(1, 0, 0, 0.0).status, "healthy");
        assert_eq!(system_health(1, 1, 0, 0.0).status, "degraded");
        assert_eq!(system_health(1, 0, 9_999, 0.0999).status, "healthy");
        assert_eq!(system_health(1, 0, 10_000, 0.0).status, "degraded");
        assert_eq!(system_health(1, 0, 0, 0.1).status, "degraded");
    }

    #[test]
    fn exceptions_are_cut_to_500_characters() {
        assert_eq!(short_exception("boom"), "boom");
        let long = "é".repeat(501);
        let cut = short_exception(&long);
        assert_eq!(cut.chars().count(), 500);
        assert!(cut.ends_with('…'));
        assert_eq!(short_exception(&"x".repeat(500)), "x".repeat(500));
    }

    #[test]
    fn bucket_cap_refuses_exactly_the_documented_pairs() {
        let mut refused = Vec::new();
        for w in Window::ALL {
            for b in Bucket::ALL {
                if bucket_count(w, b).is_none() {
                    refused.push(format!("{}/{}", w.as_str(), b.as_str()));
                }
            }
        }
        assert_eq!(
            refused,
            ["24h/1m", "72h/1m", "72h/5m", "7d/1m", "7d/5m", "7d/15m"]
        );
    }

    #[test]
    fn series_sums_states_and_truncates_the_mean() {
        let cell = |bucket, state: &str, count, runtime_sum, runtime_count| TrendCell {
            bucket,
            state: state.into(),
            count,
            runtime_sum,
            runtime_count,
        };
        let s = series(&[
            cell(60, "failure", 1, 10, 1),
            cell(60, "success", 2, 11, 2),
            cell(180, "revoked", 1, 0, 0),
        ]);
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].success, s[0].failure, s[0].total), (2, 1, 3));
        assert_eq!(s[0].avg_runtime_ms, Some(7), "21 / 3 truncated");
        assert_eq!((s[1].revoked, s[1].avg_runtime_ms), (1, None));
    }

    #[test]
    fn latency_means_the_answered_and_counts_timeouts_apart() {
        let cell = |bucket, status: &str, count, sum_ms, max_ms| LatencyCell {
            bucket,
            status: status.into(),
            count,
            sum_ms,
            max_ms,
        };
        let s = latency_series(&[
            cell(60, "completed", 2, 1000, 700),
            cell(60, "failed", 1, 2001, 2001),
            cell(60, "timeout", 4, 0, 0),
            cell(120, "timeout", 1, 0, 0),
            cell(180, "pending", 1, 5, 5),
        ]);
        assert_eq!(s.len(), 3);
        assert_eq!(
            (s[0].completed, s[0].failed, s[0].timed_out),
            (2, 1, 4),
            "{s:?}"
        );
        assert_eq!((s[0].mean_ms, s[0].max_ms), (Some(1000), Some(2001)));
        assert_eq!((s[1].timed_out, s[1].mean_ms, s[1].max_ms), (1, None, None));
        assert_eq!((s[2].completed, s[2].mean_ms), (0, None), "not finished");
    }

    #[test]
    fn filled_has_every_bucket_of_the_window() {
        let now = Ts(chrono::DateTime::from_timestamp(7200 + 30, 0).unwrap_or_default());
        let mut p = Point::empty(3600 + 600);
        p.success = 4;
        p.total = 4;
        let f = filled(&[p], Window::H1, Bucket::M5, now);
        assert_eq!(f.first().map(|p| p.start), Some(3600));
        assert_eq!(f.last().map(|p| p.start), Some(7200));
        assert_eq!(f.len(), 13);
        assert_eq!(f.iter().map(|p| p.total).sum::<i64>(), 4);
        assert_eq!(f[2].success, 4);
    }
    #[test]
    fn depth_series_keeps_each_buckets_highest_report_per_queue() {
        let at = |min: i64| {
            Ts(chrono::DateTime::from_timestamp(1_800_000_000 + min * 60, 0).unwrap_or_default())
        };
        let sample = |name: &str, min: i64, depth: i64| DepthSample {
            engine: "rq".into(),
            name: name.into(),
            minute: at(min),
            depth,
        };
        // 1 800 000 000 is a multiple of 300: minutes 0..4 share a bucket.
        let got = depth_series(
            &[
                sample("a", 0, 3),
                sample("a", 4, 9),
                sample("a", 5, 2),
                sample("b", 1, 7),
            ],
            300,
        );
        let flat: Vec<(&str, Vec<(i64, i64)>)> = got
            .iter()
            .map(|q| {
                (
                    q.name.as_str(),
                    q.points
                        .iter()
                        .map(|p| (p.start - 1_800_000_000, p.depth))
                        .collect(),
                )
            })
            .collect();
        assert_eq!(flat, [("a", vec![(0, 9), (300, 2)]), ("b", vec![(0, 7)])]);
        assert!(depth_series(&[], 60).is_empty());
    }
}
