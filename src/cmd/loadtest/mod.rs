//! `timebucket loadtest`: the whole pipeline under load on a real cluster,
//! measured beside Kafka's own perf tools and checked against `aggregate`.
//!
//! For every combination of input partitions P (`--partitions 1,2,4,8`) and
//! workers W (`--workers 1,2`) one *run*:
//!
//! 1. creates fresh topics (unique names, configs from `topics/`) and a fresh
//!    consumer group;
//! 2. ingests the cached, generated data file (in this process, with
//!    [`crate::cmd::ingest::ingest`]);
//! 3. runs W `timebucket worker` processes ([`std::env::current_exe`]) to the
//!    end. *Sequential* mode (the default): the workers start once ingest is
//!    done and run `--until-end`, so ingest and processing are each measured
//!    alone. *Live* mode (`--live`): the workers start first and consume while
//!    ingest produces, stopping at the end offsets the run knows in advance
//!    (fresh topics: offset = frames routed to the partition);
//! 4. meanwhile samples the group's committed offsets against the end offsets
//!    (consumer lag) and watches the metric topics with a `read_committed`
//!    consumer (when each window becomes visible);
//! 5. runs `kafka-consumer-perf-test` on the same input topic and
//!    `kafka-producer-perf-test` with the same record count and sizes (by
//!    default the first 10,000 frames of the file as its payloads, so record
//!    sizes and compressibility match) into a topic of its own;
//! 6. checks every window on the metric topics against [`crate::cmd::aggregate`]
//!    on the same file (and, with `--forward`, that every frame was forwarded
//!    once), and deletes the run's topics and groups.
//!
//! The figures of a run ([`RunReport`]):
//! - ingest: valid frames / time from the first read to the last delivery;
//! - processing: frames / time from the first record any worker consumed to
//!   the last window any worker made durable (committed transaction, or
//!   flushed with `--at-least-once`), from the workers' `--report-file`;
//! - end-to-end: first frame produced to the last window visible to a
//!   `read_committed` reader;
//! - last-frame delay: the last frame of the file delivered by ingest to its
//!   minute being visible to a `read_committed` reader;
//! - peak consumer lag: the largest sum over partitions of end offset minus
//!   committed offset. A worker commits the first frame of its oldest open
//!   window (about a minute of event time plus the lateness), so even a
//!   worker that keeps up shows that much lag;
//! - peak memory (VmHWM) and CPU time of each worker, and the share of the
//!   machine's CPU in use during ingest and during processing.
//!
//! With `--duration` (and `--live`) every run is a *soak* instead
//! ([`soak`]): the workers under a steady live load with `ts` = now for that
//! long, sampled over time (RSS, lag, late frames, event-time delay), then
//! drained, checked the same way, and given a memory verdict
//! ([`soak_report`]).
//!
//! Results go to a table on stdout, row by row as runs finish, and to a JSON
//! (or, by extension, CSV) file for plotting. A run whose windows differ from
//! `aggregate` is reported `WRONG`, and the command then fails.

mod check;
mod data;
mod failure;
mod measure;
mod observe;
mod pace;
mod perf;
mod report;
mod run;
pub mod soak;
pub mod soak_report;
mod topics;
mod workers;

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tracing::info;

use crate::core::frame::{default_max_ts, FrameParser, DEFAULT_MIN_TS};
use crate::core::metric::iso8601_utc;
use crate::error::Error;
use crate::kafka::config::KafkaSettings;
use crate::kafka::topics::load_specs;

pub use check::expected_windows;
use data::prepare_data;
use measure::RunContext;
use pace::soak_data;
pub use perf::{parse_consumer_perf, parse_producer_perf};
pub use report::*;
use run::run_one;
use soak_report::write_soak;
pub use soak_report::{MemoryVerdict, SoakReport, SoakSample, WorkerMemory, WorkerSample};
/// Allowed lateness of the workers and of the reference (the CLI default).
pub const LATENESS: u64 = 5;
/// Frames of the data file used as `kafka-producer-perf-test` payloads.
pub const PERF_SAMPLE_FRAMES: u64 = 10_000;

/// How to start Kafka's command-line tools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KafkaTool {
    /// A `scripts/kafka`-like script: `SCRIPT tool NAME ARGS...`.
    Script(PathBuf),
    /// A Kafka distribution's `bin/` folder: `DIR/NAME.sh ARGS...`.
    BinDir(PathBuf),
}

impl KafkaTool {
    /// A folder is a Kafka `bin/` folder, a file a `scripts/kafka`-like script.
    pub fn from_path(path: &Path) -> Result<KafkaTool, Error> {
        if path.is_dir() {
            let probe = path.join("kafka-producer-perf-test.sh");
            if !probe.exists() {
                return Err(Error::Config(format!(
                    "--kafka-tool {}: a folder must hold Kafka's tools (no {})",
                    path.display(),
                    probe.display()
                )));
            }
            Ok(KafkaTool::BinDir(path.to_path_buf()))
        } else if path.is_file() {
            Ok(KafkaTool::Script(path.to_path_buf()))
        } else {
            Err(Error::Config(format!(
                "--kafka-tool {}: no such file or folder",
                path.display()
            )))
        }
    }

    fn command(&self, name: &str) -> Command {
        match self {
            KafkaTool::Script(script) => {
                let mut c = Command::new(script);
                c.arg("tool").arg(name);
                c
            }
            KafkaTool::BinDir(dir) => Command::new(dir.join(format!("{name}.sh"))),
        }
    }

    fn describe(&self) -> String {
        match self {
            KafkaTool::Script(s) => format!("{} tool", s.display()),
            KafkaTool::BinDir(d) => format!("{}/", d.display()),
        }
    }
}

/// `rel` under the current folder if it exists there, else under the source
/// checkout this binary was built from (for `topics/` and `scripts/kafka`).
pub fn repo_path(rel: &str) -> Option<PathBuf> {
    let here = PathBuf::from(rel);
    if here.exists() {
        return Some(here);
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    built.exists().then_some(built)
}

/// What `kafka-producer-perf-test` sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PerfPayload {
    /// The first frames of the data file, picked at random per record: same
    /// sizes and compressibility as ingest's records.
    Frames,
    /// Random letters of the mean frame size (`--record-size`): the tool's
    /// default payload, which lz4 barely compresses.
    Random,
}

#[derive(Debug, Clone)]
pub struct LoadtestOptions {
    pub settings: KafkaSettings,
    pub partitions: Vec<u32>,
    pub workers: Vec<u32>,
    /// Generated data: frames and their shape (see [`GenerateOptions`]).
    pub frames: u64,
    pub frame_size: usize,
    pub rate: u32,
    pub users: u32,
    pub seed: u64,
    pub start: u64,
    /// Workers also forward every frame.
    pub forward: bool,
    /// Workers run `--at-least-once` instead of exactly-once.
    pub at_least_once: bool,
    /// Workers serve their metrics (`--metrics-addr 127.0.0.1:0`).
    pub worker_metrics: bool,
    pub commit_interval_ms: u64,
    /// Workers' `--parse-threads`, when given.
    pub parse_threads: Option<u64>,
    /// Workers consume while ingest produces (else: one after the other).
    pub live: bool,
    /// Shards per time bucket (1: none; else workers send partials and a
    /// `timebucket merge` process sums them).
    pub shards: u32,
    /// The `timebucket` binary the workers run.
    pub exe: PathBuf,
    /// Data files and run logs.
    pub cache_dir: PathBuf,
    pub topics_dir: PathBuf,
    pub replication: Option<u16>,
    /// Kafka's tools; `None` skips the perf tests.
    pub kafka_tool: Option<KafkaTool>,
    pub perf_payload: PerfPayload,
    pub lag_interval: Duration,
    /// Longest a phase (ingest, workers, a perf tool) may take.
    pub phase_timeout: Duration,
    pub keep_topics: bool,
    /// Runs of each combination (the machines are noisy: medians are printed).
    pub repeat: u32,
    /// JSON report, or CSV when the name ends in `.csv`.
    pub output: Option<PathBuf>,
    /// The command line, recorded in the report.
    pub command: String,
    /// A soak (`--live --duration`) instead of the batch runs.
    pub soak: Option<SoakOptions>,
}

/// The soak's options (see [`soak`]).
#[derive(Debug, Clone)]
pub struct SoakOptions {
    /// How long the live load lasts.
    pub duration: Duration,
    /// Disorder: `delay_percent` % of frames are 1..=`max_delay` s late.
    pub max_delay: u32,
    pub delay_percent: f64,
    /// `None`: 1/120 of the duration, within 0.5-10 s.
    pub sample_interval: Option<Duration>,
    /// Memory is flat when the last quarter's median RSS exceeds the first
    /// quarter's by at most this percent, or this many MB (the larger).
    pub rss_growth_pct: f64,
    pub rss_growth_mb: f64,
}

/// The cached data file and what the run needs to know about it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DataSet {
    pub path: PathBuf,
    pub frames: u64,
    /// File size, newlines included.
    pub bytes: u64,
    /// Record payload bytes (newlines excluded): what Kafka carries.
    pub payload_bytes: u64,
    pub first_ts: u64,
    pub last_ts: u64,
    /// `ts` of the file's last frame (the last one ingest produces).
    pub last_frame_ts: u64,
    /// Frames per 15-minute time bucket.
    pub buckets: BTreeMap<u64, u64>,
    pub users: u32,
    pub rate: u32,
    pub seed: u64,
    pub frame_size: usize,
    /// `kafka-producer-perf-test --payload-file`: the first frames.
    pub sample: Option<PathBuf>,
}

impl DataSet {
    /// Frames routed to each partition with `shards` shards per bucket
    /// (reads the file: a shard depends on each frame's uid).
    pub fn partition_frames_sharded(
        &self,
        partitions: u32,
        shards: u32,
    ) -> Result<Vec<u64>, Error> {
        if shards <= 1 {
            return Ok(self.partition_frames(partitions));
        }
        let routing = crate::core::bucket::Routing::sharded(
            crate::core::bucket::DEFAULT_BUCKET_SECS,
            partitions,
            shards,
        )?;
        let file = std::fs::File::open(&self.path)
            .map_err(io_error(format!("open {}", self.path.display())))?;
        let mut counts = vec![0; partitions as usize];
        let parser = parser();
        let mut lines = crate::input::LineReader::new(file, parser.max_frame_bytes);
        while let Some(line) = lines
            .next_line()
            .map_err(io_error(format!("read {}", self.path.display())))?
        {
            if let crate::input::RawLine::Line(bytes) = line.raw {
                if let crate::core::frame::Line::Frame(f) = parser.parse(bytes) {
                    counts[routing.route(f.ts, &f.uid) as usize] += 1;
                }
            }
        }
        Ok(counts)
    }

    /// Frames routed to each partition of a `partitions`-partition topic.
    pub fn partition_frames(&self, partitions: u32) -> Vec<u64> {
        let mut counts = vec![0; partitions as usize];
        for (&bucket, &n) in &self.buckets {
            counts[(bucket % u64::from(partitions)) as usize] += n;
        }
        counts
    }

    pub fn mean_frame_bytes(&self) -> f64 {
        self.payload_bytes as f64 / self.frames.max(1) as f64
    }
}

pub use super::unix_ms;

fn parser() -> FrameParser {
    FrameParser::new(DEFAULT_MIN_TS, default_max_ts(unix_ms() / 1000))
}

fn io_error(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::System {
        what: what.to_string(),
        source,
    }
}

// ---------------------------------------------------------------------------
// The whole loadtest

/// Runs every combination, printing the table to `out` as runs finish and
/// rewriting `opts.output` after each run.
pub fn run(opts: &LoadtestOptions, out: &mut dyn Write) -> Result<LoadtestReport, Error> {
    if opts.partitions.is_empty() || opts.workers.is_empty() {
        return Err(Error::Config(
            "--partitions and --workers need at least one value each".into(),
        ));
    }
    if let Some(p) = opts
        .partitions
        .iter()
        .find(|&&p| !p.is_multiple_of(opts.shards))
    {
        return Err(Error::Config(format!(
            "--partitions {p} is not a multiple of --shards {}",
            opts.shards
        )));
    }
    if opts.shards > 1 && opts.soak.is_some() {
        return Err(Error::Config(
            "a soak (--duration) runs unsharded buckets: drop --shards or --duration".into(),
        ));
    }
    if opts.partitions.contains(&0) || opts.workers.contains(&0) {
        return Err(Error::Config(
            "partition and worker counts must be at least 1".into(),
        ));
    }
    // Fail early on a broker that does not answer or a bad topics folder.
    load_specs(&opts.topics_dir)?;
    crate::kafka::topics::partition_count(
        &opts.settings,
        "__consumer_offsets",
        Duration::from_secs(15),
    )
    .or_else(|e| match e {
        Error::NoTopic(_) => Ok(0),
        e => Err(e),
    })?;
    if let Some(soak) = &opts.soak {
        return run_soaks(opts, soak, out);
    }
    let data = prepare_data(opts)?;
    let mut report = new_report(opts, data.clone());
    write_header(out, &report).map_err(Error::Output)?;
    let ctx = RunContext {
        opts,
        data: &data,
        prefix: format!("lt-{}-{}", unix_ms(), std::process::id()),
        expected: &Mutex::new(HashMap::new()),
    };
    for &p in &opts.partitions {
        for &w in &opts.workers {
            for repeat in 1..=opts.repeat.max(1) {
                let run = run_one(&ctx, p, w, repeat);
                write_row(out, &run).map_err(Error::Output)?;
                write_shares(out, &run).map_err(Error::Output)?;
                if !run.check.correct {
                    for line in run.failure.iter().chain(&run.check.examples) {
                        writeln!(out, "      {line}").map_err(Error::Output)?;
                    }
                }
                out.flush().map_err(Error::Output)?;
                report.runs.push(run);
                if let Some(path) = &opts.output {
                    write_output(path, &report)?;
                }
            }
        }
    }
    if opts.repeat > 1 {
        write_medians(out, &report).map_err(Error::Output)?;
    }
    write_footer(out, &report).map_err(Error::Output)?;
    Ok(report)
}

/// Seconds between the data file's start and the first frame: the topics
/// and the workers are set up meanwhile.
const SETUP_SECONDS: u64 = 12;

/// Every combination as a soak ([`soak`]), printing as runs finish.
fn run_soaks(
    opts: &LoadtestOptions,
    soak: &SoakOptions,
    out: &mut dyn Write,
) -> Result<LoadtestReport, Error> {
    let opts = LoadtestOptions {
        kafka_tool: None,
        worker_metrics: true,
        live: true,
        ..opts.clone()
    };
    let mut report = new_report(&opts, DataSet::default());
    for &p in &opts.partitions {
        for &w in &opts.workers {
            for repeat in 1..=opts.repeat.max(1) {
                let prefix = format!("soak-{}-{}", unix_ms(), std::process::id());
                let dir = opts
                    .cache_dir
                    .join("runs")
                    .join(format!("{prefix}-p{p}w{w}"));
                std::fs::create_dir_all(&dir).map_err(Error::Output)?;
                let path = dir.join("frames.jsonl");
                // Generation runs at a few hundred MB/s: leave it time too.
                let bytes = u64::from(opts.rate) * soak.duration.as_secs() * opts.frame_size as u64;
                let start = unix_ms() / 1000 + SETUP_SECONDS + bytes / 200_000_000;
                info!(path = %path.display(), start, "generating the soak's frames");
                let data = soak_data(&opts, soak, start, &path)?;
                if report.runs.is_empty() {
                    report.data = data.clone();
                    write_header(out, &report).map_err(Error::Output)?;
                }
                let ctx = RunContext {
                    opts: &opts,
                    data: &data,
                    prefix,
                    expected: &Mutex::new(HashMap::new()),
                };
                let run = run_one(&ctx, p, w, repeat);
                write_row(out, &run).map_err(Error::Output)?;
                if !run.check.correct {
                    for line in run.failure.iter().chain(&run.check.examples) {
                        writeln!(out, "      {line}").map_err(Error::Output)?;
                    }
                } else {
                    // 2 KB a frame: do not keep gigabytes of a correct run.
                    let _ = std::fs::remove_file(&path);
                }
                if let Some(s) = &run.soak {
                    write_soak(out, s).map_err(Error::Output)?;
                }
                out.flush().map_err(Error::Output)?;
                report.data = data;
                report.runs.push(run);
                if let Some(path) = &opts.output {
                    write_output(path, &report)?;
                }
            }
        }
    }
    write_footer(out, &report).map_err(Error::Output)?;
    Ok(report)
}

/// The report before its first run.
fn new_report(opts: &LoadtestOptions, data: DataSet) -> LoadtestReport {
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    LoadtestReport {
        command: opts.command.clone(),
        date: iso8601_utc(started),
        machine: Machine::probe(),
        bootstrap: opts.settings.bootstrap.clone(),
        mode: mode_name(opts).into(),
        exactly_once: !opts.at_least_once,
        forward: opts.forward,
        commit_interval_ms: opts.commit_interval_ms,
        parse_threads: opts.parse_threads,
        kafka_tool: opts.kafka_tool.as_ref().map(KafkaTool::describe),
        perf_payload: opts.kafka_tool.as_ref().map(|_| opts.perf_payload),
        data,
        runs: Vec::new(),
    }
}

/// `soak`, `live` or `sequential`.
fn mode_name(opts: &LoadtestOptions) -> &'static str {
    match (&opts.soak, opts.live) {
        (Some(_), _) => "soak",
        (None, true) => "live",
        (None, false) => "sequential",
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn partition_frames_follow_bucket_routing() {
        let mut buckets = BTreeMap::new();
        buckets.insert(10, 5);
        buckets.insert(11, 7);
        buckets.insert(13, 1);
        let d = DataSet {
            path: PathBuf::new(),
            frames: 13,
            bytes: 0,
            payload_bytes: 0,
            first_ts: 0,
            last_ts: 0,
            last_frame_ts: 0,
            buckets,
            users: 0,
            rate: 0,
            seed: 0,
            frame_size: 0,
            sample: None,
        };
        assert_eq!(d.partition_frames(1), vec![13]);
        assert_eq!(d.partition_frames(2), vec![5, 8]);
        assert_eq!(d.partition_frames(4), vec![0, 1, 5, 7]);
    }
}
