//! The time the group loop and its commands read: a monotonic instant for
//! intervals (commit, checks, idle partitions, waits) and the wall clock
//! for what reports and gauges show. [`SystemClock`] is the process's own;
//! the in-memory tests use a [`TickClock`] that only moves when read or
//! slept on, so that their runs do not depend on the machine's speed.

use std::time::{Duration, Instant};

/// Where the loop and its commands read time.
pub(crate) trait Clock: Send + Sync {
    /// Monotonic now, for intervals.
    fn now(&self) -> Instant;
    /// The wall clock in unix milliseconds.
    fn unix_ms(&self) -> u64;
    /// Waits `d`.
    fn sleep(&self, d: Duration);
    /// How long ago `earlier` was.
    fn since(&self, earlier: Instant) -> Duration {
        self.now().saturating_duration_since(earlier)
    }
}

/// The process's clocks.
pub(crate) struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn unix_ms(&self) -> u64 {
        crate::cmd::unix_ms()
    }

    fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }
}

/// A clock that moves `tick` at every read and by the whole wait when slept
/// on: the same reads give the same times on any machine.
#[cfg(test)]
pub(crate) struct TickClock {
    start: Instant,
    tick: Duration,
    /// Time passed since `start`, in nanoseconds.
    passed: std::sync::atomic::AtomicU64,
}

#[cfg(test)]
impl TickClock {
    /// Unix time at `start`.
    const UNIX_START_MS: u64 = 1_700_000_000_000;

    pub fn new(tick: Duration) -> TickClock {
        TickClock {
            start: Instant::now(),
            tick,
            passed: Default::default(),
        }
    }

    fn advance(&self, d: Duration) -> Duration {
        use std::sync::atomic::Ordering;
        let before = self.passed.fetch_add(d.as_nanos() as u64, Ordering::SeqCst);
        Duration::from_nanos(before) + d
    }
}

#[cfg(test)]
impl Clock for TickClock {
    fn now(&self) -> Instant {
        self.start + self.advance(self.tick)
    }

    fn unix_ms(&self) -> u64 {
        TickClock::UNIX_START_MS + self.advance(self.tick).as_millis() as u64
    }

    fn sleep(&self, d: Duration) {
        self.advance(d);
    }
}
