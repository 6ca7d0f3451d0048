//! Stage 1 of the frame parser (simdjson's idea): classify a line 64 bytes
//! at a time into bit masks (quotes, backslashes, structural characters,
//! whitespace, control characters, escapable characters), resolve escapes
//! and strings with bit arithmetic, and hand stage 2 ([`super::walk`]) the
//! positions of the line's tokens only: `{ } [ ] : ,`, every real quote, and
//! the first byte of each number or literal. String bodies are never walked
//! byte by byte; their raw control characters and bad escapes are found here.
//!
//! Three classifiers, picked once at run time ([`SimdLevel`]): AVX2 (two
//! 32-byte vectors a block), SSE4.2 (four 16-byte vectors) and a scalar
//! table walk, which every test also runs ([`with_simd_level`]).

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

/// Runs `f` with the parser on this thread using `level`: how tests run
/// every path in one process. Panics if this CPU lacks `level`, so that a
/// test never passes without running the path it names.
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

/// One 64-byte block's raw classes: bit k describes byte k.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Raw {
    pub(super) quote: u64,
    pub(super) backslash: u64,
    /// `{ } [ ] : ,`
    pub(super) op: u64,
    /// JSON whitespace: space, tab, LF, CR.
    pub(super) ws: u64,
    /// Below 0x20: never raw inside a string.
    pub(super) control: u64,
    /// What may follow a backslash: `" \ / b f n r t u`.
    pub(super) escapable: u64,
    /// `u`, whose escape needs four hex digits.
    pub(super) u: u64,
}

/// A stage-1 classifier of 64 bytes.
pub(super) trait Classify {
    fn classify(bytes: &[u8; 64]) -> Raw;
}

pub(super) struct Scalar;

const Q: u8 = 1;
const BS: u8 = 2;
const OP: u8 = 4;
const WS: u8 = 8;
const CTL: u8 = 16;
const ESC: u8 = 32;
const U: u8 = 64;

static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 0x20 {
        t[c] = CTL;
        c += 1;
    }
    t[b' ' as usize] = WS;
    t[b'\t' as usize] |= WS;
    t[b'\n' as usize] |= WS;
    t[b'\r' as usize] |= WS;
    t[b'"' as usize] = Q | ESC;
    t[b'\\' as usize] = BS | ESC;
    let ops = *b"{}[]:,";
    let mut k = 0;
    while k < ops.len() {
        t[ops[k] as usize] = OP;
        k += 1;
    }
    let esc = *b"/bfnrt";
    k = 0;
    while k < esc.len() {
        t[esc[k] as usize] = ESC;
        k += 1;
    }
    t[b'u' as usize] = ESC | U;
    t
};

impl Classify for Scalar {
    #[inline(always)]
    fn classify(bytes: &[u8; 64]) -> Raw {
        let mut r = Raw::default();
        for (k, &c) in bytes.iter().enumerate() {
            let class = CLASS[c as usize];
            let bit = |flag: u8| u64::from(class & flag != 0) << k;
            r.quote |= bit(Q);
            r.backslash |= bit(BS);
            r.op |= bit(OP);
            r.ws |= bit(WS);
            r.control |= bit(CTL);
            r.escapable |= bit(ESC);
            r.u |= bit(U);
        }
        r
    }
}

/// The vector classifiers: one body for 16- and 32-byte vectors, so AVX2
/// and SSE4.2 classify exactly alike.
#[cfg(target_arch = "x86_64")]
macro_rules! vector_classifier {
    ($name:ident, $vec:ty, $lanes:expr, $load:ident, $set1:ident, $cmpeq:ident,
     $or:ident, $max:ident, $movemask:ident, $mask:ty) => {
        pub(super) struct $name;

        impl Classify for $name {
            #[inline(always)]
            fn classify(bytes: &[u8; 64]) -> Raw {
                use std::arch::x86_64::*;
                let mut r = Raw::default();
                // SAFETY: the caller runs with this vector extension enabled
                // (see `scan_root`); the loads lie inside the 64-byte array.
                unsafe {
                    let eq = |v: $vec, c: u8| $cmpeq(v, $set1(c as i8));
                    let bits = |v: $vec| u64::from($movemask(v) as $mask);
                    for k in 0..64 / $lanes {
                        let v = $load(bytes.as_ptr().add($lanes * k) as *const $vec);
                        let shift = ($lanes * k) as u32;
                        let quote = eq(v, b'"');
                        let backslash = eq(v, b'\\');
                        // `{`|0x20 = `{` and `[`|0x20 = `{`; likewise `}` `]`.
                        let folded = $or(v, $set1(0x20));
                        let op = $or(
                            $or(eq(folded, b'{'), eq(folded, b'}')),
                            $or(eq(v, b':'), eq(v, b',')),
                        );
                        let ws = $or(
                            $or(eq(v, b' '), eq(v, b'\t')),
                            $or(eq(v, b'\n'), eq(v, b'\r')),
                        );
                        // unsigned v <= 0x1f  <=>  max(v, 0x1f) == 0x1f
                        let ctl_max = $set1(0x1f);
                        let control = $cmpeq($max(v, ctl_max), ctl_max);
                        let u = eq(v, b'u');
                        let escapable = $or(
                            $or($or(quote, backslash), $or(eq(v, b'/'), eq(v, b'b'))),
                            $or(
                                $or(eq(v, b'f'), eq(v, b'n')),
                                $or($or(eq(v, b'r'), eq(v, b't')), u),
                            ),
                        );
                        r.quote |= bits(quote) << shift;
                        r.backslash |= bits(backslash) << shift;
                        r.op |= bits(op) << shift;
                        r.ws |= bits(ws) << shift;
                        r.control |= bits(control) << shift;
                        r.escapable |= bits(escapable) << shift;
                        r.u |= bits(u) << shift;
                    }
                }
                r
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
vector_classifier!(
    Avx2,
    __m256i,
    32,
    _mm256_loadu_si256,
    _mm256_set1_epi8,
    _mm256_cmpeq_epi8,
    _mm256_or_si256,
    _mm256_max_epu8,
    _mm256_movemask_epi8,
    u32
);

#[cfg(target_arch = "x86_64")]
vector_classifier!(
    Sse42,
    __m128i,
    16,
    _mm_loadu_si128,
    _mm_set1_epi8,
    _mm_cmpeq_epi8,
    _mm_or_si128,
    _mm_max_epu8,
    _mm_movemask_epi8,
    u16
);

/// The token stream of one line: positions of `{ } [ ] : ,`, of every
/// quote that opens or closes a string, and of the first byte of every run
/// of other bytes outside strings (a number or literal, or garbage that
/// stage 2 rejects). [`Tokens::END`] after the last one.
///
/// Errors inside strings (raw control characters, bad escapes, a string
/// still open at the end) are gathered, not returned: stage 2 walks every
/// token anyway and asks [`Tokens::finish`] at the end.
pub(super) struct Tokens<'a, C> {
    b: &'a [u8],
    /// Start of the block `bits` belongs to.
    base: usize,
    bits: u64,
    /// Bit 0 of the next block is escaped by a backslash ending this one.
    escape_carry: u64,
    /// All ones while the next block starts inside a string.
    inside_carry: u64,
    /// 1 when this block ended in a number or literal.
    scalar_carry: u64,
    error: bool,
    classifier: std::marker::PhantomData<C>,
}

impl<'a, C: Classify> Tokens<'a, C> {
    pub(super) const END: usize = usize::MAX;

    #[inline(always)]
    pub(super) fn new(b: &'a [u8]) -> Self {
        let mut t = Tokens {
            b,
            base: 0,
            bits: 0,
            escape_carry: 0,
            inside_carry: 0,
            scalar_carry: 0,
            error: false,
            classifier: std::marker::PhantomData,
        };
        t.bits = t.block();
        t
    }

    /// The next token's position, or [`Self::END`].
    #[inline(always)]
    pub(super) fn next(&mut self) -> usize {
        while self.bits == 0 {
            let next = self.base + 64;
            if next >= self.b.len() {
                return Self::END;
            }
            self.base = next;
            self.bits = self.block();
        }
        let at = self.base + self.bits.trailing_zeros() as usize;
        self.bits &= self.bits - 1;
        at
    }

    /// Whether every string was well formed and closed (call after the
    /// last token).
    #[inline(always)]
    pub(super) fn finish(&self) -> bool {
        !self.error && self.inside_carry == 0
    }

    /// Classifies the block at `self.base` and returns its token bits.
    #[inline(always)]
    fn block(&mut self) -> u64 {
        let raw = match self.b.get(self.base..self.base + 64) {
            Some(bytes) => C::classify(bytes.try_into().expect("64 bytes")),
            None => {
                // The tail, padded with whitespace: no tokens, and a string
                // still open stays open (see `finish`).
                let mut padded = [b' '; 64];
                let rest = &self.b[self.base..];
                padded[..rest.len()].copy_from_slice(rest);
                C::classify(&padded)
            }
        };
        let backslash = raw.backslash & !self.escape_carry;
        let escaped = super::scan::escaped_mask(backslash) | self.escape_carry;
        self.escape_carry = (backslash & !escaped) >> 63;
        let quote = raw.quote & !escaped;
        // Set from each opening quote up to (not including) its closing one.
        let inside = prefix_xor(quote) ^ self.inside_carry;
        self.inside_carry = ((inside as i64) >> 63) as u64;
        let body = inside & !quote;
        let escapes = escaped & body;
        if (raw.control & body) | (escapes & !raw.escapable) != 0 {
            self.error = true;
        }
        let mut u = escapes & raw.u;
        while u != 0 {
            let at = self.base + u.trailing_zeros() as usize;
            u &= u - 1;
            let hex = self.b.get(at + 1..at + 5);
            if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                self.error = true;
            }
        }
        let outside = !(inside | quote);
        let scalar = outside & !(raw.ws | raw.op);
        let scalar_start = scalar & !((scalar << 1) | self.scalar_carry);
        self.scalar_carry = scalar >> 63;
        (raw.op & outside) | quote | scalar_start
    }
}

/// Bit k of the result: the parity of bits 0..=k of `x` (a carry-less
/// multiplication by all ones, done with shifts).
#[inline(always)]
fn prefix_xor(mut x: u64) -> u64 {
    x ^= x << 1;
    x ^= x << 2;
    x ^= x << 4;
    x ^= x << 8;
    x ^= x << 16;
    x ^= x << 32;
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERESTING: &[u8] = b"\"\\{}[]:, \t\n\r\x00\x1f\x20/bfnrtuxU\x7f\x80\xff";

    #[test]
    fn vector_classifiers_match_the_scalar_table() {
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
            let want = Scalar::classify(&bytes);
            for level in [SimdLevel::Sse42, SimdLevel::Avx2] {
                if !level.available() {
                    continue;
                }
                #[cfg(target_arch = "x86_64")]
                let got = match level {
                    SimdLevel::Avx2 => unsafe { avx2(&bytes) },
                    _ => unsafe { sse42(&bytes) },
                };
                #[cfg(target_arch = "x86_64")]
                assert_eq!(got, want, "{} on {bytes:?}", level.name());
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn avx2(b: &[u8; 64]) -> Raw {
        Avx2::classify(b)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "sse4.2")]
    unsafe fn sse42(b: &[u8; 64]) -> Raw {
        Sse42::classify(b)
    }

    #[test]
    fn prefix_xor_is_running_parity() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut parity = 0u64;
            let mut want = 0u64;
            for k in 0..64 {
                parity ^= x >> k & 1;
                want |= parity << k;
            }
            assert_eq!(prefix_xor(x), want);
        }
    }
}
