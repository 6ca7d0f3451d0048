//! What `timebucket worker` is told, split by concern: where it connects,
//! how it counts, what it writes, how its run goes and ends, and what an
//! operator sees of it. Each part is read by the code of its concern.

use std::path::PathBuf;
use std::time::Duration;

use super::{OnMissingCheckpoint, Rules, Targets};
use crate::kafka::config::{KafkaSettings, TopicNames};

#[derive(Debug, Clone)]
pub struct WorkerOptions {
    pub connection: Connection,
    pub windows: Windowing,
    pub outputs: Outputs,
    pub running: Running,
    pub observe: Observing,
}

/// The cluster, the consumer group and the topics.
#[derive(Debug, Clone)]
pub struct Connection {
    pub settings: KafkaSettings,
    pub group: String,
    pub topics: TopicNames,
}

/// How frames are judged and counted, and what a partition may hold.
#[derive(Debug, Clone)]
pub struct Windowing {
    /// The watermark rule and the frame bounds. A horizon left `None` is
    /// the input routing's cycle, fixed at start.
    pub rules: Rules,
    /// Time-bucket length: with the input's partition count, the routing
    /// every frame is checked against (`--bucket-seconds`, as ingest's).
    pub bucket_secs: u64,
    /// Bytes the owned partitions' open windows may take together
    /// ([`crate::core::budget`]); past it the worker stops (exit 13).
    pub state_budget: u64,
    /// What to do with a committed offset without a valid checkpoint.
    pub on_missing_checkpoint: OnMissingCheckpoint,
}

/// What the worker writes besides the windows, and how.
#[derive(Debug, Clone)]
pub struct Outputs {
    /// Also forward every valid frame, bytes unchanged, to `topics.forward`.
    pub forward: bool,
    /// Send every late frame, unchanged, to this topic.
    pub late_topic: Option<String>,
    /// Produce in transactions with the offsets (exactly-once output).
    pub exactly_once: bool,
    /// Shards per time bucket (1: none). With more, windows are partials
    /// sent to `partials_topic` with the shards' progress
    /// ([`super::shard`]).
    pub shards: u32,
    pub partials_topic: String,
}

/// How the run goes and when it ends.
#[derive(Debug, Clone)]
pub struct Running {
    /// Stop once the owned partitions reach the end offsets seen at start.
    pub until_end: bool,
    /// Like `until_end`, with the end offsets given (`loadtest --live`
    /// starts workers before the input is produced; hidden
    /// `--until-offsets`): given end offsets, or a file that will hold them.
    pub until_offsets: Option<Targets>,
    /// Close a partition's windows after this long without a new frame (a
    /// processing-time decision: live runs only, never with `until_end`).
    pub idle_flush: Option<Duration>,
    pub commit_interval: Duration,
    pub print_interval: u64,
    /// Caps this worker's processing rate (frames/s) for demos and tests
    /// that need a job to be mid-stream for a while.
    pub throttle: Option<u64>,
    /// Threads that parse a poll batch's records, the polling thread one
    /// of them ([`super::parse`]).
    pub parse_threads: usize,
}

/// What an operator sees of the run.
#[derive(Debug, Clone)]
pub struct Observing {
    /// Where to write the [`super::WorkerReport`] (hidden `--report-file`).
    pub report_file: Option<PathBuf>,
    /// Serve `/metrics`, `/healthz` and `/readyz` on this `HOST:PORT`.
    pub metrics_addr: Option<String>,
    /// Keep serving the metrics this long after the run (batch runs, so a
    /// scraper sees the final counts).
    pub metrics_linger: Duration,
}

#[cfg(test)]
impl WorkerOptions {
    /// The unit tests' options: a batch run (`--until-end`, exactly once,
    /// committing every millisecond) of `rules` and `shards` over 60 s
    /// buckets, connecting nowhere.
    pub(crate) fn for_tests(rules: Rules, shards: u32) -> WorkerOptions {
        WorkerOptions {
            connection: Connection {
                settings: KafkaSettings::new("127.0.0.1:1"),
                group: "g".into(),
                topics: TopicNames::default(),
            },
            windows: Windowing {
                rules,
                bucket_secs: 60,
                state_budget: 1 << 30,
                on_missing_checkpoint: OnMissingCheckpoint::default(),
            },
            outputs: Outputs {
                forward: false,
                late_topic: None,
                exactly_once: true,
                shards,
                partials_topic: "partials".into(),
            },
            running: Running {
                until_end: true,
                until_offsets: None,
                idle_flush: None,
                commit_interval: Duration::from_millis(1),
                print_interval: 0,
                throttle: None,
                parse_threads: 2,
            },
            observe: Observing {
                report_file: None,
                metrics_addr: None,
                metrics_linger: Duration::ZERO,
            },
        }
    }
}
