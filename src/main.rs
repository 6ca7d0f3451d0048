//! The `timebucket` binary: logging setup, the command line (defined in
//! [`timebucket::cli`]), and the mapping of errors to exit codes that
//! scripts rely on (see `Error::exit_code`).

use std::process::ExitCode;

use clap::Parser;
use timebucket::cli::Cli;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let job = cli.command.name();
    match timebucket::cli::run(cli).map_err(|e| anyhow::Error::new(e).context(job)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Not `{e:#}`: the errors quote their sources' text already.
            eprintln!("error: {}", timebucket::error::report(e.as_ref()));
            let code = e
                .downcast_ref::<timebucket::Error>()
                .map_or(1, |e| e.exit_code());
            ExitCode::from(code as u8)
        }
    }
}
