//! `docker-compose.yml` run for real on a Docker engine, with the images of
//! `scripts/images` (built offline) in place of the public ones, timebucket's
//! built by the Dockerfile's cargo stage as users build it: the stack
//! comes up, the workers scale to 3, a file is ingested, every worker's
//! `/readyz` answers, the metric topics equal `aggregate` on the file,
//! Prometheus has scraped all three workers, and after a worker container is
//! killed (SIGKILL) and more of the file is ingested the results are still
//! exact and emitted once. The stack is always taken down with `down -v`.
//! `compose_secure.rs` runs the same checks with `docker-compose.secure.yml`
//! against a broker that wants TLS, SCRAM and ACLs, and timebucket's image
//! from the same Dockerfile with the binary cargo built on the host
//! (`BINARY=prebuilt`). Grafana and kafka-ui
//! have no offline image and are not started (`compose.rs` checks their
//! configuration statically).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use timebucket::core::compare::WindowSet;

use crate::common::docker::{cargo_image, docker, one_at_a_time, Stack, BIN};
use crate::common::pipeline::{emitted, Pipeline};
use crate::common::tools::{get, query_escape};

/// The input topic's partitions (topics/input.properties), for `aggregate -P`.
const PARTITIONS: &str = "8";
/// Part two of the input starts this long after part one: 5 buckets of
/// 900 s later, so its frames land on other partitions (ts / 900 mod 8) and
/// after every window of part one.
const SECOND_PART_OFFSET: u64 = 4500;
const START: u64 = 1_468_243_800;
/// Up to the idle flush (30 s), the transaction timeout of a killed worker
/// (10 s), a rebalance and the reads, on a busy 2-core machine.
const RESULTS_DEADLINE: Duration = Duration::from_secs(240);

/// Host ports of one stack (inside the range of this test).
pub struct Ports {
    pub kafka: u16,
    pub prometheus: u16,
    pub dashboard: u16,
}

impl Ports {
    /// Kafka on `base + 92`, Prometheus on `base + 90`, the dashboard on
    /// `base + 88` (11000-11999: this test's range).
    pub fn at(base: u16) -> Ports {
        Ports {
            kafka: base + 92,
            prometheus: base + 90,
            dashboard: base + 88,
        }
    }

    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("KAFKA_HOST_PORT", self.kafka.to_string()),
            ("PROMETHEUS_HOST_PORT", self.prometheus.to_string()),
            ("DASHBOARD_HOST_PORT", self.dashboard.to_string()),
        ]
    }
}

#[test]
fn the_plain_stack_runs_scales_and_stays_exact() {
    let (_one, started, ports) = (one_at_a_time(), Instant::now(), Ports::at(11000));
    // timebucket's image as users build it (BINARY=cargo), where the secure
    // stack runs the prebuilt variant of the same Dockerfile.
    let mut env = ports.env();
    env.push(("TIMEBUCKET_IMAGE", cargo_image("TIMEBUCKET_IMAGE")));
    let stack = Stack::new(
        &format!("tbplain{}", std::process::id()),
        &["docker-compose.yml"],
        &env,
    );
    exercise(&stack, &ports, None);
    eprintln!(
        "plain stack: {:.0} s in all (images included)",
        started.elapsed().as_secs_f64()
    );
}

/// The checks both stacks pass. Brings up every service with an offline
/// image (not Grafana and kafka-ui), one worker, then scales it to 3.
/// `client` is the host's client properties file for a secure broker.
pub fn exercise(stack: &Stack, ports: &Ports, client: Option<PathBuf>) {
    stack.run(&[
        "up",
        "-d",
        "kafka",
        "topics",
        "worker",
        "prometheus",
        "dashboard",
    ]);
    stack.run(&["up", "-d", "--no-deps", "--scale", "worker=3", "worker"]);
    let workers = stack.containers("worker");
    assert_eq!(
        workers.len(),
        3,
        "workers after --scale worker=3: {workers:?}"
    );
    stack.wait_healthy(
        &workers,
        "http://127.0.0.1:9180/readyz",
        Duration::from_secs(180),
    );
    let dashboards = stack.containers("dashboard");
    stack.wait_healthy(
        &dashboards,
        "http://127.0.0.1:8080/healthz",
        Duration::from_secs(60),
    );

    let file = stack.path("data/stream.jsonl");
    append_generated(&file, 3000, 7, START);
    stack.run(&["run", "--rm", "ingest"]);
    let readers = readers(ports, client.clone());
    wait_exact(stack, &readers, &file);
    prometheus_scraped(stack, ports, &workers);

    // A worker dies without closing anything (docker does not restart a
    // killed container); the other two take over its partitions from its
    // last checkpoint, and ingest goes on with the rest of the file.
    docker(&["kill", &workers[1]]).unwrap();
    append_generated(&file, 3000, 8, START + SECOND_PART_OFFSET);
    stack.run(&["run", "--rm", "ingest"]);
    wait_exact(stack, &readers, &file);
}

/// `timebucket generate` appended to `path`: `frames` frames at 1 per second
/// (so the file spans several 900 s buckets, hence partitions), some
/// delayed by up to 3 s.
fn append_generated(path: &Path, frames: u64, seed: u64, start: u64) {
    let part = path.with_extension(format!("part{seed}"));
    let out = Command::new(BIN)
        .args([
            "generate",
            "-c",
            &frames.to_string(),
            "-r",
            "1",
            "-n",
            "400",
        ])
        .args(["-s", &seed.to_string(), "-l", "512", "-d", "3", "-p", "2"])
        .args(["--start", &start.to_string(), "-o"])
        .arg(&part)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "generate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(&std::fs::read(&part).unwrap()).unwrap();
    std::fs::remove_file(part).unwrap();
}

/// Readers of the stack's metric topics from the host, with the compose
/// file's default topic names.
fn readers(ports: &Ports, client: Option<PathBuf>) -> Pipeline {
    let mut p = Pipeline::named(&format!("127.0.0.1:{}", ports.kafka), "compose", client);
    p.input = "frames".into();
    p.seconds = "metrics-second".into();
    p.minutes = "metrics-minute".into();
    p.forward = "frames-forward".into();
    p.dead_letter = "frames-dead-letter".into();
    p.progress = "ingest-progress".into();
    p
}

fn aggregate(path: &Path) -> WindowSet {
    let out = Command::new(BIN)
        .args(["aggregate", "-P", PARTITIONS])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "aggregate failed");
    WindowSet::from_json_lines(&out.stdout).unwrap()
}

/// Waits until the metric topics hold exactly `aggregate`'s windows of the
/// file, each once.
fn wait_exact(stack: &Stack, readers: &Pipeline, file: &Path) {
    let want = aggregate(file);
    assert!(want.len() > 100, "the file makes {} windows", want.len());
    let started = Instant::now();
    loop {
        let got = emitted(readers);
        let diff = got.compare(&want);
        if diff.is_exact(true) {
            eprintln!(
                "{}: {} windows exact after {:.1} s",
                stack.project,
                want.len(),
                started.elapsed().as_secs_f64()
            );
            return;
        }
        assert!(
            diff.conflicts.is_empty() && diff.extra.is_empty() && diff.repeated == 0,
            "wrong windows: {diff}\n{}",
            stack.logs()
        );
        if started.elapsed() > RESULTS_DEADLINE {
            panic!(
                "not exact after {RESULTS_DEADLINE:?}: {diff}\n{}",
                stack.logs()
            );
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// Prometheus (its HTTP API on the host) has scraped each worker: `up` is
/// 1 for exactly the three workers' addresses.
fn prometheus_scraped(stack: &Stack, ports: &Ports, workers: &[String]) {
    let mut want: Vec<String> = workers
        .iter()
        .map(|id| {
            let ip = docker(&[
                "inspect",
                "-f",
                "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                id,
            ])
            .unwrap();
            format!("{}:9180", ip.trim())
        })
        .collect();
    want.sort();
    let url = format!(
        "http://127.0.0.1:{}/api/v1/query?query={}",
        ports.prometheus,
        query_escape(r#"up{job="worker"} == 1"#)
    );
    let started = Instant::now();
    loop {
        let (status, body) = get(&url);
        let mut up: Vec<String> = Vec::new();
        if status == 200 {
            let v: Value = serde_json::from_str(&body).unwrap();
            for series in v["data"]["result"].as_array().into_iter().flatten() {
                up.push(series["metric"]["instance"].as_str().unwrap().to_string());
            }
        }
        up.sort();
        if up == want {
            eprintln!("{}: Prometheus scraped {up:?}", stack.project);
            return;
        }
        if started.elapsed() > Duration::from_secs(90) {
            panic!(
                "Prometheus: up for {up:?}, want the workers {want:?} (HTTP {status}: {body})\n{}",
                stack.logs()
            );
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}
