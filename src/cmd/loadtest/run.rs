//! One run: ingest and process for one partition and worker count, timed,
//! sampled and checked.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::cmd::ingest::{ingest_source, IngestOptions, Source};
use crate::core::bucket::DEFAULT_BUCKET_SECS;
use crate::error::Error;

use super::check::expected_windows;
use super::check::{check_windows, count_committed, verdict};
use super::observe::{observe, sample_lag, LagSignal};
use super::perf::{consumer_perf, producer_perf};
use super::report::{Check, Rate, RunReport};
use super::topics::RunTopics;
use super::topics::{create_topics, delete_run};
use super::workers::{
    ends_file, publish_ends, spawn_merger, spawn_worker, wait_started, wait_workers, WorkerProcess,
};
use super::{io_error, parser, unix_ms, DataSet, LoadtestOptions};
use crate::core::compare::WindowSet;

/// (busy, total) jiffies of all cores, from /proc/stat.
pub(super) fn cpu_jiffies() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4).unwrap_or(&0);
    Some((total - idle, total))
}

pub(super) fn busy_pct(from: Option<(u64, u64)>, to: Option<(u64, u64)>) -> Option<f64> {
    let ((b0, t0), (b1, t1)) = (from?, to?);
    (t1 > t0).then(|| (b1 - b0) as f64 * 100.0 / (t1 - t0) as f64)
}

pub(super) fn ingest_data(
    opts: &LoadtestOptions,
    data: &DataSet,
    topics: &RunTopics,
) -> Result<crate::cmd::ingest::IngestSummary, Error> {
    let input =
        File::open(&data.path).map_err(io_error(format!("cannot open {}", data.path.display())))?;
    ingest_from(opts, data, topics, input)
}

/// Ingests `input` (the data file, or the soak's paced reader of it) and
/// checks that every frame of `data` was delivered.
pub(super) fn ingest_from(
    opts: &LoadtestOptions,
    data: &DataSet,
    topics: &RunTopics,
    input: impl std::io::Read + Send + 'static,
) -> Result<crate::cmd::ingest::IngestSummary, Error> {
    let ingest_opts = IngestOptions {
        settings: opts.settings.clone(),
        topics: topics.names.clone(),
        parser: parser(),
        max_future: None,
        bucket_secs: DEFAULT_BUCKET_SECS,
        shards: opts.shards,
        log_invalid: 20,
        metrics_addr: None,
        metrics_linger: Duration::ZERO,
        source_id: None,
        restart: false,
        commit_every: crate::cmd::ingest::CommitEvery::DEFAULT,
    };
    // One-off runs: not resumable, so no progress is kept.
    let source = Source::stream(&data.path.display().to_string(), Box::new(input), None)?;
    let summary = ingest_source(source, &ingest_opts)?;
    if summary.read.valid != data.frames || summary.delivered != data.frames {
        return Err(Error::Delivery(format!(
            "ingest read {} valid frames and delivered {}, expected {}",
            summary.read.valid, summary.delivered, data.frames
        )));
    }
    Ok(summary)
}

pub(super) struct RunContext<'a> {
    pub(super) opts: &'a LoadtestOptions,
    pub(super) data: &'a DataSet,
    pub(super) prefix: String,
    pub(super) expected: &'a Mutex<HashMap<u32, WindowSet>>,
}

/// One run of a combination. `repeat` (1-based) is part of its topics' and
/// group's names: the broker deletes topics asynchronously, so a repeat must
/// never reuse a name of the run before it.
pub(super) fn run_one(
    ctx: &RunContext<'_>,
    partitions: u32,
    workers: u32,
    repeat: u32,
) -> RunReport {
    let opts = ctx.opts;
    let data = ctx.data;
    let tag = format!("p{partitions}w{workers}r{repeat}");
    let prefix = format!("{}-{tag}", ctx.prefix);
    let dir = opts.cache_dir.join("runs").join(&prefix);
    let mut report = RunReport {
        mode: super::mode_name(opts).into(),
        partitions,
        workers,
        forward: opts.forward,
        exactly_once: !opts.at_least_once,
        frames: data.frames,
        payload_bytes: data.payload_bytes,
        shards: opts.shards,
        partition_frames: match data.partition_frames_sharded(partitions, opts.shards) {
            Ok(counts) => counts,
            Err(e) => {
                let mut report = RunReport {
                    partitions,
                    workers,
                    repeat,
                    failure: Some(format!("cannot count the frames per partition: {e}")),
                    ..RunReport::default()
                };
                finish_check(&mut report);
                return report;
            }
        },
        logs: dir.clone(),
        repeat,
        ..RunReport::default()
    };
    if let Err(e) = std::fs::create_dir_all(&dir) {
        report.failure = Some(format!("cannot create {}: {e}", dir.display()));
        finish_check(&mut report);
        return report;
    }
    let topics = match create_topics(opts, &prefix, partitions) {
        Ok(t) => t,
        Err(e) => {
            report.failure = Some(format!("cannot create the topics: {e}"));
            finish_check(&mut report);
            return report;
        }
    };
    report.input_topic = topics.names.input.clone();
    info!(partitions, workers, input = %topics.names.input, mode = %report.mode, "run starting");
    let measured = match &opts.soak {
        Some(soak) => super::soak::measure(ctx, soak, &topics, &dir, &mut report),
        None => measure(ctx, &topics, &dir, &mut report),
    };
    if let Err(failure) = measured {
        report.failure = Some(failure);
    }
    if report.failure.is_none() {
        if let Some(tool) = &opts.kafka_tool {
            info!("kafka-consumer-perf-test on the input topic");
            match consumer_perf(opts, tool, data, &topics, &dir) {
                Ok(p) => report.kafka_consumer_perf = Some(p),
                Err(e) => warn!(error = %e, "kafka-consumer-perf-test failed"),
            }
            info!("kafka-producer-perf-test");
            match producer_perf(opts, tool, data, &topics, &dir) {
                Ok(p) => report.kafka_producer_perf = Some(p),
                Err(e) => warn!(error = %e, "kafka-producer-perf-test failed"),
            }
        }
        report.ingest_vs_producer_perf = report
            .kafka_producer_perf
            .as_ref()
            .map(|p| report.ingest.frames_per_sec / p.records_per_sec.max(1e-9));
        report.processing_vs_consumer_perf = match (&report.processing, &report.kafka_consumer_perf)
        {
            (Some(ours), Some(theirs)) => {
                Some(ours.frames_per_sec / theirs.fetch_records_per_sec.max(1e-9))
            }
            _ => None,
        };
        info!("checking every window against aggregate");
        match check_run(ctx, &topics, partitions) {
            Ok(check) => report.check = check,
            Err(e) => report.failure = Some(format!("cannot check the results: {e}")),
        }
    }
    finish_check(&mut report);
    if !opts.keep_topics {
        delete_run(&opts.settings, &topics);
    }
    report
}

pub(super) fn finish_check(report: &mut RunReport) {
    if let Some(failure) = &report.failure {
        report.check.correct = false;
        report.check.verdict = format!("FAILED: {}", failure.lines().next().unwrap_or(""));
    } else {
        verdict(&mut report.check, report.frames);
    }
}

pub(super) fn check_run(
    ctx: &RunContext<'_>,
    topics: &RunTopics,
    partitions: u32,
) -> Result<Check, Error> {
    let cached = ctx
        .expected
        .lock()
        .expect("poisoned")
        .get(&partitions)
        .cloned();
    let want = match cached {
        Some(w) => w,
        None => {
            let w = expected_windows(&ctx.data.path, partitions, ctx.opts.shards)?;
            ctx.expected
                .lock()
                .expect("poisoned")
                .insert(partitions, w.clone());
            w
        }
    };
    let mut check = check_windows(&ctx.opts.settings, topics, &want, !ctx.opts.at_least_once)?;
    if ctx.opts.forward {
        check.forwarded = Some(count_committed(&ctx.opts.settings, &topics.names.forward)?);
    }
    Ok(check)
}

/// Ingest and workers, with the lag sampler and the observer alongside.
pub(super) fn measure(
    ctx: &RunContext<'_>,
    topics: &RunTopics,
    dir: &Path,
    report: &mut RunReport,
) -> Result<(), String> {
    measure_with(ctx, topics, report, |report, lag| {
        ingest_and_process(ctx, topics, dir, report, lag)
    })
}

/// `process` (ingest and the workers; returns the unix ms of ingest's start
/// and of its last delivery), with the lag sampler and the observer
/// alongside.
pub(super) fn measure_with(
    ctx: &RunContext<'_>,
    topics: &RunTopics,
    report: &mut RunReport,
    process: impl FnOnce(&mut RunReport, &LagSignal) -> Result<(u64, u64), String>,
) -> Result<(), String> {
    let opts = ctx.opts;
    let data = ctx.data;
    let lag_signal = LagSignal::default();
    let finish_observer = AtomicBool::new(false);
    let t0 = Instant::now();
    std::thread::scope(|scope| {
        let lag = scope.spawn(|| {
            sample_lag(
                &opts.settings,
                &topics.names.input,
                topics.partitions,
                &topics.group,
                opts.lag_interval,
                t0,
                &lag_signal,
            )
        });
        let observer = scope.spawn(|| {
            observe(
                &opts.settings,
                topics,
                &finish_observer,
                Duration::from_secs(60),
            )
        });
        let result = process(report, &lag_signal);
        lag_signal.stop.store(true, Ordering::SeqCst);
        finish_observer.store(true, Ordering::SeqCst);
        report.lag_samples = lag.join().unwrap_or_default();
        report.peak_lag = report.lag_samples.iter().map(|s| s.1).max();
        let observed = match observer.join() {
            Ok(Ok(o)) => Some(o),
            Ok(Err(e)) => {
                warn!(error = %e, "observer failed");
                None
            }
            Err(_) => None,
        };
        let (ingest_start_ms, ingest_done_ms) = result?;
        if let Some(o) = observed {
            report.end_to_end_seconds = o
                .last_ms
                .map(|l| l.saturating_sub(ingest_start_ms) as f64 / 1000.0);
            let minute = data.last_frame_ts - data.last_frame_ts % 60;
            report.last_frame_delay_seconds = o
                .minutes
                .get(&minute)
                .map(|&at| (at as f64 - ingest_done_ms as f64) / 1000.0);
            info!(records = o.records, "observer read the metric topics");
        }
        Ok(())
    })
}

/// Returns the unix ms of ingest's start and of its last delivery.
pub(super) fn ingest_and_process(
    ctx: &RunContext<'_>,
    topics: &RunTopics,
    dir: &Path,
    report: &mut RunReport,
    lag: &LagSignal,
) -> Result<(u64, u64), String> {
    let opts = ctx.opts;
    let data = ctx.data;
    let until = opts.live.then(|| ends_file(dir));
    let mut workers = Vec::new();
    // The merge stage runs from the start, as in production.
    let mut merger = if opts.shards > 1 {
        Some(spawn_merger(opts, topics, dir).map_err(|e| e.to_string())?)
    } else {
        None
    };
    let cpu_processing_start;
    if opts.live {
        cpu_processing_start = cpu_jiffies();
        for i in 0..report.workers {
            workers.push(
                spawn_worker(opts, topics, dir, i, until.as_deref()).map_err(|e| e.to_string())?,
            );
        }
        wait_started(&workers, Instant::now() + Duration::from_secs(30))?;
        // Let the group settle before frames arrive (a live system's
        // workers are already running).
        std::thread::sleep(Duration::from_secs(3));
    } else {
        cpu_processing_start = None;
    }
    info!(frames = data.frames, "ingest");
    let cpu0 = cpu_jiffies();
    let ingest_start_ms = unix_ms();
    let ingested = ingest_data(opts, data, topics);
    let ingest_done_ms = unix_ms();
    let cpu1 = cpu_jiffies();
    let ingested = ingested.and_then(|s| {
        if opts.live {
            publish_ends(opts, topics, dir)?;
        }
        Ok(s)
    });
    let summary = match ingested {
        Ok(s) => s,
        Err(e) => {
            for w in workers.iter_mut() {
                let _ = w.child.kill();
                let _ = w.child.wait();
            }
            return Err(format!("ingest failed: {e}"));
        }
    };
    report.machine_cpu_ingest_pct = busy_pct(cpu0, cpu1);
    report.ingest = Rate::new(
        summary.read.valid,
        data.payload_bytes,
        summary.elapsed.as_secs_f64(),
    );
    info!(
        frames_per_sec = format!("{:.0}", report.ingest.frames_per_sec),
        mb_per_sec = format!("{:.1}", report.ingest.mb_per_sec),
        "ingest done"
    );
    let cpu_processing_start = if opts.live {
        cpu_processing_start
    } else {
        // The lag when the workers start: every frame.
        lag.sample_now();
        let cpu = cpu_jiffies();
        for i in 0..report.workers {
            workers.push(spawn_worker(opts, topics, dir, i, None).map_err(|e| e.to_string())?);
        }
        cpu
    };
    wait_workers(&mut workers, Instant::now() + opts.phase_timeout)?;
    if let Some(m) = merger.as_mut() {
        wait_workers(std::slice::from_mut(m), Instant::now() + opts.phase_timeout)?;
    }
    report.machine_cpu_processing_pct = busy_pct(cpu_processing_start, cpu_jiffies());
    collect_figures(report, &workers, merger.as_ref(), data)?;
    Ok((ingest_start_ms, ingest_done_ms))
}

/// The finished workers' reports, and the processing rate and peak memory
/// drawn from them.
pub(super) fn collect_figures(
    report: &mut RunReport,
    workers: &[WorkerProcess],
    merger: Option<&WorkerProcess>,
    data: &DataSet,
) -> Result<(), String> {
    for w in workers {
        let figures = w.finished_report()?;
        report.worker_figures.push(figures);
    }
    if let Some(m) = merger {
        report.merge_figures = Some(m.merge_report()?);
    }
    let first = report
        .worker_figures
        .iter()
        .filter_map(|w| w.first_record_ms)
        .min();
    // With shards the windows are durable once the merger emitted them.
    let last = match &report.merge_figures {
        Some(m) => m.last_emit_ms,
        None => report
            .worker_figures
            .iter()
            .filter_map(|w| w.last_emit_ms)
            .max(),
    };
    if let (Some(first), Some(last)) = (first, last) {
        report.processing = Some(Rate::new(
            data.frames,
            data.payload_bytes,
            last.saturating_sub(first) as f64 / 1000.0,
        ));
    }
    report.peak_worker_rss_mb = report
        .worker_figures
        .iter()
        .filter_map(|w| w.peak_rss_kb)
        .max()
        .map(|kb| kb as f64 * 1024.0 / 1e6);
    Ok(())
}
