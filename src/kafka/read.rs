//! Reading a topic to its end outside any group, as `show`, `loadtest` and
//! the tests do: every committed record, with `read_committed`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::message::{BorrowedMessage, OwnedMessage};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;

use tracing::warn;

use crate::error::Error;
use crate::kafka::config::KafkaSettings;
use crate::kafka::connect::{refusal, refusal_of, refused};

/// Every committed record of `topic` up to its end offsets as they are now,
/// read with `read_committed` outside any group (for `show` and tests).
///
/// "The end" is the log end, not the last stable offset a `read_committed`
/// client is told about: records of transactions still open when the read
/// starts (for example a killed worker's, until the broker aborts it) would
/// otherwise hide the committed records after them. So this waits, up to
/// `timeout`, until every such transaction is resolved.
pub fn read_to_end(
    settings: &KafkaSettings,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<OwnedMessage>, Error> {
    let mut records = Vec::new();
    read_each(settings, topic, timeout, |m| records.push(m.detach()))?;
    Ok(records)
}

/// [`read_to_end`], handing each record to `visit` instead of keeping it
/// (for topics too large to hold, such as forwarded frames).
pub fn read_each(
    settings: &KafkaSettings,
    topic: &str,
    timeout: Duration,
    mut visit: impl FnMut(&BorrowedMessage<'_>),
) -> Result<(), Error> {
    let consumer: BaseConsumer = settings
        .client_config(&[
            ("group.id", "timebucket-reader"),
            ("enable.auto.commit", "false"),
            ("isolation.level", "read_committed"),
        ])
        .create()
        .map_err(|e| Error::kafka_at("cannot create reader", e))?;
    let partitions = partitions_of(&consumer, topic, timeout)?;
    let log_end: BaseConsumer = settings
        .client_config(&[
            ("group.id", "timebucket-reader"),
            ("isolation.level", "read_uncommitted"),
        ])
        .create()
        .map_err(|e| Error::kafka_at("cannot create reader", e))?;
    let mut tpl = TopicPartitionList::new();
    let mut remaining = HashMap::new();
    for &p in &partitions {
        let (low, high) = super::retry::with_backoff("partition offsets", timeout, |left| {
            log_end.fetch_watermarks(topic, p, left)
        })
        .map_err(|e| Error::kafka_at(format!("cannot read offsets of {topic}/{p}"), e))?;
        if high > low {
            remaining.insert(p, high);
            tpl.add_partition_offset(topic, p, Offset::Beginning)?;
        }
    }
    if remaining.is_empty() {
        return Ok(());
    }
    consumer.assign(&tpl)?;
    let deadline = Instant::now() + timeout;
    let mut last_check = Instant::now();
    while !remaining.is_empty() {
        if Instant::now() > deadline {
            return Err(Error::ReadTimedOut {
                topic: topic.to_string(),
            });
        }
        let message = consumer.poll(Duration::from_millis(100));
        let idle = message.is_none();
        match message {
            Some(Ok(message)) => visit(&message),
            // A refusal (authentication, TLS, an ACL) will not change: say so
            // now. Anything else (a broker down, a leader moving) librdkafka
            // retries by itself, and the deadline bounds the wait.
            Some(Err(e)) if refusal_of(&e).is_some() => {
                return Err(refused(&format!("cannot read {topic}"), &e));
            }
            Some(Err(e)) => warn!(topic, error = %e, "reading goes on after an error"),
            None => {}
        }
        // Positions, not message offsets: transaction markers and aborted
        // records occupy offsets that are never delivered. Asking for them
        // after every record would cost more than reading a big topic.
        if idle || last_check.elapsed() > Duration::from_millis(100) {
            last_check = Instant::now();
            for elem in consumer.position()?.elements() {
                if let (Offset::Offset(pos), Some(&end)) =
                    (elem.offset(), remaining.get(&elem.partition()))
                {
                    if pos >= end {
                        remaining.remove(&elem.partition());
                    }
                }
            }
        }
    }
    Ok(())
}

/// The partition ids of `topic`; [`Error::NoTopic`] if it does not exist.
pub fn partitions_of<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<i32>, Error> {
    let metadata = super::retry::with_backoff("topic metadata", timeout, |left| {
        consumer.fetch_metadata(Some(topic), left)
    })
    .map_err(|e| Error::kafka_at(format!("cannot read metadata of {topic}"), e))?;
    let found = metadata.topics().iter().find(|t| t.name() == topic);
    // Without Describe on a topic the cluster answers "not authorized",
    // whether the topic exists or not: that is no missing topic.
    if let Some(code) = found.and_then(|t| t.error()).map(RDKafkaErrorCode::from) {
        if refusal(code).is_some() {
            return Err(Error::KafkaCode {
                what: format!("cannot read metadata of {topic}"),
                code,
            });
        }
    }
    let partitions: Vec<i32> = found
        .filter(|t| t.error().is_none())
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default();
    if partitions.is_empty() {
        return Err(Error::NoTopic(topic.to_string()));
    }
    Ok(partitions)
}

/// The end offset (high watermark) of every partition of `topic`.
pub fn end_offsets<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
) -> Result<HashMap<i32, i64>, Error> {
    let timeout = Duration::from_secs(30);
    let mut ends = HashMap::new();
    for p in partitions_of(consumer, topic, timeout)? {
        let (_, high) = super::retry::with_backoff("end offsets", timeout, |left| {
            consumer.fetch_watermarks(topic, p, left)
        })
        .map_err(|e| Error::kafka_at(format!("cannot read end offset of {topic}/{p}"), e))?;
        ends.insert(p, high);
    }
    Ok(ends)
}

/// The log start offset of `topic`/`partition` as librdkafka last learned
/// it (from its fetch responses and offset lookups): no request to the
/// broker, so cheap enough for every jump in offsets a consumer sees.
/// `None` when the client knows nothing of the partition yet.
pub fn cached_log_start<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
) -> Option<i64> {
    let topic = std::ffi::CString::new(topic).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the client pointer is valid while `consumer` lives, `topic`
    // is a NUL-terminated string that outlives the call, and librdkafka
    // only reads its cached offsets under its own lock into `low`/`high`.
    let err = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && low >= 0)
        .then_some(low)
}
