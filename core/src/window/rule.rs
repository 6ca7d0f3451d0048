//! The watermark rule of a partition: its lateness, the quorum of its event
//! clock ([`crate::clock`]) and its horizon, as the options set them.

use crate::clock::{EventClock, Quorum};

/// How a partition's watermark follows its frames: `E - lateness`, where
/// `E` is the time a quorum of distinct uids vouches for ([`EventClock`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatermarkRule {
    pub lateness: u64,
    pub quorum: Quorum,
    /// How far past the watermark `W` an open window may lie, in seconds:
    /// a frame dated at or below `W + horizon` drops the open minutes that
    /// start after it, and their seconds ([`super::horizon`]). `None`: where a
    /// [`crate::bucket::Routing`] is known, its cycle ([`WatermarkRule::resolved`]);
    /// bare [`super::Windows`] have none.
    pub horizon: Option<u64>,
}

impl WatermarkRule {
    /// A fixed quorum of `quorum` uids, no share (the rule before the
    /// share; tests and the benchmark compare against it).
    pub fn new(lateness: u64, quorum: usize) -> WatermarkRule {
        WatermarkRule::with_quorum(lateness, Quorum::fixed(quorum))
    }

    pub fn with_quorum(lateness: u64, quorum: Quorum) -> WatermarkRule {
        WatermarkRule {
            lateness,
            quorum,
            horizon: None,
        }
    }

    pub fn with_horizon(self, horizon: Option<u64>) -> WatermarkRule {
        WatermarkRule { horizon, ..self }
    }

    /// The rule with its horizon fixed: the given one, or the routing's
    /// cycle, the time from one of a partition's buckets to its next (so a
    /// partition's honest jump to its next bucket stays within it).
    pub fn resolved(self, routing: &crate::bucket::Routing) -> WatermarkRule {
        self.with_horizon(Some(self.horizon.unwrap_or_else(|| routing.cycle_secs())))
    }

    /// The plain largest-`ts` rule (quorum 1).
    pub fn largest_ts(lateness: u64) -> WatermarkRule {
        WatermarkRule::new(lateness, 1)
    }

    pub(super) fn clock(&self) -> EventClock {
        EventClock::new(self.quorum)
    }
}

impl Default for WatermarkRule {
    /// The product's defaults: lateness 5 s, the crowd rule's quorum
    /// (at least 2, and 5% of the minute's users).
    fn default() -> Self {
        WatermarkRule::with_quorum(5, Quorum::default())
    }
}
