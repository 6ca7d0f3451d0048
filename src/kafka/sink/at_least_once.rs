//! At-least-once outputs: records are produced as they come, flushed before
//! each commit, and only then are the offsets committed by the consumer.
//! After a crash a window may be emitted again, always with the same value.

use std::time::Duration;

use super::{Commit, DeadLetter, Late, Offsets, Outputs, Sink};
use crate::core::frame::Invalid;
use crate::core::window::Closed;
use crate::error::Error;
use crate::kafka::config::{KafkaSettings, TopicNames};
use crate::kafka::consumer::OffsetCommit;
use crate::kafka::limits::OutputLimits;
use crate::kafka::producer::{self, TrackedProducer};

pub struct AtLeastOnce {
    producer: TrackedProducer,
    outputs: Outputs,
}

impl AtLeastOnce {
    pub fn new(
        settings: &KafkaSettings,
        topics: TopicNames,
        late: Option<String>,
        limits: OutputLimits,
    ) -> Result<AtLeastOnce, Error> {
        Ok(AtLeastOnce {
            producer: producer::worker_producer(settings, producer::WORKER_DEFAULTS, &limits)?,
            outputs: Outputs::new(topics, late, limits),
        })
    }
}

impl Sink for AtLeastOnce {
    fn emit(&mut self, partition: i32, closed: &Closed) {
        self.outputs.emit(&self.producer, partition, closed);
    }

    fn forward(&mut self, partition: i32, offset: u64, payload: &[u8]) -> bool {
        self.outputs
            .forward(&self.producer, partition, offset, payload)
    }

    fn dead_letter(&mut self, partition: i32, offset: u64, payload: &[u8], reason: Invalid) {
        let reason = DeadLetter::Invalid(reason);
        self.outputs
            .dead_letter(&self.producer, partition, offset, payload, reason);
    }

    fn late(&mut self, partition: i32, offset: u64, payload: &[u8], late: Late) -> bool {
        self.outputs
            .late(&self.producer, partition, offset, payload, late)
    }

    fn progress(&mut self, partition: i32, watermark: u64) {
        self.outputs.progress(&self.producer, partition, watermark);
    }

    fn commit(&mut self, offsets: &Offsets, consumer: &dyn OffsetCommit) -> Result<Commit, Error> {
        // What the offsets cover must have landed before they are committed.
        producer::flush(&self.producer, Duration::from_secs(120))?;
        if !offsets.is_empty() {
            consumer.commit_offsets(offsets)?;
        }
        Ok(Commit::Durable)
    }
}
