//! One member's view of the simulated cluster (`core/tests/sim/cluster.rs`,
//! shared with the model simulator): a [`SimLog`] (the group consumer:
//! joins, hands rebalances over inside `poll` as librdkafka does, reads
//! read_committed up to the last stable offset, announces a partition's
//! end once) and a [`SimSink`] (a transactional producer whose commit
//! carries the offsets under the member's generation: a zombie's or a
//! fenced producer's commit is given up). Every call is a yield point of
//! the [`Baton`]; a call the cluster cannot answer (broker down, offsets of
//! an open transaction) yields until it can, as librdkafka retries.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::baton::Baton;
use super::cluster::{Cluster, Offset, OutTxn, Topic};
use crate::cmd::driver::memory::hold;
use crate::core::frame::Invalid;
use crate::core::window::Closed;
use crate::error::Error;
use crate::kafka::consumer::{Handover, OffsetCommit};
use crate::kafka::log::{BatchLimit, CommittedOffset, Event, GroupLog, Record};
use crate::kafka::sink::{Commit, Late, Offsets, Sink};

pub(super) type Shared = Arc<Mutex<Cluster>>;

fn lock(c: &Shared) -> MutexGuard<'_, Cluster> {
    c.lock().expect("poisoned")
}

/// What the member's log and sink share.
pub(super) struct Member {
    pub id: u64,
    pub topic: Topic,
    pub cluster: Shared,
    pub baton: Arc<Baton>,
    /// The generation of the assignment the member holds (0: none yet).
    pub generation: Mutex<u64>,
    /// Shared by every member of the schedule.
    pub reach: Reached,
}

/// What the members of a schedule read of each partition, crashed ones
/// too: retention may delete the head of a partition no member was handed
/// a record of beyond its committed offset without anyone having read what
/// it deletes; what it deletes beyond the furthest fetch position is owed
/// to the count (`retention.rs`).
#[derive(Debug, Default)]
pub(super) struct Reach {
    /// The partitions of which some member was handed a record.
    pub handed: BTreeSet<(Topic, i32)>,
    /// The furthest fetch position a member reached, records or not.
    pub passed: BTreeMap<(Topic, i32), u64>,
}

pub(super) type Reached = Arc<Mutex<Reach>>;

impl Member {
    /// A yield point; then the cluster, locked. The client heartbeats in
    /// the background, as librdkafka does: only a stalled member is evicted.
    fn step(&self) -> MutexGuard<'_, Cluster> {
        self.baton.yield_now(self.id);
        let mut c = lock(&self.cluster);
        if !c.down() {
            c.heartbeat(self.topic, self.id);
        }
        c
    }

    /// Yields until the broker is up; the cluster, locked.
    fn up(&self) -> MutexGuard<'_, Cluster> {
        loop {
            let c = self.step();
            if !c.down() {
                return c;
            }
            tracing::trace!(step = c.now, "broker down: asking again");
        }
    }

    fn generation(&self) -> u64 {
        *self.generation.lock().expect("poisoned")
    }
}

/// The member's group consumer.
pub(super) struct SimLog {
    pub member: Arc<Member>,
    pub handover: Arc<dyn Handover>,
    state: Mutex<Reading>,
}

#[derive(Default)]
struct Reading {
    /// Assigned partitions and their fetch positions.
    position: BTreeMap<i32, u64>,
    announced: BTreeSet<i32>,
    turn: usize,
}

impl SimLog {
    pub fn new(member: Arc<Member>, handover: Arc<dyn Handover>) -> SimLog {
        lock(&member.cluster).join(member.topic, member.id);
        SimLog {
            member,
            handover,
            state: Mutex::new(Reading::default()),
        }
    }

    fn reading(&self) -> MutexGuard<'_, Reading> {
        self.state.lock().expect("poisoned")
    }

    /// Gives every assigned partition up (the handover commits), as a
    /// rebalance's revoke or a close does.
    fn revoke_all(&self) {
        let assigned: Vec<i32> = self.reading().position.keys().copied().collect();
        if !assigned.is_empty() {
            self.handover.revoke(&assigned, self);
        }
        let mut reading = self.reading();
        reading.position.clear();
        reading.announced.clear();
    }

    /// One poll: a yield point, a due rebalance handed over, then the next
    /// record or partition end.
    fn poll_one(&self) -> Option<Fetched> {
        drop(self.member.step());
        self.rebalance();
        tracing::trace!(generation = self.member.generation(), "poll");
        self.next()
    }

    /// A fetched record as the driver sees it (a partials record split
    /// into its key and value).
    fn record<'a>(&self, partition: i32, offset: u64, payload: &'a [u8]) -> Event<'a> {
        let (key, payload) = match self.member.topic {
            Topic::Input => (&[][..], payload),
            Topic::Partials => {
                let nul = payload.iter().position(|&b| b == 0).expect("keyed");
                (&payload[..nul], &payload[nul + 1..])
            }
        };
        Event::Record(Record {
            partition,
            offset,
            time: None,
            key,
            payload,
        })
    }

    /// Leaving the group on close: hands the partitions over, then leaves.
    pub fn close(&self) {
        let t = self.member.topic;
        drop(self.member.step());
        self.revoke_all();
        lock(&self.member.cluster).leave(t, self.member.id);
    }

    /// The group's part of a poll: heartbeat (rejoin after an eviction,
    /// the partitions lost), revoke for a rebalance, take an assignment.
    fn rebalance(&self) {
        let (t, id) = (self.member.topic, self.member.id);
        let mut c = lock(&self.member.cluster);
        if c.down() {
            return;
        }
        if !c.heartbeat(t, id) {
            // Evicted (a stall past the session timeout): the partitions
            // are lost; the handover's commit is refused as a zombie's.
            drop(c);
            self.revoke_all();
            c = lock(&self.member.cluster);
            c.join(t, id);
        }
        if c.must_revoke(t, id) {
            drop(c);
            self.revoke_all();
            lock(&self.member.cluster).revoked(t, id);
            return;
        }
        let generation = c.group(t).generation;
        if generation == self.member.generation() {
            return;
        }
        let Some(assigned) = c.assignment(t, id, generation).cloned() else {
            return;
        };
        let starts: Vec<(i32, u64)> = assigned
            .iter()
            .map(|&p| {
                let at = c.committed.get(&(t, p)).map_or(0, |o| o.offset);
                (p, at.max(c.log(t, p).log_start))
            })
            .collect();
        drop(c);
        *self.member.generation.lock().expect("poisoned") = generation;
        let added: Vec<i32> = {
            let mut reading = self.reading();
            let added = assigned
                .iter()
                .filter(|p| !reading.position.contains_key(p))
                .copied()
                .collect();
            reading.position = starts.into_iter().collect();
            reading.announced.clear();
            added
        };
        self.handover.assigned(&added);
    }

    /// The next committed record of an assigned partition, taking turns, or
    /// a partition's end not announced yet.
    fn next(&self) -> Option<Fetched> {
        let c = lock(&self.member.cluster);
        if c.down() {
            return None;
        }
        let t = self.member.topic;
        let mut reading = self.reading();
        let parts: Vec<i32> = reading.position.keys().copied().collect();
        for i in 0..parts.len() {
            let p = parts[(reading.turn + i) % parts.len()];
            let mut at = reading.position[&p];
            let fetched = c.fetch(t, p, &mut at);
            reading.position.insert(p, at);
            let mut reach = self.member.reach.lock().expect("poisoned");
            let passed = reach.passed.entry((t, p)).or_default();
            *passed = (*passed).max(at);
            if let Some((offset, payload)) = fetched {
                reach.handed.insert((t, p));
                reading.turn += i + 1;
                return Some(Ok((p, offset, payload)));
            }
            if at >= c.end(t, p) && reading.announced.insert(p) {
                return Some(Err(p));
            }
        }
        None
    }
}

/// A record `(partition, offset, payload)`, or the end of a partition.
type Fetched = Result<(i32, u64, Vec<u8>), i32>;

/// A partials record's payload in the cluster: key, NUL, value.
pub(super) fn keyed(key: &[u8], value: &[u8]) -> Vec<u8> {
    [key, b"\0", value].concat()
}

impl OffsetCommit for SimLog {
    fn group_metadata(&self) -> Option<crate::kafka::consumer::GroupMetadata> {
        None
    }

    fn commit_offsets(&self, _offsets: &Offsets) -> Result<(), Error> {
        unreachable!("the simulated members commit in transactions")
    }
}

impl GroupLog for SimLog {
    fn poll<R>(&self, _timeout: Duration, f: impl FnOnce(Event<'_>) -> R) -> R {
        match self.poll_one() {
            Some(Ok((partition, offset, payload))) => f(self.record(partition, offset, &payload)),
            Some(Err(partition)) => f(Event::End(partition)),
            None => f(Event::Empty),
        }
    }

    /// Up to a few records (1 to 5, by the member's id), a rebalance
    /// possibly handed over between any two: the driver's handling of
    /// records fetched before a seek or a revocation is exercised.
    fn poll_batch<R>(
        &self,
        _timeout: Duration,
        limit: BatchLimit,
        f: impl FnOnce(Vec<Event<'_>>) -> R,
    ) -> R {
        let most = limit.records.min(1 + (self.member.id % 5) as usize);
        let (held, tail) = hold(most, || match self.poll_one() {
            Some(Ok(fetched)) => Ok(fetched),
            Some(Err(partition)) => Err(Event::End(partition)),
            None => Err(Event::Empty),
        });
        let mut events: Vec<Event<'_>> = held
            .iter()
            .map(|(partition, offset, payload)| self.record(*partition, *offset, payload))
            .collect();
        events.extend(tail);
        f(events)
    }

    fn seek(
        &self,
        partition: i32,
        to: crate::core::cursor::SeekTo,
        what: &str,
    ) -> Result<(), Error> {
        drop(self.member.step());
        let mut reading = self.reading();
        let Some(at) = reading.position.get_mut(&partition) else {
            // As librdkafka answers a seek on a partition not assigned.
            return Err(Error::kafka_at(
                format!("cannot {what} {partition}"),
                rdkafka::error::KafkaError::Seek("Local: Erroneous state".into()),
            ));
        };
        *at = match to {
            crate::core::cursor::SeekTo::Offset(o) => o,
            crate::core::cursor::SeekTo::Beginning => 0,
        };
        Ok(())
    }

    fn assignment(&self) -> Result<Vec<i32>, Error> {
        drop(self.member.step());
        Ok(self.reading().position.keys().copied().collect())
    }

    fn joined(&self) -> bool {
        self.member.generation() > 0
    }

    fn committed(&self, partitions: &[i32], _: Duration) -> Result<Vec<CommittedOffset>, Error> {
        let t = self.member.topic;
        loop {
            let c = self.member.up();
            // read_committed: no answer while a transaction holding offsets
            // for them is open.
            if partitions.iter().any(|&p| c.offsets_pending(t, p)) {
                tracing::trace!(step = c.now, "offsets pending: asking again");
                continue;
            }
            return Ok(partitions
                .iter()
                .filter_map(|&partition| {
                    let o = c.committed.get(&(t, partition))?;
                    Some(CommittedOffset {
                        partition,
                        offset: o.offset,
                        metadata: o.metadata.clone(),
                    })
                })
                .collect());
        }
    }

    fn watermarks(&self, partition: i32, _: Duration, _what: &str) -> Result<(i64, i64), Error> {
        let c = self.member.up();
        let t = self.member.topic;
        Ok((
            c.log(t, partition).log_start as i64,
            c.end(t, partition) as i64,
        ))
    }

    fn cached_log_start(&self, partition: i32) -> Option<i64> {
        Some(
            lock(&self.member.cluster)
                .log(self.member.topic, partition)
                .log_start as i64,
        )
    }

    fn positions(&self) -> Result<Vec<(i32, Option<i64>)>, Error> {
        let reading = self.reading();
        Ok(reading
            .position
            .iter()
            .map(|(&p, &o)| (p, Some(o as i64)))
            .collect())
    }

    fn partitions(&self, _: Duration) -> Result<Vec<i32>, Error> {
        let c = self.member.up();
        Ok((0..c.partitions(self.member.topic)).collect())
    }
}

/// The member's transactional producer (its id is the member's).
pub(super) struct SimSink {
    pub member: Arc<Member>,
    /// Sharded workers: partial windows and progress go to the partials
    /// topic, in the transaction.
    pub partials: bool,
}

impl SimSink {
    /// The member's open transaction (begun on first use).
    fn with_txn<R>(&self, f: impl FnOnce(&mut Cluster, &mut OutTxn) -> R) -> R {
        let mut c = self.member.step();
        let now = c.now;
        let mut txn = c.out.remove(&self.member.id).unwrap_or_else(|| OutTxn {
            began: now,
            ..OutTxn::default()
        });
        let r = f(&mut c, &mut txn);
        c.out.insert(self.member.id, txn);
        r
    }

    fn append(&self, partition: i32, key: &[u8], value: &[u8]) {
        self.with_txn(|c, txn| {
            if txn.fenced {
                return;
            }
            let id = *txn.txn.get_or_insert_with(|| c.begin());
            c.append(Topic::Partials, partition, id, keyed(key, value));
        });
    }
}

impl Sink for SimSink {
    fn emit(&mut self, partition: i32, closed: &Closed) {
        if self.partials {
            let key = crate::kafka::partials::partial_key(closed);
            let value = crate::core::metric::MetricRecord::new(*closed, partition).to_json();
            let partitions = lock(&self.member.cluster).partitions(Topic::Partials) as u32;
            let q = crate::kafka::partials::partition_of(&key, partitions);
            self.append(q, key.as_bytes(), value.as_bytes());
        } else {
            self.with_txn(|_, txn| txn.windows.push((partition, *closed)));
        }
    }

    fn forward(&mut self, _partition: i32, _offset: u64, _payload: &[u8]) -> bool {
        true
    }

    fn dead_letter(&mut self, partition: i32, offset: u64, _payload: &[u8], _reason: Invalid) {
        self.with_txn(|_, txn| txn.dead.push((partition, offset)));
    }

    fn late(&mut self, _partition: i32, _offset: u64, _payload: &[u8], _late: Late) -> bool {
        true
    }

    fn progress(&mut self, partition: i32, watermark: u64) {
        let key = crate::kafka::partials::progress_key(partition);
        let value = crate::kafka::partials::progress_value(partition, watermark);
        let partitions = lock(&self.member.cluster).partitions(Topic::Partials);
        for q in 0..partitions {
            self.append(q, key.as_bytes(), value.as_bytes());
        }
    }

    fn commit(&mut self, offsets: &Offsets, _consumer: &dyn OffsetCommit) -> Result<Commit, Error> {
        let generation = self.member.generation();
        let (topic, id) = (self.member.topic, self.member.id);
        let sent: BTreeMap<i32, Offset> = offsets
            .entries
            .iter()
            .map(|e| {
                let offset = Offset {
                    offset: e.offset,
                    metadata: e.metadata.clone(),
                    merge: None,
                };
                (e.partition, offset)
            })
            .collect();
        // A fenced producer's offsets never reach the coordinator.
        self.with_txn(|_, txn| {
            if !txn.fenced {
                txn.offsets = Some((topic, sent));
            }
        });
        let mut c = self.member.step();
        let held = c.commit(id, id, generation);
        tracing::debug!(
            step = c.now,
            generation,
            ?held,
            ?offsets,
            "simulated commit"
        );
        Ok(match held {
            Ok(()) => Commit::Durable,
            Err(()) => {
                c.abort(id);
                Commit::Rewind {
                    producer_replaced: false,
                }
            }
        })
    }
}
