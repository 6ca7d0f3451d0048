//! A partition's [`Checkpoint`] as Kafka keeps it: the committed offset is
//! where a new owner resumes, and the commit's metadata string carries what
//! it needs besides the offset to make the same decisions.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::core::clock::EventClock;
use crate::core::window::{Checkpoint, Watermark};
use crate::error::Error;

const METADATA_VERSION: &str = "tb2";
/// Written before the event clock: the largest `ts` only.
const METADATA_V1: &str = "tb1";

/// `tb2;clock=<EventClock>;handled=<offset>;emitted=<wm|->;floor=<wm|->`:
/// what a new owner needs besides the offset to make the same decisions.
/// Small enough for the broker's default `offset.metadata.max.bytes` (4096):
/// at most about 400 bytes with the largest quorum.
pub fn encode_checkpoint(cp: &Checkpoint) -> String {
    fn opt(v: Option<u64>) -> String {
        v.map_or_else(|| "-".to_string(), |v| v.to_string())
    }
    format!(
        "{METADATA_VERSION};clock={};handled={};emitted={};floor={}",
        cp.clock_before.encode(),
        cp.handled_until,
        opt(cp.emitted.map(|w| w.0)),
        opt(cp.floor.map(|w| w.0)),
    )
}

/// The checkpoint committed at `offset` with `metadata`, or `None` when the
/// metadata is not ours. A `tb1` checkpoint (largest `ts` only) resumes with
/// that time vouched for, as that version's rule had it.
pub fn decode_checkpoint(offset: u64, metadata: &str) -> Option<Checkpoint> {
    let mut parts = metadata.split(';');
    let version = parts.next()?;
    if version != METADATA_VERSION && version != METADATA_V1 {
        return None;
    }
    let mut cp = Checkpoint {
        resume_seq: offset,
        clock_before: EventClock::new(1),
        handled_until: offset,
        emitted: None,
        floor: None,
    };
    let number = |v: &str| -> Option<Option<u64>> {
        if v == "-" {
            Some(None)
        } else {
            Some(Some(v.parse::<u64>().ok()?))
        }
    };
    for part in parts {
        let (k, v) = part.split_once('=')?;
        match (version, k) {
            (METADATA_VERSION, "clock") => cp.clock_before = EventClock::decode(v)?,
            (METADATA_V1, "max") => {
                if let Some(max) = number(v)? {
                    cp.clock_before = EventClock::at(1, max);
                }
            }
            (_, "handled") => cp.handled_until = number(v)??,
            (_, "emitted") => cp.emitted = number(v)?.map(Watermark),
            (_, "floor") => cp.floor = number(v)?.map(Watermark),
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
                    clock_before: EventClock::new(1),
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
        let mut clock = EventClock::new(2);
        clock.observe("a", 1468244384);
        clock.observe("b", 1468244380);
        clock.observe("liar", 1468330000);
        let cp = Checkpoint {
            resume_seq: 42,
            clock_before: clock,
            handled_until: 99,
            emitted: Some(Watermark(1468244379)),
            floor: None,
        };
        let meta = encode_checkpoint(&cp);
        assert!(meta.len() < 200, "{meta}");
        assert_eq!(decode_checkpoint(42, &meta), Some(cp));
        let fresh = Checkpoint {
            clock_before: EventClock::new(3),
            emitted: None,
            floor: Some(Watermark(60)),
            ..cp
        };
        assert_eq!(
            decode_checkpoint(42, &encode_checkpoint(&fresh)),
            Some(fresh)
        );
        assert_eq!(decode_checkpoint(1, ""), None);
        assert_eq!(decode_checkpoint(1, "tb2;clock=x"), None);
        assert_eq!(decode_checkpoint(1, "tb1;max=x"), None);
    }

    #[test]
    fn a_version_1_checkpoint_resumes_at_its_largest_ts() {
        let cp = decode_checkpoint(7, "tb1;max=1000;handled=9;emitted=995;floor=-").unwrap();
        assert_eq!(cp.clock_before.time(), Some(1000));
        assert_eq!(cp.handled_until, 9);
        assert_eq!(cp.emitted, Some(Watermark(995)));
    }
}
