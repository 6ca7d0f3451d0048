//! # timebucket
//!
//! Exact frames-per-second and distinct-users-per-minute over a Kafka stream
//! of JSON frames, scaled out by partitioning the input by time bucket.
//!
//! ## Map of the modules
//!
//! The pure core, no Kafka, no async, no clock:
//! - [`frame`]: one input line → a [`frame::Frame`] (`ts`, `uid`) or an
//!   [`frame::Invalid`] reason; the validating hot-path parser.
//! - [`bucket`]: `ts` → time bucket → partition ([`bucket::Routing`]).
//! - [`window`]: per-partition event-time windows ([`window::Windows`]):
//!   `record` frames, `flush` at a [`window::Watermark`], get
//!   [`window::Closed`] counts; checkpoints for rebalance-safe commits.
//! - [`metric`]: a closed window as the normative JSON output record.
//!
//! Drivers around the core:
//! - [`input`]: file / stdin / `.gz` → numbered lines.
//! - [`aggregate`]: offline reference: lines → parser → routing → windows → records.
//! - [`generate`]: realistic challenge-like frames, deterministic by seed.
//!
//! - [`kafka`]: all Kafka glue: client config, topics, the group consumer
//!   with rebalance hand-over and checkpoint metadata, producers, retries
//!   of metadata calls while brokers fail over.
//! - [`ingest`]: lines → parser → produce to partition `bucket mod P`
//!   (invalid lines → dead-letter topic).
//! - [`worker`]: group consumer → parser → per-partition `window` → metric
//!   topics; commits checkpoints only after what they cover was delivered.
//! - [`show`]: a metric topic → a table of windows.
//! - [`loadtest`]: the pipeline under load on a real cluster (ingest, worker
//!   processes, Kafka's perf tools), every window checked against `aggregate`.
//!
//! Data flow offline: `input` → `frame` → `bucket` → `window` → `metric` → stdout.
//!
//! Data flow on Kafka: `ingest` → input topic (partition = time bucket mod P)
//! → N `worker`s in one consumer group → per-second and per-minute topics.
//!
//! [`error`] holds the typed error enum the binary (`src/main.rs`) maps to
//! exit codes.

pub mod cli;
pub mod cmd;
pub mod core;
pub mod error;
pub mod input;
pub mod kafka;

pub use error::Error;
