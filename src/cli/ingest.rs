//! `timebucket ingest`: options, and the summary on stderr.

use std::time::Duration;

use clap::Args;

use super::{name_input, KafkaArgs, MetricsArgs, WindowArgs};
use crate::cmd::ingest::commit::TRANSACTION_TIMEOUT_MS;
use crate::cmd::ingest::{ingest, CommitEvery, IngestOptions};
use crate::error::Error;

#[derive(Args, Debug)]
pub struct IngestArgs {
    /// Input file (`-` for stdin; `.gz` is decompressed).
    #[arg(default_value = "-")]
    pub input: String,
    /// The source's id in the progress topic, under which a rerun continues
    /// [default: the file's canonical path; stdin has none and is not resumable].
    #[arg(long, env = "INGEST_SOURCE_ID")]
    pub source_id: Option<String>,
    /// Ingest the source from its first line, whatever was committed before.
    #[arg(long)]
    pub restart: bool,
    /// Commit a transaction (records and position) after this many records...
    #[arg(long, env = "INGEST_COMMIT_RECORDS", default_value_t = CommitEvery::DEFAULT.records,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub commit_records: u64,
    /// ...or this many milliseconds, whichever comes first.
    #[arg(long, env = "INGEST_COMMIT_INTERVAL_MS", default_value_t = CommitEvery::DEFAULT.interval.as_millis() as u64,
          value_parser = clap::value_parser!(u64).range(1..=50_000))]
    pub commit_interval_ms: u64,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub window: WindowArgs,
    #[command(flatten)]
    pub metrics: MetricsArgs,
    /// Shards per time bucket: each bucket spread over S partitions by
    /// murmur2(uid) (the input topic's `shards=`; must divide its partitions).
    #[arg(long, env = "INPUT_SHARDS", default_value_t = 1)]
    pub shards: u32,
}

impl IngestArgs {
    pub fn run(self) -> Result<(), Error> {
        let interval = Duration::from_millis(self.commit_interval_ms);
        let settings = self.kafka.connect_committing(
            "--commit-interval-ms (INGEST_COMMIT_INTERVAL_MS)",
            Some(interval),
            TRANSACTION_TIMEOUT_MS,
        )?;
        let opts = IngestOptions {
            settings,
            topics: self.kafka.topics(),
            parser: self.window.parser(),
            max_future: self.window.max_future(),
            bucket_secs: self.window.bucket_seconds,
            shards: self.shards,
            log_invalid: 20,
            metrics_linger: self.metrics.linger(),
            metrics_addr: self.metrics.metrics_addr,
            source_id: self.source_id,
            restart: self.restart,
            commit_every: CommitEvery {
                records: self.commit_records,
                interval,
            },
        };
        let summary = ingest(&self.input, &opts).map_err(name_input(&self.input))?;
        let secs = summary.elapsed.as_secs_f64().max(1e-9);
        let read = &summary.read;
        let resumed = match summary.resumed_at {
            0 => String::new(),
            line => format!(" (resumed after line {line})"),
        };
        eprintln!(
            "ingest: {} lines{resumed}, {} frames to {} ({} partitions), {} blank, {} invalid to {} ({})\n\
             delivered {} records in {:.2}s: {:.0} frames/s, {:.1} MB/s",
            read.lines,
            read.valid,
            opts.topics.input,
            summary.partitions,
            read.blank,
            read.invalid_total(),
            opts.topics.dead_letter,
            read.invalid_breakdown(),
            summary.delivered,
            secs,
            read.valid as f64 / secs,
            read.bytes as f64 / 1e6 / secs,
        );
        if summary.too_large > 0 {
            eprintln!(
                "{} valid frame(s) too large for {} dead-lettered to {} as too_large_for_topic",
                summary.too_large, opts.topics.input, opts.topics.dead_letter
            );
        }
        let total = &summary.total;
        if summary.resumable {
            eprintln!(
                "source total: {} lines, {} bytes, {} frames, {} blank, {} invalid ({}); \
                 position committed to {}",
                total.lines,
                total.bytes,
                total.valid,
                total.blank,
                total.invalid_total(),
                total.invalid_breakdown(),
                opts.topics.progress,
            );
        } else {
            eprintln!("not resumable: stdin without --source-id (a rerun ingests it all again)");
        }
        Ok(())
    }
}
