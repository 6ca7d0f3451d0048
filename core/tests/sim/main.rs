//! Deterministic simulation of a worker group (after FoundationDB's
//! simulation and TigerBeetle's VOPR): a seeded scheduler runs members that
//! make the product's decisions ([`member`]) against an in-memory cluster
//! ([`cluster`]) through random schedules of crashes (at any crash point,
//! also between sending a transaction's offsets and committing it),
//! restarts, stalls past the session timeout (zombies, fenced), broker
//! outages (every call fails; a transaction in flight is given up and its
//! producer replaced), retention deleting a log's head, input written
//! while the workers run with aborted and timed-out transactions, and
//! rebalances. After every schedule the committed outputs must equal the
//! offline aggregate of the committed input, with no duplicate, every
//! invalid record dead-lettered once, and every member finished.
//!
//! `SIM_SEED=<n>` replays one schedule; `SIM_SCHEDULES` (default 3000, 30,000
//! in release builds as `scripts/test` runs it) and
//! `SIM_SECONDS` (default 45, a bound on the suite's time) size a run;
//! `SIM_FIRST` offsets the seeds tried. docs/simulator.md says what is
//! modelled and what is not.

mod cluster;
mod consumer;
mod member;
mod merge;
mod rng;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use timebucket_core::bucket::Routing;
use timebucket_core::clock::Quorum;
use timebucket_core::frame::FrameParser;
use timebucket_core::merge::OfflineMerge;
use timebucket_core::partition::Rules;
use timebucket_core::partitioned::PartitionedWindows;
use timebucket_core::window::{Closed, WatermarkRule};

use cluster::{Cluster, Topic, TxnState};
use member::{Config, Ends, Halt, Turn, Worker};
use merge::Merge;
use rng::Rng;

/// One input transaction of ingest's plan.
struct Txn {
    records: Vec<(i32, Vec<u8>)>,
    /// `Some(commit?)`, or `None`: abandoned (ingest stalls past the
    /// transaction timeout; the coordinator aborts it and ingest writes
    /// the records again).
    fate: Option<bool>,
}

/// What a schedule runs and what it saw.
struct Sim {
    rng: Rng,
    c: Cluster,
    routing: Routing,
    rules: Rules,
    config: Config,
    workers: Vec<Slot>,
    next_id: u64,
    plan: Vec<Txn>,
    /// Ingest: the next transaction of the plan, and when it may go on
    /// (after an abandoned transaction timed out).
    ingest_next: usize,
    ingest_wait: u64,
    /// An abandoned input transaction the coordinator aborts at `ingest_wait`.
    pending_abort: Option<usize>,
    ends: Ends,
    /// Input frames in append order, with their transaction.
    appended: Vec<(i32, u64, usize, Vec<u8>)>,
    trace: Vec<String>,
}

/// A process slot: a running worker or merge, or one down until a step.
enum Slot {
    Up { p: Process, stalled_until: u64 },
    Down { restart_at: u64, merge: bool },
}

enum Process {
    Worker(Box<Worker>),
    Merge(Box<Merge>),
}

impl Process {
    fn done(&self) -> bool {
        match self {
            Process::Worker(w) => w.done,
            Process::Merge(m) => m.done,
        }
    }
}

const MAX_STEPS: u64 = 20_000;

impl Sim {
    fn new(seed: u64) -> Sim {
        let mut rng = Rng::new(seed);
        let partitions = rng.range(1, 4) as u32;
        // Sharded buckets (and a merge stage) in a third of the schedules.
        let shards = if partitions.is_multiple_of(2) && rng.per_mille(333) {
            2
        } else {
            1
        };
        let partials = rng.range(1, 2) as u32;
        let session = rng.range(8, 30);
        let txn_timeout = rng.range(20, 60);
        let mut c = Cluster::new(partitions as usize, partials as usize, session, txn_timeout);
        c.assign_shift = rng.below(4) as usize;
        let routing = Routing::sharded(60, partitions, shards).expect("valid");
        let lateness = rng.range(0, 10);
        let min = rng.range(1, 2) as usize;
        // The crowd rule's share, from dice of its own so that every seed
        // keeps the schedule it had before the share (its frames come from
        // at most 5 users a minute: 49.99% makes K = 3 at 5 users, 25% K = 2
        // from 4, 5% stays at the minimum, 0 is the fixed quorum).
        let share = [0, 500, 2_500, 4_999][Rng::new(!seed).below(4) as usize];
        let rules = Rules {
            // Resolved as the worker resolves it (the horizon defaults to the
            // routing's cycle), so members and the aggregate decide alike.
            watermark: WatermarkRule::with_quorum(lateness, Quorum::new(min, share))
                .resolved(&routing),
            parser: FrameParser::new(0, 4_000_000_000),
            max_future: None,
        };
        let config = Config {
            rules,
            routing,
            partials,
            batch: rng.range(1, 8) as usize,
            commit_every: rng.range(1, 12),
            crash_per_mille: rng.range(0, 15) as u32,
        };
        let plan = plan(&mut rng, &routing);
        let awaited = rng.per_mille(500);
        let mut sim = Sim {
            c,
            routing,
            rules,
            config,
            workers: Vec::new(),
            next_id: 1,
            plan,
            ingest_next: 0,
            ingest_wait: 0,
            pending_abort: None,
            ends: Ends::Awaited(None),
            appended: Vec::new(),
            trace: Vec::new(),
            rng,
        };
        if !awaited {
            // `--until-end`: the input is complete before the workers start.
            while sim.ingest_next < sim.plan.len() {
                sim.ingest(true);
            }
            let ends = sim.ends_now();
            sim.ends = Ends::AtStart(ends);
        }
        let members = sim.rng.range(1, 3);
        let merges = if shards > 1 { sim.rng.range(1, 2) } else { 0 };
        for i in 0..members + merges {
            let p = sim.spawn(i >= members);
            sim.workers.push(Slot::Up {
                p,
                stalled_until: 0,
            });
        }
        sim
    }

    fn spawn(&mut self, merge: bool) -> Process {
        let id = self.next_id;
        self.next_id += 1;
        if merge {
            let (batch, every) = (self.config.batch, self.config.commit_every);
            let crash = self.config.crash_per_mille;
            Process::Merge(Box::new(Merge::new(id, self.routing, batch, every, crash)))
        } else {
            Process::Worker(Box::new(Worker::new(id, id, self.config.clone())))
        }
    }

    fn ends_now(&self) -> BTreeMap<i32, u64> {
        (0..self.c.input.len() as i32)
            .map(|p| (p, self.c.end(Topic::Input, p)))
            .collect()
    }

    /// Ingest's next move: the next transaction of the plan.
    fn ingest(&mut self, at_once: bool) {
        if self.ingest_next >= self.plan.len() {
            if self.ends == Ends::Awaited(None) {
                self.ends = Ends::Awaited(Some(self.ends_now()));
            }
            return;
        }
        if self.c.now < self.ingest_wait {
            return;
        }
        if let Some(txn) = self.pending_abort.take() {
            self.c.end_txn(txn, false);
        }
        let txn_id = self.c.begin();
        let Txn { records, fate } = &self.plan[self.ingest_next];
        for (p, payload) in records.clone() {
            let offset = self.c.end(Topic::Input, p);
            self.appended.push((p, offset, txn_id, payload.clone()));
            self.c.append(Topic::Input, p, txn_id, payload);
        }
        match *fate {
            Some(commit) => {
                self.c.end_txn(txn_id, commit);
                self.ingest_next += 1;
            }
            None if at_once => {
                self.c.end_txn(txn_id, false);
                self.plan[self.ingest_next].fate = Some(true);
            }
            None => {
                // Stays open (the last stable offset stops there) until the
                // coordinator aborts it; ingest then writes it again.
                self.trace
                    .push(format!("{}: ingest txn {txn_id} abandoned", self.c.now));
                self.ingest_wait = self.c.now + self.c.txn_timeout;
                self.plan[self.ingest_next].fate = Some(true);
                self.pending_abort = Some(txn_id);
            }
        }
        if self.ingest_next >= self.plan.len() && self.ends == Ends::Awaited(None) {
            self.ends = Ends::Awaited(Some(self.ends_now()));
        }
    }
}

/// Ingest's plan: frames about one a few seconds apart, some out of order,
/// some invalid or blank, in transactions that commit, abort or are
/// abandoned; every frame to the partition its time bucket routes to.
fn plan(rng: &mut Rng, routing: &Routing) -> Vec<Txn> {
    let n = rng.range(0, 60);
    let mut ts = 1_000_000u64 + rng.below(120);
    let mut plan = Vec::new();
    let mut records = Vec::new();
    for _ in 0..n {
        ts += rng.range(0, 25);
        let late = if rng.per_mille(150) {
            rng.range(0, 20)
        } else {
            0
        };
        let t = ts - late;
        let uid = format!("u{}", rng.below(5));
        let payload = match rng.below(100) {
            0..=4 => b"not json".to_vec(),
            5..=6 => Vec::new(),
            _ => format!(r#"{{"ts":{t},"uid":"{uid}"}}"#).into_bytes(),
        };
        // Invalid and blank lines go where the last frame went.
        records.push((routing.route(t, &uid) as i32, payload));
        if rng.per_mille(250) {
            plan.push(txn(rng, std::mem::take(&mut records)));
        }
    }
    if !records.is_empty() {
        plan.push(txn(rng, records));
    }
    plan
}

fn txn(rng: &mut Rng, records: Vec<(i32, Vec<u8>)>) -> Txn {
    let fate = match rng.below(100) {
        0..=9 => Some(false),
        10..=14 => None,
        _ => Some(true),
    };
    Txn { records, fate }
}

impl Sim {
    /// Runs the schedule; `Err` says what went wrong.
    fn run(&mut self) -> Result<(), String> {
        let fault_steps = self.rng.range(0, 400);
        loop {
            self.c.tick();
            let now = self.c.now;
            if now > MAX_STEPS {
                return Err(format!(
                    "not every member finished within {MAX_STEPS} steps (a hang): {}",
                    self.status()
                ));
            }
            if now <= fault_steps {
                self.fault();
            }
            if self.rng.per_mille(300) {
                self.ingest(false);
            }
            self.restart();
            self.heartbeats();
            if self
                .workers
                .iter()
                .all(|s| matches!(s, Slot::Up { p, .. } if p.done()))
            {
                return self.check();
            }
            let i = self.rng.below(self.workers.len() as u64) as usize;
            let Slot::Up { p, stalled_until } = &mut self.workers[i] else {
                continue;
            };
            if *stalled_until > now {
                continue;
            }
            let faults = now <= fault_steps;
            let result = match p {
                Process::Worker(w) => Turn {
                    w,
                    c: &mut self.c,
                    rng: &mut self.rng,
                    ends: &self.ends,
                    faults,
                }
                .step(),
                Process::Merge(m) => m.step(&mut self.c, &mut self.rng, faults),
            };
            match result {
                Ok(()) | Err(Halt::Blocked) => {}
                Err(Halt::Crash) => {
                    let restart_at = now + self.rng.range(1, 40);
                    let merge = matches!(p, Process::Merge(_));
                    self.trace
                        .push(format!("{now}: member {i} crashed inside a step"));
                    self.workers[i] = Slot::Down { restart_at, merge };
                }
            }
        }
    }

    /// Maybe one fault now.
    fn fault(&mut self) {
        let now = self.c.now;
        match self.rng.below(1000) {
            0..=7 => {
                let i = self.rng.below(self.workers.len() as u64) as usize;
                if let Slot::Up { p, .. } = &self.workers[i] {
                    let merge = matches!(p, Process::Merge(_));
                    let restart_at = now + self.rng.range(1, 60);
                    self.trace.push(format!("{now}: member {i} crashed"));
                    self.workers[i] = Slot::Down { restart_at, merge };
                }
            }
            8..=15 => {
                let i = self.rng.below(self.workers.len() as u64) as usize;
                let pause = self.rng.range(1, 2 * self.c.session_timeout);
                if let Slot::Up { stalled_until, .. } = &mut self.workers[i] {
                    self.trace
                        .push(format!("{now}: member {i} stalls {pause} steps"));
                    *stalled_until = now + pause;
                }
            }
            16..=19 => {
                let outage = self.rng.range(1, 50);
                self.trace
                    .push(format!("{now}: broker down {outage} steps"));
                self.c.down_until = now + outage;
            }
            20..=25 => {
                // Retention deletes records every member has handled: the
                // head up to the group's committed offset.
                let p = self.rng.below(self.c.input.len() as u64) as i32;
                if let Some(o) = self.c.committed.get(&(Topic::Input, p)) {
                    let to = self.rng.range(0, o.offset);
                    self.trace
                        .push(format!("{now}: retention deletes {p} below {to}"));
                    self.c.delete_head(Topic::Input, p, to);
                }
            }
            _ => {}
        }
    }

    /// librdkafka's background heartbeats: every process that runs (not
    /// stalled, not down) stays in its group between its turns.
    fn heartbeats(&mut self) {
        let now = self.c.now;
        for slot in &self.workers {
            match slot {
                Slot::Up {
                    p: Process::Worker(w),
                    stalled_until,
                } if *stalled_until <= now => {
                    self.c.heartbeat(Topic::Input, w.id);
                }
                Slot::Up {
                    p: Process::Merge(m),
                    stalled_until,
                } if *stalled_until <= now => {
                    self.c.heartbeat(Topic::Partials, m.id);
                }
                _ => {}
            }
        }
    }

    fn restart(&mut self) {
        let now = self.c.now;
        for i in 0..self.workers.len() {
            if let Slot::Down { restart_at, merge } = self.workers[i] {
                if restart_at <= now {
                    let p = self.spawn(merge);
                    self.trace.push(format!("{now}: member {i} restarted"));
                    self.workers[i] = Slot::Up {
                        p,
                        stalled_until: 0,
                    };
                }
            }
        }
    }

    fn status(&self) -> String {
        let members: Vec<String> = self
            .workers
            .iter()
            .map(|s| match s {
                Slot::Up {
                    p: Process::Worker(w),
                    ..
                } => format!(
                    "worker {} done={} assigned={:?} aborted={} {}",
                    w.id,
                    w.done,
                    w.consumer.assigned.keys().collect::<Vec<_>>(),
                    w.transactions_aborted,
                    w.describe()
                ),
                Slot::Up {
                    p: Process::Merge(m),
                    ..
                } => format!(
                    "merge {} done={} assigned={:?} {}",
                    m.id,
                    m.done,
                    m.consumer.assigned.keys().collect::<Vec<_>>(),
                    m.describe()
                ),
                Slot::Down { restart_at, .. } => format!("down until {restart_at}"),
            })
            .collect();
        let logs: Vec<String> = (0..self.c.input.len() as i32)
            .map(|p| {
                format!(
                    "p{p}: end {} stable {} start {} committed {:?}",
                    self.c.end(Topic::Input, p),
                    self.c.stable(Topic::Input, p),
                    self.c.input[p as usize].log_start,
                    self.c.committed.get(&(Topic::Input, p)).map(|o| o.offset)
                )
            })
            .collect();
        let groups: Vec<String> = [Topic::Input, Topic::Partials]
            .iter()
            .map(|&t| {
                let g = self.c.group(t);
                format!(
                    "{t:?} group: generation {} members {:?} revoking {:?} assignment {:?}",
                    g.generation, g.members, g.revoking, g.assignment
                )
            })
            .collect();
        format!("{members:?}; {logs:?}; ends {:?}; {groups:?}", self.ends)
    }

    /// The invariants of a finished schedule.
    fn check(&self) -> Result<(), String> {
        let mut aggregate = PartitionedWindows::new(self.routing, self.rules.watermark);
        let mut dead = Vec::new();
        for (p, offset, txn, payload) in &self.appended {
            if self.c.txns[*txn] != TxnState::Committed {
                continue;
            }
            match self.rules.parser.parse(payload) {
                timebucket_core::frame::Line::Frame(f) => aggregate.record(f.ts, &f.uid),
                timebucket_core::frame::Line::Invalid(_) => dead.push((*p, *offset)),
                timebucket_core::frame::Line::Blank => {}
            }
        }
        aggregate.finish();
        // `aggregate --shards`: every shard's windows summed per window.
        let mut expected: Vec<(i32, Closed)> = if self.routing.shards() > 1 {
            let mut merge = OfflineMerge::default();
            for (p, c) in aggregate.take_closed() {
                merge.add(&self.routing, p, c);
            }
            merge
                .finish()
                .map(|m| (m.partition as i32, m.closed))
                .collect()
        } else {
            aggregate
                .take_closed()
                .map(|(p, c)| (p as i32, c))
                .collect()
        };
        expected.sort();
        let mut got = self.c.windows.clone();
        got.sort();
        let mut keys = BTreeSet::new();
        for (p, c) in &got {
            if !keys.insert((*p, matches!(c, Closed::Minute { .. }), c.start())) {
                return Err(format!("window emitted twice: partition {p} {c:?}"));
            }
        }
        if got != expected {
            let missing: Vec<_> = expected.iter().filter(|e| !got.contains(e)).collect();
            let extra: Vec<_> = got.iter().filter(|g| !expected.contains(g)).collect();
            if std::env::var("SIM_TRACE").is_ok() {
                for (p, o, t, payload) in &self.appended {
                    eprintln!(
                        "p{p}@{o} txn {t} {:?} {}",
                        self.c.txns[*t],
                        String::from_utf8_lossy(payload)
                    );
                }
                eprintln!("{}", self.status());
                eprintln!("{:#?}", self.trace);
            }
            return Err(format!(
                "committed windows differ from aggregate: missing {missing:?}, unexpected {extra:?}"
            ));
        }
        let mut got_dead = self.c.dead.clone();
        got_dead.sort();
        dead.sort();
        if got_dead != dead {
            return Err(format!(
                "dead letters differ: got {got_dead:?}, expected {dead:?}"
            ));
        }
        Ok(())
    }
}

/// Runs one seed; the failure names the command that replays it.
fn run_seed(seed: u64) -> Result<u64, String> {
    let mut sim = Sim::new(seed);
    sim.run().map(|()| sim.c.now).map_err(|e| {
        let tail: Vec<&String> = sim.trace.iter().rev().take(12).collect();
        format!(
            "seed {seed}: {e}\nlast events (newest first): {tail:?}\n\
             replay: SIM_SEED={seed} cargo test -p timebucket-core --test sim"
        )
    })
}

fn env(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn sim() {
    if let Some(seed) = env("SIM_SEED") {
        if let Err(e) = run_seed(seed) {
            panic!("{e}");
        }
        return;
    }
    // scripts/test builds in release, where a schedule takes under a
    // millisecond.
    let default = if cfg!(debug_assertions) { 3000 } else { 30_000 };
    let schedules = env("SIM_SCHEDULES").unwrap_or(default);
    let budget = Duration::from_secs(env("SIM_SECONDS").unwrap_or(45));
    let first = env("SIM_FIRST").unwrap_or(0);
    let started = Instant::now();
    let mut steps = 0;
    let mut ran = 0;
    for seed in first..first + schedules {
        if started.elapsed() > budget {
            break;
        }
        match run_seed(seed) {
            Ok(n) => steps += n,
            Err(e) => panic!(
                "{e}\n(after {ran} schedules and {:.1} s)",
                started.elapsed().as_secs_f64()
            ),
        }
        ran += 1;
    }
    eprintln!(
        "sim: {ran} schedules, {steps} steps, {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        ran >= schedules.min(500),
        "only {ran} schedules within {budget:?}"
    );
}
