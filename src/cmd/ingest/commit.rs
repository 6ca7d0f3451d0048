//! Ingest's transactions: the frames and dead letters of a stretch of lines
//! and the [`Position`] after them, committed together every N records or T
//! ms. A rerun of the same source uses the same transactional id, so its
//! `init_transactions` fences a run still alive (a zombie) and aborts what a
//! crashed one left open: afterwards the latest committed position is final.

use std::time::{Duration, Instant};

use rdkafka::producer::{BaseRecord, Producer};
use tracing::{debug, warn};

use super::position::Position;
use crate::error::Error;
use crate::kafka::config::KafkaSettings;
use crate::kafka::connect::{refusal_of, refused};
use crate::kafka::error::Failure;
use crate::kafka::limits::OutputLimits;
use crate::kafka::producer::REASON_TOO_LARGE_FOR_TOPIC;
use crate::kafka::producer::{self, TrackedProducer};
use crate::kafka::retry::{transactional, Patience};
use std::sync::atomic::Ordering;

/// How long a commit or abort may take, and all its retries together: the
/// commit first waits for every queued record (up to
/// `queue.buffering.max.kbytes` of them).
const PATIENCE: Patience = Patience {
    call: Duration::from_secs(60),
    budget: Duration::from_secs(120),
};

/// The transaction timeout: how long a crashed ingest's open transaction
/// holds back `read_committed` readers unless a rerun aborts it first.
/// Records may take as long to be delivered (librdkafka's rule:
/// `message.timeout.ms` <= `transaction.timeout.ms`).
pub const TRANSACTION_TIMEOUT_MS: u64 = 60_000;

/// When to commit: whichever comes first.
#[derive(Debug, Clone, Copy)]
pub struct CommitEvery {
    pub records: u64,
    pub interval: Duration,
}

impl CommitEvery {
    /// Each commit stalls reading until its records are delivered; every
    /// 2 s keeps that under a few percent of ingest's throughput (see
    /// BENCHMARKS.md) and bounds what a crash makes a rerun redo.
    pub const DEFAULT: CommitEvery = CommitEvery {
        records: 200_000,
        interval: Duration::from_millis(2000),
    };
}

pub(super) struct Transactions {
    pub(super) producer: TrackedProducer,
    id: String,
    progress_topic: String,
    /// The progress record's key; `None`: not resumable, no progress kept.
    key: Option<String>,
    every: CommitEvery,
    open: Option<Instant>,
    /// Records sent in the open transaction.
    records: u64,
    /// Records of this run's committed transactions.
    pub(super) committed_records: u64,
    /// The last committed position (where a rerun would continue).
    pub(super) committed: Position,
}

impl Transactions {
    /// A transactional producer with id `id`, ready (`init_transactions`).
    pub(super) fn start(
        settings: &KafkaSettings,
        id: String,
        progress_topic: &str,
        key: Option<String>,
        every: CommitEvery,
        committed: Position,
        limits: &OutputLimits,
    ) -> Result<Transactions, Error> {
        // The size settings the topics' limits imply (as a worker's
        // producer): librdkafka's own default message.max.bytes
        // (1,000,000 with record framing) would refuse frames the topics
        // take.
        let sizes = limits.producer_properties();
        let mut config: Vec<(&str, &str)> = producer::INGEST_DEFAULTS
            .iter()
            .copied()
            .filter(|(k, _)| *k != "message.timeout.ms" && sizes.iter().all(|(s, _)| s != k))
            .collect();
        config.extend(sizes.iter().map(|(k, v)| (*k, v.as_str())));
        let timeout = TRANSACTION_TIMEOUT_MS.to_string();
        config.extend([
            ("transactional.id", id.as_str()),
            ("transaction.timeout.ms", timeout.as_str()),
            ("message.timeout.ms", timeout.as_str()),
        ]);
        let producer = producer::tracked_producer(settings, &config)?;
        producer
            .init_transactions(Duration::from_secs(30))
            .map_err(|e| match refusal_of(&e) {
                Some(_) => refused(
                    &format!("cannot start transactions with transactional id {id}"),
                    &e,
                ),
                None => Error::kafka_at(
                    format!(
                        "cannot start transactions with transactional id {id} at {}",
                        settings.bootstrap
                    ),
                    e,
                ),
            })?;
        Ok(Transactions {
            producer,
            id,
            progress_topic: progress_topic.to_string(),
            key,
            every,
            open: None,
            records: 0,
            committed_records: 0,
            committed,
        })
    }

    /// Where this run starts: the latest committed position read after
    /// `init_transactions`, or a fresh one (`--restart`, a changed source).
    pub(super) fn set_committed(&mut self, position: Position) {
        self.committed = position;
    }

    fn begin(&mut self) -> Result<(), Error> {
        if self.open.is_none() {
            self.producer
                .begin_transaction()
                .map_err(|e| Error::kafka_at("cannot begin a transaction", e))?;
            self.open = Some(Instant::now());
        }
        Ok(())
    }

    /// Sends one record inside the open transaction (opening one if needed).
    pub(super) fn send(&mut self, record: BaseRecord<'_, [u8], [u8], usize>) -> Result<(), Error> {
        self.begin()?;
        producer::send(&self.producer, record);
        self.records += 1;
        Ok(())
    }

    /// Sends a frame inside the open transaction; `false` when the
    /// producer refused it for good (larger than its `message.max.bytes`
    /// with framing): not sent, not a failure, for the caller to
    /// dead-letter.
    pub(super) fn send_frame(
        &mut self,
        record: BaseRecord<'_, [u8], [u8], usize>,
    ) -> Result<bool, Error> {
        self.begin()?;
        match producer::try_send(&self.producer, record) {
            Ok(()) => {
                self.records += 1;
                Ok(true)
            }
            Err((e, _)) if producer::refused_for_good(&e) => Ok(false),
            Err((e, returned)) => {
                let deliveries = &self.producer.context().deliveries;
                deliveries.refused_at_send.fetch_add(1, Ordering::Relaxed);
                let line = returned.delivery_opaque as u64;
                deliveries.record_error(line, returned.topic, &e, e.to_string());
                Ok(true)
            }
        }
    }

    /// Whether the open transaction is due for a commit, asked after every
    /// line (reading the clock costs about 25 ns, under 0.2 % of a line).
    pub(super) fn due(&self) -> bool {
        self.open.is_some_and(|opened| {
            self.records >= self.every.records || opened.elapsed() >= self.every.interval
        })
    }

    /// Commits the open transaction with `position` (the lines it covers end
    /// there). On failure the transaction is aborted and the error names
    /// the last committed line, where a rerun continues.
    pub(super) fn commit(&mut self, position: Position) -> Result<(), Error> {
        self.begin()?;
        if let Some(key) = &self.key {
            let value = position.to_json();
            producer::send(
                &self.producer,
                BaseRecord::with_opaque_to(&self.progress_topic, position.line as usize)
                    .key(key.as_bytes())
                    .payload(&value),
            );
        }
        // commit_transaction flushes first, through rdkafka's slow flush.
        producer::wait_delivered(&self.producer, PATIENCE.call);
        let producer = &self.producer;
        let committed = transactional("commit", PATIENCE, |timeout| {
            producer.commit_transaction(timeout)
        });
        let deliveries = &producer.context().deliveries;
        let lost_in_flight = deliveries.failed_in_flight();
        let first = self.committed.line + 1;
        self.open = None;
        let reason = match committed {
            Ok(()) if lost_in_flight == 0 => {
                debug!(line = position.line, records = self.records, "committed");
                self.committed_records += self.records;
                self.records = 0;
                self.committed = position;
                return Ok(());
            }
            Ok(()) => format!(
                "the transaction committed without {lost_in_flight} of its records: \
                 lines {first}..={} may be incomplete",
                position.line
            ),
            Err(e) => {
                if let Some(refused) = producer::refusal(producer) {
                    return Err(refused);
                }
                if e.failure == Failure::Fatal {
                    return Err(Error::IngestFenced {
                        failed: e,
                        id: self.id.clone(),
                        committed: self.committed.line,
                    });
                }
                // The commit may still land (or the broker aborts it after
                // the transaction timeout): a rerun's init_transactions
                // waits for either, then continues after what committed.
                if e.failure == Failure::TimedOut {
                    return Err(Error::IngestUnanswered {
                        failed: e,
                        first,
                        last: position.line,
                        committed: self.committed.line,
                    });
                }
                if let Err(abort) = transactional("abort", PATIENCE, |timeout| {
                    producer.abort_transaction(timeout)
                }) {
                    warn!(error = %abort, "cannot abort the transaction: the broker aborts it after its timeout, or a rerun does");
                }
                let aborted = format!(
                    "the transaction of lines {first}..={} was aborted ({e})",
                    position.line
                );
                if deliveries.permanent() > 0 {
                    // The topic's limit changed since this run read it (or
                    // could not be read): a rerun reads it again, and
                    // dead-letters what does not fit before sending.
                    format!(
                        "{aborted}; the broker refused records for good (too large for the \
                         topic?): a rerun reads the topics' limits again and dead-letters a \
                         frame that does not fit as {REASON_TOO_LARGE_FOR_TOPIC}"
                    )
                } else {
                    aborted
                }
            }
        };
        Err(Error::Delivery(format!(
            "{}; {reason}. Lines 1..={} (byte {}) are committed: run ingest again on the same \
             source to continue from line {first}",
            deliveries.failure_report(),
            self.committed.line,
            self.committed.bytes,
        )))
    }
}
