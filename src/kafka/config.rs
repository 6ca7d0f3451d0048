//! Client configuration shared by every Kafka client of timebucket: the
//! bootstrap address and the user's librdkafka properties (security,
//! tuning), applied after timebucket's own defaults so users can override
//! any of them.
//!
//! The user's properties come from three places; a later one wins:
//!
//! 1. a properties file, `-F FILE` or `KAFKA_CLIENT_PROPERTIES=FILE`, in the
//!    format kcat's `-F` and Kafka's `--command-config` read (see
//!    [`crate::kafka::properties`]), with librdkafka's names;
//! 2. the environment: `TIMEBUCKET_CLIENT_SASL_PASSWORD` sets
//!    `sasl.password` (prefix [`ENV_PREFIX`], then the name upper-cased with
//!    `_` for `.`);
//! 3. `-X key=value` on the command line.
//!
//! `bootstrap.servers` may come from any of them too; `-b` /
//! `BOOTSTRAP_SERVERS` wins over the file and the `TIMEBUCKET_CLIENT_`
//! variables, `-X bootstrap.servers` over everything. Secrets belong in the
//! file or the environment: a command line is visible to every user in
//! `ps`.

use std::fmt;
use std::path::{Path, PathBuf};

use rdkafka::config::ClientConfig;
use tracing::warn;

use crate::error::Error;
use crate::kafka::properties;

pub const DEFAULT_BOOTSTRAP: &str = "127.0.0.1:9092";
/// Environment variables with this prefix are client properties.
pub const ENV_PREFIX: &str = "TIMEBUCKET_CLIENT_";
/// The environment variable naming the properties file (`-F`).
pub const PROPERTIES_FILE_ENV: &str = "KAFKA_CLIENT_PROPERTIES";

/// Where the cluster is and how to talk to it.
#[derive(Clone)]
pub struct KafkaSettings {
    pub bootstrap: String,
    /// The user's librdkafka properties (file, environment, `-X`, merged),
    /// applied after our defaults. Never holds `bootstrap.servers`.
    pub properties: Vec<(String, String)>,
}

/// Secrets are never printed, not even in debug output.
impl fmt::Debug for KafkaSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let properties: Vec<(&str, &str)> = self
            .properties
            .iter()
            .map(|(k, v)| (k.as_str(), if is_secret(k) { "<redacted>" } else { v }))
            .collect();
        f.debug_struct("KafkaSettings")
            .field("bootstrap", &self.bootstrap)
            .field("properties", &properties)
            .finish()
    }
}

impl KafkaSettings {
    pub fn new(bootstrap: impl Into<String>) -> Self {
        KafkaSettings {
            bootstrap: bootstrap.into(),
            properties: Vec::new(),
        }
    }

    /// Settings from the properties file (lowest precedence), the
    /// environment, `-b`/`BOOTSTRAP_SERVERS` and `-X` (highest), checked
    /// against librdkafka: an unknown property or a bad value is
    /// [`Error::Config`] naming where it came from.
    pub fn from_sources(
        file: Vec<Property>,
        env: Vec<Property>,
        bootstrap: Option<&str>,
        args: Vec<Property>,
    ) -> Result<KafkaSettings, Error> {
        let mut servers = DEFAULT_BOOTSTRAP.to_string();
        let mut merged: Vec<Property> = Vec::new();
        let mut add = |p: Property, servers: &mut String| {
            if p.key == "bootstrap.servers" {
                servers.clone_from(&p.value);
            } else {
                merged.retain(|q| q.key != p.key);
                merged.push(p);
            }
        };
        for p in file.into_iter().chain(env) {
            add(p, &mut servers);
        }
        if let Some(b) = bootstrap {
            servers = b.to_string();
        }
        for p in args {
            add(p, &mut servers);
        }
        for p in &merged {
            check_property(p)?;
        }
        if servers.trim().is_empty() {
            return Err(Error::Config("bootstrap.servers is empty".into()));
        }
        Ok(KafkaSettings {
            bootstrap: servers,
            properties: merged.into_iter().map(|p| (p.key, p.value)).collect(),
        })
    }

    /// A config with `defaults` first, then the bootstrap address, then the
    /// user's properties.
    pub fn client_config(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        for (k, v) in defaults {
            config.set(*k, *v);
        }
        config.set("bootstrap.servers", &self.bootstrap);
        for (k, v) in &self.properties {
            config.set(k, v);
        }
        config
    }

    /// The user's properties as environment variables for a child process
    /// (`loadtest` starts workers): `(name, value)` for each property that
    /// round-trips through [`env_name`], and the `key=value` arguments for
    /// `-X` of the others. A secret whose name cannot be an environment
    /// variable is an error: it never goes on a command line.
    #[allow(clippy::type_complexity)]
    pub fn for_child(&self) -> Result<(Vec<(String, String)>, Vec<String>), Error> {
        let mut env = Vec::new();
        let mut args = Vec::new();
        for (k, v) in &self.properties {
            match env_name(k) {
                Some(name) => env.push((name, v.clone())),
                None if is_secret(k) => {
                    return Err(Error::Config(format!(
                        "cannot pass the secret property {k} to a worker process without a command line"
                    )))
                }
                None => args.push(format!("{k}={v}")),
            }
        }
        Ok((env, args))
    }
}

/// One client property and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Property {
    pub key: String,
    pub value: String,
    pub origin: Origin,
}

/// Where a property came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    File { path: PathBuf, line: usize },
    Env(String),
    Arg,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File { path, line } => write!(f, "{}:{line}", path.display()),
            Origin::Env(name) => write!(f, "environment variable {name}"),
            Origin::Arg => write!(f, "-X"),
        }
    }
}

/// Parses one `-X key=value` argument.
pub fn parse_property(arg: &str) -> Result<(String, String), Error> {
    match arg.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(Error::Config(format!(
            "expected key=value for -X, got {:?}",
            arg.split_once('=').map_or(arg, |(k, _)| k)
        ))),
    }
}

/// The `-X` arguments as properties. A secret among them is accepted, with a
/// warning: `ps` shows it to every user of the machine.
pub fn arg_properties(args: &[String]) -> Result<Vec<Property>, Error> {
    args.iter()
        .map(|a| {
            let (key, value) = parse_property(a)?;
            if is_secret(&key) {
                warn!(
                    "-X {key}=... puts a secret on the command line, where `ps` shows it to every user: \
                     use a properties file (-F) or {} instead",
                    env_name(&key).unwrap_or_else(|| format!("{ENV_PREFIX}...")),
                );
            }
            Ok(Property {
                key,
                value,
                origin: Origin::Arg,
            })
        })
        .collect()
}

/// A command line fit to record: the values of secret `-X` properties
/// replaced by `<redacted>`.
pub fn redact_command_line(args: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut after_x = false;
    for arg in args {
        let (prefix, property) = match arg.strip_prefix("-X") {
            Some(rest) if !after_x && !rest.is_empty() => ("-X", rest),
            _ if after_x => ("", arg.as_str()),
            _ => ("", ""),
        };
        after_x = !after_x && arg == "-X";
        match property.split_once('=') {
            Some((key, _)) if is_secret(key.trim()) => {
                out.push(format!("{prefix}{key}=<redacted>"));
            }
            _ => out.push(arg),
        }
    }
    out
}

/// Reads a client properties file. Warns when others than its owner may
/// read it (see [`exposure`]); an unreadable file or a line that is not
/// `key=value` is [`Error::Config`] naming the file and line.
pub fn read_properties_file(path: &Path) -> Result<Vec<Property>, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::Config(format!(
            "cannot read the client properties file {}: {e}",
            path.display()
        ))
    })?;
    if let Some(warning) = exposure(path) {
        warn!("{warning}");
    }
    parse_properties_file(&text, path)
}

/// The properties of a file's `text`; `path` names it in errors.
pub fn parse_properties_file(text: &str, path: &Path) -> Result<Vec<Property>, Error> {
    properties::lines(text)
        .map(|line| match line {
            Ok(l) => Ok(Property {
                key: l.key.to_string(),
                value: l.value.to_string(),
                origin: Origin::File {
                    path: path.to_path_buf(),
                    line: l.number,
                },
            }),
            Err(bad) => Err(Error::Config(format!(
                "{}:{}: {}",
                path.display(),
                bad.number,
                bad.message
            ))),
        })
        .collect()
}

/// A warning if the file at `path` may be read (or changed) by others than
/// its owner: it may hold passwords and keys.
pub fn exposure(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    exposed(mode).then(|| {
        format!(
            "the client properties file {} is accessible to other users (mode {:03o}) \
             and may hold secrets: chmod 600 {0}",
            path.display(),
            mode & 0o777
        )
    })
}

/// Whether a file mode lets the group or others in.
pub fn exposed(mode: u32) -> bool {
    mode & 0o077 != 0
}

/// Client properties from environment variables named [`ENV_PREFIX`] +
/// the property upper-cased with `_` for `.`
/// (`TIMEBUCKET_CLIENT_SECURITY_PROTOCOL` → `security.protocol`), in name
/// order.
pub fn env_properties(
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<Property>, Error> {
    let mut props: Vec<Property> = Vec::new();
    for (name, value) in vars {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(Error::Config(format!(
                "{name} is not a client property variable ({ENV_PREFIX} then letters, digits and '_')"
            )));
        }
        props.push(Property {
            key: rest.to_ascii_lowercase().replace('_', "."),
            value,
            origin: Origin::Env(name),
        });
    }
    props.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(props)
}

/// The environment variable that sets property `key`, if its name can say
/// it (librdkafka's names are lower-case words joined by dots).
pub fn env_name(key: &str) -> Option<String> {
    let ok = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.')
        && !key.starts_with('.')
        && !key.ends_with('.');
    ok.then(|| format!("{ENV_PREFIX}{}", key.to_ascii_uppercase().replace('.', "_")))
}

/// Whether a property's value is a secret: passwords, client secrets,
/// private keys, OAUTHBEARER configs (which may hold a token).
pub fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.contains("password")
        || key.contains("secret")
        || key.contains("token")
        || key == "ssl.key.pem"
        || key == "ssl_key"
        || key == "sasl.oauthbearer.config"
        || key == "sasl.jaas.config"
}

/// Checks one property with librdkafka: its name and value (not yet the
/// files it names, which librdkafka opens when a client is created).
fn check_property(p: &Property) -> Result<(), Error> {
    let mut config = ClientConfig::new();
    config.set(&p.key, &p.value);
    match config.create_native_config() {
        Ok(_) => Ok(()),
        Err(e) => {
            // The value only of a known, non-secret property that did not
            // come from a file: an unknown one may be a misspelled
            // password, and no error quotes a line of a properties file
            // (any of its values may be someone's secret).
            let known = matches!(
                e,
                rdkafka::error::KafkaError::ClientConfig(
                    rdkafka::types::RDKafkaConfRes::RD_KAFKA_CONF_INVALID,
                    ..
                )
            );
            let from_file = matches!(p.origin, Origin::File { .. });
            let value_hint = if known && !is_secret(&p.key) && !from_file {
                format!(" = {:?}", p.value)
            } else {
                String::new()
            };
            let hint = match p.key.as_str() {
                "sasl.jaas.config"
                | "ssl.truststore.location"
                | "ssl.truststore.password"
                | "ssl.truststore.type" => {
                    " (a Java client property: use librdkafka's names, e.g. sasl.username, \
                     sasl.password, ssl.ca.location; see docs/operations.md, \"Connecting to a real cluster\")"
                }
                _ => "",
            };
            Err(Error::Config(format!(
                "client property {}{value_hint} from {}: {}{hint}",
                p.key,
                p.origin,
                describe_config_error(&e)
            )))
        }
    }
}

/// librdkafka's reason without the value, which may be a secret.
fn describe_config_error(e: &rdkafka::error::KafkaError) -> String {
    match e {
        rdkafka::error::KafkaError::ClientConfig(_, description, _, _) => description.clone(),
        other => other.to_string(),
    }
}

/// The names of the topics of one pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicNames {
    pub input: String,
    pub seconds: String,
    pub minutes: String,
    pub forward: String,
    pub dead_letter: String,
    /// Ingest's progress per source file (compacted; see `cmd::ingest`).
    pub progress: String,
}

impl Default for TopicNames {
    fn default() -> Self {
        TopicNames {
            input: "frames".into(),
            seconds: "metrics-second".into(),
            minutes: "metrics-minute".into(),
            forward: "frames-forward".into(),
            dead_letter: "frames-dead-letter".into(),
            progress: "ingest-progress".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arg(kv: &str) -> Property {
        let (key, value) = parse_property(kv).unwrap();
        Property {
            key,
            value,
            origin: Origin::Arg,
        }
    }

    fn env(vars: &[(&str, &str)]) -> Vec<Property> {
        env_properties(vars.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap()
    }

    fn file(text: &str) -> Vec<Property> {
        parse_properties_file(text, Path::new("client.properties")).unwrap()
    }

    fn get<'a>(s: &'a KafkaSettings, key: &str) -> Option<&'a str> {
        s.properties
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn user_properties_override_defaults() {
        let mut s = KafkaSettings::new("h:1");
        s.properties.push(parse_property("linger.ms=50").unwrap());
        let c = s.client_config(&[("linger.ms", "5"), ("acks", "all")]);
        assert_eq!(c.get("linger.ms"), Some("50"));
        assert_eq!(c.get("acks"), Some("all"));
        assert_eq!(c.get("bootstrap.servers"), Some("h:1"));
        assert!(parse_property("novalue").is_err());
        assert_eq!(parse_property("sasl.password=a=b").unwrap().1, "a=b");
    }

    #[test]
    fn file_then_environment_then_command_line() {
        let f = file(
            "# a kcat -F file\n\
             bootstrap.servers = f:1\n\
             security.protocol=SASL_SSL\n\
             sasl.mechanism=SCRAM-SHA-512\n\
             sasl.username=file-user\n\
             sasl.password=from=file\n\
             linger.ms=1\n",
        );
        let e = env(&[
            ("TIMEBUCKET_CLIENT_SASL_PASSWORD", "from-env"),
            ("TIMEBUCKET_CLIENT_LINGER_MS", "2"),
            (
                "BOOTSTRAP_SERVERS",
                "ignored: not a client property variable",
            ),
        ]);
        let s = KafkaSettings::from_sources(f.clone(), e.clone(), None, vec![arg("linger.ms=3")])
            .unwrap();
        assert_eq!(s.bootstrap, "f:1", "the file's bootstrap without -b");
        assert_eq!(get(&s, "security.protocol"), Some("SASL_SSL"));
        assert_eq!(get(&s, "sasl.username"), Some("file-user"));
        assert_eq!(get(&s, "sasl.password"), Some("from-env"));
        assert_eq!(get(&s, "linger.ms"), Some("3"));
        assert_eq!(
            s.properties
                .iter()
                .filter(|(k, _)| k == "linger.ms")
                .count(),
            1,
            "one value per property"
        );
        assert!(get(&s, "bootstrap.servers").is_none());

        let s = KafkaSettings::from_sources(f.clone(), vec![], None, vec![]).unwrap();
        assert_eq!(get(&s, "sasl.password"), Some("from=file"));

        // -b / BOOTSTRAP_SERVERS over the file and the environment,
        // -X bootstrap.servers over everything.
        let e = env(&[("TIMEBUCKET_CLIENT_BOOTSTRAP_SERVERS", "e:1")]);
        let s = KafkaSettings::from_sources(f.clone(), e.clone(), None, vec![]).unwrap();
        assert_eq!(s.bootstrap, "e:1");
        let s = KafkaSettings::from_sources(f.clone(), e.clone(), Some("b:1"), vec![]).unwrap();
        assert_eq!(s.bootstrap, "b:1");
        let s = KafkaSettings::from_sources(f, e, Some("b:1"), vec![arg("bootstrap.servers=x:1")])
            .unwrap();
        assert_eq!(s.bootstrap, "x:1");
        let s = KafkaSettings::from_sources(vec![], vec![], None, vec![]).unwrap();
        assert_eq!(s.bootstrap, DEFAULT_BOOTSTRAP);
    }

    #[test]
    fn bad_properties_name_their_origin_and_never_a_secret() {
        let f = file("security.protocol=SASL_SSL\nsasl.pasword=hunter2\n");
        let e = KafkaSettings::from_sources(f, vec![], None, vec![]).unwrap_err();
        let msg = e.to_string();
        assert_eq!(e.exit_code(), 2);
        assert!(msg.contains("client.properties:2"), "{msg}");
        assert!(msg.contains("sasl.pasword"), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");

        let e = KafkaSettings::from_sources(
            vec![],
            env(&[("TIMEBUCKET_CLIENT_SECURITY_PROTOCOL", "TLS")]),
            None,
            vec![],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("TIMEBUCKET_CLIENT_SECURITY_PROTOCOL") && e.contains("\"TLS\""),
            "{e}"
        );

        let java = file("sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"u\" password=\"p\";\n");
        let e = KafkaSettings::from_sources(java, vec![], None, vec![])
            .unwrap_err()
            .to_string();
        assert!(e.contains("Java client property"), "{e}");
        assert!(!e.contains("password=\"p\""), "{e}");

        let e = parse_properties_file("a=1\njust text\n", Path::new("p.conf")).unwrap_err();
        assert!(e.to_string().contains("p.conf:2"), "{e}");
        assert!(!e.to_string().contains("just"), "{e}");
        // A known property with a bad value, from a file: key and line only.
        let bad = KafkaSettings::from_sources(file("acks=s3cret\n"), vec![], None, vec![]);
        let bad = bad.unwrap_err().to_string();
        assert!(
            bad.contains("client.properties:1") && bad.contains("acks"),
            "{bad}"
        );
        assert!(!bad.contains("s3cret"), "{bad}");
        assert_eq!(e.exit_code(), 2);
        assert!(env_properties([("TIMEBUCKET_CLIENT_".into(), "x".into())]).is_err());
        assert!(env_properties([("TIMEBUCKET_CLIENT_A-B".into(), "x".into())]).is_err());
    }

    #[test]
    fn environment_names_round_trip() {
        assert_eq!(
            env_name("sasl.password").as_deref(),
            Some("TIMEBUCKET_CLIENT_SASL_PASSWORD")
        );
        let props = env(&[("TIMEBUCKET_CLIENT_SSL_CA_LOCATION", "/ca.pem")]);
        assert_eq!(props[0].key, "ssl.ca.location");
        assert_eq!(env_name("ssl_key"), None);
        assert_eq!(env_name("Sasl.password"), None);
    }

    #[test]
    fn children_get_every_property_and_no_secret_as_an_argument() {
        let mut s = KafkaSettings::new("h:1");
        s.properties = vec![
            ("sasl.password".into(), "p w".into()),
            ("linger.ms".into(), "5".into()),
            ("Odd_Name".into(), "1".into()),
        ];
        let (env, args) = s.for_child().unwrap();
        assert_eq!(
            env,
            [
                (
                    "TIMEBUCKET_CLIENT_SASL_PASSWORD".to_string(),
                    "p w".to_string()
                ),
                ("TIMEBUCKET_CLIENT_LINGER_MS".to_string(), "5".to_string())
            ]
        );
        assert_eq!(args, ["Odd_Name=1"]);
        s.properties.push(("odd_password".into(), "x".into()));
        assert!(s.for_child().is_err());
    }

    #[test]
    fn recorded_command_lines_hold_no_secret() {
        let line = redact_command_line(
            [
                "timebucket",
                "loadtest",
                "-X",
                "sasl.password=hunter2",
                "-Xssl.key.password=k",
                "-X",
                "linger.ms=5",
                "--frames",
                "sasl.password=not-after-X",
            ]
            .map(String::from),
        );
        assert_eq!(
            line,
            [
                "timebucket",
                "loadtest",
                "-X",
                "sasl.password=<redacted>",
                "-Xssl.key.password=<redacted>",
                "-X",
                "linger.ms=5",
                "--frames",
                "sasl.password=not-after-X"
            ]
        );
    }

    #[test]
    fn secrets_are_recognised_and_never_printed() {
        for key in [
            "sasl.password",
            "ssl.key.password",
            "ssl.keystore.password",
            "sasl.oauthbearer.client.secret",
            "ssl.key.pem",
            "sasl.oauthbearer.config",
        ] {
            assert!(is_secret(key), "{key}");
        }
        for key in ["sasl.username", "ssl.ca.location", "linger.ms"] {
            assert!(!is_secret(key), "{key}");
        }
        let mut s = KafkaSettings::new("h:1");
        s.properties = vec![
            ("sasl.username".into(), "alice".into()),
            ("sasl.password".into(), "hunter2".into()),
        ];
        let debug = format!("{s:?}");
        assert!(
            debug.contains("alice") && !debug.contains("hunter2"),
            "{debug}"
        );
    }

    #[test]
    fn files_others_can_read_are_flagged() {
        assert!(!exposed(0o100600));
        assert!(!exposed(0o100400));
        assert!(exposed(0o100640));
        assert!(exposed(0o100644));
        assert!(exposed(0o100602));

        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client.properties");
        std::fs::write(&path, "sasl.password=x\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let warning = exposure(&path).expect("a warning for mode 644");
        assert!(
            warning.contains("mode 644") && warning.contains("chmod 600"),
            "{warning}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(exposure(&path), None);
        assert_eq!(read_properties_file(&path).unwrap()[0].value, "x");
        let missing = read_properties_file(&dir.path().join("nope")).unwrap_err();
        assert_eq!(missing.exit_code(), 2);
        assert!(missing.to_string().contains("nope"));
    }
}
