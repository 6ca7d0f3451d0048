//! One frame at a time, built in a reused buffer from pre-rendered
//! fragments: the filler members, nested traps, and the root `ts` and `uid`.

use super::vocabulary::*;
use super::*;

/// Where the frame's filler members are: the next one's index, and the
/// index of the big nested one.
pub(super) struct Fillers {
    index: u64,
    big_at: u64,
}

pub(super) struct FrameGen {
    rng: Pcg64Mcg,
    /// Pre-rendered `"key":` fragments.
    keys: Vec<Box<[u8]>>,
    frame_len: usize,
    rate: u64,
    users: u64,
    uid_keys: (u64, u64),
    max_delay: u64,
    /// Delay when `next_u64() >> 11` is below this (0: never).
    delay_threshold: u64,
    clock: u64,
    started: bool,
}

impl FrameGen {
    pub(super) fn new(opts: &GenerateOptions) -> io::Result<Self> {
        let invalid = |msg: &str| io::Error::new(io::ErrorKind::InvalidInput, msg.to_string());
        if opts.rate == 0 {
            return Err(invalid("rate must be at least 1 frame per second"));
        }
        if opts.users == 0 {
            return Err(invalid("the pool of users must not be empty"));
        }
        if !(0.0..=100.0).contains(&opts.delay_percent) {
            return Err(invalid("delay percent must be within 0..=100"));
        }
        let delay_threshold = if opts.max_delay == 0 {
            0
        } else {
            (opts.delay_percent / 100.0 * (1u64 << 53) as f64) as u64
        };
        let keys = LOREM
            .split_whitespace()
            .map(|w| format!("\"{w}\":").into_bytes().into_boxed_slice())
            .collect();
        let state = (u128::from(mix64(opts.seed ^ 0x243f_6a88_85a3_08d3)) << 64)
            | u128::from(mix64(opts.seed ^ 0x1319_8a2e_0370_7344));
        Ok(FrameGen {
            rng: Pcg64Mcg::new(state),
            keys,
            frame_len: opts.frame_len,
            rate: u64::from(opts.rate),
            users: u64::from(opts.users),
            uid_keys: uid_keys(opts.seed),
            max_delay: u64::from(opts.max_delay),
            delay_threshold,
            clock: opts.start,
            started: false,
        })
    }

    /// Uniform in `0..n` (n >= 1), by multiply-high (bias below n / 2^64).
    #[inline]
    pub(super) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.rng.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Appends one frame with its newline; returns its root `ts`.
    pub(super) fn frame(&mut self, buf: &mut Vec<u8>) -> u64 {
        if self.started && self.below(self.rate) == 0 {
            self.clock += 1;
        }
        self.started = true;
        let mut ts = self.clock;
        if self.delay_threshold > 0 && (self.rng.next_u64() >> 11) < self.delay_threshold {
            ts = ts.saturating_sub(1 + self.below(self.max_delay));
        }
        let user = self.below(self.users) as u32;
        let ts_string = self.below(100) < TS_STRING_PERCENT;
        let layout = self.below(4 * 2 * 100);
        let before = layout % 4;
        let uid_first = (layout / 4) % 2 == 1;
        let between = layout / 8 < BETWEEN_PERCENT;
        // Filler member index of the big nested member: early, mostly in
        // the first ten members (`u64::MAX`: none).
        let big_at = if self.below(1000) < BIG_PER_1000 {
            self.below(16).min(self.below(16))
        } else {
            u64::MAX
        };
        let mut fillers = Fillers { index: 0, big_at };

        let limit = self.frame_len;
        buf.push(b'{');
        for i in 0..before {
            if i > 0 {
                buf.push(b',');
            }
            self.root_member(buf, &mut fillers);
        }
        if before > 0 {
            buf.push(b',');
        }
        if uid_first {
            self.write_root_uid(buf, user);
        } else {
            write_root_ts(buf, ts, ts_string);
        }
        buf.push(b',');
        if between {
            self.root_member(buf, &mut fillers);
            buf.push(b',');
        }
        if uid_first {
            write_root_ts(buf, ts, ts_string);
        } else {
            self.write_root_uid(buf, user);
        }
        // Fill: members until the frame (with its `}`) exceeds the target,
        // redrawing a member that would overshoot by more than MAX_OVERSHOOT.
        let mut rejected = 0u32;
        while buf.len() < limit {
            let mark = buf.len();
            buf.push(b',');
            if rejected < 8 {
                self.root_member(buf, &mut fillers);
            } else {
                // Always fits: 9 bytes at most, and the frame was short of its target.
                buf.extend_from_slice(b"\"ea\":");
                write_u64(buf, self.below(1000));
            }
            if buf.len() + 1 > limit + MAX_OVERSHOOT {
                buf.truncate(mark);
                rejected += 1;
            } else {
                rejected = 0;
            }
        }
        buf.extend_from_slice(b"}\n");
        ts
    }

    pub(super) fn write_root_uid(&mut self, buf: &mut Vec<u8>, user: u32) {
        buf.extend_from_slice(b"\"uid\":\"");
        write_uid(buf, user, self.uid_keys);
        buf.push(b'"');
    }

    /// A root filler member `"key":value`: a simple value, or the frame's
    /// one big nested member when its turn has come and the frame has room.
    pub(super) fn root_member(&mut self, buf: &mut Vec<u8>, fillers: &mut Fillers) {
        let k = self.below(self.keys.len() as u64) as usize;
        buf.extend_from_slice(&self.keys[k]);
        if fillers.index == fillers.big_at {
            let budget = BIG_MIN + self.below(BIG_SPREAD) as usize;
            let room = self.frame_len.saturating_sub(buf.len() + BIG_SLACK);
            let budget = budget.min(room);
            if budget >= 40 {
                let end = buf.len() + budget;
                if self.below(100) < BIG_OBJECT_PERCENT {
                    self.nested_object(buf, 1, end);
                } else {
                    self.nested_array(buf, 1, end);
                }
                fillers.index += 1;
                return;
            }
        }
        fillers.index += 1;
        self.value(buf, 1, 0);
    }

    /// Any filler value at `depth` (1: a root member's value). `end` is the
    /// byte position after which containers stop taking children; 0 forbids
    /// containers.
    pub(super) fn value(&mut self, buf: &mut Vec<u8>, depth: u32, end: usize) {
        let w = &WEIGHTS;
        let allow_nested = end != 0 && depth <= MAX_NESTING && buf.len() < end;
        let mut r = self.below(if allow_nested { w.total() } else { w.simple() });
        if r < w.string {
            self.write_string(buf);
            return;
        }
        r -= w.string;
        if r < w.empty_obj {
            buf.extend_from_slice(b"{}");
            return;
        }
        r -= w.empty_obj;
        if r < w.empty_arr {
            buf.extend_from_slice(b"[]");
            return;
        }
        r -= w.empty_arr;
        if r < w.int {
            let n = self.below(1000);
            write_u64(buf, n);
            return;
        }
        r -= w.int;
        if r < w.float {
            self.write_float(buf);
            return;
        }
        r -= w.float;
        if r < w.boolean {
            buf.extend_from_slice(if self.below(2) == 0 {
                b"true"
            } else {
                b"false"
            });
            return;
        }
        r -= w.boolean;
        if r < w.obj {
            self.nested_object(buf, depth, end);
        } else {
            self.nested_array(buf, depth, end);
        }
    }

    /// A non-empty object at `depth`; its members are at `depth + 1`.
    pub(super) fn nested_object(&mut self, buf: &mut Vec<u8>, depth: u32, end: usize) {
        buf.push(b'{');
        // The big root member fills its budget; deeper objects are smaller.
        let n = if depth == 1 {
            u64::MAX
        } else {
            1 + self.below(OBJ_CHILDREN)
        };
        for i in 0..n {
            if i > 0 {
                if buf.len() >= end {
                    break;
                }
                buf.push(b',');
            }
            let r = self.below(1000);
            if r < NESTED_TS_PER_1000 {
                buf.extend_from_slice(b"\"ts\":");
                self.nested_ts_value(buf, depth + 1, end);
            } else if r < NESTED_TS_PER_1000 + NESTED_UID_PER_1000 {
                buf.extend_from_slice(b"\"uid\":");
                self.nested_uid_value(buf, depth + 1, end);
            } else {
                let k = self.below(self.keys.len() as u64) as usize;
                buf.extend_from_slice(&self.keys[k]);
                self.value(buf, depth + 1, end);
            }
        }
        buf.push(b'}');
    }

    /// A non-empty array at `depth`; its elements are at `depth + 1`.
    pub(super) fn nested_array(&mut self, buf: &mut Vec<u8>, depth: u32, end: usize) {
        buf.push(b'[');
        // Sometimes an array of small objects that all have a `uid`.
        let uid_objects = self.below(4) == 0;
        let n = match (uid_objects, depth) {
            (true, _) => 1 + self.below(4),
            (false, 1) => u64::MAX,
            (false, _) => 1 + self.below(ARR_CHILDREN),
        };
        for i in 0..n {
            if i > 0 {
                if buf.len() >= end {
                    break;
                }
                buf.push(b',');
            }
            if uid_objects {
                buf.extend_from_slice(b"{\"uid\":");
                self.nested_uid_value(buf, depth + 2, 0);
                if self.below(2) == 0 {
                    buf.push(b',');
                    let k = self.below(self.keys.len() as u64) as usize;
                    buf.extend_from_slice(&self.keys[k]);
                    self.value(buf, depth + 2, 0);
                }
                buf.push(b'}');
            } else {
                self.value(buf, depth + 1, end);
            }
        }
        buf.push(b']');
    }

    /// A nested `ts`: often a plausible but unrelated unix time (as integer
    /// or string), otherwise any value.
    pub(super) fn nested_ts_value(&mut self, buf: &mut Vec<u8>, depth: u32, end: usize) {
        match self.below(8) {
            0 | 1 => {
                let t = self.clock.saturating_sub(self.below(10_000_000));
                write_u64(buf, t);
            }
            2 => {
                let t = self.clock.saturating_sub(self.below(10_000_000));
                buf.push(b'"');
                write_u64(buf, t);
                buf.push(b'"');
            }
            _ => self.value(buf, depth, end),
        }
    }

    /// A nested `uid`: often a uid of the pool (another user's), otherwise
    /// any value.
    pub(super) fn nested_uid_value(&mut self, buf: &mut Vec<u8>, depth: u32, end: usize) {
        if self.below(3) == 0 {
            let u = self.below(self.users) as u32;
            buf.push(b'"');
            write_uid(buf, u, self.uid_keys);
            buf.push(b'"');
        } else {
            self.value(buf, depth, end);
        }
    }

    pub(super) fn write_string(&mut self, buf: &mut Vec<u8>) {
        let r = self.below(STR_TOTAL);
        let s = if r < STR_EN_TOTAL {
            ENGLISH[(r / STR_EN_WEIGHT) as usize]
        } else {
            CYRILLIC[((r - STR_EN_TOTAL) / STR_CY_WEIGHT) as usize]
        };
        buf.extend_from_slice(s.as_bytes());
    }

    /// A float in [0, 1) with up to 7 decimals, like the original's
    /// `0.403514` and `0.0542993`.
    pub(super) fn write_float(&mut self, buf: &mut Vec<u8>) {
        let m = self.below(10_000_000);
        let mut digits = [b'0'; 7];
        let mut v = m;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (v % 10) as u8;
            v /= 10;
        }
        let mut len = 7;
        while len > 1 && digits[len - 1] == b'0' {
            len -= 1;
        }
        buf.extend_from_slice(b"0.");
        buf.extend_from_slice(&digits[..len]);
    }
}
