//! The merge stage's typed run report, written as JSON to `--report-file`
//! for `loadtest` and the tests, which read it back with the same type.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::cmd::worker::report::{read_report, ReportError};

/// What a merger counted.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeSummary {
    /// Partials records taken (replays included).
    pub pieces: u64,
    pub partials: u64,
    pub progress: u64,
    /// Partials whose window was already merged (idle-shard bound).
    pub late_partials: u64,
    /// Records of the partials topic that are no partial or progress, or
    /// name a partition the input topic does not have.
    pub invalid: u64,
    pub seconds_emitted: u64,
    pub minutes_emitted: u64,
    pub transactions_committed: u64,
    pub transactions_aborted: u64,
    /// Partials partitions taken on from a committed checkpoint (another
    /// merger's, or this one's before a rewind).
    #[serde(default)]
    pub resumed: u64,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct MergeReport {
    pub started_ms: u64,
    pub finished_ms: Option<u64>,
    /// When merged windows were last made durable.
    pub last_emit_ms: Option<u64>,
    pub ok: bool,
    pub summary: MergeSummary,
    pub cpu_ms: Option<u64>,
}

impl MergeReport {
    /// This process's CPU time so far.
    pub fn measure_process(&mut self) {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        self.cpu_ms = crate::cmd::worker::report::cpu_ms(&stat);
    }

    /// Writes the report whole (a temporary file renamed over `path`).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("tmp");
        let json = serde_json::to_string(self).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, format!("{json}\n"))?;
        std::fs::rename(&tmp, path)
    }

    /// The report at `path`, if one is there.
    pub fn read(path: &Path) -> Result<Option<MergeReport>, ReportError> {
        read_report(path, "merge")
    }
}
