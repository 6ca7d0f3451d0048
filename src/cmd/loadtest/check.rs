//! The correctness verdict of a run: every window on the metric topics
//! against `aggregate` on the same file, and forwarded frames counted.

use std::fs::File;
use std::path::Path;
use std::time::Duration;

use rdkafka::message::Message;

use crate::cmd::aggregate::{aggregate, AggregateOptions};
use crate::core::bucket::{Routing, DEFAULT_BUCKET_SECS};
use crate::core::metric::{MetricKind, MetricRecord};
use crate::error::Error;
use crate::kafka::config::KafkaSettings;

use super::report::Check;
use super::topics::RunTopics;
use super::{io_error, parser, LATENESS};
use crate::core::clock::Quorum;
use crate::core::compare::WindowSet;
use crate::core::window::WatermarkRule;
use crate::kafka::read::read_each;

/// What `aggregate` says for the file with `partitions` partitions and
/// `shards` shards per bucket.
pub fn expected_windows(data: &Path, partitions: u32, shards: u32) -> Result<WindowSet, Error> {
    let opts = AggregateOptions {
        routing: Routing::sharded(DEFAULT_BUCKET_SECS, partitions, shards)?,
        rule: WatermarkRule::with_quorum(LATENESS, Quorum::default()),
        parser: parser(),
        log_invalid: 0,
    };
    let input = File::open(data).map_err(io_error(format!("open {}", data.display())))?;
    let mut out = Vec::new();
    aggregate(input, &mut out, &opts)?;
    WindowSet::from_json_lines(&out)
        .map_err(|e| Error::Config(format!("aggregate wrote an unreadable record: {e}")))
}

/// Compares the windows on the metric topics with `want`.
pub(super) fn check_windows(
    settings: &KafkaSettings,
    topics: &RunTopics,
    want: &WindowSet,
    exactly_once: bool,
) -> Result<Check, Error> {
    let mut got = WindowSet::default();
    let mut unreadable = Vec::new();
    for (topic, kind) in [
        (&topics.names.seconds, MetricKind::Second),
        (&topics.names.minutes, MetricKind::Minute),
    ] {
        read_each(
            settings,
            topic,
            Duration::from_secs(120),
            |message| match message
                .payload()
                .map(serde_json::from_slice::<MetricRecord>)
            {
                Some(Ok(r)) if r.metric == kind => got.insert(&r),
                _ => unreadable.push(format!(
                    "not a {kind:?} record at {topic}/{}@{}",
                    message.partition(),
                    message.offset()
                )),
            },
        )?;
    }
    let diff = got.compare(want);
    let mut examples: Vec<String> = unreadable.iter().take(5).cloned().collect();
    if !diff.is_exact(exactly_once) {
        examples.push(diff.to_string());
    }
    Ok(Check {
        correct: diff.is_exact(exactly_once) && unreadable.is_empty(),
        verdict: String::new(),
        windows_expected: diff.expected,
        windows_emitted: diff.emitted,
        missing: diff.missing.len(),
        extra: diff.extra.len() + unreadable.len(),
        differing: diff.differing.len() + diff.conflicts.len(),
        duplicates: diff.repeated as usize + diff.conflicts.len(),
        forwarded: None,
        examples,
    })
}

/// Counts the committed records of `topic` (forwarded frames).
pub(super) fn count_committed(settings: &KafkaSettings, topic: &str) -> Result<u64, Error> {
    let mut count = 0;
    read_each(settings, topic, Duration::from_secs(600), |_| count += 1)?;
    Ok(count)
}

pub(super) fn verdict(check: &mut Check, frames: u64) {
    let mut problems = Vec::new();
    if check.missing > 0 {
        problems.push(format!("{} missing", check.missing));
    }
    if check.extra > 0 {
        problems.push(format!("{} extra", check.extra));
    }
    if check.differing > 0 {
        problems.push(format!("{} differ", check.differing));
    }
    if check.duplicates > 0 {
        problems.push(format!("{} duplicates", check.duplicates));
    }
    if let Some(f) = check.forwarded {
        if f != frames {
            check.correct = false;
            problems.push(format!("{f} of {frames} frames forwarded"));
        }
    }
    check.verdict = if check.correct && problems.is_empty() {
        "correct".into()
    } else if check.correct {
        format!("correct ({})", problems.join(", "))
    } else {
        format!("WRONG: {}", problems.join(", "))
    };
}
