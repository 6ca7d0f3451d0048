//! `docker-compose.yml`, `Dockerfile` and `.dockerignore` checked without a
//! Docker engine: the compose file is read with a small parser for the block
//! style YAML it is written in (anything else fails loudly here), then its
//! structure is checked: the services exist, images are pinned, the worker
//! scales (no container_name, hostname or host ports), bind mounts point into
//! the repository, every variable the worker reads is set and the CLI still
//! reads it, topic names agree between services, and the bootstrap address is
//! one the broker advertises. Where `docker compose` or `docker-compose` works,
//! `config --quiet` is run as well.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

// ---------------------------------------------------------------------------
// A reader for the YAML subset of docker-compose.yml: block mappings and
// sequences, plain, 'single' and "double" quoted scalars, one-line flow
// sequences, and comments. Anchors, aliases, merge keys, flow mappings,
// block scalars and tabs are refused, so nothing is silently misread.

#[derive(Debug, Clone, PartialEq)]
enum Yaml {
    Null,
    Str(String),
    Seq(Vec<Yaml>),
    Map(Vec<(String, Yaml)>),
}

impl Yaml {
    fn get(&self, key: &str) -> Option<&Yaml> {
        match self {
            Yaml::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn str(&self) -> Option<&str> {
        match self {
            Yaml::Str(s) => Some(s),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        match self {
            Yaml::Map(entries) => entries.iter().map(|(k, _)| k.as_str()).collect(),
            _ => Vec::new(),
        }
    }

    fn items(&self) -> &[Yaml] {
        match self {
            Yaml::Seq(items) => items,
            _ => &[],
        }
    }
}

struct Line {
    number: usize,
    indent: usize,
    text: String,
}

fn parse_yaml(source: &str) -> Result<Yaml, String> {
    let mut lines = Vec::new();
    for (i, raw) in source.lines().enumerate() {
        let number = i + 1;
        let body = strip_comment(raw);
        let trimmed = body.trim_end();
        if trimmed.trim().is_empty() || trimmed == "---" {
            continue;
        }
        let indent = trimmed.len() - trimmed.trim_start().len();
        if trimmed[..indent].contains('\t') {
            return Err(format!("line {number}: tab in indentation"));
        }
        lines.push(Line {
            number,
            indent,
            text: trimmed.trim_start().to_string(),
        });
    }
    if lines.is_empty() {
        return Ok(Yaml::Null);
    }
    let mut at = 0;
    let indent = lines[0].indent;
    let value = parse_block(&mut lines, &mut at, indent)?;
    if at < lines.len() {
        return Err(format!("line {}: unexpected indentation", lines[at].number));
    }
    Ok(value)
}

/// The line without a trailing comment: `#` at the start or after a space,
/// outside quotes.
fn strip_comment(line: &str) -> &str {
    let mut quote = None;
    let mut prev = ' ';
    for (i, c) in line.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '#' && prev.is_whitespace() => return &line[..i],
            None => {}
        }
        prev = c;
    }
    line
}

fn is_seq_item(text: &str) -> bool {
    text == "-" || text.starts_with("- ")
}

fn parse_block(lines: &mut [Line], at: &mut usize, indent: usize) -> Result<Yaml, String> {
    if is_seq_item(&lines[*at].text) {
        let mut items = Vec::new();
        while *at < lines.len() && lines[*at].indent == indent && is_seq_item(&lines[*at].text) {
            let rest = lines[*at].text[1..].trim_start().to_string();
            if rest.is_empty() {
                *at += 1;
                items.push(nested(lines, at, indent)?);
            } else if split_key(&rest).is_some() {
                // "- key: value" opens a mapping indented past the dash.
                let inner = indent + (lines[*at].text.len() - rest.len());
                lines[*at].indent = inner;
                lines[*at].text = rest;
                items.push(parse_block(lines, at, inner)?);
            } else {
                let number = lines[*at].number;
                *at += 1;
                items.push(scalar(&rest).map_err(|e| format!("line {number}: {e}"))?);
            }
        }
        return Ok(Yaml::Seq(items));
    }
    let mut entries: Vec<(String, Yaml)> = Vec::new();
    while *at < lines.len() && lines[*at].indent == indent {
        let number = lines[*at].number;
        if is_seq_item(&lines[*at].text) {
            return Err(format!(
                "line {number}: sequence item where a mapping key was expected"
            ));
        }
        let text = lines[*at].text.clone();
        let (key, rest) = split_key(&text)
            .ok_or_else(|| format!("line {number}: expected `key: value`, got {text:?}"))?;
        let key = match scalar(key).map_err(|e| format!("line {number}: {e}"))? {
            Yaml::Str(k) => k,
            _ => return Err(format!("line {number}: unsupported key {key:?}")),
        };
        if key == "<<" {
            return Err(format!("line {number}: merge keys are not supported"));
        }
        if entries.iter().any(|(k, _)| *k == key) {
            return Err(format!("line {number}: duplicate key {key:?}"));
        }
        *at += 1;
        let value = if rest.is_empty() {
            if *at < lines.len() && lines[*at].indent == indent && is_seq_item(&lines[*at].text) {
                parse_block(lines, at, indent)?
            } else {
                nested(lines, at, indent)?
            }
        } else {
            scalar(rest).map_err(|e| format!("line {number}: {e}"))?
        };
        entries.push((key, value));
    }
    if *at < lines.len() && lines[*at].indent > indent {
        return Err(format!(
            "line {}: unexpected indentation",
            lines[*at].number
        ));
    }
    Ok(Yaml::Map(entries))
}

/// The block indented under the previous line, or null if there is none.
fn nested(lines: &mut [Line], at: &mut usize, parent: usize) -> Result<Yaml, String> {
    if *at < lines.len() && lines[*at].indent > parent {
        let indent = lines[*at].indent;
        parse_block(lines, at, indent)
    } else {
        Ok(Yaml::Null)
    }
}

/// Splits `key: value` (or `key:`) at the first `:` outside quotes that is
/// followed by a space or the end of the line.
fn split_key(text: &str) -> Option<(&str, &str)> {
    let mut quote = None;
    let bytes = text.as_bytes();
    for (i, c) in text.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if (c == '"' || c == '\'') && i == 0 => quote = Some(c),
            None if c == ':' && (i + 1 == bytes.len() || bytes[i + 1] == b' ') => {
                return Some((text[..i].trim(), text[i + 1..].trim()));
            }
            None => {}
        }
    }
    None
}

fn scalar(text: &str) -> Result<Yaml, String> {
    let text = text.trim();
    match text.chars().next() {
        None => Ok(Yaml::Null),
        Some('&' | '*' | '!') => Err(format!(
            "anchors, aliases and tags are not supported: {text:?}"
        )),
        Some('{') => Err(format!("flow mappings are not supported: {text:?}")),
        Some('|' | '>') => Err(format!("block scalars are not supported: {text:?}")),
        Some('[') => {
            let inner = text
                .strip_prefix('[')
                .and_then(|t| t.strip_suffix(']'))
                .ok_or_else(|| format!("unterminated flow sequence: {text:?}"))?;
            let mut items = Vec::new();
            for part in split_flow(inner)? {
                if part.trim().starts_with('[') {
                    return Err(format!("nested flow sequences are not supported: {text:?}"));
                }
                items.push(scalar(&part)?);
            }
            Ok(Yaml::Seq(items))
        }
        Some('"') => {
            let inner = text
                .strip_prefix('"')
                .and_then(|t| t.strip_suffix('"'))
                .ok_or_else(|| format!("text after a quoted string: {text:?}"))?;
            let mut out = String::new();
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    match chars.next() {
                        Some('n') => out.push('\n'),
                        Some('t') => out.push('\t'),
                        Some(c @ ('"' | '\\' | '/')) => out.push(c),
                        other => return Err(format!("unsupported escape \\{other:?} in {text:?}")),
                    }
                } else if c == '"' {
                    return Err(format!("unescaped quote inside {text:?}"));
                } else {
                    out.push(c);
                }
            }
            Ok(Yaml::Str(out))
        }
        Some('\'') => {
            let inner = text
                .strip_prefix('\'')
                .and_then(|t| t.strip_suffix('\''))
                .ok_or_else(|| format!("text after a quoted string: {text:?}"))?;
            Ok(Yaml::Str(inner.replace("''", "'")))
        }
        Some(_) if text == "~" || text == "null" => Ok(Yaml::Null),
        Some(_) => Ok(Yaml::Str(text.to_string())),
    }
}

/// Splits the inside of a flow sequence at commas outside quotes.
fn split_flow(inner: &str) -> Result<Vec<String>, String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut quote = None;
    for c in inner.chars() {
        match quote {
            Some(q) if c == q => {
                quote = None;
                current.push(c);
            }
            Some(_) => current.push(c),
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                current.push(c);
            }
            None if c == ',' => parts.push(std::mem::take(&mut current)),
            None => current.push(c),
        }
    }
    if quote.is_some() {
        return Err(format!("unterminated quote in [{inner}]"));
    }
    if !current.trim().is_empty() || !parts.is_empty() {
        parts.push(current);
    }
    Ok(parts)
}

#[test]
fn the_yaml_reader_reads_what_compose_files_use_and_refuses_the_rest() {
    let doc = "\
# comment
a: plain value # trailing comment
b:
  - one
  - \"two # not a comment\"
  - key: 1
    other: 'it''s'
c: [\"x\", y, 'z, w']
d:
e:
- compact
";
    let y = parse_yaml(doc).unwrap();
    assert_eq!(y.get("a").unwrap().str(), Some("plain value"));
    let b = y.get("b").unwrap().items();
    assert_eq!(b[1].str(), Some("two # not a comment"));
    assert_eq!(b[2].get("key").unwrap().str(), Some("1"));
    assert_eq!(b[2].get("other").unwrap().str(), Some("it's"));
    let c: Vec<_> = y
        .get("c")
        .unwrap()
        .items()
        .iter()
        .map(|i| i.str().unwrap())
        .collect();
    assert_eq!(c, ["x", "y", "z, w"]);
    assert_eq!(y.get("d"), Some(&Yaml::Null));
    assert_eq!(y.get("e").unwrap().items()[0].str(), Some("compact"));
    for bad in [
        "a: &x 1\n",
        "a: *x\n",
        "a: {b: 1}\n",
        "a: |\n  text\n",
        "a: 1\na: 2\n",
        "a:\n  b: 1\n   c: 2\n",
        "<<: x\n",
    ] {
        assert!(parse_yaml(bad).is_err(), "accepted {bad:?}");
    }
}

// ---------------------------------------------------------------------------
// The compose file.

fn compose() -> Yaml {
    parse_yaml(&read("docker-compose.yml")).unwrap_or_else(|e| panic!("docker-compose.yml: {e}"))
}

fn service<'a>(compose: &'a Yaml, name: &str) -> &'a Yaml {
    compose
        .get("services")
        .and_then(|s| s.get(name))
        .unwrap_or_else(|| panic!("docker-compose.yml has no service {name:?}"))
}

/// A service's environment as a map, from either the mapping or the
/// `KEY=value` list form.
fn environment(service: &Yaml) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    match service.get("environment") {
        Some(Yaml::Map(entries)) => {
            for (k, v) in entries {
                env.insert(k.clone(), v.str().unwrap_or_default().to_string());
            }
        }
        Some(Yaml::Seq(items)) => {
            for item in items {
                let s = item.str().expect("environment item is a string");
                let (k, v) = s.split_once('=').unwrap_or((s, ""));
                env.insert(k.to_string(), v.to_string());
            }
        }
        _ => {}
    }
    env
}

/// A command as its words (exec form list, or a string split at spaces).
fn command(service: &Yaml) -> Vec<String> {
    match service.get("command") {
        Some(Yaml::Seq(items)) => items
            .iter()
            .map(|i| i.str().expect("command word").to_string())
            .collect(),
        Some(Yaml::Str(s)) => s.split_whitespace().map(String::from).collect(),
        _ => Vec::new(),
    }
}

/// Bind mounts (short syntax `./src:/target[:mode]`) as (source, target).
fn binds(service: &Yaml) -> Vec<(String, String)> {
    service
        .get("volumes")
        .map(|v| v.items())
        .unwrap_or_default()
        .iter()
        .filter_map(|v| v.str())
        .filter(|v| v.starts_with('.') || v.starts_with('/'))
        .map(|v| {
            let mut parts = v.split(':');
            (
                parts.next().unwrap().to_string(),
                parts.next().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// The default of a `${NAME:-default}` value, or the value itself.
fn resolved(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find('}')
            .map(|e| start + e)
            .expect("unterminated ${");
        let expr = &rest[start + 2..end];
        out.push_str(expr.split_once(":-").map_or("", |(_, default)| default));
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

const TIMEBUCKET_SERVICES: [&str; 3] = ["topics", "ingest", "worker"];

/// What `timebucket worker` reads from the environment, as the compose file
/// must set it.
const WORKER_VARIABLES: [&str; 8] = [
    "BOOTSTRAP_SERVERS",
    "CONSUMER_GROUP_ID",
    "INPUT_TOPIC",
    "SEC_METRICS_OUTPUT_TOPIC",
    "MIN_METRICS_OUTPUT_TOPIC",
    "OUTPUT_STREAM",
    "DEAD_LETTER_TOPIC",
    "PRINT_INTERVAL",
];

const TOPIC_VARIABLES: [&str; 5] = [
    "INPUT_TOPIC",
    "SEC_METRICS_OUTPUT_TOPIC",
    "MIN_METRICS_OUTPUT_TOPIC",
    "OUTPUT_STREAM",
    "DEAD_LETTER_TOPIC",
];

#[test]
fn the_services_are_there() {
    let c = compose();
    let top: Vec<&str> = c.keys();
    for key in &top {
        assert!(
            ["name", "services", "volumes", "networks"].contains(key) || key.starts_with("x-"),
            "unexpected top-level key {key:?}"
        );
    }
    let services = c.get("services").expect("services").keys();
    for name in ["kafka", "topics", "ingest", "worker", "kafka-ui"] {
        assert!(
            services.contains(&name),
            "service {name} missing (have {services:?})"
        );
    }
}

#[test]
fn images_are_pinned() {
    let c = compose();
    for (name, svc) in match c.get("services") {
        Some(Yaml::Map(entries)) => entries.clone(),
        _ => panic!("services is not a mapping"),
    } {
        let image = svc.get("image").and_then(Yaml::str);
        if svc.get("build").is_some() {
            // Built here; the image name is only a local tag.
            continue;
        }
        let image = image.unwrap_or_else(|| panic!("service {name} has neither image nor build"));
        assert!(
            !image.contains("${"),
            "{name}: image {image:?} depends on a variable"
        );
        let last = image.rsplit('/').next().unwrap();
        let tag = last
            .split_once(':')
            .map(|(_, t)| t)
            .unwrap_or_else(|| panic!("{name}: image {image:?} has no tag"));
        assert!(
            !tag.is_empty() && tag != "latest" && !tag.contains("latest"),
            "{name}: image {image:?} is not pinned"
        );
        assert!(
            tag.chars().any(|c| c.is_ascii_digit()),
            "{name}: tag {tag:?} names no version"
        );
    }
    let kafka = service(&c, "kafka")
        .get("image")
        .and_then(Yaml::str)
        .unwrap();
    assert!(
        kafka.starts_with("apache/kafka:4."),
        "broker image {kafka:?} is not apache/kafka 4.x"
    );
    let ui = service(&c, "kafka-ui")
        .get("image")
        .and_then(Yaml::str)
        .unwrap();
    assert!(
        ui.starts_with("kafbat/kafka-ui:") || ui.starts_with("provectuslabs/kafka-ui:"),
        "UI image {ui:?} is not kafka-ui"
    );
    for name in TIMEBUCKET_SERVICES {
        let svc = service(&c, name);
        assert_eq!(
            svc.get("build").and_then(Yaml::str),
            Some("."),
            "{name} builds the Dockerfile here"
        );
    }
}

#[test]
fn the_broker_runs_kraft_and_is_checked_for_health() {
    let c = compose();
    let kafka = service(&c, "kafka");
    let env = environment(kafka);
    assert!(
        env["KAFKA_PROCESS_ROLES"].contains("controller"),
        "KRaft: the broker is its own controller"
    );
    assert!(env.contains_key("KAFKA_CONTROLLER_QUORUM_VOTERS"));
    assert!(
        !env.keys().any(|k| k.contains("ZOOKEEPER")),
        "no ZooKeeper in KRaft mode"
    );
    assert_eq!(
        env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"], "false",
        "topics come from ./topics only"
    );
    let test = kafka
        .get("healthcheck")
        .and_then(|h| h.get("test"))
        .expect("kafka healthcheck");
    assert!(
        !test.items().is_empty(),
        "healthcheck test is a command list"
    );
    // Transactions (the worker's exactly-once mode) need these on one broker.
    assert_eq!(env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"], "1");
    assert_eq!(env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"], "1");
}

#[test]
fn the_worker_scales() {
    let c = compose();
    let worker = service(&c, "worker");
    for key in ["container_name", "ports", "hostname"] {
        assert!(
            worker.get(key).is_none(),
            "worker has {key}: `--scale worker=N` would clash"
        );
    }
    if let Some(replicas) = worker.get("deploy").and_then(|d| d.get("replicas")) {
        panic!("worker pins deploy.replicas to {replicas:?}; scale with --scale instead");
    }
    assert_eq!(command(worker).first().map(String::as_str), Some("worker"));
}

#[test]
fn the_worker_gets_every_variable_it_reads() {
    let c = compose();
    let env = environment(service(&c, "worker"));
    let main_rs = read("src/main.rs");
    for var in WORKER_VARIABLES {
        assert!(env.contains_key(var), "worker does not set {var}");
        assert!(
            !resolved(&env[var]).is_empty(),
            "worker sets {var} to nothing by default"
        );
        assert!(
            main_rs.contains(&format!("env = \"{var}\"")),
            "src/main.rs no longer reads {var}: update the compose file"
        );
    }
    for var in env.keys() {
        let known = main_rs.contains(&format!("env = \"{var}\"")) || var == "RUST_LOG";
        assert!(known, "worker sets {var}, which the CLI does not read");
    }
}

#[test]
fn topic_names_and_bootstrap_agree_across_services() {
    let c = compose();
    let kafka_env = environment(service(&c, "kafka"));
    let advertised = resolved(&kafka_env["KAFKA_ADVERTISED_LISTENERS"]);
    for var in TOPIC_VARIABLES {
        let values: Vec<(&str, String)> = TIMEBUCKET_SERVICES
            .iter()
            .filter_map(|s| {
                environment(service(&c, s))
                    .get(var)
                    .map(|v| (*s, v.clone()))
            })
            .collect();
        assert!(
            values.len() >= 2,
            "{var} is set in fewer than two services: {values:?}"
        );
        assert!(
            values.windows(2).all(|w| w[0].1 == w[1].1),
            "{var} differs between services: {values:?}"
        );
    }
    // The defaults are the names in ./topics.
    let worker_env = environment(service(&c, "worker"));
    let files = [
        ("INPUT_TOPIC", "input.properties"),
        ("SEC_METRICS_OUTPUT_TOPIC", "metrics-second.properties"),
        ("MIN_METRICS_OUTPUT_TOPIC", "metrics-minute.properties"),
        ("OUTPUT_STREAM", "frames-forward.properties"),
        ("DEAD_LETTER_TOPIC", "dead-letter.properties"),
    ];
    for (var, file) in files {
        let text = read(&format!("topics/{file}"));
        let name = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("name="))
            .map(str::trim);
        assert_eq!(
            Some(resolved(&worker_env[var]).as_str()),
            name,
            "{var} default vs topics/{file}"
        );
    }
    for s in TIMEBUCKET_SERVICES {
        let env = environment(service(&c, s));
        let bootstrap = resolved(
            env.get("BOOTSTRAP_SERVERS")
                .unwrap_or_else(|| panic!("{s} sets no BOOTSTRAP_SERVERS")),
        );
        assert!(
            advertised
                .split(',')
                .any(|l| l.ends_with(&format!("://{bootstrap}"))),
            "{s}: BOOTSTRAP_SERVERS={bootstrap} is not among the advertised listeners {advertised}"
        );
    }
    let ui_env = environment(service(&c, "kafka-ui"));
    let ui_bootstrap = &ui_env["KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS"];
    assert!(
        advertised.contains(&format!("://{ui_bootstrap}")),
        "UI bootstrap {ui_bootstrap} not advertised"
    );
}

#[test]
fn one_shot_jobs_run_in_order() {
    let c = compose();
    let condition = |svc: &str, on: &str| {
        service(&c, svc)
            .get("depends_on")
            .and_then(|d| d.get(on))
            .and_then(|d| d.get("condition"))
            .and_then(Yaml::str)
            .map(String::from)
    };
    assert_eq!(
        condition("topics", "kafka").as_deref(),
        Some("service_healthy")
    );
    assert_eq!(
        condition("kafka-ui", "kafka").as_deref(),
        Some("service_healthy")
    );
    assert_eq!(
        condition("ingest", "topics").as_deref(),
        Some("service_completed_successfully")
    );
    assert_eq!(
        condition("worker", "topics").as_deref(),
        Some("service_completed_successfully")
    );

    let topics = service(&c, "topics");
    assert_eq!(command(topics), ["topics", "--topics-dir", "/topics"]);
    assert!(
        binds(topics).contains(&("./topics".into(), "/topics".into())),
        "topics mounts ./topics at /topics"
    );
    assert_eq!(topics.get("restart").and_then(Yaml::str), Some("no"));

    let ingest = service(&c, "ingest");
    assert_eq!(command(ingest), ["ingest", "/data/stream.jsonl"]);
    assert!(
        binds(ingest).contains(&("./data".into(), "/data".into())),
        "ingest mounts ./data at /data"
    );
    assert_eq!(ingest.get("restart").and_then(Yaml::str), Some("no"));
}

#[test]
fn bind_mounts_stay_in_the_repository() {
    let c = compose();
    let Some(Yaml::Map(services)) = c.get("services") else {
        panic!("services")
    };
    for (name, svc) in services {
        for (source, target) in binds(svc) {
            assert!(
                source.starts_with("./"),
                "{name}: bind source {source:?} is not inside the repository"
            );
            assert!(
                !source.split('/').any(|p| p == ".."),
                "{name}: bind source {source:?} leaves the repository"
            );
            assert!(
                target.starts_with('/'),
                "{name}: bind target {target:?} is not absolute"
            );
            if source == "./data" {
                // The user's input; Docker creates the directory if it is missing.
                continue;
            }
            assert!(
                repo().join(&source).exists(),
                "{name}: bind source {source} does not exist"
            );
        }
    }
    let defs = std::fs::read_dir(repo().join("topics"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "properties")
        })
        .count();
    assert!(defs >= 5, "topics/ has {defs} definitions");
}

#[test]
fn the_ui_listens_on_9021() {
    let c = compose();
    let ports = service(&c, "kafka-ui")
        .get("ports")
        .expect("kafka-ui ports");
    let published: Vec<String> = ports
        .items()
        .iter()
        .filter_map(|p| p.str())
        .map(resolved)
        .collect();
    assert!(
        published.iter().any(|p| {
            let parts: Vec<&str> = p.split(':').collect();
            parts.len() >= 2 && parts[parts.len() - 2] == "9021"
        }),
        "no host port 9021 in {published:?}"
    );
}

#[test]
fn the_dockerfile_builds_and_runs_timebucket() {
    let dockerfile = read("Dockerfile");
    let froms: Vec<&str> = dockerfile
        .lines()
        .filter(|l| l.trim_start().starts_with("FROM "))
        .collect();
    assert!(froms.len() >= 2, "multi-stage build expected: {froms:?}");
    assert!(
        froms[0].contains("rust:1-bookworm"),
        "builder is rust:1-bookworm: {froms:?}"
    );
    assert!(
        froms.last().unwrap().contains("debian:bookworm-slim"),
        "runtime is debian:bookworm-slim: {froms:?}"
    );
    assert!(dockerfile.contains("ca-certificates"));
    assert!(dockerfile.contains("--locked"), "the build uses Cargo.lock");
    assert!(dockerfile.contains(r#"ENTRYPOINT ["timebucket"]"#));
    let ignore = read(".dockerignore");
    for entry in ["target", ".git", "data"] {
        assert!(
            ignore
                .lines()
                .any(|l| l.trim().trim_end_matches('/') == entry),
            ".dockerignore lacks {entry}"
        );
    }
    // What the build copies must not be ignored.
    for needed in ["src", "Cargo.toml", "Cargo.lock", "topics"] {
        assert!(
            !ignore
                .lines()
                .any(|l| l.trim().trim_end_matches('/') == needed),
            ".dockerignore drops {needed}"
        );
    }
}

/// Runs `config --quiet` with a real compose implementation where one works;
/// otherwise says so and passes (the structural checks above still ran).
#[test]
fn a_compose_implementation_accepts_the_file_if_there_is_one() {
    let file = repo().join("docker-compose.yml");
    let candidates: [(&str, &[&str]); 2] = [("docker", &["compose"]), ("docker-compose", &[])];
    for (program, prefix) in candidates {
        let probe = Command::new(program).args(prefix).arg("version").output();
        if !probe.as_ref().is_ok_and(|o| o.status.success()) {
            continue;
        }
        let out = Command::new(program)
            .args(prefix)
            .args(["--file"])
            .arg(&file)
            .args(["--profile", "ingest", "config", "--quiet"])
            .current_dir(repo())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{program} config: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    eprintln!("no docker compose implementation here: structural checks only");
}
