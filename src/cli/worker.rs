//! `timebucket worker`: options, signals, and the hand-over to
//! [`crate::cmd::worker::run`].

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::{KafkaArgs, MetricsArgs, ShardArgs, WindowArgs};
use crate::cmd::worker::options::{Connection, Observing, Outputs, Running, Windowing};
use crate::cmd::worker::{parse_offsets, run, OnMissingCheckpoint, Targets, WorkerOptions};
use crate::core::budget::DEFAULT_STATE_BUDGET;
use crate::error::Error;
use crate::kafka::producer::TRANSACTION_TIMEOUT_MS;

/// The most parse threads a worker takes: a batch is at most 512 records
/// (parsed in parts of 64 or more, so 8 threads at most share one), and a
/// typo such as 10000 should fail at the command line, not as thousands of
/// threads.
pub const MAX_PARSE_THREADS: u64 = 256;

#[derive(Args, Debug)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub window: WindowArgs,
    #[command(flatten)]
    pub metrics: MetricsArgs,
    #[command(flatten)]
    pub shard: ShardArgs,
    /// Consumer group that all workers of one pipeline join.
    #[arg(
        short = 'g',
        long,
        env = "CONSUMER_GROUP_ID",
        default_value = "timebucket"
    )]
    pub group: String,
    /// Also forward every valid frame to the OUTPUT_STREAM topic.
    #[arg(long, env = "FORWARD_FRAMES")]
    pub forward: bool,
    /// Send every late frame, unchanged, to this topic, with headers naming
    /// the window it missed and the watermark (in the same transaction).
    #[arg(long, env = "LATE_TOPIC")]
    pub late_topic: Option<String>,
    /// Close a partition's open windows after this many seconds without a
    /// new frame (0: never; never with --until-end). A processing-time
    /// decision: a replay after a crash repeats it at the same offsets.
    #[arg(long, env = "IDLE_FLUSH_SECONDS", default_value_t = 30)]
    pub idle_flush: u64,
    /// Stop once the owned partitions are drained to the end offsets present at start.
    #[arg(long)]
    pub until_end: bool,
    /// Log progress every this many frames.
    #[arg(long, env = "PRINT_INTERVAL", default_value_t = 100_000)]
    pub print_interval: u64,
    /// Commit checkpoints every this many milliseconds.
    #[arg(long, env = "COMMIT_INTERVAL_MS", default_value_t = 1000)]
    pub commit_interval_ms: u64,
    /// At-least-once output (no transactions): a window may be emitted again
    /// after a crash, always with the same value.
    #[arg(long, env = "AT_LEAST_ONCE")]
    pub at_least_once: bool,
    /// Process at most this many frames per second (demos and tests).
    #[arg(long)]
    pub throttle: Option<u64>,
    /// Threads that parse each poll batch's records, the polling thread
    /// one of them (0: one per CPU core; 1: the polling thread alone; at
    /// most 256). The counting stays on the polling thread, in offset order.
    #[arg(long, env = "PARSE_THREADS", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=MAX_PARSE_THREADS))]
    pub parse_threads: u64,
    /// Write the typed run report (see `cmd::worker::report`) to this file:
    /// `started` once the worker has joined, then the final summary.
    #[arg(long, hide = true)]
    pub report_file: Option<PathBuf>,
    /// A committed offset without a valid timebucket checkpoint (offsets
    /// reset, foreign or crafted metadata): `fail` stops with exit code 11
    /// naming the partition; `restart` recomputes it from the log start.
    #[arg(long, env = "ON_MISSING_CHECKPOINT", value_enum, default_value_t = OnMissingCheckpoint::Fail)]
    pub on_missing_checkpoint: OnMissingCheckpoint,
    /// Bytes the owned partitions' open windows may take together (bytes,
    /// or with KiB, MiB, GiB): past it the worker stops with exit code 13
    /// naming the partition, its offset and the limit (docs/limits.md).
    #[arg(long, env = "STATE_BUDGET", default_value_t = DEFAULT_STATE_BUDGET, value_parser = parse_bytes)]
    pub state_budget: u64,
    /// Loadtest: like --until-end with the end offsets given, PARTITION=OFFSET,...,
    /// or @FILE: a file that will hold them once the input is complete.
    #[arg(long, hide = true, conflicts_with = "until_end")]
    pub until_offsets: Option<String>,
}

impl WorkerArgs {
    pub fn run(self) -> Result<(), Error> {
        let stop = super::stop_on_signals()?;
        let commit_interval = Duration::from_millis(self.commit_interval_ms.max(10));
        let settings = self.kafka.connect_committing(
            "--commit-interval-ms (COMMIT_INTERVAL_MS)",
            (!self.at_least_once).then_some(commit_interval),
            TRANSACTION_TIMEOUT_MS,
        )?;
        let opts = WorkerOptions {
            connection: Connection {
                settings,
                group: self.group,
                topics: self.kafka.topics(),
            },
            windows: Windowing {
                rules: self.window.rules(),
                bucket_secs: self.window.bucket_seconds,
                state_budget: self.state_budget,
                on_missing_checkpoint: self.on_missing_checkpoint,
            },
            outputs: Outputs {
                forward: self.forward,
                late_topic: self.late_topic,
                exactly_once: !self.at_least_once,
                shards: self.shard.shards,
                partials_topic: self.shard.partials_topic,
            },
            running: Running {
                until_end: self.until_end,
                until_offsets: self
                    .until_offsets
                    .as_deref()
                    .map(|list| match list.strip_prefix('@') {
                        Some(path) => Ok(Targets::Awaited(path.into())),
                        None => parse_offsets(list).map(Targets::Known),
                    })
                    .transpose()?,
                idle_flush: (self.idle_flush > 0).then(|| Duration::from_secs(self.idle_flush)),
                commit_interval,
                print_interval: self.print_interval,
                throttle: self.throttle,
                parse_threads: match self.parse_threads {
                    0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
                    n => n as usize,
                },
            },
            observe: Observing {
                report_file: self.report_file,
                metrics_linger: self.metrics.linger(),
                metrics_addr: self.metrics.metrics_addr,
            },
        };
        run(opts, stop).map(|_| ())
    }
}

/// A `--state-budget` that is no size in bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadSize {
    #[error("unknown unit {0:?}: use bytes, KiB, MiB or GiB")]
    Unit(String),
    #[error("not a size in bytes: {0:?}")]
    NotASize(String),
}

/// A size in bytes: digits, with an optional `KiB`, `MiB` or `GiB`.
fn parse_bytes(text: &str) -> Result<u64, BadSize> {
    let text = text.trim();
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, ""),
    };
    let unit: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        other => return Err(BadSize::Unit(other.into())),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .ok_or_else(|| BadSize::NotASize(text.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_bytes("1024"), Ok(1024));
        assert_eq!(parse_bytes("512MiB"), Ok(512 << 20));
        assert_eq!(parse_bytes("1 GiB"), Ok(1 << 30));
        assert!(parse_bytes("1GB").is_err());
        assert!(parse_bytes("GiB").is_err());
        assert!(parse_bytes("99999999999GiB").is_err());
    }

    fn parse_threads(value: &str) -> Result<u64, clap::Error> {
        use clap::Parser;
        let cli = crate::cli::Cli::try_parse_from([
            "timebucket",
            "worker",
            "-b",
            "h:1",
            "-g",
            "g",
            "--input-topic",
            "in",
            "--parse-threads",
            value,
        ])?;
        match cli.command {
            crate::cli::Command::Worker(w) => Ok(w.parse_threads),
            _ => panic!("not a worker"),
        }
    }

    #[test]
    fn parse_threads_are_bounded_at_the_command_line() {
        assert_eq!(parse_threads("0").unwrap(), 0);
        assert_eq!(parse_threads("256").unwrap(), MAX_PARSE_THREADS);
        for bad in ["257", "10000", "two"] {
            let e = parse_threads(bad).unwrap_err();
            assert_eq!(
                e.kind(),
                clap::error::ErrorKind::ValueValidation,
                "{bad}: {e}"
            );
        }
    }
}
