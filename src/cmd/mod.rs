//! One module per `timebucket` subcommand: the jobs that drive the core,
//! offline or through the Kafka glue in [`crate::kafka`].

pub mod aggregate;
pub mod dashboard;
pub mod generate;
pub mod ingest;
pub mod loadtest;
pub mod merge;
pub mod show;
pub mod worker;
