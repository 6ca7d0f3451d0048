//! Where a new owner of a partition resumes: the [`Checkpoint`] and the
//! resume points the open minute windows keep.
//!
//! A checkpoint carries the event clock's [`ClockState`], which leaves out
//! the set of the minute's users ([`crate::clock`]). So a replay may only
//! start where that set is empty: where `E` entered a minute, where a floor
//! ended the count, at the very start, or while `E` is undefined. Each open
//! minute keeps the latest such point at or before its first frame; the
//! oldest open minute's point is the checkpoint.

use std::sync::Arc;

use crate::clock::{ClockState, EventClock};

use super::{Seq, Watermark, WatermarkRule, Windows};

/// A point a new owner can replay from: a sequence number and the clock's
/// state before it (shared by the minute windows opened after it).
pub(super) type ResumePoint = Arc<(Seq, ClockState)>;

/// The latest point at or before frame `seq` to replay from: here if the
/// clock can be resumed as it stands, else the last time `E` entered a
/// minute (or a floor ended the count). `last` taken at `seq` itself holds
/// the same state (nothing changes the clock between frames without moving
/// `last`), so it is shared rather than copied.
pub(super) fn resume_point(clock: &EventClock, last: &ResumePoint, seq: Seq) -> ResumePoint {
    match clock.resumable() {
        Some(state) if last.0 != seq => Arc::new((seq, state)),
        _ => Arc::clone(last),
    }
}

/// Whether a minute window that just took `point` is the first to hold it
/// beside [`Windows`] itself, so the state's memory is counted once, on it
/// ([`super::size`]).
pub(super) fn first_holder(point: &ResumePoint) -> bool {
    Arc::strong_count(point) <= 2
}

/// Where a new owner of the partition must resume to rebuild the open windows
/// exactly, and what it must know to make the same decisions from there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// First sequence number to replay (the commit offset).
    pub resume_seq: Seq,
    /// The partition's event clock before `resume_seq` (its set of the
    /// minute's users is empty there: a new owner rebuilds it).
    pub clock_before: ClockState,
    /// Frames before this sequence number were already fully handled (their
    /// side outputs sent); replaying them only rebuilds window state.
    pub handled_until: Seq,
    /// Windows ending at or below this watermark were already emitted.
    pub emitted: Option<Watermark>,
    /// Watermark floor left by [`Windows::close_all`] (idle or drained partition).
    pub floor: Option<Watermark>,
}

impl Windows {
    /// A fresh core for a new owner of the partition, which will replay from
    /// `checkpoint.resume_seq`.
    pub fn resume(rule: WatermarkRule, checkpoint: &Checkpoint) -> Windows {
        let mut windows = Windows::new(rule);
        // The quorum may have changed since the checkpoint: the state
        // carries over, the new quorum applies from here.
        let state = checkpoint.clock_before.with_quorum(rule.quorum);
        windows.clock = EventClock::resume(state);
        windows.last_resume = Arc::new((checkpoint.resume_seq, state));
        windows.next_seq = checkpoint.resume_seq;
        windows.already_emitted = checkpoint.emitted;
        windows.floor = checkpoint.floor;
        windows
    }

    /// Where to resume if this partition changed owner now, given the
    /// sequence number of the next frame not yet recorded.
    pub fn checkpoint(&self, next_seq: Seq) -> Checkpoint {
        // Resume points grow with first frames, so the oldest minute's is
        // the oldest. An open second needs none of its own: its minute is
        // open too and counted the second's first frame (a minute closes
        // only with its seconds, and the horizon drops both together).
        let oldest = self.minutes.values().min_by_key(|w| w.first_seq);
        let (resume_seq, clock_before) = match oldest {
            Some(w) => *w.resume,
            None => *resume_point(&self.clock, &self.last_resume, next_seq),
        };
        Checkpoint {
            resume_seq,
            clock_before,
            handled_until: next_seq,
            emitted: self.watermark().max(self.already_emitted),
            floor: self.floor,
        }
    }

    /// A floor raised by a processing-time decision is not repeated by a
    /// replay, so a replay must not cross it: the minute's count of users
    /// ends here and this is a point to resume from. (After end of input, a
    /// later run goes on from here replaying nothing, so windows emitted
    /// past the floor are not opened again by replayed frames.)
    pub(super) fn end_minute(&mut self) {
        self.clock.end_minute();
        if let Some(state) = self.clock.resumable() {
            self.last_resume = Arc::new((self.next_seq, state));
        }
    }

    /// Records that `E` may have entered a new minute after frame `seq`.
    pub(super) fn after_observe(&mut self, seq: Seq, entered_minute: bool) {
        if entered_minute {
            if let Some(state) = self.clock.resumable() {
                self.last_resume = Arc::new((seq + 1, state));
            }
        }
    }
}
