//! `timebucket loadtest` on the real broker, small and fast: every
//! combination of a short partition and worker list, with Kafka's perf tools
//! (through scripts/kafka) in one test; live mode with forwarding and a CSV
//! report, and at-least-once, without them. Each asserts the table, the
//! report file's fields and a "correct" verdict (every window equal to
//! aggregate's). The big runs (1,000,000 frames) are manual: see BENCHMARKS.md.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use timebucket::cmd::loadtest::{LoadtestReport, PerfPayload};

const BIN: &str = env!("CARGO_BIN_EXE_timebucket");

/// Runs loadtest, whatever its exit.
fn run_loadtest(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("loadtest")
        .args(["-b", &crate::common::bootstrap()])
        .arg("--cache-dir")
        .arg(dir)
        .args(args)
        .env("RUST_LOG", "info")
        .env_remove("TOPICS_DIR")
        .output()
        .unwrap()
}

fn loadtest(dir: &Path, args: &[&str]) -> Output {
    let out = run_loadtest(dir, args);
    assert!(
        out.status.success(),
        "loadtest failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
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
    let consumer: BaseConsumer = crate::common::client_config(bootstrap).create().unwrap();
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

    // The report file, read back with the type that wrote it.
    let json: LoadtestReport = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(json.mode, "sequential");
    assert!(json.exactly_once);
    assert!(json.date.ends_with('Z'));
    assert!(json.machine.cores >= 1);
    assert!(json.command.contains("loadtest"));
    assert_eq!(json.data.frames, 20000);
    assert!(json.data.payload_bytes > 20000 * 2048);
    assert_eq!(json.perf_payload, Some(PerfPayload::Frames));
    assert_eq!(json.runs.len(), 4);
    let bootstrap = crate::common::bootstrap();
    for run in &json.runs {
        assert!(run.check.correct, "{run:#?}");
        assert_eq!(run.check.verdict, "correct");
        assert_eq!(run.check.missing, 0);
        assert_eq!(run.check.duplicates, 0);
        assert!(run.check.windows_expected > 20);
        assert_eq!(run.partition_frames.len() as u32, run.partitions);
        assert_eq!(run.partition_frames.iter().sum::<u64>(), 20000);
        let processing = run.processing.as_ref().expect("processing measured");
        for rate in [&run.ingest, processing] {
            assert!(
                rate.frames_per_sec > 0.0 && rate.mb_per_sec > 0.0,
                "{run:#?}"
            );
        }
        let producer = run.kafka_producer_perf.as_ref().unwrap();
        assert!(producer.records_per_sec > 0.0);
        assert_eq!(producer.records, 20000);
        assert!(
            run.kafka_consumer_perf
                .as_ref()
                .unwrap()
                .fetch_records_per_sec
                > 0.0
        );
        assert!(run.ingest_vs_producer_perf.unwrap() > 0.0);
        assert!(run.processing_vs_consumer_perf.unwrap() > 0.0);
        assert!(run.end_to_end_seconds.unwrap() > 0.0);
        assert!(run.last_frame_delay_seconds.unwrap() > 0.0);
        // Sequential: nothing is committed before the workers start. Lag
        // counts offsets, and ingest's transaction markers take a few.
        let lag = run.peak_lag.unwrap();
        assert!((20000..20100).contains(&lag), "{run:#?}");
        assert_eq!(run.worker_figures.len() as u32, run.workers);
        let frames: u64 = run.worker_figures.iter().map(|w| w.summary.frames).sum();
        assert!(frames >= 20000, "{run:#?}");
        for w in &run.worker_figures {
            assert!(w.ok);
            assert!(w.peak_rss_kb.unwrap() > 1000);
            assert!(w.cpu_ms.is_some());
        }
        let rss = run.peak_worker_rss_mb.unwrap();
        assert!(rss > 1.0 && rss < 200.0, "peak worker memory {rss} MB");
        // The run's topics are gone.
        crate::common::wait_until(Duration::from_secs(30), "the run's topics deleted", || {
            !topic_exists(&bootstrap, &run.input_topic)
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

    let mut csv = csv::Reader::from_path(&report).unwrap();
    let header = csv.headers().unwrap().clone();
    let rows: Vec<csv::StringRecord> = csv.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    assert_eq!(header.len(), row.len(), "{row:?}");
    let col = |name: &str| &row[header.iter().position(|h| h == name).unwrap()];
    assert_eq!(col("mode"), "live");
    assert_eq!(col("forward"), "true");
    assert_eq!(col("exactly_once"), "true");
    assert_eq!(col("partitions"), "2");
    assert_eq!(col("workers"), "2");
    assert_eq!(col("correct"), "true");
    assert_eq!(col("verdict"), "correct");
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
            "--parse-threads",
            "3",
            "--no-kafka-tools",
            "-o",
            report.to_str().unwrap(),
        ],
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("at-least-once"), "{stdout}");
    let json: LoadtestReport = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert!(!json.exactly_once);
    assert!(!json.runs[0].exactly_once);
    assert!(json.runs[0].check.correct);
    // --parse-threads reaches the workers, whatever this machine's cores.
    assert_eq!(json.parse_threads, Some(3));
    let threads: Vec<_> = json.runs[0]
        .worker_figures
        .iter()
        .map(|w| w.parse_threads)
        .collect();
    assert_eq!(threads, [Some(3)], "{:#?}", json.runs[0].worker_figures);
    assert!(json.runs[0].kafka_consumer_perf.is_none());

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

#[test]
fn a_short_soak_samples_every_worker_checks_every_window_and_judges_memory() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let out = loadtest(
        dir.path(),
        &[
            "--live",
            "--duration",
            "20s",
            "--rate",
            "50",
            "--partitions",
            "2",
            "--workers",
            "2",
            "--no-kafka-tools",
            "--sample-interval-ms",
            "500",
            // A 20 s run is mostly warm-up: this test checks that the
            // verdict is drawn, not the bound (the 10-minute run does).
            "--rss-growth-mb",
            "200",
            "-o",
            report.to_str().unwrap(),
        ],
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("memory verdict: flat"), "{stdout}");

    let json: LoadtestReport = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(json.mode, "soak");
    assert_eq!(json.runs.len(), 1);
    let run = &json.runs[0];
    assert!(run.check.correct, "{run:#?}");
    assert_eq!(run.check.verdict, "correct");
    assert!(run.check.windows_expected > 20, "{:?}", run.check);
    // 20 s at 50 frames/s, give or take the generator's uneven seconds.
    assert!(
        (500..=2000).contains(&json.data.frames),
        "{} frames",
        json.data.frames
    );
    // ts = now: the frames' time is the run's.
    let now = timebucket::cmd::loadtest::unix_ms() / 1000;
    assert!(
        json.data.last_ts + 600 > now && json.data.last_ts < now,
        "{:?}",
        json.data
    );

    let soak = run.soak.as_ref().expect("the soak's figures");
    assert_eq!(soak.duration_seconds, 20.0);
    let produced = soak.production_seconds.unwrap();
    assert!((15.0..40.0).contains(&produced), "produced in {produced} s");
    assert!(soak.drain_seconds.is_some());
    // Samples for every worker, all along, while producing and after.
    let producing: Vec<_> = soak.samples.iter().filter(|s| s.producing).collect();
    assert!(producing.len() >= 15, "{} samples", producing.len());
    for s in &soak.samples {
        let ids: Vec<u32> = s.workers.iter().map(|w| w.worker).collect();
        assert_eq!(ids, vec![0, 1], "{s:?}");
    }
    for s in &producing {
        for w in &s.workers {
            assert!(w.rss_kb.unwrap() > 1000, "{s:?}");
            assert!(w.frames.is_some() && w.late_seconds.is_some(), "{s:?}");
            assert!(w.owned_partitions.is_some(), "{s:?}");
        }
    }
    let last = producing.last().unwrap();
    assert!(last.produced > 0 && last.produced <= json.data.frames);
    let counted: u64 = last.workers.iter().filter_map(|w| w.frames).sum();
    assert!(counted > 0, "{last:?}");
    // The watermark follows the clock: the worker with the stream closes
    // windows a few seconds behind now (lateness 5 s plus the window).
    let delays: Vec<i64> = producing
        .iter()
        .flat_map(|s| s.workers.iter().filter_map(|w| w.event_time_delay_seconds))
        .collect();
    assert!(!delays.is_empty());
    let least = *delays.iter().min().unwrap();
    assert!((0..=30).contains(&least), "{delays:?}");
    // 5 % of frames are 1-10 s late: about half of those miss their second.
    let late: u64 = run
        .worker_figures
        .iter()
        .map(|w| w.summary.late_seconds)
        .sum();
    assert!(late > 0, "{:?}", run.worker_figures);

    // The memory verdict is drawn for every worker.
    let m = &soak.memory;
    assert!(m.flat, "{m:?}");
    assert_eq!(m.verdict, "flat");
    assert_eq!(m.bound_mb, 200.0);
    assert_eq!(m.workers.len(), 2);
    for w in &m.workers {
        assert!(w.first_quarter_mb.unwrap() > 1.0, "{w:?}");
        assert!(w.last_quarter_mb.unwrap() > 1.0, "{w:?}");
        assert!(w.growth_mb.is_some() && w.growth_pct.is_some(), "{w:?}");
        assert!(w.flat);
    }
}

/// Each repeat gets topics of its own: the second run of a combination used
/// to find the first one's progress topic still there and fail its setup.
#[test]
fn repeats_each_run_on_fresh_topics() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let out = loadtest(
        dir.path(),
        &[
            "--frames",
            "3000",
            "--partitions",
            "1",
            "--workers",
            "1",
            "--repeat",
            "3",
            "--no-kafka-tools",
            "-o",
            report.to_str().unwrap(),
        ],
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("all 3 runs correct"), "{stdout}");
    let json: LoadtestReport = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let repeats: Vec<u32> = json.runs.iter().map(|r| r.repeat).collect();
    assert_eq!(repeats, [1, 2, 3]);
    let mut inputs: Vec<&str> = json.runs.iter().map(|r| r.input_topic.as_str()).collect();
    inputs.dedup();
    assert_eq!(inputs.len(), 3, "{inputs:?}");
    for run in &json.runs {
        assert!(run.failure.is_none() && run.check.correct, "{run:#?}");
    }
}

/// A run whose setup fails (topics the single broker cannot replicate) is
/// FAILED with exit code 12, never reported as wrong results (exit 8).
#[test]
fn a_setup_failure_is_failed_with_its_own_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let out = run_loadtest(
        dir.path(),
        &[
            "--frames",
            "1000",
            "--partitions",
            "1",
            "--workers",
            "1",
            "--replication-factor",
            "3",
            "--no-kafka-tools",
            "-o",
            report.to_str().unwrap(),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(12), "{stdout}\n{stderr}");
    assert!(stdout.contains("1 of 1 runs FAILED"), "{stdout}");
    assert!(!stdout.contains("WRONG"), "{stdout}");
    assert!(stderr.contains("failed before their check"), "{stderr}");
    let json: LoadtestReport = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let run = &json.runs[0];
    assert!(run.check.verdict.starts_with("FAILED"), "{run:#?}");
    assert!(
        run.failure
            .as_deref()
            .is_some_and(|f| f.contains("cannot create the topics")),
        "{run:#?}"
    );
    assert_eq!(json.wrong_runs(), 0);
    assert_eq!(json.failed_runs(), 1);
}

#[test]
fn a_soak_needs_live_and_a_valid_duration() {
    for (args, why) in [
        (&["--duration", "20s"][..], "--live"),
        (&["--live", "--duration", "20x"][..], "unit"),
    ] {
        let bad = Command::new(BIN)
            .arg("loadtest")
            .args(args)
            .args(["--no-kafka-tools", "-b", "127.0.0.1:1"])
            .env_remove("LOADTEST_DURATION")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&bad.stderr);
        assert_eq!(bad.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(why), "{stderr}");
    }
}
