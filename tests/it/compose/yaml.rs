//! The compose files as YAML trees (read with yaml-rust2) and the lookups
//! the compose checks share: a service, its environment, command, bind
//! mounts and healthcheck, and `${NAME:-default}` values resolved.

use std::collections::BTreeMap;
use std::path::PathBuf;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

// ---------------------------------------------------------------------------
// The YAML tree, read with yaml-rust2. Scalars are kept as the text they
// stand for (`1`, `"1"` and `'1'` alike), as compose reads environment
// values and ports.

#[derive(Debug, Clone, PartialEq)]
pub enum Yaml {
    Null,
    Str(String),
    Seq(Vec<Yaml>),
    Map(Vec<(String, Yaml)>),
}

impl Yaml {
    pub fn get(&self, key: &str) -> Option<&Yaml> {
        match self {
            Yaml::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn str(&self) -> Option<&str> {
        match self {
            Yaml::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn keys(&self) -> Vec<&str> {
        match self {
            Yaml::Map(entries) => entries.iter().map(|(k, _)| k.as_str()).collect(),
            _ => Vec::new(),
        }
    }

    pub fn items(&self) -> &[Yaml] {
        match self {
            Yaml::Seq(items) => items,
            _ => &[],
        }
    }
}

pub fn parse_yaml(source: &str) -> Result<Yaml, String> {
    let docs = yaml_rust2::YamlLoader::load_from_str(source).map_err(|e| e.to_string())?;
    match docs.as_slice() {
        [doc] => convert(doc),
        _ => Err(format!("{} YAML documents, expected one", docs.len())),
    }
}

pub fn convert(y: &yaml_rust2::Yaml) -> Result<Yaml, String> {
    use yaml_rust2::Yaml as Y;
    Ok(match y {
        Y::Null => Yaml::Null,
        Y::String(s) | Y::Real(s) => Yaml::Str(s.clone()),
        Y::Integer(i) => Yaml::Str(i.to_string()),
        Y::Boolean(b) => Yaml::Str(b.to_string()),
        Y::Array(items) => Yaml::Seq(items.iter().map(convert).collect::<Result<_, _>>()?),
        Y::Hash(map) => Yaml::Map(
            map.iter()
                .map(|(k, v)| {
                    Ok((
                        convert(k)?
                            .str()
                            .ok_or("a key that is not a scalar")?
                            .to_string(),
                        convert(v)?,
                    ))
                })
                .collect::<Result<_, String>>()?,
        ),
        Y::Alias(_) | Y::BadValue => return Err(format!("unsupported YAML node {y:?}")),
    })
}

#[test]
fn yaml_scalars_read_as_text() {
    let y = parse_yaml("a: 1\nb: '1'\nc: [x, \"y # z\"]\nd:\n").unwrap();
    assert_eq!(y.get("a").unwrap().str(), Some("1"));
    assert_eq!(y.get("b").unwrap().str(), Some("1"));
    let c: Vec<_> = y
        .get("c")
        .unwrap()
        .items()
        .iter()
        .map(|i| i.str().unwrap())
        .collect();
    assert_eq!(c, ["x", "y # z"]);
    assert_eq!(y.get("d"), Some(&Yaml::Null));
    assert!(parse_yaml("a: [1\n").is_err());
}

// ---------------------------------------------------------------------------
// The compose file.

pub fn compose() -> Yaml {
    parse_yaml(&read("docker-compose.yml")).unwrap_or_else(|e| panic!("docker-compose.yml: {e}"))
}

pub fn service<'a>(compose: &'a Yaml, name: &str) -> &'a Yaml {
    compose
        .get("services")
        .and_then(|s| s.get(name))
        .unwrap_or_else(|| panic!("docker-compose.yml has no service {name:?}"))
}

/// A service's environment as a map, from either the mapping or the
/// `KEY=value` list form.
pub fn environment(service: &Yaml) -> BTreeMap<String, String> {
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
pub fn command(service: &Yaml) -> Vec<String> {
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
pub fn binds(service: &Yaml) -> Vec<(String, String)> {
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
pub fn resolved(value: &str) -> String {
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

/// The port of a `HOST:PORT` value.
pub fn port_of(addr: &str) -> &str {
    addr.rsplit(':').next().unwrap()
}

/// A service's healthcheck command as words.
pub fn healthcheck(service: &Yaml) -> Vec<String> {
    service
        .get("healthcheck")
        .and_then(|h| h.get("test"))
        .map(|t| {
            t.items()
                .iter()
                .filter_map(Yaml::str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// The container path where `service` mounts the repository's `source`.
pub fn mounted_at(service: &Yaml, source: &str) -> String {
    binds(service)
        .into_iter()
        .find(|(s, _)| s == source)
        .map(|(_, target)| target)
        .unwrap_or_else(|| panic!("{source} is not mounted"))
}

pub fn read_yaml(path: &str) -> Yaml {
    parse_yaml(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}
