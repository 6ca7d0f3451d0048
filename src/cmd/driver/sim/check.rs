//! What a finished schedule must show: the committed windows equal the
//! offline aggregate of the committed input (`aggregate`, or `aggregate
//! --shards`: core's [`OfflineMerge`] of the shards' windows, as
//! `core/tests/sim/main.rs` checks the model), none of them twice, and
//! every invalid committed input record dead-lettered exactly once; the
//! records retention deleted before any member read them (or a previous
//! run handled) are in neither. And the workers counted what retention
//! took from them ([`lost`]).

use std::collections::BTreeSet;

use super::cluster::{Cluster, Entry, Topic, TxnState};
use super::retention::Retention;
use crate::cmd::worker::on_memory::{sorted, Input};
use crate::cmd::worker::WorkerSummary;
use crate::core::frame::Line;
use crate::core::merge::OfflineMerge;
use crate::core::window::Closed;

/// A dead letter: input partition and offset.
type Dead = (i32, u64);

/// What `timebucket aggregate` (`--shards` with shards) makes of the
/// committed input records of `c` from `first_kept` on (retention deleted
/// the ones below before anyone read them, or a previous run handled
/// them), by output partition; and the
/// invalid ones among them, `(partition, offset)`.
fn expected(c: &Cluster, input: &Input, first_kept: &[u64]) -> (Vec<(i32, Closed)>, Vec<Dead>) {
    let mut kept = Input {
        routing: input.routing,
        rules: input.rules,
        records: vec![Vec::new(); c.input.len()],
    };
    let mut dead = Vec::new();
    for (p, log) in c.input.iter().enumerate() {
        for (o, e) in log.entries.iter().enumerate().skip(first_kept[p] as usize) {
            let Entry::Record { payload, txn } = e else {
                continue;
            };
            if c.txns[*txn] != TxnState::Committed {
                continue;
            }
            if matches!(input.rules.parser.parse(payload), Line::Invalid(_)) {
                dead.push((p as i32, o as u64));
            }
            kept.records[p].push((Vec::new(), payload.clone()));
        }
    }
    let (windows, _) = kept.aggregate();
    if input.routing.shards() == 1 {
        return (windows, dead);
    }
    let mut merge = OfflineMerge::default();
    for (p, closed) in windows {
        merge.add(&input.routing, p as u32, closed);
    }
    let merged = merge
        .finish()
        .map(|m| (m.partition as i32, m.closed))
        .collect();
    (merged, dead)
}

/// The committed outputs of `c` against the offline aggregate of `input`
/// (without what retention deleted unread or a previous run handled: below
/// `first_kept`), and every input partition's committed offset at its end.
pub(super) fn outputs(c: &Cluster, input: &Input, first_kept: &[u64]) -> Result<(), String> {
    let mut keys = BTreeSet::new();
    for (p, closed) in &c.windows {
        let minute = matches!(closed, Closed::Minute { .. });
        if !keys.insert((*p, minute, closed.start())) {
            return Err(format!("window committed twice: partition {p} {closed:?}"));
        }
    }
    let (expected, dead_expected) = expected(c, input, first_kept);
    let windows = sorted(&c.windows);
    if windows != sorted(&expected) {
        let missing = sorted(&expected)
            .into_iter()
            .filter(|w| !windows.contains(w))
            .count();
        return Err(format!(
            "committed windows differ from the aggregate: {} committed, {} expected, {missing} missing \
             (the aggregate starts at {first_kept:?})",
            windows.len(),
            expected.len()
        ));
    }
    let mut dead = c.dead.clone();
    dead.sort();
    if dead != dead_expected {
        return Err(format!("dead letters {dead:?}, expected {dead_expected:?}"));
    }
    for (p, log) in c.input.iter().enumerate() {
        // An empty partition needs no commit.
        let committed = c.committed.get(&(Topic::Input, p as i32)).map(|o| o.offset);
        if committed.unwrap_or(0) != log.entries.len() as u64 {
            return Err(format!(
                "input partition {p} ends at {} but its committed offset is {committed:?}",
                log.entries.len()
            ));
        }
    }
    Ok(())
}

/// What the workers counted as lost to retention (`lost_to_retention`, in
/// offsets as the product counts: markers in a lost range too) against
/// what retention took from the group, by `summaries`: every worker of the
/// schedule, a crashed one as its summary stood at the crash.
///
/// - Nothing silent: the sum is at least what was owed (an offset deleted
///   at or above the group's committed offset before any member passed
///   it), whoever counted it: a crashed member that counted it and
///   committed past it has counted it.
/// - Nothing made up: each worker counts every deleted offset at most once
///   each time it takes a partition on, so at most the offsets deleted in
///   all times its assignments and rewinds (`rebalances` plus
///   `transactions_aborted`); none without a deletion. More than what was
///   owed is a replay: a successor (after a crash, a hand-over, a given-up
///   commit) resuming at a checkpoint below a gap counts it again, and a
///   fresh start (no committed offset) counts what was deleted after it
///   read the log start.
pub(super) fn lost(summaries: &[WorkerSummary], r: &Retention) -> Result<(), String> {
    let counted: u64 = summaries.iter().map(|s| s.lost_to_retention).sum();
    if counted < r.owed {
        return Err(format!(
            "the workers counted {counted} offsets lost to retention, {} owed \
             ({} deleted in all)",
            r.owed, r.offsets
        ));
    }
    for (i, s) in summaries.iter().enumerate() {
        let starts = s.rebalances + s.transactions_aborted;
        if s.lost_to_retention > r.offsets * starts {
            return Err(format!(
                "worker {i} counted {} offsets lost to retention; {} were deleted in all, \
                 and it took partitions on {starts} times",
                s.lost_to_retention, r.offsets
            ));
        }
    }
    Ok(())
}
