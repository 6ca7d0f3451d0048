//! The bounds on a partition's windows (`core/src/window/`): the horizon
//! drops windows far past the watermark once the partition's frames show
//! its time is still back there, and never a jump in time; the estimate of
//! their memory follows every frame and every close.

use timebucket_core::clock::ClockState;
use timebucket_core::window::{BeyondHorizon, Closed, Watermark, WatermarkRule, Windows};

#[test]
fn state_bytes_follow_the_open_windows_and_their_uids() {
    let mut w = Windows::new(WatermarkRule::largest_ts(5));
    let mut out = Vec::new();
    assert_eq!(w.state_bytes(), 0);
    w.record(0, 1000, "a");
    let one = w.state_bytes();
    // The first minute holds the clock state to resume from.
    assert!(one >= std::mem::size_of::<ClockState>(), "{one}");
    // The same uid again adds nothing; a long uid adds at least its text.
    w.record(1, 1000, "a");
    assert_eq!(w.state_bytes(), one);
    let long = "x".repeat(1000);
    w.record(2, 1000, &long);
    assert!(w.state_bytes() >= one + 1000);
    // Thousands of distinct uids: about their packed size each.
    for i in 0..10_000u64 {
        w.record(3 + i, 1001, &format!("{i:x}"));
    }
    let many = w.state_bytes();
    assert!((10_000 * 17..=10_000 * 17 * 3).contains(&many), "{many}");
    // Closing everything gives every byte back.
    w.close_all(&mut out);
    assert_eq!(w.open_windows(), 0);
    assert_eq!(w.state_bytes(), 0);
}

/// A window far ahead is dropped at the next frame within the horizon:
/// it no longer pins the checkpoint, and nothing of it is emitted.
#[test]
fn windows_beyond_the_horizon_are_dropped_by_a_frame_within_it() {
    // Quorum 3: the liar and one honest uid ahead cannot move E.
    let rule = WatermarkRule::new(5, 3).with_horizon(Some(600));
    let start = |w: &mut Windows| {
        for (seq, uid) in ["a", "b", "c"].iter().enumerate() {
            w.record(seq as u64, 1000, uid);
        }
    };
    let mut w = Windows::new(rule);
    let mut out = Vec::new();
    start(&mut w);
    assert_eq!(w.watermark(), Some(Watermark(995)));
    let (open, bytes) = (w.open_windows(), w.state_bytes());
    // Up to W + 600 = 1595 is within; minute 1620 lies beyond.
    w.record(3, 1595, "a");
    w.record(4, 1625, "liar");
    w.record(5, 1626, "liar");
    assert_eq!(w.watermark(), Some(Watermark(995)));
    assert_eq!(w.checkpoint(6).resume_seq, 0);
    assert_eq!(w.beyond_horizon(), BeyondHorizon::default());
    // A frame near the watermark: the partition's time is still there.
    w.record(6, 1001, "a");
    assert_eq!(
        w.beyond_horizon(),
        BeyondHorizon {
            windows: 3,
            frames: 2,
            last: Some((1620, 4))
        }
    );
    // The window within the horizon (1595, minute 1560) stays.
    assert_eq!(w.open_windows(), open + 3);
    assert!(w.state_bytes() > bytes);
    w.close_all(&mut out);
    assert!(out.iter().all(|c| c.start() < 1620), "{out:?}");
    assert_eq!(w.state_bytes(), 0);
    // Frames for that minute later count as usual: it was never closed.
    let mut w = Windows::new(rule);
    start(&mut w);
    w.record(3, 1625, "liar");
    w.record(4, 1001, "a");
    assert_eq!(w.beyond_horizon().frames, 1);
    for (i, uid) in ["a", "b", "c"].iter().enumerate() {
        w.record(5 + i as u64, 1625, uid);
    }
    let mut out = Vec::new();
    w.close_all(&mut out);
    assert!(out.contains(&Closed::Minute {
        start: 1620,
        frames: 3,
        unique_users: 3
    }));
}

/// A jump in time (a sparse feed, a gap in traffic) is not dropped: no
/// frame comes near the old watermark after it.
#[test]
fn a_jump_beyond_the_horizon_is_followed() {
    let rule = WatermarkRule::new(5, 2).with_horizon(Some(600));
    let mut w = Windows::new(rule);
    let mut out = Vec::new();
    let mut seq = 0;
    for t in [1000, 10_000, 50_000, 90_000] {
        for uid in ["a", "b"] {
            w.record(seq, t, uid);
            seq += 1;
            if let Some(wm) = w.watermark() {
                w.flush(wm, &mut out);
            }
        }
    }
    w.close_all(&mut out);
    assert_eq!(w.beyond_horizon(), BeyondHorizon::default());
    let minutes = out
        .iter()
        .filter(|c| matches!(c, Closed::Minute { .. }))
        .count();
    assert_eq!(minutes, 4);
}
