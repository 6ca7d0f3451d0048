//! One simulated process on a thread of its own: a worker (the real worker
//! Command; in sharded runs its windows and progress go to the partials
//! topic, as `src/cmd/worker/shard.rs` sends them) or a merge process (the
//! real merge Command of `src/cmd/merge`), each through the real group loop
//! over its [`SimLog`] and [`SimSink`]. The thread waits for the baton
//! before it runs at all and reports how it ended: finished, crashed at a
//! yield point (a [`Crash`]), or panicked.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::baton::{Baton, Crash};
use super::cluster::Topic;
use super::view::{Member, Reached, Shared, SimLog, SimSink};
use crate::cmd::driver::TickClock;
use crate::cmd::worker::on_memory::{run_member, Input, Tally};

/// What a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// A worker of the input's group (a shard worker with shards).
    Worker,
    /// A merge process of the partials' group.
    Merge,
}

/// How a process's thread ended.
pub(super) enum Ended {
    Finished(Result<(), String>),
    Crashed,
    Panicked(String),
}

/// Where the processes' threads say how they ended, by process id.
pub(super) type Endings = Arc<Mutex<BTreeMap<u64, Ended>>>;

/// What every process of a schedule shares.
pub(super) struct World {
    pub input: Arc<Input>,
    /// The input's end offsets (`--until-end`), read before the start.
    pub ends: HashMap<i32, i64>,
    pub cluster: Shared,
    pub baton: Arc<Baton>,
    pub ended: Endings,
    pub reach: Reached,
    /// Each worker's counters by process id, crashed ones too.
    pub tallies: Arc<Mutex<BTreeMap<u64, Tally>>>,
}

/// A fresh process `id` of `kind` on a thread of its own, waiting for the
/// baton.
pub(super) fn spawn(world: &World, id: u64, kind: Kind) -> JoinHandle<()> {
    let topic = match kind {
        Kind::Worker => Topic::Input,
        Kind::Merge => Topic::Partials,
    };
    let member = Arc::new(Member {
        id,
        topic,
        cluster: world.cluster.clone(),
        baton: world.baton.clone(),
        generation: Mutex::new(0),
        reach: world.reach.clone(),
    });
    let (input, ends, ended) = (world.input.clone(), world.ends.clone(), world.ended.clone());
    let tallies = world.tallies.clone();
    let baton = world.baton.clone();
    let thread = std::thread::Builder::new()
        .name(format!("{kind:?}-{id}").to_lowercase())
        .spawn(move || {
            baton.wait_first(id);
            let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                run_process(&member, kind, &input, ends, &tallies)
            }));
            let outcome = match run {
                Ok(result) => Ended::Finished(result),
                Err(payload) if payload.is::<Crash>() => Ended::Crashed,
                Err(payload) => Ended::Panicked(
                    payload
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default(),
                ),
            };
            ended.lock().expect("poisoned").insert(id, outcome);
            baton.release();
        });
    thread.expect("a thread for the process")
}

/// The real loop of `kind` to its end; the log closed (leaving the group)
/// when it finished.
fn run_process(
    member: &Arc<Member>,
    kind: Kind,
    input: &Input,
    ends: HashMap<i32, i64>,
    tallies: &Mutex<BTreeMap<u64, Tally>>,
) -> Result<(), String> {
    let clock = Arc::new(TickClock::new(Duration::from_millis(1)));
    let make_log = |handover| SimLog::new(member.clone(), handover);
    let (result, log) = match kind {
        Kind::Worker => {
            let sink = Box::new(SimSink {
                member: member.clone(),
                partials: input.routing.shards() > 1,
            });
            let make_log = |handover, tally| {
                tallies.lock().expect("poisoned").insert(member.id, tally);
                make_log(handover)
            };
            run_member(input, ends, sink, clock, make_log)
        }
        Kind::Merge => {
            let sink = Box::new(SimSink {
                member: member.clone(),
                partials: false,
            });
            crate::cmd::merge::on_memory::run_member(input.routing, sink, clock, make_log)
        }
    };
    if result.is_ok() {
        log.close();
    }
    result.map_err(|e| e.to_string())
}
