//! The regression gate of `compare`, end to end through the binary: a
//! saved run judged against a saved baseline.

use std::process::Command;
use z4j_benches::compare::{self, CellResult, Db, Figures, Run};

fn figures(eps: f64, p99: f64) -> Figures {
    Figures {
        events: 600,
        events_per_second: eps,
        p50_ms: p99 / 3.0,
        p99_ms: p99,
        peak_rss_mib: Some(200.0),
        cpu_seconds: Some(1.0),
    }
}

/// A run where z4j-rs reaches `eps` events/s and `p99` ms in every cell
/// against a fixed reference.
fn run(eps: f64, p99: f64) -> Run {
    Run {
        commit: "test".into(),
        machine: "test".into(),
        started_at: "2026-11-27T00:00:00Z".into(),
        failures: Vec::new(),
        cells: compare::matrix(&[Db::Sqlite])
            .into_iter()
            .map(|cell| {
                let (reference, rust) = (figures(40.0, 4000.0), figures(eps, p99));
                CellResult {
                    cell,
                    ratios: compare::ratios(&reference, &rust),
                    reference,
                    rust,
                    floor: None,
                }
            })
            .collect(),
    }
}

fn gate(baseline: &Run, now: &Run, extra: &[&str]) -> (i32, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (b, n) = (dir.path().join("base.json"), dir.path().join("now.json"));
    std::fs::write(&b, serde_json::to_string(baseline).expect("json")).expect("write");
    std::fs::write(&n, serde_json::to_string(now).expect("json")).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_compare"))
        .arg("--results")
        .arg(&n)
        .arg("--baseline")
        .arg(&b)
        .args(extra)
        .output()
        .expect("run compare");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn passes_within_the_default_threshold() {
    let (code, out) = gate(&run(10_000.0, 10.0), &run(9_500.0, 10.5), &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("6 cells compared, threshold 10 %"), "{out}");
    assert!(out.contains("no regression"), "{out}");
}

#[test]
fn fails_past_the_threshold_naming_cell_and_metric() {
    let (code, out) = gate(&run(10_000.0, 10.0), &run(8_000.0, 10.0), &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("REGRESSION sqlite/c1/b1/w8 events/s ratio") && out.contains("20.0 % worse"),
        "{out}"
    );
    let (code, out) = gate(&run(10_000.0, 10.0), &run(10_000.0, 13.0), &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("p99 ratio"), "{out}");
}

#[test]
fn the_threshold_is_configurable() {
    let (code, out) = gate(
        &run(10_000.0, 10.0),
        &run(9_500.0, 10.0),
        &["--threshold", "0.03"],
    );
    assert_eq!(code, 1, "{out}");
    let (code, out) = gate(
        &run(10_000.0, 10.0),
        &run(8_000.0, 10.0),
        &["--threshold", "0.25"],
    );
    assert_eq!(code, 0, "{out}");
}

#[test]
fn a_baseline_without_common_cells_is_an_error() {
    let mut other = run(10_000.0, 10.0);
    for c in &mut other.cells {
        c.cell.database = Db::Postgres;
    }
    let (code, _) = gate(&other, &run(10_000.0, 10.0), &[]);
    assert_eq!(code, 2);
}
