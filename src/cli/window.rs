//! Parser and window options shared by `aggregate`, `ingest` and `worker`,
//! so that the offline reference and the pipeline decide alike.

use std::time::{SystemTime, UNIX_EPOCH};

use clap::Args;

use crate::core::bucket::DEFAULT_BUCKET_SECS;
use crate::core::frame::{default_max_ts, FrameParser, DEFAULT_MAX_FRAME_BYTES, DEFAULT_MIN_TS};

#[derive(Args, Clone, Debug)]
pub struct WindowArgs {
    /// Allowed lateness in seconds: watermark = largest ts seen - lateness.
    #[arg(short = 'L', long, env = "LATENESS", default_value_t = 5)]
    pub lateness: u64,
    /// Time-bucket length in seconds (a multiple of 60).
    #[arg(long, env = "BUCKET_SECONDS", default_value_t = DEFAULT_BUCKET_SECS)]
    pub bucket_seconds: u64,
    /// Smallest accepted ts.
    #[arg(long, env = "MIN_TS", default_value_t = DEFAULT_MIN_TS)]
    pub min_ts: u64,
    /// Largest accepted ts [default: now + 1 day].
    #[arg(long, env = "MAX_TS")]
    pub max_ts: Option<u64>,
    /// Largest accepted frame in bytes.
    #[arg(long, env = "MAX_FRAME_BYTES", default_value_t = DEFAULT_MAX_FRAME_BYTES)]
    pub max_frame_bytes: usize,
}

impl WindowArgs {
    pub fn parser(&self) -> FrameParser {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut parser = FrameParser::new(
            self.min_ts,
            self.max_ts.unwrap_or_else(|| default_max_ts(now)),
        );
        parser.max_frame_bytes = self.max_frame_bytes;
        parser
    }
}
