//! The loop's decisions against the in-memory log and sink
//! ([`super::memory`]), with a tiny command that counts the records of
//! each partition and forwards each one: its checkpoint is
//! `(next offset, count)`, so a double count or a lost record shows in the
//! committed checkpoints and in the durable outputs.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::memory::{Entries, MemoryLog, MemorySink, Seen, SharedTape, Tape};
use super::{run, Command, Group, Handled, Record, State};
use crate::core::cursor::SeekTo;
use crate::error::Error;
use crate::kafka::log::GroupLog;
use crate::kafka::sink::Commit;

mod batch;

/// Counts records per partition; forwards each one.
struct Counter {
    /// Whether a partition is taken on only after a commit.
    transactional: bool,
    interval: Duration,
    /// `check` says done once every assigned partition is read to its end.
    until_end: bool,
    /// Sets the stop flag once this many records were counted.
    stop_after: Option<(u64, Arc<AtomicBool>)>,
}

/// A partition's state: the next offset it counts, and its count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Count {
    next: u64,
    count: u64,
}

fn parse(checkpoint: &str) -> Option<Count> {
    let (next, count) = checkpoint.split_once(',')?;
    Some(Count {
        next: next.parse().ok()?,
        count: count.parse().ok()?,
    })
}

#[derive(Debug, Default)]
struct Tally {
    counted: u64,
    revoked: Vec<i32>,
}

type Log = MemoryLog<Group<Counter>>;

impl Command for Counter {
    type Partition = Count;
    type Local = Tally;
    type Loop = ();

    fn topic(&self) -> &str {
        "in"
    }

    fn transactional(&self) -> bool {
        self.transactional
    }

    fn commit_interval(&self) -> Duration {
        self.interval
    }

    fn poll_timeout(&self) -> Duration {
        Duration::ZERO
    }

    fn start(
        &self,
        _group: &Group<Self>,
        log: &impl GroupLog,
        partition: i32,
    ) -> Result<Count, Error> {
        let committed = log.committed(&[partition], Duration::ZERO)?;
        let committed = committed.first().and_then(|c| parse(&c.metadata));
        Ok(committed.unwrap_or(Count { next: 0, count: 0 }))
    }

    type Prepared<'a> = ();

    fn prepare<'a>(&self, records: &[Record<'a>]) -> Vec<()> {
        vec![(); records.len()]
    }

    fn record(
        &self,
        _log: &impl GroupLog,
        state: &mut State<Self>,
        record: &Record<'_>,
        _prepared: (),
    ) -> Result<Handled, Error> {
        let owned = state.partitions.get_mut(&record.partition).expect("owned");
        if record.offset > owned.next {
            return Ok(Handled::Seek(SeekTo::Offset(owned.next)));
        }
        if record.offset < owned.next {
            return Ok(Handled::Done);
        }
        owned.next += 1;
        owned.count += 1;
        state
            .sink
            .forward(record.partition, record.offset, record.payload);
        state.emit_pending = true;
        state.local.counted += 1;
        if let Some((n, stop)) = &self.stop_after {
            if state.local.counted >= *n {
                stop.store(true, Ordering::SeqCst);
            }
        }
        Ok(Handled::Done)
    }

    fn checkpoint(&self, c: &Count) -> Option<(u64, String)> {
        Some((c.next, format!("{},{}", c.next, c.count)))
    }

    fn committed(
        &self,
        log: &impl GroupLog,
        partitions: &[i32],
    ) -> Result<BTreeMap<i32, u64>, Error> {
        Ok(log
            .committed(partitions, Duration::ZERO)?
            .into_iter()
            .filter_map(|c| parse(&c.metadata).map(|_| (c.partition, c.offset)))
            .collect())
    }

    fn after_commit(&self, _state: &mut State<Self>, _outcome: &Commit, _took: Duration) {}

    fn revoked(&self, state: &mut State<Self>, partitions: &[i32]) {
        state.local.revoked.extend(partitions);
    }

    fn check(
        &self,
        group: &Group<Self>,
        log: &impl GroupLog,
        _loop: &mut (),
        queue_empty: bool,
    ) -> Result<bool, Error> {
        if !self.until_end || !queue_empty {
            return Ok(false);
        }
        let assigned = log.assignment()?;
        let mut ends = BTreeMap::new();
        for &p in &assigned {
            ends.insert(p, log.watermarks(p, Duration::ZERO, "in")?.1 as u64);
        }
        let state = group.state();
        Ok(assigned
            .iter()
            .all(|p| state.partitions.get(p).is_some_and(|c| c.next == ends[p])))
    }
}

const HOUR: Duration = Duration::from_secs(3600);

/// A live run's counter that sets `stop` after `n` records.
fn stopping_at(n: u64, stop: &Arc<AtomicBool>) -> Counter {
    Counter {
        transactional: false,
        interval: HOUR,
        until_end: false,
        stop_after: Some((n, stop.clone())),
    }
}

fn counter(interval: Duration) -> Counter {
    Counter {
        transactional: false,
        interval,
        until_end: true,
        stop_after: None,
    }
}

/// A group of `cmd` on partitions of `sizes` records, and their tape.
fn world(cmd: Counter, sizes: &[u64]) -> (Arc<Group<Counter>>, Log, SharedTape) {
    let tape = Arc::new(Mutex::new(Tape::default()));
    let sink = MemorySink { tape: tape.clone() };
    let group = Arc::new(Group::new(cmd, Box::new(sink), Tally::default()));
    let log = MemoryLog::new(group.clone(), tape.clone(), sizes);
    (group, log, tape)
}

fn run_to_end(group: &Group<Counter>, log: &Log) {
    run(log, group, &AtomicBool::new(false), ()).expect("the loop ends");
}

fn steps(tape: &SharedTape) -> Vec<Seen> {
    tape.lock().unwrap().seen.clone()
}

fn commits(seen: &[Seen]) -> Vec<(Entries, bool)> {
    seen.iter()
        .filter_map(|s| match s {
            Seen::Commit { offsets, held } => Some((offsets.clone(), *held)),
            _ => None,
        })
        .collect()
}

/// Every record of `ranges` (partition, offsets) forwarded durably exactly
/// once.
fn assert_durable_once(tape: &SharedTape, ranges: &[(i32, std::ops::Range<u64>)]) {
    let mut durable = tape.lock().unwrap().durable.clone();
    durable.sort_unstable();
    let expected: Vec<(i32, u64)> = ranges
        .iter()
        .flat_map(|(p, r)| r.clone().map(move |o| (*p, o)))
        .collect();
    assert_eq!(durable, expected);
}

/// The first `n` steps other than commits after the first given-up commit.
fn after_given_up(seen: &[Seen], n: usize) -> Vec<&Seen> {
    let given_up = seen
        .iter()
        .position(|s| matches!(s, Seen::Commit { held: false, .. }))
        .expect("a given-up commit");
    seen[given_up + 1..]
        .iter()
        .filter(|s| !matches!(s, Seen::Commit { .. }))
        .take(n)
        .collect()
}

fn cp(offset: u64, count: u64) -> Option<(u64, String)> {
    Some((offset, format!("{offset},{count}")))
}

#[test]
fn an_interval_commit_carries_every_owned_partitions_checkpoint() {
    // A due commit comes after each batch of POLL_BATCH records, the
    // partitions taking turns.
    let (group, log, tape) = world(counter(Duration::ZERO), &[300, 300]);
    run_to_end(&group, &log);
    let seen = steps(&tape);
    let first = seen
        .iter()
        .position(|s| matches!(s, Seen::Commit { .. }))
        .expect("a commit");
    let reads = seen[..first]
        .iter()
        .filter(|s| matches!(s, Seen::Read { .. }))
        .count();
    assert_eq!(reads, super::POLL_BATCH.records);
    let half = super::POLL_BATCH.records as u64 / 2;
    let checkpoint = format!("{half},{half}");
    assert_eq!(
        commits(&seen)[0],
        (
            vec![(0, half, checkpoint.clone()), (1, half, checkpoint)],
            true
        )
    );
    assert_eq!(log.committed_at(0), cp(300, 300));
    assert_eq!(log.committed_at(1), cp(300, 300));
    assert_durable_once(&tape, &[(0, 0..300), (1, 0..300)]);

    // Not due: the only commit is the last one.
    let (group, log, tape) = world(counter(HOUR), &[300, 300]);
    run_to_end(&group, &log);
    assert_eq!(commits(&steps(&tape)).len(), 1);
    assert_eq!(log.committed_at(1), cp(300, 300));
}

#[test]
fn a_given_up_commit_rewinds_every_assigned_partition_before_reading_on() {
    let (group, log, tape) = world(counter(Duration::ZERO), &[300, 300]);
    // Partition 0 was counted to offset 2 by an earlier owner; 1 not at all.
    log.precommit(0, 2, "2,2");
    tape.lock().unwrap().give_up = 1;
    run_to_end(&group, &log);
    let seen = steps(&tape);
    let after = after_given_up(&seen, 2);
    assert_eq!(
        after,
        [
            &Seen::Seek {
                partition: 0,
                to: SeekTo::Offset(2)
            },
            &Seen::Seek {
                partition: 1,
                to: SeekTo::Beginning
            },
        ]
    );
    // The replay counts every record once: nothing of the given-up
    // transaction stays in the owned partitions.
    assert_eq!(log.committed_at(0), cp(300, 300));
    assert_eq!(log.committed_at(1), cp(300, 300));
    assert_durable_once(&tape, &[(0, 2..300), (1, 0..300)]);
}

#[test]
fn a_revoke_commits_before_the_partitions_go() {
    let (group, log, tape) = world(counter(HOUR), &[10, 10]);
    // One record per poll: the tape shows the per-record order (batches:
    // tests/batch.rs).
    log.batch(1);
    log.reassign(6, vec![1]);
    run_to_end(&group, &log);
    let seen = steps(&tape);
    let revoked = seen
        .iter()
        .position(|s| *s == Seen::Revoked(vec![0]))
        .expect("partition 0 revoked");
    // The hand-over's commit carries the revoked partition's checkpoint.
    let three = "3,3".to_string();
    assert_eq!(
        seen[revoked - 1],
        Seen::Commit {
            offsets: vec![(0, 3, three.clone()), (1, 3, three)],
            held: true
        }
    );
    assert!(!seen[revoked..]
        .iter()
        .any(|s| matches!(s, Seen::Read { partition: 0, .. })));
    assert_eq!(group.state().local.revoked, vec![0]);
    assert!(!group.state().partitions.contains_key(&0));
    assert_eq!(log.committed_at(0), cp(3, 3));
    assert_eq!(log.committed_at(1), cp(10, 10));
    assert_durable_once(&tape, &[(0, 0..3), (1, 0..10)]);
}

#[test]
fn a_record_before_its_partitions_start_seeks_there() {
    // The committed offset is past the partition's start (its checkpoint
    // says offset 2): the first record read is 5, then the loop seeks.
    let (group, log, tape) = world(counter(HOUR), &[8]);
    // One record per poll: the tape shows the per-record order (batches:
    // tests/batch.rs).
    log.batch(1);
    log.precommit(0, 5, "2,0");
    run_to_end(&group, &log);
    let seen = steps(&tape);
    let reads_and_seeks: Vec<&Seen> = seen
        .iter()
        .filter(|s| matches!(s, Seen::Read { .. } | Seen::Seek { .. }))
        .take(3)
        .collect();
    assert_eq!(
        reads_and_seeks,
        [
            &Seen::Read {
                partition: 0,
                offset: 5
            },
            &Seen::Seek {
                partition: 0,
                to: SeekTo::Offset(2)
            },
            &Seen::Read {
                partition: 0,
                offset: 2
            },
        ]
    );
    assert_eq!(log.committed_at(0), cp(8, 6));
    assert_durable_once(&tape, &[(0, 2..8)]);
}

#[test]
fn the_stop_signal_commits_and_returns() {
    let stop = Arc::new(AtomicBool::new(false));
    let (group, log, tape) = world(stopping_at(4, &stop), &[10]);
    // One record per poll: the tape shows the per-record order (batches:
    // tests/batch.rs).
    log.batch(1);
    run(&log, &group, &stop, ()).expect("the loop stops");
    let seen = steps(&tape);
    let reads = seen
        .iter()
        .filter(|s| matches!(s, Seen::Read { .. }))
        .count();
    assert_eq!(reads, 4, "no record is read once the stop is set");
    assert_eq!(
        commits(&seen),
        vec![(vec![(0, 4, "4,4".to_string())], true)]
    );
    assert_eq!(
        seen.last(),
        Some(&Seen::Commit {
            offsets: vec![(0, 4, "4,4".to_string())],
            held: true
        })
    );
    assert_durable_once(&tape, &[(0, 0..4)]);
}

#[test]
fn done_returns_only_after_a_commit_that_held() {
    let (group, log, tape) = world(counter(HOUR), &[3, 3]);
    tape.lock().unwrap().give_up = 1;
    run_to_end(&group, &log);
    let held: Vec<bool> = commits(&steps(&tape)).iter().map(|c| c.1).collect();
    // The last commit was given up once: the loop replayed, then committed.
    assert_eq!(held, [false, true]);
    assert_eq!(log.committed_at(0), cp(3, 3));
    assert_eq!(log.committed_at(1), cp(3, 3));
    assert_durable_once(&tape, &[(0, 0..3), (1, 0..3)]);
}

#[test]
fn a_partition_taken_on_after_the_assignment_was_lost_is_read_again_once_given_back() {
    // The session ends as the first record is read: its partition cannot
    // be taken on (the committed read waits for the hand-over inside the
    // next poll), so the record is dropped, not counted, and read again.
    let cmd = Counter {
        transactional: true,
        ..counter(HOUR)
    };
    let (group, log, tape) = world(cmd, &[10, 10]);
    log.lose_assignment(1);
    run_to_end(&group, &log);
    let seen = steps(&tape);
    let lost = seen
        .iter()
        .position(|s| *s == Seen::Revoked(vec![0, 1]))
        .expect("the lost assignment handed over");
    assert_eq!(seen[lost + 1], Seen::Assigned(vec![0, 1]));
    let first = Seen::Read {
        partition: 0,
        offset: 0,
    };
    assert_eq!(seen.iter().filter(|s| **s == first).count(), 2);
    assert_eq!(log.committed_at(0), cp(10, 10));
    assert_eq!(log.committed_at(1), cp(10, 10));
    assert_durable_once(&tape, &[(0, 0..10), (1, 0..10)]);
}

#[test]
fn a_rewind_after_the_assignment_was_lost_is_left_to_the_hand_over() {
    // The last record of the first batch ends the session; that batch's
    // commit is given up. The rewind cannot read the committed offsets:
    // the hand-over restarts every partition from them instead.
    let (group, log, tape) = world(counter(Duration::ZERO), &[300, 300]);
    log.lose_assignment(super::POLL_BATCH.records);
    tape.lock().unwrap().give_up = 1;
    run_to_end(&group, &log);
    let seen = steps(&tape);
    let next = after_given_up(&seen, 2);
    assert_eq!(
        next,
        [&Seen::Revoked(vec![0, 1]), &Seen::Assigned(vec![0, 1])]
    );
    assert_eq!(log.committed_at(0), cp(300, 300));
    assert_eq!(log.committed_at(1), cp(300, 300));
    assert_durable_once(&tape, &[(0, 0..300), (1, 0..300)]);
}

#[test]
fn a_check_whose_read_goes_unanswered_says_not_yet_until_its_budget_is_spent() {
    let budget = Duration::from_secs(120);
    let t0 = std::time::Instant::now();
    let unanswered = || {
        Err(Error::NotAnswered(Box::new(Error::kafka_at(
            "not answered",
            rdkafka::error::KafkaError::MetadataFetch(
                rdkafka::types::RDKafkaErrorCode::OperationTimedOut,
            ),
        ))))
    };
    let mut check = super::Unanswered::default();
    assert!(!check.settle(unanswered(), t0, budget).unwrap());
    assert!(!check
        .settle(unanswered(), t0 + Duration::from_secs(119), budget)
        .unwrap());
    // An answer in between starts the budget again.
    assert!(check
        .settle(Ok(true), t0 + Duration::from_secs(119), budget)
        .unwrap());
    assert!(!check
        .settle(unanswered(), t0 + Duration::from_secs(200), budget)
        .unwrap());
    let late = t0 + Duration::from_secs(320);
    let err = check.settle(unanswered(), late, budget).unwrap_err();
    assert!(
        matches!(err, Error::KafkaAt { .. }),
        "the read's own error: {err:?}"
    );
    // A lost assignment is "not yet"; anything else is the check's error.
    let lost = Err(Error::AssignmentLost("a read".into()));
    assert!(!check.settle(lost, late, budget).unwrap());
    let refused = Err(Error::Checkpoint("bad".into()));
    assert!(matches!(
        check.settle(refused, late, budget),
        Err(Error::Checkpoint(_))
    ));
}
