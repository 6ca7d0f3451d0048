//! What the event clock costs per frame: the crowd rule (a share of the
//! minute's users, docs/semantics.md) beside the previous rule (the K-th
//! largest per-uid maximum, K = 2, kept here only as the baseline), in the
//! same run; and the windows with each rule (`Windows::record` + flush).
//!
//! Before the benchmarks it prints the close delay on honest data: how many
//! seconds of event time the watermark trails the plain largest-ts rule's,
//! after every frame, median and worst, per partition of a generated file.
//!
//! Run: `cargo bench --bench clock`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use timebucket::cmd::generate::{generate, GenerateOptions};
use timebucket::core::bucket::Routing;
use timebucket::core::clock::{uid_key, EventClock, Quorum};
use timebucket::core::frame::{FrameParser, Line};
use timebucket::core::window::{WatermarkRule, Windows};

/// The previous rule, as it was: the top K `(key, M)` pairs, sorted.
#[derive(Clone, Copy)]
struct OldClock {
    len: usize,
    top: [(u64, u64); 2],
}

impl OldClock {
    fn observe(&mut self, uid: &str, ts: u64) {
        let key = uid_key(uid);
        let (k, len, top) = (2, self.len, &mut self.top);
        if let Some(i) = top[..len].iter().position(|&(u, _)| u == key) {
            if ts <= top[i].1 {
                return;
            }
            top[i].1 = ts;
        } else if len < k {
            top[len] = (key, ts);
            self.len += 1;
        } else if ts > top[k - 1].1 {
            top[k - 1] = (key, ts);
        } else {
            return;
        }
        let len = self.len;
        top[..len].sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    }
}

/// `(ts, uid)` of generated frames: `users` users, `rate` frames a second.
fn frames(count: u64, rate: u32, users: u32) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let opts = GenerateOptions {
        count,
        rate,
        users,
        frame_len: 100,
        max_delay: 3,
        delay_percent: 5.0,
        ..GenerateOptions::default()
    };
    generate(&opts, &mut out).expect("generate into memory");
    let parser = FrameParser::new(0, u64::MAX);
    out.split(|&b| b == b'\n')
        .filter_map(|line| match parser.parse(line) {
            Line::Frame(f) => Some((f.ts, f.uid.into_owned())),
            _ => None,
        })
        .collect()
}

/// Per partition, after every frame: plain watermark minus ours, in
/// seconds (only where both are defined).
fn close_delays(frames: &[(u64, String)], partitions: u32) -> Vec<u64> {
    let routing = Routing::new(900, partitions).expect("a valid routing");
    let p = partitions as usize;
    let mut plain: Vec<Windows> = (0..p)
        .map(|_| Windows::new(WatermarkRule::largest_ts(5)))
        .collect();
    let mut ours: Vec<Windows> = (0..p)
        .map(|_| Windows::new(WatermarkRule::default()))
        .collect();
    let mut out = Vec::new();
    let mut delays = Vec::new();
    for (i, (ts, uid)) in frames.iter().enumerate() {
        let part = routing.route(*ts, uid) as usize;
        for w in [&mut plain[part], &mut ours[part]] {
            w.record(i as u64, *ts, uid);
            if let Some(wm) = w.watermark() {
                w.flush(wm, &mut out);
            }
            out.clear();
        }
        if let (Some(a), Some(b)) = (plain[part].watermark(), ours[part].watermark()) {
            delays.push(a.0.saturating_sub(b.0));
        }
    }
    delays.sort_unstable();
    delays
}

fn report_delays() {
    for (count, rate, users, partitions) in [
        (60_000u64, 17u32, 3_000u32, 8u32),
        (200_000, 1_000, 100_000, 8),
        (200_000, 200, 2_000, 1),
    ] {
        let data = frames(count, rate, users);
        let d = close_delays(&data, partitions);
        eprintln!(
            "close delay vs the plain rule ({count} frames, {rate}/s, {users} users, P = {partitions}): \
             median {} s, p99 {} s, worst {} s",
            d[d.len() / 2],
            d[d.len() * 99 / 100],
            d[d.len() - 1]
        );
    }
}

fn bench(c: &mut Criterion) {
    report_delays();
    let data = frames(100_000, 1_000, 3_000);
    let mut group = c.benchmark_group("event clock");
    group.throughput(Throughput::Elements(data.len() as u64));
    group.sample_size(20);
    group.bench_function("previous rule (K = 2)", |b| {
        b.iter(|| {
            let mut clock = OldClock {
                len: 0,
                top: [(0, 0); 2],
            };
            for (ts, uid) in &data {
                clock.observe(uid, *ts);
            }
            black_box(clock.top[1].1)
        })
    });
    group.bench_function("crowd rule (2, 5%)", |b| {
        b.iter(|| {
            let mut clock = EventClock::new(Quorum::default());
            for (ts, uid) in &data {
                clock.observe(uid, *ts);
            }
            black_box(clock.time())
        })
    });
    for (name, rule) in [
        ("windows, fixed quorum 2", WatermarkRule::new(5, 2)),
        ("windows, crowd rule (2, 5%)", WatermarkRule::default()),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut w = Windows::new(rule);
                let mut out = Vec::new();
                for (i, (ts, uid)) in data.iter().enumerate() {
                    w.record(i as u64, *ts, uid);
                    if let Some(wm) = w.watermark() {
                        w.flush(wm, &mut out);
                    }
                    out.clear();
                }
                black_box(w.late())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
