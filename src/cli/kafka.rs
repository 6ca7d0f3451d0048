//! Options every Kafka command shares: where the cluster is, how to talk to
//! it, and the names of the pipeline's topics.

use clap::Args;

use crate::error::Error;
use crate::kafka::config::{parse_property, KafkaSettings, TopicNames, DEFAULT_BOOTSTRAP};

/// Where the cluster is and how to talk to it.
#[derive(Args, Clone, Debug)]
pub struct ClusterArgs {
    /// Kafka bootstrap servers.
    #[arg(short = 'b', long, env = "BOOTSTRAP_SERVERS", default_value = DEFAULT_BOOTSTRAP)]
    pub bootstrap_servers: String,
    /// Any librdkafka property, e.g. -X linger.ms=50 (repeatable).
    #[arg(short = 'X', value_name = "KEY=VALUE")]
    pub properties: Vec<String>,
}

impl ClusterArgs {
    pub fn settings(&self) -> Result<KafkaSettings, Error> {
        let mut settings = KafkaSettings::new(&self.bootstrap_servers);
        for p in &self.properties {
            settings.properties.push(parse_property(p)?);
        }
        Ok(settings)
    }
}

/// The cluster and the topic names of one pipeline.
#[derive(Args, Clone, Debug)]
pub struct KafkaArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Input topic (frames partitioned by time bucket).
    #[arg(long, env = "INPUT_TOPIC", default_value = "frames")]
    pub input_topic: String,
    /// Per-second metrics topic.
    #[arg(
        long,
        env = "SEC_METRICS_OUTPUT_TOPIC",
        default_value = "metrics-second"
    )]
    pub seconds_topic: String,
    /// Per-minute metrics topic.
    #[arg(
        long,
        env = "MIN_METRICS_OUTPUT_TOPIC",
        default_value = "metrics-minute"
    )]
    pub minutes_topic: String,
    /// Topic that forwarded frames go to.
    #[arg(long, env = "OUTPUT_STREAM", default_value = "frames-forward")]
    pub output_stream: String,
    /// Dead-letter topic for invalid frames.
    #[arg(long, env = "DEAD_LETTER_TOPIC", default_value = "frames-dead-letter")]
    pub dead_letter_topic: String,
}

impl KafkaArgs {
    pub fn settings(&self) -> Result<KafkaSettings, Error> {
        self.cluster.settings()
    }

    pub fn topics(&self) -> TopicNames {
        TopicNames {
            input: self.input_topic.clone(),
            seconds: self.seconds_topic.clone(),
            minutes: self.minutes_topic.clone(),
            forward: self.output_stream.clone(),
            dead_letter: self.dead_letter_topic.clone(),
        }
    }
}
