//! Parse + count throughput on challenge-like 2 KB frames, beside baselines
//! measured in the same run (the machines are noisy): a newline count
//! (the floor of any line reader) and serde_json validation of the same bytes.
//! The parse runs on each stage-1 classifier too (AVX2, SSE4.2, scalar).
//!
//! Also what a worker's metrics cost it: one `WorkerMetrics::publish` per
//! poll batch (up to 512 records), beside the parse + count of one frame.
//!
//! And what the routing guard costs a worker's partition state machine:
//! `Partition::on_record` over the same frames, guarded and not.
//!
//! Run: `cargo bench --bench parse_count`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use timebucket::cmd::generate::{generate, GenerateOptions};
use timebucket::cmd::worker::{Partition, Rules, WorkerSummary};
use timebucket::core::bucket::Routing;
use timebucket::core::frame::{with_simd_level, FrameParser, Line, SimdLevel};
use timebucket::core::partition::Start;
use timebucket::core::partitioned::PartitionedWindows;
use timebucket::core::window::WatermarkRule;
use timebucket::observe::worker::WorkerMetrics;

fn frames() -> Vec<u8> {
    let mut out = Vec::new();
    let opts = GenerateOptions {
        count: 20_000,
        ..GenerateOptions::default()
    };
    generate(&opts, &mut out).expect("generate into memory");
    out
}

/// Lines split the way the product's readers do (memchr); a byte-by-byte
/// `split` would cost more than a quarter of the parse itself.
fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut start = 0;
    memchr::memchr_iter(b'\n', data).map(move |end| {
        let line = &data[start..end];
        start = end + 1;
        line
    })
}

fn bench(c: &mut Criterion) {
    let data = frames();
    let parser = FrameParser::default();
    let mut group = c.benchmark_group("2KB frames");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.sample_size(20);

    group.bench_function("baseline: count newlines (memchr)", |b| {
        b.iter(|| memchr::memchr_iter(b'\n', black_box(&data)).count())
    });
    group.bench_function("baseline: serde_json validate (IgnoredAny)", |b| {
        b.iter(|| {
            lines(black_box(&data))
                .filter(|l| !l.is_empty())
                .filter(|l| serde_json::from_slice::<serde::de::IgnoredAny>(l).is_ok())
                .count()
        })
    });
    group.bench_function("timebucket: parse", |b| {
        b.iter(|| {
            lines(black_box(&data))
                .filter(|l| matches!(parser.parse(l), Line::Frame(_)))
                .count()
        })
    });
    // The same parse on each stage-1 classifier (the line above runs the
    // best one this CPU has, capped by TIMEBUCKET_SIMD).
    for level in SimdLevel::ALL.into_iter().filter(|l| l.available()) {
        group.bench_function(format!("timebucket: parse, {}", level.name()), |b| {
            with_simd_level(level, || {
                b.iter(|| {
                    lines(black_box(&data))
                        .filter(|l| matches!(parser.parse(l), Line::Frame(_)))
                        .count()
                })
            })
        });
    }
    group.bench_function("timebucket: parse + count", |b| {
        b.iter(|| {
            let mut windows =
                PartitionedWindows::new(Routing::new(900, 8).unwrap(), WatermarkRule::default());
            for line in lines(black_box(&data)) {
                if let Line::Frame(f) = parser.parse(line) {
                    windows.record(f.ts, &f.uid);
                    windows.take_closed().for_each(drop);
                }
            }
            windows.finish();
            windows.take_closed().count()
        })
    });
    group.finish();

    // One partition, so that the guard lets every frame through: the
    // figures differ only by the route check itself.
    let rules = Rules {
        watermark: WatermarkRule::default(),
        parser,
        max_future: None,
    };
    let routing = Routing::new(900, 1).unwrap();
    let mut group = c.benchmark_group("worker partition");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.sample_size(20);
    for guarded in [false, true] {
        let name = if guarded {
            "on_record, routing guard"
        } else {
            "on_record, no guard (baseline)"
        };
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut p = Partition::new(Start::Fresh { log_start: 0 }, rules);
                if guarded {
                    p = p.guarded(routing, 0);
                }
                let mut closed = Vec::new();
                for (offset, line) in lines(black_box(&data)).enumerate() {
                    p.on_record(offset as u64, None, line, &mut closed);
                    closed.clear();
                }
                p.position()
            })
        });
    }
    group.finish();

    let metrics = WorkerMetrics::new();
    let mut summary = WorkerSummary::default();
    summary.count_invalid("not_json");
    let mut group = c.benchmark_group("worker metrics");
    group.bench_function("publish the summary (once per poll batch)", |b| {
        b.iter(|| {
            summary.frames += 512;
            metrics.publish(black_box(&summary));
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
