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
#[command(
    name = "timebucket",
    version,
    about = "Exact per-second and per-minute metrics over Kafka, partitioned by time bucket"
)]
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
    /// Produce frames to the input topic, partitioned by time bucket.
    Ingest(IngestArgs),
    /// Join the consumer group and emit per-second and per-minute metrics.
    Worker(WorkerArgs),
    /// Print the windows on a metric topic as a table.
    Show(ShowArgs),
    /// Create the topics defined in --topics-dir that are missing; check the
    /// existing ones and exit 6 if any differs from its definition.
    Topics(TopicsArgs),
    /// Measure ingest and workers on the broker for every partition and
    /// worker count, beside Kafka's own perf tools, and check every window
    /// against aggregate (see BENCHMARKS.md).
    Loadtest(LoadtestArgs),
}

#[derive(Args)]
struct TopicsArgs {
    /// Directory of topic definitions (*.properties, see topics/README.md).
    #[arg(long, env = "TOPICS_DIR", default_value = "topics")]
    topics_dir: std::path::PathBuf,
    /// Partition count of the input topic [default: from its definition].
    #[arg(long, env = "INPUT_PARTITIONS")]
    input_partitions: Option<u32>,
    /// Replication factor of every topic, e.g. 3 on a 3-broker cluster [default: from the definitions].
    #[arg(long, env = "REPLICATION_FACTOR")]
    replication_factor: Option<u16>,
    /// Seconds to wait for the cluster: each request, and new topics to show up.
    #[arg(long, env = "TOPICS_TIMEOUT_SECS", default_value_t = 60)]
    timeout_secs: u64,
    #[command(flatten)]
    kafka: KafkaArgs,
}

#[derive(Args)]
struct ShowArgs {
    #[command(flatten)]
    kafka: KafkaArgs,
    /// Show the per-second topic instead of the per-minute one.
    #[arg(long)]
    seconds: bool,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    json: bool,
}

/// Where the cluster is, how to talk to it, and the topic names.
#[derive(Args, Clone, Debug)]
struct KafkaArgs {
    /// Kafka bootstrap servers.
    #[arg(short = 'b', long, env = "BOOTSTRAP_SERVERS", default_value = timebucket::kafka::config::DEFAULT_BOOTSTRAP)]
    bootstrap_servers: String,
    /// Any librdkafka property, e.g. -X security.protocol=SASL_SSL (repeatable).
    #[arg(short = 'X', value_name = "KEY=VALUE")]
    properties: Vec<String>,
    /// Input topic (frames partitioned by time bucket).
    #[arg(long, env = "INPUT_TOPIC", default_value = "frames")]
    input_topic: String,
    /// Per-second metrics topic.
    #[arg(
        long,
        env = "SEC_METRICS_OUTPUT_TOPIC",
        default_value = "metrics-second"
    )]
    seconds_topic: String,
    /// Per-minute metrics topic.
    #[arg(
        long,
        env = "MIN_METRICS_OUTPUT_TOPIC",
        default_value = "metrics-minute"
    )]
    minutes_topic: String,
    /// Topic that forwarded frames go to.
    #[arg(long, env = "OUTPUT_STREAM", default_value = "frames-forward")]
    output_stream: String,
    /// Dead-letter topic for invalid frames.
    #[arg(long, env = "DEAD_LETTER_TOPIC", default_value = "frames-dead-letter")]
    dead_letter_topic: String,
}

impl KafkaArgs {
    fn settings(&self) -> anyhow::Result<timebucket::kafka::config::KafkaSettings> {
        let mut settings = timebucket::kafka::config::KafkaSettings::new(&self.bootstrap_servers);
        for p in &self.properties {
            settings
                .properties
                .push(timebucket::kafka::config::parse_property(p)?);
        }
        Ok(settings)
    }

    fn topics(&self) -> timebucket::kafka::config::TopicNames {
        timebucket::kafka::config::TopicNames {
            input: self.input_topic.clone(),
            seconds: self.seconds_topic.clone(),
            minutes: self.minutes_topic.clone(),
            forward: self.output_stream.clone(),
            dead_letter: self.dead_letter_topic.clone(),
        }
    }
}

#[derive(Args)]
struct IngestArgs {
    /// Input file (`-` for stdin; `.gz` is decompressed).
    #[arg(default_value = "-")]
    input: String,
    #[command(flatten)]
    kafka: KafkaArgs,
    #[command(flatten)]
    window: WindowArgs,
}

#[derive(Args)]
struct WorkerArgs {
    #[command(flatten)]
    kafka: KafkaArgs,
    #[command(flatten)]
    window: WindowArgs,
    /// Consumer group that all workers of one pipeline join.
    #[arg(
        short = 'g',
        long,
        env = "CONSUMER_GROUP_ID",
        default_value = "timebucket"
    )]
    group: String,
    /// Also forward every valid frame to the OUTPUT_STREAM topic.
    #[arg(long, env = "FORWARD_FRAMES")]
    forward: bool,
    /// Close a partition's open windows after this many seconds without a new frame (0: never).
    #[arg(long, env = "IDLE_FLUSH_SECONDS", default_value_t = 30)]
    idle_flush: u64,
    /// Stop once the owned partitions are drained to the end offsets present at start.
    #[arg(long)]
    until_end: bool,
    /// Log progress every this many frames.
    #[arg(long, env = "PRINT_INTERVAL", default_value_t = 100_000)]
    print_interval: u64,
    /// Commit checkpoints every this many milliseconds.
    #[arg(long, env = "COMMIT_INTERVAL_MS", default_value_t = 1000)]
    commit_interval_ms: u64,
    /// At-least-once output (no transactions): a window may be emitted again
    /// after a crash, always with the same value.
    #[arg(long, env = "AT_LEAST_ONCE")]
    at_least_once: bool,
    /// Process at most this many frames per second (demos and tests).
    #[arg(long)]
    throttle: Option<u64>,
    /// Loadtest: write a JSON run summary (timings, peak memory) to this file.
    #[arg(long, hide = true)]
    summary_file: Option<std::path::PathBuf>,
    /// Loadtest: like --until-end with the end offsets given, PARTITION=OFFSET,...
    #[arg(long, hide = true, conflicts_with = "until_end")]
    until_offsets: Option<String>,
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
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut parser = FrameParser::new(
            self.min_ts,
            self.max_ts.unwrap_or_else(|| default_max_ts(now)),
        );
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
    #[arg(short = 's', long, default_value_t = timebucket::generate::DEFAULT_SEED)]
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
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            let code = e
                .downcast_ref::<timebucket::Error>()
                .map_or(1, |e| e.exit_code());
            ExitCode::from(code as u8)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Generate(args) => generate(args),
        Command::Aggregate(args) => run_aggregate(args),
        Command::Ingest(args) => run_ingest(args),
        Command::Worker(args) => run_worker(args),
        Command::Show(args) => run_show(args),
        Command::Topics(args) => run_topics(args),
        Command::Loadtest(args) => run_loadtest(args),
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
            let file = std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?;
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
    let summary =
        aggregate(input, std::io::stdout().lock(), &opts).map_err(name_input(&args.input))?;
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

fn run_ingest(args: IngestArgs) -> anyhow::Result<()> {
    use timebucket::ingest::{ingest, IngestOptions};
    let input_len = (args.input != "-" && !args.input.ends_with(".gz"))
        .then(|| std::fs::metadata(&args.input).ok().map(|m| m.len()))
        .flatten();
    let opts = IngestOptions {
        settings: args.kafka.settings()?,
        topics: args.kafka.topics(),
        parser: args.window.parser(),
        bucket_secs: args.window.bucket_seconds,
        input_len,
        log_invalid: 20,
    };
    let input = timebucket::input::open(&args.input)?;
    let summary = ingest(input, &opts).map_err(name_input(&args.input))?;
    let secs = summary.elapsed.as_secs_f64().max(1e-9);
    let read = &summary.read;
    eprintln!(
        "ingest: {} lines, {} frames to {} ({} partitions), {} blank, {} invalid to {} ({})\n\
         delivered {} records in {:.2}s: {:.0} frames/s, {:.1} MB/s",
        read.lines,
        read.valid,
        opts.topics.input,
        summary.partitions,
        read.blank,
        read.invalid_total(),
        opts.topics.dead_letter,
        read.invalid_breakdown(),
        summary.delivered,
        secs,
        read.valid as f64 / secs,
        read.bytes as f64 / 1e6 / secs,
    );
    Ok(())
}

fn run_worker(args: WorkerArgs) -> anyhow::Result<()> {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    use std::time::Duration;
    use timebucket::worker::{run, WorkerOptions};
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())
            .context("cannot install signal handler")?;
    }
    let opts = WorkerOptions {
        settings: args.kafka.settings()?,
        group: args.group,
        topics: args.kafka.topics(),
        forward: args.forward,
        lateness: args.window.lateness,
        parser: args.window.parser(),
        idle_flush: (args.idle_flush > 0).then(|| Duration::from_secs(args.idle_flush)),
        until_end: args.until_end,
        print_interval: args.print_interval,
        commit_interval: Duration::from_millis(args.commit_interval_ms.max(10)),
        throttle: args.throttle,
        exactly_once: !args.at_least_once,
        until_offsets: args
            .until_offsets
            .as_deref()
            .map(timebucket::worker::parse_offsets)
            .transpose()?,
        summary_file: args.summary_file,
    };
    run(opts, stop)?;
    Ok(())
}

fn run_show(args: ShowArgs) -> anyhow::Result<()> {
    let topics = args.kafka.topics();
    let topic = if args.seconds {
        &topics.seconds
    } else {
        &topics.minutes
    };
    let windows = timebucket::show::read_windows(&args.kafka.settings()?, topic)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        for record in windows.values() {
            writeln!(out, "{}", record.to_json())?;
        }
    } else {
        timebucket::show::print_table(&windows, &mut out)?;
    }
    Ok(())
}

fn run_topics(args: TopicsArgs) -> anyhow::Result<()> {
    use timebucket::kafka::topics::{apply_overrides, ensure_topics, load_specs, Overrides};
    let mut specs = load_specs(&args.topics_dir)?;
    let overrides = Overrides {
        input_partitions: args.input_partitions,
        replication: args.replication_factor,
        ..Overrides::from_names(&args.kafka.topics())
    };
    apply_overrides(&mut specs, &overrides)?;
    let settings = args.kafka.settings()?;
    let report = ensure_topics(
        &settings,
        &specs,
        std::time::Duration::from_secs(args.timeout_secs.max(1)),
    )?;
    print!("{report}");
    report.check()?;
    Ok(())
}

/// Names the input in read errors, which the library reports as "input".
fn name_input(path: &str) -> impl Fn(timebucket::Error) -> timebucket::Error + '_ {
    move |e| match e {
        timebucket::Error::Input { reason, .. } => timebucket::Error::Input {
            path: path.into(),
            reason,
        },
        e => e,
    }
}

#[derive(Args)]
struct LoadtestArgs {
    /// Kafka bootstrap servers.
    #[arg(short = 'b', long, env = "BOOTSTRAP_SERVERS", default_value = timebucket::kafka::config::DEFAULT_BOOTSTRAP)]
    bootstrap_servers: String,
    /// Any librdkafka property for ingest, the workers and the readers (repeatable).
    #[arg(short = 'X', value_name = "KEY=VALUE")]
    properties: Vec<String>,
    /// Input partition counts to measure, e.g. 1,2,4,8.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8")]
    partitions: Vec<u32>,
    /// Worker process counts to measure, e.g. 1,2.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    workers: Vec<u32>,
    /// Generated frames (cached under --cache-dir; 1,000,000 is about 2 GB).
    #[arg(long, default_value_t = 1_000_000)]
    frames: u64,
    /// Target frame size in bytes (generate -l).
    #[arg(long, default_value_t = 2048)]
    frame_size: usize,
    /// Frames per second of event time (generate -r): fewer spread the data over more time buckets.
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    /// Distinct users (generate -n).
    #[arg(long, default_value_t = 100_000)]
    users: u32,
    /// Seed (generate -s).
    #[arg(long, default_value_t = timebucket::generate::DEFAULT_SEED)]
    seed: u64,
    /// First ts (generate --start); a multiple of 900 starts a time bucket.
    #[arg(long, default_value_t = timebucket::generate::DEFAULT_START)]
    start: u64,
    /// Workers also forward every frame to the forward topic.
    #[arg(long)]
    forward: bool,
    /// Workers run --at-least-once (default: exactly-once, transactions).
    #[arg(long)]
    at_least_once: bool,
    /// Workers' commit interval.
    #[arg(long, default_value_t = 1000)]
    commit_interval_ms: u64,
    /// Start the workers first and ingest while they run (else ingest, then workers --until-end).
    #[arg(long)]
    live: bool,
    /// Report file: JSON, or CSV if the name ends in .csv.
    #[arg(short = 'o', long, default_value = "target/loadtest/loadtest.json")]
    output: std::path::PathBuf,
    /// Data files and per-run logs.
    #[arg(long, default_value = "target/loadtest")]
    cache_dir: std::path::PathBuf,
    /// Topic definitions [default: topics/ here, else in the source checkout].
    #[arg(long, env = "TOPICS_DIR")]
    topics_dir: Option<std::path::PathBuf>,
    /// Replication factor of the run's topics [default: from the definitions].
    #[arg(long)]
    replication_factor: Option<u16>,
    /// Kafka's tools: a scripts/kafka-like script (SCRIPT tool NAME ...) or a
    /// Kafka bin/ folder (NAME.sh) [default: scripts/kafka].
    #[arg(long)]
    kafka_tool: Option<std::path::PathBuf>,
    /// Skip kafka-producer-perf-test and kafka-consumer-perf-test.
    #[arg(long)]
    no_kafka_tools: bool,
    /// Payloads of kafka-producer-perf-test: the data file's first frames, or random letters.
    #[arg(long, value_enum, default_value = "frames")]
    perf_payload: PerfPayloadArg,
    /// Consumer lag sampling interval.
    #[arg(long, default_value_t = 500)]
    lag_interval_ms: u64,
    /// Longest a phase (ingest, the workers, a perf tool) may take, in seconds.
    #[arg(long, default_value_t = 900)]
    timeout_secs: u64,
    /// Keep the run's topics (default: delete them after each run).
    #[arg(long)]
    keep_topics: bool,
    /// Run each combination this many times (medians are printed too).
    #[arg(long, default_value_t = 1)]
    repeat: u32,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum PerfPayloadArg {
    Frames,
    Random,
}

fn run_loadtest(args: LoadtestArgs) -> anyhow::Result<()> {
    use timebucket::loadtest::{repo_path, KafkaTool, LoadtestOptions, PerfPayload};
    let mut settings = timebucket::kafka::config::KafkaSettings::new(&args.bootstrap_servers);
    for p in &args.properties {
        settings
            .properties
            .push(timebucket::kafka::config::parse_property(p)?);
    }
    let topics_dir = match args.topics_dir {
        Some(dir) => dir,
        None => repo_path("topics")
            .context("no topics/ folder here or in the source checkout; give --topics-dir")?,
    };
    let kafka_tool = if args.no_kafka_tools {
        None
    } else {
        Some(match &args.kafka_tool {
            Some(path) => KafkaTool::from_path(path)?,
            None => KafkaTool::Script(repo_path("scripts/kafka").context(
                "no scripts/kafka here or in the source checkout; give --kafka-tool or --no-kafka-tools",
            )?),
        })
    };
    let opts = LoadtestOptions {
        settings,
        partitions: args.partitions,
        workers: args.workers,
        frames: args.frames,
        frame_size: args.frame_size,
        rate: args.rate,
        users: args.users,
        seed: args.seed,
        start: args.start,
        forward: args.forward,
        at_least_once: args.at_least_once,
        commit_interval_ms: args.commit_interval_ms,
        live: args.live,
        exe: std::env::current_exe().context("cannot find the timebucket binary")?,
        cache_dir: args.cache_dir,
        topics_dir,
        replication: args.replication_factor,
        kafka_tool,
        perf_payload: match args.perf_payload {
            PerfPayloadArg::Frames => PerfPayload::Frames,
            PerfPayloadArg::Random => PerfPayload::Random,
        },
        lag_interval: std::time::Duration::from_millis(args.lag_interval_ms.max(50)),
        phase_timeout: std::time::Duration::from_secs(args.timeout_secs.max(10)),
        keep_topics: args.keep_topics,
        repeat: args.repeat.max(1),
        output: Some(args.output.clone()),
        command: std::env::args().collect::<Vec<_>>().join(" "),
    };
    let report = timebucket::loadtest::run(&opts, &mut std::io::stdout().lock())?;
    eprintln!("report written to {}", args.output.display());
    let wrong = report.wrong_runs();
    if wrong > 0 {
        anyhow::bail!(
            "{wrong} of {} loadtest runs did not produce aggregate's windows",
            report.runs.len()
        );
    }
    Ok(())
}
