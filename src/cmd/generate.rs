//! Realistic challenge-like frames, deterministic by seed (`timebucket generate`).
//!
//! This module owns the synthetic input: JSON lines that look like the public
//! challenge `stream.jsonl` (see `/work/shared/data/README.md` and
//! `data/README.md`), so that the parser, the offline aggregate and the Kafka
//! pipeline can be exercised at full scale without the original file.
//!
//! ## What a frame looks like
//!
//! One line, `\n`-terminated, valid JSON and UTF-8: a root object with exactly
//! one `ts` (unix seconds) and exactly one `uid` (19 lowercase hex characters),
//! preceded by 0-3 filler members, `ts` or `uid` first, sometimes a filler
//! member between them. The rest are filler members drawn from the same
//! vocabulary as the original: lorem-ipsum key names (which repeat at the
//! root), strings with the escapes `\t \f \b \r \n \\ \"`, Cyrillic lines,
//! small integers, floats, booleans, empty and nested objects and arrays.
//! Nested objects reuse the key names `ts` and `uid` with unrelated values
//! (including plausible 10-digit timestamps and 19-hex-char ids), so only a
//! real root-level parse finds the right pair. About 5% of frames carry the
//! root `ts` as a string of digits (`"ts":"1468244384"`).
//!
//! ## Size
//!
//! Sizes are counted **without** the trailing newline. Filler members are
//! appended until the frame exceeds `frame_len`, and a member that would push
//! it beyond `frame_len + 76` is drawn again, so every frame has between
//! `frame_len + 1` and `frame_len + 76` bytes (for 2048: 2,049-2,124 bytes,
//! mean about 2,079, like the original). The upper bound needs a target of
//! about 300 bytes or more (room for `ts`, `uid` and up to four filler
//! members before the fill starts); targets below about 1,200 bytes get a
//! smaller nested member or none. Frames are never shorter than
//! `frame_len + 1`.
//!
//! ## Time and users
//!
//! The first frame is at `start`. After each frame the clock advances by one
//! second with probability `1/rate`. A frame is delayed with probability
//! `delay_percent/100` (when `max_delay > 0`): its written `ts` is the clock
//! minus a uniform 1..=`max_delay` seconds, saturating at 0; the clock itself
//! is not affected. The user of each frame is drawn uniformly from a pool of
//! `users` distinct uids ([`uid_for`]), itself derived from the seed.
//!
//! ## Determinism
//!
//! Same options, same bytes, on every machine and version: randomness comes
//! only from `rand_pcg::Pcg64Mcg::next_u64` (a fixed algorithm) seeded by a
//! fixed mix of `seed`, and bounded draws are computed here (multiply-high),
//! not by `rand`'s distribution code. `count` does not influence the draws, so
//! the first `k` frames of a run are the same for every `count >= k`.
//!
//! ## Speed
//!
//! Frames are built in one reused buffer from pre-rendered fragments (keys
//! with their quotes and colon, JSON-escaped strings) and hand-formatted
//! integers, and written through a 1 MiB `BufWriter`: no allocation per frame.

use std::io::{self, BufWriter, Write};

use rand::RngCore;
use rand_pcg::Pcg64Mcg;

/// First `ts` of the original challenge file (2016-07-11 13:39:44 UTC).
pub const DEFAULT_START: u64 = 1_468_244_384;

/// Default seed (`-s`). The `1/rate` clock makes a minute's frame count vary
/// by about ±7,700, so most seeds have some full minute outside the original
/// file's 40,000-52,000 distinct users; this one (like the original, one draw
/// of the same model) keeps every full minute inside it with
/// `-c 1000000 -r 1000 -n 100000`: 986 seconds, 41,583-50,343 per minute.
/// Of seeds 1-40 only 5 and 12 do.
pub const DEFAULT_SEED: u64 = 5;

/// Largest overshoot of a frame over its target size, in bytes
/// (the original file: 2,124 - 2,048).
pub const MAX_OVERSHOOT: usize = 76;

/// Options of [`generate`]; the CLI flags are in brackets.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// Frames to write (`-c`).
    pub count: u64,
    /// Frames per second on average (`-r`): after each frame the clock
    /// advances by one second with probability `1/rate`. Must be >= 1.
    pub rate: u32,
    /// Size of the pool of distinct users (`-n`). Must be >= 1.
    pub users: u32,
    /// Seed (`-s`): same options and seed, same bytes.
    pub seed: u64,
    /// Target frame size in bytes (`-l`); frames have `frame_len + 1 ..=
    /// frame_len + 76` bytes, newline excluded (see the module docs).
    pub frame_len: usize,
    /// Largest delay in seconds (`-d`); 0 disables delays.
    pub max_delay: u32,
    /// Percent of frames delayed (`-p`), 0.0..=100.0.
    pub delay_percent: f64,
    /// `ts` of the first frame (`--start`).
    pub start: u64,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            count: 1000,
            rate: 1000,
            users: 100_000,
            seed: DEFAULT_SEED,
            frame_len: 2048,
            max_delay: 0,
            delay_percent: 0.0,
            start: DEFAULT_START,
        }
    }
}

/// What [`generate`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenerateSummary {
    /// Frames written (= `count`).
    pub frames: u64,
    /// Bytes written, newlines included.
    pub bytes: u64,
    /// Smallest root `ts` written (`start` when no frame was delayed below it,
    /// or when `count` is 0).
    pub first_ts: u64,
    /// Largest root `ts` written (`start` when `count` is 0). Without delays,
    /// the `ts` of the last frame.
    pub last_ts: u64,
}

/// Writes `opts.count` frames to `out` (buffered here; `out` may be
/// unbuffered) and flushes it.
///
/// Errors: `InvalidInput` for `rate == 0`, `users == 0` or a `delay_percent`
/// outside 0..=100; otherwise the errors of `out`.
pub fn generate<W: Write>(opts: &GenerateOptions, out: W) -> io::Result<GenerateSummary> {
    let mut gen = FrameGen::new(opts)?;
    let mut out = BufWriter::with_capacity(1 << 20, out);
    let mut buf = Vec::with_capacity(opts.frame_len + 4096);
    let mut summary = GenerateSummary {
        frames: 0,
        bytes: 0,
        first_ts: opts.start,
        last_ts: opts.start,
    };
    for i in 0..opts.count {
        buf.clear();
        let ts = gen.frame(&mut buf);
        out.write_all(&buf)?;
        summary.bytes += buf.len() as u64;
        if i == 0 {
            summary.first_ts = ts;
            summary.last_ts = ts;
        } else {
            summary.first_ts = summary.first_ts.min(ts);
            summary.last_ts = summary.last_ts.max(ts);
        }
        summary.frames += 1;
    }
    out.flush()?;
    Ok(summary)
}

/// The uid of user `index` (0-based) in the pool of `seed`: 19 lowercase hex
/// characters. Distinct indexes give distinct uids for the same seed.
pub fn uid_for(index: u32, seed: u64) -> String {
    let mut out = Vec::with_capacity(19);
    write_uid(&mut out, index, uid_keys(seed));
    String::from_utf8(out).expect("hex is ASCII")
}

// ---------------------------------------------------------------------------
// Vocabulary (the same kinds of text as the original file)
// ---------------------------------------------------------------------------

/// Key names: the words of the lorem-ipsum paragraph, with its repetitions
/// (so `in`, `dolor`, `ut`, `dolore` are the most frequent, as in the
/// original). The original never uses `id`, nor do we.
const LOREM: &str = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod \
    tempor incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud \
    exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat. Duis aute irure dolor \
    in reprehenderit in voluptate velit esse cillum dolore eu fugiat nulla pariatur. Excepteur \
    sint occaecat cupidatat non proident, sunt in culpa qui officia deserunt mollit anim est \
    laborum.";

/// English strings, already JSON-encoded (quotes and escapes included).
const ENGLISH: [&str; 13] = [
    r#""code/properties,/giving/the/best/of/both/the""#,
    r#""the\rRAII\ridiom)\rand\rscope\rstatements\rfor\rdeterministic""#,
    r#""specifying\"types,\"like\"dynamic\"languages\"do.\"On\"the""#,
    r#""code.\nD\nalso\nsupports\nscoped\nresource\nmanagement\n(aka""#,
    r#""read. Show example Built-in linear and associative arrays,""#,
    r#""memory\fmanagement\fmakes\ffor\fsafe,\fsimple,\fand\frobust""#,
    r#""transactional\tcode\tthat\tis\teasy\tto\twrite\tand""#,
    r#""example""#,
    r#""static\band\bthe\bdynamic\bworlds.\bShow\bexample\bAutomatic""#,
    r#""pleasant\\for\\tasks,\\both\\small\\and\\large.\\Show""#,
    r#""D allows writing large code fragments without redundantly""#,
    r#""other\\hand,\\static\\inference\\deduces\\types\\and\\other""#,
    r#""slices,\"and\"ranges\"make\"daily\"programming\"simple\"and""#,
];

/// Cyrillic strings (Pushkin, «Демон»), JSON-encoded.
const CYRILLIC: [&str; 24] = [
    r#""В те дни, когда мне были новы""#,
    r#""Все впечатленья бытия -""#,
    r#""И взоры дев, и шум дубровы,""#,
    r#""И ночью пенье соловья,-""#,
    r#""Когда возвышенные чувства,""#,
    r#""Свобода, слава и любовь""#,
    r#""И вдохновенные искусства""#,
    r#""Так сильно волновали кровь,-""#,
    r#""Часы надежд и наслаждений""#,
    r#""Тоской внезапной осеня,""#,
    r#""Тогда какой-то злобный гений""#,
    r#""Стал тайно навещать меня.""#,
    r#""Печальны были наши встречи:""#,
    r#""Его улыбка, чудный взгляд,""#,
    r#""Его язвительные речи""#,
    r#""Вливали в душу хладный яд.""#,
    r#""Неистощимой клеветою""#,
    r#""Он провиденье искушал;""#,
    r#""Он звал прекрасное мечтою;""#,
    r#""Он вдохновенье презирал;""#,
    r#""Не верил он любви, свободе;""#,
    r#""На жизнь насмешливо глядел -""#,
    r#""И ничего во всей природе""#,
    r#""Благословить он не хотел.""#,
];

/// String draws: each English string has weight 56, each Cyrillic one 3
/// (13*56 = 728 of 800, so about 9% of strings are Cyrillic, as in the original).
const STR_EN_WEIGHT: u64 = 56;
const STR_CY_WEIGHT: u64 = 3;
const STR_EN_TOTAL: u64 = STR_EN_WEIGHT * ENGLISH.len() as u64;
const STR_TOTAL: u64 = STR_EN_TOTAL + STR_CY_WEIGHT * CYRILLIC.len() as u64;

/// Kinds of filler values, drawn per 1000 (shares of the original's values).
#[derive(Clone, Copy)]
struct Weights {
    string: u64,
    empty_obj: u64,
    empty_arr: u64,
    int: u64,
    float: u64,
    boolean: u64,
    obj: u64,
    arr: u64,
}

impl Weights {
    const fn simple(&self) -> u64 {
        self.string + self.empty_obj + self.empty_arr + self.int + self.float + self.boolean
    }
    const fn total(&self) -> u64 {
        self.simple() + self.obj + self.arr
    }
}

/// Filler values (containers only inside the one big root container).
const WEIGHTS: Weights = Weights {
    string: 620,
    empty_obj: 80,
    empty_arr: 66,
    int: 41,
    float: 43,
    boolean: 38,
    obj: 62,
    arr: 50,
};

/// Per 1000 frames, how many have one big nested root member (the original:
/// 989 of its last 1000 frames, 54% objects, 46% arrays).
const BIG_PER_1000: u64 = 990;
const BIG_OBJECT_PERCENT: u64 = 54;
/// Byte budget of the big member: `BIG_MIN + below(BIG_SPREAD)` (the
/// original: median 845 bytes, 90% within 430-1,065, at most about 1,150).
const BIG_MIN: usize = 400;
const BIG_SPREAD: u64 = 800;
/// Children drawn for a nested object / array (fewer when the budget runs out).
const OBJ_CHILDREN: u64 = 20;
const ARR_CHILDREN: u64 = 25;

/// Members of nested objects: 6.5% are `ts`, 6.5% are `uid`.
const NESTED_TS_PER_1000: u64 = 65;
const NESTED_UID_PER_1000: u64 = 65;

/// Percent of frames whose root `ts` is a JSON string of digits.
const TS_STRING_PERCENT: u64 = 5;
/// Percent of frames with a filler member between `ts` and `uid`.
const BETWEEN_PERCENT: u64 = 15;
/// Deepest non-empty container below the root: with empty `{}`/`[]` leaves
/// and arrays of `{"uid":..}` objects, values go 6 levels below the root
/// (the original: 7).
const MAX_NESTING: u32 = 4;
/// Room kept free after a big member's budget: it may exceed the budget by
/// one value and a closing bracket per level.
const BIG_SLACK: usize = 100 * (MAX_NESTING as usize + 2) + MAX_OVERSHOOT;

// ---------------------------------------------------------------------------
// The generator
// ---------------------------------------------------------------------------

/// Where the frame's filler members are: the next one's index, and the
/// index of the big nested one.
struct Fillers {
    index: u64,
    big_at: u64,
}

struct FrameGen {
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
    fn new(opts: &GenerateOptions) -> io::Result<Self> {
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
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.rng.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Appends one frame with its newline; returns its root `ts`.
    fn frame(&mut self, buf: &mut Vec<u8>) -> u64 {
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

    fn write_root_uid(&mut self, buf: &mut Vec<u8>, user: u32) {
        buf.extend_from_slice(b"\"uid\":\"");
        write_uid(buf, user, self.uid_keys);
        buf.push(b'"');
    }

    /// A root filler member `"key":value`: a simple value, or the frame's
    /// one big nested member when its turn has come and the frame has room.
    fn root_member(&mut self, buf: &mut Vec<u8>, fillers: &mut Fillers) {
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
    fn value(&mut self, buf: &mut Vec<u8>, depth: u32, end: usize) {
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
    fn nested_object(&mut self, buf: &mut Vec<u8>, depth: u32, end: usize) {
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
    fn nested_array(&mut self, buf: &mut Vec<u8>, depth: u32, end: usize) {
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
    fn nested_ts_value(&mut self, buf: &mut Vec<u8>, depth: u32, end: usize) {
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
    fn nested_uid_value(&mut self, buf: &mut Vec<u8>, depth: u32, end: usize) {
        if self.below(3) == 0 {
            let u = self.below(self.users) as u32;
            buf.push(b'"');
            write_uid(buf, u, self.uid_keys);
            buf.push(b'"');
        } else {
            self.value(buf, depth, end);
        }
    }

    fn write_string(&mut self, buf: &mut Vec<u8>) {
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
    fn write_float(&mut self, buf: &mut Vec<u8>) {
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

fn write_root_ts(buf: &mut Vec<u8>, ts: u64, as_string: bool) {
    if as_string {
        buf.extend_from_slice(b"\"ts\":\"");
        write_u64(buf, ts);
        buf.push(b'"');
    } else {
        buf.extend_from_slice(b"\"ts\":");
        write_u64(buf, ts);
    }
}

/// Appends the decimal digits of `n`.
#[inline]
fn write_u64(buf: &mut Vec<u8>, mut n: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&tmp[i..]);
}

/// SplitMix64's finalizer: a bijection of u64 with good avalanche.
#[inline]
fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn uid_keys(seed: u64) -> (u64, u64) {
    (
        mix64(seed ^ 0xa409_3822_299f_31d0),
        mix64(seed ^ 0x082e_fa98_ec4e_6c89),
    )
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends the 19 hex characters of user `index`: 3 characters from a hash,
/// then 16 from a bijection of the index (so distinct indexes, distinct uids).
#[inline]
fn write_uid(buf: &mut Vec<u8>, index: u32, (k1, k2): (u64, u64)) {
    let a = mix64(k1.wrapping_add(u64::from(index)));
    let b = mix64(a ^ k2);
    let mut out = [0u8; 19];
    for (i, o) in out[..3].iter_mut().enumerate() {
        *o = HEX[((b >> (4 * i)) & 15) as usize];
    }
    for (i, o) in out[3..].iter_mut().enumerate() {
        *o = HEX[((a >> (60 - 4 * i)) & 15) as usize];
    }
    buf.extend_from_slice(&out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn run(opts: &GenerateOptions) -> (Vec<u8>, GenerateSummary) {
        let mut out = Vec::new();
        let summary = generate(opts, &mut out).unwrap();
        (out, summary)
    }

    #[test]
    fn vocabulary_is_valid_json() {
        for s in ENGLISH.iter().chain(CYRILLIC.iter()) {
            let v: serde_json::Value = serde_json::from_str(s).unwrap();
            assert!(v.is_string(), "{s}");
        }
        assert_eq!(LOREM.split_whitespace().count(), 68);
        assert!(!LOREM
            .split_whitespace()
            .any(|w| w == "id" || w == "ts" || w == "uid"));
    }

    #[test]
    fn uids_are_19_hex_and_distinct() {
        let mut seen = HashSet::new();
        for i in 0..100_000 {
            let u = uid_for(i, 1);
            assert_eq!(u.len(), 19);
            assert!(
                u.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
                "{u}"
            );
            assert!(seen.insert(u));
        }
        assert_ne!(uid_for(0, 1), uid_for(0, 2));
        // Pinned: a change of the pool changes every committed sample and figure.
        assert_eq!(uid_for(0, 1), "b218d9c4e2b5ff5c39b");
        assert_eq!(uid_for(99_999, 1), "5774d853b5f766ad7c7");
    }

    #[test]
    fn integers_and_floats_format() {
        let mut b = Vec::new();
        write_u64(&mut b, 0);
        b.push(b' ');
        write_u64(&mut b, 1_468_244_384);
        b.push(b' ');
        write_u64(&mut b, u64::MAX);
        assert_eq!(b, b"0 1468244384 18446744073709551615");
        let mut g = FrameGen::new(&GenerateOptions::default()).unwrap();
        for _ in 0..10_000 {
            let mut b = Vec::new();
            g.write_float(&mut b);
            let s = std::str::from_utf8(&b).unwrap();
            let v: f64 = serde_json::from_str(s).unwrap();
            assert!((0.0..1.0).contains(&v), "{s}");
            assert!(!s.ends_with('0') || s == "0.0", "{s}");
        }
    }

    #[test]
    fn below_is_in_range_and_uniform_enough() {
        let mut g = FrameGen::new(&GenerateOptions::default()).unwrap();
        let mut counts = [0u32; 7];
        for _ in 0..70_000 {
            counts[g.below(7) as usize] += 1;
        }
        for c in counts {
            assert!((9_500..10_500).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn invalid_options_are_rejected() {
        let bad = [
            GenerateOptions {
                rate: 0,
                ..Default::default()
            },
            GenerateOptions {
                users: 0,
                ..Default::default()
            },
            GenerateOptions {
                delay_percent: 101.0,
                ..Default::default()
            },
            GenerateOptions {
                delay_percent: -1.0,
                ..Default::default()
            },
            GenerateOptions {
                delay_percent: f64::NAN,
                ..Default::default()
            },
        ];
        for opts in bad {
            let err = generate(&opts, Vec::new()).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{opts:?}");
        }
    }

    #[test]
    fn count_zero_writes_nothing() {
        let (out, s) = run(&GenerateOptions {
            count: 0,
            ..Default::default()
        });
        assert!(out.is_empty());
        assert_eq!(
            s,
            GenerateSummary {
                frames: 0,
                bytes: 0,
                first_ts: DEFAULT_START,
                last_ts: DEFAULT_START
            }
        );
    }

    #[test]
    fn prefix_does_not_depend_on_count() {
        let (a, _) = run(&GenerateOptions {
            count: 50,
            ..Default::default()
        });
        let (b, _) = run(&GenerateOptions {
            count: 120,
            ..Default::default()
        });
        assert!(b.starts_with(&a));
    }

    #[test]
    fn sizes_stay_in_the_band_for_other_targets() {
        for frame_len in [300usize, 400, 700, 1100, 1500, 2048, 4096, 16384] {
            let (out, s) = run(&GenerateOptions {
                count: 300,
                frame_len,
                ..Default::default()
            });
            assert_eq!(s.bytes as usize, out.len());
            for line in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                assert!(
                    line.len() > frame_len && line.len() <= frame_len + MAX_OVERSHOOT,
                    "{frame_len}: {}",
                    line.len()
                );
            }
        }
        // Tiny targets: still valid frames, at least frame_len + 1 bytes.
        for frame_len in [0usize, 10, 100, 200] {
            let (out, _) = run(&GenerateOptions {
                count: 300,
                frame_len,
                ..Default::default()
            });
            for line in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                assert!(line.len() > frame_len);
                let _: serde_json::Value = serde_json::from_slice(line).unwrap();
            }
        }
    }

    #[test]
    fn summary_tracks_ts_range() {
        let (out, s) = run(&GenerateOptions {
            count: 5000,
            rate: 10,
            max_delay: 8,
            delay_percent: 10.0,
            ..Default::default()
        });
        let ts: Vec<u64> = out
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| {
                let v: serde_json::Value = serde_json::from_slice(l).unwrap();
                match &v["ts"] {
                    serde_json::Value::Number(n) => n.as_u64().unwrap(),
                    serde_json::Value::String(s) => s.parse().unwrap(),
                    other => panic!("{other}"),
                }
            })
            .collect();
        assert_eq!(s.frames, 5000);
        assert_eq!(s.first_ts, *ts.iter().min().unwrap());
        assert_eq!(s.last_ts, *ts.iter().max().unwrap());
    }
}
