//! Side-by-side ingest comparison: the same cells run against the reference
//! brain and against z4j-rs in one run on one machine, ratios per cell, and
//! a regression gate against a saved baseline of those ratios.

use serde::{Deserialize, Serialize};

/// One cell of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cell {
    pub database: Db,
    pub connections: usize,
    pub batch: usize,
    pub window: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Db {
    Sqlite,
    Postgres,
}

impl Db {
    pub fn name(self) -> &'static str {
        match self {
            Db::Sqlite => "sqlite",
            Db::Postgres => "postgres",
        }
    }
}

impl Cell {
    pub fn label(&self) -> String {
        format!(
            "{}/c{}/b{}/w{}",
            self.database.name(),
            self.connections,
            self.batch,
            self.window
        )
    }
}

/// Connections 1 and 4 x batch 1, 50, 500 x window 8 on each database.
pub fn matrix(dbs: &[Db]) -> Vec<Cell> {
    let mut out = Vec::new();
    for &database in dbs {
        for batch in [1, 50, 500] {
            for connections in [1, 4] {
                out.push(Cell {
                    database,
                    connections,
                    batch,
                    window: 8,
                });
            }
        }
    }
    out
}

/// Events per run for an implementation: enough for several seconds of
/// load at its expected rate, a multiple of 3 and of one batch per
/// connection. `scale` shrinks or grows every figure (`--scale`).
pub fn events_for(cell: &Cell, reference: bool, scale: f64) -> usize {
    let base: f64 = match (reference, cell.batch) {
        // The reference acks 35-50 events/s at batch 1, 100-230 above.
        (true, 1) => 600.0,
        (true, 50) => 4_500.0,
        (true, _) => 12_000.0,
        (false, 1) => 60_000.0,
        (false, 50) => 300_000.0,
        (false, _) => 600_000.0,
    };
    let unit = 3 * cell.batch * cell.connections;
    let want = (base * scale).max(unit as f64) as usize;
    want.div_ceil(unit) * unit
}

/// Frames in the largest group the brain's writer can commit for `cell`:
/// every connection's whole window, taken while the group is under the
/// writer's caps (it always takes the first frame, and one more while the
/// rows are below `max_rows`).
pub fn group_frames(cell: &Cell, max_frames: usize, max_rows: usize) -> usize {
    let outstanding = cell.connections * cell.window;
    let (mut frames, mut rows) = (0, 0);
    while frames < outstanding && frames < max_frames && (frames == 0 || rows < max_rows) {
        frames += 1;
        rows += cell.batch;
    }
    frames
}

/// Events per second when each commit takes `commit_ms` and carries
/// `group_events`: the most any brain that acks only what it committed can
/// reach with that database, whatever its row cost.
pub fn commit_bound(group_events: usize, commit_ms: f64) -> f64 {
    if commit_ms > 0.0 {
        group_events as f64 * 1000.0 / commit_ms
    } else {
        f64::INFINITY
    }
}

/// One database's floor run (`examples/floor.rs`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Floor {
    pub database: Db,
    /// The brain's smallest commit (one event, one group).
    pub commit_ms: crate::load::Latency,
    pub cells: Vec<FloorCell>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FloorCell {
    pub cell: Cell,
    /// Events per commit in the cell's largest group.
    pub group_events: usize,
    /// Those groups written straight through the store.
    pub floor_events_per_second: f64,
    /// `commit_bound(group_events, commit_ms.p50)`.
    pub bound_events_per_second: f64,
}

/// The measured figures of one implementation in one cell.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Figures {
    pub events: usize,
    pub events_per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub peak_rss_mib: Option<f64>,
    pub cpu_seconds: Option<f64>,
}

/// z4j-rs over the reference, per cell.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ratios {
    /// > 1: z4j-rs is faster.
    pub events_per_second: f64,
    /// < 1: z4j-rs answers sooner.
    pub p99: f64,
    /// < 1: z4j-rs uses less memory.
    pub peak_rss: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CellResult {
    pub cell: Cell,
    pub reference: Figures,
    pub rust: Figures,
    pub ratios: Ratios,
    /// The cell's floor and commit bound, measured in the same run.
    #[serde(default)]
    pub floor: Option<FloorCell>,
}

impl CellResult {
    /// z4j-rs events/s over the floor and over the commit bound.
    pub fn of_floor(&self) -> Option<(f64, f64)> {
        let f = self.floor.as_ref()?;
        Some((
            self.rust.events_per_second / f.floor_events_per_second,
            self.rust.events_per_second / f.bound_events_per_second,
        ))
    }
}

pub fn ratios(reference: &Figures, rust: &Figures) -> Ratios {
    let div = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::INFINITY };
    Ratios {
        events_per_second: div(rust.events_per_second, reference.events_per_second),
        p99: div(rust.p99_ms, reference.p99_ms),
        peak_rss: match (rust.peak_rss_mib, reference.peak_rss_mib) {
            (Some(r), Some(p)) => Some(div(r, p)),
            _ => None,
        },
    }
}

/// A whole comparison run, as saved with `--out` and read by `--baseline`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Run {
    pub commit: String,
    pub machine: String,
    pub started_at: String,
    pub cells: Vec<CellResult>,
    /// Runs that produced no figure (persistence check, stall, refusal).
    #[serde(default)]
    pub failures: Vec<String>,
}

/// A cell whose ratio moved the wrong way by more than the threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Regression {
    pub cell: String,
    pub metric: &'static str,
    pub baseline: f64,
    pub now: f64,
    /// Relative change, signed so that positive is worse.
    pub worse_by: f64,
}

/// Compares the ratios of `now` with those of `baseline` cell by cell
/// (cells missing from either side are ignored). Ratios, not absolute
/// figures: both were measured against the reference in their own run, so
/// a slower or faster machine cancels out.
pub fn regressions(baseline: &Run, now: &Run, threshold: f64) -> Vec<Regression> {
    let mut out = Vec::new();
    for n in &now.cells {
        let Some(b) = baseline.cells.iter().find(|b| b.cell == n.cell) else {
            continue;
        };
        // Events/s ratio: lower is worse.
        let eps = 1.0 - n.ratios.events_per_second / b.ratios.events_per_second;
        if eps > threshold {
            out.push(Regression {
                cell: n.cell.label(),
                metric: "events/s ratio",
                baseline: b.ratios.events_per_second,
                now: n.ratios.events_per_second,
                worse_by: eps,
            });
        }
        // p99 ratio: higher is worse.
        let p99 = n.ratios.p99 / b.ratios.p99 - 1.0;
        if p99 > threshold {
            out.push(Regression {
                cell: n.cell.label(),
                metric: "p99 ratio",
                baseline: b.ratios.p99,
                now: n.ratios.p99,
                worse_by: p99,
            });
        }
    }
    out
}

/// The Markdown table of a run (RESULTS.md and the console).
pub fn table(run: &Run) -> String {
    let mut out = String::from(
        "| cell | reference ev/s | z4j-rs ev/s | ratio | floor ev/s | ÷ floor | bound ev/s | ÷ bound | reference p99 ms | z4j-rs p99 ms | p99 ratio | reference RSS MiB | z4j-rs RSS MiB | RSS ratio |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let opt = |v: Option<f64>, digits: usize| {
        v.map(|x| format!("{x:.digits$}"))
            .unwrap_or_else(|| "-".into())
    };
    for c in &run.cells {
        let of = c.of_floor();
        out.push_str(&format!(
            "| {} | {:.0} | {:.0} | **{:.0}x** | {} | {} | {} | {} | {:.0} | {:.1} | {:.3} | {} | {} | {} |\n",
            c.cell.label(),
            c.reference.events_per_second,
            c.rust.events_per_second,
            c.ratios.events_per_second,
            opt(c.floor.as_ref().map(|f| f.floor_events_per_second), 0),
            opt(of.map(|o| o.0), 2),
            opt(c.floor.as_ref().map(|f| f.bound_events_per_second), 0),
            opt(of.map(|o| o.1), 2),
            c.reference.p99_ms,
            c.rust.p99_ms,
            c.ratios.p99,
            opt(c.reference.peak_rss_mib, 0),
            opt(c.rust.peak_rss_mib, 0),
            opt(c.ratios.peak_rss, 3),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(eps: f64, p99: f64) -> Figures {
        Figures {
            events: 600,
            events_per_second: eps,
            p50_ms: p99 / 2.0,
            p99_ms: p99,
            peak_rss_mib: Some(100.0),
            cpu_seconds: None,
        }
    }

    fn run(cells: &[(Cell, f64, f64)]) -> Run {
        Run {
            commit: "c".into(),
            machine: "m".into(),
            started_at: "t".into(),
            failures: Vec::new(),
            cells: cells
                .iter()
                .map(|(cell, eps, p99)| {
                    let (reference, rust) = (figures(40.0, 4000.0), figures(*eps, *p99));
                    CellResult {
                        cell: *cell,
                        ratios: ratios(&reference, &rust),
                        reference,
                        rust,
                        floor: None,
                    }
                })
                .collect(),
        }
    }

    #[test]
    fn groups_take_every_window_within_the_writer_caps() {
        let cell = |connections, batch| Cell {
            database: Db::Sqlite,
            connections,
            batch,
            window: 8,
        };
        assert_eq!(group_frames(&cell(1, 1), 512, 10_000), 8);
        assert_eq!(group_frames(&cell(4, 50), 512, 10_000), 32);
        // 20 frames of 500 reach 10 000 rows; the writer stops there.
        assert_eq!(group_frames(&cell(4, 500), 512, 10_000), 20);
        // Below the cap it takes one more, as the writer does.
        assert_eq!(group_frames(&cell(4, 500), 512, 9_999), 20);
        assert_eq!(group_frames(&cell(4, 500), 512, 9_500), 19);
        // A frame larger than the cap still goes alone.
        assert_eq!(group_frames(&cell(4, 500), 512, 100), 1);
        assert_eq!(group_frames(&cell(64, 1), 512, 10_000), 512);
        assert_eq!(commit_bound(8, 4.0), 2000.0);
        assert!(commit_bound(8, 0.0).is_infinite());
    }

    #[test]
    fn the_matrix_has_the_issue_cells() {
        let m = matrix(&[Db::Sqlite, Db::Postgres]);
        assert_eq!(m.len(), 12);
        assert!(m.iter().all(|c| c.window == 8));
        assert!(m
            .iter()
            .any(|c| c.database == Db::Postgres && c.batch == 500 && c.connections == 4));
    }

    #[test]
    fn event_counts_fill_whole_lifecycles_and_batches() {
        for cell in matrix(&[Db::Sqlite]) {
            for reference in [true, false] {
                for scale in [0.001, 0.1, 1.0] {
                    let n = events_for(&cell, reference, scale);
                    assert_eq!(n % 3, 0);
                    assert_eq!(n % (cell.batch * cell.connections), 0);
                    assert!(n >= cell.batch * cell.connections);
                }
            }
        }
    }

    #[test]
    fn regressions_are_ratio_changes_past_the_threshold() {
        let a = matrix(&[Db::Sqlite])[0];
        let b = matrix(&[Db::Sqlite])[1];
        let base = run(&[(a, 4000.0, 40.0), (b, 4000.0, 40.0)]);
        // 5 % slower and 5 % later: inside 10 %.
        let fine = run(&[(a, 3800.0, 42.0), (b, 4400.0, 30.0)]);
        assert!(regressions(&base, &fine, 0.10).is_empty());
        // 20 % fewer events/s in a, p99 50 % later in b.
        let worse = run(&[(a, 3200.0, 40.0), (b, 4000.0, 60.0)]);
        let r = regressions(&base, &worse, 0.10);
        assert_eq!(r.len(), 2);
        assert_eq!(
            (r[0].metric, r[0].cell.as_str()),
            ("events/s ratio", "sqlite/c1/b1/w8")
        );
        assert!((r[0].worse_by - 0.2).abs() < 1e-9);
        assert_eq!(
            (r[1].metric, r[1].cell.as_str()),
            ("p99 ratio", "sqlite/c4/b1/w8")
        );
        assert!((r[1].worse_by - 0.5).abs() < 1e-9);
        // A stricter threshold catches the small move too.
        assert_eq!(regressions(&base, &fine, 0.04).len(), 2);
    }
}
