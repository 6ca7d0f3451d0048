//! A partition's [`Checkpoint`] as Kafka keeps it: the committed offset is
//! where a new owner resumes, and the commit's metadata string carries what
//! it needs besides the offset to make the same decisions.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::core::window::{Checkpoint, Watermark};
use crate::error::Error;

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
) -> Result<HashMap<i32, Checkpoint>, Error> {
    let mut tpl = TopicPartitionList::new();
    for &p in partitions {
        tpl.add_partition(topic, p);
    }
    // The group coordinator moves or reloads while brokers fail over.
    let committed = super::retry::with_backoff("committed offsets", timeout, |left| {
        consumer.committed_offsets(tpl.clone(), left)
    })
    .map_err(|e| Error::Kafka(format!("cannot read committed offsets of {topic}: {e}")))?;
    let mut found = HashMap::new();
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
