//! Process metrics for `/metrics` (Prometheus text format): counters the
//! request, ingest, command and notification paths bump, and gauges read
//! at scrape time. One `Metrics` per application, owned by `AppState` and
//! handed to each component that records into it. Plain atomics and small maps; nothing on a hot path
//! takes more than one uncontended lock.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the ack-latency histogram.
pub const ACK_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Default)]
pub struct Histogram {
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    fn new() -> Histogram {
        Histogram {
            buckets: ACK_BUCKETS.iter().map(|_| AtomicU64::new(0)).collect(),
            ..Default::default()
        }
    }

    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (b, le) in self.buckets.iter().zip(ACK_BUCKETS) {
            if secs <= *le {
                b.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }
}

type Labeled = Mutex<BTreeMap<Vec<String>, u64>>;

/// One scheduled verification of the audit chain.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ChainCheck {
    /// RFC 3339.
    pub at: String,
    /// `clean`, `failed` (the chain does not verify) or `error` (the walk
    /// could not finish).
    pub outcome: &'static str,
    pub rows: u64,
    /// Why it failed: the first problem, with its row id when there is one.
    pub problem: Option<String>,
}

pub struct Metrics {
    pub http_requests: Labeled,
    pub events_received: AtomicU64,
    pub events_ingested: AtomicU64,
    pub events_rejected: AtomicU64,
    pub ack_latency: Histogram,
    pub commands: Labeled,
    pub notifications: Labeled,
    pub scheduler_misfires: Labeled,
    pub agents_offline_detected: AtomicU64,
    /// -1 until the first checkpoint ran.
    pub wal_checkpoint_pages_last: AtomicI64,
    pub wal_checkpoint_last_run: AtomicI64,
    pub wal_checkpoint_error: AtomicI64,
    pub audit_retention_pruned_total: AtomicU64,
    pub audit_retention_last_deleted: AtomicI64,
    pub audit_retention_last_run: AtomicI64,
    pub audit_retention_error: AtomicI64,
    /// Scheduled chain verifications by outcome (clean, failed, error).
    pub audit_chain_verifications: Labeled,
    /// Rows the last verification walked.
    pub audit_chain_rows_verified: AtomicI64,
    /// The last verification's result, for the system page.
    pub audit_chain_last: Mutex<Option<ChainCheck>>,
    /// Long-poll sessions held (live or invalidated), kept by the gateway.
    pub longpoll_sessions: AtomicI64,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            http_requests: Mutex::default(),
            events_received: AtomicU64::new(0),
            events_ingested: AtomicU64::new(0),
            events_rejected: AtomicU64::new(0),
            ack_latency: Histogram::new(),
            commands: Mutex::default(),
            notifications: Mutex::default(),
            scheduler_misfires: Mutex::default(),
            agents_offline_detected: AtomicU64::new(0),
            wal_checkpoint_pages_last: AtomicI64::new(-1),
            wal_checkpoint_last_run: AtomicI64::new(0),
            wal_checkpoint_error: AtomicI64::new(0),
            audit_retention_pruned_total: AtomicU64::new(0),
            audit_retention_last_deleted: AtomicI64::new(0),
            audit_retention_last_run: AtomicI64::new(0),
            audit_retention_error: AtomicI64::new(0),
            audit_chain_verifications: Mutex::default(),
            audit_chain_rows_verified: AtomicI64::new(0),
            audit_chain_last: Mutex::new(None),
            longpoll_sessions: AtomicI64::new(0),
        }
    }
}

pub fn bump(map: &Labeled, labels: &[&str]) {
    let mut m = map.lock().unwrap_or_else(|p| p.into_inner());
    *m.entry(labels.iter().map(|s| (*s).to_owned()).collect())
        .or_default() += 1;
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders metric families in the text exposition format.
pub struct Text(String);

impl Text {
    pub fn new() -> Text {
        Text(String::new())
    }

    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        self.0
            .push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
    }

    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            let inner: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            self.0.push_str(&format!("{{{}}}", inner.join(",")));
        }
        self.0.push_str(&format!(" {value}\n"));
    }

    pub fn labeled(&mut self, name: &str, keys: &[&str], map: &Labeled) {
        let m = map.lock().unwrap_or_else(|p| p.into_inner());
        for (values, n) in m.iter() {
            let labels: Vec<(&str, &str)> = keys
                .iter()
                .copied()
                .zip(values.iter().map(String::as_str))
                .collect();
            self.sample(name, &labels, *n as f64);
        }
    }

    pub fn histogram(&mut self, name: &str, h: &Histogram) {
        for (b, le) in h.buckets.iter().zip(ACK_BUCKETS) {
            self.sample(
                &format!("{name}_bucket"),
                &[("le", &le.to_string())],
                b.load(Ordering::Relaxed) as f64,
            );
        }
        let count = h.count.load(Ordering::Relaxed) as f64;
        self.sample(&format!("{name}_bucket"), &[("le", "+Inf")], count);
        self.sample(
            &format!("{name}_sum"),
            &[],
            h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
        );
        self.sample(&format!("{name}_count"), &[], count);
    }

    pub fn finish(self) -> String {
        self.0
    }
}

impl Default for Text {
    fn default() -> Self {
        Text::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_format() {
        let h = Histogram::new();
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(20));
        let map: Labeled = Mutex::default();
        bump(&map, &["GET", "200"]);
        bump(&map, &["GET", "200"]);
        let mut t = Text::new();
        t.family("x_total", "counter", "help");
        t.labeled("x_total", &["method", "status"], &map);
        t.histogram("lat", &h);
        t.sample("q", &[("name", "a\"b")], 1.0);
        let out = t.finish();
        assert!(out.contains("# TYPE x_total counter\n"));
        assert!(out.contains("x_total{method=\"GET\",status=\"200\"} 2\n"));
        assert!(out.contains("lat_bucket{le=\"0.005\"} 1\n"));
        assert!(out.contains("lat_bucket{le=\"+Inf\"} 2\n"));
        assert!(out.contains("lat_count 2\n"));
        assert!(out.contains("q{name=\"a\\\"b\"} 1\n"));
    }
}
