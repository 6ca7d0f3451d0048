//! `timebucket ingest`: reads `stream.jsonl` and produces every valid frame,
//! bytes unchanged, to partition `bucket mod P` of the input topic (with S
//! shards, `Routing::route`: `(murmur2(uid) mod S)·P/S + bucket mod P/S`), where P
//! is the topic's real partition count. Invalid lines go to the dead-letter
//! topic with their reason and line number; nothing stops the run, and every
//! record is accounted for before it ends. With `--metrics-addr` it serves
//! its counts to Prometheus ([`crate::observe::ingest`]).
//!
//! Exactly once from file to topic: the records of a stretch of lines and
//! the source's [`Position`] after them are one transaction
//! ([`commit`]), so a rerun of the same source ([`source`]: its id and
//! fingerprint) continues after the last committed line, whatever ended the
//! run before (a crash, `kill -9`, exit 7). `bar` is the progress bar.

mod bar;
mod bound;
pub mod commit;
pub mod position;
pub mod source;

pub use source::Source;
pub use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::producer::{BaseRecord, Producer};
use tracing::{info, warn};

use crate::core::bucket::Routing;
use crate::core::frame::{FrameParser, Invalid, Line};
use crate::core::summary::Summary;
use crate::error::Error;
use crate::input::{LineReader, RawLine};
use crate::kafka::config::{KafkaSettings, TopicNames};
use crate::kafka::limits::OutputLimits;
use crate::kafka::producer::{self, Origin, REASON_TOO_LARGE_FOR_TOPIC};
use crate::kafka::sink::fit_dead_letter;
use crate::kafka::topics::{PartitionWatch, WATCH_INTERVAL};
use crate::observe::ingest::IngestMetrics;
use crate::observe::Exporter;
use rdkafka::message::OwnedHeaders;

use bar::Progress;
use bound::{unix_now, MovingBound};
pub use commit::CommitEvery;
use commit::Transactions;
pub use position::Position;

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
    /// How many invalid lines to log one by one before only counting them.
    pub log_invalid: u64,
    /// Serve `/metrics`, `/healthz` and `/readyz` on this `HOST:PORT`.
    pub metrics_addr: Option<String>,
    /// Keep serving them this long after the last delivery.
    pub metrics_linger: Duration,
    /// The source's id in the progress topic (`--source-id`); default: the
    /// file's canonical path; stdin without one is not resumable.
    pub source_id: Option<String>,
    /// Ignore the committed position and ingest the source from the start.
    pub restart: bool,
    pub commit_every: CommitEvery,
}

#[derive(Debug, Clone, Default)]
pub struct IngestSummary {
    /// What this run read (from `resumed_at` on).
    pub read: Summary,
    /// What every run of this source read, up to where this one ended.
    pub total: Summary,
    /// The line this run started after (0: from the start).
    pub resumed_at: u64,
    /// Whether a rerun continues where this one ended (`false`: stdin
    /// without `--source-id`).
    pub resumable: bool,
    pub partitions: u32,
    /// Records of this run's committed transactions (frames, dead letters).
    pub delivered: u64,
    /// Records the producer refused, over every run of this source, and
    /// the first lines.
    pub failed: u64,
    pub failed_lines: Vec<u64>,
    /// Valid frames of this run too large for the input topic (its
    /// `max.message.bytes`, or the producer's `message.max.bytes`, with
    /// record framing): dead-lettered as `too_large_for_topic`.
    pub too_large: u64,
    pub elapsed: Duration,
}

/// Ingests the file at `path` (`-`: stdin; `.gz` is decompressed).
pub fn ingest(path: &str, opts: &IngestOptions) -> Result<IngestSummary, Error> {
    ingest_source(Source::open(path, opts.source_id.as_deref())?, opts)
}

/// Ingests an opened [`Source`].
pub fn ingest_source(source: Source, opts: &IngestOptions) -> Result<IngestSummary, Error> {
    let metrics = std::sync::Arc::new(IngestMetrics::new());
    let exporter = match &opts.metrics_addr {
        Some(addr) => Some(Exporter::serve(
            addr,
            metrics.registry(),
            metrics.http(),
            metrics.readiness(),
        )?),
        None => None,
    };
    if let Some(e) = &exporter {
        info!(url = %format!("http://{}/metrics", e.addr()), "serving metrics, /healthz and /readyz");
    }
    let (mut txn, base, limits) = resume(&source, opts)?;
    let input_limit = limits.limit(&opts.topics.input);
    let mut too_large = 0u64;
    let partitions = crate::kafka::topics::partition_count(
        &opts.settings,
        &opts.topics.input,
        Duration::from_secs(30),
    )?;
    let routing = Routing::sharded(opts.bucket_secs, partitions, opts.shards)?;
    // Partitions added while this runs would route buckets elsewhere.
    let watch = PartitionWatch::start(
        &opts.settings,
        &opts.topics.input,
        partitions,
        WATCH_INTERVAL,
    )?;
    info!(topic = %opts.topics.input, partitions, from_line = base.line + 1, "ingesting");
    metrics.producing();
    let deliveries = txn.producer.context().deliveries.clone();
    let publish = |read: &Summary, reader: &LineReader<_>| {
        metrics.publish(
            read,
            reader.line_no(),
            reader.bytes(),
            deliveries.delivered(),
            deliveries.failed(),
        );
    };

    let progress = Progress::new(source.file_len());
    let started = Instant::now();
    let resumable = source.id.is_some();
    let input = source.starting_at(base.bytes)?;
    let mut reader =
        LineReader::resuming(input, opts.parser.max_frame_bytes, base.line, base.bytes);
    let mut read = Summary::default();
    let mut bound = MovingBound::new(opts.parser, opts.max_future, unix_now);
    // Where this run stands, as a position to commit.
    let position = |read: &Summary, reader: &LineReader<_>, too_large: u64| {
        let run = Summary {
            lines: reader.line_no() - base.line,
            bytes: reader.bytes() - base.bytes,
            ..read.clone()
        };
        let failed: Vec<u64> = deliveries
            .failures
            .lock()
            .expect("poisoned")
            .iter()
            .map(|(line, _)| *line)
            .collect();
        let mut at = base.advanced(&run, &failed);
        at.failed = base.failed + deliveries.failed();
        at.too_large = base.too_large + too_large;
        at.runs = base.runs + 1;
        at
    };
    loop {
        // Lines up to the last one read are done: commit here if it is time.
        if txn.due() {
            txn.commit(position(&read, &reader, too_large))?;
        }
        if let Some(now) = watch.changed() {
            // The lines read so far were routed by the old count: commit
            // them, and produce none by a count that no longer holds.
            let next = reader.line_no() + 1;
            txn.commit(position(&read, &reader, too_large))?;
            return Err(watch.error(
                now,
                &format!(
                    "ingest stopped before line {next}: lines 1..{next} are committed, routed \
                     by the old count; line {next} and the rest of the input were not produced \
                     (docs/semantics.md, \"Partition count\")"
                ),
            ));
        }
        let raw = reader.next_line().map_err(|source| Error::Input {
            path: "input".into(),
            reason: source,
        })?;
        let Some(line) = raw else { break };
        let line_no = line.number;
        // A missing ACL fails every record at once: stop instead of reading on.
        if line_no % 4096 == 0 {
            if let Some(refused) = producer::refusal(&txn.producer) {
                return Err(refused);
            }
        }
        // The bound moves with the clock (by time, not lines), so an ingest
        // that runs for days, or reads a slow feed, accepts current frames.
        let parser = bound.parser();
        let (reason, payload): (Invalid, &[u8]) = match line.raw {
            RawLine::Oversized { .. } => (Invalid::TooLarge, &[]),
            RawLine::Line(bytes) => match parser.parse(bytes) {
                Line::Frame(frame) => {
                    read.valid += 1;
                    // Checked before sending: a record the broker refuses
                    // would fail the whole transaction, and every rerun the
                    // same way. One the producer refuses at send (its
                    // message.max.bytes) is dead-lettered the same way.
                    let sent = limits.fits(&opts.topics.input, bytes.len(), 0)
                        && txn.send_frame(
                            BaseRecord::with_opaque_to(&opts.topics.input, line_no as usize)
                                .partition(routing.route(frame.ts, &frame.uid) as i32)
                                .payload(bytes),
                        )?;
                    if !sent {
                        too_large += 1;
                        if too_large <= opts.log_invalid {
                            warn!(
                            line = line_no,
                            bytes = bytes.len(),
                            topic = %opts.topics.input,
                            limit = input_limit,
                            "valid frame too large for the input topic: dead-lettered as {REASON_TOO_LARGE_FOR_TOPIC}"
                            );
                        }
                        let headers = producer::too_large_headers(
                            &opts.topics.input,
                            input_limit,
                            Origin::Line(line_no),
                        );
                        dead_letter(
                            &mut txn,
                            &limits,
                            &opts.topics.dead_letter,
                            line_no,
                            headers,
                            bytes,
                        )?;
                    }
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
        let headers = producer::dead_letter_headers(reason, Origin::Line(line_no));
        dead_letter(
            &mut txn,
            &limits,
            &opts.topics.dead_letter,
            line_no,
            headers,
            payload,
        )?;
    }
    read.lines = reader.line_no() - base.line;
    read.bytes = reader.bytes() - base.bytes;
    progress.finish(reader.bytes(), read.valid);
    info!("waiting for every delivery");
    let end = position(&read, &reader, too_large);
    if end.bytes != base.bytes {
        txn.commit(end)?;
    }
    publish(&read, &reader);
    metrics.finished();
    if exporter.is_some() && !opts.metrics_linger.is_zero() {
        std::thread::sleep(opts.metrics_linger);
    }
    let summary = IngestSummary {
        delivered: txn.committed_records - deliveries.refused_at_send.load(Ordering::Relaxed),
        total: txn.committed.summary(),
        failed: txn.committed.failed,
        failed_lines: txn.committed.failed_lines.clone(),
        too_large,
        resumed_at: base.line,
        resumable,
        read,
        partitions,
        elapsed: started.elapsed(),
    };
    if summary.failed > 0 {
        let lines: Vec<String> = summary.failed_lines.iter().map(u64::to_string).collect();
        let this_run = deliveries.failed();
        return Err(Error::Delivery(format!(
            "{} record(s) of this source not delivered ({this_run} in this run): \
             the producer refused them (too large?), at lines {}\n{}",
            summary.failed,
            lines.join(", "),
            deliveries.failure_report()
        )));
    }
    Ok(summary)
}

/// Sends a dead letter of line `line_no`, cut to what `topic` takes.
fn dead_letter(
    txn: &mut Transactions,
    limits: &OutputLimits,
    topic: &str,
    line_no: u64,
    headers: OwnedHeaders,
    payload: &[u8],
) -> Result<(), Error> {
    let (headers, kept) = fit_dead_letter(limits, topic, headers, payload);
    txn.send(
        BaseRecord::with_opaque_to(topic, line_no as usize)
            .payload(kept)
            .headers(headers),
    )
}

/// The transactions of this source, the position this run starts at (the
/// latest committed one if the source is the same: its fingerprint
/// matches and it is long enough; else the start), and the record limits
/// of the topics ingest writes to.
fn resume(
    source: &Source,
    opts: &IngestOptions,
) -> Result<(Transactions, Position, OutputLimits), Error> {
    let topics = &opts.topics;
    let limits = OutputLimits::describe(
        &opts.settings,
        &[&topics.input, &topics.dead_letter, &topics.progress],
    )?
    .capped_by_producer(&opts.settings);
    let key = source
        .id
        .as_deref()
        .map(|id| position::key(&opts.topics.input, id));
    let id = match &key {
        Some(key) => format!(
            "timebucket-{}-ingest-{:016x}",
            opts.topics.input,
            source::fnv1a(key.as_bytes())
        ),
        None => format!(
            "timebucket-{}-ingest-{}-{}",
            opts.topics.input,
            std::process::id(),
            unix_now()
        ),
    };
    let fresh = Position::start(source.id.as_deref().unwrap_or("-"), source.fingerprint());
    let mut txn = Transactions::start(
        &opts.settings,
        id.clone(),
        &opts.topics.progress,
        key.clone(),
        opts.commit_every,
        fresh.clone(),
        &limits,
    )?;
    let Some(key) = key else {
        warn!("stdin without --source-id: not resumable (a rerun ingests everything again)");
        return Ok((txn, fresh, limits));
    };
    let latest = position::latest(
        &opts.settings,
        &opts.topics.progress,
        &key,
        Duration::from_secs(60),
    )?;
    let start = match latest {
        None => fresh,
        Some(_) if opts.restart => {
            warn!(source = %key, "--restart: ingesting the source from the start");
            fresh
        }
        Some(at) if !at.fingerprint.matches(&source.head) => {
            warn!(source = %key, line = at.line, "the source's first bytes differ from those ingested before (rewritten?): ingesting it from the start");
            fresh
        }
        Some(at) if source.reaches(at.bytes) == Some(false) => {
            warn!(source = %key, line = at.line, bytes = at.bytes, "the source is shorter than the committed offset (truncated?): ingesting it from the start");
            fresh
        }
        Some(at) => {
            info!(source = %key, line = at.line, bytes = at.bytes, transactional_id = %id, "resuming after the last committed line");
            Position {
                fingerprint: source.fingerprint(),
                ..at
            }
        }
    };
    txn.set_committed(start.clone());
    Ok((txn, start, limits))
}
