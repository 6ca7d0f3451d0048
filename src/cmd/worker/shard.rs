//! A worker of sharded buckets (S > 1, README "Shards"): its windows are
//! partials for `timebucket merge`, sent to the partials topic; with every
//! commit it publishes each owned partition's progress (the watermark up to
//! which that shard emitted its windows) in the same transaction; and a
//! drained partition (`--until-end`) is closed for good, so that the merge
//! never waits for it again, even when it had no record at all.

use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use tracing::info;

use super::partition::Partition;
use super::poll::start_of;
use super::{Owned, Shared, State, WorkerOptions};
use crate::core::window::{Checkpoint, Closed, Watermark};
use crate::error::Error;
use crate::kafka::consumer::GroupConsumer;
use crate::kafka::sink::Partials;
use crate::kafka::topics::partition_count;

/// Checks the shard options against the cluster: where partials go, or
/// `None` without shards.
pub(super) fn check_options(opts: &WorkerOptions) -> Result<Option<Partials>, Error> {
    if opts.shards == 1 {
        return Ok(None);
    }
    if opts.shards == 0 {
        return Err(Error::Config("--shards must be at least 1".into()));
    }
    if !opts.exactly_once {
        return Err(Error::Config(
            "--shards above 1 needs exactly-once output: the merge sums partials, \
             and a partial sent twice would count twice (drop --at-least-once)"
                .into(),
        ));
    }
    let timeout = Duration::from_secs(30);
    let inputs = partition_count(&opts.settings, &opts.topics.input, timeout)?;
    if !inputs.is_multiple_of(opts.shards) {
        return Err(Error::Config(format!(
            "{} has {inputs} partitions, not a multiple of --shards {}",
            opts.topics.input, opts.shards
        )));
    }
    let partitions = partition_count(&opts.settings, &opts.partials_topic, timeout)?;
    info!(shards = opts.shards, partials = %opts.partials_topic, "sharded buckets: windows go to the partials topic");
    Ok(Some(Partials {
        topic: opts.partials_topic.clone(),
        partitions,
    }))
}

/// Whether the partition was closed for good.
pub(super) fn ended(partition: &Partition) -> bool {
    partition.watermark() == Some(Watermark::END)
}

/// Whether a committed checkpoint says its shard was closed for good.
pub(super) fn checkpoint_ended(cp: &Checkpoint) -> bool {
    cp.emitted == Some(Watermark::END)
}

/// Closes every window of a drained shard, and every window it could ever
/// have: its progress becomes the end, and frames that still come are late.
pub(super) fn close_for_good(partition: &mut Partition, closed: &mut Vec<Closed>) {
    partition.close_through(Watermark::END, closed);
}

/// Adds to `state` the assigned partitions that have no record below their
/// end offset (empty shards), so that they are closed and publish their end
/// too.
pub(super) fn adopt_empty(
    consumer: &GroupConsumer<Shared>,
    shared: &Shared,
    empty: impl Fn(i32) -> bool,
) -> Result<(), Error> {
    let Ok(assignment) = consumer.assignment() else {
        return Ok(());
    };
    let topic = &shared.opts.topics.input;
    for e in assignment.elements_for_topic(topic) {
        let p = e.partition();
        if !empty(p) || shared.state().partitions.contains_key(&p) {
            continue;
        }
        let start = start_of(consumer, &shared.opts, p)?;
        shared.state().partitions.insert(
            p,
            Owned {
                partition: Partition::new(start, shared.opts.rules),
                last_record: Instant::now(),
                progress_sent: None,
            },
        );
    }
    Ok(())
}

/// Queues every owned shard's progress that changed since it was last sent,
/// for the transaction about to commit with its checkpoint.
pub(super) fn send_progress(state: &mut State) {
    let State {
        partitions, sink, ..
    } = state;
    for (&p, owned) in partitions.iter_mut() {
        let Some(emitted) = owned.partition.checkpoint().emitted else {
            continue;
        };
        if owned.progress_sent != Some(emitted.0) {
            sink.progress(p, emitted.0);
            owned.progress_sent = Some(emitted.0);
        }
    }
}
