//! In-memory stand-ins for Kafka behind the driver's traits, for the
//! loop's unit tests and those of the real worker and merge commands: a
//! [`MemoryLog`] (partitions as lists of records, an assignment the test
//! changes, handed over inside the next poll as librdkafka does, the
//! committed offsets with their checkpoints, and optionally the end of
//! each partition announced once, as librdkafka's `enable.partition.eof`)
//! and a [`MemorySink`] (what each transaction forwarded, emitted and
//! published as progress; a commit holds or is given up on demand). Both
//! write what happened, in order, to one [`Tape`] that the tests read.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::{Command, Group, State};
use crate::core::cursor::SeekTo;
use crate::core::frame::Invalid;
use crate::core::window::Closed;
use crate::error::Error;
use crate::kafka::consumer::{GroupMetadata, Handover, OffsetCommit};
use crate::kafka::log::{BatchLimit, CommittedOffset, Event, GroupLog, Record};
use crate::kafka::sink::{Commit, Late, Offsets, Sink};

/// Polls after which a test's loop is taken to never finish (it fails
/// instead of hanging).
const POLL_LIMIT: usize = 100_000;

/// A commit's `(partition, resume offset, checkpoint)`s.
pub(crate) type Entries = Vec<(i32, u64, String)>;

/// One thing the log or the sink saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seen {
    Read {
        partition: i32,
        offset: u64,
    },
    Seek {
        partition: i32,
        to: SeekTo,
    },
    /// A commit of `(partition, resume offset, checkpoint)`s; `held`
    /// unless it was given up.
    Commit {
        offsets: Entries,
        held: bool,
    },
    /// Handed over (after the handover returned).
    Revoked(Vec<i32>),
    Assigned(Vec<i32>),
}

/// What the log and the sink share with the test.
#[derive(Debug, Default)]
pub(crate) struct Tape {
    pub seen: Vec<Seen>,
    /// How many of the next commits are given up (after `hold`).
    pub give_up: usize,
    /// How many of the next commits hold before `give_up` applies.
    pub hold: usize,
    /// Forwarded records `(partition, offset)` of the open transaction.
    pub open: Vec<(i32, u64)>,
    /// Forwarded records made durable, in commit order.
    pub durable: Vec<(i32, u64)>,
    /// Windows, progress and dead letters sent in the open transaction,
    /// and those made durable, in the order sent.
    pub open_outputs: Vec<Output>,
    pub outputs: Vec<Output>,
}

/// An output the sink was given besides forwarded records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Output {
    /// A closed window of a partition.
    Window(i32, Closed),
    /// A shard's progress: every window of the input partition ending at
    /// or below the watermark was emitted.
    Progress(i32, u64),
    /// A record dead-lettered `(partition, offset)`.
    Dead(i32, u64),
}

pub(crate) type SharedTape = Arc<Mutex<Tape>>;

impl Tape {
    /// A tape whose next `hold` commits hold, then `give_up` are given up.
    pub fn shared(hold: usize, give_up: usize) -> SharedTape {
        Arc::new(Mutex::new(Tape {
            hold,
            give_up,
            ..Tape::default()
        }))
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().expect("poisoned")
}

/// A record's key and payload.
pub(crate) type Stored = (Vec<u8>, Vec<u8>);

/// What one poll of the in-memory log brought.
enum Polled {
    Record(i32, u64, Stored),
    End(i32),
    Empty,
}

/// A group's log of one topic in memory. Made with [`MemoryLog::new`], the
/// record at offset `o` of partition `p` has the payload `"p:o"`.
pub(crate) struct MemoryLog<H> {
    handover: Arc<H>,
    tape: SharedTape,
    inner: Mutex<Inner>,
}

struct Inner {
    /// Each partition's records.
    records: Vec<Vec<Stored>>,
    /// Announce each assigned partition's end once it is read to it.
    partition_eof: bool,
    /// The assigned partitions whose end was announced (librdkafka does
    /// not announce it again after a seek).
    announced: BTreeSet<i32>,
    joined: bool,
    assigned: BTreeSet<i32>,
    /// The next assignments, each handed over at the first poll after
    /// that many records were read.
    pending: VecDeque<(usize, Vec<i32>)>,
    /// The next offset to read of each assigned partition.
    position: BTreeMap<i32, u64>,
    committed: BTreeMap<i32, (u64, String)>,
    reads: usize,
    /// The group takes the assignment away once this many records were
    /// read (the member's session ended): see [`MemoryLog::lose_assignment`].
    lose_after: Option<usize>,
    lost: bool,
    polls: usize,
    /// Where the round-robin over the assigned partitions goes on.
    turn: usize,
    /// Most records one poll batch takes (the driver asks for up to its
    /// own limit).
    batch: usize,
}

impl<H: Handover> MemoryLog<H> {
    /// Partitions of `sizes[p]` records; every partition is assigned at
    /// the first poll (joining the group).
    pub fn new(handover: Arc<H>, tape: SharedTape, sizes: &[u64]) -> MemoryLog<H> {
        let records = sizes
            .iter()
            .enumerate()
            .map(|(p, &n)| {
                (0..n)
                    .map(|o| (Vec::new(), format!("{p}:{o}").into_bytes()))
                    .collect()
            })
            .collect();
        MemoryLog::with_records(handover, tape, records, false)
    }

    /// Partitions holding `records`; with `partition_eof` each assigned
    /// partition's end is announced once it is read to it.
    pub fn with_records(
        handover: Arc<H>,
        tape: SharedTape,
        records: Vec<Vec<Stored>>,
        partition_eof: bool,
    ) -> MemoryLog<H> {
        let sizes = records.len() as i32;
        MemoryLog {
            handover,
            tape,
            inner: Mutex::new(Inner {
                records,
                partition_eof,
                announced: BTreeSet::new(),
                joined: false,
                assigned: BTreeSet::new(),
                pending: VecDeque::from([(0, (0..sizes).collect())]),
                position: BTreeMap::new(),
                committed: BTreeMap::new(),
                reads: 0,
                lose_after: None,
                lost: false,
                polls: 0,
                turn: 0,
                batch: usize::MAX,
            }),
        }
    }

    /// The group assigns `partitions` once `after_reads` records were read
    /// (after the assignments asked for before).
    pub fn reassign(&self, after_reads: usize, partitions: Vec<i32>) {
        lock(&self.inner)
            .pending
            .push_back((after_reads, partitions));
    }

    /// The group takes the assignment away right after record
    /// `after_reads` is read, as when the member's session ends: reading
    /// committed offsets fails with [`Error::AssignmentLost`] until the
    /// next poll hands every assigned partition over, and the group gives
    /// them back at once, each from its committed offset.
    /// Takes at most `records` records per poll batch (1: every record
    /// alone, as if nothing more had been fetched).
    pub fn batch(&self, records: usize) {
        lock(&self.inner).batch = records;
    }

    pub fn lose_assignment(&self, after_reads: usize) {
        lock(&self.inner).lose_after = Some(after_reads);
    }

    /// A commit made before the run (by an earlier owner).
    pub fn precommit(&self, partition: i32, offset: u64, checkpoint: &str) {
        lock(&self.inner)
            .committed
            .insert(partition, (offset, checkpoint.to_string()));
    }

    pub fn committed_at(&self, partition: i32) -> Option<(u64, String)> {
        lock(&self.inner).committed.get(&partition).cloned()
    }

    /// Hands a due assignment over as librdkafka's cooperative rebalance
    /// does: the revoked partitions first, then the added ones, which start
    /// at their committed offset (or the log start). A lost assignment is
    /// handed over whole and given back.
    fn rebalance(&self) {
        let (revoked, added) = {
            let mut inner = lock(&self.inner);
            if std::mem::take(&mut inner.lost) {
                let all: Vec<i32> = inner.assigned.iter().copied().collect();
                (all.clone(), all)
            } else {
                let due =
                    matches!(inner.pending.front(), Some((after, _)) if inner.reads >= *after);
                if !due {
                    return;
                }
                let (_, next) = inner.pending.pop_front().expect("due");
                let next: BTreeSet<i32> = next.into_iter().collect();
                let revoked: Vec<i32> = inner.assigned.difference(&next).copied().collect();
                let added: Vec<i32> = next.difference(&inner.assigned).copied().collect();
                (revoked, added)
            }
        };
        if !revoked.is_empty() {
            self.handover.revoke(&revoked, self);
            let mut inner = lock(&self.inner);
            for p in &revoked {
                inner.assigned.remove(p);
                inner.position.remove(p);
                inner.announced.remove(p);
            }
            lock(&self.tape).seen.push(Seen::Revoked(revoked));
        }
        {
            let mut inner = lock(&self.inner);
            for &p in &added {
                let at = inner.committed.get(&p).map_or(0, |(o, _)| *o);
                inner.assigned.insert(p);
                inner.position.insert(p, at);
            }
            inner.joined = true;
        }
        lock(&self.tape).seen.push(Seen::Assigned(added.clone()));
        self.handover.assigned(&added);
    }

    /// An assigned partition read to its end whose end is not announced
    /// yet (with `partition_eof`).
    fn unannounced_end(&self) -> Option<i32> {
        let mut inner = lock(&self.inner);
        if !inner.partition_eof {
            return None;
        }
        let p = inner.assigned.iter().copied().find(|p| {
            !inner.announced.contains(p)
                && inner.position[p] >= inner.records[*p as usize].len() as u64
        })?;
        inner.announced.insert(p);
        Some(p)
    }

    /// One poll: hands a due rebalance over, then takes the next record
    /// or the next unannounced end. No lock is held while the caller
    /// handles what it brought: it seeks, reads committed offsets and
    /// commits.
    fn poll_one(&self) -> Polled {
        let polls = {
            let mut inner = lock(&self.inner);
            inner.polls += 1;
            inner.polls
        };
        assert!(polls < POLL_LIMIT, "the loop never finished: {polls} polls");
        self.rebalance();
        match self.next() {
            Some((partition, offset, stored)) => {
                lock(&self.tape).seen.push(Seen::Read { partition, offset });
                Polled::Record(partition, offset, stored)
            }
            None => match self.unannounced_end() {
                Some(partition) => Polled::End(partition),
                None => Polled::Empty,
            },
        }
    }

    /// The next record of the assigned partitions, taking turns.
    fn next(&self) -> Option<(i32, u64, Stored)> {
        let mut inner = lock(&self.inner);
        let assigned: Vec<i32> = inner.assigned.iter().copied().collect();
        for i in 0..assigned.len() {
            let p = assigned[(inner.turn + i) % assigned.len()];
            let at = inner.position[&p];
            if let Some(record) = inner.records[p as usize].get(at as usize).cloned() {
                inner.position.insert(p, at + 1);
                inner.turn = inner.turn + i + 1;
                inner.reads += 1;
                if inner.lose_after == Some(inner.reads) {
                    inner.lost = true;
                }
                return Some((p, at, record));
            }
        }
        None
    }
}

impl<H: Handover> OffsetCommit for MemoryLog<H> {
    fn group_metadata(&self) -> Option<GroupMetadata> {
        None
    }

    fn commit_offsets(&self, offsets: &Offsets) -> Result<(), Error> {
        let mut inner = lock(&self.inner);
        for e in &offsets.entries {
            inner
                .committed
                .insert(e.partition, (e.offset, e.metadata.clone()));
        }
        Ok(())
    }
}

/// Polls with `poll` until it brings `most` things (at least one) or an
/// event that ends a batch: what an in-memory log's batch holds, and the
/// event that ended it.
pub(crate) fn hold<T>(
    most: usize,
    mut poll: impl FnMut() -> Result<T, Event<'static>>,
) -> (Vec<T>, Option<Event<'static>>) {
    let mut held = Vec::new();
    while held.len() < most.max(1) {
        match poll() {
            Ok(t) => held.push(t),
            Err(end) => return (held, Some(end)),
        }
    }
    (held, None)
}

impl<H: Handover> GroupLog for MemoryLog<H> {
    fn poll<R>(&self, _timeout: Duration, f: impl FnOnce(Event<'_>) -> R) -> R {
        match self.poll_one() {
            Polled::Record(partition, offset, (key, payload)) => f(Event::Record(Record {
                partition,
                offset,
                time: None,
                key: &key,
                payload: &payload,
            })),
            Polled::End(partition) => f(Event::End(partition)),
            Polled::Empty => f(Event::Empty),
        }
    }

    fn poll_batch<R>(
        &self,
        _timeout: Duration,
        limit: BatchLimit,
        f: impl FnOnce(Vec<Event<'_>>) -> R,
    ) -> R {
        let most = limit.records.min(lock(&self.inner).batch);
        let (held, tail) = hold(most, || match self.poll_one() {
            Polled::Record(partition, offset, stored) => Ok((partition, offset, stored)),
            Polled::End(partition) => Err(Event::End(partition)),
            Polled::Empty => Err(Event::Empty),
        });
        let mut events: Vec<Event<'_>> = held
            .iter()
            .map(|(partition, offset, (key, payload))| {
                Event::Record(Record {
                    partition: *partition,
                    offset: *offset,
                    time: None,
                    key,
                    payload,
                })
            })
            .collect();
        events.extend(tail);
        f(events)
    }

    fn seek(&self, partition: i32, to: SeekTo, what: &str) -> Result<(), Error> {
        let mut inner = lock(&self.inner);
        if !inner.assigned.contains(&partition) {
            // As librdkafka answers a seek on a partition not assigned.
            return Err(Error::kafka_at(
                format!("cannot {what} in/{partition}"),
                rdkafka::error::KafkaError::Seek("Local: Erroneous state".into()),
            ));
        }
        let at = match to {
            SeekTo::Offset(o) => o,
            SeekTo::Beginning => 0,
        };
        inner.position.insert(partition, at);
        lock(&self.tape).seen.push(Seen::Seek { partition, to });
        Ok(())
    }

    fn assignment(&self) -> Result<Vec<i32>, Error> {
        Ok(lock(&self.inner).assigned.iter().copied().collect())
    }

    fn joined(&self) -> bool {
        lock(&self.inner).joined
    }

    fn committed(
        &self,
        partitions: &[i32],
        _timeout: Duration,
    ) -> Result<Vec<CommittedOffset>, Error> {
        let inner = lock(&self.inner);
        if inner.lost {
            return Err(Error::AssignmentLost("a read of committed offsets".into()));
        }
        Ok(partitions
            .iter()
            .filter_map(|&partition| {
                let (offset, metadata) = inner.committed.get(&partition)?.clone();
                Some(CommittedOffset {
                    partition,
                    offset,
                    metadata,
                })
            })
            .collect())
    }

    /// Nothing is ever deleted: every log starts at 0.
    fn watermarks(
        &self,
        partition: i32,
        _timeout: Duration,
        what: &str,
    ) -> Result<(i64, i64), Error> {
        let inner = lock(&self.inner);
        match inner.records.get(partition as usize) {
            Some(records) => Ok((0, records.len() as i64)),
            None => Err(Error::kafka_at(
                format!("cannot read offsets of {what}"),
                rdkafka::error::KafkaError::MetadataFetch(
                    rdkafka::types::RDKafkaErrorCode::UnknownPartition,
                ),
            )),
        }
    }

    fn cached_log_start(&self, _partition: i32) -> Option<i64> {
        Some(0)
    }

    fn positions(&self) -> Result<Vec<(i32, Option<i64>)>, Error> {
        let inner = lock(&self.inner);
        Ok(inner
            .position
            .iter()
            .map(|(&p, &o)| (p, Some(o as i64)))
            .collect())
    }

    fn partitions(&self, _timeout: Duration) -> Result<Vec<i32>, Error> {
        Ok((0..lock(&self.inner).records.len() as i32).collect())
    }
}

/// A transactional sink in memory: what is sent waits in the open
/// transaction until a commit makes it durable (with the offsets, into
/// the log) or gives it up.
pub(crate) struct MemorySink {
    pub tape: SharedTape,
}

impl Sink for MemorySink {
    fn emit(&mut self, partition: i32, closed: &Closed) {
        let window = Output::Window(partition, *closed);
        lock(&self.tape).open_outputs.push(window);
    }

    fn forward(&mut self, partition: i32, offset: u64, _payload: &[u8]) -> bool {
        lock(&self.tape).open.push((partition, offset));
        true
    }

    fn dead_letter(&mut self, partition: i32, offset: u64, _payload: &[u8], _reason: Invalid) {
        let dead = Output::Dead(partition, offset);
        lock(&self.tape).open_outputs.push(dead);
    }

    fn late(&mut self, _partition: i32, _offset: u64, _payload: &[u8], _late: Late) -> bool {
        true
    }

    fn progress(&mut self, partition: i32, watermark: u64) {
        let progress = Output::Progress(partition, watermark);
        lock(&self.tape).open_outputs.push(progress);
    }

    fn commit(&mut self, offsets: &Offsets, consumer: &dyn OffsetCommit) -> Result<Commit, Error> {
        let seen: Entries = offsets
            .entries
            .iter()
            .map(|e| (e.partition, e.offset, e.metadata.clone()))
            .collect();
        let held = {
            let mut tape = lock(&self.tape);
            if tape.hold > 0 {
                tape.hold -= 1;
                true
            } else {
                let held = tape.give_up == 0;
                tape.give_up = tape.give_up.saturating_sub(1);
                held
            }
        };
        if held {
            consumer.commit_offsets(offsets)?;
        }
        let mut guard = lock(&self.tape);
        let tape = &mut *guard;
        let open = std::mem::take(&mut tape.open);
        let outputs = std::mem::take(&mut tape.open_outputs);
        if held {
            tape.durable.extend(open);
            tape.outputs.extend(outputs);
        }
        tape.seen.push(Seen::Commit {
            offsets: seen,
            held,
        });
        Ok(if held {
            Commit::Durable
        } else {
            Commit::Rewind {
                producer_replaced: false,
            }
        })
    }
}

/// Reads `group`'s state even after its thread unwound while holding the
/// lock (a simulated crash at a call the loop makes under it, such as a
/// commit): what the command had counted up to there.
pub(crate) fn after_crash<C: Command, R>(group: &Group<C>, read: impl FnOnce(&State<C>) -> R) -> R {
    read(&group.state.lock().unwrap_or_else(PoisonError::into_inner))
}
