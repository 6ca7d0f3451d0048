//! Topic definitions: the files in `topics/` (one `key=value` file per topic
//! role, format in `topics/README.md`), and command-line overrides of names,
//! input partitions and replication factor.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::kafka::config::TopicNames;

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
/// Ingest's committed position per source ([`TopicNames::progress`]).
pub const ROLE_PROGRESS: &str = "ingest-progress";
/// Shards' partial windows and progress, read by `timebucket merge`
/// (sharded buckets only; `--partials-topic`).
pub const ROLE_PARTIALS: &str = "partials";
/// Every role a definition file may name.
pub const ROLES: [&str; 7] = [
    ROLE_INPUT,
    ROLE_SECONDS,
    ROLE_MINUTES,
    ROLE_FORWARD,
    ROLE_DEAD_LETTER,
    ROLE_PROGRESS,
    ROLE_PARTIALS,
];

/// Kafka's longest legal topic name.
const MAX_TOPIC_NAME: usize = 249;

/// A value of a definition file or an override that Kafka would refuse: a
/// topic name, a count, or partitions that do not hold whole groups of
/// shards. Callers say where it came from (file and line, or the option).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("empty topic name")]
    EmptyName,
    #[error("{0:?} is not a legal topic name")]
    DotName(String),
    #[error("{0} characters, Kafka allows at most {MAX_TOPIC_NAME}")]
    NameTooLong(usize),
    #[error("{name:?} contains {c:?}; topic names may use letters, digits, '.', '_' and '-'")]
    NameChar { name: String, c: char },
    #[error("expected a whole number from 1 to {max}, got {got}")]
    CountOutOfRange { max: u64, got: u64 },
    #[error("expected a whole number from 1 to {max}, got {value:?}")]
    NotACount {
        max: u64,
        value: String,
        #[source]
        source: std::num::ParseIntError,
    },
    #[error("{name}: {partitions} partitions is not a multiple of shards={shards}")]
    Shards {
        name: String,
        partitions: u32,
        shards: u32,
    },
}

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
    /// Input only: shards per time bucket (`shards=`, default 1); the
    /// partition count must be a multiple of it. Not a Kafka config: ingest,
    /// worker, merge and aggregate take it as `--shards`/`INPUT_SHARDS`.
    pub shards: u32,
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
    let mut shards = None;
    let mut configs = BTreeMap::new();
    for line in crate::kafka::properties::lines(text) {
        let line = line.map_err(|bad| at(bad.number, bad.message))?;
        let (n, key, value) = (line.number, line.key, line.value);
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
            "shards" => {
                shards = Some(
                    parse_count(value, i32::MAX as u64)
                        .map_err(|m| at(n, format!("shards: {m}")))? as u32,
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
                            "unknown key {key:?} (expected role, name, partitions, replication.factor, shards or config.<topic config>)"
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
    let spec = TopicSpec {
        role: role.ok_or_else(|| missing("role"))?,
        name: name.ok_or_else(|| missing("name"))?,
        partitions: partitions.ok_or_else(|| missing("partitions"))?,
        replication: replication.ok_or_else(|| missing("replication.factor"))?,
        shards: shards.unwrap_or(1),
        configs,
    };
    if shards.is_some() && spec.role != ROLE_INPUT {
        return Err(Error::Config(format!(
            "{origin}: shards= is for the input topic only (role {})",
            spec.role
        )));
    }
    check_shards(&spec).map_err(|m| Error::Config(format!("{origin}: {m}")))?;
    Ok(spec)
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
        let text = std::fs::read_to_string(&path).map_err(|source| Error::System {
            what: format!("read {origin}"),
            source,
        })?;
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
pub fn role_names(names: &TopicNames) -> [(&'static str, &str); 6] {
    [
        (ROLE_INPUT, &names.input),
        (ROLE_SECONDS, &names.seconds),
        (ROLE_MINUTES, &names.minutes),
        (ROLE_FORWARD, &names.forward),
        (ROLE_DEAD_LETTER, &names.dead_letter),
        (ROLE_PROGRESS, &names.progress),
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
    for spec in specs.iter() {
        check_shards(spec)?;
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

/// The partition count must hold whole groups of shards.
fn check_shards(spec: &TopicSpec) -> Result<(), SpecError> {
    if !spec.partitions.is_multiple_of(spec.shards) {
        return Err(SpecError::Shards {
            name: spec.name.clone(),
            partitions: spec.partitions,
            shards: spec.shards,
        });
    }
    Ok(())
}

/// Kafka's rule for topic names: 1 to 249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
fn check_topic_name(name: &str) -> Result<(), SpecError> {
    if name.is_empty() {
        return Err(SpecError::EmptyName);
    }
    if name == "." || name == ".." {
        return Err(SpecError::DotName(name.into()));
    }
    if name.len() > MAX_TOPIC_NAME {
        return Err(SpecError::NameTooLong(name.len()));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(SpecError::NameChar {
            name: name.into(),
            c,
        });
    }
    Ok(())
}

/// Parses a count in `1..=max`.
fn parse_count(value: &str, max: u64) -> Result<u64, SpecError> {
    match value.parse::<u64>() {
        Ok(n) if n >= 1 && n <= max => Ok(n),
        Ok(got) => Err(SpecError::CountOutOfRange { max, got }),
        Err(source) => Err(SpecError::NotACount {
            max,
            value: value.into(),
            source,
        }),
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
    fn shards_must_divide_the_input_partitions() {
        let ok = parse_spec(
            "role=input\nname=f\npartitions=8\nreplication.factor=1\nshards=4\n",
            "f.properties",
        )
        .unwrap();
        assert_eq!(ok.shards, 4);
        let bad = parse_spec(
            "role=input\nname=f\npartitions=8\nreplication.factor=1\nshards=3\n",
            "f.properties",
        );
        assert!(bad
            .unwrap_err()
            .to_string()
            .contains("not a multiple of shards=3"));
        let not_input = parse_spec(
            "role=dead-letter\nname=d\npartitions=1\nreplication.factor=1\nshards=1\n",
            "d.properties",
        );
        assert!(not_input
            .unwrap_err()
            .to_string()
            .contains("input topic only"));
        // An override of the input partitions is checked too.
        let mut specs = vec![ok];
        let overrides = Overrides {
            input_partitions: Some(6),
            ..Overrides::default()
        };
        assert!(apply_overrides(&mut specs, &overrides).is_err());
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
}
