//! The merge of sharded windows: each shard (input partition) of a bucket
//! counts its own partial windows; [`Merger`] sums them and emits a window
//! once every shard of its bucket has closed it. Pure: pieces come in as data
//! in the order of one partials partition, with their sequence numbers.
//!
//! Normative rules (README, Semantics, "Shards"):
//! - a shard's *mark* is the largest watermark it published (a progress
//!   piece): every window of that shard ending at or below it was emitted;
//!   partials of a shard always come before the progress that covers them;
//! - a window `[a, b)` of a bucket whose shards are partitions `g + s·G`
//!   (s < S, G = P/S; [`Routing::shard_partitions`]) is
//!   complete when every shard's mark is `>= b`; with an idle bound `I`, also
//!   when the largest mark among those shards is `>= b + I` (shards behind it
//!   count as idle for that window);
//! - a partial for a window that is already complete is *late at the merge*:
//!   counted, never added (the window was emitted with what came in time).
//!
//! Everything depends on the order of pieces alone, so a merger replaying
//! from a [`MergeCheckpoint`] repeats every decision; emissions caused by
//! pieces below `handled_until` were already made durable and are dropped.

use std::collections::BTreeMap;

use crate::bucket::Routing;
use crate::window::{Closed, Seq};

/// One record of the partials topic, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece {
    /// A shard's closed window.
    Partial { partition: u32, closed: Closed },
    /// A shard emitted every window ending at or below `watermark`.
    Progress { partition: u32, watermark: u64 },
}

/// A merged window and the first partition of its bucket's shard group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Merged {
    pub partition: u32,
    pub closed: Closed,
}

/// What [`Merger::on_piece`] did with a piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Counted (a partial added, or a mark raised).
    Counted,
    /// A partial whose window was already complete.
    Late,
    /// Seen before (sequence number below the next expected one).
    Duplicate,
    /// Names a partition the routing does not have.
    OutOfRange,
}

/// Where a new owner of a partials partition resumes, and what it must know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeCheckpoint {
    /// First sequence number to replay (the commit offset).
    pub resume_seq: Seq,
    /// Emissions caused by pieces below this were already made durable.
    pub handled_until: Seq,
    /// Every shard's mark before `resume_seq`.
    pub marks: Vec<Option<u64>>,
}

#[derive(Debug)]
struct Open {
    /// Each shard's partial of this window, by its input partition: a
    /// partial that comes again from the same shard (a shard worker that
    /// restarted without its checkpoint and counted the window again)
    /// replaces the one before, never adds to it.
    parts: BTreeMap<u32, Closed>,
    first_seq: Seq,
    marks_before: Vec<Option<u64>>,
}

impl Open {
    /// The sum of every shard's partial.
    fn sum(&self) -> Closed {
        let mut parts = self.parts.values();
        let mut sum = *parts.next().expect("an open window has a partial");
        for part in parts {
            add(&mut sum, part);
        }
        sum
    }
}

/// Windows of one shard group by (end, minute?, start): emission order.
/// Whether a window is complete depends on its group's marks and its end
/// alone, and is monotone in the end: the complete windows of a group are
/// always a prefix of its map.
type Windows = BTreeMap<(u64, bool, u64), Open>;

/// The merge state of one partials partition.
#[derive(Debug)]
pub struct Merger {
    routing: Routing,
    idle_after: Option<u64>,
    marks: Vec<Option<u64>>,
    /// Open windows by shard group (its first partition): a piece only
    /// looks at its own group's windows, from the earliest end, and stops
    /// at the first incomplete one, so its cost does not grow with the
    /// number of open windows.
    open: BTreeMap<u32, Windows>,
    open_count: usize,
    next_seq: Option<Seq>,
    handled_until: Seq,
    late: u64,
    replaced: u64,
    examined: u64,
}

fn key(c: &Closed) -> (u64, bool, u64) {
    (c.end(), matches!(c, Closed::Minute { .. }), c.start())
}

/// Adds `part` to `sum` (same window). Saturating: counts come from
/// outside bytes, and a crafted partial must not wrap a sum around.
fn add(sum: &mut Closed, part: &Closed) {
    match (sum, part) {
        (Closed::Second { frames, .. }, Closed::Second { frames: f, .. }) => {
            *frames = frames.saturating_add(*f)
        }
        (
            Closed::Minute {
                frames,
                unique_users,
                ..
            },
            Closed::Minute {
                frames: f,
                unique_users: u,
                ..
            },
        ) => {
            *frames = frames.saturating_add(*f);
            *unique_users = unique_users.saturating_add(*u);
        }
        _ => unreachable!("one key, one window kind"),
    }
}

impl Merger {
    /// A fresh merge state. `idle_after`: the idle bound `I` in seconds of
    /// event time (`None`: wait for every shard).
    pub fn new(routing: Routing, idle_after: Option<u64>) -> Merger {
        Merger {
            routing,
            idle_after,
            marks: vec![None; routing.partitions() as usize],
            open: BTreeMap::new(),
            open_count: 0,
            next_seq: None,
            handled_until: 0,
            late: 0,
            replaced: 0,
            examined: 0,
        }
    }

    /// A merge state that replays from `cp.resume_seq`. The checkpoint's
    /// marks must be one per partition (the decoder checks it against the
    /// routing); marks of another length are not taken.
    pub fn resume(routing: Routing, idle_after: Option<u64>, cp: &MergeCheckpoint) -> Merger {
        let mut m = Merger::new(routing, idle_after);
        if cp.marks.len() == m.marks.len() {
            m.marks.clone_from(&cp.marks);
        }
        m.handled_until = cp.handled_until;
        m
    }

    /// Partials that came after their window was complete.
    pub fn late(&self) -> u64 {
        self.late
    }

    /// Partials that replaced an earlier partial of the same shard and
    /// window (a shard that counted the window again).
    pub fn replaced(&self) -> u64 {
        self.replaced
    }

    /// How many open windows were tested for completeness so far: the
    /// per-piece work, for tests and benchmarks.
    pub fn examined(&self) -> u64 {
        self.examined
    }

    pub fn open_windows(&self) -> usize {
        self.open_count
    }

    /// Every shard has published the end of its input
    /// ([`crate::window::Watermark::END`]) and nothing is open.
    pub fn done(&self) -> bool {
        self.open_count == 0 && self.marks.iter().all(|m| *m == Some(u64::MAX))
    }

    /// Every shard's mark.
    pub fn marks(&self) -> &[Option<u64>] {
        &self.marks
    }

    fn complete(&self, group: u32, end: u64) -> bool {
        let marks = || {
            self.routing
                .shard_partitions(group)
                .map(|p| self.marks[p as usize])
        };
        if marks().all(|m| m.is_some_and(|m| m >= end)) {
            return true;
        }
        let top = marks().flatten().max();
        match (self.idle_after, top) {
            (Some(idle), Some(top)) => top >= end.saturating_add(idle),
            _ => false,
        }
    }

    /// Takes the piece at `seq`, appending the windows it completed to `out`
    /// (unless a previous owner already emitted them).
    pub fn on_piece(&mut self, seq: Seq, piece: Piece, out: &mut Vec<Merged>) -> Step {
        if self.next_seq.is_some_and(|next| seq < next) {
            return Step::Duplicate;
        }
        self.next_seq = Some(seq.saturating_add(1));
        let group = match piece {
            Piece::Partial { partition, .. } | Piece::Progress { partition, .. }
                if partition >= self.routing.partitions() =>
            {
                return Step::OutOfRange;
            }
            Piece::Partial { partition, closed } => {
                let group = self.routing.partition(closed.start());
                let k = key(&closed);
                let open = self.open.get(&group).and_then(|w| w.get(&k)).is_some();
                if !open && self.complete(group, closed.end()) {
                    self.late += 1;
                    return Step::Late;
                }
                let marks = &self.marks;
                let window = self
                    .open
                    .entry(group)
                    .or_default()
                    .entry(k)
                    .or_insert_with(|| Open {
                        parts: BTreeMap::new(),
                        first_seq: seq,
                        marks_before: marks.clone(),
                    });
                if window.parts.insert(partition, closed).is_some() {
                    self.replaced += 1;
                } else if window.parts.len() == 1 {
                    self.open_count += 1;
                }
                group
            }
            Piece::Progress {
                partition,
                watermark,
            } => {
                let mark = &mut self.marks[partition as usize];
                *mark = (*mark).max(Some(watermark));
                self.routing.group_first(partition)
            }
        };
        self.emit_complete(group, seq, out);
        Step::Counted
    }

    /// Emits `group`'s complete windows: a prefix of its map (see [`Windows`]).
    fn emit_complete(&mut self, group: u32, seq: Seq, out: &mut Vec<Merged>) {
        let Some(mut windows) = self.open.remove(&group) else {
            return;
        };
        while let Some(entry) = windows.first_entry() {
            self.examined += 1;
            if !self.complete(group, entry.key().0) {
                break;
            }
            let open = entry.remove();
            self.open_count -= 1;
            if seq >= self.handled_until {
                out.push(Merged {
                    partition: group,
                    closed: open.sum(),
                });
            }
        }
        if !windows.is_empty() {
            self.open.insert(group, windows);
        }
    }

    /// Where to resume if this partials partition changed owner now, given
    /// the sequence number of the next piece not yet taken.
    pub fn checkpoint(&self, next_seq: Seq) -> MergeCheckpoint {
        let next = self.next_seq.unwrap_or(next_seq).max(next_seq);
        let oldest = self
            .open
            .values()
            .flat_map(BTreeMap::values)
            .min_by_key(|o| o.first_seq);
        let (resume_seq, marks) = match oldest {
            Some(o) => (o.first_seq, o.marks_before.clone()),
            None => (next, self.marks.clone()),
        };
        MergeCheckpoint {
            resume_seq,
            handled_until: next.max(self.handled_until),
            marks,
        }
    }
}

/// Sums partial windows offline (`aggregate --shards`): every shard's
/// windows, keyed by window, in emission order at the end.
#[derive(Debug, Default)]
pub struct OfflineMerge {
    windows: BTreeMap<(u64, bool, u64), Merged>,
}

impl OfflineMerge {
    pub fn add(&mut self, routing: &Routing, partition: u32, closed: Closed) {
        let group = routing.group_first(partition);
        self.windows
            .entry(key(&closed))
            .and_modify(|m| add(&mut m.closed, &closed))
            .or_insert(Merged {
                partition: group,
                closed,
            });
    }

    /// Every window, by end time (seconds before the minute ending with them).
    pub fn finish(self) -> impl Iterator<Item = Merged> {
        self.windows.into_values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sec(start: u64, frames: u64) -> Closed {
        Closed::Second { start, frames }
    }

    fn partial(p: u32, c: Closed) -> Piece {
        Piece::Partial {
            partition: p,
            closed: c,
        }
    }

    fn progress(p: u32, w: u64) -> Piece {
        Piece::Progress {
            partition: p,
            watermark: w,
        }
    }

    /// 4 partitions, 2 shards: buckets of 900 s at 0.. go to 0 and 2,
    /// 900.. to 1 and 3.
    fn routing() -> Routing {
        Routing::sharded(900, 4, 2).unwrap()
    }

    fn run(m: &mut Merger, pieces: &[Piece]) -> Vec<Merged> {
        let mut out = Vec::new();
        for (seq, p) in pieces.iter().enumerate() {
            m.on_piece(seq as u64, *p, &mut out);
        }
        out
    }

    #[test]
    fn a_window_is_emitted_once_every_shard_passed_it_with_the_sum() {
        let mut m = Merger::new(routing(), None);
        let out = run(
            &mut m,
            &[
                partial(0, sec(10, 3)),
                progress(0, 20),
                partial(2, sec(10, 4)),
                // Shard 1 has a window shard 0 never saw: 0 already passed it.
                partial(2, sec(12, 1)),
            ],
        );
        assert!(out.is_empty());
        let out = {
            let mut out = Vec::new();
            m.on_piece(4, progress(2, 12), &mut out);
            out
        };
        assert_eq!(
            out,
            vec![Merged {
                partition: 0,
                closed: sec(10, 7)
            }]
        );
        let mut out = Vec::new();
        m.on_piece(5, progress(2, 13), &mut out);
        assert_eq!(out[0].closed, sec(12, 1));
        // Another bucket's shards are 1 and 3: untouched by 0 and 2.
        m.on_piece(6, partial(1, sec(905, 1)), &mut out);
        m.on_piece(7, progress(1, 1000), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(m.open_windows(), 1);
    }

    #[test]
    fn an_idle_shard_stops_holding_a_window_once_another_passed_it_by_the_bound() {
        let mut m = Merger::new(routing(), Some(60));
        let out = run(
            &mut m,
            &[partial(0, sec(10, 3)), progress(0, 70), progress(0, 71)],
        );
        assert_eq!(
            out,
            vec![Merged {
                partition: 0,
                closed: sec(10, 3)
            }]
        );
        // The idle shard wakes up with a partial for that window: late.
        let mut out = Vec::new();
        assert_eq!(m.on_piece(3, partial(2, sec(10, 5)), &mut out), Step::Late);
        assert_eq!(m.late(), 1);
        // Without a bound it would wait.
        let mut strict = Merger::new(routing(), None);
        assert!(run(&mut strict, &[partial(0, sec(10, 3)), progress(0, 1000)]).is_empty());
    }

    #[test]
    fn resuming_from_a_checkpoint_repeats_the_decisions_without_reemitting() {
        let pieces: Vec<Piece> = (0..200u64)
            .map(|i| match i % 5 {
                0 => progress(0, 10 + i / 2),
                1 => progress(2, 8 + i / 2),
                2 => partial(0, sec(12 + i / 2, 1)),
                3 => partial(2, sec(12 + i / 2, 2)),
                _ => progress(3, i),
            })
            .collect();
        let reference = run(&mut Merger::new(routing(), Some(30)), &pieces);
        assert!(reference.len() > 30);
        for cut in [1usize, 7, 50, 123, 199] {
            let mut first = Merger::new(routing(), Some(30));
            let mut emitted = run(&mut first, &pieces[..cut]);
            let cp = first.checkpoint(cut as u64);
            assert!(cp.resume_seq <= cut as u64);
            let mut second = Merger::resume(routing(), Some(30), &cp);
            for (seq, p) in pieces.iter().enumerate().skip(cp.resume_seq as usize) {
                second.on_piece(seq as u64, *p, &mut emitted);
            }
            assert_eq!(emitted, reference, "cut at {cut}");
        }
    }

    #[test]
    fn the_end_of_every_shard_is_done() {
        let mut m = Merger::new(Routing::sharded(900, 2, 2).unwrap(), None);
        let out = run(
            &mut m,
            &[
                partial(1, sec(5, 1)),
                progress(0, u64::MAX),
                progress(1, u64::MAX),
            ],
        );
        assert_eq!(out.len(), 1);
        assert!(m.done());
        assert_eq!(
            m.on_piece(9, progress(7, 1), &mut Vec::new()),
            Step::OutOfRange
        );
    }

    /// A shard restarted with `--on-missing-checkpoint=restart` counts its
    /// windows again and publishes them again: the merge keeps one partial
    /// per shard and window, the latest.
    #[test]
    fn a_partial_that_comes_again_from_the_same_shard_replaces_the_first() {
        let mut m = Merger::new(routing(), None);
        let out = run(
            &mut m,
            &[
                partial(0, sec(10, 3)),
                partial(2, sec(10, 4)),
                // Shard 0 again (restarted): same window, same count.
                partial(0, sec(10, 3)),
                partial(0, sec(10, 3)),
                progress(0, 11),
                progress(2, 11),
            ],
        );
        assert_eq!(
            out,
            vec![Merged {
                partition: 0,
                closed: sec(10, 7)
            }]
        );
        assert_eq!(m.replaced(), 2);
        assert_eq!(m.open_windows(), 0);
    }

    /// Hostile counts saturate instead of wrapping around.
    #[test]
    fn sums_saturate() {
        let mut m = Merger::new(routing(), None);
        let out = run(
            &mut m,
            &[
                partial(0, sec(10, u64::MAX)),
                partial(2, sec(10, 5)),
                progress(0, 11),
                progress(2, 11),
            ],
        );
        assert_eq!(out[0].closed, sec(10, u64::MAX));
    }

    /// The per-piece work, counted as windows tested for completeness, is
    /// at most one more than the windows a piece emits, however many
    /// windows are open (each piece used to test every open window).
    #[test]
    fn per_piece_work_does_not_grow_with_open_windows() {
        for open in [10u64, 1_000, 20_000] {
            let mut m = Merger::new(routing(), None);
            let mut out = Vec::new();
            // `open` windows in both shard groups, held back by shards 2
            // and 3 that never publish progress.
            for i in 0..open {
                let first = (i / 900 % 2) as u32;
                m.on_piece(i, partial(first, sec(i, 1)), &mut out);
            }
            assert_eq!(m.open_windows() as u64, open);
            let before = m.examined();
            let pieces = 1_000u64;
            for i in 0..pieces {
                let seq = open + i;
                let piece = match i % 3 {
                    0 => progress(0, i),
                    1 => progress(1, i),
                    _ => partial(1, sec(900 + i % 900, 1)),
                };
                m.on_piece(seq, piece, &mut out);
            }
            assert!(out.is_empty());
            let work = m.examined() - before;
            assert!(work <= pieces, "{open} open windows: {work} tests");
        }
    }

    #[test]
    fn offline_merge_sums_shards_by_window() {
        let r = routing();
        let mut m = OfflineMerge::default();
        m.add(&r, 2, sec(10, 2));
        m.add(&r, 0, sec(10, 3));
        m.add(
            &r,
            0,
            Closed::Minute {
                start: 0,
                frames: 5,
                unique_users: 2,
            },
        );
        m.add(
            &r,
            1,
            Closed::Minute {
                start: 0,
                frames: 2,
                unique_users: 1,
            },
        );
        let all: Vec<Merged> = m.finish().collect();
        assert_eq!(all[0].closed, sec(10, 5));
        assert_eq!(
            all[1].closed,
            Closed::Minute {
                start: 0,
                frames: 7,
                unique_users: 3
            }
        );
    }
}
