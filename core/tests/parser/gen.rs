//! Proptest generators of JSON-ish lines: valid frames, and mutations of
//! them that break one rule at a time.

use proptest::prelude::*;
use proptest::sample::Index;

use crate::{MAX_TS, MIN_TS};

/// Whitespace between tokens (JSON whitespace only).
pub fn ws() -> impl Strategy<Value = String> {
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
pub fn string_piece(allow_lone_surrogates: bool) -> BoxedStrategy<String> {
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

pub fn json_string(allow_lone_surrogates: bool) -> BoxedStrategy<String> {
    prop::collection::vec(string_piece(allow_lone_surrogates), 0..6)
        .prop_map(|pieces| format!("\"{}\"", pieces.concat()))
        .boxed()
}

pub fn json_number() -> impl Strategy<Value = String> {
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

pub fn json_literal() -> impl Strategy<Value = String> {
    prop_oneof![Just("true"), Just("false"), Just("null")].prop_map(String::from)
}

/// A key of a generated object: `ts`, `uid`, `a` or `b`, sometimes spelled
/// with escapes (the escaped spelling is the same key).
pub fn json_key() -> impl Strategy<Value = String> {
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
pub fn json_value(allow_lone_surrogates: bool) -> BoxedStrategy<String> {
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

pub fn ts_value() -> impl Strategy<Value = String> {
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

pub fn uid_value() -> impl Strategy<Value = String> {
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
pub struct Member {
    pub key: String,
    pub value: String,
    pub ws: [String; 4],
}

pub fn ws4() -> impl Strategy<Value = [String; 4]> {
    (ws(), ws(), ws(), ws()).prop_map(|(a, b, c, d)| [a, b, c, d])
}

pub fn member() -> impl Strategy<Value = Member> {
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

pub fn valid_frame_members() -> impl Strategy<Value = Vec<Member>> {
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
pub enum Mutation {
    None,
    Truncate(Index),
    InsertByte(Index, u8),
    DuplicateMember(Index, Index),
    RemoveMember(Index),
    TrailingGarbage(String),
}

pub fn mutation() -> impl Strategy<Value = Mutation> {
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
pub struct Case {
    pub lead: String,
    pub members: Vec<Member>,
    pub trail: String,
    /// Some: the root is this value instead of the object.
    pub other_root: Option<String>,
    pub mutation: Mutation,
}

pub fn case() -> impl Strategy<Value = Case> {
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

pub fn render(case: &Case) -> Vec<u8> {
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
