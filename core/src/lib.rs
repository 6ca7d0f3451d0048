//! # timebucket-core
//!
//! The pure core of timebucket: frames, time buckets, windows and output
//! records. No Kafka, no async runtime, no clock: time comes in as data (a
//! frame's `ts`, a watermark), so the offline `aggregate` and the Kafka
//! `worker` drive the same code and give the same answers, and its tests
//! build without librdkafka (`cargo test -p timebucket-core`).
//!
//! - [`frame`]: one input line → a [`frame::Frame`] (`ts`, `uid`) or an
//!   [`frame::Invalid`] reason; the validating hot-path parser.
//! - [`budget`]: a worker's state budget over its partitions' windows.
//! - [`bucket`]: `ts` → time bucket → partition ([`bucket::Routing`]), with
//!   shards by [`murmur2`] of the uid.
//! - [`merge`]: shards' partial windows summed once every shard closed them.
//! - [`window`]: per-partition event-time windows ([`window::Windows`]):
//!   `record` frames, `flush` at a [`window::Watermark`], get
//!   [`window::Closed`] counts; checkpoints for rebalance-safe commits.
//! - [`partitioned`]: every partition's windows fed from one stream, as
//!   `aggregate` does.
//! - [`metric`]: a closed window as the normative JSON output record.
//! - [`summary`]: what a run over input lines saw (aggregate, ingest), and
//!   what a worker counted (its report and its metrics).
//! - [`compare`]: window sets and how one differs from another.
//! - [`partition`]: one input partition of a worker as a state machine:
//!   records in, steps out (where to start, seek or skip, replay).
//! - [`cursor`]: where a reader of one partition is (start, seek once, skip).
//! - [`checkpoint`]: a checkpoint as commit metadata, and its checks.
//! - [`ends`]: the end of a batch run (when a partition is drained, when
//!   the topic is done), driven through a group [`ends::Member`].
//! - [`group`]: the consumer-group loop's decisions (commit, rewind, the
//!   merge's completion), shared by the worker and the merge.

pub mod bucket;
pub mod budget;
pub mod checkpoint;
pub mod clock;
pub mod compare;
pub mod cursor;
pub mod ends;
pub mod frame;
pub mod group;
pub mod merge;
pub mod metric;
pub mod murmur2;
pub mod partition;
pub mod partitioned;
pub mod summary;
pub mod window;
