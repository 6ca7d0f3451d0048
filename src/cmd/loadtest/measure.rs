//! What every run measures, sequential ([`super::run`]) or soak
//! ([`super::soak`]): the [`RunContext`], ingest with its delivery check,
//! the lag sampler and the observer around the run's processing
//! ([`measure_with`]), the workers' figures, and the machine's CPU share.
//! Both kinds of run build on this module; it knows neither.

use std::collections::HashMap;
use std::fs::File;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::cmd::ingest::{ingest_source, IngestOptions, Source};
use crate::core::bucket::DEFAULT_BUCKET_SECS;
use crate::core::compare::WindowSet;
use crate::error::Error;

use super::failure::RunError;
use super::observe::{observe, sample_lag, LagSignal};
use super::report::{Rate, RunReport};
use super::topics::RunTopics;
use super::workers::WorkerProcess;
use super::{io_error, parser, DataSet, LoadtestOptions};

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
        File::open(&data.path).map_err(io_error(format!("open {}", data.path.display())))?;
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

/// `process` (ingest and the workers; returns the unix ms of ingest's start
/// and of its last delivery), with the lag sampler and the observer
/// alongside.
pub(super) fn measure_with(
    ctx: &RunContext<'_>,
    topics: &RunTopics,
    report: &mut RunReport,
    process: impl FnOnce(&mut RunReport, &LagSignal) -> Result<(u64, u64), RunError>,
) -> Result<(), RunError> {
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

/// The finished workers' reports, and the processing rate and peak memory
/// drawn from them.
pub(super) fn collect_figures(
    report: &mut RunReport,
    workers: &[WorkerProcess],
    merger: Option<&WorkerProcess>,
    data: &DataSet,
) -> Result<(), RunError> {
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
