//! Property tests of the event clock rule (README, Semantics): with a
//! quorum of 2, frames from one uid whose clock runs ahead, up to the
//! validity bound and however many, cost no other frame anything; honest
//! streams still close on time; a jump in time is followed; a replay from
//! any checkpoint decides the same.

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::sample::Index;
use timebucket_core::window::{LateCounts, Watermark, WatermarkRule, Windows};

const L: u64 = 5;
const DAY: u64 = 86_400;
const LIAR: &str = "liar";

fn rule() -> WatermarkRule {
    WatermarkRule::new(L, 2)
}

mod common;
use common::{counts, Counts};

struct Run {
    counts: Counts,
    late: LateCounts,
    /// Per frame: was it counted in its second and in its minute.
    admitted: Vec<(bool, bool)>,
    /// The watermark after each frame.
    watermarks: Vec<Option<Watermark>>,
}

fn run(rule: WatermarkRule, frames: &[(u64, String)]) -> Run {
    let mut w = Windows::new(rule);
    let mut out = Vec::new();
    let mut admitted = Vec::new();
    let mut watermarks = Vec::new();
    for (i, (ts, uid)) in frames.iter().enumerate() {
        let a = w.record(i as u64, *ts, uid);
        admitted.push((a.second, a.minute));
        if let Some(wm) = w.watermark() {
            w.flush(wm, &mut out);
        }
        watermarks.push(w.watermark());
    }
    w.flush(Watermark::END, &mut out);
    Run {
        counts: counts(&out),
        late: w.late(),
        admitted,
        watermarks,
    }
}

/// An honest stream: `n` frames from 1,000 s on, about `rate` per second,
/// users from a pool of 30, each frame delayed by up to `disorder` seconds
/// (within the lateness).
fn honest(max_len: usize) -> impl Strategy<Value = Vec<(u64, String)>> {
    stream(max_len, L)
}

/// [`honest`] with frames delayed by up to `max_disorder` seconds.
fn stream(max_len: usize, max_disorder: u64) -> impl Strategy<Value = Vec<(u64, String)>> {
    (
        1u64..8,
        0u64..=max_disorder,
        prop::collection::vec((0u64..100, 0u32..30, 0u64..100), 2..max_len),
    )
        .prop_map(|(rate, disorder, draws)| {
            let mut clock = 1_000u64;
            draws
                .into_iter()
                .map(|(tick, user, delay)| {
                    if tick < 100 / rate {
                        clock += 1;
                    }
                    let ts = clock - delay % (disorder + 1);
                    (ts, format!("u{user}"))
                })
                .collect()
        })
}

/// The windows `liar`'s frames fall in, which are theirs to change.
fn liars_windows(frames: &[(u64, String)]) -> Vec<(bool, u64)> {
    frames
        .iter()
        .filter(|(_, u)| u == LIAR)
        .flat_map(|(ts, _)| [(false, *ts), (true, ts - ts % 60)])
        .collect()
}

/// Everything but `liar`'s own windows is the same as without `liar`, and
/// no other frame is late because of it.
fn no_collateral(clean: &[(u64, String)], with: &[(u64, String)]) -> Result<(), TestCaseError> {
    let a = run(rule(), clean);
    let b = run(rule(), with);
    let own = liars_windows(with);
    let others = |c: &Counts| -> Counts {
        c.iter()
            .filter(|(k, _)| !own.contains(k))
            .map(|(k, v)| (*k, *v))
            .collect()
    };
    prop_assert_eq!(others(&a.counts), others(&b.counts));
    let honest_admissions: Vec<_> = with
        .iter()
        .zip(&b.admitted)
        .filter(|((_, u), _)| u != LIAR)
        .map(|(_, a)| *a)
        .collect();
    prop_assert_eq!(&honest_admissions, &a.admitted);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// One frame dated anywhere up to a day ahead, anywhere in the stream.
    #[test]
    fn a_single_outlier_costs_no_other_frame(
        clean in honest(300),
        at in any::<Index>(),
        ahead in 1u64..=DAY,
    ) {
        let i = at.index(clean.len() + 1);
        let now = clean[..i].iter().map(|f| f.0).max().unwrap_or(1_000);
        let mut with = clean.clone();
        with.insert(i, (now + ahead, LIAR.to_string()));
        no_collateral(&clean, &with)?;
    }

    /// Every frame of one uid dated up to a day ahead, however many.
    #[test]
    fn one_uids_many_outliers_cost_no_other_frame(
        clean in honest(300),
        lies in prop::collection::vec((any::<Index>(), 1u64..=DAY), 1..40),
    ) {
        let mut with = clean.clone();
        for (at, ahead) in lies {
            let i = at.index(with.len() + 1);
            let now = with[..i].iter().filter(|f| f.1 != LIAR).map(|f| f.0).max().unwrap_or(1_000);
            with.insert(i, (now + ahead, LIAR.to_string()));
        }
        no_collateral(&clean, &with)?;
    }

    /// Streams with frames delayed beyond the lateness: a bad clock takes at
    /// most one of the quorum's places, so the watermark never passes the
    /// largest honest ts minus L, and an honest frame the plain rule admits
    /// on the clean stream is admitted with the bad clock too.
    #[test]
    fn beyond_the_lateness_a_bad_clock_is_no_worse_than_the_plain_rule(
        clean in stream(300, 4 * L),
        lies in prop::collection::vec((any::<Index>(), 1u64..=DAY), 1..20),
    ) {
        let mut with = clean.clone();
        for (at, ahead) in lies {
            let i = at.index(with.len() + 1);
            let now = with[..i].iter().filter(|f| f.1 != LIAR).map(|f| f.0).max().unwrap_or(1_000);
            with.insert(i, (now + ahead, LIAR.to_string()));
        }
        let plain = run(WatermarkRule::largest_ts(L), &clean);
        let b = run(rule(), &with);
        let honest: Vec<(bool, bool)> = with
            .iter()
            .zip(&b.admitted)
            .filter(|((_, u), _)| u != LIAR)
            .map(|(_, a)| *a)
            .collect();
        for (i, (p, h)) in plain.admitted.iter().zip(&honest).enumerate() {
            prop_assert!((!p.0 || h.0) && (!p.1 || h.1), "frame {}: plain {:?}, with the bad clock {:?}", i, p, h);
        }
    }

    /// Honest streams: nothing within the lateness is late, and when every
    /// second carries two users a window [a, b) is closed by the first frame
    /// dated b + L + 1 (the plain rule closes it one second sooner).
    #[test]
    fn honest_streams_close_on_time(clean in honest(400)) {
        let r = run(rule(), &clean);
        prop_assert_eq!(r.late, LateCounts::default());
        let mut users_per_second: BTreeMap<u64, std::collections::BTreeSet<&str>> = BTreeMap::new();
        let mut ordered = true;
        for (i, (ts, uid)) in clean.iter().enumerate() {
            ordered &= i == 0 || clean[i - 1].0 <= *ts;
            users_per_second.entry(*ts).or_default().insert(uid);
            let seconds_before_have_two = users_per_second
                .range(..*ts)
                .all(|(_, users)| users.len() >= 2);
            if ordered && seconds_before_have_two && users_per_second.len() > 1 {
                // The last second before ts was vouched for by two users.
                let vouched = *users_per_second.range(..*ts).next_back().unwrap().0;
                prop_assert!(r.watermarks[i] >= Some(Watermark(vouched - L)),
                    "frame {}: watermark {:?}, two users at {}", i, r.watermarks[i], vouched);
            }
        }
    }

    /// Traffic resuming after a gap (or a backfill into a fresh partition)
    /// moves the clock as soon as two users vouch for the new time.
    #[test]
    fn a_jump_in_time_is_followed(gap in 1u64..(365 * DAY), users in 2u32..6) {
        let mut frames: Vec<(u64, String)> = (0..20).map(|i| (1_000 + i / 4, format!("u{}", i % 3))).collect();
        let t = 1_005 + gap;
        for u in 0..users {
            frames.push((t, format!("n{u}")));
        }
        let r = run(rule(), &frames);
        prop_assert_eq!(r.watermarks[20], r.watermarks[19].max(Some(Watermark(1_004 - L))));
        prop_assert_eq!(*r.watermarks.last().unwrap(), Some(Watermark(t - L)));
        prop_assert_eq!(r.late, LateCounts::default());
    }

    /// A new owner resuming from the checkpoint at any cut, outliers
    /// included, emits exactly what an uninterrupted owner emits.
    #[test]
    fn replay_from_any_checkpoint_decides_the_same(
        clean in honest(300),
        lies in prop::collection::vec((any::<Index>(), 1u64..=DAY), 0..10),
        cut in any::<Index>(),
    ) {
        let mut frames = clean;
        for (at, ahead) in lies {
            let i = at.index(frames.len() + 1);
            frames.insert(i, (1_000 + ahead, LIAR.to_string()));
        }
        let mut whole = Windows::new(rule());
        let mut expected = Vec::new();
        for (i, (ts, uid)) in frames.iter().enumerate() {
            whole.record(i as u64, *ts, uid);
            if let Some(wm) = whole.watermark() { whole.flush(wm, &mut expected); }
        }
        whole.flush(Watermark::END, &mut expected);

        let cut = cut.index(frames.len() + 1);
        let mut first = Windows::new(rule());
        let mut got = Vec::new();
        for (i, (ts, uid)) in frames[..cut].iter().enumerate() {
            first.record(i as u64, *ts, uid);
            if let Some(wm) = first.watermark() { first.flush(wm, &mut got); }
        }
        let cp = first.checkpoint(cut as u64);
        let mut second = Windows::resume(rule(), &cp);
        for (i, (ts, uid)) in frames.iter().enumerate().skip(cp.resume_seq as usize) {
            second.record(i as u64, *ts, uid);
            if let Some(wm) = second.watermark() { second.flush(wm, &mut got); }
        }
        second.flush(Watermark::END, &mut got);
        prop_assert_eq!(got, expected);
    }
}

/// The three cases measured on the old rule (issue 10): a frame 10 minutes
/// ahead, one a day ahead, and 50 frames of one user 10 minutes ahead, in
/// a 200-user stream. The old rule made 24-69% of the frames late.
#[test]
fn the_measured_cases_lose_nothing() {
    let clean: Vec<(u64, String)> = (0..20_000u64)
        .map(|i| (1_000_000 + i / 200, format!("{:x}", i * 7919 % 200)))
        .collect();
    let base = run(rule(), &clean);
    assert_eq!(base.late, LateCounts::default());
    let old = |frames: &[(u64, String)]| run(WatermarkRule::largest_ts(L), frames).late;
    let cases: Vec<Vec<(u64, String)>> = vec![
        {
            let mut f = clean.clone();
            f.insert(1_000, (1_000_005 + 600, LIAR.into()));
            f
        },
        {
            let mut f = clean.clone();
            f.insert(1_000, (1_000_005 + DAY, LIAR.into()));
            f
        },
        {
            let mut f = clean.clone();
            for k in 0..50 {
                let i = k * 400 + 10;
                let ts = f[i].0 + 600;
                f.insert(i, (ts, LIAR.into()));
            }
            f
        },
    ];
    for with in &cases {
        assert!(old(with).minutes > 1_000, "the old rule loses frames here");
        let r = run(rule(), with);
        assert_eq!(r.late, LateCounts::default());
        no_collateral(&clean, with).unwrap();
    }
}
