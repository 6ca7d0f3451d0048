//! One simulated merge process (`timebucket merge --until-end`): a member
//! of the partials topic's group that runs the product's [`Merger`] and
//! [`Cursor`] against the simulated partials topic. Its loop follows
//! `src/cmd/merge/run.rs`: poll a batch, own a partition after committing
//! first (its merge checkpoint or the log start), one seek then the first
//! record at or after the checkpoint, merged windows and merge checkpoints
//! in one transaction, rewind after a commit given up, hand over on
//! rebalance, and finish once every shard ended and every window is merged.
//!
//! Partials are simulated as text (`W <p> s|m <start> <frames> [<users>]`,
//! `G <p> <watermark>`), keyed and partitioned as the product does.

use std::collections::BTreeMap;

use timebucket_core::bucket::Routing;
use timebucket_core::cursor::{Admit, Cursor, SeekTo};
use timebucket_core::group;
use timebucket_core::merge::{MergeCheckpoint, Merged, Merger, Piece};
use timebucket_core::window::Closed;

use crate::cluster::{Cluster, Offset, Topic};
use crate::consumer::{Consumer, Polled, Rebalance};
use crate::member::{commit, txn, Halt};
use crate::rng::Rng;

/// A partial window of input partition `p`: its key and record.
pub fn partial(p: i32, c: &Closed) -> (String, Vec<u8>) {
    let (key, value) = match *c {
        Closed::Second { start, frames } => (
            format!("second:{start}"),
            format!("W {p} s {start} {frames}"),
        ),
        Closed::Minute {
            start,
            frames,
            unique_users,
        } => (
            format!("minute:{start}"),
            format!("W {p} m {start} {frames} {unique_users}"),
        ),
    };
    (key, value.into_bytes())
}

/// A progress record of input partition `p`.
pub fn progress(p: i32, watermark: u64) -> Vec<u8> {
    format!("G {p} {watermark}").into_bytes()
}

fn decode(payload: &[u8]) -> Piece {
    let text = String::from_utf8_lossy(payload);
    let f: Vec<&str> = text.split(' ').collect();
    let n = |i: usize| f[i].parse::<u64>().expect("the sim writes numbers");
    let partition = n(1) as u32;
    match (f[0], f.get(2)) {
        ("G", _) => Piece::Progress {
            partition,
            watermark: n(2),
        },
        (_, Some(&"s")) => Piece::Partial {
            partition,
            closed: Closed::Second {
                start: n(3),
                frames: n(4),
            },
        },
        _ => Piece::Partial {
            partition,
            closed: Closed::Minute {
                start: n(3),
                frames: n(4),
                unique_users: n(5),
            },
        },
    }
}

pub struct Merge {
    pub id: u64,
    pub producer: u64,
    pub consumer: Consumer,
    routing: Routing,
    owned: BTreeMap<i32, (Merger, Cursor)>,
    rewind: bool,
    last_commit: u64,
    batch: usize,
    commit_every: u64,
    crash_per_mille: u32,
    pub done: bool,
}

impl Merge {
    /// Where it is, for a failing schedule's report.
    pub fn describe(&self) -> String {
        let owned: Vec<String> = self
            .owned
            .iter()
            .map(|(p, (m, c))| {
                format!(
                    "{p}: at {} marks {:?} open {}",
                    c.position(),
                    m.marks(),
                    m.open_windows()
                )
            })
            .collect();
        format!(
            "owned {owned:?} fetch {:?} rewind {}",
            self.consumer.positions(),
            self.rewind
        )
    }

    pub fn new(id: u64, routing: Routing, batch: usize, commit_every: u64, crash: u32) -> Merge {
        Merge {
            id,
            producer: id,
            consumer: Consumer::new(Topic::Partials, id),
            routing,
            owned: BTreeMap::new(),
            rewind: false,
            last_commit: 0,
            batch,
            commit_every,
            crash_per_mille: crash,
            done: false,
        }
    }

    /// One iteration of the merge's loop.
    pub fn step(&mut self, c: &mut Cluster, rng: &mut Rng, faults: bool) -> Result<(), Halt> {
        if self.done {
            return Ok(());
        }
        let crash = faults.then_some(self.crash_per_mille);
        match self.consumer.heartbeat(c) {
            Rebalance::None => {}
            Rebalance::Lost => self.revoke(c, rng, crash)?,
            Rebalance::Revoke => {
                self.revoke(c, rng, crash)?;
                self.consumer.revoked(c);
            }
        }
        self.consumer.assign(c);
        if self.rewind {
            self.seek_to_checkpoints(c)?;
            self.rewind = false;
        }
        for _ in 0..self.batch {
            let Some((p, Polled::Record(offset, payload))) = self.consumer.poll(c, rng, false)
            else {
                break;
            };
            self.handle(c, rng, crash, p, offset, &payload)?;
            if self.rewind {
                break;
            }
            if crash.is_some_and(|x| rng.per_mille(x)) {
                return Err(Halt::Crash);
            }
        }
        if self.rewind {
            self.seek_to_checkpoints(c)?;
            self.rewind = false;
        }
        if c.now - self.last_commit >= self.commit_every {
            self.commit_state(c, rng, crash)?;
            self.last_commit = c.now;
        }
        if self.all_done(c)? {
            self.commit_state(c, rng, crash)?;
            if !self.rewind && self.all_done(c)? {
                self.done = true;
                self.revoke(c, rng, crash)?;
                c.leave(Topic::Partials, self.id);
            }
        }
        Ok(())
    }

    fn revoke(&mut self, c: &mut Cluster, rng: &mut Rng, crash: Option<u32>) -> Result<(), Halt> {
        let result = self.commit_state(c, rng, crash);
        self.owned.clear();
        self.consumer.assigned.clear();
        result
    }

    fn committed(c: &Cluster, p: i32) -> Result<Option<MergeCheckpoint>, Halt> {
        if c.down() || c.offsets_pending(Topic::Partials, p) {
            return Err(Halt::Blocked);
        }
        Ok(c.committed.get(&(Topic::Partials, p)).map(|o| {
            o.merge
                .clone()
                .expect("the merge commits merge checkpoints")
        }))
    }

    fn handle(
        &mut self,
        c: &mut Cluster,
        rng: &mut Rng,
        crash: Option<u32>,
        p: i32,
        offset: u64,
        payload: &[u8],
    ) -> Result<(), Halt> {
        if !self.owned.contains_key(&p) {
            // Reading the committed checkpoint waits for open transactions
            // on it: commit ours first.
            self.commit_state(c, rng, crash)?;
            if self.rewind {
                return Ok(());
            }
            let owned = match Merge::committed(c, p)? {
                Some(cp) => (
                    Merger::resume(self.routing, None, &cp),
                    Cursor::at(cp.resume_seq),
                ),
                None => (
                    Merger::new(self.routing, None),
                    Cursor::fresh(c.log(Topic::Partials, p).log_start),
                ),
            };
            self.owned.insert(p, owned);
        }
        let (merger, cursor) = self.owned.get_mut(&p).expect("owned");
        match cursor.admit(offset) {
            Admit::Take => {}
            Admit::Duplicate => return Ok(()),
            Admit::Seek(to) => {
                let to = match to {
                    SeekTo::Offset(o) => o,
                    SeekTo::Beginning => 0,
                };
                self.consumer.seek(p, to);
                return Ok(());
            }
        }
        cursor.take_gap();
        let mut merged: Vec<Merged> = Vec::new();
        merger.on_piece(offset, decode(payload), &mut merged);
        let windows = merged.into_iter().map(|m| (m.partition as i32, m.closed));
        txn(c, self.producer).windows.extend(windows);
        Ok(())
    }

    /// Whether every partials partition is merged to the end of every
    /// shard: the owned ones by their state, the others by their commit
    /// (judged by the product's `core::group::merge_checkpoint_done`).
    fn all_done(&self, c: &Cluster) -> Result<bool, Halt> {
        if !self.consumer.joined {
            return Ok(false);
        }
        let shards = self.routing.partitions() as usize;
        for p in 0..c.partitions(Topic::Partials) {
            match self.owned.get(&p) {
                Some((merger, _)) if !merger.done() => return Ok(false),
                Some(_) => {}
                None => {
                    let done = Merge::committed(c, p)?
                        .is_some_and(|cp| group::merge_checkpoint_done(&cp, shards));
                    if !done {
                        return Ok(false);
                    }
                }
            }
        }
        Ok(true)
    }

    fn seek_to_checkpoints(&mut self, c: &Cluster) -> Result<(), Halt> {
        let parts: Vec<i32> = self.consumer.assigned.keys().copied().collect();
        for p in parts {
            let to = Merge::committed(c, p)?.map_or(0, |cp| cp.resume_seq);
            self.consumer.seek(p, to);
        }
        Ok(())
    }

    fn commit_state(
        &mut self,
        c: &mut Cluster,
        rng: &mut Rng,
        crash: Option<u32>,
    ) -> Result<(), Halt> {
        let offsets: BTreeMap<i32, Offset> = self
            .owned
            .iter()
            .filter(|(_, (_, cursor))| cursor.started())
            .map(|(&p, (merger, cursor))| {
                let cp = merger.checkpoint(cursor.position());
                let offset = Offset {
                    offset: cp.resume_seq,
                    metadata: String::new(),
                    merge: Some(cp),
                };
                (p, offset)
            })
            .collect();
        let member = (self.id, self.consumer.generation);
        if !commit(
            c,
            rng,
            &mut self.producer,
            member,
            Topic::Partials,
            offsets,
            crash,
        )? {
            self.owned.clear();
            self.rewind = true;
        }
        Ok(())
    }
}
