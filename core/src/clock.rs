//! The event clock of one partition: how far event time has advanced, by a
//! rule that one bad clock cannot break.
//!
//! The rule (normative, see README "Semantics"): every valid frame `(ts,
//! uid)` raises `M(uid)`, the largest `ts` seen from that uid. The event
//! clock `E` is the K-th largest value of `M` over distinct uids (K, the
//! *quorum*, default 2), undefined until K distinct uids have been seen. The
//! watermark is `E - L`.
//!
//! So event time moves only as far as K different users vouch for: up to
//! K-1 uids with clocks ahead, however many frames they send, cannot move it.
//! With K = 1 this is the plain largest-`ts` rule of Kafka Streams' stream
//! time and Flink's bounded out-of-orderness. The state is the top K
//! `(uid key, M)` pairs, a few hundred bytes, carried in checkpoints so that a
//! replay from any checkpoint decides the same.

use std::fmt;

/// The largest quorum: the checkpoint metadata must stay small.
pub const MAX_QUORUM: usize = 8;
/// Two users must agree: one bad clock is tolerated.
pub const DEFAULT_QUORUM: usize = 2;

/// A uid's key in the clock: FNV-1a, 64 bits. Stable on every machine and
/// version (it goes into checkpoints). Two uids that collide count as one,
/// which can only hold the clock back, never push it ahead.
pub fn uid_key(uid: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in uid.as_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventClock {
    quorum: u8,
    len: u8,
    /// `(uid key, M(uid))` of the uids with the largest `M`, by `M`
    /// descending (ties: by key, so the order is deterministic).
    top: [(u64, u64); MAX_QUORUM],
    /// The largest `ts` seen at all (for closing everything at the end).
    max_ts: Option<u64>,
}

impl EventClock {
    /// A clock with quorum `quorum`, clamped to `1..=MAX_QUORUM`.
    pub fn new(quorum: usize) -> EventClock {
        EventClock {
            quorum: quorum.clamp(1, MAX_QUORUM) as u8,
            len: 0,
            top: [(0, 0); MAX_QUORUM],
            max_ts: None,
        }
    }

    pub fn quorum(&self) -> usize {
        usize::from(self.quorum)
    }

    /// Takes one valid frame into account.
    pub fn observe(&mut self, uid: &str, ts: u64) {
        self.max_ts = Some(self.max_ts.map_or(ts, |m| m.max(ts)));
        self.observe_key(uid_key(uid), ts);
    }

    fn observe_key(&mut self, key: u64, ts: u64) {
        let k = self.quorum();
        let len = usize::from(self.len);
        let top = &mut self.top;
        if let Some(i) = top[..len].iter().position(|&(u, _)| u == key) {
            if ts <= top[i].1 {
                return;
            }
            top[i].1 = ts;
        } else if len < k {
            top[len] = (key, ts);
            self.len += 1;
        } else if ts > top[k - 1].1 {
            // A uid outside the top has M at most the K-th value, so only a
            // larger ts can bring it in, in place of the K-th.
            top[k - 1] = (key, ts);
        } else {
            return;
        }
        let len = usize::from(self.len);
        top[..len].sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    }

    /// `E`: how far event time has provably advanced; `None` until `quorum`
    /// distinct uids have been seen.
    pub fn time(&self) -> Option<u64> {
        let k = self.quorum();
        (usize::from(self.len) == k).then(|| self.top[k - 1].1)
    }

    /// The largest `ts` seen, vouched for or not.
    pub fn max_ts(&self) -> Option<u64> {
        self.max_ts
    }

    /// A clock that has seen `time` vouched for by the quorum (a checkpoint
    /// written by a version that kept only the largest `ts`).
    pub fn at(quorum: usize, time: u64) -> EventClock {
        let mut clock = EventClock::new(quorum);
        for key in 0..clock.quorum() as u64 {
            clock.observe_key(key, time);
        }
        clock.max_ts = Some(time);
        clock
    }

    /// The clock as text for a checkpoint: `K/max/key@ts/key@ts...` (keys in
    /// hex), `K/-` when empty.
    pub fn encode(&self) -> String {
        self.to_string()
    }

    /// Reads [`EventClock::encode`]'s text; `None` if it is not one.
    pub fn decode(text: &str) -> Option<EventClock> {
        let mut parts = text.split('/');
        let quorum: usize = parts.next()?.parse().ok()?;
        if !(1..=MAX_QUORUM).contains(&quorum) {
            return None;
        }
        let mut clock = EventClock::new(quorum);
        match parts.next()? {
            "-" => return parts.next().is_none().then_some(clock),
            max => clock.max_ts = Some(max.parse().ok()?),
        }
        for entry in parts {
            let (key, ts) = entry.split_once('@')?;
            let (key, ts) = (u64::from_str_radix(key, 16).ok()?, ts.parse().ok()?);
            if usize::from(clock.len) == quorum || clock.max_ts < Some(ts) {
                return None;
            }
            clock.observe_key(key, ts);
        }
        Some(clock)
    }
}

impl fmt::Display for EventClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/", self.quorum)?;
        match self.max_ts {
            None => write!(f, "-"),
            Some(max) => {
                write!(f, "{max}")?;
                for (key, ts) in &self.top[..usize::from(self.len)] {
                    write!(f, "/{key:x}@{ts}")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The rule as written: K-th largest of the per-uid maxima.
    fn reference(quorum: usize, frames: &[(u8, u64)]) -> Option<u64> {
        let mut m = std::collections::HashMap::new();
        for &(uid, ts) in frames {
            let e = m.entry(uid).or_insert(ts);
            *e = (*e).max(ts);
        }
        let mut maxima: Vec<u64> = m.into_values().collect();
        maxima.sort_unstable_by(|a, b| b.cmp(a));
        maxima.get(quorum - 1).copied()
    }

    proptest! {
        #[test]
        fn time_is_the_kth_largest_per_uid_maximum(
            quorum in 1usize..=4,
            frames in prop::collection::vec((0u8..6, 0u64..50), 0..60),
        ) {
            let mut clock = EventClock::new(quorum);
            for (i, &(uid, ts)) in frames.iter().enumerate() {
                clock.observe(&uid.to_string(), ts);
                prop_assert_eq!(clock.time(), reference(quorum, &frames[..=i]));
            }
            prop_assert_eq!(clock.max_ts(), frames.iter().map(|f| f.1).max());
            prop_assert_eq!(EventClock::decode(&clock.encode()), Some(clock));
        }
    }

    #[test]
    fn one_uid_cannot_move_a_quorum_of_two() {
        let mut clock = EventClock::new(2);
        clock.observe("a", 100);
        assert_eq!(clock.time(), None);
        clock.observe("b", 90);
        assert_eq!(clock.time(), Some(90));
        for ts in [10_000, 20_000, 30_000] {
            clock.observe("liar", ts);
        }
        assert_eq!(clock.time(), Some(100));
        assert_eq!(clock.max_ts(), Some(30_000));
        clock.observe("b", 101);
        assert_eq!(clock.time(), Some(101));
    }

    #[test]
    fn quorum_one_is_the_largest_ts() {
        let mut clock = EventClock::new(1);
        clock.observe("a", 5);
        clock.observe("a", 3);
        assert_eq!(clock.time(), Some(5));
        clock.observe("b", 9);
        assert_eq!(clock.time(), Some(9));
    }

    #[test]
    fn an_old_checkpoint_time_is_vouched_for() {
        let clock = EventClock::at(2, 1000);
        assert_eq!(clock.time(), Some(1000));
        assert_eq!(clock.max_ts(), Some(1000));
    }

    #[test]
    fn bad_text_is_refused() {
        for bad in [
            "",
            "0/-",
            "9/-",
            "2/x",
            "2/-/1@2",
            "2/5/1@9",
            "2/9/zz@1",
            "1/9/1@9/2@9",
        ] {
            assert_eq!(EventClock::decode(bad), None, "{bad:?}");
        }
        assert_eq!(EventClock::decode("2/-"), Some(EventClock::new(2)));
    }
}
