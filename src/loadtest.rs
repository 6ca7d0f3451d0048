//! `timebucket loadtest`: the whole pipeline under load on a real cluster,
//! measured beside Kafka's own perf tools and checked against `aggregate`.
//!
//! For every combination of input partitions P (`--partitions 1,2,4,8`) and
//! workers W (`--workers 1,2`) one *run*:
//!
//! 1. creates fresh topics (unique names, configs from `topics/`) and a fresh
//!    consumer group;
//! 2. ingests the cached, generated data file (in this process, with
//!    [`crate::ingest::ingest`]);
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
//! 6. checks every window on the metric topics against [`crate::aggregate`]
//!    on the same file (and, with `--forward`, that every frame was forwarded
//!    once), and deletes the run's topics and groups.
//!
//! The figures of a run ([`RunReport`]):
//! - ingest: valid frames / time from the first read to the last delivery;
//! - processing: frames / time from the first record any worker consumed to
//!   the last window any worker made durable (committed transaction, or
//!   flushed with `--at-least-once`), from the workers' `--summary-file`;
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
//! Results go to a table on stdout, row by row as runs finish, and to a JSON
//! (or, by extension, CSV) file for plotting. A run whose windows differ from
//! `aggregate` is reported `WRONG`, and the command then fails.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::aggregate::{aggregate, AggregateOptions};
use crate::bucket::{Routing, DEFAULT_BUCKET_SECS};
use crate::error::Error;
use crate::frame::{default_max_ts, FrameParser, Line, DEFAULT_MIN_TS};
use crate::generate::{generate, GenerateOptions};
use crate::ingest::{ingest, IngestOptions};
use crate::input::{LineReader, RawLine};
use crate::kafka::config::{KafkaSettings, TopicNames};
use crate::kafka::topics::{
    apply_overrides, ensure_topics, load_specs, Overrides, TopicSpec, ROLE_INPUT, ROLE_MINUTES,
    ROLE_SECONDS,
};
use crate::metric::{iso8601_utc, MetricKind, MetricRecord};

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
    pub commit_interval_ms: u64,
    /// Workers consume while ingest produces (else: one after the other).
    pub live: bool,
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
}

/// The cached data file and what the run needs to know about it.
#[derive(Debug, Clone, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Default, Serialize)]
pub struct Rate {
    pub seconds: f64,
    pub frames_per_sec: f64,
    pub mb_per_sec: f64,
}

impl Rate {
    fn new(frames: u64, payload_bytes: u64, seconds: f64) -> Rate {
        let s = seconds.max(1e-9);
        Rate {
            seconds,
            frames_per_sec: frames as f64 / s,
            mb_per_sec: payload_bytes as f64 / 1e6 / s,
        }
    }
}

/// What a worker wrote to its `--summary-file`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WorkerFigures {
    #[serde(default)]
    pub frames: u64,
    #[serde(default)]
    pub replayed: u64,
    #[serde(default)]
    pub seconds_emitted: u64,
    #[serde(default)]
    pub minutes_emitted: u64,
    /// Unix ms of the first record consumed.
    #[serde(default)]
    pub first_record_ms: Option<u64>,
    /// Unix ms of the last record consumed (to a poll batch).
    #[serde(default)]
    pub last_record_ms: Option<u64>,
    /// Unix ms at which the last emitted windows became durable.
    #[serde(default)]
    pub last_emit_ms: Option<u64>,
    #[serde(default)]
    pub started_ms: u64,
    #[serde(default)]
    pub finished_ms: u64,
    /// VmHWM of /proc/self/status.
    #[serde(default)]
    pub peak_rss_kb: Option<u64>,
    /// User + system CPU time, of the process and of its main thread (the
    /// one that polls, parses and counts).
    #[serde(default)]
    pub cpu_ms: Option<u64>,
    #[serde(default)]
    pub main_thread_cpu_ms: Option<u64>,
    #[serde(default)]
    pub ok: bool,
}

/// `kafka-producer-perf-test`'s final line. MB are 10^6 bytes here (the tool
/// prints MiB).
#[derive(Debug, Clone, Default, Serialize)]
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
#[derive(Debug, Clone, Default, Serialize)]
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

#[derive(Debug, Clone, Default, Serialize)]
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

#[derive(Debug, Clone, Default, Serialize)]
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
    pub worker_figures: Vec<WorkerFigures>,
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
}

#[derive(Debug, Clone, Serialize)]
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

#[derive(Debug, Clone, Serialize)]
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
    pub kafka_tool: Option<String>,
    pub perf_payload: Option<PerfPayload>,
    pub data: DataSet,
    pub runs: Vec<RunReport>,
}

impl LoadtestReport {
    pub fn wrong_runs(&self) -> usize {
        self.runs.iter().filter(|r| !r.check.correct).count()
    }
}

pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn parser() -> FrameParser {
    FrameParser::new(DEFAULT_MIN_TS, default_max_ts(unix_ms() / 1000))
}

fn io_error(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::Config(format!("{what}: {e}"))
}

// ---------------------------------------------------------------------------
// The data file

/// The generated file for `opts`, from the cache when it is there (a file
/// with a `.meta.json` whose size matches), generated otherwise.
pub fn prepare_data(opts: &LoadtestOptions) -> Result<DataSet, Error> {
    std::fs::create_dir_all(&opts.cache_dir).map_err(io_error(format!(
        "cannot create {}",
        opts.cache_dir.display()
    )))?;
    let stem = format!(
        "frames-c{}-l{}-r{}-n{}-s{}-t{}",
        opts.frames, opts.frame_size, opts.rate, opts.users, opts.seed, opts.start
    );
    let path = opts.cache_dir.join(format!("{stem}.jsonl"));
    let meta_path = opts.cache_dir.join(format!("{stem}.meta.json"));
    let cached = std::fs::read(&meta_path)
        .ok()
        .and_then(|m| serde_json::from_slice::<DataSet>(&m).ok())
        .filter(|d| std::fs::metadata(&path).is_ok_and(|m| m.len() == d.bytes));
    let mut data = match cached {
        Some(d) => {
            info!(path = %path.display(), frames = d.frames, "using the cached data file");
            d
        }
        None => {
            let gen = GenerateOptions {
                count: opts.frames,
                rate: opts.rate,
                users: opts.users,
                seed: opts.seed,
                frame_len: opts.frame_size,
                max_delay: 0,
                delay_percent: 0.0,
                start: opts.start,
            };
            info!(path = %path.display(), frames = opts.frames, "generating the data file (cached for later runs)");
            let tmp = opts
                .cache_dir
                .join(format!("{stem}.jsonl.tmp-{}", std::process::id()));
            let file =
                File::create(&tmp).map_err(io_error(format!("cannot create {}", tmp.display())))?;
            let summary = generate(&gen, file)
                .map_err(io_error(format!("cannot write {}", tmp.display())))?;
            std::fs::rename(&tmp, &path)
                .map_err(io_error(format!("cannot rename {}", tmp.display())))?;
            let mut d = scan_data(&path)?;
            if d.frames != summary.frames || d.bytes != summary.bytes {
                return Err(Error::Config(format!(
                    "{}: {} valid frames and {} bytes read back, {} and {} written",
                    path.display(),
                    d.frames,
                    d.bytes,
                    summary.frames,
                    summary.bytes
                )));
            }
            d.users = opts.users;
            d.rate = opts.rate;
            d.seed = opts.seed;
            d.frame_size = opts.frame_size;
            let meta = serde_json::to_vec_pretty(&d).expect("serializable");
            let tmp = meta_path.with_extension(format!("json.tmp-{}", std::process::id()));
            std::fs::write(&tmp, meta)
                .and_then(|()| std::fs::rename(&tmp, &meta_path))
                .map_err(io_error(format!("cannot write {}", meta_path.display())))?;
            d
        }
    };
    data.path = path;
    if opts.kafka_tool.is_some() && opts.perf_payload == PerfPayload::Frames {
        let sample = opts.cache_dir.join(format!("{stem}.sample.txt"));
        if !sample.exists() {
            write_sample(&data.path, &sample, PERF_SAMPLE_FRAMES)?;
        }
        data.sample = Some(sample);
    }
    Ok(data)
}

/// Counts the file's frames per time bucket (every line must be a frame).
fn scan_data(path: &Path) -> Result<DataSet, Error> {
    let parser = parser();
    let file = File::open(path).map_err(io_error(format!("cannot open {}", path.display())))?;
    let mut reader = LineReader::new(file, parser.max_frame_bytes);
    let mut d = DataSet {
        path: path.to_path_buf(),
        frames: 0,
        bytes: 0,
        payload_bytes: 0,
        first_ts: u64::MAX,
        last_ts: 0,
        last_frame_ts: 0,
        buckets: BTreeMap::new(),
        users: 0,
        rate: 0,
        seed: 0,
        frame_size: 0,
        sample: None,
    };
    while let Some(line) = reader
        .next_line()
        .map_err(io_error(format!("cannot read {}", path.display())))?
    {
        let RawLine::Line(bytes) = line.raw else {
            return Err(Error::Config(format!(
                "{}: oversized line {}",
                path.display(),
                line.number
            )));
        };
        match parser.parse(bytes) {
            Line::Frame(frame) => {
                d.frames += 1;
                d.payload_bytes += bytes.len() as u64;
                d.first_ts = d.first_ts.min(frame.ts);
                d.last_ts = d.last_ts.max(frame.ts);
                d.last_frame_ts = frame.ts;
                *d.buckets.entry(frame.ts / DEFAULT_BUCKET_SECS).or_default() += 1;
            }
            other => {
                return Err(Error::Config(format!(
                    "{}: line {} is not a valid frame ({other:?})",
                    path.display(),
                    line.number
                )))
            }
        }
    }
    d.bytes = reader.bytes();
    if d.frames == 0 {
        d.first_ts = 0;
    }
    Ok(d)
}

fn write_sample(data: &Path, sample: &Path, frames: u64) -> Result<(), Error> {
    let input = File::open(data).map_err(io_error(format!("cannot open {}", data.display())))?;
    let tmp = sample.with_extension(format!("txt.tmp-{}", std::process::id()));
    let mut out = BufWriter::new(
        File::create(&tmp).map_err(io_error(format!("cannot create {}", tmp.display())))?,
    );
    for line in BufReader::new(input).split(b'\n').take(frames as usize) {
        let line = line.map_err(io_error(format!("cannot read {}", data.display())))?;
        out.write_all(&line)
            .and_then(|()| out.write_all(b"\n"))
            .map_err(io_error(format!("cannot write {}", tmp.display())))?;
    }
    out.flush()
        .map_err(io_error(format!("cannot write {}", tmp.display())))?;
    drop(out);
    std::fs::rename(&tmp, sample).map_err(io_error(format!("cannot rename {}", tmp.display())))
}

// ---------------------------------------------------------------------------
// Topics and groups of one run

struct RunTopics {
    names: TopicNames,
    /// kafka-producer-perf-test's topic.
    perf: String,
    group: String,
    perf_group: String,
    partitions: u32,
    seconds_partitions: u32,
    minutes_partitions: u32,
}

fn create_topics(
    opts: &LoadtestOptions,
    prefix: &str,
    partitions: u32,
) -> Result<RunTopics, Error> {
    let names = TopicNames {
        input: format!("{prefix}-in"),
        seconds: format!("{prefix}-sec"),
        minutes: format!("{prefix}-min"),
        forward: format!("{prefix}-fwd"),
        dead_letter: format!("{prefix}-dlq"),
    };
    let mut specs = load_specs(&opts.topics_dir)?;
    let overrides = Overrides {
        input_partitions: Some(partitions),
        replication: opts.replication,
        ..Overrides::from_names(&names)
    };
    apply_overrides(&mut specs, &overrides)?;
    let perf = format!("{prefix}-perf");
    if opts.kafka_tool.is_some() {
        let input = specs
            .iter()
            .find(|s| s.role == ROLE_INPUT)
            .cloned()
            .ok_or_else(|| {
                Error::Config("no input topic definition in the topics folder".into())
            })?;
        specs.push(TopicSpec {
            name: perf.clone(),
            ..input
        });
    }
    let count = |role: &str| {
        specs
            .iter()
            .find(|s| s.role == role)
            .map_or(1, |s| s.partitions)
    };
    let (seconds_partitions, minutes_partitions) = (count(ROLE_SECONDS), count(ROLE_MINUTES));
    let report = ensure_topics(&opts.settings, &specs, Duration::from_secs(60))?;
    if report.created.len() != specs.len() {
        return Err(Error::Kafka(format!(
            "expected to create {} fresh topics, created {:?}",
            specs.len(),
            report.created
        )));
    }
    Ok(RunTopics {
        names,
        perf,
        group: format!("{prefix}-group"),
        perf_group: format!("{prefix}-perf-group"),
        partitions,
        seconds_partitions,
        minutes_partitions,
    })
}

fn admin_runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Config(format!("cannot start a runtime for the admin client: {e}")))
}

/// Deletes the run's topics and groups (best effort: a warning on failure).
fn delete_run(settings: &KafkaSettings, topics: &RunTopics) {
    let result = (|| -> Result<(), Error> {
        let admin: AdminClient<DefaultClientContext> = settings
            .client_config(&[])
            .create()
            .map_err(|e| Error::Kafka(format!("cannot create admin client: {e}")))?;
        let rt = admin_runtime()?;
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let n = &topics.names;
        let names = [
            n.input.as_str(),
            &n.seconds,
            &n.minutes,
            &n.forward,
            &n.dead_letter,
            &topics.perf,
        ];
        rt.block_on(admin.delete_topics(&names, &opts))?;
        let _ = rt.block_on(admin.delete_groups(&[&topics.group, &topics.perf_group], &opts));
        Ok(())
    })();
    if let Err(e) = result {
        warn!(error = %e, "cannot delete the run's topics");
    }
}

// ---------------------------------------------------------------------------
// Lag sampler and window observer (threads of the loadtest process)

fn reader(settings: &KafkaSettings, group: &str) -> Result<BaseConsumer, Error> {
    settings
        .client_config(&[
            ("group.id", group),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("isolation.level", "read_committed"),
            ("fetch.wait.max.ms", "50"),
        ])
        .create()
        .map_err(|e| Error::Kafka(format!("cannot create a consumer: {e}")))
}

/// Tells the lag sampler to stop, or to sample now; counts its samples.
#[derive(Default)]
struct LagSignal {
    stop: AtomicBool,
    now: AtomicBool,
    taken: std::sync::atomic::AtomicU64,
}

impl LagSignal {
    /// Asks for a sample now and waits (up to 5 s) until it is taken.
    fn sample_now(&self) {
        let before = self.taken.load(Ordering::SeqCst);
        self.now.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.taken.load(Ordering::SeqCst) <= before && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// Samples Σ(end − committed) of `group` on `topic` until `signal.stop`.
fn sample_lag(
    settings: &KafkaSettings,
    topic: &str,
    partitions: u32,
    group: &str,
    interval: Duration,
    t0: Instant,
    signal: &LagSignal,
) -> Vec<(f64, i64)> {
    let consumer: BaseConsumer = match settings
        .client_config(&[("group.id", group), ("enable.auto.commit", "false")])
        .create()
    {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e, "lag sampler: cannot create a consumer");
            return Vec::new();
        }
    };
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        tpl.add_partition(topic, p);
    }
    let timeout = Duration::from_secs(5);
    let mut samples = Vec::new();
    loop {
        let committed = consumer.committed_offsets(tpl.clone(), timeout);
        let mut lag = 0i64;
        let mut ok = committed.is_ok();
        for p in 0..partitions as i32 {
            let Ok((_, high)) = consumer.fetch_watermarks(topic, p, timeout) else {
                ok = false;
                break;
            };
            let done = committed
                .as_ref()
                .ok()
                .and_then(|c| c.find_partition(topic, p))
                .and_then(|e| match e.offset() {
                    Offset::Offset(o) if o >= 0 => Some(o),
                    _ => None,
                })
                .unwrap_or(0);
            lag += (high - done).max(0);
        }
        if ok {
            samples.push((t0.elapsed().as_secs_f64(), lag));
        }
        signal.taken.fetch_add(1, Ordering::SeqCst);
        let next = Instant::now() + interval;
        while Instant::now() < next {
            if signal.stop.load(Ordering::SeqCst) {
                return samples;
            }
            if signal.now.swap(false, Ordering::SeqCst) {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// When each window became visible to a `read_committed` reader.
#[derive(Debug, Default)]
struct Observed {
    records: u64,
    last_ms: Option<u64>,
    /// Minute window_start → unix ms of its first appearance.
    minutes: HashMap<u64, u64>,
}

/// Reads the metric topics from the beginning as windows appear, until
/// `finish` is set and it has read up to the end offsets of that moment.
fn observe(
    settings: &KafkaSettings,
    topics: &RunTopics,
    finish: &AtomicBool,
    timeout: Duration,
) -> Result<Observed, Error> {
    let consumer = reader(settings, &format!("{}-observer", topics.group))?;
    let mut tpl = TopicPartitionList::new();
    let all: Vec<(&str, i32)> = (0..topics.seconds_partitions as i32)
        .map(|p| (topics.names.seconds.as_str(), p))
        .chain((0..topics.minutes_partitions as i32).map(|p| (topics.names.minutes.as_str(), p)))
        .collect();
    for &(t, p) in &all {
        tpl.add_partition_offset(t, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let mut seen = Observed::default();
    let mut ends: Option<HashMap<(String, i32), i64>> = None;
    let mut deadline = None;
    loop {
        if let Some(message) = consumer.poll(Duration::from_millis(50)) {
            let message = message?;
            let now = unix_ms();
            seen.records += 1;
            seen.last_ms = Some(now);
            if let Some(Ok(r)) = message
                .payload()
                .map(serde_json::from_slice::<MetricRecord>)
            {
                if r.metric == MetricKind::Minute {
                    seen.minutes.entry(r.window_start).or_insert(now);
                }
            }
        }
        if ends.is_none() && finish.load(Ordering::SeqCst) {
            let mut e = HashMap::new();
            for &(t, p) in &all {
                let (_, high) = consumer.fetch_watermarks(t, p, Duration::from_secs(10))?;
                e.insert((t.to_string(), p), high);
            }
            ends = Some(e);
            deadline = Some(Instant::now() + timeout);
        }
        if let Some(ends) = &ends {
            let positions = consumer.position()?;
            let done = ends.iter().all(|((t, p), &end)| {
                end == 0
                    || positions
                        .find_partition(t, *p)
                        .is_some_and(|e| matches!(e.offset(), Offset::Offset(o) if o >= end))
            });
            if done {
                return Ok(seen);
            }
            if deadline.is_some_and(|d| Instant::now() > d) {
                warn!("observer: the metric topics were not read to their end in time");
                return Ok(seen);
            }
        }
    }
}

/// Counts the committed records of `topic` (forwarded frames).
fn count_committed(settings: &KafkaSettings, topic: &str, group: &str) -> Result<u64, Error> {
    let consumer = reader(settings, group)?;
    let timeout = Duration::from_secs(30);
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default();
    let mut tpl = TopicPartitionList::new();
    let mut ends = HashMap::new();
    for p in partitions {
        let (_, high) = consumer.fetch_watermarks(topic, p, timeout)?;
        if high > 0 {
            ends.insert(p, high);
            tpl.add_partition_offset(topic, p, Offset::Beginning)?;
        }
    }
    if ends.is_empty() {
        return Ok(0);
    }
    consumer.assign(&tpl)?;
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut count = 0;
    let mut last_check = Instant::now();
    while !ends.is_empty() {
        if Instant::now() > deadline {
            return Err(Error::Kafka(format!("counting {topic} timed out")));
        }
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            m?;
            count += 1;
        }
        if last_check.elapsed() > Duration::from_millis(100) || ends.len() < 4 {
            last_check = Instant::now();
            for e in consumer.position()?.elements() {
                if let (Offset::Offset(pos), Some(&end)) = (e.offset(), ends.get(&e.partition())) {
                    if pos >= end {
                        ends.remove(&e.partition());
                    }
                }
            }
        }
    }
    Ok(count)
}

// ---------------------------------------------------------------------------
// Worker processes

/// Environment variables of `worker` options that the loadtest sets itself.
const WORKER_ENV: &[&str] = &[
    "BOOTSTRAP_SERVERS",
    "INPUT_TOPIC",
    "SEC_METRICS_OUTPUT_TOPIC",
    "MIN_METRICS_OUTPUT_TOPIC",
    "OUTPUT_STREAM",
    "DEAD_LETTER_TOPIC",
    "CONSUMER_GROUP_ID",
    "FORWARD_FRAMES",
    "AT_LEAST_ONCE",
    "COMMIT_INTERVAL_MS",
    "IDLE_FLUSH_SECONDS",
    "PRINT_INTERVAL",
    "LATENESS",
    "BUCKET_SECONDS",
    "MIN_TS",
    "MAX_TS",
    "MAX_FRAME_BYTES",
];

struct WorkerProcess {
    child: Child,
    summary: PathBuf,
    log: PathBuf,
}

fn spawn_worker(
    opts: &LoadtestOptions,
    topics: &RunTopics,
    dir: &Path,
    index: u32,
    until: Option<&[u64]>,
) -> Result<WorkerProcess, Error> {
    let summary = dir.join(format!("worker-{index}.json"));
    let log = dir.join(format!("worker-{index}.log"));
    let _ = std::fs::remove_file(&summary);
    let n = &topics.names;
    let mut cmd = Command::new(&opts.exe);
    cmd.arg("worker");
    for var in WORKER_ENV {
        cmd.env_remove(var);
    }
    cmd.env("RUST_LOG", "info")
        .args(["-b", &opts.settings.bootstrap]);
    for (k, v) in &opts.settings.properties {
        cmd.arg("-X").arg(format!("{k}={v}"));
    }
    cmd.args(["--input-topic", &n.input])
        .args(["--seconds-topic", &n.seconds])
        .args(["--minutes-topic", &n.minutes])
        .args(["--output-stream", &n.forward])
        .args(["--dead-letter-topic", &n.dead_letter])
        .args(["-g", &topics.group])
        .args(["--lateness", &LATENESS.to_string()])
        .args(["--commit-interval-ms", &opts.commit_interval_ms.to_string()])
        .arg("--summary-file")
        .arg(&summary);
    match until {
        Some(ends) => {
            let list: Vec<String> = ends
                .iter()
                .enumerate()
                .map(|(p, n)| format!("{p}={n}"))
                .collect();
            cmd.args(["--until-offsets", &list.join(",")]);
        }
        None => {
            cmd.arg("--until-end");
        }
    }
    if opts.forward {
        cmd.arg("--forward");
    }
    if opts.at_least_once {
        cmd.arg("--at-least-once");
    }
    let log_file =
        File::create(&log).map_err(io_error(format!("cannot create {}", log.display())))?;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .map_err(io_error(format!("cannot start {}", opts.exe.display())))?;
    Ok(WorkerProcess {
        child,
        summary,
        log,
    })
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Waits for every worker; kills them all at `deadline`.
fn wait_workers(workers: &mut [WorkerProcess], deadline: Instant) -> Result<(), String> {
    let mut failure = None;
    loop {
        let mut running = 0;
        for w in workers.iter_mut() {
            match w.child.try_wait() {
                Ok(Some(status)) if !status.success() && failure.is_none() => {
                    failure = Some(format!(
                        "worker exited with {status}; last lines of {}:\n{}",
                        w.log.display(),
                        tail(&w.log, 15)
                    ));
                }
                Ok(Some(_)) => {}
                Ok(None) => running += 1,
                Err(e) => failure = Some(format!("cannot wait for a worker: {e}")),
            }
        }
        if running == 0 {
            return failure.map_or(Ok(()), Err);
        }
        if failure.is_some() || Instant::now() > deadline {
            for w in workers.iter_mut() {
                let _ = w.child.kill();
                let _ = w.child.wait();
            }
            return Err(failure.unwrap_or_else(|| {
                format!(
                    "workers did not finish in time; last lines of {}:\n{}",
                    workers[0].log.display(),
                    tail(&workers[0].log, 15)
                )
            }));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until every worker says it started (consumer created, subscribed).
fn wait_started(workers: &[WorkerProcess], deadline: Instant) {
    while Instant::now() < deadline {
        if workers
            .iter()
            .all(|w| std::fs::read_to_string(&w.log).is_ok_and(|l| l.contains("worker started")))
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------
// Kafka's perf tools

fn run_tool(
    tool: &KafkaTool,
    name: &str,
    args: &[String],
    log: &Path,
    timeout: Duration,
) -> Result<(String, f64), String> {
    let mut cmd = tool.command(name);
    cmd.args(args).stdin(Stdio::null());
    let started = Instant::now();
    let out_path = log.with_extension("out");
    let out = File::create(&out_path)
        .map_err(|e| format!("cannot create {}: {e}", out_path.display()))?;
    let err = File::create(log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    let mut child = cmd
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot start {} {name}: {e}", tool.describe()))?;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{name} did not finish within {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let secs = started.elapsed().as_secs_f64();
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    if !status.success() {
        return Err(format!(
            "{} {name} exited with {status}:\n{}\n{}",
            tool.describe(),
            tail(&out_path, 5),
            tail(log, 10)
        ));
    }
    Ok((stdout, secs))
}

/// The numbers in `kafka-producer-perf-test`'s final summary line:
/// `N records sent, R records/sec (M MB/sec), A ms avg latency, X ms max latency, ...`.
pub fn parse_producer_perf(stdout: &str) -> Option<ProducerPerf> {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.contains("records sent") && l.contains("max latency"))?;
    let number_before = |marker: &str| -> Option<f64> {
        let at = line.find(marker)?;
        line[..at]
            .trim_end()
            .rsplit([' ', '(', ','])
            .next()?
            .parse()
            .ok()
    };
    Some(ProducerPerf {
        records: number_before(" records sent")? as u64,
        records_per_sec: number_before(" records/sec")?,
        mb_per_sec: number_before(" MB/sec")? * 1.048_576,
        avg_latency_ms: number_before(" ms avg latency")?,
        max_latency_ms: number_before(" ms max latency")?,
        wall_seconds: 0.0,
    })
}

/// `kafka-consumer-perf-test`'s header and values lines.
pub fn parse_consumer_perf(stdout: &str) -> Option<ConsumerPerf> {
    let mut lines = stdout.lines().map(str::trim).filter(|l| !l.is_empty());
    let header_at = lines.clone().position(|l| l.starts_with("start.time"))?;
    let header: Vec<&str> = lines.nth(header_at)?.split(',').map(str::trim).collect();
    let values: Vec<&str> = lines.next()?.split(',').map(str::trim).collect();
    let get = |name: &str| -> Option<f64> {
        let i = header.iter().position(|h| *h == name)?;
        values.get(i)?.parse().ok()
    };
    Some(ConsumerPerf {
        records: get("data.consumed.in.nMsg")? as u64,
        records_per_sec: get("nMsg.sec")?,
        mb_per_sec: get("MB.sec")? * 1.048_576,
        rebalance_ms: get("rebalance.time.ms").unwrap_or(0.0),
        fetch_ms: get("fetch.time.ms").unwrap_or(0.0),
        fetch_records_per_sec: get("fetch.nMsg.sec")?,
        fetch_mb_per_sec: get("fetch.MB.sec")? * 1.048_576,
        wall_seconds: 0.0,
    })
}

/// Producer settings of the perf test: those of `ingest` (see
/// [`crate::kafka::producer::INGEST_DEFAULTS`]) in the Java client's names.
pub const PERF_PRODUCER_PROPS: &[&str] = &[
    "acks=all",
    "enable.idempotence=true",
    "compression.type=lz4",
    "linger.ms=25",
    "batch.size=1000000",
    "buffer.memory=268435456",
];

fn producer_perf(
    opts: &LoadtestOptions,
    tool: &KafkaTool,
    data: &DataSet,
    topics: &RunTopics,
    dir: &Path,
) -> Result<ProducerPerf, String> {
    let mut args: Vec<String> = vec![
        "--bootstrap-server".into(),
        opts.settings.bootstrap.clone(),
        "--topic".into(),
        topics.perf.clone(),
        "--num-records".into(),
        data.frames.to_string(),
        "--throughput".into(),
        "-1".into(),
    ];
    match (&data.sample, opts.perf_payload) {
        (Some(sample), PerfPayload::Frames) => {
            args.push("--payload-file".into());
            args.push(sample.display().to_string());
        }
        _ => {
            args.push("--record-size".into());
            args.push(format!("{:.0}", data.mean_frame_bytes()));
        }
    }
    args.push("--command-property".into());
    args.extend(PERF_PRODUCER_PROPS.iter().map(|s| s.to_string()));
    let (stdout, secs) = run_tool(
        tool,
        "kafka-producer-perf-test",
        &args,
        &dir.join("producer-perf.log"),
        opts.phase_timeout,
    )?;
    let mut perf = parse_producer_perf(&stdout).ok_or_else(|| {
        format!("no summary line in kafka-producer-perf-test's output:\n{stdout}")
    })?;
    perf.wall_seconds = secs;
    Ok(perf)
}

fn consumer_perf(
    opts: &LoadtestOptions,
    tool: &KafkaTool,
    data: &DataSet,
    topics: &RunTopics,
    dir: &Path,
) -> Result<ConsumerPerf, String> {
    let args: Vec<String> = vec![
        "--bootstrap-server".into(),
        opts.settings.bootstrap.clone(),
        "--topic".into(),
        topics.names.input.clone(),
        "--num-records".into(),
        data.frames.to_string(),
        "--group".into(),
        topics.perf_group.clone(),
        "--timeout".into(),
        "60000".into(),
    ];
    let (stdout, secs) = run_tool(
        tool,
        "kafka-consumer-perf-test",
        &args,
        &dir.join("consumer-perf.log"),
        opts.phase_timeout,
    )?;
    let mut perf = parse_consumer_perf(&stdout)
        .ok_or_else(|| format!("no summary in kafka-consumer-perf-test's output:\n{stdout}"))?;
    perf.wall_seconds = secs;
    if perf.records < data.frames {
        return Err(format!(
            "kafka-consumer-perf-test read {} of {} records",
            perf.records, data.frames
        ));
    }
    Ok(perf)
}

// ---------------------------------------------------------------------------
// Correctness

type Windows = BTreeMap<(MetricKind, u64), (u64, Option<u64>)>;

/// What `aggregate` says for the file with `partitions` partitions.
pub fn expected_windows(data: &Path, partitions: u32) -> Result<Windows, Error> {
    let opts = AggregateOptions {
        routing: Routing::new(DEFAULT_BUCKET_SECS, partitions)?,
        lateness: LATENESS,
        parser: parser(),
        log_invalid: 0,
    };
    let input = File::open(data).map_err(io_error(format!("cannot open {}", data.display())))?;
    let mut out = Vec::new();
    aggregate(input, &mut out, &opts)?;
    let mut windows = Windows::new();
    for line in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let r: MetricRecord = serde_json::from_slice(line)
            .map_err(|e| Error::Config(format!("aggregate wrote an unreadable record: {e}")))?;
        windows.insert((r.metric, r.window_start), (r.frames, r.unique_users));
    }
    Ok(windows)
}

/// Compares the windows on the metric topics with `want`.
fn check_windows(
    settings: &KafkaSettings,
    topics: &RunTopics,
    want: &Windows,
    exactly_once: bool,
) -> Result<Check, Error> {
    let mut got = Windows::new();
    let mut check = Check {
        windows_expected: want.len(),
        ..Check::default()
    };
    for (topic, kind) in [
        (&topics.names.seconds, MetricKind::Second),
        (&topics.names.minutes, MetricKind::Minute),
    ] {
        for message in
            crate::kafka::consumer::read_to_end(settings, topic, Duration::from_secs(120))?
        {
            let Some(Ok(r)) = message
                .payload()
                .map(serde_json::from_slice::<MetricRecord>)
            else {
                check.extra += 1;
                check.examples.push(format!(
                    "unreadable record at {topic}/{}@{}",
                    message.partition(),
                    message.offset()
                ));
                continue;
            };
            if r.metric != kind {
                check.extra += 1;
                check
                    .examples
                    .push(format!("{:?} record on {topic}", r.metric));
                continue;
            }
            let value = (r.frames, r.unique_users);
            if let Some(previous) = got.insert((r.metric, r.window_start), value) {
                check.duplicates += 1;
                if previous != value {
                    check.differing += 1;
                    check.examples.push(format!(
                        "{:?} {} emitted twice: {previous:?} then {value:?}",
                        r.metric, r.window_start
                    ));
                }
            }
        }
    }
    check.windows_emitted = got.len();
    for (key, value) in want {
        match got.get(key) {
            None => {
                check.missing += 1;
                if check.examples.len() < 5 {
                    check
                        .examples
                        .push(format!("missing {:?} {}", key.0, key.1));
                }
            }
            Some(v) if v != value => {
                check.differing += 1;
                if check.examples.len() < 5 {
                    check
                        .examples
                        .push(format!("{:?} {}: want {value:?}, got {v:?}", key.0, key.1));
                }
            }
            Some(_) => {}
        }
    }
    check.extra += got.keys().filter(|k| !want.contains_key(k)).count();
    let duplicates_wrong = exactly_once && check.duplicates > 0;
    check.correct =
        check.missing == 0 && check.extra == 0 && check.differing == 0 && !duplicates_wrong;
    Ok(check)
}

fn verdict(check: &mut Check, frames: u64) {
    let mut problems = Vec::new();
    if check.missing > 0 {
        problems.push(format!("{} missing", check.missing));
    }
    if check.extra > 0 {
        problems.push(format!("{} extra", check.extra));
    }
    if check.differing > 0 {
        problems.push(format!("{} differ", check.differing));
    }
    if check.duplicates > 0 {
        problems.push(format!("{} duplicates", check.duplicates));
    }
    if let Some(f) = check.forwarded {
        if f != frames {
            check.correct = false;
            problems.push(format!("{f} of {frames} frames forwarded"));
        }
    }
    check.verdict = if check.correct && problems.is_empty() {
        "correct".into()
    } else if check.correct {
        format!("correct ({})", problems.join(", "))
    } else {
        format!("WRONG: {}", problems.join(", "))
    };
}

// ---------------------------------------------------------------------------
// Machine CPU use

/// (busy, total) jiffies of all cores, from /proc/stat.
fn cpu_jiffies() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4).unwrap_or(&0);
    Some((total - idle, total))
}

fn busy_pct(from: Option<(u64, u64)>, to: Option<(u64, u64)>) -> Option<f64> {
    let ((b0, t0), (b1, t1)) = (from?, to?);
    (t1 > t0).then(|| (b1 - b0) as f64 * 100.0 / (t1 - t0) as f64)
}

// ---------------------------------------------------------------------------
// One run

fn ingest_data(
    opts: &LoadtestOptions,
    data: &DataSet,
    topics: &RunTopics,
) -> Result<crate::ingest::IngestSummary, Error> {
    let ingest_opts = IngestOptions {
        settings: opts.settings.clone(),
        topics: topics.names.clone(),
        parser: parser(),
        bucket_secs: DEFAULT_BUCKET_SECS,
        input_len: Some(data.bytes),
        log_invalid: 20,
    };
    let input =
        File::open(&data.path).map_err(io_error(format!("cannot open {}", data.path.display())))?;
    let summary = ingest(input, &ingest_opts)?;
    if summary.read.valid != data.frames || summary.delivered != data.frames {
        return Err(Error::Delivery(format!(
            "ingest read {} valid frames and delivered {}, expected {}",
            summary.read.valid, summary.delivered, data.frames
        )));
    }
    Ok(summary)
}

struct RunContext<'a> {
    opts: &'a LoadtestOptions,
    data: &'a DataSet,
    prefix: String,
    expected: &'a Mutex<HashMap<u32, Windows>>,
}

fn run_one(ctx: &RunContext<'_>, partitions: u32, workers: u32) -> RunReport {
    let opts = ctx.opts;
    let data = ctx.data;
    let tag = format!("p{partitions}w{workers}");
    let prefix = format!("{}-{tag}", ctx.prefix);
    let dir = opts.cache_dir.join("runs").join(&prefix);
    let mut report = RunReport {
        mode: if opts.live { "live" } else { "sequential" }.into(),
        partitions,
        workers,
        forward: opts.forward,
        exactly_once: !opts.at_least_once,
        frames: data.frames,
        payload_bytes: data.payload_bytes,
        partition_frames: data.partition_frames(partitions),
        logs: dir.clone(),
        ..RunReport::default()
    };
    if let Err(e) = std::fs::create_dir_all(&dir) {
        report.failure = Some(format!("cannot create {}: {e}", dir.display()));
        return report;
    }
    let topics = match create_topics(opts, &prefix, partitions) {
        Ok(t) => t,
        Err(e) => {
            report.failure = Some(format!("cannot create the topics: {e}"));
            finish_check(&mut report);
            return report;
        }
    };
    report.input_topic = topics.names.input.clone();
    info!(partitions, workers, input = %topics.names.input, mode = %report.mode, "run starting");
    if let Err(failure) = measure(ctx, &topics, &dir, &mut report) {
        report.failure = Some(failure);
    }
    if report.failure.is_none() {
        if let Some(tool) = &opts.kafka_tool {
            info!("kafka-consumer-perf-test on the input topic");
            match consumer_perf(opts, tool, data, &topics, &dir) {
                Ok(p) => report.kafka_consumer_perf = Some(p),
                Err(e) => warn!(error = %e, "kafka-consumer-perf-test failed"),
            }
            info!("kafka-producer-perf-test");
            match producer_perf(opts, tool, data, &topics, &dir) {
                Ok(p) => report.kafka_producer_perf = Some(p),
                Err(e) => warn!(error = %e, "kafka-producer-perf-test failed"),
            }
        }
        report.ingest_vs_producer_perf = report
            .kafka_producer_perf
            .as_ref()
            .map(|p| report.ingest.frames_per_sec / p.records_per_sec.max(1e-9));
        report.processing_vs_consumer_perf = match (&report.processing, &report.kafka_consumer_perf)
        {
            (Some(ours), Some(theirs)) => {
                Some(ours.frames_per_sec / theirs.fetch_records_per_sec.max(1e-9))
            }
            _ => None,
        };
        info!("checking every window against aggregate");
        match check_run(ctx, &topics, partitions) {
            Ok(check) => report.check = check,
            Err(e) => report.failure = Some(format!("cannot check the results: {e}")),
        }
    }
    finish_check(&mut report);
    if !opts.keep_topics {
        delete_run(&opts.settings, &topics);
    }
    report
}

fn finish_check(report: &mut RunReport) {
    if let Some(failure) = &report.failure {
        report.check.correct = false;
        report.check.verdict = format!("FAILED: {}", failure.lines().next().unwrap_or(""));
    } else {
        verdict(&mut report.check, report.frames);
    }
}

fn check_run(ctx: &RunContext<'_>, topics: &RunTopics, partitions: u32) -> Result<Check, Error> {
    let cached = ctx
        .expected
        .lock()
        .expect("poisoned")
        .get(&partitions)
        .cloned();
    let want = match cached {
        Some(w) => w,
        None => {
            let w = expected_windows(&ctx.data.path, partitions)?;
            ctx.expected
                .lock()
                .expect("poisoned")
                .insert(partitions, w.clone());
            w
        }
    };
    let mut check = check_windows(&ctx.opts.settings, topics, &want, !ctx.opts.at_least_once)?;
    if ctx.opts.forward {
        check.forwarded = Some(count_committed(
            &ctx.opts.settings,
            &topics.names.forward,
            &format!("{}-count", topics.group),
        )?);
    }
    Ok(check)
}

/// Ingest and workers, with the lag sampler and the observer alongside.
fn measure(
    ctx: &RunContext<'_>,
    topics: &RunTopics,
    dir: &Path,
    report: &mut RunReport,
) -> Result<(), String> {
    let opts = ctx.opts;
    let data = ctx.data;
    let lag_signal = LagSignal::default();
    let finish_observer = AtomicBool::new(false);
    let t0 = Instant::now();
    std::thread::scope(|scope| {
        let lag = scope.spawn(|| {
            sample_lag(
                &opts.settings,
                &topics.names.input,
                topics.partitions,
                &topics.group,
                opts.lag_interval,
                t0,
                &lag_signal,
            )
        });
        let observer = scope.spawn(|| {
            observe(
                &opts.settings,
                topics,
                &finish_observer,
                Duration::from_secs(60),
            )
        });
        let result = ingest_and_process(ctx, topics, dir, report, &lag_signal);
        lag_signal.stop.store(true, Ordering::SeqCst);
        finish_observer.store(true, Ordering::SeqCst);
        report.lag_samples = lag.join().unwrap_or_default();
        report.peak_lag = report.lag_samples.iter().map(|s| s.1).max();
        let observed = match observer.join() {
            Ok(Ok(o)) => Some(o),
            Ok(Err(e)) => {
                warn!(error = %e, "observer failed");
                None
            }
            Err(_) => None,
        };
        let (ingest_start_ms, ingest_done_ms) = result?;
        if let Some(o) = observed {
            report.end_to_end_seconds = o
                .last_ms
                .map(|l| l.saturating_sub(ingest_start_ms) as f64 / 1000.0);
            let minute = data.last_frame_ts - data.last_frame_ts % 60;
            report.last_frame_delay_seconds = o
                .minutes
                .get(&minute)
                .map(|&at| (at as f64 - ingest_done_ms as f64) / 1000.0);
            info!(records = o.records, "observer read the metric topics");
        }
        Ok(())
    })
}

/// Returns the unix ms of ingest's start and of its last delivery.
fn ingest_and_process(
    ctx: &RunContext<'_>,
    topics: &RunTopics,
    dir: &Path,
    report: &mut RunReport,
    lag: &LagSignal,
) -> Result<(u64, u64), String> {
    let opts = ctx.opts;
    let data = ctx.data;
    let until = opts.live.then(|| report.partition_frames.clone());
    let mut workers = Vec::new();
    let cpu_processing_start;
    if opts.live {
        cpu_processing_start = cpu_jiffies();
        for i in 0..report.workers {
            workers.push(
                spawn_worker(opts, topics, dir, i, until.as_deref()).map_err(|e| e.to_string())?,
            );
        }
        wait_started(&workers, Instant::now() + Duration::from_secs(30));
        // Let the group settle before frames arrive (a live system's
        // workers are already running).
        std::thread::sleep(Duration::from_secs(3));
    } else {
        cpu_processing_start = None;
    }
    info!(frames = data.frames, "ingest");
    let cpu0 = cpu_jiffies();
    let ingest_start_ms = unix_ms();
    let ingested = ingest_data(opts, data, topics);
    let ingest_done_ms = unix_ms();
    let cpu1 = cpu_jiffies();
    let summary = match ingested {
        Ok(s) => s,
        Err(e) => {
            for w in workers.iter_mut() {
                let _ = w.child.kill();
                let _ = w.child.wait();
            }
            return Err(format!("ingest failed: {e}"));
        }
    };
    report.machine_cpu_ingest_pct = busy_pct(cpu0, cpu1);
    report.ingest = Rate::new(
        summary.read.valid,
        data.payload_bytes,
        summary.elapsed.as_secs_f64(),
    );
    info!(
        frames_per_sec = format!("{:.0}", report.ingest.frames_per_sec),
        mb_per_sec = format!("{:.1}", report.ingest.mb_per_sec),
        "ingest done"
    );
    let cpu_processing_start = if opts.live {
        cpu_processing_start
    } else {
        // The lag when the workers start: every frame.
        lag.sample_now();
        let cpu = cpu_jiffies();
        for i in 0..report.workers {
            workers.push(spawn_worker(opts, topics, dir, i, None).map_err(|e| e.to_string())?);
        }
        cpu
    };
    wait_workers(&mut workers, Instant::now() + opts.phase_timeout)?;
    report.machine_cpu_processing_pct = busy_pct(cpu_processing_start, cpu_jiffies());
    for w in &workers {
        let figures: WorkerFigures = std::fs::read(&w.summary)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| format!("worker wrote no summary to {}", w.summary.display()))?;
        report.worker_figures.push(figures);
    }
    let first = report
        .worker_figures
        .iter()
        .filter_map(|w| w.first_record_ms)
        .min();
    let last = report
        .worker_figures
        .iter()
        .filter_map(|w| w.last_emit_ms)
        .max();
    if let (Some(first), Some(last)) = (first, last) {
        report.processing = Some(Rate::new(
            data.frames,
            data.payload_bytes,
            last.saturating_sub(first) as f64 / 1000.0,
        ));
    }
    report.peak_worker_rss_mb = report
        .worker_figures
        .iter()
        .filter_map(|w| w.peak_rss_kb)
        .max()
        .map(|kb| kb as f64 * 1024.0 / 1e6);
    Ok((ingest_start_ms, ingest_done_ms))
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
        Error::Kafka(m) if m.contains("does not exist") => Ok(0),
        e => Err(e),
    })?;
    let data = prepare_data(opts)?;
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut report = LoadtestReport {
        command: opts.command.clone(),
        date: iso8601_utc(started),
        machine: Machine::probe(),
        bootstrap: opts.settings.bootstrap.clone(),
        mode: if opts.live { "live" } else { "sequential" }.into(),
        exactly_once: !opts.at_least_once,
        forward: opts.forward,
        commit_interval_ms: opts.commit_interval_ms,
        kafka_tool: opts.kafka_tool.as_ref().map(KafkaTool::describe),
        perf_payload: opts.kafka_tool.as_ref().map(|_| opts.perf_payload),
        data: data.clone(),
        runs: Vec::new(),
    };
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
                let mut run = run_one(&ctx, p, w);
                run.repeat = repeat;
                write_row(out, &run).map_err(Error::Output)?;
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

// ---------------------------------------------------------------------------
// Output

fn thousands(n: f64) -> String {
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

fn opt<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map_or_else(|| "-".into(), f)
}

fn write_header(out: &mut dyn Write, r: &LoadtestReport) -> std::io::Result<()> {
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

fn write_row(out: &mut dyn Write, r: &RunReport) -> std::io::Result<()> {
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

fn median(mut v: Vec<f64>) -> Option<f64> {
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
fn write_medians(out: &mut dyn Write, r: &LoadtestReport) -> std::io::Result<()> {
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

fn write_footer(out: &mut dyn Write, r: &LoadtestReport) -> std::io::Result<()> {
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
    let wrong = r.wrong_runs();
    if wrong == 0 {
        writeln!(
            out,
            "all {} runs correct: every window equals aggregate's",
            r.runs.len()
        )
    } else {
        writeln!(out, "{wrong} of {} runs WRONG or failed", r.runs.len())
    }
}

/// The report as JSON, or as CSV (one row per run) for a `.csv` path.
pub fn write_output(path: &Path, report: &LoadtestReport) -> Result<(), Error> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(Error::Output)?;
    }
    let text = if path.extension().is_some_and(|e| e == "csv") {
        csv(report)
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

fn csv(report: &LoadtestReport) -> String {
    let f = |v: Option<f64>| v.map_or_else(String::new, |v| format!("{v:.3}"));
    let mut s = CSV_COLUMNS.join(",") + "\n";
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
            format!("\"{}\"", r.check.verdict.replace('"', "'")),
        ];
        s.push_str(&row.join(","));
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_producer_perf_summary() {
        let out = "500000 records sent, 99990.0 records/sec (195.30 MB/sec), 10.2 ms avg latency, 950.0 ms max latency.\n\
                   1000000 records sent, 123456.7 records/sec (241.13 MB/sec), 45.20 ms avg latency, 812.00 ms max latency, 30 ms 50th, 120 ms 95th, 300 ms 99th, 700 ms 99.9th.\n";
        let p = parse_producer_perf(out).unwrap();
        assert_eq!(p.records, 1_000_000);
        assert!((p.records_per_sec - 123456.7).abs() < 1e-6);
        assert!((p.mb_per_sec - 241.13 * 1.048576).abs() < 1e-6);
        assert!((p.avg_latency_ms - 45.2).abs() < 1e-9);
        assert!((p.max_latency_ms - 812.0).abs() < 1e-9);
        assert!(parse_producer_perf("nothing here").is_none());
    }

    #[test]
    fn parses_consumer_perf_summary() {
        let out = "WARN something\nstart.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec\n\
                   2026-11-28 15:30:46:717, 2026-11-28 15:30:48:941, 1983.3147, 891.7782, 1000000, 449640.2878, 299, 1925, 1030.2933, 519480.5195\n";
        let c = parse_consumer_perf(out).unwrap();
        assert_eq!(c.records, 1_000_000);
        assert!((c.records_per_sec - 449640.2878).abs() < 1e-6);
        assert!((c.fetch_records_per_sec - 519480.5195).abs() < 1e-6);
        assert!((c.rebalance_ms - 299.0).abs() < 1e-9);
        assert!(parse_consumer_perf("").is_none());
    }

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

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(1234567.0), "1,234,567");
    }
}
