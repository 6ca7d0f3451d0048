//! Exactly-once outputs: everything a worker produces between two commits
//! is one Kafka transaction together with the input offsets and their
//! checkpoints, so a `read_committed` reader sees each window once whatever
//! happens to the workers.
//!
//! A transaction that cannot commit is aborted (nothing of it becomes
//! visible) and the worker replays its partitions from the committed
//! checkpoints ([`Commit::Rewind`]). A producer that is fenced, or whose
//! transaction cannot be aborted, is replaced by a fresh one; the broker
//! aborts the old transaction after `transaction.timeout.ms`.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::producer::{Producer, PurgeConfig};
use rdkafka::topic_partition_list::TopicPartitionList;
use tracing::warn;

use super::{Commit, DeadLetter, Late, Offsets, Outputs, Partials, Sink};
use crate::core::frame::Invalid;
use crate::core::window::Closed;
use crate::error::Error;
use crate::kafka::config::{KafkaSettings, TopicNames};
use crate::kafka::connect::{refusal, refusal_of, refused};
use crate::kafka::consumer::OffsetCommit;
use crate::kafka::error::{Cause, Failure, TxnError};
use crate::kafka::limits::OutputLimits;
use crate::kafka::producer::TRANSACTION_TIMEOUT_MS;
use crate::kafka::producer::{self, TrackedProducer};
use crate::kafka::retry::{transactional, transactional_once, Patience};

/// How long one transactional call may take, and all its retries together.
/// The transaction itself times out after 10 s
/// (`producer::TRANSACTIONAL_DEFAULTS`): a commit still not done well after
/// that is replaced by a fresh producer and a replay (see [`Commit::Rewind`]).
const PATIENCE: Patience = Patience {
    call: Duration::from_secs(8),
    budget: Duration::from_secs(30),
};

pub struct Transactional {
    /// Shared with a call that may outlive it ([`transactional_once`]).
    producer: Arc<TrackedProducer>,
    outputs: Outputs,
    settings: KafkaSettings,
    limits: OutputLimits,
    /// Prefix of this worker's transactional ids.
    id_prefix: String,
    /// When a call made once is abandoned: not before the transaction
    /// timeout, since the group's next reader of the committed offsets
    /// waits that long for an abandoned transaction anyway, and a call on a
    /// slow network may still answer (seen: offsets answered in 6 s and
    /// more at 400 ms round trips; abandoned at 12 s, the others waited for
    /// the 120 s transaction timeout and the run missed its deadline).
    abandon_after: Duration,
}

impl Transactional {
    /// A producer with a fresh transaction open. `group` names the ids.
    pub fn new(
        settings: &KafkaSettings,
        topics: TopicNames,
        late: Option<String>,
        limits: OutputLimits,
        group: &str,
    ) -> Result<Transactional, Error> {
        let id_prefix = format!("timebucket-{group}-{}", topics.input);
        let abandon_after = producer::transaction_timeout(settings, TRANSACTION_TIMEOUT_MS)?;
        let sink = Transactional {
            producer: Arc::new(start_producer(settings, &limits, &id_prefix)?),
            outputs: Outputs::new(topics, late, limits.clone()),
            limits,
            settings: settings.clone(),
            id_prefix,
            abandon_after,
        };
        sink.begin()?;
        Ok(sink)
    }

    /// Windows go to the partials topic instead (a shard worker).
    pub fn with_partials(mut self, partials: Option<Partials>) -> Transactional {
        self.outputs.partials = partials;
        self
    }

    fn begin(&self) -> Result<(), Error> {
        self.producer
            .begin_transaction()
            .map_err(|e| Error::kafka_at("cannot begin a transaction", e))
    }

    fn commit_transaction(
        &self,
        offsets: &TopicPartitionList,
        consumer: &dyn OffsetCommit,
    ) -> Result<(), TxnError> {
        let producer = &self.producer;
        if offsets.count() > 0 {
            let group = consumer.group_metadata().ok_or(TxnError {
                call: "offsets",
                failure: Failure::Abortable,
                cause: Box::new(Cause::NoGroupMetadata),
            })?;
            let (producer, offsets) = (producer.clone(), offsets.clone());
            transactional_once("offsets", PATIENCE, self.abandon_after, move |timeout| {
                producer.send_offsets_to_transaction(&offsets, &group.0, timeout)
            })?;
        }
        // commit_transaction flushes first, through rdkafka's slow flush.
        producer::wait_delivered(producer, PATIENCE.call);
        // A record librdkafka refused outright (too large) is not part of
        // the transaction, which would commit without it: check first.
        let deliveries = &producer.context().deliveries;
        if deliveries.failed() > 0 {
            return Err(TxnError::undelivered(deliveries.failure_report()));
        }
        transactional("commit", PATIENCE, |timeout| {
            producer.commit_transaction(timeout)
        })?;
        if deliveries.failed() > 0 {
            return Err(TxnError::undelivered(deliveries.failure_report()));
        }
        Ok(())
    }

    /// Gives up the open transaction: aborts it, or hands over to a fresh
    /// producer when this one cannot go on (and says so).
    fn give_up(&mut self, failed: &TxnError) -> Result<bool, Error> {
        // A call that timed out may still be under way: an abort would
        // conflict with it.
        let mut replace = matches!(failed.failure, Failure::Fatal | Failure::TimedOut);
        if !replace {
            warn!(error = %failed, "transaction failed: aborting it and replaying from the committed checkpoints");
            let producer = &self.producer;
            match transactional("abort", PATIENCE, |timeout| {
                producer.abort_transaction(timeout)
            }) {
                Ok(()) => producer.context().deliveries.reset(),
                Err(e) => {
                    warn!(error = %e, "cannot abort the transaction: leaving it to the broker's timeout");
                    replace = true;
                }
            }
        }
        if replace {
            warn!(error = %failed, "transactional producer unusable: starting a new one and replaying from the committed checkpoints");
            let fresh = start_producer(&self.settings, &self.limits, &self.id_prefix)?;
            let old = std::mem::replace(&mut self.producer, Arc::new(fresh));
            old.purge(PurgeConfig::default().queue().inflight());
            // Destroying a producer waits for its threads, which may wait for
            // a call still under way: not on the worker's thread.
            std::thread::spawn(move || drop(old));
        }
        Ok(replace)
    }
}

impl Sink for Transactional {
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
        let outcome = match self.commit_transaction(&offsets.to_list(), consumer) {
            Ok(()) => Commit::Durable,
            Err(failed) => {
                // A missing ACL would fail every replay the same way.
                if let Some(refused) = producer::refusal(&self.producer) {
                    return Err(refused);
                }
                // So would a record too large for its topic: stop, naming it,
                // with nothing of this transaction visible.
                let deliveries = &self.producer.context().deliveries;
                if deliveries.permanent() > 0 {
                    let report = deliveries.failure_report();
                    let _ = self.producer.abort_transaction(PATIENCE.call);
                    return Err(Error::Delivery(report));
                }
                if let Some(code) = failed.code().filter(|c| refusal(*c).is_some()) {
                    return Err(Error::KafkaCode {
                        what: format!("transaction {}", failed.call),
                        code,
                    });
                }
                Commit::Rewind {
                    producer_replaced: self.give_up(&failed)?,
                }
            }
        };
        self.begin()?;
        Ok(outcome)
    }
}

/// A producer ready for transactions, with an id of its own.
fn start_producer(
    settings: &KafkaSettings,
    limits: &OutputLimits,
    id_prefix: &str,
) -> Result<TrackedProducer, Error> {
    let id = transactional_id(id_prefix);
    let mut defaults = producer::TRANSACTIONAL_DEFAULTS.to_vec();
    defaults.push(("transactional.id", &id));
    let producer = producer::worker_producer(settings, &defaults, limits)?;
    producer
        .init_transactions(Duration::from_secs(30))
        .map_err(|e| match refusal_of(&e) {
            Some(_) => refused(
                &format!("cannot start transactions with transactional id {id}"),
                &e,
            ),
            None => Error::NoTransactions {
                bootstrap: settings.bootstrap.clone(),
                source: e,
            },
        })?;
    Ok(producer)
}

/// A transactional id unique to this process and moment: zombies are
/// fenced by the consumer group generation (KIP-447), so ids need not be
/// stable across restarts.
fn transactional_id(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    format!("{prefix}-{host}-{}-{nanos:x}", std::process::id())
}
