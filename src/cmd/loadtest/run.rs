//! One run: ingest and process for one partition and worker count, timed,
//! sampled and checked. A soak's run measures with [`super::soak::measure`]
//! instead of [`measure`]; what both share is in [`super::measure`].

use std::path::Path;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::check::{check_windows, count_committed, expected_windows, verdict};
use super::failure::RunError;
use super::measure::{
    busy_pct, collect_figures, cpu_jiffies, ingest_data, measure_with, RunContext,
};
use super::observe::LagSignal;
use super::perf::{consumer_perf, producer_perf};
use super::report::{Check, Rate, RunReport};
use super::topics::{create_topics, delete_run, RunTopics};
use super::unix_ms;
use super::workers::{
    ends_file, publish_ends, spawn_merger, spawn_worker, wait_started, wait_workers,
};
use crate::error::Error;

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
        report.failure = Some(failure.to_string());
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
) -> Result<(), RunError> {
    measure_with(ctx, topics, report, |report, lag| {
        ingest_and_process(ctx, topics, dir, report, lag)
    })
}

/// Returns the unix ms of ingest's start and of its last delivery.
pub(super) fn ingest_and_process(
    ctx: &RunContext<'_>,
    topics: &RunTopics,
    dir: &Path,
    report: &mut RunReport,
    lag: &LagSignal,
) -> Result<(u64, u64), RunError> {
    let opts = ctx.opts;
    let data = ctx.data;
    let until = opts.live.then(|| ends_file(dir));
    let mut workers = Vec::new();
    // The merge stage runs from the start, as in production.
    let mut merger = if opts.shards > 1 {
        Some(spawn_merger(opts, topics, dir)?)
    } else {
        None
    };
    let cpu_processing_start;
    if opts.live {
        cpu_processing_start = cpu_jiffies();
        for i in 0..report.workers {
            workers.push(spawn_worker(opts, topics, dir, i, until.as_deref())?);
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
            return Err(RunError::Ingest(e));
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
            workers.push(spawn_worker(opts, topics, dir, i, None)?);
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
