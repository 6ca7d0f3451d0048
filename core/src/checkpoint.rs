//! A partition's [`Checkpoint`] as a commit carries it, pure: the committed
//! offset is where a new owner resumes, and the commit's metadata string
//! (encoded and decoded here) carries what it needs besides the offset to
//! make the same decisions. Reading and writing commits is the product's
//! (`src/kafka/checkpoint.rs`, or the simulator's in-memory log).

use crate::clock::{ClockState, Quorum};
use crate::window::{Checkpoint, Watermark};

const METADATA_VERSION: &str = "tb3";
/// Written with the fixed quorum (`clock=K/max/key@ts...`).
const METADATA_V2: &str = "tb2";
/// Written before the event clock: the largest `ts` only.
const METADATA_V1: &str = "tb1";

/// `tb3;clock=<ClockState>;handled=<offset>;emitted=<wm|->;floor=<wm|->`:
/// what a new owner needs besides the offset to make the same decisions.
/// Small enough for the broker's default `offset.metadata.max.bytes` (4096):
/// at most about 4,000 bytes with the largest quorum and the largest times
/// (tested), a few hundred in practice.
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

/// Why a commit's metadata is no checkpoint this version can trust
/// ([`decode_checkpoint`]), or why its values cannot be true of the
/// partition ([`check_bounds`]). The text is that of the error-level log
/// and of the worker's exit message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("the commit has no metadata (offsets reset or committed by another tool)")]
    NoMetadata,
    #[error("foreign metadata (not {METADATA_VERSION}, {METADATA_V2} or {METADATA_V1})")]
    Foreign,
    #[error("{0:?} is not key=value")]
    NotKeyValue(String),
    #[error("unknown or repeated field {0:?}")]
    Field(String),
    #[error("{key}={value:?} is not a number")]
    NotANumber {
        key: String,
        value: String,
        #[source]
        source: std::num::ParseIntError,
    },
    #[error("clock={0:?} is no event clock")]
    Clock(String),
    #[error("handled=- is not an offset")]
    NoHandled,
    #[error("fields missing: {}", .0.join(", "))]
    Missing(Vec<&'static str>),
    #[error("handled={handled} is below the committed offset {offset}")]
    HandledBelowOffset { handled: u64, offset: u64 },
    #[error("floor={0} is not the end of a minute")]
    FloorMidMinute(u64),
    #[error("the committed offset {offset} is beyond the log end {end}")]
    OffsetBeyondEnd { offset: u64, end: u64 },
    #[error("handled={handled} is beyond the log end {end}")]
    HandledBeyondEnd { handled: u64, end: u64 },
    #[error("the clock's largest ts {ts} is beyond the largest ts accepted ({max_ts})")]
    TsBeyondMax { ts: u64, max_ts: u64 },
    #[error("{name}={watermark} is in the future beyond any frame accepted (at most {latest})")]
    FutureWatermark {
        name: &'static str,
        watermark: u64,
        latest: u64,
    },
}

/// A committed offset whose metadata is no checkpoint this version can
/// trust: missing (an offset reset by `kafka-consumer-groups`, a foreign
/// consumer), unparsable, or inconsistent. Resuming there would rebuild
/// windows from the middle of a minute and emit them again with other
/// values, or (a crafted `emitted`) never emit them at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unusable {
    pub offset: u64,
    pub metadata: String,
    /// What is wrong with it, for the error-level log and the exit message.
    pub why: CheckpointError,
}

/// What a partition's committed offset carries.
// A checkpoint holds the clock's uids ahead inline (1.6 KB) so that it stays
// `Copy`; one is read per partition assigned.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Committed {
    Checkpoint(Checkpoint),
    Unusable(Unusable),
}

impl Committed {
    /// The checkpoint, if valid.
    pub fn checkpoint(&self) -> Option<&Checkpoint> {
        match self {
            Committed::Checkpoint(cp) => Some(cp),
            Committed::Unusable(_) => None,
        }
    }
}

/// What a checkpoint's values must respect besides being well formed,
/// known only where it is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// The partition's end offset (high watermark) now: no record at or
    /// past it was ever read.
    pub log_end: u64,
    /// The largest `ts` a frame may have had when it was read (`--max-ts`,
    /// or now + `--max-future` + a week of clock skew).
    pub max_ts: u64,
    /// Sharded buckets: a shard drained by `--until-end` is closed for good,
    /// `emitted` = [`Watermark::END`] (README "Shards of a time bucket").
    pub closed_for_good: bool,
}

/// The checkpoint committed at `offset` with `metadata`, or why it is none
/// of ours. Every field must be present once, parse, and agree with the
/// others. A `tb1` checkpoint (largest `ts` only) resumes with that time
/// vouched for, as that version's rule had it; a `tb2` one (fixed quorum)
/// at the time its clock stood at ([`decode_v2_clock`]).
pub fn decode_checkpoint(offset: u64, metadata: &str) -> Result<Checkpoint, CheckpointError> {
    use CheckpointError as Bad;
    if metadata.is_empty() {
        return Err(Bad::NoMetadata);
    }
    let mut parts = metadata.split(';');
    let version = parts.next().unwrap_or_default();
    let keys: &[&str] = match version {
        METADATA_VERSION | METADATA_V2 => &["clock", "handled", "emitted", "floor"],
        METADATA_V1 => &["max", "handled", "emitted", "floor"],
        _ => return Err(Bad::Foreign),
    };
    let mut cp = Checkpoint {
        resume_seq: offset,
        clock_before: ClockState::new(Quorum::fixed(1)),
        handled_until: offset,
        emitted: None,
        floor: None,
    };
    let number = |k: &str, v: &str| -> Result<Option<u64>, Bad> {
        match v {
            "-" => Ok(None),
            _ => v
                .parse::<u64>()
                .map(Some)
                .map_err(|source| Bad::NotANumber {
                    key: k.into(),
                    value: v.into(),
                    source,
                }),
        }
    };
    let mut seen = Vec::new();
    for part in parts {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| Bad::NotKeyValue(part.into()))?;
        if !keys.contains(&k) || seen.contains(&k) {
            return Err(Bad::Field(k.into()));
        }
        seen.push(k);
        match k {
            "clock" => {
                let clock = match version {
                    METADATA_V2 => decode_v2_clock(v),
                    _ => ClockState::decode(v),
                };
                cp.clock_before = clock.ok_or_else(|| Bad::Clock(v.into()))?
            }
            "max" => {
                if let Some(max) = number(k, v)? {
                    cp.clock_before = ClockState::at(Quorum::fixed(1), max);
                }
            }
            "handled" => {
                cp.handled_until = number(k, v)?.ok_or(Bad::NoHandled)?;
            }
            "emitted" => cp.emitted = number(k, v)?.map(Watermark),
            _ => cp.floor = number(k, v)?.map(Watermark),
        }
    }
    if seen.len() != keys.len() {
        let missing = keys.iter().filter(|k| !seen.contains(k)).copied().collect();
        return Err(Bad::Missing(missing));
    }
    if cp.handled_until < cp.resume_seq {
        return Err(Bad::HandledBelowOffset {
            handled: cp.handled_until,
            offset,
        });
    }
    if let Some(Watermark(floor)) = cp.floor {
        // `close_all` leaves the end of a minute; a shard closed for good
        // leaves the end of time ([`check_bounds`] judges that one).
        if floor % 60 != 0 && Watermark(floor) != Watermark::END {
            return Err(Bad::FloorMidMinute(floor));
        }
    }
    Ok(cp)
}

/// A `tb2` clock, `K/max/key@ts...` (the K largest per-uid maxima): it
/// resumes at the time it stood at (the K-th), vouched for, with the
/// largest `ts` it saw; its uids ahead are not carried over (so the first
/// minute after an upgrade may decide a frame beyond the lateness
/// differently than the old version would have).
fn decode_v2_clock(text: &str) -> Option<ClockState> {
    let mut parts = text.split('/');
    let k: usize = parts.next()?.parse().ok()?;
    if !(1..=8).contains(&k) {
        return None;
    }
    let max = match parts.next()? {
        "-" if parts.next().is_none() => return Some(ClockState::new(Quorum::fixed(1))),
        max => max.parse::<u64>().ok()?,
    };
    let mut times = Vec::new();
    for entry in parts {
        let (key, ts) = entry.split_once('@')?;
        u64::from_str_radix(key, 16).ok()?;
        let ts: u64 = ts.parse().ok()?;
        if ts > max || times.len() == k {
            return None;
        }
        times.push(ts);
    }
    times.sort_unstable_by(|a, b| b.cmp(a));
    let time = times.get(k - 1).map_or("-".to_string(), |t| t.to_string());
    ClockState::decode(&format!("1/0/{time}/0/0/{max}"))
}

/// Checks a decoded checkpoint against what the partition and the clock
/// allow: offsets within the log, times no frame could have exceeded.
pub fn check_bounds(cp: &Checkpoint, bounds: &Bounds) -> Result<(), CheckpointError> {
    let end = bounds.log_end;
    if cp.resume_seq > end {
        return Err(CheckpointError::OffsetBeyondEnd {
            offset: cp.resume_seq,
            end,
        });
    }
    if cp.handled_until > end {
        return Err(CheckpointError::HandledBeyondEnd {
            handled: cp.handled_until,
            end,
        });
    }
    let max_ts = bounds.max_ts;
    if let Some(ts) = cp.clock_before.max_ts().filter(|&t| t > max_ts) {
        return Err(CheckpointError::TsBeyondMax { ts, max_ts });
    }
    // A watermark is at most a frame's ts, or the end of its minute.
    let latest = max_ts.saturating_sub(max_ts % 60).saturating_add(60);
    let ended = bounds.closed_for_good && cp.emitted == Some(Watermark::END);
    for (name, wm) in [("emitted", cp.emitted), ("floor", cp.floor)] {
        if ended && wm == Some(Watermark::END) {
            continue;
        }
        if let Some(Watermark(watermark)) = wm.filter(|w| w.0 > latest) {
            return Err(CheckpointError::FutureWatermark {
                name,
                watermark,
                latest,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::clock::{EventClock, MAX_QUORUM};

    #[test]
    fn checkpoint_metadata_round_trips() {
        let mut clock = EventClock::new(Quorum::default());
        clock.observe("a", 1468244384);
        clock.observe("b", 1468244380);
        clock.observe("liar", 1468330000);
        clock.end_minute();
        let cp = Checkpoint {
            resume_seq: 42,
            clock_before: clock.resumable().unwrap(),
            handled_until: 99,
            emitted: Some(Watermark(1468244379)),
            floor: None,
        };
        let meta = encode_checkpoint(&cp);
        assert!(meta.len() < 200, "{meta}");
        assert_eq!(decode_checkpoint(42, &meta), Ok(cp));
        let fresh = Checkpoint {
            clock_before: ClockState::new(Quorum::new(3, 250)),
            emitted: None,
            floor: Some(Watermark(60)),
            ..cp
        };
        assert_eq!(decode_checkpoint(42, &encode_checkpoint(&fresh)), Ok(fresh));
        assert!(decode_checkpoint(1, "").is_err());
        assert!(decode_checkpoint(1, "tb2;clock=x").is_err());
        assert!(decode_checkpoint(1, "tb1;max=x").is_err());
    }

    /// A checkpoint of the previous version resumes at the time its clock
    /// stood at (the K-th largest of its per-uid maxima).
    #[test]
    fn a_version_2_checkpoint_resumes_at_its_time() {
        let meta = "tb2;clock=2/1468330000/1@1468330000/2@1468244384;handled=9;emitted=-;floor=-";
        let cp = decode_checkpoint(7, meta).unwrap();
        assert_eq!(cp.clock_before.time(), Some(1468244384));
        assert_eq!(cp.clock_before.max_ts(), Some(1468330000));
        let empty = decode_checkpoint(7, "tb2;clock=2/-;handled=9;emitted=-;floor=-").unwrap();
        assert_eq!(empty.clock_before.time(), None);
        assert!(decode_checkpoint(7, "tb2;clock=9/-;handled=9;emitted=-;floor=-").is_err());
        assert!(decode_checkpoint(7, "tb2;clock=1/5/1@9;handled=9;emitted=-;floor=-").is_err());
    }

    /// The largest clock state fits the broker's default
    /// `offset.metadata.max.bytes` with every other field at its longest.
    #[test]
    fn the_largest_checkpoint_fits_the_default_metadata_limit() {
        let mut ahead = String::new();
        for i in 0..(MAX_QUORUM - 1) as u64 {
            ahead.push_str(&format!("/{:x}@{}", u64::MAX - i, u64::MAX - i));
        }
        let clock = format!(
            "100/4999/{}/{}/1/{}{ahead}",
            u64::MAX - 1_000,
            u64::MAX,
            u64::MAX
        );
        let cp = Checkpoint {
            resume_seq: u64::MAX,
            clock_before: ClockState::decode(&clock).unwrap(),
            handled_until: u64::MAX,
            emitted: Some(Watermark(u64::MAX)),
            floor: Some(Watermark(u64::MAX)),
        };
        let meta = encode_checkpoint(&cp);
        assert!(meta.len() <= 4_096, "{} bytes", meta.len());
        assert_eq!(decode_checkpoint(u64::MAX, &meta), Ok(cp));
    }

    #[test]
    fn a_version_1_checkpoint_resumes_at_its_largest_ts() {
        let cp = decode_checkpoint(7, "tb1;max=1000;handled=9;emitted=995;floor=-").unwrap();
        assert_eq!(cp.clock_before.time(), Some(1000));
        assert_eq!(cp.handled_until, 9);
        assert_eq!(cp.emitted, Some(Watermark(995)));
    }

    const GOOD: &str = "tb3;clock=1/0/-/0/0/-;handled=12;emitted=1000;floor=1020";

    /// Every field is checked on its own and against the others: missing,
    /// foreign, unparsable, repeated or unknown fields and inconsistent
    /// values are all refused, each with a reason.
    #[test]
    fn malformed_or_inconsistent_metadata_is_refused_with_a_reason() {
        assert!(decode_checkpoint(10, GOOD).is_ok());
        let refused = [
            ("", "no metadata"),
            ("consumer-tool", "foreign"),
            ("tb4;clock=1/-;handled=12;emitted=-;floor=-", "foreign"),
            ("tb3;clock=1/-;handled=12;emitted=-;floor=-", "clock"),
            ("tb2;clock=1/-;handled=12;emitted=-", "missing: floor"),
            (
                "tb2;clock=1/-;handled=12;emitted=-;floor=-;floor=-",
                "repeated",
            ),
            ("tb2;clock=1/-;handled=12;emitted=-;floor=-;x=1", "unknown"),
            ("tb2;clock=1/-;handled=12;emitted=-;floor", "key=value"),
            ("tb2;clock=99/-;handled=12;emitted=-;floor=-", "clock"),
            ("tb2;clock=1/-;handled=-;emitted=-;floor=-", "handled=-"),
            ("tb2;clock=1/-;handled=x;emitted=-;floor=-", "not a number"),
            (
                "tb2;clock=1/-;handled=12;emitted=-1;floor=-",
                "not a number",
            ),
            (
                "tb2;clock=1/-;handled=12;emitted=-;floor=1030",
                "end of a minute",
            ),
            (
                "tb2;clock=1/-;handled=9;emitted=-;floor=-",
                "below the committed offset",
            ),
            (
                "tb1;max=1000;handled=12;emitted=-;floor=-;clock=1/-",
                "unknown",
            ),
        ];
        for (meta, why) in refused {
            let err = decode_checkpoint(10, meta).unwrap_err().to_string();
            assert!(err.contains(why), "{meta:?}: {err}");
        }
    }

    #[test]
    fn values_beyond_the_log_or_any_frame_are_refused() {
        let bounds = Bounds {
            log_end: 12,
            max_ts: 1_000_000,
            closed_for_good: false,
        };
        let ok = decode_checkpoint(10, GOOD).unwrap();
        assert_eq!(check_bounds(&ok, &bounds), Ok(()));
        let check = |meta: &str, offset: u64| {
            check_bounds(&decode_checkpoint(offset, meta).unwrap(), &bounds)
                .unwrap_err()
                .to_string()
        };
        let past_end = "tb2;clock=1/-;handled=13;emitted=-;floor=-";
        assert!(check(past_end, 13).contains("offset 13 is beyond the log end 12"));
        assert!(check("tb2;clock=1/-;handled=13;emitted=-;floor=-", 10).contains("handled=13"));
        let crafted = format!("tb2;clock=1/-;handled=12;emitted={};floor=-", u64::MAX);
        assert!(check(&crafted, 10).contains("emitted=18446744073709551615 is in the future"));
        assert!(check("tb2;clock=1/-;handled=12;emitted=-;floor=1000080", 10).contains("floor="));
        assert!(
            check("tb2;clock=1/2000000;handled=12;emitted=-;floor=-", 10).contains("largest ts")
        );
        let tb3 = "tb3;clock=2/500/-/0/0/2000000;handled=12;emitted=-;floor=-";
        assert!(check(tb3, 10).contains("largest ts"));
        // The end of the minute of the largest ts is still a watermark.
        let edge = decode_checkpoint(10, "tb2;clock=1/-;handled=12;emitted=1000020;floor=1000020");
        assert_eq!(check_bounds(&edge.unwrap(), &bounds), Ok(()));
    }
}
