//! Output records: the normative JSON of a closed window, as written by
//! `aggregate` to stdout and by workers to the metric topics.

use serde::{Deserialize, Serialize};

use crate::window::Closed;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricKind {
    Second,
    Minute,
}

/// One emitted window. Field order and names are normative; `start` (ISO-8601
/// UTC) and `partition` are extras for people and for debugging.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricRecord {
    pub metric: MetricKind,
    pub window_start: u64,
    pub window_end: u64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub unique_users: Option<u64>,
    pub frames: u64,
    #[serde(default)]
    pub start: String,
    #[serde(default)]
    pub partition: i32,
}

impl MetricRecord {
    pub fn new(closed: Closed, partition: i32) -> MetricRecord {
        let (metric, unique_users, frames) = match closed {
            Closed::Second { frames, .. } => (MetricKind::Second, None, frames),
            Closed::Minute {
                frames,
                unique_users,
                ..
            } => (MetricKind::Minute, Some(unique_users), frames),
        };
        MetricRecord {
            metric,
            window_start: closed.start(),
            window_end: closed.end(),
            unique_users,
            frames,
            start: iso8601_utc(closed.start()),
            partition,
        }
    }

    /// The Kafka record key: `window_start` as a decimal string.
    pub fn key(&self) -> String {
        self.window_start.to_string()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a metric record always serializes")
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` for unix seconds (proleptic Gregorian, UTC).
pub fn iso8601_utc(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_dates() {
        assert_eq!(iso8601_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601_utc(1468244384), "2016-07-11T13:39:44Z");
        assert_eq!(iso8601_utc(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn normative_shape() {
        let m = MetricRecord::new(
            Closed::Minute {
                start: 1468245300,
                frames: 862,
                unique_users: 859,
            },
            3,
        );
        let v: serde_json::Value = serde_json::from_str(&m.to_json()).unwrap();
        assert_eq!(v["metric"], "minute");
        assert_eq!(v["window_start"], 1468245300);
        assert_eq!(v["window_end"], 1468245360);
        assert_eq!(v["unique_users"], 859);
        assert_eq!(v["frames"], 862);
        assert_eq!(m.key(), "1468245300");
        let s = MetricRecord::new(
            Closed::Second {
                start: 7,
                frames: 2,
            },
            0,
        )
        .to_json();
        assert!(
            s.starts_with(r#"{"metric":"second","window_start":7,"window_end":8,"frames":2"#),
            "{s}"
        );
        assert_eq!(serde_json::from_str::<MetricRecord>(&s).unwrap().frames, 2);
    }
}
