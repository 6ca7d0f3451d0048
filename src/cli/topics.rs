//! `timebucket topics`: options; the work is in [`crate::kafka::topics`].

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::KafkaArgs;
use crate::error::Error;
use crate::kafka::topics::{
    apply_overrides, ensure_topics, load_specs, repartition_input, Overrides, ROLE_INPUT,
    ROLE_PARTIALS,
};

#[derive(Args, Debug)]
pub struct TopicsArgs {
    /// Directory of topic definitions (*.properties, see topics/README.md).
    #[arg(long, env = "TOPICS_DIR", default_value = "topics")]
    pub topics_dir: PathBuf,
    /// Partition count of the input topic [default: from its definition].
    #[arg(long, env = "INPUT_PARTITIONS")]
    pub input_partitions: Option<u32>,
    /// Replication factor of every topic, e.g. 3 on a 3-broker cluster [default: from the definitions].
    #[arg(long, env = "REPLICATION_FACTOR")]
    pub replication_factor: Option<u16>,
    /// Seconds to wait for the cluster: each request, and new topics to show up.
    #[arg(long, env = "TOPICS_TIMEOUT_SECS", default_value_t = 60)]
    pub timeout_secs: u64,
    /// Raise the input topic's partition count to --input-partitions (or
    /// its definition's) even though it is in use: frames already in it
    /// were routed by the old count (see docs/semantics.md, "Partition count").
    #[arg(long, env = "ALLOW_REPARTITION")]
    pub allow_repartition: bool,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Name of the partials topic (role partials; sharded buckets).
    #[arg(long, env = "PARTIALS_TOPIC", default_value = "metrics-partials")]
    pub partials_topic: String,
}

impl TopicsArgs {
    pub fn run(self) -> Result<(), Error> {
        let mut specs = load_specs(&self.topics_dir)?;
        let overrides = Overrides {
            input_partitions: self.input_partitions,
            replication: self.replication_factor,
            ..Overrides::from_names(&self.kafka.topics()).name(ROLE_PARTIALS, &self.partials_topic)
        };
        apply_overrides(&mut specs, &overrides)?;
        let settings = self.kafka.connect()?;
        let timeout = Duration::from_secs(self.timeout_secs.max(1));
        if let Some(input) = specs.iter().find(|s| s.role == ROLE_INPUT) {
            if let Some((before, after)) =
                repartition_input(&settings, input, self.allow_repartition, timeout)?
            {
                println!("repartitioned {} from {before} to {after}", input.name);
            }
        }
        let report = ensure_topics(&settings, &specs, timeout)?;
        print!("{report}");
        report.check()
    }
}
