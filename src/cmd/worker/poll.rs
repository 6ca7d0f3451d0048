//! The worker's loop: polls records in batches, hands each to its
//! partition's state machine and carries out the [`Step`] it returns;
//! commits every interval; closes idle (live) or drained (`--until-end`,
//! see [`super::ends`]) partitions; rewinds after a commit was given up;
//! and hands partitions over on rebalance ([`Handover`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::Offset;
use tracing::{info, warn};

use super::bounds;
use super::ends::{drain_step, lost_to_retention, on_end, Targets};
use super::{shard, unix_ms, Owned, Resume, Shared, State, WorkerOptions};
use crate::core::partition::{Partition, SeekTo, Start, Step};
use crate::core::window::Closed;
use crate::error::Error;
use crate::kafka::checkpoint::{committed_checkpoint, encode_checkpoint};
use crate::kafka::connect::{refusal_of, refused, Refusal};
use crate::kafka::consumer::{GroupConsumer, Handover, OffsetCommit};
use crate::kafka::retry;
use crate::kafka::sink::{Commit, Late, Offsets};
use crate::observe::worker::PartitionFigures;

/// Most records handled per loop iteration: records librdkafka already
/// fetched are handled in a batch before the checks below, whose clock
/// reads cost about a tenth of the parse at a few hundred thousand frames/s.
const POLL_BATCH: usize = 512;

/// How often the per-partition gauges (watermark, delay, lag) are set, and
/// librdkafka reports its statistics (end offsets) when metrics are served.
pub(super) const OBSERVE_INTERVAL: Duration = Duration::from_secs(1);

pub(super) type Worker = GroupConsumer<Shared>;

pub(super) fn run(
    consumer: &Worker,
    shared: &Arc<Shared>,
    targets: &mut Targets,
    stop: &AtomicBool,
) -> Result<(), Error> {
    let opts = &shared.opts;
    let mut last_commit = Instant::now();
    let mut last_check = Instant::now();
    let mut last_print_frames = 0u64;
    let mut last_observe = Instant::now();
    let started = Instant::now();
    loop {
        if stop.load(Ordering::SeqCst) {
            info!("stop requested: committing and leaving the group");
            return commit_all(consumer, shared);
        }
        // A commit given up below (last iteration) rewinds before any
        // record is read again: a record read now could not be told from
        // the first one after the checkpoint.
        if std::mem::take(&mut shared.state().rewind) {
            seek_to_checkpoints(consumer, shared)?;
            // librdkafka does not announce an end it announced before.
            let ended = std::mem::take(&mut shared.state().pending_end);
            for p in ended {
                on_end(consumer, shared, p)?;
            }
        }
        shared.watch.check(|| {
            "the worker stops rather than judge frames by the old count \
             (docs/semantics.md, \"Partition count\")"
                .to_string()
        })?;
        // In batch mode an empty queue may mean the end: check soon.
        let mut timeout = if targets.batch() {
            Duration::from_millis(10)
        } else {
            Duration::from_millis(100)
        };
        let mut handled = 0;
        let mut queue_empty = false;
        while handled < POLL_BATCH {
            match consumer.poll(timeout) {
                Some(Ok(message)) => {
                    if let Some(rate) = opts.throttle {
                        throttle(shared, rate, started);
                    }
                    // The record's own time (CreateTime from the producer,
                    // or LogAppendTime): "now" for the frame's ts bound.
                    let record_time = message
                        .timestamp()
                        .to_millis()
                        .filter(|&ms| ms >= 0)
                        .map(|ms| ms as u64 / 1000);
                    handle_record(
                        consumer,
                        shared,
                        message.partition(),
                        message.offset() as u64,
                        record_time,
                        message.payload().unwrap_or(&[]),
                    )?;
                }
                // Batch runs: everything of the partition up to its end
                // offset has been read.
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    on_end(consumer, shared, partition)?;
                }
                // A missing ACL (group, topic) never heals by itself;
                // anything else (a broker restarting) librdkafka retries.
                Some(Err(e)) if refusal_of(&e) == Some(Refusal::Authorization) => {
                    return Err(refused(
                        &format!(
                            "consumer of group {} on topic {}",
                            opts.group, opts.topics.input
                        ),
                        &e,
                    ));
                }
                Some(Err(e)) => {
                    warn!(error = %e, "consumer error; librdkafka retries");
                    break;
                }
                None => {
                    queue_empty = true;
                    break;
                }
            }
            handled += 1;
            timeout = Duration::ZERO;
            if shared.state().rewind || stop.load(Ordering::SeqCst) {
                break;
            }
        }
        let rewind = {
            let mut state = shared.state();
            if handled > 0 {
                let now = unix_ms();
                state.first_record_ms.get_or_insert(now);
                state.last_record_ms = Some(now);
            }
            bounds::publish(&mut state);
            shared.metrics.publish(&state.summary);
            if let Some(e) = state.fatal.take() {
                return Err(e);
            }
            std::mem::take(&mut state.rewind)
        };
        if rewind {
            seek_to_checkpoints(consumer, shared)?;
        }

        let due = Duration::from_millis(if queue_empty && targets.batch() {
            20
        } else {
            200
        });
        if last_check.elapsed() >= due {
            last_check = Instant::now();
            // Batch runs close windows by their end offsets, never by a pause
            // (a broker failover must not change their results).
            if let Some(idle) = opts.idle_flush.filter(|_| !targets.batch()) {
                close_idle(shared, idle);
            }
            if let Some(targets) = targets.resolve()? {
                if drain_step(consumer, shared, targets)? {
                    commit_all(consumer, shared)?;
                    // An aborted final transaction means replaying, not done.
                    if !shared.state().rewind {
                        info!("input drained to the end offsets present at start");
                        return Ok(());
                    }
                }
            }
            if last_observe.elapsed() >= OBSERVE_INTERVAL {
                last_observe = Instant::now();
                observe_partitions(consumer, shared);
            }
            let state = shared.state();
            let frames = state.summary.frames;
            if opts.print_interval > 0
                && frames / opts.print_interval > last_print_frames / opts.print_interval
            {
                let secs = started.elapsed().as_secs_f64();
                info!(
                    frames,
                    rate = format!("{:.0}/s", frames as f64 / secs),
                    invalid = state.summary.invalid,
                    late_seconds = state.summary.late_seconds,
                    late_minutes = state.summary.late_minutes,
                    owned = state.partitions.len(),
                    "progress"
                );
                last_print_frames = frames;
            }
        }
        if last_commit.elapsed() >= opts.commit_interval {
            commit_all(consumer, shared)?;
            last_commit = Instant::now();
        }
    }
}

/// Sleeps until the frames counted so far are due at `rate` per second.
fn throttle(shared: &Shared, rate: u64, started: Instant) {
    let frames = shared.state().summary.frames;
    let due = Duration::from_secs_f64(frames as f64 / rate.max(1) as f64);
    if let Some(wait) = due.checked_sub(started.elapsed()) {
        std::thread::sleep(wait);
    }
}

fn handle_record(
    consumer: &Worker,
    shared: &Shared,
    partition: i32,
    offset: u64,
    record_time: Option<u64>,
    payload: &[u8],
) -> Result<(), Error> {
    let opts = &shared.opts;
    if !own(consumer, shared, partition)? {
        return Ok(());
    }
    let mut guard = shared.state();
    let state = &mut *guard;
    let owned = state
        .partitions
        .get_mut(&partition)
        .expect("inserted above");
    let dropped_before = owned.partition.windows().beyond_horizon().frames;
    let step = owned
        .partition
        .on_record(offset, record_time, payload, &mut state.closed);
    if let Some(gap) = owned.partition.take_gap() {
        let lost = lost_to_retention(consumer, &opts.topics.input, partition, gap);
        state.summary.lost_to_retention += lost;
    }
    match step {
        Step::Seek(to) => {
            drop(guard);
            info!(
                partition,
                first = offset,
                ?to,
                "seeking partition to its start"
            );
            let offset = match to {
                SeekTo::Offset(o) => Offset::Offset(o as i64),
                SeekTo::Beginning => Offset::Beginning,
            };
            return consumer
                .seek(
                    &opts.topics.input,
                    partition,
                    offset,
                    Duration::from_secs(30),
                )
                .map_err(|e| Error::Kafka(format!("cannot seek partition {partition}: {e}")));
        }
        Step::Duplicate => return Ok(()),
        Step::Blank => state.summary.blank += 1,
        Step::Frame {
            replay,
            counted,
            ts,
        } => {
            state.summary.frames += 1;
            if replay {
                state.summary.replayed += 1;
            } else {
                if opts.forward && !state.sink.forward(partition, offset, payload) {
                    state.summary.too_large_for_topic += 1;
                }
                if !counted.second {
                    state.summary.late_seconds += 1;
                    state.summary.late_minutes += u64::from(!counted.minute);
                    let late = Late {
                        minute: !counted.minute,
                        window: if counted.minute { ts } else { ts - ts % 60 },
                        watermark: owned.partition.watermark().map_or(0, |w| w.0),
                    };
                    if !state.sink.late(partition, offset, payload, late) {
                        state.summary.too_large_for_topic += 1;
                    }
                }
            }
        }
        Step::Invalid { reason, replay } => {
            state.summary.count_invalid(reason.code());
            if replay {
                state.summary.replayed += 1;
            } else {
                state.sink.dead_letter(partition, offset, payload, reason);
            }
        }
    }
    owned.last_record = Instant::now();
    bounds::after_record(state, partition, offset, dropped_before)?;
    emit(state, partition);
    Ok(())
}

/// Makes `partition` an owned one (from its checkpoint or the log start)
/// if it is not yet; `false` when a commit was given up on the way (the
/// caller must wait for the rewind).
pub(super) fn own(consumer: &Worker, shared: &Shared, partition: i32) -> Result<bool, Error> {
    let opts = &shared.opts;
    if shared.state().partitions.contains_key(&partition) {
        return Ok(true);
    }
    super::guard::check_partition(&shared.watch, partition)?;
    if opts.exactly_once {
        // Reading the committed checkpoint may wait for another member's
        // open transaction to resolve (up to its timeout). Commit ours
        // first, so that none of ours stays open long enough to be aborted.
        commit_all(consumer, shared)?;
        if shared.state().rewind {
            return Ok(false);
        }
    }
    let start = start_of(consumer, opts, partition)?;
    let mut state = shared.state();
    if let Start::Checkpoint(cp) = start {
        state.resumes.push(Resume {
            partition,
            at_ms: unix_ms(),
            resume: cp.resume_seq,
            handled_until: cp.handled_until,
        });
    }
    state.partitions.insert(
        partition,
        Owned {
            partition: Partition::new(start, opts.rules).guarded(shared.routing, partition as u32),
            last_record: Instant::now(),
            progress_sent: None,
        },
    );
    Ok(true)
}

/// Sends the windows in `state.closed` for `partition`.
pub(super) fn emit(state: &mut State, partition: i32) {
    if state.closed.is_empty() {
        return;
    }
    state.emit_pending = true;
    bounds::after_close(state, partition);
    for c in state.closed.drain(..) {
        match c {
            Closed::Second { .. } => state.summary.seconds_emitted += 1,
            Closed::Minute { .. } => state.summary.minutes_emitted += 1,
        }
        state.sink.emit(partition, &c);
    }
}

/// Where `partition` starts: its committed checkpoint, or the log start
/// (no commit, or one without a valid checkpoint and `restart`).
pub(super) fn start_of(
    consumer: &Worker,
    opts: &WorkerOptions,
    partition: i32,
) -> Result<Start, Error> {
    let topic = &opts.topics.input;
    let watermarks = || {
        retry::with_backoff("partition offsets", Duration::from_secs(120), |left| {
            consumer.fetch_watermarks(topic, partition, left)
        })
        .map_err(|e| Error::Kafka(format!("cannot read offsets of partition {partition}: {e}")))
    };
    let committed = committed_checkpoint(consumer, topic, partition, Duration::from_secs(120))?;
    let (mut low, mut high) = watermarks()?;
    // A leader elected a moment ago may answer an end offset below what was
    // read before: ask again before judging a checkpoint beyond it.
    let needed = committed
        .as_ref()
        .and_then(|c| c.checkpoint())
        .map_or(0, |cp| cp.handled_until);
    let patience = Instant::now() + Duration::from_secs(10);
    while (high.max(0) as u64) < needed && Instant::now() < patience {
        std::thread::sleep(Duration::from_millis(500));
        (low, high) = watermarks()?;
    }
    if let Some(committed) = committed {
        let now = unix_ms() / 1000;
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
        .filter(|(_, o)| o.partition.has_open_windows() && o.last_record.elapsed() >= idle)
        .map(|(&p, _)| p)
        .collect();
    for p in idle_partitions {
        let owned = state.partitions.get_mut(&p).expect("listed above");
        owned.partition.close_idle(&mut state.closed);
        if !state.closed.is_empty() {
            info!(
                partition = p,
                windows = state.closed.len(),
                "idle partition: closed its open windows"
            );
            emit(state, p);
        }
    }
}

/// Seeks every owned partition back to its committed checkpoint, after an
/// aborted transaction dropped the windows built since.
fn seek_to_checkpoints(consumer: &Worker, shared: &Shared) -> Result<(), Error> {
    let topic = &shared.opts.topics.input;
    let assignment = consumer
        .assignment()
        .map_err(|e| Error::Kafka(format!("cannot read assignment: {e}")))?;
    for elem in assignment.elements() {
        let p = elem.partition();
        // Without a valid checkpoint: the start decides again at the first record.
        let committed = committed_checkpoint(consumer, topic, p, Duration::from_secs(120))?;
        let offset = match committed.as_ref().and_then(|c| c.checkpoint()) {
            Some(cp) => Offset::Offset(cp.resume_seq as i64),
            None => Offset::Beginning,
        };
        consumer
            .seek(topic, p, offset, Duration::from_secs(30))
            .map_err(|e| Error::Kafka(format!("cannot rewind {topic}/{p}: {e}")))?;
        info!(
            partition = p,
            ?offset,
            "rewound partition to its committed checkpoint"
        );
    }
    Ok(())
}

/// Sets the per-partition gauges: every assigned partition's watermark,
/// how far it trails the present, and its lag (from the position the state
/// machine reached, or the consumer's before its first record).
fn observe_partitions(consumer: &Worker, shared: &Shared) {
    let Ok(positions) = consumer.position() else {
        return;
    };
    let figures: Vec<PartitionFigures> = {
        let state = shared.state();
        positions
            .elements_for_topic(&shared.opts.topics.input)
            .iter()
            .map(|e| {
                let owned = state.partitions.get(&e.partition()).map(|o| &o.partition);
                let fetched = match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                };
                PartitionFigures {
                    partition: e.partition(),
                    watermark: owned
                        .and_then(Partition::watermark)
                        .map(|w| w.0)
                        .filter(|&w| w <= i64::MAX as u64),
                    position: owned.map(|p| p.position() as i64).or(fetched),
                }
            })
            .collect()
    };
    shared.metrics.partitions(unix_ms() / 1000, &figures);
}

/// Makes everything emitted durable together with the checkpoint of every
/// owned partition.
pub(super) fn commit_all(consumer: &Worker, shared: &Shared) -> Result<(), Error> {
    commit_state(shared, &mut shared.state(), consumer)
}

fn commit_state(
    shared: &Shared,
    state: &mut State,
    consumer: &dyn OffsetCommit,
) -> Result<(), Error> {
    let opts = &shared.opts;
    if opts.shards > 1 {
        shard::send_progress(state);
    }
    let offsets = checkpoints(&opts.topics.input, &state.partitions);
    let started = Instant::now();
    let outcome = state.sink.commit(&offsets, consumer)?;
    if opts.exactly_once {
        shared
            .metrics
            .transaction_ended(started.elapsed().as_secs_f64());
    }
    match outcome {
        Commit::Durable => {
            state.summary.transactions_committed += u64::from(opts.exactly_once);
            if std::mem::take(&mut state.emit_pending) {
                state.last_emit_ms = Some(unix_ms());
            }
        }
        Commit::Rewind { producer_replaced } => {
            state.summary.transactions_aborted += 1;
            state.summary.producer_replacements += u64::from(producer_replaced);
            // Nothing of the given-up outputs is visible to read_committed
            // readers; replaying from the committed checkpoints makes them again.
            state.partitions.clear();
            state.budget.clear();
            state.rewind = true;
        }
    }
    Ok(())
}

/// The checkpoints of every owned partition, as offsets to commit.
fn checkpoints(topic: &str, partitions: &BTreeMap<i32, Owned>) -> Offsets {
    let mut offsets = Offsets::new(topic);
    for (&p, owned) in partitions {
        let cp = owned.partition.checkpoint();
        offsets.add(p, cp.resume_seq, encode_checkpoint(&cp));
    }
    offsets
}

impl Handover for Shared {
    fn revoke(&self, partitions: &[i32], consumer: &dyn OffsetCommit) {
        let mut state = self.state();
        // One commit covers every owned partition: make it whole.
        let result = commit_state(self, &mut state, consumer);
        for p in partitions {
            state.partitions.remove(p);
            state.budget.remove(*p);
        }
        state.summary.partitions_revoked += partitions.len() as u64;
        self.metrics.revoked(partitions);
        if let Err(e) = result {
            warn!(error = %e, ?partitions, "cannot hand over revoked partitions cleanly; stopping");
            state.fatal.get_or_insert(e);
        }
    }

    fn assigned(&self, _partitions: &[i32]) {
        self.state().summary.rebalances += 1;
        self.metrics.joined();
    }

    fn statistics(&self, stats: &Statistics) {
        let Some(topic) = stats.topics.get(&self.opts.topics.input) else {
            return;
        };
        // A read_committed consumer reaches the last stable offset.
        let ends = topic.partitions.values().map(|p| {
            let end = if p.ls_offset >= 0 {
                p.ls_offset
            } else {
                p.hi_offset
            };
            (p.partition, p.lo_offset, end)
        });
        self.metrics.end_offsets(ends.filter(|(p, _, _)| *p >= 0));
    }
}
