//! The integration tests, in one binary so that librdkafka is linked once.
//!
//! Every module is one area of the product. The ones that touch Kafka use the
//! broker named by `BOOTSTRAP_SERVERS` (`scripts/test` starts one) through
//! [`common::bootstrap`], which fails, never skips, when no broker answers.
//! Real challenge frames live in `tests/data/`, golden outputs in
//! `tests/golden/`. The core's property tests (parser, windows) live in
//! `core/tests/`, where they build without librdkafka.

mod common;

mod aggregate_cli;
mod attack;
mod budget;
mod compose;
mod compose_dockerfile;
mod compose_run;
mod compose_secure;
mod crowd;
mod dashboard;
mod edges;
mod faults;
mod fuzz;
mod generate;
mod golden;
mod guard;
mod ingest;
mod ingest_resume;
mod kafka_smoke;
mod loadtest;
mod netfaults;
mod pipeline;
mod prometheus;
mod secure;
mod shards;
mod time;
mod topics;
