//! One module per `timebucket` subcommand: the jobs that drive the core,
//! offline or through the Kafka glue in [`crate::kafka`].

pub mod aggregate;
pub mod dashboard;
pub(crate) mod driver;
pub mod generate;
pub mod ingest;
pub mod loadtest;
pub mod merge;
pub mod show;
pub mod worker;

/// The wall clock in unix milliseconds, for reports and logs (never for a
/// decision the core makes: time comes into the core as data).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
