//! Charts drawn by the server as SVG: task throughput as bars (successes
//! solid, failures hatched, readable without colour), a queue's depth as
//! a line with a marker per bucket, and command latency as a solid mean
//! line with round markers beside a dashed maximum with square ones; every
//! bar and marker is titled with its numbers. Only numbers and instants go in, so nothing needs escaping (the
//! page names the chart in its caption).

use crate::insight::{DepthPoint, LatencyPoint, Point};
use std::fmt::Write as _;

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 160.0;
const LEFT: f64 = 40.0;
const BOTTOM: f64 = 20.0;

fn label(start: i64, with_date: bool) -> String {
    chrono::DateTime::from_timestamp(start, 0)
        .map(|t| {
            t.format(if with_date { "%m-%d %H:%M" } else { "%H:%M" })
                .to_string()
        })
        .unwrap_or_default()
}

/// The chart of `points` (every bucket present, oldest first).
pub fn throughput(points: &[Point], bucket_secs: i64) -> String {
    let max = points.iter().map(|p| p.total).max().unwrap_or(0).max(1);
    let n = points.len().max(1) as f64;
    let plot_w = WIDTH - LEFT;
    let plot_h = HEIGHT - BOTTOM;
    let bar_w = (plot_w / n).max(1.0);
    let total: i64 = points.iter().map(|p| p.total).sum();
    let failed: i64 = points.iter().map(|p| p.failure).sum();
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg class=\"chart\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" \
         aria-label=\"Finished tasks per bucket: {total} in all, {failed} failed\" \
         xmlns=\"http://www.w3.org/2000/svg\">\
         <defs><pattern id=\"hatch\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\" \
         patternTransform=\"rotate(45)\"><rect class=\"hatch-bg\" width=\"6\" height=\"6\"/>\
         <line class=\"hatch-line\" x1=\"0\" y1=\"0\" x2=\"0\" y2=\"6\" stroke-width=\"3\"/>\
         </pattern></defs>\
         <line class=\"axis\" x1=\"{LEFT}\" y1=\"{plot_h}\" x2=\"{WIDTH}\" y2=\"{plot_h}\"/>\
         <text class=\"tick\" x=\"{x}\" y=\"12\" text-anchor=\"end\">{max}</text>\
         <text class=\"tick\" x=\"{x}\" y=\"{plot_h}\" text-anchor=\"end\">0</text>",
        x = LEFT - 4.0
    );
    // A window over more than half a day names the date too.
    let span = match (points.first(), points.last()) {
        (Some(f), Some(l)) => l.start - f.start + bucket_secs,
        _ => 0,
    };
    let with_date = span > 12 * 3600;
    for (i, p) in points.iter().enumerate() {
        let x = LEFT + i as f64 * bar_w;
        let w = (bar_w - 1.0).max(0.5);
        let h_ok = (p.total - p.failure) as f64 / max as f64 * (plot_h - 14.0);
        let h_bad = p.failure as f64 / max as f64 * (plot_h - 14.0);
        let _ = write!(
            s,
            "<g><title>{}: {} finished, {} failed</title>",
            label(p.start, true),
            p.total,
            p.failure
        );
        if h_ok > 0.0 {
            let _ = write!(
                s,
                "<rect class=\"ok\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{h_ok:.1}\"/>",
                plot_h - h_ok
            );
        }
        if h_bad > 0.0 {
            let _ = write!(
                s,
                "<rect class=\"bad\" fill=\"url(#hatch)\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{h_bad:.1}\"/>",
                plot_h - h_ok - h_bad
            );
        }
        s.push_str("</g>");
    }
    if let (Some(first), Some(last)) = (points.first(), points.last()) {
        let mid = &points[points.len() / 2];
        let _ = write!(
            s,
            "<text class=\"tick\" x=\"{LEFT}\" y=\"{HEIGHT}\">{}</text>\
             <text class=\"tick\" x=\"{:.1}\" y=\"{HEIGHT}\" text-anchor=\"middle\">{}</text>\
             <text class=\"tick\" x=\"{WIDTH}\" y=\"{HEIGHT}\" text-anchor=\"end\">{}</text>",
            label(first.start, with_date),
            LEFT + (points.len() / 2) as f64 * bar_w + bar_w / 2.0,
            label(mid.start, with_date),
            label(last.start, with_date)
        );
    }
    s.push_str("</svg>");
    s
}

/// A queue's depth over the window `from..to` (seconds since the epoch) as
/// a line through the buckets that have reports, broken where buckets have
/// none, with a titled marker per bucket.
pub fn depth(points: &[DepthPoint], from: i64, to: i64, bucket_secs: i64) -> String {
    const H: f64 = 80.0;
    let peak = points.iter().map(|p| p.depth).max().unwrap_or(0);
    let max = peak.max(1);
    let plot_h = H - BOTTOM;
    let xy = |p: &DepthPoint| {
        (
            bucket_x(p.start, from, to, bucket_secs),
            plot_h - p.depth as f64 / max as f64 * (plot_h - 10.0),
        )
    };
    let latest = points
        .last()
        .map_or("no reports".to_owned(), |p| format!("latest {}", p.depth));
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg class=\"chart depth\" viewBox=\"0 0 {WIDTH} {H}\" role=\"img\" \
         aria-label=\"Queue depth: highest {peak}, {latest}\" xmlns=\"http://www.w3.org/2000/svg\">\
         <line class=\"axis\" x1=\"{LEFT}\" y1=\"{plot_h}\" x2=\"{WIDTH}\" y2=\"{plot_h}\"/>\
         <text class=\"tick\" x=\"{x}\" y=\"10\" text-anchor=\"end\">{max}</text>\
         <text class=\"tick\" x=\"{x}\" y=\"{plot_h}\" text-anchor=\"end\">0</text>",
        x = LEFT - 4.0
    );
    let line: Vec<(i64, (f64, f64))> = points.iter().map(|p| (p.start, xy(p))).collect();
    polylines(&mut s, "line", &line, bucket_secs);
    for p in points {
        let (x, y) = xy(p);
        let _ = write!(
            s,
            "<g><title>{}: depth {}</title><circle class=\"mark\" cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"2.5\"/></g>",
            label(p.start, true),
            p.depth
        );
    }
    window_ends(&mut s, H, from, to);
    s
}

/// The x of a bucket's middle on a chart of the window `from..to`.
fn bucket_x(start: i64, from: i64, to: i64, bucket_secs: i64) -> f64 {
    let span = (to - from).max(1) as f64;
    let mid = (start - from) as f64 + bucket_secs as f64 / 2.0;
    LEFT + (mid / span).clamp(0.0, 1.0) * (WIDTH - LEFT)
}

/// The window's first and last instants under the axis, and the closing
/// tag; a window over half a day names the date too.
fn window_ends(s: &mut String, height: f64, from: i64, to: i64) {
    let with_date = to - from > 12 * 3600;
    let _ = write!(
        s,
        "<text class=\"tick\" x=\"{LEFT}\" y=\"{height}\">{}</text>\
         <text class=\"tick\" x=\"{WIDTH}\" y=\"{height}\" text-anchor=\"end\">{}</text></svg>",
        label(from, with_date),
        label(to, with_date)
    );
}

/// One polyline of class `class` per run of adjacent buckets in `pts`
/// (bucket start, point), so a bucket without data breaks the line.
fn polylines(s: &mut String, class: &str, pts: &[(i64, (f64, f64))], bucket_secs: i64) {
    let mut run: Vec<String> = Vec::new();
    let flush = |run: &mut Vec<String>, s: &mut String| {
        if run.len() > 1 {
            let _ = write!(
                s,
                "<polyline class=\"{class}\" points=\"{}\"/>",
                run.join(" ")
            );
        }
        run.clear();
    };
    let mut previous: Option<i64> = None;
    for (start, (x, y)) in pts {
        if previous.is_some_and(|q| start - q > bucket_secs) {
            flush(&mut run, s);
        }
        run.push(format!("{x:.1},{y:.1}"));
        previous = Some(*start);
    }
    flush(&mut run, s);
}

/// Commands answered over the window `from..to`: the mean wait from issue
/// to result per bucket (solid line, round markers) and the longest
/// (dashed, square markers); a bucket with timeouts carries a cross on the
/// axis. Times in milliseconds, the axis scaled to the longest wait.
pub fn latency(points: &[LatencyPoint], from: i64, to: i64, bucket_secs: i64) -> String {
    const H: f64 = 120.0;
    let peak = points.iter().filter_map(|p| p.max_ms).max().unwrap_or(0);
    let max = peak.max(1);
    let plot_h = H - BOTTOM;
    let x_of = |start: i64| bucket_x(start, from, to, bucket_secs);
    let y_of = |ms: i64| plot_h - ms as f64 / max as f64 * (plot_h - 10.0);
    let answered: i64 = points.iter().map(|p| p.completed + p.failed).sum();
    let timed_out: i64 = points.iter().map(|p| p.timed_out).sum();
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg class=\"chart latency\" viewBox=\"0 0 {WIDTH} {H}\" role=\"img\" \
         aria-label=\"Command latency: {answered} answered, longest {peak} ms, {timed_out} timed out\" \
         xmlns=\"http://www.w3.org/2000/svg\">\
         <line class=\"axis\" x1=\"{LEFT}\" y1=\"{plot_h}\" x2=\"{WIDTH}\" y2=\"{plot_h}\"/>\
         <text class=\"tick\" x=\"{x}\" y=\"10\" text-anchor=\"end\">{}</text>\
         <text class=\"tick\" x=\"{x}\" y=\"{plot_h}\" text-anchor=\"end\">0</text>",
        ms_label(max),
        x = LEFT - 4.0
    );
    let mean: Vec<(i64, (f64, f64))> = points
        .iter()
        .filter_map(|p| p.mean_ms.map(|m| (p.start, (x_of(p.start), y_of(m)))))
        .collect();
    let longest: Vec<(i64, (f64, f64))> = points
        .iter()
        .filter_map(|p| p.max_ms.map(|m| (p.start, (x_of(p.start), y_of(m)))))
        .collect();
    polylines(&mut s, "line", &mean, bucket_secs);
    polylines(&mut s, "line dashed", &longest, bucket_secs);
    for p in points {
        let x = x_of(p.start);
        let _ = write!(
            s,
            "<g><title>{}: {} answered ({} failed), mean {}, longest {}, {} timed out</title>",
            label(p.start, true),
            p.completed + p.failed,
            p.failed,
            p.mean_ms.map_or("-".into(), ms_label),
            p.max_ms.map_or("-".into(), ms_label),
            p.timed_out
        );
        // The square first: where mean and longest meet, both show.
        if let Some(m) = p.max_ms {
            let _ = write!(
                s,
                "<rect class=\"mark\" x=\"{:.1}\" y=\"{:.1}\" width=\"5\" height=\"5\"/>",
                x - 2.5,
                y_of(m) - 2.5
            );
        }
        if let Some(m) = p.mean_ms {
            let _ = write!(
                s,
                "<circle class=\"mark\" cx=\"{x:.1}\" cy=\"{:.1}\" r=\"2.5\"/>",
                y_of(m)
            );
        }
        if p.timed_out > 0 {
            let _ = write!(
                s,
                "<text class=\"timeout\" x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">\u{d7}</text>",
                plot_h - 2.0
            );
        }
        s.push_str("</g>");
    }
    window_ends(&mut s, H, from, to);
    s
}

/// Milliseconds as a reader wants them: `850 ms`, `2.4 s`.
fn ms_label(ms: i64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(start: i64, total: i64, failure: i64) -> Point {
        Point {
            start,
            success: total - failure,
            failure,
            retry: 0,
            revoked: 0,
            total,
            avg_runtime_ms: None,
        }
    }

    #[test]
    fn bars_scale_to_the_busiest_bucket_and_failures_are_hatched() {
        let svg = throughput(&[point(0, 4, 1), point(60, 0, 0), point(120, 2, 2)], 60);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("6 in all, 3 failed"));
        assert_eq!(svg.matches("class=\"bad\" fill=\"url(#hatch)\"").count(), 2);
        assert_eq!(svg.matches("class=\"ok\"").count(), 1);
        assert_eq!(
            svg.matches("<title>").count(),
            3,
            "one titled group per bucket"
        );
        assert!(svg.contains(">4</text>"), "the y axis names the maximum");
        assert!(!svg.contains("style="), "no inline style under the CSP");
    }

    #[test]
    fn an_empty_window_draws_an_axis() {
        let svg = throughput(&[], 3600);
        assert!(svg.contains("0 in all, 0 failed"));
        assert!(!svg.contains("class=\"ok\"") && !svg.contains("class=\"bad\""));
    }

    #[test]
    fn latency_draws_mean_and_longest_apart_and_marks_timeouts() {
        let p = |start: i64, mean: Option<i64>, max: Option<i64>, timed_out: i64| LatencyPoint {
            start,
            completed: i64::from(mean.is_some()) * 2,
            failed: 0,
            timed_out,
            mean_ms: mean,
            max_ms: max,
        };
        let svg = latency(
            &[
                p(0, Some(400), Some(900), 0),
                p(60, Some(1500), Some(2400), 1),
                p(120, None, None, 2),
                p(240, Some(100), Some(100), 0),
            ],
            0,
            3600,
            60,
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(
            svg.contains("6 answered, longest 2400 ms, 3 timed out"),
            "{svg}"
        );
        // 0 and 60 are a run for each line; 240 stands alone.
        assert_eq!(svg.matches("<polyline class=\"line\"").count(), 1);
        assert_eq!(svg.matches("<polyline class=\"line dashed\"").count(), 1);
        assert_eq!(svg.matches("<circle").count(), 3);
        assert_eq!(svg.matches("<rect class=\"mark\"").count(), 3);
        assert_eq!(svg.matches("class=\"timeout\"").count(), 2);
        assert!(svg.contains(">2.4 s</text>"), "the axis names the longest");
        assert!(svg.contains("mean 1.5 s, longest 2.4 s, 1 timed out</title>"));
        assert!(!svg.contains("style="), "no inline style under the CSP");
        let empty = latency(&[], 0, 3600, 60);
        assert!(empty.contains("0 answered, longest 0 ms, 0 timed out"));
    }

    #[test]
    fn depth_lines_break_at_missing_buckets_and_markers_carry_the_numbers() {
        let p = |start: i64, depth: i64| DepthPoint { start, depth };
        let svg = depth(&[p(0, 3), p(60, 9), p(180, 4)], 0, 3600, 60);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("highest 9, latest 4"), "{svg}");
        // 0 and 60 are adjacent; 180 follows a gap and stands alone.
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert_eq!(svg.matches("<circle").count(), 3);
        assert!(svg.contains(": depth 9</title>"));
        assert!(!svg.contains("style="), "no inline style under the CSP");
        let empty = depth(&[], 0, 3600, 60);
        assert!(empty.contains("highest 0, no reports") && !empty.contains("<circle"));
    }
}
