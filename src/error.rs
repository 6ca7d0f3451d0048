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
}

impl Error {
    /// Exit code for the binary: 2 usage/config, 3 input, 4 output,
    /// 5 kafka, 6 drift, 7 delivery, 8 wrong results, 9 not healthy,
    /// 10 input partition count changed (or would), 11 no valid checkpoint,
    /// 12 loadtest runs failed before their check,
    /// 13 state budget exceeded.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(_) => 2,
            Error::Input { .. } => 3,
            Error::Output(_) => 4,
            Error::Kafka(_) | Error::KafkaCall(_) | Error::NoTopic(_) => 5,
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
