//! The soak's report (`loadtest --live --duration`): what was sampled from
//! every worker over time, the memory verdict drawn from it, and both as a
//! table. The loop that takes the samples is in [`super::soak`].

use std::io::Write;

use prometheus_parse::{Labels, Scrape, Value};
use serde::{Deserialize, Serialize};

use super::report::{opt, thousands, LoadtestReport};

/// A soak's figures, in its run's report (`RunReport::soak`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SoakReport {
    /// Asked length of the live load, in seconds.
    pub duration_seconds: f64,
    /// Frames per second asked of the producer (on average: the generator's
    /// clock makes seconds uneven, like the challenge's data).
    pub rate: u32,
    /// Disorder: this percent of frames carry a `ts` 1..=`max_delay` seconds
    /// before the clock when they are produced.
    pub max_delay: u32,
    pub delay_percent: f64,
    /// Unix ms at which the first frame was due.
    pub production_start_ms: u64,
    /// Seconds from the first frame due to the last frame delivered.
    pub production_seconds: Option<f64>,
    /// Seconds from the last frame delivered to the last worker's exit (its
    /// last windows closed and made durable).
    pub drain_seconds: Option<f64>,
    /// How far behind its `ts` the last frame was produced, in seconds (the
    /// pacing's own delay; 0 on a machine that keeps up).
    pub production_behind_seconds: Option<f64>,
    pub sample_interval_ms: u64,
    pub samples: Vec<SoakSample>,
    pub memory: MemoryVerdict,
}

/// One moment of the soak.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SoakSample {
    /// Seconds since the first frame was due.
    pub t: f64,
    /// Still producing (else: draining).
    pub producing: bool,
    /// Frames handed to the producer so far.
    pub produced: u64,
    /// One entry per worker, by worker index.
    pub workers: Vec<WorkerSample>,
}

/// One worker at one moment: its memory from `/proc`, the rest from its
/// `/metrics`. `None`: not known at that moment (process gone, no answer,
/// or no owned partition with a watermark yet).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WorkerSample {
    pub worker: u32,
    /// VmRSS of /proc/PID/status, in kB.
    pub rss_kb: Option<u64>,
    /// Valid frames counted (`timebucket_frames_valid_total`).
    pub frames: Option<u64>,
    /// Frames after their window closed (`timebucket_frames_late_total`).
    pub late_seconds: Option<u64>,
    pub late_minutes: Option<u64>,
    /// Σ over owned partitions of last stable offset − position.
    pub lag: Option<i64>,
    /// Now minus the worker's newest watermark, in seconds (the smallest
    /// `timebucket_partition_event_time_delay_seconds`): how far its closed
    /// windows trail the present.
    pub event_time_delay_seconds: Option<i64>,
    pub owned_partitions: Option<u64>,
}

/// Is each worker's memory flat while the load is steady?
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MemoryVerdict {
    /// Every worker's growth within the bound.
    pub flat: bool,
    /// "flat", or what grew (or why it could not be measured).
    pub verdict: String,
    /// The bound: growth from the first quarter's median RSS to the last
    /// quarter's of at most this percent of the first, or this many MB,
    /// whichever is larger.
    pub bound_pct: f64,
    pub bound_mb: f64,
    pub workers: Vec<WorkerMemory>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WorkerMemory {
    pub worker: u32,
    /// Median RSS of the samples in the first and last quarter of the
    /// production phase, in MB (10^6 bytes).
    pub first_quarter_mb: Option<f64>,
    pub last_quarter_mb: Option<f64>,
    pub growth_mb: Option<f64>,
    pub growth_pct: Option<f64>,
    /// Least-squares slope of RSS over the second half of production, in
    /// MB per minute (the trend, for the record).
    pub slope_mb_per_min: Option<f64>,
    pub peak_mb: Option<f64>,
    pub flat: bool,
}

/// The memory verdict of the production samples of `workers` workers.
pub fn memory_verdict(
    samples: &[SoakSample],
    workers: u32,
    bound_pct: f64,
    bound_mb: f64,
) -> MemoryVerdict {
    let producing: Vec<&SoakSample> = samples.iter().filter(|s| s.producing).collect();
    let end = producing.last().map_or(0.0, |s| s.t);
    let mut out = MemoryVerdict {
        flat: true,
        verdict: String::new(),
        bound_pct,
        bound_mb,
        workers: Vec::new(),
    };
    let mut problems = Vec::new();
    for w in 0..workers {
        let series: Vec<(f64, f64)> = producing
            .iter()
            .filter_map(|s| {
                let kb = s.workers.iter().find(|x| x.worker == w)?.rss_kb?;
                Some((s.t, kb as f64 * 1024.0 / 1e6))
            })
            .collect();
        let quarter = |keep: &dyn Fn(f64) -> bool| {
            super::report::median(
                series
                    .iter()
                    .filter(|(t, _)| keep(*t))
                    .map(|p| p.1)
                    .collect(),
            )
        };
        let first = quarter(&|t| t <= end / 4.0);
        let last = quarter(&|t| t >= end * 3.0 / 4.0);
        let growth = first.zip(last).map(|(f, l)| l - f);
        let flat = match (first, growth) {
            (Some(f), Some(g)) => g <= (f * bound_pct / 100.0).max(bound_mb),
            _ => false,
        };
        match (flat, growth) {
            (true, _) => {}
            (false, Some(g)) => problems.push(format!("worker {w} grew {g:+.1} MB")),
            (false, None) => problems.push(format!(
                "worker {w}: no memory samples in the first or last quarter"
            )),
        }
        let second_half: Vec<(f64, f64)> = series
            .iter()
            .copied()
            .filter(|(t, _)| *t >= end / 2.0)
            .collect();
        out.workers.push(WorkerMemory {
            worker: w,
            first_quarter_mb: first,
            last_quarter_mb: last,
            growth_mb: growth,
            growth_pct: first.zip(growth).map(|(f, g)| g * 100.0 / f.max(1e-9)),
            slope_mb_per_min: slope(&second_half).map(|s| s * 60.0),
            peak_mb: series.iter().map(|p| p.1).reduce(f64::max),
            flat,
        });
        out.flat &= flat;
    }
    out.verdict = if out.flat {
        "flat".into()
    } else {
        format!("NOT FLAT: {}", problems.join(", "))
    };
    out
}

/// Least-squares slope of `y` over `x`; `None` under 3 points.
fn slope(points: &[(f64, f64)]) -> Option<f64> {
    if points.len() < 3 {
        return None;
    }
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

/// The samples of a Prometheus text exposition whose value is one number
/// (counters, gauges, untyped), as (metric name, labels, value).
fn samples(text: &str) -> Vec<(String, Labels, f64)> {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    // Reading from a string cannot fail.
    let scrape = Scrape::parse(lines).expect("lines of a string");
    scrape
        .samples
        .into_iter()
        .filter_map(|s| match s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => {
                Some((s.metric, s.labels, v))
            }
            Value::Histogram(_) | Value::Summary(_) => None,
        })
        .collect()
}

/// What a worker's `/metrics` says (RSS is filled in by the caller).
pub fn worker_sample(worker: u32, metrics: &str) -> WorkerSample {
    let samples = samples(metrics);
    let series = |name: &'static str| {
        samples
            .iter()
            .filter(move |(metric, _, _)| metric == name)
            .map(|(_, labels, v)| (labels, *v))
    };
    let sum = |name: &'static str| {
        let mut found = false;
        let total = series(name).fold(0.0, |acc, (_, v)| {
            found = true;
            acc + v
        });
        found.then_some(total)
    };
    let late = |window: &str| {
        series("timebucket_frames_late_total")
            .find(|(labels, _)| labels.get("window") == Some(window))
            .map(|(_, v)| v as u64)
    };
    WorkerSample {
        worker,
        rss_kb: None,
        frames: sum("timebucket_frames_valid_total").map(|v| v as u64),
        late_seconds: late("second"),
        late_minutes: late("minute"),
        lag: sum("timebucket_partition_lag_records").map(|v| v as i64),
        event_time_delay_seconds: series("timebucket_partition_event_time_delay_seconds")
            .map(|(_, v)| v as i64)
            .min(),
        owned_partitions: sum("timebucket_owned_partitions").map(|v| v as u64),
    }
}

/// Resident memory of a process now (VmRSS), in kB.
pub fn rss_kb(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// The soak's table: about a dozen moments of the run, one line per worker,
/// then the memory verdict.
pub(super) fn write_soak(out: &mut dyn Write, s: &SoakReport) -> std::io::Result<()> {
    writeln!(
        out,
        "  soak: {:.0} s at {} frames/s (ts = now, {}% of frames 1-{} s late), produced in {} s, drained in {} s, sampled every {} ms",
        s.duration_seconds,
        thousands(f64::from(s.rate)),
        s.delay_percent,
        s.max_delay,
        opt(s.production_seconds, |v| format!("{v:.0}")),
        opt(s.drain_seconds, |v| format!("{v:.1}")),
        s.sample_interval_ms,
    )?;
    writeln!(
        out,
        "  {:>7} {:>10} {:>6} {:>8} {:>10} {:>8} {:>7} {:>8} {:>8} {:>5}",
        "t s",
        "produced",
        "worker",
        "RSS MB",
        "frames",
        "lag",
        "late s",
        "late min",
        "delay s",
        "parts"
    )?;
    let n = s.samples.len();
    let step = (n / 12).max(1);
    let last_producing = s.samples.iter().rposition(|x| x.producing);
    for (i, sample) in s.samples.iter().enumerate() {
        if !(i % step == 0 || Some(i) == last_producing || i + 1 == n) {
            continue;
        }
        for w in &sample.workers {
            writeln!(
                out,
                "  {:>7.0} {:>10} {:>6} {:>8} {:>10} {:>8} {:>7} {:>8} {:>8} {:>5}{}",
                sample.t,
                thousands(sample.produced as f64),
                w.worker,
                opt(w.rss_kb, |kb| format!("{:.1}", kb as f64 * 1024.0 / 1e6)),
                opt(w.frames, |v| thousands(v as f64)),
                opt(w.lag, |v| thousands(v as f64)),
                opt(w.late_seconds, |v| thousands(v as f64)),
                opt(w.late_minutes, |v| thousands(v as f64)),
                opt(w.event_time_delay_seconds, |v| v.to_string()),
                opt(w.owned_partitions, |v| v.to_string()),
                if sample.producing { "" } else { "  (draining)" },
            )?;
        }
    }
    let m = &s.memory;
    for w in &m.workers {
        writeln!(
            out,
            "  memory of worker {}: {} MB (first quarter, median) -> {} MB (last quarter): {} MB ({} %), trend {} MB/min, peak {} MB: {}",
            w.worker,
            opt(w.first_quarter_mb, |v| format!("{v:.1}")),
            opt(w.last_quarter_mb, |v| format!("{v:.1}")),
            opt(w.growth_mb, |v| format!("{v:+.1}")),
            opt(w.growth_pct, |v| format!("{v:+.1}")),
            opt(w.slope_mb_per_min, |v| format!("{v:+.2}")),
            opt(w.peak_mb, |v| format!("{v:.1}")),
            if w.flat { "flat" } else { "NOT FLAT" },
        )?;
    }
    writeln!(
        out,
        "  memory verdict: {} (bound: growth at most {}% of the first quarter or {} MB, whichever is larger)",
        m.verdict, m.bound_pct, m.bound_mb
    )
}

impl LoadtestReport {
    /// Soak runs whose worker memory was not flat.
    pub fn memory_grown(&self) -> usize {
        self.runs
            .iter()
            .filter(|r| r.soak.as_ref().is_some_and(|s| !s.memory.flat))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(rss: &[(f64, bool, u64)]) -> Vec<SoakSample> {
        rss.iter()
            .map(|&(t, producing, kb)| SoakSample {
                t,
                producing,
                produced: 0,
                workers: vec![WorkerSample {
                    worker: 0,
                    rss_kb: Some(kb),
                    ..WorkerSample::default()
                }],
            })
            .collect()
    }

    #[test]
    fn flat_memory_within_the_bound_and_growth_beyond_it() {
        // 100 s of production at ~20 MB, noise of 1 MB; the draining
        // sample's jump is not part of the verdict.
        let mut points: Vec<(f64, bool, u64)> = (0..=100)
            .map(|t| (f64::from(t), true, 20_000 + (t % 3) as u64 * 500))
            .collect();
        points.push((101.0, false, 90_000));
        let v = memory_verdict(&samples(&points), 1, 10.0, 8.0);
        assert!(v.flat, "{v:?}");
        assert_eq!(v.verdict, "flat");
        let w = &v.workers[0];
        assert!(w.growth_mb.unwrap().abs() < 1.0, "{w:?}");
        assert!(w.slope_mb_per_min.unwrap().abs() < 0.5, "{w:?}");

        // 100 kB more every second: +7.5 MB between the quarters' medians,
        // inside 8 MB but not inside 5.
        let growing: Vec<(f64, bool, u64)> = (0..=100)
            .map(|t| (f64::from(t), true, 20_000 + t as u64 * 100))
            .collect();
        assert!(memory_verdict(&samples(&growing), 1, 10.0, 8.0).flat);
        let v = memory_verdict(&samples(&growing), 1, 10.0, 5.0);
        assert!(!v.flat);
        assert!(
            v.verdict.starts_with("NOT FLAT: worker 0 grew +7.7 MB"),
            "{v:?}"
        );
        assert!((v.workers[0].slope_mb_per_min.unwrap() - 6.144).abs() < 0.01);

        // No samples for worker 1: not flat, and said so.
        let v = memory_verdict(&samples(&points), 2, 10.0, 8.0);
        assert!(!v.flat);
        assert!(v.verdict.contains("worker 1: no memory samples"), "{v:?}");
    }

    #[test]
    fn worker_sample_reads_the_exposition() {
        let text = "# HELP timebucket_frames_valid Valid frames\n\
            timebucket_frames_valid_total 1234\n\
            timebucket_frames_valid_totalx 1\n\
            timebucket_frames_late_total{xwindow=\"second\"} 99\n\
            timebucket_frames_late_total{window=\"second\"} 7\n\
            timebucket_frames_late_total{window=\"minute\"} 2\n\
            timebucket_owned_partitions 2\n\
            timebucket_partition_lag_records{partition=\"0\"} 10\n\
            timebucket_partition_lag_records{partition=\"1\"} 5\n\
            timebucket_partition_event_time_delay_seconds{partition=\"0\"} 700\n\
            timebucket_partition_event_time_delay_seconds{partition=\"1\"} 6\n";
        let s = worker_sample(3, text);
        assert_eq!(s.worker, 3);
        assert_eq!(s.frames, Some(1234));
        assert_eq!(s.late_seconds, Some(7));
        assert_eq!(s.late_minutes, Some(2));
        assert_eq!(s.lag, Some(15));
        assert_eq!(s.event_time_delay_seconds, Some(6));
        assert_eq!(s.owned_partitions, Some(2));
        let empty = worker_sample(0, "");
        assert_eq!(empty.frames, None);
        assert_eq!(empty.event_time_delay_seconds, None);
        assert!(rss_kb(std::process::id()).unwrap() > 0);
    }
}
