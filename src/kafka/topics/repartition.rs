//! The input topic's partition count, changed only when told to.
//!
//! Adding partitions changes `bucket mod P` for most time buckets: frames
//! already in the topic were routed by the old count, and a worker judging
//! them by the new one dead-letters them as `wrong_partition`, while a
//! minute's frames end up in two partitions. So `timebucket topics` refuses
//! to raise the partition count of an input topic that is in use (it holds
//! records, or a consumer group committed offsets on it) unless
//! `--allow-repartition` says so ([`Error::Partitions`], exit code 10). An
//! input topic not in use is left as it is and reported as drift, as every
//! other difference is; with the flag it is raised.

use std::time::Duration;

use rdkafka::admin::{AdminOptions, NewPartitions};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tracing::{info, warn};

use super::admin::{admin_client, runtime, snapshot};
use super::spec::TopicSpec;
use crate::error::Error;
use crate::kafka::config::KafkaSettings;

/// Why a topic counts as in use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InUse {
    /// Records the topic holds now (end minus start offsets).
    pub records: u64,
    /// Consumer groups with committed offsets on it (looked for only when
    /// it holds no records).
    pub groups: Vec<String>,
}

impl InUse {
    pub fn any(&self) -> bool {
        self.records > 0 || !self.groups.is_empty()
    }
}

/// What [`repartition_input`] did: `Some((before, after))` if it raised
/// the partition count.
pub type Repartitioned = Option<(u32, u32)>;

/// Raises the partition count of the existing input topic `spec.name` to
/// `spec.partitions` when `allow`; refuses with [`Error::Partitions`] when
/// the topic is in use and not `allow`. A topic that does not exist, or
/// already has that many partitions or more, is left to
/// [`super::ensure_topics`] (created, or reported as drift).
pub fn repartition_input(
    settings: &KafkaSettings,
    spec: &TopicSpec,
    allow: bool,
    timeout: Duration,
) -> Result<Repartitioned, Error> {
    let admin = admin_client(settings)?;
    let topic = &spec.name;
    let Some(before) = snapshot(&admin, Some(topic), timeout, &settings.bootstrap)?
        .get(topic)
        .map(|t| t.partitions.len() as u32)
        .filter(|&n| n > 0)
    else {
        return Ok(None);
    };
    let after = spec.partitions;
    if after <= before {
        return Ok(None);
    }
    let in_use = input_in_use(settings, topic, before, timeout)?;
    if !allow {
        if !in_use.any() {
            return Ok(None);
        }
        return Err(Error::Partitions(format!(
            "refusing to change the partition count of input topic {topic} from {before} to {after}: \
             it is in use ({}). Its frames were routed by bucket mod {before}; with {after} partitions \
             most buckets route elsewhere, so workers would dead-letter the frames already there as \
             wrong_partition and split minutes across partitions. Use a new input topic (INPUT_STREAM), \
             or pass --allow-repartition if that is what you want",
            describe(&in_use)
        )));
    }
    if in_use.any() {
        warn!(topic, before, after, in_use = %describe(&in_use), "raising the partition count of an input topic in use (--allow-repartition)");
    }
    let opts = AdminOptions::new()
        .request_timeout(Some(timeout))
        .operation_timeout(Some(timeout));
    let results = runtime()?
        .block_on(admin.create_partitions([&NewPartitions::new(topic, after as usize)], &opts))
        .map_err(|e| Error::kafka_at(format!("cannot add partitions to {topic}"), e))?;
    for result in results {
        result.map_err(|(name, code)| Error::KafkaCode {
            what: format!("cannot add partitions to {name}"),
            code,
        })?;
    }
    info!(
        topic,
        before, after, "raised the input topic's partition count"
    );
    Ok(Some((before, after)))
}

/// Whether `topic` (with `partitions` partitions) is in use: the records it
/// holds, else the consumer groups with committed offsets on it.
pub fn input_in_use(
    settings: &KafkaSettings,
    topic: &str,
    partitions: u32,
    timeout: Duration,
) -> Result<InUse, Error> {
    let probe: BaseConsumer = settings
        .client_config(&[("group.id", "timebucket-topics-probe")])
        .create()
        .map_err(|e| Error::kafka_at("cannot create a consumer", e))?;
    let mut in_use = InUse::default();
    for p in 0..partitions as i32 {
        let (low, high) = probe
            .fetch_watermarks(topic, p, timeout)
            .map_err(|e| Error::kafka_at(format!("cannot read offsets of {topic}/{p}"), e))?;
        in_use.records += (high - low).max(0) as u64;
    }
    if in_use.records > 0 {
        return Ok(in_use);
    }
    // Retention may have emptied a topic a pipeline still reads.
    let groups = probe
        .fetch_group_list(None, timeout)
        .map_err(|e| Error::kafka_at("cannot list consumer groups", e))?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        tpl.add_partition(topic, p);
    }
    for group in groups.groups() {
        let reader: BaseConsumer = settings
            .client_config(&[("group.id", group.name())])
            .create()
            .map_err(|e| Error::kafka_at("cannot create a consumer", e))?;
        let committed = reader
            .committed_offsets(tpl.clone(), timeout)
            .and_then(crate::kafka::checkpoint::answered)
            .map_err(|e| {
                Error::kafka_at(format!("cannot read offsets of group {}", group.name()), e)
            })?;
        if committed
            .elements()
            .iter()
            .any(|e| matches!(e.offset(), Offset::Offset(o) if o >= 0))
        {
            in_use.groups.push(group.name().to_string());
        }
    }
    Ok(in_use)
}

fn describe(in_use: &InUse) -> String {
    if in_use.records > 0 {
        format!(
            "it holds records ({} offsets between its log start and end, transaction markers included)",
            in_use.records
        )
    } else {
        format!(
            "consumer group(s) {} committed offsets on it",
            in_use.groups.join(", ")
        )
    }
}
