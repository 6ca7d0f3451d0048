//! `timebucket ingest`: options, and the summary on stderr.

use clap::Args;

use super::{name_input, KafkaArgs, MetricsArgs, WindowArgs};
use crate::cmd::ingest::{ingest, IngestOptions};
use crate::error::Error;

#[derive(Args, Debug)]
pub struct IngestArgs {
    /// Input file (`-` for stdin; `.gz` is decompressed).
    #[arg(default_value = "-")]
    pub input: String,
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
        let input_len = (self.input != "-" && !self.input.ends_with(".gz"))
            .then(|| std::fs::metadata(&self.input).ok().map(|m| m.len()))
            .flatten();
        let opts = IngestOptions {
            settings: self.kafka.connect()?,
            topics: self.kafka.topics(),
            parser: self.window.parser(),
            max_future: self.window.max_future(),
            bucket_secs: self.window.bucket_seconds,
            shards: self.shards,
            input_len,
            log_invalid: 20,
            metrics_linger: self.metrics.linger(),
            metrics_addr: self.metrics.metrics_addr,
        };
        let input = crate::input::open(&self.input)?;
        let summary = ingest(input, &opts).map_err(name_input(&self.input))?;
        let secs = summary.elapsed.as_secs_f64().max(1e-9);
        let read = &summary.read;
        eprintln!(
            "ingest: {} lines, {} frames to {} ({} partitions), {} blank, {} invalid to {} ({})\n\
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
        Ok(())
    }
}
