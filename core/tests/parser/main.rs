//! Differential tests of the normative frame parser ([`FrameParser`]) against
//! serde_json, plus explicit tests of rules that `core/src/frame/`'s unit tests
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

use proptest::prelude::*;
use proptest::sample::Index;
use serde::de::IgnoredAny;
use timebucket_core::frame::{FrameParser, Invalid, DEFAULT_MIN_TS};

pub const MIN_TS: u64 = 1_400_000_000;
pub const MAX_TS: u64 = 1_500_000_000;

fn parser() -> FrameParser {
    FrameParser::new(MIN_TS, MAX_TS)
}

/// A file of real challenge frames in the repository's `tests/data/`.
fn data_file(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

mod fuzz;
mod gen;
mod oracle;

use gen::*;
use oracle::*;

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

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    /// The uid length cap (`uid_too_long`), with caps around the length of
    /// real uids (19 bytes) and of the generated strings: the same oracle.
    #[test]
    fn uid_cap_agrees_with_serde_json(case in case(), cap in 0usize..24) {
        let mut p = parser();
        p.max_uid_bytes = cap;
        if let Err(msg) = check(&p, &render(&case)) {
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
    let max = timebucket_core::window::MAX_TS;
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
