//! What a finished schedule must show: the committed windows equal the
//! offline aggregate of the committed input (`aggregate`, or `aggregate
//! --shards`: core's [`OfflineMerge`] of the shards' windows, as
//! `core/tests/sim/main.rs` checks the model), none of them twice, and
//! every invalid committed input record dead-lettered exactly once.

use std::collections::BTreeSet;

use super::cluster::{Cluster, Entry, TxnState};
use crate::cmd::worker::on_memory::{sorted, Input};
use crate::core::frame::Line;
use crate::core::merge::OfflineMerge;
use crate::core::window::Closed;

/// The windows `timebucket aggregate` (`--shards` with shards) makes of
/// `input`, by output partition.
fn expected(input: &Input) -> Vec<(i32, Closed)> {
    let (windows, _) = input.aggregate();
    if input.routing.shards() == 1 {
        return windows;
    }
    let mut merge = OfflineMerge::default();
    for (p, closed) in windows {
        merge.add(&input.routing, p as u32, closed);
    }
    merge
        .finish()
        .map(|m| (m.partition as i32, m.closed))
        .collect()
}

/// The committed outputs of `c` against the offline aggregate of `input`.
pub(super) fn outputs(c: &Cluster, input: &Input) -> Result<(), String> {
    let mut keys = BTreeSet::new();
    for (p, closed) in &c.windows {
        let minute = matches!(closed, Closed::Minute { .. });
        if !keys.insert((*p, minute, closed.start())) {
            return Err(format!("window committed twice: partition {p} {closed:?}"));
        }
    }
    let expected = expected(input);
    let windows = sorted(&c.windows);
    if windows != sorted(&expected) {
        let missing = sorted(&expected)
            .into_iter()
            .filter(|w| !windows.contains(w))
            .count();
        return Err(format!(
            "committed windows differ from the aggregate: {} committed, {} expected, {missing} missing",
            windows.len(),
            expected.len()
        ));
    }
    let mut dead_expected = Vec::new();
    for (p, log) in c.input.iter().enumerate() {
        for (o, e) in log.entries.iter().enumerate() {
            if let Entry::Record { payload, txn } = e {
                let invalid = matches!(input.rules.parser.parse(payload), Line::Invalid(_));
                if invalid && c.txns[*txn] == TxnState::Committed {
                    dead_expected.push((p as i32, o as u64));
                }
            }
        }
    }
    let mut dead = c.dead.clone();
    dead.sort();
    if dead != dead_expected {
        return Err(format!("dead letters {dead:?}, expected {dead_expected:?}"));
    }
    Ok(())
}
