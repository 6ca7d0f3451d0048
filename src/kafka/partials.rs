//! The partials topic: shard workers' partial windows and progress, as the
//! merge stage reads them (docs/semantics.md, "Shards").
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

use serde::{Deserialize, Serialize};

use crate::core::merge::{MergeCheckpoint, Piece};
use crate::core::metric::{MetricKind, MetricRecord};
use crate::core::murmur2::positive_murmur2;
use crate::core::window::{Closed, MAX_TS};
use crate::error::Error;
use crate::kafka::log::GroupLog;

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

/// Why a partials record is no merge [`Piece`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadPiece {
    #[error("key is not UTF-8")]
    KeyNotUtf8,
    #[error("bad progress value: {0}")]
    Progress(String),
    #[error("bad partial value: {0}")]
    Partial(String),
    #[error("minute partial without unique_users")]
    NoUniqueUsers,
    #[error("partial does not match its key {0:?}")]
    KeyMismatch(String),
    /// A window no worker could have closed: its start beyond the largest
    /// time, not on its kind's boundary, its end not the start plus its
    /// length, or more distinct users than frames.
    #[error("impossible window: {0}")]
    Window(String),
}

/// A partials record as a merge [`Piece`], or why it is not one.
pub fn decode(key: &[u8], value: &[u8]) -> Result<Piece, BadPiece> {
    let key = std::str::from_utf8(key).map_err(|_| BadPiece::KeyNotUtf8)?;
    if key.starts_with(PROGRESS) {
        let p: Progress =
            serde_json::from_slice(value).map_err(|e| BadPiece::Progress(e.to_string()))?;
        return Ok(Piece::Progress {
            partition: p.partition,
            watermark: p.progress,
        });
    }
    let r: MetricRecord =
        serde_json::from_slice(value).map_err(|e| BadPiece::Partial(e.to_string()))?;
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
        (MetricKind::Minute, None) => return Err(BadPiece::NoUniqueUsers),
    };
    let (len, users) = match closed {
        Closed::Second { .. } => (1, 0),
        Closed::Minute { unique_users, .. } => (60, unique_users),
    };
    let start = r.window_start;
    if start > MAX_TS
        || !start.is_multiple_of(len)
        || r.window_end != start + len
        || users > r.frames
    {
        return Err(BadPiece::Window(format!(
            "start {start}, end {}, {} frames, {users} users",
            r.window_end, r.frames
        )));
    }
    if r.partition < 0 || partial_key(&closed) != key {
        return Err(BadPiece::KeyMismatch(key.chars().take(64).collect()));
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

/// Kafka's default `offset.metadata.max.bytes`: no broker keeps longer
/// metadata, so longer is no checkpoint of ours.
pub const MAX_METADATA: usize = 4096;

/// Why a committed offset's metadata is no merge checkpoint: a merge
/// resumes only from one it wrote, for the same routing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadMergeCheckpoint {
    #[error("the commit has no metadata (offsets reset or committed by another tool)")]
    Empty,
    #[error("metadata of {0} bytes, more than any broker keeps ({MAX_METADATA})")]
    TooLong(usize),
    #[error("foreign metadata (not {MERGE_METADATA})")]
    Foreign,
    #[error("a field is not key=value")]
    NotKeyValue,
    #[error("unknown or repeated field {0:?}")]
    Field(String),
    #[error("field {0} missing")]
    Missing(&'static str),
    #[error("{field} is not a number")]
    NotANumber { field: &'static str },
    #[error("handled={handled} is below the committed offset {offset}")]
    HandledBelowOffset { handled: u64, offset: u64 },
    /// The marks are one per input partition: another count is a
    /// checkpoint of another routing (the input topic changed).
    #[error("{found} marks, but the input topic has {expected} partitions")]
    MarkCount { found: usize, expected: usize },
}

/// The merge checkpoint committed at `offset` with `metadata`, for a
/// routing of `partitions` input partitions. Every field must be present
/// once and parse, `handled` must not be below the offset, and there must
/// be one mark per input partition.
pub fn decode_checkpoint(
    offset: u64,
    metadata: &str,
    partitions: u32,
) -> Result<MergeCheckpoint, BadMergeCheckpoint> {
    use BadMergeCheckpoint as Bad;
    if metadata.is_empty() {
        return Err(Bad::Empty);
    }
    if metadata.len() > MAX_METADATA {
        return Err(Bad::TooLong(metadata.len()));
    }
    let mut parts = metadata.split(';');
    if parts.next() != Some(MERGE_METADATA) {
        return Err(Bad::Foreign);
    }
    let (mut handled, mut marks) = (None, None);
    for part in parts {
        let (k, v) = part.split_once('=').ok_or(Bad::NotKeyValue)?;
        match k {
            "handled" if handled.is_none() => {
                handled = Some(
                    v.parse::<u64>()
                        .map_err(|_| Bad::NotANumber { field: "handled" })?,
                );
            }
            "marks" if marks.is_none() => {
                let parsed: Result<Vec<Option<u64>>, Bad> = v
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|m| match m {
                        "-" => Ok(None),
                        _ => m
                            .parse()
                            .map(Some)
                            .map_err(|_| Bad::NotANumber { field: "marks" }),
                    })
                    .collect();
                marks = Some(parsed?);
            }
            _ => return Err(Bad::Field(k.chars().take(32).collect())),
        }
    }
    let handled = handled.ok_or(Bad::Missing("handled"))?;
    let marks = marks.ok_or(Bad::Missing("marks"))?;
    if handled < offset {
        return Err(Bad::HandledBelowOffset { handled, offset });
    }
    if marks.len() != partitions as usize {
        return Err(Bad::MarkCount {
            found: marks.len(),
            expected: partitions as usize,
        });
    }
    Ok(MergeCheckpoint {
        resume_seq: offset,
        handled_until: handled,
        marks,
    })
}

/// The committed merge checkpoints of `partitions` of `topic`, for a
/// routing of `inputs` input partitions; an unusable one is an
/// [`Error::Checkpoint`] naming the partition, the offset and why.
pub(crate) fn committed(
    log: &impl GroupLog,
    topic: &str,
    partitions: &[i32],
    inputs: u32,
    timeout: Duration,
) -> Result<HashMap<i32, MergeCheckpoint>, Error> {
    let mut found = HashMap::new();
    for c in log.committed(partitions, timeout)? {
        let cp = decode_checkpoint(c.offset, &c.metadata, inputs).map_err(|e| {
            Error::Checkpoint(format!(
                "{topic}/{}: committed offset {} holds no merge checkpoint: {e}",
                c.partition, c.offset
            ))
        })?;
        found.insert(c.partition, cp);
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
        assert_eq!(decode_checkpoint(7, &meta, 3), Ok(cp));
        assert_eq!(
            decode_checkpoint(7, "tb2;clock=1", 3),
            Err(BadMergeCheckpoint::Foreign)
        );
        // Kafka's default partitioner puts the same key in the same place.
        assert_eq!(
            partition_of("21", 4),
            ((-973_932_308i32 as u32 & 0x7fff_ffff) % 4) as i32
        );
    }
}
