//! What the open windows of a partition take in memory: an estimate kept
//! up to date on every frame ([`super::Windows::state_bytes`]), which the
//! worker holds against its state budget ([`crate::budget`]).

use crate::clock::ClockState;

use super::{MinuteWindow, SecondWindow, Seq};

/// Heap bytes of a hash set of `capacity` slots of `slot` bytes, as
/// hashbrown lays it out: a power of two of buckets at most 7/8 full, one
/// control byte per bucket and a group of 16 more.
pub(super) fn table_bytes(capacity: usize, slot: usize) -> usize {
    if capacity == 0 {
        return 0;
    }
    let buckets = (capacity.saturating_mul(8) / 7).next_power_of_two();
    buckets * (slot + 1) + 16
}

/// What a B-tree entry costs beyond its key and value (node headers and
/// slack, amortized): an estimate.
const BTREE_ENTRY_OVERHEAD: usize = 16;
pub(super) const SECOND_ENTRY_BYTES: usize =
    std::mem::size_of::<(u64, SecondWindow)>() + BTREE_ENTRY_OVERHEAD;
pub(super) const MINUTE_ENTRY_BYTES: usize =
    std::mem::size_of::<(u64, MinuteWindow)>() + BTREE_ENTRY_OVERHEAD;

/// A resume point's allocation: the `Arc`'s two counts, a sequence number
/// and a clock state (its uids ahead inline, about 1.6 KB). Counted on the
/// first minute window that holds it; later ones sharing it count nothing
/// (an estimate: the first may close while later ones still share it).
const RESUME_POINT_BYTES: usize = 16 + std::mem::size_of::<(Seq, ClockState)>();

impl MinuteWindow {
    /// The window's heap bytes: its resume point if it counts it, the
    /// distinct-uid sets' tables and the text of the uids that do not pack.
    pub(super) fn heap_bytes(&self) -> usize {
        usize::from(self.holds_resume) * RESUME_POINT_BYTES
            + table_bytes(self.packed.capacity(), std::mem::size_of::<u128>())
            + table_bytes(self.other.capacity(), std::mem::size_of::<Box<str>>())
            + self.other_text
    }
}
