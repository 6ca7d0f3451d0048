//! The end of a batch run (`worker --until-end`, `--until-offsets`),
//! decided without Kafka: when an input partition is read to its end
//! offset, when its windows close, and when the whole topic is done.
//!
//! A partition is at its end when the offset of its next record reaches
//! the end offset, or when the log told its reader there is nothing more
//! to read: an end-of-partition event at that position ([`Facts::at_end`]),
//! or a consumer position at or past the end ([`Facts::consumed`]).
//! Transaction markers and aborted records take offsets but are never
//! handed over, so the position of the next record alone may never reach
//! the end offset (found twice: commits 640b06e and 265069d).
//!
//! [`drain_step`] is the whole decision, driven through [`Member`] (the
//! worker's consumer and state, or the simulator's member): the product
//! and `core/tests/sim` run the same code.

use std::collections::BTreeMap;

use crate::partition::Partition;
use crate::window::{Checkpoint, Closed, Watermark};

/// What one group member's log reader knows about an input partition's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Facts {
    /// The end offset the run reads to (0 when the partition has none).
    pub target: u64,
    /// The position of the partition's state machine when the log
    /// announced its end (end-of-partition event), if it did.
    pub at_end: Option<u64>,
    /// The consumer's fetch position: after the last record handed over,
    /// or after markers and aborted records it skipped.
    pub consumed: Option<u64>,
}

impl Facts {
    /// Whether an owned partition at `position` has nothing left to read
    /// before its end offset.
    pub fn ended(&self, position: u64) -> bool {
        self.at_end.is_some_and(|e| position >= e)
            || self.consumed.is_some_and(|c| c >= self.target)
    }

    /// Whether an assigned partition that is not owned yet must be taken
    /// over now: its consumer passed the end without a record to hand over
    /// (a checkpoint just below the input's last commit marker), so only
    /// owning it moves its checkpoint on to the end.
    pub fn take_over(&self) -> bool {
        self.consumed.is_some_and(|c| c >= self.target)
    }
}

/// Whether a shard's partition was closed for good (sharded buckets).
pub fn closed_for_good(partition: &Partition) -> bool {
    partition.watermark() == Some(Watermark::END)
}

/// Whether a committed checkpoint says its shard was closed for good.
pub fn checkpoint_closed_for_good(cp: &Checkpoint) -> bool {
    cp.emitted == Some(Watermark::END)
}

/// Batch runs: moves an owned partition on to its end offset once nothing
/// is left to read, then closes its windows (every window; a shard: every
/// window it could ever have, so the merge never waits for it). Returns
/// whether it closed any now; the windows are in `closed`.
pub fn settle(
    partition: &mut Partition,
    facts: &Facts,
    sharded: bool,
    closed: &mut Vec<Closed>,
) -> bool {
    let position = partition.position();
    if position < facts.target && facts.ended(position) {
        partition.skip_to(facts.target);
    }
    let drained = partition.position() >= facts.target
        && (partition.has_open_windows() || sharded && !closed_for_good(partition));
    if drained {
        if sharded {
            partition.close_through(Watermark::END, closed);
        } else {
            partition.close_all(closed);
        }
    }
    drained
}

/// Whether a partition no member here owns is done, by its committed
/// checkpoint (`None`: no valid one).
pub fn committed_done(committed: Option<&Checkpoint>, target: u64, sharded: bool) -> bool {
    committed
        .is_some_and(|cp| cp.resume_seq >= target && (!sharded || checkpoint_closed_for_good(cp)))
}

/// One group member as [`drain_step`] sees it.
pub trait Member {
    type Error;
    /// Whether it joined the group (an assignment, maybe empty, came).
    fn joined(&self) -> bool;
    /// The input partitions assigned to it.
    fn assigned(&self) -> Vec<i32>;
    /// Its consumer's fetch positions, by partition.
    fn consumed(&self) -> BTreeMap<i32, u64>;
    /// The position of its state machine when the log announced
    /// `partition`'s end, if it did.
    fn at_end(&self, partition: i32) -> Option<u64>;
    /// The input partitions it owns (has a state machine for).
    fn owned(&self) -> Vec<i32>;
    /// Makes `partition` owned, from its committed checkpoint or the log
    /// start; `false` when a commit was given up on the way (the caller
    /// waits for the rewind).
    fn own(&mut self, partition: i32) -> Result<bool, Self::Error>;
    /// Runs `f` on owned `partition` and sends the windows it closed;
    /// `None` when not owned.
    fn with_partition<R>(
        &mut self,
        partition: i32,
        f: impl FnOnce(&mut Partition, &mut Vec<Closed>) -> R,
    ) -> Option<R>;
    /// The valid committed checkpoints of `partitions` (those with one).
    fn committed(&mut self, partitions: &[i32]) -> Result<BTreeMap<i32, Checkpoint>, Self::Error>;
}

/// Batch mode: closes the windows of every owned partition that reached its
/// end offset, and says whether the whole topic is done: every partition
/// drained and its windows closed, here or by another member (as its
/// committed checkpoint shows). Waiting for the whole topic, not just the
/// owned partitions, lets the group finish even when a member dies or an
/// assignment is briefly empty during a cooperative rebalance.
pub fn drain_step<M: Member>(
    member: &mut M,
    targets: &BTreeMap<i32, u64>,
    sharded: bool,
) -> Result<bool, M::Error> {
    if !member.joined() {
        return Ok(false);
    }
    let target = |p: i32| targets.get(&p).copied().unwrap_or(0);
    let consumed = member.consumed();
    let owned = member.owned();
    for p in member.assigned() {
        if owned.contains(&p) {
            continue;
        }
        let facts = Facts {
            target: target(p),
            at_end: None,
            consumed: consumed.get(&p).copied(),
        };
        // A shard must publish its end even with no record at all.
        let empty_shard = sharded && facts.target == 0;
        if (empty_shard || targets.contains_key(&p) && facts.take_over()) && !member.own(p)? {
            return Ok(false);
        }
    }
    for p in member.owned() {
        let facts = Facts {
            target: target(p),
            at_end: member.at_end(p),
            consumed: consumed.get(&p).copied(),
        };
        member.with_partition(p, |partition, closed| {
            settle(partition, &facts, sharded, closed)
        });
    }
    let mut unknown = Vec::new();
    for (&p, &end) in targets {
        match member.with_partition(p, |partition, _| partition.position()) {
            Some(position) if position < end => return Ok(false),
            Some(_) => {}
            None if end == 0 && !sharded => {}
            None => unknown.push(p),
        }
    }
    if unknown.is_empty() {
        return Ok(true);
    }
    let committed = member.committed(&unknown)?;
    Ok(unknown
        .iter()
        .all(|p| committed_done(committed.get(p), target(*p), sharded)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::FrameParser;
    use crate::partition::{Rules, Start};
    use crate::window::WatermarkRule;
    use proptest::prelude::*;

    fn rules() -> Rules {
        Rules {
            watermark: WatermarkRule::largest_ts(5),
            parser: FrameParser::new(0, 4_000_000_000),
            max_future: None,
        }
    }

    fn fed(offsets: &[u64]) -> Partition {
        let mut p = Partition::new(Start::Fresh { log_start: 0 }, rules());
        let mut closed = Vec::new();
        for &o in offsets {
            let frame = format!(r#"{{"ts":{},"uid":"u"}}"#, 1000 + o);
            p.on_record(o, None, frame.as_bytes(), &mut closed);
        }
        p
    }

    /// The last record at 9, a commit marker at 10: the end offset 11 is
    /// never the position of a record. The consumer's position says so.
    #[test]
    fn a_marker_at_the_end_is_passed_by_the_consumer_position() {
        let mut p = fed(&(0..10).collect::<Vec<_>>());
        let mut closed = Vec::new();
        let unsure = Facts {
            target: 11,
            at_end: None,
            consumed: Some(10),
        };
        assert!(!settle(&mut p, &unsure, false, &mut closed));
        let passed = Facts {
            consumed: Some(11),
            ..unsure
        };
        assert!(settle(&mut p, &passed, false, &mut closed));
        assert_eq!(p.position(), 11);
        assert!(!closed.is_empty() && !p.has_open_windows());
        // Settled once: nothing more to close.
        closed.clear();
        assert!(!settle(&mut p, &passed, false, &mut closed));
        assert!(closed.is_empty());
    }

    #[test]
    fn an_end_event_at_the_position_ends_the_partition() {
        let mut p = fed(&[0, 1, 2]);
        let facts = Facts {
            target: 5,
            at_end: Some(3),
            consumed: None,
        };
        assert!(settle(&mut p, &facts, false, &mut Vec::new()));
        assert_eq!(p.position(), 5);
    }

    #[test]
    fn a_shard_is_closed_for_good_even_without_windows() {
        let mut p = Partition::new(Start::Fresh { log_start: 0 }, rules());
        let facts = Facts::default();
        assert!(!settle(&mut p, &facts, false, &mut Vec::new()));
        assert!(settle(&mut p, &facts, true, &mut Vec::new()));
        assert!(closed_for_good(&p));
        assert!(committed_done(Some(&p.checkpoint()), 0, true));
        assert!(!committed_done(Some(&fed(&[0]).checkpoint()), 0, true));
        assert!(!committed_done(None, 0, false));
    }

    proptest! {
        /// Whatever the facts, a partition never moves back, never moves
        /// past its end offset by skipping, and is settled (at its end,
        /// windows closed) exactly when its end is known to be reached.
        #[test]
        fn settle_moves_on_only_to_the_end(
            read in 0u64..20,
            markers in 0u64..4,
            at_end in proptest::option::of(0u64..30),
            consumed in proptest::option::of(0u64..30),
        ) {
            let mut p = fed(&(0..read).collect::<Vec<_>>());
            let target = read + markers;
            let facts = Facts { target, at_end, consumed };
            let before = p.position();
            let mut closed = Vec::new();
            settle(&mut p, &facts, false, &mut closed);
            prop_assert!(p.position() >= before);
            prop_assert!(p.position() <= before.max(target));
            let known = before >= target || facts.ended(before);
            prop_assert_eq!(p.position() >= target, known);
            prop_assert_eq!(p.has_open_windows(), read > 0 && !known);
        }
    }
}
