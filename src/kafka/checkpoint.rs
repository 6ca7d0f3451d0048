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
        |left| answered(consumer.committed_offsets(tpl.clone(), left)?),
    )
    .map_err(|e| Error::kafka_at(format!("cannot read committed offsets of {topic}"), e))
}

/// The list, if every partition in it has its answer. librdkafka answers a
/// read whose partitions stayed unstable (a transaction holding offsets for
/// them still open, as after a broker restart) beyond its own retries with
/// success, the partition's error and no offset. Taken as "nothing
/// committed", that partition would start over from the log start and
/// emit its windows again: such a list is an error, asked again.
pub(crate) fn answered(
    list: TopicPartitionList,
) -> rdkafka::error::KafkaResult<TopicPartitionList> {
    for elem in list.elements() {
        elem.error()?;
    }
    Ok(list)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_left_unstable_makes_the_read_an_error_not_an_empty_checkpoint() {
        let mut list = TopicPartitionList::new();
        list.add_partition("frames", 0);
        list.add_partition("frames", 1);
        assert!(answered(list.clone()).is_ok(), "no partition has an error");
        // As librdkafka hands it over once its retries of an unstable
        // partition ran out: no offset, the partition's error set.
        // SAFETY: index 1 exists; only the error code is written.
        unsafe {
            (*(*list.ptr()).elems.add(1)).err =
                rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_UNSTABLE_OFFSET_COMMIT;
        }
        let err = answered(list).expect_err("an unstable partition is no answer");
        assert_eq!(
            err.rdkafka_error_code(),
            Some(rdkafka::types::RDKafkaErrorCode::UnstableOffsetCommit)
        );
    }
}
