//! `ingest`'s metric families, mirrored from its own counts every few
//! thousand lines and once more after the last delivery.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::{Registry, Unit};

use super::http::HttpCounters;
use super::{by_reason, mirror, Readiness, Ready, PREFIX};
use crate::core::frame::Invalid;
use crate::core::summary::Summary;

const STARTING: u8 = 0;
const PRODUCING: u8 = 1;
const FINISHED: u8 = 2;

pub struct IngestMetrics {
    registry: Arc<Registry>,
    /// Refusals of the `--metrics-addr` server.
    http: HttpCounters,
    lines: Counter,
    bytes: Counter,
    valid: Counter,
    /// By `Invalid::index`.
    invalid: Vec<Counter>,
    delivered: Counter,
    failed: Counter,
    phase: AtomicU8,
}

impl Default for IngestMetrics {
    fn default() -> Self {
        IngestMetrics::new()
    }
}

impl IngestMetrics {
    pub fn new() -> IngestMetrics {
        let mut r = Registry::with_prefix(format!("{PREFIX}_ingest"));
        let counter = |r: &mut Registry, name: &str, help: &str| {
            let c = Counter::default();
            r.register(name, help, c.clone());
            c
        };
        let lines = counter(&mut r, "lines_read", "Input lines read");
        let bytes = Counter::default();
        r.register_with_unit("read", "Input bytes read", Unit::Bytes, bytes.clone());
        let valid = counter(
            &mut r,
            "frames_valid",
            "Valid frames sent to the input topic",
        );
        let invalid = by_reason(
            &mut r,
            "frames_invalid",
            "Invalid lines sent to the dead-letter topic, by reason",
        );
        let delivered = counter(
            &mut r,
            "records_delivered",
            "Records the broker acknowledged (frames and dead letters)",
        );
        let failed = counter(
            &mut r,
            "records_failed",
            "Records that could not be delivered",
        );
        IngestMetrics {
            http: HttpCounters::register(&mut r),
            registry: Arc::new(r),
            lines,
            bytes,
            valid,
            invalid,
            delivered,
            failed,
            phase: AtomicU8::new(STARTING),
        }
    }

    pub fn registry(&self) -> Arc<Registry> {
        self.registry.clone()
    }

    /// The counters the `--metrics-addr` server counts its refusals in.
    pub fn http(&self) -> HttpCounters {
        self.http.clone()
    }

    /// Mirrors ingest's counts so far.
    pub fn publish(&self, read: &Summary, lines: u64, bytes: u64, delivered: u64, failed: u64) {
        mirror(&self.lines, lines);
        mirror(&self.bytes, bytes);
        mirror(&self.valid, read.valid);
        for (reason, counter) in Invalid::ALL.iter().zip(&self.invalid) {
            mirror(counter, read.invalid[reason.index()]);
        }
        mirror(&self.delivered, delivered);
        mirror(&self.failed, failed);
    }

    /// The input topic is known: frames are being produced.
    pub fn producing(&self) {
        self.phase.store(PRODUCING, Ordering::SeqCst);
    }

    pub fn finished(&self) {
        self.phase.store(FINISHED, Ordering::SeqCst);
    }

    /// `/readyz`: ready while producing.
    pub fn readiness(self: &Arc<Self>) -> Readiness {
        let metrics = self.clone();
        Arc::new(move || match metrics.phase.load(Ordering::SeqCst) {
            STARTING => Ready::No("reading the input topic's partitions".into()),
            PRODUCING => Ready::Yes("producing frames".into()),
            _ => Ready::No("finished".into()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_mirrored() {
        let m = IngestMetrics::new();
        let mut read = Summary {
            valid: 5,
            ..Summary::default()
        };
        read.count_invalid(Invalid::MissingUid);
        m.publish(&read, 7, 300, 6, 0);
        let body = super::super::exposition(&m.registry(), None).body;
        let text = String::from_utf8(body).unwrap();
        for line in [
            "timebucket_ingest_lines_read_total 7",
            "timebucket_ingest_read_bytes_total 300",
            "timebucket_ingest_frames_valid_total 5",
            "timebucket_ingest_frames_invalid_total{reason=\"missing_uid\"} 1",
            "timebucket_ingest_records_delivered_total 6",
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
        let ready = Arc::new(m).readiness();
        assert!(!ready().is_ready());
    }
}
