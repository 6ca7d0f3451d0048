//! What a worker refuses to take on trust: a committed offset without a
//! valid checkpoint ([`usable`], decided by [`OnMissingCheckpoint`]), and a
//! record from a partition the routing at start does not know
//! ([`check_partition`]). The routing guard on frames themselves is in
//! [`crate::core::partition`].

use tracing::error;

use super::WorkerOptions;
use crate::core::window::{Checkpoint, MAX_TS};
use crate::error::Error;
use crate::kafka::checkpoint::{check_bounds, encode_checkpoint, Bounds, Committed};

/// Clock skew allowed between the producers (records' timestamps bound the
/// frames' `ts`) and this worker when bounding a checkpoint's times by the
/// wall clock: a week, so that a producer days ahead (tests/it/time.rs) is
/// no false alarm, while a crafted time further ahead is refused.
const CLOCK_SKEW_SECS: u64 = 7 * 86_400;

/// What a worker does with a committed offset that carries no valid
/// checkpoint (after `kafka-consumer-groups --reset-offsets`, or foreign or
/// crafted metadata).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OnMissingCheckpoint {
    /// Stop with exit code 11 naming the partition and how to recover.
    #[default]
    Fail,
    /// Recompute the partition from the log start, ignoring the offset.
    Restart,
}

/// The checkpoint to resume `partition` from: `Some` for a valid one,
/// `None` to start from the log start (`restart`), or
/// [`Error::Checkpoint`] (`fail`). `log_end` is the partition's end offset,
/// `now` the wall clock (unix seconds).
pub fn usable(
    opts: &WorkerOptions,
    partition: i32,
    committed: Committed,
    log_end: u64,
    now: u64,
) -> Result<Option<Checkpoint>, Error> {
    let max_ts = match opts.windows.rules.max_future {
        Some(ahead) => now
            .saturating_add(ahead)
            .saturating_add(CLOCK_SKEW_SECS)
            .min(MAX_TS),
        None => opts.windows.rules.parser.max_ts,
    };
    let bounds = Bounds {
        log_end,
        max_ts,
        closed_for_good: opts.outputs.shards > 1,
    };
    let (offset, metadata, why) = match committed {
        Committed::Checkpoint(cp) => match check_bounds(&cp, &bounds) {
            Ok(()) => return Ok(Some(cp)),
            Err(why) => (cp.resume_seq, encode_checkpoint(&cp), why),
        },
        Committed::Unusable(u) => (u.offset, u.metadata, u.why),
    };
    let topic = &opts.connection.topics.input;
    error!(
        partition,
        offset,
        metadata = %metadata,
        reason = %why,
        policy = ?opts.windows.on_missing_checkpoint,
        "committed offset of group {} on {topic}/{partition} has no valid checkpoint",
        opts.connection.group
    );
    match opts.windows.on_missing_checkpoint {
        OnMissingCheckpoint::Restart => Ok(None),
        OnMissingCheckpoint::Fail => Err(Error::Checkpoint(format!(
            "partition {partition} of {topic}: the offset {offset} committed by group {group} \
             carries no valid timebucket checkpoint ({why}); resuming there could emit windows \
             again with other values, so the worker stops. To recompute the partition from the \
             log start (the same values when the log is complete, see docs/semantics.md, \"Offset resets\"), \
             rerun once with --on-missing-checkpoint=restart (ON_MISSING_CHECKPOINT=restart), or \
             with every worker stopped: kafka-consumer-groups.sh --bootstrap-server {bootstrap} \
             --group {group} --topic {topic}:{partition} --delete-offsets --execute",
            group = opts.connection.group,
            bootstrap = opts.connection.settings.bootstrap,
        ))),
    }
}

/// A record from `partition` when the input topic had `count` partitions
/// at start: the count changed under the worker, which stops rather than
/// judge routing by the old count.
pub fn check_partition(
    watch: &crate::kafka::topics::PartitionWatch,
    partition: i32,
) -> Result<(), Error> {
    if partition >= 0 && (partition as u32) < watch.expected() {
        return Ok(());
    }
    let now = watch.changed().unwrap_or(partition as u32 + 1);
    Err(watch.error(
        now,
        &format!(
            "the worker got a record from partition {partition} and stops rather than \
             judge frames by the old count (docs/semantics.md, \"Partition count\")"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::frame::FrameParser;
    use crate::core::window::WatermarkRule;
    use crate::kafka::checkpoint::decode_checkpoint;
    use crate::kafka::config::KafkaSettings;
    use crate::kafka::topics::PartitionWatch;
    use std::time::Duration;

    const NOW: u64 = 1_700_000_000;

    fn opts(policy: OnMissingCheckpoint) -> WorkerOptions {
        let rules = crate::cmd::worker::Rules {
            watermark: WatermarkRule::default(),
            parser: FrameParser::default(),
            max_future: Some(86_400),
        };
        let mut opts = WorkerOptions::for_tests(rules, 1);
        opts.windows.bucket_secs = 900;
        opts.windows.on_missing_checkpoint = policy;
        opts
    }

    fn committed(offset: u64, meta: &str) -> Committed {
        match decode_checkpoint(offset, meta) {
            Ok(cp) => Committed::Checkpoint(cp),
            Err(why) => Committed::Unusable(crate::kafka::checkpoint::Unusable {
                offset,
                metadata: meta.into(),
                why,
            }),
        }
    }

    #[test]
    fn a_commit_without_a_valid_checkpoint_fails_or_restarts_as_told() {
        let good = format!("tb2;clock=1/{NOW};handled=12;emitted=-;floor=-");
        let crafted = format!("tb2;clock=1/-;handled=12;emitted={};floor=-", u64::MAX);
        let fail = opts(OnMissingCheckpoint::Fail);
        let cp = usable(&fail, 3, committed(10, &good), 20, NOW).unwrap();
        assert_eq!(cp.map(|c| c.handled_until), Some(12));
        for (meta, end, why) in [
            ("", 20, "no metadata"),
            (crafted.as_str(), 20, "in the future"),
            (good.as_str(), 11, "beyond the log end 11"),
        ] {
            let err = usable(&fail, 3, committed(10, meta), end, NOW).unwrap_err();
            let text = err.to_string();
            assert_eq!(err.exit_code(), 11, "{text}");
            assert!(
                text.contains("partition 3 of") && text.contains(why),
                "{text}"
            );
            assert!(text.contains("--on-missing-checkpoint=restart"), "{text}");
            assert!(text.contains("--delete-offsets"), "{text}");
            let restart = opts(OnMissingCheckpoint::Restart);
            assert_eq!(
                usable(&restart, 3, committed(10, meta), end, NOW).unwrap(),
                None
            );
        }
    }

    #[test]
    fn a_record_beyond_the_partition_count_at_start_stops_the_worker() {
        let settings = KafkaSettings::new("127.0.0.1:1");
        let watch = PartitionWatch::start(&settings, "in", 4, Duration::from_secs(600)).unwrap();
        assert!(check_partition(&watch, 3).is_ok());
        let err = check_partition(&watch, 5).unwrap_err();
        assert_eq!(err.exit_code(), 10);
        assert!(err.to_string().contains("changed from 4 to 6"), "{err}");
    }
}
