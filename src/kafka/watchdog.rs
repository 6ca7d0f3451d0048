//! The last way out of a Kafka call that never returns. librdkafka bounds
//! most calls by their timeout, but some wait for a background request
//! without a limit of their own (`send_offsets_to_transaction` waits for
//! AddOffsetsToTxn and TxnOffsetCommit to be answered; that one is now made
//! on a thread of its own and abandoned, `retry::transactional_once`, so
//! what is armed here are the other calls). A worker blocked
//! there neither commits nor polls: it would hang silently, holding its
//! partitions. A call armed here that overruns its limit ends the process
//! with the Kafka exit code and a message naming the call; nothing of its
//! open transaction becomes visible, and a restarted worker (or another
//! member) replays from the committed checkpoints.

use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::error::Error;

#[derive(Default)]
struct Watch {
    /// (id, deadline, call) of every armed call.
    armed: Mutex<Vec<(u64, Instant, &'static str)>>,
    changed: Condvar,
    next_id: Mutex<u64>,
}

fn watch() -> &'static Watch {
    static WATCH: OnceLock<&'static Watch> = OnceLock::new();
    WATCH.get_or_init(|| {
        let watch: &'static Watch = Box::leak(Box::default());
        std::thread::Builder::new()
            .name("kafka-watchdog".into())
            .spawn(move || watch.run())
            .expect("cannot start the watchdog thread");
        watch
    })
}

impl Watch {
    fn run(&self) {
        let mut armed = self.armed.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let now = Instant::now();
            let earliest = armed.iter().min_by_key(|(_, deadline, _)| *deadline);
            match earliest {
                Some(&(_, deadline, call)) if deadline <= now => stuck(call),
                Some(&(_, deadline, _)) => {
                    armed = self
                        .changed
                        .wait_timeout(armed, deadline - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                None => armed = self.changed.wait(armed).unwrap_or_else(|e| e.into_inner()),
            }
        }
    }
}

/// A call still under way after its limit: exits, naming it.
fn stuck(call: &'static str) -> ! {
    let e = Error::Stuck { call };
    tracing::error!(error = %e, "stuck in a Kafka call");
    eprintln!("error: {e}");
    std::process::exit(e.exit_code());
}

/// Armed while it lives: dropping it disarms.
pub struct Armed {
    id: u64,
}

/// Ends the process if the caller has not dropped the guard after `limit`.
pub fn arm(call: &'static str, limit: Duration) -> Armed {
    let watch = watch();
    let id = {
        let mut next = watch.next_id.lock().unwrap_or_else(|e| e.into_inner());
        *next += 1;
        *next
    };
    watch
        .armed
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((id, Instant::now() + limit, call));
    watch.changed.notify_all();
    Armed { id }
}

impl Drop for Armed {
    fn drop(&mut self) {
        let watch = watch();
        watch
            .armed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(id, _, _)| *id != self.id);
        watch.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_that_returns_in_time_disarms() {
        for _ in 0..3 {
            let armed = arm("test", Duration::from_millis(200));
            drop(armed);
        }
        // Past every limit: the process is still here.
        std::thread::sleep(Duration::from_millis(400));
        assert!(watch().armed.lock().unwrap().is_empty());
    }
}
