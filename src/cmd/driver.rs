//! The one consumer-group loop that `worker` and `merge` share: poll
//! records in batches, take a partition on (committing what is open first,
//! then reading its committed checkpoint), hand each record to the
//! partition's state machine and seek where it says, commit every interval
//! (outputs and every owned partition's checkpoint together), rewind every
//! assigned partition to its committed checkpoint after a commit was given
//! up, hand partitions over on rebalance (commit, then drop), and stop on
//! the signal or once the command says it is done (`--until-end`).
//!
//! What is a command's own is behind [`Command`]: its per-partition state
//! (the worker's [`crate::core::partition::Partition`], the merge's
//! [`crate::core::merge::Merger`] with its cursor), how a record is handled,
//! what its checkpoint is, and its periodic checks (idle windows, the end
//! of a batch run, metrics). The decisions that need no Kafka are in
//! [`crate::core::group`]. The loop reaches Kafka only through the group's
//! log ([`GroupLog`]: poll, seek, assignment, with plain types) and the
//! sink's commit, so its unit tests (`driver/tests.rs`) run it against an
//! in-memory log and sink (`driver/memory.rs`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use crate::core::cursor::SeekTo;
use crate::core::group::{self as decide, Outcome};
use crate::error::Error;
use crate::kafka::consumer::{Handover, OffsetCommit};
use crate::kafka::log::Event;
pub(crate) use crate::kafka::log::{BatchLimit, GroupLog, Record, StatsEnds};
use crate::kafka::sink::{Commit, Offsets, Sink};

mod clock;
#[cfg(test)]
pub(crate) use clock::TickClock;
pub(crate) use clock::{Clock, SystemClock};
#[cfg(test)]
pub(crate) mod memory;
#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;

/// Most records handled per loop iteration: records librdkafka already
/// fetched are prepared (parsed, on several threads) and handled in a
/// batch before the loop's checks, whose clock reads cost about a tenth of
/// the parse at a few hundred thousand frames/s. The bytes bound what a
/// batch holds of the client's memory: 4 MB is about 2,000 frames of
/// 2 KB, and at most 4 MB plus one record of the largest size the input
/// topic allows.
const POLL_BATCH: BatchLimit = BatchLimit {
    records: 512,
    bytes: 4 << 20,
};

/// What became of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Handled {
    /// Taken, skipped as a duplicate, or counted: go on.
    Done,
    /// Not where the partition starts: dropped, seek there.
    Seek(SeekTo),
}

/// What one command adds to the loop. Every hook runs on the polling
/// thread; those given a [`State`] run with the group's lock held. The
/// hooks read the group's log only through [`GroupLog`], so a command runs
/// on any log: librdkafka's consumer, or the in-memory one of the tests.
pub(crate) trait Command: Send + Sync + Sized + 'static {
    /// An owned partition's state machine.
    type Partition: Send;
    /// The command's own state beside the owned partitions (its summary).
    type Local: Send;
    /// What the command's loop hooks keep between iterations (when they
    /// last ran, where a batch run ends): given to [`run`], never behind
    /// the lock.
    type Loop;

    /// The topic the group reads.
    fn topic(&self) -> &str;
    /// Whether commits are transactions: then a partition is taken on only
    /// after committing what is open (reading its committed checkpoint
    /// waits for open transactions, ours too, up to their timeout).
    fn transactional(&self) -> bool;
    /// How often everything sent is made durable with the checkpoints.
    fn commit_interval(&self) -> Duration;
    /// How long the first poll of a batch may wait.
    fn poll_timeout(&self) -> Duration;
    /// The state of `partition`, taken on now: from its committed
    /// checkpoint, or the log start.
    fn start(
        &self,
        group: &Group<Self>,
        log: &impl GroupLog,
        partition: i32,
    ) -> Result<Self::Partition, Error>;
    /// What handling a record needs that follows from the record alone
    /// (the worker's parse of its payload).
    type Prepared<'a>: Send;
    /// Works out [`Command::Prepared`] for each of a batch's records, in
    /// order, before any of them is handled: outside the group's lock, on
    /// as many threads as the command likes. A record may be dropped after
    /// (its partition sought or taken away meanwhile), so this decides
    /// nothing.
    fn prepare<'a>(&self, records: &[Record<'a>]) -> Vec<Self::Prepared<'a>>;
    /// Handles a record of an owned partition, with what
    /// [`Command::prepare`] made of it.
    fn record(
        &self,
        log: &impl GroupLog,
        state: &mut State<Self>,
        record: &Record<'_>,
        prepared: Self::Prepared<'_>,
    ) -> Result<Handled, Error>;
    /// Where a new owner of `partition` resumes, and the checkpoint it
    /// resumes from (commit metadata); `None` while there is nothing to
    /// commit for it.
    fn checkpoint(&self, partition: &Self::Partition) -> Option<(u64, String)>;
    /// The resume offsets of the valid committed checkpoints of `partitions`.
    fn committed(
        &self,
        log: &impl GroupLog,
        partitions: &[i32],
    ) -> Result<BTreeMap<i32, u64>, Error>;
    /// Just before a commit: queue what goes with it.
    fn before_commit(&self, _state: &mut State<Self>) {}
    /// After a commit: count it (on [`Outcome::GivenUp`] the owned
    /// partitions are dropped already).
    fn after_commit(&self, state: &mut State<Self>, outcome: &Commit, took: Duration);
    /// `partitions` were handed over and dropped.
    fn revoked(&self, _state: &mut State<Self>, _partitions: &[i32]) {}
    /// The group gave this member `partitions` (maybe none).
    fn assigned(&self, _state: &mut State<Self>, _partitions: &[i32]) {}
    /// The offsets of the topic's partitions in librdkafka's statistics,
    /// when the consumer was asked for them.
    fn statistics(&self, _ends: &[StatsEnds]) {}
    /// Before each poll batch (after a pending rewind).
    fn before_poll(&self, _group: &Group<Self>) -> Result<(), Error> {
        Ok(())
    }
    /// After a rewind to the committed checkpoints.
    fn after_rewind(&self, _group: &Group<Self>, _log: &impl GroupLog) -> Result<(), Error> {
        Ok(())
    }
    /// Before each record is handled (the worker's `--throttle`).
    fn pace(&self, _group: &Group<Self>, _loop: &mut Self::Loop) {}
    /// librdkafka read `partition` to its end (batch runs ask for it).
    fn at_end(
        &self,
        _group: &Group<Self>,
        _log: &impl GroupLog,
        _partition: i32,
    ) -> Result<(), Error> {
        Ok(())
    }
    /// After each poll batch that handled `handled` records.
    fn after_batch(&self, _state: &mut State<Self>, _handled: usize) {}
    /// After each batch: the command's periodic work; `true` when the run
    /// is done (a batch run read its whole input), so the loop commits and
    /// returns.
    fn check(
        &self,
        group: &Group<Self>,
        log: &impl GroupLog,
        state: &mut Self::Loop,
        queue_empty: bool,
    ) -> Result<bool, Error>;
}

/// What the loop and the rebalance callbacks share, behind the group's lock.
pub(crate) struct State<C: Command> {
    /// The owned partitions: those taken on since they were assigned.
    pub partitions: BTreeMap<i32, C::Partition>,
    pub sink: Box<dyn Sink>,
    /// Set when a commit was given up: every assigned partition goes back
    /// to its committed checkpoint before processing goes on.
    pub rewind: bool,
    /// An error met inside a rebalance callback, where it cannot be returned.
    pub fatal: Option<Error>,
    /// Outputs sent since they were last made durable, and when that was.
    pub emit_pending: bool,
    pub last_emit_ms: Option<u64>,
    /// The command's own.
    pub local: C::Local,
    /// Where time is read (the group's, here for the hooks given a state).
    pub clock: Arc<dyn Clock>,
    /// How many rebalances were handed over (revocations and assignments):
    /// a batch polled across one holds records of partitions that may have
    /// been taken away.
    pub handovers: u64,
}

/// A command and its state. The rebalance callbacks run inside `poll`, on
/// the polling thread, so the lock is never contended; it is never held
/// across a `poll`.
pub(crate) struct Group<C: Command> {
    pub cmd: C,
    /// Where the loop and the hooks read time: the process's clocks, or a
    /// test's.
    pub clock: Arc<dyn Clock>,
    state: Mutex<State<C>>,
}

impl<C: Command> std::ops::Deref for Group<C> {
    type Target = C;

    fn deref(&self) -> &C {
        &self.cmd
    }
}

impl<C: Command> Group<C> {
    pub fn new(cmd: C, sink: Box<dyn Sink>, local: C::Local) -> Group<C> {
        Group::with_clock(cmd, sink, local, Arc::new(SystemClock))
    }

    /// A group reading time from `clock`.
    pub fn with_clock(
        cmd: C,
        sink: Box<dyn Sink>,
        local: C::Local,
        clock: Arc<dyn Clock>,
    ) -> Group<C> {
        Group {
            cmd,
            clock: clock.clone(),
            state: Mutex::new(State {
                partitions: BTreeMap::new(),
                sink,
                rewind: false,
                fatal: None,
                emit_pending: false,
                last_emit_ms: None,
                local,
                clock,
                handovers: 0,
            }),
        }
    }

    pub fn state(&self) -> MutexGuard<'_, State<C>> {
        self.state.lock().expect("poisoned")
    }
}

/// Runs the loop until `stop` is set (then commits) or the command's
/// [`Command::check`] says the run is done (and its last commit held).
pub(crate) fn run<C: Command>(
    log: &impl GroupLog,
    group: &Group<C>,
    stop: &AtomicBool,
    mut hooks: C::Loop,
) -> Result<(), Error> {
    let cmd = &group.cmd;
    let mut last_commit = group.clock.now();
    loop {
        if stop.load(Ordering::SeqCst) {
            info!("stop requested: committing and leaving the group");
            return commit(log, group);
        }
        // A commit given up at the end of the last iteration rewinds
        // before any record is read again: a record read now could not be
        // told from the first one after the checkpoint.
        if std::mem::take(&mut group.state().rewind) {
            rewind(log, group)?;
        }
        cmd.before_poll(group)?;
        let handovers = group.state().handovers;
        let batch = log.poll_batch(cmd.poll_timeout(), POLL_BATCH, |events| {
            handle_batch(log, group, stop, &mut hooks, handovers, events)
        })?;
        let (handled, queue_empty) = (batch.handled, batch.queue_empty);
        let rewinding = {
            let mut state = group.state();
            cmd.after_batch(&mut state, handled);
            if let Some(e) = state.fatal.take() {
                return Err(e);
            }
            std::mem::take(&mut state.rewind)
        };
        if rewinding {
            rewind(log, group)?;
        }
        if cmd.check(group, log, &mut hooks, queue_empty)? {
            commit(log, group)?;
            // A given-up last commit means replaying, not done.
            if !group.state().rewind {
                return Ok(());
            }
        }
        if decide::commit_due(group.clock.since(last_commit), cmd.commit_interval()) {
            commit(log, group)?;
            last_commit = group.clock.now();
        }
    }
}

/// What one poll batch came to.
struct Batch {
    /// Records and partition ends handled.
    handled: usize,
    /// The batch ended because nothing more had come.
    queue_empty: bool,
}

/// Handles a poll batch's events in order: the records prepared first
/// (all at once, see [`Command::prepare`]), then each handed to its
/// partition. A record is dropped, as librdkafka would have dropped it had
/// it not been fetched yet, when
/// - its partition was sought earlier in the batch: it was fetched before
///   the seek (so is its partition's end);
/// - its partition was taken away by a rebalance handed over while the
///   batch was polled (`handovers` moved): its new owner reads it from the
///   committed checkpoint, which it is not part of;
/// - a commit was given up or the stop came: every partition goes back to
///   its committed checkpoint, or is left.
///
/// A record of an owned partition is never dropped otherwise: its cursor
/// would take the next one as a gap in the log.
fn handle_batch<C: Command>(
    log: &impl GroupLog,
    group: &Group<C>,
    stop: &AtomicBool,
    hooks: &mut C::Loop,
    handovers: u64,
    events: Vec<Event<'_>>,
) -> Result<Batch, Error> {
    let cmd = &group.cmd;
    let records: Vec<Record<'_>> = events
        .iter()
        .filter_map(|e| match e {
            Event::Record(r) => Some(*r),
            _ => None,
        })
        .collect();
    let mut prepared = cmd.prepare(&records).into_iter();
    let assigned = if group.state().handovers != handovers {
        Some(log.assignment()?)
    } else {
        None
    };
    let taken_away = |p: i32| assigned.as_ref().is_some_and(|a| !a.contains(&p));
    let mut sought: Vec<i32> = Vec::new();
    let mut batch = Batch {
        handled: 0,
        queue_empty: false,
    };
    for event in events {
        match event {
            Event::Record(record) => {
                let prepared = prepared.next().expect("one per record");
                if sought.contains(&record.partition) || taken_away(record.partition) {
                    continue;
                }
                cmd.pace(group, hooks);
                if handle(log, group, &record, prepared)? {
                    sought.push(record.partition);
                }
            }
            // Batch runs: everything of the partition up to its end
            // offset has been read.
            Event::End(partition) => {
                if !sought.contains(&partition) {
                    cmd.at_end(group, log, partition)?;
                }
            }
            // A missing ACL (group, topic) never heals by itself;
            // anything else (a broker restarting) librdkafka retries.
            Event::Refused(e) => return Err(e),
            Event::Transient(e) => {
                warn!(error = %e, "consumer error; librdkafka retries");
                break;
            }
            Event::Empty => {
                batch.queue_empty = true;
                break;
            }
        }
        batch.handled += 1;
        if group.state().rewind || stop.load(Ordering::SeqCst) {
            break;
        }
    }
    Ok(batch)
}

/// Takes `record`'s partition on if need be, hands the record to it, and
/// seeks where it says: `true` when it sought.
fn handle<C: Command>(
    log: &impl GroupLog,
    group: &Group<C>,
    record: &Record<'_>,
    prepared: C::Prepared<'_>,
) -> Result<bool, Error> {
    if unless_lost(own(log, group, record.partition))? != Some(true) {
        return Ok(false);
    }
    let handled = group
        .cmd
        .record(log, &mut group.state(), record, prepared)?;
    if let Handled::Seek(to) = handled {
        info!(
            partition = record.partition,
            first = record.offset,
            ?to,
            "seeking partition to its start"
        );
        log.seek(record.partition, to, "seek")?;
        return Ok(true);
    }
    Ok(false)
}

/// Makes `partition` an owned one (from its checkpoint or the log start)
/// if it is not yet; `false` when a commit was given up on the way (the
/// caller waits for the rewind). [`Error::AssignmentLost`] when the group
/// took the assignment away meanwhile: nothing was taken on, and the
/// caller drops what it holds of the partition (the next poll hands every
/// partition over; those given back start again from their committed
/// offsets, so it is read again).
pub(crate) fn own<C: Command>(
    log: &impl GroupLog,
    group: &Group<C>,
    partition: i32,
) -> Result<bool, Error> {
    if group.state().partitions.contains_key(&partition) {
        return Ok(true);
    }
    if group.cmd.transactional() {
        // Reading the committed checkpoint may wait for another member's
        // open transaction to resolve (up to its timeout). Commit ours
        // first, so that none of ours stays open long enough to be aborted.
        commit(log, group)?;
        if group.state().rewind {
            return Ok(false);
        }
    }
    let started = group.cmd.start(group, log, partition)?;
    group.state().partitions.insert(partition, started);
    Ok(true)
}

/// How long a periodic check may go unanswered (see [`Unanswered`]), as
/// long as any other read of committed offsets may wait.
pub(crate) const ANSWER_BUDGET: Duration = Duration::from_secs(120);

/// A periodic check that reads the cluster (the end of a batch run): the
/// time since its reads stopped being answered. librdkafka answers some
/// reads only once the member has served a rebalance inside `poll` (seen
/// after a broker restart: a worker handed its partitions over, the group
/// gave them to the other member, and this member's read of their
/// committed offsets went unanswered for two minutes while it did not
/// poll). So a check whose read was not answered says "not yet", the loop
/// polls, and the check asks again, until `budget` has passed with no
/// answer: then its error ends the run.
#[derive(Debug, Default)]
pub(crate) struct Unanswered {
    since: Option<Instant>,
}

impl Unanswered {
    /// What the loop makes of a check's result at `now`: `false` (not yet)
    /// for a lost assignment or a read that may be answered after a poll.
    pub fn settle(
        &mut self,
        done: Result<bool, Error>,
        now: Instant,
        budget: Duration,
    ) -> Result<bool, Error> {
        match done {
            Err(Error::AssignmentLost(_)) => Ok(false),
            Err(Error::NotAnswered(e)) => {
                let since = *self.since.get_or_insert(now);
                if now.saturating_duration_since(since) >= budget {
                    return Err(*e);
                }
                warn!(error = %e, "not answered yet: polling, then asking again");
                Ok(false)
            }
            done => {
                if done.is_ok() {
                    self.since = None;
                }
                done
            }
        }
    }
}

/// `Ok(None)` for [`Error::AssignmentLost`]: what needed the partitions
/// waits until the next poll has handed them over and they come back.
pub(crate) fn unless_lost<T>(result: Result<T, Error>) -> Result<Option<T>, Error> {
    match result {
        Err(Error::AssignmentLost(during)) => {
            debug!(
                during,
                "the group took the assignment away: polling to hand it over"
            );
            Ok(None)
        }
        result => result.map(Some),
    }
}

/// Makes everything sent durable together with the checkpoint of every
/// owned partition.
pub(crate) fn commit<C: Command>(log: &impl GroupLog, group: &Group<C>) -> Result<(), Error> {
    commit_state(&group.cmd, &mut group.state(), log)
}

fn commit_state<C: Command>(
    cmd: &C,
    state: &mut State<C>,
    consumer: &dyn OffsetCommit,
) -> Result<(), Error> {
    cmd.before_commit(state);
    let mut offsets = Offsets::new(cmd.topic());
    for (&p, partition) in &state.partitions {
        if let Some((offset, metadata)) = cmd.checkpoint(partition) {
            offsets.add(p, offset, metadata);
        }
    }
    let started = state.clock.now();
    let commit = state.sink.commit(&offsets, consumer)?;
    let outcome = match commit {
        Commit::Durable => Outcome::Durable,
        Commit::Rewind { .. } => Outcome::GivenUp,
    };
    let after = decide::after_commit(outcome, std::mem::take(&mut state.emit_pending));
    if after.emitted {
        state.last_emit_ms = Some(state.clock.unix_ms());
    }
    if after.rewind {
        // Nothing of the given-up outputs is visible to read_committed
        // readers; replaying from the committed checkpoints makes them again.
        state.partitions.clear();
        state.rewind = true;
    }
    let took = state.clock.since(started);
    cmd.after_commit(state, &commit, took);
    Ok(())
}

/// Seeks every assigned partition back to its committed checkpoint (the
/// log start without a valid one: the start decides again at its first
/// record), after a given-up commit dropped what was built since.
fn rewind<C: Command>(log: &impl GroupLog, group: &Group<C>) -> Result<(), Error> {
    let assigned = log.assignment()?;
    // A lost assignment needs no rewind: the next poll hands every
    // partition over, and those given back start at their committed
    // offsets. Until then none is owned: whatever is read is dropped
    // (`handle`), as no partition can be taken on.
    let Some(committed) = unless_lost(group.cmd.committed(log, &assigned))? else {
        info!("the group took the assignment away: its hand-over rewinds");
        return Ok(());
    };
    for p in assigned {
        let offset = decide::resume_at(committed.get(&p).copied());
        log.seek(p, offset, "rewind")?;
        info!(
            partition = p,
            ?offset,
            "rewound partition to its committed checkpoint"
        );
    }
    group.cmd.after_rewind(group, log)
}

impl<C: Command> Handover for Group<C> {
    fn revoke(&self, partitions: &[i32], consumer: &dyn OffsetCommit) {
        let mut state = self.state();
        // One commit covers every owned partition: make it whole.
        state.handovers += 1;
        let result = commit_state(&self.cmd, &mut state, consumer);
        for p in partitions {
            state.partitions.remove(p);
        }
        self.cmd.revoked(&mut state, partitions);
        if let Err(e) = result {
            warn!(error = %e, ?partitions, "cannot hand over revoked partitions cleanly; stopping");
            state.fatal.get_or_insert(e);
        }
    }

    fn assigned(&self, partitions: &[i32]) {
        let mut state = self.state();
        state.handovers += 1;
        self.cmd.assigned(&mut state, partitions);
    }

    fn statistics(&self, ends: &[StatsEnds]) {
        self.cmd.statistics(ends);
    }
}
