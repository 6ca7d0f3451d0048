//! Where a worker's outputs go: closed windows to the metric topics,
//! forwarded frames, dead letters, and the input offsets with their
//! checkpoints. Two implementations of [`Sink`]:
//! [`Transactional`] (exactly-once: everything between two commits is one
//! Kafka transaction with the offsets) and [`AtLeastOnce`] (records flushed,
//! then offsets committed).

mod at_least_once;
pub(crate) mod transactional;

use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::BaseRecord;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

pub use at_least_once::AtLeastOnce;
pub use transactional::Transactional;

use crate::core::frame::Invalid;
use crate::core::metric::{MetricKind, MetricRecord};
use crate::core::window::Closed;
use crate::error::Error;
use crate::kafka::config::TopicNames;
use crate::kafka::consumer::OffsetCommit;
use crate::kafka::limits::OutputLimits;
use crate::kafka::partials;
use crate::kafka::producer::{self, Origin, Position, TrackedProducer};

/// Input offsets to commit, each with its checkpoint as metadata: plain
/// values at the sink's boundary, made rdkafka's list only where a commit
/// is sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Offsets {
    pub topic: String,
    pub entries: Vec<OffsetEntry>,
}

/// One partition's commit: where a new owner resumes, and its checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetEntry {
    pub partition: i32,
    pub offset: u64,
    pub metadata: String,
}

impl Offsets {
    pub fn new(topic: &str) -> Offsets {
        Offsets {
            topic: topic.to_string(),
            entries: Vec::new(),
        }
    }

    pub fn add(&mut self, partition: i32, offset: u64, metadata: String) {
        self.entries.push(OffsetEntry {
            partition,
            offset,
            metadata,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// rdkafka's commit list.
    pub(crate) fn to_list(&self) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for e in &self.entries {
            let mut elem = tpl.add_partition(&self.topic, e.partition);
            // Only fails for an invalid offset, and these are real offsets.
            let _ = elem.set_offset(Offset::Offset(e.offset as i64));
            elem.set_metadata(e.metadata.clone());
        }
        tpl
    }
}

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
    /// Forwards a valid frame unchanged; `false` when it is too large for
    /// the forward topic and was dead-lettered instead (`too_large_for_topic`).
    fn forward(&mut self, partition: i32, offset: u64, payload: &[u8]) -> bool;
    /// Dead-letters an invalid record, truncated to fit the topic if need be.
    fn dead_letter(&mut self, partition: i32, offset: u64, payload: &[u8], reason: Invalid);
    /// A late frame, unchanged, to the late topic (when there is one);
    /// `false` when it is too large for it and was dead-lettered instead.
    fn late(&mut self, partition: i32, offset: u64, payload: &[u8], late: Late) -> bool;
    /// A shard's progress (sharded buckets only): every window of input
    /// `partition` ending at or below `watermark` was emitted.
    fn progress(&mut self, partition: i32, watermark: u64);
    /// Makes everything sent so far durable together with `offsets` (the
    /// checkpoints of every owned partition).
    fn commit(&mut self, offsets: &Offsets, consumer: &dyn OffsetCommit) -> Result<Commit, Error>;
}

/// Where a shard worker's windows go instead of the metric topics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partials {
    pub topic: String,
    /// The partials topic's partition count.
    pub partitions: u32,
}

/// Why a record goes to the dead-letter topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetter<'a> {
    /// Not a frame.
    Invalid(Invalid),
    /// A valid frame (counted) too large for this output topic.
    TooLargeFor(&'a str),
}

/// The records both sinks send, through one producer.
struct Outputs {
    topics: TopicNames,
    /// Where late frames go, if anywhere.
    late: Option<String>,
    /// The output topics' record limits.
    limits: OutputLimits,
    /// The largest frame the forward topic takes (looked up once: every
    /// valid frame is checked against it).
    forward_payload_limit: usize,
    /// Sharded buckets: windows are partials for the merge stage.
    partials: Option<Partials>,
}

impl Outputs {
    fn new(topics: TopicNames, late: Option<String>, limits: OutputLimits) -> Outputs {
        let forward_payload_limit = limits.payload_budget(&topics.forward, 0, 0);
        Outputs {
            topics,
            late,
            limits,
            forward_payload_limit,
            partials: None,
        }
    }

    fn emit(&self, producer: &TrackedProducer, partition: i32, closed: &Closed) {
        let record = MetricRecord::new(*closed, partition);
        let position = Position::Window {
            partition,
            start: closed.start(),
        };
        if let Some(partials) = &self.partials {
            let key = partials::partial_key(closed);
            let value = record.to_json();
            producer::send(
                producer,
                BaseRecord::with_opaque_to(&partials.topic, position.encode())
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
            BaseRecord::with_opaque_to(topic, position.encode())
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
                BaseRecord::with_opaque_to(
                    &partials.topic,
                    Position::Window {
                        partition,
                        start: watermark,
                    }
                    .encode(),
                )
                .partition(q)
                .key(key.as_bytes())
                .payload(value.as_bytes()),
            );
        }
    }

    /// Forwards a valid frame; `false` when it is too large for the forward
    /// topic and was dead-lettered instead.
    fn forward(
        &self,
        producer: &TrackedProducer,
        partition: i32,
        offset: u64,
        payload: &[u8],
    ) -> bool {
        let topic = &self.topics.forward;
        if payload.len() > self.forward_payload_limit {
            self.dead_letter(
                producer,
                partition,
                offset,
                payload,
                DeadLetter::TooLargeFor(topic),
            );
            return false;
        }
        let position = Position::Record { partition, offset };
        producer::send(
            producer,
            BaseRecord::with_opaque_to(topic, position.encode()).payload(payload),
        );
        true
    }

    /// Sends a late frame to the late topic (if any); `false` when it is too
    /// large for it and was dead-lettered instead.
    fn late(
        &self,
        producer: &TrackedProducer,
        partition: i32,
        offset: u64,
        payload: &[u8],
        late: Late,
    ) -> bool {
        let Some(topic) = &self.late else {
            return true;
        };
        let headers = producer::late_headers(
            late.minute,
            late.window,
            late.watermark,
            partition,
            offset as i64,
        );
        if !self.limits.fits(
            topic,
            payload.len() + headers_bytes(&headers),
            headers.count(),
        ) {
            self.dead_letter(
                producer,
                partition,
                offset,
                payload,
                DeadLetter::TooLargeFor(topic),
            );
            return false;
        }
        let position = Position::Record { partition, offset };
        producer::send(
            producer,
            BaseRecord::with_opaque_to(topic, position.encode())
                .payload(payload)
                .headers(headers),
        );
        true
    }

    /// Dead-letters the record at `partition`/`offset`: its payload, cut
    /// to what the dead-letter topic takes (header `timebucket.truncated`),
    /// with its reason, origin and size.
    fn dead_letter(
        &self,
        producer: &TrackedProducer,
        partition: i32,
        offset: u64,
        payload: &[u8],
        reason: DeadLetter<'_>,
    ) {
        let origin = Origin::Offset {
            partition,
            offset: offset as i64,
        };
        let headers = match reason {
            DeadLetter::Invalid(invalid) => producer::dead_letter_headers(invalid, origin),
            DeadLetter::TooLargeFor(topic) => {
                producer::too_large_headers(topic, self.limits.limit(topic), origin)
            }
        };
        let topic = &self.topics.dead_letter;
        let (headers, kept) = fit_dead_letter(&self.limits, topic, headers, payload);
        let position = Position::Record { partition, offset };
        producer::send(
            producer,
            BaseRecord::with_opaque_to(topic, position.encode())
                .payload(kept)
                .headers(headers),
        );
    }
}

/// A dead letter's headers and payload for `topic`: the payload's size
/// (header `timebucket.size`), and the payload cut to what the topic takes
/// with those headers (header `timebucket.truncated`) if need be.
pub(crate) fn fit_dead_letter<'a>(
    limits: &OutputLimits,
    topic: &str,
    headers: OwnedHeaders,
    payload: &'a [u8],
) -> (OwnedHeaders, &'a [u8]) {
    let headers = headers.insert(Header {
        key: producer::HEADER_SIZE,
        value: Some(&payload.len().to_string()),
    });
    // Room for the truncation header too, in case it is needed.
    let truncated = Header {
        key: producer::HEADER_TRUNCATED,
        value: Some("true"),
    };
    let extra = truncated.key.len() + 4;
    let budget = limits.payload_budget(topic, headers_bytes(&headers) + extra, headers.count() + 1);
    if payload.len() > budget {
        (headers.insert(truncated), &payload[..budget])
    } else {
        (headers, payload)
    }
}

/// The key and value bytes of `headers`.
fn headers_bytes(headers: &OwnedHeaders) -> usize {
    headers
        .iter()
        .map(|h| h.key.len() + h.value.map_or(0, <[u8]>::len))
        .sum()
}
