//! The brain's resources from `/proc`: peak resident memory (sampled every
//! 100 ms, summed over the process and its descendants, so a brain that
//! forks workers is measured whole) and CPU seconds spent during the run.

use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Linux reports CPU times in USER_HZ ticks, fixed at 100 for userspace.
const TICKS_PER_SECOND: f64 = 100.0;

#[derive(Debug, Clone, Serialize)]
pub struct ProcUsage {
    pub pid: u32,
    pub peak_rss_mib: f64,
    pub cpu_seconds: f64,
}

pub struct ProcSampler {
    pid: u32,
    cpu_at_start: f64,
    peak_kib: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl ProcSampler {
    pub fn start(pid: u32) -> ProcSampler {
        let peak_kib = Arc::new(AtomicU64::new(rss_kib(pid)));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (peak, stop) = (peak_kib.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        };
        ProcSampler {
            pid,
            cpu_at_start: cpu_seconds(pid),
            peak_kib,
            stop,
            thread,
        }
    }

    pub fn stop(self) -> Result<ProcUsage, String> {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        if !std::path::Path::new(&format!("/proc/{}", self.pid)).exists() {
            return Err(format!(
                "the brain (pid {}) exited during the run",
                self.pid
            ));
        }
        self.peak_kib
            .fetch_max(rss_kib(self.pid), Ordering::Relaxed);
        Ok(ProcUsage {
            pid: self.pid,
            peak_rss_mib: self.peak_kib.load(Ordering::Relaxed) as f64 / 1024.0,
            cpu_seconds: cpu_seconds(self.pid) - self.cpu_at_start,
        })
    }
}

/// `pid` and every process below it.
fn tree(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(stat) = stat_fields(p) {
                if let Some(ppid) = stat.get(1).and_then(|v| v.parse().ok()) {
                    parents.push((p, ppid));
                }
            }
        }
    }
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let parent = out[i];
        out.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    out
}

/// The fields of `/proc/<pid>/stat` after the command name, starting with
/// the state (field 3).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces.
    let rest = &text[text.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// Resident memory of `pid` and its descendants, KiB (0 when gone).
pub fn rss_kib(pid: u32) -> u64 {
    tree(pid)
        .into_iter()
        .filter_map(|p| {
            let status = std::fs::read_to_string(format!("/proc/{p}/status")).ok()?;
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))?
                .split_whitespace()
                .nth(1)?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// utime + stime of the tree, plus what its reaped children used.
fn cpu_seconds(pid: u32) -> f64 {
    tree(pid)
        .into_iter()
        .filter_map(stat_fields)
        .map(|f| {
            // After the name: state=0, ..., utime=11, stime=12, cutime=13, cstime=14.
            [11, 12, 13, 14]
                .iter()
                .filter_map(|&i| f.get(i)?.parse::<u64>().ok())
                .sum::<u64>() as f64
                / TICKS_PER_SECOND
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_this_process() {
        let me = std::process::id();
        let sampler = ProcSampler::start(me);
        // Burn a little CPU and memory so both are visibly non-zero.
        let v: Vec<u64> = (0..2_000_000).collect();
        let mut x = 0u64;
        for i in 0..30_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box((&v, x));
        let u = sampler.stop().expect("this process is alive");
        assert_eq!(u.pid, me);
        assert!(u.peak_rss_mib > 1.0, "{u:?}");
        assert!(u.cpu_seconds >= 0.0, "{u:?}");
        assert!(tree(me).contains(&me));
    }
}
