//! Metrics on the real broker: a real Prometheus server (Debian's
//! `prometheus`) scrapes a worker every second while it runs; the
//! exposition passes `promtool check metrics`; and the values Prometheus
//! holds at the end equal the worker's own summary (its typed report). The
//! worker keeps serving its final counts for a few seconds after the run
//! (`--metrics-linger`), so the last scrapes see them.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use timebucket::cmd::worker::WorkerSummary;

use crate::common::pipeline::{aggregate, assert_same_windows, emitted_once, Pipeline};
use crate::common::tools::{free_port, get, query_escape, require, url_in_log, Running};
use crate::common::{producer_config, wait_until};

#[test]
fn the_tools_are_installed() {
    require("prometheus", "prometheus");
    require("promtool", "prometheus");
    require("chromium", "chromium");
}

/// Invalid records the worker itself meets (ingest dead-letters its own).
const INVALID: [(&str, &str); 3] = [
    ("not json", "not_json"),
    (r#"{"uid":"u"}"#, "missing_ts"),
    ("[1,2]", "not_object"),
];

/// A Prometheus server of the test's own, scraping `target` every second.
fn prometheus(dir: &std::path::Path, target: &str) -> (Running, String) {
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n  - job_name: worker\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start prometheus");
    let running = Running(child);
    let base = format!("http://{addr}");
    wait_until(Duration::from_secs(60), "prometheus ready", || {
        timebucket::observe::http::get(&format!("{base}/-/ready"), Duration::from_secs(2))
            .is_ok_and(|(status, _)| status == 200)
    });
    (running, base)
}

/// The samples of an instant query, by their labels (as `k=v,...`).
fn query(base: &str, promql: &str) -> BTreeMap<String, f64> {
    let (status, body) = get(&format!(
        "{base}/api/v1/query?query={}",
        query_escape(promql)
    ));
    assert_eq!(status, 200, "{promql}: {body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["status"], "success", "{promql}: {body}");
    answer["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let labels: Vec<String> = r["metric"]
                .as_object()
                .unwrap()
                .iter()
                .filter(|(k, _)| !["__name__", "job", "instance"].contains(&k.as_str()))
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap()))
                .collect();
            let value = r["value"][1].as_str().unwrap().parse().unwrap();
            (labels.join(","), value)
        })
        .collect()
}

/// One sample's value (a query without labels, or summed).
fn scalar(base: &str, promql: &str) -> Option<f64> {
    query(base, promql).into_values().next()
}

/// The samples of a text exposition: `name{labels}` -> value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').unwrap();
            (name.to_string(), value.parse().unwrap())
        })
        .collect()
}

/// What the summary says each counter must be: (series, value).
fn expected(s: &WorkerSummary) -> Vec<(String, u64)> {
    let mut want = vec![
        ("timebucket_frames_consumed_total".into(), s.consumed()),
        ("timebucket_frames_valid_total".into(), s.frames),
        ("timebucket_frames_replayed_total".into(), s.replayed),
        (
            "timebucket_frames_late_total{window=\"second\"}".into(),
            s.late_seconds,
        ),
        (
            "timebucket_frames_late_total{window=\"minute\"}".into(),
            s.late_minutes,
        ),
        (
            "timebucket_windows_emitted_total{window=\"second\"}".into(),
            s.seconds_emitted,
        ),
        (
            "timebucket_windows_emitted_total{window=\"minute\"}".into(),
            s.minutes_emitted,
        ),
        (
            "timebucket_transactions_total{outcome=\"committed\"}".into(),
            s.transactions_committed,
        ),
        (
            "timebucket_transactions_total{outcome=\"aborted\"}".into(),
            s.transactions_aborted,
        ),
        (
            "timebucket_producer_replacements_total".into(),
            s.producer_replacements,
        ),
        (
            "timebucket_frames_too_large_for_topic_total".into(),
            s.too_large_for_topic,
        ),
        (
            "timebucket_records_lost_to_retention_total".into(),
            s.lost_to_retention,
        ),
        ("timebucket_rebalances_total".into(), s.rebalances),
        (
            "timebucket_partitions_revoked_total".into(),
            s.partitions_revoked,
        ),
    ];
    for (_, reason) in INVALID {
        want.push((
            format!("timebucket_frames_invalid_total{{reason=\"{reason}\"}}"),
            s.invalid_reasons.get(reason).copied().unwrap_or(0),
        ));
    }
    want
}

#[test]
fn a_real_prometheus_scrapes_a_worker_and_ends_with_its_summary() {
    require("prometheus", "prometheus");
    require("promtool", "prometheus");
    let p = Pipeline::new("prom");
    let path = p.input_file(30_000, &[]);
    p.ingest(&path);
    // Records only a worker can find invalid, on partition 0 of the input.
    let producer: BaseProducer = producer_config(&p.bootstrap).create().unwrap();
    for (payload, _) in INVALID {
        producer
            .send(
                BaseRecord::<(), _>::to(&p.input)
                    .partition(0)
                    .payload(payload),
            )
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();

    let worker = p.worker(&[
        "--throttle",
        "2500",
        "--metrics-addr",
        "127.0.0.1:0",
        "--metrics-linger",
        "5",
    ]);
    let mut worker = Running(worker);
    let log = std::fs::read_dir(p.dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "log"))
        .unwrap();
    let metrics = url_in_log(&log, "/metrics");
    let base = metrics.trim_end_matches("/metrics").to_string();
    assert_eq!(get(&format!("{base}/healthz")).0, 200);
    wait_until(Duration::from_secs(60), "the worker ready", || {
        get(&format!("{base}/readyz")).0 == 200
    });
    let target = base.trim_start_matches("http://");
    let (_prometheus, prom) = prometheus(p.dir.path(), target);

    // While the worker runs, Prometheus sees it counting.
    let mut mid_run = None;
    let started = Instant::now();
    while worker.is_running() && started.elapsed() < Duration::from_secs(120) {
        let frames = scalar(&prom, "timebucket_frames_valid_total").unwrap_or(0.0);
        if frames > 0.0 && frames < 30_000.0 {
            mid_run = Some(frames);
            let owned = scalar(&prom, "timebucket_owned_partitions");
            assert_eq!(owned, Some(4.0), "the worker owns the 4 partitions");
            let delays = query(&prom, "timebucket_partition_event_time_delay_seconds");
            let lags = query(&prom, "timebucket_partition_lag_records");
            if !delays.is_empty() && !lags.is_empty() {
                // The input is from 2016: years behind the present.
                assert!(delays.values().all(|&d| d > 3e8), "{delays:?}");
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let mid_run = mid_run.expect("Prometheus scraped no count while the worker ran");

    // Once the report is final, the exposition holds the final counts.
    let report = {
        let mut report = None;
        wait_until(
            Duration::from_secs(120),
            "the worker's final report",
            || {
                report = p.reports().into_iter().next();
                report.is_some()
            },
        );
        report.unwrap()
    };
    assert!(report.ok, "{}", p.worker_logs());
    let summary = &report.summary;
    let (status, text) = get(&metrics);
    assert_eq!(status, 200);
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool check metrics:\n{}{}\n{text}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    let exposed = samples(&text);
    for (series, value) in expected(summary) {
        assert_eq!(exposed.get(&series), Some(&(value as f64)), "{series}");
    }
    assert_eq!(summary.frames, 30_000);
    assert_eq!(summary.invalid, INVALID.len() as u64);
    assert!(summary.transactions_committed > 0);
    assert!(exposed["timebucket_transaction_duration_seconds_count"] > 0.0);
    assert_eq!(
        exposed["timebucket_owned_partitions"], 0.0,
        "left the group"
    );

    // After the worker exits, Prometheus's last samples equal the summary.
    let status = worker.wait(Duration::from_secs(60));
    assert!(status.success(), "worker: {status}\n{}", p.worker_logs());
    for (series, value) in expected(summary) {
        let promql = format!("last_over_time({series}[5m])");
        assert_eq!(
            scalar(&prom, &promql),
            Some(value as f64),
            "{promql} (mid-run it was {mid_run} frames)"
        );
    }

    // Metrics changed nothing of the results.
    assert_same_windows(&emitted_once(&p), &aggregate(&path), || p.worker_logs());
}
