//! `timebucket dashboard`: options, signals, and the hand-over to
//! [`crate::cmd::dashboard::run`].

use clap::Args;

use super::KafkaArgs;
use crate::cmd::dashboard::{run, DashboardOptions};
use crate::error::Error;

#[derive(Args, Debug)]
pub struct DashboardArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Serve the page on http://HOST:PORT/ (port 0 picks a free one, logged).
    #[arg(long, env = "DASHBOARD_ADDR", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// The workers' late topic, whose records the page counts as late frames
    /// (without it the page shows no late count).
    #[arg(long, env = "LATE_TOPIC")]
    pub late_topic: Option<String>,
}

impl DashboardArgs {
    pub fn run(self) -> Result<(), Error> {
        let stop = super::stop_on_signals()?;
        let opts = DashboardOptions {
            settings: self.kafka.settings()?,
            topics: self.kafka.topics(),
            late_topic: self.late_topic,
            listen: self.listen,
        };
        run(opts, stop)
    }
}
