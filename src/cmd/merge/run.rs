//! What the merge adds to the group loop ([`super::driver`]): a partials
//! record to its partition's [`Merger`] (through its [`Cursor`]), the
//! merged windows to the sink, the merge checkpoint with every commit, and
//! `--until-end`'s completion (every shard ended, every window merged).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::{Merge, Owned, Shared, State};
use crate::cmd::driver::{Command, GroupLog, Handled, Record, Unanswered, ANSWER_BUDGET};
use crate::core::cursor::{Admit, Cursor};
use crate::core::group as decide;
use crate::core::merge::{Merger, Step};
use crate::core::window::Closed;
use crate::error::Error;
use crate::kafka::partials;
use crate::kafka::retry::COMMITTED_ATTEMPT;
use crate::kafka::sink::Commit;

/// How often `--until-end` checks whether the merge is complete.
const CHECK_INTERVAL: Duration = Duration::from_millis(200);

/// When `--until-end` last checked for completion, and whether its reads
/// go unanswered.
pub(crate) struct Checks {
    last: Instant,
    unanswered: Unanswered,
}

impl Checks {
    pub fn new(now: Instant) -> Checks {
        Checks {
            last: now,
            unanswered: Unanswered::default(),
        }
    }
}

impl Command for Merge {
    type Partition = Owned;
    type Local = super::MergeSummary;
    type Loop = Checks;

    fn topic(&self) -> &str {
        &self.opts.partials_topic
    }

    fn transactional(&self) -> bool {
        true
    }

    fn commit_interval(&self) -> Duration {
        self.opts.commit_interval
    }

    fn poll_timeout(&self) -> Duration {
        Duration::from_millis(50)
    }

    fn start(&self, group: &Shared, log: &impl GroupLog, partition: i32) -> Result<Owned, Error> {
        let (owned, resumed) = start_of(log, self, partition)?;
        if resumed {
            group.state().local.resumed += 1;
        }
        Ok(owned)
    }

    type Prepared<'a> = ();

    fn prepare<'a>(&self, records: &[Record<'a>]) -> Vec<()> {
        vec![(); records.len()]
    }

    fn record(
        &self,
        _log: &impl GroupLog,
        state: &mut State,
        record: &Record<'_>,
        _prepared: (),
    ) -> Result<Handled, Error> {
        handle(state, record)
    }

    fn checkpoint(&self, owned: &Owned) -> Option<(u64, String)> {
        owned.cursor.started().then(|| {
            let cp = owned.merger.checkpoint(owned.cursor.position());
            (cp.resume_seq, partials::encode_checkpoint(&cp))
        })
    }

    fn committed(
        &self,
        log: &impl GroupLog,
        partitions: &[i32],
    ) -> Result<BTreeMap<i32, u64>, Error> {
        let committed = partials::committed(
            log,
            &self.opts.partials_topic,
            partitions,
            self.routing.partitions(),
            Duration::from_secs(120),
        )?;
        Ok(committed
            .into_iter()
            .map(|(p, cp)| (p, cp.resume_seq))
            .collect())
    }

    fn after_commit(&self, state: &mut State, outcome: &Commit, _took: Duration) {
        match outcome {
            Commit::Durable => state.local.transactions_committed += 1,
            Commit::Rewind { .. } => state.local.transactions_aborted += 1,
        }
    }

    fn check(
        &self,
        group: &Shared,
        log: &impl GroupLog,
        checks: &mut Checks,
        _queue_empty: bool,
    ) -> Result<bool, Error> {
        if !self.opts.until_end || group.clock.since(checks.last) < CHECK_INTERVAL {
            return Ok(false);
        }
        checks.last = group.clock.now();
        let done = all_done(log, group);
        let done = checks.unanswered.settle(done, checks.last, ANSWER_BUDGET)?;
        if done {
            info!("every shard ended and every window is merged");
        }
        Ok(done)
    }
}

fn handle(state: &mut State, record: &Record<'_>) -> Result<Handled, Error> {
    let Record {
        partition,
        offset,
        key,
        payload: value,
        ..
    } = *record;
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
        Admit::Duplicate => return Ok(Handled::Done),
        Admit::Seek(to) => return Ok(Handled::Seek(to)),
    }
    owned.cursor.take_gap();
    state.local.pieces += 1;
    let piece = match partials::decode(key, value) {
        Ok(piece) => piece,
        Err(reason) => {
            state.local.invalid += 1;
            warn!(partition, offset, %reason, "not a partials record: counted as invalid");
            return Ok(Handled::Done);
        }
    };
    match piece {
        crate::core::merge::Piece::Partial { .. } => state.local.partials += 1,
        crate::core::merge::Piece::Progress { .. } => state.local.progress += 1,
    }
    let mut merged = Vec::new();
    match owned.merger.on_piece(offset, piece, &mut merged) {
        Step::Counted | Step::Duplicate => {}
        Step::Late => {
            state.local.late_partials += 1;
            warn!(
                partition,
                offset,
                ?piece,
                "partial for a window already merged (idle-shard bound): late at the merge"
            );
        }
        Step::OutOfRange => {
            state.local.invalid += 1;
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
            Closed::Second { .. } => state.local.seconds_emitted += 1,
            Closed::Minute { .. } => state.local.minutes_emitted += 1,
        }
        state.sink.emit(m.partition as i32, &m.closed);
        state.emit_pending = true;
    }
    Ok(Handled::Done)
}

/// A partials partition's merge state: from its committed checkpoint
/// (`true`), or fresh.
fn start_of(
    consumer: &impl GroupLog,
    merge: &Merge,
    partition: i32,
) -> Result<(Owned, bool), Error> {
    let opts = &merge.opts;
    let committed = partials::committed(
        consumer,
        &opts.partials_topic,
        &[partition],
        merge.routing.partitions(),
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
            let owned = Owned {
                merger: Merger::resume(merge.routing, opts.idle_after, cp),
                cursor: Cursor::at(cp.resume_seq),
            };
            (owned, true)
        }
        None => {
            let what = format!("partials partition {partition}");
            let (low, _) = consumer.watermarks(partition, Duration::from_secs(120), &what)?;
            let owned = Owned {
                merger: Merger::new(merge.routing, opts.idle_after),
                cursor: Cursor::fresh(low.max(0) as u64),
            };
            (owned, false)
        }
    })
}

/// Whether every partials partition is merged to the end of every shard:
/// the owned ones by their state, the others by their committed checkpoint
/// (decided in [`crate::core::group`]).
fn all_done(consumer: &impl GroupLog, shared: &Shared) -> Result<bool, Error> {
    if !consumer.joined() {
        return Ok(false);
    }
    let topic = &shared.opts.partials_topic;
    let all = consumer.partitions(Duration::from_secs(30))?;
    let owned_done: BTreeMap<i32, bool> = {
        let state = shared.state();
        state
            .partitions
            .iter()
            .map(|(&p, o)| (p, o.merger.done()))
            .collect()
    };
    let Some(unknown) = decide::merge_unknown(&all, &owned_done) else {
        return Ok(false);
    };
    if unknown.is_empty() {
        return Ok(true);
    }
    // One attempt: unanswered, the loop polls and the check asks again.
    let committed = partials::committed(
        consumer,
        topic,
        &unknown,
        shared.routing.partitions(),
        COMMITTED_ATTEMPT,
    )
    .map_err(Error::unanswered)?;
    let committed = committed.into_iter().collect();
    let inputs = shared.routing.partitions() as usize;
    Ok(decide::merge_committed_done(&unknown, &committed, inputs))
}
