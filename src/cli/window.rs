//! Parser and window options shared by `aggregate`, `ingest` and `worker`,
//! so that the offline reference and the pipeline decide alike.

use std::time::{SystemTime, UNIX_EPOCH};

use clap::Args;

use crate::core::bucket::DEFAULT_BUCKET_SECS;
use crate::core::clock::{Quorum, DEFAULT_QUORUM, DEFAULT_SHARE_BP, MAX_QUORUM, MAX_SHARE_BP};
use crate::core::frame::{
    FrameParser, DEFAULT_MAX_FRAME_BYTES, DEFAULT_MAX_FUTURE, DEFAULT_MAX_UID_BYTES, DEFAULT_MIN_TS,
};
use crate::core::partition::Rules;
use crate::core::window::{WatermarkRule, MAX_TS};

#[derive(Args, Clone, Debug)]
pub struct WindowArgs {
    /// Allowed lateness in seconds: watermark = event clock - lateness.
    #[arg(short = 'L', long, env = "LATENESS", default_value_t = 5)]
    pub lateness: u64,
    /// The fewest distinct users whose frames must vouch for a time before
    /// the event clock moves there (1 with a share of 0: the plain
    /// largest-ts rule; see docs/semantics.md).
    #[arg(long, env = "WATERMARK_QUORUM", default_value_t = DEFAULT_QUORUM as u64,
          value_parser = clap::value_parser!(u64).range(1..=MAX_QUORUM as u64))]
    pub watermark_quorum: u64,
    /// Share of the users active in the minute, in percent (two decimals at
    /// most, below 50), whose clocks may run ahead without moving the event
    /// clock: the quorum is that many users plus one (at least
    /// --watermark-quorum, at most 100).
    #[arg(long, env = "WATERMARK_SHARE", default_value = "5", value_parser = parse_share)]
    pub watermark_share: ShareBp,
    /// Time-bucket length in seconds (a multiple of 60).
    #[arg(long, env = "BUCKET_SECONDS", default_value_t = DEFAULT_BUCKET_SECS)]
    pub bucket_seconds: u64,
    /// Smallest accepted ts.
    #[arg(long, env = "MIN_TS", default_value_t = DEFAULT_MIN_TS)]
    pub min_ts: u64,
    /// Largest accepted ts, fixed [default: now + --max-future, where "now"
    /// is each record's timestamp on Kafka and the start of the run offline].
    #[arg(long, env = "MAX_TS")]
    pub max_ts: Option<u64>,
    /// How far ahead of "now" a frame's ts may be, in seconds.
    #[arg(long, env = "MAX_FUTURE_SECONDS", default_value_t = DEFAULT_MAX_FUTURE)]
    pub max_future: u64,
    /// Largest accepted frame in bytes.
    #[arg(long, env = "MAX_FRAME_BYTES", default_value_t = DEFAULT_MAX_FRAME_BYTES)]
    pub max_frame_bytes: usize,
    /// Longest accepted uid, in bytes (decoded UTF-8); a longer one is
    /// invalid as `uid_too_long` (every distinct uid of an open minute is
    /// kept in full).
    #[arg(long, env = "MAX_UID_BYTES", default_value_t = DEFAULT_MAX_UID_BYTES)]
    pub max_uid_bytes: usize,
    /// How far past its partition's watermark a window may lie, in seconds,
    /// once frames near the watermark show the partition's time is still
    /// there: windows beyond are dropped, their frames counted as
    /// `beyond_horizon` [default: the routing's cycle, partitions / shards
    /// x bucket seconds] (see docs/limits.md).
    #[arg(long, env = "HORIZON_SECONDS", value_parser = clap::value_parser!(u64).range(60..))]
    pub horizon_seconds: Option<u64>,
}

impl WindowArgs {
    /// The parser with a bound fixed for a run: `--max-ts`, or the clock
    /// now plus `--max-future` (aggregate: one clock per run).
    pub fn parser(&self) -> FrameParser {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let parser = self.parser_without_bound();
        match self.max_ts {
            Some(max_ts) => FrameParser { max_ts, ..parser },
            None => parser.bounded_at(now, self.max_future),
        }
    }

    /// `--max-future`, unless `--max-ts` fixes the bound instead.
    pub fn max_future(&self) -> Option<u64> {
        self.max_ts.is_none().then_some(self.max_future)
    }

    /// The parser whose upper bound is `--max-ts` or none at all, for
    /// callers that bound each frame by its own "now" ([`Self::max_future`]).
    pub fn parser_without_bound(&self) -> FrameParser {
        let mut parser = FrameParser::new(self.min_ts, self.max_ts.unwrap_or(MAX_TS));
        parser.max_frame_bytes = self.max_frame_bytes;
        parser.max_uid_bytes = self.max_uid_bytes;
        parser
    }

    pub fn rule(&self) -> WatermarkRule {
        let quorum = Quorum::new(self.watermark_quorum as usize, self.watermark_share.0);
        WatermarkRule::with_quorum(self.lateness, quorum).with_horizon(self.horizon_seconds)
    }

    /// What decides a worker's counts: each frame bounded by its record's
    /// timestamp.
    pub fn rules(&self) -> Rules {
        Rules {
            watermark: self.rule(),
            parser: self.parser_without_bound(),
            max_future: self.max_future(),
        }
    }
}

/// A share in basis points (hundredths of a percent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShareBp(pub u32);

impl Default for ShareBp {
    fn default() -> Self {
        ShareBp(DEFAULT_SHARE_BP)
    }
}

/// A `--watermark-share` that is no percentage below 50 with at most two
/// decimals (the text given).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a percentage below 50 with at most two decimals")]
pub struct BadShare(String);

/// `5`, `2.5` or `0.25` (percent) to basis points; below 50%.
fn parse_share(text: &str) -> Result<ShareBp, BadShare> {
    let bad = || BadShare(text.into());
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty()
        || frac.len() > 2
        || !(whole.bytes().chain(frac.bytes())).all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let whole: u32 = whole.parse().map_err(|_| bad())?;
    let frac: u32 = format!("{frac:0<2}").parse().map_err(|_| bad())?;
    let bp = whole
        .checked_mul(100)
        .and_then(|w| w.checked_add(frac))
        .ok_or_else(bad)?;
    if bp > MAX_SHARE_BP {
        return Err(bad());
    }
    Ok(ShareBp(bp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_read_in_percent() {
        assert_eq!(parse_share("5"), Ok(ShareBp(500)));
        assert_eq!(parse_share("2.5"), Ok(ShareBp(250)));
        assert_eq!(parse_share("0.25"), Ok(ShareBp(25)));
        assert_eq!(parse_share("0"), Ok(ShareBp(0)));
        assert_eq!(parse_share("49.99"), Ok(ShareBp(4_999)));
        for bad in ["", "50", "-1", "1.234", ".5", "5%", "x", "99999999999"] {
            assert!(parse_share(bad).is_err(), "{bad:?}");
        }
    }
}
