//! Retention in a schedule, and what it owes the count: a previous run of
//! the group (its checkpoints committed before the members start, in a
//! third of the schedules), heads deleted before the members start and
//! while they run, and the ledger the check reads ([`super::check`]):
//! which records the aggregate leaves out, how many offsets retention
//! deleted, and how many of them the group must count as lost.
//!
//! Owed: an offset deleted at or above the group's committed offset of its
//! partition (a durable checkpoint: whoever takes the partition next
//! resumes there and finds the offset gone) that no member's fetch
//! position had passed (no progress made past it can be durable without
//! reading past the gap). Without a committed offset nothing is owed: a
//! fresh start begins at the log start it finds (docs/semantics.md).

use super::cluster::{Cluster, Offset, Topic};
use super::rng::Rng;
use super::view::Reach;
use crate::cmd::worker::on_memory::Input;
use crate::core::partition::{Partition, Start};
use crate::kafka::checkpoint::encode_checkpoint;

/// Retention's own dice, so that a seed's other faults stay what they were.
const RETENTION_DICE: u64 = 0x5245_5445_4e54;
/// A previous run's dice, for the same reason.
const PREVIOUS_DICE: u64 = 0x5052_4556_494f;

pub(super) struct Retention {
    dice: Rng,
    /// Deletions it may still make while the members run.
    deletions: u64,
    /// Per input partition, the first offset of the aggregate: below it,
    /// records deleted before any member read them, or handled by the
    /// previous run.
    pub first_kept: Vec<u64>,
    /// Heads deleted: unread (before the start too), below the committed
    /// offset.
    pub heads: [u64; 2],
    /// Offsets deleted, in all.
    pub offsets: u64,
    /// Offsets the group must count as lost to retention (see above).
    pub owed: u64,
}

impl Retention {
    /// The previous run's checkpoints, then the heads deleted before the
    /// members start: a quarter of the schedules lose the head of one
    /// partition (the group starts at its checkpoint, or the log start).
    pub fn before_start(seed: u64, c: &mut Cluster, input: &Input) -> Retention {
        let partitions = c.input.len();
        let mut r = Retention {
            dice: Rng::new(seed ^ RETENTION_DICE),
            deletions: 0,
            first_kept: previous_run(seed, c, input),
            heads: [0, 0],
            offsets: 0,
            owed: 0,
        };
        if r.dice.below(4) == 0 {
            let p = r.dice.below(partitions as u64) as i32;
            let to = r.dice.range(0, c.end(Topic::Input, p));
            r.delete(c, p, to, 0, true);
        }
        r.deletions = r.dice.range(0, 2);
        r
    }

    /// Now and then while the members run: the head of a partition no
    /// member was handed a record of, to anywhere (those records were never
    /// read: the aggregate leaves them out), or of another one below its
    /// committed offset, as the model simulator deletes (what a new owner
    /// replays from its checkpoint stays).
    pub fn while_running(&mut self, c: &mut Cluster, reach: &Reach) {
        if self.deletions == 0 || !self.dice.per_mille(1) {
            return;
        }
        self.deletions -= 1;
        let p = self.dice.below(c.input.len() as u64) as i32;
        let passed = reach.passed.get(&(Topic::Input, p)).copied().unwrap_or(0);
        if !reach.handed.contains(&(Topic::Input, p)) {
            let to = self.dice.range(0, c.end(Topic::Input, p));
            self.delete(c, p, to, passed, true);
        } else if let Some(o) = c.committed.get(&(Topic::Input, p)) {
            let to = self.dice.range(0, o.offset);
            self.delete(c, p, to, passed, false);
        }
    }

    /// Deletes the head of input partition `p` below `to`, where no member
    /// passed beyond `passed`; `unread`: no member read a record of it.
    fn delete(&mut self, c: &mut Cluster, p: i32, to: u64, passed: u64, unread: bool) {
        let old = c.log(Topic::Input, p).log_start;
        c.delete_head(Topic::Input, p, to);
        let new = c.log(Topic::Input, p).log_start;
        if new == old {
            return;
        }
        self.offsets += new - old;
        self.heads[usize::from(!unread)] += 1;
        if unread {
            let kept = &mut self.first_kept[p as usize];
            *kept = (*kept).max(new);
        }
        if let Some(committed) = c.committed.get(&(Topic::Input, p)) {
            self.owed += new.saturating_sub(old.max(committed.offset).max(passed));
        }
    }
}

/// A third of the schedules follow a previous run of the group that read
/// each of some partitions to an offset and committed its checkpoint there
/// with every window closed (a batch run that ended there): the members
/// resume at it, and the aggregate starts there. The first offset kept
/// per partition.
fn previous_run(seed: u64, c: &mut Cluster, input: &Input) -> Vec<u64> {
    let mut dice = Rng::new(seed ^ PREVIOUS_DICE);
    let mut first = vec![0; c.input.len()];
    if dice.below(3) != 0 {
        return first;
    }
    for (p, kept) in first.iter_mut().enumerate() {
        if dice.below(2) == 0 {
            continue;
        }
        let at = dice.range(0, c.end(Topic::Input, p as i32));
        let cp = Partition::new(Start::Fresh { log_start: at }, input.rules).checkpoint();
        let offset = Offset {
            offset: at,
            metadata: encode_checkpoint(&cp),
            merge: None,
        };
        c.committed.insert((Topic::Input, p as i32), offset);
        *kept = at;
    }
    first
}
