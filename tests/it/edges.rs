//! Kafka's edges on the real broker (issue 11, points 1 and 2): a record too
//! large for the dead-letter or forward topic is dead-lettered within the
//! topic's limit, or stops the worker naming it; retention below a committed
//! checkpoint or under a whole partition is counted and logged, never a
//! livelock; `--until-end` finishes on emptied partitions and after
//! transaction markers and aborted records; input written by a
//! transactional producer counts exactly its committed frames.

use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use rdkafka::admin::AdminOptions;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use timebucket::cmd::worker::WorkerSummary;
use timebucket::core::bucket::Routing;

use crate::common::pipeline::{
    aggregate, assert_same_windows, emitted_once, read_topic, Pipeline, PARTITIONS,
};
use crate::common::{
    admin, bootstrap, consumer_config, create_topic_with, producer_config, runtime,
};

const T0: u64 = 1_468_243_800;
const MIB2: &str = "2097152";

/// Fresh topics: the input with `input_partitions` partitions taking 2 MiB
/// records; the dead-letter and forward topics with the given
/// `max.message.bytes`.
fn topics(tag: &str, input_partitions: i32, dead_letter: &str, forward: &str) -> Pipeline {
    let p = Pipeline::named(&bootstrap(), tag, None);
    let big = [("max.message.bytes", MIB2)];
    create_topic_with(&p.bootstrap, &p.input, input_partitions, 1, &big);
    create_topic_with(&p.bootstrap, &p.seconds, 2, 1, &[]);
    create_topic_with(&p.bootstrap, &p.minutes, 2, 1, &[]);
    create_topic_with(
        &p.bootstrap,
        &p.dead_letter,
        1,
        1,
        &[("max.message.bytes", dead_letter)],
    );
    create_topic_with(
        &p.bootstrap,
        &p.forward,
        2,
        1,
        &[("max.message.bytes", forward)],
    );
    p
}

fn frame(ts: u64, uid: &str) -> Vec<u8> {
    format!(r#"{{"ts":{ts},"uid":"{uid}"}}"#).into_bytes()
}

/// Produces `records` (partition, payload) in order, plainly.
fn produce(p: &Pipeline, records: &[(i32, Vec<u8>)]) {
    let producer: BaseProducer = producer_config(&p.bootstrap)
        .set("message.max.bytes", "3000000")
        .create()
        .unwrap();
    for (partition, payload) in records {
        producer
            .send(
                BaseRecord::<(), _>::to(&p.input)
                    .partition(*partition)
                    .payload(payload),
            )
            .unwrap();
    }
    producer.flush(Duration::from_secs(60)).unwrap();
}

/// Deletes the records of `partition` below `before` (AdminClient
/// DeleteRecords, as `kafka-delete-records.sh` does).
fn delete_records(p: &Pipeline, partition: i32, before: i64) {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&p.input, partition, Offset::Offset(before))
        .unwrap();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let result = runtime()
        .block_on(admin(&p.bootstrap).delete_records(&tpl, &opts))
        .unwrap();
    for e in result.elements() {
        assert!(e.error().is_ok(), "delete records: {:?}", e.error());
    }
}

/// Waits for a worker; a livelocked one is killed and fails the test.
fn finish(p: &Pipeline, mut worker: Child, deadline: Duration) -> ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = worker.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > deadline {
            let _ = worker.kill();
            panic!(
                "worker did not finish within {deadline:?}\n{}",
                p.worker_logs()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs one worker to the end of the input; it must succeed.
fn run_ok(p: &Pipeline, extra: &[&str]) {
    let status = finish(p, p.worker(extra), Duration::from_secs(120));
    assert!(status.success(), "worker: {status}\n{}", p.worker_logs());
}

/// The sum of the finished workers' summaries.
fn summed(p: &Pipeline) -> WorkerSummary {
    let mut sum = WorkerSummary::default();
    for r in p.reports() {
        sum.frames += r.summary.frames;
        sum.invalid += r.summary.invalid;
        sum.replayed += r.summary.replayed;
        sum.too_large_for_topic += r.summary.too_large_for_topic;
        sum.lost_to_retention += r.summary.lost_to_retention;
    }
    sum
}

/// A 1.5 MB record (valid in the 2 MiB input topic, too large as a frame)
/// and a valid frame too large for the forward topic: both reach the
/// dead-letter topic within its limit, with their headers.
fn oversized_records_reach_the_dead_letter_topic(extra: &[&str]) {
    let dead_limit = 1_048_576;
    let p = topics("edges-big", 1, &dead_limit.to_string(), "2000");
    let mut big = br#"{"ts":1468243801,"uid":""#.to_vec();
    big.extend(std::iter::repeat_n(b'x', 1_500_000));
    big.extend(br#""}"#);
    let wide = frame(T0 + 2, &"w".repeat(3_000));
    produce(
        &p,
        &[
            (0, frame(T0, "a")),
            (0, big.clone()),
            (0, wide.clone()),
            (0, frame(T0 + 3, "b")),
        ],
    );
    // A 3,000-byte uid is over the default cap (`uid_too_long`): this test
    // is about the forward topic's limit, so the cap is raised past it.
    let mut args = vec!["--forward", "--max-uid-bytes", "4096"];
    args.extend_from_slice(extra);
    run_ok(&p, &args);

    let mut dead = read_topic(&p.bootstrap, &p.dead_letter);
    assert_eq!(dead.len(), 2, "{}", p.worker_logs());
    dead.sort_by_key(|r| r.headers["timebucket.offset"].clone());
    let (cut, wide_dead) = (&dead[0], &dead[1]);
    assert_eq!(cut.headers["timebucket.reason"], "too_large");
    assert_eq!(cut.headers["timebucket.partition"], "0");
    assert_eq!(cut.headers["timebucket.offset"], "1");
    assert_eq!(cut.headers["timebucket.size"], big.len().to_string());
    assert_eq!(cut.headers["timebucket.truncated"], "true");
    assert!(cut.payload.len() < dead_limit && cut.payload.len() > 1_000_000);
    assert_eq!(cut.payload[..], big[..cut.payload.len()]);

    assert_eq!(
        wide_dead.headers["timebucket.reason"],
        "too_large_for_topic"
    );
    assert_eq!(wide_dead.headers["timebucket.offset"], "2");
    assert_eq!(wide_dead.headers["timebucket.topic"], p.forward);
    assert!(!wide_dead.headers.contains_key("timebucket.truncated"));
    assert_eq!(wide_dead.payload, wide);

    assert_eq!(read_topic(&p.bootstrap, &p.forward).len(), 2);
    let s = summed(&p);
    assert_eq!((s.frames, s.invalid, s.too_large_for_topic), (3, 1, 1));
}

#[test]
fn oversized_records_reach_the_dead_letter_topic_exactly_once() {
    oversized_records_reach_the_dead_letter_topic(&[]);
}

#[test]
fn oversized_records_reach_the_dead_letter_topic_at_least_once() {
    oversized_records_reach_the_dead_letter_topic(&["--at-least-once"]);
}

/// A dead-letter topic that cannot take even the headers: the worker
/// stops with exit code 7 naming the record, and commits nothing past it.
fn an_undeliverable_dead_letter_stops_the_worker(extra: &[&str]) {
    let p = topics("edges-refused", 1, "150", MIB2);
    produce(
        &p,
        &[
            (0, frame(T0, "a")),
            (0, b"not json".to_vec()),
            (0, frame(T0 + 1, "b")),
        ],
    );
    let status = finish(&p, p.worker(extra), Duration::from_secs(120));
    let logs = p.worker_logs();
    assert_eq!(status.code(), Some(7), "{logs}");
    assert!(logs.contains("input partition 0 offset 1"), "{logs}");
    assert!(read_topic(&p.bootstrap, &p.dead_letter).is_empty());
}

#[test]
fn an_undeliverable_dead_letter_stops_the_worker_exactly_once() {
    an_undeliverable_dead_letter_stops_the_worker(&[]);
}

#[test]
fn an_undeliverable_dead_letter_stops_the_worker_at_least_once() {
    an_undeliverable_dead_letter_stops_the_worker(&["--at-least-once"]);
}

/// The group's committed offset of `partition`.
fn committed(p: &Pipeline, partition: i32) -> i64 {
    let consumer: BaseConsumer = consumer_config(&p.bootstrap, &p.group).create().unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(&p.input, partition);
    let got = consumer
        .committed_offsets(tpl, Duration::from_secs(30))
        .unwrap();
    match got.elements()[0].offset() {
        Offset::Offset(o) => o,
        other => panic!("no committed offset: {other:?}"),
    }
}

/// Frames one a second from `from`, uid by index.
fn seconds(partition: i32, from: u64, n: u64) -> Vec<(i32, Vec<u8>)> {
    (0..n)
        .map(|i| (partition, frame(from + i, &format!("u{i}"))))
        .collect()
}

/// Retention removes records below the committed checkpoint: the next
/// worker resumes at the log start, counts the offsets lost and logs them
/// as an error, and finishes.
#[test]
fn retention_below_the_checkpoint_is_counted_and_the_worker_goes_on() {
    let p = topics("edges-retention", 1, MIB2, MIB2);
    produce(&p, &seconds(0, T0, 100));
    run_ok(&p, &[]);
    let checkpoint = committed(&p, 0);
    assert!(checkpoint > 0 && checkpoint <= 100, "{checkpoint}");
    produce(&p, &seconds(0, T0 + 100, 100));
    delete_records(&p, 0, 150);
    run_ok(&p, &[]);
    let last = p
        .reports()
        .into_iter()
        .max_by_key(|r| r.started_ms)
        .unwrap();
    assert_eq!(last.summary.lost_to_retention, 150 - checkpoint as u64);
    assert_eq!(last.summary.frames, 50);
    assert_eq!(committed(&p, 0), 200);
}

/// `--until-end` on a partition retention emptied (its end offset is not
/// 0, no record is left): without a checkpoint (nothing lost), and with
/// one below the new log start (the offsets between are lost).
#[test]
fn until_end_finishes_on_partitions_retention_emptied() {
    let p = topics("edges-empty", 3, MIB2, MIB2);
    let mut records = seconds(0, T0, 20);
    records.extend(seconds(1, T0 + 900, 10));
    records.extend(seconds(2, T0 + 1800, 10));
    produce(&p, &records);
    delete_records(&p, 2, 10);
    run_ok(&p, &[]);
    assert_eq!(summed(&p).frames, 30);
    assert_eq!(summed(&p).lost_to_retention, 0);
    assert_eq!(committed(&p, 1), 10);

    let mut more = seconds(0, T0 + 20, 5);
    more.extend(seconds(1, T0 + 910, 5));
    produce(&p, &more);
    delete_records(&p, 1, 15);
    run_ok(&p, &[]);
    let s = summed(&p);
    assert_eq!(s.frames, 35);
    assert_eq!(s.lost_to_retention, 5);
    assert_eq!(committed(&p, 1), 15);
}

/// Input written by a transactional producer, with aborted transactions in
/// the middle and at the end: transaction markers and aborted records are
/// gaps in the offsets, the end offset is never a record's. Two workers
/// finish and emit exactly what `aggregate` says of the committed frames.
#[test]
fn transactional_input_gives_the_windows_of_its_committed_frames() {
    let p = Pipeline::new("edges-txn");
    let path = p.input_file(6_000, &[]);
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let routing = Routing::new(900, PARTITIONS as u32).unwrap();
    let ts = |line: &str| -> u64 {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        v["ts"]
            .as_u64()
            .or_else(|| v["ts"].as_str()?.parse().ok())
            .unwrap()
    };
    let producer: BaseProducer = producer_config(&p.bootstrap)
        .set("transactional.id", crate::common::unique_name("edges-txn"))
        .create()
        .unwrap();
    let timeout = Duration::from_secs(30);
    producer.init_transactions(timeout).unwrap();
    let send = |line: &str| loop {
        let partition = routing.partition(ts(line)) as i32;
        let record = BaseRecord::<(), _>::to(&p.input)
            .partition(partition)
            .payload(line);
        match producer.send(record) {
            Ok(()) => return,
            Err(_) => {
                producer.poll(Duration::from_millis(10));
            }
        }
    };
    let aborted = |at: usize| {
        producer.begin_transaction().unwrap();
        for line in &lines[at..at + 300] {
            send(&format!(r#"{{"ts":{},"uid":"aborted-{at}"}}"#, ts(line)));
        }
        producer.flush(timeout).unwrap();
        producer.abort_transaction(timeout).unwrap();
    };
    for (i, chunk) in lines.chunks(700).enumerate() {
        if i == 3 {
            aborted(1_000);
        }
        producer.begin_transaction().unwrap();
        for line in chunk {
            send(line);
        }
        producer.commit_transaction(timeout).unwrap();
    }
    aborted(4_000);

    let workers = vec![p.worker(&[]), p.worker(&[])];
    p.wait_all(workers, Duration::from_secs(180));
    assert_same_windows(&emitted_once(&p), &aggregate(&path), || p.worker_logs());
    let s = summed(&p);
    assert_eq!(
        s.frames - s.replayed,
        lines.len() as u64,
        "{}",
        p.worker_logs()
    );
    assert_eq!(s.lost_to_retention, 0);
}
