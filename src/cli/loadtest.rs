//! `timebucket loadtest`: options; the work is in [`crate::cmd::loadtest`].

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::ClusterArgs;
use crate::error::Error;
use crate::kafka::config::redact_command_line;

#[derive(Args, Debug)]
pub struct LoadtestArgs {
    /// The cluster; its properties go to ingest, the workers and the readers.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Input partition counts to measure, e.g. 1,2,4,8.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8")]
    pub partitions: Vec<u32>,
    /// Worker process counts to measure, e.g. 1,2.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    pub workers: Vec<u32>,
    /// Generated frames (cached under --cache-dir; 1,000,000 is about 2 GB).
    #[arg(long, default_value_t = 1_000_000)]
    pub frames: u64,
    /// Target frame size in bytes (generate -l).
    #[arg(long, default_value_t = 2048)]
    pub frame_size: usize,
    /// Frames per second of event time (generate -r): fewer spread the data over more time buckets.
    #[arg(long, default_value_t = 1000)]
    pub rate: u32,
    /// Distinct users (generate -n).
    #[arg(long, default_value_t = 100_000)]
    pub users: u32,
    /// Seed (generate -s).
    #[arg(long, default_value_t = crate::cmd::generate::DEFAULT_SEED)]
    pub seed: u64,
    /// First ts (generate --start); a multiple of 900 starts a time bucket.
    #[arg(long, default_value_t = crate::cmd::generate::DEFAULT_START)]
    pub start: u64,
    /// Workers also forward every frame to the forward topic.
    #[arg(long)]
    pub forward: bool,
    /// Workers run --at-least-once (default: exactly-once, transactions).
    #[arg(long)]
    pub at_least_once: bool,
    /// Workers serve Prometheus metrics (--metrics-addr on a free port), to
    /// measure what that costs.
    #[arg(long)]
    pub worker_metrics: bool,
    /// Workers' commit interval.
    #[arg(long, default_value_t = 1000)]
    pub commit_interval_ms: u64,
    /// Workers' parse threads (`worker --parse-threads`); the workers'
    /// default (one per core) when not given. Workers take no option from
    /// this process's environment, so PARSE_THREADS does not reach them.
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=crate::cli::worker::MAX_PARSE_THREADS))]
    pub parse_threads: Option<u64>,
    /// Start the workers first and ingest while they run (else ingest, then workers --until-end).
    #[arg(long)]
    pub live: bool,
    /// Soak: with --live, keep the workers under a live load this long
    /// (e.g. 90s, 10m, 1h 30m; a bare number is seconds): frames at --rate per
    /// second with ts = now, then drain and check; samples each worker's
    /// memory, lag, late frames and event-time delay (--frames and --start
    /// do not apply).
    #[arg(long, env = "LOADTEST_DURATION", requires = "live", value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Soak: largest delay in seconds of a delayed frame (generate -d).
    #[arg(long, default_value_t = 10)]
    pub max_delay: u32,
    /// Soak: percent of frames delayed by 1..=--max-delay seconds (generate -p).
    #[arg(long, default_value_t = 5.0)]
    pub delay_percent: f64,
    /// Soak: sample the workers every this many ms [default: the duration / 120, within 500-10000].
    #[arg(long)]
    pub sample_interval_ms: Option<u64>,
    /// Soak: memory is flat if the last quarter's median RSS exceeds the
    /// first quarter's by at most this percent...
    #[arg(long, default_value_t = 10.0)]
    pub rss_growth_pct: f64,
    /// ...or by at most this many MB, whichever is larger.
    #[arg(long, default_value_t = 8.0)]
    pub rss_growth_mb: f64,
    /// Shards per time bucket (each --partitions value must be a multiple):
    /// workers send partials, one `timebucket merge` sums them, and the
    /// check is against `aggregate --shards`.
    #[arg(long, default_value_t = 1)]
    pub shards: u32,
    /// Report file: JSON, or CSV if the name ends in .csv.
    #[arg(short = 'o', long, default_value = "target/loadtest/loadtest.json")]
    pub output: PathBuf,
    /// Data files and per-run logs.
    #[arg(long, default_value = "target/loadtest")]
    pub cache_dir: PathBuf,
    /// Topic definitions [default: topics/ here, else in the source checkout].
    #[arg(long, env = "TOPICS_DIR")]
    pub topics_dir: Option<PathBuf>,
    /// Replication factor of the run's topics [default: from the definitions].
    #[arg(long)]
    pub replication_factor: Option<u16>,
    /// Kafka's tools: a scripts/kafka-like script (SCRIPT tool NAME ...) or a
    /// Kafka bin/ folder (NAME.sh) [default: scripts/kafka].
    #[arg(long)]
    pub kafka_tool: Option<PathBuf>,
    /// Skip kafka-producer-perf-test and kafka-consumer-perf-test.
    #[arg(long)]
    pub no_kafka_tools: bool,
    /// Payloads of kafka-producer-perf-test: the data file's first frames, or random letters.
    #[arg(long, value_enum, default_value = "frames")]
    pub perf_payload: PerfPayloadArg,
    /// Consumer lag sampling interval.
    #[arg(long, default_value_t = 500)]
    pub lag_interval_ms: u64,
    /// Longest a phase (ingest, the workers, a perf tool) may take, in seconds.
    #[arg(long, default_value_t = 900)]
    pub timeout_secs: u64,
    /// Keep the run's topics (default: delete them after each run).
    #[arg(long)]
    pub keep_topics: bool,
    /// Run each combination this many times (medians are printed too).
    #[arg(long, default_value_t = 1)]
    pub repeat: u32,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum PerfPayloadArg {
    Frames,
    Random,
}

impl LoadtestArgs {
    pub fn run(self) -> Result<(), Error> {
        let args = self;
        use crate::cmd::loadtest::{repo_path, KafkaTool, LoadtestOptions, PerfPayload};
        let settings = args.cluster.connect()?;
        let topics_dir = match args.topics_dir {
            Some(dir) => dir,
            None => repo_path("topics").ok_or_else(|| {
                Error::Config(
                    "no topics/ folder here or in the source checkout; give --topics-dir".into(),
                )
            })?,
        };
        let protocol = settings
            .properties
            .iter()
            .find(|(k, _)| k == "security.protocol")
            .map(|(_, v)| v.to_ascii_uppercase());
        if let Some(p) = protocol.filter(|p| p != "PLAINTEXT" && !args.no_kafka_tools) {
            return Err(Error::Config(format!(
                "Kafka's perf tools get only --bootstrap-server, not the client properties: \
                 with security.protocol={p} give --no-kafka-tools"
            )));
        }
        let kafka_tool = if args.no_kafka_tools {
            None
        } else {
            Some(match &args.kafka_tool {
            Some(path) => KafkaTool::from_path(path)?,
            None => KafkaTool::Script(repo_path("scripts/kafka").ok_or_else(|| Error::Config(
                "no scripts/kafka here or in the source checkout; give --kafka-tool or --no-kafka-tools".into(),
            ))?),
        })
        };
        let opts = LoadtestOptions {
            settings,
            partitions: args.partitions,
            workers: args.workers,
            frames: args.frames,
            frame_size: args.frame_size,
            rate: args.rate,
            users: args.users,
            seed: args.seed,
            start: args.start,
            forward: args.forward,
            at_least_once: args.at_least_once,
            worker_metrics: args.worker_metrics,
            commit_interval_ms: args.commit_interval_ms,
            parse_threads: args.parse_threads,
            live: args.live,
            shards: args.shards.max(1),
            exe: std::env::current_exe().map_err(|source| Error::System {
                what: "find the timebucket binary".into(),
                source,
            })?,
            cache_dir: args.cache_dir,
            topics_dir,
            replication: args.replication_factor,
            kafka_tool,
            perf_payload: match args.perf_payload {
                PerfPayloadArg::Frames => PerfPayload::Frames,
                PerfPayloadArg::Random => PerfPayload::Random,
            },
            lag_interval: std::time::Duration::from_millis(args.lag_interval_ms.max(50)),
            phase_timeout: std::time::Duration::from_secs(args.timeout_secs.max(10)),
            keep_topics: args.keep_topics,
            repeat: args.repeat.max(1),
            output: Some(args.output.clone()),
            command: redact_command_line(std::env::args()).join(" "),
            soak: args
                .duration
                .map(|duration| crate::cmd::loadtest::SoakOptions {
                    duration,
                    max_delay: args.max_delay,
                    delay_percent: args.delay_percent,
                    sample_interval: args
                        .sample_interval_ms
                        .map(|ms| Duration::from_millis(ms.max(100))),
                    rss_growth_pct: args.rss_growth_pct,
                    rss_growth_mb: args.rss_growth_mb,
                }),
        };
        let report = crate::cmd::loadtest::run(&opts, &mut std::io::stdout().lock())?;
        eprintln!("report written to {}", args.output.display());
        // Wrong windows outrank failed runs: they are the product's fault.
        let wrong = report.wrong_runs();
        if wrong > 0 {
            return Err(Error::Mismatch(format!(
                "{wrong} of {} loadtest runs did not produce aggregate's windows",
                report.runs.len()
            )));
        }
        let failed = report.failed_runs();
        if failed > 0 {
            return Err(Error::RunsFailed(format!(
                "{failed} of {} loadtest runs failed before their check (see FAILED in the table)",
                report.runs.len()
            )));
        }
        let grown = report.memory_grown();
        if grown > 0 {
            return Err(Error::Mismatch(format!(
                "{grown} of {} soak runs: worker memory was not flat (see the memory verdict)",
                report.runs.len()
            )));
        }
        Ok(())
    }
}

/// A `--duration` that is no soak's duration (the text given). clap shows
/// the message only, so it carries its source's text.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BadDuration {
    #[error("{text:?}: {source}")]
    Seconds {
        text: String,
        #[source]
        source: std::num::ParseIntError,
    },
    #[error("{text:?}: {source} (e.g. 90s, 10m, 1h 30m)")]
    Format {
        text: String,
        #[source]
        source: humantime::DurationError,
    },
    #[error("{0:?}: a soak lasts at least 1 s")]
    TooShort(String),
}

/// A soak's duration: humantime's format (`90s`, `10m`, `1h 30m`), or a bare
/// number of seconds; at least 1 s.
pub fn parse_duration(text: &str) -> Result<Duration, BadDuration> {
    let t = text.trim();
    let duration = if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        t.parse()
            .map(Duration::from_secs)
            .map_err(|source| BadDuration::Seconds {
                text: text.into(),
                source,
            })?
    } else {
        humantime::parse_duration(t).map_err(|source| BadDuration::Format {
            text: text.into(),
            source,
        })?
    };
    if duration < Duration::from_secs(1) {
        return Err(BadDuration::TooShort(text.into()));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_seconds_minutes_and_hours() {
        assert_eq!(parse_duration("20s"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        for bad in ["", "10x", "m", "0s", "-5s", "500ms"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
