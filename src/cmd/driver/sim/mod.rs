//! Deterministic simulation of the REAL group loop: members are
//! [`super::run`] with the real worker [`super::Command`] and, in a third
//! of the schedules (S = 2 uid shards), real shard workers and 1-2 real
//! merge processes (`src/cmd/merge`) on the partials topic ([`process`]),
//! each on a thread of its own over its view ([`view`]) of the simulated
//! cluster that the model simulator uses too (`core/tests/sim/cluster.rs`:
//! logs with transaction markers, read_committed, generations and fencing,
//! transaction timeouts). Only the thread holding the [`baton`] runs; at
//! every call a member makes, the seeded scheduler picks who runs next and
//! injects faults: a crash at that call (the thread unwinds; a fresh member
//! joins later), a stall past the session timeout (a zombie, fenced), the
//! broker down for a while (commits given up), retention ([`retention`]:
//! heads deleted before and while the members run, after a previous run's
//! checkpoints in a third of the schedules). The input is written before
//! the members start, in transactions, some aborted and written again.
//! After every schedule ([`check`]) the committed windows equal the offline
//! aggregate (`--shards`: merged), none twice, every invalid record is
//! dead-lettered once, every member finished, and the workers counted what
//! retention took from the group (`lost_to_retention`).
//!
//! `SIM_SEED=<n>` replays one schedule (`SIM_LOG=debug` prints the
//! members' log lines); `SIM_DRIVER_SCHEDULES` (default 2,000 in release
//! builds as `scripts/test` runs it), `SIM_DRIVER_SECONDS` (default 150, a
//! bound on the suite's time) and `SIM_FIRST` size a run.

mod baton;
mod check;
/// Shared with the model simulator (`core/tests/sim`), which uses all of it.
#[allow(dead_code)]
#[path = "../../../../core/tests/sim/cluster.rs"]
mod cluster;
mod process;
mod retention;
/// The model simulator's dice.
#[path = "../../../../core/tests/sim/rng.rs"]
mod rng;
mod view;

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use baton::Baton;
use cluster::{Cluster, Topic};
use process::{Ended, Kind, World};
use retention::Retention;
use rng::Rng;

use crate::cmd::worker::on_memory::{input, Input};

/// Steps after which a schedule is taken to never finish.
const MAX_STEPS: u64 = 300_000;

/// Which seeds run sharded (one in three), from dice of their own so that
/// an unsharded seed's schedule stays what it was before shards came in.
const SHARDED_DICE: u64 = 0x5348_4152_4453;

enum Slot {
    Up {
        id: u64,
        kind: Kind,
        stalled_until: u64,
    },
    Down {
        kind: Kind,
        restart_at: u64,
    },
    Done,
}

struct Schedule {
    seed: u64,
    rng: Rng,
    world: World,
    threads: Vec<JoinHandle<()>>,
    slots: Vec<Slot>,
    next_id: u64,
    crash_per_mille: u32,
    /// Faults this schedule may still inject: crashes, stalls past the
    /// session timeout, broker outages.
    crashes: u64,
    stalls: u64,
    outages: u64,
    retention: Retention,
}

impl Schedule {
    fn new(seed: u64) -> Schedule {
        let mut rng = Rng::new(seed);
        let sharded = Rng::new(seed ^ SHARDED_DICE).below(3) == 0;
        // S = 2 uid shards need an even partition count.
        let (partitions, shards) = match sharded {
            false => (rng.range(1, 3) as u32, 1),
            true => (2 * rng.range(1, 2) as u32, 2),
        };
        let input = Arc::new(input(partitions, shards, rng.range(20, 120)));
        // A step is one call of one member: a poll batch of the real loop
        // (up to 512 records, two calls each, while the other members take
        // their turns) takes up to a few thousand, as it takes a real one
        // milliseconds against a 60 s transaction timeout. The client
        // heartbeats at every call: only a stall lets the session expire.
        let session = rng.range(100, 400);
        let txn_timeout = rng.range(4_000, 8_000);
        let partials = if sharded { rng.range(1, 2) as usize } else { 1 };
        let mut c = Cluster::new(partitions as usize, partials, session, txn_timeout);
        c.assign_shift = rng.below(4) as usize;
        write_input(&mut rng, &mut c, &input);
        let ends = (0..partitions as i32)
            .map(|p| (p, c.end(Topic::Input, p) as i64))
            .collect();
        let retention = Retention::before_start(seed, &mut c, &input);
        let workers = rng.range(1, 3) as usize;
        let merges = if sharded { rng.range(1, 2) as usize } else { 0 };
        let mut schedule = Schedule {
            seed,
            crash_per_mille: rng.range(1, 20) as u32,
            crashes: rng.range(0, 3),
            stalls: rng.range(0, 2),
            outages: rng.range(0, 3),
            rng,
            retention,
            world: World {
                input,
                ends,
                cluster: Arc::new(Mutex::new(c)),
                baton: Arc::new(Baton::default()),
                ended: Default::default(),
                reach: Default::default(),
                tallies: Default::default(),
            },
            threads: Vec::new(),
            slots: Vec::new(),
            next_id: 1,
        };
        let kinds = std::iter::repeat_n(Kind::Worker, workers);
        for kind in kinds.chain(std::iter::repeat_n(Kind::Merge, merges)) {
            let id = schedule.spawn(kind);
            schedule.slots.push(Slot::Up {
                id,
                kind,
                stalled_until: 0,
            });
        }
        schedule
    }

    /// A fresh process of `kind` on a thread of its own, waiting for the
    /// baton.
    fn spawn(&mut self, kind: Kind) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.threads.push(process::spawn(&self.world, id, kind));
        id
    }

    fn fail(&self, why: &str) -> ! {
        let c = self.world.cluster.lock().expect("poisoned");
        let slots: Vec<String> = self
            .slots
            .iter()
            .map(|s| match s {
                Slot::Up {
                    id,
                    kind,
                    stalled_until,
                } => {
                    format!("{kind:?} {id} (stalled to {stalled_until})")
                }
                Slot::Down { kind, restart_at } => format!("{kind:?} down to {restart_at}"),
                Slot::Done => "done".into(),
            })
            .collect();
        let groups: Vec<String> = [Topic::Input, Topic::Partials]
            .into_iter()
            .map(|t| {
                let g = c.group(t);
                format!(
                    "{t:?} group: generation {} members {:?} revoking {:?} assignment {:?}",
                    g.generation, g.members, g.revoking, g.assignment
                )
            })
            .collect();
        let offsets: Vec<(Topic, i32, u64)> = c
            .committed
            .iter()
            .map(|((t, p), o)| (*t, *p, o.offset))
            .collect();
        let open: Vec<(u64, u64, bool)> = c
            .out
            .iter()
            .map(|(&id, t)| (id, t.began, t.fenced))
            .collect();
        panic!(
            "schedule {} ({} shard(s)) failed at step {}: {why}\n\
             slots {slots:?}; {groups:?}\n\
             committed {offsets:?}, ends {:?}, open transactions (producer, began, fenced) {open:?}\n\
             replay: SIM_SEED={} cargo test --release --lib -p timebucket driver::sim",
            self.seed,
            self.world.input.routing.shards(),
            c.now,
            self.world.ends,
            self.seed
        );
    }

    /// Runs the schedule to its end; panics naming the seed on a failure.
    /// What retention did.
    fn run(mut self) -> Deleted {
        for _ in 0..MAX_STEPS {
            let now = {
                let cluster = self.world.cluster.clone();
                let mut c = cluster.lock().expect("poisoned");
                c.tick();
                if self.outages > 0 && !c.down() && self.rng.per_mille(2) {
                    self.outages -= 1;
                    c.down_until = c.now + self.rng.range(1, 30);
                }
                let reach = self.world.reach.lock().expect("poisoned");
                self.retention.while_running(&mut c, &reach);
                c.now
            };
            for i in 0..self.slots.len() {
                if let Slot::Down { kind, restart_at } = self.slots[i] {
                    if restart_at <= now {
                        let id = self.spawn(kind);
                        self.slots[i] = Slot::Up {
                            id,
                            kind,
                            stalled_until: 0,
                        };
                    }
                }
            }
            if self.slots.iter().all(|s| matches!(s, Slot::Done)) {
                for t in self.threads.drain(..) {
                    t.join().expect("member threads catch their panics");
                }
                let checked = {
                    let c = self.world.cluster.lock().expect("poisoned");
                    let tallies = self.world.tallies.lock().expect("poisoned");
                    let summaries: Vec<_> = tallies.values().map(|t| t.summary()).collect();
                    check::outputs(&c, &self.world.input, &self.retention.first_kept)
                        .and_then(|()| check::lost(&summaries, &self.retention))
                };
                if let Err(e) = checked {
                    self.fail(&e);
                }
                return Deleted {
                    heads: self.retention.heads,
                    owed: self.retention.owed,
                };
            }
            let runnable: Vec<usize> = (0..self.slots.len())
                .filter(|&i| matches!(self.slots[i], Slot::Up { stalled_until, .. } if stalled_until <= now))
                .collect();
            if runnable.is_empty() {
                continue;
            }
            let i = runnable[self.rng.below(runnable.len() as u64) as usize];
            let Slot::Up { id, kind, .. } = self.slots[i] else {
                unreachable!()
            };
            if self.stalls > 0 && self.rng.per_mille(2) {
                self.stalls -= 1;
                // Past the session timeout (a zombie), sometimes past the
                // transaction timeout too (its open transaction aborted).
                let (session, txn) = {
                    let c = self.world.cluster.lock().expect("poisoned");
                    (c.session_timeout, c.txn_timeout)
                };
                self.slots[i] = Slot::Up {
                    id,
                    kind,
                    stalled_until: now + session + self.rng.range(1, 2 * txn),
                };
                continue;
            }
            let crash = self.crashes > 0 && self.rng.per_mille(self.crash_per_mille);
            self.crashes -= u64::from(crash);
            self.world.baton.run(id, crash);
            let ended = self.world.ended.lock().expect("poisoned").remove(&id);
            match ended {
                None => {}
                Some(Ended::Finished(Ok(()))) => self.slots[i] = Slot::Done,
                Some(Ended::Crashed) => {
                    self.slots[i] = Slot::Down {
                        kind,
                        restart_at: now + self.rng.range(1, 60),
                    }
                }
                Some(Ended::Finished(Err(e))) => self.fail(&format!("{kind:?} {id} failed: {e}")),
                Some(Ended::Panicked(e)) => self.fail(&format!("{kind:?} {id} panicked: {e}")),
            }
        }
        self.fail("the members did not finish");
    }
}

/// What retention did in a schedule: heads deleted unread and below the
/// committed offset, offsets owed to the count.
struct Deleted {
    heads: [u64; 2],
    owed: u64,
}

/// Writes `input` as ingest does: in transactions of a few records, some
/// aborted and written again.
fn write_input(rng: &mut Rng, c: &mut Cluster, input: &Input) {
    let mut next = vec![0usize; input.records.len()];
    loop {
        let open: Vec<usize> = (0..next.len())
            .filter(|&p| next[p] < input.records[p].len())
            .collect();
        if open.is_empty() {
            return;
        }
        let p = open[rng.below(open.len() as u64) as usize];
        let n = (rng.range(1, 5) as usize).min(input.records[p].len() - next[p]);
        let batch = &input.records[p][next[p]..next[p] + n];
        let commit = !rng.per_mille(150);
        let txn = c.begin();
        for (_, payload) in batch {
            c.append(Topic::Input, p as i32, txn, payload.clone());
        }
        c.end_txn(txn, commit);
        if commit {
            next[p] += n;
        }
    }
}

#[test]
fn the_real_worker_group_survives_every_schedule() {
    let var = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    if let Some(seed) = var("SIM_SEED") {
        // The members' own log lines, by thread, when one schedule is replayed.
        let _ = tracing_subscriber::fmt()
            .with_thread_names(true)
            .with_env_filter(std::env::var("SIM_LOG").unwrap_or_else(|_| "off".into()))
            .try_init();
        Schedule::new(seed).run();
        return;
    }
    // scripts/test builds in release, where an unsharded schedule takes
    // about 30 ms and a sharded one (shard workers and merges) about 120 ms
    // on 2 shared cores (each call a member makes switches threads twice):
    // 2,000 (a third sharded) take about two minutes, within the budget:
    // thousands of schedules of the real code in every suite run.
    let default = if cfg!(debug_assertions) { 100 } else { 2_000 };
    let schedules = var("SIM_DRIVER_SCHEDULES").unwrap_or(default);
    let budget = Duration::from_secs(var("SIM_DRIVER_SECONDS").unwrap_or(150));
    let first = var("SIM_FIRST").unwrap_or(0);
    let started = Instant::now();
    let (mut ran, mut sharded, mut deleted, mut owed) = (0, 0, [0, 0], 0);
    for seed in first..first + schedules {
        if started.elapsed() > budget {
            break;
        }
        let schedule = Schedule::new(seed);
        sharded += u64::from(schedule.world.input.routing.shards() > 1);
        let done = schedule.run();
        deleted = [deleted[0] + done.heads[0], deleted[1] + done.heads[1]];
        owed += done.owed;
        ran += 1;
    }
    eprintln!(
        "driver sim: {ran} schedules ({sharded} sharded; retention deleted {} unread heads, \
         {} below the committed offset; {owed} offsets owed to lost_to_retention), {:.1} s",
        deleted[0],
        deleted[1],
        started.elapsed().as_secs_f64()
    );
    assert!(
        ran >= schedules.min(300),
        "only {ran} schedules within {budget:?}"
    );
}
