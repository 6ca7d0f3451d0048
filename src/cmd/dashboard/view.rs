//! What the dashboard shows, built from the records it reads: windows by
//! start (the last value of a key wins, as compaction keeps it), dead
//! letters by reason, late frames by kind; and its JSON for the page.
//!
//! Every map is bounded whatever the topics hold: the recent windows of
//! each kind ([`KEPT_MINUTES`], `KEPT_SECONDS`), and dead-letter reasons,
//! whose header any producer of the topic may set: the reasons timebucket
//! writes, `unknown` (no header) and `other` for every other value.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::core::frame::Invalid;
use crate::core::metric::{MetricKind, MetricRecord};
use crate::kafka::producer::REASON_TOO_LARGE_FOR_TOPIC;

/// How many recent windows of each kind the page gets.
pub const PAGE_MINUTES: usize = 60;
pub const PAGE_SECONDS: usize = 300;
/// Seconds kept in memory: an hour.
const KEPT_SECONDS: usize = 3_600;
/// Minutes kept in memory (the totals cover them): a week.
pub const KEPT_MINUTES: usize = 7 * 24 * 60;
/// The dead-letter reason of a header value timebucket never writes.
pub const OTHER_REASON: &str = "other";
/// The dead-letter reason of a record without a reason header.
pub const UNKNOWN_REASON: &str = "unknown";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MinuteRow {
    pub start: u64,
    pub users: u64,
    pub frames: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SecondRow {
    pub start: u64,
    pub frames: u64,
}

#[derive(Debug, Default)]
pub struct View {
    minutes: BTreeMap<u64, MinuteRow>,
    seconds: BTreeMap<u64, SecondRow>,
    /// Frames over every minute window kept.
    frames: u64,
    /// By reason: at most the known reasons, `unknown` and `other`.
    invalid: BTreeMap<&'static str, u64>,
    late_seconds: u64,
    late_minutes: u64,
    records: u64,
    updated_ms: u64,
}

/// The page's JSON (`/api/windows`).
#[derive(Debug, Serialize)]
pub struct Snapshot<'a> {
    pub minutes: Vec<MinuteRow>,
    pub seconds: Vec<SecondRow>,
    pub minute_windows: usize,
    pub frames: u64,
    pub invalid: u64,
    pub invalid_reasons: &'a BTreeMap<&'static str, u64>,
    pub late_seconds: u64,
    pub late_minutes: u64,
    pub late_topic: bool,
    pub records: u64,
    pub updated_ms: u64,
    pub topics: &'a BTreeMap<&'static str, String>,
}

impl View {
    /// A record of a metric topic.
    pub fn window(&mut self, record: &MetricRecord, now_ms: u64) {
        self.touch(now_ms);
        match record.metric {
            MetricKind::Minute => {
                let row = MinuteRow {
                    start: record.window_start,
                    users: record.unique_users.unwrap_or(0),
                    frames: record.frames,
                };
                let old = self.minutes.insert(row.start, row).map_or(0, |r| r.frames);
                self.frames = self.frames - old + row.frames;
                while self.minutes.len() > KEPT_MINUTES {
                    let (_, gone) = self.minutes.pop_first().expect("not empty");
                    self.frames -= gone.frames;
                }
            }
            MetricKind::Second => {
                let row = SecondRow {
                    start: record.window_start,
                    frames: record.frames,
                };
                self.seconds.insert(row.start, row);
                while self.seconds.len() > KEPT_SECONDS {
                    self.seconds.pop_first();
                }
            }
        }
    }

    /// A dead letter with its reason header (`unknown` without one,
    /// `other` for a reason timebucket does not write).
    pub fn dead_letter(&mut self, reason: Option<&str>, now_ms: u64) {
        self.touch(now_ms);
        *self.invalid.entry(known_reason(reason)).or_default() += 1;
    }

    /// A late frame: `minute` when it missed its minute too.
    pub fn late(&mut self, minute: bool, now_ms: u64) {
        self.touch(now_ms);
        self.late_seconds += 1;
        self.late_minutes += u64::from(minute);
    }

    fn touch(&mut self, now_ms: u64) {
        self.records += 1;
        self.updated_ms = now_ms;
    }

    pub fn snapshot<'a>(
        &'a self,
        topics: &'a BTreeMap<&'static str, String>,
        late_topic: bool,
    ) -> Snapshot<'a> {
        let last = |n: usize, len: usize| len.saturating_sub(n);
        Snapshot {
            minutes: self
                .minutes
                .values()
                .skip(last(PAGE_MINUTES, self.minutes.len()))
                .copied()
                .collect(),
            seconds: self
                .seconds
                .values()
                .skip(last(PAGE_SECONDS, self.seconds.len()))
                .copied()
                .collect(),
            minute_windows: self.minutes.len(),
            frames: self.frames,
            invalid: self.invalid.values().sum(),
            invalid_reasons: &self.invalid,
            late_seconds: self.late_seconds,
            late_minutes: self.late_minutes,
            late_topic,
            records: self.records,
            updated_ms: self.updated_ms,
            topics,
        }
    }
}

/// The reason as one of a fixed set of names.
fn known_reason(reason: Option<&str>) -> &'static str {
    let Some(reason) = reason else {
        return UNKNOWN_REASON;
    };
    Invalid::ALL
        .iter()
        .map(|r| r.code())
        .chain([REASON_TOO_LARGE_FOR_TOPIC, UNKNOWN_REASON])
        .find(|known| *known == reason)
        .unwrap_or(OTHER_REASON)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minute(start: u64, users: u64, frames: u64) -> MetricRecord {
        MetricRecord {
            metric: MetricKind::Minute,
            window_start: start,
            window_end: start + 60,
            unique_users: Some(users),
            frames,
            start: String::new(),
            partition: 0,
        }
    }

    #[test]
    fn the_last_value_of_a_window_wins_and_totals_follow() {
        let mut v = View::default();
        v.window(&minute(120, 3, 10), 1);
        v.window(&minute(60, 2, 5), 2);
        v.window(&minute(120, 4, 11), 3);
        v.dead_letter(Some("not_json"), 4);
        v.dead_letter(None, 5);
        v.late(true, 6);
        v.late(false, 7);
        let topics = BTreeMap::new();
        let s = v.snapshot(&topics, true);
        assert_eq!(
            s.minutes.iter().map(|r| r.start).collect::<Vec<_>>(),
            [60, 120]
        );
        assert_eq!(s.minutes[1].users, 4);
        assert_eq!(s.frames, 16);
        assert_eq!(s.invalid, 2);
        assert_eq!((s.late_seconds, s.late_minutes), (2, 1));
        assert_eq!((s.records, s.updated_ms), (7, 7));
    }

    #[test]
    fn only_recent_windows_go_to_the_page() {
        let mut v = View::default();
        for i in 0..(KEPT_SECONDS as u64 + 10) {
            let mut r = minute(i * 60, 1, 1);
            v.window(&r, 0);
            r.metric = MetricKind::Second;
            r.window_start = i;
            v.window(&r, 0);
        }
        let topics = BTreeMap::new();
        let s = v.snapshot(&topics, false);
        assert_eq!(s.minutes.len(), PAGE_MINUTES);
        assert_eq!(s.seconds.len(), PAGE_SECONDS);
        assert_eq!(s.seconds.last().unwrap().start, KEPT_SECONDS as u64 + 9);
        assert_eq!(s.minute_windows, KEPT_SECONDS + 10);
        assert_eq!(v.seconds.len(), KEPT_SECONDS);
    }

    #[test]
    fn reasons_and_minutes_are_bounded_whatever_the_topics_hold() {
        let mut v = View::default();
        for i in 0..10_000 {
            v.dead_letter(Some(&format!("made-up-{i}")), 0);
        }
        v.dead_letter(Some(Invalid::NotJson.code()), 0);
        v.dead_letter(Some(REASON_TOO_LARGE_FOR_TOPIC), 0);
        v.dead_letter(None, 0);
        let topics = BTreeMap::new();
        let s = v.snapshot(&topics, false);
        assert_eq!(s.invalid, 10_003, "every dead letter is counted");
        let reasons: Vec<(&str, u64)> = s.invalid_reasons.iter().map(|(k, n)| (*k, *n)).collect();
        assert_eq!(
            reasons,
            [
                ("not_json", 1),
                (OTHER_REASON, 10_000),
                ("too_large_for_topic", 1),
                (UNKNOWN_REASON, 1)
            ]
        );
        for i in 0..(KEPT_MINUTES as u64 + 100) {
            v.window(&minute(i * 60, 1, 2), 0);
        }
        let s = v.snapshot(&topics, false);
        assert_eq!(s.minute_windows, KEPT_MINUTES);
        assert_eq!(
            s.frames,
            2 * KEPT_MINUTES as u64,
            "totals follow the kept minutes"
        );
    }
}
