//! A partition's [`Checkpoint`] as Kafka keeps it: the committed offset is
//! where a new owner resumes, and the commit's metadata string carries what
//! it needs besides the offset (encoded and checked in
//! [`crate::core::checkpoint`], pure). This file reads committed offsets and
//! builds commit lists.

use std::collections::HashMap;
use std::time::Duration;

pub use crate::core::checkpoint::*;
use crate::error::Error;
use crate::kafka::log::GroupLog;

use rdkafka::topic_partition_list::TopicPartitionList;

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

/// The committed offset and checkpoint of one partition of the log's topic.
pub(crate) fn committed_checkpoint(
    log: &impl GroupLog,
    partition: i32,
    timeout: Duration,
) -> Result<Option<Committed>, Error> {
    Ok(committed_checkpoints(log, &[partition], timeout)?.remove(&partition))
}

/// The committed offsets of `partitions` of the log's topic (those that
/// have one) and what their metadata says, in one request (see
/// [`GroupLog::committed`]).
pub(crate) fn committed_checkpoints(
    log: &impl GroupLog,
    partitions: &[i32],
    timeout: Duration,
) -> Result<HashMap<i32, Committed>, Error> {
    let mut found = HashMap::new();
    for c in log.committed(partitions, timeout)? {
        let committed = match decode_checkpoint(c.offset, &c.metadata) {
            Ok(cp) => Committed::Checkpoint(cp),
            Err(why) => Committed::Unusable(Unusable {
                offset: c.offset,
                metadata: c.metadata,
                why,
            }),
        };
        found.insert(c.partition, committed);
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
