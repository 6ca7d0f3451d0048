//! The horizon ([`super::WatermarkRule::horizon`]): windows further than it
//! past the watermark are dropped, never emitted, once a frame within it
//! shows that the partition's time is still back near the watermark. So a
//! window opened far ahead (a bad clock, a hostile producer) never pins the
//! committed offset, and a rebalance's replay, while the partition's honest
//! traffic goes on; a jump in time, after which no frame comes back near
//! the old watermark, is never dropped (docs/limits.md).

use super::size::{MINUTE_ENTRY_BYTES, SECOND_ENTRY_BYTES};
use super::{Seq, Windows, MAX_TS, MINUTE};

/// Windows dropped because they lay beyond the horizon, with the frames
/// they had counted, since the partition started here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BeyondHorizon {
    pub windows: u64,
    pub frames: u64,
    /// The first of the last drop's minutes and the sequence number of its
    /// first frame (for the log).
    pub last: Option<(u64, Seq)>,
}

impl Windows {
    /// Drops the minutes (and their seconds) that start after `W +
    /// horizon` when a frame at `ts` comes within it; `W` must be defined.
    pub(super) fn drop_beyond_horizon(&mut self, ts: u64) {
        let (Some(horizon), Some(w)) = (self.horizon, self.watermark()) else {
            return;
        };
        let limit = w.0.saturating_add(horizon);
        if ts > limit || limit >= MAX_TS {
            return;
        }
        let cut = limit - limit % MINUTE + MINUTE;
        let beyond = |last: Option<u64>| last.is_some_and(|start| start >= cut);
        if !beyond(self.minutes.last_key_value().map(|(&m, _)| m))
            && !beyond(self.seconds.last_key_value().map(|(&s, _)| s))
        {
            return;
        }
        let minutes = self.minutes.split_off(&cut);
        let seconds = self.seconds.split_off(&cut);
        // A frame counted in a second this far ahead counted in its minute
        // too (a minute closes only when its seconds have): the minutes
        // hold every dropped frame once.
        let drop = &mut self.beyond_horizon;
        drop.windows += (minutes.len() + seconds.len()) as u64;
        drop.frames += minutes.values().map(|m| m.frames).sum::<u64>();
        // A dropped second's minute starts at or after the cut too, and
        // counted the second's first frame: the minutes' first frames are
        // the first.
        let first_seq = minutes.values().map(|m| m.first_seq).min();
        let first = minutes.keys().chain(seconds.keys()).copied().min();
        if let (Some(start), Some(seq)) = (first, first_seq) {
            drop.last = Some((start - start % MINUTE, seq));
        }
        self.bytes -= seconds.len() * SECOND_ENTRY_BYTES;
        self.bytes -= minutes
            .values()
            .map(|m| MINUTE_ENTRY_BYTES + m.heap_bytes())
            .sum::<usize>();
    }
}
