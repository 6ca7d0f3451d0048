//! The worker's metric families. Counters mirror the worker's own
//! [`WorkerSummary`] (one store each per poll batch, see
//! [`WorkerMetrics::publish`]), so what Prometheus scrapes at the end equals
//! the run report; per-partition gauges (watermark, event-time delay, lag)
//! are set about once a second from the loop; the transaction histogram and
//! the group's figures are set where they happen.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use super::http::HttpCounters;
use super::{by_reason, mirror, Readiness, Ready, PREFIX};
use crate::core::frame::Invalid;
use crate::core::summary::WorkerSummary;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WindowLabel {
    window: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabel {
    partition: i32,
}

/// One owned input partition as the loop sees it, about once a second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionFigures {
    pub partition: i32,
    /// The partition's watermark (unix seconds), once it has one.
    pub watermark: Option<u64>,
    /// The offset of the next record to handle, if known.
    pub position: Option<i64>,
}

/// A pair of counters by window kind.
struct ByWindow {
    second: Counter,
    minute: Counter,
}

impl ByWindow {
    fn new(registry: &mut Registry, name: &str, help: &str) -> ByWindow {
        let family = Family::<WindowLabel, Counter>::default();
        registry.register(name, help, family.clone());
        let get = |window| family.get_or_create_owned(&WindowLabel { window });
        ByWindow {
            second: get("second"),
            minute: get("minute"),
        }
    }
}

pub struct WorkerMetrics {
    registry: Arc<Registry>,
    /// Refusals of the `--metrics-addr` server.
    http: HttpCounters,
    consumed: Counter,
    valid: Counter,
    replayed: Counter,
    /// By `Invalid::index`.
    invalid: Vec<Counter>,
    late: ByWindow,
    windows: ByWindow,
    committed: Counter,
    aborted: Counter,
    transaction_seconds: Histogram,
    producer_replacements: Counter,
    too_large_for_topic: Counter,
    lost_to_retention: Counter,
    rebalances: Counter,
    partitions_revoked: Counter,
    owned: Gauge,
    beyond_horizon: Counter,
    state_bytes: Gauge,
    state_peak: Gauge,
    state_budget: Gauge,
    watermark: Family<PartitionLabel, Gauge>,
    delay: Family<PartitionLabel, Gauge>,
    lag: Family<PartitionLabel, Gauge>,
    /// Partitions that have per-partition series now.
    shown: Mutex<BTreeSet<i32>>,
    /// The log start and last stable offset of each input partition, from
    /// librdkafka's statistics (what a read_committed consumer can reach).
    ends: Mutex<HashMap<i32, (i64, i64)>>,
    joined: AtomicBool,
    finished: AtomicBool,
}

impl Default for WorkerMetrics {
    fn default() -> Self {
        WorkerMetrics::new()
    }
}

impl WorkerMetrics {
    pub fn new() -> WorkerMetrics {
        let mut r = Registry::with_prefix(PREFIX);
        let counter = |r: &mut Registry, name: &str, help: &str| {
            let c = Counter::default();
            r.register(name, help, c.clone());
            c
        };
        let consumed = counter(
            &mut r,
            "frames_consumed",
            "Input records handled: valid frames, invalid records and blank lines (replays included)",
        );
        let valid = counter(
            &mut r,
            "frames_valid",
            "Valid frames counted in their windows (replays included)",
        );
        let replayed = counter(
            &mut r,
            "frames_replayed",
            "Records consumed again after a hand-over or a rewind (no side output sent twice)",
        );
        let invalid = by_reason(
            &mut r,
            "frames_invalid",
            "Invalid records, by reason (dead-lettered unless replayed)",
        );
        let late = ByWindow::new(
            &mut r,
            "frames_late",
            "Frames that came after their window had closed, by window kind (minute: late for the minute too)",
        );
        let windows = ByWindow::new(
            &mut r,
            "windows_emitted",
            "Windows closed and sent to the metric topics, by kind",
        );
        let transactions = Family::<OutcomeLabel, Counter>::default();
        r.register(
            "transactions",
            "Kafka transactions ended, by outcome (committed, or aborted and replayed)",
            transactions.clone(),
        );
        let committed = transactions.get_or_create_owned(&OutcomeLabel {
            outcome: "committed",
        });
        let aborted = transactions.get_or_create_owned(&OutcomeLabel { outcome: "aborted" });
        let transaction_seconds = Histogram::new(exponential_buckets(0.005, 2.0, 12));
        r.register_with_unit(
            "transaction_duration",
            "Time to end a transaction: send the offsets, deliver, commit (or abort)",
            Unit::Seconds,
            transaction_seconds.clone(),
        );
        let producer_replacements = counter(
            &mut r,
            "producer_replacements",
            "Transactional producers replaced by a fresh one (fenced, or unable to abort)",
        );
        let too_large_for_topic = counter(
            &mut r,
            "frames_too_large_for_topic",
            "Valid frames (counted) too large for the forward or late topic: dead-lettered as too_large_for_topic",
        );
        let lost_to_retention = counter(
            &mut r,
            "records_lost_to_retention",
            "Input offsets removed by retention before this worker read them (each range logged as an error)",
        );
        let rebalances = counter(
            &mut r,
            "rebalances",
            "Assignments received from the consumer group (one per rebalance this worker took part in)",
        );
        let partitions_revoked = counter(
            &mut r,
            "partitions_revoked",
            "Input partitions taken away from this worker by rebalances",
        );
        let owned = Gauge::default();
        r.register(
            "owned_partitions",
            "Input partitions assigned to this worker now",
            owned.clone(),
        );
        let beyond_horizon = counter(
            &mut r,
            "frames_beyond_horizon",
            "Valid frames counted in windows dropped because they lay beyond the horizon past the watermark (never emitted)",
        );
        let gauge = |r: &mut Registry, name: &str, help: &str| {
            let g = Gauge::default();
            r.register_with_unit(name, help, Unit::Bytes, g.clone());
            g
        };
        let state_bytes = gauge(
            &mut r,
            "state",
            "Estimated heap bytes of the owned partitions' open windows and their distinct uids",
        );
        let state_peak = gauge(
            &mut r,
            "state_peak",
            "The most the owned partitions' open windows took (estimated heap bytes)",
        );
        let state_budget = gauge(
            &mut r,
            "state_budget",
            "The state budget (--state-budget): the worker stops with exit code 13 past it",
        );
        let watermark = Family::<PartitionLabel, Gauge>::default();
        r.register_with_unit(
            "partition_watermark_timestamp",
            "The partition's watermark: windows ending at or before it are closed (unix time)",
            Unit::Seconds,
            watermark.clone(),
        );
        let delay = Family::<PartitionLabel, Gauge>::default();
        r.register_with_unit(
            "partition_event_time_delay",
            "How far the partition's watermark trails the present: now minus the watermark",
            Unit::Seconds,
            delay.clone(),
        );
        let lag = Family::<PartitionLabel, Gauge>::default();
        r.register_with_unit(
            "partition_lag",
            "Records of the partition not handled yet: its last stable offset minus the worker's position",
            Unit::Other("records".into()),
            lag.clone(),
        );
        WorkerMetrics {
            http: HttpCounters::register(&mut r),
            registry: Arc::new(r),
            consumed,
            valid,
            replayed,
            invalid,
            late,
            windows,
            committed,
            aborted,
            transaction_seconds,
            producer_replacements,
            too_large_for_topic,
            lost_to_retention,
            rebalances,
            partitions_revoked,
            owned,
            beyond_horizon,
            state_bytes,
            state_peak,
            state_budget,
            watermark,
            delay,
            lag,
            shown: Mutex::new(BTreeSet::new()),
            ends: Mutex::new(HashMap::new()),
            joined: AtomicBool::new(false),
            finished: AtomicBool::new(false),
        }
    }

    pub fn registry(&self) -> Arc<Registry> {
        self.registry.clone()
    }

    /// The counters the `--metrics-addr` server counts its refusals in.
    pub fn http(&self) -> HttpCounters {
        self.http.clone()
    }

    /// Mirrors the summary's counts into the counters.
    pub fn publish(&self, s: &WorkerSummary) {
        mirror(&self.consumed, s.consumed());
        mirror(&self.valid, s.frames);
        mirror(&self.replayed, s.replayed);
        for (reason, counter) in Invalid::ALL.iter().zip(&self.invalid) {
            mirror(
                counter,
                s.invalid_reasons.get(reason.code()).copied().unwrap_or(0),
            );
        }
        mirror(&self.late.second, s.late_seconds);
        mirror(&self.late.minute, s.late_minutes);
        mirror(&self.windows.second, s.seconds_emitted);
        mirror(&self.windows.minute, s.minutes_emitted);
        mirror(&self.committed, s.transactions_committed);
        mirror(&self.aborted, s.transactions_aborted);
        mirror(&self.producer_replacements, s.producer_replacements);
        mirror(&self.too_large_for_topic, s.too_large_for_topic);
        mirror(&self.lost_to_retention, s.lost_to_retention);
        mirror(&self.rebalances, s.rebalances);
        mirror(&self.partitions_revoked, s.partitions_revoked);
        mirror(&self.beyond_horizon, s.beyond_horizon);
        self.state_bytes
            .set(i64::try_from(s.state_bytes).unwrap_or(i64::MAX));
        self.state_peak
            .set(i64::try_from(s.state_bytes_peak).unwrap_or(i64::MAX));
    }

    /// The state budget, set once at start.
    pub fn state_budget(&self, limit: u64) {
        self.state_budget
            .set(i64::try_from(limit).unwrap_or(i64::MAX));
    }

    /// How long ending one transaction took.
    pub fn transaction_ended(&self, seconds: f64) {
        self.transaction_seconds.observe(seconds);
    }

    /// The group gave this worker an assignment (maybe empty): it has joined.
    pub fn joined(&self) {
        self.joined.store(true, Ordering::SeqCst);
    }

    /// The run is over: not ready any more (metrics stay served).
    pub fn finished(&self) {
        self.finished.store(true, Ordering::SeqCst);
    }

    /// The log start and last stable offset of input partitions
    /// (librdkafka statistics; negative: not known).
    pub fn end_offsets(&self, ends: impl IntoIterator<Item = (i32, i64, i64)>) {
        let mut known = self.ends.lock().expect("poisoned");
        for (p, start, end) in ends {
            if end >= 0 {
                known.insert(p, (start, end));
            }
        }
    }

    /// Partitions taken away: their series go, and they are no longer owned.
    pub fn revoked(&self, partitions: &[i32]) {
        let mut shown = self.shown.lock().expect("poisoned");
        for p in partitions {
            if shown.remove(p) {
                self.remove_series(*p);
            }
        }
        let left = (self.owned.get() - partitions.len() as i64).max(0);
        self.owned.set(left);
    }

    fn remove_series(&self, partition: i32) {
        let label = PartitionLabel { partition };
        self.watermark.remove(&label);
        self.delay.remove(&label);
        self.lag.remove(&label);
    }

    /// Sets the per-partition gauges for the partitions assigned now (and
    /// drops the series of those no longer assigned). `now`: unix seconds.
    pub fn partitions(&self, now: u64, assigned: &[PartitionFigures]) {
        self.owned.set(assigned.len() as i64);
        let ends = self.ends.lock().expect("poisoned").clone();
        let mut shown = self.shown.lock().expect("poisoned");
        let current: BTreeSet<i32> = assigned.iter().map(|f| f.partition).collect();
        for gone in shown.difference(&current) {
            self.remove_series(*gone);
        }
        *shown = current;
        for f in assigned {
            let label = PartitionLabel {
                partition: f.partition,
            };
            if let Some(wm) = f.watermark {
                self.watermark.get_or_create(&label).set(wm as i64);
                self.delay.get_or_create(&label).set(now as i64 - wm as i64);
            }
            let lag = match (f.position, ends.get(&f.partition)) {
                (Some(pos), Some(&(_, end))) => Some(end - pos),
                // Nothing fetched yet from a partition with nothing to fetch.
                (None, Some(&(start, end))) if end <= start.max(0) => Some(0),
                _ => None,
            };
            if let Some(lag) = lag {
                self.lag.get_or_create(&label).set(lag.max(0));
            }
        }
    }

    /// `/readyz`: ready once the worker has joined its group, with or
    /// without partitions (more members than partitions leaves some idle by
    /// design); not ready before, nor once the run is over.
    pub fn readiness(self: &Arc<Self>, group: &str) -> Readiness {
        let metrics = self.clone();
        let group = group.to_string();
        Arc::new(move || {
            if metrics.finished.load(Ordering::SeqCst) {
                return Ready::No("the worker has finished and left the group".into());
            }
            if !metrics.joined.load(Ordering::SeqCst) {
                return Ready::No(format!("joining consumer group {group}"));
            }
            match metrics.owned.get() {
                0 => Ready::Yes(format!(
                    "member of group {group}, no partition assigned (idle by design while the group has more members than partitions)"
                )),
                n => Ready::Yes(format!("member of group {group}, assigned partitions: {n}")),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exposition(m: &WorkerMetrics) -> String {
        String::from_utf8(super::super::exposition(&m.registry(), None).body).unwrap()
    }

    #[test]
    fn counters_mirror_the_summary() {
        let m = WorkerMetrics::new();
        let mut s = WorkerSummary {
            frames: 10,
            blank: 1,
            late_minutes: 2,
            beyond_horizon: 3,
            state_bytes: 4096,
            ..WorkerSummary::default()
        };
        s.count_invalid("not_json");
        s.count_invalid("not_json");
        m.publish(&s);
        m.state_budget(1 << 30);
        let text = exposition(&m);
        for line in [
            "timebucket_frames_consumed_total 13",
            "timebucket_frames_valid_total 10",
            "timebucket_frames_invalid_total{reason=\"not_json\"} 2",
            "timebucket_frames_invalid_total{reason=\"bad_uid\"} 0",
            "timebucket_frames_late_total{window=\"minute\"} 2",
            "timebucket_transactions_total{outcome=\"aborted\"} 0",
            "timebucket_frames_beyond_horizon_total 3",
            "timebucket_state_bytes 4096",
            "timebucket_state_budget_bytes 1073741824",
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
    }

    #[test]
    fn partition_series_follow_the_assignment() {
        let m = WorkerMetrics::new();
        m.end_offsets([(0, 0, 100), (1, 5, 5)]);
        let fig = |partition, watermark, position| PartitionFigures {
            partition,
            watermark,
            position,
        };
        m.partitions(1_000, &[fig(0, Some(940), Some(60)), fig(1, None, None)]);
        let text = exposition(&m);
        assert!(text.contains("timebucket_owned_partitions 2"));
        assert!(
            text.contains("timebucket_partition_watermark_timestamp_seconds{partition=\"0\"} 940")
        );
        assert!(text.contains("timebucket_partition_event_time_delay_seconds{partition=\"0\"} 60"));
        assert!(text.contains("timebucket_partition_lag_records{partition=\"0\"} 40"));
        // Nothing to fetch, nothing fetched: no lag.
        assert!(text.contains("timebucket_partition_lag_records{partition=\"1\"} 0"));
        assert!(!text.contains("timebucket_partition_watermark_timestamp_seconds{partition=\"1\"}"));
        m.partitions(1_001, &[fig(1, Some(990), Some(5))]);
        let text = exposition(&m);
        assert!(!text.contains("partition=\"0\""), "{text}");
        assert!(text.contains("timebucket_partition_lag_records{partition=\"1\"} 0"));
        m.revoked(&[1]);
        let text = exposition(&m);
        assert!(!text.contains("partition=\"1\""), "{text}");
        assert!(text.contains("timebucket_owned_partitions 0"));
    }

    #[test]
    fn ready_once_joined_until_finished() {
        let m = Arc::new(WorkerMetrics::new());
        let ready = m.readiness("g");
        assert!(!ready().is_ready());
        m.joined();
        assert!(ready().is_ready());
        assert!(ready().why().contains("idle by design"));
        m.partitions(
            0,
            &[PartitionFigures {
                partition: 3,
                watermark: None,
                position: None,
            }],
        );
        assert!(ready().why().contains("assigned partitions: 1"));
        m.finished();
        assert!(!ready().is_ready());
    }
}
