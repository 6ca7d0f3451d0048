//! Options every Kafka command shares: where the cluster is, how to talk to
//! it, and the names of the pipeline's topics.

use std::path::Path;
use std::time::Duration;

use clap::Args;

use crate::error::Error;
use crate::kafka::config::{
    arg_properties, env_properties, read_properties_file, KafkaSettings, TopicNames,
};
use crate::kafka::producer::{check_commit_interval, transaction_timeout};

/// Where the cluster is and how to talk to it. Client properties come from
/// `-F` (lowest precedence), then `TIMEBUCKET_CLIENT_*` variables, then `-X`
/// (see [`crate::kafka::config`]).
#[derive(Args, Clone, Debug)]
pub struct ClusterArgs {
    /// Kafka bootstrap servers [default: bootstrap.servers from -F or
    /// TIMEBUCKET_CLIENT_BOOTSTRAP_SERVERS, else 127.0.0.1:9092].
    #[arg(short = 'b', long, env = "BOOTSTRAP_SERVERS")]
    pub bootstrap_servers: Option<String>,
    /// librdkafka properties from a file: key=value lines, # comments, as
    /// kcat -F reads (security settings and secrets belong here, mode 600).
    /// Environment variables TIMEBUCKET_CLIENT_<NAME> (e.g.
    /// TIMEBUCKET_CLIENT_SASL_PASSWORD) override it, -X overrides both.
    #[arg(
        short = 'F',
        long,
        env = "KAFKA_CLIENT_PROPERTIES",
        value_name = "FILE"
    )]
    pub client_properties: Option<String>,
    /// Any librdkafka property, e.g. -X linger.ms=50 (repeatable). Shown by
    /// ps to every user: never a password here (use -F or the environment).
    #[arg(short = 'X', value_name = "KEY=VALUE")]
    pub properties: Vec<String>,
}

impl ClusterArgs {
    /// The settings from the properties file, the environment and the
    /// command line; no contact with the cluster yet.
    pub fn settings(&self) -> Result<KafkaSettings, Error> {
        // An empty value (`KAFKA_CLIENT_PROPERTIES=` in a compose file) is
        // no value.
        let given = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
        let file = match given(&self.client_properties) {
            Some(path) => read_properties_file(Path::new(&path))?,
            None => Vec::new(),
        };
        KafkaSettings::from_sources(
            file,
            env_properties(std::env::vars())?,
            given(&self.bootstrap_servers).as_deref(),
            arg_properties(&self.properties)?,
        )
    }

    /// [`ClusterArgs::settings`], then one request to the cluster that fails
    /// fast, naming the cause, if it refuses this client (see
    /// [`crate::kafka::connect`]).
    pub fn connect(&self) -> Result<KafkaSettings, Error> {
        let settings = self.settings()?;
        crate::kafka::connect::check(&settings)?;
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
    /// Ingest's progress topic (compacted): where each source file has got to.
    #[arg(long, env = "INGEST_PROGRESS_TOPIC", default_value = "ingest-progress")]
    pub progress_topic: String,
}

impl KafkaArgs {
    pub fn settings(&self) -> Result<KafkaSettings, Error> {
        self.cluster.settings()
    }

    /// See [`ClusterArgs::connect`].
    pub fn connect(&self) -> Result<KafkaSettings, Error> {
        self.cluster.connect()
    }

    /// [`KafkaArgs::connect`] for a job that commits a transaction every
    /// `interval` (`None`: no transactions): first, with no contact yet,
    /// refuses an interval that cannot fit the transaction timeout (the
    /// user's `transaction.timeout.ms`, else `default_timeout_ms`), naming
    /// `flag` ([`check_commit_interval`]).
    pub fn connect_committing(
        &self,
        flag: &str,
        interval: Option<Duration>,
        default_timeout_ms: u64,
    ) -> Result<KafkaSettings, Error> {
        let settings = self.settings()?;
        if let Some(interval) = interval {
            let timeout = transaction_timeout(&settings, default_timeout_ms)?;
            check_commit_interval(flag, interval, timeout)?;
        }
        crate::kafka::connect::check(&settings)?;
        Ok(settings)
    }

    pub fn topics(&self) -> TopicNames {
        TopicNames {
            input: self.input_topic.clone(),
            seconds: self.seconds_topic.clone(),
            minutes: self.minutes_topic.clone(),
            forward: self.output_stream.clone(),
            dead_letter: self.dead_letter_topic.clone(),
            progress: self.progress_topic.clone(),
        }
    }
}
