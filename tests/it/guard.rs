//! Kafka's edges on the real broker (issue 11, points 3 and 4): a frame
//! written to the wrong partition is dead-lettered as `wrong_partition`;
//! `ingest` and `worker` stop with exit code 10 when the input's partition
//! count changes under them; `topics` refuses to repartition an input in use
//! without `--allow-repartition`; a committed offset without a valid
//! checkpoint (an offset reset, crafted metadata) stops the worker with exit
//! code 11, and `--on-missing-checkpoint=restart` recomputes the partition
//! without emitting any window with another value.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminOptions, NewPartitions};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use timebucket::cmd::worker::WorkerReport;
use timebucket::core::bucket::Routing;
use timebucket::kafka::read::read_to_end;
use timebucket::kafka::topics::partition_count;

use crate::common::pipeline::{
    aggregate, assert_same_windows, emitted, emitted_once, read_topic, Pipeline, PARTITIONS,
};
use crate::common::{admin, consumer_config, end_offsets, producer_config, runtime};

const TIMEOUT: Duration = Duration::from_secs(30);

/// The exit code of `child`, which must end within `deadline`.
fn exit_code(child: &mut Child, deadline: Duration, logs: impl Fn() -> String) -> i32 {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            panic!("process did not end within {deadline:?}\n{}", logs());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Raises `topic` to `partitions` partitions, as `kafka-topics --alter` does.
fn add_partitions(bootstrap: &str, topic: &str, partitions: usize) {
    let options = AdminOptions::new().operation_timeout(Some(TIMEOUT));
    let results = runtime()
        .block_on(
            admin(bootstrap).create_partitions([&NewPartitions::new(topic, partitions)], &options),
        )
        .unwrap();
    for r in results {
        r.unwrap();
    }
}

/// Commits `offsets` (partition, offset, metadata) of the input for the
/// pipeline's group from outside it, as `kafka-consumer-groups
/// --reset-offsets` does (no metadata) or a crafted commit would.
fn commit_from_outside(p: &Pipeline, offsets: &[(i32, i64, &str)]) {
    let consumer: BaseConsumer = consumer_config(&p.bootstrap, &p.group).create().unwrap();
    let mut tpl = TopicPartitionList::new();
    for &(partition, offset, metadata) in offsets {
        let mut elem = tpl.add_partition(&p.input, partition);
        elem.set_offset(Offset::Offset(offset)).unwrap();
        elem.set_metadata(metadata);
    }
    consumer.commit(&tpl, CommitMode::Sync).unwrap();
}

/// The partitions of the input that hold records, with their end offsets.
fn data_partitions(p: &Pipeline) -> Vec<(i32, i64)> {
    let mut ends: Vec<(i32, i64)> = end_offsets(&p.bootstrap, &p.input)
        .into_iter()
        .filter(|&(_, end)| end > 0)
        .collect();
    ends.sort();
    ends
}

fn run_worker(p: &Pipeline, extra: &[&str]) -> i32 {
    let mut worker = p.worker(extra);
    exit_code(&mut worker, Duration::from_secs(120), || p.worker_logs())
}

#[test]
fn a_frame_on_the_wrong_partition_is_dead_lettered_not_counted() {
    let p = Pipeline::new("guard-route");
    let path = p.input_file(2000, &[]);
    p.ingest(&path);
    let want = aggregate(&path);

    // A foreign producer writes a valid frame of the file's first minute
    // to a partition its bucket does not route to.
    let routing = Routing::new(900, PARTITIONS as u32).unwrap();
    let ts = 1468243830;
    let wrong = (routing.route(ts, "intruder") + 1) % PARTITIONS as u32;
    let payload = format!(r#"{{"ts":{ts},"uid":"intruder"}}"#);
    let producer: BaseProducer = producer_config(&p.bootstrap).create().unwrap();
    producer
        .send(
            BaseRecord::<(), _>::to(&p.input)
                .partition(wrong as i32)
                .payload(&payload),
        )
        .unwrap();
    producer.flush(TIMEOUT).unwrap();
    let offset = end_offsets(&p.bootstrap, &p.input)[&(wrong as i32)] - 1;

    assert_eq!(run_worker(&p, &[]), 0, "{}", p.worker_logs());
    assert_same_windows(&emitted_once(&p), &want, || p.worker_logs());
    let dead = read_topic(&p.bootstrap, &p.dead_letter);
    assert_eq!(dead.len(), 1, "one dead letter");
    let d = &dead[0];
    assert_eq!(d.payload, payload.as_bytes());
    assert_eq!(d.headers["timebucket.reason"], "wrong_partition");
    assert_eq!(d.headers["timebucket.partition"], wrong.to_string());
    assert_eq!(d.headers["timebucket.offset"], offset.to_string());
    let reports = p.reports();
    let wrong_counted: u64 = reports
        .iter()
        .map(|r| {
            r.summary
                .invalid_reasons
                .get("wrong_partition")
                .copied()
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(wrong_counted, 1, "{reports:?}");
}

#[test]
fn ingest_stops_with_exit_10_when_partitions_are_added_mid_run() {
    let p = Pipeline::new("guard-ingest");
    let mut ingest = p
        .command(&["ingest", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = ingest.stdin.take().unwrap();
    let started = Instant::now();
    let mut added = false;
    for i in 0u64.. {
        if ingest.try_wait().unwrap().is_some() || started.elapsed() > Duration::from_secs(40) {
            break;
        }
        let line = format!("{{\"ts\":{},\"uid\":\"u{}\"}}\n", 1468243800 + i * 7, i % 5);
        if stdin.write_all(line.as_bytes()).is_err() {
            break;
        }
        // Ingest commits its records as it reads on (a stalled feed would
        // hold its transaction open): keep feeding until some are written.
        if !added
            && i >= 50
            && i % 10 == 0
            && end_offsets(&p.bootstrap, &p.input).values().sum::<i64>() > 0
        {
            add_partitions(&p.bootstrap, &p.input, 8);
            added = true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(stdin);
    let out = ingest.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(added, "no frame was written: {stderr}");
    assert_eq!(out.status.code(), Some(10), "{stderr}");
    assert!(stderr.contains("changed from 4 to 8"), "{stderr}");
    let stopped: u64 = stderr
        .split("stopped before line ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no line named: {stderr}"));

    // Every line before it is in the topic, routed by the old count; none after.
    let old = Routing::new(900, 4).unwrap();
    let records = read_to_end(&p.settings(), &p.input, TIMEOUT).unwrap();
    assert_eq!(records.len() as u64, stopped - 1, "{stderr}");
    for r in &records {
        let text = String::from_utf8_lossy(r.payload().unwrap());
        let ts: u64 = text
            .split("\"ts\":")
            .nth(1)
            .unwrap()
            .split(',')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(r.partition() as u32, old.route(ts, ""), "{text}");
    }
}

#[test]
fn a_worker_stops_with_exit_10_when_partitions_are_added() {
    let p = Pipeline::new("guard-worker");
    let path = p.input_file(500, &[]);
    p.ingest(&path);
    let log = std::fs::File::create(p.dir.path().join("worker-live.log")).unwrap();
    let report = p.dir.path().join("worker-live.report.json");
    let mut worker = p
        .command(&["worker", "--commit-interval-ms", "200"])
        .arg("--report-file")
        .arg(&report)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    // Its report is first written once its consumer has subscribed.
    crate::common::wait_until(TIMEOUT, "the worker to start", || {
        WorkerReport::read(&report).unwrap().is_some()
    });
    std::thread::sleep(Duration::from_secs(2));
    add_partitions(&p.bootstrap, &p.input, 6);
    let code = exit_code(&mut worker, Duration::from_secs(30), || p.worker_logs());
    let logs = p.worker_logs();
    assert_eq!(code, 10, "{logs}");
    assert!(logs.contains("changed from 4 to 6"), "{logs}");
}

/// The shipped topic definitions, for `timebucket topics`.
fn topics_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("topics")
}

fn topics(p: &Pipeline, extra: &[&str]) -> (i32, String) {
    let out = p
        .command(&["topics", "--topics-dir"])
        .arg(topics_dir())
        .args(extra)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn topics_refuses_to_repartition_an_input_in_use_unless_allowed() {
    let p = Pipeline::named(&crate::common::bootstrap(), "guard-topics", None);
    let settings = p.settings();
    let (code, text) = topics(&p, &["--input-partitions", "4"]);
    assert_eq!(code, 0, "{text}");
    let path = p.input_file(300, &[]);
    p.ingest(&path);

    let (code, text) = topics(&p, &["--input-partitions", "8"]);
    assert_eq!(code, 10, "{text}");
    assert!(
        text.contains("refusing to change the partition count"),
        "{text}"
    );
    assert!(
        text.contains("from 4 to 8") && text.contains("it holds records"),
        "{text}"
    );
    assert!(text.contains("--allow-repartition"), "{text}");
    assert_eq!(partition_count(&settings, &p.input, TIMEOUT).unwrap(), 4);

    let (code, text) = topics(&p, &["--input-partitions", "8", "--allow-repartition"]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(&format!("repartitioned {} from 4 to 8", p.input)),
        "{text}"
    );
    assert_eq!(partition_count(&settings, &p.input, TIMEOUT).unwrap(), 8);

    // An empty input with a group's committed offsets is in use too.
    let q = Pipeline::named(&crate::common::bootstrap(), "guard-topics-group", None);
    assert_eq!(topics(&q, &["--input-partitions", "2"]).0, 0);
    commit_from_outside(&q, &[(0, 0, "")]);
    let (code, text) = topics(&q, &["--input-partitions", "3"]);
    assert_eq!(code, 10, "{text}");
    assert!(text.contains(&q.group), "{text}");
    assert_eq!(partition_count(&settings, &q.input, TIMEOUT).unwrap(), 2);
}

#[test]
fn an_offset_reset_stops_the_worker_and_restart_recomputes_the_same_windows() {
    let p = Pipeline::new("guard-reset");
    let path = p.input_file(3000, &[]);
    p.ingest(&path);
    let want = aggregate(&path);
    assert_eq!(run_worker(&p, &[]), 0, "{}", p.worker_logs());
    assert_same_windows(&emitted_once(&p), &want, || p.worker_logs());

    // `kafka-consumer-groups --reset-offsets --to-offset` leaves offsets
    // without metadata, here to the middle of each partition.
    let data = data_partitions(&p);
    let reset: Vec<(i32, i64, &str)> = data.iter().map(|&(p, end)| (p, end / 2, "")).collect();
    commit_from_outside(&p, &reset);

    assert_eq!(run_worker(&p, &[]), 11, "{}", p.worker_logs());
    let logs = p.worker_logs();
    let first = data[0].0;
    assert!(
        logs.contains(&format!("partition {first} of {}", p.input)),
        "{logs}"
    );
    assert!(logs.contains("--on-missing-checkpoint=restart"), "{logs}");
    assert!(logs.contains("--delete-offsets"), "{logs}");
    // Nothing was emitted again.
    assert_same_windows(&emitted_once(&p), &want, || p.worker_logs());

    assert_eq!(
        run_worker(&p, &["--on-missing-checkpoint", "restart"]),
        0,
        "{}",
        p.worker_logs()
    );
    let got = emitted(&p);
    assert!(got.conflicts.is_empty(), "{:?}", got.conflicts);
    assert!(got.repeated > 0, "the partitions were recomputed");
    assert_same_windows(&got, &want, || p.worker_logs());
    // The restart committed valid checkpoints: the default runs again.
    assert_eq!(run_worker(&p, &[]), 0, "{}", p.worker_logs());
}

#[test]
fn crafted_checkpoint_metadata_is_refused() {
    let p = Pipeline::new("guard-crafted");
    let path = p.input_file(1000, &[]);
    p.ingest(&path);
    let (partition, _) = data_partitions(&p)[0];
    let crafted = format!("tb2;clock=1/-;handled=0;emitted={};floor=-", u64::MAX);
    commit_from_outside(&p, &[(partition, 0, &crafted)]);

    assert_eq!(run_worker(&p, &[]), 11, "{}", p.worker_logs());
    let logs = p.worker_logs();
    assert!(
        logs.contains("emitted=18446744073709551615 is in the future"),
        "{logs}"
    );
    assert!(emitted(&p).is_empty(), "nothing emitted");

    assert_eq!(
        run_worker(&p, &["--on-missing-checkpoint", "restart"]),
        0,
        "{}",
        p.worker_logs()
    );
    assert_same_windows(&emitted_once(&p), &aggregate(&path), || p.worker_logs());
}
