//! Where a worker's outputs go: closed windows to the metric topics,
//! forwarded frames, dead letters, and the input offsets with their
//! checkpoints. Two implementations of [`Sink`]:
//! [`Transactional`] (exactly-once: everything between two commits is one
//! Kafka transaction with the offsets) and [`AtLeastOnce`] (records flushed,
//! then offsets committed).

mod at_least_once;
mod transactional;

use rdkafka::producer::BaseRecord;
use rdkafka::topic_partition_list::TopicPartitionList;

pub use at_least_once::AtLeastOnce;
pub use transactional::Transactional;

use crate::core::frame::Invalid;
use crate::core::metric::{MetricKind, MetricRecord};
use crate::core::window::Closed;
use crate::error::Error;
use crate::kafka::config::TopicNames;
use crate::kafka::consumer::OffsetCommit;
use crate::kafka::partials;
use crate::kafka::producer::{self, Origin, TrackedProducer};

/// What a commit achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// Everything sent so far is durable with the offsets.
    Durable,
    /// Everything sent since the last durable commit is gone (an aborted
    /// transaction): every owned partition must be replayed from its
    /// committed checkpoint. `producer_replaced`: the producer could not go
    /// on and a fresh one took its place.
    Rewind { producer_replaced: bool },
}

/// A frame that came after its window had closed (the `late` side output).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Late {
    /// Late for its minute too, not only for its second.
    pub minute: bool,
    /// The start of the closed window it missed: its minute if `minute`,
    /// else its second.
    pub window: u64,
    /// The partition's watermark when it came.
    pub watermark: u64,
}

/// A worker's outputs. Sends never block on the broker; [`Sink::commit`]
/// is where they become durable or are given up as a whole.
pub trait Sink: Send {
    fn emit(&mut self, partition: i32, closed: &Closed);
    fn forward(&mut self, offset: u64, payload: &[u8]);
    fn dead_letter(&mut self, partition: i32, offset: u64, payload: &[u8], reason: Invalid);
    /// A late frame, unchanged, to the late topic (when there is one).
    fn late(&mut self, partition: i32, offset: u64, payload: &[u8], late: Late);
    /// A shard's progress (sharded buckets only): every window of input
    /// `partition` ending at or below `watermark` was emitted.
    fn progress(&mut self, partition: i32, watermark: u64);
    /// Makes everything sent so far durable together with `offsets` (the
    /// checkpoints of every owned partition).
    fn commit(
        &mut self,
        offsets: &TopicPartitionList,
        consumer: &dyn OffsetCommit,
    ) -> Result<Commit, Error>;
}

/// Where a shard worker's windows go instead of the metric topics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partials {
    pub topic: String,
    /// The partials topic's partition count.
    pub partitions: u32,
}

/// The records both sinks send, through one producer.
struct Outputs {
    topics: TopicNames,
    /// Where late frames go, if anywhere.
    late: Option<String>,
    /// Sharded buckets: windows are partials for the merge stage.
    partials: Option<Partials>,
}

impl Outputs {
    fn emit(&self, producer: &TrackedProducer, partition: i32, closed: &Closed) {
        let record = MetricRecord::new(*closed, partition);
        if let Some(partials) = &self.partials {
            let key = partials::partial_key(closed);
            let value = record.to_json();
            producer::send(
                producer,
                BaseRecord::with_opaque_to(&partials.topic, closed.start() as usize)
                    .partition(partials::partition_of(&key, partials.partitions))
                    .key(key.as_bytes())
                    .payload(value.as_bytes()),
            );
            return;
        }
        let topic = match record.metric {
            MetricKind::Second => &self.topics.seconds,
            MetricKind::Minute => &self.topics.minutes,
        };
        let key = record.key();
        let value = record.to_json();
        producer::send(
            producer,
            BaseRecord::with_opaque_to(topic, closed.start() as usize)
                .key(key.as_bytes())
                .payload(value.as_bytes()),
        );
    }

    /// To every partials partition: each holds windows of every shard.
    fn progress(&self, producer: &TrackedProducer, partition: i32, watermark: u64) {
        let Some(partials) = &self.partials else {
            return;
        };
        let key = partials::progress_key(partition);
        let value = partials::progress_value(partition, watermark);
        for q in 0..partials.partitions as i32 {
            producer::send(
                producer,
                BaseRecord::with_opaque_to(&partials.topic, 0)
                    .partition(q)
                    .key(key.as_bytes())
                    .payload(value.as_bytes()),
            );
        }
    }

    fn forward(&self, producer: &TrackedProducer, offset: u64, payload: &[u8]) {
        producer::send(
            producer,
            BaseRecord::with_opaque_to(&self.topics.forward, offset as usize).payload(payload),
        );
    }

    fn late(
        &self,
        producer: &TrackedProducer,
        partition: i32,
        offset: u64,
        payload: &[u8],
        late: Late,
    ) {
        let Some(topic) = &self.late else { return };
        producer::send(
            producer,
            BaseRecord::with_opaque_to(topic, offset as usize)
                .payload(payload)
                .headers(producer::late_headers(
                    late.minute,
                    late.window,
                    late.watermark,
                    partition,
                    offset as i64,
                )),
        );
    }

    fn dead_letter(
        &self,
        producer: &TrackedProducer,
        partition: i32,
        offset: u64,
        payload: &[u8],
        reason: Invalid,
    ) {
        producer::send(
            producer,
            BaseRecord::with_opaque_to(&self.topics.dead_letter, offset as usize)
                .payload(payload)
                .headers(producer::dead_letter_headers(
                    reason,
                    Origin::Offset {
                        partition,
                        offset: offset as i64,
                    },
                )),
        );
    }
}
