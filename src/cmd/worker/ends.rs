//! The edges of an input partition: gaps in its offsets (transaction
//! markers, aborted or compacted records, or records retention removed,
//! counted and logged as lost) and its end (`--until-end`: read to the end
//! offsets, or to where librdkafka finds nothing more to read).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rdkafka::consumer::Consumer;
use tracing::{debug, error, info};

use super::partition::Gap;
use super::poll::{emit, own, Worker};
use super::{shard, Shared};
use crate::error::Error;
use crate::kafka::checkpoint::committed_checkpoints;
use crate::kafka::read::cached_log_start;
use crate::kafka::retry;

/// How many offsets of `gap` retention removed: those below the log start
/// offset librdkafka saw with the records (the rest of a gap held nothing
/// to read: transaction markers, aborted or compacted records). Logged as
/// an error naming the partition and the range.
pub(super) fn lost_to_retention(consumer: &Worker, topic: &str, partition: i32, gap: Gap) -> u64 {
    let Some(low) = cached_log_start(consumer, topic, partition) else {
        return 0;
    };
    let lost_to = (low as u64).min(gap.to);
    if lost_to <= gap.from {
        return 0;
    }
    log_lost(partition, gap.from, lost_to)
}

/// Logs offsets `from..to` of `partition` as lost; their count.
fn log_lost(partition: i32, from: u64, to: u64) -> u64 {
    let lost = to - from;
    error!(
        partition,
        from,
        to = to - 1,
        records = lost,
        "input records lost to retention before they were read: resuming at the log start"
    );
    lost
}

/// Where a batch run ends (`--until-end`, `--until-offsets`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Targets {
    /// A live run: no end.
    None,
    /// These end offsets.
    Known(HashMap<i32, i64>),
    /// The end offsets written to this file (`PARTITION=OFFSET,...`) once
    /// the input is complete: loadtest's live runs, whose input ends at
    /// offsets no one knows before it is written (transaction markers take
    /// offsets too). Until the file appears the run is live.
    Awaited(PathBuf),
}

impl Targets {
    /// Whether the run ends once its input is read (so poll more often).
    pub fn batch(&self) -> bool {
        !matches!(self, Targets::None)
    }

    /// The end offsets, if known by now.
    pub(super) fn resolve(&mut self) -> Result<Option<&HashMap<i32, i64>>, Error> {
        if let Targets::Awaited(path) = self {
            // The writer renames the file into place: it is whole or absent.
            match std::fs::read_to_string(&*path) {
                Ok(list) => *self = Targets::Known(super::parse_offsets(&list)?),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => {
                    return Err(Error::Config(format!(
                        "cannot read the end offsets in {}: {e}",
                        path.display()
                    )))
                }
            }
        }
        Ok(match self {
            Targets::Known(ends) => Some(ends),
            _ => None,
        })
    }
}

/// Batch runs: librdkafka read `partition` to its end (nothing from the
/// position on is left to read). Notes that position; a partition without
/// a record read yet is owned now, and retention that emptied it from its
/// checkpoint on is counted.
pub(super) fn on_end(consumer: &Worker, shared: &Shared, partition: i32) -> Result<(), Error> {
    let topic = &shared.opts.topics.input;
    let assigned = consumer
        .assignment()
        .map_err(|e| Error::Kafka(format!("cannot read assignment: {e}")))?;
    if assigned.find_partition(topic, partition).is_none() {
        return Ok(());
    }
    if !own(consumer, shared, partition)? {
        // A commit was given up on the way: note the end after the rewind.
        shared.state().pending_end.push(partition);
        return Ok(());
    }
    let mut state = shared.state();
    let owned = state.partitions.get_mut(&partition).expect("owned above");
    let mut position = owned.partition.position();
    if !owned.partition.started() {
        // Nothing was read from the start on: anything below the log start
        // is gone.
        let (low, _) = retry::with_backoff("partition offsets", Duration::from_secs(120), |left| {
            consumer.fetch_watermarks(topic, partition, left)
        })
        .map_err(|e| Error::Kafka(format!("cannot read offsets of partition {partition}: {e}")))?;
        let low = low.max(0) as u64;
        if low > position {
            state.summary.lost_to_retention += log_lost(partition, position, low);
            let owned = state.partitions.get_mut(&partition).expect("owned above");
            owned.partition.skip_to(low);
            position = low;
        }
    }
    // Debug: a live batch (`--until-offsets`) reaches the end often.
    debug!(partition, position, "partition read to its end");
    state.at_end.insert(partition, position);
    Ok(())
}

/// The consumer's fetch positions in `topic`: the offset after the last
/// record handed over, or after markers and aborted records it skipped.
fn consumed_positions(consumer: &Worker, topic: &str) -> HashMap<i32, u64> {
    let Ok(positions) = consumer.position() else {
        return HashMap::new();
    };
    positions
        .elements_for_topic(topic)
        .iter()
        .filter_map(|e| match e.offset() {
            rdkafka::Offset::Offset(o) if o >= 0 => Some((e.partition(), o as u64)),
            _ => None,
        })
        .collect()
}

/// Batch mode: closes the windows of every owned partition that reached its
/// end offset (its end of input), and says whether the whole topic is done:
/// every partition drained and its windows closed, here or by another member
/// (as its committed checkpoint shows). Waiting for the whole topic, not just
/// the owned partitions, lets the group finish the job even when a member
/// dies or an assignment is briefly empty during a cooperative rebalance.
pub(super) fn drain_step(
    consumer: &Worker,
    shared: &Shared,
    targets: &HashMap<i32, i64>,
) -> Result<bool, Error> {
    if !consumer.context().joined.load(Ordering::SeqCst) {
        return Ok(false);
    }
    let target = |p: i32| targets.get(&p).copied().unwrap_or(0).max(0) as u64;
    let sharded = shared.opts.shards > 1;
    if sharded {
        shard::adopt_empty(consumer, shared, |p| target(p) == 0)?;
    }
    //
    // The consumer's own position moves past transaction markers and
    // aborted records, which are never handed over: at or past the end
    // offset it says the same. A partition whose remaining offsets hold no
    // record (a checkpoint just below an ingest's last commit marker) never
    // sees one: take it over here, so that its checkpoint moves on too.
    let consumed = consumed_positions(consumer, &shared.opts.topics.input);
    let idle: Vec<i32> = {
        let state = shared.state();
        consumed
            .iter()
            .filter(|(p, &c)| {
                !state.partitions.contains_key(p) && targets.contains_key(p) && c >= target(**p)
            })
            .map(|(&p, _)| p)
            .collect()
    };
    for p in idle {
        if !own(consumer, shared, p)? {
            return Ok(false);
        }
    }
    let mut unknown = Vec::new();
    {
        let mut guard = shared.state();
        let state = &mut *guard;
        // Read to the end offset, or to where librdkafka found nothing more
        // to read: then the checkpoint moves on to the end offset, so that
        // other members see the partition done.
        let at_end = &state.at_end;
        for (&p, o) in state.partitions.iter_mut() {
            let position = o.partition.position();
            let ended = at_end.get(&p).is_some_and(|&e| position >= e)
                || consumed.get(&p).is_some_and(|&c| c >= target(p));
            if position < target(p) && ended {
                o.partition.skip_to(target(p));
            }
        }
        let drained: Vec<i32> = state
            .partitions
            .iter()
            .filter(|(&p, o)| {
                o.partition.position() >= target(p)
                    && (o.partition.has_open_windows() || sharded && !shard::ended(&o.partition))
            })
            .map(|(&p, _)| p)
            .collect();
        for p in drained {
            let owned = state.partitions.get_mut(&p).expect("listed above");
            if sharded {
                shard::close_for_good(&mut owned.partition, &mut state.closed);
            } else {
                owned.partition.close_all(&mut state.closed);
            }
            info!(
                partition = p,
                windows = state.closed.len(),
                "partition drained: closed its windows"
            );
            emit(state, p);
        }
        for &p in targets.keys() {
            match state.partitions.get(&p) {
                Some(o) if o.partition.position() < target(p) => return Ok(false),
                Some(_) => {}
                // A shard must publish its end even with no record at all.
                None if target(p) == 0 && !sharded => {}
                None => unknown.push(p),
            }
        }
    }
    if unknown.is_empty() {
        return Ok(true);
    }
    let committed = committed_checkpoints(
        consumer,
        &shared.opts.topics.input,
        &unknown,
        Duration::from_secs(120),
    )?;
    Ok(unknown.iter().all(|p| {
        committed
            .get(p)
            .and_then(|c| c.checkpoint())
            .is_some_and(|cp| {
                cp.resume_seq >= target(*p) && (!sharded || shard::checkpoint_ended(cp))
            })
    }))
}
