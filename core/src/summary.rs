//! What a run over input lines saw (lines, bytes, valid, blank, invalid by
//! reason, late, windows emitted): the offline `aggregate`'s summary, and
//! ingest's counts of what it read and sent, shared by the commands and the
//! metrics that mirror them; and what a worker counted ([`WorkerSummary`]:
//! its run report and its Prometheus counters hold the same figures).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

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

/// What a worker counted.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerSummary {
    /// Valid frames consumed (replayed ones included).
    pub frames: u64,
    /// Invalid records consumed (replayed ones included).
    pub invalid: u64,
    /// `invalid` by reason (`Invalid::code`).
    pub invalid_reasons: BTreeMap<String, u64>,
    /// Blank lines consumed (nothing to count).
    pub blank: u64,
    /// Records consumed again after a hand-over or a rewind.
    pub replayed: u64,
    pub seconds_emitted: u64,
    pub minutes_emitted: u64,
    /// Frames that came after their window had closed.
    pub late_seconds: u64,
    pub late_minutes: u64,
    /// Partitions taken away from this worker by rebalances.
    pub partitions_revoked: u64,
    /// Assignments received: one per rebalance this worker took part in.
    pub rebalances: u64,
    /// Transactions committed and given up (exactly-once mode).
    pub transactions_committed: u64,
    pub transactions_aborted: u64,
    /// Transactional producers replaced by a fresh one (fenced, or unable
    /// to abort).
    pub producer_replacements: u64,
    /// Valid frames (counted in their windows) too large for the forward or
    /// late topic: dead-lettered as `too_large_for_topic` instead.
    pub too_large_for_topic: u64,
    /// Input offsets that retention (or delete-records) removed before this
    /// worker read them: from a committed checkpoint or the position
    /// reached up to the log's new start. Logged as errors with the range.
    pub lost_to_retention: u64,
    /// Valid frames counted in windows that were then dropped because they
    /// lay beyond the horizon (never emitted; each drop logged).
    #[serde(default)]
    pub beyond_horizon: u64,
    /// Estimated bytes of the owned partitions' open windows at the last
    /// poll batch, and the most they took ([`crate::budget`]).
    #[serde(default)]
    pub state_bytes: u64,
    #[serde(default)]
    pub state_bytes_peak: u64,
}

impl WorkerSummary {
    /// Counts an invalid record under its reason.
    pub fn count_invalid(&mut self, reason: &str) {
        self.invalid += 1;
        match self.invalid_reasons.get_mut(reason) {
            Some(n) => *n += 1,
            None => {
                self.invalid_reasons.insert(reason.to_string(), 1);
            }
        }
    }

    /// Every record consumed: valid, invalid and blank.
    pub fn consumed(&self) -> u64 {
        self.frames + self.invalid + self.blank
    }
}
