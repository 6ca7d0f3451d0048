//! The consumer-group loop's decisions, pure: when to commit, what a
//! commit's outcome means for the owned partitions, where a rewound
//! partition resumes, and when the merge stage is complete. The loop that
//! carries them out against Kafka (`src/cmd/driver.rs`) is shared by the
//! worker and the merge; time comes in as data.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::cursor::SeekTo;
use crate::merge::MergeCheckpoint;

/// Whether a commit is due: `since` the last one, every `interval`.
pub fn commit_due(since: Duration, interval: Duration) -> bool {
    since >= interval
}

/// How a commit ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything sent so far is durable with the checkpoints.
    Durable,
    /// Everything sent since the last durable commit is gone.
    GivenUp,
}

/// What the loop does after a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AfterCommit {
    /// Outputs sent since the last commit became durable (note when).
    pub emitted: bool,
    /// Drop every owned partition and rewind every assigned one to its
    /// committed checkpoint before reading on: the given-up outputs are
    /// not visible to read_committed readers, and only a replay from the
    /// checkpoints makes them again.
    pub rewind: bool,
}

/// What a commit with `outcome` means, when outputs were `pending` (sent
/// since the last durable commit).
pub fn after_commit(outcome: Outcome, pending: bool) -> AfterCommit {
    AfterCommit {
        emitted: outcome == Outcome::Durable && pending,
        rewind: outcome == Outcome::GivenUp,
    }
}

/// Where a rewound partition resumes: its committed checkpoint's offset,
/// or (without a valid checkpoint) the log start, where the partition's
/// start is decided again at its first record.
pub fn resume_at(committed: Option<u64>) -> SeekTo {
    committed.map_or(SeekTo::Beginning, SeekTo::Offset)
}

/// Whether a merge checkpoint says its partials partition is merged to the
/// end of every shard: each of the `inputs` input partitions (one shard
/// each) published its end.
pub fn merge_checkpoint_done(cp: &MergeCheckpoint, inputs: usize) -> bool {
    cp.marks.len() == inputs && cp.marks.iter().all(|m| *m == Some(u64::MAX))
}

/// The merge stage's completion (`merge --until-end`), first half: every
/// partials partition in `all` must be merged to the end of every shard,
/// the owned ones by their merger (`owned_done`), the others by their
/// committed checkpoint ([`merge_committed_done`]). `None` when an owned
/// one is not done; else the partitions whose checkpoints decide.
pub fn merge_unknown(all: &[i32], owned_done: &BTreeMap<i32, bool>) -> Option<Vec<i32>> {
    let mut unknown = Vec::new();
    for p in all {
        match owned_done.get(p) {
            Some(false) => return None,
            Some(true) => {}
            None => unknown.push(*p),
        }
    }
    Some(unknown)
}

/// Whether the partitions no member here owns are merged to the end, by
/// their committed checkpoints.
pub fn merge_committed_done(
    unknown: &[i32],
    committed: &BTreeMap<i32, MergeCheckpoint>,
    inputs: usize,
) -> bool {
    unknown.iter().all(|p| {
        committed
            .get(p)
            .is_some_and(|cp| merge_checkpoint_done(cp, inputs))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_is_due_once_the_interval_passed() {
        let second = Duration::from_secs(1);
        assert!(!commit_due(Duration::from_millis(999), second));
        assert!(commit_due(second, second));
        assert!(commit_due(Duration::ZERO, Duration::ZERO));
    }

    #[test]
    fn a_given_up_commit_rewinds_and_emits_nothing() {
        let durable = after_commit(Outcome::Durable, true);
        assert_eq!(
            durable,
            AfterCommit {
                emitted: true,
                rewind: false
            }
        );
        assert!(!after_commit(Outcome::Durable, false).emitted);
        let given_up = after_commit(Outcome::GivenUp, true);
        assert!(given_up.rewind && !given_up.emitted);
    }

    #[test]
    fn a_rewind_resumes_at_the_checkpoint_or_the_log_start() {
        assert_eq!(resume_at(Some(42)), SeekTo::Offset(42));
        assert_eq!(resume_at(None), SeekTo::Beginning);
    }

    fn cp(marks: Vec<Option<u64>>) -> MergeCheckpoint {
        MergeCheckpoint {
            resume_seq: 5,
            handled_until: 5,
            marks,
        }
    }

    #[test]
    fn the_merge_is_complete_once_every_partition_saw_every_shard_end() {
        let all = [0, 1, 2];
        // An owned partition not done: not complete, nothing to read.
        let owned = BTreeMap::from([(0, true), (1, false)]);
        assert_eq!(merge_unknown(&all, &owned), None);
        // Owned ones done: the others decide by their checkpoints.
        let owned = BTreeMap::from([(0, true)]);
        let unknown = merge_unknown(&all, &owned).unwrap();
        assert_eq!(unknown, vec![1, 2]);
        let end = Some(u64::MAX);
        let mut committed = BTreeMap::from([(1, cp(vec![end, end]))]);
        // Partition 2 has no checkpoint yet.
        assert!(!merge_committed_done(&unknown, &committed, 2));
        committed.insert(2, cp(vec![end, Some(7)]));
        assert!(!merge_committed_done(&unknown, &committed, 2));
        committed.insert(2, cp(vec![end, end]));
        assert!(merge_committed_done(&unknown, &committed, 2));
        // A checkpoint of another input partition count is not done.
        assert!(!merge_committed_done(&unknown, &committed, 3));
        // Everything owned and done.
        let owned = BTreeMap::from([(0, true), (1, true), (2, true)]);
        assert_eq!(merge_unknown(&all, &owned), Some(vec![]));
    }
}
