//! The pure core: frames, time buckets, windows and output records. No
//! Kafka, no async runtime, no clock: time comes in as data (a frame's `ts`,
//! a watermark), so the offline `aggregate` and the Kafka `worker` drive the
//! same code and give the same answers.

pub mod bucket;
pub mod compare;
pub mod frame;
pub mod metric;
pub mod window;
