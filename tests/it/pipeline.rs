//! The pipeline on the real broker: `ingest` a generated file with delays and
//! malformed lines into 4 partitions, run worker processes to the end, and
//! compare every metric topic, window by window, with `aggregate` on the same
//! file; also with a worker added mid-stream and one stopped with SIGTERM.

use std::process::{Child, Command};
use std::time::Duration;

use crate::common::pipeline::{
    aggregate, assert_same_windows, emitted, read_topic, Pipeline, Record,
};
use timebucket::core::metric::MetricKind;

const BAD_LINES: [&str; 5] = [
    r#"{"ts":1468244000,"uid":"truncated"#,
    r#"not json at all"#,
    r#"{"uid":"abc"}"#,
    r#"{"ts":"soon","uid":"abc"}"#,
    r#"[1,2,3]"#,
];

#[test]
fn three_workers_match_aggregate_window_by_window() {
    let p = Pipeline::new("three");
    let path = p.input_file(60_000, &BAD_LINES);
    p.ingest(&path);
    let workers = (0..3).map(|_| p.worker(&[])).collect();
    p.wait_all(workers, Duration::from_secs(180));

    let want = aggregate(&path);
    assert!(
        want.windows
            .keys()
            .filter(|(k, _)| *k == MetricKind::Minute)
            .count()
            > 60,
        "the file should span over an hour"
    );
    assert_same_windows(&emitted(&p), &want, || p.worker_logs());

    let mut dead: Vec<Record> = read_topic(&p.bootstrap, &p.dead_letter);
    assert_eq!(dead.len(), BAD_LINES.len());
    // Dead-letter partitions interleave: file order is in the line header.
    dead.sort_by_key(|r| r.headers["timebucket.line"].parse::<u64>().unwrap());
    let reasons: Vec<&str> = dead
        .iter()
        .map(|r| r.headers["timebucket.reason"].as_str())
        .collect();
    assert_eq!(
        reasons,
        ["not_json", "not_json", "missing_ts", "bad_ts", "not_object"]
    );
    for (record, bad) in dead.iter().zip(BAD_LINES) {
        assert_eq!(record.payload, bad.as_bytes());
        let line: u64 = record.headers["timebucket.line"].parse().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text.lines().nth(line as usize - 1),
            Some(bad),
            "line header points at the line"
        );
    }
}

#[test]
fn a_worker_added_mid_stream_changes_no_result() {
    let p = Pipeline::new("added");
    let path = p.input_file(60_000, &[]);
    p.ingest(&path);
    let throttle = ["--throttle", "15000"];
    let mut workers = vec![p.worker(&throttle)];
    std::thread::sleep(Duration::from_secs(2));
    workers.push(p.worker(&throttle));
    workers.push(p.worker(&throttle));
    p.wait_all(workers, Duration::from_secs(180));
    assert_same_windows(&emitted(&p), &aggregate(&path), || p.worker_logs());
    let revoked: u64 = p
        .reports()
        .iter()
        .map(|r| r.summary.partitions_revoked)
        .sum();
    assert!(
        revoked > 0,
        "the first worker should have handed partitions over\n{}",
        p.worker_logs()
    );
}

#[test]
fn a_worker_stopped_with_sigterm_mid_stream_changes_no_result() {
    let p = Pipeline::new("sigterm");
    let path = p.input_file(60_000, &[]);
    p.ingest(&path);
    let throttle = ["--throttle", "3000"];
    // The victim starts alone and owns every partition; once the others have
    // joined and taken some, it is stopped while its own are mid-way.
    let victim = p.worker(&throttle);
    std::thread::sleep(Duration::from_secs(3));
    let workers: Vec<Child> = (0..2).map(|_| p.worker(&throttle)).collect();
    std::thread::sleep(Duration::from_secs(4));
    let status = Command::new("kill")
        .args(["-TERM", &victim.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    p.wait_all(vec![victim], Duration::from_secs(30));
    p.wait_all(workers, Duration::from_secs(180));
    assert_same_windows(&emitted(&p), &aggregate(&path), || p.worker_logs());
    // The stopped worker finished its run (committed and left), as the
    // other two did; its partitions were resumed from checkpoints.
    let reports = p.reports();
    assert_eq!(reports.len(), 3, "finished reports\n{}", p.worker_logs());
    assert!(reports.iter().all(|r| r.ok), "{}", p.worker_logs());
    assert!(
        reports.iter().any(|r| !r.resumes.is_empty()),
        "a partition should have been resumed\n{}",
        p.worker_logs()
    );
}
