//! The worker's consumer: group membership with cooperative-sticky
//! rebalancing, hand-over of revoked partitions (their checkpoints are
//! committed before they go), and the encoding of a [`Checkpoint`] in the
//! committed offset plus its metadata string.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, ConsumerGroupMetadata, Rebalance,
};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientContext;
use tracing::{info, warn};

use crate::error::Error;
use crate::kafka::config::KafkaSettings;
use crate::window::{Checkpoint, Watermark};

pub const CONSUMER_DEFAULTS: &[(&str, &str)] = &[
    ("enable.auto.commit", "false"),
    ("enable.auto.offset.store", "false"),
    ("auto.offset.reset", "earliest"),
    ("partition.assignment.strategy", "cooperative-sticky"),
    ("isolation.level", "read_committed"),
    ("session.timeout.ms", "6000"),
    ("heartbeat.interval.ms", "1000"),
    ("max.poll.interval.ms", "300000"),
    // Prefetch (see BENCHMARKS.md, loadtest): enough to keep the polling
    // thread busy, small enough for a worker's peak memory (it was about
    // 400 MB with 100 MB fetches and a 256 MB queue). librdkafka applies the
    // queue limit per partition: about 20 MB of memory per partition that
    // has data to fetch (8 busy partitions: ~160 MB).
    ("fetch.max.bytes", "16777216"),
    ("max.partition.fetch.bytes", "2097152"),
    ("queued.max.messages.kbytes", "16384"),
    // Once the queue is full librdkafka waits this long before fetching again
    // (default 1000 ms). A worker drains it in tens of milliseconds, so with
    // the default it sat idle most of every second (2.5x slower).
    ("fetch.queue.backoff.ms", "10"),
];

/// What the worker does when partitions come and go. Called on the thread
/// that polls the consumer.
pub trait Handover: Send + Sync + 'static {
    /// The partitions are being taken away: make what was emitted for them
    /// durable, and return the offsets (with metadata) the consumer must
    /// commit itself, or an empty list when the handover committed them (in
    /// a transaction, with `group`).
    fn revoke(
        &self,
        partitions: &[i32],
        group: Option<&ConsumerGroupMetadata>,
    ) -> TopicPartitionList;
    fn assigned(&self, partitions: &[i32]);
}

pub struct GroupContext<H> {
    pub topic: String,
    pub handover: Arc<H>,
    /// Set once the group has given this member an assignment (maybe empty).
    pub joined: AtomicBool,
}

impl<H: Handover> ClientContext for GroupContext<H> {}

impl<H: Handover> ConsumerContext for GroupContext<H> {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
            if partitions.is_empty() {
                return;
            }
            let group = consumer.group_metadata();
            let offsets = self.handover.revoke(&partitions, group.as_ref());
            if offsets.count() > 0 {
                if let Err(e) = consumer.commit(&offsets, CommitMode::Sync) {
                    warn!(error = %e, ?partitions, "commit on revoke failed; the next owner replays from the previous commit");
                }
            }
            info!(?partitions, "partitions revoked");
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                self.joined.store(true, Ordering::SeqCst);
                if !partitions.is_empty() {
                    info!(?partitions, "partitions assigned");
                    self.handover.assigned(&partitions);
                }
            }
            Rebalance::Error(e) => warn!(error = %e, "rebalance error"),
            Rebalance::Revoke(_) => {}
        }
    }
}

pub type GroupConsumer<H> = BaseConsumer<GroupContext<H>>;

pub fn group_consumer<H: Handover>(
    settings: &KafkaSettings,
    group: &str,
    topic: &str,
    handover: Arc<H>,
) -> Result<GroupConsumer<H>, Error> {
    let mut config = settings.client_config(CONSUMER_DEFAULTS);
    config.set("group.id", group);
    let context = GroupContext {
        topic: topic.to_string(),
        handover,
        joined: AtomicBool::new(false),
    };
    let consumer: GroupConsumer<H> = config
        .create_with_context(context)
        .map_err(|e| Error::Kafka(format!("cannot create consumer: {e}")))?;
    consumer
        .subscribe(&[topic])
        .map_err(|e| Error::Kafka(format!("cannot subscribe to {topic}: {e}")))?;
    Ok(consumer)
}

const METADATA_VERSION: &str = "tb1";

/// `tb1;max=<ts|->;handled=<offset>;emitted=<wm|->;floor=<wm|->`: what a new
/// owner needs besides the offset to make the same decisions. Small enough
/// for the broker's default `offset.metadata.max.bytes` (4096).
pub fn encode_checkpoint(cp: &Checkpoint) -> String {
    fn opt(v: Option<u64>) -> String {
        v.map_or_else(|| "-".to_string(), |v| v.to_string())
    }
    format!(
        "{METADATA_VERSION};max={};handled={};emitted={};floor={}",
        opt(cp.max_ts_before),
        cp.handled_until,
        opt(cp.emitted.map(|w| w.0)),
        opt(cp.floor.map(|w| w.0)),
    )
}

/// The checkpoint committed at `offset` with `metadata`, or `None` when the
/// metadata is not ours (then the partition starts fresh from that offset).
pub fn decode_checkpoint(offset: u64, metadata: &str) -> Option<Checkpoint> {
    let mut parts = metadata.split(';');
    if parts.next()? != METADATA_VERSION {
        return None;
    }
    let mut cp = Checkpoint {
        resume_seq: offset,
        max_ts_before: None,
        handled_until: offset,
        emitted: None,
        floor: None,
    };
    for part in parts {
        let (k, v) = part.split_once('=')?;
        let value = if v == "-" {
            None
        } else {
            Some(v.parse::<u64>().ok()?)
        };
        match k {
            "max" => cp.max_ts_before = value,
            "handled" => cp.handled_until = value?,
            "emitted" => cp.emitted = value.map(Watermark),
            "floor" => cp.floor = value.map(Watermark),
            _ => {}
        }
    }
    Some(cp)
}

/// The committed offset and checkpoint of one partition of `topic`.
pub fn committed_checkpoint<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
    timeout: Duration,
) -> Result<Option<Checkpoint>, Error> {
    Ok(committed_checkpoints(consumer, topic, &[partition], timeout)?.remove(&partition))
}

/// The committed checkpoints of `partitions` of `topic` (those that have one),
/// in one request. With `read_committed` the broker answers only once no
/// transaction holding offsets for them is pending.
pub fn committed_checkpoints<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partitions: &[i32],
    timeout: Duration,
) -> Result<std::collections::HashMap<i32, Checkpoint>, Error> {
    let mut tpl = TopicPartitionList::new();
    for &p in partitions {
        tpl.add_partition(topic, p);
    }
    // The group coordinator moves or reloads while brokers fail over.
    let committed = super::retry::with_backoff("committed offsets", timeout, |left| {
        consumer.committed_offsets(tpl.clone(), left)
    })
    .map_err(|e| Error::Kafka(format!("cannot read committed offsets of {topic}: {e}")))?;
    let mut found = std::collections::HashMap::new();
    for elem in committed.elements_for_topic(topic) {
        if let Offset::Offset(o) = elem.offset() {
            if o >= 0 {
                let cp = decode_checkpoint(o as u64, elem.metadata()).unwrap_or(Checkpoint {
                    resume_seq: o as u64,
                    max_ts_before: None,
                    handled_until: o as u64,
                    emitted: None,
                    floor: None,
                });
                found.insert(elem.partition(), cp);
            }
        }
    }
    Ok(found)
}

/// Adds `partition`'s checkpoint to a commit list.
pub fn add_checkpoint(tpl: &mut TopicPartitionList, topic: &str, partition: i32, cp: &Checkpoint) {
    let mut elem = tpl.add_partition(topic, partition);
    // Only fails for an invalid offset, and resume_seq is a real offset.
    let _ = elem.set_offset(Offset::Offset(cp.resume_seq as i64));
    elem.set_metadata(encode_checkpoint(cp));
}

pub fn commit(
    consumer: &BaseConsumer<impl ConsumerContext>,
    tpl: &TopicPartitionList,
) -> Result<(), Error> {
    if tpl.count() == 0 {
        return Ok(());
    }
    consumer
        .commit(tpl, CommitMode::Sync)
        .map_err(|e| Error::Kafka(format!("commit failed: {e}")))
}

/// Every committed record of `topic` up to its end offsets as they are now,
/// read with `read_committed` outside any group (for `show` and tests).
///
/// "The end" is the log end, not the last stable offset a `read_committed`
/// client is told about: records of transactions still open when the read
/// starts (for example a killed worker's, until the broker aborts it) would
/// otherwise hide the committed records after them. So this waits, up to
/// `timeout`, until every such transaction is resolved.
pub fn read_to_end(
    settings: &KafkaSettings,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<rdkafka::message::OwnedMessage>, Error> {
    let consumer: BaseConsumer = settings
        .client_config(&[
            ("group.id", "timebucket-reader"),
            ("enable.auto.commit", "false"),
            ("isolation.level", "read_committed"),
        ])
        .create()
        .map_err(|e| Error::Kafka(format!("cannot create reader: {e}")))?;
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| Error::Kafka(format!("cannot read metadata of {topic}: {e}")))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default();
    if partitions.is_empty() {
        return Err(Error::Kafka(format!("topic {topic} does not exist")));
    }
    let log_end: BaseConsumer = settings
        .client_config(&[
            ("group.id", "timebucket-reader"),
            ("isolation.level", "read_uncommitted"),
        ])
        .create()
        .map_err(|e| Error::Kafka(format!("cannot create reader: {e}")))?;
    let mut tpl = TopicPartitionList::new();
    let mut remaining = std::collections::HashMap::new();
    for &p in &partitions {
        let (low, high) = super::retry::with_backoff("partition offsets", timeout, |left| {
            log_end.fetch_watermarks(topic, p, left)
        })
        .map_err(|e| Error::Kafka(format!("cannot read offsets of {topic}/{p}: {e}")))?;
        if high > low {
            remaining.insert(p, high);
            tpl.add_partition_offset(topic, p, Offset::Beginning)?;
        }
    }
    if remaining.is_empty() {
        return Ok(Vec::new());
    }
    consumer.assign(&tpl)?;
    let deadline = std::time::Instant::now() + timeout;
    let mut records = Vec::new();
    while !remaining.is_empty() {
        if std::time::Instant::now() > deadline {
            return Err(Error::Kafka(format!(
                "reading {topic} to its end timed out"
            )));
        }
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            records.push(message?.detach());
        }
        // Positions, not message offsets: transaction markers and aborted
        // records occupy offsets that are never delivered.
        for elem in consumer.position()?.elements() {
            if let (Offset::Offset(pos), Some(&end)) =
                (elem.offset(), remaining.get(&elem.partition()))
            {
                if pos >= end {
                    remaining.remove(&elem.partition());
                }
            }
        }
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_metadata_round_trips() {
        let cp = Checkpoint {
            resume_seq: 42,
            max_ts_before: Some(1468244384),
            handled_until: 99,
            emitted: Some(Watermark(1468244379)),
            floor: None,
        };
        let meta = encode_checkpoint(&cp);
        assert_eq!(decode_checkpoint(42, &meta), Some(cp));
        let fresh = Checkpoint {
            max_ts_before: None,
            emitted: None,
            floor: Some(Watermark(60)),
            ..cp
        };
        assert_eq!(
            decode_checkpoint(42, &encode_checkpoint(&fresh)),
            Some(fresh)
        );
        assert_eq!(decode_checkpoint(1, ""), None);
        assert_eq!(decode_checkpoint(1, "tb1;max=x"), None);
    }
}
