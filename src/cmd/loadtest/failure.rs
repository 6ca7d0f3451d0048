//! Why a run failed before its check ([`RunError`]): a phase that failed or
//! timed out, a worker that exited with an error or wrote no final report.
//! Such a run has no verdict (its `failure` in the report, exit code 12
//! for the command), never a wrong result.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use crate::cmd::worker::ReportError;
use crate::error::Error;

/// Lines of a process's log quoted in an error.
const TAIL_LINES: usize = 15;

/// The last `lines` lines of the file at `path` (nothing if unreadable).
pub(super) fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The last lines of a worker's (or the merger's) log when it failed: what
/// the reader of a failed run needs first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogTail {
    pub log: PathBuf,
    pub lines: String,
}

impl LogTail {
    /// The last lines of `log` now.
    pub fn of(log: &Path) -> LogTail {
        LogTail {
            log: log.to_path_buf(),
            lines: tail(log, TAIL_LINES),
        }
    }
}

impl fmt::Display for LogTail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "last lines of {}:\n{}", self.log.display(), self.lines)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A step of the run's setup: starting a worker or the merger,
    /// publishing the end offsets.
    #[error(transparent)]
    Setup(#[from] Error),
    #[error("ingest failed: {0}")]
    Ingest(#[source] Error),
    #[error("ingest panicked")]
    IngestPanicked,
    #[error("worker exited with {status}; {log}")]
    WorkerExited { status: ExitStatus, log: LogTail },
    #[error("cannot wait for a worker: {0}")]
    Wait(#[source] std::io::Error),
    #[error("workers did not start in time; {0}")]
    NotStarted(LogTail),
    #[error("workers did not finish in time; {0}")]
    NotFinished(LogTail),
    #[error("the workers did not drain in {timeout:?}; {log}")]
    NotDrained { timeout: Duration, log: LogTail },
    /// `kind`: `worker` or `merge`.
    #[error("{kind} wrote no final report to {}; {log}", report.display())]
    NoFinalReport {
        kind: &'static str,
        report: PathBuf,
        log: LogTail,
    },
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error("{}: the worker serves no metrics", .0.display())]
    NoMetrics(PathBuf),
    #[error("cannot open the soak's frames: {0}")]
    Frames(#[source] std::io::Error),
}
