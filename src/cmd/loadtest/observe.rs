//! Threads of the loadtest process that watch a run: the consumer lag
//! sampler and the observer of metric windows becoming visible.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tracing::warn;

use crate::core::metric::{MetricKind, MetricRecord};
use crate::error::Error;
use crate::kafka::config::KafkaSettings;

use super::topics::RunTopics;
use super::unix_ms;

pub(super) fn reader(settings: &KafkaSettings, group: &str) -> Result<BaseConsumer, Error> {
    settings
        .client_config(&[
            ("group.id", group),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("isolation.level", "read_committed"),
            ("fetch.wait.max.ms", "50"),
        ])
        .create()
        .map_err(|e| Error::kafka_at("cannot create a consumer", e))
}

/// Tells the lag sampler to stop, or to sample now; counts its samples.
#[derive(Default)]
pub(super) struct LagSignal {
    pub(super) stop: AtomicBool,
    pub(super) now: AtomicBool,
    pub(super) taken: std::sync::atomic::AtomicU64,
}

impl LagSignal {
    /// Asks for a sample now and waits (up to 5 s) until it is taken.
    pub(super) fn sample_now(&self) {
        let before = self.taken.load(Ordering::SeqCst);
        self.now.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.taken.load(Ordering::SeqCst) <= before && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// Samples Σ(end − committed) of `group` on `topic` until `signal.stop`.
pub(super) fn sample_lag(
    settings: &KafkaSettings,
    topic: &str,
    partitions: u32,
    group: &str,
    interval: Duration,
    t0: Instant,
    signal: &LagSignal,
) -> Vec<(f64, i64)> {
    let consumer: BaseConsumer = match settings
        .client_config(&[("group.id", group), ("enable.auto.commit", "false")])
        .create()
    {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e, "lag sampler: cannot create a consumer");
            return Vec::new();
        }
    };
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        tpl.add_partition(topic, p);
    }
    let timeout = Duration::from_secs(5);
    let mut samples = Vec::new();
    loop {
        let committed = consumer.committed_offsets(tpl.clone(), timeout);
        let mut lag = 0i64;
        let mut ok = committed.is_ok();
        for p in 0..partitions as i32 {
            let Ok((_, high)) = consumer.fetch_watermarks(topic, p, timeout) else {
                ok = false;
                break;
            };
            let done = committed
                .as_ref()
                .ok()
                .and_then(|c| c.find_partition(topic, p))
                .and_then(|e| match e.offset() {
                    Offset::Offset(o) if o >= 0 => Some(o),
                    _ => None,
                })
                .unwrap_or(0);
            lag += (high - done).max(0);
        }
        if ok {
            samples.push((t0.elapsed().as_secs_f64(), lag));
        }
        signal.taken.fetch_add(1, Ordering::SeqCst);
        let next = Instant::now() + interval;
        while Instant::now() < next {
            if signal.stop.load(Ordering::SeqCst) {
                return samples;
            }
            if signal.now.swap(false, Ordering::SeqCst) {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// When each window became visible to a `read_committed` reader.
#[derive(Debug, Default)]
pub(super) struct Observed {
    pub(super) records: u64,
    pub(super) last_ms: Option<u64>,
    /// Minute window_start → unix ms of its first appearance.
    pub(super) minutes: HashMap<u64, u64>,
}

/// Reads the metric topics from the beginning as windows appear, until
/// `finish` is set and it has read up to the end offsets of that moment.
pub(super) fn observe(
    settings: &KafkaSettings,
    topics: &RunTopics,
    finish: &AtomicBool,
    timeout: Duration,
) -> Result<Observed, Error> {
    let consumer = reader(settings, &format!("{}-observer", topics.group))?;
    let mut tpl = TopicPartitionList::new();
    let all: Vec<(&str, i32)> = (0..topics.seconds_partitions as i32)
        .map(|p| (topics.names.seconds.as_str(), p))
        .chain((0..topics.minutes_partitions as i32).map(|p| (topics.names.minutes.as_str(), p)))
        .collect();
    for &(t, p) in &all {
        tpl.add_partition_offset(t, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let mut seen = Observed::default();
    let mut ends: Option<HashMap<(String, i32), i64>> = None;
    let mut deadline = None;
    loop {
        if let Some(message) = consumer.poll(Duration::from_millis(50)) {
            let message = message?;
            let now = unix_ms();
            seen.records += 1;
            seen.last_ms = Some(now);
            if let Some(Ok(r)) = message
                .payload()
                .map(serde_json::from_slice::<MetricRecord>)
            {
                if r.metric == MetricKind::Minute {
                    seen.minutes.entry(r.window_start).or_insert(now);
                }
            }
        }
        if ends.is_none() && finish.load(Ordering::SeqCst) {
            let mut e = HashMap::new();
            for &(t, p) in &all {
                let (_, high) = consumer.fetch_watermarks(t, p, Duration::from_secs(10))?;
                e.insert((t.to_string(), p), high);
            }
            ends = Some(e);
            deadline = Some(Instant::now() + timeout);
        }
        if let Some(ends) = &ends {
            let positions = consumer.position()?;
            let done = ends.iter().all(|((t, p), &end)| {
                end == 0
                    || positions
                        .find_partition(t, *p)
                        .is_some_and(|e| matches!(e.offset(), Offset::Offset(o) if o >= end))
            });
            if done {
                return Ok(seen);
            }
            if deadline.is_some_and(|d| Instant::now() > d) {
                warn!("observer: the metric topics were not read to their end in time");
                return Ok(seen);
            }
        }
    }
}
