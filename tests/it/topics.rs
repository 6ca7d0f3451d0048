//! Topic definitions (`topics/`) and `ensure_topics` on the real broker
//! (`BOOTSTRAP_SERVERS`): creating from the definitions, a second run that
//! changes nothing, drift in partitions, replication and configs, errors that
//! name the file and line of a bad definition, and `partition_count`, which
//! must never create a topic.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rdkafka::admin::{AdminOptions, AlterConfig, ResourceSpecifier};
use timebucket::kafka::config::{KafkaSettings, TopicNames};
use timebucket::kafka::topics::{
    apply_overrides, ensure_topics, load_specs, partition_count, Overrides, TopicSpec, ROLES,
    ROLE_INPUT, ROLE_MINUTES, ROLE_PARTIALS,
};
use timebucket::Error;

const TIMEOUT: Duration = Duration::from_secs(60);

fn topics_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("topics")
}

fn settings() -> KafkaSettings {
    KafkaSettings::new(crate::common::bootstrap())
}

/// The shipped definitions with fresh names, so every run starts clean.
fn unique_specs(tag: &str) -> Vec<TopicSpec> {
    let mut specs = load_specs(&topics_dir()).unwrap();
    let names = TopicNames {
        input: crate::common::unique_name(&format!("{tag}-in")),
        seconds: crate::common::unique_name(&format!("{tag}-sec")),
        minutes: crate::common::unique_name(&format!("{tag}-min")),
        forward: crate::common::unique_name(&format!("{tag}-fwd")),
        dead_letter: crate::common::unique_name(&format!("{tag}-dlq")),
        progress: crate::common::unique_name(&format!("{tag}-progress")),
    };
    let partials = crate::common::unique_name(&format!("{tag}-partials"));
    let overrides = Overrides::from_names(&names).name(ROLE_PARTIALS, partials);
    apply_overrides(&mut specs, &overrides).unwrap();
    specs
}

fn names(specs: &[TopicSpec]) -> Vec<String> {
    specs.iter().map(|s| s.name.clone()).collect()
}

/// Best-effort cleanup of the topics a test made.
fn drop_topics(names: &[String]) {
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    crate::common::delete_topics(&crate::common::bootstrap(), &refs);
}

fn write(dir: &Path, file: &str, text: &str) {
    std::fs::write(dir.join(file), text).unwrap();
}

// ---- definitions, no broker needed ----------------------------------------

#[test]
fn shipped_definitions_agree_with_the_cli_defaults() {
    let specs = load_specs(&topics_dir()).unwrap();
    let roles: Vec<&str> = specs.iter().map(|s| s.role.as_str()).collect();
    for role in ROLES {
        assert!(roles.contains(&role), "no definition for role {role}");
    }
    let defaults = TopicNames::default();
    let by_role: BTreeMap<&str, &TopicSpec> = specs.iter().map(|s| (s.role.as_str(), s)).collect();
    for (role, name) in timebucket::kafka::topics::role_names(&defaults) {
        assert_eq!(
            by_role[role].name, name,
            "topics/ and TopicNames::default() disagree on {role}"
        );
    }
    let input = by_role[ROLE_INPUT];
    assert_eq!(input.partitions, 8);
    assert!(
        specs.iter().all(|s| s.replication == 1),
        "single-broker defaults"
    );
    for role in ["metrics-second", ROLE_MINUTES, "ingest-progress"] {
        assert_eq!(
            by_role[role]
                .configs
                .get("cleanup.policy")
                .map(String::as_str),
            Some("compact"),
            "{role}"
        );
    }
    // scripts/demo reads the input partition count with `sed -n s/^partitions=//p`.
    let text = std::fs::read_to_string(topics_dir().join("input.properties")).unwrap();
    assert!(text.lines().any(|l| l == "partitions=8"));
}

#[test]
fn a_bad_definition_is_reported_with_its_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "a-good.properties",
        "role=input\nname=frames\npartitions=8\nreplication.factor=1\n",
    );
    write(
        dir.path(),
        "b-bad.properties",
        "# per-second metrics\nrole=metrics-second\nname=metrics-second\npartitions=three\nreplication.factor=1\n",
    );
    let err = load_specs(dir.path()).unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    assert_eq!(err.exit_code(), 2);
    let msg = err.to_string();
    let at = format!("{}:4:", dir.path().join("b-bad.properties").display());
    assert!(msg.contains(&at), "{msg:?} does not name {at}");
    assert!(
        msg.contains("partitions") && msg.contains("three"),
        "{msg:?}"
    );

    write(
        dir.path(),
        "b-bad.properties",
        "role=metrics-second\nname=metrics-second\npartitions=3\nretention.ms=1\n",
    );
    let msg = load_specs(dir.path()).unwrap_err().to_string();
    assert!(
        msg.contains("b-bad.properties:4: unknown key \"retention.ms\""),
        "{msg:?}"
    );

    write(
        dir.path(),
        "b-bad.properties",
        "role=input\nname=other\npartitions=3\nreplication.factor=1\n",
    );
    let msg = load_specs(dir.path()).unwrap_err().to_string();
    assert!(
        msg.contains("b-bad.properties: role input is already defined in")
            && msg.contains("a-good.properties"),
        "{msg:?}"
    );

    std::fs::remove_file(dir.path().join("b-bad.properties")).unwrap();
    write(dir.path(), "README.md", "not a definition = ignored\n");
    assert_eq!(load_specs(dir.path()).unwrap().len(), 1);

    let empty = tempfile::tempdir().unwrap();
    assert!(load_specs(empty.path())
        .unwrap_err()
        .to_string()
        .contains("no topic definitions"));
    assert!(load_specs(&empty.path().join("missing"))
        .unwrap_err()
        .to_string()
        .contains("missing"));
}

#[test]
fn an_unreachable_cluster_is_a_kafka_error() {
    let specs = load_specs(&topics_dir()).unwrap();
    let err = ensure_topics(
        &KafkaSettings::new("127.0.0.1:1"),
        &specs,
        Duration::from_secs(2),
    )
    .unwrap_err();
    assert!(
        matches!(err, Error::NoBroker { .. } | Error::KafkaAt { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
}

// ---- on the broker ----------------------------------------------------------

#[test]
fn creates_missing_topics_and_a_second_run_changes_nothing() {
    let settings = settings();
    let specs = unique_specs("create");
    let all = names(&specs);

    let first = ensure_topics(&settings, &specs, TIMEOUT).unwrap();
    eprint!("{first}");
    assert_eq!(first.created, all);
    assert!(
        first.unchanged.is_empty() && first.drift.is_empty(),
        "{first:?}"
    );
    first.check().unwrap();
    for spec in &specs {
        assert_eq!(
            partition_count(&settings, &spec.name, TIMEOUT).unwrap(),
            spec.partitions,
            "{}",
            spec.name
        );
    }

    // Every config was applied: a second run compares them all and finds no drift.
    let second = ensure_topics(&settings, &specs, TIMEOUT).unwrap();
    eprint!("{second}");
    assert!(second.created.is_empty(), "{second:?}");
    assert_eq!(second.unchanged, all);
    assert!(second.drift.is_empty(), "{second:?}");
    second.check().unwrap();

    drop_topics(&all);
}

#[test]
fn a_partition_count_replication_or_config_difference_is_drift() {
    let settings = settings();
    let name = crate::common::unique_name("drift-parts");
    crate::common::create_topic(&settings.bootstrap, &name, 2, 1);

    let mut configs = BTreeMap::new();
    configs.insert("retention.ms".to_string(), "3600000".to_string());
    let spec = TopicSpec {
        role: ROLE_INPUT.into(),
        name: name.clone(),
        partitions: 4,
        replication: 3,
        shards: 1,
        configs,
    };
    let report = ensure_topics(&settings, std::slice::from_ref(&spec), TIMEOUT).unwrap();
    eprint!("{report}");
    assert!(
        report.created.is_empty() && report.unchanged.is_empty(),
        "{report:?}"
    );
    assert_eq!(report.drift.len(), 3, "{report:?}");
    assert!(
        report
            .drift
            .iter()
            .all(|d| d.starts_with(&format!("{name} (input): "))),
        "{report:?}"
    );
    assert!(report
        .drift
        .iter()
        .any(|d| d.contains("partition count is 2 on the cluster, 4 in the definition")));
    assert!(report
        .drift
        .iter()
        .any(|d| d.contains("replication factor is 1 on the cluster, 3 in the definition")));
    assert!(
        report
            .drift
            .iter()
            .any(|d| d.contains("config retention.ms is ")
                && d.ends_with(", \"3600000\" in the definition")),
        "{report:?}"
    );
    let err = report.check().unwrap_err();
    eprintln!("{err}");
    assert!(matches!(err, Error::Drift(_)));
    assert_eq!(err.exit_code(), 6);
    assert!(err.to_string().contains(&name));

    // Drift is only reported: the topic is left as it was.
    assert_eq!(partition_count(&settings, &name, TIMEOUT).unwrap(), 2);
    drop_topics(&[name]);
}

#[test]
fn a_config_changed_on_the_cluster_is_drift() {
    let settings = settings();
    let mut specs: Vec<TopicSpec> = unique_specs("drift-config")
        .into_iter()
        .filter(|s| s.role == ROLE_MINUTES)
        .collect();
    let spec = specs.remove(0);
    assert_eq!(spec.configs["cleanup.policy"], "compact");
    let report = ensure_topics(&settings, std::slice::from_ref(&spec), TIMEOUT).unwrap();
    assert_eq!(report.created, std::slice::from_ref(&spec.name));

    // AlterConfigs replaces the whole topic config: keep the others as defined.
    let mut alter = AlterConfig::new(ResourceSpecifier::Topic(&spec.name));
    for (k, v) in &spec.configs {
        alter = alter.set(k, if k == "cleanup.policy" { "delete" } else { v });
    }
    let results = crate::common::runtime()
        .block_on(
            crate::common::admin(&settings.bootstrap).alter_configs([&alter], &AdminOptions::new()),
        )
        .unwrap();
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");

    // The broker applies config changes asynchronously: wait until they show.
    let deadline = std::time::Instant::now() + TIMEOUT;
    let report = loop {
        let report = ensure_topics(&settings, std::slice::from_ref(&spec), TIMEOUT).unwrap();
        if !report.drift.is_empty() || std::time::Instant::now() > deadline {
            break report;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        report.created.is_empty() && report.unchanged.is_empty(),
        "{report:?}"
    );
    assert_eq!(
        report.drift,
        [format!(
            "{} (metrics-minute): config cleanup.policy is \"delete\" on the cluster, \"compact\" in the definition",
            spec.name
        )]
    );
    assert_eq!(report.check().unwrap_err().exit_code(), 6);
    drop_topics(&[spec.name]);
}

#[test]
fn partition_count_never_creates_a_topic() {
    let settings = settings();
    let name = crate::common::unique_name("missing");
    for _ in 0..2 {
        let err = partition_count(&settings, &name, TIMEOUT).unwrap_err();
        assert!(matches!(err, Error::NoTopic(_)), "{err:?}");
        assert_eq!(err.exit_code(), 5);
        assert!(
            err.to_string()
                .contains(&format!("topic {name} does not exist")),
            "{err}"
        );
        // A broker that auto-creates topics would have made it by now.
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn a_topic_the_cluster_cannot_create_is_an_error_naming_it() {
    let settings = settings();
    let mut specs = unique_specs("too-many-replicas");
    specs.truncate(1);
    specs[0].replication = 100;
    let err = ensure_topics(&settings, &specs, TIMEOUT).unwrap_err();
    assert!(
        matches!(err, Error::TopicsNotCreated { .. } | Error::KafkaAt { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    eprintln!("{msg}");
    assert!(
        msg.contains(&specs[0].name) && msg.contains("replication"),
        "{msg}"
    );
}

#[test]
fn overrides_change_names_input_partitions_and_replication() {
    let mut specs = load_specs(&topics_dir()).unwrap();
    let overrides = Overrides {
        input_partitions: Some(16),
        replication: Some(3),
        ..Overrides::default()
    }
    .name(ROLE_INPUT, "frames-v2");
    apply_overrides(&mut specs, &overrides).unwrap();
    let input = specs.iter().find(|s| s.role == ROLE_INPUT).unwrap();
    assert_eq!((input.name.as_str(), input.partitions), ("frames-v2", 16));
    assert!(specs.iter().all(|s| s.replication == 3));
    let metrics = specs.iter().find(|s| s.role == ROLE_MINUTES).unwrap();
    assert_eq!(
        (metrics.name.as_str(), metrics.partitions),
        ("metrics-minute", 3)
    );
}
