//! Ingest's validity bound: a frame's `ts` may be at most `--max-future`
//! ahead of the wall clock when its line is read. The bound follows the
//! clock by time, not by lines: a slow feed (a few lines an hour) gets the
//! bound of the second its line came in, never one from hours before (which
//! would dead-letter current frames as `ts_out_of_range`).

use crate::core::frame::FrameParser;

/// The parser of the current second: `base` with `max_ts` = now +
/// `max_future` (see [`FrameParser::bounded_at`]), rebuilt when the clock's
/// second changed. `clock` gives Unix seconds; reading it costs about
/// 25 ns (vDSO), well under 1 % of a line's parse and send.
pub struct MovingBound<C> {
    base: FrameParser,
    max_future: Option<u64>,
    clock: C,
    /// The second `current` was built for.
    at: Option<u64>,
    current: FrameParser,
}

impl<C: FnMut() -> u64> MovingBound<C> {
    /// `max_future` `None`: the parser's own bound only (`--max-ts`), and
    /// the clock is never read.
    pub fn new(base: FrameParser, max_future: Option<u64>, clock: C) -> Self {
        MovingBound {
            base,
            max_future,
            clock,
            at: None,
            current: base,
        }
    }

    /// The parser for a line read now.
    pub fn parser(&mut self) -> &FrameParser {
        if let Some(ahead) = self.max_future {
            let now = (self.clock)();
            if self.at != Some(now) {
                self.at = Some(now);
                self.current = self.base.bounded_at(now, ahead);
            }
        }
        &self.current
    }
}

/// Unix seconds of the wall clock.
pub fn unix_now() -> u64 {
    crate::cmd::unix_ms() / 1000
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::frame::{Invalid, Line};
    use std::cell::Cell;

    /// One line an hour for two days: every frame dated its own hour is
    /// valid, whatever the number of lines between clock reads.
    #[test]
    fn the_bound_follows_the_clock_on_a_slow_feed() {
        let start = 1_700_000_000u64;
        let now = Cell::new(start);
        let base = FrameParser::new(1_000_000_000, u64::MAX);
        let mut bound = MovingBound::new(base, Some(86_400), || now.get());
        for hour in 0..48u64 {
            now.set(start + hour * 3600);
            let line = format!(r#"{{"ts":{},"uid":"u"}}"#, now.get() + 3600);
            assert!(
                matches!(bound.parser().parse(line.as_bytes()), Line::Frame(_)),
                "hour {hour}"
            );
            // A frame two days ahead is still out of range.
            let ahead = format!(r#"{{"ts":{},"uid":"u"}}"#, now.get() + 2 * 86_400);
            assert_eq!(
                bound.parser().parse(ahead.as_bytes()),
                Line::Invalid(Invalid::TsOutOfRange)
            );
        }
    }

    #[test]
    fn without_max_future_the_clock_is_never_read() {
        let base = FrameParser::new(1, 100);
        let mut bound = MovingBound::new(base, None, || panic!("clock read"));
        assert_eq!(bound.parser().max_ts, 100);
    }
}
