//! Property tests of the crowd rule (docs/semantics.md): up to 5% of the
//! users active in a minute, ahead by random amounts up to the validity
//! bound (a day) and sending frames at random rates, make no honest frame
//! late and change no honest window; on honest input alone the windows
//! close within about a second of event time of the plain largest-`ts`
//! rule; a replay from any checkpoint decides alike. Fixed seed, bounded
//! case counts.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use timebucket_core::clock::Quorum;
use timebucket_core::window::{Closed, LateCounts, Watermark, WatermarkRule, Windows};

mod common;
use common::counts;

const L: u64 = 5;
const DAY: u64 = 86_400;
const START: u64 = 1_700_000_000 - 1_700_000_000 % 60;

fn rule() -> WatermarkRule {
    WatermarkRule::with_quorum(L, Quorum::default())
}

type Frame = (u64, String);

struct Run {
    closed: Vec<Closed>,
    late: LateCounts,
    admitted: Vec<(bool, bool)>,
    watermarks: Vec<Option<Watermark>>,
}

fn run(rule: WatermarkRule, frames: &[Frame]) -> Run {
    let mut w = Windows::new(rule);
    let (mut closed, mut admitted, mut watermarks) = (Vec::new(), Vec::new(), Vec::new());
    for (i, (ts, uid)) in frames.iter().enumerate() {
        let a = w.record(i as u64, *ts, uid);
        admitted.push((a.second, a.minute));
        if let Some(wm) = w.watermark() {
            w.flush(wm, &mut closed);
        }
        watermarks.push(w.watermark());
    }
    w.flush(Watermark::END, &mut closed);
    Run {
        closed,
        late: w.late(),
        admitted,
        watermarks,
    }
}

/// An honest stream: `minutes` minutes from START, `per_second` frames a
/// second from a pool of `pool` users (distinct within each second), each
/// delayed by up to `disorder` seconds, in arrival order.
fn honest(
    pool: u32,
    per_second: u32,
    minutes: u64,
    disorder: u64,
    rng: &mut TestRng,
) -> Vec<Frame> {
    let mut arrivals: Vec<(u64, u64, Frame)> = Vec::new();
    let mut users: Vec<u32> = (0..pool).collect();
    for s in 0..minutes * 60 {
        // A partial shuffle: `per_second` distinct users.
        for j in 0..per_second as usize {
            let k = rng.random_range(j..users.len());
            users.swap(j, k);
        }
        for (j, &u) in users[..per_second as usize].iter().enumerate() {
            let delay = if disorder == 0 {
                0
            } else {
                rng.random_range(0..=disorder)
            };
            let ts = (START + s).saturating_sub(delay);
            arrivals.push((START + s, j as u64, (ts, format!("{u:x}"))));
        }
    }
    arrivals.sort_by_key(|a| (a.0, a.1));
    arrivals.into_iter().map(|a| a.2).collect()
}

/// Distinct users of each minute of `frames`, the smallest over the
/// minutes after the first.
fn fewest_users_in_a_minute(frames: &[Frame]) -> usize {
    let mut per_minute: BTreeMap<u64, HashSet<&str>> = BTreeMap::new();
    for (ts, uid) in frames {
        per_minute.entry(ts / 60).or_default().insert(uid);
    }
    let full: Vec<usize> = per_minute.values().map(HashSet::len).collect();
    full[1..full.len() - 1].iter().copied().min().unwrap_or(0)
}

/// Inserts a crowd of `crowd` uids ahead of the honest time (by up to a
/// day), each sending 1 to 40 frames at random points after the first two
/// minutes of the stream.
fn with_crowd(clean: &[Frame], crowd: usize, rng: &mut TestRng) -> Vec<Frame> {
    let warm = clean
        .iter()
        .position(|(ts, _)| *ts >= START + 120)
        .unwrap_or(clean.len());
    let mut inserts: Vec<(usize, Frame)> = Vec::new();
    for c in 0..crowd {
        let ahead = rng.random_range(1..=DAY);
        let jitter = rng.random_range(0..=ahead.min(600));
        for _ in 0..rng.random_range(1..=40) {
            let at = rng.random_range(warm..=clean.len());
            let now = clean[..at].iter().map(|f| f.0).max().unwrap_or(START);
            let ts = now + ahead - rng.random_range(0..=jitter);
            inserts.push((at, (ts.max(now + 1), format!("liar-{c}"))));
        }
    }
    inserts.sort_by_key(|i| i.0);
    let mut out = Vec::with_capacity(clean.len() + inserts.len());
    let mut next = inserts.into_iter().peekable();
    for (i, f) in clean.iter().enumerate() {
        while let Some((_, lie)) = next.next_if(|(at, _)| *at == i) {
            out.push(lie);
        }
        out.push(f.clone());
    }
    out.extend(next.map(|(_, lie)| lie));
    out
}

fn is_liar(uid: &str) -> bool {
    uid.starts_with("liar-")
}

fn runner(cases: u32) -> TestRunner {
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &[19; 32]))
}

/// (pool, frames per second, minutes, disorder, crowd seed)
fn scenario() -> impl Strategy<Value = (u32, u32, u64, u64, u64)> {
    (100u32..800, 4u32..30, 3u64..7, 0u64..=L, any::<u64>())
}

/// The crowd costs no honest frame anything: every honest frame is
/// admitted (none is late), and every window without a crowd frame is
/// exactly what it is without the crowd.
#[test]
fn a_crowd_of_five_percent_costs_no_honest_frame_its_window() {
    runner(48)
        .run(&scenario(), |(pool, rate, minutes, disorder, seed)| {
            let mut rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes(seed));
            let clean = honest(pool, rate, minutes, disorder, &mut rng);
            let crowd = fewest_users_in_a_minute(&clean) * 5 / 100;
            prop_assume!(crowd >= 1);
            let with = with_crowd(&clean, crowd, &mut rng);
            // Bare, and with a horizon that drops the crowd's windows as
            // the product does (its default is the routing's cycle).
            for rule in [rule(), rule().with_horizon(Some(600))] {
                let a = run(rule, &clean);
                let b = run(rule, &with);
                prop_assert_eq!(a.late, LateCounts::default());
                let honest_admitted: Vec<_> = with
                    .iter()
                    .zip(&b.admitted)
                    .filter(|((_, u), _)| !is_liar(u))
                    .map(|(_, a)| *a)
                    .collect();
                prop_assert!(
                    honest_admitted.iter().all(|&(s, m)| s && m),
                    "{} of {} honest frames late with a crowd of {}",
                    honest_admitted.iter().filter(|a| !(a.0 && a.1)).count(),
                    honest_admitted.len(),
                    crowd
                );
                let crowd_windows: BTreeSet<(bool, u64)> = with
                    .iter()
                    .filter(|(_, u)| is_liar(u))
                    .flat_map(|(ts, _)| [(false, *ts), (true, ts - ts % 60)])
                    .collect();
                let mut others = counts(&b.closed);
                others.retain(|k, _| !crowd_windows.contains(k));
                let mut clean_counts = counts(&a.closed);
                clean_counts.retain(|k, _| !crowd_windows.contains(k));
                prop_assert_eq!(others, clean_counts);
            }
            Ok(())
        })
        .unwrap();
}

/// Honest input alone, in order, with at least K users in every second:
/// after every frame the watermark is at most one second of event time
/// behind the plain rule's.
#[test]
fn honest_streams_close_within_a_second_of_the_plain_rule() {
    runner(32)
        .run(&(100u32..800, any::<u64>()), |(pool, seed)| {
            let mut rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes(seed));
            // K is at most 5% of the pool plus one: that many per second.
            let per_second = pool * 5 / 100 + 1;
            let clean = honest(pool, per_second, 4, 0, &mut rng);
            let plain = run(WatermarkRule::largest_ts(L), &clean);
            let ours = run(rule(), &clean);
            prop_assert_eq!(ours.late, LateCounts::default());
            for (i, (p, o)) in plain.watermarks.iter().zip(&ours.watermarks).enumerate() {
                if o.is_none() && clean[i].0 <= clean[0].0 + 1 {
                    continue; // not yet two users
                }
                let (p, o) = (p.map_or(0, |w| w.0), o.map_or(0, |w| w.0));
                prop_assert!(o + 1 >= p, "frame {}: watermark {} vs plain {}", i, o, p);
            }
            Ok(())
        })
        .unwrap();
}

/// With disorder and fewer users a second, the delay is what it takes
/// K users to pass a time: never more than the lateness here.
#[test]
fn honest_streams_with_disorder_lose_nothing() {
    runner(48)
        .run(&scenario(), |(pool, rate, minutes, disorder, seed)| {
            let mut rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes(seed));
            let clean = honest(pool, rate, minutes, disorder, &mut rng);
            let ours = run(rule(), &clean);
            prop_assert_eq!(ours.late, LateCounts::default());
            Ok(())
        })
        .unwrap();
}

/// A new owner resuming from the checkpoint at any cut, crowd included,
/// emits exactly what an uninterrupted owner emits and admits alike.
#[test]
fn replay_from_any_checkpoint_decides_the_same() {
    runner(48)
        .run(
            &(scenario(), any::<Index>(), any::<bool>()),
            |((pool, rate, minutes, disorder, seed), cut, horizon)| {
                // With a horizon, windows the crowd opened are dropped
                // before and after the cut, as the product does.
                let rule = || rule().with_horizon(horizon.then_some(600));
                let mut rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes(seed));
                let clean = honest(pool, rate, minutes.min(4), disorder, &mut rng);
                let crowd = fewest_users_in_a_minute(&clean) * 5 / 100;
                let frames = with_crowd(&clean, crowd.max(2), &mut rng);
                let whole = run(rule(), &frames);

                let cut = cut.index(frames.len() + 1);
                let mut first = Windows::new(rule());
                let mut got = Vec::new();
                for (i, (ts, uid)) in frames[..cut].iter().enumerate() {
                    first.record(i as u64, *ts, uid);
                    if let Some(wm) = first.watermark() {
                        first.flush(wm, &mut got);
                    }
                }
                let cp = first.checkpoint(cut as u64);
                let mut second = Windows::resume(rule(), &cp);
                for (i, (ts, uid)) in frames.iter().enumerate().skip(cp.resume_seq as usize) {
                    let a = second.record(i as u64, *ts, uid);
                    if i >= cut {
                        prop_assert_eq!((a.second, a.minute), whole.admitted[i], "frame {}", i);
                    }
                    if let Some(wm) = second.watermark() {
                        second.flush(wm, &mut got);
                    }
                }
                second.flush(Watermark::END, &mut got);
                prop_assert_eq!(got, whole.closed);
                Ok(())
            },
        )
        .unwrap();
}

/// Issue 18: end of input closes for good only up to a minute past the
/// event clock, so a bad clock in one batch run does not make the next run
/// on the same partition count honest frames late.
#[test]
fn a_bad_clock_does_not_poison_the_next_batch_run() {
    let mut rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[18; 32]);
    let day1 = honest(200, 10, 3, 2, &mut rng);
    let mut with = day1.clone();
    with.insert(day1.len() / 2, (START + DAY, "liar".into()));
    with.insert(day1.len() / 2, (START + 2 * DAY, "liar2".into()));
    let mut w = Windows::new(rule());
    let mut out = Vec::new();
    for (i, (ts, uid)) in with.iter().enumerate() {
        w.record(i as u64, *ts, uid);
        if let Some(wm) = w.watermark() {
            w.flush(wm, &mut out);
        }
    }
    w.close_all(&mut out);
    assert_eq!(w.late(), LateCounts::default());
    let cp = w.checkpoint(with.len() as u64);
    assert_eq!(cp.resume_seq, with.len() as u64, "nothing to replay");
    // The next run: the honest stream goes on an hour later.
    let mut next = Windows::resume(rule(), &cp);
    let day2: Vec<Frame> = honest(200, 10, 2, 2, &mut rng)
        .into_iter()
        .map(|(ts, uid)| (ts + 3_600, uid))
        .collect();
    for (i, (ts, uid)) in day2.iter().enumerate() {
        next.record((with.len() + i) as u64, *ts, uid);
        if let Some(wm) = next.watermark() {
            next.flush(wm, &mut out);
        }
    }
    assert_eq!(next.late(), LateCounts::default());
}

fn seed_bytes(seed: u64) -> [u8; 32] {
    let mut b = [0u8; 32];
    b[..8].copy_from_slice(&seed.to_le_bytes());
    b
}
