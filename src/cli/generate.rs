//! `timebucket generate`: options and the report on stderr.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;

use crate::cmd::generate::{generate, GenerateOptions, DEFAULT_SEED};
use crate::error::Error;

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// Number of frames.
    #[arg(short = 'c', long, default_value_t = 1000)]
    pub count: u64,
    /// Frames per second on average.
    #[arg(short = 'r', long, default_value_t = 1000)]
    pub rate: u32,
    /// Pool of distinct users.
    #[arg(short = 'n', long, default_value_t = 100_000)]
    pub users: u32,
    /// Random seed: same seed, same bytes.
    #[arg(short = 's', long, default_value_t = DEFAULT_SEED)]
    pub seed: u64,
    /// Target frame size in bytes.
    #[arg(short = 'l', long, default_value_t = 2048)]
    pub length: usize,
    /// Maximum delay in seconds of a delayed frame.
    #[arg(short = 'd', long, default_value_t = 0)]
    pub max_delay: u32,
    /// Percent of frames delayed by 1..=max-delay seconds.
    #[arg(short = 'p', long, default_value_t = 0.0)]
    pub delay_percent: f64,
    /// First ts.
    #[arg(long, default_value_t = 1_468_244_384)]
    pub start: u64,
    /// Output file [default: stdout].
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
}

impl GenerateArgs {
    pub fn run(self) -> Result<(), Error> {
        let opts = GenerateOptions {
            count: self.count,
            rate: self.rate,
            users: self.users,
            seed: self.seed,
            frame_len: self.length,
            max_delay: self.max_delay,
            delay_percent: self.delay_percent,
            start: self.start,
        };
        let started = Instant::now();
        let summary = match &self.output {
            Some(path) => {
                let file = std::fs::File::create(path).map_err(Error::Output)?;
                generate(&opts, file)
            }
            None => generate(&opts, std::io::stdout().lock()),
        }
        .map_err(Error::Output)?;
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "generated {} frames, {} bytes, ts {}..{} in {:.2}s ({:.0} MB/s)",
            summary.frames,
            summary.bytes,
            summary.first_ts,
            summary.last_ts,
            secs,
            summary.bytes as f64 / 1e6 / secs.max(1e-9)
        );
        Ok(())
    }
}
