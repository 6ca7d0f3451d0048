//! The real merge [`driver::Command`] through the real group loop
//! ([`driver::run`]) on the in-memory log and sink (`driver/memory.rs`):
//! the partials that real shard workers made durable (on the in-memory log
//! too) merged to the end (`--until-end`), against core's offline merge of
//! the offline aggregate, on a [`TickClock`]. [`run_member`] is also the
//! merge process of the real-driver simulation (`driver/sim`).

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use super::{driver, Group, Merge, MergeOptions};
use crate::cmd::driver::memory::{MemoryLog, MemorySink, Output, Stored, Tape};
use crate::cmd::driver::{Clock, GroupLog, TickClock};
use crate::cmd::worker::on_memory::{input, run_batch, sorted, windows};
use crate::core::bucket::Routing;
use crate::core::merge::OfflineMerge;
use crate::core::metric::MetricRecord;
use crate::error::Error;
use crate::kafka::config::{KafkaSettings, TopicNames};
use crate::kafka::consumer::Handover;
use crate::kafka::partials;
use crate::kafka::sink::Sink;

/// The partials topic of `partitions` partitions as the transactional
/// sink writes the shard workers' durable `outputs`, in their order.
fn partials_topic(outputs: &[Output], partitions: u32) -> Vec<Vec<Stored>> {
    let mut topic = vec![Vec::new(); partitions as usize];
    for output in outputs {
        match *output {
            Output::Window(p, closed) => {
                let key = partials::partial_key(&closed);
                let value = MetricRecord::new(closed, p).to_json();
                let q = partials::partition_of(&key, partitions) as usize;
                topic[q].push((key.into_bytes(), value.into_bytes()));
            }
            Output::Progress(p, watermark) => {
                let key = partials::progress_key(p);
                let value = partials::progress_value(p, watermark);
                for q in &mut topic {
                    q.push((key.clone().into_bytes(), value.clone().into_bytes()));
                }
            }
            Output::Dead(..) => {}
        }
    }
    topic
}

/// The merge (`--until-end`, a commit every millisecond) of `routing`'s
/// shards.
fn merge_of(routing: Routing) -> Merge {
    Merge {
        opts: MergeOptions {
            settings: KafkaSettings::new("memory"),
            group: "merge".into(),
            topics: TopicNames::default(),
            partials_topic: "partials".into(),
            shards: routing.shards(),
            bucket_secs: 60,
            idle_after: None,
            until_end: true,
            commit_interval: Duration::from_millis(1),
            report_file: None,
        },
        routing,
    }
}

/// Runs one real merge process (`--until-end`) of `routing`'s shards on
/// the log `make_log` makes for its group (the rebalance callbacks), with
/// `sink` and `clock`: what the loop returned, and the log (for the caller
/// to close it, as dropping the consumer does).
pub(crate) fn run_member<L: GroupLog>(
    routing: Routing,
    sink: Box<dyn Sink>,
    clock: Arc<dyn Clock>,
    make_log: impl FnOnce(Arc<dyn Handover>) -> L,
) -> (Result<(), Error>, L) {
    let group = Arc::new(Group::with_clock(
        merge_of(routing),
        sink,
        Default::default(),
        clock,
    ));
    let log = make_log(group.clone());
    let checks = super::run::Checks::new(group.clock.now());
    let result = driver::run(&log, &group, &AtomicBool::new(false), checks);
    (result, log)
}

/// Sharded workers' partials merged by the real merge equal the offline
/// merge of the offline aggregate (`aggregate --shards`), nothing twice,
/// also after given-up commits of the workers and of the merge.
#[test]
fn the_real_merge_on_the_memory_log_equals_the_sharded_aggregate() {
    let input = input(4, 2, 800);
    let (partials_expected, _) = input.aggregate();
    let mut offline = OfflineMerge::default();
    for &(p, closed) in &partials_expected {
        offline.add(&input.routing, p as u32, closed);
    }
    let expected: Vec<_> = offline
        .finish()
        .map(|m| (m.partition as i32, m.closed))
        .collect();
    assert!(!expected.is_empty());
    for (hold, give_up) in [(0, 0), (4, 2)] {
        let (shards, _) = run_batch(&input, hold, give_up);
        let records = partials_topic(&shards.outputs, 3);
        let tape = Tape::shared(hold, give_up);
        let sink = Box::new(MemorySink { tape: tape.clone() });
        let clock = Arc::new(TickClock::new(Duration::from_millis(1)));
        let group = Arc::new(Group::with_clock(
            merge_of(input.routing),
            sink,
            Default::default(),
            clock,
        ));
        let log = MemoryLog::with_records(group.clone(), tape.clone(), records, false);
        let started = group.clock.now();
        let checks = super::run::Checks::new(started);
        driver::run(&log, &group, &AtomicBool::new(false), checks).expect("merges");
        let summary = group.state().local.clone();
        assert_eq!(summary.transactions_aborted, give_up as u64);
        assert_eq!(summary.late_partials, 0);
        assert_eq!(summary.invalid, 0);
        let merged = windows(&tape.lock().unwrap().outputs);
        assert_eq!(merged, sorted(&expected), "hold {hold}, give up {give_up}");
    }
}
