//! The merge stage's loop: polls partials, hands each to its partition's
//! [`Merger`], sends the merged windows, commits every interval (merged
//! windows, partials offsets and merge checkpoints in one transaction),
//! rewinds after a transaction was given up, and hands partitions over on
//! rebalance.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::topic_partition_list::Offset;
use tracing::{info, warn};

use super::{unix_ms, Owned, Shared, State};
use crate::core::cursor::{Admit, Cursor, SeekTo};
use crate::core::merge::{Merger, Step};
use crate::core::window::Closed;
use crate::error::Error;
use crate::kafka::consumer::{GroupConsumer, Handover, OffsetCommit};
use crate::kafka::partials;
use crate::kafka::read::partitions_of;
use crate::kafka::retry;
use crate::kafka::sink::{Commit, Offsets};

type MergeConsumer = GroupConsumer<Shared>;

const POLL_BATCH: usize = 512;

pub(super) fn run(
    consumer: &MergeConsumer,
    shared: &Shared,
    stop: &AtomicBool,
) -> Result<(), Error> {
    let opts = &shared.opts;
    let mut last_commit = Instant::now();
    let mut last_check = Instant::now();
    loop {
        if stop.load(Ordering::SeqCst) {
            info!("stop requested: committing and leaving the group");
            return commit_all(consumer, shared);
        }
        let mut timeout = Duration::from_millis(50);
        for _ in 0..POLL_BATCH {
            match consumer.poll(timeout) {
                Some(Ok(m)) => handle(
                    consumer,
                    shared,
                    m.partition(),
                    m.offset() as u64,
                    m.key().unwrap_or(&[]),
                    m.payload().unwrap_or(&[]),
                )?,
                Some(Err(e)) => {
                    warn!(error = %e, "consumer error; librdkafka retries");
                    break;
                }
                None => break,
            }
            timeout = Duration::ZERO;
            if shared.state().rewind {
                break;
            }
        }
        let rewind = {
            let mut state = shared.state();
            if let Some(e) = state.fatal.take() {
                return Err(e);
            }
            std::mem::take(&mut state.rewind)
        };
        if rewind {
            seek_to_checkpoints(consumer, shared)?;
        }
        if last_commit.elapsed() >= opts.commit_interval {
            commit_all(consumer, shared)?;
            last_commit = Instant::now();
        }
        if opts.until_end && last_check.elapsed() >= Duration::from_millis(200) {
            last_check = Instant::now();
            if all_done(consumer, shared)? {
                commit_all(consumer, shared)?;
                if !shared.state().rewind && all_done(consumer, shared)? {
                    info!("every shard ended and every window is merged");
                    return Ok(());
                }
            }
        }
    }
}

fn handle(
    consumer: &MergeConsumer,
    shared: &Shared,
    partition: i32,
    offset: u64,
    key: &[u8],
    value: &[u8],
) -> Result<(), Error> {
    if !shared.state().partitions.contains_key(&partition) {
        // Reading the committed checkpoint waits for open transactions on
        // it: commit ours first (as the worker does).
        commit_all(consumer, shared)?;
        if shared.state().rewind {
            return Ok(());
        }
        let owned = start_of(consumer, shared, partition)?;
        shared.state().partitions.insert(partition, owned);
    }
    let mut guard = shared.state();
    let state = &mut *guard;
    let owned = state
        .partitions
        .get_mut(&partition)
        .expect("inserted above");
    // A partition starts at its first committed record at or after its
    // checkpoint (or the log start), wherever that is: read_committed skips
    // aborted transactions and their markers, and a checkpoint may be a
    // shard worker's commit marker. One seek there, then the first record
    // that comes is it ([`Cursor`]). librdkafka drops records fetched
    // before a seek, so nothing older than a rewind arrives here.
    match owned.cursor.admit(offset) {
        Admit::Take => {}
        Admit::Duplicate => return Ok(()),
        Admit::Seek(to) => {
            drop(guard);
            let to = match to {
                SeekTo::Offset(o) => Offset::Offset(o as i64),
                SeekTo::Beginning => Offset::Beginning,
            };
            info!(
                partition,
                first = offset,
                ?to,
                "seeking partials partition to its checkpoint"
            );
            return consumer
                .seek(
                    &shared.opts.partials_topic,
                    partition,
                    to,
                    Duration::from_secs(30),
                )
                .map_err(|e| {
                    Error::Kafka(format!("cannot seek partials partition {partition}: {e}"))
                });
        }
    }
    owned.cursor.take_gap();
    state.summary.pieces += 1;
    let piece = match partials::decode(key, value) {
        Ok(piece) => piece,
        Err(reason) => {
            state.summary.invalid += 1;
            warn!(partition, offset, %reason, "not a partials record: counted as invalid");
            return Ok(());
        }
    };
    match piece {
        crate::core::merge::Piece::Partial { .. } => state.summary.partials += 1,
        crate::core::merge::Piece::Progress { .. } => state.summary.progress += 1,
    }
    let mut merged = Vec::new();
    match owned.merger.on_piece(offset, piece, &mut merged) {
        Step::Counted | Step::Duplicate => {}
        Step::Late => {
            state.summary.late_partials += 1;
            warn!(
                partition,
                offset,
                ?piece,
                "partial for a window already merged (idle-shard bound): late at the merge"
            );
        }
        Step::OutOfRange => {
            state.summary.invalid += 1;
            warn!(
                partition,
                offset,
                ?piece,
                "partial names an input partition the input topic does not have"
            );
        }
    }
    for m in merged {
        match m.closed {
            Closed::Second { .. } => state.summary.seconds_emitted += 1,
            Closed::Minute { .. } => state.summary.minutes_emitted += 1,
        }
        state.sink.emit(m.partition as i32, &m.closed);
        state.emit_pending = true;
    }
    Ok(())
}

/// A partials partition's merge state: from its committed checkpoint, or fresh.
fn start_of(consumer: &MergeConsumer, shared: &Shared, partition: i32) -> Result<Owned, Error> {
    let opts = &shared.opts;
    let committed = partials::committed(
        consumer,
        &opts.partials_topic,
        &[partition],
        shared.routing.partitions(),
        Duration::from_secs(120),
    )?;
    Ok(match committed.get(&partition) {
        Some(cp) => {
            info!(
                partition,
                resume = cp.resume_seq,
                handled_until = cp.handled_until,
                "resuming merge from checkpoint"
            );
            Owned {
                merger: Merger::resume(shared.routing, opts.idle_after, cp),
                cursor: Cursor::at(cp.resume_seq),
            }
        }
        None => {
            let (low, _) =
                retry::with_backoff("partition offsets", Duration::from_secs(120), |left| {
                    consumer.fetch_watermarks(&opts.partials_topic, partition, left)
                })
                .map_err(|e| {
                    Error::Kafka(format!(
                        "cannot read offsets of partials partition {partition}: {e}"
                    ))
                })?;
            Owned {
                merger: Merger::new(shared.routing, opts.idle_after),
                cursor: Cursor::fresh(low.max(0) as u64),
            }
        }
    })
}

/// Whether every partials partition is merged to the end of every shard:
/// the owned ones by their state, the others by their committed checkpoint.
fn all_done(consumer: &MergeConsumer, shared: &Shared) -> Result<bool, Error> {
    if !consumer.context().joined.load(Ordering::SeqCst) {
        return Ok(false);
    }
    let topic = &shared.opts.partials_topic;
    let all = partitions_of(consumer, topic, Duration::from_secs(30))?;
    let mut unknown = Vec::new();
    {
        let state = shared.state();
        for p in &all {
            match state.partitions.get(p) {
                Some(o) if !o.merger.done() => return Ok(false),
                Some(_) => {}
                None => unknown.push(*p),
            }
        }
    }
    if unknown.is_empty() {
        return Ok(true);
    }
    let committed = partials::committed(
        consumer,
        topic,
        &unknown,
        shared.routing.partitions(),
        Duration::from_secs(120),
    )?;
    let partitions = shared.routing.partitions() as usize;
    Ok(unknown.iter().all(|p| {
        committed.get(p).is_some_and(|cp| {
            cp.marks.len() == partitions && cp.marks.iter().all(|m| *m == Some(u64::MAX))
        })
    }))
}

fn seek_to_checkpoints(consumer: &MergeConsumer, shared: &Shared) -> Result<(), Error> {
    let topic = &shared.opts.partials_topic;
    let assignment = consumer
        .assignment()
        .map_err(|e| Error::Kafka(format!("cannot read assignment: {e}")))?;
    let owned: Vec<i32> = assignment
        .elements()
        .iter()
        .map(|e| e.partition())
        .collect();
    let committed = partials::committed(
        consumer,
        topic,
        &owned,
        shared.routing.partitions(),
        Duration::from_secs(120),
    )?;
    for p in owned {
        let offset = committed
            .get(&p)
            .map_or(Offset::Beginning, |cp| Offset::Offset(cp.resume_seq as i64));
        consumer
            .seek(topic, p, offset, Duration::from_secs(30))
            .map_err(|e| Error::Kafka(format!("cannot rewind {topic}/{p}: {e}")))?;
        info!(
            partition = p,
            ?offset,
            "rewound partials partition to its committed checkpoint"
        );
    }
    Ok(())
}

fn commit_all(consumer: &MergeConsumer, shared: &Shared) -> Result<(), Error> {
    commit_state(shared, &mut shared.state(), consumer)
}

fn commit_state(
    shared: &Shared,
    state: &mut State,
    consumer: &dyn OffsetCommit,
) -> Result<(), Error> {
    let topic = &shared.opts.partials_topic;
    let mut offsets = Offsets::new(topic);
    for (&p, owned) in &state.partitions {
        if owned.cursor.started() {
            let cp = owned.merger.checkpoint(owned.cursor.position());
            offsets.add(p, cp.resume_seq, partials::encode_checkpoint(&cp));
        }
    }
    match state.sink.commit(&offsets, consumer)? {
        Commit::Durable => {
            state.summary.transactions_committed += 1;
            if std::mem::take(&mut state.emit_pending) {
                state.last_emit_ms = Some(unix_ms());
            }
        }
        Commit::Rewind { .. } => {
            state.summary.transactions_aborted += 1;
            state.partitions.clear();
            state.rewind = true;
        }
    }
    Ok(())
}

impl Handover for Shared {
    fn revoke(&self, partitions: &[i32], consumer: &dyn OffsetCommit) {
        let mut state = self.state();
        let result = commit_state(self, &mut state, consumer);
        for p in partitions {
            state.partitions.remove(p);
        }
        if let Err(e) = result {
            warn!(error = %e, ?partitions, "cannot hand over revoked partials partitions cleanly; stopping");
            state.fatal.get_or_insert(e);
        }
    }
}
