//! What a finished schedule must show: the committed windows equal the
//! offline aggregate of the committed input (`aggregate`, or `aggregate
//! --shards`: core's [`OfflineMerge`] of the shards' windows, as
//! `core/tests/sim/main.rs` checks the model), none of them twice, and
//! every invalid committed input record dead-lettered exactly once; the
//! records retention deleted before any member read them are in neither.

use std::collections::BTreeSet;

use super::cluster::{Cluster, Entry, TxnState};
use crate::cmd::worker::on_memory::{sorted, Input};
use crate::core::frame::Line;
use crate::core::merge::OfflineMerge;
use crate::core::window::Closed;

/// A dead letter: input partition and offset.
type Dead = (i32, u64);

/// What `timebucket aggregate` (`--shards` with shards) makes of the
/// committed input records of `c` from `lost_below` on (retention deleted
/// the ones below before anyone read them), by output partition; and the
/// invalid ones among them, `(partition, offset)`.
fn expected(c: &Cluster, input: &Input, lost_below: &[u64]) -> (Vec<(i32, Closed)>, Vec<Dead>) {
    let mut kept = Input {
        routing: input.routing,
        rules: input.rules,
        records: vec![Vec::new(); c.input.len()],
    };
    let mut dead = Vec::new();
    for (p, log) in c.input.iter().enumerate() {
        for (o, e) in log.entries.iter().enumerate().skip(lost_below[p] as usize) {
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
/// (without what retention deleted unread: below `lost_below`).
pub(super) fn outputs(c: &Cluster, input: &Input, lost_below: &[u64]) -> Result<(), String> {
    let mut keys = BTreeSet::new();
    for (p, closed) in &c.windows {
        let minute = matches!(closed, Closed::Minute { .. });
        if !keys.insert((*p, minute, closed.start())) {
            return Err(format!("window committed twice: partition {p} {closed:?}"));
        }
    }
    let (expected, dead_expected) = expected(c, input, lost_below);
    let windows = sorted(&c.windows);
    if windows != sorted(&expected) {
        let missing = sorted(&expected)
            .into_iter()
            .filter(|w| !windows.contains(w))
            .count();
        return Err(format!(
            "committed windows differ from the aggregate: {} committed, {} expected, {missing} missing \
             (retention deleted unread records below {lost_below:?})",
            windows.len(),
            expected.len()
        ));
    }
    let mut dead = c.dead.clone();
    dead.sort();
    if dead != dead_expected {
        return Err(format!("dead letters {dead:?}, expected {dead_expected:?}"));
    }
    Ok(())
}
