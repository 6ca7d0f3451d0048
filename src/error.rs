//! The library's typed errors. The binary maps each kind to an exit code
//! (see `src/main.rs`), so scripts can tell bad usage from bad input from an
//! unreachable broker.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An option or environment variable that cannot work.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// An input file that cannot be opened or read.
    #[error("cannot read {path}: {reason}")]
    Input { path: PathBuf, reason: io::Error },
    /// Writing results failed (a closed pipe, a full disk).
    #[error("cannot write output: {0}")]
    Output(io::Error),
    /// The Kafka cluster refused or could not be reached.
    #[error("kafka: {0}")]
    Kafka(String),
    /// A Kafka call failed: librdkafka's error, kept as the source.
    #[error("kafka: {0}")]
    KafkaCall(#[source] rdkafka::error::KafkaError),
    /// A Kafka call failed doing `what` (see [`Error::kafka`]): librdkafka's
    /// error, kept as the source.
    #[error("kafka: {what}: {source}")]
    KafkaAt {
        what: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// The group took this member's partitions away (its session ended,
    /// as across a broker restart) while it waited on Kafka for `0`.
    /// librdkafka hands them over only inside the next poll, and until
    /// then the group's requests may go unanswered: the consumer-group loop
    /// polls and takes the partitions on again when they come back
    /// (`src/cmd/driver.rs`); an exit only if it escapes there.
    #[error("kafka: the group took this member's partitions away during {0}")]
    AssignmentLost(String),
    /// A read a periodic check made was not answered in time; the check
    /// polls and asks again later (`driver::Unanswered`), and this is the
    /// error once no answer came for its whole budget.
    #[error("{0}")]
    NotAnswered(Box<Error>),
    /// The transactional producer could not start its transactions (the
    /// broker not reachable, or without transactions): librdkafka's error,
    /// kept as the source.
    #[error(
        "kafka: cannot start transactions at {bootstrap} ({source}); is the broker reachable \
         and does it support transactions? --at-least-once works without them"
    )]
    NoTransactions {
        bootstrap: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// A thread or runtime of the Kafka side (`what`: "admin runtime",
    /// "partition watch") could not start: the system's error, kept as
    /// the source.
    #[error("kafka: cannot start the {what}: {source}")]
    KafkaStart {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    /// A topic the job needs is not on the cluster.
    #[error("topic {0} does not exist (run `timebucket topics`)")]
    NoTopic(String),
    /// Topics exist but differ from their definitions in `topics/`.
    #[error("topic drift: {0}")]
    Drift(String),
    /// Some frames could not be delivered.
    #[error("delivery failed: {0}")]
    Delivery(String),
    /// Results differ from what they must be (loadtest's check against
    /// `aggregate`).
    #[error("wrong results: {0}")]
    Mismatch(String),
    /// Some loadtest runs could not finish (topics not created, a phase
    /// failed or timed out, a worker exited with an error), so they have no
    /// verdict: a setup or infrastructure failure, never wrong results.
    #[error("runs failed: {0}")]
    RunsFailed(String),
    /// A health or readiness check failed (`timebucket health`).
    #[error("not healthy: {0}")]
    Unhealthy(String),
    /// The input topic's partition count changed under a running `ingest`
    /// or `worker`, or `topics` refuses to change it while it is in use:
    /// time buckets would route to other partitions than before.
    #[error("input partitions: {0}")]
    Partitions(String),
    /// A committed offset without a valid timebucket checkpoint (an offset
    /// reset, foreign or crafted metadata), and `--on-missing-checkpoint=fail`.
    #[error("no valid checkpoint: {0}")]
    Checkpoint(String),
    /// A worker's open windows outgrew its state budget (`--state-budget`):
    /// it stops rather than count inexactly (see docs/limits.md).
    #[error("{0}")]
    StateBudget(String),
    /// The worker's parse threads could not start (`--parse-threads`):
    /// the system's error, kept as the source.
    #[error("cannot start {threads} parse threads (--parse-threads, PARSE_THREADS): {source}")]
    ParseThreads {
        threads: usize,
        #[source]
        source: rayon::ThreadPoolBuildError,
    },
}

impl Error {
    /// Exit code for the binary: 2 usage/config, 3 input, 4 output,
    /// 5 kafka, 6 drift, 7 delivery, 8 wrong results, 9 not healthy,
    /// 10 input partition count changed (or would), 11 no valid checkpoint,
    /// 12 loadtest runs failed before their check,
    /// 13 state budget exceeded.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(_) | Error::ParseThreads { .. } => 2,
            Error::Input { .. } => 3,
            Error::Output(_) => 4,
            Error::Kafka(_)
            | Error::KafkaCall(_)
            | Error::KafkaAt { .. }
            | Error::AssignmentLost(_)
            | Error::NoTransactions { .. }
            | Error::KafkaStart { .. }
            | Error::NoTopic(_) => 5,
            Error::NotAnswered(e) => e.exit_code(),
            Error::Drift(_) => 6,
            Error::Delivery(_) => 7,
            Error::Mismatch(_) => 8,
            Error::Unhealthy(_) => 9,
            Error::Partitions(_) => 10,
            Error::Checkpoint(_) => 11,
            Error::RunsFailed(_) => 12,
            Error::StateBudget(_) => 13,
        }
    }
}

impl Error {
    /// `self` as [`Error::NotAnswered`] if it may be asked again after a
    /// poll: a Kafka call that failed, but not one the cluster refused (a
    /// missing ACL does not heal) nor a lost assignment (handled apart).
    pub fn unanswered(self) -> Error {
        match &self {
            Error::KafkaAt { source, .. } | Error::KafkaCall(source)
                if crate::kafka::connect::refusal_of(source).is_none() =>
            {
                Error::NotAnswered(Box::new(self))
            }
            _ => self,
        }
    }

    /// A Kafka call that failed doing `what`, librdkafka's error kept:
    /// `.map_err(|e| Error::kafka_at("cannot create producer", e))`.
    pub fn kafka_at(what: impl Into<String>, source: rdkafka::error::KafkaError) -> Error {
        Error::KafkaAt {
            what: what.into(),
            source,
        }
    }
}

/// `e` as the binary prints it: its text, then each source's that the
/// text does not already hold (the variants quote their source's text, so
/// `{:#}` of the chain would repeat it).
pub fn report(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

impl From<crate::core::bucket::BadRouting> for Error {
    fn from(e: crate::core::bucket::BadRouting) -> Self {
        Error::Config(e.to_string())
    }
}

impl From<rdkafka::error::KafkaError> for Error {
    fn from(e: rdkafka::error::KafkaError) -> Self {
        Error::KafkaCall(e)
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};

    use super::*;

    /// A Kafka call's error keeps librdkafka's as its source, exits 5 like
    /// every Kafka error, and is printed without repeating the source.
    #[test]
    fn a_kafka_call_keeps_its_source_and_prints_it_once() {
        let e = Error::kafka_at(
            "cannot create producer",
            KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge),
        );
        assert_eq!(e.exit_code(), 5);
        assert!(std::error::Error::source(&e).is_some());
        let text = e.to_string();
        assert!(
            text.starts_with("kafka: cannot create producer: Message production error"),
            "{text}"
        );
        assert_eq!(report(&e), text);
        let code = RDKafkaErrorCode::MessageSizeTooLarge.to_string();
        assert_eq!(text.matches(&code).count(), 1, "{text}");
    }

    /// The typed Kafka errors that replaced formatted strings keep their
    /// source, exit 5, and print the text they printed before, once.
    #[test]
    fn typed_kafka_errors_keep_their_source_and_their_text() {
        let no_transactions = Error::NoTransactions {
            bootstrap: "b:9092".into(),
            source: KafkaError::MessageProduction(RDKafkaErrorCode::BrokerNotAvailable),
        };
        let source = std::error::Error::source(&no_transactions)
            .expect("kept")
            .to_string();
        let before = format!(
            "kafka: cannot start transactions at b:9092 ({source}); is the broker reachable and \
             does it support transactions? --at-least-once works without them"
        );
        let start = Error::KafkaStart {
            what: "admin runtime",
            source: std::io::Error::other("no threads"),
        };
        for (e, text) in [
            (no_transactions, before.as_str()),
            (start, "kafka: cannot start the admin runtime: no threads"),
        ] {
            assert_eq!(e.exit_code(), 5);
            assert!(std::error::Error::source(&e).is_some());
            assert_eq!(e.to_string(), text);
            assert_eq!(report(&e), text);
        }
    }

    /// A source whose text the message does not quote is appended.
    #[test]
    fn a_source_the_message_does_not_quote_is_appended() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] std::io::Error);
        let e = Outer(std::io::Error::other("inner"));
        assert_eq!(report(&e), "outer: inner");
    }

    #[test]
    fn a_failed_read_may_be_asked_again_but_not_a_refused_one() {
        let timed_out = KafkaError::MetadataFetch(RDKafkaErrorCode::OperationTimedOut);
        let read = Error::kafka_at("cannot read committed offsets of in", timed_out);
        let again = read.unanswered();
        assert!(matches!(again, Error::NotAnswered(_)));
        assert_eq!(again.exit_code(), 5);
        let refused = KafkaError::MetadataFetch(RDKafkaErrorCode::GroupAuthorizationFailed);
        let refused = Error::kafka_at("cannot read committed offsets of in", refused);
        assert!(matches!(refused.unanswered(), Error::KafkaAt { .. }));
        let lost = Error::AssignmentLost("a read".into());
        assert!(matches!(lost.unanswered(), Error::AssignmentLost(_)));
    }
}
