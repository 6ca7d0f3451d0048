//! `timebucket worker`: the thin Kafka loop around the window core.
//!
//! Joins the consumer group, keeps one [`Windows`] per owned partition, and
//! for every input record: parse → record → emit closed windows to the metric
//! topics (→ forward the frame, or dead-letter it). Every commit interval it
//! waits until everything emitted is delivered and only then commits, per
//! partition, the checkpoint of its open windows (see
//! [`crate::kafka::consumer::encode_checkpoint`]), so a new owner rebuilds
//! them exactly and re-emits nothing with another value.
//!
//! Two delivery modes. Exactly-once (the default): everything a worker
//! produces between two commits is one Kafka transaction together with the
//! input offsets and checkpoints, so a `read_committed` reader sees each
//! window once whatever happens to the workers. At-least-once: records are
//! flushed, then offsets committed; after a crash a window may be emitted
//! again, always with the same value.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, ConsumerGroupMetadata};
use rdkafka::message::Message;
use rdkafka::producer::BaseRecord;
use rdkafka::producer::Producer;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tracing::{info, warn};

use crate::error::Error;
use crate::frame::{FrameParser, Line};
use crate::kafka::config::{KafkaSettings, TopicNames};
use crate::kafka::consumer::{self as group, GroupConsumer, Handover};
use crate::kafka::producer::{self, Origin, TrackedProducer};
use crate::kafka::retry;
use crate::metric::{MetricKind, MetricRecord};
use crate::window::{Closed, Windows};

#[derive(Debug, Clone)]
pub struct WorkerOptions {
    pub settings: KafkaSettings,
    pub group: String,
    pub topics: TopicNames,
    /// Also forward every valid frame, bytes unchanged, to `topics.forward`.
    pub forward: bool,
    pub lateness: u64,
    pub parser: FrameParser,
    /// Close a partition's windows after this long without a new frame.
    pub idle_flush: Option<Duration>,
    /// Stop once the owned partitions reach the end offsets seen at start.
    pub until_end: bool,
    pub print_interval: u64,
    pub commit_interval: Duration,
    /// Produce in transactions with the offsets (exactly-once output).
    pub exactly_once: bool,
    /// Caps this worker's processing rate (frames/s) for demos and tests
    /// that need a job to be mid-stream for a while.
    pub throttle: Option<u64>,
    /// Like `until_end`, with the end offsets given (`loadtest --live`
    /// starts workers before the input is produced; hidden `--until-offsets`).
    pub until_offsets: Option<HashMap<i32, i64>>,
    /// Write a JSON run summary here at the end (hidden `--summary-file`,
    /// for `loadtest`): see [`write_summary`].
    pub summary_file: Option<PathBuf>,
}

#[derive(Debug, Default, Clone)]
pub struct WorkerSummary {
    pub frames: u64,
    pub invalid: u64,
    pub replayed: u64,
    pub seconds_emitted: u64,
    pub minutes_emitted: u64,
}

struct PartitionState {
    windows: Windows,
    /// Offset of the next record to read.
    next_offset: u64,
    /// Records below this offset were handled by a previous owner: replaying
    /// them rebuilds windows but sends no side output again.
    handled_until: u64,
    last_frame: Instant,
}

/// State shared by the poll loop and the rebalance callbacks (which run
/// inside `poll`, on the same thread, so the lock is never contended).
struct Shared {
    opts: WorkerOptions,
    /// Replaced by a fresh transactional producer if this one is fenced.
    producer: std::sync::RwLock<TrackedProducer>,
    partitions: Mutex<BTreeMap<i32, PartitionState>>,
    /// Scratch for closed windows.
    closed: Mutex<Vec<Closed>>,
    summary: Mutex<WorkerSummary>,
    /// An error met inside a rebalance callback, where it cannot be returned.
    fatal: Mutex<Option<Error>>,
    /// Set when a transaction was aborted: every owned partition must go back
    /// to its committed checkpoint before processing goes on.
    rewind: AtomicBool,
    /// Run timing for `summary_file`: the first and last records consumed
    /// (the last one per poll batch); windows emitted since the last time
    /// they were made durable; the last time.
    first_record_ms: OnceLock<u64>,
    last_record_ms: AtomicU64,
    emit_pending: AtomicBool,
    last_emit_ms: AtomicU64,
}

impl Shared {
    fn emit(&self, partition: i32, closed: &[Closed]) {
        if !closed.is_empty() {
            self.emit_pending.store(true, Ordering::Relaxed);
        }
        let mut summary = self.summary.lock().expect("poisoned");
        for c in closed {
            let record = MetricRecord::new(*c, partition);
            let topic = match record.metric {
                MetricKind::Second => {
                    summary.seconds_emitted += 1;
                    &self.opts.topics.seconds
                }
                MetricKind::Minute => {
                    summary.minutes_emitted += 1;
                    &self.opts.topics.minutes
                }
            };
            let key = record.key();
            let value = record.to_json();
            producer::send(
                &self.producer(),
                BaseRecord::with_opaque_to(topic, c.start() as usize)
                    .key(key.as_bytes())
                    .payload(value.as_bytes()),
            );
        }
    }

    /// Checkpoints of `partitions` (all owned ones when `None`), to commit
    /// once everything emitted so far is delivered.
    fn checkpoints(
        &self,
        states: &BTreeMap<i32, PartitionState>,
        only: Option<&[i32]>,
    ) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for (&p, state) in states {
            if only.is_some_and(|only| !only.contains(&p)) {
                continue;
            }
            let mut cp = state.windows.checkpoint(state.next_offset);
            // While replaying, a previous owner may have handled more than
            // this one has read: never move that mark back.
            cp.handled_until = cp.handled_until.max(state.handled_until);
            group::add_checkpoint(&mut tpl, &self.opts.topics.input, p, &cp);
        }
        tpl
    }
}

impl Shared {
    /// Makes everything produced so far durable together with the
    /// checkpoints of all owned partitions. Returns the offsets the consumer
    /// must still commit itself (at-least-once), or an empty list.
    fn make_durable(
        &self,
        group: Option<&ConsumerGroupMetadata>,
    ) -> Result<TopicPartitionList, Error> {
        let tpl = {
            let states = self.partitions.lock().expect("poisoned");
            self.checkpoints(&states, None)
        };
        if !self.opts.exactly_once {
            // Closed windows were produced as they closed; make sure they
            // landed before the offsets that cover them are committed.
            producer::flush(&self.producer(), Duration::from_secs(120))?;
            self.mark_durable();
            return Ok(tpl);
        }
        if let Err((e, mut fatal)) = self.commit_transaction(&tpl, group) {
            // Nothing of a failed transaction is visible to read_committed
            // readers; rebuilding every partition from its committed
            // checkpoint produces it again.
            if !fatal {
                warn!(error = %e, "transaction failed: aborting it and replaying from the committed checkpoints");
                let producer = self.producer();
                match retry_retriable("abort", || {
                    producer.abort_transaction(Duration::from_secs(8))
                }) {
                    Ok(()) => producer.context().deliveries.reset(),
                    Err(e) => {
                        // The broker aborts it after transaction.timeout.ms;
                        // a fresh producer goes on meanwhile.
                        warn!(error = %e, "cannot abort the transaction: leaving it to the broker's timeout");
                        fatal = true;
                    }
                }
            }
            if fatal {
                // Fenced (for example, the broker aborted a transaction that
                // outlived transaction.timeout.ms), or its transaction cannot
                // be aborted: this producer cannot go on, so a fresh one
                // takes over.
                warn!(error = %e, "transactional producer unusable: starting a new one and replaying from the committed checkpoints");
                let fresh = transactional_producer(&self.opts)?;
                let old = std::mem::replace(&mut *self.producer.write().expect("poisoned"), fresh);
                old.purge(rdkafka::producer::PurgeConfig::default().queue().inflight());
                drop(old);
            }
            self.partitions.lock().expect("poisoned").clear();
            self.rewind.store(true, Ordering::SeqCst);
            if fatal {
                return Ok(TopicPartitionList::new());
            }
        } else {
            self.mark_durable();
        }
        self.producer()
            .begin_transaction()
            .map_err(|e| Error::Kafka(format!("cannot begin a transaction: {e}")))?;
        Ok(TopicPartitionList::new())
    }

    /// Commits the open transaction with `tpl`; on failure the error and
    /// whether it is fatal (this producer can never commit again).
    fn commit_transaction(
        &self,
        tpl: &TopicPartitionList,
        group: Option<&ConsumerGroupMetadata>,
    ) -> Result<(), (String, bool)> {
        let timeout = Duration::from_secs(8);
        let failed = |e: rdkafka::error::KafkaError| {
            let fatal = matches!(&e, rdkafka::error::KafkaError::Transaction(t) if t.is_fatal());
            (e.to_string(), fatal)
        };
        if tpl.count() > 0 {
            let group = group.ok_or_else(|| {
                (
                    "no consumer group metadata for the transaction".to_string(),
                    false,
                )
            })?;
            let producer = self.producer();
            retry_retriable("offset commit", || {
                producer.send_offsets_to_transaction(tpl, group, timeout)
            })
            .map_err(failed)?;
        }
        // commit_transaction flushes first, through rdkafka's slow flush.
        producer::wait_delivered(&self.producer(), timeout);
        let producer = self.producer();
        retry_retriable("commit", || producer.commit_transaction(timeout)).map_err(failed)?;
        let deliveries = &producer.context().deliveries;
        if deliveries.failed() > 0 {
            return Err((deliveries.failure_report(), false));
        }
        Ok(())
    }
}

impl Shared {
    /// Emitted windows are now durable (visible to `read_committed` readers).
    fn mark_durable(&self) {
        if self.emit_pending.swap(false, Ordering::Relaxed) {
            self.last_emit_ms.store(unix_ms(), Ordering::Relaxed);
        }
    }
}

impl Handover for Shared {
    fn revoke(
        &self,
        partitions: &[i32],
        group: Option<&ConsumerGroupMetadata>,
    ) -> TopicPartitionList {
        let result = if self.opts.exactly_once {
            // One transaction covers every owned partition: commit it whole.
            self.make_durable(group)
        } else {
            producer::flush(&self.producer(), Duration::from_secs(60)).map(|()| {
                let states = self.partitions.lock().expect("poisoned");
                self.checkpoints(&states, Some(partitions))
            })
        };
        let mut states = self.partitions.lock().expect("poisoned");
        for p in partitions {
            states.remove(p);
        }
        match result {
            Ok(tpl) => tpl,
            Err(e) => {
                warn!(error = %e, ?partitions, "cannot hand over revoked partitions cleanly; stopping");
                self.fatal.lock().expect("poisoned").get_or_insert(e);
                TopicPartitionList::new()
            }
        }
    }

    fn assigned(&self, _partitions: &[i32]) {}
}

impl Shared {
    fn producer(&self) -> std::sync::RwLockReadGuard<'_, TrackedProducer> {
        self.producer.read().expect("poisoned")
    }
}

/// Retries a transactional call while librdkafka says it may (for example a
/// commit that timed out while a broker restarts: it must be called again,
/// and an abort meanwhile would conflict with it).
fn retry_retriable(
    what: &str,
    mut call: impl FnMut() -> rdkafka::error::KafkaResult<()>,
) -> rdkafka::error::KafkaResult<()> {
    let mut attempts = 0;
    loop {
        match call() {
            Err(rdkafka::error::KafkaError::Transaction(e))
                if e.is_retriable() && attempts < 10 =>
            {
                attempts += 1;
                warn!(error = %e, attempt = attempts, "transaction {what} not done yet; retrying");
            }
            other => return other,
        }
    }
}

/// A producer in a fresh transaction, with an id of its own.
fn transactional_producer(opts: &WorkerOptions) -> Result<TrackedProducer, Error> {
    let id = transactional_id(opts);
    let mut defaults = producer::TRANSACTIONAL_DEFAULTS.to_vec();
    defaults.push(("transactional.id", &id));
    let producer = producer::tracked_producer(&opts.settings, &defaults)?;
    producer.init_transactions(Duration::from_secs(30)).map_err(|e| {
        Error::Kafka(format!(
            "cannot start transactions at {} ({e}); is the broker reachable and does it support transactions? \
             --at-least-once works without them",
            opts.settings.bootstrap
        ))
    })?;
    producer
        .begin_transaction()
        .map_err(|e| Error::Kafka(format!("cannot begin a transaction: {e}")))?;
    Ok(producer)
}

/// A transactional id unique to this process: fencing of zombies comes from
/// the consumer group generation (KIP-447), so ids need not be stable.
fn transactional_id(opts: &WorkerOptions) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    format!(
        "timebucket-{}-{}-{host}-{}-{nanos:x}",
        opts.group,
        opts.topics.input,
        std::process::id()
    )
}

/// Runs until `stop` is set (SIGINT/SIGTERM) or, with `until_end`, until the
/// owned partitions are drained.
pub fn run(opts: WorkerOptions, stop: Arc<AtomicBool>) -> Result<WorkerSummary, Error> {
    let started_ms = unix_ms();
    let producer = if opts.exactly_once {
        transactional_producer(&opts)?
    } else {
        producer::tracked_producer(&opts.settings, producer::WORKER_DEFAULTS)?
    };
    let shared = Arc::new(Shared {
        opts: opts.clone(),
        producer: std::sync::RwLock::new(producer),
        partitions: Mutex::new(BTreeMap::new()),
        closed: Mutex::new(Vec::new()),
        summary: Mutex::new(WorkerSummary::default()),
        fatal: Mutex::new(None),
        rewind: AtomicBool::new(false),
        first_record_ms: OnceLock::new(),
        last_record_ms: AtomicU64::new(0),
        emit_pending: AtomicBool::new(false),
        last_emit_ms: AtomicU64::new(0),
    });
    let consumer = group::group_consumer(
        &opts.settings,
        &opts.group,
        &opts.topics.input,
        shared.clone(),
    )?;
    let targets = match &opts.until_offsets {
        Some(ends) => Some(ends.clone()),
        None if opts.until_end => Some(end_offsets(&consumer, &opts.topics.input)?),
        None => None,
    };
    info!(group = %opts.group, topic = %opts.topics.input, until_end = opts.until_end, exactly_once = opts.exactly_once, "worker started");

    let result = poll_loop(&consumer, &shared, targets.as_ref(), &stop);
    // Leaving the group revokes what we own; the handover commits it.
    drop(consumer);
    let summary = shared.summary.lock().expect("poisoned").clone();
    info!(
        frames = summary.frames,
        invalid = summary.invalid,
        seconds = summary.seconds_emitted,
        minutes = summary.minutes_emitted,
        "worker stopped"
    );
    if let Some(path) = &opts.summary_file {
        if let Err(e) = write_summary(path, &summary, &shared, started_ms, result.is_ok()) {
            warn!(error = %e, path = %path.display(), "cannot write the run summary");
        }
    }
    result.map(|()| summary)
}

fn end_offsets(consumer: &GroupConsumer<Shared>, topic: &str) -> Result<HashMap<i32, i64>, Error> {
    let timeout = Duration::from_secs(30);
    let metadata = retry::with_backoff("topic metadata", timeout, |left| {
        consumer.fetch_metadata(Some(topic), left)
    })
    .map_err(|e| Error::Kafka(format!("cannot read metadata of {topic}: {e}")))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default();
    if partitions.is_empty() {
        return Err(Error::Kafka(format!(
            "input topic {topic} does not exist (run `timebucket topics`)"
        )));
    }
    let mut ends = HashMap::new();
    for p in partitions {
        let (_, high) = retry::with_backoff("end offsets", timeout, |left| {
            consumer.fetch_watermarks(topic, p, left)
        })
        .map_err(|e| Error::Kafka(format!("cannot read end offset of {topic}/{p}: {e}")))?;
        ends.insert(p, high);
    }
    Ok(ends)
}

/// Most records handled per poll-loop iteration (see [`poll_loop`]).
const POLL_BATCH: usize = 512;

fn poll_loop(
    consumer: &GroupConsumer<Shared>,
    shared: &Arc<Shared>,
    targets: Option<&HashMap<i32, i64>>,
    stop: &AtomicBool,
) -> Result<(), Error> {
    let opts = &shared.opts;
    let mut last_commit = Instant::now();
    let mut last_check = Instant::now();
    let mut last_print_frames = 0u64;
    let started = Instant::now();
    loop {
        if stop.load(Ordering::SeqCst) {
            info!("stop requested: committing and leaving the group");
            return commit_all(consumer, shared);
        }
        // Records librdkafka already fetched are handled in a batch before the
        // checks below: their clock reads and locks, once per record, cost
        // about a tenth of the parse at a few hundred thousand frames/s. In
        // batch mode an empty queue may mean the end: check soon, not in 200 ms.
        let mut timeout = if targets.is_some() {
            Duration::from_millis(10)
        } else {
            Duration::from_millis(100)
        };
        let mut handled = 0;
        let mut queue_empty = false;
        while handled < POLL_BATCH {
            match consumer.poll(timeout) {
                Some(Ok(message)) => {
                    shared.first_record_ms.get_or_init(unix_ms);
                    if let Some(rate) = opts.throttle {
                        let frames = shared.summary.lock().expect("poisoned").frames;
                        let due = Duration::from_secs_f64(frames as f64 / rate.max(1) as f64);
                        if let Some(wait) = due.checked_sub(started.elapsed()) {
                            std::thread::sleep(wait);
                        }
                    }
                    let partition = message.partition();
                    let offset = message.offset() as u64;
                    handle_record(
                        consumer,
                        shared,
                        partition,
                        offset,
                        message.payload().unwrap_or(&[]),
                    )?;
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
            if shared.rewind.load(Ordering::SeqCst) || stop.load(Ordering::SeqCst) {
                break;
            }
        }
        if handled > 0 {
            shared.last_record_ms.store(unix_ms(), Ordering::Relaxed);
        }
        if let Some(e) = shared.fatal.lock().expect("poisoned").take() {
            return Err(e);
        }
        if shared.rewind.swap(false, Ordering::SeqCst) {
            rewind(consumer, shared)?;
        }

        let due = Duration::from_millis(if queue_empty && targets.is_some() {
            20
        } else {
            200
        });
        if last_check.elapsed() >= due {
            last_check = Instant::now();
            if let Some(idle) = opts.idle_flush {
                flush_idle(shared, idle);
            }
            if let Some(targets) = targets {
                if drain_step(consumer, shared, targets)? {
                    commit_all(consumer, shared)?;
                    // An aborted final transaction means replaying, not done.
                    if !shared.rewind.load(Ordering::SeqCst) {
                        info!("input drained to the end offsets present at start");
                        return Ok(());
                    }
                }
            }
            let frames = shared.summary.lock().expect("poisoned").frames;
            if opts.print_interval > 0
                && frames / opts.print_interval > last_print_frames / opts.print_interval
            {
                let secs = started.elapsed().as_secs_f64();
                info!(
                    frames,
                    rate = format!("{:.0}/s", frames as f64 / secs),
                    owned = shared.partitions.lock().expect("poisoned").len(),
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

fn handle_record(
    consumer: &GroupConsumer<Shared>,
    shared: &Shared,
    partition: i32,
    offset: u64,
    payload: &[u8],
) -> Result<(), Error> {
    let opts = &shared.opts;
    let known = shared
        .partitions
        .lock()
        .expect("poisoned")
        .contains_key(&partition);
    if !known && opts.exactly_once {
        // Reading the committed checkpoint may wait for another member's open
        // transaction to resolve (up to its timeout). Commit ours first, so
        // that no transaction of ours stays open long enough to be aborted.
        commit_all(consumer, shared)?;
        if shared.rewind.load(Ordering::SeqCst) {
            return Ok(());
        }
    }
    let mut states = shared.partitions.lock().expect("poisoned");
    if !known {
        let cp = group::committed_checkpoint(
            consumer,
            &opts.topics.input,
            partition,
            Duration::from_secs(120),
        )?;
        // A partition (re)starts exactly at its committed checkpoint; records
        // fetched from elsewhere (before a rewind took effect, or after an
        // aborted transaction) are dropped and the partition is sought back.
        let start = match &cp {
            Some(cp) => Offset::Offset(cp.resume_seq as i64),
            None => Offset::Beginning,
        };
        let at_start = match (&cp, start) {
            (Some(cp), _) => offset == cp.resume_seq,
            (None, _) => {
                let (low, _) =
                    retry::with_backoff("partition offsets", Duration::from_secs(120), |left| {
                        consumer.fetch_watermarks(&opts.topics.input, partition, left)
                    })
                    .map_err(|e| {
                        Error::Kafka(format!("cannot read offsets of partition {partition}: {e}"))
                    })?;
                offset as i64 <= low
            }
        };
        if !at_start {
            info!(
                partition,
                first = offset,
                ?start,
                "seeking partition to its committed checkpoint"
            );
            consumer
                .seek(
                    &opts.topics.input,
                    partition,
                    start,
                    Duration::from_secs(30),
                )
                .map_err(|e| Error::Kafka(format!("cannot seek partition {partition}: {e}")))?;
            return Ok(());
        }
        let state = match cp {
            Some(cp) => {
                info!(
                    partition,
                    resume = cp.resume_seq,
                    handled_until = cp.handled_until,
                    "resuming partition from checkpoint"
                );
                PartitionState {
                    windows: Windows::resume(opts.lateness, &cp),
                    next_offset: offset,
                    handled_until: cp.handled_until,
                    last_frame: Instant::now(),
                }
            }
            None => PartitionState {
                windows: Windows::new(opts.lateness),
                next_offset: offset,
                handled_until: 0,
                last_frame: Instant::now(),
            },
        };
        states.insert(partition, state);
    }
    let state = states.get_mut(&partition).expect("inserted above");
    if offset < state.next_offset {
        // Already seen (a re-delivery after a seek): recording it twice would double-count.
        return Ok(());
    }
    state.next_offset = offset + 1;
    state.last_frame = Instant::now();
    let replay = offset < state.handled_until;
    let mut summary = shared.summary.lock().expect("poisoned");
    if replay {
        summary.replayed += 1;
    }
    match opts.parser.parse(payload) {
        Line::Frame(frame) => {
            summary.frames += 1;
            drop(summary);
            state.windows.record(offset, frame.ts, &frame.uid);
            if opts.forward && !replay {
                producer::send(
                    &shared.producer(),
                    BaseRecord::with_opaque_to(&opts.topics.forward, offset as usize)
                        .payload(payload),
                );
            }
            let mut closed = shared.closed.lock().expect("poisoned");
            if let Some(wm) = state.windows.watermark() {
                state.windows.flush(wm, &mut closed);
            }
            if !closed.is_empty() {
                shared.emit(partition, &closed);
                closed.clear();
            }
        }
        Line::Blank => {}
        Line::Invalid(reason) => {
            summary.invalid += 1;
            if !replay {
                producer::send(
                    &shared.producer(),
                    BaseRecord::with_opaque_to(&opts.topics.dead_letter, offset as usize)
                        .payload(payload)
                        .headers(producer::dead_letter_headers(
                            reason,
                            Origin::Offset {
                                partition,
                                offset: offset as i64,
                            },
                        )),
                );
            }
        }
    }
    Ok(())
}

fn flush_idle(shared: &Shared, idle: Duration) {
    let mut states = shared.partitions.lock().expect("poisoned");
    let mut closed = shared.closed.lock().expect("poisoned");
    for (&p, state) in states.iter_mut() {
        if state.windows.open_windows() > 0 && state.last_frame.elapsed() >= idle {
            state.windows.close_all(&mut closed);
            info!(
                partition = p,
                windows = closed.len(),
                "idle partition: closed its open windows"
            );
            shared.emit(p, &closed);
            closed.clear();
        }
    }
}

/// Batch mode: closes the windows of every owned partition that reached its
/// end offset (its end of input), and says whether the whole topic is done:
/// every partition drained and its windows closed, here or by another member
/// (as its committed checkpoint shows). Waiting for the whole topic, not just
/// the owned partitions, lets the group finish the job even when a member
/// dies or an assignment is briefly empty during a cooperative rebalance.
fn drain_step(
    consumer: &GroupConsumer<Shared>,
    shared: &Shared,
    targets: &HashMap<i32, i64>,
) -> Result<bool, Error> {
    if !consumer.context().joined.load(Ordering::SeqCst) {
        return Ok(false);
    }
    let target = |p: i32| targets.get(&p).copied().unwrap_or(0).max(0) as u64;
    let mut unknown = Vec::new();
    {
        let mut states = shared.partitions.lock().expect("poisoned");
        let mut closed = shared.closed.lock().expect("poisoned");
        for (&p, state) in states.iter_mut() {
            if state.next_offset >= target(p) && state.windows.open_windows() > 0 {
                state.windows.close_all(&mut closed);
                info!(
                    partition = p,
                    windows = closed.len(),
                    "partition drained: closed its windows"
                );
                shared.emit(p, &closed);
                closed.clear();
            }
        }
        for &p in targets.keys() {
            match states.get(&p) {
                Some(state) if state.next_offset < target(p) => return Ok(false),
                Some(_) => {}
                None if target(p) == 0 => {}
                None => unknown.push(p),
            }
        }
    }
    if unknown.is_empty() {
        return Ok(true);
    }
    let committed = group::committed_checkpoints(
        consumer,
        &shared.opts.topics.input,
        &unknown,
        Duration::from_secs(120),
    )?;
    Ok(unknown.iter().all(|p| {
        committed
            .get(p)
            .is_some_and(|cp| cp.resume_seq >= target(*p))
    }))
}

/// Seeks every owned partition back to its committed checkpoint, after an
/// aborted transaction dropped the windows built since.
fn rewind(consumer: &GroupConsumer<Shared>, shared: &Shared) -> Result<(), Error> {
    let topic = &shared.opts.topics.input;
    let assignment = consumer
        .assignment()
        .map_err(|e| Error::Kafka(format!("cannot read assignment: {e}")))?;
    for elem in assignment.elements() {
        let p = elem.partition();
        let offset =
            match group::committed_checkpoint(consumer, topic, p, Duration::from_secs(120))? {
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

/// Makes everything emitted durable together with the checkpoint of every
/// owned partition.
fn commit_all(consumer: &GroupConsumer<Shared>, shared: &Shared) -> Result<(), Error> {
    let group = consumer.group_metadata();
    let tpl = shared.make_durable(group.as_ref())?;
    group::commit(consumer, &tpl)
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Parses `--until-offsets`: `PARTITION=END_OFFSET,...`.
pub fn parse_offsets(list: &str) -> Result<HashMap<i32, i64>, Error> {
    list.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|item| {
            let parsed = item
                .split_once('=')
                .and_then(|(p, o)| Some((p.trim().parse().ok()?, o.trim().parse().ok()?)));
            parsed.ok_or_else(|| {
                Error::Config(format!(
                    "expected PARTITION=OFFSET in --until-offsets, got {item:?}"
                ))
            })
        })
        .collect()
}

/// The run summary `loadtest` reads: counts, the unix ms of the first record
/// consumed and of the last emitted windows made durable, peak memory (VmHWM)
/// and CPU time of this process and of its main thread.
fn write_summary(
    path: &Path,
    summary: &WorkerSummary,
    shared: &Shared,
    started_ms: u64,
    ok: bool,
) -> std::io::Result<()> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let peak_rss_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok());
    // utime and stime, fields 14 and 15 of /proc/self/stat (the 12th and
    // 13th after the command name, which may hold spaces), in clock ticks
    // (100 per second on Linux).
    let cpu_ms = |stat: &str| -> Option<u64> {
        let (_, rest) = stat.rsplit_once(')')?;
        let mut f = rest.split_whitespace().skip(11);
        let utime: u64 = f.next()?.parse().ok()?;
        let stime: u64 = f.next()?.parse().ok()?;
        Some((utime + stime) * 10)
    };
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let last_emit = shared.last_emit_ms.load(Ordering::Relaxed);
    let json = serde_json::json!({
        "frames": summary.frames,
        "invalid": summary.invalid,
        "replayed": summary.replayed,
        "seconds_emitted": summary.seconds_emitted,
        "minutes_emitted": summary.minutes_emitted,
        "first_record_ms": shared.first_record_ms.get(),
        "last_record_ms": shared.last_record_ms.load(Ordering::Relaxed),
        "last_emit_ms": (last_emit > 0).then_some(last_emit),
        "started_ms": started_ms,
        "finished_ms": unix_ms(),
        "peak_rss_kb": peak_rss_kb,
        "cpu_ms": cpu_ms(&read("/proc/self/stat")),
        // This is the thread that polls, parses and counts.
        "main_thread_cpu_ms": cpu_ms(&read("/proc/thread-self/stat")),
        "ok": ok,
    });
    std::fs::write(path, format!("{json}\n"))
}
