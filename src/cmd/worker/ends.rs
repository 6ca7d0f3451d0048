//! The edges of an input partition: gaps in its offsets (transaction
//! markers, aborted or compacted records, or records retention removed,
//! counted and logged as lost) and its end (`--until-end`: read to the end
//! offsets, or to where librdkafka finds nothing more to read).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use tracing::{debug, error, info};

use super::poll::emit;
use super::Shared;
use crate::cmd::driver::{own, unless_lost, GroupLog};
use crate::core::ends::{self, Member};
use crate::core::partition::{Gap, Partition};
use crate::core::window::{Checkpoint, Closed};
use crate::error::Error;
use crate::kafka::checkpoint::committed_checkpoints;
use crate::kafka::retry::COMMITTED_ATTEMPT;

/// How many offsets of `gap` retention removed: those below the log start
/// offset librdkafka saw with the records (the rest of a gap held nothing
/// to read: transaction markers, aborted or compacted records). Logged as
/// an error naming the partition and the range.
pub(super) fn lost_to_retention(consumer: &impl GroupLog, partition: i32, gap: Gap) -> u64 {
    let Some(low) = consumer.cached_log_start(partition) else {
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
pub(super) fn on_end(
    consumer: &impl GroupLog,
    shared: &Shared,
    partition: i32,
) -> Result<(), Error> {
    if !consumer.assignment()?.contains(&partition) {
        return Ok(());
    }
    match unless_lost(own(consumer, shared, partition))? {
        Some(true) => {}
        // A commit was given up on the way: note the end after the rewind.
        Some(false) => {
            shared.state().local.pending_end.push(partition);
            return Ok(());
        }
        // Records read before it may have been dropped: this end says
        // nothing of the position the partition will be taken on at.
        // Given back, it ends by its consumer position.
        None => return Ok(()),
    }
    let mut state = shared.state();
    let owned = state.partitions.get_mut(&partition).expect("owned above");
    let mut position = owned.partition.position();
    if !owned.partition.started() {
        // Nothing was read from the start on: anything below the log start
        // is gone.
        let what = format!("partition {partition}");
        let (low, _) = consumer.watermarks(partition, Duration::from_secs(120), &what)?;
        let low = low.max(0) as u64;
        if low > position {
            state.local.summary.lost_to_retention += log_lost(partition, position, low);
            let owned = state.partitions.get_mut(&partition).expect("owned above");
            owned.partition.skip_to(low);
            position = low;
        }
    }
    // Debug: a live batch (`--until-offsets`) reaches the end often.
    debug!(partition, position, "partition read to its end");
    state.local.at_end.insert(partition, position);
    Ok(())
}

/// The consumer's fetch positions in `topic`: the offset after the last
/// record handed over, or after markers and aborted records it skipped.
fn consumed_positions(consumer: &impl GroupLog) -> BTreeMap<i32, u64> {
    let Ok(positions) = consumer.positions() else {
        return BTreeMap::new();
    };
    positions
        .into_iter()
        .filter_map(|(p, o)| Some((p, o.filter(|&o| o >= 0)? as u64)))
        .collect()
}

/// The worker as a group [`Member`]: its consumer and its owned partitions.
struct Group<'a, L> {
    consumer: &'a L,
    shared: &'a Shared,
}

impl<L: GroupLog> Member for Group<'_, L> {
    type Error = Error;

    fn joined(&self) -> bool {
        self.consumer.joined()
    }

    fn assigned(&self) -> Vec<i32> {
        self.consumer.assignment().unwrap_or_default()
    }

    fn consumed(&self) -> BTreeMap<i32, u64> {
        consumed_positions(self.consumer)
    }

    fn at_end(&self, partition: i32) -> Option<u64> {
        self.shared.state().local.at_end.get(&partition).copied()
    }

    fn owned(&self) -> Vec<i32> {
        self.shared.state().partitions.keys().copied().collect()
    }

    fn own(&mut self, partition: i32) -> Result<bool, Error> {
        own(self.consumer, self.shared, partition)
    }

    fn with_partition<R>(
        &mut self,
        partition: i32,
        f: impl FnOnce(&mut Partition, &mut Vec<Closed>) -> R,
    ) -> Option<R> {
        let mut guard = self.shared.state();
        let state = &mut *guard;
        let owned = state.partitions.get_mut(&partition)?;
        let result = f(&mut owned.partition, &mut state.local.closed);
        if !state.local.closed.is_empty() {
            info!(
                partition,
                windows = state.local.closed.len(),
                "partition drained: closed its windows"
            );
            emit(state, partition);
        }
        Some(result)
    }

    fn committed(&mut self, partitions: &[i32]) -> Result<BTreeMap<i32, Checkpoint>, Error> {
        // One attempt: unanswered, the loop polls and the check asks again
        // (driver::Unanswered).
        let committed = committed_checkpoints(self.consumer, partitions, COMMITTED_ATTEMPT)
            .map_err(Error::unanswered)?;
        Ok(committed
            .into_iter()
            .filter_map(|(p, c)| Some((p, *c.checkpoint()?)))
            .collect())
    }
}

/// Batch mode: closes the windows of every owned partition that reached its
/// end offset, and says whether the whole topic is done (decided by
/// [`crate::core::ends::drain_step`]).
pub(super) fn drain_step(
    consumer: &impl GroupLog,
    shared: &Shared,
    targets: &HashMap<i32, i64>,
) -> Result<bool, Error> {
    let targets: BTreeMap<i32, u64> = targets
        .iter()
        .map(|(&p, &end)| (p, end.max(0) as u64))
        .collect();
    let sharded = shared.opts.outputs.shards > 1;
    ends::drain_step(&mut Group { consumer, shared }, &targets, sharded)
}
