//! The group's log as the consumer-group loop (`src/cmd/driver.rs`) sees
//! it: one topic's assigned partitions to poll and seek, with plain types
//! at the boundary ([`Event`], [`Record`], [`SeekTo`], partition numbers),
//! so that the loop runs against an in-memory log in unit tests. The
//! rdkafka implementation is the group consumer of [`super::consumer`];
//! rebalances reach the loop through its [`Handover`] inside `poll`, as
//! librdkafka calls them there. The reads the commands' own hooks make
//! (committed offsets, watermarks, positions, the topic's partitions,
//! librdkafka's statistics) are here too, as plain values, so the real
//! worker and merge run against the in-memory log as well.

use std::sync::atomic::Ordering;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::core::cursor::SeekTo;
use crate::error::Error;
use crate::kafka::checkpoint::answered;
use crate::kafka::connect::{refusal_of, refused, Refusal};
pub(crate) use crate::kafka::consumer::StatsEnds;
use crate::kafka::consumer::{GroupConsumer, Handover, OffsetCommit};
use crate::kafka::read::{cached_log_start, partitions_of};
use crate::kafka::retry;

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

/// How much one [`GroupLog::poll_batch`] may hold: records are borrowed
/// from the client until the batch is handled, so its bytes are bounded
/// as well as its count (a batch of the largest records the input topic
/// allows would otherwise hold hundreds of MB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchLimit {
    pub records: usize,
    /// The batch ends at the first record that reaches this many payload
    /// bytes (so it holds at most this plus one record).
    pub bytes: usize,
}

/// A committed offset of a partition and the commit's metadata (the
/// checkpoint, decoded by the command).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CommittedOffset {
    pub partition: i32,
    pub offset: u64,
    pub metadata: String,
}

/// The group's log of one topic. Committing offsets is the [`OffsetCommit`]
/// half (a sink commits through it).
pub(crate) trait GroupLog: OffsetCommit {
    /// Waits up to `timeout` for one event and hands it to `f`. Rebalances
    /// are handed over before it, inside this call.
    fn poll<R>(&self, timeout: Duration, f: impl FnOnce(Event<'_>) -> R) -> R;
    /// Up to `limit`'s records, then hands them to `f` in order: the first
    /// poll waits up to `timeout`, the others take only what was fetched
    /// already. The batch ends after its first event that is not a record
    /// (a partition's end, an error, or [`Event::Empty`]). Rebalances may
    /// be handed over between two of its polls: the caller drops a record
    /// whose partition was taken away meanwhile (see the driver). A log
    /// that does not batch polls one event.
    fn poll_batch<R>(
        &self,
        timeout: Duration,
        _limit: BatchLimit,
        f: impl FnOnce(Vec<Event<'_>>) -> R,
    ) -> R {
        self.poll(timeout, |event| f(vec![event]))
    }
    /// Makes `partition` read from `to` on; a failure names it as `what`
    /// (`"cannot {what} topic/partition"`).
    fn seek(&self, partition: i32, to: SeekTo, what: &str) -> Result<(), Error>;
    /// The topic's partitions assigned to this member.
    fn assignment(&self) -> Result<Vec<i32>, Error>;
    /// Whether the group has given this member an assignment (maybe empty).
    fn joined(&self) -> bool;
    /// The committed offsets of `partitions` (those that have one), in the
    /// cluster's order, asked again while the coordinator moves, up to
    /// `timeout`. With read_committed the cluster answers once no
    /// transaction holding offsets for them is pending.
    fn committed(
        &self,
        partitions: &[i32],
        timeout: Duration,
    ) -> Result<Vec<CommittedOffset>, Error>;
    /// `partition`'s low and high watermarks (log start, end offset), asked
    /// again while the cluster does not answer, up to `timeout`; a failure
    /// says it could not read the offsets of `what`.
    fn watermarks(
        &self,
        partition: i32,
        timeout: Duration,
        what: &str,
    ) -> Result<(i64, i64), Error>;
    /// `partition`'s log start as the client last learned it, without
    /// asking the cluster; `None` when it knows nothing of it yet.
    fn cached_log_start(&self, partition: i32) -> Option<i64>;
    /// The fetch position of each assigned partition (`None`: none yet).
    fn positions(&self) -> Result<Vec<(i32, Option<i64>)>, Error>;
    /// The topic's partitions, from the cluster's metadata.
    fn partitions(&self, timeout: Duration) -> Result<Vec<i32>, Error>;
}

impl<H: Handover> GroupLog for GroupConsumer<H> {
    fn poll<R>(&self, timeout: Duration, f: impl FnOnce(Event<'_>) -> R) -> R {
        match BaseConsumer::poll(self, timeout) {
            Some(Ok(message)) => f(Event::Record(record_of(&message))),
            Some(Err(e)) => f(error_event(self, e)),
            None => f(Event::Empty),
        }
    }

    fn poll_batch<R>(
        &self,
        timeout: Duration,
        limit: BatchLimit,
        f: impl FnOnce(Vec<Event<'_>>) -> R,
    ) -> R {
        let mut messages = Vec::new();
        let mut bytes = 0;
        let mut tail = None;
        let mut timeout = timeout;
        while messages.len() < limit.records && bytes < limit.bytes {
            match BaseConsumer::poll(self, timeout) {
                Some(Ok(message)) => {
                    bytes += message.payload_len();
                    messages.push(message);
                }
                Some(Err(e)) => {
                    tail = Some(error_event(self, e));
                    break;
                }
                None => {
                    tail = Some(Event::Empty);
                    break;
                }
            }
            timeout = Duration::ZERO;
        }
        let mut events: Vec<Event<'_>> = messages
            .iter()
            .map(|m| Event::Record(record_of(m)))
            .collect();
        events.extend(tail);
        f(events)
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

    fn joined(&self) -> bool {
        self.context().joined.load(Ordering::SeqCst)
    }

    fn committed(
        &self,
        partitions: &[i32],
        timeout: Duration,
    ) -> Result<Vec<CommittedOffset>, Error> {
        let topic = &self.context().topic;
        // No partitions, no request: it would still wait for the coordinator.
        if partitions.is_empty() {
            return Ok(Vec::new());
        }
        let mut tpl = TopicPartitionList::new();
        for &p in partitions {
            tpl.add_partition(topic, p);
        }
        // The group coordinator moves or reloads while brokers fail over;
        // a partition left unstable is asked again (checkpoint::answered).
        // Once the group took the assignment away (the session ended), the
        // read is left: no attempt is answered until this member polls and
        // hands its partitions over (after a broker restart a worker
        // waited here its whole budget, then exited).
        let committed = retry::with_backoff_per_attempt(
            "committed offsets",
            timeout,
            retry::COMMITTED_ATTEMPT,
            |left| {
                if Consumer::assignment_lost(self) {
                    return Ok(None);
                }
                answered(self.committed_offsets(tpl.clone(), left)?).map(Some)
            },
        )
        .map_err(|e| Error::kafka_at(format!("cannot read committed offsets of {topic}"), e))?
        .ok_or_else(|| Error::AssignmentLost(format!("a read of committed offsets of {topic}")))?;
        Ok(committed
            .elements_for_topic(topic)
            .iter()
            .filter_map(|elem| match elem.offset() {
                Offset::Offset(o) if o >= 0 => Some(CommittedOffset {
                    partition: elem.partition(),
                    offset: o as u64,
                    metadata: elem.metadata().to_string(),
                }),
                _ => None,
            })
            .collect())
    }

    fn watermarks(
        &self,
        partition: i32,
        timeout: Duration,
        what: &str,
    ) -> Result<(i64, i64), Error> {
        let topic = &self.context().topic;
        retry::with_backoff("partition offsets", timeout, |left| {
            self.fetch_watermarks(topic, partition, left)
        })
        .map_err(|e| Error::kafka_at(format!("cannot read offsets of {what}"), e))
    }

    fn cached_log_start(&self, partition: i32) -> Option<i64> {
        cached_log_start(self, &self.context().topic, partition)
    }

    fn positions(&self) -> Result<Vec<(i32, Option<i64>)>, Error> {
        let positions =
            Consumer::position(self).map_err(|e| Error::kafka_at("cannot read positions", e))?;
        Ok(positions
            .elements_for_topic(&self.context().topic)
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(o) => (e.partition(), Some(o)),
                _ => (e.partition(), None),
            })
            .collect())
    }

    fn partitions(&self, timeout: Duration) -> Result<Vec<i32>, Error> {
        partitions_of(self, &self.context().topic, timeout)
    }
}

/// A fetched message as a [`Record`], borrowed from it.
fn record_of<'a>(message: &'a BorrowedMessage<'_>) -> Record<'a> {
    let time = message
        .timestamp()
        .to_millis()
        .filter(|&ms| ms >= 0)
        .map(|ms| ms as u64 / 1000);
    Record {
        partition: message.partition(),
        offset: message.offset() as u64,
        time,
        key: message.key().unwrap_or(&[]),
        payload: message.payload().unwrap_or(&[]),
    }
}

/// What a poll of `consumer` that brought an error instead of a message
/// means.
fn error_event<H: Handover>(consumer: &GroupConsumer<H>, error: KafkaError) -> Event<'static> {
    match error {
        KafkaError::PartitionEOF(partition) => Event::End(partition),
        e if refusal_of(&e) == Some(Refusal::Authorization) => {
            let topic = &consumer.context().topic;
            Event::Refused(refused(&format!("consumer of topic {topic}"), &e))
        }
        e => Event::Transient(e.to_string()),
    }
}
