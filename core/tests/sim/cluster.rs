//! The simulated Kafka cluster, in memory and deterministic: two topics
//! (the input, and the partials shard workers write for the merge) whose
//! partitions are logs of records and transaction markers (markers take
//! offsets), read_committed reads up to the last stable offset,
//! retention that deletes a log's head, a consumer group with generations
//! and rebalances that fences zombies (KIP-447: offsets sent with a stale
//! generation fail the transaction), and transactions of the members'
//! outputs that commit atomically with the group's offsets, abort, or time
//! out. Time is the scheduler's step count.

use std::collections::{BTreeMap, BTreeSet};

use timebucket_core::merge::MergeCheckpoint;
use timebucket_core::window::Closed;

/// The two topics, each read by its own consumer group: workers read the
/// input, merge members the partials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Topic {
    Input,
    Partials,
}

/// One offset of an input partition.
#[derive(Debug, Clone)]
pub enum Entry {
    Record { payload: Vec<u8>, txn: usize },
    Marker,
}

/// An input transaction's fate so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnState {
    Open,
    Committed,
    Aborted,
}

#[derive(Debug, Default)]
pub struct Log {
    pub entries: Vec<Entry>,
    /// Offsets below were deleted by retention.
    pub log_start: u64,
}

/// An offset commit as the group coordinator keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offset {
    pub offset: u64,
    pub metadata: String,
    /// A merge checkpoint (kept as a value: its text form is the
    /// product's `src/kafka/partials.rs`, not simulated).
    pub merge: Option<MergeCheckpoint>,
}

/// What a member's transaction carries until it commits.
#[derive(Debug, Default)]
pub struct OutTxn {
    /// Its id among the cluster's transactions (records it appends to the
    /// partials topic carry it).
    pub txn: Option<usize>,
    pub windows: Vec<(i32, Closed)>,
    pub dead: Vec<(i32, u64)>,
    pub began: u64,
    /// Offsets sent to the transaction, pending until it ends.
    pub offsets: Option<(Topic, BTreeMap<i32, Offset>)>,
    /// The coordinator aborted it (timeout): the producer is fenced.
    pub fenced: bool,
}

/// The group coordinator's view.
#[derive(Debug, Default)]
pub struct Group {
    pub generation: u64,
    /// Members by id, with the step they were last heard from.
    pub members: BTreeMap<u64, u64>,
    /// A rebalance in progress: members that still have to give up their
    /// partitions before the new assignment.
    pub revoking: Option<BTreeSet<u64>>,
    /// The assignment of `generation`.
    pub assignment: BTreeMap<u64, Vec<i32>>,
}

#[derive(Debug, Default)]
pub struct Cluster {
    pub now: u64,
    pub input: Vec<Log>,
    pub partials: Vec<Log>,
    /// Every transaction's fate: ingest's and the members'.
    pub txns: Vec<TxnState>,
    /// The groups' committed offsets.
    pub committed: BTreeMap<(Topic, i32), Offset>,
    pub groups: BTreeMap<Topic, Group>,
    /// Open output transactions by producer id.
    pub out: BTreeMap<u64, OutTxn>,
    /// Committed outputs: windows and dead letters (input partition, offset).
    pub windows: Vec<(i32, Closed)>,
    pub dead: Vec<(i32, u64)>,
    /// The broker is down until this step (every call fails).
    pub down_until: u64,
    pub session_timeout: u64,
    pub txn_timeout: u64,
    /// For the assignment's order: varied by the seed.
    pub assign_shift: usize,
}

impl Cluster {
    pub fn new(
        partitions: usize,
        partials: usize,
        session_timeout: u64,
        txn_timeout: u64,
    ) -> Cluster {
        Cluster {
            input: (0..partitions).map(|_| Log::default()).collect(),
            partials: (0..partials).map(|_| Log::default()).collect(),
            groups: [Topic::Input, Topic::Partials]
                .into_iter()
                .map(|t| (t, Group::default()))
                .collect(),
            session_timeout,
            txn_timeout,
            ..Cluster::default()
        }
    }

    pub fn down(&self) -> bool {
        self.now < self.down_until
    }

    pub fn log(&self, t: Topic, p: i32) -> &Log {
        match t {
            Topic::Input => &self.input[p as usize],
            Topic::Partials => &self.partials[p as usize],
        }
    }

    fn log_mut(&mut self, t: Topic, p: i32) -> &mut Log {
        match t {
            Topic::Input => &mut self.input[p as usize],
            Topic::Partials => &mut self.partials[p as usize],
        }
    }

    pub fn partitions(&self, t: Topic) -> i32 {
        match t {
            Topic::Input => self.input.len() as i32,
            Topic::Partials => self.partials.len() as i32,
        }
    }

    /// The end offset (high watermark) of partition `p`.
    pub fn end(&self, t: Topic, p: i32) -> u64 {
        self.log(t, p).entries.len() as u64
    }

    /// A new transaction, open.
    pub fn begin(&mut self) -> usize {
        self.txns.push(TxnState::Open);
        self.txns.len() - 1
    }

    /// The last stable offset: the first record of a transaction still open.
    pub fn stable(&self, t: Topic, p: i32) -> u64 {
        let log = self.log(t, p);
        (log.log_start as usize..log.entries.len())
            .find(|&o| matches!(&log.entries[o], Entry::Record { txn, .. } if self.txns[*txn] == TxnState::Open))
            .unwrap_or(log.entries.len()) as u64
    }

    /// Appends a record in transaction `txn`.
    pub fn append(&mut self, t: Topic, p: i32, txn: usize, payload: Vec<u8>) {
        self.log_mut(t, p)
            .entries
            .push(Entry::Record { payload, txn });
    }

    /// Ends input transaction `txn`: a marker in every partition it wrote.
    pub fn end_txn(&mut self, txn: usize, commit: bool) {
        if self.txns[txn] != TxnState::Open {
            return;
        }
        self.txns[txn] = if commit {
            TxnState::Committed
        } else {
            TxnState::Aborted
        };
        for log in self.input.iter_mut().chain(self.partials.iter_mut()) {
            let touched = log
                .entries
                .iter()
                .any(|e| matches!(e, Entry::Record { txn: t, .. } if *t == txn));
            if touched {
                log.entries.push(Entry::Marker);
            }
        }
    }

    /// read_committed from `position`: the next record handed over and its
    /// offset, moving the position past markers and aborted records below
    /// the last stable offset. `None`: nothing to hand over (yet).
    pub fn fetch(&self, t: Topic, p: i32, position: &mut u64) -> Option<(u64, Vec<u8>)> {
        let log = self.log(t, p);
        // Out of range: auto.offset.reset = earliest.
        *position = (*position).max(log.log_start);
        let stable = self.stable(t, p);
        while *position < stable {
            let o = *position;
            *position += 1;
            if let Entry::Record { payload, txn } = &log.entries[o as usize] {
                if self.txns[*txn] == TxnState::Committed {
                    return Some((o, payload.clone()));
                }
            }
        }
        None
    }

    /// Whether a transaction holding offsets for `p` is pending (a
    /// read_committed fetch of committed offsets waits for it).
    pub fn offsets_pending(&self, topic: Topic, p: i32) -> bool {
        self.out.values().any(|t| {
            t.offsets
                .as_ref()
                .is_some_and(|(t, o)| *t == topic && o.contains_key(&p))
        })
    }

    /// Retention: deletes the head of `p` up to `to` (never past the end).
    pub fn delete_head(&mut self, t: Topic, p: i32, to: u64) {
        let log = self.log_mut(t, p);
        log.log_start = log.log_start.max(to.min(log.entries.len() as u64));
    }

    /// Advances time: evicts silent members (a rebalance) and aborts
    /// transactions open past their timeout.
    pub fn tick(&mut self) {
        self.now += 1;
        let now = self.now;
        let timeout = self.session_timeout;
        for t in [Topic::Input, Topic::Partials] {
            if self.down() {
                // A coordinator that loads the group again restarts every
                // member's session.
                for seen in self.group_mut(t).members.values_mut() {
                    *seen = now;
                }
            }
            let silent: Vec<u64> = self.groups[&t]
                .members
                .iter()
                .filter(|(_, &seen)| now - seen > timeout)
                .map(|(&m, _)| m)
                .collect();
            for m in silent {
                self.leave(t, m);
            }
        }
        let txn_timeout = self.txn_timeout;
        let mut timed_out = Vec::new();
        for t in self.out.values_mut() {
            if !t.fenced && now - t.began > txn_timeout {
                t.fenced = true;
                t.offsets = None;
                t.windows.clear();
                t.dead.clear();
                timed_out.extend(t.txn);
            }
        }
        for txn in timed_out {
            self.end_txn(txn, false);
        }
        for t in [Topic::Input, Topic::Partials] {
            self.complete_rebalance(t);
        }
    }

    pub fn group(&self, t: Topic) -> &Group {
        &self.groups[&t]
    }

    fn group_mut(&mut self, t: Topic) -> &mut Group {
        self.groups.get_mut(&t).expect("both groups exist")
    }

    /// Whether `member` is in `t`'s group, and notes that it was heard from.
    pub fn heartbeat(&mut self, t: Topic, member: u64) -> bool {
        let now = self.now;
        match self.group_mut(t).members.get_mut(&member) {
            Some(seen) => {
                *seen = now;
                true
            }
            None => false,
        }
    }

    pub fn join(&mut self, t: Topic, member: u64) {
        let now = self.now;
        self.group_mut(t).members.insert(member, now);
        self.start_rebalance(t);
    }

    pub fn leave(&mut self, t: Topic, member: u64) {
        if self.group_mut(t).members.remove(&member).is_some() {
            self.start_rebalance(t);
        }
    }

    fn start_rebalance(&mut self, t: Topic) {
        // The generation moves on when the rebalance completes: the
        // handover commits of the revoke callbacks are made in the old one.
        let group = self.group_mut(t);
        group.assignment.clear();
        let owners: BTreeSet<u64> = group.members.keys().copied().collect();
        group.revoking = Some(owners);
        self.complete_rebalance(t);
    }

    /// Whether `member` must give up its partitions for a rebalance.
    pub fn must_revoke(&self, t: Topic, member: u64) -> bool {
        let group = self.group(t);
        group.revoking.as_ref().is_some_and(|r| r.contains(&member))
    }

    /// Member `member` gave up its partitions for the rebalance.
    pub fn revoked(&mut self, t: Topic, member: u64) {
        if let Some(r) = &mut self.group_mut(t).revoking {
            r.remove(&member);
        }
        self.complete_rebalance(t);
    }

    fn complete_rebalance(&mut self, t: Topic) {
        let partitions = self.partitions(t);
        let shift = self.assign_shift;
        let group = self.group_mut(t);
        let Some(waiting) = &group.revoking else {
            return;
        };
        let waiting: BTreeSet<u64> = waiting
            .iter()
            .filter(|m| group.members.contains_key(m))
            .copied()
            .collect();
        if !waiting.is_empty() {
            group.revoking = Some(waiting);
            return;
        }
        group.revoking = None;
        group.generation += 1;
        let members: Vec<u64> = group.members.keys().copied().collect();
        let mut assignment: BTreeMap<u64, Vec<i32>> =
            members.iter().map(|&m| (m, Vec::new())).collect();
        if !members.is_empty() {
            for p in 0..partitions {
                let m = members[(p as usize + shift) % members.len()];
                assignment.get_mut(&m).expect("listed").push(p);
            }
        }
        group.assignment = assignment;
    }

    /// The partitions `member` holds in `generation`, if that is current.
    pub fn assignment(&self, t: Topic, member: u64, generation: u64) -> Option<&Vec<i32>> {
        let group = self.group(t);
        if generation != group.generation || group.revoking.is_some() {
            return None;
        }
        group.assignment.get(&member)
    }

    /// Commits producer `producer`'s transaction with `offsets` sent under
    /// `generation` by `member`: `Err` when it cannot (broker down, fenced
    /// producer or zombie member), and then nothing of it is visible.
    pub fn commit(&mut self, producer: u64, member: u64, generation: u64) -> Result<(), ()> {
        if self.down() {
            return Err(());
        }
        let txn = self.out.remove(&producer).unwrap_or_default();
        let zombie = txn.offsets.as_ref().is_some_and(|(t, offsets)| {
            let group = self.group(*t);
            !offsets.is_empty()
                && (generation != group.generation || !group.members.contains_key(&member))
        });
        if txn.fenced || zombie {
            if let Some(id) = txn.txn {
                // A no-op for a transaction the timeout already aborted.
                self.end_txn(id, false);
            }
            return Err(());
        }
        if let Some(id) = txn.txn {
            self.end_txn(id, true);
        }
        self.windows.extend(txn.windows);
        self.dead.extend(txn.dead);
        if let Some((t, offsets)) = txn.offsets {
            self.committed
                .extend(offsets.into_iter().map(|(p, o)| ((t, p), o)));
        }
        Ok(())
    }

    /// Aborts producer `producer`'s open transaction.
    pub fn abort(&mut self, producer: u64) {
        if let Some(id) = self.out.remove(&producer).and_then(|t| t.txn) {
            self.end_txn(id, false);
        }
    }
}
