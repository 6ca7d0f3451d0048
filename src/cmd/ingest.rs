//! `timebucket ingest`: reads `stream.jsonl` and produces every valid frame,
//! bytes unchanged, to partition `bucket mod P` of the input topic (with S
//! shards, `Routing::route`: `(murmur2(uid) mod S)·P/S + bucket mod P/S`), where P
//! is the topic's real partition count. Invalid lines go to the dead-letter
//! topic with their reason and line number; nothing stops the run, and every
//! record is accounted for before it ends. With `--metrics-addr` it serves
//! its counts to Prometheus ([`crate::observe::ingest`]).

use std::io::{IsTerminal, Read};
use std::time::{Duration, Instant};

use rdkafka::producer::{BaseRecord, Producer};
use tracing::{info, warn};

use crate::cmd::aggregate::Summary;
use crate::core::bucket::Routing;
use crate::core::frame::{FrameParser, Invalid, Line};
use crate::error::Error;
use crate::input::{LineReader, RawLine};
use crate::kafka::config::{KafkaSettings, TopicNames};
use crate::kafka::producer::{self, Origin};
use crate::observe::ingest::IngestMetrics;
use crate::observe::Exporter;

#[derive(Debug, Clone)]
pub struct IngestOptions {
    pub settings: KafkaSettings,
    pub topics: TopicNames,
    pub parser: FrameParser,
    /// A frame's `ts` may be at most this far ahead of the clock when its
    /// line is read (checked again by the workers against the record's
    /// timestamp); `None`: the parser's own bound only (`--max-ts`).
    pub max_future: Option<u64>,
    pub bucket_secs: u64,
    /// Shards per bucket (1: none): the partition is `Routing::route`.
    pub shards: u32,
    /// Total input size, for the progress bar's ETA (unknown for stdin).
    pub input_len: Option<u64>,
    /// How many invalid lines to log one by one before only counting them.
    pub log_invalid: u64,
    /// Serve `/metrics`, `/healthz` and `/readyz` on this `HOST:PORT`.
    pub metrics_addr: Option<String>,
    /// Keep serving them this long after the last delivery.
    pub metrics_linger: Duration,
}

#[derive(Debug, Clone, Default)]
pub struct IngestSummary {
    pub read: Summary,
    pub partitions: u32,
    pub delivered: u64,
    pub elapsed: Duration,
}

pub fn ingest(input: impl Read, opts: &IngestOptions) -> Result<IngestSummary, Error> {
    let metrics = std::sync::Arc::new(IngestMetrics::new());
    let exporter = match &opts.metrics_addr {
        Some(addr) => Some(Exporter::serve(
            addr,
            metrics.registry(),
            metrics.readiness(),
        )?),
        None => None,
    };
    if let Some(e) = &exporter {
        info!(url = %format!("http://{}/metrics", e.addr()), "serving metrics, /healthz and /readyz");
    }
    let producer = producer::tracked_producer(&opts.settings, producer::INGEST_DEFAULTS)?;
    let partitions = crate::kafka::topics::partition_count(
        &opts.settings,
        &opts.topics.input,
        Duration::from_secs(30),
    )?;
    let routing = Routing::sharded(opts.bucket_secs, partitions, opts.shards)?;
    info!(topic = %opts.topics.input, partitions, "ingesting");
    metrics.producing();
    let deliveries = producer.context().deliveries.clone();
    let publish = |read: &Summary, reader: &LineReader<_>| {
        metrics.publish(
            read,
            reader.line_no(),
            reader.bytes(),
            deliveries.delivered(),
            deliveries.failed(),
        );
    };

    let progress = Progress::new(opts.input_len);
    let started = Instant::now();
    let mut reader = LineReader::new(input, opts.parser.max_frame_bytes);
    let mut read = Summary::default();
    let mut parser = opts.parser;
    loop {
        let raw = reader.next_line().map_err(|source| Error::Input {
            path: "input".into(),
            reason: source,
        })?;
        let Some(line) = raw else { break };
        let line_no = line.number;
        // A missing ACL fails every record at once: stop instead of reading on.
        if line_no % 4096 == 0 {
            if let Some(refused) = producer::refusal(&producer) {
                return Err(refused);
            }
        }
        // The bound moves with the clock, so an ingest that runs for days
        // keeps accepting current frames.
        if let (Some(ahead), 1) = (opts.max_future, line_no % 4096) {
            parser = opts.parser.bounded_at(unix_now(), ahead);
        }
        let (reason, payload): (Invalid, &[u8]) = match line.raw {
            RawLine::Oversized { .. } => (Invalid::TooLarge, &[]),
            RawLine::Line(bytes) => match parser.parse(bytes) {
                Line::Frame(frame) => {
                    read.valid += 1;
                    producer::send(
                        &producer,
                        BaseRecord::with_opaque_to(&opts.topics.input, line_no as usize)
                            .partition(routing.route(frame.ts, &frame.uid) as i32)
                            .payload(bytes),
                    );
                    if line_no % 4096 == 0 {
                        progress.update(line.consumed, read.valid);
                        publish(&read, &reader);
                    }
                    continue;
                }
                Line::Blank => {
                    read.blank += 1;
                    continue;
                }
                Line::Invalid(reason) => (reason, bytes),
            },
        };
        read.count_invalid(reason);
        if read.invalid_total() <= opts.log_invalid {
            warn!(
                line = line_no,
                reason = reason.code(),
                "invalid frame sent to {}: {}",
                opts.topics.dead_letter,
                reason.describe()
            );
        }
        producer::send(
            &producer,
            BaseRecord::with_opaque_to(&opts.topics.dead_letter, line_no as usize)
                .payload(payload)
                .headers(producer::dead_letter_headers(reason, Origin::Line(line_no))),
        );
    }
    read.lines = reader.line_no();
    read.bytes = reader.bytes();
    progress.finish(read.bytes, read.valid);
    info!("waiting for every delivery");
    let flushed = producer::flush(&producer, Duration::from_secs(600));
    publish(&read, &reader);
    metrics.finished();
    if exporter.is_some() && !opts.metrics_linger.is_zero() {
        std::thread::sleep(opts.metrics_linger);
    }
    let summary = IngestSummary {
        delivered: producer.context().deliveries.delivered(),
        read,
        partitions,
        elapsed: started.elapsed(),
    };
    flushed.map(|()| summary)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A progress bar on a terminal, plain log lines otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    started: Instant,
    last_log: std::cell::Cell<Instant>,
}

impl Progress {
    fn new(total: Option<u64>) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = match total {
                Some(t) => indicatif::ProgressBar::new(t),
                None => indicatif::ProgressBar::new_spinner(),
            };
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:30} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}",
                )
                .expect("valid template"),
            );
            bar
        });
        Progress {
            bar,
            started: Instant::now(),
            last_log: std::cell::Cell::new(Instant::now()),
        }
    }

    fn update(&self, bytes: u64, frames: u64) {
        match &self.bar {
            Some(bar) => {
                bar.set_position(bytes);
                bar.set_message(format!("{frames} frames"));
            }
            None if self.last_log.get().elapsed() >= Duration::from_secs(5) => {
                self.last_log.set(Instant::now());
                let secs = self.started.elapsed().as_secs_f64();
                info!(
                    frames,
                    mb = bytes / 1_000_000,
                    rate = format!("{:.1} MB/s", bytes as f64 / 1e6 / secs),
                    "ingest progress"
                );
            }
            None => {}
        }
    }

    fn finish(&self, bytes: u64, frames: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(bytes);
            bar.finish_with_message(format!("{frames} frames read"));
        }
    }
}
