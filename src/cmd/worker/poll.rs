//! What the worker adds to the group loop ([`crate::cmd::driver`]): each
//! record to its partition's state machine and the [`Step`] it returns
//! carried out (frames counted, forwarded, late or dead-lettered); the
//! checkpoints and the shards' progress with every commit; idle (live) or
//! drained (`--until-end`, see [`super::ends`]) partitions closed; the
//! per-partition gauges and the progress log.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::bounds;
use super::ends::{drain_step, lost_to_retention, on_end, Targets};
use super::{shard, Owned, Resume, Shared, State, Worker, WorkerOptions};
use crate::cmd::driver::{
    Clock, Command, GroupLog, Handled, Record, StatsEnds, Unanswered, ANSWER_BUDGET,
};
use crate::core::frame::Line;
use crate::core::partition::{Partition, Start, Step};
use crate::core::window::Closed;
use crate::error::Error;
use crate::kafka::checkpoint::{committed_checkpoint, committed_checkpoints, encode_checkpoint};
use crate::kafka::sink::{Commit, Late};
use crate::observe::worker::PartitionFigures;

/// How often the per-partition gauges (watermark, delay, lag) are set, and
/// librdkafka reports its statistics (end offsets) when metrics are served.
pub(super) const OBSERVE_INTERVAL: Duration = Duration::from_secs(1);

/// What the worker's loop hooks keep between iterations.
pub(super) struct Pace {
    /// Where a batch run ends.
    pub targets: Targets,
    started: Instant,
    last_check: Instant,
    last_observe: Instant,
    last_print_frames: u64,
    /// Whether the end check's reads go unanswered, since when.
    unanswered: Unanswered,
}

impl Pace {
    /// A run starting `now`.
    pub fn new(targets: Targets, now: Instant) -> Pace {
        Pace {
            targets,
            started: now,
            last_check: now,
            last_observe: now,
            last_print_frames: 0,
            unanswered: Unanswered::default(),
        }
    }
}

impl Command for Worker {
    type Partition = Owned;
    type Local = super::Local;
    type Loop = Pace;

    fn topic(&self) -> &str {
        &self.opts.connection.topics.input
    }

    fn transactional(&self) -> bool {
        self.opts.outputs.exactly_once
    }

    fn commit_interval(&self) -> Duration {
        self.opts.running.commit_interval
    }

    fn poll_timeout(&self) -> Duration {
        // In batch mode an empty queue may mean the end: check soon.
        if self.batch {
            Duration::from_millis(10)
        } else {
            Duration::from_millis(100)
        }
    }

    fn start(&self, group: &Shared, log: &impl GroupLog, partition: i32) -> Result<Owned, Error> {
        super::guard::check_partition(&self.watch, partition)?;
        let start = start_of(log, &*group.clock, &self.opts, partition)?;
        if let Start::Checkpoint(cp) = start {
            group.state().local.resumes.push(Resume {
                partition,
                at_ms: group.clock.unix_ms(),
                resume: cp.resume_seq,
                handled_until: cp.handled_until,
            });
        }
        Ok(Owned {
            partition: Partition::new(start, self.opts.windows.rules)
                .guarded(self.routing, partition as u32),
            last_record: group.clock.now(),
            in_batch: false,
            progress_sent: None,
        })
    }

    type Prepared<'a> = Line<'a>;

    fn prepare<'a>(&self, records: &[Record<'a>]) -> Vec<Line<'a>> {
        let rules = self.opts.windows.rules;
        self.parser
            .parse_all(records, |r| rules.parse(r.time, r.payload))
    }

    fn record(
        &self,
        log: &impl GroupLog,
        state: &mut State,
        record: &Record<'_>,
        line: Line<'_>,
    ) -> Result<Handled, Error> {
        handle_record(log, self, state, record, line)
    }

    fn checkpoint(&self, owned: &Owned) -> Option<(u64, String)> {
        let cp = owned.partition.checkpoint();
        Some((cp.resume_seq, encode_checkpoint(&cp)))
    }

    fn committed(
        &self,
        log: &impl GroupLog,
        partitions: &[i32],
    ) -> Result<BTreeMap<i32, u64>, Error> {
        let committed = committed_checkpoints(log, partitions, Duration::from_secs(120))?;
        Ok(committed
            .into_iter()
            .filter_map(|(p, c)| Some((p, c.checkpoint()?.resume_seq)))
            .collect())
    }

    fn before_commit(&self, state: &mut State) {
        if self.opts.outputs.shards > 1 {
            shard::send_progress(state);
        }
    }

    fn after_commit(&self, state: &mut State, outcome: &Commit, took: Duration) {
        if self.opts.outputs.exactly_once {
            self.metrics.transaction_ended(took.as_secs_f64());
        }
        let summary = &mut state.local.summary;
        match *outcome {
            Commit::Durable => {
                summary.transactions_committed += u64::from(self.opts.outputs.exactly_once)
            }
            Commit::Rewind { producer_replaced } => {
                summary.transactions_aborted += 1;
                summary.producer_replacements += u64::from(producer_replaced);
                state.local.budget.clear();
            }
        }
    }

    fn revoked(&self, state: &mut State, partitions: &[i32]) {
        for p in partitions {
            state.local.budget.remove(*p);
        }
        state.local.summary.partitions_revoked += partitions.len() as u64;
        self.metrics.revoked(partitions);
    }

    fn assigned(&self, state: &mut State, _partitions: &[i32]) {
        state.local.summary.rebalances += 1;
        self.metrics.joined();
    }

    fn statistics(&self, ends: &[StatsEnds]) {
        let ends = ends.iter().map(|e| (e.partition, e.low, e.end));
        self.metrics.end_offsets(ends.filter(|(p, _, _)| *p >= 0));
    }

    fn before_poll(&self, _group: &Shared) -> Result<(), Error> {
        self.watch.check(|| {
            "the worker stops rather than judge frames by the old count \
             (docs/semantics.md, \"Partition count\")"
                .to_string()
        })
    }

    fn after_rewind(&self, group: &Shared, log: &impl GroupLog) -> Result<(), Error> {
        // librdkafka does not announce an end it announced before.
        let ended = std::mem::take(&mut group.state().local.pending_end);
        for p in ended {
            on_end(log, group, p)?;
        }
        Ok(())
    }

    fn pace(&self, group: &Shared, pace: &mut Pace) {
        if let Some(rate) = self.opts.running.throttle {
            throttle(group, rate, pace.started);
        }
    }

    fn at_end(&self, group: &Shared, log: &impl GroupLog, partition: i32) -> Result<(), Error> {
        on_end(log, group, partition)
    }

    fn after_batch(&self, state: &mut State, handled: usize) {
        if handled > 0 {
            let now = state.clock.unix_ms();
            state.local.first_record_ms.get_or_insert(now);
            state.local.last_record_ms = Some(now);
            let now = state.clock.now();
            for owned in state.partitions.values_mut().filter(|o| o.in_batch) {
                owned.last_record = now;
                owned.in_batch = false;
            }
        }
        bounds::publish(state);
        self.metrics.publish(&state.local.summary);
    }

    fn check(
        &self,
        group: &Shared,
        log: &impl GroupLog,
        pace: &mut Pace,
        queue_empty: bool,
    ) -> Result<bool, Error> {
        let opts = &self.opts;
        let batch = pace.targets.batch();
        let due = Duration::from_millis(if queue_empty && batch { 20 } else { 200 });
        let clock = &*group.clock;
        if clock.since(pace.last_check) < due {
            return Ok(false);
        }
        pace.last_check = clock.now();
        // Batch runs close windows by their end offsets, never by a pause
        // (a broker failover must not change their results).
        if let Some(idle) = opts.running.idle_flush.filter(|_| !batch) {
            close_idle(group, idle);
        }
        if let Some(targets) = pace.targets.resolve()? {
            let done = drain_step(log, group, targets);
            if pace.unanswered.settle(done, clock.now(), ANSWER_BUDGET)? {
                info!("input drained to the end offsets");
                return Ok(true);
            }
        }
        if clock.since(pace.last_observe) >= OBSERVE_INTERVAL {
            pace.last_observe = clock.now();
            observe_partitions(log, group);
        }
        let state = group.state();
        let frames = state.local.summary.frames;
        if opts.running.print_interval > 0
            && frames / opts.running.print_interval
                > pace.last_print_frames / opts.running.print_interval
        {
            let secs = clock.since(pace.started).as_secs_f64();
            let summary = &state.local.summary;
            info!(
                frames,
                rate = format!("{:.0}/s", frames as f64 / secs),
                invalid = summary.invalid,
                late_seconds = summary.late_seconds,
                late_minutes = summary.late_minutes,
                owned = state.partitions.len(),
                "progress"
            );
            pace.last_print_frames = frames;
        }
        Ok(false)
    }
}

/// Sleeps until the frames counted so far are due at `rate` per second.
fn throttle(shared: &Shared, rate: u64, started: Instant) {
    let frames = shared.state().local.summary.frames;
    let due = Duration::from_secs_f64(frames as f64 / rate.max(1) as f64);
    if let Some(wait) = due.checked_sub(shared.clock.since(started)) {
        shared.clock.sleep(wait);
    }
}

fn handle_record(
    consumer: &impl GroupLog,
    worker: &Worker,
    state: &mut State,
    record: &Record<'_>,
    line: Line<'_>,
) -> Result<Handled, Error> {
    let opts = &worker.opts;
    let Record {
        partition,
        offset,
        payload,
        ..
    } = *record;
    let owned = state
        .partitions
        .get_mut(&partition)
        .expect("inserted above");
    let dropped_before = owned.partition.windows().beyond_horizon().frames;
    let step = owned
        .partition
        .on_parsed(offset, line, &mut state.local.closed);
    if let Some(gap) = owned.partition.take_gap() {
        let lost = lost_to_retention(consumer, partition, gap);
        state.local.summary.lost_to_retention += lost;
    }
    match step {
        Step::Seek(to) => return Ok(Handled::Seek(to)),
        Step::Duplicate => return Ok(Handled::Done),
        Step::Blank => state.local.summary.blank += 1,
        Step::Frame {
            replay,
            counted,
            ts,
        } => {
            state.local.summary.frames += 1;
            if replay {
                state.local.summary.replayed += 1;
            } else {
                if opts.outputs.forward && !state.sink.forward(partition, offset, payload) {
                    state.local.summary.too_large_for_topic += 1;
                }
                if !counted.second {
                    state.local.summary.late_seconds += 1;
                    state.local.summary.late_minutes += u64::from(!counted.minute);
                    let late = Late {
                        minute: !counted.minute,
                        window: if counted.minute { ts } else { ts - ts % 60 },
                        watermark: owned.partition.watermark().map_or(0, |w| w.0),
                    };
                    if !state.sink.late(partition, offset, payload, late) {
                        state.local.summary.too_large_for_topic += 1;
                    }
                }
            }
        }
        Step::Invalid { reason, replay } => {
            state.local.summary.count_invalid(reason.code());
            if replay {
                state.local.summary.replayed += 1;
            } else {
                state.sink.dead_letter(partition, offset, payload, reason);
            }
        }
    }
    owned.in_batch = true;
    bounds::after_record(state, partition, offset, dropped_before)?;
    emit(state, partition);
    Ok(Handled::Done)
}

/// Sends the windows in `state.local.closed` for `partition`.
pub(super) fn emit(state: &mut State, partition: i32) {
    if state.local.closed.is_empty() {
        return;
    }
    state.emit_pending = true;
    bounds::after_close(state, partition);
    for c in state.local.closed.drain(..) {
        match c {
            Closed::Second { .. } => state.local.summary.seconds_emitted += 1,
            Closed::Minute { .. } => state.local.summary.minutes_emitted += 1,
        }
        state.sink.emit(partition, &c);
    }
}

/// Where `partition` starts: its committed checkpoint, or the log start
/// (no commit, or one without a valid checkpoint and `restart`).
pub(super) fn start_of(
    consumer: &impl GroupLog,
    clock: &dyn Clock,
    opts: &WorkerOptions,
    partition: i32,
) -> Result<Start, Error> {
    let what = format!("partition {partition}");
    let watermarks = || consumer.watermarks(partition, Duration::from_secs(120), &what);
    let committed = committed_checkpoint(consumer, partition, Duration::from_secs(120))?;
    let (mut low, mut high) = watermarks()?;
    // A leader elected a moment ago may answer an end offset below what was
    // read before: ask again before judging a checkpoint beyond it.
    let needed = committed
        .as_ref()
        .and_then(|c| c.checkpoint())
        .map_or(0, |cp| cp.handled_until);
    let patience = clock.now() + Duration::from_secs(10);
    while (high.max(0) as u64) < needed && clock.now() < patience {
        clock.sleep(Duration::from_millis(500));
        (low, high) = watermarks()?;
    }
    if let Some(committed) = committed {
        let now = clock.unix_ms() / 1000;
        let log_end = high.max(0) as u64;
        if let Some(cp) = super::guard::usable(opts, partition, committed, log_end, now)? {
            info!(
                partition,
                resume = cp.resume_seq,
                handled_until = cp.handled_until,
                "resuming partition from checkpoint"
            );
            return Ok(Start::Checkpoint(cp));
        }
        warn!(
            partition,
            log_start = low,
            "recomputing partition from the log start (--on-missing-checkpoint=restart)"
        );
    }
    Ok(Start::Fresh {
        log_start: low.max(0) as u64,
    })
}

/// Closes the windows of partitions without a record for `idle`: a
/// processing-time decision, for live streams.
fn close_idle(shared: &Shared, idle: Duration) {
    let mut guard = shared.state();
    let state = &mut *guard;
    let idle_partitions: Vec<i32> = state
        .partitions
        .iter()
        .filter(|(_, o)| {
            o.partition.has_open_windows() && shared.clock.since(o.last_record) >= idle
        })
        .map(|(&p, _)| p)
        .collect();
    for p in idle_partitions {
        let owned = state.partitions.get_mut(&p).expect("listed above");
        owned.partition.close_idle(&mut state.local.closed);
        if !state.local.closed.is_empty() {
            info!(
                partition = p,
                windows = state.local.closed.len(),
                "idle partition: closed its open windows"
            );
            emit(state, p);
        }
    }
}

/// Sets the per-partition gauges: every assigned partition's watermark,
/// how far it trails the present, and its lag (from the position the state
/// machine reached, or the consumer's before its first record).
fn observe_partitions(consumer: &impl GroupLog, shared: &Shared) {
    let Ok(positions) = consumer.positions() else {
        return;
    };
    let figures: Vec<PartitionFigures> = {
        let state = shared.state();
        positions
            .into_iter()
            .map(|(partition, fetched)| {
                let owned = state.partitions.get(&partition).map(|o| &o.partition);
                PartitionFigures {
                    partition,
                    watermark: owned
                        .and_then(Partition::watermark)
                        .map(|w| w.0)
                        .filter(|&w| w <= i64::MAX as u64),
                    position: owned.map(|p| p.position() as i64).or(fetched),
                }
            })
            .collect()
    };
    shared
        .metrics
        .partitions(shared.clock.unix_ms() / 1000, &figures);
}
