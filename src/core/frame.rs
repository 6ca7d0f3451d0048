//! Frames: one line of `stream.jsonl`, and the normative parser that turns it
//! into a [`Frame`] (its root `ts` and `uid`) or names why it is [`Invalid`].
//!
//! This is the hot path of the whole product, so instead of building a DOM
//! the parser makes one validating pass over the bytes: the whole line must be
//! valid JSON, but only the two root keys we need are decoded. String bodies,
//! which are most of a 2 KB frame, are classified 64 bytes at a time with
//! SSE2 bit masks (quotes, backslashes, control characters).

use std::borrow::Cow;
use std::fmt;

/// Default lower bound of `ts`: 2000-01-01T00:00:00Z.
pub const DEFAULT_MIN_TS: u64 = 946_684_800;
/// Default upper bound of a frame in bytes (Kafka's default `message.max.bytes`
/// is about 1 MB, so a larger frame could not travel through the pipeline).
pub const DEFAULT_MAX_FRAME_BYTES: usize = 1_000_000;
/// Nesting deeper than this is rejected as not JSON (serde_json's limit too),
/// so that a hostile line cannot make the scanner's stack unbounded.
const MAX_DEPTH: usize = 128;

/// A valid frame: the root `ts` and `uid` of one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Event time, unix seconds.
    pub ts: u64,
    /// User id with JSON escapes decoded; borrowed from the line when it had none.
    pub uid: Cow<'a, str>,
}

/// Why a line is not a frame. A small fixed set, so that counters and
/// dead-letter headers stay comparable across runs and versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Invalid {
    TooLarge,
    NotUtf8,
    NotJson,
    NotObject,
    MissingTs,
    DuplicateTs,
    BadTs,
    TsOutOfRange,
    MissingUid,
    DuplicateUid,
    BadUid,
}

impl Invalid {
    pub const ALL: [Invalid; 11] = [
        Invalid::TooLarge,
        Invalid::NotUtf8,
        Invalid::NotJson,
        Invalid::NotObject,
        Invalid::MissingTs,
        Invalid::DuplicateTs,
        Invalid::BadTs,
        Invalid::TsOutOfRange,
        Invalid::MissingUid,
        Invalid::DuplicateUid,
        Invalid::BadUid,
    ];

    /// Stable machine name, used in counters and dead-letter headers.
    pub fn code(self) -> &'static str {
        match self {
            Invalid::TooLarge => "too_large",
            Invalid::NotUtf8 => "not_utf8",
            Invalid::NotJson => "not_json",
            Invalid::NotObject => "not_object",
            Invalid::MissingTs => "missing_ts",
            Invalid::DuplicateTs => "duplicate_ts",
            Invalid::BadTs => "bad_ts",
            Invalid::TsOutOfRange => "ts_out_of_range",
            Invalid::MissingUid => "missing_uid",
            Invalid::DuplicateUid => "duplicate_uid",
            Invalid::BadUid => "bad_uid",
        }
    }

    /// Human explanation for logs.
    pub fn describe(self) -> &'static str {
        match self {
            Invalid::TooLarge => "line is larger than the maximum frame size",
            Invalid::NotUtf8 => "line is not valid UTF-8",
            Invalid::NotJson => "line is not valid JSON",
            Invalid::NotObject => "JSON value is not an object",
            Invalid::MissingTs => "root object has no \"ts\"",
            Invalid::DuplicateTs => "root object has more than one \"ts\"",
            Invalid::BadTs => "\"ts\" is not a non-negative integer or a string of digits",
            Invalid::TsOutOfRange => "\"ts\" is outside the accepted range",
            Invalid::MissingUid => "root object has no \"uid\"",
            Invalid::DuplicateUid => "root object has more than one \"uid\"",
            Invalid::BadUid => "\"uid\" is not a non-empty string",
        }
    }

    /// Dense index into per-reason counter arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn from_code(code: &str) -> Option<Invalid> {
        Invalid::ALL.into_iter().find(|r| r.code() == code)
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.code(), self.describe())
    }
}

/// What one input line is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line<'a> {
    Frame(Frame<'a>),
    /// Only whitespace: skipped, not an error.
    Blank,
    Invalid(Invalid),
}

/// The normative frame parser with its configurable bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameParser {
    pub min_ts: u64,
    pub max_ts: u64,
    pub max_frame_bytes: usize,
}

impl FrameParser {
    /// Bounds are data: the caller decides what "now" is (see [`default_max_ts`]).
    /// `max_ts` is capped at [`crate::core::window::MAX_TS`].
    pub fn new(min_ts: u64, max_ts: u64) -> Self {
        FrameParser {
            min_ts,
            max_ts: max_ts.min(crate::core::window::MAX_TS),
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
        }
    }

    /// Parses one line (without its `\n`; a trailing `\r` is JSON whitespace).
    pub fn parse<'a>(&self, line: &'a [u8]) -> Line<'a> {
        match self.parse_inner(line) {
            Ok(Some(frame)) => Line::Frame(frame),
            Ok(None) => Line::Blank,
            Err(reason) => Line::Invalid(reason),
        }
    }

    fn parse_inner<'a>(&self, b: &'a [u8]) -> Result<Option<Frame<'a>>, Invalid> {
        if b.len() > self.max_frame_bytes {
            return Err(Invalid::TooLarge);
        }
        let start = skip_ws(b, 0);
        if start == b.len() {
            return Ok(None);
        }
        if simdutf8::basic::from_utf8(b).is_err() {
            return Err(Invalid::NotUtf8);
        }
        if b[start] != b'{' {
            let end = skip_value(b, start).map_err(|_| Invalid::NotJson)?;
            return if skip_ws(b, end) == b.len() {
                Err(Invalid::NotObject)
            } else {
                Err(Invalid::NotJson)
            };
        }
        let root = scan_root(b, start + 1).map_err(|_| Invalid::NotJson)?;
        let ts = match root.ts {
            RootKey::Missing => return Err(Invalid::MissingTs),
            RootKey::Duplicate => return Err(Invalid::DuplicateTs),
            RootKey::Bad => return Err(Invalid::BadTs),
            RootKey::Found(TsValue::Overflow) => return Err(Invalid::TsOutOfRange),
            RootKey::Found(TsValue::Secs(ts)) => ts,
        };
        if ts < self.min_ts || ts > self.max_ts {
            return Err(Invalid::TsOutOfRange);
        }
        let uid = match root.uid {
            RootKey::Missing => return Err(Invalid::MissingUid),
            RootKey::Duplicate => return Err(Invalid::DuplicateUid),
            RootKey::Bad => return Err(Invalid::BadUid),
            RootKey::Found((s, e, escaped)) => {
                let raw = &b[s..e];
                if raw.is_empty() {
                    return Err(Invalid::BadUid);
                }
                if escaped {
                    Cow::Owned(unescape(raw).ok_or(Invalid::BadUid)?)
                } else {
                    // The whole line passed the UTF-8 check and the span lies between quotes.
                    Cow::Borrowed(std::str::from_utf8(raw).map_err(|_| Invalid::BadUid)?)
                }
            }
        };
        if uid.is_empty() {
            return Err(Invalid::BadUid);
        }
        Ok(Some(Frame { ts, uid }))
    }
}

/// "now + 1 day", the documented default upper bound of `ts`. Lives outside the
/// parser so that the core never reads the clock.
pub fn default_max_ts(now_unix: u64) -> u64 {
    now_unix + 86_400
}

impl Default for FrameParser {
    fn default() -> Self {
        FrameParser::new(DEFAULT_MIN_TS, crate::core::window::MAX_TS)
    }
}

enum RootKey<T> {
    Missing,
    Found(T),
    Bad,
    Duplicate,
}

impl<T> RootKey<T> {
    fn see(&mut self, value: Option<T>) {
        *self = match self {
            RootKey::Missing => match value {
                Some(v) => RootKey::Found(v),
                None => RootKey::Bad,
            },
            _ => RootKey::Duplicate,
        };
    }
}

enum TsValue {
    Secs(u64),
    Overflow,
}

struct Root {
    ts: RootKey<TsValue>,
    /// Span of the uid string body, and whether it holds escapes.
    uid: RootKey<(usize, usize, bool)>,
}

struct Syntax;
type Scan<T> = Result<T, Syntax>;

#[inline]
fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r')
}

#[inline]
fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && is_ws(b[i]) {
        i += 1;
    }
    i
}

#[inline]
fn expect(b: &[u8], i: usize, c: u8) -> Scan<usize> {
    if b.get(i) == Some(&c) {
        Ok(i + 1)
    } else {
        Err(Syntax)
    }
}

/// Scans the members of the root object (`i` is just past `{`) up to the end
/// of the line, recording the root `ts` and `uid`.
fn scan_root(b: &[u8], mut i: usize) -> Scan<Root> {
    let mut root = Root {
        ts: RootKey::Missing,
        uid: RootKey::Missing,
    };
    i = skip_ws(b, i);
    if b.get(i) == Some(&b'}') {
        i += 1;
    } else {
        loop {
            i = expect(b, i, b'"')?;
            let key_start = i;
            let (key_end, key_escaped) = scan_string(b, i)?;
            i = skip_ws(b, key_end + 1);
            i = expect(b, i, b':')?;
            i = skip_ws(b, i);
            let key = &b[key_start..key_end];
            let key: Cow<[u8]> = if key_escaped {
                Cow::Owned(unescape(key).map(String::into_bytes).unwrap_or_default())
            } else {
                Cow::Borrowed(key)
            };
            match &*key {
                b"ts" => {
                    let (value, end) = scan_ts(b, i)?;
                    root.ts.see(value);
                    i = end;
                }
                b"uid" => {
                    if b.get(i) == Some(&b'"') {
                        let (end, escaped) = scan_string(b, i + 1)?;
                        root.uid.see(Some((i + 1, end, escaped)));
                        i = end + 1;
                    } else {
                        i = skip_value(b, i)?;
                        root.uid.see(None);
                    }
                }
                _ => i = skip_value(b, i)?,
            }
            i = skip_ws(b, i);
            match b.get(i) {
                Some(b',') => i = skip_ws(b, i + 1),
                Some(b'}') => {
                    i += 1;
                    break;
                }
                _ => return Err(Syntax),
            }
        }
    }
    if skip_ws(b, i) != b.len() {
        return Err(Syntax);
    }
    Ok(root)
}

/// Scans the value of a root `ts`: `Some` for a non-negative integer or a
/// string of ASCII digits, `None` for any other valid JSON value.
fn scan_ts(b: &[u8], i: usize) -> Scan<(Option<TsValue>, usize)> {
    match b.get(i) {
        Some(b'"') => {
            let (end, escaped) = scan_string(b, i + 1)?;
            let raw = &b[i + 1..end];
            let digits: Cow<[u8]> = if escaped {
                match unescape(raw) {
                    Some(s) => Cow::Owned(s.into_bytes()),
                    None => return Ok((None, end + 1)),
                }
            } else {
                Cow::Borrowed(raw)
            };
            Ok((digits_value(&digits), end + 1))
        }
        Some(b'0'..=b'9') => {
            let end = skip_number(b, i)?;
            // Only a plain integer qualifies: no fraction, no exponent.
            Ok((digits_value(&b[i..end]), end))
        }
        _ => Ok((None, skip_value(b, i)?)),
    }
}

fn digits_value(digits: &[u8]) -> Option<TsValue> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut v: u64 = 0;
    for &d in digits {
        match v
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(d - b'0')))
        {
            Some(n) => v = n,
            None => return Some(TsValue::Overflow),
        }
    }
    Some(TsValue::Secs(v))
}

/// Skips one JSON value starting at `i` (no leading whitespace), returning the
/// index just past it. Iterative, with a bit stack of container kinds.
fn skip_value(b: &[u8], mut i: usize) -> Scan<usize> {
    // Bit d set: the container at depth d is an object.
    let mut objects: u128 = 0;
    let mut depth: usize = 0;
    'value: loop {
        match b.get(i) {
            Some(b'"') => i = scan_string(b, i + 1)?.0 + 1,
            Some(b'{') | Some(b'[') => {
                let is_object = b[i] == b'{';
                i = skip_ws(b, i + 1);
                let close = if is_object { b'}' } else { b']' };
                if b.get(i) == Some(&close) {
                    i += 1;
                } else {
                    if depth == MAX_DEPTH {
                        return Err(Syntax);
                    }
                    if is_object {
                        objects |= 1 << depth;
                        i = skip_key(b, i)?;
                    } else {
                        objects &= !(1 << depth);
                    }
                    depth += 1;
                    continue 'value;
                }
            }
            Some(b'-' | b'0'..=b'9') => i = skip_number(b, i)?,
            Some(b't') => i = skip_literal(b, i, b"true")?,
            Some(b'f') => i = skip_literal(b, i, b"false")?,
            Some(b'n') => i = skip_literal(b, i, b"null")?,
            _ => return Err(Syntax),
        }
        // A value is complete: close containers until one wants another value.
        loop {
            if depth == 0 {
                return Ok(i);
            }
            let in_object = objects & (1 << (depth - 1)) != 0;
            i = skip_ws(b, i);
            match b.get(i) {
                Some(b',') => {
                    i = skip_ws(b, i + 1);
                    if in_object {
                        i = skip_key(b, i)?;
                    }
                    continue 'value;
                }
                Some(b'}') if in_object => {
                    depth -= 1;
                    i += 1;
                }
                Some(b']') if !in_object => {
                    depth -= 1;
                    i += 1;
                }
                _ => return Err(Syntax),
            }
        }
    }
}

/// Skips `"key" :` and the whitespace after it.
#[inline]
fn skip_key(b: &[u8], i: usize) -> Scan<usize> {
    let i = expect(b, i, b'"')?;
    let (end, _) = scan_string(b, i)?;
    let i = skip_ws(b, end + 1);
    let i = expect(b, i, b':')?;
    Ok(skip_ws(b, i))
}

fn skip_literal(b: &[u8], i: usize, lit: &[u8]) -> Scan<usize> {
    if b.len() >= i + lit.len() && &b[i..i + lit.len()] == lit {
        Ok(i + lit.len())
    } else {
        Err(Syntax)
    }
}

/// JSON number grammar: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
fn skip_number(b: &[u8], mut i: usize) -> Scan<usize> {
    let digit = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            while digit(i) {
                i += 1;
            }
        }
        _ => return Err(Syntax),
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if !digit(i) {
            return Err(Syntax);
        }
        while digit(i) {
            i += 1;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if !digit(i) {
            return Err(Syntax);
        }
        while digit(i) {
            i += 1;
        }
    }
    Ok(i)
}

/// Scans a string body starting just after its opening quote. Returns the
/// index of the closing quote and whether the body holds escapes.
///
/// Real frames escape every few bytes (`\t`-separated words). Resolving each
/// escape in turn makes a chain of dependent loads and hard-to-predict
/// branches, so instead each 64-byte block is classified with bit masks: which
/// bytes a backslash escapes ([`escaped_mask`]), hence which quote ends the
/// string, and whether a control character comes before it. Only the escaped
/// bytes are then looked at one by one, independently of each other.
#[inline]
fn scan_string(b: &[u8], mut i: usize) -> Scan<(usize, bool)> {
    let mut escaped_any = false;
    // Bit 0 of the next block is escaped by a backslash that ended this one.
    let mut carry = 0u64;
    loop {
        let block = Block::at(b, i);
        let backslash = block.backslash & !carry;
        let escaped = escaped_mask(backslash) | carry;
        let quotes = block.quote & !escaped;
        // Bytes before the closing quote (all 64 when it is further on).
        let body = (quotes & quotes.wrapping_neg()).wrapping_sub(1);
        if block.control & body != 0 {
            // A raw control character, or the line ended inside the string
            // (the tail block is padded with control characters).
            return Err(Syntax);
        }
        let mut check = escaped & body;
        escaped_any |= check != 0;
        while check != 0 {
            let j = i + check.trailing_zeros() as usize;
            check &= check - 1;
            match b.get(j).map(|&c| ESCAPE_LEN[c as usize]) {
                Some(2) => {}
                Some(6) => match b.get(j + 1..j + 5) {
                    Some(hex) if hex.iter().all(u8::is_ascii_hexdigit) => {}
                    _ => return Err(Syntax),
                },
                _ => return Err(Syntax),
            }
        }
        if quotes != 0 {
            return Ok((i + quotes.trailing_zeros() as usize, escaped_any));
        }
        carry = (backslash & !escaped) >> 63;
        i += 64;
    }
}

/// Bytes escaped by the backslashes in `backslash` (a block's backslash mask
/// whose bit 0 is cleared when that byte is itself escaped from the block
/// before). In a run of backslashes starting at `s`, the bytes at `s+1`,
/// `s+3`, ... are escaped, up to and including the byte after the run.
#[inline(always)]
fn escaped_mask(backslash: u64) -> u64 {
    const EVEN: u64 = 0x5555_5555_5555_5555;
    let starts = backslash & !(backslash << 1);
    // Adding a run's start bit clears the whole run (the carry lands on the
    // byte after it, which is not a backslash): what stays set are the runs
    // that start at odd positions.
    let odd_runs = backslash & backslash.wrapping_add(starts & EVEN);
    let even_runs = backslash & !odd_runs;
    // The byte after each backslash of a run, kept where its distance from
    // the run's start is odd.
    ((even_runs << 1) & !EVEN) | ((odd_runs << 1) & EVEN)
}

/// Masks of one 64-byte block of a string body: bit k describes `b[i + k]`.
struct Block {
    quote: u64,
    backslash: u64,
    /// Control characters (< 0x20), which JSON forbids raw in a string.
    control: u64,
}

impl Block {
    #[inline(always)]
    fn at(b: &[u8], i: usize) -> Block {
        if let Some(bytes) = b.get(i..i + 64) {
            Block::of(bytes.try_into().expect("64 bytes"))
        } else {
            // The tail: padded with NULs, which are control characters, so a
            // string still open at the end of the line is an error.
            let mut padded = [0u8; 64];
            let rest = b.get(i..).unwrap_or_default();
            padded[..rest.len()].copy_from_slice(rest);
            Block::of(&padded)
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn of(bytes: &[u8; 64]) -> Block {
        // SAFETY: SSE2 is part of the x86_64 baseline; the four unaligned
        // 16-byte loads lie inside the 64-byte array.
        unsafe {
            use std::arch::x86_64::*;
            let quote = _mm_set1_epi8(b'"' as i8);
            let backslash = _mm_set1_epi8(b'\\' as i8);
            let ctl_max = _mm_set1_epi8(0x1f);
            let mut masks = Block {
                quote: 0,
                backslash: 0,
                control: 0,
            };
            for k in 0..4 {
                let v = _mm_loadu_si128(bytes.as_ptr().add(16 * k) as *const __m128i);
                let shift = 16 * k as u32;
                let q = _mm_movemask_epi8(_mm_cmpeq_epi8(v, quote)) as u16;
                let s = _mm_movemask_epi8(_mm_cmpeq_epi8(v, backslash)) as u16;
                // unsigned v <= 0x1f  <=>  max(v, 0x1f) == 0x1f
                let c = _mm_movemask_epi8(_mm_cmpeq_epi8(_mm_max_epu8(v, ctl_max), ctl_max)) as u16;
                masks.quote |= u64::from(q) << shift;
                masks.backslash |= u64::from(s) << shift;
                masks.control |= u64::from(c) << shift;
            }
            masks
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    #[inline(always)]
    fn of(bytes: &[u8; 64]) -> Block {
        let mut masks = Block {
            quote: 0,
            backslash: 0,
            control: 0,
        };
        for (k, &c) in bytes.iter().enumerate() {
            masks.quote |= u64::from(c == b'"') << k;
            masks.backslash |= u64::from(c == b'\\') << k;
            masks.control |= u64::from(c < 0x20) << k;
        }
        masks
    }
}

/// Escape length by the escaped byte (the one after the backslash): 2 for `\"` `\\` `\/`
/// `\b` `\f` `\n` `\r` `\t`, 6 for `\u`, 0 for anything else.
static ESCAPE_LEN: [u8; 256] = {
    let mut t = [0u8; 256];
    let simple = *b"\"\\/bfnrt";
    let mut k = 0;
    while k < simple.len() {
        t[simple[k] as usize] = 2;
        k += 1;
    }
    t[b'u' as usize] = 6;
    t
};

/// Decodes the body of a JSON string whose syntax was already checked.
/// `None` for an escape that is not a valid Unicode scalar (lone surrogate).
fn unescape(raw: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let run_end = raw[i..]
            .iter()
            .position(|&c| c == b'\\')
            .map_or(raw.len(), |p| i + p);
        out.push_str(std::str::from_utf8(&raw[i..run_end]).ok()?);
        i = run_end;
        if i >= raw.len() {
            break;
        }
        let c = match raw.get(i + 1)? {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let hi = hex4(raw.get(i + 2..i + 6)?)?;
                if (0xD800..0xDC00).contains(&hi) {
                    if raw.get(i + 6..i + 8)? != b"\\u" {
                        return None;
                    }
                    let lo = hex4(raw.get(i + 8..i + 12)?)?;
                    if !(0xDC00..0xE000).contains(&lo) {
                        return None;
                    }
                    i += 6;
                    char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))?
                } else {
                    char::from_u32(hi)?
                }
            }
            _ => return None,
        };
        out.push(c);
        i += if raw[i + 1] == b'u' { 6 } else { 2 };
    }
    Some(out)
}

fn hex4(h: &[u8]) -> Option<u32> {
    std::str::from_utf8(h)
        .ok()
        .and_then(|s| u32::from_str_radix(s, 16).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> FrameParser {
        FrameParser::new(DEFAULT_MIN_TS, 2_000_000_000)
    }

    fn frame(line: &str) -> (u64, String) {
        match p().parse(line.as_bytes()) {
            Line::Frame(f) => (f.ts, f.uid.into_owned()),
            other => panic!("{line:?} gave {other:?}"),
        }
    }

    fn invalid(line: &[u8]) -> Invalid {
        match p().parse(line) {
            Line::Invalid(r) => r,
            other => panic!("{:?} gave {other:?}", String::from_utf8_lossy(line)),
        }
    }

    #[test]
    fn plain_frame() {
        assert_eq!(
            frame(r#"{"ts":1468244384,"uid":"1b2c3d4e5f6a7b8c9d0"}"#),
            (1468244384, "1b2c3d4e5f6a7b8c9d0".into())
        );
    }

    #[test]
    fn ts_as_digit_string_and_uid_escapes_decoded() {
        assert_eq!(
            frame(r#"{"uid":"a\"b\u0041","ts":"1468244384"}"#),
            (1468244384, "a\"bA".into())
        );
        assert_eq!(
            frame(r#"{"uid":"\ud83d\ude00","ts":1468244384}"#),
            (1468244384, "😀".into())
        );
    }

    #[test]
    fn nested_ts_and_uid_never_count() {
        let line = r#"{"a":{"ts":1,"uid":2},"b":[{"ts":"x"},{"uid":null}],"ts":1468244384,"c":"\"ts\":5","uid":"u"}"#;
        assert_eq!(frame(line), (1468244384, "u".into()));
        assert_eq!(
            invalid(br#"{"a":{"ts":1468244384},"uid":"u"}"#),
            Invalid::MissingTs
        );
        assert_eq!(
            invalid(br#"{"a":[{"uid":"x"}],"ts":1468244384}"#),
            Invalid::MissingUid
        );
    }

    #[test]
    fn whitespace_crlf_and_blank_lines() {
        assert_eq!(
            frame(" {\t\"ts\" : 1468244384 ,\r\n \"uid\":\"u\" } \r"),
            (1468244384, "u".into())
        );
        assert_eq!(p().parse(b""), Line::Blank);
        assert_eq!(p().parse(b"  \t \r"), Line::Blank);
    }

    #[test]
    fn escaped_key_names_are_the_key() {
        assert_eq!(
            frame(r#"{"t\u0073":1468244384,"uid":"u"}"#),
            (1468244384, "u".into())
        );
        assert_eq!(
            invalid(br#"{"ts":1468244384,"\u0074s":1468244384,"uid":"u"}"#),
            Invalid::DuplicateTs
        );
    }

    #[test]
    fn every_reason() {
        let mut parser = p();
        parser.max_frame_bytes = 64;
        let big = format!(
            r#"{{"ts":1468244384,"uid":"u","pad":"{}"}}"#,
            "x".repeat(64)
        );
        assert_eq!(
            parser.parse(big.as_bytes()),
            Line::Invalid(Invalid::TooLarge)
        );
        assert_eq!(
            invalid(b"{\"ts\":1468244384,\"uid\":\"\xff\"}"),
            Invalid::NotUtf8
        );
        assert_eq!(invalid(br#"{"ts":1468244384,"uid":"u""#), Invalid::NotJson);
        // truncated after its ts and uid: still invalid
        assert_eq!(
            invalid(br#"{"ts":1468244384,"uid":"u","x":[1,2"#),
            Invalid::NotJson
        );
        assert_eq!(
            invalid(br#"{"ts":1468244384,"uid":"u"} x"#),
            Invalid::NotJson
        );
        assert_eq!(
            invalid(br#"{"ts":1468244384,"uid":"u",}"#),
            Invalid::NotJson
        );
        assert_eq!(
            invalid(b"{\"ts\":1468244384,\"uid\":\"a\tb\"}"),
            Invalid::NotJson
        );
        assert_eq!(
            invalid(br#"{"ts":01468244384,"uid":"u"}"#),
            Invalid::NotJson
        );
        assert_eq!(
            invalid(br#"{"ts":1468244384,"uid":"\x"}"#),
            Invalid::NotJson
        );
        assert_eq!(
            invalid(br#"[{"ts":1468244384,"uid":"u"}]"#),
            Invalid::NotObject
        );
        assert_eq!(invalid(b"42"), Invalid::NotObject);
        assert_eq!(invalid(b"nul"), Invalid::NotJson);
        assert_eq!(invalid(br#"{"uid":"u"}"#), Invalid::MissingTs);
        assert_eq!(
            invalid(br#"{"ts":1468244384,"uid":"u","ts":1468244384}"#),
            Invalid::DuplicateTs
        );
        for bad in [
            r#"-1"#,
            r#"1468244384.0"#,
            r#"1.5e9"#,
            r#""""#,
            r#""14a""#,
            r#""-5""#,
            r#"null"#,
            r#"[1]"#,
            r#"true"#,
        ] {
            let line = format!(r#"{{"ts":{bad},"uid":"u"}}"#);
            assert_eq!(invalid(line.as_bytes()), Invalid::BadTs, "{line}");
        }
        assert_eq!(
            invalid(br#"{"ts":946684799,"uid":"u"}"#),
            Invalid::TsOutOfRange
        );
        assert_eq!(
            invalid(br#"{"ts":2000000001,"uid":"u"}"#),
            Invalid::TsOutOfRange
        );
        assert_eq!(
            invalid(br#"{"ts":99999999999999999999999,"uid":"u"}"#),
            Invalid::TsOutOfRange
        );
        assert_eq!(invalid(br#"{"ts":1468244384}"#), Invalid::MissingUid);
        assert_eq!(
            invalid(br#"{"ts":1468244384,"uid":"a","uid":"b"}"#),
            Invalid::DuplicateUid
        );
        for bad in [r#""""#, r#"12"#, r#"null"#, r#"{"a":1}"#, r#""\udc00""#] {
            let line = format!(r#"{{"ts":1468244384,"uid":{bad}}}"#);
            assert_eq!(invalid(line.as_bytes()), Invalid::BadUid, "{line}");
        }
    }

    #[test]
    fn range_bounds_are_inclusive() {
        let parser = FrameParser::new(100, 200);
        assert!(matches!(
            parser.parse(br#"{"ts":100,"uid":"u"}"#),
            Line::Frame(_)
        ));
        assert!(matches!(
            parser.parse(br#"{"ts":200,"uid":"u"}"#),
            Line::Frame(_)
        ));
        assert_eq!(
            parser.parse(br#"{"ts":201,"uid":"u"}"#),
            Line::Invalid(Invalid::TsOutOfRange)
        );
    }

    #[test]
    fn deep_nesting_is_rejected_not_overflowed() {
        let deep = format!(
            r#"{{"ts":1468244384,"uid":"u","x":{}{}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert_eq!(invalid(deep.as_bytes()), Invalid::NotJson);
        let ok = format!(
            r#"{{"ts":1468244384,"uid":"u","x":{}{}}}"#,
            "[".repeat(100),
            "]".repeat(100)
        );
        assert_eq!(frame(&ok).0, 1468244384);
    }

    /// `escaped_mask` against the left-to-right definition: a backslash
    /// that is not itself escaped escapes the next byte.
    #[test]
    fn escaped_mask_matches_a_scalar_walk() {
        fn walk(backslash: u64, carry: bool) -> u64 {
            let mut escaped = u64::from(carry);
            for k in 0..63 {
                if backslash >> k & 1 == 1 && escaped >> k & 1 == 0 {
                    escaped |= 1 << (k + 1);
                }
            }
            escaped
        }
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for n in 0..200_000 {
            // Dense runs of backslashes as well as sparse ones.
            let backslash = match n % 3 {
                0 => next(),
                1 => next() | next(),
                _ => next() & next(),
            };
            for carry in [false, true] {
                let own = backslash & !u64::from(carry);
                let got = escaped_mask(own) | u64::from(carry);
                assert_eq!(
                    got,
                    walk(backslash, carry),
                    "{backslash:064b} carry {carry}"
                );
            }
        }
    }

    #[test]
    fn codes_round_trip() {
        for r in Invalid::ALL {
            assert_eq!(Invalid::from_code(r.code()), Some(r));
            assert_eq!(Invalid::ALL[r.index()], r);
        }
    }
}
