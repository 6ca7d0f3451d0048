//! Window sets and their comparison: what a run emitted against what it must
//! emit (the offline `aggregate` on the same input). One comparison for
//! `loadtest`'s verdict and for the tests' assertions.

use std::collections::BTreeMap;
use std::fmt;

use crate::metric::{MetricKind, MetricRecord};

/// A window's identity: its kind and start.
pub type WindowKey = (MetricKind, u64);
/// A window's value: frames, and distinct users for a minute.
pub type WindowValue = (u64, Option<u64>);

/// Windows by key, with what was odd while collecting them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WindowSet {
    pub windows: BTreeMap<WindowKey, WindowValue>,
    /// Records of a window already seen, with the same value.
    pub repeated: u64,
    /// Records of a window already seen, with another value: (key, first, later).
    pub conflicts: Vec<(WindowKey, WindowValue, WindowValue)>,
}

impl WindowSet {
    pub fn insert(&mut self, record: &MetricRecord) {
        let key = (record.metric, record.window_start);
        let value = (record.frames, record.unique_users);
        match self.windows.insert(key, value) {
            None => {}
            Some(previous) if previous == value => self.repeated += 1,
            Some(previous) => self.conflicts.push((key, previous, value)),
        }
    }

    /// The records of `aggregate`'s output (JSON lines).
    pub fn from_json_lines(text: &[u8]) -> Result<WindowSet, serde_json::Error> {
        let mut set = WindowSet::default();
        for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            set.insert(&serde_json::from_slice(line)?);
        }
        Ok(set)
    }

    pub fn len(&self) -> usize {
        self.windows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }

    /// How `self` (what was emitted) differs from `want`.
    pub fn compare(&self, want: &WindowSet) -> WindowDiff {
        let got = &self.windows;
        WindowDiff {
            expected: want.len(),
            emitted: self.len(),
            missing: want
                .windows
                .keys()
                .filter(|k| !got.contains_key(k))
                .copied()
                .collect(),
            extra: got
                .keys()
                .filter(|k| !want.windows.contains_key(k))
                .copied()
                .collect(),
            differing: want
                .windows
                .iter()
                .filter_map(|(k, w)| got.get(k).filter(|g| *g != w).map(|g| (*k, *w, *g)))
                .collect(),
            repeated: self.repeated,
            conflicts: self.conflicts.clone(),
        }
    }
}

/// What differs between emitted windows and the expected ones.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WindowDiff {
    pub expected: usize,
    pub emitted: usize,
    pub missing: Vec<WindowKey>,
    pub extra: Vec<WindowKey>,
    /// (key, want, got).
    pub differing: Vec<(WindowKey, WindowValue, WindowValue)>,
    /// Windows emitted again with the same value (fine at-least-once).
    pub repeated: u64,
    /// Windows emitted again with another value (never fine).
    pub conflicts: Vec<(WindowKey, WindowValue, WindowValue)>,
}

impl WindowDiff {
    /// Every expected window emitted with its value, nothing else; with
    /// `exactly_once`, none more than once either.
    pub fn is_exact(&self, exactly_once: bool) -> bool {
        self.missing.is_empty()
            && self.extra.is_empty()
            && self.differing.is_empty()
            && self.conflicts.is_empty()
            && !(exactly_once && self.repeated > 0)
    }

    /// The problems in a few words, e.g. "2 missing, 1 differ".
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (n, what) in [
            (self.missing.len(), "missing"),
            (self.extra.len(), "extra"),
            (self.differing.len(), "differ"),
            (self.conflicts.len(), "emitted twice with different values"),
            (self.repeated as usize, "duplicates"),
        ] {
            if n > 0 {
                problems.push(format!("{n} {what}"));
            }
        }
        problems
    }
}

/// The counts and the first few examples of each problem.
impl fmt::Display for WindowDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 5;
        write!(
            f,
            "{} windows expected, {} emitted",
            self.expected, self.emitted
        )?;
        if !self.missing.is_empty() {
            write!(
                f,
                "; missing {:?}",
                &self.missing[..self.missing.len().min(SHOWN)]
            )?;
        }
        if !self.extra.is_empty() {
            write!(
                f,
                "; extra {:?}",
                &self.extra[..self.extra.len().min(SHOWN)]
            )?;
        }
        if !self.differing.is_empty() {
            let shown = &self.differing[..self.differing.len().min(SHOWN)];
            write!(f, "; differing (key, want, got) {shown:?}")?;
        }
        if !self.conflicts.is_empty() {
            let shown = &self.conflicts[..self.conflicts.len().min(SHOWN)];
            write!(f, "; emitted twice (key, first, then) {shown:?}")?;
        }
        if self.repeated > 0 {
            write!(f, "; {} repeated with the same value", self.repeated)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::Closed;

    fn minute(start: u64, frames: u64, users: u64) -> MetricRecord {
        MetricRecord::new(
            Closed::Minute {
                start,
                frames,
                unique_users: users,
            },
            0,
        )
    }

    #[test]
    fn equal_sets_are_exact_and_each_problem_is_named() {
        let mut want = WindowSet::default();
        want.insert(&minute(60, 3, 2));
        want.insert(&minute(120, 4, 4));
        assert!(want.compare(&want).is_exact(true));

        let mut got = WindowSet::default();
        got.insert(&minute(60, 3, 2));
        got.insert(&minute(60, 3, 2));
        got.insert(&minute(180, 1, 1));
        let diff = got.compare(&want);
        assert_eq!(diff.missing, vec![(MetricKind::Minute, 120)]);
        assert_eq!(diff.extra, vec![(MetricKind::Minute, 180)]);
        assert_eq!(diff.repeated, 1);
        assert!(!diff.is_exact(false));
        assert_eq!(diff.problems(), ["1 missing", "1 extra", "1 duplicates"]);

        let mut conflicting = want.clone();
        conflicting.insert(&minute(60, 5, 2));
        let diff = conflicting.compare(&want);
        assert_eq!(diff.differing.len(), 1);
        assert_eq!(diff.conflicts.len(), 1);
        assert!(diff.to_string().contains("emitted twice"));
    }

    #[test]
    fn repeats_are_fine_at_least_once_only() {
        let mut want = WindowSet::default();
        want.insert(&minute(60, 3, 2));
        let mut got = want.clone();
        got.insert(&minute(60, 3, 2));
        assert!(got.compare(&want).is_exact(false));
        assert!(!got.compare(&want).is_exact(true));
    }

    #[test]
    fn aggregate_output_reads_back() {
        let text = format!(
            "{}\n{}\n",
            minute(60, 3, 2).to_json(),
            minute(120, 1, 1).to_json()
        );
        let set = WindowSet::from_json_lines(text.as_bytes()).unwrap();
        assert_eq!(set.len(), 2);
        assert!(WindowSet::from_json_lines(b"{").is_err());
    }
}
