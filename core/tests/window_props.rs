//! Property tests of the per-partition window core ([`Windows`]) against the
//! normative rules of the issue:
//!
//! - the watermark is the largest `ts` seen in the partition minus L;
//! - a window `[a, b)` closes, and is emitted once, when the watermark >= b;
//! - a frame counts in its second and in its minute independently, each only
//!   if that window is still open on arrival, and is late for that kind otherwise;
//! - end of input flushes everything; only windows with >= 1 counted frame
//!   are emitted.
//!
//! Drivers call `record` then `flush(watermark)` per frame, as the offline
//! `aggregate` and the Kafka worker do.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use proptest::sample::Index;
use timebucket_core::bucket::Routing;
use timebucket_core::partitioned::PartitionedWindows;
use timebucket_core::window::{
    Admission, Closed, LateCounts, Watermark, WatermarkRule, Windows, MAX_TS,
};

#[path = "window_props/resume.rs"]
mod resume;

/// A uid pool that mixes uids the core packs into integers (lowercase hex,
/// up to 30 digits) with ones it keeps as text, including pairs that a sloppy
/// packing would merge ("a" / "0a", "ab" / "AB").
const UIDS: &[&str] = &[
    "a",
    "0a",
    "00a",
    "ab",
    "AB",
    "b",
    "dcba5742f8a6083a3a9",
    "0cba5742f8a6083a3a9",
    "ffffffffffffffffffffffffffffff",  // 30 hex digits: packed
    "fffffffffffffffffffffffffffffff", // 31: kept as text
    "Привет",
    "g",
    " a",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Kind {
    Second,
    Minute,
}

/// (kind, start, frames, unique users; 0 for seconds)
type Record = (Kind, u64, u64, u64);

fn key(c: &Closed) -> Record {
    match *c {
        Closed::Second { start, frames } => (Kind::Second, start, frames, 0),
        Closed::Minute {
            start,
            frames,
            unique_users,
        } => (Kind::Minute, start, frames, unique_users),
    }
}

fn minute_of(ts: u64) -> u64 {
    ts - ts % 60
}

/// A run of one `Windows` over frames (seq = index): every closed window with
/// the index of the frame after which it was emitted (`frames.len()` for the
/// end-of-input flush), the late counts and every admission.
struct Run {
    emitted: Vec<(usize, Closed)>,
    late: LateCounts,
    admissions: Vec<Admission>,
}

fn run(lateness: u64, frames: &[(u64, &str)]) -> Run {
    let mut w = Windows::new(WatermarkRule::largest_ts(lateness));
    let mut emitted = Vec::new();
    let mut admissions = Vec::new();
    let mut out = Vec::new();
    for (i, &(ts, uid)) in frames.iter().enumerate() {
        admissions.push(w.record(i as u64, ts, uid));
        w.flush(w.watermark().expect("a frame was recorded"), &mut out);
        emitted.extend(out.drain(..).map(|c| (i, c)));
    }
    w.flush(Watermark::END, &mut out);
    emitted.extend(out.drain(..).map(|c| (frames.len(), c)));
    Run {
        emitted,
        late: w.late(),
        admissions,
    }
}

fn closed(run: &Run) -> Vec<Closed> {
    run.emitted.iter().map(|&(_, c)| c).collect()
}

/// The naive model, straight from the rules.
struct Model {
    /// (kind, start) -> (frames, distinct uids)
    windows: BTreeMap<(Kind, u64), (u64, BTreeSet<String>)>,
    late: LateCounts,
    admissions: Vec<Admission>,
}

impl Model {
    fn new(lateness: u64, frames: &[(u64, &str)]) -> Model {
        let mut windows: BTreeMap<(Kind, u64), (u64, BTreeSet<String>)> = BTreeMap::new();
        let mut late = LateCounts::default();
        let mut admissions = Vec::new();
        let mut max_before: Option<u64> = None;
        for &(ts, uid) in frames {
            let watermark = max_before.map(|m| m.saturating_sub(lateness));
            let closed = |end: u64| watermark.is_some_and(|w| end <= w);
            let second = !closed(ts + 1);
            let minute = !closed(minute_of(ts) + 60);
            if second {
                windows.entry((Kind::Second, ts)).or_default().0 += 1;
            } else {
                late.seconds += 1;
            }
            if minute {
                let w = windows.entry((Kind::Minute, minute_of(ts))).or_default();
                w.0 += 1;
                w.1.insert(uid.to_owned());
            } else {
                late.minutes += 1;
            }
            admissions.push(Admission { second, minute });
            max_before = Some(max_before.map_or(ts, |m| m.max(ts)));
        }
        Model {
            windows,
            late,
            admissions,
        }
    }

    fn records(&self) -> Vec<Record> {
        self.windows
            .iter()
            .map(|(&(kind, start), (frames, users))| {
                (
                    kind,
                    start,
                    *frames,
                    if kind == Kind::Minute {
                        users.len() as u64
                    } else {
                        0
                    },
                )
            })
            .collect()
    }
}

/// The index of the frame after which a window ending at `end` must be
/// emitted: the first frame that lifts the watermark to `end`, else the end
/// of input.
fn due(lateness: u64, frames: &[(u64, &str)], end: u64) -> usize {
    let mut max = 0;
    for (i, &(ts, _)) in frames.iter().enumerate() {
        max = max.max(ts);
        if max.saturating_sub(lateness) >= end {
            return i;
        }
    }
    frames.len()
}

fn sorted(mut v: Vec<Record>) -> Vec<Record> {
    v.sort();
    v
}

// ---------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------

fn lateness() -> impl Strategy<Value = u64> {
    prop_oneof![6 => 0u64..=10, 1 => Just(59), 1 => Just(60), 1 => Just(61), 1 => Just(150)]
}

fn base_ts() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1),
        Just(55),
        Just(1_468_245_300),
        Just(1_468_245_359),
        (0u64..1_000_000)
    ]
}

/// Frames in an arbitrary arrival order, with ts in a small range so that
/// windows collide, close and receive late frames.
fn frames() -> impl Strategy<Value = Vec<(u64, &'static str)>> {
    (
        base_ts(),
        prop_oneof![1u64..5, 5u64..70, 70u64..250],
        prop::collection::vec((any::<Index>(), prop::sample::select(UIDS)), 0..120),
    )
        .prop_map(|(base, span, v)| {
            v.into_iter()
                .map(|(i, uid)| (base + i.index(span as usize) as u64, uid))
                .collect()
        })
}

/// Mostly increasing ts with bursts back in time, like delayed frames.
fn realistic_frames() -> impl Strategy<Value = Vec<(u64, &'static str)>> {
    (
        base_ts(),
        prop::collection::vec(
            (
                0u64..4,
                prop_oneof![8 => Just(0u64), 1 => 1u64..8, 1 => 8u64..90],
                prop::sample::select(UIDS),
            ),
            0..200,
        ),
    )
        .prop_map(|(base, steps)| {
            let mut ts = base;
            steps
                .into_iter()
                .map(|(step, back, uid)| {
                    ts += step / 3; // advance one second a third of the time
                    (ts.saturating_sub(back), uid)
                })
                .collect()
        })
}

fn any_frames() -> impl Strategy<Value = Vec<(u64, &'static str)>> {
    prop_oneof![frames(), realistic_frames()]
}

// ---------------------------------------------------------------------------
// (a) the core agrees with the naive model; (c) each counted frame is in
// exactly one emitted second and one emitted minute; (d) no window twice
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig { cases: 10000, ..ProptestConfig::default() })]

    #[test]
    fn agrees_with_naive_model(l in lateness(), frames in any_frames()) {
        let got = run(l, &frames);
        let model = Model::new(l, &frames);
        let records: Vec<Record> = got.emitted.iter().map(|(_, c)| key(c)).collect();
        prop_assert_eq!(sorted(records), model.records(), "emitted windows (as a multiset)");
        prop_assert_eq!(got.late, model.late);
        prop_assert_eq!(&got.admissions, &model.admissions);
        // Each window is emitted exactly when the watermark first reaches its end.
        for &(i, c) in &got.emitted {
            prop_assert_eq!(i, due(l, &frames, c.end()), "emission time of {:?}", c);
        }
    }

    #[test]
    fn counted_frames_are_in_exactly_one_second_and_one_minute(l in lateness(), frames in any_frames()) {
        let got = run(l, &frames);
        let n = frames.len() as u64;
        let (mut seconds, mut minutes) = (0, 0);
        for c in closed(&got) {
            match c {
                Closed::Second { frames, .. } => seconds += frames,
                Closed::Minute { frames, .. } => minutes += frames,
            }
        }
        prop_assert_eq!(seconds, n - got.late.seconds);
        prop_assert_eq!(minutes, n - got.late.minutes);

        // The admissions `record` reported are exactly what was emitted.
        let mut admitted: BTreeMap<(Kind, u64), (u64, BTreeSet<&str>)> = BTreeMap::new();
        for (&(ts, uid), a) in frames.iter().zip(&got.admissions) {
            if a.second {
                admitted.entry((Kind::Second, ts)).or_default().0 += 1;
            }
            if a.minute {
                let w = admitted.entry((Kind::Minute, minute_of(ts))).or_default();
                w.0 += 1;
                w.1.insert(uid);
            }
        }
        let from_admissions: Vec<Record> = admitted
            .iter()
            .map(|(&(k, s), (f, u))| (k, s, *f, if k == Kind::Minute { u.len() as u64 } else { 0 }))
            .collect();
        prop_assert_eq!(sorted(closed(&got).iter().map(key).collect()), from_admissions);
        for c in closed(&got) {
            prop_assert!(c.end() > c.start());
            match c {
                Closed::Second { frames, .. } => prop_assert!(frames >= 1),
                Closed::Minute { start, frames, unique_users } => {
                    prop_assert_eq!(start % 60, 0);
                    prop_assert!(unique_users >= 1 && unique_users <= frames);
                }
            }
        }
    }

    #[test]
    fn no_window_is_emitted_twice(l in lateness(), frames in any_frames()) {
        let got = run(l, &frames);
        let mut seen = BTreeSet::new();
        for c in closed(&got) {
            let (kind, start, ..) = key(&c);
            prop_assert!(seen.insert((kind, start)), "{:?} emitted twice", c);
        }
        // Emission order: by end, the seconds before the minute ending with them.
        let order: Vec<(u64, bool)> = closed(&got).iter().map(|c| (c.end(), matches!(c, Closed::Minute { .. }))).collect();
        for (i, pair) in order.windows(2).enumerate() {
            let same_flush = got.emitted[i].0 == got.emitted[i + 1].0;
            if same_flush {
                prop_assert!(pair[0] < pair[1], "within one flush: {:?}", &got.emitted[i..i + 2]);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// (b) reordering within the lateness bound changes nothing
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    #[test]
    fn reordering_within_lateness_is_invisible(
        l in 0u64..=12,
        base in base_ts(),
        frames in prop::collection::vec((0u64..200, prop::sample::select(UIDS), any::<Index>()), 0..150),
    ) {
        let frames: Vec<(u64, &str, u64)> = frames
            .into_iter()
            .map(|(t, uid, j)| (base + t, uid, j.index(l as usize + 1) as u64))
            .collect();
        let mut in_order: Vec<(u64, &str)> = frames.iter().map(|&(ts, uid, _)| (ts, uid)).collect();
        in_order.sort_by_key(|&(ts, _)| ts);
        // Arrival by ts + jitter, jitter in [0, L]: no frame arrives after one
        // more than L seconds newer than itself.
        let mut jittered: Vec<(u64, &str, u64)> = frames.clone();
        jittered.sort_by_key(|&(ts, _, j)| ts + j);
        let jittered: Vec<(u64, &str)> = jittered.into_iter().map(|(ts, uid, _)| (ts, uid)).collect();

        let a = run(l, &in_order);
        let b = run(l, &jittered);
        prop_assert_eq!(a.late, LateCounts::default());
        prop_assert_eq!(b.late, LateCounts::default());
        prop_assert_eq!(closed(&a), closed(&b), "output, order included");
    }

    /// The same through routing over P partitions: without late frames the
    /// windows do not depend on P, and each is counted whole in the
    /// partition its bucket maps to.
    #[test]
    fn partitioning_does_not_change_windows_without_late_frames(
        l in 0u64..=12,
        base in base_ts(),
        p in 1u32..9,
        bucket in prop_oneof![Just(60u64), Just(120), Just(900)],
        frames in prop::collection::vec((0u64..2000, prop::sample::select(UIDS), any::<Index>()), 0..300),
    ) {
        let mut frames: Vec<(u64, &str, u64)> = frames
            .into_iter()
            .map(|(t, uid, j)| (base + t, uid, j.index(l as usize + 1) as u64))
            .collect();
        frames.sort_by_key(|&(ts, _, j)| ts + j);
        let frames: Vec<(u64, &str)> = frames.into_iter().map(|(ts, uid, _)| (ts, uid)).collect();

        let single = run(l, &frames);
        let routing = Routing::new(bucket, p).unwrap();
        let mut pw = PartitionedWindows::new(routing, WatermarkRule::largest_ts(l));
        let mut got = Vec::new();
        for &(ts, uid) in &frames {
            pw.record(ts, uid);
            got.extend(pw.take_closed());
        }
        pw.finish();
        got.extend(pw.take_closed());
        prop_assert_eq!(pw.late(), LateCounts::default());
        for &(part, c) in &got {
            prop_assert_eq!(part, routing.partition(c.start()), "{:?}", c);
        }
        prop_assert_eq!(
            sorted(got.iter().map(|(_, c)| key(c)).collect()),
            sorted(closed(&single).iter().map(key).collect())
        );
    }
}
