//! What a run over input lines saw (lines, bytes, valid, blank, invalid by
//! reason, late, windows emitted): the offline `aggregate`'s summary, and
//! ingest's counts of what it read and sent, shared by the commands and the
//! metrics that mirror them.

use crate::frame::Invalid;
use crate::window::LateCounts;

/// What a run saw, for the summary on stderr.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub lines: u64,
    pub bytes: u64,
    pub valid: u64,
    pub blank: u64,
    pub invalid: [u64; Invalid::ALL.len()],
    pub late: LateCounts,
    /// Valid frames counted in windows that were then dropped as beyond
    /// the horizon (see `crate::window::WatermarkRule::horizon`).
    pub beyond_horizon: u64,
    pub seconds_emitted: u64,
    pub minutes_emitted: u64,
}

impl Summary {
    pub fn invalid_total(&self) -> u64 {
        self.invalid.iter().sum()
    }

    pub fn count_invalid(&mut self, reason: Invalid) {
        self.invalid[reason.index()] += 1;
    }

    /// `reason=count` pairs of the non-zero invalid counters.
    pub fn invalid_breakdown(&self) -> String {
        let parts: Vec<String> = Invalid::ALL
            .iter()
            .filter(|r| self.invalid[r.index()] > 0)
            .map(|r| format!("{}={}", r.code(), self.invalid[r.index()]))
            .collect();
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(" ")
        }
    }
}
