//! Producers: delivery tracking (every record is accounted for, failures keep
//! the position they came from), tuned configurations for ingest and for
//! workers, and the headers of dead-letter records.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;

use crate::core::frame::Invalid;
use crate::error::Error;
use crate::kafka::config::KafkaSettings;
use crate::kafka::connect::refusal as refusal_of_code;
use crate::kafka::limits::OutputLimits;

/// Failures kept one by one for the final report; the rest are only counted.
const KEPT_FAILURES: usize = 20;

/// Counts of deliveries, shared between the producer's callback and its owner.
#[derive(Debug, Default)]
pub struct Deliveries {
    pub delivered: AtomicU64,
    pub failed: AtomicU64,
    /// Failures no retry or replay can heal: the record itself is refused
    /// (too large for the producer or the topic, or malformed).
    pub permanent: AtomicU64,
    /// Positions are [`Position`]s of a worker (input partition and
    /// offset), not ingest's line numbers.
    pub worker_positions: bool,
    /// Of `failed`, those the producer refused when they were sent (too
    /// large): never queued, so never part of a transaction.
    pub refused_at_send: AtomicU64,
    /// (position, error) of the first failures: a line number or an offset.
    pub failures: Mutex<Vec<(u64, String)>>,
    /// The first failure that was the cluster saying no (a missing ACL):
    /// retrying or replaying cannot help, so the job stops.
    /// The topic and librdkafka's code.
    pub refused: Mutex<Option<(String, RDKafkaErrorCode)>>,
}

impl Deliveries {
    /// Failures after a record was queued (timeouts, the broker refusing
    /// it): inside a transaction, each one fails that transaction.
    pub fn failed_in_flight(&self) -> u64 {
        self.failed()
            .saturating_sub(self.refused_at_send.load(Ordering::Relaxed))
    }

    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// Counts a record that was not delivered because of `error`.
    pub fn record_error(&self, position: u64, topic: &str, error: &KafkaError, detail: String) {
        if let Some(code) = error
            .rdkafka_error_code()
            .filter(|c| refusal_of_code(*c).is_some())
        {
            let mut refused = self.refused.lock().expect("poisoned");
            if refused.is_none() {
                *refused = Some((topic.to_string(), code));
            }
        }
        if is_permanent(error) {
            self.permanent.fetch_add(1, Ordering::Relaxed);
        }
        self.record_failure(position, format!("{topic}: {detail}"));
    }

    /// Failures no retry or replay can heal (see `permanent`).
    pub fn permanent(&self) -> u64 {
        self.permanent.load(Ordering::Relaxed)
    }

    /// [`Error::KafkaCode`] if the cluster refused a record (see `refused`).
    pub fn refusal(&self) -> Option<Error> {
        self.refused
            .lock()
            .expect("poisoned")
            .clone()
            .map(|(topic, code)| Error::KafkaCode {
                what: format!("cannot produce to {topic}"),
                code,
            })
    }

    pub fn record_failure(&self, position: u64, error: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut kept = self.failures.lock().expect("poisoned");
        if kept.len() < KEPT_FAILURES {
            kept.push((position, error));
        }
    }

    /// Forgets failures of records whose transaction was aborted.
    pub fn reset(&self) {
        self.failed.store(0, Ordering::Relaxed);
        self.permanent.store(0, Ordering::Relaxed);
        self.refused_at_send.store(0, Ordering::Relaxed);
        self.failures.lock().expect("poisoned").clear();
    }

    pub fn failure_report(&self) -> String {
        let kept = self.failures.lock().expect("poisoned");
        let mut s = format!("{} record(s) not delivered", self.failed());
        for (position, error) in kept.iter() {
            let at = if self.worker_positions {
                Position::decode(*position).to_string()
            } else {
                position.to_string()
            };
            s.push_str(&format!("\n  at {at}: {error}"));
        }
        s
    }
}

/// Whether a failed record would fail the same way on every retry: it is
/// too large for the producer (`message.max.bytes`) or the topic
/// (`max.message.bytes`), or the broker finds it malformed.
fn is_permanent(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::MessageBatchTooLarge
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::InvalidMessage
                | RDKafkaErrorCode::InvalidMessageSize
        )
    )
}

/// What a worker's record came from, packed into the delivery opaque: the
/// input record (partition and offset) it carries or describes, or the
/// window a metric record closes. 48 bits of offset or window start, 15 of
/// partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    Record { partition: i32, offset: u64 },
    Window { partition: i32, start: u64 },
}

const WINDOW_BIT: u64 = 1 << 63;
const LOW_48: u64 = (1 << 48) - 1;

impl Position {
    pub fn encode(self) -> usize {
        let (flag, partition, value) = match self {
            Position::Record { partition, offset } => (0, partition, offset),
            Position::Window { partition, start } => (WINDOW_BIT, partition, start),
        };
        (flag | ((partition as u64 & 0x7fff) << 48) | (value & LOW_48)) as usize
    }

    pub fn decode(raw: u64) -> Position {
        let partition = ((raw >> 48) & 0x7fff) as i32;
        let value = raw & LOW_48;
        if raw & WINDOW_BIT != 0 {
            Position::Window {
                partition,
                start: value,
            }
        } else {
            Position::Record {
                partition,
                offset: value,
            }
        }
    }
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Position::Record { partition, offset } => {
                write!(f, "input partition {partition} offset {offset}")
            }
            Position::Window { partition, start } => {
                write!(f, "the window at {start} of input partition {partition}")
            }
        }
    }
}

/// Producer context whose delivery opaque is the record's position.
#[derive(Clone, Default)]
pub struct TrackedDelivery {
    pub deliveries: Arc<Deliveries>,
}

impl ClientContext for TrackedDelivery {}

impl ProducerContext for TrackedDelivery {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, position: usize) {
        match result {
            Ok(_) => {
                self.deliveries.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, msg)) => {
                self.deliveries.record_error(
                    position as u64,
                    msg.topic(),
                    e,
                    format!("{e} ({} bytes)", msg.payload_len()),
                );
            }
        }
    }
}

/// Polled by its own thread: delivery reports, and the flushes inside
/// transaction commits and aborts, never wait for the caller to poll.
pub type TrackedProducer = ThreadedProducer<TrackedDelivery>;

/// Ingest: large lz4 batches suit 2 KB JSON frames (about 3x smaller on the
/// wire, and lz4 is the cheapest codec per byte on a 2-core machine);
/// idempotence keeps each partition in file order across retries.
pub const INGEST_DEFAULTS: &[(&str, &str)] = &[
    ("enable.idempotence", "true"),
    ("acks", "all"),
    ("compression.type", "lz4"),
    ("linger.ms", "25"),
    ("batch.size", "1000000"),
    ("batch.num.messages", "10000"),
    ("queue.buffering.max.kbytes", "262144"),
    ("queue.buffering.max.messages", "500000"),
    ("message.timeout.ms", "300000"),
];

/// Workers: few, small metric records and optionally forwarded frames.
pub const WORKER_DEFAULTS: &[(&str, &str)] = &[
    ("enable.idempotence", "true"),
    ("acks", "all"),
    ("compression.type", "lz4"),
    ("linger.ms", "10"),
    ("batch.size", "1000000"),
    // Bounds the frames a --forward worker buffers (default 1 GB): peak
    // memory, see BENCHMARKS.md (loadtest).
    ("queue.buffering.max.kbytes", "32768"),
    ("message.timeout.ms", "300000"),
];

/// Exactly-once workers: one transaction per commit interval holds the
/// metric records, forwarded and dead-lettered frames, and the input offsets
/// with their checkpoints. A short transaction timeout bounds how long a
/// crashed worker's open transaction holds back `read_committed` readers.
pub const TRANSACTIONAL_DEFAULTS: &[(&str, &str)] = &[
    ("enable.idempotence", "true"),
    ("acks", "all"),
    ("compression.type", "lz4"),
    ("linger.ms", "10"),
    ("batch.size", "1000000"),
    ("queue.buffering.max.kbytes", "32768"),
    // TRANSACTION_TIMEOUT_MS
    ("transaction.timeout.ms", "10000"),
    ("message.timeout.ms", "10000"),
];

/// The transaction timeout of the workers' and the merge's producers
/// ([`TRANSACTIONAL_DEFAULTS`]), in milliseconds.
pub const TRANSACTION_TIMEOUT_MS: u64 = 10_000;

/// The transaction timeout a transactional producer made from `settings`
/// gets: the user's `transaction.timeout.ms` if set, else `default_ms`.
pub fn transaction_timeout(settings: &KafkaSettings, default_ms: u64) -> Result<Duration, Error> {
    let user = settings
        .properties
        .iter()
        .rev()
        .find(|(k, _)| k == "transaction.timeout.ms");
    let ms = match user.map(|(_, v)| v) {
        Some(v) => v.parse::<u64>().map_err(|_| {
            Error::Config(format!(
                "transaction.timeout.ms={v:?} is not a number of milliseconds"
            ))
        })?,
        None => default_ms,
    };
    Ok(Duration::from_millis(ms))
}

/// Refuses a commit interval that cannot fit the transaction timeout. A
/// transaction opens with the first record after a commit and stays open
/// for the interval and then for its commit (which waits for the records
/// still in flight); the broker aborts one that outlives the timeout, and a
/// job that replays and commits the same way never makes progress. So the
/// interval must be at most half the timeout.
pub fn check_commit_interval(
    flag: &str,
    interval: Duration,
    timeout: Duration,
) -> Result<(), Error> {
    let (interval_ms, timeout_ms) = (interval.as_millis(), timeout.as_millis());
    if interval_ms.saturating_mul(2) > timeout_ms {
        return Err(Error::Config(format!(
            "{flag} {interval_ms} cannot fit the transaction timeout \
             (transaction.timeout.ms {timeout_ms}): a transaction stays open for the interval \
             and then for its commit, and the broker aborts it after the timeout, so the \
             interval must be at most half of it ({}); lower {flag}, or raise \
             transaction.timeout.ms (-X transaction.timeout.ms=..., at most the broker's \
             transaction.max.timeout.ms)",
            timeout_ms / 2
        )));
    }
    Ok(())
}

pub fn tracked_producer(
    settings: &KafkaSettings,
    defaults: &[(&str, &str)],
) -> Result<TrackedProducer, Error> {
    let context = TrackedDelivery::default();
    settings
        .client_config(defaults)
        .create_with_context(context)
        .map_err(|e| Error::kafka_at("cannot create producer", e))
}

/// A worker's producer: `defaults`, then the size settings the output
/// topics' limits imply ([`OutputLimits::producer_properties`]); delivery
/// opaques are [`Position`]s.
pub fn worker_producer(
    settings: &KafkaSettings,
    defaults: &[(&str, &str)],
    limits: &OutputLimits,
) -> Result<TrackedProducer, Error> {
    let sizes = limits.producer_properties();
    let mut all = defaults.to_vec();
    all.retain(|(k, _)| sizes.iter().all(|(s, _)| s != k));
    all.extend(sizes.iter().map(|(k, v)| (*k, v.as_str())));
    let context = TrackedDelivery {
        deliveries: Arc::new(Deliveries {
            worker_positions: true,
            ..Deliveries::default()
        }),
    };
    settings
        .client_config(&all)
        .create_with_context(context)
        .map_err(|e| Error::kafka_at("cannot create producer", e))
}

/// Sends one record, waiting while the local queue is full. A record the
/// producer refuses outright (for example, larger than `message.max.bytes`)
/// is counted as a failed delivery at `position`, never dropped silently.
pub fn send(producer: &TrackedProducer, record: BaseRecord<'_, [u8], [u8], usize>) {
    if let Err((e, returned)) = try_send(producer, record) {
        let position = returned.delivery_opaque as u64;
        let deliveries = &producer.context().deliveries;
        deliveries.refused_at_send.fetch_add(1, Ordering::Relaxed);
        deliveries.record_error(position, returned.topic, &e, e.to_string());
    }
}

/// A record the producer refused outright, and why.
pub type Refused<'a> = (KafkaError, BaseRecord<'a, [u8], [u8], usize>);

/// Sends one record, waiting while the local queue is full; the record
/// comes back with the error if the producer refuses it outright (as
/// rdkafka's own `send` gives it back, large as it is).
#[allow(clippy::result_large_err)]
pub fn try_send<'a>(
    producer: &TrackedProducer,
    mut record: BaseRecord<'a, [u8], [u8], usize>,
) -> Result<(), Refused<'a>> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((e, returned)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                std::thread::sleep(Duration::from_millis(5));
                record = returned;
            }
            Err(refused) => return Err(refused),
        }
    }
}

/// Whether a refusal is for the record itself (too large, malformed):
/// sending it again fails the same way.
pub fn refused_for_good(error: &KafkaError) -> bool {
    is_permanent(error)
}

/// Waits until no record is queued or in flight, or `timeout` has passed,
/// in 1 ms steps (the producer's own thread serves the delivery reports).
/// rdkafka's `flush` waits in 100 ms poll steps that always run to their end,
/// which cost a worker up to 100 ms per commit; call this first.
pub fn wait_delivered(producer: &TrackedProducer, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while producer.in_flight_count() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// [`Error::KafkaCode`] or [`Error::ProducerRefused`] if the cluster refused this producer or one of its
/// records (a missing ACL, e.g. Write on a topic, or a fatal idempotence
/// error such as ClusterAuthorizationFailed): retrying cannot help.
pub fn refusal(producer: &TrackedProducer) -> Option<Error> {
    if let Some(refused) = producer.context().deliveries.refusal() {
        return Some(refused);
    }
    let (code, reason) = producer.client().fatal_error()?;
    refusal_of_code(code).map(|_| Error::ProducerRefused { code, reason })
}

/// Waits for every queued record; an error if any was not delivered.
pub fn flush(producer: &TrackedProducer, timeout: Duration) -> Result<(), Error> {
    let started = Instant::now();
    wait_delivered(producer, timeout);
    producer
        .flush(timeout.saturating_sub(started.elapsed()))
        .map_err(Error::Flush)?;
    let deliveries = &producer.context().deliveries;
    if let Some(refused) = refusal(producer) {
        return Err(refused);
    }
    if deliveries.failed() > 0 {
        return Err(Error::Delivery(deliveries.failure_report()));
    }
    Ok(())
}

pub const HEADER_REASON: &str = "timebucket.reason";
pub const HEADER_DETAIL: &str = "timebucket.detail";
pub const HEADER_LINE: &str = "timebucket.line";
pub const HEADER_PARTITION: &str = "timebucket.partition";
pub const HEADER_OFFSET: &str = "timebucket.offset";
pub const HEADER_LATE: &str = "timebucket.late";
pub const HEADER_WINDOW: &str = "timebucket.window";
pub const HEADER_WATERMARK: &str = "timebucket.watermark";
/// The dead-lettered record's payload size in bytes, before any truncation.
pub const HEADER_SIZE: &str = "timebucket.size";
/// Present (value `true`) when the dead letter holds only the first bytes
/// of the payload: all of it would not fit the dead-letter topic.
pub const HEADER_TRUNCATED: &str = "timebucket.truncated";
/// The output topic a valid frame was too large for (reason
/// [`REASON_TOO_LARGE_FOR_TOPIC`]).
pub const HEADER_TOPIC: &str = "timebucket.topic";
/// Dead-letter reason of a valid frame, counted in its windows, that is too
/// large for the topic it should also go to (`--forward`, the late topic).
pub const REASON_TOO_LARGE_FOR_TOPIC: &str = "too_large_for_topic";

/// Headers of a late frame: for which window kind it came late
/// (`second`, or `minute` when it missed its minute too), that window's
/// start, the watermark it met, and where it came from.
pub fn late_headers(
    minute: bool,
    window: u64,
    watermark: u64,
    partition: i32,
    offset: i64,
) -> OwnedHeaders {
    OwnedHeaders::new()
        .insert(Header {
            key: HEADER_LATE,
            value: Some(if minute { "minute" } else { "second" }),
        })
        .insert(Header {
            key: HEADER_WINDOW,
            value: Some(&window.to_string()),
        })
        .insert(Header {
            key: HEADER_WATERMARK,
            value: Some(&watermark.to_string()),
        })
        .insert(Header {
            key: HEADER_PARTITION,
            value: Some(&partition.to_string()),
        })
        .insert(Header {
            key: HEADER_OFFSET,
            value: Some(&offset.to_string()),
        })
}

/// Where an invalid frame came from.
#[derive(Debug, Clone, Copy)]
pub enum Origin {
    /// Line number of the ingested file (1-based).
    Line(u64),
    /// Partition and offset of the input topic.
    Offset { partition: i32, offset: i64 },
}

pub fn dead_letter_headers(reason: Invalid, origin: Origin) -> OwnedHeaders {
    reason_headers(reason.code(), reason.describe(), origin)
}

/// Headers of a valid frame too large for `topic` (whose limit is `limit`).
pub fn too_large_headers(topic: &str, limit: usize, origin: Origin) -> OwnedHeaders {
    let detail =
        format!("a valid frame, counted, larger than {topic} takes (max.message.bytes {limit})");
    reason_headers(REASON_TOO_LARGE_FOR_TOPIC, &detail, origin).insert(Header {
        key: HEADER_TOPIC,
        value: Some(topic),
    })
}

fn reason_headers(reason: &str, detail: &str, origin: Origin) -> OwnedHeaders {
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: HEADER_REASON,
            value: Some(reason),
        })
        .insert(Header {
            key: HEADER_DETAIL,
            value: Some(detail),
        });
    match origin {
        Origin::Line(line) => headers.insert(Header {
            key: HEADER_LINE,
            value: Some(&line.to_string()),
        }),
        Origin::Offset { partition, offset } => headers
            .insert(Header {
                key: HEADER_PARTITION,
                value: Some(&partition.to_string()),
            })
            .insert(Header {
                key: HEADER_OFFSET,
                value: Some(&offset.to_string()),
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(props: &[(&str, &str)]) -> KafkaSettings {
        KafkaSettings {
            bootstrap: "127.0.0.1:1".into(),
            properties: props
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>(),
        }
    }

    #[test]
    fn a_commit_interval_must_fit_the_transaction_timeout() {
        let ms = Duration::from_millis;
        let default = transaction_timeout(&settings(&[]), TRANSACTION_TIMEOUT_MS).unwrap();
        assert_eq!(default, ms(10_000));
        assert!(check_commit_interval("--commit-interval-ms", ms(1_000), default).is_ok());
        assert!(check_commit_interval("--commit-interval-ms", ms(5_000), default).is_ok());
        let err = check_commit_interval("--commit-interval-ms", ms(15_000), default).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let text = err.to_string();
        assert!(
            text.contains("--commit-interval-ms 15000")
                && text.contains("transaction.timeout.ms 10000"),
            "{text}"
        );
        // The user's transaction timeout counts.
        let raised = settings(&[("transaction.timeout.ms", "60000")]);
        let timeout = transaction_timeout(&raised, TRANSACTION_TIMEOUT_MS).unwrap();
        assert!(check_commit_interval("--commit-interval-ms", ms(15_000), timeout).is_ok());
        let bad = settings(&[("transaction.timeout.ms", "soon")]);
        assert_eq!(transaction_timeout(&bad, 1).unwrap_err().exit_code(), 2);
    }
}
