//! `timebucket merge`: options, signals, and the hand-over to
//! [`crate::cmd::merge::run`].

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::{KafkaArgs, ShardArgs};
use crate::cmd::merge::{run, MergeOptions};
use crate::core::bucket::DEFAULT_BUCKET_SECS;
use crate::error::Error;
use crate::kafka::producer::TRANSACTION_TIMEOUT_MS;

#[derive(Args, Debug)]
pub struct MergeArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub shard: ShardArgs,
    /// Consumer group of the merge stage (not the workers').
    #[arg(
        short = 'g',
        long,
        env = "MERGE_GROUP_ID",
        default_value = "timebucket-merge"
    )]
    pub group: String,
    /// Time-bucket length in seconds (as ingest and the workers use).
    #[arg(long, env = "BUCKET_SECONDS", default_value_t = DEFAULT_BUCKET_SECS)]
    pub bucket_seconds: u64,
    /// Idle-shard bound, seconds of event time: a window is merged once one
    /// shard of its bucket passed its end by this much, even if others did
    /// not (their partials for it are then late at the merge). 0: off, wait
    /// for every shard (backfills; see docs/semantics.md, Shards).
    #[arg(long, env = "IDLE_SHARD_SECONDS", default_value_t = 300)]
    pub idle_shard_seconds: u64,
    /// Stop once every shard published its end (workers run with
    /// --until-end) and every window is merged.
    #[arg(long)]
    pub until_end: bool,
    /// Commit every this many milliseconds.
    #[arg(long, env = "COMMIT_INTERVAL_MS", default_value_t = 1000)]
    pub commit_interval_ms: u64,
    /// Write the typed run report (see `cmd::merge::report`) to this file.
    #[arg(long, hide = true)]
    pub report_file: Option<PathBuf>,
}

impl MergeArgs {
    pub fn run(self) -> Result<(), Error> {
        let stop = super::stop_on_signals()?;
        let commit_interval = Duration::from_millis(self.commit_interval_ms.max(10));
        let settings = self.kafka.connect_committing(
            "--commit-interval-ms (COMMIT_INTERVAL_MS)",
            Some(commit_interval),
            TRANSACTION_TIMEOUT_MS,
        )?;
        let opts = MergeOptions {
            settings,
            group: self.group,
            topics: self.kafka.topics(),
            partials_topic: self.shard.partials_topic,
            shards: self.shard.shards,
            bucket_secs: self.bucket_seconds,
            idle_after: (self.idle_shard_seconds > 0).then_some(self.idle_shard_seconds),
            until_end: self.until_end,
            commit_interval,
            report_file: self.report_file,
        };
        let summary = run(opts, stop)?;
        eprintln!(
            "merge: {} partials records ({} partials, {} progress), emitted {} seconds and {} minutes, {} late partials, {} invalid",
            summary.pieces,
            summary.partials,
            summary.progress,
            summary.seconds_emitted,
            summary.minutes_emitted,
            summary.late_partials,
            summary.invalid
        );
        Ok(())
    }
}
