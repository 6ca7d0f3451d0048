//! The topics and group of one run: created fresh from `topics/` with
//! unique names, deleted afterwards.

use std::time::Duration;

use tracing::warn;

use super::LoadtestOptions;
use crate::error::Error;
use crate::kafka::config::{KafkaSettings, TopicNames};
use crate::kafka::topics::{
    apply_overrides, ensure_topics, load_specs, Overrides, TopicSpec, ROLE_INPUT, ROLE_MINUTES,
    ROLE_PARTIALS, ROLE_SECONDS,
};

pub(super) struct RunTopics {
    pub(super) names: TopicNames,
    /// kafka-producer-perf-test's topic.
    pub(super) perf: String,
    /// Shards' partials (sharded runs; created with every run).
    pub(super) partials: String,
    pub(super) group: String,
    pub(super) perf_group: String,
    pub(super) partitions: u32,
    pub(super) seconds_partitions: u32,
    pub(super) minutes_partitions: u32,
}

pub(super) fn create_topics(
    opts: &LoadtestOptions,
    prefix: &str,
    partitions: u32,
) -> Result<RunTopics, Error> {
    let names = TopicNames {
        input: format!("{prefix}-in"),
        seconds: format!("{prefix}-sec"),
        minutes: format!("{prefix}-min"),
        forward: format!("{prefix}-fwd"),
        dead_letter: format!("{prefix}-dlq"),
        progress: format!("{prefix}-progress"),
    };
    let mut specs = load_specs(&opts.topics_dir)?;
    let overrides = Overrides {
        input_partitions: Some(partitions),
        replication: opts.replication,
        ..Overrides::from_names(&names).name(ROLE_PARTIALS, format!("{prefix}-partials"))
    };
    apply_overrides(&mut specs, &overrides)?;
    let perf = format!("{prefix}-perf");
    if opts.kafka_tool.is_some() {
        let input = specs
            .iter()
            .find(|s| s.role == ROLE_INPUT)
            .cloned()
            .ok_or_else(|| {
                Error::Config("no input topic definition in the topics folder".into())
            })?;
        specs.push(TopicSpec {
            name: perf.clone(),
            ..input
        });
    }
    let count = |role: &str| {
        specs
            .iter()
            .find(|s| s.role == role)
            .map_or(1, |s| s.partitions)
    };
    let (seconds_partitions, minutes_partitions) = (count(ROLE_SECONDS), count(ROLE_MINUTES));
    let report = ensure_topics(&opts.settings, &specs, Duration::from_secs(60))?;
    if report.created.len() != specs.len() {
        return Err(Error::NotFresh {
            expected: specs.len(),
            created: report.created,
        });
    }
    Ok(RunTopics {
        names,
        perf,
        partials: format!("{prefix}-partials"),
        group: format!("{prefix}-group"),
        perf_group: format!("{prefix}-perf-group"),
        partitions,
        seconds_partitions,
        minutes_partitions,
    })
}

/// Deletes the run's topics and groups (best effort: a warning on failure).
pub(super) fn delete_run(settings: &KafkaSettings, topics: &RunTopics) {
    let n = &topics.names;
    let names = [
        n.input.as_str(),
        &n.seconds,
        &n.minutes,
        &n.forward,
        &n.dead_letter,
        &n.progress,
        &topics.perf,
        &topics.partials,
    ];
    let result =
        crate::kafka::topics::delete(settings, &names, &[&topics.group, &topics.perf_group]);
    if let Err(e) = result {
        warn!(error = %e, "cannot delete the run's topics");
    }
}
