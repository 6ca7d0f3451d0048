//! One simulated worker process: a consumer-group member that runs the
//! product's decisions (the [`Partition`] state machine, where to start,
//! the checkpoint as commit metadata, and the end of a batch run,
//! [`drain_step`]) against the simulated [`Cluster`]. Its loop follows
//! `src/cmd/worker/poll.rs` step by step (poll a batch, carry out each
//! [`Step`], commit on interval, rewind after a commit given up, hand over
//! on rebalance, drain); one call of [`Worker::step`] is one iteration.

use std::collections::BTreeMap;

use timebucket_core::bucket::Routing;
use timebucket_core::checkpoint::{decode_checkpoint, encode_checkpoint};
use timebucket_core::ends::{drain_step, Member};
use timebucket_core::frame::Invalid;
use timebucket_core::murmur2::positive_murmur2;
use timebucket_core::partition::{Partition, Rules, SeekTo, Start, Step};
use timebucket_core::window::{Checkpoint, Closed};

use crate::cluster::{Cluster, Offset, OutTxn, Topic};
use crate::consumer::{Consumer, Polled, Rebalance};
use crate::rng::Rng;

/// Why a step stopped before its end.
#[derive(Debug)]
pub enum Halt {
    /// A call would still be waiting (broker down, a pending transaction):
    /// the iteration is tried again at the member's next turn.
    Blocked,
    /// The scheduler crashed the process here.
    Crash,
}

/// How the run ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ends {
    /// `--until-end`: end offsets read at start; end-of-partition events on.
    AtStart(BTreeMap<i32, u64>),
    /// `--until-offsets @FILE`: known once the input is complete; no
    /// end-of-partition events.
    Awaited(Option<BTreeMap<i32, u64>>),
}

impl Ends {
    pub fn eof_events(&self) -> bool {
        matches!(self, Ends::AtStart(_))
    }
}

/// What every member is configured with.
#[derive(Debug, Clone)]
pub struct Config {
    pub rules: Rules,
    /// The input's routing (sharded: windows are partials for the merge).
    pub routing: Routing,
    /// The partials topic's partition count.
    pub partials: u32,
    pub batch: usize,
    pub commit_every: u64,
    /// Chance (per mille) of a crash at each crash point.
    pub crash_per_mille: u32,
}

pub struct Worker {
    pub id: u64,
    pub producer: u64,
    pub consumer: Consumer,
    partitions: BTreeMap<i32, Partition>,
    /// Sharded: the progress last sent for each owned partition.
    progress_sent: BTreeMap<i32, u64>,
    closed: Vec<Closed>,
    rewind: bool,
    at_end: BTreeMap<i32, u64>,
    pending_end: Vec<i32>,
    last_commit: u64,
    pub done: bool,
    pub config: Config,
    pub transactions_aborted: u64,
}

/// A member with the cluster, the scheduler's dice and the run's end: what
/// [`drain_step`] drives.
pub struct Turn<'a> {
    pub w: &'a mut Worker,
    pub c: &'a mut Cluster,
    pub rng: &'a mut Rng,
    pub ends: &'a Ends,
    /// Whether the scheduler still injects faults (crash points fire).
    pub faults: bool,
}

impl Worker {
    pub fn new(id: u64, producer: u64, config: Config) -> Worker {
        Worker {
            id,
            producer,
            consumer: Consumer::new(Topic::Input, id),
            partitions: BTreeMap::new(),
            progress_sent: BTreeMap::new(),
            closed: Vec::new(),
            rewind: false,
            at_end: BTreeMap::new(),
            pending_end: Vec::new(),
            last_commit: 0,
            done: false,
            config,
            transactions_aborted: 0,
        }
    }
}

impl Worker {
    /// Where it is, for a failing schedule's report.
    pub fn describe(&self) -> String {
        let owned: Vec<(i32, u64, bool)> = self
            .partitions
            .iter()
            .map(|(&p, x)| (p, x.position(), x.has_open_windows()))
            .collect();
        format!(
            "owned {owned:?} fetch {:?} at_end {:?} rewind {} pending_end {:?}",
            self.consumer.positions(),
            self.at_end,
            self.rewind,
            self.pending_end
        )
    }
}

impl Turn<'_> {
    fn crash_point(&mut self) -> Result<(), Halt> {
        if self.faults && self.rng.per_mille(self.w.config.crash_per_mille) {
            return Err(Halt::Crash);
        }
        Ok(())
    }

    fn txn(&mut self) -> &mut OutTxn {
        txn(self.c, self.w.producer)
    }

    fn sharded(&self) -> bool {
        self.w.config.routing.shards() > 1
    }

    /// One iteration of the worker's loop.
    pub fn step(&mut self) -> Result<(), Halt> {
        if self.w.done {
            return Ok(());
        }
        self.group()?;
        // The real loop blocks (retrying) until the rewind is done: keep
        // it pending until it is.
        if self.w.rewind {
            self.seek_to_checkpoints()?;
            self.w.rewind = false;
            for p in std::mem::take(&mut self.w.pending_end) {
                self.on_end(p)?;
            }
        }
        for _ in 0..self.w.config.batch {
            let Some((p, polled)) = self.poll()? else {
                break;
            };
            match polled {
                Polled::Record(offset, payload) => self.handle(p, offset, &payload)?,
                Polled::End => self.on_end(p)?,
            }
            if self.w.rewind {
                break;
            }
            self.crash_point()?;
        }
        if self.w.rewind {
            self.seek_to_checkpoints()?;
            self.w.rewind = false;
        }
        if let Some(targets) = self.targets() {
            if drain_step(self, &targets, self.sharded())? {
                self.commit_all()?;
                if !self.w.rewind {
                    self.w.done = true;
                    // Leaving the group revokes what it owns: the handover commits.
                    self.revoke()?;
                    self.c.leave(Topic::Input, self.w.id);
                    return Ok(());
                }
            }
        }
        if self.c.now - self.w.last_commit >= self.w.config.commit_every {
            self.commit_all()?;
            self.w.last_commit = self.c.now;
        }
        Ok(())
    }

    fn targets(&self) -> Option<BTreeMap<i32, u64>> {
        match self.ends {
            Ends::AtStart(t) => Some(t.clone()),
            Ends::Awaited(t) => t.clone(),
        }
    }

    /// Heartbeat and rebalance callbacks (they run inside `poll`).
    fn group(&mut self) -> Result<(), Halt> {
        match self.w.consumer.heartbeat(self.c) {
            Rebalance::None => {}
            // Evicted (a zombie): the handover commit fails, fenced, and
            // the outputs are dropped.
            Rebalance::Lost => self.revoke()?,
            Rebalance::Revoke => {
                self.revoke()?;
                self.w.consumer.revoked(self.c);
            }
        }
        self.w.consumer.assign(self.c);
        Ok(())
    }

    /// Gives up every partition: commits what it owns first.
    fn revoke(&mut self) -> Result<(), Halt> {
        let result = self.commit_state();
        self.w.partitions.clear();
        self.w.progress_sent.clear();
        self.w.consumer.assigned.clear();
        result
    }

    fn poll(&mut self) -> Result<Option<(i32, Polled)>, Halt> {
        let eof = self.ends.eof_events();
        Ok(self.w.consumer.poll(self.c, self.rng, eof))
    }

    fn handle(&mut self, p: i32, offset: u64, payload: &[u8]) -> Result<(), Halt> {
        if !self.own(p)? {
            return Ok(());
        }
        let w = &mut *self.w;
        let partition = w.partitions.get_mut(&p).expect("owned");
        let step = partition.on_record(offset, None, payload, &mut w.closed);
        partition.take_gap();
        match step {
            Step::Seek(to) => {
                let to = match to {
                    SeekTo::Offset(o) => o,
                    SeekTo::Beginning => 0,
                };
                w.consumer.seek(p, to);
            }
            Step::Invalid {
                reason,
                replay: false,
            } => {
                assert_ne!(reason, Invalid::WrongPartition, "routing is consistent");
                self.txn().dead.push((p, offset));
            }
            _ => {}
        }
        self.emit(p);
        Ok(())
    }

    /// Sends the closed windows: to the metric topics, or (sharded) as
    /// partials to the partials partition of their window's key.
    fn emit(&mut self, p: i32) {
        if self.w.closed.is_empty() {
            return;
        }
        let closed: Vec<(i32, Closed)> = self.w.closed.drain(..).map(|c| (p, c)).collect();
        if !self.sharded() {
            self.txn().windows.extend(closed);
            return;
        }
        let id = txn_id(self.c, self.w.producer);
        let q = self.w.config.partials;
        for (p, c) in closed {
            let (key, payload) = crate::merge::partial(p, &c);
            let to = (positive_murmur2(key.as_bytes()) % q) as i32;
            self.c.append(Topic::Partials, to, id, payload);
        }
    }

    /// Sharded: every owned partition's progress that changed since it
    /// was last sent, to every partials partition.
    fn send_progress(&mut self) {
        let changed: Vec<(i32, u64)> = self
            .w
            .partitions
            .iter()
            .filter_map(|(&p, partition)| Some((p, partition.checkpoint().emitted?.0)))
            .filter(|(p, e)| self.w.progress_sent.get(p) != Some(e))
            .collect();
        if changed.is_empty() {
            return;
        }
        let id = txn_id(self.c, self.w.producer);
        for (p, emitted) in changed {
            for q in 0..self.w.config.partials as i32 {
                self.c
                    .append(Topic::Partials, q, id, crate::merge::progress(p, emitted));
            }
            self.w.progress_sent.insert(p, emitted);
        }
    }

    /// `ends.rs` `on_end`: notes where the log announced the end.
    fn on_end(&mut self, p: i32) -> Result<(), Halt> {
        if !self.w.consumer.assigned.contains_key(&p) {
            return Ok(());
        }
        if !self.own(p)? {
            self.w.pending_end.push(p);
            return Ok(());
        }
        let log_start = self.c.input[p as usize].log_start;
        let partition = self.w.partitions.get_mut(&p).expect("owned");
        if !partition.started() && log_start > partition.position() {
            partition.skip_to(log_start);
        }
        let position = partition.position();
        self.w.at_end.insert(p, position);
        Ok(())
    }

    /// `poll.rs` `own`: commits first, then starts from the committed
    /// checkpoint or the log start.
    fn owns(&mut self, p: i32) -> Result<bool, Halt> {
        if self.w.partitions.contains_key(&p) {
            return Ok(true);
        }
        self.commit_all()?;
        if self.w.rewind {
            return Ok(false);
        }
        let start = match self.committed_checkpoint(p)? {
            Some(cp) => Start::Checkpoint(cp),
            None => Start::Fresh {
                log_start: self.c.input[p as usize].log_start,
            },
        };
        let routing = self.w.config.routing;
        let partition = Partition::new(start, self.w.config.rules).guarded(routing, p as u32);
        self.w.partitions.insert(p, partition);
        Ok(true)
    }

    fn committed_checkpoint(&mut self, p: i32) -> Result<Option<Checkpoint>, Halt> {
        if self.c.down() || self.c.offsets_pending(Topic::Input, p) {
            return Err(Halt::Blocked);
        }
        Ok(self.c.committed.get(&(Topic::Input, p)).map(|o| {
            decode_checkpoint(o.offset, &o.metadata).expect("the sim commits checkpoints only")
        }))
    }

    fn seek_to_checkpoints(&mut self) -> Result<(), Halt> {
        let parts: Vec<i32> = self.w.consumer.assigned.keys().copied().collect();
        for p in parts {
            let to = self.committed_checkpoint(p)?.map_or(0, |cp| cp.resume_seq);
            self.w.consumer.seek(p, to);
        }
        Ok(())
    }

    fn commit_all(&mut self) -> Result<(), Halt> {
        self.commit_state()
    }

    /// `poll.rs` `commit_state` with the transactional sink.
    fn commit_state(&mut self) -> Result<(), Halt> {
        if self.sharded() && !self.c.down() {
            self.send_progress();
        }
        let offsets: BTreeMap<i32, Offset> = self
            .w
            .partitions
            .iter()
            .map(|(&p, partition)| {
                let cp = partition.checkpoint();
                let offset = Offset {
                    offset: cp.resume_seq,
                    metadata: encode_checkpoint(&cp),
                    merge: None,
                };
                (p, offset)
            })
            .collect();
        let (id, generation) = (self.w.id, self.w.consumer.generation);
        match commit(
            self.c,
            self.rng,
            &mut self.w.producer,
            (id, generation),
            Topic::Input,
            offsets,
            self.faults.then_some(self.w.config.crash_per_mille),
        )? {
            true => Ok(()),
            false => {
                self.w.transactions_aborted += 1;
                self.w.partitions.clear();
                self.w.progress_sent.clear();
                self.w.rewind = true;
                Ok(())
            }
        }
    }
}

/// The open transaction of `producer`, begun if none is.
pub fn txn(c: &mut Cluster, producer: u64) -> &mut OutTxn {
    let now = c.now;
    c.out.entry(producer).or_insert_with(|| OutTxn {
        began: now,
        ..OutTxn::default()
    })
}

/// The cluster's id of `producer`'s open transaction (for records it
/// appends to a topic).
pub fn txn_id(c: &mut Cluster, producer: u64) -> usize {
    if let Some(id) = txn(c, producer).txn {
        return id;
    }
    let id = c.begin();
    let t = txn(c, producer);
    t.txn = Some(id);
    if t.fenced {
        // A fenced producer's sends are refused: what it appends is never
        // visible and holds no last stable offset back (an open transaction
        // here, which the coordinator's timeout no longer looks at, held
        // the merge's partials partition for ever: seeds 12806 and 20616).
        c.end_txn(id, false);
    }
    id
}

/// The transactional sink's commit: sends `offsets` to the transaction
/// and commits it; `Ok(false)` when the commit was given up (abort, or a
/// fresh producer when this one cannot go on). `crash`: the chance (per
/// mille) of a crash between sending the offsets and committing, which
/// leaves them pending until the transaction times out.
pub fn commit(
    c: &mut Cluster,
    rng: &mut Rng,
    producer: &mut u64,
    (member, generation): (u64, u64),
    topic: Topic,
    offsets: BTreeMap<i32, Offset>,
    crash: Option<u32>,
) -> Result<bool, Halt> {
    // A fenced producer's offsets are refused: nothing becomes pending.
    let down = c.down();
    let t = txn(c, *producer);
    if !t.fenced && !offsets.is_empty() && !down {
        t.offsets = Some((topic, offsets));
    }
    if crash.is_some_and(|p| rng.per_mille(p)) {
        return Err(Halt::Crash);
    }
    match c.commit(*producer, member, generation) {
        Ok(()) => Ok(true),
        Err(()) => {
            if c.down() || c.out.get(producer).is_some_and(|t| t.fenced) {
                // The producer cannot go on: a fresh one replaces it (its
                // open transaction times out on the broker).
                *producer = rng.next() | 1 << 63;
            } else {
                c.abort(*producer);
            }
            Ok(false)
        }
    }
}

impl Member for Turn<'_> {
    type Error = Halt;

    fn joined(&self) -> bool {
        self.w.consumer.joined
    }

    fn assigned(&self) -> Vec<i32> {
        self.w.consumer.assigned.keys().copied().collect()
    }

    fn consumed(&self) -> BTreeMap<i32, u64> {
        self.w.consumer.positions()
    }

    fn at_end(&self, partition: i32) -> Option<u64> {
        self.w.at_end.get(&partition).copied()
    }

    fn owned(&self) -> Vec<i32> {
        self.w.partitions.keys().copied().collect()
    }

    fn own(&mut self, partition: i32) -> Result<bool, Halt> {
        self.owns(partition)
    }

    fn with_partition<R>(
        &mut self,
        partition: i32,
        f: impl FnOnce(&mut Partition, &mut Vec<Closed>) -> R,
    ) -> Option<R> {
        let w = &mut *self.w;
        let result = f(w.partitions.get_mut(&partition)?, &mut w.closed);
        self.emit(partition);
        Some(result)
    }

    fn committed(&mut self, partitions: &[i32]) -> Result<BTreeMap<i32, Checkpoint>, Halt> {
        let mut found = BTreeMap::new();
        for &p in partitions {
            if let Some(cp) = self.committed_checkpoint(p)? {
                found.insert(p, cp);
            }
        }
        Ok(found)
    }
}
