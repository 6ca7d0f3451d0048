//! [`PartitionWatch`]: rereads the input topic's partition count in the
//! background while `ingest` or `worker` runs, so that a change (partitions
//! added with `kafka-topics --alter` or `topics --allow-repartition`) stops
//! them loudly instead of routing, or judging, time buckets by a count that
//! no longer holds.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::{debug, error};

use super::admin::{admin_client, snapshot};
use crate::error::Error;
use crate::kafka::config::KafkaSettings;

/// How often the partition count is read again.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// A background thread reading `topic`'s partition count every interval;
/// it stops when the watch is dropped.
pub struct PartitionWatch {
    topic: String,
    expected: u32,
    /// The count found when it differs from `expected`; 0 while it does not.
    changed: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl PartitionWatch {
    /// Watches `topic`, whose partition count is `expected` now.
    pub fn start(
        settings: &KafkaSettings,
        topic: &str,
        expected: u32,
        every: Duration,
    ) -> Result<PartitionWatch, Error> {
        let admin = admin_client(settings)?;
        let changed = Arc::new(AtomicU32::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (changed, stop, topic) = (changed.clone(), stop.clone(), topic.to_string());
            let bootstrap = settings.bootstrap.clone();
            std::thread::Builder::new()
                .name("partition-watch".into())
                .spawn(move || {
                    while sleep_unless(&stop, every) {
                        // A failed read (a broker restarting) is retried next time.
                        let count = match snapshot(&admin, Some(&topic), every, &bootstrap) {
                            Ok(topics) => topics.get(&topic).map_or(0, |t| t.partitions.len()),
                            Err(e) => {
                                debug!(error = %e, "cannot reread the partition count");
                                continue;
                            }
                        };
                        if count > 0 && count as u32 != expected {
                            error!(
                                topic,
                                before = expected,
                                now = count,
                                "the input topic's partition count changed"
                            );
                            changed.store(count as u32, Ordering::SeqCst);
                            return;
                        }
                    }
                })
                .map_err(|source| Error::KafkaStart {
                    what: "partition watch",
                    source,
                })?
        };
        Ok(PartitionWatch {
            topic: topic.to_string(),
            expected,
            changed,
            stop,
            thread: Some(thread),
        })
    }

    /// A watch that never looks (the in-memory tests of the worker): the
    /// count stays `expected`.
    #[cfg(test)]
    pub fn fixed(topic: &str, expected: u32) -> PartitionWatch {
        PartitionWatch {
            topic: topic.to_string(),
            expected,
            changed: Arc::new(AtomicU32::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
            thread: None,
        }
    }

    /// The partition count the watch started with.
    pub fn expected(&self) -> u32 {
        self.expected
    }

    /// The new partition count, once it changed.
    pub fn changed(&self) -> Option<u32> {
        Some(self.changed.load(Ordering::Relaxed)).filter(|&n| n != 0)
    }

    /// [`Error::Partitions`] naming both counts, once the count changed;
    /// `doing` says what stops and what was done so far.
    pub fn check(&self, doing: impl FnOnce() -> String) -> Result<(), Error> {
        match self.changed() {
            None => Ok(()),
            Some(now) => Err(self.error(now, &doing())),
        }
    }

    /// The error for a count found to be `now` (by the watch, or by a
    /// record from a partition beyond the expected count).
    pub fn error(&self, now: u32, doing: &str) -> Error {
        Error::Partitions(format!(
            "the partition count of topic {} changed from {} to {now}: {doing}",
            self.topic, self.expected
        ))
    }
}

impl Drop for PartitionWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Sleeps `pause` in small steps; false once `stop` is set.
fn sleep_unless(stop: &AtomicBool, pause: Duration) -> bool {
    let until = Instant::now() + pause;
    while Instant::now() < until {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    !stop.load(Ordering::SeqCst)
}
