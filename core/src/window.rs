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
//! For rebalance-safe commits the core also knows, per open window, the
//! sequence number (Kafka offset or line index) of its first counted frame, so
//! that [`Windows::checkpoint`] can say where a new owner must resume.
//!
//! What input makes them hold: bounded by [`horizon`], measured by [`size`].

use std::collections::{btree_map, BTreeMap, HashSet};

use rustc_hash::FxBuildHasher;

use crate::clock::{EventClock, DEFAULT_QUORUM};

mod horizon;
mod size;

pub use horizon::BeyondHorizon;
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

/// How a partition's watermark follows its frames: `E - lateness`, where
/// `E` is the time `quorum` distinct uids vouch for ([`EventClock`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatermarkRule {
    pub lateness: u64,
    pub quorum: usize,
    /// How far past the watermark `W` an open window may lie, in seconds:
    /// a frame dated at or below `W + horizon` drops the open minutes that
    /// start after it, and their seconds ([`horizon`]). `None`: where a
    /// [`crate::bucket::Routing`] is known, its cycle ([`WatermarkRule::resolved`]);
    /// bare [`Windows`] have none.
    pub horizon: Option<u64>,
}

impl WatermarkRule {
    pub fn new(lateness: u64, quorum: usize) -> WatermarkRule {
        WatermarkRule {
            lateness,
            quorum,
            horizon: None,
        }
    }

    pub fn with_horizon(self, horizon: Option<u64>) -> WatermarkRule {
        WatermarkRule { horizon, ..self }
    }

    /// The rule with its horizon fixed: the given one, or the routing's
    /// cycle, the time from one of a partition's buckets to its next (so a
    /// partition's honest jump to its next bucket stays within it).
    pub fn resolved(self, routing: &crate::bucket::Routing) -> WatermarkRule {
        self.with_horizon(Some(self.horizon.unwrap_or_else(|| routing.cycle_secs())))
    }

    /// The plain largest-`ts` rule (quorum 1).
    pub fn largest_ts(lateness: u64) -> WatermarkRule {
        WatermarkRule::new(lateness, 1)
    }

    fn clock(&self) -> EventClock {
        EventClock::new(self.quorum)
    }
}

impl Default for WatermarkRule {
    fn default() -> Self {
        WatermarkRule::new(5, DEFAULT_QUORUM)
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
    /// The partition's event clock before `first_seq`.
    clock_before: EventClock,
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

#[derive(Debug, Clone, Copy)]
struct SecondWindow {
    frames: u64,
    first_seq: Seq,
    clock_before: EventClock,
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

/// Where a new owner of the partition must resume to rebuild the open windows
/// exactly, and what it must know to make the same decisions from there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// First sequence number to replay (the commit offset).
    pub resume_seq: Seq,
    /// The partition's event clock before `resume_seq`.
    pub clock_before: EventClock,
    /// Frames before this sequence number were already fully handled (their
    /// side outputs sent); replaying them only rebuilds window state.
    pub handled_until: Seq,
    /// Windows ending at or below this watermark were already emitted.
    pub emitted: Option<Watermark>,
    /// Watermark floor left by [`Windows::close_all`] (idle or drained partition).
    pub floor: Option<Watermark>,
}

/// All open windows of one partition.
#[derive(Debug)]
pub struct Windows {
    lateness: u64,
    clock: EventClock,
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
        Windows {
            lateness: rule.lateness,
            clock: rule.clock(),
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

    /// A fresh core for a new owner of the partition, which will replay from
    /// `checkpoint.resume_seq`.
    pub fn resume(rule: WatermarkRule, checkpoint: &Checkpoint) -> Windows {
        let mut windows = Windows::new(rule);
        let cp = checkpoint.clock_before;
        windows.clock = if cp.quorum() == rule.quorum {
            cp
        } else {
            // The quorum changed since the checkpoint: go on from the time
            // the old clock stood at.
            cp.time()
                .map_or_else(|| rule.clock(), |t| EventClock::at(rule.quorum, t))
        };
        windows.already_emitted = checkpoint.emitted;
        windows.floor = checkpoint.floor;
        windows
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

    /// Estimated heap bytes of the open windows: their entries (with the
    /// event clock each keeps) and their sets of distinct uids. Kept up to
    /// date by every frame and every close, at O(1) cost.
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
        let clock_before = self.clock;
        let mut admission = Admission::default();

        if self.is_closed(second + SECOND) {
            self.late.seconds += 1;
        } else {
            let window = match self.seconds.entry(second) {
                btree_map::Entry::Occupied(e) => e.into_mut(),
                btree_map::Entry::Vacant(e) => {
                    self.bytes += SECOND_ENTRY_BYTES;
                    e.insert(SecondWindow {
                        frames: 0,
                        first_seq: seq,
                        clock_before,
                    })
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
                    self.bytes += MINUTE_ENTRY_BYTES;
                    e.insert(MinuteWindow {
                        frames: 0,
                        packed: HashSet::default(),
                        other: HashSet::default(),
                        other_text: 0,
                        first_seq: seq,
                        clock_before,
                    })
                }
            };
            window.frames += 1;
            self.bytes += window.insert(uid);
            admission.minute = true;
        }

        self.clock.observe(uid, ts);
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
    /// that went idle (live mode) or was drained (batch mode). The watermark
    /// is raised to the end of the minute of the largest `ts`, so a window
    /// closed here can never be emitted again with another value: frames for
    /// it that still arrive are late.
    pub fn close_all(&mut self, out: &mut Vec<Closed>) {
        self.close_up_to(self.clock.max_ts(), out);
        debug_assert_eq!(self.open_windows(), 0);
    }

    /// Closes the windows up to the end of the minute of the event clock's
    /// time (an idle live partition): windows ahead of it, opened by frames
    /// no quorum vouched for, stay open. With fewer distinct uids than the
    /// quorum ever seen, up to the largest `ts`.
    pub fn close_idle(&mut self, out: &mut Vec<Closed>) {
        self.close_up_to(self.clock.time().or(self.clock.max_ts()), out);
    }

    /// Raises the floor to `watermark` and closes what it passed: windows
    /// ending at or below it are closed for good ([`Watermark::END`]: every
    /// window, as a drained shard of a sharded bucket needs).
    pub fn close_through(&mut self, watermark: Watermark, out: &mut Vec<Closed>) {
        self.floor = self.floor.max(Some(watermark));
        self.flush(watermark.max(self.watermark().unwrap_or(watermark)), out);
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

    /// Where to resume if this partition changed owner now, given the
    /// sequence number of the next frame not yet recorded.
    pub fn checkpoint(&self, next_seq: Seq) -> Checkpoint {
        let oldest = self
            .seconds
            .values()
            .map(|w| (w.first_seq, w.clock_before))
            .chain(self.minutes.values().map(|w| (w.first_seq, w.clock_before)))
            .min_by_key(|&(seq, _)| seq);
        let (resume_seq, clock_before) = oldest.unwrap_or((next_seq, self.clock));
        Checkpoint {
            resume_seq,
            clock_before,
            handled_until: next_seq,
            emitted: self.watermark().max(self.already_emitted),
            floor: self.floor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(lateness: u64, frames: &[(u64, &str)]) -> (Vec<Closed>, LateCounts) {
        let mut w = Windows::new(WatermarkRule::largest_ts(lateness));
        let mut out = Vec::new();
        for (seq, &(ts, uid)) in frames.iter().enumerate() {
            w.record(seq as u64, ts, uid);
            w.flush(w.watermark().unwrap(), &mut out);
        }
        w.flush(Watermark::END, &mut out);
        (out, w.late())
    }

    #[test]
    fn counts_seconds_and_distinct_minutes() {
        let (out, late) = run(
            5,
            &[(120, "a"), (120, "b"), (121, "a"), (179, "c"), (180, "a")],
        );
        assert_eq!(late, LateCounts::default());
        assert_eq!(
            out,
            vec![
                Closed::Second {
                    start: 120,
                    frames: 2
                },
                Closed::Second {
                    start: 121,
                    frames: 1
                },
                Closed::Second {
                    start: 179,
                    frames: 1
                },
                Closed::Minute {
                    start: 120,
                    frames: 4,
                    unique_users: 3
                },
                Closed::Second {
                    start: 180,
                    frames: 1
                },
                Closed::Minute {
                    start: 180,
                    frames: 1,
                    unique_users: 1
                },
            ]
        );
    }

    #[test]
    fn window_closes_exactly_when_watermark_reaches_its_end() {
        let mut w = Windows::new(WatermarkRule::largest_ts(5));
        let mut out = Vec::new();
        w.record(0, 100, "a");
        w.record(1, 105, "a");
        w.flush(w.watermark().unwrap(), &mut out);
        assert!(out.is_empty(), "watermark 100 must not close [100,101)");
        w.record(2, 106, "a");
        w.flush(w.watermark().unwrap(), &mut out);
        assert_eq!(
            out,
            vec![Closed::Second {
                start: 100,
                frames: 1
            }]
        );
        // Second 100 is closed now: a frame for it is late for its second only.
        assert_eq!(
            w.record(3, 100, "b"),
            Admission {
                second: false,
                minute: true
            }
        );
        assert_eq!(
            w.late(),
            LateCounts {
                seconds: 1,
                minutes: 0
            }
        );
    }

    #[test]
    fn late_for_minute_and_second() {
        let (out, late) = run(5, &[(100, "a"), (200, "b"), (110, "c")]);
        assert_eq!(
            late,
            LateCounts {
                seconds: 1,
                minutes: 1
            }
        );
        assert!(out.contains(&Closed::Minute {
            start: 60,
            frames: 1,
            unique_users: 1
        }));
    }

    #[test]
    fn within_lateness_is_counted() {
        let (out, late) = run(5, &[(60, "a"), (124, "b"), (119, "c")]);
        assert_eq!(
            late,
            LateCounts {
                seconds: 0,
                minutes: 0
            }
        );
        assert!(out.contains(&Closed::Minute {
            start: 60,
            frames: 2,
            unique_users: 2
        }));
    }

    #[test]
    fn non_hex_uids_are_counted_exactly_beside_packed_ones() {
        let (out, _) = run(
            0,
            &[
                (0, "ab"),
                (0, "AB"),
                (0, "ab"),
                (0, "0ab"),
                (0, "Привет"),
                (0, "Привет"),
            ],
        );
        assert!(out.contains(&Closed::Minute {
            start: 0,
            frames: 6,
            unique_users: 4
        }));
    }

    #[test]
    fn packing_is_injective_on_leading_zeros() {
        assert_ne!(pack_hex_uid("0a"), pack_hex_uid("a"));
        assert_eq!(pack_hex_uid("G"), None);
        assert_eq!(pack_hex_uid(&"f".repeat(31)), None);
    }

    #[test]
    fn close_all_closes_everything_and_keeps_it_closed() {
        let mut w = Windows::new(WatermarkRule::largest_ts(5));
        let mut out = Vec::new();
        w.record(0, 130, "a");
        w.record(1, 131, "b");
        w.close_all(&mut out);
        assert_eq!(out.len(), 3);
        assert_eq!(w.open_windows(), 0);
        // A frame for the closed minute is late for both kinds now.
        assert_eq!(
            w.record(2, 135, "c"),
            Admission {
                second: false,
                minute: false
            }
        );
        assert_eq!(
            w.record(3, 180, "c"),
            Admission {
                second: true,
                minute: true
            }
        );
        // The floor survives a handover.
        let cp = w.checkpoint(4);
        let mut resumed = Windows::resume(WatermarkRule::largest_ts(5), &cp);
        assert_eq!(
            resumed.record(4, 150, "d"),
            Admission {
                second: false,
                minute: false
            }
        );
    }

    #[test]
    fn resume_from_checkpoint_rebuilds_open_windows_without_reemitting() {
        let frames: Vec<(u64, String)> = (0..400u64)
            .map(|i| {
                (
                    1000 + i / 3 + (i % 7 == 0) as u64 * 3,
                    format!("{:x}", i % 50),
                )
            })
            .collect();
        let mut reference = Windows::new(WatermarkRule::largest_ts(5));
        let mut expected = Vec::new();
        for (seq, (ts, uid)) in frames.iter().enumerate() {
            reference.record(seq as u64, *ts, uid);
            reference.flush(reference.watermark().unwrap(), &mut expected);
        }
        reference.flush(Watermark::END, &mut expected);

        for cut in [1usize, 50, 133, 250, 399] {
            let mut first = Windows::new(WatermarkRule::largest_ts(5));
            let mut emitted = Vec::new();
            for (seq, (ts, uid)) in frames[..cut].iter().enumerate() {
                first.record(seq as u64, *ts, uid);
                first.flush(first.watermark().unwrap(), &mut emitted);
            }
            let cp = first.checkpoint(cut as u64);
            assert!(cp.resume_seq <= cut as u64);
            let mut second = Windows::resume(WatermarkRule::largest_ts(5), &cp);
            for (seq, (ts, uid)) in frames.iter().enumerate().skip(cp.resume_seq as usize) {
                second.record(seq as u64, *ts, uid);
                second.flush(second.watermark().unwrap(), &mut emitted);
            }
            second.flush(Watermark::END, &mut emitted);
            assert_eq!(emitted, expected, "cut at {cut}");
        }
    }
}
