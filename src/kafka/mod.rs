//! Kafka glue, all in one place:
//! - [`config`]: client configuration shared by every client: the user's
//!   properties from a file, the environment and `-X`;
//! - [`properties`]: `key=value` files (client properties, topic
//!   definitions);
//! - [`connect`]: the first contact with the cluster, which fails fast and
//!   names the cause when the cluster refuses (credentials, TLS, ACLs);
//! - [`topics`]: topic definitions (`topics/`) and their setup on a cluster;
//! - [`consumer`]: the worker's group consumer and its rebalance hand-over;
//! - [`log`]: the group's log as the consumer-group loop sees it (a
//!   narrow trait with plain types; the group consumer implements it);
//! - [`checkpoint`]: a partition's checkpoint as a committed offset plus
//!   metadata;
//! - [`producer`]: producers with delivery tracking, dead-letter headers;
//! - [`limits`]: the record size limits of the output topics, read from
//!   the cluster, and the producer settings they imply;
//! - [`sink`]: a worker's outputs, transactional or at-least-once;
//! - [`partials`]: the partials topic of sharded buckets (partial windows,
//!   shard progress, merge checkpoints);
//! - [`read`]: a topic read to its end (`show`, loadtest, tests);
//! - [`retry`]: metadata and transactional calls retried while brokers
//!   fail over, each within a time budget;
//! - [`watchdog`]: the exit from a Kafka call that never returns;
//! - [`error`]: what a failed transactional call means.

pub mod checkpoint;
pub mod config;
pub mod connect;
pub mod consumer;
pub mod error;
pub mod limits;
pub(crate) mod log;
pub mod partials;
pub mod producer;
pub mod properties;
pub mod read;
pub mod retry;
pub mod sink;
pub mod topics;
pub mod watchdog;
