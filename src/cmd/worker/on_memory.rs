//! The real worker [`driver::Command`] through the real group loop
//! ([`driver::run`]) on the in-memory log and sink (`driver/memory.rs`):
//! a small batch input (`--until-end`) read to its end, its committed
//! windows against core's offline aggregate, plainly and after a given-up
//! commit (the rewind path), on a [`TickClock`]. [`run_batch`] is also the shard workers the
//! merge's in-memory tests read the partials of.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use super::parse::BatchParser;
use super::{driver, poll, Group, Local, Targets, Worker, WorkerOptions, WorkerSummary};
use crate::cmd::driver::memory::{after_crash, MemoryLog, MemorySink, Output, Seen, Stored, Tape};
use crate::cmd::driver::{Clock, GroupLog, TickClock};
use crate::core::bucket::Routing;
use crate::core::frame::{FrameParser, Line};
use crate::core::partition::Rules;
use crate::core::partitioned::PartitionedWindows;
use crate::core::window::{Closed, WatermarkRule};
use crate::error::Error;
use crate::kafka::consumer::Handover;
use crate::kafka::sink::Sink;
use crate::kafka::topics::PartitionWatch;
use crate::observe::worker::WorkerMetrics;

/// A batch input: frames routed as ingest routes them, a few invalid lines
/// among them.
pub(crate) struct Input {
    pub routing: Routing,
    pub rules: Rules,
    /// Each input partition's records.
    pub records: Vec<Vec<Stored>>,
}

/// `frames` frames over `partitions` partitions of `shards` shards, a
/// little out of order, from a few users; every 97th line is not JSON.
pub(crate) fn input(partitions: u32, shards: u32, frames: u64) -> Input {
    let routing = Routing::sharded(60, partitions, shards).expect("valid routing");
    let rules = Rules {
        watermark: WatermarkRule::new(3, 1).resolved(&routing),
        parser: FrameParser::new(0, 4_000_000_000),
        max_future: None,
    };
    let mut records = vec![Vec::new(); partitions as usize];
    let base = 1_700_000_040;
    for i in 0..frames {
        let ts = base + i / 2 + i % 5;
        let uid = format!("u{}", i % 11);
        let p = routing.route(ts, &uid) as usize;
        let line = format!(r#"{{"ts":{ts},"uid":"{uid}"}}"#);
        records[p].push((Vec::new(), line.into_bytes()));
        if i % 97 == 0 {
            records[p].push((Vec::new(), b"not a frame".to_vec()));
        }
    }
    Input {
        routing,
        rules,
        records,
    }
}

impl Input {
    /// What `timebucket aggregate` makes of the input: every closed window
    /// `(partition, window)` (partials with shards), and the invalid lines.
    pub fn aggregate(&self) -> (Vec<(i32, Closed)>, u64) {
        let mut aggregate = PartitionedWindows::new(self.routing, self.rules.watermark);
        let mut invalid = 0;
        for (_, payload) in self.records.iter().flatten() {
            match self.rules.parser.parse(payload) {
                Line::Frame(f) => aggregate.record(f.ts, &f.uid),
                Line::Invalid(_) => invalid += 1,
                Line::Blank => {}
            }
        }
        aggregate.finish();
        let closed = aggregate.take_closed().map(|(p, c)| (p as i32, c));
        (closed.collect(), invalid)
    }
}

/// The windows among `outputs`, in a canonical order.
pub(crate) fn windows(outputs: &[Output]) -> Vec<String> {
    let mut windows: Vec<String> = outputs
        .iter()
        .filter_map(|o| match o {
            Output::Window(p, c) => Some(format!("{p} {c:?}")),
            _ => None,
        })
        .collect();
    windows.sort();
    windows
}

/// `(partition, window)`s in the canonical order of [`windows`].
pub(crate) fn sorted(closed: &[(i32, Closed)]) -> Vec<String> {
    let outputs: Vec<Output> = closed.iter().map(|&(p, c)| Output::Window(p, c)).collect();
    windows(&outputs)
}

/// Runs one real worker (`--until-end`, exactly once) over `input` to its
/// end; after `hold` commits, the next `give_up` are given up. What the sink made
/// durable, and the worker's summary.
pub(crate) fn run_batch(input: &Input, hold: usize, give_up: usize) -> (Tape, WorkerSummary) {
    let shards = input.routing.shards();
    let opts = WorkerOptions::for_tests(input.rules, shards);
    let partitions = input.records.len() as u32;
    let worker = Worker {
        watch: PartitionWatch::fixed(&opts.connection.topics.input, partitions),
        routing: input.routing,
        metrics: Arc::new(WorkerMetrics::new()),
        batch: true,
        parser: BatchParser::new(opts.running.parse_threads).expect("parse threads"),
        opts,
    };
    let tape = Tape::shared(hold, give_up);
    let sink = Box::new(MemorySink { tape: tape.clone() });
    let clock = Arc::new(TickClock::new(Duration::from_millis(1)));
    let group = Arc::new(Group::with_clock(worker, sink, Local::new(u64::MAX), clock));
    let log = MemoryLog::with_records(group.clone(), tape.clone(), input.records.clone(), true);
    let ends: HashMap<i32, i64> = (0..partitions as i32)
        .map(|p| (p, input.records[p as usize].len() as i64))
        .collect();
    let pace = poll::Pace::new(Targets::Known(ends), group.clock.now());
    driver::run(&log, &group, &AtomicBool::new(false), pace).expect("the worker runs");
    let summary = group.state().local.summary.clone();
    let tape = std::mem::take(&mut *tape.lock().unwrap());
    (tape, summary)
}

/// A worker's counters, readable after its thread ended, crashed too.
pub(crate) struct Tally(Arc<super::Shared>);

impl Tally {
    /// The worker's summary as it stands (at the crash, for a crashed one).
    pub fn summary(&self) -> WorkerSummary {
        after_crash(&self.0, |state| state.local.summary.clone())
    }
}

/// Runs one real worker (`--until-end` to `ends`, exactly once) of `input`'s
/// rules and routing on the log `make_log` makes for its group (the
/// rebalance callbacks, and its [`Tally`]), with `sink` and `clock`: what
/// the loop returned, and the log (for the caller to close it, as dropping
/// the consumer does).
pub(crate) fn run_member<L: GroupLog>(
    input: &Input,
    ends: HashMap<i32, i64>,
    sink: Box<dyn Sink>,
    clock: Arc<dyn Clock>,
    make_log: impl FnOnce(Arc<dyn Handover>, Tally) -> L,
) -> (Result<(), Error>, L) {
    let opts = WorkerOptions::for_tests(input.rules, input.routing.shards());
    let worker = Worker {
        watch: PartitionWatch::fixed(&opts.connection.topics.input, ends.len() as u32),
        routing: input.routing,
        metrics: Arc::new(WorkerMetrics::new()),
        batch: true,
        parser: BatchParser::new(opts.running.parse_threads).expect("parse threads"),
        opts,
    };
    let group = Arc::new(Group::with_clock(worker, sink, Local::new(u64::MAX), clock));
    let log = make_log(group.clone(), Tally(group.clone()));
    let pace = poll::Pace::new(Targets::Known(ends), group.clock.now());
    let result = driver::run(&log, &group, &AtomicBool::new(false), pace);
    (result, log)
}

fn dead(outputs: &[Output]) -> usize {
    outputs
        .iter()
        .filter(|o| matches!(o, Output::Dead(..)))
        .count()
}

/// The real worker's committed windows are the offline aggregate's, every
/// invalid line dead-lettered once.
#[test]
fn the_real_worker_on_the_memory_log_equals_the_aggregate() {
    let input = input(2, 1, 600);
    let (expected, invalid) = input.aggregate();
    let (tape, summary) = run_batch(&input, 0, 0);
    assert!(!expected.is_empty());
    assert_eq!(windows(&tape.outputs), sorted(&expected));
    assert_eq!(summary.invalid, invalid);
    assert_eq!(dead(&tape.outputs) as u64, invalid);
    assert_eq!(summary.frames, 600);
}

/// Given-up commits drop what was built and sent since the last durable
/// one: the worker rewinds to the committed checkpoints and the durable
/// outputs are still the aggregate's, nothing twice.
#[test]
fn the_real_worker_after_a_given_up_commit_equals_the_aggregate() {
    let input = input(2, 1, 600);
    let (expected, invalid) = input.aggregate();
    let (tape, summary) = run_batch(&input, 3, 2);
    assert_eq!(summary.transactions_aborted, 2);
    assert!(tape.seen.iter().any(|s| matches!(s, Seen::Seek { .. })));
    assert_eq!(windows(&tape.outputs), sorted(&expected));
    assert_eq!(dead(&tape.outputs) as u64, invalid);
}
