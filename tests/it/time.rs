//! Time on the real broker (issue 10): a user whose clock runs ahead costs
//! no one else a frame, through the whole pipeline read with
//! `read_committed`; late frames are counted and sent to the late topic; a
//! worker whose clock is two days behind its input still accepts every
//! frame, because a frame's bound is its record's timestamp.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use timebucket::cmd::aggregate::{aggregate as aggregate_lib, AggregateOptions, Summary};
use timebucket::core::bucket::Routing;
use timebucket::core::clock::Quorum;
use timebucket::core::frame::{default_max_ts, FrameParser, DEFAULT_MIN_TS};
use timebucket::core::window::WatermarkRule;

use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use timebucket::core::compare::WindowSet;

use crate::common::pipeline::{
    aggregate, assert_same_windows, emitted_once, read_topic, Pipeline, BIN, PARTITIONS,
};
use crate::common::producer_config;

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A frame's root `ts`, a number or a string of digits.
pub(crate) fn ts_of(line: &str) -> u64 {
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    v["ts"]
        .as_u64()
        .or_else(|| v["ts"].as_str()?.parse().ok())
        .unwrap()
}

/// `aggregate`'s summary for `path` with watermark quorum `quorum`.
fn offline(path: &Path, quorum: Quorum) -> Summary {
    let opts = AggregateOptions {
        routing: Routing::new(900, PARTITIONS as u32).unwrap(),
        rule: WatermarkRule::with_quorum(5, quorum),
        parser: FrameParser::new(DEFAULT_MIN_TS, default_max_ts(now())),
        log_invalid: 0,
    };
    let input = std::fs::File::open(path).unwrap();
    aggregate_lib(input, std::io::sink(), &opts).unwrap()
}

/// The input with frames of one user whose clock runs ahead: one frame 10
/// minutes ahead, one a day ahead, and 50 more 10 minutes ahead spread
/// over the stream (the three cases measured on the old rule).
fn with_bad_clock(clean: &Path, out: &Path) -> usize {
    let text = std::fs::read_to_string(clean).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let ts_of = |line: &str| -> u64 {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        v["ts"]
            .as_u64()
            .or_else(|| v["ts"].as_str()?.parse().ok())
            .unwrap()
    };
    let mut mixed = String::new();
    let mut inserted = 0;
    let every = lines.len() / 50;
    for (i, line) in lines.iter().enumerate() {
        let ahead = match i {
            1_000 => Some(600),
            2_000 => Some(86_400),
            i if i % every == every / 2 => Some(600),
            _ => None,
        };
        if let Some(ahead) = ahead {
            let ts = ts_of(line) + ahead;
            mixed.push_str(&format!("{{\"ts\":{ts},\"uid\":\"bad-clock\"}}\n"));
            inserted += 1;
        }
        mixed.push_str(line);
        mixed.push('\n');
    }
    std::fs::write(out, mixed).unwrap();
    inserted
}

#[test]
fn a_bad_clock_mid_stream_costs_no_one_anything() {
    let p = Pipeline::new("badclock");
    let clean = p.input_file(40_000, &[]);
    let path = p.dir.path().join("bad-clock.jsonl");
    let inserted = with_bad_clock(&clean, &path);

    // Offline first. The old rule (quorum 1) loses thousands of frames to
    // the bad clock. The default loses none of the frames within the
    // lateness of the honest stream: a bad clock can at most take one of
    // the quorum's places, so the watermark stays at or below the largest
    // honest ts minus L, and only frames the plain rule would find late on
    // the clean stream can become late.
    let before = offline(&clean, Quorum::default());
    let after = offline(&path, Quorum::default());
    let plain_clean = offline(&clean, Quorum::fixed(1));
    assert_eq!(after.valid, before.valid + inserted as u64);
    assert!(
        before.late.seconds <= after.late.seconds
            && after.late.seconds <= plain_clean.late.seconds
            && before.late.minutes <= after.late.minutes
            && after.late.minutes <= plain_clean.late.minutes,
        "collateral damage offline: clean {:?}, with the bad clock {:?}, plain rule on the clean stream {:?}",
        before.late,
        after.late,
        plain_clean.late
    );
    let old = offline(&path, Quorum::fixed(1));
    assert!(
        old.late.minutes > plain_clean.late.minutes + 1_000,
        "the old rule should lose frames here: {:?}",
        old.late
    );

    p.ingest(&path);
    let workers = (0..2).map(|_| p.worker(&[])).collect();
    p.wait_all(workers, Duration::from_secs(240));
    assert_same_windows(&emitted_once(&p), &aggregate(&path), || p.worker_logs());

    // Late frames: the workers count what aggregate counts, and send each
    // one, unchanged and once, to the late topic.
    let reports = p.reports();
    let late_seconds: u64 = reports.iter().map(|r| r.summary.late_seconds).sum();
    let late_minutes: u64 = reports.iter().map(|r| r.summary.late_minutes).sum();
    assert_eq!(
        (late_seconds, late_minutes),
        (after.late.seconds, after.late.minutes)
    );
    assert!(late_seconds > 0, "the input has frames beyond the lateness");
    let late = read_topic(&p.bootstrap, p.late.as_ref().unwrap());
    assert_eq!(late.len() as u64, late_seconds);
    let minutes = late
        .iter()
        .filter(|r| r.headers["timebucket.late"] == "minute")
        .count();
    assert_eq!(minutes as u64, late_minutes);
    for r in &late {
        let v: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
        assert_ne!(
            v["uid"], "bad-clock",
            "a bad clock's frames are early, not late"
        );
        let watermark: u64 = r.headers["timebucket.watermark"].parse().unwrap();
        let window: u64 = r.headers["timebucket.window"].parse().unwrap();
        let len = if r.headers["timebucket.late"] == "minute" {
            60
        } else {
            1
        };
        assert!(
            window + len <= watermark,
            "a late frame's window had closed"
        );
    }
}

/// Day 2, and clocks that disagree: frames dated two days after the
/// worker's own clock, in records stamped by a producer whose clock agrees
/// with them. The worker decides by the records' timestamps, so it accepts
/// every frame; with its own clock as "now" (the old rule, now + 1 day) it
/// would dead-letter them all as `ts_out_of_range`, as it did with current
/// frames after a day of uptime.
#[test]
fn a_worker_two_days_behind_its_input_accepts_every_frame() {
    // Kafka 4 refuses CreateTime more than an hour ahead of the broker's
    // clock unless the topic allows it: this one allows a week.
    let p = Pipeline::on(
        &crate::common::bootstrap(),
        "day2",
        1,
        &[("message.timestamp.after.max.ms", "604800000")],
    );
    let path = p.dir.path().join("ahead.jsonl");
    let start = now() + 2 * 86_400;
    let out = Command::new(BIN)
        .args(["generate", "-c", "3000", "-r", "10", "-n", "300"])
        .args(["--start", &start.to_string(), "-o"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success());

    // A producer whose clock is two days ahead: CreateTime = the frame's ts.
    let producer: BaseProducer = producer_config(&p.bootstrap).create().unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    for line in text.lines() {
        let ts = ts_of(line);
        let partition = ((ts / 900) % PARTITIONS as u64) as i32;
        let record = BaseRecord::<(), _>::to(&p.input)
            .payload(line)
            .partition(partition)
            .timestamp(ts as i64 * 1000);
        producer.send(record).map_err(|(e, _)| e).unwrap();
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    let written: i64 = crate::common::end_offsets(&p.bootstrap, &p.input)
        .values()
        .sum();
    assert_eq!(written, 3_000, "the broker took every record");

    let worker = p.worker(&[]);
    p.wait_all(vec![worker], Duration::from_secs(120));
    let reports = p.reports();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].summary.invalid, 0, "{}", p.worker_logs());
    assert_eq!(reports[0].summary.frames, 3_000);
    assert!(read_topic(&p.bootstrap, &p.dead_letter).is_empty());
    // aggregate's clock is "now" too: give it the bound the records give.
    let out = p
        .command(&["aggregate", "-P", &PARTITIONS.to_string()])
        .args(["--max-ts", &(start + 86_400 * 2).to_string()])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success());
    let want = WindowSet::from_json_lines(&out.stdout).unwrap();
    assert_same_windows(&emitted_once(&p), &want, || p.worker_logs());
}
