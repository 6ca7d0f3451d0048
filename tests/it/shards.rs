//! Sharded buckets on the real broker (issue 14): ingest spreads each bucket
//! over S partitions by murmur2(uid), two workers send partial windows and
//! progress to the partials topic, `timebucket merge` sums them; the merged
//! windows on the metric topics (read_committed) equal `aggregate --shards S`
//! window by window, late frames included, also after `kill -9` of a shard
//! worker and of the merger; a shard with no frame at all stalls nothing.
//! S = 1 is the unsharded pipeline of the other tests, unchanged.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::common::pipeline::{
    assert_same_windows, emitted, emitted_once, Pipeline, BIN, PARTITIONS,
};
use crate::common::{create_topic, unique_name};
use timebucket::cmd::merge::MergeReport;
use timebucket::core::bucket::Routing;
use timebucket::core::compare::{WindowKey, WindowSet};
use timebucket::core::metric::MetricKind;

const SHARDS: u32 = 2;

/// The pipelines here run several processes each on a 2-core machine.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

struct Sharded {
    p: Pipeline,
    partials: String,
}

impl Sharded {
    fn new(tag: &str) -> Sharded {
        let p = Pipeline::new(tag);
        let partials = unique_name(&format!("{tag}-partials"));
        create_topic(&p.bootstrap, &partials, 3, 1);
        Sharded { p, partials }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = self.p.command(args);
        c.env("INPUT_SHARDS", SHARDS.to_string())
            .env("PARTIALS_TOPIC", &self.partials);
        c
    }

    fn ingest(&self, path: &Path) {
        let out = self.command(&["ingest"]).arg(path).output().unwrap();
        assert!(
            out.status.success(),
            "ingest failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn spawn(&self, what: &str, args: &[&str]) -> Child {
        let name = unique_name(what);
        let log = std::fs::File::create(self.p.dir.path().join(format!("{name}.log"))).unwrap();
        self.command(args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    /// A shard worker; its report goes where [`Pipeline::reports`] reads.
    fn worker(&self, extra: &[&str]) -> Child {
        let report = self
            .p
            .dir
            .path()
            .join(format!("{}.report.json", unique_name("worker")));
        let report = report.to_string_lossy().into_owned();
        let mut args = vec![
            "worker",
            "--commit-interval-ms",
            "200",
            "--report-file",
            &report,
        ];
        args.extend_from_slice(extra);
        self.spawn("worker", &args)
    }

    /// A merger of its own group; its report goes to `merge-<n>.json`.
    fn merger(&self, extra: &[&str]) -> Child {
        let report = self.report_path(&unique_name("merge"));
        let group = format!("{}-merge", self.p.group);
        let mut args = vec![
            "merge",
            "-g",
            &group,
            "--commit-interval-ms",
            "200",
            "--report-file",
        ];
        let report = report.to_string_lossy().into_owned();
        args.push(&report);
        args.extend_from_slice(extra);
        self.spawn("merge", &args)
    }

    fn report_path(&self, name: &str) -> PathBuf {
        self.p.dir.path().join(format!("{name}.merge-report.json"))
    }

    fn merge_reports(&self) -> Vec<MergeReport> {
        std::fs::read_dir(self.p.dir.path())
            .unwrap()
            .filter_map(|e| {
                let path = e.unwrap().path();
                path.to_string_lossy()
                    .ends_with(".merge-report.json")
                    .then(|| MergeReport::read(&path).unwrap())
                    .flatten()
            })
            .collect()
    }

    fn wait(&self, children: Vec<Child>, deadline: Duration) {
        self.p.wait_all(children, deadline);
    }
}

/// An aborted transaction at the head of every partials partition: what a
/// shard worker whose first transaction failed leaves behind. The merge must
/// start at the first committed record (it once waited for offset 0 forever).
fn abort_a_transaction_on(bootstrap: &str, topic: &str) {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let producer: BaseProducer = crate::common::producer_config(bootstrap)
        .set("transactional.id", unique_name("aborted"))
        .create()
        .unwrap();
    let t = Duration::from_secs(30);
    producer.init_transactions(t).unwrap();
    producer.begin_transaction().unwrap();
    for q in 0..3 {
        producer
            .send(
                BaseRecord::<str, str>::to(topic)
                    .partition(q)
                    .key("progress:0")
                    .payload(r#"{"progress":18446744073709551615,"partition":0}"#),
            )
            .unwrap();
    }
    producer.flush(t).unwrap();
    producer.abort_transaction(t).unwrap();
}

/// `aggregate --shards` on the file, and its summary (late counts).
pub(crate) fn aggregate_sharded(path: &Path) -> (WindowSet, String) {
    let out = Command::new(BIN)
        .args([
            "aggregate",
            "-P",
            &PARTITIONS.to_string(),
            "--shards",
            &SHARDS.to_string(),
        ])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success());
    let windows = WindowSet::from_json_lines(&out.stdout).unwrap();
    assert_eq!(windows.repeated, 0);
    (windows, String::from_utf8_lossy(&out.stderr).into_owned())
}

fn end(k: &WindowKey) -> u64 {
    match k.0 {
        MetricKind::Second => k.1 + 1,
        MetricKind::Minute => k.1 + 60,
    }
}

fn late_frames(summary: &str) -> u64 {
    let line = summary
        .lines()
        .find(|l| l.starts_with("late frames:"))
        .unwrap();
    line.split_whitespace()
        .filter_map(|w| w.parse::<u64>().ok())
        .sum()
}

#[test]
fn a_sharded_pipeline_equals_aggregate_with_shards_late_frames_included() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let s = Sharded::new("shards");
    let path = s.p.input_file(20_000, &[]);
    let (want, summary) = aggregate_sharded(&path);
    assert!(
        late_frames(&summary) > 0,
        "the input must have late frames: {summary}"
    );
    s.ingest(&path);
    abort_a_transaction_on(&s.p.bootstrap, &s.partials);
    let merger = s.merger(&["--until-end", "--idle-shard-seconds", "0"]);
    let workers = vec![s.worker(&["--until-end"]), s.worker(&["--until-end"])];
    s.wait(workers, Duration::from_secs(180));
    s.wait(vec![merger], Duration::from_secs(120));
    assert_same_windows(&emitted_once(&s.p), &want, || s.p.worker_logs());
    // Every window has the sum of both shards: the unsharded counts.
    let unsharded = crate::common::pipeline::aggregate(&path);
    assert_eq!(want.len(), unsharded.len());
    let reports = s.merge_reports();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].summary.late_partials, 0);
    assert_eq!(reports[0].summary.invalid, 0);
}

#[test]
fn kill_9_of_a_shard_worker_and_of_the_merger_mid_run_changes_nothing() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let s = Sharded::new("shards-kill");
    let path = s.p.input_file(30_000, &[]);
    let (want, _) = aggregate_sharded(&path);
    s.ingest(&path);
    let mut merger = s.merger(&["--until-end", "--idle-shard-seconds", "0"]);
    let mut doomed = s.worker(&["--until-end", "--throttle", "3000"]);
    let survivor = s.worker(&["--until-end", "--throttle", "3000"]);
    std::thread::sleep(Duration::from_secs(4));
    doomed.kill().unwrap(); // SIGKILL
    doomed.wait().unwrap();
    let replacement = s.worker(&["--until-end", "--throttle", "3000"]);
    std::thread::sleep(Duration::from_secs(3));
    merger.kill().unwrap();
    merger.wait().unwrap();
    let merger = s.merger(&["--until-end", "--idle-shard-seconds", "0"]);
    s.wait(vec![survivor, replacement], Duration::from_secs(240));
    s.wait(vec![merger], Duration::from_secs(120));
    assert_same_windows(&emitted_once(&s.p), &want, || s.p.worker_logs());
    // Both kills came mid-run: the new owners resumed from checkpoints.
    let logs = s.p.worker_logs();
    let merges = s.merge_reports();
    assert!(
        merges.iter().any(|r| r.ok && r.summary.resumed > 0),
        "the second merger resumed from checkpoints: {merges:?}\n{logs}"
    );
    assert!(
        s.p.reports().iter().any(|r| !r.resumes.is_empty()),
        "{logs}"
    );
}

/// Frames whose uid lands in shard 0 only: shard 1 of every bucket gets none.
fn one_shard_only(path: &Path) -> PathBuf {
    let routing = Routing::sharded(900, PARTITIONS as u32, SHARDS).unwrap();
    let text = std::fs::read_to_string(path).unwrap();
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            routing.shard_of(v["uid"].as_str().unwrap()) == 0
        })
        .collect();
    let out = path.with_file_name("one-shard.jsonl");
    std::fs::write(&out, kept.join("\n") + "\n").unwrap();
    out
}

#[test]
fn a_shard_without_frames_stalls_no_window_in_batch_or_live_runs() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // Batch: the empty shards publish their end (--until-end).
    let s = Sharded::new("shards-idle");
    let path = one_shard_only(&s.p.input_file(12_000, &[]));
    let (want, _) = aggregate_sharded(&path);
    s.ingest(&path);
    let ends = crate::common::end_offsets(&s.p.bootstrap, &s.p.input);
    // Shard 1 of bucket groups 0 and 1: partitions 2 and 3 (G = 2).
    assert!(
        ends[&2] == 0 && ends[&3] == 0,
        "shard 1 must be empty: {ends:?}"
    );
    let merger = s.merger(&["--until-end", "--idle-shard-seconds", "0"]);
    let workers = vec![s.worker(&["--until-end"]), s.worker(&["--until-end"])];
    s.wait(workers, Duration::from_secs(180));
    s.wait(vec![merger], Duration::from_secs(120));
    assert_same_windows(&emitted_once(&s.p), &want, || s.p.worker_logs());

    // Live: the workers never reach an end; the idle-shard bound (60 s of
    // event time) merges every window that shard 0 passed by 60 s.
    let live = Sharded::new("shards-live");
    live.ingest(&path);
    let mut children = vec![
        live.worker(&["--idle-flush", "0"]),
        live.worker(&["--idle-flush", "0"]),
        live.merger(&["--idle-shard-seconds", "60"]),
    ];
    let last_end = want.windows.keys().map(end).max().unwrap();
    // Shard 0's watermark ends near the last ts - lateness (5 s): windows
    // ending 60 s before it are merged; a few minutes of them at least.
    let due = WindowSet {
        windows: want
            .windows
            .iter()
            .filter(|(k, _)| end(k) + 60 + 5 + 60 <= last_end)
            .map(|(k, v)| (*k, *v))
            .collect(),
        ..WindowSet::default()
    };
    assert!(due.len() > 100, "{} windows due", due.len());
    let started = Instant::now();
    let got = loop {
        let got = emitted(&live.p);
        let all = due.windows.keys().all(|k| got.windows.contains_key(k));
        if all || started.elapsed() > Duration::from_secs(120) {
            break got;
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    for c in &mut children {
        let _ = c.kill();
        let _ = c.wait();
    }
    assert_eq!(got.repeated, 0);
    let got_due = WindowSet {
        windows: got
            .windows
            .iter()
            .filter(|(k, _)| due.windows.contains_key(k))
            .map(|(k, v)| (*k, *v))
            .collect(),
        ..WindowSet::default()
    };
    assert_same_windows(&got_due, &due, || live.p.worker_logs());
}

/// Issue 18: a merge checkpoint whose offset holds no record (here a
/// transaction's commit marker, as a merge's own commit offset usually is)
/// resumes with one seek, from the first record after it; it used to seek
/// again on every record, for ever. A partial that comes again from the
/// same shard is not added twice either.
#[test]
fn the_merge_resumes_from_a_checkpoint_at_a_commit_marker() {
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let p = Pipeline::new("merge-marker");
    let partials = unique_name("merge-marker-partials");
    create_topic(&p.bootstrap, &partials, 1, 1);
    let s = Sharded { p, partials };
    let producer: BaseProducer = crate::common::producer_config(&s.p.bootstrap)
        .set("transactional.id", unique_name("partials"))
        .create()
        .unwrap();
    let t = Duration::from_secs(30);
    producer.init_transactions(t).unwrap();
    let transaction = |records: &[(String, String)]| {
        producer.begin_transaction().unwrap();
        for (key, value) in records {
            producer
                .send(
                    BaseRecord::<str, str>::to(&s.partials)
                        .key(key)
                        .payload(value),
                )
                .unwrap();
        }
        producer.flush(t).unwrap();
        producer.commit_transaction(t).unwrap();
    };
    let partial = |partition: i32, frames: u64| {
        let closed = timebucket::core::window::Closed::Second {
            start: 1468244384,
            frames,
        };
        (
            timebucket::kafka::partials::partial_key(&closed),
            timebucket::core::metric::MetricRecord::new(closed, partition).to_json(),
        )
    };
    let progress = |partition: i32| {
        (
            timebucket::kafka::partials::progress_key(partition),
            timebucket::kafka::partials::progress_value(partition, u64::MAX),
        )
    };
    // Offset 0: an unrelated progress record; 1: its commit marker.
    transaction(&[progress(1)]);
    // 2..: the same shard's partial three times (a restarted shard), the
    // other shard's, and every shard's end; then a marker.
    let routing = Routing::sharded(900, PARTITIONS as u32, SHARDS).unwrap();
    let group = routing.partition(1468244384);
    let shards: Vec<u32> = routing.shard_partitions(group).collect();
    let (a, b) = (shards[0] as i32, shards[1] as i32);
    let mut records = vec![partial(a, 5), partial(a, 5), partial(a, 5), partial(b, 2)];
    records.extend((0..PARTITIONS).map(progress));
    transaction(&records);

    // The merge group's checkpoint at offset 1, the marker.
    let merge_group = format!("{}-merge", s.p.group);
    let consumer: BaseConsumer = crate::common::consumer_config(&s.p.bootstrap, &merge_group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    let mut elem = tpl.add_partition(&s.partials, 0);
    elem.set_offset(Offset::Offset(1)).unwrap();
    elem.set_metadata(format!(
        "tbm1;handled=1;marks={}",
        vec!["-"; PARTITIONS as usize].join(",")
    ));
    consumer.commit(&tpl, CommitMode::Sync).unwrap();
    drop(consumer);

    let merger = s.merger(&["--until-end", "--idle-shard-seconds", "0"]);
    s.wait(vec![merger], Duration::from_secs(90));
    let got = emitted_once(&s.p);
    let windows: Vec<(WindowKey, (u64, Option<u64>))> = got.windows.into_iter().collect();
    assert_eq!(
        windows,
        [((MetricKind::Second, 1468244384), (7, None))],
        "one second of 5 + 2 frames"
    );
}
