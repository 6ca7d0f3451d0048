//! The event clock of one partition: how far event time has advanced, by a
//! rule that a crowd of bad clocks cannot break (normative text:
//! docs/semantics.md).
//!
//! Every valid frame `(ts, uid)` raises `M(uid)`, the largest `ts` seen from
//! that uid. The event clock `E` only moves forward, to the K-th largest `M`
//! over distinct uids, where the quorum K is a share of the users active in
//! the current minute of `E` (at least a minimum, at most [`MAX_QUORUM`]):
//! `K = min(MAX_QUORUM, max(q_min, floor(N * share / 10_000) + 1))`. So up to
//! `floor(N * share / 10_000)` uids with clocks ahead, however far and
//! however many frames they send, cannot move `E` past what the honest uids
//! vouch for.
//!
//! The state is small on purpose. Only uids with `M > E` can ever move `E`,
//! and there are fewer than K of them after each frame, so they fit the
//! commit metadata. `N` needs the set of distinct uids seen in the current
//! minute of `E`; that set is never written anywhere: a [`ClockState`] is
//! taken whenever the set is empty (when `E` enters a new minute), and a
//! new owner replays from there, rebuilding the set from the records.

use std::collections::HashSet;
use std::fmt;

use rustc_hash::FxBuildHasher;

/// The largest quorum: the uids ahead of `E` (at most `MAX_QUORUM - 1`)
/// must fit the commit metadata (4,096 bytes by default) with the rest of
/// the checkpoint, whatever their keys and times.
pub const MAX_QUORUM: usize = 100;
/// At least two users must agree: one bad clock is always tolerated.
pub const DEFAULT_QUORUM: usize = 2;
/// 5% of the users active in the minute, in basis points.
pub const DEFAULT_SHARE_BP: u32 = 500;
/// Below one half: a share is a minority of the users.
pub const MAX_SHARE_BP: u32 = 4_999;

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

/// How many distinct users must vouch for a time: a minimum, and a share
/// (in basis points) of the users active in the minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quorum {
    min: u8,
    share_bp: u16,
}

impl Quorum {
    /// `min` clamped to `1..=MAX_QUORUM`, `share_bp` to `0..=MAX_SHARE_BP`.
    pub fn new(min: usize, share_bp: u32) -> Quorum {
        Quorum {
            min: min.clamp(1, MAX_QUORUM) as u8,
            share_bp: share_bp.min(MAX_SHARE_BP) as u16,
        }
    }

    /// A fixed quorum of `k` uids (no share): the rule of the previous
    /// version; `fixed(1)` is the plain largest-`ts` rule.
    pub fn fixed(k: usize) -> Quorum {
        Quorum::new(k, 0)
    }

    pub fn min(&self) -> usize {
        usize::from(self.min)
    }

    pub fn share_bp(&self) -> u32 {
        u32::from(self.share_bp)
    }

    /// K for `active` users in the minute.
    pub fn size(&self, active: u64) -> usize {
        let tolerated = active.saturating_mul(u64::from(self.share_bp)) / 10_000;
        let k = tolerated.saturating_add(1).min(MAX_QUORUM as u64) as usize;
        k.max(self.min())
    }
}

impl Default for Quorum {
    fn default() -> Self {
        Quorum::new(DEFAULT_QUORUM, DEFAULT_SHARE_BP)
    }
}

/// The clock at a point where its set of the minute's users is empty: all
/// a new owner needs to replay from that point and decide alike.
#[derive(Debug, Clone, Copy)]
pub struct ClockState {
    quorum: Quorum,
    /// `E`, once a quorum vouched for a time.
    time: Option<u64>,
    /// Distinct users of the previous minute of `E` (0 before); see
    /// [`EventClock::observe`] for how it is kept.
    prev_users: u64,
    /// Whether the current count of users began when `E` entered its
    /// minute from the minute just before (a whole minute is counted).
    whole: bool,
    /// The largest `ts` seen at all.
    max_ts: Option<u64>,
    len: u8,
    /// `(uid key, M(uid))` of every uid with `M > E` (all uids seen while
    /// `E` is undefined), in no particular order; fewer than K at rest.
    ahead: [(u64, u64); MAX_QUORUM],
}

impl PartialEq for ClockState {
    fn eq(&self, other: &Self) -> bool {
        (
            self.quorum,
            self.time,
            self.prev_users,
            self.whole,
            self.max_ts,
        ) == (
            other.quorum,
            other.time,
            other.prev_users,
            other.whole,
            other.max_ts,
        ) && self.sorted() == other.sorted()
    }
}

impl Eq for ClockState {}

impl ClockState {
    /// The state of a partition that has seen no frame.
    pub fn new(quorum: Quorum) -> ClockState {
        ClockState {
            quorum,
            time: None,
            prev_users: 0,
            whole: false,
            max_ts: None,
            len: 0,
            ahead: [(0, 0); MAX_QUORUM],
        }
    }

    /// `E`: how far event time has provably advanced; `None` until a
    /// quorum of distinct uids has been seen.
    pub fn time(&self) -> Option<u64> {
        self.time
    }

    /// The largest `ts` seen, vouched for or not.
    pub fn max_ts(&self) -> Option<u64> {
        self.max_ts
    }

    pub fn quorum(&self) -> Quorum {
        self.quorum
    }

    /// The uids ahead of `E` by `M` descending, then key (canonical order).
    fn sorted(&self) -> Vec<(u64, u64)> {
        let mut v = self.ahead[..usize::from(self.len)].to_vec();
        v.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }

    /// A state whose `time` is vouched for (a checkpoint of a version that
    /// kept less).
    pub fn at(quorum: Quorum, time: u64) -> ClockState {
        ClockState {
            time: Some(time),
            max_ts: Some(time),
            ..ClockState::new(quorum)
        }
    }

    /// The same state under another quorum (options changed between runs).
    pub fn with_quorum(self, quorum: Quorum) -> ClockState {
        ClockState { quorum, ..self }
    }

    /// As text for a checkpoint:
    /// `min/share/E/prev_users/whole/max[/key@M...]`, `-` for an undefined
    /// time, `whole` 0 or 1, keys in hex, entries in canonical order.
    pub fn encode(&self) -> String {
        self.to_string()
    }

    /// Reads [`ClockState::encode`]'s text; `None` if it is not one or is
    /// inconsistent (an entry not ahead of `E` or beyond the largest `ts`,
    /// a key twice, or as many entries as the largest quorum).
    pub fn decode(text: &str) -> Option<ClockState> {
        let mut parts = text.split('/');
        let min: usize = parts.next()?.parse().ok()?;
        let share: u32 = parts.next()?.parse().ok()?;
        if !(1..=MAX_QUORUM).contains(&min) || share > MAX_SHARE_BP {
            return None;
        }
        let opt = |s: &str| -> Option<Option<u64>> {
            match s {
                "-" => Some(None),
                _ => s.parse().ok().map(Some),
            }
        };
        let mut state = ClockState::new(Quorum::new(min, share));
        state.time = opt(parts.next()?)?;
        state.prev_users = parts.next()?.parse().ok()?;
        state.whole = match parts.next()? {
            "0" => false,
            "1" => true,
            _ => return None,
        };
        state.max_ts = opt(parts.next()?)?;
        if state.time > state.max_ts {
            return None;
        }
        for entry in parts {
            let (key, m) = entry.split_once('@')?;
            let (key, m): (u64, u64) = (u64::from_str_radix(key, 16).ok()?, m.parse().ok()?);
            let len = usize::from(state.len);
            if len + 1 >= MAX_QUORUM
                || state.time.is_some_and(|e| m <= e)
                || state.max_ts < Some(m)
                || state.ahead[..len].iter().any(|&(k, _)| k == key)
            {
                return None;
            }
            state.ahead[len] = (key, m);
            state.len += 1;
        }
        Some(state)
    }
}

impl fmt::Display for ClockState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let opt = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
        write!(
            f,
            "{}/{}/{}/{}/{}/{}",
            self.quorum.min,
            self.quorum.share_bp,
            opt(self.time),
            self.prev_users,
            u8::from(self.whole),
            opt(self.max_ts)
        )?;
        for (key, m) in self.sorted() {
            write!(f, "/{key:x}@{m}")?;
        }
        Ok(())
    }
}

/// The event clock: a [`ClockState`] plus the distinct users of the
/// current minute of `E`.
#[derive(Debug, Clone)]
pub struct EventClock {
    state: ClockState,
    /// Keys of the uids seen since `E` entered its current minute (empty
    /// while `E` is undefined: no users are counted before).
    users: HashSet<u64, FxBuildHasher>,
}

impl EventClock {
    pub fn new(quorum: Quorum) -> EventClock {
        EventClock::resume(ClockState::new(quorum))
    }

    /// Goes on from a state (a checkpoint, or a point taken by
    /// [`EventClock::resumable`]).
    pub fn resume(state: ClockState) -> EventClock {
        EventClock {
            state,
            users: HashSet::default(),
        }
    }

    pub fn quorum(&self) -> Quorum {
        self.state.quorum
    }

    /// `E`; `None` until a quorum of distinct uids has been seen.
    pub fn time(&self) -> Option<u64> {
        self.state.time
    }

    /// The largest `ts` seen, vouched for or not.
    pub fn max_ts(&self) -> Option<u64> {
        self.state.max_ts
    }

    /// `N`: the users active in the minute, the larger of the previous
    /// minute's and the current one's so far.
    pub fn active_users(&self) -> u64 {
        self.state.prev_users.max(self.users.len() as u64)
    }

    /// The state, if a new owner could go on from here without the set of
    /// the minute's users (it is empty).
    pub fn resumable(&self) -> Option<ClockState> {
        self.users.is_empty().then_some(self.state)
    }

    /// Ends the minute's count here (end of input): the users counted so
    /// far become the previous minute's, and the clock is resumable.
    pub fn end_minute(&mut self) {
        self.roll(false);
    }

    /// Ends the count of users: a whole minute's count replaces the
    /// previous one (so `N` follows a shrinking fleet, a minute late); a
    /// partial one (after a jump, the first time, at end of input) can only
    /// raise it, so a short count never lowers the quorum.
    fn roll(&mut self, next_is_whole: bool) {
        let s = &mut self.state;
        let counted = self.users.len() as u64;
        s.prev_users = if s.whole {
            counted
        } else {
            s.prev_users.max(counted)
        };
        s.whole = next_is_whole;
        self.users.clear();
    }

    /// Takes one valid frame into account, in arrival order. Returns
    /// whether `E` entered a new minute (the set of users was emptied, so
    /// the clock is [resumable](EventClock::resumable) again).
    pub fn observe(&mut self, uid: &str, ts: u64) -> bool {
        let key = uid_key(uid);
        let s = &mut self.state;
        s.max_ts = Some(s.max_ts.map_or(ts, |m| m.max(ts)));
        let before = s.time;
        if before.is_some() {
            self.users.insert(key);
        }
        if s.time.is_none_or(|e| ts > e) {
            let len = usize::from(s.len);
            match s.ahead[..len].iter_mut().find(|(k, _)| *k == key) {
                Some(entry) => entry.1 = entry.1.max(ts),
                None => {
                    // Fewer than K <= MAX_QUORUM entries at rest: room for one.
                    s.ahead[len] = (key, ts);
                    s.len += 1;
                }
            }
        }
        let k = s.quorum.size(s.prev_users.max(self.users.len() as u64));
        let len = usize::from(s.len);
        if len >= k {
            let ahead = &mut s.ahead[..len];
            ahead.select_nth_unstable_by(k - 1, |a, b| b.1.cmp(&a.1));
            let e = ahead[k - 1].1;
            s.time = Some(e);
            let mut kept = 0;
            for i in 0..len {
                if s.ahead[i].1 > e {
                    s.ahead[kept] = s.ahead[i];
                    kept += 1;
                }
            }
            s.len = kept as u8;
        }
        let minute = |t: Option<u64>| t.map(|t| t / 60);
        let (from, to) = (minute(before), minute(s.time));
        if from != to {
            self.roll(from.is_some_and(|m| to == Some(m + 1)));
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    /// The rule as written in docs/semantics.md, with every uid's maximum
    /// kept: after each frame, `E = max(E, K-th largest M)`.
    fn reference(quorum: Quorum, frames: &[(u8, u64)]) -> Vec<Option<u64>> {
        let mut m: HashMap<u8, u64> = HashMap::new();
        let (mut e, mut prev, mut whole, mut users) = (None::<u64>, 0u64, false, Vec::<u8>::new());
        let mut out = Vec::new();
        for &(uid, ts) in frames {
            let v = m.entry(uid).or_insert(ts);
            *v = (*v).max(ts);
            if e.is_some() && !users.contains(&uid) {
                users.push(uid);
            }
            let k = quorum.size(prev.max(users.len() as u64));
            let mut maxima: Vec<u64> = m.values().copied().collect();
            maxima.sort_unstable_by(|a, b| b.cmp(a));
            let before = e;
            if let Some(&vk) = maxima.get(k - 1) {
                e = e.max(Some(vk));
            }
            let (from, to) = (before.map(|t| t / 60), e.map(|t| t / 60));
            if from != to {
                let n = users.len() as u64;
                prev = if whole { n } else { prev.max(n) };
                whole = from.is_some_and(|m| to == Some(m + 1));
                users.clear();
            }
            out.push(e);
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]
        #[test]
        fn time_follows_the_rule_as_written(
            min in 1usize..=4,
            share in prop::sample::select(vec![0u32, 500, 2_000, 4_999]),
            frames in prop::collection::vec((0u8..40, 0u64..400), 0..200),
        ) {
            let quorum = Quorum::new(min, share);
            let want = reference(quorum, &frames);
            let mut clock = EventClock::new(quorum);
            for (i, &(uid, ts)) in frames.iter().enumerate() {
                clock.observe(&uid.to_string(), ts);
                prop_assert_eq!(clock.time(), want[i], "frame {}", i);
                if let Some(state) = clock.resumable() {
                    prop_assert_eq!(ClockState::decode(&state.encode()), Some(state));
                }
            }
            prop_assert_eq!(clock.max_ts(), frames.iter().map(|f| f.1).max());
        }
    }

    #[test]
    fn the_quorum_is_a_share_of_the_minutes_users() {
        let q = Quorum::new(2, 500);
        assert_eq!(q.size(0), 2);
        assert_eq!(q.size(39), 2);
        assert_eq!(q.size(40), 3);
        assert_eq!(q.size(1_000), 51);
        assert_eq!(q.size(u64::MAX), MAX_QUORUM);
        assert_eq!(Quorum::fixed(1).size(1_000_000), 1);
    }

    #[test]
    fn one_uid_cannot_move_a_quorum_of_two() {
        let mut clock = EventClock::new(Quorum::fixed(2));
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

    /// 1,000 users in a minute: 50 uids a day ahead cannot move the clock.
    #[test]
    fn a_crowd_of_five_percent_cannot_move_the_clock() {
        let mut clock = EventClock::new(Quorum::default());
        for i in 0..1_000u64 {
            clock.observe(&format!("u{i}"), 60_000 + i * 60 / 1_000);
        }
        let honest = clock.time().unwrap();
        assert!(honest <= 60_059);
        // The next minute: honest users again, and 50 liars in between.
        for i in 0..1_000u64 {
            if i % 20 == 0 {
                clock.observe(&format!("liar{i}"), 200_000 + i);
            }
            clock.observe(&format!("u{i}"), 60_060 + i * 60 / 1_000);
            assert!(clock.time().unwrap() <= 60_060 + i * 60 / 1_000);
        }
    }

    #[test]
    fn quorum_one_is_the_largest_ts() {
        let mut clock = EventClock::new(Quorum::fixed(1));
        clock.observe("a", 5);
        clock.observe("a", 3);
        assert_eq!(clock.time(), Some(5));
        clock.observe("b", 9);
        assert_eq!(clock.time(), Some(9));
    }

    #[test]
    fn an_old_checkpoint_time_is_vouched_for() {
        let state = ClockState::at(Quorum::fixed(2), 1000);
        assert_eq!(state.time(), Some(1000));
        assert_eq!(state.max_ts(), Some(1000));
    }

    /// The worst case fits the commit metadata with room for the rest of
    /// the checkpoint (about 100 bytes).
    #[test]
    fn the_largest_state_fits_the_commit_metadata() {
        let mut s = ClockState::new(Quorum::new(MAX_QUORUM, MAX_SHARE_BP));
        s.time = Some(u64::MAX - 200);
        s.prev_users = u64::MAX;
        s.whole = true;
        s.max_ts = Some(u64::MAX);
        for i in 0..MAX_QUORUM - 1 {
            s.ahead[i] = (u64::MAX - i as u64, u64::MAX - i as u64);
        }
        s.len = (MAX_QUORUM - 1) as u8;
        let text = s.encode();
        assert!(text.len() <= 3_900, "{}", text.len());
        assert_eq!(ClockState::decode(&text), Some(s));
    }

    #[test]
    fn bad_text_is_refused() {
        for bad in [
            "",
            "0/0/-/0/0/-",
            "101/0/-/0/0/-",
            "2/5000/-/0/0/-",
            "2/0/x/0/0/-",
            "2/0/-/0/2/-",
            "2/0/9/0/0/5",
            "2/0/5/0/0/9/1@5",
            "2/0/5/0/0/9/1@10",
            "2/0/-/0/0/9/1@9/1@8",
        ] {
            assert_eq!(ClockState::decode(bad), None, "{bad:?}");
        }
        let empty = ClockState::new(Quorum::fixed(2));
        assert_eq!(ClockState::decode("2/0/-/0/0/-"), Some(empty));
    }
}
