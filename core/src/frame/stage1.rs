//! Stage 1 of the frame parser (simdjson's idea, cut to what our walk needs):
//! one pass over the whole line, 64 bytes at a time, that finds every quote
//! which opens or closes a string and rejects every raw control character
//! and bad escape. The grammar walk ([`super::scan`]) then jumps from an
//! opening quote to the next bit of the [`Quotes`] bitmap instead of
//! scanning the string's body.
//!
//! Why only quotes: frames are short strings (30-60 B) with an escape every
//! few bytes. A token list of every structural character (the first attempt,
//! see BENCHMARKS.md) cost more than the walk it saved; a bitmap of string
//! ends removes the walk's per-string block scan and per-escape loop, which
//! were most of its time, and leaves the rest of the walk as it was.
//!
//! What makes a line invalid here is invalid wherever it sits, so it needs
//! no knowledge of the grammar: a control character other than tab, LF or
//! CR (never valid raw, inside a string or out); a backslash whose next byte
//! cannot be escaped, or `\u` without four hex digits (outside a string the
//! backslash itself is an error); a raw tab, LF or CR inside a string (string
//! state from the quote parity, exact on a valid line). Three classifiers
//! are picked once at run time ([`SimdLevel`]): AVX2, SSE4.2 and a scalar
//! loop, which the tests run too ([`with_simd_level`]).

use super::scan::{escaped_mask, Syntax};
use std::cell::Cell;
use std::sync::OnceLock;

/// Which stage-1 classifier the parser uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SimdLevel {
    Scalar = 1,
    Sse42 = 2,
    Avx2 = 3,
}

impl SimdLevel {
    pub const ALL: [SimdLevel; 3] = [SimdLevel::Scalar, SimdLevel::Sse42, SimdLevel::Avx2];

    pub fn name(self) -> &'static str {
        match self {
            SimdLevel::Scalar => "scalar",
            SimdLevel::Sse42 => "sse4.2",
            SimdLevel::Avx2 => "avx2",
        }
    }

    /// Whether this CPU can run it.
    pub fn available(self) -> bool {
        match self {
            SimdLevel::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Sse42 => std::arch::is_x86_feature_detected!("sse4.2"),
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }
}

/// Environment variable that caps the classifier (`scalar`, `sse4.2`,
/// `avx2`): to compare the paths, or to rule one out on a suspect CPU.
pub const SIMD_ENV: &str = "TIMEBUCKET_SIMD";

/// The best available classifier, capped by [`SIMD_ENV`]; decided once.
pub fn best_simd_level() -> SimdLevel {
    static BEST: OnceLock<SimdLevel> = OnceLock::new();
    *BEST.get_or_init(|| {
        let cap = std::env::var(SIMD_ENV)
            .ok()
            .and_then(|v| SimdLevel::ALL.into_iter().find(|l| l.name() == v.trim()))
            .unwrap_or(SimdLevel::Avx2);
        SimdLevel::ALL
            .into_iter()
            .rev()
            .find(|l| *l <= cap && l.available())
            .unwrap_or(SimdLevel::Scalar)
    })
}

thread_local! {
    /// 0: none forced on this thread; else a `SimdLevel as u8`.
    static FORCED: Cell<u8> = const { Cell::new(0) };
}

/// Runs `f` with the parser on this thread using `level`: how tests and the
/// benchmark run every path in one process. Panics if this CPU lacks
/// `level`, so that a test never passes without running the path it names.
pub fn with_simd_level<R>(level: SimdLevel, f: impl FnOnce() -> R) -> R {
    assert!(
        level.available(),
        "this CPU has no {}: run the tests on an x86_64 CPU with AVX2",
        level.name()
    );
    let before = FORCED.with(|c| c.replace(level as u8));
    let out = f();
    FORCED.with(|c| c.set(before));
    out
}

/// The classifier this thread's parses use now.
#[inline]
pub fn simd_level() -> SimdLevel {
    match FORCED.with(Cell::get) {
        1 => SimdLevel::Scalar,
        2 => SimdLevel::Sse42,
        3 => SimdLevel::Avx2,
        _ => best_simd_level(),
    }
}

/// Bit k of word w set: byte `64 * w + k` of the line is a quote that is not
/// escaped, so on a valid line one that opens or closes a string.
pub(super) struct Quotes<'a>(&'a [u64]);

impl Quotes<'_> {
    /// The first string quote at or after `i`: the closing quote of a
    /// string whose body starts at `i`.
    #[inline(always)]
    pub(super) fn next(&self, i: usize) -> Option<usize> {
        let w = i / 64;
        // This word and the next as one: a frame's strings are shorter
        // than 64 bytes, so the end is almost always in one of them, found
        // without the branch on "this word is empty" that a string across
        // a word boundary would mispredict.
        let here = *self.0.get(w)? & (!0u64 << (i % 64));
        let after = self.0.get(w + 1).copied().unwrap_or(0);
        let both = u128::from(here) | u128::from(after) << 64;
        if both != 0 {
            return Some(w * 64 + both.trailing_zeros() as usize);
        }
        let rest = self.0.get(w + 2..)?;
        let k = rest.iter().position(|&bits| bits != 0)?;
        Some((w + 2 + k) * 64 + rest[k].trailing_zeros() as usize)
    }
}

/// Runs stage 1 over `b` and hands its [`Quotes`] to `walk`; a line stage 1
/// rejects is a syntax error. The bitmap lives on the stack for lines up to
/// 4 KB (frames are about 2 KB), on the heap beyond.
#[inline]
pub(super) fn with_quotes<T>(
    b: &[u8],
    walk: impl FnOnce(&Quotes) -> Result<T, Syntax>,
) -> Result<T, Syntax> {
    let words = b.len().div_ceil(64);
    let mut small = [0u64; 64];
    let mut big = Vec::new();
    let bits: &mut [u64] = if words <= small.len() {
        &mut small[..words]
    } else {
        big.resize(words, 0);
        &mut big
    };
    let ok = match simd_level() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: simd_level only returns a level this CPU has.
        SimdLevel::Avx2 => unsafe { x86::pass_avx2(b, bits) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        SimdLevel::Sse42 => unsafe { x86::pass_sse42(b, bits) },
        _ => pass_scalar(b, bits),
    };
    if !ok {
        return Err(Syntax);
    }
    walk(&Quotes(bits))
}

/// Raw classes of one 64-byte block: bit k describes byte k.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Raw {
    pub(super) quote: u64,
    pub(super) backslash: u64,
    /// Below 0x20.
    pub(super) control: u64,
}

/// What may follow a backslash (`" \ / b f n r t u`), and the `u`s, whose
/// escape needs four hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Escapes {
    pub(super) escapable: u64,
    pub(super) u: u64,
}

/// The stage-1 loop, expanded once per classifier so that each expansion
/// inlines its classifier into one loop (under its `target_feature`). The
/// tail block is padded with spaces, which are neither quotes nor controls
/// nor escapable: a string still open at the end finds no closing quote,
/// and a final backslash escapes a byte that cannot be escaped.
macro_rules! pass {
    ($(#[$attr:meta])* $vis:vis fn $name:ident, $classify:path, $escapes:path) => {
        $(#[$attr])*
        $vis fn $name(b: &[u8], out: &mut [u64]) -> bool {
            // Bit 0 of the next block is escaped by a backslash ending this one.
            let mut carry = 0u64;
            let mut tail = [b' '; 64];
            for w in 0..out.len() {
                let at = 64 * w;
                let bytes: &[u8; 64] = match b.get(at..at + 64) {
                    Some(block) => block.try_into().expect("64 bytes"),
                    None => {
                        let rest = &b[at..];
                        tail[..rest.len()].copy_from_slice(rest);
                        &tail
                    }
                };
                let raw = $classify(bytes);
                // Escapes resolved in every block, without a branch on
                // "this block has a backslash": in frames about half the
                // blocks have one, in no pattern a predictor could learn.
                let backslash = raw.backslash & !carry;
                let escaped = escaped_mask(backslash) | carry;
                carry = (backslash & !escaped) >> 63;
                let esc = $escapes(bytes);
                let bad = escaped & !esc.escapable;
                let us = escaped & esc.u;
                // One branch, rarely taken, for both checks.
                if bad | us != 0 && (bad != 0 || !hex_after_u(b, at, us)) {
                    return false;
                }
                let quote = raw.quote & !escaped;
                if raw.control != 0 && !controls_ok(bytes, raw.control, quote, &out[..w]) {
                    return false;
                }
                out[w] = quote;
            }
            carry == 0
        }
    };
}

pass!(fn pass_scalar, classify_scalar, escapes_scalar);

/// Whether each `\u` at a bit of `us` (block at `at`) has four hex digits.
#[inline(always)]
fn hex_after_u(b: &[u8], at: usize, mut us: u64) -> bool {
    while us != 0 {
        let j = at + us.trailing_zeros() as usize;
        us &= us - 1;
        match b.get(j + 1..j + 5) {
            Some(hex) if hex.iter().all(u8::is_ascii_hexdigit) => {}
            _ => return false,
        }
    }
    true
}

/// The control characters of a block (its quotes in `quote`, the line's
/// quotes before it in `before`): only tab, LF and CR, and only outside
/// strings. Rare in frames, so out of line and scalar.
#[cold]
#[inline(never)]
fn controls_ok(bytes: &[u8; 64], control: u64, quote: u64, before: &[u64]) -> bool {
    // Whether a string is open at the block's start: the parity of the
    // quotes before it (computed only here, so the hot loop does not).
    let odd = before.iter().map(|w| w.count_ones()).sum::<u32>() & 1;
    let mut in_string = quote;
    for shift in [1, 2, 4, 8, 16, 32] {
        in_string ^= in_string << shift;
    }
    in_string ^= 0u64.wrapping_sub(u64::from(odd));
    let mut rest = control;
    while rest != 0 {
        let k = rest.trailing_zeros();
        rest &= rest - 1;
        if !matches!(bytes[k as usize], b'\t' | b'\n' | b'\r') || in_string >> k & 1 == 1 {
            return false;
        }
    }
    true
}

#[inline(always)]
pub(super) fn classify_scalar(bytes: &[u8; 64]) -> Raw {
    let mut raw = Raw {
        quote: 0,
        backslash: 0,
        control: 0,
    };
    for (k, &c) in bytes.iter().enumerate() {
        raw.quote |= u64::from(c == b'"') << k;
        raw.backslash |= u64::from(c == b'\\') << k;
        raw.control |= u64::from(c < 0x20) << k;
    }
    raw
}

#[inline(always)]
pub(super) fn escapes_scalar(bytes: &[u8; 64]) -> Escapes {
    let mut esc = Escapes { escapable: 0, u: 0 };
    for (k, &c) in bytes.iter().enumerate() {
        esc.escapable |= u64::from(matches!(
            c,
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' | b'u'
        )) << k;
        esc.u |= u64::from(c == b'u') << k;
    }
    esc
}

#[cfg(target_arch = "x86_64")]
pub(super) mod x86 {
    //! The vector classifiers: compares for quotes, backslashes and
    //! controls; two `pshufb` nibble lookups for the escapable bytes.
    use super::{controls_ok, escaped_mask, hex_after_u, Escapes, Raw};
    use std::arch::x86_64::*;

    /// Nibble tables of the escapable bytes. A byte is escapable when its
    /// low-nibble and high-nibble entries share a bit: bit 0 `"` and `/`
    /// (0x2_), bit 1 `\` (0x5_), bit 2 `b f n` (0x6_), bit 3 `r t u`
    /// (0x7_); bit 4 marks `u` alone.
    const LO: [i8; 16] = {
        let mut t = [0i8; 16];
        t[0x2] = 0b0_1101; // 0x22 " , 0x62 b, 0x72 r
        t[0xF] = 0b0_0001; // 0x2F /
        t[0xC] = 0b0_0010; // 0x5C \
        t[0x6] = 0b0_0100; // 0x66 f
        t[0xE] = 0b0_0100; // 0x6E n
        t[0x4] = 0b0_1000; // 0x74 t
        t[0x5] = 0b1_1000; // 0x75 u
        t
    };
    const HI: [i8; 16] = {
        let mut t = [0i8; 16];
        t[0x2] = 0b0_0001;
        t[0x5] = 0b0_0010;
        t[0x6] = 0b0_0100;
        t[0x7] = 0b1_1000;
        t
    };

    #[target_feature(enable = "sse4.2")]
    #[inline]
    pub(super) fn classify_sse42(bytes: &[u8; 64]) -> Raw {
        let quote = _mm_set1_epi8(b'"' as i8);
        let backslash = _mm_set1_epi8(b'\\' as i8);
        let ctl_max = _mm_set1_epi8(0x1f);
        let mut raw = Raw {
            quote: 0,
            backslash: 0,
            control: 0,
        };
        for k in 0..4 {
            // SAFETY: the 16-byte load lies inside the 64-byte array.
            let v = unsafe { _mm_loadu_si128(bytes.as_ptr().add(16 * k) as *const __m128i) };
            let shift = 16 * k as u32;
            let q = _mm_movemask_epi8(_mm_cmpeq_epi8(v, quote)) as u16;
            let s = _mm_movemask_epi8(_mm_cmpeq_epi8(v, backslash)) as u16;
            // unsigned v <= 0x1f  <=>  max(v, 0x1f) == 0x1f
            let c = _mm_movemask_epi8(_mm_cmpeq_epi8(_mm_max_epu8(v, ctl_max), ctl_max)) as u16;
            raw.quote |= u64::from(q) << shift;
            raw.backslash |= u64::from(s) << shift;
            raw.control |= u64::from(c) << shift;
        }
        raw
    }

    #[target_feature(enable = "sse4.2")]
    #[inline]
    pub(super) fn escapes_sse42(bytes: &[u8; 64]) -> Escapes {
        // SAFETY: the tables are 16 bytes.
        let (lo_t, hi_t) = unsafe {
            (
                _mm_loadu_si128(LO.as_ptr() as *const __m128i),
                _mm_loadu_si128(HI.as_ptr() as *const __m128i),
            )
        };
        let nibble = _mm_set1_epi8(0x0f);
        let u_bit = _mm_set1_epi8(0b1_0000);
        let zero = _mm_setzero_si128();
        let mut esc = Escapes { escapable: 0, u: 0 };
        for k in 0..4 {
            // SAFETY: the 16-byte load lies inside the 64-byte array.
            let v = unsafe { _mm_loadu_si128(bytes.as_ptr().add(16 * k) as *const __m128i) };
            let lo = _mm_shuffle_epi8(lo_t, _mm_and_si128(v, nibble));
            let hi = _mm_shuffle_epi8(hi_t, _mm_and_si128(_mm_srli_epi16(v, 4), nibble));
            let class = _mm_and_si128(lo, hi);
            let shift = 16 * k as u32;
            let none = _mm_movemask_epi8(_mm_cmpeq_epi8(class, zero)) as u16;
            let u = _mm_movemask_epi8(_mm_cmpeq_epi8(_mm_and_si128(class, u_bit), u_bit)) as u16;
            esc.escapable |= u64::from(!none) << shift;
            esc.u |= u64::from(u) << shift;
        }
        esc
    }

    #[target_feature(enable = "avx2")]
    #[inline]
    pub(super) fn classify_avx2(bytes: &[u8; 64]) -> Raw {
        let quote = _mm256_set1_epi8(b'"' as i8);
        let backslash = _mm256_set1_epi8(b'\\' as i8);
        let ctl_max = _mm256_set1_epi8(0x1f);
        let mut raw = Raw {
            quote: 0,
            backslash: 0,
            control: 0,
        };
        for k in 0..2 {
            // SAFETY: the 32-byte load lies inside the 64-byte array.
            let v = unsafe { _mm256_loadu_si256(bytes.as_ptr().add(32 * k) as *const __m256i) };
            let shift = 32 * k as u32;
            let q = _mm256_movemask_epi8(_mm256_cmpeq_epi8(v, quote)) as u32;
            let s = _mm256_movemask_epi8(_mm256_cmpeq_epi8(v, backslash)) as u32;
            let c = _mm256_movemask_epi8(_mm256_cmpeq_epi8(_mm256_max_epu8(v, ctl_max), ctl_max))
                as u32;
            raw.quote |= u64::from(q) << shift;
            raw.backslash |= u64::from(s) << shift;
            raw.control |= u64::from(c) << shift;
        }
        raw
    }

    #[target_feature(enable = "avx2")]
    #[inline]
    pub(super) fn escapes_avx2(bytes: &[u8; 64]) -> Escapes {
        // SAFETY: the tables are 16 bytes; vpshufb looks up within each
        // 128-bit lane, so both lanes get the same table.
        let (lo_t, hi_t) = unsafe {
            (
                _mm256_broadcastsi128_si256(_mm_loadu_si128(LO.as_ptr() as *const __m128i)),
                _mm256_broadcastsi128_si256(_mm_loadu_si128(HI.as_ptr() as *const __m128i)),
            )
        };
        let nibble = _mm256_set1_epi8(0x0f);
        let u_bit = _mm256_set1_epi8(0b1_0000);
        let zero = _mm256_setzero_si256();
        let mut esc = Escapes { escapable: 0, u: 0 };
        for k in 0..2 {
            // SAFETY: the 32-byte load lies inside the 64-byte array.
            let v = unsafe { _mm256_loadu_si256(bytes.as_ptr().add(32 * k) as *const __m256i) };
            let lo = _mm256_shuffle_epi8(lo_t, _mm256_and_si256(v, nibble));
            let hi = _mm256_shuffle_epi8(hi_t, _mm256_and_si256(_mm256_srli_epi16(v, 4), nibble));
            let class = _mm256_and_si256(lo, hi);
            let shift = 32 * k as u32;
            let none = _mm256_movemask_epi8(_mm256_cmpeq_epi8(class, zero)) as u32;
            let u = _mm256_movemask_epi8(_mm256_cmpeq_epi8(_mm256_and_si256(class, u_bit), u_bit))
                as u32;
            esc.escapable |= u64::from(!none) << shift;
            esc.u |= u64::from(u) << shift;
        }
        esc
    }

    pass!(
        #[target_feature(enable = "sse4.2")]
        pub(super) fn pass_sse42,
        classify_sse42,
        escapes_sse42
    );
    pass!(
        #[target_feature(enable = "avx2")]
        pub(super) fn pass_avx2,
        classify_avx2,
        escapes_avx2
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes every class cares about, and their neighbours.
    const INTERESTING: &[u8] = b"\"\\{}[]:, \t\n\r\x00\x1f\x20/bfnrtuxUBFNRTa0\x7f\x80\xff\xa2\xdc";

    fn blocks(mut f: impl FnMut(&[u8; 64])) {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut bytes = [0u8; 64];
        for round in 0..20_000 {
            for b in bytes.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Half the rounds from the interesting bytes only.
                *b = if round % 2 == 0 {
                    INTERESTING[(x % INTERESTING.len() as u64) as usize]
                } else {
                    x as u8
                };
            }
            f(&bytes);
        }
        // Every byte value at every position.
        for c in 0..=255u8 {
            f(&[c; 64]);
        }
    }

    #[test]
    fn scalar_escapes_are_json_escapes() {
        for c in 0..=255u8 {
            let esc = escapes_scalar(&[c; 64]);
            let json_ok =
                serde_json::from_slice::<String>(&[b'"', b'\\', c, b'"']).is_ok() || c == b'u';
            assert_eq!(esc.escapable == !0, json_ok, "{c:#x}");
            assert_eq!(esc.u == !0, c == b'u', "{c:#x}");
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn vector_classifiers_match_the_scalar_one() {
        for level in [SimdLevel::Sse42, SimdLevel::Avx2] {
            assert!(level.available(), "this CPU has no {}", level.name());
        }
        blocks(|bytes| {
            let raw = classify_scalar(bytes);
            let esc = escapes_scalar(bytes);
            // SAFETY: both levels were checked available above.
            unsafe {
                assert_eq!(x86::classify_sse42(bytes), raw, "sse4.2 on {bytes:?}");
                assert_eq!(x86::classify_avx2(bytes), raw, "avx2 on {bytes:?}");
                assert_eq!(x86::escapes_sse42(bytes), esc, "sse4.2 on {bytes:?}");
                assert_eq!(x86::escapes_avx2(bytes), esc, "avx2 on {bytes:?}");
            }
        });
    }

    /// Whole passes agree across levels (quotes and verdict) on random
    /// lines of the interesting bytes, which cross block boundaries.
    #[test]
    fn passes_agree_on_random_lines() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for len in (0..300).chain([640, 1000]) {
            for _ in 0..50 {
                let line: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        // Mostly letters, so that some lines pass.
                        if x.is_multiple_of(4) {
                            INTERESTING[(x >> 8) as usize % INTERESTING.len()]
                        } else {
                            b'a'
                        }
                    })
                    .collect();
                let run = |level| {
                    with_simd_level(level, || with_quotes(&line, |q| Ok(q.0.to_vec())).ok())
                };
                let want = run(SimdLevel::Scalar);
                for level in [SimdLevel::Sse42, SimdLevel::Avx2] {
                    assert_eq!(run(level), want, "{} on {line:?}", level.name());
                }
            }
        }
    }

    #[test]
    fn quotes_next_crosses_words() {
        let bits = [0u64, 0, 1 << 5, 1 << 63];
        let q = Quotes(&bits);
        assert_eq!(q.next(0), Some(133));
        assert_eq!(q.next(133), Some(133));
        assert_eq!(q.next(134), Some(255));
        assert_eq!(q.next(256), None);
        assert_eq!(Quotes(&[]).next(0), None);
    }
}
