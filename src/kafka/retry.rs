//! Retrying while brokers fail over: the cluster's metadata answers
//! (offsets, watermarks) and the calls of a transaction. For a few seconds
//! after a broker restarts, a partition has no leader and its coordinator
//! is reloading, and that is no reason for a worker to stop; but no retry
//! goes on for ever: each has a time budget, after which the caller takes a
//! way out (a fresh producer and a replay, or an exit naming the cause).

use std::time::{Duration, Instant};

use rdkafka::error::KafkaResult;
use tracing::warn;

use super::error::{Failure, TxnError};
use super::watchdog;

/// Calls `call` with the time left until it succeeds or `timeout` has
/// passed, backing off from 100 ms to 2 s between attempts and logging what
/// it waits for. Returns the last error once the time is up, so the whole
/// wait stays within `timeout`.
pub fn with_backoff<T>(
    what: &str,
    timeout: Duration,
    mut call: impl FnMut(Duration) -> KafkaResult<T>,
) -> KafkaResult<T> {
    let deadline = Instant::now() + timeout;
    let mut backoff = Duration::from_millis(100);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match call(left) {
            Err(e) if Instant::now() + backoff < deadline => {
                warn!(error = %e, "waiting for the cluster to answer: {what}");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            result => return result,
        }
    }
}

/// How long a transactional call may take: each attempt `call`, all
/// attempts together `budget`.
#[derive(Debug, Clone, Copy)]
pub struct Patience {
    pub call: Duration,
    pub budget: Duration,
}

/// Time a librdkafka call may overrun its own timeout before it counts as
/// stuck: `send_offsets_to_transaction` waits for its requests without a
/// limit of its own, which end after `socket.timeout.ms` (60 s by default).
const STUCK_AFTER: Duration = Duration::from_secs(90);

/// Makes a transactional call, again while librdkafka says it may (a
/// retriable error: a coordinator moving, a call that timed out and can be
/// resumed), backing off from 100 ms to 1 s, until `patience.budget` has
/// passed. Then the error is [`Failure::TimedOut`]: the call may still be
/// under way inside the producer, which therefore cannot be used for
/// anything else. A single call that hangs past its timeout by
/// [`STUCK_AFTER`] ends the process ([`watchdog`]).
pub fn transactional(
    call: &'static str,
    patience: Patience,
    mut f: impl FnMut(Duration) -> KafkaResult<()>,
) -> Result<(), TxnError> {
    retry_txn(call, patience, |timeout| {
        f(timeout).map_err(|e| TxnError::new(call, &e))
    })
}

/// Makes a transactional call once. A retriable answer is not retried but
/// becomes [`Failure::TimedOut`], so that a fresh producer takes over: for
/// `send_offsets_to_transaction`, a call made again after AddOffsetsToTxn
/// failed on a broker's restart can block past every limit (1 of 15 runs of
/// the broker-restart fault test, ended by the watchdog after 98 s).
pub fn transactional_once(
    call: &'static str,
    patience: Patience,
    f: impl FnOnce(Duration) -> KafkaResult<()>,
) -> Result<(), TxnError> {
    once(call, patience, |timeout| {
        f(timeout).map_err(|e| TxnError::new(call, &e))
    })
}

fn once(
    call: &'static str,
    patience: Patience,
    f: impl FnOnce(Duration) -> Result<(), TxnError>,
) -> Result<(), TxnError> {
    let result = {
        let _armed = watchdog::arm(call, patience.call + STUCK_AFTER);
        f(patience.call)
    };
    result.map_err(|mut failed| {
        if failed.failure == Failure::Retriable {
            failed.failure = Failure::TimedOut;
        }
        failed
    })
}

fn retry_txn(
    call: &'static str,
    patience: Patience,
    mut f: impl FnMut(Duration) -> Result<(), TxnError>,
) -> Result<(), TxnError> {
    let started = Instant::now();
    let deadline = started + patience.budget;
    let mut backoff = Duration::from_millis(100);
    let mut attempts = 0u32;
    loop {
        let timeout = deadline
            .saturating_duration_since(Instant::now())
            .min(patience.call)
            .max(Duration::from_millis(100));
        let result = {
            let _armed = watchdog::arm(call, timeout + STUCK_AFTER);
            f(timeout)
        };
        let Err(mut failed) = result else {
            return Ok(());
        };
        if failed.failure != Failure::Retriable {
            return Err(failed);
        }
        attempts += 1;
        if Instant::now() + backoff >= deadline {
            failed.failure = Failure::TimedOut;
            failed.error = format!(
                "{} (still not done after {attempts} attempts in {:.1} s)",
                failed.error,
                started.elapsed().as_secs_f64()
            );
            return Err(failed);
        }
        warn!(error = %failed, attempt = attempts, "transaction call not done yet; retrying");
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::error::KafkaError;
    use rdkafka::types::RDKafkaErrorCode;

    #[test]
    fn retries_until_success_and_gives_up_after_the_timeout() {
        let mut calls = 0;
        let got = with_backoff("test", Duration::from_secs(5), |_| {
            calls += 1;
            if calls < 3 {
                Err(KafkaError::MetadataFetch(
                    RDKafkaErrorCode::NotLeaderForPartition,
                ))
            } else {
                Ok(calls)
            }
        });
        assert_eq!(got.unwrap(), 3);

        let start = Instant::now();
        let mut calls = 0;
        let got: KafkaResult<()> = with_backoff("test", Duration::from_millis(250), |left| {
            assert!(left <= Duration::from_millis(250));
            calls += 1;
            Err(KafkaError::MetadataFetch(
                RDKafkaErrorCode::NotLeaderForPartition,
            ))
        });
        assert!(got.is_err());
        assert!(calls >= 2, "{calls}");
        assert!(start.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn a_call_made_once_hands_a_retriable_answer_to_a_fresh_producer() {
        let patience = Patience {
            call: Duration::from_millis(50),
            budget: Duration::from_millis(600),
        };
        let retriable = TxnError {
            call: "offsets",
            failure: Failure::Retriable,
            error: "Broker transport failure".into(),
            code: None,
        };
        let mut calls = 0;
        let e = once("offsets", patience, |_| {
            calls += 1;
            Err(retriable.clone())
        })
        .unwrap_err();
        assert_eq!((calls, e.failure), (1, Failure::TimedOut));
        let abortable = TxnError {
            failure: Failure::Abortable,
            ..retriable
        };
        let e = once("offsets", patience, |_| Err(abortable)).unwrap_err();
        assert_eq!(e.failure, Failure::Abortable);
        assert!(once("offsets", patience, |_| Ok(())).is_ok());
    }

    #[test]
    fn a_transactional_call_is_retried_within_its_budget_then_times_out() {
        let patience = Patience {
            call: Duration::from_millis(50),
            budget: Duration::from_millis(600),
        };
        let mut calls = 0;
        let not_yet = || TxnError {
            call: "commit",
            failure: Failure::Retriable,
            error: "Timed out waiting for operation to finish".into(),
            code: None,
        };
        let got = retry_txn("commit", patience, |timeout| {
            assert!(timeout <= Duration::from_millis(100));
            calls += 1;
            if calls < 3 {
                Err(not_yet())
            } else {
                Ok(())
            }
        });
        assert!(got.is_ok());
        assert_eq!(calls, 3);

        let start = Instant::now();
        let got = retry_txn("commit", patience, |_| Err(not_yet()));
        let e = got.unwrap_err();
        assert_eq!(e.failure, Failure::TimedOut);
        assert!(start.elapsed() < Duration::from_secs(2), "{e}");
        assert!(e.error.contains("still not done"), "{e}");
    }
}
