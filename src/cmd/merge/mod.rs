//! `timebucket merge`: the merge stage of sharded buckets (docs/semantics.md,
//! "Shards"). A consumer group of its own reads the partials
//! topic (`read_committed`); one pure [`Merger`] per owned partials
//! partition sums the shards' partial windows and says when a window is
//! complete; the merged windows go to the metric topics in a transaction
//! with the partials offsets and each partition's merge checkpoint
//! ([`crate::kafka::partials`]), so a new owner (after a rebalance or a
//! `kill -9`) replays from the oldest open window and emits nothing twice.
//!
//! - [`run`]: what the merge adds to the group loop ([`super::driver`]):
//!   a partials record to its [`Merger`], the merge checkpoint, `--until-end`;
//! - [`report`]: the typed run report.

#[cfg(test)]
pub(crate) mod on_memory;
pub mod report;
mod run;

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

pub use report::{MergeReport, MergeSummary};

use super::driver::{self, Group};
use crate::core::bucket::Routing;
use crate::core::cursor::Cursor;
use crate::core::merge::Merger;
use crate::error::Error;
use crate::kafka::config::{KafkaSettings, TopicNames};
use crate::kafka::consumer::{self as group};
use crate::kafka::limits::OutputLimits;
use crate::kafka::sink::Transactional;
use crate::kafka::topics::partition_count;

#[derive(Debug, Clone)]
pub struct MergeOptions {
    pub settings: KafkaSettings,
    /// The merge stage's own consumer group.
    pub group: String,
    /// `input`: the sharded input topic (its partition count is P);
    /// `seconds`, `minutes`: where merged windows go.
    pub topics: TopicNames,
    pub partials_topic: String,
    pub shards: u32,
    pub bucket_secs: u64,
    /// The idle-shard bound in seconds of event time (`None`: off).
    pub idle_after: Option<u64>,
    /// Stop once every shard published its end and every window is merged.
    pub until_end: bool,
    pub commit_interval: Duration,
    /// Where to write the [`MergeReport`].
    pub report_file: Option<PathBuf>,
}

/// An owned partials partition: its merge state and where it starts.
struct Owned {
    merger: Merger,
    /// Where its reader is: from the committed checkpoint's offset, or
    /// the log start; one seek, then the first record at or after it.
    cursor: Cursor,
}

/// The merge as a [`driver::Command`]: its options and the input's routing.
struct Merge {
    opts: MergeOptions,
    routing: Routing,
}

type Shared = Group<Merge>;
type State = driver::State<Merge>;

/// Runs until `stop` is set, or with `until_end` until every shard ended.
pub fn run(opts: MergeOptions, stop: Arc<AtomicBool>) -> Result<MergeSummary, Error> {
    let mut report = MergeReport {
        started_ms: unix_ms(),
        ..MergeReport::default()
    };
    if opts.shards < 2 {
        return Err(Error::Config(
            "merge is for sharded buckets: --shards must be at least 2 (one shard needs no merge)"
                .into(),
        ));
    }
    let timeout = Duration::from_secs(30);
    let inputs = partition_count(&opts.settings, &opts.topics.input, timeout)?;
    let routing = Routing::sharded(opts.bucket_secs, inputs, opts.shards)?;
    let sink_topics = TopicNames {
        input: opts.partials_topic.clone(),
        ..opts.topics.clone()
    };
    let limits = OutputLimits::describe(
        &opts.settings,
        &[sink_topics.seconds.as_str(), sink_topics.minutes.as_str()],
    )?;
    let sink = Transactional::new(&opts.settings, sink_topics, None, limits, &opts.group)?;
    let shared = Arc::new(Group::new(
        Merge {
            opts: opts.clone(),
            routing,
        },
        Box::new(sink),
        MergeSummary::default(),
    ));
    let consumer = group::group_consumer(
        &opts.settings,
        &opts.group,
        &opts.partials_topic,
        shared.clone(),
        None,
        false,
    )?;
    info!(group = %opts.group, partials = %opts.partials_topic, input_partitions = inputs, shards = opts.shards, idle_after = ?opts.idle_after, "merge started");
    write_report(&opts, &report);
    let result = driver::run(
        &consumer,
        &shared,
        &stop,
        run::Checks::new(shared.clock.now()),
    );
    drop(consumer);
    let state = shared.state();
    let summary = state.local.clone();
    info!(
        pieces = summary.pieces,
        seconds = summary.seconds_emitted,
        minutes = summary.minutes_emitted,
        late_partials = summary.late_partials,
        invalid = summary.invalid,
        "merge stopped"
    );
    if summary.late_partials > 0 {
        warn!(
            late_partials = summary.late_partials,
            "partials came after their window was merged (idle-shard bound): not in the merged windows"
        );
    }
    report.summary = summary.clone();
    report.finished_ms = Some(unix_ms());
    report.last_emit_ms = state.last_emit_ms;
    report.ok = result.is_ok();
    report.measure_process();
    write_report(&opts, &report);
    drop(state);
    result.map(|()| summary)
}

fn write_report(opts: &MergeOptions, report: &MergeReport) {
    if let Some(path) = &opts.report_file {
        if let Err(e) = report.write(path) {
            warn!(error = %e, path = %path.display(), "cannot write the run report");
        }
    }
}

use super::unix_ms;
