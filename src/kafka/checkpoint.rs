//! A partition's [`Checkpoint`] as Kafka keeps it: the committed offset is
//! where a new owner resumes, and the commit's metadata string carries what
//! it needs besides the offset (encoded and checked in
//! [`crate::core::checkpoint`], pure). This file reads committed offsets and
//! builds commit lists.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

pub use crate::core::checkpoint::*;
use crate::error::Error;

/// The group's committed offsets of `partitions` of `topic`, as librdkafka
/// gives them. The group coordinator moves or reloads while brokers fail
/// over: retried within `timeout`, each attempt at most
/// [`COMMITTED_ATTEMPT`](super::retry::COMMITTED_ATTEMPT). No partitions, no
/// request: it would still wait for the coordinator.
pub fn committed_offsets<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partitions: &[i32],
    timeout: Duration,
) -> Result<TopicPartitionList, Error> {
    let mut tpl = TopicPartitionList::new();
    if partitions.is_empty() {
        return Ok(tpl);
    }
    for &p in partitions {
        tpl.add_partition(topic, p);
    }
    super::retry::with_backoff_per_attempt(
        "committed offsets",
        timeout,
        super::retry::COMMITTED_ATTEMPT,
        |left| consumer.committed_offsets(tpl.clone(), left),
    )
    .map_err(|e| Error::kafka_at(format!("cannot read committed offsets of {topic}"), e))
}

/// The committed offset and checkpoint of one partition of `topic`.
pub fn committed_checkpoint<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
    timeout: Duration,
) -> Result<Option<Committed>, Error> {
    Ok(committed_checkpoints(consumer, topic, &[partition], timeout)?.remove(&partition))
}

/// The committed offsets of `partitions` of `topic` (those that have one)
/// and what their metadata says, in one request. With `read_committed` the
/// broker answers only once no transaction holding offsets for them is
/// pending.
pub fn committed_checkpoints<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partitions: &[i32],
    timeout: Duration,
) -> Result<HashMap<i32, Committed>, Error> {
    let committed = committed_offsets(consumer, topic, partitions, timeout)?;
    let mut found = HashMap::new();
    for elem in committed.elements_for_topic(topic) {
        if let Offset::Offset(o) = elem.offset() {
            if o >= 0 {
                let metadata = elem.metadata();
                let committed = match decode_checkpoint(o as u64, metadata) {
                    Ok(cp) => Committed::Checkpoint(cp),
                    Err(why) => Committed::Unusable(Unusable {
                        offset: o as u64,
                        metadata: metadata.to_string(),
                        why,
                    }),
                };
                found.insert(elem.partition(), committed);
            }
        }
    }
    Ok(found)
}
