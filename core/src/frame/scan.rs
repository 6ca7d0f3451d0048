//! The one validating pass over a line's bytes: JSON grammar checked
//! everywhere, only the root `ts` and `uid` decoded. String bodies are
//! classified 64 bytes at a time with SSE2 bit masks (quotes, backslashes,
//! control characters), escapes resolved with bit tricks.

use std::borrow::Cow;

/// Deepest nesting accepted (serde_json's limit too), so a hostile line
/// cannot exhaust the stack.
const MAX_DEPTH: usize = 128;

pub(super) enum RootKey<T> {
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

pub(super) enum TsValue {
    Secs(u64),
    Overflow,
}

pub(super) struct Root {
    pub(super) ts: RootKey<TsValue>,
    /// Span of the uid string body, and whether it holds escapes.
    pub(super) uid: RootKey<(usize, usize, bool)>,
}

pub(super) struct Syntax;
pub(super) type Scan<T> = Result<T, Syntax>;

#[inline]
pub(super) fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r')
}

#[inline]
pub(super) fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && is_ws(b[i]) {
        i += 1;
    }
    i
}

#[inline]
pub(super) fn expect(b: &[u8], i: usize, c: u8) -> Scan<usize> {
    if b.get(i) == Some(&c) {
        Ok(i + 1)
    } else {
        Err(Syntax)
    }
}

/// Scans the members of the root object (`i` is just past `{`) up to the end
/// of the line, recording the root `ts` and `uid`.
pub(super) fn scan_root(b: &[u8], mut i: usize) -> Scan<Root> {
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
pub(super) fn scan_ts(b: &[u8], i: usize) -> Scan<(Option<TsValue>, usize)> {
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

pub(super) fn digits_value(digits: &[u8]) -> Option<TsValue> {
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
pub(super) fn skip_value(b: &[u8], mut i: usize) -> Scan<usize> {
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
pub(super) fn skip_key(b: &[u8], i: usize) -> Scan<usize> {
    let i = expect(b, i, b'"')?;
    let (end, _) = scan_string(b, i)?;
    let i = skip_ws(b, end + 1);
    let i = expect(b, i, b':')?;
    Ok(skip_ws(b, i))
}

pub(super) fn skip_literal(b: &[u8], i: usize, lit: &[u8]) -> Scan<usize> {
    if b.len() >= i + lit.len() && &b[i..i + lit.len()] == lit {
        Ok(i + lit.len())
    } else {
        Err(Syntax)
    }
}

/// JSON number grammar: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
pub(super) fn skip_number(b: &[u8], mut i: usize) -> Scan<usize> {
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
pub(super) fn scan_string(b: &[u8], mut i: usize) -> Scan<(usize, bool)> {
    if let Some(end) = short_plain_string(b, i) {
        return Ok((end, false));
    }
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

/// The closing quote of a string whose body is within the 16 bytes at `i`
/// and holds no backslash or control character; `None` for any other
/// string (the 64-byte scan decides those). Most keys of a frame are such
/// short plain strings: one 16-byte compare instead of a whole block.
#[inline(always)]
fn short_plain_string(b: &[u8], i: usize) -> Option<usize> {
    let bytes: &[u8; 16] = b.get(i..i + 16)?.try_into().ok()?;
    let (quote, special) = Block::short(bytes);
    // Bytes before the first quote: none of them a backslash or control.
    let before = (quote & quote.wrapping_neg()).wrapping_sub(1);
    (quote != 0 && special & before == 0).then(|| i + quote.trailing_zeros() as usize)
}

/// Bytes escaped by the backslashes in `backslash` (a block's backslash mask
/// whose bit 0 is cleared when that byte is itself escaped from the block
/// before). In a run of backslashes starting at `s`, the bytes at `s+1`,
/// `s+3`, ... are escaped, up to and including the byte after the run.
#[inline(always)]
pub(super) fn escaped_mask(backslash: u64) -> u64 {
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
pub(super) struct Block {
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

    /// Quotes, and backslashes or control characters, of 16 bytes.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn short(bytes: &[u8; 16]) -> (u16, u16) {
        // SAFETY: SSE2 is part of the x86_64 baseline; the unaligned
        // 16-byte load is the whole array.
        unsafe {
            use std::arch::x86_64::*;
            let v = _mm_loadu_si128(bytes.as_ptr() as *const __m128i);
            let ctl_max = _mm_set1_epi8(0x1f);
            let q = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
            let s = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
            let c = _mm_cmpeq_epi8(_mm_max_epu8(v, ctl_max), ctl_max);
            (
                _mm_movemask_epi8(q) as u16,
                _mm_movemask_epi8(_mm_or_si128(s, c)) as u16,
            )
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    #[inline(always)]
    fn short(bytes: &[u8; 16]) -> (u16, u16) {
        let (mut quote, mut special) = (0u16, 0u16);
        for (k, &c) in bytes.iter().enumerate() {
            quote |= u16::from(c == b'"') << k;
            special |= u16::from(c == b'\\' || c < 0x20) << k;
        }
        (quote, special)
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
pub(super) fn unescape(raw: &[u8]) -> Option<String> {
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

pub(super) fn hex4(h: &[u8]) -> Option<u32> {
    std::str::from_utf8(h)
        .ok()
        .and_then(|s| u32::from_str_radix(s, 16).ok())
}
