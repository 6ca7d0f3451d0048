//! What a failed Kafka call means for the caller, as a type instead of a
//! message to match: try the same call again, abort the transaction and
//! replay, or give up on this producer.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

/// How a failed transactional call can go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The same call may simply be made again (for example a commit that
    /// timed out while a broker restarts: aborting instead would conflict
    /// with it).
    Retriable,
    /// The transaction must be aborted; the producer goes on afterwards.
    Abortable,
    /// This producer can never commit again (fenced, or a fatal idempotence
    /// error): a fresh one must take over.
    Fatal,
    /// Retriable answers went on for the call's whole time budget
    /// ([`super::retry::transactional`]). The call may still be under way
    /// inside the producer, so the producer can neither abort nor go on: a
    /// fresh one must take over, or the process stops naming the call.
    TimedOut,
}

impl Failure {
    pub fn of(error: &KafkaError) -> Failure {
        match error {
            KafkaError::Transaction(e) if e.is_fatal() => Failure::Fatal,
            KafkaError::Transaction(e) if e.is_retriable() => Failure::Retriable,
            _ => Failure::Abortable,
        }
    }
}

/// Why a transactional call failed: librdkafka's answer, or what happened
/// instead of one. `Display` is the cause's own text; the librdkafka error,
/// when there is one, is kept as the source.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Cause {
    /// librdkafka answered with an error.
    #[error(transparent)]
    Kafka(KafkaError),
    /// Retriable answers went on for the call's whole budget
    /// ([`super::retry::transactional`]); `last` is the last of them.
    #[error("{last} (still not done after {attempts} attempts in {:.1} s)", elapsed.as_secs_f64())]
    StillNotDone {
        #[source]
        last: KafkaError,
        attempts: u32,
        elapsed: Duration,
    },
    /// The call did not return within `limit` and was abandoned, its
    /// producer with it ([`super::retry::transactional_once`]).
    #[error("did not return within {limit:?}; abandoned")]
    Abandoned { limit: Duration },
    /// The thread for a call made once could not start.
    #[error("cannot start the call's thread: {0}")]
    NoThread(#[source] Arc<std::io::Error>),
    /// The consumer had no group metadata to send the offsets with.
    #[error("no consumer group metadata for the transaction")]
    NoGroupMetadata,
    /// The transaction committed (or would have), but records of it were
    /// not delivered: `report` is the producer's delivery report (the
    /// count, then the first failures with their positions; each record's
    /// error is librdkafka's text, kept per record by the delivery callback).
    #[error("{report}")]
    Undelivered { report: String },
}

/// A failed transactional call with what it means.
#[derive(Debug, Clone)]
pub struct TxnError {
    pub call: &'static str,
    pub failure: Failure,
    /// Boxed: a [`KafkaError`] is large, and this error is returned by
    /// every transactional call.
    pub cause: Box<Cause>,
}

impl std::fmt::Display for TxnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.call, self.cause)
    }
}

/// The source is librdkafka's error itself when the call got one (not the
/// [`Cause`] wrapping it, which prints the same), else the cause.
impl std::error::Error for TxnError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &*self.cause {
            Cause::Kafka(e) => Some(e),
            other => Some(other),
        }
    }
}

impl TxnError {
    pub fn new(call: &'static str, error: &KafkaError) -> TxnError {
        TxnError {
            call,
            failure: Failure::of(error),
            cause: Box::new(Cause::Kafka(error.clone())),
        }
    }

    /// A call given up on without an answer: the producer may still be
    /// inside it, so it is replaced.
    pub fn timed_out(call: &'static str, cause: Cause) -> TxnError {
        TxnError {
            call,
            failure: Failure::TimedOut,
            cause: Box::new(cause),
        }
    }

    /// A transaction that committed, but with records that were not delivered.
    pub fn undelivered(report: String) -> TxnError {
        TxnError {
            call: "delivery",
            failure: Failure::Abortable,
            cause: Box::new(Cause::Undelivered { report }),
        }
    }

    /// librdkafka's error code, if the call got an error that had one.
    pub fn code(&self) -> Option<RDKafkaErrorCode> {
        match &*self.cause {
            Cause::Kafka(e) | Cause::StillNotDone { last: e, .. } => e.rdkafka_error_code(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_outside_transactions_are_abortable() {
        let e = KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge);
        assert_eq!(Failure::of(&e), Failure::Abortable);
    }

    /// librdkafka's error is the source, its code is read from it, and the
    /// binary's report prints it once.
    #[test]
    fn a_failed_call_keeps_librdkafkas_error_as_its_source() {
        let kafka = KafkaError::MessageProduction(RDKafkaErrorCode::OperationTimedOut);
        let e = TxnError::new("commit", &kafka);
        assert_eq!(e.code(), Some(RDKafkaErrorCode::OperationTimedOut));
        let source = std::error::Error::source(&e).expect("kept");
        let source = source.downcast_ref::<KafkaError>().expect("librdkafka's");
        assert_eq!(source.to_string(), kafka.to_string());
        assert_eq!(e.to_string(), format!("commit: {kafka}"));
        assert_eq!(crate::error::report(&e), e.to_string());
    }

    /// Causes without a librdkafka answer say what happened instead, and
    /// one that outlasted its retries keeps the last answer as its source.
    #[test]
    fn a_call_without_an_answer_says_why() {
        let last = KafkaError::MessageProduction(RDKafkaErrorCode::OperationTimedOut);
        let still = Cause::StillNotDone {
            last: last.clone(),
            attempts: 3,
            elapsed: Duration::from_millis(1500),
        };
        let e = TxnError::timed_out("commit", still);
        assert_eq!(e.failure, Failure::TimedOut);
        assert_eq!(e.code(), Some(RDKafkaErrorCode::OperationTimedOut));
        let text = format!("commit: {last} (still not done after 3 attempts in 1.5 s)");
        assert_eq!(e.to_string(), text);
        let cause = std::error::Error::source(&e).expect("the cause");
        let kept = cause.source().and_then(|s| s.downcast_ref::<KafkaError>());
        assert!(kept.is_some(), "{cause:?}");
        assert_eq!(crate::error::report(&e), text);

        let abandoned = Cause::Abandoned {
            limit: Duration::from_secs(12),
        };
        let e = TxnError::timed_out("offsets", abandoned);
        assert_eq!(
            e.to_string(),
            "offsets: did not return within 12s; abandoned"
        );
        assert_eq!(e.code(), None);
        let e = TxnError::undelivered("2 record(s) not delivered".into());
        assert_eq!(e.failure, Failure::Abortable);
        assert_eq!(e.to_string(), "delivery: 2 record(s) not delivered");
        assert_eq!(crate::error::report(&e), e.to_string());
    }
}
