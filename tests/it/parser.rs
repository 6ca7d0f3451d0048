//! Differential tests of the normative frame parser ([`FrameParser`]) against
//! serde_json, plus explicit tests of rules that `src/frame.rs`'s unit tests
//! do not already pin down.
//!
//! The oracle:
//! - `NotJson` iff `serde_json::from_slice::<IgnoredAny>` fails (for valid
//!   UTF-8 input; the generated nesting stays far below both depth limits).
//!   `IgnoredAny` checks the full grammar but does not decode strings, so it
//!   accepts lone-surrogate escapes exactly as RFC 8259's grammar does.
//! - for a valid JSON object, a serde visitor collects the root `ts` and
//!   `uid` values (keys decoded, nested members ignored) and the expected
//!   `Frame`/`Invalid` follows from the rules of the issue. Where serde_json
//!   cannot decode a root value (a lone surrogate, a number beyond f64) the
//!   oracle only requires "valid JSON object" (see `Expect::AnyObjectOutcome`).

use std::fmt;

use crate::common::files::data_file;
use proptest::prelude::*;
use proptest::sample::Index;
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use timebucket::core::frame::{FrameParser, Invalid, Line, DEFAULT_MIN_TS};

const MIN_TS: u64 = 1_400_000_000;
const MAX_TS: u64 = 1_500_000_000;

fn parser() -> FrameParser {
    FrameParser::new(MIN_TS, MAX_TS)
}

// ---------------------------------------------------------------------------
// The oracle
// ---------------------------------------------------------------------------

/// What the parser returns, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Frame(u64, String),
    Blank,
    Invalid(Invalid),
}

fn run(p: &FrameParser, line: &[u8]) -> Outcome {
    match p.parse(line) {
        Line::Frame(f) => Outcome::Frame(f.ts, f.uid.into_owned()),
        Line::Blank => Outcome::Blank,
        Line::Invalid(r) => Outcome::Invalid(r),
    }
}

#[derive(Debug)]
enum Expect {
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
enum Val {
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

struct ValVisitor;

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
struct KeyBytes(Vec<u8>);

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

enum Top {
    Object { ts: Vec<Val>, uid: Vec<Val> },
    NotObject,
}

impl<'de> Deserialize<'de> for Top {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Top, D::Error> {
        d.deserialize_any(TopVisitor)
    }
}

struct TopVisitor;

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

fn is_json_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r')
}

/// The expected outcome of `p.parse(line)`, from serde_json and the rules.
fn expect(p: &FrameParser, line: &[u8]) -> Expect {
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
        [Val::Str(s)] if !s.is_empty() => one(Outcome::Frame(ts, s.clone())),
        [_] => one(I(Invalid::BadUid)),
    }
}

fn check(p: &FrameParser, line: &[u8]) -> Result<(), String> {
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

// ---------------------------------------------------------------------------
// Generators of JSON-ish lines
// ---------------------------------------------------------------------------

/// Whitespace between tokens (JSON whitespace only).
fn ws() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => Just(""),
        3 => Just(" "),
        1 => Just("\t"),
        1 => Just("\r\n  "),
        1 => Just("\n"),
    ]
    .prop_map(String::from)
}

/// One piece of a string body (already escaped as JSON text).
fn string_piece(allow_lone_surrogates: bool) -> BoxedStrategy<String> {
    let common = prop_oneof![
        6 => "[a-zA-Z0-9 ,.:;{}()\\[\\]/'#-]{1,12}",
        2 => "[а-яА-ЯёЁ ]{1,8}",
        1 => Just("Не верил он любви, свободе;".to_owned()),
        1 => Just("😀€ß\u{7f}".to_owned()),
        // Long runs move escapes across the parser's 32-byte SIMD blocks.
        2 => (20usize..90).prop_map(|n| "x".repeat(n)),
        6 => prop_oneof![
            Just(r#"\""#), Just(r"\\"), Just(r"\/"), Just(r"\b"), Just(r"\f"),
            Just(r"\n"), Just(r"\r"), Just(r"\t"), Just(r"\u0041"), Just(r"\u00e9"),
            Just(r"\u0000"), Just(r"\u001F"), Just(r"\u041f"), Just(r"\ud83d\ude00"),
            Just(r"\uD83D\uDE00"), Just(r"\u0074\u0073"), Just(r"\u0031"), Just(r"\ud800\udc00"),
            Just(r"\udbff\udfff"), Just(r"\ud7ff\ue000"),
        ]
        .prop_map(String::from),
    ];
    if allow_lone_surrogates {
        prop_oneof![
            12 => common,
            1 => prop_oneof![
                Just(r"\ud800"), Just(r"\udc00"), Just(r"\ud83dx"), Just(r"\ud83d\u0041"),
                Just(r"\ud83d\ue000"), Just(r"\udbff\udbff"), Just(r"\udc00\ud800"),
            ]
                .prop_map(String::from),
        ]
        .boxed()
    } else {
        common.boxed()
    }
}

fn json_string(allow_lone_surrogates: bool) -> BoxedStrategy<String> {
    prop::collection::vec(string_piece(allow_lone_surrogates), 0..6)
        .prop_map(|pieces| format!("\"{}\"", pieces.concat()))
        .boxed()
}

fn json_number() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => any::<i64>().prop_map(|v| v.to_string()),
        2 => (0u64..100).prop_map(|v| v.to_string()),
        2 => (MIN_TS - 3..MIN_TS + 3).prop_map(|v| v.to_string()),
        2 => (MAX_TS - 3..MAX_TS + 3).prop_map(|v| v.to_string()),
        1 => any::<u64>().prop_map(|v| v.to_string()),
        1 => "[1-9][0-9]{19,25}",
        2 => prop_oneof![
            Just("-0"), Just("0.5"), Just("-1.25"), Just("1e9"), Just("1E+9"), Just("2.5e-3"),
            Just("1468244384.0"), Just("1.468244384e9"), Just("1468244384e0"), Just("-0.0"),
            Just("18446744073709551616"), Just("18446744073709551616.0"), Just("1e19"), Just("1e20"),
        ]
        .prop_map(String::from),
    ]
}

fn json_literal() -> impl Strategy<Value = String> {
    prop_oneof![Just("true"), Just("false"), Just("null")].prop_map(String::from)
}

/// A key of a generated object: `ts`, `uid`, `a` or `b`, sometimes spelled
/// with escapes (the escaped spelling is the same key).
fn json_key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just(r#""ts""#),
        4 => Just(r#""uid""#),
        3 => Just(r#""a""#),
        3 => Just(r#""b""#),
        1 => Just(r#""t\u0073""#),
        1 => Just(r#""\u0075id""#),
        1 => Just(r#""\u0061""#),
        1 => Just(r#""ts ""#),
        1 => Just(r#""TS""#),
        1 => Just(r#""\ud800ts""#),
    ]
    .prop_map(String::from)
}

/// Any JSON value (valid), nested a few levels at most.
fn json_value(allow_lone_surrogates: bool) -> BoxedStrategy<String> {
    let leaf = prop_oneof![
        2 => json_literal(),
        3 => json_number(),
        4 => json_string(allow_lone_surrogates),
        1 => prop_oneof![Just("1e400"), Just("-1e400")].prop_map(String::from),
    ];
    leaf.prop_recursive(4, 40, 5, |inner| {
        prop_oneof![
            prop::collection::vec((ws(), inner.clone(), ws()), 0..5).prop_map(|els| {
                let body: Vec<String> = els
                    .into_iter()
                    .map(|(a, v, b)| format!("{a}{v}{b}"))
                    .collect();
                format!("[{}]", body.join(","))
            }),
            prop::collection::vec((ws(), json_key(), ws(), ws(), inner, ws()), 0..5).prop_map(
                |members| {
                    let body: Vec<String> = members
                        .into_iter()
                        .map(|(a, k, b, c, v, d)| format!("{a}{k}{b}:{c}{v}{d}"))
                        .collect();
                    format!("{{{}}}", body.join(","))
                }
            ),
        ]
    })
    .boxed()
}

fn ts_value() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => (MIN_TS..=MAX_TS).prop_map(|v| v.to_string()),
        3 => (MIN_TS..=MAX_TS).prop_map(|v| format!("\"{v}\"")),
        1 => (MIN_TS..=MAX_TS).prop_map(|v| format!("\"000{v}\"")),
        1 => (MIN_TS..=MAX_TS).prop_map(|v| format!("\"\\u003{}{:09}\"", v / 1_000_000_000, v % 1_000_000_000)),
        1 => (MIN_TS..=MAX_TS).prop_map(|v| format!("\" {v}\"")),
        1 => (MIN_TS..=MAX_TS).prop_map(|v| format!("-{v}")),
        1 => (MIN_TS..=MAX_TS).prop_map(|v| format!("{v}.0")),
        1 => (MIN_TS..=MAX_TS).prop_map(|v| format!("{v}e0")),
        2 => prop_oneof![Just(MIN_TS - 1), Just(MAX_TS + 1), Just(0), Just(u64::MAX)].prop_map(|v| v.to_string()),
        1 => prop_oneof![Just(MIN_TS - 1), Just(MAX_TS + 1), Just(0), Just(u64::MAX)].prop_map(|v| format!("\"{v}\"")),
        1 => "\"[1-9][0-9]{19,25}\"",
        1 => prop_oneof![Just(r#""""#), Just(r#""14a""#), Just(r#""-5""#), Just(r#""1.5""#), Just("[1468244384]")]
            .prop_map(String::from),
        3 => json_value(false),
    ]
}

fn uid_value() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => "\"[0-9a-f]{19}\"",
        3 => json_string(false),
        1 => Just(r#""""#.to_owned()),
        1 => Just(r#""Привет""#.to_owned()),
        1 => Just(r#""\u0000""#.to_owned()),
        3 => json_value(false),
    ]
}

/// A root member: key text and value text, with whitespace around both.
#[derive(Debug, Clone)]
struct Member {
    key: String,
    value: String,
    ws: [String; 4],
}

fn ws4() -> impl Strategy<Value = [String; 4]> {
    (ws(), ws(), ws(), ws()).prop_map(|(a, b, c, d)| [a, b, c, d])
}

fn member() -> impl Strategy<Value = Member> {
    json_key()
        .prop_flat_map(move |key| {
            let value: BoxedStrategy<String> = match key.as_str() {
                r#""ts""# | r#""t\u0073""# => ts_value().boxed(),
                r#""uid""# | r#""\u0075id""# => uid_value().boxed(),
                _ => json_value(true),
            };
            (Just(key), value, ws4())
        })
        .prop_map(|(key, value, ws)| Member { key, value, ws })
}

fn valid_frame_members() -> impl Strategy<Value = Vec<Member>> {
    (
        (MIN_TS..=MAX_TS, ws4()).prop_map(|(ts, ws)| Member {
            key: r#""ts""#.into(),
            value: ts.to_string(),
            ws,
        }),
        ("\"[0-9a-f]{19}\"", ws4()).prop_map(|(uid, ws)| Member {
            key: r#""uid""#.into(),
            value: uid,
            ws,
        }),
        prop::collection::vec(member(), 0..4),
    )
        .prop_flat_map(|(ts, uid, mut rest)| {
            rest.push(ts);
            rest.push(uid);
            Just(rest).prop_shuffle()
        })
}

#[derive(Debug, Clone)]
enum Mutation {
    None,
    Truncate(Index),
    InsertByte(Index, u8),
    DuplicateMember(Index, Index),
    RemoveMember(Index),
    TrailingGarbage(String),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let byte = prop_oneof![
        3 => prop::sample::select(b"{}[]\",:\\0123456789-+.eEtfnu \t\r\x0c\x00\x7f".to_vec()),
        1 => any::<u8>(),
    ];
    prop_oneof![
        8 => Just(Mutation::None),
        3 => any::<Index>().prop_map(Mutation::Truncate),
        3 => (any::<Index>(), byte).prop_map(|(i, b)| Mutation::InsertByte(i, b)),
        2 => (any::<Index>(), any::<Index>()).prop_map(|(i, j)| Mutation::DuplicateMember(i, j)),
        1 => any::<Index>().prop_map(Mutation::RemoveMember),
        1 => prop_oneof![Just(" x"), Just("}"), Just(","), Just("\u{a0}"), Just("{}"), Just("\x0c")]
            .prop_map(String::from)
            .prop_map(Mutation::TrailingGarbage),
    ]
}

#[derive(Debug, Clone)]
struct Case {
    lead: String,
    members: Vec<Member>,
    trail: String,
    /// Some: the root is this value instead of the object.
    other_root: Option<String>,
    mutation: Mutation,
}

fn case() -> impl Strategy<Value = Case> {
    let members = prop_oneof![
        3 => valid_frame_members(),
        2 => prop::collection::vec(member(), 0..7),
    ];
    let other_root = prop_oneof![12 => Just(None), 1 => json_value(true).prop_map(Some)];
    (
        prop_oneof![4 => Just(String::new()), 1 => ws()],
        members,
        prop_oneof![3 => Just(String::new()), 1 => ws(), 1 => Just("\r".to_owned())],
        other_root,
        mutation(),
    )
        .prop_map(|(lead, members, trail, other_root, mutation)| Case {
            lead,
            members,
            trail,
            other_root,
            mutation,
        })
}

fn render(case: &Case) -> Vec<u8> {
    let mut members = case.members.clone();
    match &case.mutation {
        Mutation::DuplicateMember(i, j) if !members.is_empty() => {
            let m = members[i.index(members.len())].clone();
            let at = j.index(members.len() + 1);
            members.insert(at, m);
        }
        Mutation::RemoveMember(i) if !members.is_empty() => {
            members.remove(i.index(members.len()));
        }
        _ => {}
    }
    let root = match &case.other_root {
        Some(v) => v.clone(),
        None => {
            let body: Vec<String> = members
                .iter()
                .map(|m| {
                    format!(
                        "{}{}{}:{}{}{}",
                        m.ws[0], m.key, m.ws[1], m.ws[2], m.value, m.ws[3]
                    )
                })
                .collect();
            format!("{{{}}}", body.join(","))
        }
    };
    let mut line = format!("{}{}{}", case.lead, root, case.trail).into_bytes();
    match &case.mutation {
        Mutation::Truncate(i) => line.truncate(i.index(line.len() + 1)),
        Mutation::InsertByte(i, b) => {
            let at = i.index(line.len() + 1);
            line.insert(at, *b);
        }
        Mutation::TrailingGarbage(g) => line.extend_from_slice(g.as_bytes()),
        _ => {}
    }
    line
}

// ---------------------------------------------------------------------------
// Property tests
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig { cases: 20000, ..ProptestConfig::default() })]

    /// The central differential property: NotJson iff serde_json rejects the
    /// line, and for objects the Frame/Invalid outcome the rules imply.
    #[test]
    fn parser_agrees_with_serde_json(case in case()) {
        let line = render(&case);
        if let Err(msg) = check(&parser(), &line) {
            return Err(TestCaseError::fail(msg));
        }
    }

    /// Unmutated objects are never NotJson: guards against the generator
    /// itself drifting into invalid JSON (which would hollow out the test).
    #[test]
    fn generated_objects_are_json(members in prop::collection::vec(member(), 0..7)) {
        let case = Case { lead: String::new(), members, trail: String::new(), other_root: None, mutation: Mutation::None };
        let line = render(&case);
        prop_assert!(serde_json::from_slice::<IgnoredAny>(&line).is_ok(), "generator made invalid JSON: {}", String::from_utf8_lossy(&line));
        prop_assert_ne!(run(&parser(), &line), Outcome::Invalid(Invalid::NotJson));
    }

    /// Single-byte insertions into, and truncations of, real challenge frames.
    #[test]
    fn mutated_real_frames_agree_with_serde_json(
        which in any::<Index>(),
        at in any::<Index>(),
        byte in prop_oneof![3 => prop::sample::select(b"{}[]\",:\\0123456789-.e \t\x0c\x00".to_vec()), 1 => any::<u8>()],
        truncate in any::<bool>(),
    ) {
        let lines = real_lines();
        let mut line = lines[which.index(lines.len())].clone();
        if truncate {
            line.truncate(at.index(line.len() + 1));
        } else {
            line.insert(at.index(line.len() + 1), byte);
        }
        if let Err(msg) = check(&FrameParser::new(DEFAULT_MIN_TS, 2_000_000_000), &line) {
            return Err(TestCaseError::fail(msg));
        }
    }

    /// Nesting well inside both limits (serde_json: 127 levels) agrees.
    #[test]
    fn deep_but_legal_nesting(depth in 1usize..99, object_levels in any::<u64>(), close_early in any::<bool>()) {
        let mut open = String::new();
        let mut close = String::new();
        for d in 0..depth {
            if object_levels >> (d % 64) & 1 == 1 {
                open.push_str(r#"{"ts":"#);
                close.insert(0, '}');
            } else {
                open.push('[');
                close.insert(0, ']');
            }
        }
        if close_early {
            close.pop();
        }
        let line = format!(r#"{{"a":{open}1{close},"ts":1468244384,"uid":"u"}}"#);
        if let Err(msg) = check(&parser(), line.as_bytes()) {
            return Err(TestCaseError::fail(msg));
        }
    }
}

fn real_lines() -> &'static [Vec<u8>] {
    use std::sync::OnceLock;
    static LINES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    LINES.get_or_init(|| {
        let mut lines = Vec::new();
        for name in ["challenge-head.jsonl", "challenge-tail.jsonl"] {
            let data = data_file(name);
            lines.extend(
                data.split(|&c| c == b'\n')
                    .filter(|l| !l.is_empty())
                    .map(<[u8]>::to_vec),
            );
        }
        lines
    })
}

// ---------------------------------------------------------------------------
// Explicit tests
// ---------------------------------------------------------------------------

#[test]
fn every_real_frame_parses_as_serde_json_decodes_it() {
    let p = FrameParser::new(DEFAULT_MIN_TS, 2_000_000_000);
    let lines = real_lines();
    assert_eq!(lines.len(), 1008, "head (8) + tail (1000) frames");
    for line in lines {
        check(&p, line).unwrap();
        assert!(
            matches!(run(&p, line), Outcome::Frame(1468244384 | 1468245359 | 1468245360, ref uid) if uid.len() == 19)
        );
    }
}

#[test]
fn every_prefix_of_a_real_frame_is_rejected_like_serde_json_does() {
    let p = FrameParser::new(DEFAULT_MIN_TS, 2_000_000_000);
    let line = &real_lines()[0];
    for cut in 0..line.len() {
        let prefix = &line[..cut];
        check(&p, prefix).unwrap();
        let got = run(&p, prefix);
        assert!(
            matches!(
                got,
                Outcome::Blank | Outcome::Invalid(Invalid::NotJson | Invalid::NotUtf8)
            ),
            "prefix of {cut} bytes gave {got:?}"
        );
    }
}

/// Escapes, control characters and quotes at every offset around the
/// parser's 32-byte SIMD blocks, in the uid (decoded) and in another value.
#[test]
fn escapes_at_every_offset_across_simd_blocks() {
    let p = parser();
    let escapes = [
        r#"\""#,
        r"\\",
        r"\/",
        r"\n",
        r"\t",
        r"\u0041",
        r"\u041F",
        r"\ud83d\ude00",
        r"\u0000",
    ];
    let invalid = ["\\x", "\\u12", "\\U0041", "\x01", "\x1f", "\t", "\\"];
    for k in 0..80 {
        let pad = "y".repeat(k);
        for esc in escapes {
            for line in [
                format!(r#"{{"ts":1468244384,"uid":"{pad}{esc}z"}}"#),
                format!(r#"{{"pad":"{pad}{esc}","ts":1468244384,"uid":"u{esc}"}}"#),
                format!(r#"{{"ts":1468244384,"pad":["{pad}{esc}{pad}{esc}"],"uid":"{esc}{pad}"}}"#),
            ] {
                check(&p, line.as_bytes()).unwrap();
                assert!(
                    matches!(run(&p, line.as_bytes()), Outcome::Frame(..)),
                    "{line}"
                );
            }
        }
        for bad in invalid {
            for line in [
                format!(r#"{{"ts":1468244384,"uid":"{pad}{bad}z"}}"#),
                format!(r#"{{"pad":"{pad}{bad}","ts":1468244384,"uid":"u"}}"#),
            ] {
                check(&p, line.as_bytes()).unwrap();
                assert_eq!(
                    run(&p, line.as_bytes()),
                    Outcome::Invalid(Invalid::NotJson),
                    "{line:?}"
                );
            }
        }
        // A string that never closes, ending at every offset.
        let line = format!(r#"{{"ts":1468244384,"uid":"u","pad":"{pad}"#);
        assert_eq!(
            run(&p, line.as_bytes()),
            Outcome::Invalid(Invalid::NotJson),
            "{line:?}"
        );
        let line = format!(r#"{{"ts":1468244384,"uid":"u","pad":"{pad}\"#);
        assert_eq!(
            run(&p, line.as_bytes()),
            Outcome::Invalid(Invalid::NotJson),
            "{line:?}"
        );
    }
}

fn outcome(line: &str) -> Outcome {
    let out = run(&parser(), line.as_bytes());
    // Every explicit case must also agree with the differential oracle.
    check(&parser(), line.as_bytes()).unwrap();
    out
}

fn frame(ts: u64, uid: &str) -> Outcome {
    Outcome::Frame(ts, uid.to_owned())
}

fn invalid(r: Invalid) -> Outcome {
    Outcome::Invalid(r)
}

#[test]
fn ts_digit_strings_are_decoded_json_strings() {
    // Leading zeros in a digit string: still a string of ASCII digits.
    assert_eq!(
        outcome(r#"{"ts":"0001468244384","uid":"u"}"#),
        frame(1468244384, "u")
    );
    // The string is a JSON string: escapes are decoded before the digit check.
    assert_eq!(
        outcome(r#"{"ts":"\u0031468244384","uid":"u"}"#),
        frame(1468244384, "u")
    );
    assert_eq!(
        outcome(r#"{"ts":" 1468244384","uid":"u"}"#),
        invalid(Invalid::BadTs)
    );
    assert_eq!(
        outcome(r#"{"ts":"1468244384 ","uid":"u"}"#),
        invalid(Invalid::BadTs)
    );
    assert_eq!(
        outcome(r#"{"ts":"+1468244384","uid":"u"}"#),
        invalid(Invalid::BadTs)
    );
    assert_eq!(
        outcome(r#"{"ts":"１４６８２４４３８４","uid":"u"}"#),
        invalid(Invalid::BadTs),
        "non-ASCII digits"
    );
    // A lone surrogate is valid JSON text but no string of digits.
    assert_eq!(
        outcome(r#"{"ts":"\ud800","uid":"u"}"#),
        invalid(Invalid::BadTs)
    );
}

#[test]
fn ts_numbers() {
    assert_eq!(outcome(r#"{"ts":-0,"uid":"u"}"#), invalid(Invalid::BadTs));
    assert_eq!(
        outcome(r#"{"ts":1468244384e0,"uid":"u"}"#),
        invalid(Invalid::BadTs)
    );
    assert_eq!(
        outcome(r#"{"ts":1468244384E+0,"uid":"u"}"#),
        invalid(Invalid::BadTs)
    );
    assert_eq!(
        outcome(r#"{"ts":0,"uid":"u"}"#),
        invalid(Invalid::TsOutOfRange)
    );
    // Beyond u64, as a number and as a string: a non-negative integer, out of range.
    assert_eq!(
        outcome(r#"{"ts":"18446744073709551616","uid":"u"}"#),
        invalid(Invalid::TsOutOfRange)
    );
    assert_eq!(
        run(&parser(), br#"{"ts":18446744073709551616,"uid":"u"}"#),
        invalid(Invalid::TsOutOfRange)
    );
    assert_eq!(
        run(&parser(), br#"{"ts":18446744073709551616.0,"uid":"u"}"#),
        invalid(Invalid::BadTs)
    );
    // u64::MAX fits a u64 but not the windows: --max-ts is capped at window::MAX_TS.
    assert_eq!(
        outcome(r#"{"ts":18446744073709551615,"uid":"u"}"#),
        invalid(Invalid::TsOutOfRange)
    );
    assert_eq!(
        run(
            &FrameParser::new(0, u64::MAX),
            br#"{"ts":18446744073709551615,"uid":"u"}"#
        ),
        invalid(Invalid::TsOutOfRange)
    );
    let max = timebucket::core::window::MAX_TS;
    let at_max = format!(r#"{{"ts":{max},"uid":"u"}}"#);
    assert_eq!(
        run(&FrameParser::new(0, u64::MAX), at_max.as_bytes()),
        frame(max, "u")
    );
    assert_eq!(
        run(&FrameParser::new(0, u64::MAX), br#"{"ts":0,"uid":"u"}"#),
        frame(0, "u")
    );
    // A number too large for f64 is still valid JSON (RFC 8259 sets no limit).
    let huge = format!(r#"{{"ts":1{},"uid":"u"}}"#, "0".repeat(400));
    assert_eq!(
        run(&parser(), huge.as_bytes()),
        invalid(Invalid::TsOutOfRange)
    );
    assert_eq!(
        run(&parser(), br#"{"ts":1e400,"uid":"u"}"#),
        invalid(Invalid::BadTs)
    );
    assert_eq!(
        outcome(r#"{"a":1e400,"ts":1468244384,"uid":"u"}"#),
        frame(1468244384, "u")
    );
}

#[test]
fn uid_rules() {
    assert_eq!(
        outcome(r#"{"ts":1468244384,"uid":"Привет"}"#),
        frame(1468244384, "Привет")
    );
    assert_eq!(
        outcome(r#"{"ts":1468244384,"uid":"\u041f\u0440"}"#),
        frame(1468244384, "Пр")
    );
    assert_eq!(
        outcome(r#"{"ts":1468244384,"uid":" "}"#),
        frame(1468244384, " ")
    );
    // An escape that decodes to NUL is a non-empty string.
    assert_eq!(
        outcome(r#"{"ts":1468244384,"uid":"\u0000"}"#),
        frame(1468244384, "\0")
    );
    assert_eq!(
        outcome(r#"{"ts":1468244384,"uid":"\t\n\r\b\f\/"}"#),
        frame(1468244384, "\t\n\r\u{8}\u{c}/")
    );
    assert_eq!(
        outcome(r#"{"ts":1468244384,"uid":true}"#),
        invalid(Invalid::BadUid)
    );
    assert_eq!(
        outcome(r#"{"ts":1468244384,"uid":["u"]}"#),
        invalid(Invalid::BadUid)
    );
    // Lone surrogates: valid JSON text, but not a Unicode string.
    assert_eq!(
        outcome(r#"{"ts":1468244384,"uid":"\ud800\udc00\udbff\udfff"}"#),
        frame(1468244384, "\u{10000}\u{10ffff}")
    );
    for lone in [
        r"\ud800",
        r"\udfff",
        r"\ud83dx",
        r"\ud83d\u0041",
        r"\ud83d\ud83d",
        r"\ud83d\ue000",
        r"\udc00\ud800",
        r"\ud83d\\ude00",
    ] {
        let line = format!(r#"{{"ts":1468244384,"uid":"{lone}"}}"#);
        assert_eq!(
            run(&parser(), line.as_bytes()),
            invalid(Invalid::BadUid),
            "{line}"
        );
        assert!(serde_json::from_slice::<IgnoredAny>(line.as_bytes()).is_ok());
    }
}

#[test]
fn root_keys_only_and_other_keys_may_repeat() {
    assert_eq!(
        outcome(r#"{"a":1,"a":2,"ts":1468244384,"a":3,"uid":"u","b":{"uid":1},"b":[]}"#),
        frame(1468244384, "u")
    );
    assert_eq!(
        outcome(r#"{"uid":"u","x":{"ts":1468244384,"uid":"v"},"ts":"1468244385"}"#),
        frame(1468244385, "u")
    );
    // Keys are compared after decoding, byte for byte.
    assert_eq!(
        outcome(r#"{"TS":1468244384,"uid":"u"}"#),
        invalid(Invalid::MissingTs)
    );
    assert_eq!(
        outcome(r#"{"ts ":1468244384,"uid":"u"}"#),
        invalid(Invalid::MissingTs)
    );
    assert_eq!(
        outcome(r#"{"ts":1468244384,"u\u0069d":"u","uid":"v"}"#),
        invalid(Invalid::DuplicateUid)
    );
    // Duplicates are duplicates whatever the values are.
    assert_eq!(
        outcome(r#"{"ts":null,"ts":1468244384,"uid":"u"}"#),
        invalid(Invalid::DuplicateTs)
    );
    assert_eq!(
        outcome(r#"{"ts":1468244384,"uid":1,"uid":"u"}"#),
        invalid(Invalid::DuplicateUid)
    );
    assert_eq!(outcome(r#"{}"#), invalid(Invalid::MissingTs));
    assert_eq!(outcome(r#" { } "#), invalid(Invalid::MissingTs));
}

/// RFC 8259 §8.2: the grammar allows escapes that are lone surrogates, also
/// in member names. Such a key is just not "ts" or "uid". (serde_json
/// refuses to decode such a key into a `String`, but its grammar check
/// accepts it; the parser agrees with the grammar.)
#[test]
fn lone_surrogate_in_a_key_is_valid_json() {
    let line = br#"{"\ud800":1,"ts":1468244384,"uid":"u","\udc00ts":2}"#;
    assert!(serde_json::from_slice::<IgnoredAny>(line).is_ok());
    assert_eq!(run(&parser(), line), frame(1468244384, "u"));
    check(&parser(), line).unwrap();
}

#[test]
fn not_utf8_anywhere_in_the_line() {
    for bad in [
        &b"\xff"[..],
        b"\xc0\xaf",
        b"\xed\xa0\x80",
        b"\xf4\x90\x80\x80",
        b"\xe2\x82",
    ] {
        for at in ["key", "nested", "uid", "trail"] {
            let mut line = Vec::new();
            match at {
                "key" => line.extend_from_slice(b"{\"a"),
                "nested" => line.extend_from_slice(b"{\"a\":[\""),
                _ => {}
            }
            match at {
                "key" => {
                    line.extend_from_slice(bad);
                    line.extend_from_slice(b"\":1,\"ts\":1468244384,\"uid\":\"u\"}");
                }
                "nested" => {
                    line.extend_from_slice(bad);
                    line.extend_from_slice(b"\"],\"ts\":1468244384,\"uid\":\"u\"}");
                }
                "uid" => {
                    line.extend_from_slice(b"{\"ts\":1468244384,\"uid\":\"u");
                    line.extend_from_slice(bad);
                    line.extend_from_slice(b"\"}");
                }
                _ => {
                    line.extend_from_slice(b"{\"ts\":1468244384,\"uid\":\"u\"} ");
                    line.extend_from_slice(bad);
                }
            }
            assert_eq!(
                run(&parser(), &line),
                invalid(Invalid::NotUtf8),
                "{at} {bad:?}"
            );
        }
    }
}

#[test]
fn only_json_whitespace_is_whitespace() {
    assert_eq!(outcome("\r"), Outcome::Blank);
    assert_eq!(outcome(" \t\r\n "), Outcome::Blank);
    assert_eq!(
        outcome("{\"ts\":1468244384,\"uid\":\"u\"}\r"),
        frame(1468244384, "u")
    );
    // Form feed, vertical tab, NBSP and a BOM are not JSON whitespace.
    assert_eq!(
        outcome("{\"ts\":1468244384,\"uid\":\"u\"}\x0c"),
        invalid(Invalid::NotJson)
    );
    assert_eq!(
        outcome("\x0b{\"ts\":1468244384,\"uid\":\"u\"}"),
        invalid(Invalid::NotJson)
    );
    assert_eq!(
        outcome("{\"ts\":1468244384,\u{a0}\"uid\":\"u\"}"),
        invalid(Invalid::NotJson)
    );
    assert_eq!(
        outcome("\u{feff}{\"ts\":1468244384,\"uid\":\"u\"}"),
        invalid(Invalid::NotJson)
    );
    assert_eq!(outcome("\x0c"), invalid(Invalid::NotJson));
}

#[test]
fn grammar_corners() {
    for bad in [
        r#"{"ts":1468244384,"uid":"u","a":[1,]}"#,
        r#"{"ts":1468244384,"uid":"u","a":[,1]}"#,
        r#"{"ts":1468244384,"uid":"u","a":{"x":1,}}"#,
        r#"{"ts":1468244384,"uid":"u","a":{"x"}}"#,
        r#"{"ts":1468244384,"uid":"u","a":{1:2}}"#,
        r#"{"ts":1468244384,"uid":"u","a":1.}"#,
        r#"{"ts":1468244384,"uid":"u","a":.5}"#,
        r#"{"ts":1468244384,"uid":"u","a":+1}"#,
        r#"{"ts":1468244384,"uid":"u","a":1e}"#,
        r#"{"ts":1468244384,"uid":"u","a":-}"#,
        r#"{"ts":1468244384,"uid":"u","a":NaN}"#,
        r#"{"ts":1468244384,"uid":"u","a":tru}"#,
        r#"{"ts":1468244384,"uid":"u","a":nulll}"#,
        r#"{"ts":1468244384,"uid":"u","a":'x'}"#,
        r#"{"ts":1468244384,"uid":"u","a":[1 2]}"#,
        r#"{"ts":1468244384,"uid":"u" "a":1}"#,
        r#"{"ts":1468244384,"uid":"u"}}"#,
        r#"{"ts":1468244384,"uid":"u"}{}"#,
        r#"{"ts":1468244384 "uid":"u"}"#,
        r#"{"ts":1468244384,"uid":"u""#,
        r#"{"ts" 1468244384,"uid":"u"}"#,
        r#"{ts:1468244384,"uid":"u"}"#,
        r#"{"ts":1468244384,,"uid":"u"}"#,
        r#"{"ts":-01,"uid":"u"}"#,
        r#"{"ts":00,"uid":"u"}"#,
        r#"{"ts":1468244384a,"uid":"u"}"#,
        r#"{"ts":1468244384,"uid":"u",}"#,
        r#"{"ts":1468244384,"uid":"u"]"#,
        r#"{"ts":1468244384,"uid":"u","a":[}"#,
        r#"{"ts":1468244384,"uid":"u","a":{]}"#,
        "{",
        "}",
        "[",
    ] {
        assert_eq!(outcome(bad), invalid(Invalid::NotJson), "{bad}");
    }
    for ok in [
        r#"{"ts":1468244384,"uid":"u","a":-0.0e-0}"#,
        r#"{"ts":1468244384,"uid":"u","a":[[[]],{},[{}]]}"#,
        r#"{"ts":1468244384,"uid":"u","a":"\u007f\u0000"}"#,
        "{\"ts\":1468244384,\"uid\":\"u\",\"a\":\"\x7f\"}",
        r#"{"ts":1468244384,"uid":"u","a":{"":""}}"#,
    ] {
        assert_eq!(outcome(ok), frame(1468244384, "u"), "{ok}");
    }
    for not_object in [
        r#""{}""#,
        "[]",
        "1468244384",
        "null",
        " true ",
        r#"[{"ts":1468244384,"uid":"u"}]"#,
    ] {
        assert_eq!(
            outcome(not_object),
            invalid(Invalid::NotObject),
            "{not_object}"
        );
    }
}

#[test]
fn max_frame_bytes_is_inclusive() {
    let mut p = parser();
    let line = br#"{"ts":1468244384,"uid":"u"}"#;
    p.max_frame_bytes = line.len();
    assert_eq!(run(&p, line), frame(1468244384, "u"));
    p.max_frame_bytes = line.len() - 1;
    assert_eq!(run(&p, line), invalid(Invalid::TooLarge));
    // Size is checked before anything else, even for a blank line.
    assert_eq!(
        run(&p, " ".repeat(line.len()).as_bytes()),
        invalid(Invalid::TooLarge)
    );
}

#[test]
fn reason_precedence_ts_before_uid() {
    // Documented behaviour of the current parser (the issue fixes the set of
    // reasons, this fixes which one a line with several problems gets).
    assert_eq!(outcome(r#"{"uid":1}"#), invalid(Invalid::MissingTs));
    assert_eq!(
        outcome(r#"{"ts":"x","uid":1,"uid":2}"#),
        invalid(Invalid::BadTs)
    );
    assert_eq!(
        outcome(r#"{"ts":1,"uid":1}"#),
        invalid(Invalid::TsOutOfRange)
    );
    assert_eq!(outcome(r#"{"ts":1,"ts":2}"#), invalid(Invalid::DuplicateTs));
}
