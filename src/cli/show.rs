//! `timebucket show`: options and output format.

use std::io::Write;

use clap::Args;

use super::KafkaArgs;
use crate::cmd::show::{print_table, read_windows};
use crate::error::Error;

#[derive(Args, Debug)]
pub struct ShowArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Show the per-second topic instead of the per-minute one.
    #[arg(long)]
    pub seconds: bool,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
}

impl ShowArgs {
    pub fn run(self) -> Result<(), Error> {
        let topics = self.kafka.topics();
        let topic = if self.seconds {
            &topics.seconds
        } else {
            &topics.minutes
        };
        let windows = read_windows(&self.kafka.connect()?, topic)?;
        let mut out = std::io::stdout().lock();
        if self.json {
            for record in windows.values() {
                writeln!(out, "{}", record.to_json()).map_err(Error::Output)?;
            }
            Ok(())
        } else {
            print_table(&windows, &mut out).map_err(Error::Output)
        }
    }
}
