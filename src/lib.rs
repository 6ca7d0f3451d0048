//! # timebucket
//!
//! Exact frames-per-second and distinct-users-per-minute over a Kafka stream
//! of JSON frames, scaled out by partitioning the input by time bucket.
//!
//! ## Map of the modules
//!
//! [`core`] (the `timebucket-core` crate in `core/`): the pure core, no
//! Kafka, no async runtime, no clock. `frame` parses a line into a `Frame`
//! (`ts`, `uid`) or names why it is `Invalid`; `bucket` routes `ts` → time
//! bucket → partition; `window` counts per-partition event-time windows
//! (`record` frames, `flush` at a `Watermark`, checkpoints for hand-over);
//! `partitioned` feeds every partition from one stream; `metric` is the JSON
//! output record; `compare` tells how two window sets differ.
//!
//! [`kafka`]: all Kafka glue. `config` (client properties), `topics`
//! (definitions in `topics/` and their setup; the input's partition count:
//! changed only with `--allow-repartition`, watched while jobs run), `consumer` (the group
//! consumer and its rebalance hand-over), `checkpoint` (a partition's
//! checkpoint as committed offset + metadata), `producer` (delivery
//! tracking, dead-letter headers), `sink` (a worker's outputs:
//! `Transactional` or `AtLeastOnce`), `read` (a topic to its end), `retry`,
//! `error` (what a failed transactional call means).
//!
//! [`cmd`]: one module per job. `generate` (challenge-like frames),
//! `aggregate` (the offline reference), `ingest` (file → input topic by
//! time bucket, exactly once: `source` is the file's identity and position,
//! `position` the progress record, `commit` the transactions that hold both
//! records and position), `driver` (the one consumer-group loop of
//! `worker` and `merge`: batches, commits, rewinds, hand-over, stop; its
//! pure decisions in `core::group`), `worker` (what the worker adds to it:
//! `poll` hands records to the pure per-partition state machine
//! `core::partition`, `report` is the typed run report, `guard` refuses
//! checkpoints and partitions it cannot trust), `merge` (the merge stage of
//! sharded buckets on the same loop), `show` (a metric topic as a table), `dashboard` (a live web page
//! read from the topics), `loadtest` (the pipeline under load beside Kafka's
//! perf tools, one file per job).
//!
//! [`observe`]: what an operator sees of a running process: the Prometheus
//! registry and metric families of `worker` and `ingest`, `/metrics`,
//! `/healthz`, `/readyz`, and the small HTTP server they and the dashboard
//! share.
//!
//! [`cli`]: the clap definitions of every subcommand and its environment
//! variables, and the dispatch to [`cmd`]. [`input`] reads files, stdin and
//! `.gz` as lines or chunks. [`error`] is the typed error enum whose kinds
//! `src/main.rs` maps to exit codes.
//!
//! ## Data flow
//!
//! Offline: `input` → `core::frame` → `core::partitioned` (`bucket`,
//! `window`) → `core::metric` → stdout.
//!
//! On Kafka: `ingest` → input topic (partition = time bucket mod P) → N
//! `worker`s in one consumer group: record → `Partition::on_record` →
//! `Sink` (metric topics, forwarded frames, dead letters) → commit with the
//! checkpoints of the owned partitions.

pub mod cli;
pub mod cmd;
pub mod error;
pub mod input;
pub mod kafka;
pub mod observe;

pub use error::Error;
/// The pure core (the `timebucket-core` crate in `core/`).
pub use timebucket_core as core;
