//! Retrying while brokers fail over: the cluster's metadata answers
//! (offsets, watermarks) and the calls of a transaction. For a few seconds
//! after a broker restarts, a partition has no leader and its coordinator
//! is reloading, and that is no reason for a worker to stop; but no retry
//! goes on for ever: each has a time budget, after which the caller takes a
//! way out (a fresh producer and a replay, or an exit naming the cause).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rdkafka::error::KafkaResult;
use tracing::warn;

use super::error::{Cause, Failure, TxnError};
use super::watchdog;

/// Calls `call` with the time left until it succeeds or `timeout` has
/// passed, backing off from 100 ms to 2 s between attempts and logging what
/// it waits for. Returns the last error once the time is up, so the whole
/// wait stays within `timeout`.
pub fn with_backoff<T>(
    what: &str,
    timeout: Duration,
    call: impl FnMut(Duration) -> KafkaResult<T>,
) -> KafkaResult<T> {
    with_backoff_per_attempt(what, timeout, timeout, call)
}

/// Longest a single attempt of a committed-offsets read may wait.
/// librdkafka's `rd_kafka_committed` answers a request made while the
/// group's coordinator is not usable by waiting for the next change of any
/// broker's state, up to the whole timeout it was given; when the
/// coordinator becomes usable without one, a later attempt is answered at
/// once. (Not the cause of the exit after a broker restart in
/// docs/faults.md: there no attempt is answered until the worker polls.)
pub const COMMITTED_ATTEMPT: Duration = Duration::from_secs(5);

/// As [`with_backoff`], but no attempt is given more than `attempt`: for
/// calls that may wait for an event that never comes, where asking again
/// is answered.
pub fn with_backoff_per_attempt<T>(
    what: &str,
    timeout: Duration,
    attempt: Duration,
    mut call: impl FnMut(Duration) -> KafkaResult<T>,
) -> KafkaResult<T> {
    let deadline = Instant::now() + timeout;
    let mut backoff = Duration::from_millis(100);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match call(left.min(attempt)) {
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

/// How long a call made by [`transactional_once`] may overrun its own
/// timeout, at least, before it is abandoned.
const ABANDON_AFTER: Duration = Duration::from_secs(4);

/// At most this many abandoned calls may still be blocked (each holds a
/// thread and a producer); beyond it a call is made on the caller's thread
/// under the [`watchdog`], which ends the process if it blocks too.
const MAX_ABANDONED: usize = 8;

/// Calls made by [`transactional_once`] that have not returned.
static UNDER_WAY: AtomicUsize = AtomicUsize::new(0);

/// Makes a transactional call once, on a thread of its own, and abandons it
/// after `abandon_after` (at least `patience.call` + [`ABANDON_AFTER`]) if
/// it has not returned. An abandoned call and a retriable answer (not
/// retried) become [`Failure::TimedOut`], so that a fresh producer takes over
/// and the group replays: for `send_offsets_to_transaction`, librdkafka
/// never checks the call's timeout (its issue #5456), and it waits for good
/// when the group coordinator's broker was killed and decommissioned (#5511).
/// Both were seen here: 1 of 15 runs of the broker-restart test, and the
/// controller-kill scenario, ended by the watchdog (exit 5). The abandoned
/// thread keeps what `f` holds (the old producer) until the call returns,
/// maybe never: one thread and one producer per abandoned call.
pub fn transactional_once(
    call: &'static str,
    patience: Patience,
    abandon_after: Duration,
    f: impl FnOnce(Duration) -> KafkaResult<()> + Send + 'static,
) -> Result<(), TxnError> {
    let f = move |t| f(t).map_err(|e| TxnError::new(call, &e));
    if UNDER_WAY.load(Ordering::SeqCst) >= MAX_ABANDONED {
        warn!(
            call,
            MAX_ABANDONED, "too many abandoned calls still blocked: calling under the watchdog"
        );
        let _armed = watchdog::arm(call, patience.call + STUCK_AFTER);
        return timed_out_if_retriable(f(patience.call));
    }
    let limit = abandon_after.max(patience.call + ABANDON_AFTER);
    abandoned_after(call, patience.call, limit, f)
}

/// [`transactional_once`] with the call's `timeout` and the `limit` at
/// which it is abandoned.
fn abandoned_after(
    call: &'static str,
    timeout: Duration,
    limit: Duration,
    f: impl FnOnce(Duration) -> Result<(), TxnError> + Send + 'static,
) -> Result<(), TxnError> {
    let (done, answer) = std::sync::mpsc::sync_channel(1);
    UNDER_WAY.fetch_add(1, Ordering::SeqCst);
    std::thread::Builder::new()
        .name(format!("kafka-{call}"))
        .spawn(move || {
            let _ = done.send(f(timeout));
            UNDER_WAY.fetch_sub(1, Ordering::SeqCst);
        })
        .map_err(|e| {
            UNDER_WAY.fetch_sub(1, Ordering::SeqCst);
            TxnError::timed_out(call, Cause::NoThread(std::sync::Arc::new(e)))
        })?;
    let result = match answer.recv_timeout(limit) {
        Ok(result) => result,
        Err(_) => {
            warn!(
                call,
                ?limit,
                "transactional call did not return within its limit: abandoning it and its producer"
            );
            Err(TxnError::timed_out(call, Cause::Abandoned { limit }))
        }
    };
    timed_out_if_retriable(result)
}

/// A retriable answer to a call made once is not retried: the call may be
/// under way, so a fresh producer takes over.
fn timed_out_if_retriable(result: Result<(), TxnError>) -> Result<(), TxnError> {
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
            if let Cause::Kafka(last) = &*failed.cause {
                failed.cause = Box::new(Cause::StillNotDone {
                    last: last.clone(),
                    attempts,
                    elapsed: started.elapsed(),
                });
            }
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
    fn no_attempt_waits_longer_than_its_cap_and_the_retries_stay_within_the_budget() {
        let mut given = Vec::new();
        let started = Instant::now();
        let result: KafkaResult<()> = with_backoff_per_attempt(
            "committed offsets",
            Duration::from_millis(700),
            Duration::from_millis(50),
            |left| {
                given.push(left);
                Err(rdkafka::error::KafkaError::MetadataFetch(
                    rdkafka::types::RDKafkaErrorCode::OperationTimedOut,
                ))
            },
        );
        assert!(result.is_err(), "every attempt failed");
        assert!(given.len() >= 3, "retried within the budget: {given:?}");
        assert!(
            given.iter().all(|&d| d <= Duration::from_millis(50)),
            "{given:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn a_call_that_never_returns_is_abandoned_at_its_limit_as_timed_out() {
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let started = Instant::now();
        let got = abandoned_after(
            "offsets",
            Duration::from_millis(50),
            Duration::from_millis(200),
            move |_| {
                // librdkafka's send_offsets_to_transaction past its timeout.
                let _ = hold.recv();
                Ok(())
            },
        );
        let failed = got.unwrap_err();
        assert_eq!(failed.failure, Failure::TimedOut);
        assert_eq!(failed.call, "offsets");
        assert!(started.elapsed() < Duration::from_secs(5));
        drop(release);

        // An answer in time is the call's own.
        assert!(abandoned_after(
            "offsets",
            Duration::ZERO,
            Duration::from_secs(5),
            |_| Ok(())
        )
        .is_ok());
        let abortable = TxnError::new(
            "offsets",
            &KafkaError::MessageProduction(RDKafkaErrorCode::UnknownMemberId),
        );
        let failed = abandoned_after("offsets", Duration::ZERO, Duration::from_secs(5), |_| {
            Err(abortable)
        });
        assert_eq!(failed.unwrap_err().failure, Failure::Abortable);
    }

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
            failure: Failure::Retriable,
            ..TxnError::new(
                "offsets",
                &KafkaError::MessageProduction(RDKafkaErrorCode::BrokerTransportFailure),
            )
        };
        let once = |f: Box<dyn FnOnce(Duration) -> Result<(), TxnError> + Send>| {
            abandoned_after("offsets", patience.call, patience.budget, f)
        };
        let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let counted = calls.clone();
        let again = retriable.clone();
        let e = once(Box::new(move |_| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Err(again)
        }))
        .unwrap_err();
        let calls = calls.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!((calls, e.failure), (1, Failure::TimedOut));
        let abortable = TxnError {
            failure: Failure::Abortable,
            ..retriable
        };
        let e = once(Box::new(|_| Err(abortable))).unwrap_err();
        assert_eq!(e.failure, Failure::Abortable);
        assert!(once(Box::new(|_| Ok(()))).is_ok());
    }

    #[test]
    fn a_transactional_call_is_retried_within_its_budget_then_times_out() {
        let patience = Patience {
            call: Duration::from_millis(50),
            budget: Duration::from_millis(600),
        };
        let mut calls = 0;
        let not_yet = || TxnError {
            failure: Failure::Retriable,
            ..TxnError::new(
                "commit",
                &KafkaError::MessageProduction(RDKafkaErrorCode::OperationTimedOut),
            )
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
        assert!(
            matches!(*e.cause, Cause::StillNotDone { attempts, .. } if attempts >= 2),
            "{e}"
        );
        assert_eq!(e.code(), Some(RDKafkaErrorCode::OperationTimedOut));
    }
}
