//! A worker of sharded buckets (S > 1, docs/semantics.md, "Shards"): its windows are
//! partials for `timebucket merge`, sent to the partials topic; with every
//! commit it publishes each owned partition's progress (the watermark up to
//! which that shard emitted its windows) in the same transaction. A drained
//! partition (`--until-end`) is closed for good, so that the merge never
//! waits for it again, even when it had no record at all: decided in
//! [`crate::core::ends`].

use std::time::Duration;

use tracing::info;

use super::{State, WorkerOptions};
use crate::error::Error;
use crate::kafka::sink::Partials;
use crate::kafka::topics::partition_count;

/// Checks the shard options against the cluster: where partials go, or
/// `None` without shards.
pub(super) fn check_options(opts: &WorkerOptions) -> Result<Option<Partials>, Error> {
    if opts.outputs.shards == 1 {
        return Ok(None);
    }
    if opts.outputs.shards == 0 {
        return Err(Error::Config("--shards must be at least 1".into()));
    }
    if !opts.outputs.exactly_once {
        return Err(Error::Config(
            "--shards above 1 needs exactly-once output: the merge sums partials, \
             and a partial sent twice would count twice (drop --at-least-once)"
                .into(),
        ));
    }
    let timeout = Duration::from_secs(30);
    let inputs = partition_count(
        &opts.connection.settings,
        &opts.connection.topics.input,
        timeout,
    )?;
    if !inputs.is_multiple_of(opts.outputs.shards) {
        return Err(Error::Config(format!(
            "{} has {inputs} partitions, not a multiple of --shards {}",
            opts.connection.topics.input, opts.outputs.shards
        )));
    }
    let partitions = partition_count(
        &opts.connection.settings,
        &opts.outputs.partials_topic,
        timeout,
    )?;
    info!(shards = opts.outputs.shards, partials = %opts.outputs.partials_topic, "sharded buckets: windows go to the partials topic");
    Ok(Some(Partials {
        topic: opts.outputs.partials_topic.clone(),
        partitions,
    }))
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
