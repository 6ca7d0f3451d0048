//! Topics on a cluster: [`ensure_topics`] creates the missing ones and
//! reports how existing ones differ from their definitions ([`TopicsReport`];
//! drift is [`Error::Drift`], exit code 6). It never changes an existing
//! topic, and a second run creates nothing. [`partition_count`] reads a
//! topic's real partition count (ingest routes time buckets over it), and
//! [`delete`] removes a run's topics and groups.
//!
//! The admin API of rdkafka is async; every function here is synchronous and
//! drives its futures on a small current-thread runtime of its own, so call
//! them from plain threads, not from inside a tokio runtime.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use tracing::{debug, info};

use crate::error::Error;
use crate::kafka::config::KafkaSettings;
use crate::kafka::connect::{explain, refusal};

use super::spec::*;

/// Client properties of the admin client, before the user's `-X` ones.
/// Metadata requests of a producer-type client (which the admin client is)
/// would otherwise let the broker auto-create the topic they ask about.
const ADMIN_DEFAULTS: &[(&str, &str)] = &[("allow.auto.create.topics", "false")];
/// Pause between metadata polls while waiting for new topics.
const POLL_PAUSE: Duration = Duration::from_millis(100);

/// What [`ensure_topics`] did and found, topic names in definition order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicsReport {
    /// Topics this run created.
    pub created: Vec<String>,
    /// Topics that existed and match their definitions.
    pub unchanged: Vec<String>,
    /// One line per difference between an existing topic and its
    /// definition, each naming the topic and what differs.
    pub drift: Vec<String>,
}

impl TopicsReport {
    /// `Err(Error::Drift)` listing every difference, if there is any.
    pub fn check(&self) -> Result<(), Error> {
        if self.drift.is_empty() {
            return Ok(());
        }
        Err(Error::Drift(format!(
            "{} difference(s) between the topic definitions and the cluster: {}",
            self.drift.len(),
            self.drift.join("; ")
        )))
    }
}

impl fmt::Display for TopicsReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for name in &self.created {
            writeln!(f, "created   {name}")?;
        }
        for name in &self.unchanged {
            writeln!(f, "unchanged {name}")?;
        }
        for line in &self.drift {
            writeln!(f, "DRIFT     {line}")?;
        }
        Ok(())
    }
}

/// Creates the topics of `specs` that do not exist (and waits until the
/// cluster's metadata shows them with a leader for every partition), and
/// compares the existing ones with their definitions: partition count,
/// replication factor, and every configured `config.*` value. Existing
/// topics are never changed. `timeout` bounds each request and the wait.
pub fn ensure_topics(
    settings: &KafkaSettings,
    specs: &[TopicSpec],
    timeout: Duration,
) -> Result<TopicsReport, Error> {
    let deadline = Instant::now() + timeout;
    let admin = admin_client(settings)?;
    let runtime = runtime()?;
    let opts = AdminOptions::new()
        .request_timeout(Some(timeout))
        .operation_timeout(Some(timeout));

    let before = snapshot(&admin, None, timeout, &settings.bootstrap)?;
    refuse_unauthorized(&before, specs.iter().map(|s| s.name.as_str()))?;
    let missing: Vec<&TopicSpec> = specs
        .iter()
        .filter(|s| !before.contains_key(&s.name))
        .collect();
    let mut created: Vec<String> = Vec::new();
    if !missing.is_empty() {
        let new_topics: Vec<NewTopic<'_>> = missing
            .iter()
            .map(|s| {
                let mut t = NewTopic::new(
                    &s.name,
                    s.partitions as i32,
                    TopicReplication::Fixed(s.replication as i32),
                );
                for (k, v) in &s.configs {
                    t = t.set(k, v);
                }
                t
            })
            .collect();
        let results = runtime
            .block_on(admin.create_topics(new_topics.iter(), &opts))
            .map_err(|e| Error::kafka_at("cannot create topics", e))?;
        let mut failures = Vec::new();
        for result in results {
            match result {
                Ok(name) => {
                    info!(topic = %name, "created topic");
                    created.push(name);
                }
                // Another run created it in the meantime: check it like any existing topic.
                Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                    debug!(topic = %name, "created concurrently")
                }
                Err((name, code)) => failures.push((name, code)),
            }
        }
        // Report in definition order, whatever order the answers came in.
        created.sort_by_key(|name| specs.iter().position(|s| &s.name == name));
        if !failures.is_empty() {
            return Err(Error::TopicsNotCreated {
                failed: failures,
                created,
            });
        }
    }

    // Wait until every defined topic is usable: new ones with all their
    // partitions, every partition with a leader.
    let wanted: Vec<(&str, Option<usize>)> = specs
        .iter()
        .map(|s| {
            (
                s.name.as_str(),
                created.contains(&s.name).then_some(s.partitions as usize),
            )
        })
        .collect();
    let now = loop {
        let remaining = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(1));
        let now = snapshot(&admin, None, remaining, &settings.bootstrap)?;
        let waiting: Vec<String> = wanted
            .iter()
            .filter_map(|(name, count)| match now.get(*name) {
                Some(t) if t.ready(*count) => None,
                Some(t) => Some(format!("{name} ({})", t.not_ready_reason())),
                None => Some(format!("{name} (not in metadata)")),
            })
            .collect();
        if waiting.is_empty() {
            break now;
        }
        if Instant::now() >= deadline {
            return Err(Error::TopicsNotReady { timeout, waiting });
        }
        std::thread::sleep(POLL_PAUSE);
    };

    // Existing topics: compare with their definitions.
    let existing: Vec<&TopicSpec> = specs
        .iter()
        .filter(|s| !created.contains(&s.name))
        .collect();
    let mut drift: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for spec in &existing {
        let state = &now[&spec.name];
        let lines = drift.entry(spec.name.as_str()).or_default();
        let partitions = state.partitions.len();
        if partitions != spec.partitions as usize {
            lines.push(format!(
                "{} ({}): partition count is {partitions} on the cluster, {} in the definition",
                spec.name, spec.role, spec.partitions
            ));
        }
        let (min, max) = state.replication_range();
        if min != max {
            lines.push(format!(
                "{} ({}): replication factor varies from {min} to {max} across partitions on the cluster, {} in the definition",
                spec.name, spec.role, spec.replication
            ));
        } else if min != spec.replication as usize {
            lines.push(format!(
                "{} ({}): replication factor is {min} on the cluster, {} in the definition",
                spec.name, spec.role, spec.replication
            ));
        }
    }
    let described: Vec<&TopicSpec> = existing
        .iter()
        .copied()
        .filter(|s| !s.configs.is_empty())
        .collect();
    if !described.is_empty() {
        let resources: Vec<ResourceSpecifier<'_>> = described
            .iter()
            .map(|s| ResourceSpecifier::Topic(&s.name))
            .collect();
        let results = runtime
            .block_on(admin.describe_configs(resources.iter(), &opts))
            .map_err(|e| Error::kafka_at("cannot describe topic configs", e))?;
        if results.len() != described.len() {
            return Err(Error::ConfigAnswers {
                asked: described.len(),
                got: results.len(),
            });
        }
        for (spec, result) in described.iter().zip(results) {
            let resource = result.map_err(|code| Error::KafkaCode {
                what: format!("cannot describe the configs of topic {}", spec.name),
                code,
            })?;
            let lines = drift.entry(spec.name.as_str()).or_default();
            for (key, wanted) in &spec.configs {
                match resource.get(key) {
                    None => lines.push(format!(
                        "{} ({}): config {key} is not a topic config of this cluster (definition says {wanted:?})",
                        spec.name, spec.role
                    )),
                    Some(entry) => match &entry.value {
                        Some(actual) if same_value(actual, wanted) => {}
                        Some(actual) => lines.push(format!(
                            "{} ({}): config {key} is {actual:?} on the cluster, {wanted:?} in the definition",
                            spec.name, spec.role
                        )),
                        None => lines.push(format!(
                            "{} ({}): config {key} has no readable value on the cluster, {wanted:?} in the definition",
                            spec.name, spec.role
                        )),
                    },
                }
            }
        }
    }

    let mut report = TopicsReport {
        created,
        ..TopicsReport::default()
    };
    for spec in existing {
        match drift.get(spec.name.as_str()) {
            Some(lines) if !lines.is_empty() => report.drift.extend(lines.iter().cloned()),
            _ => report.unchanged.push(spec.name.clone()),
        }
    }
    Ok(report)
}

/// The text of [`Error::TopicsNotCreated`]: each topic that failed with
/// librdkafka's code, those created, and hints for the codes that have one.
pub fn not_created(failed: &[(String, RDKafkaErrorCode)], created: &[String]) -> String {
    let done = if created.is_empty() {
        String::new()
    } else {
        format!(" (created {})", created.join(", "))
    };
    let mut hints: Vec<&str> = failed.iter().map(|(_, c)| create_hint(*c)).collect();
    hints.dedup();
    let failed: Vec<String> = failed
        .iter()
        .map(|(name, code)| format!("{name}: {code}"))
        .collect();
    format!("{}{done}{}", failed.join("; "), hints.concat())
}

/// The partition count of `topic`; an error if the topic does not exist.
/// Never creates the topic, even on a broker that auto-creates topics.
pub fn partition_count(
    settings: &KafkaSettings,
    topic: &str,
    timeout: Duration,
) -> Result<u32, Error> {
    let admin = admin_client(settings)?;
    let topics = snapshot(&admin, Some(topic), timeout, &settings.bootstrap)?;
    match topics.get(topic) {
        Some(t) if !t.partitions.is_empty() => Ok(t.partitions.len() as u32),
        Some(TopicState {
            error: Some(code), ..
        }) => Err(Error::KafkaCode {
            what: format!("cannot read the partitions of topic {topic}"),
            code: *code,
        }),
        _ => Err(Error::NoTopic(topic.to_string())),
    }
}

/// An error naming the topics of `names` the user may not even describe
/// (no ACL): waiting for them would never end.
fn refuse_unauthorized<'a>(
    topics: &HashMap<String, TopicState>,
    names: impl Iterator<Item = &'a str>,
) -> Result<(), Error> {
    let refused: Vec<(&str, RDKafkaErrorCode)> = names
        .filter_map(|name| {
            let code = topics.get(name)?.error?;
            refusal(code).map(|_| (name, code))
        })
        .collect();
    match refused.first() {
        None => Ok(()),
        Some((_, code)) => Err(Error::KafkaCode {
            what: format!(
                "cannot describe topic(s) {}",
                refused
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            code: *code,
        }),
    }
}

/// What the cluster's metadata says about one topic.
#[derive(Debug)]
pub(super) struct TopicState {
    pub(super) error: Option<RDKafkaErrorCode>,
    pub(super) partitions: Vec<PartitionState>,
}

#[derive(Debug)]
pub(super) struct PartitionState {
    pub(super) id: i32,
    leader: i32,
    replicas: usize,
    error: Option<RDKafkaErrorCode>,
}

impl TopicState {
    /// No error, at least one partition (exactly `count` if given), and a
    /// leader for each.
    fn ready(&self, count: Option<usize>) -> bool {
        self.error.is_none()
            && !self.partitions.is_empty()
            && count.is_none_or(|c| self.partitions.len() == c)
            && self
                .partitions
                .iter()
                .all(|p| p.leader >= 0 && p.error.is_none())
    }

    fn not_ready_reason(&self) -> String {
        if let Some(e) = self.error {
            return explain(e);
        }
        if let Some(p) = self
            .partitions
            .iter()
            .find(|p| p.leader < 0 || p.error.is_some())
        {
            return match p.error {
                Some(e) => format!("partition {}: {e}", p.id),
                None => format!("partition {} has no leader", p.id),
            };
        }
        format!("{} partitions so far", self.partitions.len())
    }

    fn replication_range(&self) -> (usize, usize) {
        let min = self
            .partitions
            .iter()
            .map(|p| p.replicas)
            .min()
            .unwrap_or(0);
        let max = self
            .partitions
            .iter()
            .map(|p| p.replicas)
            .max()
            .unwrap_or(0);
        (min, max)
    }
}

/// Topics in the cluster's metadata (all of them, or just `topic`), leaving
/// out those the cluster says do not exist.
pub(super) fn snapshot(
    admin: &AdminClient<DefaultClientContext>,
    topic: Option<&str>,
    timeout: Duration,
    bootstrap: &str,
) -> Result<HashMap<String, TopicState>, Error> {
    let metadata = admin.inner().fetch_metadata(topic, timeout).map_err(|e| {
        Error::kafka_at(format!("cannot read cluster metadata from {bootstrap}"), e)
    })?;
    let mut topics = HashMap::new();
    for t in metadata.topics() {
        let error = t.error().map(RDKafkaErrorCode::from);
        if error == Some(RDKafkaErrorCode::UnknownTopicOrPartition) {
            continue;
        }
        let partitions = t
            .partitions()
            .iter()
            .map(|p| PartitionState {
                id: p.id(),
                leader: p.leader(),
                replicas: p.replicas().len(),
                error: p.error().map(RDKafkaErrorCode::from),
            })
            .collect();
        topics.insert(t.name().to_string(), TopicState { error, partitions });
    }
    Ok(topics)
}

pub(super) fn admin_client(
    settings: &KafkaSettings,
) -> Result<AdminClient<DefaultClientContext>, Error> {
    settings
        .client_config(ADMIN_DEFAULTS)
        .create()
        .map_err(|e| Error::kafka_at("cannot create admin client", e))
}

pub(super) fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| Error::KafkaStart {
            what: "admin runtime",
            source,
        })
}

fn create_hint(code: RDKafkaErrorCode) -> &'static str {
    match code {
        RDKafkaErrorCode::InvalidReplicationFactor => {
            " (more replicas than brokers? lower replication.factor or pass --replication-factor)"
        }
        RDKafkaErrorCode::InvalidConfig => " (a config.* value the broker rejects)",
        RDKafkaErrorCode::PolicyViolation => " (refused by the cluster's topic policy)",
        RDKafkaErrorCode::TopicAuthorizationFailed
        | RDKafkaErrorCode::ClusterAuthorizationFailed => {
            " (not authorized to create topics: the user needs Create on them, see docs/operations.md \"ACLs\"; \
             or create them as an admin, then rerun to check them)"
        }
        _ => "",
    }
}

/// Whether a config value read from the cluster equals the defined one:
/// exactly, or as numbers (`0.50` = `0.5`), or as comma-separated lists
/// with spaces around the items (`compact, delete` = `compact,delete`).
fn same_value(actual: &str, wanted: &str) -> bool {
    let (a, w) = (actual.trim(), wanted.trim());
    if a == w {
        return true;
    }
    if let (Ok(x), Ok(y)) = (a.parse::<f64>(), w.parse::<f64>()) {
        return x == y;
    }
    a.split(',').map(str::trim).eq(w.split(',').map(str::trim))
}

/// Deletes `topics` and consumer `groups` (a missing group is no error).
pub fn delete(settings: &KafkaSettings, topics: &[&str], groups: &[&str]) -> Result<(), Error> {
    let admin = admin_client(settings)?;
    let rt = runtime()?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    rt.block_on(admin.delete_topics(topics, &opts))?;
    let _ = rt.block_on(admin.delete_groups(groups, &opts));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_config_values_leniently() {
        assert!(same_value("0.5", "0.50"));
        assert!(same_value("compact,delete", "compact, delete"));
        assert!(!same_value("delete", "compact"));
        assert!(!same_value("604800000", "604800001"));
    }

    #[test]
    fn drift_is_an_error_with_exit_code_6() {
        let report = TopicsReport {
            drift: vec![
                "t (input): partition count is 2 on the cluster, 8 in the definition".into(),
            ],
            ..Default::default()
        };
        let err = report.check().unwrap_err();
        assert_eq!(err.exit_code(), 6);
        assert!(err.to_string().contains("partition count is 2"));
        assert!(TopicsReport::default().check().is_ok());
    }
}
