//! Helpers shared by the Kafka integration tests.
//!
//! Every test that needs Kafka calls [`bootstrap`], which reads
//! `BOOTSTRAP_SERVERS` and checks once per test binary that a broker answers
//! a metadata request. Without a broker the test fails with instructions; it
//! never passes by skipping. `scripts/test` starts a local broker and sets the
//! variable.
//!
//! Each test binary uses a subset of these helpers, hence the `dead_code`
//! allowances.
#![allow(dead_code)]

pub mod broker;
pub mod docker;
pub mod files;
pub mod netns;
pub mod pipeline;
pub mod probe;
pub mod tools;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::metadata::Metadata;

/// How long [`bootstrap`] waits for the broker to answer.
pub const BROKER_CHECK_TIMEOUT: Duration = Duration::from_secs(10);

const HOW_TO_START: &str = "\
start a local broker and point the tests at it:
    scripts/kafka start
    export BOOTSTRAP_SERVERS=127.0.0.1:9092
or run the whole suite with `scripts/test`, which starts and stops one itself";

/// The bootstrap servers of the Kafka cluster under test, from
/// `BOOTSTRAP_SERVERS`. Panics (never skips) if the variable is unset or the
/// cluster does not answer a metadata request within
/// [`BROKER_CHECK_TIMEOUT`]; the check runs once per test binary.
#[track_caller]
pub fn bootstrap() -> String {
    static CHECKED: OnceLock<Result<String, String>> = OnceLock::new();
    match CHECKED.get_or_init(check_bootstrap) {
        Ok(servers) => servers.clone(),
        Err(message) => panic!("{message}"),
    }
}

fn check_bootstrap() -> Result<String, String> {
    let servers = match std::env::var("BOOTSTRAP_SERVERS") {
        Ok(s) if !s.trim().is_empty() => s.trim().to_string(),
        _ => {
            return Err(format!(
                "this test needs a Kafka broker and BOOTSTRAP_SERVERS is not set;\n{HOW_TO_START}"
            ))
        }
    };
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &servers)
        .set("log_level", "3")
        .create()
        .map_err(|e| {
            format!("cannot create a Kafka client for BOOTSTRAP_SERVERS={servers}: {e}")
        })?;
    match consumer.fetch_metadata(None, BROKER_CHECK_TIMEOUT) {
        Ok(md) if !md.brokers().is_empty() => Ok(servers),
        Ok(_) => Err(format!("the Kafka cluster at BOOTSTRAP_SERVERS={servers} lists no brokers;\n{HOW_TO_START}")),
        Err(e) => Err(format!(
            "no Kafka broker answered a metadata request at BOOTSTRAP_SERVERS={servers} within {BROKER_CHECK_TIMEOUT:?} ({e});\n{HOW_TO_START}"
        )),
    }
}

/// A name no other test or run uses: `prefix-<unix ms>-<pid>-<counter>`,
/// valid as a topic, group or transactional id.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{millis}-{}-{n}", std::process::id())
}

/// Calls `f` until it returns true; panics naming `what` once `deadline`
/// has passed.
#[track_caller]
pub fn wait_until(deadline: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    let mut pause = Duration::from_millis(10);
    loop {
        if f() {
            return;
        }
        if start.elapsed() >= deadline {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

/// A small current-thread tokio runtime for rdkafka's admin futures.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// The base client config every test client starts from.
pub fn client_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("log_level", "4");
    config
}

/// An admin client.
pub fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    client_config(bootstrap)
        .create()
        .expect("Kafka admin client")
}

/// A producer config: acks from all in-sync replicas, idempotent, bounded
/// delivery time so a broken broker fails the test instead of hanging it.
pub fn producer_config(bootstrap: &str) -> ClientConfig {
    let mut config = client_config(bootstrap);
    config
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "60000");
    config
}

/// A consumer config for group `group`: reads from the earliest offset, no
/// auto-commit (tests commit or store what they mean to), read_committed,
/// short session timeout so a lost member is noticed quickly.
pub fn consumer_config(bootstrap: &str, group: &str) -> ClientConfig {
    let mut config = client_config(bootstrap);
    config
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("isolation.level", "read_committed")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000");
    config
}

/// Creates `name` with `partitions` partitions and `replication` replicas and
/// waits until the metadata shows every partition with a leader.
pub fn create_topic(bootstrap: &str, name: &str, partitions: i32, replication: i32) {
    create_topic_with(bootstrap, name, partitions, replication, &[]);
}

/// [`create_topic`] with topic configs, e.g. `&[("min.insync.replicas", "2")]`.
pub fn create_topic_with(
    bootstrap: &str,
    name: &str,
    partitions: i32,
    replication: i32,
    configs: &[(&str, &str)],
) {
    let admin = admin(bootstrap);
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(replication));
    for (k, v) in configs {
        topic = topic.set(k, v);
    }
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = runtime()
        .block_on(admin.create_topics([&topic], &options))
        .unwrap_or_else(|e| panic!("create topic {name}: {e}"));
    for result in results {
        if let Err((topic, code)) = result {
            panic!(
                "create topic {topic} ({partitions} partitions, replication {replication}): {code}"
            );
        }
    }
    wait_for_topic(bootstrap, name, partitions);
}

/// Waits until the metadata of `name` shows `partitions` partitions, each
/// with a leader.
pub fn wait_for_topic(bootstrap: &str, name: &str, partitions: i32) {
    let consumer: BaseConsumer = client_config(bootstrap).create().expect("Kafka client");
    wait_until(
        Duration::from_secs(30),
        &format!("topic {name} with {partitions} led partitions in the metadata"),
        || match consumer.fetch_metadata(Some(name), Duration::from_secs(5)) {
            Ok(md) => topic_ready(&md, name, partitions),
            Err(_) => false,
        },
    );
}

fn topic_ready(md: &Metadata, name: &str, partitions: i32) -> bool {
    md.topics().iter().any(|t| {
        t.name() == name
            && t.error().is_none()
            && t.partitions().len() == partitions as usize
            && t.partitions()
                .iter()
                .all(|p| p.error().is_none() && p.leader() >= 0)
    })
}

/// Deletes topics (best effort, for tests that clean up after themselves).
pub fn delete_topics(bootstrap: &str, names: &[&str]) {
    let admin = admin(bootstrap);
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let _ = runtime().block_on(admin.delete_topics(names, &options));
}

/// The high watermark of every partition of `topic`, by partition.
pub fn end_offsets(bootstrap: &str, topic: &str) -> HashMap<i32, i64> {
    let consumer: BaseConsumer = client_config(bootstrap).create().expect("Kafka client");
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("metadata of {topic}: {e}"));
    let t = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .unwrap_or_else(|| panic!("no topic {topic}"));
    t.partitions()
        .iter()
        .map(|p| {
            let (_, high) = consumer
                .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("watermarks of {topic}/{}: {e}", p.id()));
            (p.id(), high)
        })
        .collect()
}
