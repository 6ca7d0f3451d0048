//! Stage 2 of the frame parser, the validating walk over a line's bytes:
//! JSON grammar checked everywhere, only the root `ts` and `uid` decoded.
//! String bodies are never walked: stage 1 ([`super::stage1`]) has checked
//! their characters and escapes, and its [`Quotes`] give each string's end.

use super::stage1::Quotes;
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

/// JSON whitespace by table: one load and no branch per byte (a `matches!`
/// of four bytes is a chain of branches that the byte mix of a frame
/// mispredicts).
static WS: [bool; 256] = {
    let mut t = [false; 256];
    t[b' ' as usize] = true;
    t[b'\t' as usize] = true;
    t[b'\n' as usize] = true;
    t[b'\r' as usize] = true;
    t
};

#[inline(always)]
pub(super) fn is_ws(c: u8) -> bool {
    WS[c as usize]
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
pub(super) fn scan_root(b: &[u8], q: &Quotes, mut i: usize) -> Scan<Root> {
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
            let key_end = string_end(q, i)?;
            i = skip_ws(b, key_end + 1);
            i = expect(b, i, b':')?;
            i = skip_ws(b, i);
            let key = &b[key_start..key_end];
            match root_key(key) {
                Some(RootName::Ts) => {
                    let (value, end) = scan_ts(b, q, i)?;
                    root.ts.see(value);
                    i = end;
                }
                Some(RootName::Uid) => {
                    if b.get(i) == Some(&b'"') {
                        let end = string_end(q, i + 1)?;
                        root.uid.see(Some((i + 1, end, has_escape(&b[i + 1..end]))));
                        i = end + 1;
                    } else {
                        i = skip_value(b, q, i)?;
                        root.uid.see(None);
                    }
                }
                // Most values are strings: no call into the general walk.
                None if b.get(i) == Some(&b'"') => i = string_end(q, i + 1)? + 1,
                None => i = skip_value(b, q, i)?,
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

enum RootName {
    Ts,
    Uid,
}

/// By a key's first raw byte, the raw lengths (bit n: n bytes) at which it
/// can be `ts` or `uid`: `ts` and `uid` plain, or 7 to 18 bytes with escapes
/// (`t\u0073` .. `\u0075\u0069\u0064`).
static NAME_LENGTHS: [u32; 256] = {
    const ESCAPED: u32 = ((1 << 12) - 1) << 7;
    let mut t = [0u32; 256];
    t[b't' as usize] = 1 << 2 | ESCAPED;
    t[b'u' as usize] = 1 << 3 | ESCAPED;
    t[b'\\' as usize] = ESCAPED;
    t
};

/// Which of the root keys we decode `key` (a raw string body) names.
#[inline(always)]
fn root_key(key: &[u8]) -> Option<RootName> {
    // One load and one rarely taken branch for most keys: their lengths
    // and first bytes vary from key to key, so testing them one after the
    // other (or matching the bytes) mispredicts about once per key.
    let first = key.first().copied().unwrap_or(0);
    let lengths = NAME_LENGTHS[first as usize];
    if lengths.checked_shr(key.len() as u32).unwrap_or(0) & 1 == 0 {
        return None;
    }
    root_key_slow(key)
}

/// Out of line: the root loop stays small, and it runs about twice a frame.
#[inline(never)]
fn root_key_slow(key: &[u8]) -> Option<RootName> {
    let key: Cow<[u8]> = if key.len() >= 7 && has_escape(key) {
        Cow::Owned(unescape(key).map(String::into_bytes).unwrap_or_default())
    } else {
        Cow::Borrowed(key)
    };
    match &*key {
        b"ts" => Some(RootName::Ts),
        b"uid" => Some(RootName::Uid),
        _ => None,
    }
}

/// Scans the value of a root `ts`: `Some` for a non-negative integer or a
/// string of ASCII digits, `None` for any other valid JSON value.
pub(super) fn scan_ts(b: &[u8], q: &Quotes, i: usize) -> Scan<(Option<TsValue>, usize)> {
    match b.get(i) {
        Some(b'"') => {
            let end = string_end(q, i + 1)?;
            let raw = &b[i + 1..end];
            let digits: Cow<[u8]> = if has_escape(raw) {
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
        _ => Ok((None, skip_value(b, q, i)?)),
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
pub(super) fn skip_value(b: &[u8], q: &Quotes, mut i: usize) -> Scan<usize> {
    // Bit d set: the container at depth d is an object.
    let mut objects: u128 = 0;
    let mut depth: usize = 0;
    'value: loop {
        match b.get(i) {
            Some(b'"') => i = string_end(q, i + 1)? + 1,
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
                        i = skip_key(b, q, i)?;
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
                        i = skip_key(b, q, i)?;
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
pub(super) fn skip_key(b: &[u8], q: &Quotes, i: usize) -> Scan<usize> {
    let i = expect(b, i, b'"')?;
    let end = string_end(q, i)?;
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

/// The closing quote of the string whose body starts at `i`.
#[inline(always)]
fn string_end(q: &Quotes, i: usize) -> Scan<usize> {
    q.next(i).ok_or(Syntax)
}

/// Whether a string body holds escapes (stage 1 checked them). Only asked
/// of short strings (candidate keys, `ts`, `uid`): a plain loop beats a
/// call to memchr there.
#[inline]
fn has_escape(raw: &[u8]) -> bool {
    raw.contains(&b'\\')
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
