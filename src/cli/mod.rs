//! The command line: clap definitions of every subcommand, their options and
//! the environment variables that set them, and the dispatch to the jobs in
//! [`crate::cmd`]. It lives in the library so that tests (and `loadtest`,
//! which starts workers) can read the definitions instead of copying them.

mod aggregate;
mod dashboard;
mod generate;
mod health;
mod ingest;
mod kafka;
mod loadtest;
mod merge;
mod observe;
mod shards;
mod show;
mod topics;
mod window;
mod worker;

use clap::{CommandFactory, Parser, Subcommand};

pub use aggregate::AggregateArgs;
pub use dashboard::DashboardArgs;
pub use generate::GenerateArgs;
pub use health::HealthArgs;
pub use ingest::IngestArgs;
pub use kafka::{ClusterArgs, KafkaArgs};
pub use loadtest::LoadtestArgs;
pub use merge::MergeArgs;
pub use observe::MetricsArgs;
pub use shards::ShardArgs;
pub use show::ShowArgs;
pub use topics::TopicsArgs;
pub use window::WindowArgs;
pub use worker::WorkerArgs;

use crate::error::Error;

#[derive(Parser, Debug)]
#[command(
    name = "timebucket",
    version,
    about = "Exact per-second and per-minute metrics over Kafka, partitioned by time bucket"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Write realistic challenge-like frames (deterministic by seed).
    Generate(GenerateArgs),
    /// Count windows offline from a file or stdin, with no Kafka.
    Aggregate(AggregateArgs),
    /// Produce frames to the input topic, partitioned by time bucket.
    Ingest(IngestArgs),
    /// Join the consumer group and emit per-second and per-minute metrics.
    Worker(WorkerArgs),
    /// Sum the shards' partial windows of sharded buckets (--shards above 1)
    /// into exact windows, once every shard closed them.
    Merge(MergeArgs),
    /// Print the windows on a metric topic as a table.
    Show(ShowArgs),
    /// Serve a live web page: distinct users per minute, frames per second,
    /// invalid and late counts, read from the topics (read_committed).
    Dashboard(DashboardArgs),
    /// Exit 0 if a URL (a worker's /readyz by default) answers 2xx: a
    /// container health check that needs no curl.
    Health(HealthArgs),
    /// Create the topics defined in --topics-dir that are missing; check the
    /// existing ones and exit 6 if any differs from its definition.
    Topics(TopicsArgs),
    /// Measure ingest and workers on the broker for every partition and
    /// worker count, beside Kafka's own perf tools, and check every window
    /// against aggregate (see BENCHMARKS.md).
    Loadtest(LoadtestArgs),
}

impl Command {
    /// The subcommand's name, as typed.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Generate(_) => "generate",
            Command::Aggregate(_) => "aggregate",
            Command::Ingest(_) => "ingest",
            Command::Worker(_) => "worker",
            Command::Merge(_) => "merge",
            Command::Show(_) => "show",
            Command::Dashboard(_) => "dashboard",
            Command::Health(_) => "health",
            Command::Topics(_) => "topics",
            Command::Loadtest(_) => "loadtest",
        }
    }
}

/// Runs the chosen job.
pub fn run(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Generate(args) => args.run(),
        Command::Aggregate(args) => args.run(),
        Command::Ingest(args) => args.run(),
        Command::Worker(args) => args.run(),
        Command::Merge(args) => args.run(),
        Command::Show(args) => args.run(),
        Command::Dashboard(args) => args.run(),
        Command::Health(args) => args.run(),
        Command::Topics(args) => args.run(),
        Command::Loadtest(args) => args.run(),
    }
}

/// The environment variables that `subcommand` reads, in definition order.
pub fn env_vars(subcommand: &str) -> Vec<String> {
    let cli = Cli::command();
    let Some(sub) = cli.find_subcommand(subcommand) else {
        return Vec::new();
    };
    sub.get_arguments()
        .filter_map(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .collect()
}

/// A flag that SIGINT and SIGTERM set, for a job that stops cleanly.
fn stop_on_signals() -> Result<std::sync::Arc<std::sync::atomic::AtomicBool>, Error> {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone()).map_err(|source| Error::System {
            what: "install a signal handler".into(),
            source,
        })?;
    }
    Ok(stop)
}

/// Names the input in read errors, which the library reports as "input".
fn name_input(path: &str) -> impl Fn(Error) -> Error + '_ {
    move |e| match e {
        Error::Input { reason, .. } => Error::Input {
            path: path.into(),
            reason,
        },
        e => e,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    /// One variable means one option everywhere: the same long option in
    /// every subcommand that reads it, and never two options of one
    /// subcommand.
    #[test]
    fn environment_variables_are_consistent() {
        let cli = Cli::command();
        let mut option_of: BTreeMap<String, String> = BTreeMap::new();
        for sub in cli.get_subcommands() {
            let mut seen = Vec::new();
            for arg in sub.get_arguments() {
                let Some(env) = arg.get_env() else { continue };
                let env = env.to_string_lossy().into_owned();
                assert!(
                    !seen.contains(&env),
                    "{}: two options read {env}",
                    sub.get_name()
                );
                seen.push(env.clone());
                let long = arg.get_long().unwrap_or_default().to_string();
                let first = option_of.entry(env.clone()).or_insert_with(|| long.clone());
                assert_eq!(
                    *first,
                    long,
                    "{env} sets --{first} in one subcommand and --{long} in {}",
                    sub.get_name()
                );
            }
        }
        // The original app's variables, which its users already set.
        for var in [
            "BOOTSTRAP_SERVERS",
            "CONSUMER_GROUP_ID",
            "INPUT_TOPIC",
            "SEC_METRICS_OUTPUT_TOPIC",
            "MIN_METRICS_OUTPUT_TOPIC",
            "OUTPUT_STREAM",
            "PRINT_INTERVAL",
        ] {
            assert!(
                env_vars("worker").iter().any(|v| v == var),
                "worker ignores {var}"
            );
        }
        for sub in ["ingest", "show", "topics", "loadtest", "dashboard"] {
            assert!(
                env_vars(sub).iter().any(|v| v == "BOOTSTRAP_SERVERS"),
                "{sub} ignores BOOTSTRAP_SERVERS"
            );
        }
    }

    #[test]
    fn options_come_from_the_environment_and_flags_win() {
        // Parsing with explicit values (try_parse_from reads the process
        // environment too, which tests must not depend on).
        let cli = Cli::try_parse_from([
            "timebucket",
            "worker",
            "-b",
            "h:1",
            "-g",
            "g1",
            "--input-topic",
            "in",
            "-X",
            "linger.ms=7",
        ])
        .unwrap();
        let Command::Worker(w) = cli.command else {
            panic!("not a worker")
        };
        assert_eq!(w.kafka.cluster.bootstrap_servers.as_deref(), Some("h:1"));
        assert_eq!(w.group, "g1");
        assert_eq!(w.kafka.topics().input, "in");
        let settings = w.kafka.settings().unwrap();
        assert_eq!(settings.properties, vec![("linger.ms".into(), "7".into())]);
    }
}
