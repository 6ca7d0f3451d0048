//! A worker's state budget: the bytes its partitions' open windows may take
//! together ([`crate::window::Windows::state_bytes`]), and the check that
//! stops it before they take more.
//!
//! Why a stop and not dead letters (docs/limits.md): a budget shared by the
//! partitions a worker happens to own makes any per-frame decision depend
//! on the assignment and on what a replay rebuilds, so after a hand-over the
//! new owner could count a frame the old one had dead-lettered, and two
//! owners could give one window two values. Stopping keeps every window
//! exact: nothing past the last commit is visible, and the error names the
//! partition, its offset and the limit, so the operator raises the budget
//! or adds workers. What one user can add is bounded before that by the uid
//! cap and the horizon, which decide per frame, the same on every replay.

use std::collections::BTreeMap;

/// Default budget: 1 GiB, for a small machine (the honest state of the
/// challenge data, 16 minutes of ~50,000 distinct users, is a few MB).
pub const DEFAULT_STATE_BUDGET: u64 = 1 << 30;

/// The state outgrew the budget.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "state budget exceeded: partition {partition} took its windows to {partition_bytes} bytes, \
     {total} bytes in all, over the budget of {limit} bytes"
)]
pub struct OverBudget {
    pub partition: i32,
    pub partition_bytes: u64,
    pub total: u64,
    pub limit: u64,
}

/// The bytes each owned partition's windows take, and their sum.
#[derive(Debug, Clone, Default)]
pub struct StateBudget {
    limit: u64,
    by_partition: BTreeMap<i32, u64>,
    total: u64,
    peak: u64,
}

impl StateBudget {
    pub fn new(limit: u64) -> StateBudget {
        StateBudget {
            limit,
            ..StateBudget::default()
        }
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes of every owned partition's windows now.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The largest total seen.
    pub fn peak(&self) -> u64 {
        self.peak
    }

    /// Notes `bytes` for `partition` (after a frame, or a close).
    pub fn set(&mut self, partition: i32, bytes: u64) {
        let old = self.by_partition.insert(partition, bytes).unwrap_or(0);
        self.total = self.total - old + bytes;
        self.peak = self.peak.max(self.total);
    }

    /// Notes `bytes` for `partition` and fails if the total is now over
    /// the budget.
    pub fn charge(&mut self, partition: i32, bytes: u64) -> Result<(), OverBudget> {
        self.set(partition, bytes);
        if self.total <= self.limit {
            return Ok(());
        }
        Err(OverBudget {
            partition,
            partition_bytes: bytes,
            total: self.total,
            limit: self.limit,
        })
    }

    /// A partition no longer owned (revoked, or dropped for a rewind).
    pub fn remove(&mut self, partition: i32) {
        if let Some(old) = self.by_partition.remove(&partition) {
            self.total -= old;
        }
    }

    pub fn clear(&mut self) {
        self.by_partition.clear();
        self.total = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_total_follows_each_partition_and_the_limit_is_inclusive() {
        let mut b = StateBudget::new(100);
        b.set(0, 40);
        assert_eq!(b.charge(1, 60), Ok(()));
        assert_eq!(b.total(), 100);
        b.set(0, 10);
        assert_eq!(b.total(), 70);
        assert_eq!(
            b.charge(1, 91),
            Err(OverBudget {
                partition: 1,
                partition_bytes: 91,
                total: 101,
                limit: 100
            })
        );
        assert_eq!(b.peak(), 101);
        b.remove(1);
        assert_eq!(b.total(), 10);
        b.remove(1);
        assert_eq!(b.total(), 10);
        b.clear();
        assert_eq!((b.total(), b.peak()), (0, 101));
    }
}
