//! One owned input partition as a pure state machine: records in, effects
//! out. No Kafka, no clock: the worker loop feeds it each record's offset
//! and payload and carries out what [`Partition::on_record`] says (send the
//! closed windows, forward or dead-letter the record, or seek).
//!
//! A partition (re)starts exactly at its committed checkpoint, or at the
//! log's first record when it has none. A first record from anywhere else
//! is dropped with [`Step::Seek`]. After that seek the first record is the
//! first one there is at or after the start: one further on means the
//! offsets between hold nothing to read (transaction markers, aborted or
//! compacted records) or were removed by retention. The partition starts
//! there and reports the [`Gap`], as it does for any later jump in offsets;
//! the worker tells the two apart by the log's start offset. Records below
//! the checkpoint's `handled_until` were fully handled by a previous owner:
//! replaying them rebuilds the windows but sends no side output again
//! (`replay` in [`Step`]).
//!
//! The routing guard ([`Partition::guarded`]): a frame whose `ts` routes to
//! another partition is not counted but dead-lettered as
//! [`Invalid::WrongPartition`]; counting it would split its minute over two
//! partitions, each emitting the same window key with part of the count.

use crate::bucket::Routing;
pub use crate::cursor::{Admit, Cursor, Gap, SeekTo};
use crate::frame::{FrameParser, Invalid, Line};
use crate::window::{Admission, Checkpoint, Closed, Watermark, WatermarkRule, Windows};

/// What decides a partition's counts, the same for every owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    pub watermark: WatermarkRule,
    pub parser: FrameParser,
    /// A frame's `ts` may be at most this far ahead of its record's
    /// timestamp; `None`: the parser's own bound only (`--max-ts`).
    pub max_future: Option<u64>,
}

impl Rules {
    /// Parses a record's payload by these rules: with `max_future`, a `ts`
    /// may be at most that far ahead of the record's own time (unix
    /// seconds, if it has one). Pure, so that a batch's records can be
    /// parsed on several threads before they are handed to
    /// [`Partition::on_parsed`] in order.
    pub fn parse<'a>(&self, record_time: Option<u64>, payload: &'a [u8]) -> Line<'a> {
        let parser = match (self.max_future, record_time) {
            (Some(ahead), Some(now)) => self.parser.bounded_at(now, ahead),
            _ => self.parser,
        };
        parser.parse(payload)
    }
}

/// Where a partition starts.
// A checkpoint holds the clock's uids ahead inline (1.6 KB) so that it stays
// `Copy`; one is made per partition start.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// At a committed checkpoint.
    Checkpoint(Checkpoint),
    /// No checkpoint: at the log's first available offset.
    Fresh { log_start: u64 },
}

/// What the worker loop does with one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Not where the partition starts: drop it and seek.
    Seek(SeekTo),
    /// Seen before (re-delivered after a seek): already counted.
    Duplicate,
    /// A blank line: nothing to count.
    Blank,
    /// A frame at `ts`. `replay`: a previous owner already forwarded it;
    /// `counted`: in which of its windows it counted (it is late for the
    /// others).
    Frame {
        replay: bool,
        counted: Admission,
        ts: u64,
    },
    /// An invalid record. `replay`: a previous owner already dead-lettered it.
    Invalid { reason: Invalid, replay: bool },
}

#[derive(Debug)]
pub struct Partition {
    rules: Rules,
    windows: Windows,
    cursor: Cursor,
    /// Records below this offset were handled by a previous owner.
    handled_until: u64,
    /// The input topic's routing and this partition's number in it.
    guard: Option<(Routing, u32)>,
}

impl Partition {
    pub fn new(start: Start, rules: Rules) -> Partition {
        let (windows, handled_until, cursor) = match &start {
            Start::Checkpoint(cp) => (
                Windows::resume(rules.watermark, cp),
                cp.handled_until,
                Cursor::at(cp.resume_seq),
            ),
            Start::Fresh { log_start } => {
                (Windows::new(rules.watermark), 0, Cursor::fresh(*log_start))
            }
        };
        Partition {
            rules,
            windows,
            cursor,
            handled_until,
            guard: None,
        }
    }

    /// Counts only the frames that `routing` sends to partition `id`.
    pub fn guarded(self, routing: Routing, id: u32) -> Partition {
        Partition {
            guard: Some((routing, id)),
            ..self
        }
    }

    /// Handles the record at `offset` with timestamp `record_time` (unix
    /// seconds, if it has one), appending the windows it closed to `closed`.
    pub fn on_record(
        &mut self,
        offset: u64,
        record_time: Option<u64>,
        payload: &[u8],
        closed: &mut Vec<Closed>,
    ) -> Step {
        let line = self.rules.parse(record_time, payload);
        self.on_parsed(offset, line, closed)
    }

    /// Handles the record at `offset` whose payload [`Rules::parse`] made
    /// `line` (by this partition's rules), appending the windows it closed
    /// to `closed`: the same as [`Partition::on_record`].
    pub fn on_parsed(&mut self, offset: u64, line: Line<'_>, closed: &mut Vec<Closed>) -> Step {
        match self.cursor.admit(offset) {
            Admit::Seek(to) => return Step::Seek(to),
            Admit::Duplicate => return Step::Duplicate,
            Admit::Take => {}
        }
        let replay = offset < self.handled_until;
        match line {
            Line::Frame(frame)
                if self
                    .guard
                    .is_some_and(|(r, id)| r.route(frame.ts, &frame.uid) != id) =>
            {
                Step::Invalid {
                    reason: Invalid::WrongPartition,
                    replay,
                }
            }
            Line::Frame(frame) => {
                let counted = self.windows.record(offset, frame.ts, &frame.uid);
                if let Some(wm) = self.windows.watermark() {
                    self.windows.flush(wm, closed);
                }
                Step::Frame {
                    replay,
                    counted,
                    ts: frame.ts,
                }
            }
            Line::Blank => Step::Blank,
            Line::Invalid(reason) => Step::Invalid { reason, replay },
        }
    }

    /// Whether the partition has read its first record (it knows where it is).
    pub fn started(&self) -> bool {
        self.cursor.started()
    }

    /// The offsets the last record skipped, once.
    pub fn take_gap(&mut self) -> Option<Gap> {
        self.cursor.take_gap()
    }

    /// Moves the position on to `offset` without reading: the offsets up to
    /// it hold nothing to read (the end of input after compacted or aborted
    /// records), or are gone (retention). Never moves back.
    pub fn skip_to(&mut self, offset: u64) {
        self.cursor.skip_to(offset);
    }

    /// Whether any window is open.
    pub fn has_open_windows(&self) -> bool {
        self.windows.open_windows() > 0
    }

    /// Closes every open window now (a drained partition); frames for them
    /// that still arrive are late.
    pub fn close_all(&mut self, closed: &mut Vec<Closed>) {
        self.windows.close_all(closed);
    }

    /// Closes the open windows up to the event clock's minute (an idle live
    /// partition); windows no quorum vouched for stay open.
    pub fn close_idle(&mut self, closed: &mut Vec<Closed>) {
        self.windows.close_idle(closed);
    }

    /// Closes every window ending at or below `watermark`, now and for
    /// good (a drained shard: [`Watermark::END`]).
    pub fn close_through(&mut self, watermark: Watermark, closed: &mut Vec<Closed>) {
        self.windows.close_through(watermark, closed);
    }

    pub fn watermark(&self) -> Option<Watermark> {
        self.windows.watermark()
    }

    /// The offset of the next record to read: where the partition is.
    pub fn position(&self) -> u64 {
        self.cursor.position()
    }

    /// Where a new owner resumes if the partition changed hands now.
    pub fn checkpoint(&self) -> Checkpoint {
        let mut cp = self.windows.checkpoint(self.position());
        // While replaying, a previous owner may have handled more than this
        // one has read: never move that mark back.
        cp.handled_until = cp.handled_until.max(self.handled_until);
        cp
    }

    pub fn windows(&self) -> &Windows {
        &self.windows
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::Watermark;

    const L: u64 = 5;
    const BOTH: Admission = Admission {
        second: true,
        minute: true,
    };
    fn on_time(step: &Step) -> bool {
        matches!(
            step,
            Step::Frame {
                replay: false,
                counted: BOTH,
                ..
            }
        )
    }

    fn rules() -> Rules {
        Rules {
            watermark: WatermarkRule::largest_ts(L),
            parser: FrameParser::new(0, 4_000_000_000),
            max_future: Some(86_400),
        }
    }

    /// Record timestamps of these tests: event time is about now.
    const NOW: Option<u64> = Some(1_000_000);

    fn frame(ts: u64, uid: &str) -> Vec<u8> {
        format!(r#"{{"ts":{ts},"uid":"{uid}"}}"#).into_bytes()
    }

    /// Feeds `records` (offset, payload) and returns the steps and closed windows.
    fn feed(p: &mut Partition, records: &[(u64, Vec<u8>)]) -> (Vec<Step>, Vec<Closed>) {
        let mut closed = Vec::new();
        let steps = records
            .iter()
            .map(|(o, payload)| p.on_record(*o, NOW, payload, &mut closed))
            .collect();
        (steps, closed)
    }

    /// A stream of one frame per second from ts 1000, offsets from 0.
    fn stream(n: u64) -> Vec<(u64, Vec<u8>)> {
        (0..n)
            .map(|i| (i, frame(1000 + i, &format!("u{}", i % 3))))
            .collect()
    }

    #[test]
    fn fresh_start_counts_from_the_log_start_and_emits_closed_windows() {
        let mut p = Partition::new(Start::Fresh { log_start: 0 }, rules());
        let (steps, closed) = feed(&mut p, &stream(10));
        assert!(steps.iter().all(on_time));
        // Watermark 1009 - 5 = 1004: seconds 1000..=1003 closed.
        assert_eq!(
            closed,
            (1000..1004)
                .map(|s| Closed::Second {
                    start: s,
                    frames: 1
                })
                .collect::<Vec<_>>()
        );
        assert_eq!(p.position(), 10);
    }

    #[test]
    fn fresh_start_seeks_back_when_the_first_record_is_not_the_log_start() {
        let mut p = Partition::new(Start::Fresh { log_start: 3 }, rules());
        let mut closed = Vec::new();
        assert_eq!(
            p.on_record(7, NOW, &frame(1000, "a"), &mut closed),
            Step::Seek(SeekTo::Beginning)
        );
        assert!(on_time(&p.on_record(
            3,
            NOW,
            &frame(1000, "a"),
            &mut closed
        )));
    }

    /// After the seek to its checkpoint, a record further on is the first
    /// there is: the partition starts there and reports the gap.
    #[test]
    fn after_one_seek_a_later_first_record_starts_the_partition_with_a_gap() {
        let mut first = Partition::new(Start::Fresh { log_start: 0 }, rules());
        feed(&mut first, &stream(50));
        let cp = first.checkpoint();
        let mut p = Partition::new(Start::Checkpoint(cp), rules());
        let mut closed = Vec::new();
        let later = cp.resume_seq + 7;
        let step = p.on_record(later, NOW, &frame(1100, "a"), &mut closed);
        assert_eq!(step, Step::Seek(SeekTo::Offset(cp.resume_seq)));
        assert_eq!(p.take_gap(), None);
        let step = p.on_record(later, NOW, &frame(1100, "a"), &mut closed);
        assert!(matches!(step, Step::Frame { .. }), "{step:?}");
        assert_eq!(
            p.take_gap(),
            Some(Gap {
                from: cp.resume_seq,
                to: later
            })
        );
        assert_eq!(p.take_gap(), None);
        // A jump between records (a transaction marker) is a gap too.
        p.on_record(later + 2, NOW, &frame(1100, "b"), &mut closed);
        assert_eq!(
            p.take_gap(),
            Some(Gap {
                from: later + 1,
                to: later + 2
            })
        );
        assert_eq!(p.position(), later + 3);
        p.skip_to(later + 10);
        assert_eq!(p.position(), later + 10);
        p.skip_to(1);
        assert_eq!(p.position(), later + 10);
    }

    /// A new owner resuming from a checkpoint makes the same decisions as
    /// the old owner would have, and re-emits nothing.
    #[test]
    fn resume_from_a_checkpoint_gives_the_same_windows() {
        let records = stream(200);
        let mut whole = Partition::new(Start::Fresh { log_start: 0 }, rules());
        let (_, all_closed) = feed(&mut whole, &records);

        for cut in [1usize, 37, 61, 120, 199] {
            let mut first = Partition::new(Start::Fresh { log_start: 0 }, rules());
            let (_, mut closed) = feed(&mut first, &records[..cut]);
            let cp = first.checkpoint();
            let mut second = Partition::new(Start::Checkpoint(cp), rules());
            let resume = cp.resume_seq as usize;
            let (steps, more) = feed(&mut second, &records[resume..]);
            closed.extend(more);
            assert_eq!(closed, all_closed, "cut at {cut}");
            // Records before the cut are replayed without side outputs.
            for (i, step) in steps.iter().enumerate() {
                let replay = resume + i < cut;
                assert!(
                    matches!(step, Step::Frame { replay: r, counted: BOTH, .. } if *r == replay),
                    "cut {cut}, record {}: {step:?}",
                    resume + i
                );
            }
        }
    }

    #[test]
    fn resume_seeks_to_the_checkpoint_and_drops_other_records() {
        let mut first = Partition::new(Start::Fresh { log_start: 0 }, rules());
        feed(&mut first, &stream(100));
        let cp = first.checkpoint();
        assert!(cp.resume_seq > 0 && cp.resume_seq < 100);
        let mut second = Partition::new(Start::Checkpoint(cp), rules());
        let mut closed = Vec::new();
        // Before the checkpoint: always a seek (the one after the
        // checkpoint is the first there is once a seek was made, see above).
        for wrong in [0, cp.resume_seq - 1] {
            assert_eq!(
                second.on_record(wrong, NOW, &frame(1000, "a"), &mut closed),
                Step::Seek(SeekTo::Offset(cp.resume_seq))
            );
        }
        assert!(closed.is_empty());
        assert_eq!(second.position(), cp.resume_seq);
    }

    #[test]
    fn redelivered_records_are_not_counted_twice() {
        let mut p = Partition::new(Start::Fresh { log_start: 0 }, rules());
        let records = stream(5);
        feed(&mut p, &records);
        let (steps, _) = feed(&mut p, &records[2..]);
        assert!(steps.iter().all(|s| *s == Step::Duplicate));
        let mut closed = Vec::new();
        p.close_all(&mut closed);
        assert_eq!(
            closed
                .iter()
                .filter(|c| matches!(c, Closed::Second { .. }))
                .count(),
            5
        );
        assert!(closed.contains(&Closed::Minute {
            start: 960,
            frames: 5,
            unique_users: 3
        }));
    }

    /// After an aborted transaction the worker drops its partitions and
    /// replays from the committed checkpoint: a fresh machine from the same
    /// checkpoint, fed the same records, yields the same effects again.
    #[test]
    fn rewind_to_the_committed_checkpoint_repeats_the_same_effects() {
        let records = stream(150);
        let mut p = Partition::new(Start::Fresh { log_start: 0 }, rules());
        feed(&mut p, &records[..40]);
        let committed = p.checkpoint();
        let resume = committed.resume_seq as usize;
        let (steps_a, closed_a) = feed(&mut p, &records[40..]);

        let mut again = Partition::new(Start::Checkpoint(committed), rules());
        let (steps_b, closed_b) = feed(&mut again, &records[resume..]);
        assert_eq!(closed_b, closed_a);
        assert_eq!(&steps_b[40 - resume..], &steps_a[..]);
    }

    #[test]
    fn invalid_records_are_dead_lettered_once() {
        let mut p = Partition::new(Start::Fresh { log_start: 0 }, rules());
        let mut closed = Vec::new();
        assert_eq!(
            p.on_record(0, NOW, b"not json", &mut closed),
            Step::Invalid {
                reason: Invalid::NotJson,
                replay: false
            }
        );
        assert_eq!(p.on_record(1, NOW, b"", &mut closed), Step::Blank);
        assert!(on_time(&p.on_record(
            2,
            NOW,
            &frame(1000, "a"),
            &mut closed
        )));
        let cp = Checkpoint {
            handled_until: 3,
            ..p.checkpoint()
        };
        let mut again = Partition::new(Start::Checkpoint(cp), rules());
        let first = cp.resume_seq;
        let payload: &[u8] = if first == 0 { b"not json" } else { b"" };
        let step = again.on_record(first, NOW, payload, &mut closed);
        assert!(matches!(
            step,
            Step::Invalid { replay: true, .. } | Step::Blank
        ));
    }

    #[test]
    fn close_all_raises_the_floor_so_late_frames_stay_late() {
        let mut p = Partition::new(Start::Fresh { log_start: 0 }, rules());
        let mut closed = Vec::new();
        p.on_record(0, NOW, &frame(1000, "a"), &mut closed);
        assert!(p.has_open_windows());
        p.close_all(&mut closed);
        assert!(!p.has_open_windows());
        let cp = p.checkpoint();
        assert_eq!(cp.floor, Some(Watermark(1020)));
        closed.clear();
        p.on_record(1, NOW, &frame(1001, "b"), &mut closed);
        assert!(!p.has_open_windows(), "a frame of a closed minute is late");
    }

    /// The validity bound follows each record's own timestamp: a frame is
    /// valid up to a day ahead of its record, however old the process or
    /// its clock, and the same record decides the same on every replay.
    #[test]
    fn the_ts_bound_is_relative_to_the_record_time() {
        let mut p = Partition::new(Start::Fresh { log_start: 0 }, rules());
        let mut closed = Vec::new();
        let day = 86_400;
        for (offset, record_time) in [(0, 1_000), (1, 10 * day), (2, 400 * day)] {
            let ts = record_time + day - 1;
            assert!(matches!(
                p.on_record(offset, Some(record_time), &frame(ts, "a"), &mut closed),
                Step::Frame { .. }
            ));
        }
        assert_eq!(
            p.on_record(3, Some(1_000), &frame(1_000 + day + 1, "a"), &mut closed),
            Step::Invalid {
                reason: Invalid::TsOutOfRange,
                replay: false
            }
        );
        // A record without a timestamp gets the parser's own bound.
        assert!(matches!(
            p.on_record(4, None, &frame(3_000_000_000, "a"), &mut closed),
            Step::Frame { .. }
        ));
    }

    /// A frame routed elsewhere is dead-lettered, not counted: the windows
    /// are those of the other frames alone, and a replay does not
    /// dead-letter it again.
    #[test]
    fn the_routing_guard_refuses_frames_of_another_partition() {
        let routing = Routing::new(60, 2).unwrap();
        // Minute 16 (ts 960..1019) routes to partition 0, minute 17 to 1.
        assert_eq!(routing.route(1000, "a"), 0);
        assert_eq!(routing.route(1030, "a"), 1);
        let records: Vec<(u64, Vec<u8>)> = vec![
            (0, frame(1000, "a")),
            (1, frame(1030, "stray")),
            (2, frame(1001, "b")),
        ];
        let mut p = Partition::new(Start::Fresh { log_start: 0 }, rules()).guarded(routing, 0);
        let (steps, _) = feed(&mut p, &records);
        assert!(on_time(&steps[0]) && on_time(&steps[2]), "{steps:?}");
        assert_eq!(
            steps[1],
            Step::Invalid {
                reason: Invalid::WrongPartition,
                replay: false
            }
        );
        let mut closed = Vec::new();
        p.close_all(&mut closed);
        assert_eq!(
            closed
                .iter()
                .filter(|c| matches!(c, Closed::Minute { .. }))
                .collect::<Vec<_>>(),
            vec![&Closed::Minute {
                start: 960,
                frames: 2,
                unique_users: 2
            }]
        );
        let cp = Checkpoint {
            resume_seq: 0,
            ..p.checkpoint()
        };
        let mut again = Partition::new(Start::Checkpoint(cp), rules()).guarded(routing, 0);
        let (steps, _) = feed(&mut again, &records);
        assert_eq!(
            steps[1],
            Step::Invalid {
                reason: Invalid::WrongPartition,
                replay: true
            }
        );
        // Unguarded, the same frame is counted (what main did).
        let mut open = Partition::new(Start::Fresh { log_start: 0 }, rules());
        assert!(on_time(&feed(&mut open, &records).0[1]));
    }

    #[test]
    fn a_late_frame_says_for_which_windows() {
        let mut p = Partition::new(Start::Fresh { log_start: 0 }, rules());
        let (_, _) = feed(&mut p, &stream(100));
        let mut closed = Vec::new();
        let step = p.on_record(100, NOW, &frame(1010, "z"), &mut closed);
        assert_eq!(
            step,
            Step::Frame {
                replay: false,
                counted: Admission {
                    second: false,
                    minute: false
                },
                ts: 1010
            }
        );
        assert_eq!(p.watermark(), Some(Watermark(1094)));
    }
}
