//! The oracle: serde_json decides what is valid JSON and what the root
//! `ts` and `uid` are; the rules decide the expected outcome.

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use timebucket_core::frame::{with_simd_level, FrameParser, Invalid, Line, SimdLevel};

use std::fmt;

/// What the parser returns, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Frame(u64, String),
    Blank,
    Invalid(Invalid),
}

/// The outcome on every stage-1 path (scalar, SSE4.2, AVX2), which must
/// agree: every test of the parser checks all three.
pub fn run(p: &FrameParser, line: &[u8]) -> Outcome {
    let on = |level| {
        with_simd_level(level, || match p.parse(line) {
            Line::Frame(f) => Outcome::Frame(f.ts, f.uid.into_owned()),
            Line::Blank => Outcome::Blank,
            Line::Invalid(r) => Outcome::Invalid(r),
        })
    };
    let scalar = on(SimdLevel::Scalar);
    for level in [SimdLevel::Sse42, SimdLevel::Avx2] {
        let got = on(level);
        assert_eq!(
            got,
            scalar,
            "{} and scalar disagree on {:?}",
            level.name(),
            String::from_utf8_lossy(line)
        );
    }
    scalar
}

#[derive(Debug)]
pub enum Expect {
    OneOf(Vec<Outcome>),
    /// serde_json validated the line as JSON but could not decode a root
    /// value; any outcome of a well-formed object (or non-object) will do.
    AnyObjectOutcome,
}

impl Expect {
    fn admits(&self, got: &Outcome) -> bool {
        match self {
            Expect::OneOf(v) => v.contains(got),
            Expect::AnyObjectOutcome => !matches!(
                got,
                Outcome::Blank
                    | Outcome::Invalid(Invalid::NotJson | Invalid::NotUtf8 | Invalid::TooLarge)
            ),
        }
    }
}

/// A root `ts` or `uid` value as serde_json sees it.
#[derive(Debug)]
pub enum Val {
    U64(u64),
    Neg,
    F64(f64),
    Str(String),
    Other,
}

impl<'de> Deserialize<'de> for Val {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Val, D::Error> {
        d.deserialize_any(ValVisitor)
    }
}

pub struct ValVisitor;

impl<'de> Visitor<'de> for ValVisitor {
    type Value = Val;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Val, E> {
        Ok(Val::Other)
    }
    fn visit_u64<E>(self, v: u64) -> Result<Val, E> {
        Ok(Val::U64(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Val, E> {
        // serde_json only uses visit_i64 for negative integers.
        Ok(if v >= 0 { Val::U64(v as u64) } else { Val::Neg })
    }
    fn visit_f64<E>(self, v: f64) -> Result<Val, E> {
        Ok(Val::F64(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Val, E> {
        Ok(Val::Str(v.to_owned()))
    }
    fn visit_unit<E>(self) -> Result<Val, E> {
        Ok(Val::Other)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Val, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Val::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Val, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Val::Other)
    }
}

/// A root key, decoded without validation of surrogates (serde_json hands
/// out WTF-8 bytes for `deserialize_bytes`), so a key with a lone surrogate
/// is simply "some other key", as the grammar says it is.
pub struct KeyBytes(Vec<u8>);

impl<'de> Deserialize<'de> for KeyBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<KeyBytes, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = KeyBytes;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<KeyBytes, E> {
                Ok(KeyBytes(v.to_vec()))
            }
            fn visit_str<E>(self, v: &str) -> Result<KeyBytes, E> {
                Ok(KeyBytes(v.as_bytes().to_vec()))
            }
        }
        d.deserialize_bytes(V)
    }
}

pub enum Top {
    Object { ts: Vec<Val>, uid: Vec<Val> },
    NotObject,
}

impl<'de> Deserialize<'de> for Top {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Top, D::Error> {
        d.deserialize_any(TopVisitor)
    }
}

pub struct TopVisitor;

impl<'de> Visitor<'de> for TopVisitor {
    type Value = Top;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Top, E> {
        Ok(Top::NotObject)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Top, E> {
        Ok(Top::NotObject)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Top, E> {
        Ok(Top::NotObject)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Top, E> {
        Ok(Top::NotObject)
    }
    fn visit_str<E>(self, _: &str) -> Result<Top, E> {
        Ok(Top::NotObject)
    }
    fn visit_unit<E>(self) -> Result<Top, E> {
        Ok(Top::NotObject)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Top, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Top::NotObject)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Top, A::Error> {
        let (mut ts, mut uid) = (Vec::new(), Vec::new());
        while let Some(KeyBytes(key)) = map.next_key()? {
            match &key[..] {
                b"ts" => ts.push(map.next_value::<Val>()?),
                b"uid" => uid.push(map.next_value::<Val>()?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Top::Object { ts, uid })
    }
}

pub fn is_json_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r')
}

/// The expected outcome of `p.parse(line)`, from serde_json and the rules.
pub fn expect(p: &FrameParser, line: &[u8]) -> Expect {
    use Outcome::Invalid as I;
    let one = |o: Outcome| Expect::OneOf(vec![o]);
    if line.len() > p.max_frame_bytes {
        return one(I(Invalid::TooLarge));
    }
    if line.iter().all(|&c| is_json_ws(c)) {
        return one(Outcome::Blank);
    }
    if std::str::from_utf8(line).is_err() {
        return one(I(Invalid::NotUtf8));
    }
    if serde_json::from_slice::<IgnoredAny>(line).is_err() {
        return one(I(Invalid::NotJson));
    }
    let (ts, uid) = match serde_json::from_slice::<Top>(line) {
        Ok(Top::NotObject) => return one(I(Invalid::NotObject)),
        Ok(Top::Object { ts, uid }) => (ts, uid),
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.contains("surrogate")
                    || msg.contains("hex escape")
                    || msg.contains("out of range"),
                "serde_json accepted {:?} as JSON but could not decode it: {msg}",
                String::from_utf8_lossy(line)
            );
            return Expect::AnyObjectOutcome;
        }
    };
    let in_range = |v: u64| {
        if (p.min_ts..=p.max_ts).contains(&v) {
            Ok(v)
        } else {
            Err(vec![I(Invalid::TsOutOfRange)])
        }
    };
    let ts: Result<u64, Vec<Outcome>> = match &ts[..] {
        [] => Err(vec![I(Invalid::MissingTs)]),
        [_, _, ..] => Err(vec![I(Invalid::DuplicateTs)]),
        [Val::U64(v)] => in_range(*v),
        [Val::Str(s)] if !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()) => {
            match s.parse::<u64>() {
                Ok(v) => in_range(v),
                Err(_) => Err(vec![I(Invalid::TsOutOfRange)]),
            }
        }
        // serde_json (without arbitrary_precision) hands an integer beyond
        // u64 to visit_f64, so it cannot be told from a float here: an
        // integer is out of range, a float is a bad ts.
        [Val::F64(v)] if v.fract() == 0.0 && *v >= 18_446_744_073_709_551_615.0 => {
            Err(vec![I(Invalid::BadTs), I(Invalid::TsOutOfRange)])
        }
        [Val::F64(_) | Val::Neg | Val::Str(_) | Val::Other] => Err(vec![I(Invalid::BadTs)]),
    };
    let ts = match ts {
        Ok(ts) => ts,
        Err(v) => return Expect::OneOf(v),
    };
    match &uid[..] {
        [] => one(I(Invalid::MissingUid)),
        [_, _, ..] => one(I(Invalid::DuplicateUid)),
        [Val::Str(s)] if s.len() > p.max_uid_bytes => one(I(Invalid::UidTooLong)),
        [Val::Str(s)] if !s.is_empty() => one(Outcome::Frame(ts, s.clone())),
        [_] => one(I(Invalid::BadUid)),
    }
}

pub fn check(p: &FrameParser, line: &[u8]) -> Result<(), String> {
    let want = expect(p, line);
    let got = run(p, line);
    if want.admits(&got) {
        Ok(())
    } else {
        Err(format!(
            "line {:?} ({} bytes)\n  parser: {got:?}\n  oracle: {want:?}",
            String::from_utf8_lossy(line),
            line.len()
        ))
    }
}
