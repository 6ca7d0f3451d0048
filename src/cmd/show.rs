//! `timebucket show`: reads a metric topic to its end (`read_committed`) and
//! prints one row per window, the last value of each window key winning as
//! compaction would keep it.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use rdkafka::message::Message;

use crate::core::metric::{MetricKind, MetricRecord};
use crate::error::Error;
use crate::kafka::config::KafkaSettings;
use crate::kafka::read::read_to_end;

/// The windows on `topic`, by window start.
pub fn read_windows(
    settings: &KafkaSettings,
    topic: &str,
) -> Result<BTreeMap<u64, MetricRecord>, Error> {
    let mut windows = BTreeMap::new();
    for message in read_to_end(settings, topic, Duration::from_secs(60))? {
        let Some(payload) = message.payload() else {
            continue;
        };
        match serde_json::from_slice::<MetricRecord>(payload) {
            Ok(record) => {
                windows.insert(record.window_start, record);
            }
            Err(e) => tracing::warn!(offset = message.offset(), error = %e, "not a metric record"),
        }
    }
    Ok(windows)
}

pub fn print_table(
    windows: &BTreeMap<u64, MetricRecord>,
    mut out: impl Write,
) -> std::io::Result<()> {
    let minutes = windows.values().any(|r| r.metric == MetricKind::Minute);
    if minutes {
        writeln!(
            out,
            "{:<22} {:>12} {:>12} {:>8}",
            "minute (UTC)", "window_start", "unique_users", "frames"
        )?;
    } else {
        writeln!(
            out,
            "{:<22} {:>12} {:>8}",
            "second (UTC)", "window_start", "frames"
        )?;
    }
    for r in windows.values() {
        match r.unique_users {
            Some(users) => writeln!(
                out,
                "{:<22} {:>12} {:>12} {:>8}",
                r.start, r.window_start, users, r.frames
            )?,
            None => writeln!(
                out,
                "{:<22} {:>12} {:>8}",
                r.start, r.window_start, r.frames
            )?,
        }
    }
    let frames: u64 = windows.values().map(|r| r.frames).sum();
    writeln!(out, "{} windows, {} frames", windows.len(), frames)
}
