//! Record size limits of the topics a worker writes to, read from the
//! cluster itself: one place for the topic limit (`max.message.bytes`) and
//! the producer's own (`message.max.bytes`, `batch.size`), so they cannot
//! disagree, whatever the cluster's topics say compared with `topics/`.
//!
//! The broker checks a record *batch* against the topic's
//! `max.message.bytes` (compressed; librdkafka sends a batch uncompressed
//! when compression would make it larger, so the uncompressed size is an
//! upper bound). A record fits when its key, value and headers plus the
//! batch and record framing ([`framing`]) are within the limit; batches of
//! several records stay within it when `batch.size` is at most the smallest
//! limit (librdkafka only lets the *first* record of a batch exceed
//! `batch.size`).

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use tracing::{info, warn};

use crate::error::Error;
use crate::kafka::config::KafkaSettings;
use crate::kafka::connect::explain;

/// Kafka's default `message.max.bytes` of a broker (and so of a topic that
/// does not set `max.message.bytes`): the limit assumed for a topic whose
/// configs this client may not describe.
pub const KAFKA_DEFAULT_LIMIT: usize = 1_048_588;
/// The producers' batch size when every topic allows more (see `producer`).
pub const BATCH_SIZE: usize = 1_000_000;
/// Record batch header (61 bytes) and the largest record framing (length,
/// attributes, timestamp and offset deltas, key and value lengths, header
/// count as varints: at most 36 bytes), rounded up for safety.
const FRAMING: usize = 128;
/// Framing of one header (its key and value lengths as varints).
const HEADER_FRAMING: usize = 10;

/// Bytes a record takes beyond its key, value and header bytes, at most.
pub fn framing(headers: usize) -> usize {
    FRAMING + HEADER_FRAMING * headers
}

/// The record size limit of every topic a worker writes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputLimits {
    limits: HashMap<String, usize>,
}

impl OutputLimits {
    /// Limits given directly (tests, or a caller that knows them).
    pub fn new(limits: impl IntoIterator<Item = (String, usize)>) -> OutputLimits {
        OutputLimits {
            limits: limits.into_iter().collect(),
        }
    }

    /// The `max.message.bytes` of `topics`, read from the cluster with
    /// DescribeConfigs. A topic this client may not describe (no
    /// DescribeConfigs ACL) gets Kafka's default, with a warning: a record
    /// the broker still refuses stops the worker, naming it.
    pub fn describe(settings: &KafkaSettings, topics: &[&str]) -> Result<OutputLimits, Error> {
        let admin: AdminClient<DefaultClientContext> = settings
            .client_config(&[("allow.auto.create.topics", "false")])
            .create()
            .map_err(|e| Error::kafka_at("cannot create admin client", e))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| Error::KafkaStart {
                what: "admin runtime",
                source,
            })?;
        let resources: Vec<ResourceSpecifier<'_>> =
            topics.iter().map(|t| ResourceSpecifier::Topic(t)).collect();
        let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(30)));
        let results = runtime
            .block_on(admin.describe_configs(resources.iter(), &opts))
            .map_err(|e| Error::kafka_at("cannot describe topic configs", e))?;
        let mut limits = HashMap::new();
        for (topic, result) in topics.iter().zip(results) {
            let limit = match result {
                Ok(resource) => resource
                    .get("max.message.bytes")
                    .and_then(|e| e.value.as_deref()?.parse::<usize>().ok()),
                Err(code) => {
                    warn!(topic, error = %explain(code), limit = KAFKA_DEFAULT_LIMIT,
                        "cannot read the topic's max.message.bytes: assuming Kafka's default");
                    None
                }
            };
            let limit = limit.unwrap_or(KAFKA_DEFAULT_LIMIT);
            info!(
                topic,
                max_message_bytes = limit,
                "output topic record limit"
            );
            limits.insert(topic.to_string(), limit);
        }
        Ok(OutputLimits { limits })
    }

    /// These limits, each at most the producer's own `message.max.bytes`
    /// when the user sets one (`-X message.max.bytes=...`): librdkafka
    /// refuses a larger record before it reaches the broker.
    pub fn capped_by_producer(mut self, settings: &KafkaSettings) -> OutputLimits {
        let user = settings
            .properties
            .iter()
            .rev()
            .find(|(k, _)| k == "message.max.bytes")
            .and_then(|(_, v)| v.parse::<usize>().ok());
        if let Some(cap) = user {
            for limit in self.limits.values_mut() {
                *limit = (*limit).min(cap);
            }
        }
        self
    }

    /// The limit of `topic` (Kafka's default for a topic not described).
    pub fn limit(&self, topic: &str) -> usize {
        self.limits
            .get(topic)
            .copied()
            .unwrap_or(KAFKA_DEFAULT_LIMIT)
    }

    /// Whether a record of `bytes` key, value and header bytes with
    /// `headers` headers fits `topic`.
    pub fn fits(&self, topic: &str, bytes: usize, headers: usize) -> bool {
        bytes + framing(headers) <= self.limit(topic)
    }

    /// How many payload bytes a record to `topic` may have besides
    /// `other` key and header bytes in `headers` headers.
    pub fn payload_budget(&self, topic: &str, other: usize, headers: usize) -> usize {
        self.limit(topic).saturating_sub(other + framing(headers))
    }

    /// The producer properties these limits imply: `message.max.bytes` the
    /// largest limit (librdkafka refuses larger records locally),
    /// `batch.size` within the smallest one.
    pub fn producer_properties(&self) -> [(&'static str, String); 2] {
        let largest = self
            .limits
            .values()
            .copied()
            .max()
            .unwrap_or(KAFKA_DEFAULT_LIMIT);
        let smallest = self
            .limits
            .values()
            .copied()
            .min()
            .unwrap_or(KAFKA_DEFAULT_LIMIT);
        // librdkafka wants message.max.bytes at least 1000 and batch.size
        // at most message.max.bytes.
        let max = largest.max(1_000);
        let batch = BATCH_SIZE
            .min(smallest.saturating_sub(FRAMING))
            .max(1)
            .min(max);
        [
            ("message.max.bytes", max.to_string()),
            ("batch.size", batch.to_string()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_leave_room_for_framing_and_headers() {
        let limits = OutputLimits::new([("dlq".to_string(), 10_000), ("fwd".to_string(), 2_000)]);
        assert_eq!(limits.limit("other"), KAFKA_DEFAULT_LIMIT);
        let budget = limits.payload_budget("dlq", 300, 6);
        assert_eq!(budget, 10_000 - 300 - framing(6));
        assert!(limits.fits("dlq", budget + 300, 6));
        assert!(!limits.fits("dlq", budget + 301, 6));
        assert_eq!(limits.payload_budget("fwd", 5_000, 0), 0);
        let props = limits.producer_properties();
        assert_eq!(props[0], ("message.max.bytes", "10000".to_string()));
        assert_eq!(props[1], ("batch.size", (2_000 - FRAMING).to_string()));
    }
}
