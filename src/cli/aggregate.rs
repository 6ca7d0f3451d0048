//! `timebucket aggregate`: options, and the summary on stderr.

use std::io::Write;
use std::time::Instant;

use clap::Args;

use super::{name_input, WindowArgs};
use crate::cmd::aggregate::{aggregate, AggregateOptions};
use crate::core::bucket::Routing;
use crate::error::Error;

#[derive(Args, Debug)]
pub struct AggregateArgs {
    /// Input file (`-` for stdin; `.gz` is decompressed).
    #[arg(default_value = "-")]
    pub input: String,
    /// Number of input partitions to route buckets over (as the input topic has).
    #[arg(short = 'P', long, env = "PARTITIONS", default_value_t = 8)]
    pub partitions: u32,
    /// Shards per time bucket, as the input topic's definition says (`shards=`):
    /// each bucket spread over S partitions by murmur2(uid), windows summed.
    #[arg(long, env = "INPUT_SHARDS", default_value_t = 1)]
    pub shards: u32,
    #[command(flatten)]
    pub window: WindowArgs,
}

impl AggregateArgs {
    pub fn run(self) -> Result<(), Error> {
        let opts = AggregateOptions {
            routing: Routing::sharded(self.window.bucket_seconds, self.partitions, self.shards)?,
            // The horizon defaults to the routing's cycle (PartitionedWindows).
            rule: self.window.rule(),
            parser: self.window.parser(),
            log_invalid: 20,
        };
        let input = crate::input::open(&self.input)?;
        let started = Instant::now();
        let summary =
            aggregate(input, std::io::stdout().lock(), &opts).map_err(name_input(&self.input))?;
        let secs = started.elapsed().as_secs_f64().max(1e-9);
        writeln!(
            std::io::stderr().lock(),
            "aggregate: {} lines, {} valid frames, {} blank, {} invalid ({})\n\
             late frames: {} for their second, {} for their minute\n\
             beyond the horizon: {} frames, in windows dropped (docs/limits.md)\n\
             emitted: {} seconds, {} minutes\n\
             {:.2}s, {:.0} frames/s, {:.0} MB/s",
            summary.lines,
            summary.valid,
            summary.blank,
            summary.invalid_total(),
            summary.invalid_breakdown(),
            summary.late.seconds,
            summary.late.minutes,
            summary.beyond_horizon,
            summary.seconds_emitted,
            summary.minutes_emitted,
            secs,
            summary.valid as f64 / secs,
            summary.bytes as f64 / 1e6 / secs,
        )
        .map_err(Error::Output)
    }
}
