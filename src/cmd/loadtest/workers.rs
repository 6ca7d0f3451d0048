//! Worker processes of a run: started with the run's topics, watched until
//! they finish, and their typed reports read back.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::kafka::config::ENV_PREFIX;

use super::failure::{LogTail, RunError};
use super::topics::RunTopics;
use super::{io_error, LoadtestOptions, LATENESS};
use crate::cmd::worker::{Phase, WorkerReport};

pub(super) struct WorkerProcess {
    pub child: Child,
    pub(super) report: PathBuf,
    pub(super) log: PathBuf,
}

/// The merge stage of a sharded run: one `timebucket merge --until-end`.
pub(super) fn spawn_merger(
    opts: &LoadtestOptions,
    topics: &RunTopics,
    dir: &Path,
) -> Result<WorkerProcess, Error> {
    let report = dir.join("merge.json");
    let log = dir.join("merge.log");
    let _ = std::fs::remove_file(&report);
    let n = &topics.names;
    let mut cmd = Command::new(&opts.exe);
    cmd.arg("merge");
    for var in crate::cli::env_vars("merge") {
        cmd.env_remove(var);
    }
    let (env, args) = opts.settings.for_child()?;
    cmd.envs(env)
        .env("RUST_LOG", "info")
        .args(["-b", &opts.settings.bootstrap]);
    for a in args {
        cmd.arg("-X").arg(a);
    }
    cmd.args(["--input-topic", &n.input])
        .args(["--seconds-topic", &n.seconds])
        .args(["--minutes-topic", &n.minutes])
        .args(["--shards", &opts.shards.to_string()])
        .args(["--partials-topic", &topics.partials])
        .args(["-g", &format!("{}-merge", topics.group)])
        .args(["--idle-shard-seconds", "0", "--until-end"])
        .args(["--commit-interval-ms", &opts.commit_interval_ms.to_string()])
        .arg("--report-file")
        .arg(&report);
    let log_file = File::create(&log).map_err(io_error(format!("create {}", log.display())))?;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .map_err(io_error(format!("start {}", opts.exe.display())))?;
    Ok(WorkerProcess { child, report, log })
}

impl WorkerProcess {
    /// The merger's final report.
    pub fn merge_report(&self) -> Result<crate::cmd::merge::MergeReport, RunError> {
        match crate::cmd::merge::MergeReport::read(&self.report)? {
            Some(r) if r.finished_ms.is_some() => Ok(r),
            _ => Err(self.no_final_report("merge")),
        }
    }

    /// The worker's final report; an error if it wrote none.
    pub fn finished_report(&self) -> Result<WorkerReport, RunError> {
        match WorkerReport::read(&self.report)? {
            Some(r) if r.phase == Phase::Finished => Ok(r),
            _ => Err(self.no_final_report("worker")),
        }
    }

    fn no_final_report(&self, kind: &'static str) -> RunError {
        RunError::NoFinalReport {
            kind,
            report: self.report.clone(),
            log: LogTail::of(&self.log),
        }
    }
}

pub(super) fn spawn_worker(
    opts: &LoadtestOptions,
    topics: &RunTopics,
    dir: &Path,
    index: u32,
    until: Option<&Path>,
) -> Result<WorkerProcess, Error> {
    let report = dir.join(format!("worker-{index}.json"));
    let log = dir.join(format!("worker-{index}.log"));
    let _ = std::fs::remove_file(&report);
    let n = &topics.names;
    let mut cmd = Command::new(&opts.exe);
    cmd.arg("worker");
    // Every option is given here: none may come from this process's
    // environment. The client properties (this process's file, environment
    // and -X, merged) go through the environment, so that no secret is on
    // a command line (`ps` shows those to every user).
    for var in crate::cli::env_vars("worker") {
        cmd.env_remove(var);
    }
    for (var, _) in std::env::vars() {
        if var.starts_with(ENV_PREFIX) {
            cmd.env_remove(var);
        }
    }
    let (env, args) = opts.settings.for_child()?;
    cmd.envs(env)
        .env("RUST_LOG", "info")
        .args(["-b", &opts.settings.bootstrap]);
    for a in args {
        cmd.arg("-X").arg(a);
    }
    cmd.args(["--input-topic", &n.input])
        .args(["--seconds-topic", &n.seconds])
        .args(["--minutes-topic", &n.minutes])
        .args(["--output-stream", &n.forward])
        .args(["--dead-letter-topic", &n.dead_letter])
        .args(["-g", &topics.group])
        .args(["--lateness", &LATENESS.to_string()])
        .args(["--commit-interval-ms", &opts.commit_interval_ms.to_string()])
        .arg("--report-file")
        .arg(&report);
    if let Some(threads) = opts.parse_threads {
        cmd.args(["--parse-threads", &threads.to_string()]);
    }
    match until {
        Some(ends) => {
            cmd.arg("--until-offsets")
                .arg(format!("@{}", ends.display()));
        }
        None => {
            cmd.arg("--until-end");
        }
    }
    if opts.forward {
        cmd.arg("--forward");
    }
    if opts.worker_metrics {
        cmd.args(["--metrics-addr", "127.0.0.1:0"]);
    }
    if opts.at_least_once {
        cmd.arg("--at-least-once");
    }
    if opts.shards > 1 {
        cmd.args(["--shards", &opts.shards.to_string()])
            .args(["--partials-topic", &topics.partials]);
    }
    let log_file = File::create(&log).map_err(io_error(format!("create {}", log.display())))?;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .map_err(io_error(format!("start {}", opts.exe.display())))?;
    Ok(WorkerProcess { child, report, log })
}

/// Waits for every worker; kills them all at `deadline`.
pub(super) fn wait_workers(
    workers: &mut [WorkerProcess],
    deadline: Instant,
) -> Result<(), RunError> {
    let mut failure = None;
    loop {
        let mut running = 0;
        for w in workers.iter_mut() {
            match w.child.try_wait() {
                Ok(Some(status)) if !status.success() && failure.is_none() => {
                    failure = Some(RunError::WorkerExited {
                        status,
                        log: LogTail::of(&w.log),
                    });
                }
                Ok(Some(_)) => {}
                Ok(None) => running += 1,
                Err(e) => failure = Some(RunError::Wait(e)),
            }
        }
        if running == 0 {
            return failure.map_or(Ok(()), Err);
        }
        if failure.is_some() || Instant::now() > deadline {
            for w in workers.iter_mut() {
                let _ = w.child.kill();
                let _ = w.child.wait();
            }
            return Err(
                failure.unwrap_or_else(|| RunError::NotFinished(LogTail::of(&workers[0].log)))
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until every worker has reported that it started (consumer
/// created, subscribed).
pub(super) fn wait_started(workers: &[WorkerProcess], deadline: Instant) -> Result<(), RunError> {
    while Instant::now() < deadline {
        let mut started = 0;
        for w in workers {
            if WorkerReport::read(&w.report)?.is_some() {
                started += 1;
            }
        }
        if started == workers.len() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(RunError::NotStarted(LogTail::of(&workers[0].log)))
}

/// Where a live run's workers learn its end offsets: [`publish_ends`]
/// writes them there once the input is complete.
pub(super) fn ends_file(dir: &Path) -> std::path::PathBuf {
    dir.join("ends")
}

/// Writes the input topic's end offsets to [`ends_file`] (renamed into
/// place, so a worker reads all or nothing). Only now are they known: the
/// transaction markers of ingest take offsets as well as the frames.
pub(super) fn publish_ends(
    opts: &LoadtestOptions,
    topics: &RunTopics,
    dir: &Path,
) -> Result<(), Error> {
    let consumer: rdkafka::consumer::BaseConsumer = opts
        .settings
        .client_config(&[("group.id", "timebucket-reader")])
        .create()
        .map_err(|e| Error::kafka_at("cannot create a client", e))?;
    let ends = crate::kafka::read::end_offsets(&consumer, &topics.names.input)?;
    let mut list: Vec<(i32, i64)> = ends.into_iter().collect();
    list.sort();
    let text: Vec<String> = list.iter().map(|(p, o)| format!("{p}={o}")).collect();
    let path = ends_file(dir);
    let tmp = dir.join("ends.tmp");
    std::fs::write(&tmp, text.join(","))
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|source| Error::System {
            what: format!("write {}", path.display()),
            source,
        })
}
