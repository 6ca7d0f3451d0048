//! The loadtest's report: the figures of each run, the machine, and their
//! output as a table on stdout and as JSON or CSV for plotting.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::Error;

use super::{DataSet, PerfPayload};
use crate::cmd::worker::WorkerReport;
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Rate {
    pub seconds: f64,
    pub frames_per_sec: f64,
    pub mb_per_sec: f64,
}

impl Rate {
    pub(super) fn new(frames: u64, payload_bytes: u64, seconds: f64) -> Rate {
        let s = seconds.max(1e-9);
        Rate {
            seconds,
            frames_per_sec: frames as f64 / s,
            mb_per_sec: payload_bytes as f64 / 1e6 / s,
        }
    }
}

/// `kafka-producer-perf-test`'s final line. MB are 10^6 bytes here (the tool
/// prints MiB).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProducerPerf {
    pub records: u64,
    pub records_per_sec: f64,
    pub mb_per_sec: f64,
    pub avg_latency_ms: f64,
    pub max_latency_ms: f64,
    pub wall_seconds: f64,
}

/// `kafka-consumer-perf-test`'s summary. `records_per_sec` counts from the
/// start, group join included; `fetch_records_per_sec` leaves the join out,
/// like our processing rate, and is the one our rate is compared with.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConsumerPerf {
    pub records: u64,
    pub records_per_sec: f64,
    pub mb_per_sec: f64,
    pub rebalance_ms: f64,
    pub fetch_ms: f64,
    pub fetch_records_per_sec: f64,
    pub fetch_mb_per_sec: f64,
    pub wall_seconds: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Check {
    pub correct: bool,
    pub verdict: String,
    pub windows_expected: usize,
    pub windows_emitted: usize,
    pub missing: usize,
    pub extra: usize,
    pub differing: usize,
    /// A window key seen more than once (never with exactly-once output).
    pub duplicates: usize,
    /// Records on the forward topic (`--forward`).
    pub forwarded: Option<u64>,
    /// A few problems, for the log.
    pub examples: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunReport {
    pub mode: String,
    pub partitions: u32,
    pub workers: u32,
    /// 1-based repetition of this combination.
    pub repeat: u32,
    pub forward: bool,
    pub exactly_once: bool,
    pub frames: u64,
    pub payload_bytes: u64,
    /// Frames per input partition.
    pub partition_frames: Vec<u64>,
    pub input_topic: String,
    pub ingest: Rate,
    pub processing: Option<Rate>,
    pub end_to_end_seconds: Option<f64>,
    pub last_frame_delay_seconds: Option<f64>,
    /// Σ(end offset − committed offset), sampled every `--lag-interval-ms`.
    pub peak_lag: Option<i64>,
    /// (seconds since the run started, lag) samples.
    pub lag_samples: Vec<(f64, i64)>,
    pub worker_figures: Vec<WorkerReport>,
    /// Shards per bucket (1: none).
    #[serde(default)]
    pub shards: u32,
    /// The merge stage's report (shards above 1).
    #[serde(default)]
    pub merge_figures: Option<crate::cmd::merge::MergeReport>,
    /// Largest peak resident memory (VmHWM) of the workers, in MB (10^6 bytes).
    pub peak_worker_rss_mb: Option<f64>,
    /// Busy share of all cores, 0-100, during ingest and during processing.
    pub machine_cpu_ingest_pct: Option<f64>,
    pub machine_cpu_processing_pct: Option<f64>,
    pub kafka_producer_perf: Option<ProducerPerf>,
    pub kafka_consumer_perf: Option<ConsumerPerf>,
    /// Our ingest rate / kafka-producer-perf-test's (records/s).
    pub ingest_vs_producer_perf: Option<f64>,
    /// Our processing rate / kafka-consumer-perf-test's fetch rate (records/s).
    pub processing_vs_consumer_perf: Option<f64>,
    pub check: Check,
    /// Set when the run could not finish (the check is then not correct).
    pub failure: Option<String>,
    pub logs: PathBuf,
    /// The soak's samples and memory verdict (`--live --duration`).
    pub soak: Option<super::SoakReport>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    pub cores: usize,
    pub cpu: String,
    pub memory_mb: u64,
    pub kernel: String,
    pub hostname: String,
}

impl Machine {
    pub fn probe() -> Machine {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default();
        let memory_mb = read("/proc/meminfo")
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb / 1024);
        Machine {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu,
            memory_mb,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            hostname: read("/proc/sys/kernel/hostname").trim().to_string(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadtestReport {
    pub command: String,
    /// ISO-8601 UTC start of the loadtest.
    pub date: String,
    pub machine: Machine,
    pub bootstrap: String,
    pub mode: String,
    pub exactly_once: bool,
    pub forward: bool,
    pub commit_interval_ms: u64,
    /// Workers' `--parse-threads`; none: their default.
    #[serde(default)]
    pub parse_threads: Option<u64>,
    pub kafka_tool: Option<String>,
    pub perf_payload: Option<PerfPayload>,
    pub data: DataSet,
    pub runs: Vec<RunReport>,
}

impl LoadtestReport {
    /// Runs that finished with windows other than aggregate's.
    pub fn wrong_runs(&self) -> usize {
        self.runs
            .iter()
            .filter(|r| r.failure.is_none() && !r.check.correct)
            .count()
    }

    /// Runs that could not finish (setup, a phase, a worker): no verdict.
    pub fn failed_runs(&self) -> usize {
        self.runs.iter().filter(|r| r.failure.is_some()).count()
    }
}

pub(super) fn thousands(n: f64) -> String {
    let s = format!("{:.0}", n.max(0.0));
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub(super) fn opt<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map_or_else(|| "-".into(), f)
}

pub(super) fn write_header(out: &mut dyn Write, r: &LoadtestReport) -> std::io::Result<()> {
    let d = &r.data;
    writeln!(
        out,
        "timebucket loadtest, {}: {} frames ({:.0} MB, {:.0} B/frame, {} users, ts {}..{}, {} time buckets), {} mode, {}{}",
        r.date,
        thousands(d.frames as f64),
        d.payload_bytes as f64 / 1e6,
        d.mean_frame_bytes(),
        thousands(d.users as f64),
        d.first_ts,
        d.last_ts,
        d.buckets.len(),
        r.mode,
        if r.exactly_once { "exactly-once" } else { "at-least-once" },
        if r.forward { ", forwarding every frame" } else { "" },
    )?;
    writeln!(
        out,
        "machine: {} cores ({}), {} MB; broker {}; Kafka tools: {}",
        r.machine.cores,
        r.machine.cpu,
        thousands(r.machine.memory_mb as f64),
        r.bootstrap,
        r.kafka_tool.as_deref().unwrap_or("skipped"),
    )?;
    writeln!(
        out,
        "{:>3} {:>3} {:>10} {:>7} {:>16} {:>10} {:>7} {:>16} {:>7} {:>8} {:>10} {:>7}  verdict",
        "P",
        "W",
        "ingest/s",
        "MB/s",
        "x prod-perf",
        "process/s",
        "MB/s",
        "x cons-perf",
        "e2e s",
        "last s",
        "peak lag",
        "RSS MB",
    )
}

pub(super) fn write_row(out: &mut dyn Write, r: &RunReport) -> std::io::Result<()> {
    let vs = |ratio: Option<f64>, theirs: Option<f64>| match (ratio, theirs) {
        (Some(x), Some(t)) => format!("{x:.2} of {}", thousands(t)),
        _ => "-".into(),
    };
    writeln!(
        out,
        "{:>3} {:>3} {:>10} {:>7.1} {:>16} {:>10} {:>7} {:>16} {:>7} {:>8} {:>10} {:>7}  {}",
        r.partitions,
        r.workers,
        thousands(r.ingest.frames_per_sec),
        r.ingest.mb_per_sec,
        vs(
            r.ingest_vs_producer_perf,
            r.kafka_producer_perf.as_ref().map(|p| p.records_per_sec)
        ),
        opt(r.processing.as_ref(), |p| thousands(p.frames_per_sec)),
        opt(r.processing.as_ref(), |p| format!("{:.1}", p.mb_per_sec)),
        vs(
            r.processing_vs_consumer_perf,
            r.kafka_consumer_perf
                .as_ref()
                .map(|p| p.fetch_records_per_sec)
        ),
        opt(r.end_to_end_seconds, |s| format!("{s:.1}")),
        opt(r.last_frame_delay_seconds, |s| format!("{s:.2}")),
        opt(r.peak_lag, |l| thousands(l as f64)),
        opt(r.peak_worker_rss_mb, |m| format!("{m:.0}")),
        r.check.verdict,
    )
}

/// Each worker's share of the frames and its CPU time (and the merger's),
/// under a run's row: how evenly a hot bucket's shards spread the work.
pub(super) fn write_shares(out: &mut dyn Write, r: &RunReport) -> std::io::Result<()> {
    let total: u64 = r.worker_figures.iter().map(|w| w.summary.frames).sum();
    let mut parts: Vec<String> = r
        .worker_figures
        .iter()
        .enumerate()
        .map(|(i, w)| {
            format!(
                "w{i} {} frames ({:.0}%), cpu {}",
                thousands(w.summary.frames as f64),
                w.summary.frames as f64 * 100.0 / total.max(1) as f64,
                opt(w.cpu_ms, |ms| format!("{:.1} s", ms as f64 / 1000.0)),
            )
        })
        .collect();
    if let Some(m) = &r.merge_figures {
        parts.push(format!(
            "merge: {} partials records, cpu {}, {} late partials",
            thousands(m.summary.pieces as f64),
            opt(m.cpu_ms, |ms| format!("{:.1} s", ms as f64 / 1000.0)),
            m.summary.late_partials
        ));
    }
    writeln!(out, "      S={} {}", r.shards.max(1), parts.join("; "))
}

pub(super) fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// One row per combination: the medians of its repetitions.
pub(super) fn write_medians(out: &mut dyn Write, r: &LoadtestReport) -> std::io::Result<()> {
    writeln!(out, "medians of the correct runs of each combination:")?;
    let mut combos: Vec<(u32, u32)> = r.runs.iter().map(|x| (x.partitions, x.workers)).collect();
    combos.dedup();
    for (p, w) in combos {
        let runs: Vec<&RunReport> = r
            .runs
            .iter()
            .filter(|x| x.partitions == p && x.workers == w && x.check.correct)
            .collect();
        let m = |f: &dyn Fn(&RunReport) -> Option<f64>| {
            median(runs.iter().filter_map(|x| f(x)).collect())
        };
        let ingest = m(&|x| Some(x.ingest.frames_per_sec));
        let ingest_mb = m(&|x| Some(x.ingest.mb_per_sec));
        let prod = m(&|x| x.kafka_producer_perf.as_ref().map(|k| k.records_per_sec));
        let x_prod = m(&|x| x.ingest_vs_producer_perf);
        let process = m(&|x| x.processing.as_ref().map(|k| k.frames_per_sec));
        let process_mb = m(&|x| x.processing.as_ref().map(|k| k.mb_per_sec));
        let cons = m(&|x| {
            x.kafka_consumer_perf
                .as_ref()
                .map(|k| k.fetch_records_per_sec)
        });
        let x_cons = m(&|x| x.processing_vs_consumer_perf);
        let vs = |ratio: Option<f64>, theirs: Option<f64>| match (ratio, theirs) {
            (Some(x), Some(t)) => format!("{x:.2} of {}", thousands(t)),
            _ => "-".into(),
        };
        writeln!(
            out,
            "{:>3} {:>3} {:>10} {:>7} {:>16} {:>10} {:>7} {:>16} {:>7} {:>8} {:>10} {:>7}  {} of {} runs",
            p,
            w,
            opt(ingest, thousands),
            opt(ingest_mb, |v| format!("{v:.1}")),
            vs(x_prod, prod),
            opt(process, thousands),
            opt(process_mb, |v| format!("{v:.1}")),
            vs(x_cons, cons),
            opt(m(&|x| x.end_to_end_seconds), |v| format!("{v:.1}")),
            opt(m(&|x| x.last_frame_delay_seconds), |v| format!("{v:.2}")),
            opt(m(&|x| x.peak_lag.map(|l| l as f64)), thousands),
            opt(m(&|x| x.peak_worker_rss_mb), |v| format!("{v:.0}")),
            runs.len(),
            r.runs.iter().filter(|x| x.partitions == p && x.workers == w).count(),
        )?;
    }
    Ok(())
}

pub(super) fn write_footer(out: &mut dyn Write, r: &LoadtestReport) -> std::io::Result<()> {
    writeln!(
        out,
        "ingest/s: valid frames from the first read to the last delivery; x prod-perf: ours / kafka-producer-perf-test's records/s (same count, sizes{}).",
        if r.perf_payload == Some(PerfPayload::Frames) { " and payloads" } else { "" }
    )?;
    writeln!(
        out,
        "process/s: first record consumed to last window durable (any worker); x cons-perf: ours / kafka-consumer-perf-test's fetch records/s on the same topic."
    )?;
    writeln!(
        out,
        "e2e: first frame produced to last window visible (read_committed); last: last frame delivered to its minute visible; peak lag: Σ end - committed offsets; RSS: largest worker VmHWM."
    )?;
    let (wrong, failed) = (r.wrong_runs(), r.failed_runs());
    if wrong == 0 && failed == 0 {
        return writeln!(
            out,
            "all {} runs correct: every window equals aggregate's",
            r.runs.len()
        );
    }
    if wrong > 0 {
        writeln!(out, "{wrong} of {} runs WRONG", r.runs.len())?;
    }
    if failed > 0 {
        writeln!(
            out,
            "{failed} of {} runs FAILED before their check (no verdict)",
            r.runs.len()
        )?;
    }
    Ok(())
}

/// The report as JSON, or as CSV (one row per run) for a `.csv` path.
pub fn write_output(path: &Path, report: &LoadtestReport) -> Result<(), Error> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(Error::Output)?;
    }
    let text = if path.extension().is_some_and(|e| e == "csv") {
        csv(report).map_err(|e| Error::Output(e.into()))?
    } else {
        serde_json::to_string_pretty(report).expect("serializable") + "\n"
    };
    std::fs::write(path, text).map_err(Error::Output)
}

pub const CSV_COLUMNS: &[&str] = &[
    "date",
    "mode",
    "exactly_once",
    "forward",
    "frames",
    "partitions",
    "workers",
    "repeat",
    "ingest_frames_per_sec",
    "ingest_mb_per_sec",
    "producer_perf_records_per_sec",
    "ingest_vs_producer_perf",
    "processing_frames_per_sec",
    "processing_mb_per_sec",
    "consumer_perf_fetch_records_per_sec",
    "processing_vs_consumer_perf",
    "end_to_end_seconds",
    "last_frame_delay_seconds",
    "peak_lag",
    "peak_worker_rss_mb",
    "machine_cpu_ingest_pct",
    "machine_cpu_processing_pct",
    "correct",
    "verdict",
];

/// The report's runs as CSV: a header of [`CSV_COLUMNS`], one row per run.
pub(super) fn csv(report: &LoadtestReport) -> Result<String, csv::Error> {
    let f = |v: Option<f64>| v.map_or_else(String::new, |v| format!("{v:.3}"));
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record(CSV_COLUMNS)?;
    for r in &report.runs {
        let row = [
            report.date.clone(),
            r.mode.clone(),
            r.exactly_once.to_string(),
            r.forward.to_string(),
            r.frames.to_string(),
            r.partitions.to_string(),
            r.workers.to_string(),
            r.repeat.to_string(),
            format!("{:.1}", r.ingest.frames_per_sec),
            format!("{:.3}", r.ingest.mb_per_sec),
            f(r.kafka_producer_perf.as_ref().map(|p| p.records_per_sec)),
            f(r.ingest_vs_producer_perf),
            f(r.processing.as_ref().map(|p| p.frames_per_sec)),
            f(r.processing.as_ref().map(|p| p.mb_per_sec)),
            f(r.kafka_consumer_perf
                .as_ref()
                .map(|p| p.fetch_records_per_sec)),
            f(r.processing_vs_consumer_perf),
            f(r.end_to_end_seconds),
            f(r.last_frame_delay_seconds),
            r.peak_lag.map_or_else(String::new, |l| l.to_string()),
            f(r.peak_worker_rss_mb),
            f(r.machine_cpu_ingest_pct),
            f(r.machine_cpu_processing_pct),
            r.check.correct.to_string(),
            r.check.verdict.clone(),
        ];
        out.write_record(&row)?;
    }
    let bytes = out.into_inner().map_err(|e| e.into_error())?;
    Ok(String::from_utf8(bytes).expect("the rows are strings"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(1234567.0), "1,234,567");
    }

    #[test]
    fn csv_quotes_what_needs_it_and_reads_back_field_by_field() {
        let run = |verdict: &str| RunReport {
            mode: "live".into(),
            partitions: 2,
            check: Check {
                verdict: verdict.into(),
                ..Check::default()
            },
            ..RunReport::default()
        };
        let report = LoadtestReport {
            command: String::new(),
            date: "2026-12-05T00:00:00Z".into(),
            machine: Machine::probe(),
            bootstrap: String::new(),
            mode: "live".into(),
            exactly_once: true,
            forward: false,
            commit_interval_ms: 1000,
            parse_threads: None,
            kafka_tool: None,
            perf_payload: None,
            data: super::super::DataSet::default(),
            runs: vec![
                run("correct"),
                run("WRONG: 2 missing, \"w\" differs\nsee log"),
            ],
        };
        let text = csv(&report).unwrap();
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        assert_eq!(reader.headers().unwrap(), CSV_COLUMNS);
        let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        let verdict = CSV_COLUMNS.iter().position(|c| *c == "verdict").unwrap();
        assert_eq!(&rows[0][verdict], "correct");
        assert_eq!(
            &rows[1][verdict],
            "WRONG: 2 missing, \"w\" differs\nsee log"
        );
        assert!(rows
            .iter()
            .all(|r| r.len() == CSV_COLUMNS.len() && &r[5] == "2"));
    }
}
