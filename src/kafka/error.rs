//! What a failed Kafka call means for the caller, as a type instead of a
//! message to match: try the same call again, abort the transaction and
//! replay, or give up on this producer.

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

/// A failed transactional call with what it means.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{call}: {error}")]
pub struct TxnError {
    pub call: &'static str,
    pub failure: Failure,
    pub error: String,
    /// librdkafka's error code, if the error had one.
    pub code: Option<RDKafkaErrorCode>,
}

impl TxnError {
    pub fn new(call: &'static str, error: &KafkaError) -> TxnError {
        TxnError {
            call,
            failure: Failure::of(error),
            error: error.to_string(),
            code: error.rdkafka_error_code(),
        }
    }

    /// A call given up on without an answer: the producer may still be
    /// inside it, so it is replaced.
    pub fn timed_out(call: &'static str, error: String) -> TxnError {
        TxnError {
            call,
            failure: Failure::TimedOut,
            error,
            code: None,
        }
    }

    /// A transaction that committed, but with records that were not delivered.
    pub fn undelivered(report: String) -> TxnError {
        TxnError {
            call: "delivery",
            failure: Failure::Abortable,
            error: report,
            code: None,
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
}
