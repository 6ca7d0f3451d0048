//! A crowd of bad clocks on the real broker (issue 19): 5% of the users
//! active in a minute run clocks ahead, in records whose timestamps a
//! producer sets as a live stream's (record time = the honest present) or a
//! backfill's (record time = now, frames years old). The workers emit
//! exactly what `aggregate` computes for the same input, and no frame is
//! late. And issue 18: a batch run with a bad clock does not make the next
//! run on the same group count honest frames late.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use timebucket::cmd::aggregate::{aggregate as aggregate_lib, AggregateOptions, Summary};
use timebucket::core::bucket::Routing;
use timebucket::core::frame::{default_max_ts, FrameParser, DEFAULT_MIN_TS};
use timebucket::core::window::{LateCounts, WatermarkRule};

use crate::common::pipeline::{
    aggregate, assert_same_windows, emitted_once, Pipeline, BIN, PARTITIONS,
};
use crate::common::producer_config;
use crate::time::{now, ts_of};

const DAY: u64 = 86_400;

fn uid_of(line: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    v["uid"].as_str().unwrap().to_string()
}

/// `frames` honest frames from `start` at 100 a second from 1,000 users,
/// in order, 100-byte frames.
fn honest(p: &Pipeline, name: &str, frames: u64, start: u64) -> Vec<String> {
    let path = p.dir.path().join(format!("{name}.jsonl"));
    let out = Command::new(BIN)
        .args([
            "generate",
            "-c",
            &frames.to_string(),
            "-r",
            "100",
            "-n",
            "1000",
        ])
        .args(["-l", "100", "--start", &start.to_string(), "-o"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// 5% of the fewest distinct users of any whole minute of `lines`.
fn five_percent_of_a_minute(lines: &[String]) -> usize {
    let mut per_minute: BTreeMap<u64, HashSet<String>> = BTreeMap::new();
    for line in lines {
        per_minute
            .entry(ts_of(line) / 60)
            .or_default()
            .insert(uid_of(line));
    }
    let counts: Vec<usize> = per_minute.values().map(HashSet::len).collect();
    counts[1..counts.len() - 1].iter().min().unwrap() * 5 / 100
}

/// One record to produce: the frame and its record time (unix seconds).
struct Rec {
    line: String,
    time: u64,
}

/// The honest lines with a crowd: `crowd` users, user `c` ahead by
/// `aheads[c % len]`, each sending 8 frames spread after the first two
/// minutes. Record times from `record_time(honest ts at that point)`.
fn with_crowd(
    lines: &[String],
    crowd: usize,
    aheads: &[u64],
    record_time: impl Fn(u64) -> u64,
) -> Vec<Rec> {
    let first = ts_of(&lines[0]);
    let warm = lines.iter().position(|l| ts_of(l) >= first + 120).unwrap();
    let span = lines.len() - warm;
    let mut out = Vec::new();
    let mut now = first;
    for (i, line) in lines.iter().enumerate() {
        now = now.max(ts_of(line));
        for c in 0..crowd {
            for k in 0..8 {
                // A fixed, spread position for each of the crowd's frames.
                let at = warm + (c * 7_919 + k * span / 8) % span;
                if at == i {
                    let ts = now + aheads[c % aheads.len()];
                    out.push(Rec {
                        line: format!("{{\"ts\":{ts},\"uid\":\"crowd-{c}\"}}"),
                        time: record_time(now),
                    });
                }
            }
        }
        out.push(Rec {
            line: line.clone(),
            time: record_time(ts_of(line)),
        });
    }
    out
}

/// Sends every record to the partition its ts routes to, with its record
/// time, and writes the same lines, in the same order, to a file.
fn produce(p: &Pipeline, records: &[Rec], file: &Path) {
    let producer: BaseProducer = producer_config(&p.bootstrap).create().unwrap();
    let mut text = String::new();
    for r in records {
        let ts = ts_of(&r.line);
        let partition = ((ts / 900) % PARTITIONS as u64) as i32;
        let record = BaseRecord::<(), _>::to(&p.input)
            .payload(&r.line)
            .partition(partition)
            .timestamp(r.time as i64 * 1000);
        producer.send(record).map_err(|(e, _)| e).unwrap();
        producer.poll(Duration::ZERO);
        text.push_str(&r.line);
        text.push('\n');
    }
    producer.flush(Duration::from_secs(60)).unwrap();
    std::fs::write(file, text).unwrap();
}

/// `aggregate`'s summary for `path` with the default rule.
fn offline(path: &Path) -> Summary {
    let opts = AggregateOptions {
        routing: Routing::new(900, PARTITIONS as u32).unwrap(),
        rule: WatermarkRule::default(),
        parser: FrameParser::new(DEFAULT_MIN_TS, default_max_ts(now())),
        log_invalid: 0,
    };
    aggregate_lib(std::fs::File::open(path).unwrap(), std::io::sink(), &opts).unwrap()
}

/// Runs two workers to the end and checks: the windows equal `aggregate`'s,
/// nothing is late, offline or on Kafka.
fn run_and_compare(p: &Pipeline, file: &Path, frames: usize) {
    let summary = offline(file);
    assert_eq!(summary.valid as usize, frames);
    assert_eq!(summary.late, LateCounts::default(), "late offline");
    let workers = (0..2).map(|_| p.worker(&[])).collect();
    p.wait_all(workers, Duration::from_secs(300));
    assert_same_windows(&emitted_once(p), &aggregate(file), || p.worker_logs());
    let reports = p.reports();
    // Records replayed after a rebalance are counted once more in `frames`.
    let counted: u64 = reports
        .iter()
        .map(|r| r.summary.frames - r.summary.replayed)
        .sum();
    let late: u64 = reports.iter().map(|r| r.summary.late_seconds).sum();
    assert_eq!(counted as usize, frames, "{}", p.worker_logs());
    assert_eq!(late, 0, "late frames on Kafka\n{}", p.worker_logs());
}

/// The start of a bucket `back` seconds ago, plus a minute: ten minutes
/// from there stay in one bucket.
fn bucket_start(back: u64) -> u64 {
    let t = now() - back;
    t - t % 900 + 60
}

/// Live-like: record time = the honest present; 5% of the users a day
/// ahead (within the validity bound of their records).
#[test]
fn a_crowd_a_day_ahead_in_a_live_stream_costs_no_one_anything() {
    let p = Pipeline::new("crowdlive");
    let lines = honest(&p, "live", 60_000, bucket_start(3_600));
    let crowd = five_percent_of_a_minute(&lines);
    assert!(crowd >= 40, "{crowd}");
    let records = with_crowd(&lines, crowd, &[DAY - 400], |t| t);
    let file: PathBuf = p.dir.path().join("live-crowd.jsonl");
    produce(&p, &records, &file);
    run_and_compare(&p, &file, records.len());
}

/// Backfill: frames three years old, record time = now; 5% of the users
/// ahead by 90 s or an hour.
#[test]
fn a_crowd_ahead_in_a_backfill_costs_no_one_anything() {
    let p = Pipeline::new("crowdback");
    let lines = honest(&p, "back", 60_000, bucket_start(3 * 365 * DAY));
    let crowd = five_percent_of_a_minute(&lines);
    assert!(crowd >= 40, "{crowd}");
    let at = now();
    let records = with_crowd(&lines, crowd, &[90, 3_600], |_| at);
    let file = p.dir.path().join("back-crowd.jsonl");
    produce(&p, &records, &file);
    run_and_compare(&p, &file, records.len());
}

/// Issue 18: a batch run whose input has a clock a day ahead, then a run
/// on the same group with the honest stream going on: the second run
/// counts no frame late (the old end-of-input floor, the largest ts seen,
/// made every one of them late).
#[test]
fn a_bad_clock_in_one_batch_run_costs_the_next_run_nothing() {
    let p = Pipeline::new("poison");
    let start = bucket_start(7_200);
    let day1 = honest(&p, "day1", 30_000, start);
    let first = with_crowd(&day1, 2, &[DAY - 400, DAY - 300], |t| t);
    produce(&p, &first, &p.dir.path().join("run1.jsonl"));
    let w = p.worker(&[]);
    p.wait_all(vec![w], Duration::from_secs(120));
    let late_after =
        |p: &Pipeline| -> u64 { p.reports().iter().map(|r| r.summary.late_seconds).sum() };
    assert_eq!(late_after(&p), 0, "{}", p.worker_logs());

    let day2: Vec<Rec> = honest(&p, "day2", 15_000, start + 420)
        .into_iter()
        .map(|line| {
            let time = ts_of(&line);
            Rec { line, time }
        })
        .collect();
    produce(&p, &day2, &p.dir.path().join("run2.jsonl"));
    let w = p.worker(&[]);
    p.wait_all(vec![w], Duration::from_secs(120));
    assert_eq!(p.reports().len(), 2);
    assert_eq!(late_after(&p), 0, "{}", p.worker_logs());
}
