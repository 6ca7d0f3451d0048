//! Retrying the cluster's metadata answers (offsets, watermarks) while
//! brokers fail over: for a few seconds after a broker restarts, a partition
//! has no leader and its coordinator is reloading, and that is no reason for
//! a worker to stop.

use std::time::{Duration, Instant};

use rdkafka::error::KafkaResult;
use tracing::warn;

/// Calls `call` with the time left until it succeeds or `timeout` has
/// passed, backing off from 100 ms to 2 s between attempts and logging what
/// it waits for. Returns the last error once the time is up, so the whole
/// wait stays within `timeout`.
pub fn with_backoff<T>(
    what: &str,
    timeout: Duration,
    mut call: impl FnMut(Duration) -> KafkaResult<T>,
) -> KafkaResult<T> {
    let deadline = Instant::now() + timeout;
    let mut backoff = Duration::from_millis(100);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match call(left) {
            Err(e) if Instant::now() + backoff < deadline => {
                warn!(error = %e, "waiting for the cluster to answer: {what}");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            result => return result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::error::KafkaError;
    use rdkafka::types::RDKafkaErrorCode;

    #[test]
    fn retries_until_success_and_gives_up_after_the_timeout() {
        let mut calls = 0;
        let got = with_backoff("test", Duration::from_secs(5), |_| {
            calls += 1;
            if calls < 3 {
                Err(KafkaError::MetadataFetch(
                    RDKafkaErrorCode::NotLeaderForPartition,
                ))
            } else {
                Ok(calls)
            }
        });
        assert_eq!(got.unwrap(), 3);

        let start = Instant::now();
        let mut calls = 0;
        let got: KafkaResult<()> = with_backoff("test", Duration::from_millis(250), |left| {
            assert!(left <= Duration::from_millis(250));
            calls += 1;
            Err(KafkaError::MetadataFetch(
                RDKafkaErrorCode::NotLeaderForPartition,
            ))
        });
        assert!(got.is_err());
        assert!(calls >= 2, "{calls}");
        assert!(start.elapsed() < Duration::from_secs(2));
    }
}
