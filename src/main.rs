//! The `timebucket` binary: clap subcommands, logging setup, and the mapping
//! of library errors to exit codes. All real work lives in the library.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use timebucket::aggregate::{aggregate, AggregateOptions};
use timebucket::bucket::{Routing, DEFAULT_BUCKET_SECS};
use timebucket::frame::{default_max_ts, FrameParser, DEFAULT_MAX_FRAME_BYTES, DEFAULT_MIN_TS};

#[derive(Parser)]
#[command(name = "timebucket", version, about = "Exact per-second and per-minute metrics over Kafka, partitioned by time bucket")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write realistic challenge-like frames (deterministic by seed).
    Generate(GenerateArgs),
    /// Count windows offline from a file or stdin, with no Kafka.
    Aggregate(AggregateArgs),
}

/// Window and parser options shared by `aggregate` and `worker`.
#[derive(Args, Clone, Debug)]
struct WindowArgs {
    /// Allowed lateness in seconds: watermark = largest ts seen - lateness.
    #[arg(short = 'L', long, env = "LATENESS", default_value_t = 5)]
    lateness: u64,
    /// Time-bucket length in seconds (a multiple of 60).
    #[arg(long, env = "BUCKET_SECONDS", default_value_t = DEFAULT_BUCKET_SECS)]
    bucket_seconds: u64,
    /// Smallest accepted ts.
    #[arg(long, env = "MIN_TS", default_value_t = DEFAULT_MIN_TS)]
    min_ts: u64,
    /// Largest accepted ts [default: now + 1 day].
    #[arg(long, env = "MAX_TS")]
    max_ts: Option<u64>,
    /// Largest accepted frame in bytes.
    #[arg(long, env = "MAX_FRAME_BYTES", default_value_t = DEFAULT_MAX_FRAME_BYTES)]
    max_frame_bytes: usize,
}

impl WindowArgs {
    fn parser(&self) -> FrameParser {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let mut parser = FrameParser::new(self.min_ts, self.max_ts.unwrap_or_else(|| default_max_ts(now)));
        parser.max_frame_bytes = self.max_frame_bytes;
        parser
    }
}

#[derive(Args)]
struct GenerateArgs {
    /// Number of frames.
    #[arg(short = 'c', long, default_value_t = 1000)]
    count: u64,
    /// Frames per second on average.
    #[arg(short = 'r', long, default_value_t = 1000)]
    rate: u32,
    /// Pool of distinct users.
    #[arg(short = 'n', long, default_value_t = 100_000)]
    users: u32,
    /// Random seed: same seed, same bytes.
    #[arg(short = 's', long, default_value_t = 1)]
    seed: u64,
    /// Target frame size in bytes.
    #[arg(short = 'l', long, default_value_t = 2048)]
    length: usize,
    /// Maximum delay in seconds of a delayed frame.
    #[arg(short = 'd', long, default_value_t = 0)]
    max_delay: u32,
    /// Percent of frames delayed by 1..=max-delay seconds.
    #[arg(short = 'p', long, default_value_t = 0.0)]
    delay_percent: f64,
    /// First ts.
    #[arg(long, default_value_t = 1_468_244_384)]
    start: u64,
    /// Output file [default: stdout].
    #[arg(short = 'o', long)]
    output: Option<std::path::PathBuf>,
}

#[derive(Args)]
struct AggregateArgs {
    /// Input file (`-` for stdin; `.gz` is decompressed).
    #[arg(default_value = "-")]
    input: String,
    /// Number of input partitions to route buckets over (as the input topic has).
    #[arg(short = 'P', long, env = "PARTITIONS", default_value_t = 8)]
    partitions: u32,
    #[command(flatten)]
    window: WindowArgs,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            let code = e.downcast_ref::<timebucket::Error>().map_or(1, |e| e.exit_code());
            ExitCode::from(code as u8)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Generate(args) => generate(args),
        Command::Aggregate(args) => run_aggregate(args),
    }
}

fn generate(args: GenerateArgs) -> anyhow::Result<()> {
    use timebucket::generate::{generate, GenerateOptions};
    let opts = GenerateOptions {
        count: args.count,
        rate: args.rate,
        users: args.users,
        seed: args.seed,
        frame_len: args.length,
        max_delay: args.max_delay,
        delay_percent: args.delay_percent,
        start: args.start,
    };
    let started = Instant::now();
    let summary = match &args.output {
        Some(path) => {
            let file = std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
            generate(&opts, file)
        }
        None => generate(&opts, std::io::stdout().lock()),
    }
    .context("cannot write frames")?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "generated {} frames, {} bytes, ts {}..{} in {:.2}s ({:.0} MB/s)",
        summary.frames,
        summary.bytes,
        summary.first_ts,
        summary.last_ts,
        secs,
        summary.bytes as f64 / 1e6 / secs.max(1e-9)
    );
    Ok(())
}

fn run_aggregate(args: AggregateArgs) -> anyhow::Result<()> {
    let opts = AggregateOptions {
        routing: Routing::new(args.window.bucket_seconds, args.partitions)?,
        lateness: args.window.lateness,
        parser: args.window.parser(),
        log_invalid: 20,
    };
    let input = timebucket::input::open(&args.input)?;
    let started = Instant::now();
    let summary = aggregate(input, std::io::stdout().lock(), &opts)?;
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    let mut err = std::io::stderr().lock();
    writeln!(
        err,
        "aggregate: {} lines, {} valid frames, {} blank, {} invalid ({})\n\
         late frames: {} for their second, {} for their minute\n\
         emitted: {} seconds, {} minutes\n\
         {:.2}s, {:.0} frames/s, {:.0} MB/s",
        summary.lines,
        summary.valid,
        summary.blank,
        summary.invalid_total(),
        summary.invalid_breakdown(),
        summary.late.seconds,
        summary.late.minutes,
        summary.seconds_emitted,
        summary.minutes_emitted,
        secs,
        summary.valid as f64 / secs,
        summary.bytes as f64 / 1e6 / secs,
    )?;
    Ok(())
}
