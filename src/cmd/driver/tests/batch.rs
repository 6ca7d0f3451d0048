//! The loop over poll batches: records fetched before something changed
//! their partition (a seek, a revocation, the stop) are dropped as
//! librdkafka drops what it had not handed out yet, and nothing else is.
//! The in-memory log hands out every record it has in one batch here.

use super::*;

#[test]
fn records_fetched_before_a_seek_are_dropped_not_taken() {
    // The committed offset is past the checkpoint's start (offset 2): the
    // batch holds 5, 6 and 7; 5 makes the loop seek to 2, and 6 and 7,
    // fetched before that seek, are dropped (one seek, not one per record:
    // a real partition's cursor would have taken 6 as a gap after 2).
    let (group, log, tape) = world(counter(HOUR), &[8]);
    log.precommit(0, 5, "2,0");
    run_to_end(&group, &log);
    let seen = steps(&tape);
    let seeks: Vec<&Seen> = seen
        .iter()
        .filter(|s| matches!(s, Seen::Seek { .. }))
        .collect();
    assert_eq!(
        seeks,
        [&Seen::Seek {
            partition: 0,
            to: SeekTo::Offset(2)
        }]
    );
    assert_eq!(log.committed_at(0), cp(8, 6));
    assert_durable_once(&tape, &[(0, 2..8)]);
}

#[test]
fn records_of_a_partition_revoked_during_the_batch_are_dropped() {
    // The revocation comes after six records were fetched, before any was
    // handled: partition 0's three go to its next owner (nothing of it is
    // committed here), partition 1's are all counted.
    let (group, log, tape) = world(counter(HOUR), &[10, 10]);
    log.reassign(6, vec![1]);
    run_to_end(&group, &log);
    let seen = steps(&tape);
    let revoked = seen
        .iter()
        .position(|s| *s == Seen::Revoked(vec![0]))
        .expect("partition 0 revoked");
    assert!(seen[..revoked]
        .iter()
        .any(|s| matches!(s, Seen::Read { partition: 0, .. })));
    assert_eq!(group.state().local.revoked, vec![0]);
    assert!(!group.state().partitions.contains_key(&0));
    assert_eq!(log.committed_at(0), None);
    assert_eq!(log.committed_at(1), cp(10, 10));
    assert_durable_once(&tape, &[(1, 0..10)]);
}

#[test]
fn a_batch_polled_across_a_rebalance_keeps_the_partitions_still_owned() {
    // Partition 1 stays through the rebalance: its records fetched before
    // it are counted, none twice, none skipped.
    let (group, log, tape) = world(counter(HOUR), &[10, 10]);
    log.batch(4);
    log.reassign(6, vec![1]);
    run_to_end(&group, &log);
    assert_eq!(log.committed_at(1), cp(10, 10));
    assert_eq!(durable_of(&tape, 1), (0..10).collect::<Vec<u64>>());
    // Partition 0 counted only what was handled before it went, and
    // committed exactly that.
    let upto = log.committed_at(0).map_or(0, |(o, _)| o);
    assert_eq!(durable_of(&tape, 0), (0..upto).collect::<Vec<u64>>());
}

/// The offsets of `partition` made durable, in order.
fn durable_of(tape: &SharedTape, partition: i32) -> Vec<u64> {
    let mut offsets: Vec<u64> = tape
        .lock()
        .unwrap()
        .durable
        .iter()
        .filter(|(p, _)| *p == partition)
        .map(|(_, o)| *o)
        .collect();
    offsets.sort_unstable();
    offsets
}

#[test]
fn the_stop_inside_a_batch_leaves_the_rest_unhandled() {
    let stop = Arc::new(AtomicBool::new(false));
    let (group, log, tape) = world(stopping_at(4, &stop), &[10]);
    run(&log, &group, &stop, ()).expect("the loop stops");
    let seen = steps(&tape);
    // All ten were fetched in one batch; four were handled and committed.
    assert_eq!(
        seen.iter()
            .filter(|s| matches!(s, Seen::Read { .. }))
            .count(),
        10
    );
    assert_eq!(
        commits(&seen),
        vec![(vec![(0, 4, "4,4".to_string())], true)]
    );
    assert_durable_once(&tape, &[(0, 0..4)]);
}
