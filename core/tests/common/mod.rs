//! Helpers shared by the core's watermark property tests.

use std::collections::BTreeMap;

use timebucket_core::window::Closed;

/// Per window (minute?, start): (frames, distinct users), after a whole run.
pub type Counts = BTreeMap<(bool, u64), (u64, u64)>;

pub fn counts(closed: &[Closed]) -> Counts {
    closed
        .iter()
        .map(|c| match *c {
            Closed::Second { start, frames } => ((false, start), (frames, 0)),
            Closed::Minute {
                start,
                frames,
                unique_users,
            } => ((true, start), (frames, unique_users)),
        })
        .collect()
}
