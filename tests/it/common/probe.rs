//! A live `read_committed` reader for the fault tests: when each record of a
//! topic became readable, per partition, to measure how long a fault held
//! output (or intake) back. A user's dashboard sees exactly this: nothing
//! new from a partition until its next transaction commits.
//!
//! The scenarios process a file ingested beforehand, so a window's delay
//! from its frames' arrival is mostly its place in the backlog; what a fault
//! adds is the **stall**: the longest time in which no new record of a
//! partition became readable. [`Stalls`] gives it for the fault's interval
//! and, as the baseline, for the run before it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use timebucket::core::metric::MetricRecord;
use timebucket::kafka::config::KafkaSettings;

/// Which partition a record counts for.
#[derive(Debug, Clone, Copy)]
pub enum By {
    /// The Kafka partition it is on (the input topic).
    Partition,
    /// The input partition a metric record names (the metric topics are
    /// keyed by window, not by input partition).
    InputPartition,
}

/// A reader of one topic running on a thread of its own until
/// [`Probe::finish`].
pub struct Probe {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Seen>,
}

/// When records became readable: unix ms per partition, in order.
#[derive(Debug, Default)]
pub struct Seen {
    pub at_ms: BTreeMap<i32, Vec<u64>>,
}

impl Probe {
    /// Starts reading `topic` (which exists) from its beginning.
    pub fn start(settings: &KafkaSettings, topic: &str, by: By) -> Probe {
        let consumer: BaseConsumer = settings
            .client_config(&[
                ("group.id", "timebucket-probe"),
                ("enable.auto.commit", "false"),
                ("isolation.level", "read_committed"),
                // Readable records arrive within this of their commit.
                ("fetch.wait.max.ms", "100"),
            ])
            .create()
            .expect("a probe consumer");
        let partitions =
            timebucket::kafka::read::partitions_of(&consumer, topic, Duration::from_secs(60))
                .expect("the probed topic's partitions");
        let mut tpl = TopicPartitionList::new();
        for p in partitions {
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&tpl).expect("assign the probed topic");
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut seen = Seen::default();
            while !stopping.load(Ordering::SeqCst) {
                let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) else {
                    continue;
                };
                let partition = match by {
                    By::Partition => m.partition(),
                    By::InputPartition => {
                        let payload = m.payload().unwrap_or_default();
                        match serde_json::from_slice::<MetricRecord>(payload) {
                            Ok(r) => r.partition,
                            Err(_) => continue,
                        }
                    }
                };
                seen.at_ms.entry(partition).or_default().push(now_ms());
            }
            seen
        });
        Probe { stop, thread }
    }

    /// Stops reading and returns what was seen.
    pub fn finish(self) -> Seen {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("the probe thread")
    }
}

/// The longest stall of any partition within two intervals.
#[derive(Debug, Clone, Copy)]
pub struct Stalls {
    /// Within the fault's interval (or from its start until the partition's
    /// first record after it, if output stopped for longer).
    pub during_ms: u64,
    /// Within the run before the fault, from the first readable record.
    pub before_ms: u64,
}

impl Seen {
    /// The longest stalls of the partitions that had output both before and
    /// after `fault_start_ms` (the others had nothing to hold back), during
    /// `[fault_start_ms, fault_end_ms]` and before it.
    pub fn stalls(&self, fault_start_ms: u64, fault_end_ms: u64) -> Stalls {
        let mut stalls = Stalls {
            during_ms: 0,
            before_ms: 0,
        };
        for times in self.at_ms.values() {
            let Some(first_after) = times.iter().position(|&t| t >= fault_start_ms) else {
                continue;
            };
            if first_after == 0 {
                continue;
            }
            let before = &times[..first_after];
            stalls.before_ms = stalls.before_ms.max(longest_gap(before));
            // From the last record before the fault, through every record
            // that became readable until its end, to the first one after.
            let until = times
                .iter()
                .position(|&t| t > fault_end_ms)
                .map_or(times.len(), |i| i + 1);
            let around = &times[first_after - 1..until];
            stalls.during_ms = stalls.during_ms.max(longest_gap(around));
        }
        stalls
    }
}

impl Seen {
    /// The longest stall of any partition over the whole run, from its
    /// first readable record to its last.
    pub fn longest_stall_ms(&self) -> u64 {
        self.at_ms
            .values()
            .map(|t| longest_gap(t))
            .max()
            .unwrap_or(0)
    }

    /// When the first record became readable.
    pub fn first_ms(&self) -> Option<u64> {
        self.at_ms.values().filter_map(|t| t.first().copied()).min()
    }
}

fn longest_gap(times: &[u64]) -> u64 {
    times
        .windows(2)
        .map(|w| w[1].saturating_sub(w[0]))
        .max()
        .unwrap_or(0)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stall_spans_from_the_last_record_before_the_fault_to_the_first_after_it() {
        let mut seen = Seen::default();
        // Partition 0: every 100 ms, then nothing from 1,000 to 4,000.
        seen.at_ms
            .insert(0, vec![100, 200, 300, 400, 1_000, 4_000, 4_100]);
        // Partition 1: nothing after the fault began: not counted.
        seen.at_ms.insert(1, vec![100]);
        let s = seen.stalls(1_500, 2_000);
        assert_eq!(s.during_ms, 3_000);
        assert_eq!(s.before_ms, 600);
    }
}
