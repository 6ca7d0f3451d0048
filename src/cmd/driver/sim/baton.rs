//! The baton that makes threads deterministic: each simulated member runs
//! the real loop on a thread of its own, but only the thread holding the
//! baton runs. Every call a member makes to the simulated cluster is a
//! yield point: it hands the baton back to the scheduler, which picks who
//! runs next (or tells the member to crash there: its thread unwinds with
//! a [`Crash`] from that call).

use std::sync::{Condvar, Mutex, MutexGuard};

/// The payload a crashed member's thread unwinds with.
pub(super) struct Crash;

#[derive(Debug, Default)]
struct Turn {
    /// The member that may run; `None`: the scheduler.
    running: Option<u64>,
    /// Members told to crash at their next yield point.
    crash: Vec<u64>,
}

#[derive(Debug, Default)]
pub(super) struct Baton {
    turn: Mutex<Turn>,
    changed: Condvar,
}

impl Baton {
    fn lock(&self) -> MutexGuard<'_, Turn> {
        // A member that unwinds holds no baton lock: never poisoned.
        self.turn.lock().expect("poisoned")
    }

    /// A member's yield point: back to the scheduler, and on once it picks
    /// `member` again; unwinds with [`Crash`] if told to crash.
    pub fn yield_now(&self, member: u64) {
        let mut turn = self.lock();
        turn.running = None;
        self.changed.notify_all();
        turn = self
            .changed
            .wait_while(turn, |t| t.running != Some(member))
            .expect("poisoned");
        if let Some(i) = turn.crash.iter().position(|&m| m == member) {
            turn.crash.swap_remove(i);
            drop(turn);
            std::panic::resume_unwind(Box::new(Crash));
        }
    }

    /// A member's first wait, before it runs at all.
    pub fn wait_first(&self, member: u64) {
        let turn = self.lock();
        let _turn = self
            .changed
            .wait_while(turn, |t| t.running != Some(member))
            .expect("poisoned");
    }

    /// A member's thread ended (finished or crashed): back to the scheduler.
    pub fn release(&self) {
        self.lock().running = None;
        self.changed.notify_all();
    }

    /// The scheduler: lets `member` run (crashing at its yield point if
    /// `crash`) until it yields again or ends.
    pub fn run(&self, member: u64, crash: bool) {
        let mut turn = self.lock();
        if crash {
            turn.crash.push(member);
        }
        turn.running = Some(member);
        self.changed.notify_all();
        let _turn = self
            .changed
            .wait_while(turn, |t| t.running.is_some())
            .expect("poisoned");
    }
}
