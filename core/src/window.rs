//! Event-time windows of one partition: the pure, synchronous counting core.
//!
//! [`Windows::record`] takes frames in the partition's arrival order;
//! [`Windows::flush`] closes every window the [`Watermark`] has passed and
//! hands out its [`Closed`] count. No clock, no I/O: the Kafka worker and the
//! offline `aggregate` drive the same code, so they give the same answers.
//!
//! Normative rules: the watermark is the partition's event clock (see
//! [`crate::clock`]: the time a quorum of distinct uids vouches for) minus the
//! allowed lateness; a window `[a, b)` closes once the watermark >= b; a frame
//! counts in its second and its minute independently, each only while that
//! window is open, and is otherwise late for that window kind.
//!
//! For rebalance-safe commits the core also knows, per open minute, the
//! sequence number (Kafka offset or line index) of its first counted frame
//! and a point at or before it to replay from, so that
//! [`Windows::checkpoint`] can say where a new owner must resume ([`resume`]).
//!
//! What input makes them hold: bounded by [`horizon`], measured by [`size`].
//! The rule's options: [`rule`].

use std::collections::{btree_map, BTreeMap, HashSet};
use std::sync::Arc;

use rustc_hash::FxBuildHasher;

use crate::clock::EventClock;

mod horizon;
mod resume;
mod rule;
mod size;

pub use horizon::BeyondHorizon;
pub use resume::Checkpoint;
use resume::{first_holder, resume_point, ResumePoint};
pub use rule::WatermarkRule;
use size::{MINUTE_ENTRY_BYTES, SECOND_ENTRY_BYTES};

/// Sequence number of a frame within its partition (Kafka offset, or line
/// index offline). Strictly increasing in arrival order.
pub type Seq = u64;

pub const SECOND: u64 = 1;
pub const MINUTE: u64 = 60;

/// The largest `ts` the core accepts: the end of its minute must fit in a
/// `u64`. The parser never lets a larger `ts` through (`--max-ts` is capped).
pub const MAX_TS: u64 = u64::MAX - u64::MAX % MINUTE - 1;

/// Windows whose end is at or below the watermark are closed for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Watermark(pub u64);

impl Watermark {
    /// Closes every window: end of input, or an idle partition.
    pub const END: Watermark = Watermark(u64::MAX);

    /// `time - lateness`. Saturating is exact: every window ends at >= 1.
    pub fn from_event_time(time: u64, lateness: u64) -> Watermark {
        Watermark(time.saturating_sub(lateness))
    }
}

/// A distinct-user key. Uids of 1..=30 lowercase hex digits (all of the real
/// data) pack into a `u128` without allocation; any other uid keeps its text.
/// Packing is injective (length in the top byte), so counts stay exact.
fn pack_hex_uid(uid: &str) -> Option<u128> {
    let b = uid.as_bytes();
    if b.is_empty() || b.len() > 30 {
        return None;
    }
    let mut v: u128 = 0;
    for &c in b {
        let nibble = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        v = (v << 4) | u128::from(nibble);
    }
    Some(v | (b.len() as u128) << 120)
}

#[derive(Debug)]
struct MinuteWindow {
    frames: u64,
    packed: HashSet<u128, FxBuildHasher>,
    other: HashSet<Box<str>, FxBuildHasher>,
    /// Bytes of the uids in `other` (their boxes).
    other_text: usize,
    first_seq: Seq,
    /// Where to replay from to rebuild this window and the clock exactly:
    /// at or before `first_seq`.
    resume: ResumePoint,
    /// Whether this window counts `resume`'s memory in the state's bytes
    /// (the first window to hold it does).
    holds_resume: bool,
}

impl MinuteWindow {
    /// Inserts a uid; returns how many heap bytes that added (estimated).
    fn insert(&mut self, uid: &str) -> usize {
        let before = self.heap_bytes();
        match pack_hex_uid(uid) {
            Some(key) => {
                self.packed.insert(key);
            }
            None => {
                if !self.other.contains(uid) {
                    self.other.insert(uid.into());
                    self.other_text += uid.len();
                }
            }
        }
        self.heap_bytes() - before
    }

    fn unique_users(&self) -> u64 {
        (self.packed.len() + self.other.len()) as u64
    }
}

/// No first frame or resume point of its own: an open second's minute is
/// open and counted the second's first frame too, so the minute's cover it
/// ([`Windows::checkpoint`]).
#[derive(Debug, Clone, Copy)]
struct SecondWindow {
    frames: u64,
}

/// A window that closed with at least one counted frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Closed {
    Second {
        start: u64,
        frames: u64,
    },
    Minute {
        start: u64,
        frames: u64,
        unique_users: u64,
    },
}

impl Closed {
    pub fn start(&self) -> u64 {
        match *self {
            Closed::Second { start, .. } | Closed::Minute { start, .. } => start,
        }
    }

    pub fn end(&self) -> u64 {
        match *self {
            Closed::Second { start, .. } => start + SECOND,
            Closed::Minute { start, .. } => start + MINUTE,
        }
    }
}

/// Whether a frame counted in its second and in its minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Admission {
    pub second: bool,
    pub minute: bool,
}

/// Frames that arrived after their window had closed, per window kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LateCounts {
    pub seconds: u64,
    pub minutes: u64,
}

/// All open windows of one partition.
#[derive(Debug)]
pub struct Windows {
    lateness: u64,
    clock: EventClock,
    /// The last point where the clock's set of the minute's users was
    /// empty: `E` entered a minute, a floor ended the count, or the start.
    last_resume: ResumePoint,
    /// The sequence number after the last frame recorded.
    next_seq: Seq,
    seconds: BTreeMap<u64, SecondWindow>,
    minutes: BTreeMap<u64, MinuteWindow>,
    late: LateCounts,
    /// Set when resumed from a checkpoint: suppresses re-emission.
    already_emitted: Option<Watermark>,
    /// Raised by [`Windows::close_all`]: windows it closed stay closed.
    floor: Option<Watermark>,
    horizon: Option<u64>,
    beyond_horizon: BeyondHorizon,
    /// Estimated heap bytes of the open windows ([`Windows::state_bytes`]).
    bytes: usize,
}

impl Windows {
    pub fn new(rule: WatermarkRule) -> Windows {
        let clock = rule.clock();
        let start = Arc::new((0, clock.resumable().expect("a new clock is resumable")));
        Windows {
            lateness: rule.lateness,
            clock,
            last_resume: start,
            next_seq: 0,
            seconds: BTreeMap::new(),
            minutes: BTreeMap::new(),
            late: LateCounts::default(),
            already_emitted: None,
            floor: None,
            horizon: rule.horizon,
            beyond_horizon: BeyondHorizon::default(),
            bytes: 0,
        }
    }

    pub fn lateness(&self) -> u64 {
        self.lateness
    }

    /// The partition's event clock.
    pub fn clock(&self) -> &EventClock {
        &self.clock
    }

    /// `None` until the partition has seen a frame.
    pub fn watermark(&self) -> Option<Watermark> {
        let from_frames = self
            .clock
            .time()
            .map(|t| Watermark::from_event_time(t, self.lateness));
        from_frames.max(self.floor)
    }

    pub fn late(&self) -> LateCounts {
        self.late
    }

    pub fn open_windows(&self) -> usize {
        self.seconds.len() + self.minutes.len()
    }

    /// Estimated heap bytes of the open windows: their entries, the clock
    /// states they keep to resume from, and their sets of distinct uids.
    /// Kept up to date by every frame and every close, at O(1) cost.
    pub fn state_bytes(&self) -> usize {
        self.bytes
    }

    /// Windows dropped beyond the horizon so far, and their frames.
    pub fn beyond_horizon(&self) -> BeyondHorizon {
        self.beyond_horizon
    }

    fn is_closed(&self, end: u64) -> bool {
        self.watermark().is_some_and(|w| w.0 >= end)
    }

    /// Counts one frame, in arrival order. Does not close anything: call
    /// [`Windows::flush`] with [`Windows::watermark`] afterwards. A frame
    /// within the horizon first drops the windows beyond it
    /// ([`WatermarkRule::horizon`]).
    pub fn record(&mut self, seq: Seq, ts: u64, uid: &str) -> Admission {
        debug_assert!(ts <= MAX_TS, "ts {ts} above window::MAX_TS");
        self.drop_beyond_horizon(ts);
        let second = ts;
        let minute = ts - ts % MINUTE;
        let mut admission = Admission::default();
        self.next_seq = seq + 1;

        if self.is_closed(second + SECOND) {
            self.late.seconds += 1;
        } else {
            let window = match self.seconds.entry(second) {
                btree_map::Entry::Occupied(e) => e.into_mut(),
                btree_map::Entry::Vacant(e) => {
                    self.bytes += SECOND_ENTRY_BYTES;
                    e.insert(SecondWindow { frames: 0 })
                }
            };
            window.frames += 1;
            admission.second = true;
        }

        if self.is_closed(minute + MINUTE) {
            self.late.minutes += 1;
        } else {
            let window = match self.minutes.entry(minute) {
                btree_map::Entry::Occupied(e) => e.into_mut(),
                btree_map::Entry::Vacant(e) => {
                    let resume = resume_point(&self.clock, &self.last_resume, seq);
                    let window = e.insert(MinuteWindow {
                        frames: 0,
                        packed: HashSet::default(),
                        other: HashSet::default(),
                        other_text: 0,
                        first_seq: seq,
                        holds_resume: first_holder(&resume),
                        resume,
                    });
                    self.bytes += MINUTE_ENTRY_BYTES + window.heap_bytes();
                    window
                }
            };
            window.frames += 1;
            self.bytes += window.insert(uid);
            admission.minute = true;
        }

        let entered_minute = self.clock.observe(uid, ts);
        self.after_observe(seq, entered_minute);
        admission
    }

    /// Closes every open window with `end <= watermark`, in order of end time
    /// (seconds before the minute that ends with them), appending the counts
    /// to `out`. Windows a previous owner already emitted are dropped.
    pub fn flush(&mut self, watermark: Watermark, out: &mut Vec<Closed>) {
        let first = out.len();
        while let Some((&start, _)) = self.seconds.first_key_value() {
            if start + SECOND > watermark.0 {
                break;
            }
            let w = self.seconds.pop_first().expect("non-empty").1;
            self.bytes -= SECOND_ENTRY_BYTES;
            out.push(Closed::Second {
                start,
                frames: w.frames,
            });
        }
        while let Some((&start, _)) = self.minutes.first_key_value() {
            if start + MINUTE > watermark.0 {
                break;
            }
            let w = self.minutes.pop_first().expect("non-empty").1;
            self.bytes -= MINUTE_ENTRY_BYTES + w.heap_bytes();
            out.push(Closed::Minute {
                start,
                frames: w.frames,
                unique_users: w.unique_users(),
            });
        }
        if out.len() > first {
            out[first..].sort_by_key(|c| (c.end(), matches!(c, Closed::Minute { .. })));
            if let Some(emitted) = self.already_emitted {
                let mut i = first;
                while i < out.len() {
                    if out[i].end() <= emitted.0 {
                        out.remove(i);
                    } else {
                        i += 1;
                    }
                }
            }
        }
    }

    /// Closes every open window now, as end of input does, for a partition
    /// that was drained (batch mode). The floor is raised to the end of the
    /// minute of [`Windows::end_time`], so a window closed here up to it
    /// can never be emitted again with another value: frames for it that
    /// still arrive are late.
    pub fn close_all(&mut self, out: &mut Vec<Closed>) {
        self.close_up_to(self.end_time(), out);
        self.flush(Watermark::END, out);
        debug_assert_eq!(self.open_windows(), 0);
        self.end_minute();
    }

    /// The time end of input closes for good: the largest `ts` seen, but at
    /// most a minute past the event clock. Frames further ahead are what the
    /// watermark rule ignores, so a bad clock cannot make a later run on the
    /// same partition count honest frames late (their windows are emitted
    /// with the rest, and a later frame for one opens it again). Before the
    /// clock is defined, the largest `ts`.
    pub fn end_time(&self) -> Option<u64> {
        let max = self.clock.max_ts()?;
        Some(match self.clock.time() {
            Some(e) => max.min(e.saturating_add(MINUTE)),
            None => max,
        })
    }

    /// Closes the windows up to the end of the minute of the event clock's
    /// time (an idle live partition): windows ahead of it, opened by frames
    /// no quorum vouched for, stay open. With fewer distinct uids than the
    /// quorum ever seen, up to the largest `ts`.
    pub fn close_idle(&mut self, out: &mut Vec<Closed>) {
        self.close_up_to(self.clock.time().or(self.clock.max_ts()), out);
        self.end_minute();
    }

    /// Raises the floor to `watermark` and closes what it passed: windows
    /// ending at or below it are closed for good ([`Watermark::END`]: every
    /// window, as a drained shard of a sharded bucket needs).
    pub fn close_through(&mut self, watermark: Watermark, out: &mut Vec<Closed>) {
        self.floor = self.floor.max(Some(watermark));
        self.flush(watermark.max(self.watermark().unwrap_or(watermark)), out);
        self.end_minute();
    }

    fn close_up_to(&mut self, time: Option<u64>, out: &mut Vec<Closed>) {
        if let Some(time) = time {
            let minute_end = time - time % MINUTE + MINUTE;
            self.floor = self.floor.max(Some(Watermark(minute_end)));
        }
        if let Some(wm) = self.watermark() {
            self.flush(wm, out);
        }
    }
}

#[cfg(test)]
mod tests;
