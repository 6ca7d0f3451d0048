//! The partials topic: shard workers' partial windows and progress, as the
//! merge stage reads them (README, Semantics, "Shards").
//!
//! - A partial is the shard's metric record (the JSON of
//!   [`MetricRecord`], `partition` = the shard's input partition), key
//!   `second:<window_start>` or `minute:<window_start>`, in partials
//!   partition `toPositive(murmur2(key)) mod Q`: all partials of one window
//!   meet in one partition (as Kafka's default partitioner would put them).
//! - A progress record, key `progress:<input partition>`, value
//!   `{"progress":<watermark>,"partition":<p>}`, goes to every partials
//!   partition: the shard emitted every window ending at or below it.
//! - A merger's checkpoint is its committed offset plus metadata
//!   `tbm1;handled=<offset>;marks=<m0>,<m1>,...` (`-` for no mark).

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use crate::core::merge::{MergeCheckpoint, Piece};
use crate::core::metric::{MetricKind, MetricRecord};
use crate::core::murmur2::positive_murmur2;
use crate::core::window::Closed;
use crate::error::Error;

const PROGRESS: &str = "progress:";
const MERGE_METADATA: &str = "tbm1";

/// The key of a partial window.
pub fn partial_key(closed: &Closed) -> String {
    match closed {
        Closed::Second { start, .. } => format!("second:{start}"),
        Closed::Minute { start, .. } => format!("minute:{start}"),
    }
}

/// The partials partition of a key.
pub fn partition_of(key: &str, partitions: u32) -> i32 {
    (positive_murmur2(key.as_bytes()) % partitions.max(1)) as i32
}

pub fn progress_key(partition: i32) -> String {
    format!("{PROGRESS}{partition}")
}

#[derive(Serialize, Deserialize)]
struct Progress {
    progress: u64,
    partition: u32,
}

pub fn progress_value(partition: i32, watermark: u64) -> String {
    serde_json::to_string(&Progress {
        progress: watermark,
        partition: partition as u32,
    })
    .expect("serializes")
}

/// A partials record as a merge [`Piece`], or why it is not one.
pub fn decode(key: &[u8], value: &[u8]) -> Result<Piece, String> {
    let key = std::str::from_utf8(key).map_err(|_| "key is not UTF-8".to_string())?;
    if key.starts_with(PROGRESS) {
        let p: Progress =
            serde_json::from_slice(value).map_err(|e| format!("bad progress value: {e}"))?;
        return Ok(Piece::Progress {
            partition: p.partition,
            watermark: p.progress,
        });
    }
    let r: MetricRecord =
        serde_json::from_slice(value).map_err(|e| format!("bad partial value: {e}"))?;
    let closed = match (r.metric, r.unique_users) {
        (MetricKind::Second, _) => Closed::Second {
            start: r.window_start,
            frames: r.frames,
        },
        (MetricKind::Minute, Some(u)) => Closed::Minute {
            start: r.window_start,
            frames: r.frames,
            unique_users: u,
        },
        (MetricKind::Minute, None) => return Err("minute partial without unique_users".into()),
    };
    if r.partition < 0 || partial_key(&closed) != key {
        return Err(format!("partial does not match its key {key:?}"));
    }
    Ok(Piece::Partial {
        partition: r.partition as u32,
        closed,
    })
}

pub fn encode_checkpoint(cp: &MergeCheckpoint) -> String {
    let marks: Vec<String> = cp
        .marks
        .iter()
        .map(|m| m.map_or_else(|| "-".into(), |m| m.to_string()))
        .collect();
    format!(
        "{MERGE_METADATA};handled={};marks={}",
        cp.handled_until,
        marks.join(",")
    )
}

pub fn decode_checkpoint(offset: u64, metadata: &str) -> Option<MergeCheckpoint> {
    let mut parts = metadata.split(';');
    if parts.next()? != MERGE_METADATA {
        return None;
    }
    let mut cp = MergeCheckpoint {
        resume_seq: offset,
        handled_until: offset,
        marks: Vec::new(),
    };
    for part in parts {
        let (k, v) = part.split_once('=')?;
        match k {
            "handled" => cp.handled_until = v.parse().ok()?,
            "marks" => {
                cp.marks = v
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|m| {
                        if m == "-" {
                            Some(None)
                        } else {
                            m.parse().ok().map(Some)
                        }
                    })
                    .collect::<Option<Vec<_>>>()?;
            }
            _ => {}
        }
    }
    Some(cp)
}

/// The committed merge checkpoints of `partitions` of `topic`.
pub fn committed<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partitions: &[i32],
    timeout: Duration,
) -> Result<HashMap<i32, MergeCheckpoint>, Error> {
    let mut tpl = TopicPartitionList::new();
    for &p in partitions {
        tpl.add_partition(topic, p);
    }
    let committed = super::retry::with_backoff("committed offsets", timeout, |left| {
        consumer.committed_offsets(tpl.clone(), left)
    })
    .map_err(|e| Error::Kafka(format!("cannot read committed offsets of {topic}: {e}")))?;
    let mut found = HashMap::new();
    for elem in committed.elements_for_topic(topic) {
        if let Offset::Offset(o) = elem.offset() {
            if o >= 0 {
                let cp = decode_checkpoint(o as u64, elem.metadata()).ok_or_else(|| {
                    Error::Kafka(format!(
                        "{topic}/{}: committed offset {o} has no merge checkpoint",
                        elem.partition()
                    ))
                })?;
                found.insert(elem.partition(), cp);
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_and_checkpoints_round_trip() {
        let c = Closed::Minute {
            start: 120,
            frames: 9,
            unique_users: 4,
        };
        let value = MetricRecord::new(c, 3).to_json();
        assert_eq!(
            decode(partial_key(&c).as_bytes(), value.as_bytes()),
            Ok(Piece::Partial {
                partition: 3,
                closed: c
            })
        );
        assert!(decode(b"second:120", value.as_bytes()).is_err());
        assert_eq!(
            decode(
                progress_key(5).as_bytes(),
                progress_value(5, u64::MAX).as_bytes()
            ),
            Ok(Piece::Progress {
                partition: 5,
                watermark: u64::MAX
            })
        );
        let cp = MergeCheckpoint {
            resume_seq: 7,
            handled_until: 12,
            marks: vec![Some(100), None, Some(u64::MAX)],
        };
        let meta = encode_checkpoint(&cp);
        assert_eq!(decode_checkpoint(7, &meta), Some(cp));
        assert_eq!(decode_checkpoint(7, "tb2;clock=1"), None);
        // Kafka's default partitioner puts the same key in the same place.
        assert_eq!(
            partition_of("21", 4),
            ((-973_932_308i32 as u32 & 0x7fff_ffff) % 4) as i32
        );
    }
}
