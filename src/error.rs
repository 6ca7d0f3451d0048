//! The library's typed errors. The binary maps each kind to an exit code
//! (see `src/main.rs`), so scripts can tell bad usage from bad input from an
//! unreachable broker.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

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
    /// The cluster answered `what` with an error code: librdkafka's code,
    /// kept as the source, worded with what to do when it is a refusal (a
    /// missing ACL: see [`crate::kafka::connect::explain`]).
    #[error("kafka: {what}: {}", crate::kafka::connect::explain(*code))]
    KafkaCode {
        what: String,
        #[source]
        code: rdkafka::types::RDKafkaErrorCode,
    },
    /// The producer hit a fatal error that is the cluster saying no (a
    /// missing ACL): librdkafka's code, kept as the source, and its reason.
    #[error("kafka: the producer was refused: {} ({reason})", crate::kafka::connect::explain(*code))]
    ProducerRefused {
        #[source]
        code: rdkafka::types::RDKafkaErrorCode,
        reason: String,
    },
    /// The cluster at `bootstrap` refused the login or the TLS handshake:
    /// librdkafka's code, kept as the source, its reason and a hint.
    #[error("kafka: {bootstrap} refused the connection: {hint} ({code}: {reason})")]
    ConnectionRefused {
        bootstrap: String,
        hint: &'static str,
        #[source]
        code: rdkafka::types::RDKafkaErrorCode,
        reason: String,
    },
    /// No broker at `bootstrap` answered within `timeout`; `last` is
    /// what went wrong last, kept as the source (librdkafka's error event
    /// or the failed metadata call).
    #[error("kafka: no Kafka broker at {bootstrap} answered within {timeout:?} (last: {last})")]
    NoBroker {
        bootstrap: String,
        timeout: Duration,
        #[source]
        last: crate::kafka::connect::LastSeen,
    },
    /// Reading `topic` to its end took longer than the time allowed.
    #[error("kafka: reading {topic} to its end timed out")]
    ReadTimedOut { topic: String },
    /// The cluster refused to create some topics: each with librdkafka's
    /// code (several, so none is the one source), and those created.
    #[error(
        "kafka: cannot create topics: {}",
        crate::kafka::topics::not_created(failed, created)
    )]
    TopicsNotCreated {
        failed: Vec<(String, rdkafka::types::RDKafkaErrorCode)>,
        created: Vec<String>,
    },
    /// Topics still without all their partitions or leaders after
    /// `timeout`: each waiting topic with why.
    #[error("kafka: topics not ready after {timeout:?}: {}", waiting.join(", "))]
    TopicsNotReady {
        timeout: Duration,
        waiting: Vec<String>,
    },
    /// The cluster answered a describe-configs request with another
    /// number of answers than topics asked for.
    #[error("kafka: asked for the configs of {asked} topics, got {got} answers")]
    ConfigAnswers { asked: usize, got: usize },
    /// A Kafka call did not return within its limit (`call`): the process
    /// exits, so that the group replays ([`crate::kafka::watchdog`]).
    #[error(
        "kafka: the {call} call to the Kafka client did not return within its limit: exiting so \
         that the group replays from the committed checkpoints (nothing of the open transaction \
         is visible)"
    )]
    Stuck { call: &'static str },
    /// Another ingest of the same source took over its transactional id
    /// (fenced), or the producer failed for good: the failed call, kept as
    /// the source; lines up to `committed` are committed.
    #[error(
        "kafka: {failed}: another ingest of this source took over (transactional id {id}), \
         or the producer failed; lines up to {committed} are committed"
    )]
    IngestFenced {
        #[source]
        failed: crate::kafka::error::TxnError,
        id: String,
        committed: u64,
    },
    /// The cluster did not answer ingest's commit of lines `first..=last`:
    /// the failed call, kept as the source. It may still land.
    #[error(
        "kafka: {failed}: the cluster did not answer the commit of lines {first}..={last}; \
         lines up to {committed} are committed for sure: run ingest again on the same \
         source to continue after the last committed line"
    )]
    IngestUnanswered {
        #[source]
        failed: crate::kafka::error::TxnError,
        first: u64,
        last: u64,
        committed: u64,
    },
    /// Ingest's progress topic is missing.
    #[error(
        "kafka: ingest's progress topic {0} does not exist: create it with `timebucket topics` \
         (role ingest-progress) or name another with --progress-topic"
    )]
    NoProgressTopic(String),
    /// The latest progress record of `key` in `topic` is none that ingest
    /// wrote: why, kept as the source.
    #[error(
        "kafka: the progress of {key} in {topic} cannot be read (offset {offset}: {bad}): \
         rerun with --restart to ingest the source from the start"
    )]
    BadProgress {
        key: String,
        topic: String,
        offset: i64,
        #[source]
        bad: crate::cmd::ingest::position::BadPosition,
    },
    /// A loadtest run's topics were not all fresh: another run's topics
    /// of the same names existed.
    #[error("kafka: expected to create {expected} fresh topics, created {created:?}")]
    NotFresh {
        expected: usize,
        created: Vec<String>,
    },
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
    /// A system call around the job failed (listening on a port, a
    /// signal handler, a file the job needs): the system's error, kept as
    /// the source. Exits 2 like a configuration that cannot work.
    #[error("cannot {what}: {source}")]
    System {
        what: String,
        #[source]
        source: io::Error,
    },
    /// A topic definition in `topics/` that cannot work.
    #[error("invalid configuration: {0}")]
    Spec(#[from] crate::kafka::topics::SpecError),
    /// A routing (partitions, shards, bucket length) that cannot work.
    #[error("invalid configuration: {0}")]
    Routing(#[from] crate::core::bucket::BadRouting),
    /// The producer's queue could not be flushed: librdkafka's error,
    /// kept as the source.
    #[error("delivery failed: flush did not finish: {0}")]
    Flush(#[source] rdkafka::error::KafkaError),
    /// A health or readiness endpoint could not be asked (`timebucket
    /// health`): the client's error, kept as the source.
    #[error("not healthy: {0}")]
    Unreachable(#[source] crate::observe::http::GetError),
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
            Error::Config(_)
            | Error::System { .. }
            | Error::Spec(_)
            | Error::Routing(_)
            | Error::ParseThreads { .. } => 2,
            Error::Input { .. } => 3,
            Error::Output(_) => 4,
            Error::KafkaCall(_)
            | Error::KafkaCode { .. }
            | Error::ProducerRefused { .. }
            | Error::ConnectionRefused { .. }
            | Error::NoBroker { .. }
            | Error::ReadTimedOut { .. }
            | Error::TopicsNotCreated { .. }
            | Error::TopicsNotReady { .. }
            | Error::ConfigAnswers { .. }
            | Error::Stuck { .. }
            | Error::IngestFenced { .. }
            | Error::IngestUnanswered { .. }
            | Error::NoProgressTopic(_)
            | Error::BadProgress { .. }
            | Error::NotFresh { .. }
            | Error::KafkaAt { .. }
            | Error::AssignmentLost(_)
            | Error::NoTransactions { .. }
            | Error::KafkaStart { .. }
            | Error::NoTopic(_) => 5,
            Error::NotAnswered(e) => e.exit_code(),
            Error::Drift(_) => 6,
            Error::Delivery(_) | Error::Flush(_) => 7,
            Error::Mismatch(_) => 8,
            Error::Unhealthy(_) | Error::Unreachable(_) => 9,
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

    /// The Kafka errors that were text keep librdkafka's code as their
    /// source, exit 5, print it once, and are not asked again (a refusal
    /// does not heal).
    #[test]
    fn kafka_errors_with_a_code_keep_it_as_their_source() {
        let refused = Error::KafkaCode {
            what: "cannot produce to out".into(),
            code: RDKafkaErrorCode::TopicAuthorizationFailed,
        };
        let text = refused.to_string();
        assert!(
            text.starts_with(
                "kafka: cannot produce to out: TopicAuthorizationFailed (Broker: Topic \
                 authorization failed) (not authorized"
            ),
            "{text}"
        );
        let producer = Error::ProducerRefused {
            code: RDKafkaErrorCode::ClusterAuthorizationFailed,
            reason: "fatal idempotence error".into(),
        };
        let connection = Error::ConnectionRefused {
            bootstrap: "b:9092".into(),
            hint: "authentication failed",
            code: RDKafkaErrorCode::Authentication,
            reason: "SASL authentication error".into(),
        };
        for e in [refused, producer, connection] {
            assert_eq!(e.exit_code(), 5);
            let source = std::error::Error::source(&e).expect("kept");
            let code = source.downcast_ref::<RDKafkaErrorCode>().expect("the code");
            let text = e.to_string();
            assert_eq!(report(&e), text);
            assert_eq!(text.matches(&code.to_string()).count(), 1, "{text}");
            assert!(!matches!(e.unanswered(), Error::NotAnswered(_)));
        }
    }

    /// Ingest's failed commits keep the failed call (and so librdkafka's
    /// error) as their source; a bad progress record keeps why.
    #[test]
    fn ingest_errors_keep_the_failed_call_as_their_source() {
        use crate::kafka::error::TxnError;
        let kafka = KafkaError::MessageProduction(RDKafkaErrorCode::OperationTimedOut);
        let failed = TxnError::new("commit", &kafka);
        let fenced = Error::IngestFenced {
            failed: failed.clone(),
            id: "ingest-a".into(),
            committed: 7,
        };
        let unanswered = Error::IngestUnanswered {
            failed,
            first: 8,
            last: 9,
            committed: 7,
        };
        for e in [fenced, unanswered] {
            assert_eq!(e.exit_code(), 5);
            let source = std::error::Error::source(&e).expect("kept");
            assert!(source.downcast_ref::<TxnError>().is_some());
            let inner = source.source().expect("librdkafka's");
            assert!(inner.downcast_ref::<KafkaError>().is_some());
            let text = e.to_string();
            assert!(
                text.starts_with(&format!("kafka: commit: {kafka}: ")),
                "{text}"
            );
            assert_eq!(report(&e), text);
            assert_eq!(text.matches(&kafka.to_string()).count(), 1, "{text}");
        }
        let bad = crate::cmd::ingest::position::Position::decode(b"{").unwrap_err();
        let e = Error::BadProgress {
            key: "in/a.log".into(),
            topic: "progress".into(),
            offset: 3,
            bad,
        };
        assert_eq!(e.exit_code(), 5);
        assert!(std::error::Error::source(&e).is_some());
        assert_eq!(report(&e), e.to_string());
        assert!(e.to_string().contains("in/a.log in progress"), "{e}");
    }

    /// A cluster that never answered keeps what went wrong last as the
    /// source, down to librdkafka's code, printed once.
    #[test]
    fn no_broker_keeps_what_went_wrong_last() {
        use crate::kafka::connect::LastSeen;
        let code = RDKafkaErrorCode::BrokerTransportFailure;
        let event = LastSeen::Event {
            code,
            reason: "Connect to ipv4#127.0.0.1:1 failed: Connection refused".into(),
        };
        let call = LastSeen::Call(KafkaError::MetadataFetch(code));
        for last in [event, call] {
            let e = Error::NoBroker {
                bootstrap: "127.0.0.1:1".into(),
                timeout: Duration::from_secs(2),
                last,
            };
            assert_eq!(e.exit_code(), 5);
            let text = e.to_string();
            assert!(
                text.starts_with(
                    "kafka: no Kafka broker at 127.0.0.1:1 answered within 2s (last: "
                ),
                "{text}"
            );
            let mut source = std::error::Error::source(&e);
            let mut kept = None;
            while let Some(s) = source {
                kept = kept.or(s.downcast_ref::<RDKafkaErrorCode>());
                source = s.source();
            }
            assert_eq!(kept, Some(&code), "{e:?}");
            assert_eq!(report(&e), text);
            assert_eq!(text.matches(&code.to_string()).count(), 1, "{text}");
            assert!(!matches!(e.unanswered(), Error::NotAnswered(_)));
        }
        let none = LastSeen::NoBrokers.to_string();
        assert_eq!(none, "the metadata lists no brokers");
    }

    /// Conditions without an underlying error are typed too: exit 5, no
    /// source, and they name their topic or call.
    #[test]
    fn kafka_conditions_without_a_source_name_what_they_are_about() {
        let failed = vec![(
            "out".to_string(),
            RDKafkaErrorCode::InvalidReplicationFactor,
        )];
        let cases = [
            (
                Error::ReadTimedOut {
                    topic: "progress".into(),
                },
                "progress",
            ),
            (
                Error::TopicsNotCreated {
                    failed,
                    created: vec!["in".into()],
                },
                "out: InvalidReplicationFactor (Broker: Invalid replication factor) (created in) \
                 (more replicas",
            ),
            (
                Error::TopicsNotReady {
                    timeout: Duration::from_secs(5),
                    waiting: vec!["in (partition 0 has no leader)".into()],
                },
                "in (partition 0 has no leader)",
            ),
            (Error::ConfigAnswers { asked: 2, got: 1 }, "2 topics, got 1"),
            (Error::Stuck { call: "offsets" }, "the offsets call"),
            (Error::NoProgressTopic("progress".into()), "topic progress"),
            (
                Error::NotFresh {
                    expected: 2,
                    created: vec![],
                },
                "create 2 fresh",
            ),
        ];
        for (e, names) in cases {
            assert_eq!(e.exit_code(), 5, "{e}");
            assert!(std::error::Error::source(&e).is_none(), "{e}");
            assert!(e.to_string().starts_with("kafka: "), "{e}");
            assert!(e.to_string().contains(names), "{e}");
            assert!(!matches!(e.unanswered(), Error::NotAnswered(_)));
        }
    }

    /// The system's, the flush's and the health client's errors are kept
    /// as sources, with the exit codes their text-only forms had.
    #[test]
    fn system_flush_and_health_errors_keep_their_source() {
        let e = Error::System {
            what: "listen on 127.0.0.1:1 for metrics".into(),
            source: io::Error::from(io::ErrorKind::AddrInUse),
        };
        assert_eq!(e.exit_code(), 2);
        let source = std::error::Error::source(&e).expect("kept");
        assert_eq!(
            source.downcast_ref::<io::Error>().map(io::Error::kind),
            Some(io::ErrorKind::AddrInUse)
        );
        assert!(e
            .to_string()
            .starts_with("cannot listen on 127.0.0.1:1 for metrics: "));
        assert_eq!(report(&e), e.to_string());

        let flush = Error::Flush(rdkafka::error::KafkaError::Flush(
            rdkafka::types::RDKafkaErrorCode::OperationTimedOut,
        ));
        assert_eq!(flush.exit_code(), 7);
        assert!(std::error::Error::source(&flush)
            .and_then(|s| s.downcast_ref::<rdkafka::error::KafkaError>())
            .is_some());
        assert_eq!(report(&flush), flush.to_string());

        let routing: Error = crate::core::bucket::Routing::new(900, 0)
            .expect_err("no partitions")
            .into();
        assert!(matches!(routing, Error::Routing(_)));
        assert_eq!(routing.exit_code(), 2);
        assert_eq!(report(&routing), routing.to_string());
    }
}
