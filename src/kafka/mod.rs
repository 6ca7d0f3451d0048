//! Kafka glue, all in one place: client configuration ([`config`]), topic
//! definitions and their setup ([`topics`]), the worker's consumer with its
//! rebalance handling and commit metadata ([`consumer`]), producers with
//! dead-letter records ([`producer`]), and retrying metadata calls while
//! brokers fail over ([`retry`]).

pub mod config;
pub mod consumer;
pub mod producer;
pub mod retry;
pub mod topics;
