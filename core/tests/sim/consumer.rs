//! A simulated group consumer, as librdkafka behaves for the members: the
//! assignment of the current generation, a fetch position per assigned
//! partition (from the committed offset, waiting for a transaction holding
//! offsets for it), read_committed polls, end-of-partition events once per
//! end, and the rebalance callbacks' timing (inside `poll`).

use std::collections::BTreeMap;

use crate::cluster::{Cluster, Topic};
use crate::rng::Rng;

/// The consumer's view of one assigned partition.
#[derive(Debug, Default, Clone)]
pub struct Fetch {
    /// Next offset to fetch; `None` until the committed offset was read.
    pub position: Option<u64>,
    /// The end offset an end-of-partition event was given at.
    pub eof_at: Option<u64>,
}

pub enum Polled {
    Record(u64, Vec<u8>),
    End,
}

/// What the group asks of the member at this poll.
pub enum Rebalance {
    /// Nothing: go on.
    None,
    /// Give up every partition (commit first), then call [`Consumer::revoked`].
    Revoke,
    /// Evicted: what it owned is lost (its commit will be fenced); it
    /// joins again.
    Lost,
}

pub struct Consumer {
    pub topic: Topic,
    pub id: u64,
    pub generation: u64,
    pub joined: bool,
    pub assigned: BTreeMap<i32, Fetch>,
}

impl Consumer {
    pub fn new(topic: Topic, id: u64) -> Consumer {
        Consumer {
            topic,
            id,
            generation: 0,
            joined: false,
            assigned: BTreeMap::new(),
        }
    }

    /// Heartbeat: joins if not a member, says what the rebalance asks.
    pub fn heartbeat(&mut self, c: &mut Cluster) -> Rebalance {
        if !c.heartbeat(self.topic, self.id) {
            let lost = self.joined;
            self.assigned.clear();
            c.join(self.topic, self.id);
            if lost {
                return Rebalance::Lost;
            }
        }
        if c.must_revoke(self.topic, self.id) {
            return Rebalance::Revoke;
        }
        Rebalance::None
    }

    /// After [`Rebalance::Revoke`]: the partitions were given up.
    pub fn revoked(&mut self, c: &mut Cluster) {
        self.assigned.clear();
        c.revoked(self.topic, self.id);
    }

    /// Takes the new assignment once the rebalance completed.
    pub fn assign(&mut self, c: &Cluster) {
        let generation = c.group(self.topic).generation;
        if generation == self.generation {
            return;
        }
        if let Some(assigned) = c.assignment(self.topic, self.id, generation) {
            self.generation = generation;
            self.joined = true;
            self.assigned = assigned.iter().map(|&p| (p, Fetch::default())).collect();
        }
    }

    /// The next record (or end-of-partition event) of any assigned
    /// partition, starting at a random one.
    pub fn poll(&mut self, c: &Cluster, rng: &mut Rng, eof: bool) -> Option<(i32, Polled)> {
        if c.down() || self.assigned.is_empty() {
            return None;
        }
        let parts: Vec<i32> = self.assigned.keys().copied().collect();
        let first = rng.below(parts.len() as u64) as usize;
        for i in 0..parts.len() {
            let p = parts[(first + i) % parts.len()];
            let f = self.assigned.get_mut(&p).expect("listed");
            let mut position = match f.position {
                Some(pos) => pos,
                // The committed offset, read when fetching starts; it
                // waits for a transaction holding offsets for it.
                None if c.offsets_pending(self.topic, p) => continue,
                None => c.committed.get(&(self.topic, p)).map_or(0, |o| o.offset),
            };
            let got = c.fetch(self.topic, p, &mut position);
            f.position = Some(position);
            if let Some((offset, payload)) = got {
                return Some((p, Polled::Record(offset, payload)));
            }
            let end = c.end(self.topic, p);
            if eof && position >= end && c.stable(self.topic, p) == end && f.eof_at != Some(end) {
                f.eof_at = Some(end);
                return Some((p, Polled::End));
            }
        }
        None
    }

    /// Seeks `p` (if assigned) to `offset`.
    pub fn seek(&mut self, p: i32, offset: u64) {
        if let Some(f) = self.assigned.get_mut(&p) {
            f.position = Some(offset);
        }
    }

    /// The fetch positions, by partition.
    pub fn positions(&self) -> BTreeMap<i32, u64> {
        self.assigned
            .iter()
            .filter_map(|(&p, f)| Some((p, f.position?)))
            .collect()
    }
}
