//! The group's log as the consumer-group loop (`src/cmd/driver.rs`) sees
//! it: one topic's assigned partitions to poll and seek, with plain types
//! at the boundary ([`Event`], [`Record`], [`SeekTo`], partition numbers),
//! so that the loop runs against an in-memory log in unit tests. The
//! rdkafka implementation is the group consumer of [`super::consumer`];
//! rebalances reach the loop through its [`Handover`] inside `poll`, as
//! librdkafka calls them there.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::topic_partition_list::Offset;

use crate::core::cursor::SeekTo;
use crate::error::Error;
use crate::kafka::connect::{refusal_of, refused, Refusal};
use crate::kafka::consumer::{GroupConsumer, Handover, OffsetCommit};

/// One record as a command sees it: plain values.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Record<'a> {
    pub partition: i32,
    pub offset: u64,
    /// The record's own time in unix seconds (CreateTime from the
    /// producer, or LogAppendTime), if it has one.
    pub time: Option<u64>,
    pub key: &'a [u8],
    pub payload: &'a [u8],
}

/// What one poll brought, borrowed from the log for the callback.
#[derive(Debug)]
pub(crate) enum Event<'a> {
    Record(Record<'a>),
    /// Everything of the partition up to its end offset has been read
    /// (asked for by batch runs).
    End(i32),
    /// The cluster refused the group or the topic: a missing ACL never
    /// heals by itself.
    Refused(Error),
    /// Anything else (a broker restarting): the log retries it; the text
    /// is for the warning.
    Transient(String),
    /// Nothing came within the timeout.
    Empty,
}

/// The group's log of one topic. Committing offsets is the [`OffsetCommit`]
/// half (a sink commits through it).
pub(crate) trait GroupLog: OffsetCommit {
    /// Waits up to `timeout` for one event and hands it to `f`. Rebalances
    /// are handed over before it, inside this call.
    fn poll<R>(&self, timeout: Duration, f: impl FnOnce(Event<'_>) -> R) -> R;
    /// Makes `partition` read from `to` on; a failure names it as `what`
    /// (`"cannot {what} topic/partition"`).
    fn seek(&self, partition: i32, to: SeekTo, what: &str) -> Result<(), Error>;
    /// The topic's partitions assigned to this member.
    fn assignment(&self) -> Result<Vec<i32>, Error>;
}

impl<H: Handover> GroupLog for GroupConsumer<H> {
    fn poll<R>(&self, timeout: Duration, f: impl FnOnce(Event<'_>) -> R) -> R {
        match BaseConsumer::poll(self, timeout) {
            Some(Ok(message)) => {
                let time = message
                    .timestamp()
                    .to_millis()
                    .filter(|&ms| ms >= 0)
                    .map(|ms| ms as u64 / 1000);
                f(Event::Record(Record {
                    partition: message.partition(),
                    offset: message.offset() as u64,
                    time,
                    key: message.key().unwrap_or(&[]),
                    payload: message.payload().unwrap_or(&[]),
                }))
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => f(Event::End(partition)),
            Some(Err(e)) if refusal_of(&e) == Some(Refusal::Authorization) => {
                let topic = &self.context().topic;
                f(Event::Refused(refused(
                    &format!("consumer of topic {topic}"),
                    &e,
                )))
            }
            Some(Err(e)) => f(Event::Transient(e.to_string())),
            None => f(Event::Empty),
        }
    }

    fn seek(&self, partition: i32, to: SeekTo, what: &str) -> Result<(), Error> {
        let topic = &self.context().topic;
        let offset = match to {
            SeekTo::Offset(o) => Offset::Offset(o as i64),
            SeekTo::Beginning => Offset::Beginning,
        };
        Consumer::seek(self, topic, partition, offset, Duration::from_secs(30))
            .map_err(|e| Error::kafka_at(format!("cannot {what} {topic}/{partition}"), e))
    }

    fn assignment(&self) -> Result<Vec<i32>, Error> {
        let assignment =
            Consumer::assignment(self).map_err(|e| Error::kafka_at("cannot read assignment", e))?;
        Ok(assignment
            .elements_for_topic(&self.context().topic)
            .iter()
            .map(|e| e.partition())
            .collect())
    }
}
