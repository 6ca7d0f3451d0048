//! `timebucket loadtest` on the real broker, small and fast: every
//! combination of a short partition and worker list, with Kafka's perf tools
//! (through scripts/kafka) in one test; live mode with forwarding and a CSV
//! report, and at-least-once, without them. Each asserts the table, the
//! report file's fields and a "correct" verdict (every window equal to
//! aggregate's). The big runs (1,000,000 frames) are manual: see BENCHMARKS.md.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_timebucket");

fn loadtest(dir: &Path, args: &[&str]) -> Output {
    let out = Command::new(BIN)
        .arg("loadtest")
        .args(["-b", &common::bootstrap()])
        .arg("--cache-dir")
        .arg(dir)
        .args(args)
        .env("RUST_LOG", "info")
        .env_remove("TOPICS_DIR")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "loadtest failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn f64_at(v: &Value, path: &[&str]) -> f64 {
    let mut cur = v;
    for key in path {
        cur = &cur[*key];
    }
    cur.as_f64()
        .unwrap_or_else(|| panic!("{} is not a number in {v:#}", path.join(".")))
}

/// The table rows: the lines that start with a partition count.
fn rows(stdout: &str) -> Vec<Vec<String>> {
    stdout
        .lines()
        .map(|l| l.split_whitespace().map(String::from).collect::<Vec<_>>())
        .filter(|cols| cols.len() > 10 && cols[0].parse::<u32>().is_ok())
        .collect()
}

fn topic_exists(bootstrap: &str, topic: &str) -> bool {
    let consumer: BaseConsumer = common::client_config(bootstrap).create().unwrap();
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    md.topics()
        .iter()
        .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
}

#[test]
fn every_combination_beside_kafka_perf_tools_is_correct() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let out = loadtest(
        dir.path(),
        &[
            "--frames",
            "20000",
            "--partitions",
            "1,2",
            "--workers",
            "1,2",
            "-o",
            report.to_str().unwrap(),
        ],
    );
    let stdout = String::from_utf8(out.stdout).unwrap();

    // The table: a header, one row per combination in order, a verdict each.
    assert!(stdout.contains("20,000 frames"), "{stdout}");
    assert!(
        stdout.contains("x prod-perf") && stdout.contains("x cons-perf"),
        "{stdout}"
    );
    let rows = rows(&stdout);
    let combos: Vec<(String, String)> = rows.iter().map(|r| (r[0].clone(), r[1].clone())).collect();
    let want: Vec<(String, String)> = [("1", "1"), ("1", "2"), ("2", "1"), ("2", "2")]
        .iter()
        .map(|(p, w)| (p.to_string(), w.to_string()))
        .collect();
    assert_eq!(combos, want, "{stdout}");
    for row in &rows {
        assert_eq!(row.last().unwrap(), "correct", "{stdout}");
        // Ratios to Kafka's tools: "0.87 of 123,456".
        assert_eq!(row.iter().filter(|c| *c == "of").count(), 2, "{row:?}");
    }
    assert!(stdout.contains("all 4 runs correct"), "{stdout}");

    // The report file.
    let json: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(json["mode"], "sequential");
    assert_eq!(json["exactly_once"], true);
    assert!(json["date"].as_str().unwrap().ends_with('Z'));
    assert!(f64_at(&json, &["machine", "cores"]) >= 1.0);
    assert!(json["command"].as_str().unwrap().contains("loadtest"));
    assert_eq!(json["data"]["frames"], 20000);
    assert!(f64_at(&json, &["data", "payload_bytes"]) > 20000.0 * 2048.0);
    assert_eq!(json["perf_payload"], "frames");
    let runs = json["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 4);
    let bootstrap = common::bootstrap();
    for run in runs {
        let partitions = run["partitions"].as_u64().unwrap();
        let workers = run["workers"].as_u64().unwrap();
        assert_eq!(run["check"]["correct"], true, "{run:#}");
        assert_eq!(run["check"]["verdict"], "correct");
        assert_eq!(run["check"]["missing"], 0);
        assert_eq!(run["check"]["duplicates"], 0);
        assert!(run["check"]["windows_expected"].as_u64().unwrap() > 20);
        let split: Vec<u64> = run["partition_frames"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(split.len() as u64, partitions);
        assert_eq!(split.iter().sum::<u64>(), 20000);
        for rate in ["ingest", "processing"] {
            assert!(f64_at(run, &[rate, "frames_per_sec"]) > 0.0, "{run:#}");
            assert!(f64_at(run, &[rate, "mb_per_sec"]) > 0.0, "{run:#}");
        }
        assert!(f64_at(run, &["kafka_producer_perf", "records_per_sec"]) > 0.0);
        assert_eq!(run["kafka_producer_perf"]["records"], 20000);
        assert!(f64_at(run, &["kafka_consumer_perf", "fetch_records_per_sec"]) > 0.0);
        assert!(f64_at(run, &["ingest_vs_producer_perf"]) > 0.0);
        assert!(f64_at(run, &["processing_vs_consumer_perf"]) > 0.0);
        assert!(f64_at(run, &["end_to_end_seconds"]) > 0.0);
        assert!(f64_at(run, &["last_frame_delay_seconds"]) > 0.0);
        // Sequential: nothing is committed before the workers start.
        assert_eq!(run["peak_lag"], 20000, "{run:#}");
        let figures = run["worker_figures"].as_array().unwrap();
        assert_eq!(figures.len() as u64, workers);
        let frames: u64 = figures.iter().map(|w| w["frames"].as_u64().unwrap()).sum();
        assert!(frames >= 20000, "{run:#}");
        for w in figures {
            assert_eq!(w["ok"], true);
            assert!(w["peak_rss_kb"].as_u64().unwrap() > 1000);
            assert!(w["cpu_ms"].as_u64().is_some());
        }
        let rss = f64_at(run, &["peak_worker_rss_mb"]);
        assert!(rss > 1.0 && rss < 200.0, "peak worker memory {rss} MB");
        // The run's topics are gone.
        let input = run["input_topic"].as_str().unwrap();
        common::wait_until(Duration::from_secs(30), "the run's topics deleted", || {
            !topic_exists(&bootstrap, input)
        });
    }
}

#[test]
fn live_mode_with_forwarding_writes_csv_and_checks_every_forwarded_frame() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.csv");
    let out = loadtest(
        dir.path(),
        &[
            "--frames",
            "20000",
            // 1,000 s of event time: two time buckets, both partitions busy.
            "--rate",
            "20",
            "--partitions",
            "2",
            "--workers",
            "2",
            "--live",
            "--forward",
            "--no-kafka-tools",
            "-o",
            report.to_str().unwrap(),
        ],
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains("live mode") && stdout.contains("forwarding every frame"),
        "{stdout}"
    );
    assert!(stdout.contains("Kafka tools: skipped"), "{stdout}");
    let rows = rows(&stdout);
    assert_eq!(rows.len(), 1, "{stdout}");
    assert_eq!(rows[0].last().unwrap(), "correct", "{stdout}");

    let csv = std::fs::read_to_string(&report).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 2, "{csv}");
    let header: Vec<&str> = lines[0].split(',').collect();
    let row: Vec<&str> = lines[1].split(',').collect();
    assert_eq!(header.len(), row.len(), "{csv}");
    let col = |name: &str| row[header.iter().position(|h| *h == name).unwrap()];
    assert_eq!(col("mode"), "live");
    assert_eq!(col("forward"), "true");
    assert_eq!(col("exactly_once"), "true");
    assert_eq!(col("partitions"), "2");
    assert_eq!(col("workers"), "2");
    assert_eq!(col("correct"), "true");
    assert_eq!(col("verdict"), "\"correct\"");
    assert!(col("processing_frames_per_sec").parse::<f64>().unwrap() > 0.0);
    assert!(col("peak_lag").parse::<u64>().unwrap() > 0);
    assert!(col("last_frame_delay_seconds").parse::<f64>().is_ok());
    assert_eq!(col("producer_perf_records_per_sec"), "");
}

#[test]
fn at_least_once_is_measured_and_checked_too() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let out = loadtest(
        dir.path(),
        &[
            "--frames",
            "10000",
            "--partitions",
            "2",
            "--workers",
            "1",
            "--at-least-once",
            "--no-kafka-tools",
            "-o",
            report.to_str().unwrap(),
        ],
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("at-least-once"), "{stdout}");
    let json: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(json["exactly_once"], false);
    assert_eq!(json["runs"][0]["exactly_once"], false);
    assert_eq!(json["runs"][0]["check"]["correct"], true);
    assert!(json["runs"][0]["kafka_consumer_perf"].is_null());

    // Bad arguments fail before touching the broker.
    let bad = Command::new(BIN)
        .args(["loadtest", "--partitions", "0", "--no-kafka-tools"])
        .arg("--cache-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(
        bad.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}
