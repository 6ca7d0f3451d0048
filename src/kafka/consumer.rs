//! The worker's consumer: group membership with cooperative-sticky
//! rebalancing, and the hand-over of revoked partitions (their checkpoints
//! are committed before they go, see [`Handover`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, ConsumerGroupMetadata, Rebalance,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::TopicPartitionList;
use rdkafka::ClientContext;
use tracing::{debug, info, warn};

use crate::error::Error;
use crate::kafka::config::KafkaSettings;
use crate::kafka::sink::Offsets;

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
/// that polls the consumer, inside `poll`.
pub trait Handover: Send + Sync + 'static {
    /// The partitions are being taken away: make what was emitted for them
    /// durable together with their checkpoints, committed through `consumer`.
    fn revoke(&self, partitions: &[i32], consumer: &dyn OffsetCommit);

    /// The group gave this member `partitions` (maybe none): it has joined.
    fn assigned(&self, _partitions: &[i32]) {}

    /// The offsets of the topic's partitions in librdkafka's statistics,
    /// when [`group_consumer`] was asked for them.
    fn statistics(&self, _ends: &[StatsEnds]) {}
}

/// This member's place in its group (generation, member id), which a
/// transaction's input offsets are sent with so that the group fences a
/// zombie's commit (KIP-447). librdkafka's, opaque outside `kafka`.
pub struct GroupMetadata(pub(crate) ConsumerGroupMetadata);

/// Committing input offsets: by the consumer itself (at-least-once), or by
/// a transactional producer with the group's metadata (exactly-once).
pub trait OffsetCommit {
    /// `None` before the consumer has joined its group.
    fn group_metadata(&self) -> Option<GroupMetadata>;
    fn commit_offsets(&self, offsets: &Offsets) -> Result<(), Error>;
}

impl<C: ConsumerContext> OffsetCommit for BaseConsumer<C> {
    fn group_metadata(&self) -> Option<GroupMetadata> {
        Consumer::group_metadata(self).map(GroupMetadata)
    }

    fn commit_offsets(&self, offsets: &Offsets) -> Result<(), Error> {
        commit(self, &offsets.to_list())
    }
}

/// A partition's offsets as librdkafka's statistics last reported them:
/// its log start and the end a read_committed consumer reaches (the last
/// stable offset, else the high watermark).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatsEnds {
    pub partition: i32,
    pub low: i64,
    pub end: i64,
}

/// The offsets of `topic`'s partitions in librdkafka's statistics; `None`
/// when they say nothing of the topic.
fn stats_ends(stats: &Statistics, topic: &str) -> Option<Vec<StatsEnds>> {
    let topic = stats.topics.get(topic)?;
    // A read_committed consumer reaches the last stable offset.
    let ends = topic.partitions.values().map(|p| StatsEnds {
        partition: p.partition,
        low: p.lo_offset,
        end: if p.ls_offset >= 0 {
            p.ls_offset
        } else {
            p.hi_offset
        },
    });
    Some(ends.collect())
}

pub struct GroupContext<H> {
    pub handover: Arc<H>,
    /// The one topic the consumer subscribes to.
    pub topic: String,
    /// Set once the group has given this member an assignment (maybe empty).
    pub joined: AtomicBool,
}

impl<H: Handover> ClientContext for GroupContext<H> {
    fn stats(&self, statistics: Statistics) {
        if let Some(ends) = stats_ends(&statistics, &self.topic) {
            self.handover.statistics(&ends);
        }
    }

    /// As rdkafka's default, except that the end of a partition (asked for
    /// by batch runs) is news, not an error.
    fn error(&self, error: KafkaError, reason: &str) {
        // librdkafka reports it as a partition's error or as a global one.
        if matches!(
            error,
            KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
        ) {
            debug!("librdkafka: {error}: {reason}");
        } else {
            tracing::error!("librdkafka: {error}: {reason}");
        }
    }
}

impl<H: Handover> ConsumerContext for GroupContext<H> {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
            if partitions.is_empty() {
                return;
            }
            self.handover.revoke(&partitions, consumer);
            info!(?partitions, "partitions revoked");
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                self.joined.store(true, Ordering::SeqCst);
                self.handover.assigned(&partitions);
                if !partitions.is_empty() {
                    info!(?partitions, "partitions assigned");
                }
            }
            Rebalance::Error(e) => warn!(error = %e, "rebalance error"),
            Rebalance::Revoke(_) => {}
        }
    }
}

pub type GroupConsumer<H> = BaseConsumer<GroupContext<H>>;

/// A consumer of `topic` in `group`. With `statistics`, librdkafka reports
/// its statistics that often to [`Handover::statistics`] (unless the user's
/// `-X statistics.interval.ms` says otherwise). With `partition_eof`, a
/// poll answers `PartitionEOF` once a partition is read to its end.
pub fn group_consumer<H: Handover>(
    settings: &KafkaSettings,
    group: &str,
    topic: &str,
    handover: Arc<H>,
    statistics: Option<Duration>,
    partition_eof: bool,
) -> Result<GroupConsumer<H>, Error> {
    let interval = statistics.map(|d| d.as_millis().to_string());
    let mut defaults = CONSUMER_DEFAULTS.to_vec();
    if partition_eof {
        defaults.push(("enable.partition.eof", "true"));
    }
    if let Some(ms) = &interval {
        defaults.push(("statistics.interval.ms", ms));
    }
    let mut config = settings.client_config(&defaults);
    config.set("group.id", group);
    let context = GroupContext {
        handover,
        topic: topic.to_string(),
        joined: AtomicBool::new(false),
    };
    let consumer: GroupConsumer<H> = config
        .create_with_context(context)
        .map_err(|e| Error::kafka_at("cannot create consumer", e))?;
    consumer
        .subscribe(&[topic])
        .map_err(|e| Error::kafka_at(format!("cannot subscribe to {topic}"), e))?;
    Ok(consumer)
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
        .map_err(|e| Error::kafka_at("commit failed", e))
}
