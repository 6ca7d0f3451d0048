//! Stage 2 of the frame parser: walks the token positions of stage 1
//! ([`super::stage1::Tokens`]) through JSON's grammar, decoding only the
//! root object's keys and its `ts` and `uid` values. Nested values are
//! checked token by token (a string is two tokens, whatever its length);
//! numbers and literals are the only bytes read here.

use super::scan::{
    digits_value, is_ws, skip_literal, skip_number, unescape, Root, RootKey, Scan, Syntax, TsValue,
};
use super::stage1::{simd_level, Classify, Scalar, SimdLevel, Tokens};
use std::borrow::Cow;

/// Deepest nesting below the root (serde_json's limit too), as in
/// [`super::scan::skip_value`].
const MAX_DEPTH: usize = 128;

/// Scans the root object that starts at `start` (a `{` after whitespace
/// only) to the end of the line, with this thread's classifier.
#[inline]
pub(super) fn scan_root(b: &[u8], start: usize) -> Scan<Root> {
    match simd_level() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `simd_level` returns AVX2 only where the CPU has it.
        SimdLevel::Avx2 => unsafe { scan_root_avx2(b, start) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: likewise for SSE4.2.
        SimdLevel::Sse42 => unsafe { scan_root_sse42(b, start) },
        _ => walk::<Scalar>(b, start),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn scan_root_avx2(b: &[u8], start: usize) -> Scan<Root> {
    walk::<super::stage1::Avx2>(b, start)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
unsafe fn scan_root_sse42(b: &[u8], start: usize) -> Scan<Root> {
    walk::<super::stage1::Sse42>(b, start)
}

#[inline(always)]
fn byte(b: &[u8], at: usize) -> Option<u8> {
    b.get(at).copied()
}

/// The root object, inlined into each classifier's entry point.
#[inline(always)]
fn walk<C: Classify>(b: &[u8], start: usize) -> Scan<Root> {
    let mut t = Tokens::<C>::new(b);
    if t.next() != start {
        return Err(Syntax);
    }
    let mut root = Root {
        ts: RootKey::Missing,
        uid: RootKey::Missing,
    };
    let mut p = t.next();
    if byte(b, p) != Some(b'}') {
        loop {
            if byte(b, p) != Some(b'"') {
                return Err(Syntax);
            }
            let end = closing_quote(&mut t)?;
            if byte(b, t.next()) != Some(b':') {
                return Err(Syntax);
            }
            let value = t.next();
            let key = &b[p + 1..end];
            let key: Cow<[u8]> = if memchr::memchr(b'\\', key).is_some() {
                Cow::Owned(unescape(key).map(String::into_bytes).unwrap_or_default())
            } else {
                Cow::Borrowed(key)
            };
            let after = match &*key {
                b"ts" => {
                    let (ts, after) = ts_value(&mut t, b, value)?;
                    root.ts.see(ts);
                    after
                }
                b"uid" if byte(b, value) == Some(b'"') => {
                    let end = closing_quote(&mut t)?;
                    let escaped = memchr::memchr(b'\\', &b[value + 1..end]).is_some();
                    root.uid.see(Some((value + 1, end, escaped)));
                    t.next()
                }
                b"uid" => {
                    let after = skip_value(&mut t, b, value)?;
                    root.uid.see(None);
                    after
                }
                _ => skip_value(&mut t, b, value)?,
            };
            match byte(b, after) {
                Some(b',') => p = t.next(),
                Some(b'}') => break,
                _ => return Err(Syntax),
            }
        }
    }
    if t.next() != Tokens::<C>::END || !t.finish() {
        return Err(Syntax);
    }
    Ok(root)
}

/// The closing quote of the string whose opening quote was the last token.
#[inline(always)]
fn closing_quote<C: Classify>(t: &mut Tokens<'_, C>) -> Scan<usize> {
    match t.next() {
        end if end == Tokens::<C>::END => Err(Syntax),
        end => Ok(end),
    }
}

/// A root `ts` value at token `at`: `Some` for a non-negative integer or a
/// string of ASCII digits, `None` for any other valid JSON value;
/// and the token after it.
#[inline(always)]
fn ts_value<C: Classify>(
    t: &mut Tokens<'_, C>,
    b: &[u8],
    at: usize,
) -> Scan<(Option<TsValue>, usize)> {
    match byte(b, at) {
        Some(b'"') => {
            let end = closing_quote(t)?;
            let raw = &b[at + 1..end];
            let value = if memchr::memchr(b'\\', raw).is_some() {
                unescape(raw).and_then(|s| digits_value(s.as_bytes()))
            } else {
                digits_value(raw)
            };
            Ok((value, t.next()))
        }
        Some(b'0'..=b'9') => {
            let end = atom(b, at)?;
            // Only a plain integer qualifies: no fraction, no exponent.
            Ok((digits_value(&b[at..end]), t.next()))
        }
        _ => Ok((None, skip_value(t, b, at)?)),
    }
}

/// A number or literal at `at`, which must end where its run of bytes
/// ends (stage 1 made the run one token). Returns its end.
#[inline(always)]
fn atom(b: &[u8], at: usize) -> Scan<usize> {
    let end = match b[at] {
        b'-' | b'0'..=b'9' => skip_number(b, at)?,
        b't' => skip_literal(b, at, b"true")?,
        b'f' => skip_literal(b, at, b"false")?,
        b'n' => skip_literal(b, at, b"null")?,
        _ => return Err(Syntax),
    };
    match b.get(end) {
        Some(&c) if !is_ws(c) && !matches!(c, b'"' | b'{' | b'}' | b'[' | b']' | b':' | b',') => {
            Err(Syntax)
        }
        _ => Ok(end),
    }
}

/// `"key" :` from token `at`, returning the value's token.
#[inline(always)]
fn member_key<C: Classify>(t: &mut Tokens<'_, C>, b: &[u8], at: usize) -> Scan<usize> {
    if byte(b, at) != Some(b'"') {
        return Err(Syntax);
    }
    closing_quote(t)?;
    if byte(b, t.next()) != Some(b':') {
        return Err(Syntax);
    }
    Ok(t.next())
}

/// Skips the value at token `at`, returning the token after it. Iterative,
/// with a bit stack of container kinds.
#[inline(always)]
fn skip_value<C: Classify>(t: &mut Tokens<'_, C>, b: &[u8], mut at: usize) -> Scan<usize> {
    // Bit d set: the container at depth d is an object.
    let mut objects: u128 = 0;
    let mut depth: usize = 0;
    'value: loop {
        match byte(b, at) {
            Some(b'"') => {
                closing_quote(t)?;
                at = t.next();
            }
            Some(open @ (b'{' | b'[')) => {
                let is_object = open == b'{';
                let close = if is_object { b'}' } else { b']' };
                let first = t.next();
                if byte(b, first) == Some(close) {
                    at = t.next();
                } else {
                    if depth == MAX_DEPTH {
                        return Err(Syntax);
                    }
                    if is_object {
                        objects |= 1 << depth;
                        at = member_key(t, b, first)?;
                    } else {
                        objects &= !(1 << depth);
                        at = first;
                    }
                    depth += 1;
                    continue 'value;
                }
            }
            Some(b'}' | b']' | b':' | b',') | None => return Err(Syntax),
            Some(_) => {
                atom(b, at)?;
                at = t.next();
            }
        }
        // A value is complete: close containers until one wants another value.
        loop {
            if depth == 0 {
                return Ok(at);
            }
            let in_object = objects & (1 << (depth - 1)) != 0;
            match byte(b, at) {
                Some(b',') => {
                    let next = t.next();
                    at = if in_object {
                        member_key(t, b, next)?
                    } else {
                        next
                    };
                    continue 'value;
                }
                Some(b'}') if in_object => {
                    depth -= 1;
                    at = t.next();
                }
                Some(b']') if !in_object => {
                    depth -= 1;
                    at = t.next();
                }
                _ => return Err(Syntax),
            }
        }
    }
}
