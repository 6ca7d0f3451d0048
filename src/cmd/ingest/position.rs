//! Ingest's committed position in a source: the record it writes to the
//! progress topic (`ingest-progress`, compacted) in the same transaction as
//! the frames and dead letters of the lines it covers, and how a rerun
//! finds the latest one.
//!
//! Key: `<input topic>/<source id>` (one source may be ingested into two
//! pipelines). Value: JSON, [`Position`].

use std::time::Duration;

use rdkafka::message::Message;
use serde::{Deserialize, Serialize};

use super::source::Fingerprint;
use crate::core::frame::Invalid;
use crate::core::summary::Summary;
use crate::error::Error;
use crate::kafka::config::KafkaSettings;

/// Where ingest has got to in one source, and what it found up to there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub source: String,
    pub fingerprint: Fingerprint,
    /// The last line covered (1-based; 0: none).
    pub line: u64,
    /// The byte offset just after that line: where a rerun continues.
    pub bytes: u64,
    /// Counts of lines 1..=line over every run of this source.
    pub valid: u64,
    pub blank: u64,
    /// `reason code -> count` of the dead-lettered lines.
    pub invalid: std::collections::BTreeMap<String, u64>,
    /// Records the producer refused (too large for it), never delivered:
    /// how many, and the first lines.
    pub failed: u64,
    pub failed_lines: Vec<u64>,
    /// Valid frames (counted in `valid`) too large for the input topic,
    /// dead-lettered as `too_large_for_topic` instead.
    #[serde(default)]
    pub too_large: u64,
    /// How many runs have committed to this source since it started over.
    pub runs: u64,
}

impl Position {
    /// Nothing ingested yet of a source with this fingerprint.
    pub fn start(source: &str, fingerprint: Fingerprint) -> Position {
        Position {
            source: source.to_string(),
            fingerprint,
            line: 0,
            bytes: 0,
            valid: 0,
            blank: 0,
            invalid: Default::default(),
            failed: 0,
            failed_lines: Vec::new(),
            too_large: 0,
            runs: 0,
        }
    }

    /// The counts as a [`Summary`] (lines, bytes, valid, blank, invalid).
    pub fn summary(&self) -> Summary {
        let mut s = Summary {
            lines: self.line,
            bytes: self.bytes,
            valid: self.valid,
            blank: self.blank,
            ..Summary::default()
        };
        for reason in Invalid::ALL {
            s.invalid[reason.index()] = self.invalid.get(reason.code()).copied().unwrap_or(0);
        }
        s
    }

    /// This position moved on by `run` (a run's counts from here).
    pub fn advanced(&self, run: &Summary, failed_lines: &[u64]) -> Position {
        let mut next = self.clone();
        next.line += run.lines;
        next.bytes += run.bytes;
        next.valid += run.valid;
        next.blank += run.blank;
        for reason in Invalid::ALL {
            let n = run.invalid[reason.index()];
            if n > 0 {
                *next.invalid.entry(reason.code().to_string()).or_default() += n;
            }
        }
        next.failed += failed_lines.len() as u64;
        next.failed_lines
            .extend(failed_lines.iter().take(KEPT_FAILED_LINES));
        next.failed_lines.truncate(KEPT_FAILED_LINES);
        next
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a position serializes")
    }

    /// A progress record's value, or why it is none that ingest wrote:
    /// not this JSON, or counts that cannot all come from its lines.
    pub fn decode(value: &[u8]) -> Result<Position, BadPosition> {
        let p: Position = serde_json::from_slice(value)?;
        let invalid = p
            .invalid
            .values()
            .try_fold(0u64, |sum, n| sum.checked_add(*n));
        let counted = invalid
            .and_then(|i| i.checked_add(p.valid))
            .and_then(|c| c.checked_add(p.blank));
        if counted.is_none_or(|c| c > p.line) || p.too_large > p.valid {
            return Err(BadPosition::Counts { line: p.line });
        }
        if p.failed_lines.len() > KEPT_FAILED_LINES || p.failed_lines.iter().any(|&l| l > p.line) {
            return Err(BadPosition::FailedLines);
        }
        Ok(p)
    }
}

/// Failed lines a position lists one by one.
const KEPT_FAILED_LINES: usize = 20;

/// Why a progress record is no [`Position`].
#[derive(Debug, thiserror::Error)]
pub enum BadPosition {
    #[error("not a position: {0}")]
    Json(#[from] serde_json::Error),
    #[error("counts that {line} lines cannot hold")]
    Counts { line: u64 },
    #[error("failed lines beyond the position or more than {KEPT_FAILED_LINES}")]
    FailedLines,
}

/// The key of `source`'s positions for `input_topic`.
pub fn key(input_topic: &str, source: &str) -> String {
    format!("{input_topic}/{source}")
}

/// The latest committed position under `key` in `topic`, read to its end
/// (`read_committed`; called after `init_transactions`, which has aborted
/// whatever a crashed run of this source left open).
pub fn latest(
    settings: &KafkaSettings,
    topic: &str,
    key: &str,
    timeout: Duration,
) -> Result<Option<Position>, Error> {
    let mut latest = None;
    let mut bad = None;
    crate::kafka::read::read_each(settings, topic, timeout, |m| {
        if m.key() != Some(key.as_bytes()) {
            return;
        }
        match m.payload().map(Position::decode) {
            Some(Ok(p)) => latest = Some(p),
            // A tombstone forgets the source: start over.
            None => latest = None,
            Some(Err(e)) => bad = Some((m.offset(), e)),
        }
    })
    .map_err(|e| match e {
        Error::NoTopic(t) => Error::NoProgressTopic(t),
        other => other,
    })?;
    if let (Some((offset, bad)), None) = (bad, &latest) {
        return Err(Error::BadProgress {
            key: key.to_string(),
            topic: topic.to_string(),
            offset,
            bad,
        });
    }
    Ok(latest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_advances_by_a_run_and_round_trips_as_json() {
        let start = Position::start("/data/a.jsonl", Fingerprint::of(b"x"));
        let mut run = Summary {
            lines: 10,
            bytes: 300,
            valid: 7,
            blank: 1,
            ..Summary::default()
        };
        run.count_invalid(Invalid::NotJson);
        run.count_invalid(Invalid::NotJson);
        let p = start.advanced(&run, &[4]);
        assert_eq!(
            (p.line, p.bytes, p.valid, p.blank, p.failed),
            (10, 300, 7, 1, 1)
        );
        assert_eq!(p.invalid["not_json"], 2);
        let q = p.advanced(&run, &[]);
        assert_eq!(
            (q.line, q.bytes, q.failed_lines.clone()),
            (20, 600, vec![4])
        );
        assert_eq!(q.summary().invalid_total(), 4);
        let back: Position = serde_json::from_slice(&q.to_json()).unwrap();
        assert_eq!(back, q);
    }
}
