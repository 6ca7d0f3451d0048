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
