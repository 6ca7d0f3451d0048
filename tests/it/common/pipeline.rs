//! A whole pipeline under test: fresh topics and group, generated input,
//! `ingest` and `worker` processes, and the checks every pipeline test makes
//! against `aggregate` on the same file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::message::{Headers, Message};
use timebucket::cmd::worker::{Phase, WorkerReport};
use timebucket::core::compare::WindowSet;
use timebucket::core::metric::{MetricKind, MetricRecord};
use timebucket::kafka::config::{read_properties_file, KafkaSettings};
use timebucket::kafka::read::read_to_end;

use super::{bootstrap, create_topic_with, unique_name};

pub const BIN: &str = env!("CARGO_BIN_EXE_timebucket");
pub const PARTITIONS: i32 = 4;

pub struct Pipeline {
    pub bootstrap: String,
    pub input: String,
    pub seconds: String,
    pub minutes: String,
    pub forward: String,
    pub dead_letter: String,
    /// Ingest's progress topic (compacted, one partition).
    pub progress: String,
    /// The shards' partials topic (`PARTIALS_TOPIC`; created by `topics`
    /// or by a sharded test, never by [`Pipeline::on`]).
    pub partials: String,
    /// The late topic, when this pipeline made one (`LATE_TOPIC`).
    pub late: Option<String>,
    pub group: String,
    pub dir: tempfile::TempDir,
    /// A client properties file every command gets (`KAFKA_CLIENT_PROPERTIES`),
    /// for a cluster that wants more than an address (see `secure.rs`).
    pub client_properties: Option<PathBuf>,
}

impl Pipeline {
    /// Fresh topics on the broker under test (`BOOTSTRAP_SERVERS`).
    pub fn new(tag: &str) -> Pipeline {
        Pipeline::on(&bootstrap(), tag, 1, &[])
    }

    /// Fresh topics on `bootstrap` with `replication` replicas and `configs`.
    pub fn on(bootstrap: &str, tag: &str, replication: i32, configs: &[(&str, &str)]) -> Pipeline {
        let mut p = Pipeline::named(bootstrap, tag, None);
        p.late = Some(unique_name(&format!("{tag}-late")));
        create_topic_with(&p.bootstrap, &p.input, PARTITIONS, replication, configs);
        let late = p.late.as_ref().expect("set above");
        for t in [&p.seconds, &p.minutes, &p.forward, &p.dead_letter, late] {
            create_topic_with(&p.bootstrap, t, 2, replication, configs);
        }
        let mut compact = configs.to_vec();
        compact.push(("cleanup.policy", "compact"));
        create_topic_with(&p.bootstrap, &p.progress, 1, replication, &compact);
        p
    }

    /// Fresh names (topics `TAG-in-...`, group `TAG-group-...`), no topics
    /// yet; every command and reader uses `client_properties` if given.
    pub fn named(bootstrap: &str, tag: &str, client_properties: Option<PathBuf>) -> Pipeline {
        Pipeline {
            input: unique_name(&format!("{tag}-in")),
            seconds: unique_name(&format!("{tag}-sec")),
            minutes: unique_name(&format!("{tag}-min")),
            forward: unique_name(&format!("{tag}-fwd")),
            dead_letter: unique_name(&format!("{tag}-dlq")),
            progress: unique_name(&format!("{tag}-progress")),
            partials: unique_name(&format!("{tag}-partials")),
            late: None,
            group: unique_name(&format!("{tag}-group")),
            dir: tempfile::tempdir().unwrap(),
            bootstrap: bootstrap.to_string(),
            client_properties,
        }
    }

    /// The client settings of this pipeline's readers.
    pub fn settings(&self) -> KafkaSettings {
        match &self.client_properties {
            None => KafkaSettings::new(&self.bootstrap),
            Some(path) => KafkaSettings::from_sources(
                read_properties_file(path).unwrap(),
                Vec::new(),
                Some(&self.bootstrap),
                Vec::new(),
            )
            .unwrap(),
        }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        self.command_via(&[], args)
    }

    /// [`Pipeline::command`] started by `launcher` (e.g. `ip netns exec NS`,
    /// see [`super::netns::Net::launcher`]): a process on another host.
    pub fn command_via(&self, launcher: &[String], args: &[&str]) -> Command {
        let mut c = match launcher.split_first() {
            None => Command::new(BIN),
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(BIN);
                c
            }
        };
        c.args(args)
            .env("BOOTSTRAP_SERVERS", &self.bootstrap)
            .env("INPUT_TOPIC", &self.input)
            .env("SEC_METRICS_OUTPUT_TOPIC", &self.seconds)
            .env("MIN_METRICS_OUTPUT_TOPIC", &self.minutes)
            .env("OUTPUT_STREAM", &self.forward)
            .env("DEAD_LETTER_TOPIC", &self.dead_letter)
            .env("INGEST_PROGRESS_TOPIC", &self.progress)
            .env("PARTIALS_TOPIC", &self.partials)
            .env_remove("LATE_TOPIC")
            .env("CONSUMER_GROUP_ID", &self.group)
            // TIMEBUCKET_IT_RUST_LOG shows more when chasing a fault (e.g.
            // `info,librdkafka=debug` with TIMEBUCKET_CLIENT_DEBUG=cgrp).
            .env(
                "RUST_LOG",
                std::env::var("TIMEBUCKET_IT_RUST_LOG").unwrap_or_else(|_| "info".into()),
            );
        if let Some(path) = &self.client_properties {
            c.env("KAFKA_CLIENT_PROPERTIES", path);
        }
        if let Some(late) = &self.late {
            c.env("LATE_TOPIC", late);
        }
        c
    }

    /// A generated file with delays (`-d 8 -p 2`) and `bad` malformed lines.
    pub fn input_file(&self, frames: u64, bad: &[&str]) -> PathBuf {
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

    pub fn ingest(&self, path: &Path) {
        let out = self.command(&["ingest"]).arg(path).output().unwrap();
        assert!(
            out.status.success(),
            "ingest failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A worker process to the end of the input, logging to a file of its
    /// own and writing its typed report beside it (see [`Pipeline::reports`]).
    pub fn worker(&self, extra: &[&str]) -> Child {
        self.worker_via(&[], extra)
    }

    /// [`Pipeline::worker`] started by `launcher` (see [`Pipeline::command_via`]).
    pub fn worker_via(&self, launcher: &[String], extra: &[&str]) -> Child {
        let name = unique_name("w");
        let log =
            std::fs::File::create(self.dir.path().join(format!("worker-{name}.log"))).unwrap();
        let report = self.dir.path().join(format!("worker-{name}.report.json"));
        self.command_via(
            launcher,
            &["worker", "--until-end", "--commit-interval-ms", "200"],
        )
        .arg("--report-file")
        .arg(report)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
    }

    pub fn worker_logs(&self) -> String {
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

    /// The final reports of the workers that finished (a killed worker
    /// leaves none, or only its `started` one).
    pub fn reports(&self) -> Vec<WorkerReport> {
        let mut reports = Vec::new();
        for entry in std::fs::read_dir(self.dir.path()).unwrap() {
            let path = entry.unwrap().path();
            if path.to_string_lossy().ends_with(".report.json") {
                if let Some(r) = WorkerReport::read(&path).unwrap() {
                    if r.phase == Phase::Finished {
                        reports.push(r);
                    }
                }
            }
        }
        reports
    }

    pub fn wait_all(&self, workers: Vec<Child>, deadline: Duration) {
        self.wait_all_restarting(workers, None, deadline);
    }

    /// [`Pipeline::wait_all`], but a worker that exits 5 (a Kafka call past
    /// its limit, named in its log: the documented way out, docs/operations.md)
    /// is started again with `extra`, at most twice each, as a supervisor
    /// (compose's restart policy, systemd) would; the outputs must still be
    /// exact. Returns how many times workers were started again.
    pub fn wait_all_supervised(
        &self,
        workers: Vec<Child>,
        extra: &[&str],
        deadline: Duration,
    ) -> u32 {
        self.wait_all_restarting(workers, Some(extra), deadline)
    }

    fn wait_all_restarting(
        &self,
        workers: Vec<Child>,
        restart: Option<&[&str]>,
        deadline: Duration,
    ) -> u32 {
        let started = Instant::now();
        let mut restarts = 0;
        for mut w in workers {
            let mut again = 0;
            loop {
                if let Some(status) = w.try_wait().unwrap() {
                    if let (Some(extra), Some(5), true) = (restart, status.code(), again < 2) {
                        println!("measured: a worker exited 5 and was started again");
                        w = self.worker(extra);
                        again += 1;
                        restarts += 1;
                        continue;
                    }
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
        restarts
    }
}

/// What `aggregate` says for the file, with the same partition count.
pub fn aggregate(path: &Path) -> WindowSet {
    let out = Command::new(BIN)
        .args(["aggregate", "-P", &PARTITIONS.to_string()])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success());
    let windows = WindowSet::from_json_lines(&out.stdout).unwrap();
    assert_eq!(windows.repeated, 0);
    windows
}

pub struct Record {
    pub key: Option<String>,
    pub payload: Vec<u8>,
    pub headers: BTreeMap<String, String>,
}

/// Every committed record of `topic`, read to the end offsets as they are now.
pub fn read_topic(bootstrap: &str, topic: &str) -> Vec<Record> {
    read_topic_with(&KafkaSettings::new(bootstrap), topic)
}

/// [`read_topic`] with client settings.
pub fn read_topic_with(settings: &KafkaSettings, topic: &str) -> Vec<Record> {
    read_to_end(settings, topic, Duration::from_secs(60))
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

/// The windows on the metric topics, each of which must appear exactly once
/// (exactly-once output read with `read_committed`).
pub fn emitted_once(p: &Pipeline) -> WindowSet {
    let windows = emitted(p);
    assert_eq!(
        windows.repeated,
        0,
        "windows emitted more than once\n{}",
        p.worker_logs()
    );
    windows
}

/// The windows on the metric topics, each keyed by its start on the topic
/// of its kind.
pub fn emitted(p: &Pipeline) -> WindowSet {
    let mut windows = WindowSet::default();
    for (topic, kind) in [
        (&p.seconds, MetricKind::Second),
        (&p.minutes, MetricKind::Minute),
    ] {
        for record in read_topic_with(&p.settings(), topic) {
            let r: MetricRecord = serde_json::from_slice(&record.payload).unwrap();
            assert_eq!(r.metric, kind, "record on the wrong topic");
            assert_eq!(
                record.key.as_deref(),
                Some(r.window_start.to_string().as_str()),
                "key is window_start"
            );
            windows.insert(&r);
        }
    }
    windows
}

/// Every window of `want` emitted with its value, nothing else, and no
/// window twice with different values.
#[track_caller]
pub fn assert_same_windows(got: &WindowSet, want: &WindowSet, logs: impl Fn() -> String) {
    let diff = got.compare(want);
    assert!(diff.is_exact(false), "{diff}\n{}", logs());
}
