//! Unit tests of the window core: counting, closing, late frames, the
//! floor, and resuming from a checkpoint.

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
