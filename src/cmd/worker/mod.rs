//! `timebucket worker`: the thin Kafka loop around the window core.
//!
//! Joins the consumer group and keeps one [`Partition`] state machine per
//! owned partition. For every input record the loop asks the partition what
//! to do ([`Partition::on_record`]) and does it: send closed windows,
//! forward or dead-letter the record to the [`Sink`], or seek. Every commit
//! interval the sink makes everything sent durable together with the
//! checkpoint of every owned partition (see [`crate::kafka::checkpoint`]), so
//! a new owner rebuilds the open windows exactly and re-emits nothing with
//! another value.
//!
//! - [`crate::core::partition`]: the pure per-partition state machine;
//! - [`ends`]: gaps in a partition's offsets (lost to retention or not)
//!   and its end for `--until-end` (decided in [`crate::core::ends`]);
//! - [`poll`]: what the worker adds to the group loop ([`super::driver`]):
//!   a record to its partition, idle and drained partitions, gauges;
//! - [`options`]: what the worker is told, split by concern;
//! - [`report`]: the typed run report;
//! - [`guard`]: what the worker refuses to take on trust: committed offsets
//!   without a valid checkpoint, records from partitions beyond the count
//!   at start. A [`PartitionWatch`] stops the worker when the input's
//!   partition count changes; the routing guard on frames is in
//!   [`crate::core::partition`].
//! - [`bounds`]: the state budget and the windows dropped beyond the horizon.
//! - [`shard`]: sharded buckets (S > 1): windows as partials, the shards'
//!   progress, drained shards closed for good.
//!
//! With `--metrics-addr` the worker serves its Prometheus metrics,
//! `/healthz` and `/readyz` ([`crate::observe`]); the counters mirror the
//! report's summary.
//!
//! The sink is [`Transactional`] (exactly-once, the default) or
//! [`AtLeastOnce`].

mod bounds;
mod ends;
pub use ends::Targets;
pub mod guard;
#[cfg(test)]
pub(crate) mod on_memory;
pub mod options;
mod parse;
mod poll;
pub mod report;
mod shard;

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{info, warn};

pub use crate::core::partition::{Partition, Rules};
pub use guard::OnMissingCheckpoint;
pub use options::WorkerOptions;
pub use report::{Phase, ReportError, Resume, WorkerReport, WorkerSummary};

use super::driver::{self, Group};
use crate::core::bucket::Routing;
use crate::core::budget::StateBudget;
use crate::core::window::Closed;
use crate::error::Error;
use crate::kafka::consumer::{self as group};
use crate::kafka::limits::OutputLimits;
use crate::kafka::read::{end_offsets, partitions_of};
use crate::kafka::sink::{AtLeastOnce, Sink, Transactional};
use crate::kafka::topics::{partition_count, PartitionWatch, WATCH_INTERVAL};
use crate::observe::worker::WorkerMetrics;
use crate::observe::Exporter;

/// An owned partition and when it last had a record (processing time, for
/// `idle_flush`).
struct Owned {
    partition: Partition,
    last_record: Instant,
    /// It had a record in the poll batch being handled: `last_record` is
    /// set once after the batch (one clock read per batch, not per record:
    /// per record it was 4 % of a worker's CPU).
    in_batch: bool,
    /// Sharded buckets: the progress last sent for this partition.
    progress_sent: Option<u64>,
}

/// The worker's own state beside its owned partitions, behind the group's
/// lock (the rebalance callbacks reach it too).
struct Local {
    summary: WorkerSummary,
    resumes: Vec<Resume>,
    /// Scratch for closed windows.
    closed: Vec<Closed>,
    /// The bytes each owned partition's windows take, against the budget.
    budget: StateBudget,
    /// Batch runs: the position each partition had when librdkafka said it
    /// was read to its end (every offset from there to the end offset holds
    /// nothing to read). Kept across rewinds, which librdkafka does not
    /// announce the end again after.
    at_end: HashMap<i32, u64>,
    /// Partitions read to their end while a rewind was pending: their end
    /// is noted once it is done.
    pending_end: Vec<i32>,
    first_record_ms: Option<u64>,
    last_record_ms: Option<u64>,
}

impl Local {
    /// Nothing counted yet; the owned windows may take `state_budget` bytes.
    fn new(state_budget: u64) -> Local {
        Local {
            summary: WorkerSummary::default(),
            resumes: Vec::new(),
            closed: Vec::new(),
            budget: StateBudget::new(state_budget),
            at_end: HashMap::new(),
            pending_end: Vec::new(),
            first_record_ms: None,
            last_record_ms: None,
        }
    }
}

/// The worker as a [`driver::Command`]: what its hooks read.
struct Worker {
    opts: WorkerOptions,
    /// The input's routing at start: frames it sends elsewhere are
    /// dead-lettered as `wrong_partition`.
    routing: Routing,
    /// Stops the worker when the input's partition count changes.
    watch: PartitionWatch,
    metrics: Arc<WorkerMetrics>,
    /// A batch run (`--until-end`, `--until-offsets`): poll more often.
    batch: bool,
    /// Parses each poll batch's records, on `--parse-threads` threads.
    parser: parse::BatchParser,
}

type Shared = Group<Worker>;
type State = driver::State<Worker>;

/// Runs until `stop` is set (SIGINT/SIGTERM) or, with `until_end`, until the
/// owned partitions are drained.
pub fn run(mut opts: WorkerOptions, stop: Arc<AtomicBool>) -> Result<WorkerSummary, Error> {
    let mut report = WorkerReport::started(unix_ms());
    let metrics = Arc::new(WorkerMetrics::new());
    let exporter = match &opts.observe.metrics_addr {
        Some(addr) => Some(Exporter::serve(
            addr,
            metrics.registry(),
            metrics.http(),
            metrics.readiness(&opts.connection.group),
        )?),
        None => None,
    };
    if let Some(e) = &exporter {
        info!(url = %format!("http://{}/metrics", e.addr()), "serving metrics, /healthz and /readyz");
        report.metrics_addr = Some(e.addr().to_string());
    }
    let limits = output_limits(&opts)?;
    let partials = shard::check_options(&opts)?;
    let sink: Box<dyn Sink> = if opts.outputs.exactly_once {
        Box::new(
            Transactional::new(
                &opts.connection.settings,
                opts.connection.topics.clone(),
                opts.outputs.late_topic.clone(),
                limits,
                &opts.connection.group,
            )?
            .with_partials(partials),
        )
    } else {
        Box::new(AtLeastOnce::new(
            &opts.connection.settings,
            opts.connection.topics.clone(),
            opts.outputs.late_topic.clone(),
            limits,
        )?)
    };
    let count = partition_count(
        &opts.connection.settings,
        &opts.connection.topics.input,
        Duration::from_secs(30),
    )?;
    let routing = Routing::sharded(opts.windows.bucket_secs, count, opts.outputs.shards)?;
    opts.windows.rules.watermark = opts.windows.rules.watermark.resolved(&routing);
    metrics.state_budget(opts.windows.state_budget);
    let watch = PartitionWatch::start(
        &opts.connection.settings,
        &opts.connection.topics.input,
        count,
        WATCH_INTERVAL,
    )?;
    let local = Local::new(opts.windows.state_budget);
    let worker = Worker {
        opts: opts.clone(),
        routing,
        watch,
        metrics: metrics.clone(),
        batch: opts.running.until_end || opts.running.until_offsets.is_some(),
        parser: parse::BatchParser::new(opts.running.parse_threads)?,
    };
    report.parse_threads = Some(worker.parser.threads());
    let shared = Arc::new(Group::new(worker, sink, local));
    // librdkafka's statistics carry the partitions' end offsets (for the lag).
    let statistics = exporter.as_ref().map(|_| poll::OBSERVE_INTERVAL);
    // Batch runs learn that a partition is read to its end from
    // librdkafka's end-of-partition events: its position alone may never
    // reach the end offset (compacted or aborted records at the end). Only
    // when the end offsets are read at start: an end reached then is at or
    // past them. Given end offsets (`--until-offsets`, before the input is
    // written) may be ahead of an end librdkafka announces.
    let batch = opts.running.until_end && opts.running.until_offsets.is_none();
    let consumer = group::group_consumer(
        &opts.connection.settings,
        &opts.connection.group,
        &opts.connection.topics.input,
        shared.clone(),
        statistics,
        batch,
    )?;
    // Late frames to a topic that does not exist would fail every
    // transaction: say so now instead.
    if let Some(late) = &opts.outputs.late_topic {
        partitions_of(&consumer, late, Duration::from_secs(30))?;
    }
    let targets = match &opts.running.until_offsets {
        Some(ends) => ends.clone(),
        None if opts.running.until_end => {
            Targets::Known(end_offsets(&consumer, &opts.connection.topics.input)?)
        }
        None => Targets::None,
    };
    info!(group = %opts.connection.group, topic = %opts.connection.topics.input, partitions = count, until_end = opts.running.until_end, exactly_once = opts.outputs.exactly_once, "worker started");
    write_report(&opts, &report);

    let pace = poll::Pace::new(targets, shared.clock.now());
    let result = driver::run(&consumer, &shared, &stop, pace);
    // Leaving the group revokes what we own; the handover commits it.
    drop(consumer);
    let state = shared.state();
    let summary = state.local.summary.clone();
    info!(
        frames = summary.frames,
        invalid = summary.invalid,
        late_seconds = summary.late_seconds,
        late_minutes = summary.late_minutes,
        seconds = summary.seconds_emitted,
        minutes = summary.minutes_emitted,
        "worker stopped"
    );
    report.phase = Phase::Finished;
    report.summary = summary.clone();
    report.resumes = state.local.resumes.clone();
    report.first_record_ms = state.local.first_record_ms;
    report.last_record_ms = state.local.last_record_ms;
    report.last_emit_ms = state.last_emit_ms;
    report.finished_ms = Some(unix_ms());
    report.ok = result.is_ok();
    report.measure_process();
    metrics.publish(&summary);
    metrics.finished();
    write_report(&opts, &report);
    drop(state);
    if exporter.is_some() {
        linger(opts.observe.metrics_linger, &stop);
    }
    result.map(|()| summary)
}

/// The record limits of the topics this worker writes to, from the cluster.
fn output_limits(opts: &WorkerOptions) -> Result<OutputLimits, Error> {
    let t = &opts.connection.topics;
    let mut topics = vec![
        t.seconds.as_str(),
        t.minutes.as_str(),
        t.dead_letter.as_str(),
    ];
    if opts.outputs.forward {
        topics.push(&t.forward);
    }
    if let Some(late) = &opts.outputs.late_topic {
        topics.push(late);
    }
    OutputLimits::describe(&opts.connection.settings, &topics)
}

/// Keeps the process (and its metrics endpoint) up for `linger`, or until
/// a signal.
fn linger(linger: Duration, stop: &AtomicBool) {
    let until = Instant::now() + linger;
    while Instant::now() < until && !stop.load(std::sync::atomic::Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn write_report(opts: &WorkerOptions, report: &WorkerReport) {
    if let Some(path) = &opts.observe.report_file {
        if let Err(e) = report.write(path) {
            warn!(error = %e, path = %path.display(), "cannot write the run report");
        }
    }
}

use super::unix_ms;

/// Parses `--until-offsets`: `PARTITION=END_OFFSET,...`.
pub fn parse_offsets(list: &str) -> Result<HashMap<i32, i64>, Error> {
    list.trim()
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|item| {
            let parsed = item
                .split_once('=')
                .and_then(|(p, o)| Some((p.trim().parse().ok()?, o.trim().parse().ok()?)));
            parsed.ok_or_else(|| {
                Error::Config(format!(
                    "expected PARTITION=OFFSET in --until-offsets, got {item:?}"
                ))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until_offsets_parse_and_bad_ones_are_refused() {
        let offsets = parse_offsets("0=10, 3=7,").unwrap();
        assert_eq!(offsets, HashMap::from([(0, 10), (3, 7)]));
        assert!(parse_offsets("0:10").is_err());
    }
}
