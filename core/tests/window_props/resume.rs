//! (e) Checkpoint and resume: a partition resumed from any checkpoint
//! decides every frame as the uninterrupted one did, and emits the same
//! windows.

use super::*;

/// One owner of the partition: records frames `from..to` (seq = index) and
/// closes everything after the frames in `idle` at or past `live_from` (an
/// idle flush only happens live, never while replaying). Every admission is
/// appended to `adm` with its seq.
#[allow(clippy::too_many_arguments)]
fn own(
    w: &mut Windows,
    frames: &[(u64, &str)],
    from: usize,
    to: usize,
    idle: &BTreeSet<usize>,
    live_from: usize,
    out: &mut Vec<Closed>,
    adm: &mut Vec<(usize, Admission)>,
) {
    for (seq, &(ts, uid)) in frames.iter().enumerate().take(to).skip(from) {
        adm.push((seq, w.record(seq as u64, ts, uid)));
        w.flush(w.watermark().expect("recorded"), out);
        if seq >= live_from && idle.contains(&seq) {
            w.close_all(out);
        }
    }
}

/// The output and the admission of every frame of a run with no handover.
fn uninterrupted(
    l: u64,
    frames: &[(u64, &str)],
    idle: &BTreeSet<usize>,
) -> (Vec<Closed>, Vec<Admission>) {
    let mut w = Windows::new(WatermarkRule::largest_ts(l));
    let mut out = Vec::new();
    let mut adm = Vec::new();
    own(&mut w, frames, 0, frames.len(), idle, 0, &mut out, &mut adm);
    w.flush(Watermark::END, &mut out);
    (out, adm.into_iter().map(|(_, a)| a).collect())
}

/// A new owner makes the same decisions as the uninterrupted run, replayed
/// frames included ("what it must know to make the same decisions").
fn same_decisions(got: &[(usize, Admission)], expected: &[Admission]) -> Result<(), TestCaseError> {
    for &(seq, a) in got {
        prop_assert_eq!(a, expected[seq], "admission of frame {}", seq);
    }
    Ok(())
}

fn idle_points() -> impl Strategy<Value = BTreeSet<usize>> {
    prop_oneof![
        3 => Just(BTreeSet::new()),
        1 => prop::collection::btree_set(0usize..200, 0..4),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10000, ..ProptestConfig::default() })]

    /// Output before the cut + output of the new owner (which replays from
    /// `resume_seq`) == the uninterrupted output, order included.
    #[test]
    fn resume_at_a_cut_reproduces_the_uninterrupted_output(
        l in lateness(),
        frames in any_frames(),
        cut in any::<Index>(),
        idle in idle_points(),
    ) {
        let (expected, decisions) = uninterrupted(l, &frames, &idle);
        let cut = cut.index(frames.len() + 1);

        let mut first = Windows::new(WatermarkRule::largest_ts(l));
        let mut got = Vec::new();
        let mut adm = Vec::new();
        own(&mut first, &frames, 0, cut, &idle, 0, &mut got, &mut adm);
        let cp = first.checkpoint(cut as u64);
        prop_assert!(cp.resume_seq <= cut as u64);
        prop_assert_eq!(cp.handled_until, cut as u64);
        prop_assert!(!idle.iter().any(|&k| k < cut && k >= cp.resume_seq as usize), "an idle flush inside the replayed range");

        let mut second = Windows::resume(WatermarkRule::largest_ts(l), &cp);
        own(&mut second, &frames, cp.resume_seq as usize, frames.len(), &idle, cut, &mut got, &mut adm);
        second.flush(Watermark::END, &mut got);
        prop_assert_eq!(got, expected, "cut at {}, {:?}", cut, cp);
        same_decisions(&adm, &decisions)?;
    }

    /// Two handovers: the second owner is cut again, possibly while it is
    /// still replaying what the first owner had handled.
    #[test]
    fn chained_resumes_reproduce_the_uninterrupted_output(
        l in lateness(),
        frames in any_frames(),
        cut1 in any::<Index>(),
        cut2 in any::<Index>(),
        idle in idle_points(),
    ) {
        let (expected, decisions) = uninterrupted(l, &frames, &idle);
        let n = frames.len();
        let cut1 = cut1.index(n + 1);

        let mut first = Windows::new(WatermarkRule::largest_ts(l));
        let mut got = Vec::new();
        let mut adm = Vec::new();
        own(&mut first, &frames, 0, cut1, &idle, 0, &mut got, &mut adm);
        let cp1 = first.checkpoint(cut1 as u64);

        // Anywhere from the replay start to the end of input.
        let start2 = cp1.resume_seq as usize;
        let cut2 = start2 + cut2.index(n - start2 + 1);
        let mut second = Windows::resume(WatermarkRule::largest_ts(l), &cp1);
        own(&mut second, &frames, start2, cut2, &idle, cut1, &mut got, &mut adm);
        let cp2 = second.checkpoint(cut2 as u64);
        prop_assert!(cp2.resume_seq as usize <= cut2);

        let mut third = Windows::resume(WatermarkRule::largest_ts(l), &cp2);
        own(&mut third, &frames, cp2.resume_seq as usize, n, &idle, cut1.max(cut2), &mut got, &mut adm);
        third.flush(Watermark::END, &mut got);
        prop_assert_eq!(got, expected, "cuts at {} and {}: {:?} then {:?}", cut1, cut2, cp1, cp2);
        same_decisions(&adm, &decisions)?;
    }

    /// Many handovers in a row, each at a random point ahead.
    #[test]
    fn many_handovers(l in lateness(), frames in realistic_frames(), cuts in prop::collection::vec(any::<Index>(), 1..6)) {
        let none = BTreeSet::new();
        let (expected, decisions) = uninterrupted(l, &frames, &none);
        let n = frames.len();
        let mut got = Vec::new();
        let mut adm = Vec::new();
        let mut w = Windows::new(WatermarkRule::largest_ts(l));
        let mut pos = 0;
        for cut in cuts {
            let to = pos + cut.index(n - pos + 1);
            own(&mut w, &frames, pos, to, &none, 0, &mut got, &mut adm);
            let cp = w.checkpoint(to as u64);
            w = Windows::resume(WatermarkRule::largest_ts(l), &cp);
            pos = cp.resume_seq as usize;
        }
        own(&mut w, &frames, pos, n, &none, 0, &mut got, &mut adm);
        w.flush(Watermark::END, &mut got);
        prop_assert_eq!(got, expected);
        same_decisions(&adm, &decisions)?;
    }
}

// ---------------------------------------------------------------------------
// Explicit cases
// ---------------------------------------------------------------------------

#[test]
fn closes_exactly_at_the_watermark_for_minutes_too() {
    // L = 5: the minute [60, 120) closes when a frame with ts 125 arrives.
    let frames = [(60, "a"), (124, "b")];
    let r = run(5, &frames);
    // Watermark 119: second 60 closes after the second frame, minute 60 only at the end.
    assert_eq!(
        r.emitted,
        vec![
            (
                1,
                Closed::Second {
                    start: 60,
                    frames: 1
                }
            ),
            (
                2,
                Closed::Minute {
                    start: 60,
                    frames: 1,
                    unique_users: 1
                }
            ),
            (
                2,
                Closed::Second {
                    start: 124,
                    frames: 1
                }
            ),
            (
                2,
                Closed::Minute {
                    start: 120,
                    frames: 1,
                    unique_users: 1
                }
            ),
        ]
    );
    let frames = [(60, "a"), (125, "b"), (119, "c"), (120, "d")];
    let r = run(5, &frames);
    assert!(r.emitted.contains(&(
        1,
        Closed::Minute {
            start: 60,
            frames: 1,
            unique_users: 1
        }
    )));
    assert_eq!(
        r.admissions[2],
        Admission {
            second: false,
            minute: false
        }
    );
    // 120 is late for nothing: its second [120,121) is still open at watermark 120.
    assert_eq!(
        r.admissions[3],
        Admission {
            second: true,
            minute: true
        }
    );
}

#[test]
fn small_ts_with_large_lateness_never_closes_early() {
    // The watermark saturates at 0 and no window ends at 0.
    let r = run(100, &[(3, "a"), (0, "b"), (50, "c"), (0, "d")]);
    assert_eq!(r.late, LateCounts::default());
    assert!(r.emitted.iter().all(|&(i, _)| i == 4));
    assert!(closed(&r).contains(&Closed::Minute {
        start: 0,
        frames: 4,
        unique_users: 4
    }));
}

#[test]
fn zero_lateness() {
    let r = run(
        0,
        &[
            (10, "a"),
            (10, "b"),
            (11, "a"),
            (10, "c"),
            (59, "a"),
            (60, "a"),
            (59, "b"),
        ],
    );
    // 11 closes second 10; 60 closes minute 0 and second 59.
    assert_eq!(
        r.late,
        LateCounts {
            seconds: 2,
            minutes: 1
        }
    );
    assert_eq!(
        closed(&r),
        vec![
            Closed::Second {
                start: 10,
                frames: 2
            },
            Closed::Second {
                start: 11,
                frames: 1
            },
            Closed::Second {
                start: 59,
                frames: 1
            },
            Closed::Minute {
                start: 0,
                frames: 5,
                unique_users: 3
            },
            Closed::Second {
                start: 60,
                frames: 1
            },
            Closed::Minute {
                start: 60,
                frames: 1,
                unique_users: 1
            },
        ]
    );
}

#[test]
fn distinct_users_are_exact_for_mixed_uid_shapes() {
    let frames: Vec<(u64, &str)> = UIDS.iter().chain(UIDS.iter()).map(|&u| (120, u)).collect();
    let r = run(5, &frames);
    assert!(closed(&r).contains(&Closed::Minute {
        start: 120,
        frames: 2 * UIDS.len() as u64,
        unique_users: UIDS.len() as u64
    }));
}

/// BUG (core/src/window.rs, reachable through `--max-ts 18446744073709551615`):
/// window ends are computed as `start + 1` / `start + 60` in u64, which wraps
/// for ts within a minute of u64::MAX (release; debug builds panic). The
/// second frame of the same second is then "late", and `Closed::end()` is 0
/// (second) or 44 (minute). The rules accept any ts in [min_ts, max_ts] and
/// nothing caps max_ts, so either the bound or the arithmetic must change.
#[test]
fn ts_near_u64_max_does_not_wrap() {
    // The parser caps ts at window::MAX_TS, the largest whose minute end fits.
    assert_eq!(
        timebucket_core::frame::FrameParser::new(0, u64::MAX).max_ts,
        MAX_TS
    );
    let max = MAX_TS;
    let r = run(5, &[(max, "a"), (max, "b"), (max - 3, "c")]);
    assert_eq!(
        r.late,
        LateCounts::default(),
        "three frames within L of each other"
    );
    assert!(
        closed(&r).contains(&Closed::Second {
            start: max,
            frames: 2
        }),
        "{:?}",
        closed(&r)
    );
    for c in closed(&r) {
        assert!(c.end() > c.start(), "{c:?} ends at {}", c.end());
    }
}
