//! The pipeline on the real broker: `ingest` a generated file with delays and
//! malformed lines into 4 partitions, run worker processes to the end, and
//! compare every metric topic, window by window, with `aggregate` on the same
//! file; also with a worker added mid-stream and one stopped with SIGTERM.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::message::{Headers, Message};
use timebucket::kafka::config::KafkaSettings;
use timebucket::kafka::consumer::read_to_end;
use timebucket::metric::{MetricKind, MetricRecord};

const BIN: &str = env!("CARGO_BIN_EXE_timebucket");
const PARTITIONS: i32 = 4;

struct Pipeline {
    bootstrap: String,
    input: String,
    seconds: String,
    minutes: String,
    forward: String,
    dead_letter: String,
    group: String,
    dir: tempfile::TempDir,
}

impl Pipeline {
    fn new(tag: &str) -> Pipeline {
        let bootstrap = common::bootstrap();
        let p = Pipeline {
            input: common::unique_name(&format!("{tag}-in")),
            seconds: common::unique_name(&format!("{tag}-sec")),
            minutes: common::unique_name(&format!("{tag}-min")),
            forward: common::unique_name(&format!("{tag}-fwd")),
            dead_letter: common::unique_name(&format!("{tag}-dlq")),
            group: common::unique_name(&format!("{tag}-group")),
            dir: tempfile::tempdir().unwrap(),
            bootstrap,
        };
        common::create_topic(&p.bootstrap, &p.input, PARTITIONS, 1);
        for t in [&p.seconds, &p.minutes, &p.forward, &p.dead_letter] {
            common::create_topic(&p.bootstrap, t, 2, 1);
        }
        p
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .env("BOOTSTRAP_SERVERS", &self.bootstrap)
            .env("INPUT_TOPIC", &self.input)
            .env("SEC_METRICS_OUTPUT_TOPIC", &self.seconds)
            .env("MIN_METRICS_OUTPUT_TOPIC", &self.minutes)
            .env("OUTPUT_STREAM", &self.forward)
            .env("DEAD_LETTER_TOPIC", &self.dead_letter)
            .env("CONSUMER_GROUP_ID", &self.group)
            .env("RUST_LOG", "info");
        c
    }

    /// A generated file with delays (`-d 8 -p 2`) and `bad` malformed lines.
    fn input_file(&self, frames: u64, bad: &[&str]) -> PathBuf {
        let path = self.dir.path().join("stream.jsonl");
        let out = Command::new(BIN)
            .args([
                "generate",
                "-c",
                &frames.to_string(),
                "-r",
                "15",
                "-n",
                "5000",
                "-s",
                "7",
                "-d",
                "8",
                "-p",
                "2",
            ])
            .args(["--start", "1468243800", "-o"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "generate failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut text = std::fs::read_to_string(&path).unwrap();
        // Spread the malformed lines through the file.
        let lines: Vec<&str> = text.lines().collect();
        let step = lines.len() / (bad.len() + 1);
        let mut mixed = String::new();
        for (i, line) in lines.iter().enumerate() {
            if i > 0 && i % step == 0 && i / step <= bad.len() {
                mixed.push_str(bad[i / step - 1]);
                mixed.push('\n');
            }
            mixed.push_str(line);
            mixed.push('\n');
        }
        text = mixed;
        std::fs::write(&path, text).unwrap();
        path
    }

    fn ingest(&self, path: &Path) {
        let out = self.command(&["ingest"]).arg(path).output().unwrap();
        assert!(
            out.status.success(),
            "ingest failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn worker(&self, extra: &[&str]) -> Child {
        let log = std::fs::File::create(
            self.dir
                .path()
                .join(format!("worker-{}.log", common::unique_name("w"))),
        )
        .unwrap();
        self.command(&["worker", "--until-end", "--commit-interval-ms", "200"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    fn worker_logs(&self) -> String {
        let mut all = String::new();
        for entry in std::fs::read_dir(self.dir.path()).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "log") {
                all.push_str(&format!(
                    "--- {}\n{}\n",
                    path.display(),
                    std::fs::read_to_string(&path).unwrap()
                ));
            }
        }
        all
    }

    fn wait_all(&self, workers: Vec<Child>, deadline: Duration) {
        let started = Instant::now();
        for mut w in workers {
            loop {
                if let Some(status) = w.try_wait().unwrap() {
                    assert!(
                        status.success(),
                        "worker exited with {status}\n{}",
                        self.worker_logs()
                    );
                    break;
                }
                if started.elapsed() > deadline {
                    let _ = w.kill();
                    panic!(
                        "workers did not finish within {deadline:?}\n{}",
                        self.worker_logs()
                    );
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

type Windows = BTreeMap<(MetricKind, u64), (u64, Option<u64>)>;

/// What `aggregate` says for the file, with the same partition count.
fn aggregate(path: &Path) -> Windows {
    let out = Command::new(BIN)
        .args(["aggregate", "-P", &PARTITIONS.to_string()])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut windows = Windows::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let r: MetricRecord = serde_json::from_str(line).unwrap();
        assert!(windows
            .insert((r.metric, r.window_start), (r.frames, r.unique_users))
            .is_none());
    }
    windows
}

struct Record {
    key: Option<String>,
    payload: Vec<u8>,
    headers: BTreeMap<String, String>,
}

/// Every committed record of `topic`, read to the end offsets as they are now.
fn read_topic(bootstrap: &str, topic: &str) -> Vec<Record> {
    let settings = KafkaSettings::new(bootstrap);
    read_to_end(&settings, topic, Duration::from_secs(60))
        .unwrap()
        .into_iter()
        .map(|m| Record {
            key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            payload: m.payload().unwrap_or_default().to_vec(),
            headers: m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| {
                            (
                                h.key.to_string(),
                                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect()
}

/// The windows on the metric topics; a window seen twice must have one value.
fn emitted(p: &Pipeline) -> Windows {
    let mut windows = Windows::new();
    for (topic, kind) in [
        (&p.seconds, MetricKind::Second),
        (&p.minutes, MetricKind::Minute),
    ] {
        for record in read_topic(&p.bootstrap, topic) {
            let r: MetricRecord = serde_json::from_slice(&record.payload).unwrap();
            assert_eq!(r.metric, kind, "record on the wrong topic");
            assert_eq!(
                record.key.as_deref(),
                Some(r.window_start.to_string().as_str()),
                "key is window_start"
            );
            let value = (r.frames, r.unique_users);
            if let Some(previous) = windows.insert((r.metric, r.window_start), value) {
                assert_eq!(
                    previous, value,
                    "window {:?} {} emitted twice with different values",
                    r.metric, r.window_start
                );
            }
        }
    }
    windows
}

fn assert_same_windows(got: &Windows, want: &Windows, logs: impl Fn() -> String) {
    let missing: Vec<_> = want
        .keys()
        .filter(|k| !got.contains_key(k))
        .take(5)
        .collect();
    let extra: Vec<_> = got
        .keys()
        .filter(|k| !want.contains_key(k))
        .take(5)
        .collect();
    let differ: Vec<_> = want
        .iter()
        .filter(|(k, v)| got.get(k).is_some_and(|g| g != *v))
        .take(5)
        .map(|(k, v)| (k, v, got[k]))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty() && differ.is_empty(),
        "{} windows expected, {} emitted; missing {missing:?}; extra {extra:?}; differing (want, got) {differ:?}\n{}",
        want.len(),
        got.len(),
        logs()
    );
}

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
        want.keys()
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
    let logs = p.worker_logs();
    assert!(
        logs.contains("partitions revoked"),
        "the first worker should have handed partitions over\n{logs}"
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
    let logs = p.worker_logs();
    assert!(
        logs.contains("stop requested"),
        "the stopped worker should say so\n{logs}"
    );
    assert!(
        logs.contains("resuming partition from checkpoint"),
        "a partition should have been resumed\n{logs}"
    );
}
