//! Client configuration shared by every Kafka client of timebucket: the
//! bootstrap address, user `-X key=value` librdkafka properties (applied last,
//! so users can override any default for security or tuning), and topic names.

use rdkafka::config::ClientConfig;

use crate::error::Error;

pub const DEFAULT_BOOTSTRAP: &str = "127.0.0.1:9092";

/// Where the cluster is and how to talk to it.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    pub bootstrap: String,
    /// librdkafka properties from `-X key=value`, applied after our defaults.
    pub properties: Vec<(String, String)>,
}

impl KafkaSettings {
    pub fn new(bootstrap: impl Into<String>) -> Self {
        KafkaSettings {
            bootstrap: bootstrap.into(),
            properties: Vec::new(),
        }
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
}

/// Parses one `-X key=value` argument.
pub fn parse_property(arg: &str) -> Result<(String, String), Error> {
    match arg.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(Error::Config(format!(
            "expected key=value for -X, got {arg:?}"
        ))),
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
}

impl Default for TopicNames {
    fn default() -> Self {
        TopicNames {
            input: "frames".into(),
            seconds: "metrics-second".into(),
            minutes: "metrics-minute".into(),
            forward: "frames-forward".into(),
            dead_letter: "frames-dead-letter".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
