//! The worker's typed run report: what it counted and how it ran. Logged at
//! the end, and written as JSON to `--report-file` for `loadtest` and the
//! tests, which read it back with the same type (no field can be renamed on
//! one side only). What it counted is a [`WorkerSummary`]
//! ([`crate::core::summary`], which the metrics mirror too).

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use crate::core::summary::WorkerSummary;

/// Where a worker is in its run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Consumer created and subscribed; nothing counted yet.
    Started,
    /// The run ended (`ok` says how).
    Finished,
}

/// A partition taken over from its committed checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resume {
    pub partition: i32,
    /// Unix ms when the checkpoint was read.
    pub at_ms: u64,
    /// The first offset replayed.
    pub resume: u64,
    /// The previous owner had handled every record below this offset.
    pub handled_until: u64,
}

/// The run report (`--report-file`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerReport {
    pub phase: Phase,
    pub summary: WorkerSummary,
    /// Every partition this worker resumed from a checkpoint.
    pub resumes: Vec<Resume>,
    /// Unix ms of the first record consumed.
    pub first_record_ms: Option<u64>,
    /// Unix ms of the last record consumed (to a poll batch).
    pub last_record_ms: Option<u64>,
    /// Unix ms at which the last emitted windows became durable.
    pub last_emit_ms: Option<u64>,
    pub started_ms: u64,
    pub finished_ms: Option<u64>,
    /// VmHWM of /proc/self/status.
    pub peak_rss_kb: Option<u64>,
    /// User + system CPU time of the process, and of its main thread (the
    /// one that polls, parses and counts).
    pub cpu_ms: Option<u64>,
    pub main_thread_cpu_ms: Option<u64>,
    /// Where `/metrics` is served (`--metrics-addr`, the bound port when
    /// given port 0), so that `loadtest` can scrape it.
    pub metrics_addr: Option<String>,
    /// Threads that parsed the poll batches, the polling thread included
    /// (`--parse-threads`).
    #[serde(default)]
    pub parse_threads: Option<usize>,
    pub ok: bool,
}

impl WorkerReport {
    pub fn started(started_ms: u64) -> WorkerReport {
        WorkerReport {
            phase: Phase::Started,
            summary: WorkerSummary::default(),
            resumes: Vec::new(),
            first_record_ms: None,
            last_record_ms: None,
            last_emit_ms: None,
            started_ms,
            finished_ms: None,
            peak_rss_kb: None,
            cpu_ms: None,
            main_thread_cpu_ms: None,
            metrics_addr: None,
            parse_threads: None,
            ok: true,
        }
    }

    /// Fills in this process's peak memory and CPU time.
    pub fn measure_process(&mut self) {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        self.peak_rss_kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok());
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        self.cpu_ms = cpu_ms(&read("/proc/self/stat"));
        self.main_thread_cpu_ms = cpu_ms(&read("/proc/thread-self/stat"));
    }

    /// Writes the report whole: to a temporary file renamed over `path`, so
    /// a reader never sees half of it.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("tmp");
        let json = serde_json::to_string(self).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, format!("{json}\n"))?;
        std::fs::rename(&tmp, path)
    }

    /// The report at `path`, if one is there.
    pub fn read(path: &Path) -> Result<Option<WorkerReport>, ReportError> {
        read_report(path, "worker")
    }
}

/// A report file (a worker's or a merger's) that is there but cannot be
/// read or is no such report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("bad {kind} report {}: {source}", path.display())]
    Bad {
        kind: &'static str,
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// The `kind` report (`worker`, `merge`) at `path`, if one is there.
pub(crate) fn read_report<T: DeserializeOwned>(
    path: &Path,
    kind: &'static str,
) -> Result<Option<T>, ReportError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| ReportError::Bad {
                kind,
                path: path.into(),
                source,
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ReportError::Read {
            path: path.into(),
            source,
        }),
    }
}

/// utime + stime, fields 14 and 15 of a `/proc/.../stat` line (the 12th and
/// 13th after the command name, which may hold spaces), in clock ticks of
/// 10 ms.
pub(crate) fn cpu_ms(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut f = rest.split_whitespace().skip(11);
    let utime: u64 = f.next()?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some((utime + stime) * 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_round_trips_and_unknown_fields_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.json");
        assert_eq!(WorkerReport::read(&path).unwrap(), None);
        let mut report = WorkerReport::started(5);
        report.summary.frames = 7;
        report.measure_process();
        report.write(&path).unwrap();
        assert_eq!(WorkerReport::read(&path).unwrap(), Some(report));
        std::fs::write(&path, r#"{"phase":"started","frames":1}"#).unwrap();
        assert!(WorkerReport::read(&path).is_err());
    }

    #[test]
    fn cpu_time_is_read_past_a_command_name_with_spaces() {
        let stat = "1 (a b) S 0 0 0 0 0 0 0 0 0 0 12 3 0 0";
        assert_eq!(cpu_ms(stat), Some(150));
    }
}
