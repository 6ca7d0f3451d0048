//! The soak (`loadtest --live --duration 10m`): the workers under a steady
//! live load for a given time, sampled as it goes, then drained and checked.
//!
//! For every combination of partitions and workers, one run:
//!
//! 1. generates the run's frames ([`super::pace::soak_data`]): `generate`'s
//!    frames and disorder at `--rate`, with `ts` on the wall clock from a
//!    start a little ahead of now (time to create the topics and start the
//!    workers) to `--duration` later;
//! 2. creates the topics and starts the workers, with `--metrics-addr` and
//!    the end offsets known from the file (`--until-offsets`, as `--live`);
//! 3. produces the frames with ingest, each released at its time
//!    ([`super::pace::PacedReader`]): the stream is live, so windows close
//!    by the watermark as real time passes, not at the end of the input;
//! 4. every sample interval reads each worker's RSS from `/proc` and its
//!    frames, lag, late frames and event-time delay from its `/metrics`;
//! 5. once the last frame is delivered the workers drain: they stop at the
//!    end offsets, closing their last windows, and exit;
//! 6. checks every window against `aggregate` on the same file (the run's
//!    verdict) and draws the memory verdict from the samples taken while
//!    producing ([`super::soak_report::memory_verdict`]).
//!
//! Kafka's perf tools are not run in a soak. The loop over the combinations
//! (generating each run's frames) is `run_soaks` in [`super`]; this module
//! is the soak's part of one run ([`measure`]), which
//! [`super::run::run_one`] calls in place of the sequential one.

use std::fs::File;
use std::io::BufReader;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tracing::info;

use super::failure::{LogTail, RunError};
use super::measure::{
    busy_pct, collect_figures, cpu_jiffies, ingest_from, measure_with, RunContext,
};
use super::pace::PacedReader;
use super::report::{Rate, RunReport};
use super::soak_report::{memory_verdict, rss_kb, worker_sample, SoakReport, SoakSample};
use super::topics::RunTopics;
use super::workers::{ends_file, publish_ends, spawn_worker, wait_started, WorkerProcess};
use super::{unix_ms, SoakOptions};
use crate::cmd::worker::WorkerReport;
use crate::observe::http::get;

/// The sample interval: as asked, else 1/120 of the duration within 0.5-10 s.
pub fn sample_interval(soak: &SoakOptions) -> Duration {
    soak.sample_interval.unwrap_or_else(|| {
        (soak.duration / 120).clamp(Duration::from_millis(500), Duration::from_secs(10))
    })
}

/// The soak's part of a run: workers, paced ingest and samples, with the
/// lag sampler and the observer alongside.
pub(super) fn measure(
    ctx: &RunContext<'_>,
    soak: &SoakOptions,
    topics: &RunTopics,
    dir: &std::path::Path,
    report: &mut RunReport,
) -> Result<(), RunError> {
    measure_with(ctx, topics, report, |report, _lag| {
        soak_process(ctx, soak, topics, dir, report)
    })
}

fn soak_process(
    ctx: &RunContext<'_>,
    soak: &SoakOptions,
    topics: &RunTopics,
    dir: &std::path::Path,
    report: &mut RunReport,
) -> Result<(u64, u64), RunError> {
    let opts = ctx.opts;
    let interval = sample_interval(soak);
    let mut s = SoakReport {
        duration_seconds: soak.duration.as_secs_f64(),
        rate: opts.rate,
        max_delay: soak.max_delay,
        delay_percent: soak.delay_percent,
        sample_interval_ms: interval.as_millis() as u64,
        ..SoakReport::default()
    };
    let cpu0 = cpu_jiffies();
    let mut workers = Vec::new();
    for i in 0..report.workers {
        let w = spawn_worker(opts, topics, dir, i, Some(&ends_file(dir)));
        workers.push(w?);
    }
    let result = produce_and_sample(ctx, topics, dir, &mut workers, interval, &mut s, report);
    if result.is_err() {
        for w in workers.iter_mut() {
            let _ = w.child.kill();
            let _ = w.child.wait();
        }
    }
    s.memory = memory_verdict(
        &s.samples,
        report.workers,
        soak.rss_growth_pct,
        soak.rss_growth_mb,
    );
    report.soak = Some(s);
    let (ingest_start, ingest_done) = result?;
    report.machine_cpu_processing_pct = busy_pct(cpu0, cpu_jiffies());
    collect_figures(report, &workers, None, ctx.data)?;
    Ok((ingest_start, ingest_done))
}

/// Waits for the workers to join, produces the frames at their times and
/// samples every worker until all have drained and exited.
fn produce_and_sample(
    ctx: &RunContext<'_>,
    topics: &RunTopics,
    dir: &std::path::Path,
    workers: &mut [WorkerProcess],
    interval: Duration,
    s: &mut SoakReport,
    report: &mut RunReport,
) -> Result<(u64, u64), RunError> {
    let (opts, data) = (ctx.opts, ctx.data);
    wait_started(workers, Instant::now() + Duration::from_secs(30))?;
    let mut urls = Vec::new();
    for w in workers.iter() {
        let addr = WorkerReport::read(&w.report)?
            .and_then(|r| r.metrics_addr)
            .ok_or_else(|| RunError::NoMetrics(w.report.clone()))?;
        urls.push(format!("http://{addr}/metrics"));
    }
    // Let the group settle before the first frame (a live system's workers
    // are already running).
    std::thread::sleep(Duration::from_secs(3));
    let file = File::open(&data.path).map_err(RunError::Frames)?;
    let paced = PacedReader::new(BufReader::with_capacity(1 << 20, file));
    let (released, behind, first_due) = (
        paced.released.clone(),
        paced.behind_ms.clone(),
        paced.first_due_ms.clone(),
    );
    info!(frames = data.frames, "soak: producing");
    std::thread::scope(|scope| {
        let mut producer = Some(scope.spawn(move || {
            let started = unix_ms();
            let summary = ingest_from(opts, data, topics, paced);
            (started, unix_ms(), summary)
        }));
        let mut produced: Option<(u64, u64)> = None;
        let mut next = Instant::now();
        loop {
            if producer.as_ref().is_some_and(|p| p.is_finished()) {
                let (started, done, summary) = producer
                    .take()
                    .expect("checked")
                    .join()
                    .map_err(|_| RunError::IngestPanicked)?;
                let summary = summary.map_err(RunError::Ingest)?;
                publish_ends(opts, topics, dir)?;
                report.ingest = Rate::new(
                    summary.read.valid,
                    data.payload_bytes,
                    summary.elapsed.as_secs_f64(),
                );
                let t0 = first_due.load(Ordering::SeqCst);
                s.production_start_ms = t0;
                s.production_seconds = Some(done.saturating_sub(t0) as f64 / 1000.0);
                s.production_behind_seconds = Some(behind.load(Ordering::SeqCst) as f64 / 1000.0);
                info!(
                    frames = summary.delivered,
                    "soak: every frame delivered; the workers drain"
                );
                produced = Some((started, done));
            }
            let t0 = first_due.load(Ordering::SeqCst);
            if t0 > 0 && released.load(Ordering::SeqCst) > 0 {
                let sample = take_sample(workers, &urls, t0, produced.is_none(), &released);
                log_sample(&sample);
                s.samples.push(sample);
            }
            let exited = check_workers(workers)?;
            if let Some((_, done)) = produced {
                if exited == workers.len() {
                    s.drain_seconds = Some(unix_ms().saturating_sub(done) as f64 / 1000.0);
                    return Ok(produced.expect("set"));
                }
                if unix_ms() > done + opts.phase_timeout.as_millis() as u64 {
                    return Err(RunError::NotDrained {
                        timeout: opts.phase_timeout,
                        log: LogTail::of(&workers[0].log),
                    });
                }
            }
            next += interval;
            while Instant::now() < next && !producer.as_ref().is_some_and(|p| p.is_finished()) {
                if produced.is_some() && check_workers(workers)? == workers.len() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    })
}

/// How many workers have exited; an error naming the first that failed.
fn check_workers(workers: &mut [WorkerProcess]) -> Result<usize, RunError> {
    let mut exited = 0;
    for w in workers.iter_mut() {
        match w.child.try_wait() {
            Ok(Some(status)) if !status.success() => {
                return Err(RunError::WorkerExited {
                    status,
                    log: LogTail::of(&w.log),
                })
            }
            Ok(Some(_)) => exited += 1,
            Ok(None) => {}
            Err(e) => return Err(RunError::Wait(e)),
        }
    }
    Ok(exited)
}

/// Every worker now: RSS from /proc, the rest from its /metrics.
fn take_sample(
    workers: &[WorkerProcess],
    urls: &[String],
    t0_ms: u64,
    producing: bool,
    released: &std::sync::atomic::AtomicU64,
) -> SoakSample {
    let mut sample = SoakSample {
        t: unix_ms().saturating_sub(t0_ms) as f64 / 1000.0,
        producing,
        produced: released.load(Ordering::SeqCst),
        workers: Vec::new(),
    };
    for (i, (w, url)) in workers.iter().zip(urls).enumerate() {
        let metrics = match get(url, Duration::from_secs(2)) {
            Ok((200, body)) => body,
            _ => String::new(),
        };
        let mut ws = worker_sample(i as u32, &metrics);
        ws.rss_kb = rss_kb(w.child.id());
        sample.workers.push(ws);
    }
    sample
}

fn log_sample(s: &SoakSample) {
    for w in &s.workers {
        info!(
            t = format!("{:.0}", s.t),
            produced = s.produced,
            worker = w.worker,
            rss_mb = w
                .rss_kb
                .map(|kb| format!("{:.1}", kb as f64 * 1024.0 / 1e6)),
            frames = w.frames,
            lag = w.lag,
            late_seconds = w.late_seconds,
            delay_s = w.event_time_delay_seconds,
            "soak sample"
        );
    }
}
