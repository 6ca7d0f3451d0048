//! Topic definitions and their setup. This module owns:
//!
//! - the definition files in `topics/` (one `key=value` file per topic role,
//!   format in `topics/README.md`): [`load_specs`], [`parse_spec`];
//! - command-line overrides of names, input partitions and replication
//!   factor: [`Overrides`], [`apply_overrides`];
//! - `timebucket topics`: [`ensure_topics`] creates the missing topics and
//!   reports how existing ones differ from their definitions ([`TopicsReport`];
//!   the binary turns drift into [`Error::Drift`], exit code 6). It never
//!   changes an existing topic, and a second run creates nothing;
//! - [`partition_count`]: the real partition count of a topic (ingest routes
//!   time buckets over it).
//!
//! The admin API of rdkafka is async; every function here is synchronous and
//! drives its futures on a small current-thread runtime of its own, so call
//! them from plain threads, not from inside a tokio runtime.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use tracing::{debug, info};

use crate::error::Error;
use crate::kafka::config::{KafkaSettings, TopicNames};

/// Frames partitioned by time bucket ([`TopicNames::input`]).
pub const ROLE_INPUT: &str = "input";
/// Per-second metrics ([`TopicNames::seconds`]).
pub const ROLE_SECONDS: &str = "metrics-second";
/// Per-minute metrics ([`TopicNames::minutes`]).
pub const ROLE_MINUTES: &str = "metrics-minute";
/// Forwarded frames ([`TopicNames::forward`]).
pub const ROLE_FORWARD: &str = "frames-forward";
/// Invalid frames with their reason ([`TopicNames::dead_letter`]).
pub const ROLE_DEAD_LETTER: &str = "dead-letter";
/// Every role a definition file may name.
pub const ROLES: [&str; 5] = [
    ROLE_INPUT,
    ROLE_SECONDS,
    ROLE_MINUTES,
    ROLE_FORWARD,
    ROLE_DEAD_LETTER,
];

/// Kafka's longest legal topic name.
const MAX_TOPIC_NAME: usize = 249;
/// Client properties of the admin client, before the user's `-X` ones.
/// Metadata requests of a producer-type client (which the admin client is)
/// would otherwise let the broker auto-create the topic they ask about.
const ADMIN_DEFAULTS: &[(&str, &str)] = &[("allow.auto.create.topics", "false")];
/// Pause between metadata polls while waiting for new topics.
const POLL_PAUSE: Duration = Duration::from_millis(100);

/// One topic as a definition file describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    /// One of [`ROLES`].
    pub role: String,
    /// The Kafka topic name.
    pub name: String,
    pub partitions: u32,
    /// Replication factor.
    pub replication: u16,
    /// Kafka topic configs (`config.<key>=<value>` lines), set on creation
    /// and compared with the cluster afterwards.
    pub configs: BTreeMap<String, String>,
}

impl fmt::Display for TopicSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}): {} partitions, replication factor {}",
            self.name, self.role, self.partitions, self.replication
        )?;
        for (k, v) in &self.configs {
            write!(f, ", {k}={v}")?;
        }
        Ok(())
    }
}

/// Parses one definition file's text. `origin` names the file in errors,
/// which read `origin:line: what is wrong`.
pub fn parse_spec(text: &str, origin: &str) -> Result<TopicSpec, Error> {
    let at = |line: usize, msg: String| Error::Config(format!("{origin}:{line}: {msg}"));
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut role = None;
    let mut name = None;
    let mut partitions = None;
    let mut replication = None;
    let mut configs = BTreeMap::new();
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = if n == 1 {
            raw.trim_start_matches('\u{feff}')
        } else {
            raw
        }
        .trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(at(n, format!("expected key=value, got {line:?}")));
        };
        let (key, value) = (key.trim(), value.trim());
        if key.is_empty() {
            return Err(at(n, format!("missing key before '=' in {line:?}")));
        }
        if let Some(first) = seen.insert(key.to_string(), n) {
            return Err(at(n, format!("{key} is already set on line {first}")));
        }
        match key {
            "role" => {
                if !ROLES.contains(&value) {
                    return Err(at(
                        n,
                        format!(
                            "role: unknown role {value:?}, expected one of {}",
                            ROLES.join(", ")
                        ),
                    ));
                }
                role = Some(value.to_string());
            }
            "name" => {
                check_topic_name(value).map_err(|m| at(n, format!("name: {m}")))?;
                name = Some(value.to_string());
            }
            "partitions" => {
                partitions = Some(
                    parse_count(value, i32::MAX as u64)
                        .map_err(|m| at(n, format!("partitions: {m}")))? as u32,
                );
            }
            "replication.factor" => {
                replication = Some(
                    parse_count(value, i16::MAX as u64)
                        .map_err(|m| at(n, format!("replication.factor: {m}")))?
                        as u16,
                );
            }
            _ => {
                let Some(config) = key.strip_prefix("config.") else {
                    return Err(at(
                        n,
                        format!(
                            "unknown key {key:?} (expected role, name, partitions, replication.factor or config.<topic config>)"
                        ),
                    ));
                };
                if config.is_empty()
                    || !config
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
                {
                    return Err(at(
                        n,
                        format!(
                            "{key:?} is not a topic config name (letters, digits, '.', '_', '-')"
                        ),
                    ));
                }
                if value.is_empty() {
                    return Err(at(n, format!("{key} has an empty value")));
                }
                configs.insert(config.to_string(), value.to_string());
            }
        }
    }
    let missing = |key: &str| Error::Config(format!("{origin}: missing required key {key}"));
    Ok(TopicSpec {
        role: role.ok_or_else(|| missing("role"))?,
        name: name.ok_or_else(|| missing("name"))?,
        partitions: partitions.ok_or_else(|| missing("partitions"))?,
        replication: replication.ok_or_else(|| missing("replication.factor"))?,
        configs,
    })
}

/// Reads every `*.properties` file in `dir` (in file-name order; other files
/// are ignored). Each role and each topic name may be defined once.
pub fn load_specs(dir: &Path) -> Result<Vec<TopicSpec>, Error> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        Error::Config(format!(
            "cannot read topic definitions in {}: {e}",
            dir.display()
        ))
    })?;
    let mut files: Vec<PathBuf> = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| {
                Error::Config(format!(
                    "cannot read topic definitions in {}: {e}",
                    dir.display()
                ))
            })?
            .path();
        if path.extension().is_some_and(|e| e == "properties") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(Error::Config(format!(
            "no topic definitions (*.properties) in {}",
            dir.display()
        )));
    }
    let mut specs: Vec<TopicSpec> = Vec::new();
    let mut origins: Vec<String> = Vec::new();
    for path in files {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Error::Config(format!("cannot read {origin}: {e}")))?;
        let spec = parse_spec(&text, &origin)?;
        if let Some(i) = specs.iter().position(|s| s.role == spec.role) {
            return Err(Error::Config(format!(
                "{origin}: role {} is already defined in {}",
                spec.role, origins[i]
            )));
        }
        if let Some(i) = specs.iter().position(|s| s.name == spec.name) {
            return Err(Error::Config(format!(
                "{origin}: topic {} is already defined in {}",
                spec.name, origins[i]
            )));
        }
        specs.push(spec);
        origins.push(origin);
    }
    Ok(specs)
}

/// What the command line changes in the definitions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// Topic names by role; roles not named here keep their file's name.
    pub names: BTreeMap<String, String>,
    /// Partition count of the input topic.
    pub input_partitions: Option<u32>,
    /// Replication factor of every topic (e.g. 3 on a 3-broker cluster).
    pub replication: Option<u16>,
}

impl Overrides {
    /// Overrides every role's name with the names of `names`.
    pub fn from_names(names: &TopicNames) -> Self {
        let mut overrides = Overrides::default();
        for (role, name) in role_names(names) {
            overrides.names.insert(role.to_string(), name.to_string());
        }
        overrides
    }

    /// Overrides the name of one role.
    pub fn name(mut self, role: &str, name: impl Into<String>) -> Self {
        self.names.insert(role.to_string(), name.into());
        self
    }
}

/// The (role, name) pairs of a [`TopicNames`].
pub fn role_names(names: &TopicNames) -> [(&'static str, &str); 5] {
    [
        (ROLE_INPUT, &names.input),
        (ROLE_SECONDS, &names.seconds),
        (ROLE_MINUTES, &names.minutes),
        (ROLE_FORWARD, &names.forward),
        (ROLE_DEAD_LETTER, &names.dead_letter),
    ]
}

/// Applies `overrides` to `specs`. Names of roles no spec has are ignored;
/// `input_partitions` without an input spec is an error, as are illegal
/// names, zero counts, and two topics ending up with one name.
pub fn apply_overrides(specs: &mut [TopicSpec], overrides: &Overrides) -> Result<(), Error> {
    for (role, name) in &overrides.names {
        if !ROLES.contains(&role.as_str()) {
            return Err(Error::Config(format!(
                "unknown topic role {role:?}, expected one of {}",
                ROLES.join(", ")
            )));
        }
        check_topic_name(name)
            .map_err(|m| Error::Config(format!("topic name for role {role}: {m}")))?;
    }
    if let Some(p) = overrides.input_partitions {
        if p == 0 || p > i32::MAX as u32 {
            return Err(Error::Config(format!(
                "input partitions must be between 1 and {}, got {p}",
                i32::MAX
            )));
        }
        if !specs.iter().any(|s| s.role == ROLE_INPUT) {
            return Err(Error::Config(
                "input partitions given, but no topic definition has role input".into(),
            ));
        }
    }
    if let Some(r) = overrides.replication {
        if r == 0 || r > i16::MAX as u16 {
            return Err(Error::Config(format!(
                "replication factor must be between 1 and {}, got {r}",
                i16::MAX
            )));
        }
    }
    for spec in specs.iter_mut() {
        if let Some(name) = overrides.names.get(&spec.role) {
            spec.name.clone_from(name);
        }
        if spec.role == ROLE_INPUT {
            if let Some(p) = overrides.input_partitions {
                spec.partitions = p;
            }
        }
        if let Some(r) = overrides.replication {
            spec.replication = r;
        }
    }
    for (i, spec) in specs.iter().enumerate() {
        if let Some(other) = specs[..i].iter().find(|s| s.name == spec.name) {
            return Err(Error::Config(format!(
                "roles {} and {} would both use topic {}",
                other.role, spec.role, spec.name
            )));
        }
    }
    Ok(())
}

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
            .map_err(|e| Error::Kafka(format!("cannot create topics: {e}")))?;
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
                Err((name, code)) => failures.push(format!("{name}: {code}{}", create_hint(code))),
            }
        }
        // Report in definition order, whatever order the answers came in.
        created.sort_by_key(|name| specs.iter().position(|s| &s.name == name));
        if !failures.is_empty() {
            let done = if created.is_empty() {
                String::new()
            } else {
                format!(" (created {})", created.join(", "))
            };
            return Err(Error::Kafka(format!(
                "cannot create topics: {}{done}",
                failures.join("; ")
            )));
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
            return Err(Error::Kafka(format!(
                "topics not ready after {timeout:?}: {}",
                waiting.join(", ")
            )));
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
            .map_err(|e| Error::Kafka(format!("cannot describe topic configs: {e}")))?;
        if results.len() != described.len() {
            return Err(Error::Kafka(format!(
                "asked for the configs of {} topics, got {} answers",
                described.len(),
                results.len()
            )));
        }
        for (spec, result) in described.iter().zip(results) {
            let resource = result.map_err(|code| {
                Error::Kafka(format!(
                    "cannot describe the configs of topic {}: {code}",
                    spec.name
                ))
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
        Some(t) if t.error.is_some() => Err(Error::Kafka(format!(
            "cannot read the partitions of topic {topic}: {}",
            t.not_ready_reason()
        ))),
        _ => Err(Error::Kafka(format!(
            "topic {topic} does not exist (run `timebucket topics` first)"
        ))),
    }
}

/// What the cluster's metadata says about one topic.
#[derive(Debug)]
struct TopicState {
    error: Option<RDKafkaErrorCode>,
    partitions: Vec<PartitionState>,
}

#[derive(Debug)]
struct PartitionState {
    id: i32,
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
            return e.to_string();
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
fn snapshot(
    admin: &AdminClient<DefaultClientContext>,
    topic: Option<&str>,
    timeout: Duration,
    bootstrap: &str,
) -> Result<HashMap<String, TopicState>, Error> {
    let metadata = admin.inner().fetch_metadata(topic, timeout).map_err(|e| {
        Error::Kafka(format!(
            "cannot read cluster metadata from {bootstrap}: {e}"
        ))
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

fn admin_client(settings: &KafkaSettings) -> Result<AdminClient<DefaultClientContext>, Error> {
    settings
        .client_config(ADMIN_DEFAULTS)
        .create()
        .map_err(|e| Error::Kafka(format!("cannot create admin client: {e}")))
}

fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Kafka(format!("cannot start the admin runtime: {e}")))
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
            " (not allowed to create topics: create them as an admin, then rerun to check them)"
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

/// Kafka's rule for topic names: 1 to 249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
fn check_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty topic name".into());
    }
    if name == "." || name == ".." {
        return Err(format!("{name:?} is not a legal topic name"));
    }
    if name.len() > MAX_TOPIC_NAME {
        return Err(format!(
            "{} characters, Kafka allows at most {MAX_TOPIC_NAME}",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "{name:?} contains {c:?}; topic names may use letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// Parses a count in `1..=max`.
fn parse_count(value: &str, max: u64) -> Result<u64, String> {
    match value.parse::<u64>() {
        Ok(n) if n >= 1 && n <= max => Ok(n),
        Ok(n) => Err(format!("expected a whole number from 1 to {max}, got {n}")),
        Err(_) => Err(format!(
            "expected a whole number from 1 to {max}, got {value:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "\
# comment
role=input
name = frames
partitions=8
replication.factor=1
config.retention.ms=604800000
config.some.list = compact, delete
";

    #[test]
    fn parses_a_definition() {
        let spec = parse_spec(GOOD, "x.properties").unwrap();
        assert_eq!(spec.role, "input");
        assert_eq!(spec.name, "frames");
        assert_eq!(spec.partitions, 8);
        assert_eq!(spec.replication, 1);
        assert_eq!(spec.configs["retention.ms"], "604800000");
        assert_eq!(spec.configs["some.list"], "compact, delete");
    }

    #[test]
    fn errors_name_file_and_line() {
        let cases = [
            (
                "role=input\nname=frames\npartitions=eight\n",
                "f.properties:3: partitions",
            ),
            (
                "role=input\nno equals sign\n",
                "f.properties:2: expected key=value",
            ),
            (
                "role=input\nrole=input\n",
                "f.properties:2: role is already set on line 1",
            ),
            ("role=inputs\n", "f.properties:1: role: unknown role"),
            ("name=a b\n", "f.properties:1: name:"),
            ("partitions=0\n", "f.properties:1: partitions"),
            (
                "replication.factor=40000\n",
                "f.properties:1: replication.factor",
            ),
            ("retention.ms=1\n", "f.properties:1: unknown key"),
            ("config.=1\n", "f.properties:1:"),
            (
                "config.retention.ms=\n",
                "f.properties:1: config.retention.ms has an empty value",
            ),
            (
                "role=input\nname=x\npartitions=1\n",
                "f.properties: missing required key replication.factor",
            ),
        ];
        for (text, want) in cases {
            let err = parse_spec(text, "f.properties").unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err:?} lacks {want:?}");
            assert!(matches!(
                parse_spec(text, "f.properties"),
                Err(Error::Config(_))
            ));
        }
    }

    #[test]
    fn overrides_names_partitions_and_replication() {
        let mut specs = vec![
            parse_spec(GOOD, "a").unwrap(),
            parse_spec(
                "role=metrics-second\nname=s\npartitions=3\nreplication.factor=1\n",
                "b",
            )
            .unwrap(),
        ];
        let o = Overrides {
            input_partitions: Some(12),
            replication: Some(3),
            ..Overrides::default()
        }
        .name(ROLE_INPUT, "in")
        .name(ROLE_DEAD_LETTER, "dl");
        apply_overrides(&mut specs, &o).unwrap();
        assert_eq!(
            (
                specs[0].name.as_str(),
                specs[0].partitions,
                specs[0].replication
            ),
            ("in", 12, 3)
        );
        assert_eq!(
            (
                specs[1].name.as_str(),
                specs[1].partitions,
                specs[1].replication
            ),
            ("s", 3, 3)
        );

        let clash = Overrides::default().name(ROLE_SECONDS, "in");
        assert!(apply_overrides(&mut specs, &clash)
            .unwrap_err()
            .to_string()
            .contains("both use topic in"));
        let bad = Overrides::default().name(ROLE_INPUT, "a/b");
        assert!(matches!(
            apply_overrides(&mut specs, &bad),
            Err(Error::Config(_))
        ));
        let from = Overrides::from_names(&TopicNames::default());
        assert_eq!(from.names[ROLE_DEAD_LETTER], "frames-dead-letter");
    }

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
